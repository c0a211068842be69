//! Several repositories served by one tollgate (`--repo a=... --repo b=...`), each with a
//! gated ref of the same name: a product belongs to one repository, and a license for it never
//! gets a token for the other's ref, whatever `"repo"` the token request names.

use std::path::Path;

use serde_json::{Value, json};

use crate::cmd::Cmd;
use crate::fixture::{Fixture, write_files};
use crate::http;
use crate::server::{Server, tollgate_bin};
use crate::service::{ADMIN_TOKEN, with_admin_token};

const REF: &str = "app/org.example.Paid/x86_64/stable";

fn admin(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    http::json(
        server.addr,
        method,
        &format!("/api/v1/admin/{path}"),
        Some(&format!("Bearer {ADMIN_TOKEN}")),
        body.as_ref(),
    )
}

/// A new license for `product`: its key.
fn license(server: &Server, product: &str) -> String {
    let (status, answer) = admin(
        server,
        "POST",
        "licenses",
        Some(json!({"products": [product]})),
    );
    assert_eq!(status, 201, "{answer}");
    answer["key"].as_str().unwrap().to_owned()
}

/// `POST /api/v1/tokens` for `REF` in `repo` with the license `key`: the signed token, if
/// any, and the whole answer.
fn token(server: &Server, key: &str, repo: &str) -> (Option<String>, Value) {
    let (status, answer) = http::json(
        server.addr,
        "POST",
        "/api/v1/tokens",
        Some(&format!("Bearer {key}")),
        Some(&json!({"refs": [REF], "repo": repo})),
    );
    assert_eq!(status, 200, "a token for {REF} in {repo:?}: {answer}");
    let token = answer["tokens"]
        .as_object()
        .unwrap()
        .keys()
        .find(|t| !t.is_empty())
        .cloned();
    (token, answer)
}

/// The status of `GET /<prefix>objects/../<commit>.commit` with `token`.
fn commit_status(server: &Server, prefix: &str, commit: &str, token: &str) -> u16 {
    let path = format!("/{prefix}objects/{}/{}.commit", &commit[..2], &commit[2..]);
    let auth = format!("Bearer {token}");
    http::request(server.addr, "GET", &path, &[("Authorization", &auth)]).status
}

fn serve(fx: &Fixture, repos: &[(&str, &Path)], data: &Path, config: &Path) -> Server {
    let mut args: Vec<String> = Vec::new();
    for (name, path) in repos {
        args.push("--repo".into());
        args.push(if name.is_empty() {
            path.display().to_string()
        } else {
            format!("{name}={}", path.display())
        });
    }
    args.extend([
        "--data-dir".into(),
        data.display().to_string(),
        "--config".into(),
        config.display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::serve(&args, &with_admin_token(fx))
}

#[test]
fn a_product_opens_its_own_repository_only() {
    let fx = Fixture::new();
    let mut commits = Vec::new();
    let mut repos = Vec::new();
    for name in ["a", "b"] {
        let tree = fx.join(format!("tree-{name}"));
        write_files(
            &tree,
            &[("usr/share/which", format!("{name}\n").into_bytes())],
        );
        let (repo, commit) = fx.archive_repo(&format!("repo-{name}"), REF, &tree);
        repos.push(repo);
        commits.push(commit);
    }
    let (a, b) = (&commits[0], &commits[1]);
    let data = fx.join("data");
    let config = fx.join("tollgate.toml");
    std::fs::write(&config, "gated-refs = [\"app/*\"]\n").unwrap();
    let server = serve(&fx, &[("a", &repos[0]), ("b", &repos[1])], &data, &config);

    let cli = |args: &[&str]| {
        Cmd::new(tollgate_bin())
            .args(["admin", "--json", "--data-dir"])
            .arg(&data)
            .args(args)
            .run()
    };
    // A product made without a repository (as every product was before products had one)
    // opens nothing while several are served: which one would be a guess, and choosing
    // `"repo"` in the request would open the other's ref of the same name.
    cli(&[
        "product", "add", "legacy", "--name", "Old", "--ref", "app/*",
    ]);
    let key_old = license(&server, "legacy");
    for repo in ["a", "b"] {
        let (token, answer) = token(&server, &key_old, repo);
        assert!(
            token.is_none(),
            "a product of no repository opened {REF} in {repo}: {answer}"
        );
    }

    // The admin API asks which repository a product is for when several are served.
    let product = |slug: &str, repo: Option<&str>| {
        let mut body = json!({"slug": slug, "name": slug, "refs": ["app/*"]});
        if let Some(repo) = repo {
            body["repo"] = json!(repo);
        }
        admin(&server, "POST", "products", Some(body))
    };
    for (repo, why) in [
        (None, "no repository"),
        (Some("c"), "a repository not served"),
    ] {
        let (status, answer) = product("pro-x", repo);
        assert_eq!(status, 400, "a product for {why}: {answer}");
    }
    let (status, answer) = product("pro-a", Some("a"));
    assert_eq!((status, &answer["repo"]), (201, &json!("a")), "{answer}");
    let key_a = license(&server, "pro-a");

    // Its license opens a's ref, for ostree too, and gets nothing for b's of the same name.
    let (token_a, answer) = token(&server, &key_a, "a");
    let token_a = token_a.unwrap_or_else(|| panic!("no token for a: {answer}"));
    assert_eq!(commit_status(&server, "a/", a, &token_a), 200);
    assert_eq!(commit_status(&server, "b/", b, &token_a), 403);
    let client = fx.ostree_client(&format!("{}a/", server.url()));
    fx.pull(&client, REF, Some(&token_a)).run();
    fx.assert_pulled(&client, "origin", &repos[0], REF);
    let (token_b, answer) = token(&server, &key_a, "b");
    assert!(
        token_b.is_none(),
        "a license for a got a token for b: {answer}"
    );
    assert_eq!(answer["denied"][REF], "not-licensed", "{answer}");

    // The same from the command line, beside the running server.
    let made: Value = serde_json::from_str(&cli(&[
        "product", "add", "pro-b", "--name", "B", "--ref", "app/*", "--repo", "b",
    ]))
    .unwrap();
    assert_eq!(made[0]["repo"], "b", "{made}");
    let key_b = license(&server, "pro-b");
    let (token_b, answer) = token(&server, &key_b, "b");
    let token_b = token_b.unwrap_or_else(|| panic!("no token for b: {answer}"));
    assert_eq!(commit_status(&server, "b/", b, &token_b), 200);
    assert!(token(&server, &key_b, "a").0.is_none());

    // The server says so at start; served alone, the product opens its refs.
    drop(server);
    let mut server = serve(&fx, &[("a", &repos[0]), ("b", &repos[1])], &data, &config);
    let warned = server.wait_for_log(
        "the products legacy belong to no repository",
        std::time::Duration::from_secs(5),
    );
    assert!(warned.contains("--repo NAME"), "{warned}");
    drop(server);
    let alone = serve(&fx, &[("", &repos[0])], &data, &config);
    let (token_old, answer) = token(&alone, &key_old, "");
    let token_old = token_old.unwrap_or_else(|| panic!("no token served alone: {answer}"));
    assert_eq!(commit_status(&alone, "", a, &token_old), 200);
    // ... while a product of a named repository opens nothing at `/`.
    assert!(token(&alone, &key_a, "").0.is_none());
}
