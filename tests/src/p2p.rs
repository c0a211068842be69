//! P2P pulls: `tollgate-helper pull --p2p` through the real libostree, from an origin and a
//! mirror (two real `tollgate serve`), a `file://` repository and a USB stick (an ext4 image
//! loop-mounted in a private mount namespace, found by the mount finder), with commits and summaries
//! signed by a real GPG key, tokens from the real entitlement service, and the servers' access
//! logs showing where the `Authorization` header went; the real libostree finding a gated
//! repository's refs through `ostree find-remotes`; the trusted-mirror list and the options
//! each place a ref was found at gets, printed by `tollgate-helper p2p-options`.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::cmd::{Cmd, require_tool};
use crate::customer::Setup;
use crate::customer::{helper, provider_dir};
use crate::fixture::{Fixture, pseudo_random, sample_tree, write_files};
use crate::gated_repo::{APP, RUNTIME};
use crate::gpg::SigningKey;
use crate::server::{Access, Server, tollgate_bin};
use crate::service::Service;

const MIRROR: &str = "http://mirror.test";
const USB: &str = "file:///media/usb/.ostree/repo";

#[test]
fn p2p_options_give_the_token_only_to_the_origin_and_trusted_mirrors() {
    let t = Setup::start();
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

const COLLECTION: &str = "org.example.Shop";
const PAID: &str = "os/paid";
const FREE: &str = "os/free";

/// A signed collection with a public ref and a gated one: served by the origin, which runs the
/// entitlement service (with a license for the gated ref), copied to a mirror served by a
/// second `tollgate serve`, and to a directory standing for a USB stick.
struct Shop {
    fx: Fixture,
    key: SigningKey,
    origin: Option<Service>,
    origin_url: String,
    mirror: Server,
    usb: PathBuf,
    providers: PathBuf,
    license: String,
    /// The commits of the gated and the public ref.
    paid: String,
    free: String,
}

impl Shop {
    fn new() -> Shop {
        let fx = Fixture::new();
        let key = SigningKey::new(&fx);
        let repo = fx.join("srv");
        fx.ostree(&repo)
            .args(["init", "--mode=archive"])
            .arg(format!("--collection-id={COLLECTION}"))
            .run();
        let free_tree = sample_tree(&fx.join("free-tree"));
        let paid_tree = sample_tree(&fx.join("paid-tree"));
        write_files(
            &paid_tree,
            &[("usr/lib/paid.bin", pseudo_random(64 * 1024, 11))],
        );
        let commit = |branch: &str, tree: &Path| {
            fx.ostree(&repo)
                .args(["commit", &format!("--branch={branch}"), "--subject=release"])
                .args(key.sign_args())
                .arg(tree)
                .run()
                .trim()
                .to_owned()
        };
        let paid = commit(PAID, &paid_tree);
        let free = commit(FREE, &free_tree);
        fx.ostree(&repo)
            .args(["summary", "-u"])
            .args(key.sign_args())
            .run();
        let mirror_repo = fx.join("mirror");
        let usb = fx.join("usb/repo");
        std::fs::create_dir_all(usb.parent().expect("parent")).expect("mkdir usb");
        for copy in [&mirror_repo, &usb] {
            Cmd::new("cp").arg("-a").arg(&repo).arg(copy).run();
        }
        let gated = format!("gated-refs = [\"{PAID}\"]\n");
        let data = |name: &str| {
            let dir = fx.join(name);
            Cmd::new(tollgate_bin())
                .args(["keys", "generate", "--data-dir"])
                .arg(&dir)
                .run();
            dir
        };
        let origin = Service::start_on(&fx, &repo, &data("origin-data"), &gated, None, "");
        origin.admin_ok(
            201,
            "POST",
            "products",
            Some(json!({"slug": "paid", "name": "Paid", "refs": [PAID]})),
        );
        let license = origin.admin_ok(201, "POST", "licenses", Some(json!({"products": ["paid"]})));
        let license = license["key"].as_str().expect("key").to_owned();
        // The mirror checks the origin's tokens with the keys the origin publishes, as a
        // mirror the origin's customers may trust would.
        let jwks = crate::http::get(origin.server.addr, "/.well-known/jwks.json");
        assert_eq!(jwks.status, 200);
        std::fs::write(fx.join("origin-jwks.json"), &jwks.body).expect("jwks");
        let mirror_config = fx.join("mirror.toml");
        std::fs::write(
            &mirror_config,
            format!("{gated}\n[tokens]\njwks-file = \"origin-jwks.json\"\n"),
        )
        .expect("mirror.toml");
        let mirror_data = data("mirror-data");
        let mirror = Server::serve(
            &[
                "--repo",
                mirror_repo.to_str().expect("UTF-8"),
                "--data-dir",
                mirror_data.to_str().expect("UTF-8"),
                "--config",
                mirror_config.to_str().expect("UTF-8"),
            ],
            fx.env(),
        );
        let providers = provider_dir(&fx, &["file"]);
        Shop {
            fx,
            key,
            origin_url: origin.server.url(),
            origin: Some(origin),
            mirror,
            usb,
            providers,
            license,
            paid,
            free,
        }
    }

    /// A new bare-user repository `name` with the origin as remote `origin`, with the
    /// collection id and the signing key.
    fn client(&self, name: &str) -> PathBuf {
        let client = self.fx.join(name);
        self.fx
            .ostree(&client)
            .args(["init", "--mode=bare-user"])
            .run();
        self.fx
            .ostree(&client)
            .args(["remote", "add"])
            .arg(format!("--collection-id={COLLECTION}"))
            .arg(format!("--gpg-import={}", self.key.public.display()))
            .args(["origin", &self.origin_url])
            .run();
        client
    }

    /// `tollgate-helper` with the file provider giving the license key for the origin.
    fn helper(&self) -> Cmd {
        helper(&self.fx, &self.providers)
            .env("TOLLGATE_URL", &self.origin_url)
            .env("TOLLGATE_LICENSE_KEY", &self.license)
    }

    /// `tollgate-helper pull --p2p` of both refs into `client` with `finders`.
    fn pull(&self, client: &Path, finders: &[String]) -> Cmd {
        let mut cmd = self.helper().args(["pull", "--p2p", "--repo"]).arg(client);
        for f in finders {
            cmd = cmd.args(["--finder", f]);
        }
        cmd.args([COLLECTION, PAID, FREE])
    }

    fn usb_url(&self) -> String {
        format!("file://{}", self.usb.display())
    }

    /// Asserts that `client` has `commit` whole, with the file only the paid tree has iff
    /// `paid`, and passes `ostree fsck`.
    fn assert_has(&self, client: &Path, commit: &str, paid: bool) {
        let listed = self
            .fx
            .ostree(client)
            .args(["ls", "-R", commit, "/usr/lib"])
            .run();
        assert_eq!(listed.contains("paid.bin"), paid, "{listed}");
        if paid {
            let bytes = self
                .fx
                .ostree(client)
                .args(["cat", commit, "/usr/lib/paid.bin"])
                .output()
                .stdout;
            assert_eq!(bytes, pseudo_random(64 * 1024, 11));
        }
        self.fx.fsck(client);
    }

    /// Whether `client` has any object of `commit` at all.
    fn lacks(&self, client: &Path, commit: &str) -> bool {
        let path = client.join(format!("objects/{}/{}.commit", &commit[..2], &commit[2..]));
        !path.exists()
    }
}

/// The requests in `log` that carried an `Authorization` header.
fn with_auth(log: &[Access]) -> Vec<&Access> {
    log.iter().filter(|a| a.auth != "-").collect()
}

#[test]
fn p2p_pull_sends_the_token_only_to_the_origin_and_trusted_mirrors() {
    let mut shop = Shop::new();
    let origin = shop.origin_url.clone();
    let mirror = shop.mirror.url();
    let usb = shop.usb_url();
    let all = [
        "config".to_owned(),
        format!("override={mirror}"),
        format!("override={usb}"),
    ];

    // Origin, untrusted mirror and USB stick: the plan first, which pulls nothing.
    let client = shop.client("client");
    let plan = shop.pull(&client, &all).arg("--dry-run").run();
    assert!(
        plan.contains(&format!(
            "{origin} (origin): {PAID}\n{{'http-headers': <[('Authorization', 'Bearer ey"
        )),
        "{plan}"
    );
    for place in [&mirror, &usb] {
        assert!(
            plan.contains(&format!("{place} (not trusted): {FREE}\n@a{{sv}} {{}}\n")),
            "{plan}"
        );
        assert!(
            !plan.contains(&format!("{place} (not trusted): {PAID}")),
            "{plan}"
        );
    }
    assert!(shop.lacks(&client, &shop.paid) && shop.lacks(&client, &shop.free));
    let err = shop.pull(&client, &["lan".to_owned()]).run_fail();
    assert!(
        err.contains("--finder \"lan\": use config, mount or override=URL"),
        "{err}"
    );
    let err = shop
        .helper()
        .args(["pull", "--p2p", "--repo"])
        .arg(&client)
        .args(["org.example.Elsewhere", FREE])
        .run_fail();
    assert!(
        err.contains("has collection-id org.example.Elsewhere: add the origin with"),
        "{err}"
    );

    // The pull: both refs come, the gated one with the token from the origin only.
    let said = shop.pull(&client, &all).run();
    assert!(
        said.contains(&format!(
            "pulled {PAID} with a token, from {origin} (origin)\n"
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("pulled {FREE} without a token")),
        "{said}"
    );
    shop.assert_has(&client, &shop.paid, true);
    shop.assert_has(&client, &shop.free, false);
    let at_origin = shop
        .origin
        .as_ref()
        .expect("origin")
        .server
        .requests_since(0);
    let paid_commit = format!("/objects/{}/{}.commit", &shop.paid[..2], &shop.paid[2..]);
    assert!(
        at_origin
            .iter()
            .any(|a| a.path == paid_commit && a.status == 200 && a.auth == "bearer"),
        "{at_origin:#?}"
    );
    let at_mirror = shop.mirror.requests_since(0);
    assert!(
        at_mirror.iter().any(|a| a.path == "/summary"),
        "the finders asked the mirror: {at_mirror:#?}"
    );
    assert_eq!(with_auth(&at_mirror), Vec::<&Access>::new());

    // Trusted, the mirror gets the token for the gated ref too.
    let output = shop.helper().args(["trust", "add", &mirror]).output();
    assert!(output.status.success());
    let warned = String::from_utf8_lossy(&output.stderr);
    assert!(
        warned.contains("is plain HTTP: tokens sent to it can be read"),
        "{warned}"
    );
    let mark = shop.mirror.log().len();
    let trusted_client = shop.client("trusted-client");
    let said = shop
        .pull(&trusted_client, &[format!("override={mirror}")])
        .run();
    assert!(
        said.contains(&format!(
            "pulled {PAID} with a token, from {mirror} (trusted)\n"
        )),
        "{said}"
    );
    shop.assert_has(&trusted_client, &shop.paid, true);
    let at_mirror = shop.mirror.requests_since(mark);
    assert!(
        at_mirror
            .iter()
            .any(|a| a.path == paid_commit && a.status == 200 && a.auth == "bearer"),
        "{at_mirror:#?}"
    );

    // Untrusted again, and the origin gone: the public ref still comes from the mirror; the
    // gated one is refused there without its token, and the message says what to do.
    shop.helper().args(["trust", "remove", &mirror]).run();
    let mark = shop.mirror.log().len();
    let lone_client = shop.client("lone-client");
    let status = shop.origin.take().expect("the origin").server.stop();
    assert!(status.success(), "{status}");
    let output = shop
        .pull(
            &lone_client,
            &["config".to_owned(), format!("override={mirror}")],
        )
        .output();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(1), "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "pulled {FREE} without a token, from {mirror} (not trusted)"
        )),
        "{out}\n{err}"
    );
    assert!(
        err.contains(&format!(
            "error: {PAID} needs a token, which goes only to {origin} and trusted mirrors, and \
             none of them was found with it; tried without the token at {mirror} (not trusted)"
        )),
        "{err}"
    );
    assert!(err.contains("tollgate-helper trust add URL"), "{err}");
    shop.assert_has(&lone_client, &shop.free, false);
    assert!(shop.lacks(&lone_client, &shop.paid));
    let at_mirror = shop.mirror.requests_since(mark);
    assert_eq!(with_auth(&at_mirror), Vec::<&Access>::new());
    assert!(at_mirror.iter().any(|a| a.status == 401), "{at_mirror:#?}");
    assert!(
        !at_mirror
            .iter()
            .any(|a| a.path == paid_commit && a.status == 200),
        "{at_mirror:#?}"
    );
}

/// `cmd` run in a mount namespace of its own, with `image` (an ext4 file system) mounted
/// read-only at `at`, as a USB stick would be; the mount goes when the command ends.
fn with_stick_mounted(cmd: Cmd, image: &Path, at: &Path) -> Cmd {
    require_tool("unshare", "util-linux");
    require_tool("mount", "mount");
    let script = "mount -o loop,ro \"$1\" \"$2\" || { echo 'this test needs root, loop devices \
                  and mount namespaces (unshare --mount)' >&2; exit 99; }; shift 2; exec \"$@\"";
    let image = image.to_str().expect("UTF-8");
    let at = at.to_str().expect("UTF-8");
    cmd.through(
        "unshare",
        &[
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            image,
            at,
        ],
    )
}

#[test]
fn p2p_pull_takes_what_a_usb_stick_has_without_a_token() {
    let mut shop = Shop::new();
    require_tool("mkfs.ext4", "e2fsprogs");
    let origin = shop.origin_url.clone();
    // The stick: the repository at `.ostree/repo` on an ext4 file system, mounted in HOME,
    // where GLib's volume monitor shows mounts to a user.
    let stick_files = shop.fx.join("stick");
    std::fs::create_dir_all(stick_files.join(".ostree")).expect("mkdir");
    Cmd::new("cp")
        .arg("-a")
        .arg(shop.fx.join("srv"))
        .arg(stick_files.join(".ostree/repo"))
        .run();
    let image = shop.fx.join("stick.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(32 << 20))
        .expect("image");
    Cmd::new("mkfs.ext4")
        .args(["-q", "-d"])
        .arg(&stick_files)
        .arg(&image)
        .run();
    let at = shop.fx.join("home/stick");
    std::fs::create_dir_all(&at).expect("mount point");
    let stick_url = format!("file://{}/.ostree/repo", at.display());

    // With the origin and the stick: the gated ref with its token from the origin only.
    let client = shop.client("client");
    let said = with_stick_mounted(
        shop.pull(&client, &["config".to_owned(), "mount".to_owned()]),
        &image,
        &at,
    )
    .run();
    assert!(
        said.contains(&format!(
            "pulled {PAID} with a token, from {origin} (origin)\n"
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("{stick_url} (not trusted)")),
        "the stick was found: {said}"
    );
    shop.assert_has(&client, &shop.paid, true);
    shop.assert_has(&client, &shop.free, false);

    // The stick alone, with the origin gone: everything it has comes from it (sideloaded
    // content is not gated; libostree checks it against the signing key), without a token.
    let status = shop.origin.take().expect("the origin").server.stop();
    assert!(status.success(), "{status}");
    let offline = shop.client("offline-client");
    let said = with_stick_mounted(shop.pull(&offline, &["mount".to_owned()]), &image, &at).run();
    assert!(
        said.contains(&format!(
            "pulled {PAID} without a token, from {stick_url} (not trusted)"
        )),
        "{said}"
    );
    shop.assert_has(&offline, &shop.paid, true);
    shop.assert_has(&offline, &shop.free, false);
}
