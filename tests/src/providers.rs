//! Credential providers, end to end: the C header against the Rust ABI, a provider written in
//! C, faulty providers, the file provider, and the Secret Service provider against a real
//! gnome-keyring and libsecret's `secret-tool`, all driven through the real `tollgate-helper`
//! (and, where a test must see the secret itself, the helper's loader in
//! `tollgate-provider-probe`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bus::SessionBus;
use crate::cmd::{Cmd, require_tool};
use crate::customer::{helper, provider_dir};
use crate::fixture::{Fixture, set_mode, write_files};
use crate::keyring::{Answer, Keyring, StandInPrompter};
use crate::server::workspace_bin;

const INCLUDE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-api/include");

const C_PROVIDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/c/provider.c");

/// Builds `tests/c/provider.c` with `defines` into `dir` as provider `file_name`.
fn build_c_provider(dir: &Path, file_name: &str, defines: &[&str]) -> PathBuf {
    require_tool("cc", "gcc");
    let out = dir.join(format!("libtollgate_provider_{file_name}.so"));
    Cmd::new("cc")
        .args([
            "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
        ])
        .arg(format!("-I{INCLUDE}"))
        .args(defines)
        .arg("-o")
        .arg(&out)
        .arg(C_PROVIDER)
        .run();
    out
}

/// One call through the helper's loader, in the environment `with` adds, answered as JSON
/// (secret included).
fn probe(
    fx: &Fixture,
    library: &Path,
    args: &[&str],
    with: impl FnOnce(Cmd) -> Cmd,
) -> serde_json::Value {
    let bin = workspace_bin("tollgate-provider-probe");
    let cmd = fx
        .cmd(bin.to_str().expect("UTF-8 path"))
        .arg(library)
        .args(args)
        .timeout(Duration::from_secs(60));
    let out = with(cmd).run();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("probe printed {out:?}: {e}"))
}

fn write_helper_config(fx: &Fixture, text: &str) {
    write_files(
        &fx.join("home/.config/tollgate"),
        &[("helper.toml", text.as_bytes().to_vec())],
    );
}

fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in:\n{haystack}"
    );
}

#[test]
fn the_c_header_matches_the_rust_abi() {
    require_tool("cc", "gcc");
    let fx = Fixture::new();
    let layout = tollgate_plugin_api::abi::layout();
    let mut program = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include \"tollgate_provider.h\"\nint main(void) {\n",
    );
    for (name, _) in &layout {
        let expression = if let Some(ty) = name.strip_prefix("sizeof(") {
            format!("sizeof({ty}")
        } else if let Some((ty, field)) = name.split_once('.') {
            format!("offsetof({ty}, {field})")
        } else {
            format!("(size_t)({name})")
        };
        program.push_str(&format!(
            "    printf(\"%s %zu\\n\", \"{name}\", {expression});\n"
        ));
    }
    program.push_str("    printf(\"entry %s\\n\", TOLLGATE_PROVIDER_ENTRY);\n    return 0;\n}\n");
    write_files(fx.path(), &[("layout.c", program.into_bytes())]);
    Cmd::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror"])
        .arg(format!("-I{INCLUDE}"))
        .arg("-o")
        .arg(fx.join("layout"))
        .arg(fx.join("layout.c"))
        .run();
    let out = Cmd::new(fx.join("layout")).run();
    let from_c: BTreeMap<&str, &str> = out
        .lines()
        .map(|l| l.split_once(' ').expect("name value"))
        .collect();
    for (name, value) in &layout {
        assert_eq!(
            from_c.get(name).copied(),
            Some(value.to_string().as_str()),
            "{name}: the header and plugin-api/src/abi.rs disagree"
        );
    }
    assert_eq!(
        from_c.get("entry").copied(),
        Some(tollgate_plugin_api::abi::ENTRY_SYMBOL)
    );
    // Every constant the header defines is checked above.
    let header = std::fs::read_to_string(format!("{INCLUDE}/tollgate_provider.h")).expect("header");
    for line in header.lines() {
        let Some(rest) = line.strip_prefix("#define ") else {
            continue;
        };
        let name = rest.split_whitespace().next().unwrap_or_default();
        if name == "TOLLGATE_PROVIDER_H" || name == "TOLLGATE_PROVIDER_ENTRY" {
            continue;
        }
        assert!(
            layout.iter().any(|(n, _)| *n == name),
            "the header defines {name}, which abi::layout() does not check"
        );
    }
}

#[test]
fn a_provider_written_in_c_is_listed_and_asked() {
    let fx = Fixture::new();
    let dir = provider_dir(&fx, &[]);
    let library = build_c_provider(&dir, "c", &[]);
    let url = "https://apps.example.com/store";

    let listed = helper(&fx, &dir).arg("providers").run();
    assert_contains(
        &listed,
        &format!("1. c 1.0-c [lookup] {}", library.display()),
    );
    // A relative directory in the search path is not searched.
    let listed = helper(&fx, &dir)
        .env(
            "TOLLGATE_PROVIDER_PATH",
            format!("providers:{}", dir.display()),
        )
        .arg("providers")
        .run();
    assert_contains(
        &listed,
        "refused: providers is not an absolute path, so it is not searched",
    );
    assert_contains(&listed, "1. c 1.0-c [lookup]");
    assert_contains(&listed, "a provider written in C");

    let found = helper(&fx, &dir)
        .args(["credential", "https://APPS.example.com:443/store/"])
        .env("C_PROVIDER_URL", url)
        .env("C_PROVIDER_KEY", "tg_fromc_secret")
        .run();
    assert_eq!(found.trim(), "c: license-key");
    let answer = probe(&fx, &library, &["lookup", url], |c| c);
    assert_eq!(answer["error"], "not-found", "{answer}");
    assert_eq!(
        answer["message"],
        "the C provider has no credential for this URL"
    );

    let answer = probe(&fx, &library, &["lookup", url], |c| {
        c.env("C_PROVIDER_URL", url)
            .env("C_PROVIDER_KEY", "tg_fromc_secret")
    });
    assert_eq!(answer["ok"]["kind"], "license-key");
    assert_eq!(answer["ok"]["secret"], "tg_fromc_secret");

    // It cannot store: asked by name, the helper says so.
    let err = helper(&fx, &dir)
        .args(["login", url, "--key-stdin", "--no-check", "--provider", "c"])
        .stdin("tg_x_y\n")
        .run_fail();
    assert_contains(
        &err,
        &format!("c ({}): does not support store", library.display()),
    );
}

#[test]
fn a_credential_a_provider_set_before_failing_is_wiped_and_freed_by_the_provider() {
    let fx = Fixture::new();
    let dir = provider_dir(&fx, &[]);
    let library = build_c_provider(&dir, "c", &["-DFAIL_WITH_CREDENTIAL"]);
    let url = "https://apps.example.com";
    let frees = fx.join("frees");
    let frees_env = frees.clone();
    let with = move |c: Cmd| {
        c.env("C_PROVIDER_URL", url)
            .env("C_PROVIDER_KEY", "tg_setanyway_secret")
            .env("C_PROVIDER_FREES", &frees_env)
    };
    let freed = || std::fs::read_to_string(&frees).unwrap_or_default();

    // The host's own loader answers the error, and gave the credential back once.
    let answer = probe(&fx, &library, &["lookup", url], with.clone());
    assert_eq!(answer["error"], "other", "{answer}");
    assert_eq!(
        answer["message"],
        "the C provider failed after setting a credential"
    );
    assert_eq!(freed(), "freed a credential, secret wiped\n");

    // Through tollgate-helper: no credential, the provider's error, the secret nowhere, and the
    // credential given back again.
    let output = with(helper(&fx, &dir).args(["credential", url])).output();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert_contains(
        &stderr,
        &format!(
            "c ({}): other: the C provider failed after setting a credential",
            library.display()
        ),
    );
    assert!(
        !stdout.contains("setanyway") && !stderr.contains("setanyway"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(freed(), "freed a credential, secret wiped\n".repeat(2));
}

#[test]
fn faulty_providers_are_reported_with_their_file_and_the_next_is_asked() {
    let fx = Fixture::new();
    let dir = provider_dir(&fx, &["panicking", "file"]);
    let good = build_c_provider(&dir, "c", &[]);
    let other_abi = build_c_provider(&dir, "c_abi2", &["-DNAME=\"c-abi2\"", "-DOTHER_ABI"]);
    let no_entry = build_c_provider(&dir, "c_noentry", &["-DNAME=\"c-noentry\"", "-DNO_ENTRY"]);
    let too_small = build_c_provider(&dir, "c_small", &["-DNAME=\"c-small\"", "-DTOO_SMALL"]);
    let bad_utf8 = build_c_provider(&dir, "c_utf8", &["-DNAME=\"c-utf8\"", "-DBAD_UTF8"]);
    let hangs = build_c_provider(&dir, "c_hang", &["-DNAME=\"c-hang\"", "-DHANG"]);
    let not_a_library = dir.join("libtollgate_provider_text.so");
    write_files(
        &dir,
        &[("libtollgate_provider_text.so", b"not a library\n".to_vec())],
    );
    let panicking = dir.join("libtollgate_provider_panicking.so");
    write_helper_config(
        &fx,
        "providers = [\"panicking\", \"c-utf8\", \"c-hang\", \"c\", \"file\"]\nprovider-timeout = 1\n",
    );

    let listed = helper(&fx, &dir).arg("providers").run();
    for (i, name) in ["panicking", "c-utf8", "c-hang", "c", "file"]
        .iter()
        .enumerate()
    {
        assert_contains(&listed, &format!("{}. {name} ", i + 1));
    }
    assert_contains(
        &listed,
        &format!(
            "refused: {} is built for provider ABI 2.0, and this helper speaks ABI 1.0: rebuild it \
             against tollgate_provider.h 1.x",
            other_abi.display()
        ),
    );
    assert_contains(
        &listed,
        &format!(
            "refused: {} has no `tollgate_provider_entry` symbol, so it is not a tollgate provider",
            no_entry.display()
        ),
    );
    assert_contains(
        &listed,
        &format!(
            "refused: {} says its descriptor is 16 bytes, but ABI 1.0 needs at least {}: it is \
             damaged or built against a wrong header",
            too_small.display(),
            std::mem::size_of::<tollgate_plugin_api::abi::Descriptor>()
        ),
    );
    assert_contains(
        &listed,
        &format!("refused: {} cannot be loaded: ", not_a_library.display()),
    );
    let json: serde_json::Value =
        serde_json::from_str(&helper(&fx, &dir).args(["providers", "--json"]).run()).expect("JSON");
    assert_eq!(
        json["providers"].as_array().map(Vec::len),
        Some(5),
        "{json}"
    );
    assert_eq!(json["refused"].as_array().map(Vec::len), Some(4), "{json}");

    // A lookup goes past the panic, the invalid UTF-8 and the hang to the C provider, which has
    // the credential, and says what happened to each on the way.
    let url = "https://apps.example.com";
    let started = Instant::now();
    let output = helper(&fx, &dir)
        .args(["credential", url])
        .env("C_PROVIDER_URL", url)
        .env("C_PROVIDER_KEY", "tg_good_one")
        .output();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "c: license-key");
    assert_contains(
        &stderr,
        &format!(
            "panicking ({}): other: the provider panicked: lookup of {url} went wrong on purpose",
            panicking.display()
        ),
    );
    assert_contains(
        &stderr,
        &format!(
            "c-utf8 ({}): broke the provider ABI: its credential's secret is not UTF-8",
            bad_utf8.display()
        ),
    );
    assert_contains(
        &stderr,
        &format!(
            "c-hang ({}): did not answer within 1s; it is not asked again",
            hangs.display()
        ),
    );
    assert!(
        !stderr.contains(&format!("c ({})", good.display())),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );

    // Storing goes past the panicking provider to the first that can store.
    let output = helper(&fx, &dir)
        .args(["login", url, "--token-stdin"])
        .stdin("a-token\n")
        .output();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_contains(&stderr, "panicking (");
    assert_contains(&stderr, "store went wrong on purpose");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("stored the token for {url} with file")
    );
    // Without the C provider's variables, the file provider answers.
    let found = helper(&fx, &dir).args(["credential", url]).run();
    assert_eq!(found.trim(), "file: token");
}

/// The file provider's default file in the fixture's HOME.
fn credentials_file(fx: &Fixture) -> PathBuf {
    fx.join("home/.config/tollgate/credentials.toml")
}

fn write_credentials(fx: &Fixture, text: &str, mode: u32) -> PathBuf {
    let path = credentials_file(fx);
    write_files(
        path.parent().expect("parent"),
        &[("credentials.toml", text.as_bytes().to_vec())],
    );
    set_mode(&path, mode);
    path
}

#[test]
fn the_file_provider_refuses_a_file_others_may_read() {
    let fx = Fixture::new();
    let dir = provider_dir(&fx, &["file"]);
    let text = "[[credential]]\nurl = \"https://apps.example.com\"\nlicense-key = \"tg_a_b\"\n";
    for mode in [0o644, 0o640, 0o604, 0o660] {
        let path = write_credentials(&fx, text, mode);
        let err = helper(&fx, &dir)
            .args(["credential", "https://apps.example.com"])
            .run_fail();
        assert_contains(
            &err,
            &format!(
                "{}: has mode {mode:o}, so others may read it; make it yours alone: chmod 600 {}",
                path.display(),
                path.display()
            ),
        );
        // Nor does it write to it: the file is left as it was.
        helper(&fx, &dir)
            .args([
                "login",
                "https://other.example.com",
                "--key-stdin",
                "--no-check",
            ])
            .stdin("tg_c_d\n")
            .run_fail();
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    }
    write_credentials(&fx, text, 0o600);
    let found = helper(&fx, &dir)
        .args(["credential", "https://apps.example.com"])
        .run();
    assert_eq!(found.trim(), "file: license-key");
}

#[test]
fn the_file_provider_names_the_line_of_each_mistake() {
    let fx = Fixture::new();
    let dir = provider_dir(&fx, &["file"]);
    let cases = [
        (
            "# mine\n\n[[credential]]\nurl = \"https://a.example\"\nuser = \"alice\"\n",
            "line 3: `user` needs a `password`",
        ),
        (
            "[[credential]]\nurl = \"https://a.example\"\nlicense-key = \"k\"\n\n[[credential]]\nurl = \"ftp://b.example\"\ntoken = \"t\"\n",
            "line 5: ftp: is not http: or https:; give the entitlement service's web address",
        ),
        (
            "[[credential]]\nurl = \"https://a.example\"\nlicence-key = \"k\"\n",
            "unknown field `licence-key`",
        ),
        (
            "[[credential]]\nurl = \"https://a.example\"\nlicense-key = \"k\n",
            "line 3: ",
        ),
        (
            "\n\n\n[[credential]]\nurl = \"https://a.example\"\nlicense-key = \"k\"\ntoken = \"t\"\n",
            "line 4: give one of `license-key`, `token`, or `user` and `password`",
        ),
    ];
    for (text, expected) in cases {
        let path = write_credentials(&fx, text, 0o600);
        let err = helper(&fx, &dir)
            .args(["credential", "https://a.example"])
            .run_fail();
        assert_contains(
            &err,
            &format!(
                "file ({}",
                dir.join("libtollgate_provider_file.so").display()
            ),
        );
        assert_contains(&err, &format!("other: {}: ", path.display()));
        assert_contains(&err, expected);
    }
}

#[test]
fn the_environment_gives_a_credential_and_wins_over_the_file() {
    let fx = Fixture::new();
    let dir = provider_dir(&fx, &["file"]);
    let library = dir.join("libtollgate_provider_file.so");
    let url = "https://apps.example.com";

    // No file at all (a CI job): the environment alone.
    let env_only = |cmd: Cmd| {
        cmd.env("TOLLGATE_URL", "https://Apps.Example.com/")
            .env("TOLLGATE_LICENSE_KEY", "tg_env_key")
    };
    let found = env_only(helper(&fx, &dir)).args(["credential", url]).run();
    assert_eq!(found.trim(), "file: license-key");
    let answer = probe(&fx, &library, &["lookup", url], env_only);
    assert_eq!(answer["ok"]["secret"], "tg_env_key", "{answer}");

    // A file with a license key for the URL: the environment's token wins for that URL only.
    write_credentials(
        &fx,
        "[[credential]]\nurl = \"https://apps.example.com\"\nlicense-key = \"tg_file_key\"\n\n\
         [[credential]]\nurl = \"https://other.example.com\"\nuser = \"alice\"\npassword = \"pw\"\n",
        0o600,
    );
    let with_token = |cmd: Cmd| {
        cmd.env("TOLLGATE_URL", url)
            .env("TOLLGATE_TOKEN", "env-token")
    };
    let found = with_token(helper(&fx, &dir))
        .args(["credential", url])
        .run();
    assert_eq!(found.trim(), "file: token");
    let answer = probe(&fx, &library, &["lookup", url], with_token);
    assert_eq!(answer["ok"]["secret"], "env-token", "{answer}");
    let found = with_token(helper(&fx, &dir))
        .args(["credential", "https://other.example.com"])
        .run();
    assert_eq!(found.trim(), "file: password for alice");
    let found = helper(&fx, &dir).args(["credential", url]).run();
    assert_eq!(found.trim(), "file: license-key");

    // Name and password from the environment.
    let found = helper(&fx, &dir)
        .args(["credential", url])
        .env("TOLLGATE_URL", url)
        .env("TOLLGATE_USER", "bob")
        .env("TOLLGATE_PASSWORD", "hunter2")
        .run();
    assert_eq!(found.trim(), "file: password for bob");

    // Half a credential, or none of a URL, is a mistake that says what to set.
    let err = helper(&fx, &dir)
        .args(["credential", url])
        .env("TOLLGATE_TOKEN", "t")
        .run_fail();
    assert_contains(
        &err,
        "in the environment: a TOLLGATE_* credential is set but TOLLGATE_URL is not",
    );
    let err = helper(&fx, &dir)
        .args(["credential", url])
        .env("TOLLGATE_URL", url)
        .env("TOLLGATE_USER", "bob")
        .run_fail();
    assert_contains(&err, "in the environment: user needs a password");
    let err = helper(&fx, &dir)
        .args(["credential", url])
        .env("TOLLGATE_URL", "apps.example.com")
        .env("TOLLGATE_TOKEN", "t")
        .run_fail();
    assert_contains(&err, "in the environment: TOLLGATE_URL: ");
}

#[test]
fn the_file_provider_stores_and_erases_keeping_the_file_private() {
    let fx = Fixture::new();
    let dir = provider_dir(&fx, &["file"]);
    let path = write_credentials(
        &fx,
        "# Credentials for tollgate repositories.\n[[credential]]\n# the shop\nurl = \"https://shop.example.com\"\ntoken = \"t1\"\n",
        0o600,
    );
    let url = "https://apps.example.com";
    let out = helper(&fx, &dir)
        .args([
            "login",
            url,
            "--user",
            "alice",
            "--password-stdin",
            "--no-check",
        ])
        .stdin("s3cret\n")
        .run();
    assert_eq!(
        out.trim(),
        format!("stored the password for alice for {url} with file")
    );
    assert!(!out.contains("s3cret"));
    let text = std::fs::read_to_string(&path).expect("read");
    assert_contains(&text, "# Credentials for tollgate repositories.");
    assert_contains(&text, "# the shop");
    assert_contains(
        &text,
        "[[credential]]\nurl = \"https://apps.example.com\"\nuser = \"alice\"\npassword = \"s3cret\"\n",
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // A second login for the URL replaces the first.
    helper(&fx, &dir)
        .args(["login", url, "--key-stdin", "--no-check"])
        .stdin("tg_new_key\n")
        .run();
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(!text.contains("alice"), "{text}");
    assert_eq!(
        text.matches("https://apps.example.com").count(),
        1,
        "{text}"
    );

    let out = helper(&fx, &dir).args(["logout", url]).run();
    assert_eq!(
        out.trim(),
        format!("forgot the credentials for {url} in file")
    );
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(!text.contains("apps.example.com"), "{text}");
    assert_contains(&text, "https://shop.example.com");
    let err = helper(&fx, &dir).args(["credential", url]).run_fail();
    assert_contains(
        &err,
        &format!("has none (no credential for {url} in {}", path.display()),
    );
    let out = helper(&fx, &dir).args(["logout", url]).run();
    assert_eq!(
        out.trim(),
        format!("no provider had a credential for {url}")
    );

    // Logins at the same time each keep their credential.
    let logins: Vec<_> = (0..12)
        .map(|i| {
            helper(&fx, &dir)
                .args([
                    "login",
                    &format!("https://shop{i}.example.com"),
                    "--token-stdin",
                ])
                .stdin(format!("token-{i}\n"))
        })
        .map(|cmd| std::thread::spawn(move || cmd.run()))
        .collect();
    for login in logins {
        login.join().expect("a login");
    }
    let text = std::fs::read_to_string(&path).expect("read");
    for i in 0..12 {
        assert_contains(
            &text,
            &format!("url = \"https://shop{i}.example.com\"\ntoken = \"token-{i}\""),
        );
    }

    // With no file yet, login makes one, 0600 in a 0700 folder.
    std::fs::remove_dir_all(path.parent().expect("parent")).expect("rm");
    helper(&fx, &dir)
        .args(["login", url, "--token-stdin"])
        .stdin("tok\n")
        .run();
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let folder = path.parent().expect("parent");
    let mode = std::fs::metadata(folder)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
}

/// A private bus with a real gnome-keyring on it, its login collection unlocked.
fn keyring(fx: &Fixture) -> (SessionBus, Keyring) {
    require_tool("secret-tool", "libsecret-tools");
    let bus = SessionBus::start(fx, &[]);
    let keyring = Keyring::start(fx, &bus, "login-password");
    (bus, keyring)
}

fn secret_tool(fx: &Fixture, bus: &SessionBus) -> Cmd {
    fx.cmd("secret-tool")
        .envs([&bus.env()])
        .timeout(Duration::from_secs(60))
}

#[test]
fn the_secret_service_provider_stores_finds_and_erases_with_secret_tool_both_ways() {
    let fx = Fixture::new();
    let (bus, _keyring) = keyring(&fx);
    let dir = provider_dir(&fx, &["secret_service"]);
    let library = dir.join("libtollgate_provider_secret_service.so");
    let on_bus = |cmd: Cmd| cmd.envs([&bus.env()]);
    let url = "https://apps.example.com/store";

    // The provider stores; secret-tool finds it under the documented attributes.
    let out = on_bus(helper(&fx, &dir))
        .args([
            "login",
            "https://Apps.Example.com:443/store/",
            "--key-stdin",
            "--no-check",
        ])
        .stdin("tg_abc_0123456789\n")
        .run();
    assert_eq!(
        out.trim(),
        format!("stored the license-key for {url} with secret-service")
    );
    let found = secret_tool(&fx, &bus)
        .args(["lookup", "service", "tollgate", "url", url])
        .run();
    assert_eq!(found, "tg_abc_0123456789");
    let found = secret_tool(&fx, &bus)
        .args([
            "lookup",
            "service",
            "tollgate",
            "url",
            url,
            "kind",
            "license-key",
        ])
        .run();
    assert_eq!(found, "tg_abc_0123456789");
    // secret-tool prints an item's secret and schema on stdout, its attributes on stderr.
    let output = secret_tool(&fx, &bus)
        .args(["search", "--all", "service", "tollgate"])
        .output();
    let (listed, attributes) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_contains(&listed, "schema = org.tollgate.Credential");
    assert_contains(&listed, &format!("label = tollgate license-key for {url}"));
    for attribute in [
        "attribute.service = tollgate".to_owned(),
        format!("attribute.url = {url}"),
        "attribute.kind = license-key".to_owned(),
    ] {
        assert_contains(&attributes, &attribute);
    }

    // A second login replaces it: one item per URL.
    on_bus(helper(&fx, &dir))
        .args(["login", url, "--key-stdin", "--no-check"])
        .stdin("tg_def_9876543210\n")
        .run();
    let found = secret_tool(&fx, &bus)
        .args(["lookup", "service", "tollgate", "url", url])
        .run();
    assert_eq!(found, "tg_def_9876543210");
    let listed = secret_tool(&fx, &bus)
        .args(["search", "--all", "service", "tollgate", "url", url])
        .run();
    assert_eq!(listed.matches("label = ").count(), 1, "{listed}");

    // secret-tool stores; the provider finds it, secret and user exactly.
    let other = "https://other.example.com";
    secret_tool(&fx, &bus)
        .args([
            "store",
            "--label=mine",
            "service",
            "tollgate",
            "url",
            other,
            "kind",
            "password",
            "user",
            "alice",
        ])
        .stdin("pässword with spaces")
        .run();
    let found = on_bus(helper(&fx, &dir)).args(["credential", other]).run();
    assert_eq!(found.trim(), "secret-service: password for alice");
    let answer = probe(&fx, &library, &["lookup", other], on_bus);
    assert_eq!(answer["ok"]["kind"], "password", "{answer}");
    assert_eq!(answer["ok"]["user"], "alice");
    assert_eq!(answer["ok"]["secret"], "pässword with spaces");
    // A key beside it is preferred.
    secret_tool(&fx, &bus)
        .args([
            "store",
            "--label=key",
            "service",
            "tollgate",
            "url",
            other,
            "kind",
            "license-key",
        ])
        .stdin("tg_ghi_5555")
        .run();
    let found = on_bus(helper(&fx, &dir)).args(["credential", other]).run();
    assert_eq!(found.trim(), "secret-service: license-key");

    // Erase: secret-tool finds nothing after, for both URLs' items.
    let out = on_bus(helper(&fx, &dir)).args(["logout", other]).run();
    assert_eq!(
        out.trim(),
        format!("forgot the credentials for {other} in secret-service")
    );
    let output = secret_tool(&fx, &bus)
        .args(["lookup", "service", "tollgate", "url", other])
        .output();
    assert!(
        !output.status.success() && output.stdout.is_empty(),
        "{output:?}"
    );
    let err = on_bus(helper(&fx, &dir))
        .args(["credential", other])
        .run_fail();
    assert_contains(
        &err,
        &format!("has none (no item for {other} in the Secret Service)"),
    );
    // The other URL's item is untouched.
    let found = secret_tool(&fx, &bus)
        .args(["lookup", "service", "tollgate", "url", url])
        .run();
    assert_eq!(found, "tg_def_9876543210");

    // Without a Secret Service on the bus, the provider says so.
    let empty_bus = SessionBus::start(&fx, &[]);
    let err = helper(&fx, &dir)
        .envs([&empty_bus.env()])
        .args(["credential", url])
        .run_fail();
    assert_contains(&err, "no Secret Service is running on this session bus");
}

#[test]
fn a_locked_keyring_is_reported_without_interaction_and_unlocked_with_it() {
    let fx = Fixture::new();
    let (bus, keyring) = keyring(&fx);
    let dir = provider_dir(&fx, &["secret_service"]);
    let on_bus = |cmd: Cmd| cmd.envs([&bus.env()]);
    let url = "https://apps.example.com";
    on_bus(helper(&fx, &dir))
        .args(["login", url, "--key-stdin", "--no-check"])
        .stdin("tg_abc_locked\n")
        .run();
    keyring.lock();

    // Not allowed to interact: `locked`, and the keyring stays locked.
    let err = on_bus(helper(&fx, &dir))
        .args(["credential", url])
        .run_fail();
    assert_contains(
        &err,
        &format!(
            "locked: the keyring holding the credential for {url} is locked, and this request \
             may not ask to unlock it"
        ),
    );
    // A login that cannot store keeps what was stored.
    let err = on_bus(helper(&fx, &dir))
        .args(["login", url, "--key-stdin", "--no-check"])
        .stdin("tg_new_x\n")
        .run_fail();
    assert_contains(
        &err,
        "locked: the default keyring is locked, and this request may not ask to unlock it",
    );
    assert_eq!(keyring.locked(), Some(true));

    // Allowed to interact: the keyring asks its prompter. Cancelled, it stays locked.
    let prompter = StandInPrompter::start(&bus, Answer::Cancel);
    let err = on_bus(helper(&fx, &dir))
        .args(["credential", url, "--interactive"])
        .run_fail();
    assert_contains(
        &err,
        "locked: unlocking the keyring: the keyring stays locked: its unlock prompt was dismissed",
    );
    assert_eq!(keyring.locked(), Some(true));
    assert_eq!(prompter.shown().len(), 1, "{:?}", prompter.shown());

    // Given the password, it unlocks and the credential is found.
    prompter.answer(Answer::Password("login-password".to_owned()));
    let found = on_bus(helper(&fx, &dir))
        .args(["credential", url, "--interactive"])
        .run();
    assert_eq!(found.trim(), "secret-service: license-key");
    assert_eq!(keyring.locked(), Some(false));
    let shown = prompter.shown();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown[1].starts_with("password: "), "{shown:?}");
    let found = secret_tool(&fx, &bus)
        .args(["lookup", "service", "tollgate", "url", url])
        .run();
    assert_eq!(found, "tg_abc_locked");
}
