//! P2P pulls, as far as they are built: the real libostree finding a gated repository's refs
//! through `ostree find-remotes`; the trusted-mirror list and the options each place a ref was
//! found at gets, printed by `tollgate-helper p2p-options` with tokens from the real
//! entitlement service.

use crate::authenticator::Setup;
use crate::fixture::{Fixture, sample_tree};
use crate::gating::{APP, RUNTIME};
use crate::server::Server;

const MIRROR: &str = "http://mirror.test";
const USB: &str = "file:///media/usb/.ostree/repo";

#[test]
fn p2p_options_give_the_token_only_to_the_origin_and_trusted_mirrors() {
    let t = Setup::new();
    let origin = t.s.server.url();
    let origin = origin.trim_end_matches('/');
    t.login(origin, &t.key).run();
    let (app, runtime) = (&t.g.app_ref, &t.g.runtime_ref);
    assert!(app.contains(APP) && runtime.contains(RUNTIME));
    // The tokens the pull gets, from the same cache.
    let printed: serde_json::Value =
        serde_json::from_str(&t.helper().args(["token", origin, app, runtime]).run())
            .expect("JSON");
    let token = printed["tokens"]
        .as_object()
        .expect("tokens")
        .keys()
        .find(|k| !k.is_empty())
        .expect("a token")
        .clone();
    let bearer = format!("{{'http-headers': <[('Authorization', 'Bearer {token}')]>}}");
    let options = |results: &[String]| {
        let mut cmd = t.helper().args(["p2p-options", "--origin", origin]);
        for r in results {
            cmd = cmd.args(["--result", r]);
        }
        cmd.run()
    };
    let results = [
        format!("{origin}/={app},{runtime}"),
        format!("{MIRROR}/={app},{runtime}"),
        format!("{USB}={runtime}"),
    ];

    let none = t.helper().args(["trust", "list"]).run();
    assert!(none.contains("no trusted mirrors"), "{none}");
    assert_eq!(
        options(&results),
        format!(
            "{origin}/ (origin): {runtime}\n@a{{sv}} {{}}\n\
             {origin}/ (origin): {app}\n{bearer}\n\
             {MIRROR}/ (not trusted): {runtime}\n@a{{sv}} {{}}\n\
             {USB} (not trusted): {runtime}\n@a{{sv}} {{}}\n"
        )
    );

    // Trusted, the mirror gets the token for the gated ref too; the list keeps the file's
    // other settings and comments.
    let config = t.fx.join("home/.config/tollgate/helper.toml");
    std::fs::create_dir_all(config.parent().expect("dir")).expect("mkdir");
    std::fs::write(&config, "# mine\nprovider-timeout = 20\n").expect("helper.toml");
    let said = t
        .helper()
        .args(["trust", "add", "HTTP://Mirror.test:80/"])
        .run();
    assert!(said.contains(&format!("trusted {MIRROR}")), "{said}");
    t.helper().args(["trust", "add", MIRROR]).run();
    assert_eq!(
        t.helper().args(["trust", "list"]).run(),
        format!("{MIRROR}\n")
    );
    let text = std::fs::read_to_string(&config).expect("helper.toml");
    assert!(
        text.starts_with("# mine\nprovider-timeout = 20\n") && text.contains(MIRROR),
        "{text}"
    );
    assert_eq!(
        options(&results),
        format!(
            "{origin}/ (origin): {runtime}\n@a{{sv}} {{}}\n\
             {origin}/ (origin): {app}\n{bearer}\n\
             {MIRROR}/ (trusted): {runtime}\n@a{{sv}} {{}}\n\
             {MIRROR}/ (trusted): {app}\n{bearer}\n\
             {USB} (not trusted): {runtime}\n@a{{sv}} {{}}\n"
        )
    );

    // Untrusted again: with only the mirror having the gated ref, it is tried there without
    // the token, and the output says why.
    t.helper().args(["trust", "remove", MIRROR]).run();
    let err = t.helper().args(["trust", "remove", MIRROR]).run_fail();
    assert!(err.contains("was not trusted"), "{err}");
    assert_eq!(
        options(&[format!("{MIRROR}/={app}")]),
        format!(
            "{MIRROR}/ (not trusted): {app} (without the token for {app}: only untrusted places \
             have it)\n@a{{sv}} {{}}\n"
        )
    );
    let err = t
        .helper()
        .args(["p2p-options", "--origin", origin, "--result", "no-refs="])
        .run_fail();
    assert!(err.contains("is not URL=REF"), "{err}");
}

#[test]
fn find_remotes_learns_a_gated_repositorys_refs_from_its_summary_alone() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let repo = fx.join("srv");
    fx.ostree(&repo)
        .args(["init", "--mode=archive", "--collection-id=org.example.Shop"])
        .run();
    let paid = fx.commit(&repo, "os/paid", &tree, "paid");
    let free = fx.commit(&repo, "os/free", &tree, "free");
    let config = fx.join("tollgate.toml");
    std::fs::write(&config, "gated-refs = [\"os/paid\"]\n").expect("config");
    let server = Server::serve(
        &[
            "--repo",
            repo.to_str().expect("UTF-8"),
            "--config",
            config.to_str().expect("UTF-8"),
        ],
        fx.env(),
    );
    let client = fx.join("client");
    fx.ostree(&client).args(["init", "--mode=bare-user"]).run();
    fx.ostree(&client)
        .args([
            "remote",
            "add",
            "--no-gpg-verify",
            "--collection-id=org.example.Shop",
            "origin",
            &server.url(),
        ])
        .run();

    // libostree's config finder: both refs found at the origin, with their commits.
    let found = fx
        .ostree(&client)
        .args(["find-remotes", "--finders=config"])
        .args(["org.example.Shop", "os/paid", "org.example.Shop", "os/free"])
        .run();
    assert!(
        found.contains(&format!("Result 0: {}", server.url())),
        "{found}"
    );
    assert!(
        found.contains(&format!("(org.example.Shop, os/paid) = {paid}")),
        "{found}"
    );
    assert!(
        found.contains(&format!("(org.example.Shop, os/free) = {free}")),
        "{found}"
    );
    assert!(found.contains("2/2 refs were found."), "{found}");
    // From the summary alone (it carries the commits' timestamps): no object was asked for,
    // so no gated commit had to be opened or refused.
    let requests = server.requests_since(0);
    assert!(
        requests
            .iter()
            .any(|r| r.path == "/summary" && r.status == 200),
        "{requests:?}"
    );
    assert!(
        requests.iter().all(|r| !r.path.starts_with("/objects/")),
        "{requests:?}"
    );
}
