//! The entitlement service over real HTTP, against the real binary, on SQLite and on a real
//! PostgreSQL: the admin API and CLI, token issuance and what the tokens open for the real
//! `ostree` and `flatpak`, bad input, many clients at once, a crash, the failure limiter,
//! timing, and key rotation while serving.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::bus::{SessionBus, TEST_AUTHENTICATOR_NAME, test_authenticator};
use crate::cmd::Cmd;
use crate::fixture::Fixture;
use crate::gating::{APP, FLAT_MANAGER_SECRET, GatedRepo, RUNTIME, gated_repo, update_repo};
use crate::http::{self, Response};
use crate::postgres::Postgres;
use crate::server::{Server, tollgate_bin};
use crate::tokens;

pub(crate) const ADMIN_TOKEN: &str = "an admin token for the entitlement tests";
const OTHER_APP: &str = "org.example.Other";
const PASSWORD: &str = "correct horse battery staple";

/// A running service and how to start it again on the same data.
pub(crate) struct Service {
    args: Vec<String>,
    env: Vec<(String, PathBuf)>,
    pub(crate) server: Server,
}

impl Service {
    /// Serves `g` with the admin token in the environment, the database at `database_url`
    /// (the data directory's SQLite when `None`), and `entitlements` as the configuration's
    /// `[entitlements]` section.
    pub(crate) fn start(
        fx: &Fixture,
        g: &GatedRepo,
        database_url: Option<&str>,
        entitlements: &str,
    ) -> Service {
        Service::start_on(
            fx,
            &g.repo,
            &g.data,
            "[tokens]\nflat-manager-secret-file = \"flat-manager-secret\"\n",
            database_url,
            entitlements,
        )
    }

    /// Serves `repo` with the data directory `data`, the configuration `config` followed by
    /// the `[entitlements]` section, and the rest as for [`Service::start`].
    pub(crate) fn start_on(
        fx: &Fixture,
        repo: &Path,
        data: &Path,
        config: &str,
        database_url: Option<&str>,
        entitlements: &str,
    ) -> Service {
        let config_file = fx.join("entitlements.toml");
        std::fs::write(
            &config_file,
            format!("{config}\n[entitlements]\n{entitlements}\n"),
        )
        .unwrap();
        let mut args: Vec<String> = vec![
            "--repo".into(),
            repo.display().to_string(),
            "--data-dir".into(),
            data.display().to_string(),
            "--config".into(),
            config_file.display().to_string(),
        ];
        if let Some(url) = database_url {
            args.extend(["--database-url".into(), url.into()]);
        }
        let env: Vec<(String, PathBuf)> = fx
            .env()
            .iter()
            .cloned()
            .chain([("TOLLGATE_ADMIN_TOKEN".to_owned(), ADMIN_TOKEN.into())])
            .collect();
        let server = launch(&args, &env);
        Service { args, env, server }
    }

    /// Stops the server cleanly (SIGTERM) and starts it again on the same data.
    fn restart(self) -> Service {
        let Service { args, env, server } = self;
        let status = server.stop();
        assert!(status.success(), "tollgate stopped with {status}");
        let server = launch(&args, &env);
        Service { args, env, server }
    }

    pub(crate) fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        http::json(
            self.server.addr,
            method,
            &format!("/api/v1/admin/{path}"),
            Some(&format!("Bearer {ADMIN_TOKEN}")),
            body.as_ref(),
        )
    }

    /// An admin request that must succeed with `status`; its answer.
    pub(crate) fn admin_ok(
        &self,
        status: u16,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let (got, answer) = self.admin(method, path, body);
        assert_eq!(got, status, "{method} {path}: {answer}");
        answer
    }

    pub(crate) fn tokens(&self, authorization: Option<&str>, body: &Value) -> (u16, Value) {
        http::json(
            self.server.addr,
            "POST",
            "/api/v1/tokens",
            authorization,
            Some(body),
        )
    }

    /// Everything the admin API shows: products, licenses, accounts and issued tokens.
    fn snapshot(&self) -> Value {
        json!([
            self.admin_ok(200, "GET", "products", None),
            self.admin_ok(200, "GET", "licenses", None),
            self.admin_ok(200, "GET", "accounts", None),
            self.admin_ok(200, "GET", "audit/tokens?limit=1000", None),
            self.admin_ok(200, "GET", "audit/downloads?limit=1000", None),
        ])
    }

    /// A snapshot once the audit writer has written everything queued: two in a row alike.
    fn settled_snapshot(&self) -> Value {
        let mut last = self.snapshot();
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.snapshot();
            if now == last {
                return now;
            }
            last = now;
        }
        panic!("the stored data keeps changing: {last}");
    }

    /// Waits until the admin API lists at least `n` audit records of `kind` (`tokens` or
    /// `downloads`) matching `query`, and returns them: the audit writer writes in batches, a
    /// moment after the answer.
    pub(crate) fn wait_for_audit(&self, kind: &str, query: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let page = self.admin_ok(200, "GET", &format!("audit/{kind}?{query}"), None);
            let items = page["items"].as_array().unwrap().clone();
            if items.len() >= n {
                return items;
            }
            assert!(
                Instant::now() < deadline,
                "{n} audit records of {kind} for {query:?}: {page}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn launch(args: &[String], env: &[(String, PathBuf)]) -> Server {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::serve(&args, env)
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn basic(name: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{name}:{password}")))
}

/// The one signed token in an answer, and the refs it is for.
pub(crate) fn signed_token(answer: &Value) -> Option<(String, Vec<String>)> {
    let tokens = answer["tokens"].as_object()?;
    let mut signed = tokens.iter().filter(|(token, _)| !token.is_empty());
    let (token, refs) = signed.next()?;
    assert!(signed.next().is_none(), "one signed token: {answer}");
    let refs = refs
        .as_array()?
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    Some((token.clone(), refs))
}

/// A token's claims, read without checking it.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .expect("a kid")
}

/// Checks `token` against the server's published keys, with a real JWK parser.
fn verify_with_jwks(server: &Server, token: &str) -> Value {
    let r = http::get(server.addr, "/.well-known/jwks.json");
    assert_eq!(r.status, 200);
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&r.body).unwrap();
    let jwk = set
        .find(&kid(token))
        .unwrap_or_else(|| panic!("the key {} is published", kid(token)));
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("the token verifies against the JWKS: {e}"))
        .claims
}

fn error_type(answer: &Value) -> &str {
    answer["error-type"].as_str().unwrap_or("<none>")
}

/// `GET` a repository file with a token.
pub(crate) fn fetch(server: &Server, path: &str, token: Option<&str>) -> Response {
    let auth = token.map(bearer);
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    http::request(server.addr, "GET", path, &headers)
}

fn the_whole_api(database_url: Option<&str>) {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(
        &fx,
        &g,
        database_url,
        "max-failures = 1000\ntoken-ttl = 300",
    );
    let app_ref = g.app_ref.as_str();
    let runtime_ref = g.runtime_ref.as_str();
    let nope_ref = "app/org.example.Nope/x86_64/stable";

    // Products.
    let paid = s.admin_ok(
        201,
        "POST",
        "products",
        Some(json!({"slug": "paid", "name": "Paid", "refs": [format!("app/{APP}/*")]})),
    );
    assert_eq!(paid["refs"], json!([format!("app/{APP}/*")]));
    let (status, err) = s.admin(
        "POST",
        "products",
        Some(json!({"slug": "paid", "name": "Again", "refs": ["x"]})),
    );
    assert_eq!((status, error_type(&err)), (409, "conflict"), "{err}");
    s.admin_ok(
        201,
        "POST",
        "products",
        Some(json!({"slug": "other", "name": "Other", "refs": [format!("app/{OTHER_APP}/*")]})),
    );
    let listed = s.admin_ok(200, "GET", "products", None);
    let slugs: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["other", "paid"]);
    let renamed = s.admin_ok(
        200,
        "PATCH",
        "products/paid",
        Some(json!({"name": "Paid App"})),
    );
    assert_eq!(renamed["name"], "Paid App");
    assert_eq!(s.admin_ok(200, "GET", "products/paid", None), renamed);
    let (status, err) = s.admin("GET", "products/nope", None);
    assert_eq!((status, error_type(&err)), (404, "not-found"), "{err}");

    // Licenses and accounts: the key is shown once, and never again.
    let license = s.admin_ok(
        201,
        "POST",
        "licenses",
        Some(json!({"products": ["paid"], "note": "alice"})),
    );
    let id = license["id"].as_str().unwrap().to_owned();
    let key = license["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("tg_{id}_")), "{key}");
    let secret = key.rsplit('_').next().unwrap().to_owned();
    let shown = http::request(
        s.server.addr,
        "GET",
        "/api/v1/admin/licenses",
        &[("Authorization", &bearer(ADMIN_TOKEN))],
    );
    let shown = String::from_utf8_lossy(&shown.body).into_owned();
    assert!(shown.contains(&id) && !shown.contains(&secret), "{shown}");
    let other = s.admin_ok(
        201,
        "POST",
        "licenses",
        Some(json!({"products": ["other"]})),
    );
    let other_key = other["key"].as_str().unwrap().to_owned();
    let account = s.admin_ok(
        201,
        "POST",
        "accounts",
        Some(json!({"name": "bob", "password": PASSWORD, "products": ["paid"]})),
    );
    assert!(!account.to_string().contains(PASSWORD), "{account}");

    // Tokens: exactly the licensed gated ref, "" for the public one, and why not for the rest.
    let ask = json!({"refs": [app_ref, runtime_ref, nope_ref]});
    let (status, answer) = s.tokens(Some(&bearer(&key)), &ask);
    assert_eq!(status, 200, "{answer}");
    let (jwt, refs) = signed_token(&answer).expect("a signed token");
    assert_eq!(refs, [app_ref]);
    assert_eq!(answer["tokens"][""], json!([runtime_ref]));
    assert_eq!(answer["denied"], json!({ nope_ref: "unknown-ref" }));
    assert_eq!(answer["expires_in"], 300);
    let c = verify_with_jwks(&s.server, &jwt);
    assert_eq!(c["refs"], json!([app_ref]));
    assert_eq!(c["repos"], json!([""]));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
    let head = format!("/refs/heads/{app_ref}");
    let on_disk = std::fs::read(g.repo.join(&head[1..])).unwrap();
    let r = fetch(&s.server, &head, Some(&jwt));
    assert_eq!((r.status, &r.body), (200, &on_disk));
    assert_eq!(fetch(&s.server, &head, None).status, 401);
    let commit = fx.rev_parse(&g.repo, app_ref);
    let object = format!("/objects/{}/{}.commit", &commit[..2], &commit[2..]);
    assert_eq!(fetch(&s.server, &object, Some(&jwt)).status, 200);
    let mut issued_to_license = 1;

    let (status, answer) = s.tokens(Some(&bearer(&other_key)), &ask);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(signed_token(&answer), None, "{answer}");
    assert_eq!(
        answer["denied"],
        json!({ app_ref: "not-licensed", nope_ref: "unknown-ref" })
    );

    // A withdrawn product opens nothing until it is back.
    let off = s.admin_ok(
        200,
        "PATCH",
        "products/paid",
        Some(json!({"active": false})),
    );
    assert_eq!(off["active"], false);
    let (status, answer) = s.tokens(Some(&bearer(&key)), &ask);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(signed_token(&answer), None, "{answer}");
    assert_eq!(answer["denied"][app_ref], "product-inactive");
    s.admin_ok(200, "PATCH", "products/paid", Some(json!({"active": true})));

    let (status, answer) = s.tokens(Some(&basic("bob", PASSWORD)), &ask);
    assert_eq!(status, 200, "{answer}");
    let (bob_jwt, _) = signed_token(&answer).expect("a token for the account");
    assert_eq!(fetch(&s.server, &head, Some(&bob_jwt)).status, 200);

    // One answer for every wrong credential.
    let mut near_miss = key.clone();
    let last = near_miss.pop().unwrap();
    near_miss.push(if last == 'A' { 'B' } else { 'A' });
    let unknown_id = format!(
        "tg_{}_{secret}",
        if id == "aaaaaaaaaa" {
            "bbbbbbbbbb"
        } else {
            "aaaaaaaaaa"
        }
    );
    let mut wrong_answers = Vec::new();
    for auth in [
        bearer(&near_miss),
        bearer(&unknown_id),
        bearer("nonsense"),
        basic("bob", "not the password"),
        basic("nobody", PASSWORD),
        "Digest x".to_owned(),
    ] {
        let (status, answer) = s.tokens(Some(&auth), &ask);
        assert_eq!(status, 401, "{auth}: {answer}");
        wrong_answers.push(answer);
    }
    assert!(
        wrong_answers.iter().all(|a| *a == wrong_answers[0]),
        "{wrong_answers:?}"
    );
    assert_eq!(error_type(&wrong_answers[0]), "invalid-credentials");
    let (status, answer) = s.tokens(None, &ask);
    assert_eq!((status, error_type(&answer)), (401, "credentials-required"));

    // Deactivated and expired licenses and accounts say so.
    let refused = |auth: &str, code: &str| {
        let (status, answer) = s.tokens(Some(auth), &ask);
        assert_eq!((status, error_type(&answer)), (401, code), "{answer}");
        assert!(answer["message"].as_str().unwrap().contains("vendor"));
    };
    let license_path = format!("licenses/{id}");
    let off = s.admin_ok(200, "PATCH", &license_path, Some(json!({"active": false})));
    assert_eq!(off["active"], false);
    refused(&bearer(&key), "license-inactive");
    s.admin_ok(
        200,
        "PATCH",
        &license_path,
        Some(json!({"active": true, "expires": "2001-09-09T01:46:40Z"})),
    );
    assert_eq!(
        s.admin_ok(200, "GET", &license_path, None)["expires"],
        1_000_000_000
    );
    refused(&bearer(&key), "license-expired");
    // A license about to expire gets tokens that expire with it.
    s.admin_ok(
        200,
        "PATCH",
        &license_path,
        Some(json!({"expires": tokens::now() + 100})),
    );
    let (status, answer) = s.tokens(Some(&bearer(&key)), &ask);
    assert_eq!(status, 200, "{answer}");
    let expires_in = answer["expires_in"].as_i64().unwrap();
    assert!((90..=100).contains(&expires_in), "{answer}");
    let (short, _) = signed_token(&answer).unwrap();
    let short = claims(&short);
    assert_eq!(
        short["exp"].as_i64().unwrap() - short["iat"].as_i64().unwrap(),
        expires_in
    );
    issued_to_license += 1;
    s.admin_ok(200, "PATCH", &license_path, Some(json!({"expires": null})));
    assert_eq!(s.tokens(Some(&bearer(&key)), &ask).0, 200);
    issued_to_license += 1;
    s.admin_ok(200, "PATCH", "accounts/bob", Some(json!({"active": false})));
    refused(&basic("bob", PASSWORD), "account-inactive");
    let accounts = s.admin_ok(200, "GET", "accounts", None);
    assert_eq!(accounts[0]["name"], "bob", "{accounts}");
    assert_eq!(accounts[0]["products"], json!(["paid"]));
    assert_eq!(s.admin_ok(200, "GET", "accounts/bob", None), accounts[0]);
    assert!(!accounts.to_string().contains("argon2"), "{accounts}");
    s.admin_ok(
        200,
        "PATCH",
        "accounts/bob",
        Some(json!({"active": true, "password": "a new password for bob"})),
    );
    let (status, answer) = s.tokens(Some(&basic("bob", PASSWORD)), &ask);
    assert_eq!((status, error_type(&answer)), (401, "invalid-credentials"));
    assert_eq!(
        s.tokens(Some(&basic("bob", "a new password for bob")), &ask)
            .0,
        200
    );
    let issued_to_bob = 2;

    // The audit records, with filters and paging.
    let issued = s.wait_for_audit("tokens", &format!("license={id}"), issued_to_license);
    assert_eq!(issued.len(), issued_to_license, "{issued:?}");
    assert!(
        issued.iter().all(|t| t["refs"] == json!([app_ref])),
        "{issued:?}"
    );
    assert!(issued.iter().any(|t| t["jti"] == c["jti"]), "{issued:?}");
    let all = s.wait_for_audit("tokens", "limit=1000", issued_to_license + issued_to_bob);
    assert_eq!(all.len(), issued_to_license + issued_to_bob, "{all:?}");
    let downloads = s.wait_for_audit("downloads", &format!("ref={app_ref}"), 1);
    assert_eq!(
        (&downloads[0]["commit"], &downloads[0]["token_id"]),
        (&json!(commit), &c["jti"]),
        "{downloads:?}"
    );
    let first = s.admin_ok(200, "GET", "audit/tokens?limit=1", None);
    let next = first["next"].as_i64().expect("a next page");
    let second = s.admin_ok(
        200,
        "GET",
        &format!("audit/tokens?limit=1&before={next}"),
        None,
    );
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_ne!(first["items"][0]["jti"], second["items"][0]["jti"]);
    let by_ref = s.admin_ok(
        200,
        "GET",
        &format!("audit/tokens?ref={app_ref}&since=2020-01-01T00:00:00Z"),
        None,
    );
    assert_eq!(
        by_ref["items"].as_array().unwrap().len(),
        issued_to_license + issued_to_bob
    );

    // flat-manager's token_subset.
    let exp = tokens::now() + 3600;
    let parent = tokens::flat_manager(
        FLAT_MANAGER_SECRET,
        &json!({"sub": "", "scope": ["download"], "prefixes": [APP], "repos": [""],
                "exp": exp, "name": "parent"}),
    );
    let subset = |token: &str, body: Value| {
        http::json(
            s.server.addr,
            "POST",
            "/api/v1/token_subset",
            Some(&bearer(token)),
            Some(&body),
        )
    };
    let (status, answer) = subset(
        &parent,
        json!({"sub": "", "scope": ["download"], "duration": 600, "prefixes": [APP],
               "name": "child"}),
    );
    assert_eq!(status, 200, "{answer}");
    let child = answer["token"].as_str().unwrap();
    let child_claims = claims(child);
    assert_eq!(child_claims["name"], "parent/child");
    assert!((child_claims["exp"].as_i64().unwrap() - (tokens::now() + 600)).abs() <= 5);
    assert_eq!(fetch(&s.server, &head, Some(child)).status, 200);
    for (why, token, body, status, kind) in [
        (
            "longer than the parent",
            parent.as_str(),
            json!({"sub": "", "scope": ["download"], "duration": 7200, "name": "c"}),
            403,
            "not-entitled",
        ),
        (
            "a wider prefix",
            parent.as_str(),
            json!({"sub": "", "scope": ["download"], "duration": 60, "prefixes": [""],
                   "name": "c"}),
            403,
            "not-entitled",
        ),
        (
            "another scope",
            parent.as_str(),
            json!({"sub": "", "scope": ["upload"], "duration": 60, "name": "c"}),
            403,
            "not-entitled",
        ),
        (
            "a parent that is not one",
            jwt.as_str(),
            json!({"sub": "", "scope": ["download"], "duration": 60, "name": "c"}),
            401,
            "invalid-token",
        ),
    ] {
        let (got, answer) = subset(token, body);
        assert_eq!(
            (got, error_type(&answer)),
            (status, kind),
            "{why}: {answer}"
        );
    }

    // Removing: a product a license holds stays; the rest goes once.
    let (status, err) = s.admin("DELETE", "products/paid", None);
    assert_eq!((status, error_type(&err)), (409, "conflict"), "{err}");
    let other_path = format!("licenses/{}", other["id"].as_str().unwrap());
    assert_eq!(s.admin("DELETE", &other_path, None).0, 204);
    assert_eq!(s.admin("DELETE", &other_path, None).0, 404);
    assert_eq!(s.admin("DELETE", "products/other", None).0, 204);
    assert_eq!(s.admin("DELETE", "accounts/bob", None).0, 204);
    assert_eq!(s.admin("GET", "accounts/bob", None).0, 404);
    let (status, answer) = s.tokens(Some(&basic("bob", "a new password for bob")), &ask);
    assert_eq!((status, error_type(&answer)), (401, "invalid-credentials"));
    assert_eq!(
        s.tokens(Some(&bearer(&other_key)), &ask).0,
        401,
        "a removed license opens nothing"
    );

    // Bad input: the right 4xx, a JSON error, and nothing stored changes.
    let before = s.settled_snapshot();
    bad_input(&s, &key, app_ref);
    assert_eq!(s.snapshot(), before, "bad input changed stored data");

    // A restart keeps everything.
    let s = s.restart();
    assert_eq!(s.snapshot(), before, "data lost in a restart");
    let (status, answer) = s.tokens(Some(&bearer(&key)), &ask);
    assert_eq!(status, 200, "{answer}");
    let (jwt, _) = signed_token(&answer).unwrap();
    assert_eq!(fetch(&s.server, &head, Some(&jwt)).status, 200);
}

/// Why, method, path, Authorization, body; the status and `error-type` it must get.
type BadRequest<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Vec<u8>,
    u16,
    &'a str,
);

/// Sends each bad request and checks the status, the JSON error, and its `error-type`.
fn bad_input(s: &Service, key: &str, app_ref: &str) {
    let license = bearer(key);
    let admin = bearer(ADMIN_TOKEN);
    let refs = |refs: Value| json!({ "refs": refs }).to_string().into_bytes();
    let mut huge_refs = b"{\"refs\": [\"".to_vec();
    huge_refs.resize(70 * 1024, b'a');
    huge_refs.extend_from_slice(b"\"]}");
    let mut huge_product = b"{\"slug\": \"x\", \"name\": \"".to_vec();
    huge_product.resize(300 * 1024, b'a');
    huge_product.extend_from_slice(b"\", \"refs\": [\"x\"]}");
    let many: Vec<String> = (0..257)
        .map(|i| format!("app/a{i}/x86_64/stable"))
        .collect();
    let product = |v: Value| v.to_string().into_bytes();
    let subset = |v: Value| v.to_string().into_bytes();

    #[rustfmt::skip]
        let cases: Vec<BadRequest<'_>> = vec![
        ("malformed JSON", "POST", "/api/v1/tokens", Some(&license), b"{\"refs\": [".to_vec(), 400, "bad-request"),
        ("refs not a list", "POST", "/api/v1/tokens", Some(&license), refs(json!(app_ref)), 400, "bad-request"),
        ("refs of numbers", "POST", "/api/v1/tokens", Some(&license), refs(json!([1, 2])), 400, "bad-request"),
        ("repo a number", "POST", "/api/v1/tokens", Some(&license), json!({"refs": [app_ref], "repo": 7}).to_string().into_bytes(), 400, "bad-request"),
        ("an empty body", "POST", "/api/v1/tokens", Some(&license), Vec::new(), 400, "bad-request"),
        ("JSON null", "POST", "/api/v1/tokens", Some(&license), b"null".to_vec(), 400, "bad-request"),
        ("no refs", "POST", "/api/v1/tokens", Some(&license), refs(json!([])), 400, "bad-request"),
        ("257 refs", "POST", "/api/v1/tokens", Some(&license), refs(json!(many)), 400, "bad-request"),
        ("a huge body", "POST", "/api/v1/tokens", Some(&license), huge_refs, 413, "payload-too-large"),
        ("invalid UTF-8", "POST", "/api/v1/tokens", Some(&license), b"{\"refs\": [\"app/\xff\xfe/x86_64/stable\"]}".to_vec(), 400, "bad-request"),
        ("an unknown repo", "POST", "/api/v1/tokens", Some(&license), json!({"refs": [app_ref], "repo": "nope"}).to_string().into_bytes(), 404, "unknown-repo"),
        ("only unknown refs", "POST", "/api/v1/tokens", Some(&license), refs(json!(["app/org.example.Nope/x86_64/stable"])), 404, "unknown-refs"),
        ("an injection-shaped ref", "POST", "/api/v1/tokens", Some(&license), refs(json!(["app/x'; DROP TABLE licenses; --/x86_64/stable"])), 400, "bad-request"),
        ("an injection-shaped repo", "POST", "/api/v1/tokens", Some(&license), json!({"refs": [app_ref], "repo": "' OR 1=1 --"}).to_string().into_bytes(), 404, "unknown-repo"),
        ("a TTL of its own", "POST", "/api/v1/tokens", Some(&license), json!({"refs": [app_ref], "ttl": 315_360_000}).to_string().into_bytes(), 400, "bad-request"),
        ("an injection-shaped key", "POST", "/api/v1/tokens", Some("Bearer tg_' OR '1'='1"), refs(json!([app_ref])), 401, "invalid-credentials"),
        ("GET", "GET", "/api/v1/tokens", Some(&license), Vec::new(), 405, "method-not-allowed"),
        ("a subset for a week-long epoch", "POST", "/api/v1/token_subset", Some(&license), subset(json!({"sub": "", "scope": ["download"], "duration": 1_000_000_000_000_i64, "name": "x"})), 400, "bad-request"),
        ("a subset with a negative duration", "POST", "/api/v1/token_subset", Some(&license), subset(json!({"sub": "", "scope": ["download"], "duration": -5, "name": "x"})), 400, "bad-request"),
        ("a subset with a duration in words", "POST", "/api/v1/token_subset", Some(&license), subset(json!({"sub": "", "scope": ["download"], "duration": "forever", "name": "x"})), 400, "bad-request"),
        ("a subset without a token", "POST", "/api/v1/token_subset", None, subset(json!({"sub": "", "scope": ["download"], "duration": 60, "name": "x"})), 401, "credentials-required"),
        ("a wrong admin token", "GET", "/api/v1/admin/products", Some("Bearer not the admin token at all"), Vec::new(), 401, "admin-unauthorized"),
        ("no admin token", "POST", "/api/v1/admin/products", None, product(json!({"slug": "x", "name": "x", "refs": ["x"]})), 401, "admin-unauthorized"),
        ("a license key as the admin token", "GET", "/api/v1/admin/licenses", Some(&license), Vec::new(), 401, "admin-unauthorized"),
        ("malformed admin JSON", "POST", "/api/v1/admin/products", Some(&admin), b"{\"slug\":".to_vec(), 400, "bad-request"),
        ("a slug of the wrong type", "POST", "/api/v1/admin/products", Some(&admin), product(json!({"slug": 1, "name": "x", "refs": ["x"]})), 400, "bad-request"),
        ("an injection-shaped slug", "POST", "/api/v1/admin/products", Some(&admin), product(json!({"slug": "x'; DROP TABLE products; --", "name": "x", "refs": ["x"]})), 400, "bad-request"),
        ("a product without refs", "POST", "/api/v1/admin/products", Some(&admin), product(json!({"slug": "x", "name": "x", "refs": []})), 400, "bad-request"),
        ("a huge product", "POST", "/api/v1/admin/products", Some(&admin), huge_product, 413, "payload-too-large"),
        ("an invalid UTF-8 product", "POST", "/api/v1/admin/products", Some(&admin), b"{\"slug\": \"x\", \"name\": \"\xc3\x28\", \"refs\": [\"x\"]}".to_vec(), 400, "bad-request"),
        ("an unknown license field", "POST", "/api/v1/admin/licenses", Some(&admin), product(json!({"products": ["paid"], "admin": true})), 400, "bad-request"),
        ("a license for no product", "POST", "/api/v1/admin/licenses", Some(&admin), product(json!({"products": []})), 400, "bad-request"),
        ("a license for an unknown product", "POST", "/api/v1/admin/licenses", Some(&admin), product(json!({"products": ["nope"]})), 404, "not-found"),
        ("a negative expiry", "POST", "/api/v1/admin/licenses", Some(&admin), product(json!({"products": ["paid"], "expires": -5})), 400, "bad-request"),
                ("an expiry in words", "POST", "/api/v1/admin/licenses", Some(&admin), product(json!({"products": ["paid"], "expires": "next tuesday"})), 400, "bad-request"),
        ("an expiry past the year 9999", "POST", "/api/v1/admin/licenses", Some(&admin), product(json!({"products": ["paid"], "expires": 300_000_000_000_i64})), 400, "bad-request"),
        ("a NUL in a slug", "GET", "/api/v1/admin/products/a%00b", Some(&admin), Vec::new(), 404, "not-found"),
        ("a NUL in an account name", "DELETE", "/api/v1/admin/accounts/a%00b", Some(&admin), Vec::new(), 404, "not-found"),
        ("a NUL in an audit filter", "GET", "/api/v1/admin/audit/tokens?license=%00", Some(&admin), Vec::new(), 400, "bad-request"),
        ("an audit ref that is no ref", "GET", "/api/v1/admin/audit/tokens?ref=app/%25", Some(&admin), Vec::new(), 400, "bad-request"),
        ("a note with control characters", "POST", "/api/v1/admin/licenses", Some(&admin), product(json!({"products": ["paid"], "note": "a\u{0}b"})), 400, "bad-request"),
        ("an empty license body", "POST", "/api/v1/admin/licenses", Some(&admin), Vec::new(), 400, "bad-request"),
        ("an unknown license", "PATCH", "/api/v1/admin/licenses/aaaaaaaaaa", Some(&admin), product(json!({"active": false})), 404, "not-found"),
        ("a short password", "POST", "/api/v1/admin/accounts", Some(&admin), product(json!({"name": "eve", "password": "short", "products": ["paid"]})), 400, "bad-request"),
        ("an account name with a colon", "POST", "/api/v1/admin/accounts", Some(&admin), product(json!({"name": "e:ve", "password": PASSWORD, "products": ["paid"]})), 400, "bad-request"),
        ("PUT", "PUT", "/api/v1/admin/products", Some(&admin), product(json!({"slug": "x", "name": "x", "refs": ["x"]})), 405, "method-not-allowed"),
        ("an unknown admin path", "GET", "/api/v1/admin/nothing", Some(&admin), Vec::new(), 404, "not-found"),
        ("an audit limit of 0", "GET", "/api/v1/admin/audit/tokens?limit=0", Some(&admin), Vec::new(), 400, "bad-request"),
        ("an audit limit in words", "GET", "/api/v1/admin/audit/tokens?limit=many", Some(&admin), Vec::new(), 400, "bad-request"),
        ("an unknown audit parameter", "GET", "/api/v1/admin/audit/tokens?user=1", Some(&admin), Vec::new(), 400, "bad-request"),
        ("an audit time in words", "GET", "/api/v1/admin/audit/downloads?since=yesterday", Some(&admin), Vec::new(), 400, "bad-request"),
    ];
    for (why, method, path, auth, body, status, kind) in cases {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = auth {
            headers.push(("Authorization", auth));
        }
        let r = http::request_with_body(s.server.addr, method, path, &headers, &body);
        let answer: Value = serde_json::from_slice(&r.body).unwrap_or_else(|_| {
            panic!(
                "{why}: not a JSON error ({}): {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )
        });
        assert_eq!(
            (r.status, error_type(&answer)),
            (status, kind),
            "{why}: {answer}"
        );
        assert!(
            !answer["message"].as_str().unwrap_or_default().is_empty(),
            "{why}: {answer}"
        );
        assert_eq!(r.header("Content-Type"), Some("application/json"), "{why}");
    }
    let log = s.server.log();
    assert!(
        !log.contains(ADMIN_TOKEN) && !log.contains(key),
        "secrets in the log:\n{log}"
    );
}

#[test]
fn the_whole_api_on_sqlite() {
    the_whole_api(None);
}

#[test]
fn the_whole_api_on_postgresql() {
    let postgres = Postgres::start();
    let url = postgres.database("tollgate");
    the_whole_api(Some(&url));
}

/// A repository with a second gated app, `org.example.Other`, that the license does not cover.
fn two_gated_apps(fx: &Fixture) -> (GatedRepo, String) {
    let g = gated_repo(fx);
    let other_ref = fx.flatpak_app(&g.repo, OTHER_APP, RUNTIME, 1, Some(2));
    update_repo(fx, &g.repo);
    (g, other_ref)
}

/// A product for the paid app and a license for it; the license key.
pub(crate) fn license_for_paid(s: &Service) -> String {
    s.admin_ok(
        201,
        "POST",
        "products",
        Some(json!({"slug": "paid", "name": "Paid", "refs": [format!("app/{APP}/*")]})),
    );
    let license = s.admin_ok(201, "POST", "licenses", Some(json!({"products": ["paid"]})));
    license["key"].as_str().unwrap().to_owned()
}

#[test]
fn a_licensed_token_opens_its_app_for_ostree_and_flatpak_and_nothing_else() {
    let fx = Fixture::new();
    let (g, other_ref) = two_gated_apps(&fx);
    let s = Service::start(&fx, &g, None, "");
    let key = license_for_paid(&s);
    let (status, answer) = s.tokens(
        Some(&bearer(&key)),
        &json!({"refs": [g.app_ref, g.runtime_ref, other_ref]}),
    );
    assert_eq!(status, 200, "{answer}");
    let (jwt, refs) = signed_token(&answer).unwrap();
    assert_eq!(refs, std::slice::from_ref(&g.app_ref));
    assert_eq!(
        answer["denied"],
        json!({ other_ref.clone(): "not-licensed" })
    );

    // ostree: the licensed app pulls and checks out whole; the other gated app does not.
    let cli = fx.ostree_client(&s.server.url());
    let header = format!("--http-header=Authorization=Bearer {jwt}");
    fx.ostree(&cli)
        .args(["pull", &header, "origin", &g.app_ref])
        .run();
    fx.assert_pulled(&cli, "origin", &g.repo, &g.app_ref);
    let err = fx
        .ostree(&cli)
        .args(["pull", &header, "origin", &other_ref])
        .run_fail();
    assert!(err.contains("403"), "the other app with this token: {err}");

    // flatpak, through its authenticator: the app and its runtime install; the other does not.
    let bus = SessionBus::start(&fx, &[(TEST_AUTHENTICATOR_NAME, test_authenticator())]);
    let env: Vec<(String, PathBuf)> = fx.env().iter().cloned().chain([bus.env()]).collect();
    let flatpak = || fx.flatpak().envs(&env);
    std::fs::write(fx.join("run/required-token"), &jwt).unwrap();
    fx.flatpak_remote_add("test", &s.server.url());
    flatpak()
        .args(["--user", "install", "-y", "--noninteractive", "test", APP])
        .run();
    let listed = flatpak()
        .args(["--user", "list", "--columns=application"])
        .run();
    assert!(listed.contains(APP) && listed.contains(RUNTIME), "{listed}");
    assert_eq!(fx.installed_app(APP), format!("#!/bin/sh\necho {APP} 2\n"));
    let out = flatpak()
        .args([
            "--user",
            "install",
            "-y",
            "--noninteractive",
            "test",
            OTHER_APP,
        ])
        .output();
    assert!(!out.status.success(), "installed an app the license lacks");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("403"), "{err}");

    // The gated downloads are in the audit records, under the token's id.
    let jti = claims(&jwt)["jti"].as_str().unwrap().to_owned();
    let downloads = s.wait_for_audit("downloads", "limit=1000", 1);
    assert!(
        downloads
            .iter()
            .all(|d| d["ref"] == json!(g.app_ref) && d["token_id"] == json!(jti)),
        "{downloads:?}"
    );
}

#[test]
fn two_hundred_clients_at_once() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "");
    let key = license_for_paid(&s);
    let addr = s.server.addr;
    const CLIENTS: usize = 200;
    const WRITERS: usize = 10;
    let barrier = Arc::new(Barrier::new(CLIENTS + WRITERS));
    let mut threads = Vec::new();
    for _ in 0..CLIENTS {
        let (barrier, key, app) = (Arc::clone(&barrier), key.clone(), g.app_ref.clone());
        threads.push(std::thread::spawn(move || {
            barrier.wait();
            http::json(
                addr,
                "POST",
                "/api/v1/tokens",
                Some(&bearer(&key)),
                Some(&json!({ "refs": [app] })),
            )
        }));
    }
    // Admin writes at the same time, so that the audit writer is not the only writer.
    for i in 0..WRITERS {
        let barrier = Arc::clone(&barrier);
        threads.push(std::thread::spawn(move || {
            barrier.wait();
            http::json(
                addr,
                "POST",
                "/api/v1/admin/licenses",
                Some(&bearer(ADMIN_TOKEN)),
                Some(&json!({"products": ["paid"], "note": format!("writer {i}")})),
            )
        }));
    }
    let answers: Vec<(u16, Value)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let (tokens, writes) = answers.split_at(CLIENTS);
    for (status, answer) in tokens {
        assert_eq!(*status, 200, "{answer}");
        assert!(signed_token(answer).is_some(), "{answer}");
    }
    for (status, answer) in writes {
        assert_eq!(*status, 201, "{answer}");
    }
    // A clean stop writes every record still queued.
    let status = s.server.stop();
    assert!(status.success());
    let audit = Cmd::new(tollgate_bin())
        .args(["admin", "--json", "--data-dir"])
        .arg(&g.data)
        .args(["audit", "--limit", "1000"])
        .run();
    let audit: Vec<Value> = serde_json::from_str(&audit).unwrap();
    assert_eq!(audit.len(), CLIENTS, "issued tokens recorded");
    let licenses = Cmd::new(tollgate_bin())
        .args(["admin", "--json", "--data-dir"])
        .arg(&g.data)
        .args(["license", "list"])
        .run();
    let licenses: Vec<Value> = serde_json::from_str(&licenses).unwrap();
    assert_eq!(licenses.len(), WRITERS + 1);
}

/// What the server acknowledged to one writer: licenses (id, key), and tokens.
type Acknowledged = (Vec<(String, String)>, Vec<String>);

/// Writers that create licenses and get tokens as fast as they can until the server is gone.
fn write_until_killed(
    addr: std::net::SocketAddr,
    key: &str,
    app: &str,
    round: usize,
) -> Vec<std::thread::JoinHandle<Acknowledged>> {
    (0..4)
        .map(|w| {
            let (key, app) = (key.to_owned(), app.to_owned());
            std::thread::spawn(move || {
                let (mut licenses, mut tokens) = (Vec::new(), Vec::new());
                for n in 0.. {
                    let (path, auth, body) = if n % 2 == 0 {
                        ("/api/v1/tokens", bearer(&key), json!({ "refs": [app] }))
                    } else {
                        (
                            "/api/v1/admin/licenses",
                            bearer(ADMIN_TOKEN),
                            json!({"products": ["paid"], "note": format!("{round}-{w}-{n}")}),
                        )
                    };
                    let sent = http::try_request_with_body_from(
                        None,
                        addr,
                        "POST",
                        path,
                        &[
                            ("Authorization", &auth),
                            ("Content-Type", "application/json"),
                        ],
                        body.to_string().as_bytes(),
                    );
                    match sent {
                        Ok(r) if r.status == 201 => {
                            let answer: Value = serde_json::from_slice(&r.body).unwrap();
                            licenses.push((
                                answer["id"].as_str().unwrap().to_owned(),
                                answer["key"].as_str().unwrap().to_owned(),
                            ));
                        }
                        Ok(r) if r.status == 200 => {
                            let answer: Value = serde_json::from_slice(&r.body).unwrap();
                            if let Some((token, _)) = signed_token(&answer) {
                                tokens.push(token);
                            }
                        }
                        Ok(_) => {}
                        // The connection broke: the server is gone.
                        Err(_) => break,
                    }
                }
                (licenses, tokens)
            })
        })
        .collect()
}

#[test]
fn the_database_survives_kill_9_during_writes() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let mut s = Service::start(&fx, &g, None, "");
    let key = license_for_paid(&s);
    let head = format!("/refs/heads/{}", g.app_ref);
    let (mut licenses, mut tokens) = (Vec::new(), Vec::new());
    // Three rounds of writes cut short by SIGKILL at a different moment each.
    for (round, after) in [1500u64, 900, 2300].into_iter().enumerate() {
        let writers = write_until_killed(s.server.addr, &key, &g.app_ref, round);
        std::thread::sleep(Duration::from_millis(after));
        let Service { args, env, server } = s;
        // Dropping a server kills it with SIGKILL.
        drop(server);
        for writer in writers {
            let (l, t) = writer.join().unwrap();
            licenses.extend(l);
            tokens.extend(t);
        }
        s = Service {
            server: launch(&args, &env),
            args,
            env,
        };
    }
    assert!(
        licenses.len() > 5 && tokens.len() > 5,
        "few writes before the kills: {} licenses, {} tokens",
        licenses.len(),
        tokens.len()
    );

    // Every license the server confirmed is there, and every license there is whole: nothing
    // half-written is visible.
    let listed = Cmd::new(tollgate_bin())
        .args(["admin", "--json", "--data-dir"])
        .arg(&g.data)
        .args(["license", "list"])
        .run();
    let listed: Vec<Value> = serde_json::from_str(&listed).unwrap();
    let ids: Vec<&str> = listed.iter().map(|l| l["id"].as_str().unwrap()).collect();
    for (id, _) in &licenses {
        assert!(ids.contains(&id.as_str()), "license {id} lost in a crash");
    }
    for license in &listed {
        assert_eq!(license["products"], json!(["paid"]), "{license}");
    }
    // Acknowledged keys and tokens still work after the restarts.
    for (id, license_key) in licenses.iter().step_by(licenses.len() / 5) {
        let (status, answer) =
            s.tokens(Some(&bearer(license_key)), &json!({ "refs": [g.app_ref] }));
        assert_eq!(status, 200, "license {id}: {answer}");
    }
    for token in tokens.iter().step_by(tokens.len() / 5) {
        assert_eq!(
            fetch(&s.server, &head, Some(token)).status,
            200,
            "a token issued before a crash"
        );
    }
    // The database takes new writes.
    s.admin_ok(
        201,
        "POST",
        "products",
        Some(json!({"slug": "after", "name": "After", "refs": ["app/x/*"]})),
    );
    let (status, answer) = s.tokens(Some(&bearer(&key)), &json!({ "refs": [g.app_ref] }));
    assert_eq!(status, 200, "{answer}");
}

/// A client at its own loopback address.
fn client(n: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
}

fn tokens_from(s: &Service, source: Option<IpAddr>, authorization: &str, body: &Value) -> Response {
    http::request_with_body_from(
        source,
        s.server.addr,
        "POST",
        "/api/v1/tokens",
        &[
            ("Authorization", authorization),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

fn assert_limited(r: &Response, window: u64) {
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    let answer: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(error_type(&answer), "too-many-failures");
    let retry: u64 = r
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=window).contains(&retry), "Retry-After: {retry}");
}

#[test]
fn the_limiter_stops_guessing_per_address_and_per_account() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "max-failures = 3\nfailure-window = 60");
    let key = license_for_paid(&s);
    let second = s.admin_ok(201, "POST", "licenses", Some(json!({"products": ["paid"]})));
    let second_key = second["key"].as_str().unwrap().to_owned();
    let ask = json!({ "refs": [g.app_ref] });
    let random_key = |n: u8| {
        format!(
            "tg_{}_{}",
            "a".repeat(9) + "b",
            "x".repeat(42) + &n.to_string()
        )
    };

    // One address guessing: three wrong guesses, then even the right key is refused there, and
    // only there.
    for n in 0..3 {
        assert_eq!(
            tokens_from(&s, client(2), &bearer(&random_key(n)), &ask).status,
            401
        );
    }
    assert_limited(&tokens_from(&s, client(2), &bearer(&key), &ask), 60);
    assert_eq!(tokens_from(&s, client(3), &bearer(&key), &ask).status, 200);
    let admin_from = |n: u8, token: &str| {
        http::request_with_body_from(
            client(n),
            s.server.addr,
            "GET",
            "/api/v1/admin/products",
            &[("Authorization", &bearer(token))],
            b"",
        )
    };
    assert_eq!(
        admin_from(2, ADMIN_TOKEN).status,
        200,
        "customers' failures do not lock out the admin API"
    );

    // Guesses sent all at once are not all checked: the limiter engages within about
    // max-failures of them, whatever the concurrency.
    let guesses: Vec<u16> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..40u8)
            .map(|n| {
                let (s, ask) = (&s, &ask);
                scope.spawn(move || {
                    // Each guess at a license id of its own: only the address limits them.
                    let id = format!(
                        "zzzzzzzz{}{}",
                        char::from(b'a' + n / 26),
                        char::from(b'a' + n % 26)
                    );
                    let guess = format!("tg_{id}_{}", "x".repeat(43));
                    tokens_from(s, client(20), &bearer(&guess), ask).status
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let checked = guesses.iter().filter(|s| **s == 401).count();
    let limited = guesses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + limited, guesses.len(), "{guesses:?}");
    assert!(
        (3..6).contains(&checked),
        "{checked} of 40 simultaneous guesses were checked"
    );

    // One account's password guessed at from many addresses: that account is refused
    // everywhere, the others not (a license key id is not: see the next test).
    for name in ["carol", "dave"] {
        s.admin_ok(
            201,
            "POST",
            "accounts",
            Some(json!({"name": name, "password": PASSWORD, "products": ["paid"]})),
        );
    }
    for n in 4..7 {
        assert_eq!(
            tokens_from(&s, client(n), &basic("carol", "a wrong guess"), &ask).status,
            401
        );
    }
    assert_limited(
        &tokens_from(&s, client(7), &basic("carol", PASSWORD), &ask),
        60,
    );
    assert_eq!(
        tokens_from(&s, client(7), &basic("dave", PASSWORD), &ask).status,
        200
    );
    assert_eq!(
        tokens_from(&s, client(7), &bearer(&second_key), &ask).status,
        200
    );

    // Wrong admin tokens count too, apart from customers' failures.
    for _ in 0..3 {
        assert_eq!(
            admin_from(8, "a wrong admin token, long enough").status,
            401
        );
    }
    assert_limited(&admin_from(8, ADMIN_TOKEN), 60);
    assert_eq!(admin_from(9, ADMIN_TOKEN).status, 200);
    assert_eq!(
        tokens_from(&s, client(8), &bearer(&second_key), &ask).status,
        200,
        "admin failures do not lock out customers"
    );
}

#[test]
fn wrong_secrets_for_a_license_key_id_do_not_lock_its_owner_out() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "max-failures = 3\nfailure-window = 60");
    let key = license_for_paid(&s);
    let ask = json!({ "refs": [g.app_ref] });
    // tg_<id>_<secret>: the id is no secret (it shows in the audit and to support), the secret
    // has 256 bits.
    let (id, secret) = key
        .strip_prefix("tg_")
        .and_then(|rest| rest.split_once('_'))
        .expect("tg_ID_SECRET");
    let guess = |n: usize| {
        let mut wrong: Vec<u8> = secret.bytes().collect();
        let last = wrong.len() - 1 - n % wrong.len();
        wrong[last] = if wrong[last] == b'A' { b'B' } else { b'A' };
        format!("tg_{id}_{}", String::from_utf8(wrong).unwrap())
    };

    // Many wrong secrets for that id from one address: that address is refused...
    for n in 0..3 {
        assert_eq!(
            tokens_from(&s, client(2), &bearer(&guess(n)), &ask).status,
            401
        );
    }
    for n in 3..10 {
        assert_limited(&tokens_from(&s, client(2), &bearer(&guess(n)), &ask), 60);
    }
    assert_limited(&tokens_from(&s, client(2), &bearer(&key), &ask), 60);
    // ...and from a few more, each under its own limit.
    for n in 3..6u8 {
        for m in 0..2 {
            let r = tokens_from(&s, client(n), &bearer(&guess(usize::from(n) * 2 + m)), &ask);
            assert_eq!(r.status, 401);
        }
    }
    // The owner, elsewhere, still gets tokens.
    let r = tokens_from(&s, client(1), &bearer(&key), &ask);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let answer: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(signed_token(&answer).expect("a token").1, [g.app_ref]);
}

/// The median of `samples`.
fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// How `a` and `b` compare in time, measured in pairs run back to back (in alternating order),
/// so that the machine's load, which comes and goes over seconds here, falls on both sides of
/// each pair alike: the median time of each, and the median of the pairs' differences relative
/// to the median time. Timing differences the server leaks show up in that last figure.
fn paired_timing(pairs: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64, f64) {
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        start.elapsed().as_secs_f64() * 1e6
    };
    let (mut ta, mut tb, mut differences) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..pairs {
        let (x, y) = if i % 2 == 0 {
            let x = time(&mut a);
            (x, time(&mut b))
        } else {
            let y = time(&mut b);
            (time(&mut a), y)
        };
        ta.push(x);
        tb.push(y);
        differences.push(x - y);
    }
    let (ma, mb) = (median(ta), median(tb));
    (ma, mb, median(differences) / ma.min(mb))
}

#[test]
fn unknown_ids_and_wrong_secrets_take_the_same_time() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "max-failures = 1000000");
    let key = license_for_paid(&s);
    s.admin_ok(
        201,
        "POST",
        "accounts",
        Some(json!({"name": "bob", "password": PASSWORD, "products": ["paid"]})),
    );
    let ask = json!({ "refs": [g.app_ref] });
    let (id, secret) = key["tg_".len()..].split_once('_').unwrap();
    let mut wrong_secret = format!("tg_{id}_{secret}");
    wrong_secret.pop();
    wrong_secret.push(if secret.ends_with('A') { 'B' } else { 'A' });
    let unknown_id = format!(
        "tg_{}_{secret}",
        if id == "zzzzzzzzzz" {
            "yyyyyyyyyy"
        } else {
            "zzzzzzzzzz"
        }
    );
    let refused = |auth: &str| {
        let (status, answer) = s.tokens(Some(auth), &ask);
        assert_eq!(status, 401, "{answer}");
    };
    // The same query either way: a license id is looked up by its index, then the secret's hash
    // is compared in constant time (or a stand-in's, when the id is unknown). A test cannot see
    // a difference: pairs a fifth apart would be plain over 400 of them.
    let (known, unknown, apart) = paired_timing(
        400,
        || refused(&bearer(&wrong_secret)),
        || refused(&bearer(&unknown_id)),
    );
    assert!(
        apart.abs() <= 0.2,
        "a wrong secret takes {known:.0} µs (median), an unknown id {unknown:.0} µs: pairs differ \
         by {:.0}%",
        apart * 100.0
    );
    // Accounts: an unknown name costs a password hash too, so it is not told by its speed.
    // Without the stand-in hash it would answer in a tenth of the time (pairs ~90% apart).
    let (known, unknown, apart) = paired_timing(
        40,
        || refused(&basic("bob", "not the password")),
        || refused(&basic("nobody", "not the password")),
    );
    assert!(
        apart.abs() <= 0.3,
        "a wrong password takes {known:.0} µs (median), an unknown account {unknown:.0} µs: \
         pairs differ by {:.0}%",
        apart * 100.0
    );
}

/// A signed token for `ask` with the license `key`.
pub(crate) fn token_for(s: &Service, key: &str, ask: &Value) -> String {
    let (status, answer) = s.tokens(Some(&bearer(key)), ask);
    assert_eq!(status, 200, "{answer}");
    signed_token(&answer).unwrap().0
}

/// The key ids the server publishes.
fn published_kids(s: &Service) -> Vec<String> {
    let r = http::get(s.server.addr, "/.well-known/jwks.json");
    let set: Value = serde_json::from_slice(&r.body).unwrap();
    let mut kids: Vec<String> = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

#[test]
fn keys_rotate_while_serving() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let mut s = Service::start(&fx, &g, None, "");
    let key = license_for_paid(&s);
    let ask = json!({ "refs": [g.app_ref] });
    let old = token_for(&s, &key, &ask);
    let old_kid = kid(&old);
    assert_eq!(published_kids(&s), std::slice::from_ref(&old_kid));

    // A rotation published in another database: the server keeps signing with the key its own
    // database publishes, and says why.
    let elsewhere = Postgres::start();
    let url = elsewhere.database("elsewhere");
    Cmd::new(tollgate_bin())
        .args(["keys", "rotate", "--data-dir"])
        .arg(&g.data)
        .args(["--database-url", &url])
        .run();
    s.server
        .wait_for_log("is not published in the database", Duration::from_secs(30));
    assert_eq!(kid(&token_for(&s, &key, &ask)), old_kid);
    // A rotation whose database cannot be reached makes no key at all.
    let err = Cmd::new(tollgate_bin())
        .args(["keys", "rotate", "--data-dir"])
        .arg(&g.data)
        .args(["--database-url", "postgres://tollgate@127.0.0.1:1/nothing"])
        .run_fail();
    assert!(err.contains("opening the database"), "{err}");
    assert_eq!(
        std::fs::read_dir(g.data.join("keys")).unwrap().count(),
        2,
        "the first key, and the one published elsewhere"
    );

    // A rotation in the server's own database: it signs with the new key within seconds; both
    // keys stay published and trusted.
    let rotated = Cmd::new(tollgate_bin())
        .args(["keys", "rotate", "--data-dir"])
        .arg(&g.data)
        .run();
    let deadline = Instant::now() + Duration::from_secs(30);
    let new = loop {
        let t = token_for(&s, &key, &ask);
        if kid(&t) != old_kid {
            break t;
        }
        assert!(Instant::now() < deadline, "still signing with {old_kid}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let new_kid = kid(&new);
    assert!(rotated.contains(&new_kid), "rotate printed {rotated:?}");
    let mut want = vec![old_kid, new_kid];
    want.sort();
    assert_eq!(published_kids(&s), want);
    verify_with_jwks(&s.server, &old);
    verify_with_jwks(&s.server, &new);
    let head = format!("/refs/heads/{}", g.app_ref);
    assert_eq!(
        fetch(&s.server, &head, Some(&old)).status,
        200,
        "the old token"
    );
    assert_eq!(
        fetch(&s.server, &head, Some(&new)).status,
        200,
        "the new token"
    );
}

pub(crate) fn set_license_active(through: &Service, id: &str, active: bool) {
    let path = format!("licenses/{id}");
    through.admin_ok(200, "PATCH", &path, Some(json!({ "active": active })));
}

/// Deactivates the only license through `through` and checks that `other`, sharing its
/// database, refuses it a new token 100 ms later (what an instance keeps in memory is trusted
/// no longer than 50 ms); the license's id.
pub(crate) fn deactivate_and_check_refused(
    through: &Service,
    other: &Service,
    key: &str,
    ask: &Value,
) -> String {
    let id = through.admin_ok(200, "GET", "licenses", None)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    set_license_active(through, &id, false);
    std::thread::sleep(Duration::from_millis(100));
    let (status, answer) = other.tokens(Some(&bearer(key)), ask);
    assert_eq!(
        (status, error_type(&answer)),
        (401, "license-inactive"),
        "{answer}"
    );
    id
}

#[test]
fn instances_sharing_a_postgresql_database_act_as_one_service() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let postgres = Postgres::start();
    let url = postgres.database("shared");
    let a = Service::start(&fx, &g, Some(&url), "");
    let key = license_for_paid(&a);
    // A second instance: the same repository and database, a data directory (and signing key)
    // of its own.
    let b_repo = GatedRepo {
        repo: g.repo.clone(),
        data: fx.join("data-b"),
        config: g.config.clone(),
        runtime_ref: g.runtime_ref.clone(),
        app_ref: g.app_ref.clone(),
    };
    let b = Service::start(&fx, &b_repo, Some(&url), "");
    let ask = json!({ "refs": [g.app_ref] });
    let (from_a, from_b) = (token_for(&a, &key, &ask), token_for(&b, &key, &ask));
    assert_ne!(kid(&from_a), kid(&from_b), "each signs with its own key");

    // Starting B retired nothing of A's: both keys sign, and both are published.
    let signing = postgres.query(
        "shared",
        "SELECT kid FROM signing_keys WHERE retired IS NULL ORDER BY kid",
    );
    let mut kids = vec![kid(&from_a), kid(&from_b)];
    kids.sort();
    assert_eq!(signing.lines().collect::<Vec<_>>(), kids);
    assert_eq!(published_kids(&a).len(), 2);

    // Each instance's tokens open the gated ref on the other (A learns of B's key within its
    // next look at the database).
    let head = format!("/refs/heads/{}", g.app_ref);
    assert_eq!(fetch(&b.server, &head, Some(&from_a)).status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while fetch(&a.server, &head, Some(&from_b)).status != 200 {
        assert!(Instant::now() < deadline, "A never trusted B's key");
        std::thread::sleep(Duration::from_millis(500));
    }

    // A key rotated on A reaches B: A signs with its new key within seconds, and B, which
    // reads the published keys from the database, honours the new key's tokens.
    Cmd::new(tollgate_bin())
        .args(["keys", "rotate", "--data-dir"])
        .arg(&g.data)
        .args(["--database-url", &url])
        .run();
    let deadline = Instant::now() + Duration::from_secs(30);
    let rotated = loop {
        let t = token_for(&a, &key, &ask);
        if kid(&t) != kid(&from_a) {
            break t;
        }
        assert!(Instant::now() < deadline, "A still signs with its old key");
        std::thread::sleep(Duration::from_millis(500));
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while fetch(&b.server, &head, Some(&rotated)).status != 200 {
        assert!(Instant::now() < deadline, "B never trusted A's rotated key");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        fetch(&b.server, &head, Some(&from_a)).status,
        200,
        "A's old key still verifies"
    );

    // The audit is one: A lists the token B issued.
    // (The writer writes in batches: wait for these three, not for any three.)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let issued = a.wait_for_audit("tokens", "limit=1000", 1);
        let missing: Vec<Value> = [&from_a, &from_b, &rotated]
            .iter()
            .map(|t| claims(t)["jti"].clone())
            .filter(|jti| !issued.iter().any(|t| &t["jti"] == jti))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{missing:?} not in {issued:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A license deactivated through A gets no new token from B once B's reading of the
    // database's change counter is older than 50 ms (what it keeps in memory is trusted no
    // longer than that). A token already issued lives out its short life.
    let id = deactivate_and_check_refused(&a, &b, &key, &ask);
    assert_eq!(fetch(&b.server, &head, Some(&from_b)).status, 200);

    // And one reactivated through B is honoured by A again.
    set_license_active(&b, &id, true);
    std::thread::sleep(Duration::from_millis(100));
    let (status, answer) = a.tokens(Some(&bearer(&key)), &ask);
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn the_admin_commands_share_the_database_with_the_server() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "");
    let admin = |args: &[&str]| {
        Cmd::new(tollgate_bin())
            .args(["admin", "--data-dir"])
            .arg(&g.data)
            .args(args)
    };
    let app_pattern = format!("app/{APP}/*");
    let table = admin(&[
        "product",
        "add",
        "paid",
        "--name",
        "Paid",
        "--ref",
        &app_pattern,
    ])
    .run();
    assert!(
        table.starts_with("SLUG") && table.contains(&app_pattern),
        "{table}"
    );
    let created = admin(&[
        "--json",
        "license",
        "add",
        "--product",
        "paid",
        "--note",
        "cli",
    ])
    .run();
    let created: Value = serde_json::from_str(&created).unwrap();
    let key = created["key"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    admin(&["account", "add", "carol", "--product", "paid"])
        .stdin(format!("{PASSWORD}\n"))
        .run();

    // What the commands wrote, the running server uses.
    let ask = json!({ "refs": [g.app_ref] });
    assert_eq!(s.tokens(Some(&bearer(key)), &ask).0, 200);
    assert_eq!(s.tokens(Some(&basic("carol", PASSWORD)), &ask).0, 200);

    // The commands write while the server writes too (audit records of a stream of token
    // requests): neither side gets "database is locked".
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = {
        let (stop, addr, auth, ask) = (Arc::clone(&stop), s.server.addr, bearer(key), ask.clone());
        std::thread::spawn(move || {
            let mut issued = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, answer) =
                    http::json(addr, "POST", "/api/v1/tokens", Some(&auth), Some(&ask));
                assert_eq!(status, 200, "{answer}");
                issued += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            issued
        })
    };
    for i in 0..20 {
        admin(&["license", "update", id, "--note", &format!("note {i}")]).run();
        admin(&["product", "update", "paid", "--name", &format!("Paid {i}")]).run();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let issued_meanwhile = loader.join().unwrap();
    assert!(
        (10..900).contains(&issued_meanwhile),
        "{issued_meanwhile} tokens during the writes"
    );
    let log = s.server.log();
    assert!(!log.contains("locked"), "{log}");
    let listed = admin(&["license", "list"]).run();
    let header = listed.lines().next().unwrap_or_default();
    assert!(header.starts_with("ID") && listed.contains(id), "{listed}");
    assert!(!listed.contains(key), "the key is never listed: {listed}");
    // The server keeps licenses and products in memory and reads a counter of changes at most
    // every 50 ms: a change made by another process reaches it within that.
    let reached = || std::thread::sleep(Duration::from_millis(150));
    admin(&["license", "deactivate", id]).run();
    reached();
    let (status, answer) = s.tokens(Some(&bearer(key)), &ask);
    assert_eq!((status, error_type(&answer)), (401, "license-inactive"));
    admin(&["license", "activate", id]).run();
    reached();
    assert_eq!(s.tokens(Some(&bearer(key)), &ask).0, 200);
    let table = admin(&["product", "deactivate", "paid"]).run();
    assert!(table.contains("inactive"), "{table}");
    reached();
    let (_, answer) = s.tokens(Some(&bearer(key)), &ask);
    assert_eq!(answer["denied"][&g.app_ref], "product-inactive", "{answer}");
    admin(&["product", "activate", "paid"]).run();

    // The audit, as the server wrote it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let audit: Vec<Value> = serde_json::from_str(
            &admin(&["--json", "audit", "--license", id, "--limit", "1000"]).run(),
        )
        .unwrap();
        if audit.len() == 2 + issued_meanwhile {
            break;
        }
        assert!(Instant::now() < deadline, "audit records: {audit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Mistakes: a non-zero exit and a message naming what is wrong.
    let err = admin(&["product", "add", "Bad Slug", "--name", "x", "--ref", "x"]).run_fail();
    assert!(err.contains("Bad Slug"), "{err}");
    let err = admin(&["license", "show", "nope"]).run_fail();
    assert!(err.contains("not found"), "{err}");
    let err = admin(&["license", "add", "--product", "nope"]).run_fail();
    assert!(err.contains("nope") && err.contains("not found"), "{err}");
    let err = admin(&["license", "update", id, "--expires", "soon"]).run_fail();
    assert!(err.contains("soon"), "{err}");
    let err = admin(&["account", "add", "dave", "--product", "paid"])
        .stdin("short\n")
        .run_fail();
    assert!(err.contains("8 to 1024"), "{err}");
    let products: Value =
        serde_json::from_str(&admin(&["--json", "product", "list"]).run()).unwrap();
    assert_eq!(products.as_array().unwrap().len(), 1, "{products}");
    let licenses: BTreeMap<String, Value> =
        serde_json::from_str::<Vec<Value>>(&admin(&["--json", "license", "list"]).run())
            .unwrap()
            .into_iter()
            .map(|l| (l["id"].as_str().unwrap().to_owned(), l))
            .collect();
    assert_eq!(licenses.len(), 1);
    assert_eq!(licenses[id]["active"], true);
}

#[test]
fn bad_entitlement_settings_stop_the_server_with_a_reason() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    for (settings, env_token, expected) in [
        ("token-ttl = 10", None, "token-ttl"),
        ("token-ttl = 99999999", None, "token-ttl"),
        ("max-failures = 0", None, "max-failures"),
        ("tokenttl = 5", None, "tokenttl"),
        ("", Some("short"), "at least 16 characters"),
    ] {
        let config = fx.join("bad.toml");
        std::fs::write(&config, format!("[entitlements]\n{settings}\n")).unwrap();
        let mut cmd = Cmd::new(tollgate_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--repo"])
            .arg(&g.repo)
            .arg("--data-dir")
            .arg(&g.data)
            .arg("--config")
            .arg(&config)
            .envs(fx.env());
        if let Some(token) = env_token {
            cmd = cmd.env("TOLLGATE_ADMIN_TOKEN", token);
        }
        let err = cmd.timeout(Duration::from_secs(30)).run_fail();
        assert!(err.contains(expected), "{settings:?}: {err}");
    }
}

#[test]
fn the_entitlements_endpoint_says_what_a_credential_opens_and_nothing_to_others() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "");
    let key = license_for_paid(&s);
    let ask = |authorization: Option<&str>| {
        http::json(
            s.server.addr,
            "GET",
            "/api/v1/entitlements",
            authorization,
            None,
        )
    };
    let (status, answer) = ask(Some(&bearer(&key)));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({
            "kind": "license",
            "products": [{"slug": "paid", "name": "Paid", "refs": [format!("app/{APP}/*")], "active": true}],
            "expires": null,
        })
    );
    let (status, answer) = ask(None);
    assert_eq!(
        (status, &answer["error-type"]),
        (401, &json!("credentials-required"))
    );
    let (status, answer) = ask(Some(&bearer("tg_0000000000000000_notakey")));
    assert_eq!(
        (status, &answer["error-type"]),
        (401, &json!("invalid-credentials"))
    );
    let (status, answer) = ask(Some(&basic("nobody", PASSWORD)));
    assert_eq!(
        (status, &answer["error-type"]),
        (401, &json!("invalid-credentials"))
    );

    // An account shows its name; a revoked license says so.
    s.admin_ok(
        201,
        "POST",
        "accounts",
        Some(json!({"name": "alice", "password": PASSWORD, "products": ["paid"]})),
    );
    let (status, answer) = ask(Some(&basic("alice", PASSWORD)));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (&answer["kind"], &answer["account"]),
        (&json!("account"), &json!("alice"))
    );
    let id = s.admin_ok(200, "GET", "licenses", None)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.admin_ok(
        200,
        "PATCH",
        &format!("licenses/{id}"),
        Some(json!({"active": false})),
    );
    let (status, answer) = ask(Some(&bearer(&key)));
    assert_eq!(
        (status, &answer["error-type"]),
        (401, &json!("license-inactive"))
    );

    let (status, _) = http::json(
        s.server.addr,
        "POST",
        "/api/v1/entitlements",
        None,
        Some(&json!({})),
    );
    assert_eq!(status, 405);
    // Checking issues nothing.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        s.admin_ok(200, "GET", "audit/tokens?limit=10", None)["items"],
        json!([])
    );
}

#[test]
fn wrong_credentials_at_the_entitlements_endpoint_count_towards_the_limit() {
    let fx = Fixture::new();
    let g = gated_repo(&fx);
    let s = Service::start(&fx, &g, None, "max-failures = 2\nfailure-window = 60");
    let key = license_for_paid(&s);
    let ask = |authorization: &str| {
        http::json(
            s.server.addr,
            "GET",
            "/api/v1/entitlements",
            Some(authorization),
            None,
        )
        .0
    };
    assert_eq!(ask(&bearer("tg_0000000000000000_notakey")), 401);
    assert_eq!(ask(&bearer("tg_0000000000000000_notakey")), 401);
    // Past the limit even the right key waits, here and at /api/v1/tokens.
    assert_eq!(ask(&bearer(&key)), 429);
    let (status, _) = s.tokens(Some(&bearer(&key)), &json!({"refs": [g.app_ref]}));
    assert_eq!(status, 429);
}
