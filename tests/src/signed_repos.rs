//! Signed repositories through `tollgate serve`, with the real `flatpak`: the `.flatpakrepo`
//! carries the repository's keys and collection id, so a remote added from it verifies, and
//! flatpak gets the signature of the summary index it got (`summaries/<digest>.idx.sig`).

use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::fixture::Fixture;
use crate::gpg::SigningKey;
use crate::server::Server;

const COLLECTION: &str = "org.example.Signed";
const RUNTIME: &str = "org.example.Platform";

/// A repository with collection id [`COLLECTION`] holding [`RUNTIME`], its commit and summary
/// signed with `key` as a vendor signs one (`ostree gpg-sign`, then `flatpak build-update-repo
/// --gpg-sign --gpg-import`). Returns the repository.
fn signed_repo(fx: &Fixture, key: &SigningKey) -> PathBuf {
    let repo = fx.join("repo");
    fx.ostree(&repo)
        .args(["init", "--mode=archive"])
        .arg(format!("--collection-id={COLLECTION}"))
        .run();
    let r = fx.flatpak_runtime(&repo, RUNTIME, 1, None);
    fx.ostree(&repo)
        .args(["gpg-sign", &r, &key.id])
        .arg(format!("--gpg-homedir={}", key.home.display()))
        .run();
    fx.flatpak()
        .args(["build-update-repo", "--title=Signed Shop"])
        .args(key.sign_args())
        .arg(format!("--gpg-import={}", key.public.display()))
        .arg(&repo)
        .run();
    repo
}

/// The user installation's configuration of the remote `name`: its `key=value` lines.
fn remote_config(fx: &Fixture, name: &str) -> Vec<String> {
    let config = std::fs::read_to_string(fx.join("home/.local/share/flatpak/repo/config"))
        .expect("the user installation's config");
    let header = format!("[remote \"{name}\"]");
    config
        .lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .map(str::to_owned)
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Replaces the summary files of `repo` with those of another repository (made here, unsigned,
/// listing another runtime), keeping `repo`'s signature files: what a server or a cache in the
/// middle would serve to swap content under the vendor's name.
fn swap_in_another_summary(fx: &Fixture, repo: &Path) {
    let other = fx.join("other");
    fx.ostree(&other)
        .args(["init", "--mode=archive"])
        .arg(format!("--collection-id={COLLECTION}"))
        .run();
    fx.flatpak_runtime(&other, "org.example.Swapped", 1, None);
    fx.flatpak_update_repo(&other);
    for file in ["summary", "summary.idx"] {
        std::fs::copy(other.join(file), repo.join(file)).expect("copying a summary file");
    }
    for entry in std::fs::read_dir(other.join("summaries")).expect("other summaries") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_owned();
        std::fs::copy(&path, repo.join("summaries").join(name)).expect("copying a sub-summary");
    }
}

#[test]
fn a_remote_added_from_a_signed_repositorys_flatpakrepo_verifies() {
    let fx = Fixture::new();
    let key = SigningKey::new(&fx);
    let repo = signed_repo(&fx, &key);
    // What build-update-repo --gpg-import keeps: the exported key, in base64.
    let key_b64 = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(&key.public).expect("the public key"));
    let config = std::fs::read_to_string(repo.join("config")).expect("config");
    assert!(
        config.contains(&format!("\ngpg-keys={key_b64}\n")),
        "{config}"
    );

    let server = Server::serve(&["--repo", repo.to_str().expect("UTF-8")], fx.env());
    let url = server.url();
    let file = crate::http::get(server.addr, "/repo.flatpakrepo");
    assert_eq!(file.status, 200);
    let text = String::from_utf8_lossy(&file.body);
    assert!(text.contains(&format!("\nGPGKey={key_b64}\n")), "{text}");
    assert!(
        text.contains(&format!("\nDeploySideloadCollectionID={COLLECTION}\n")),
        "{text}"
    );

    // A plain remote-add from the file verifies summaries and commits, and knows the collection.
    fx.flatpak()
        .args(["--user", "remote-add", "shop"])
        .arg(format!("{url}repo.flatpakrepo"))
        .run();
    let remote = remote_config(&fx, "shop");
    for line in [
        "gpg-verify=true",
        "gpg-verify-summary=true",
        &format!("collection-id={COLLECTION}"),
    ] {
        assert!(remote.iter().any(|l| l == line), "{line}: {remote:?}");
    }
    let remotes = fx
        .flatpak()
        .args(["--user", "remotes", "--columns=name,collection,options"])
        .run();
    let shop = remotes
        .lines()
        .find(|l| l.starts_with("shop\t"))
        .unwrap_or_else(|| panic!("no remote shop in:\n{remotes}"));
    assert!(
        shop.contains(COLLECTION) && !shop.contains("no-gpg-verify"),
        "{shop}"
    );
    let listed = fx
        .flatpak()
        .args(["--user", "remote-ls", "--show-details", "shop"])
        .run();
    assert!(listed.contains(RUNTIME), "{listed}");
    // And installs from it, checking the commit's signature.
    fx.flatpak_install(&[], "shop", RUNTIME);

    // Another repository's summary served under this one's name is refused: its signature is
    // not the vendor's.
    swap_in_another_summary(&fx, &repo);
    let err = fx
        .flatpak()
        .args(["--user", "remote-ls", "shop"])
        .run_fail();
    assert!(err.contains("BAD signature"), "{err}");
    assert!(!err.contains("org.example.Swapped"), "{err}");
    let err = fx
        .flatpak()
        .args(["--user", "install", "-y", "--noninteractive", "shop"])
        .arg("org.example.Swapped")
        .run_fail();
    assert!(err.contains("BAD signature"), "{err}");
}

#[test]
fn flatpak_gets_the_signature_of_the_summary_index_it_got() {
    let fx = Fixture::new();
    let key = SigningKey::new(&fx);
    let repo = signed_repo(&fx, &key);
    let index = std::fs::read(repo.join("summary.idx")).expect("summary.idx");
    let signature = format!("/summaries/{}.idx.sig", sha256_hex(&index));
    assert!(
        repo.join(signature.trim_start_matches('/')).is_file(),
        "build-update-repo wrote {signature}"
    );

    let server = Server::serve(&["--repo", repo.to_str().expect("UTF-8")], fx.env());
    fx.flatpak()
        .args(["--user", "remote-add"])
        .arg(format!("--gpg-import={}", key.public.display()))
        .args(["shop", &server.url()])
        .run();
    assert!(
        remote_config(&fx, "shop")
            .iter()
            .any(|l| l == "gpg-verify-summary=true")
    );
    fx.flatpak_install(&[], "shop", RUNTIME);

    // flatpak asked for the signature named by the index it got, got it, and never needed the
    // fallback, which a publish can replace between its two requests.
    let requests = server.requests_since(0);
    assert!(
        requests
            .iter()
            .any(|a| a.path == signature && a.status == 200),
        "{requests:?}"
    );
    assert!(
        requests.iter().all(|a| a.path != "/summary.idx.sig"),
        "{requests:?}"
    );

    // Signed again (another key, or the same one later), the file changes under its name: it is
    // revalidated, never cached as immutable, and served as it is now.
    let first = crate::http::get(server.addr, &signature);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("cache-control"), Some("no-cache"));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let resigned = b"another signature of the same index".to_vec();
    let on_disk = repo.join(signature.trim_start_matches('/'));
    let staged = on_disk.with_extension("tmp");
    std::fs::write(&staged, &resigned).expect("re-signing");
    std::fs::rename(&staged, &on_disk).expect("re-signing");
    let second = crate::http::get(server.addr, &signature);
    assert_eq!(second.status, 200);
    assert_eq!(second.body, resigned);
    assert_ne!(first.header("etag"), second.header("etag"));
    assert_eq!(second.header("cache-control"), Some("no-cache"));
}
