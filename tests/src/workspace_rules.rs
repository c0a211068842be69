//! Rules of the workspace's shape that the code review would otherwise have to remember.

use std::path::{Path, PathBuf};

use crate::fixture::files_under;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// The names of this workspace's own crates that `manifest` depends on (any section).
fn our_dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("tollgate-"))
        .filter_map(|l| l.split(['.', ' ', '=']).next().map(str::to_owned))
        .collect()
}

#[test]
fn providers_depend_on_the_plugin_api_only() {
    let providers = workspace_root().join("providers");
    let mut checked = 0;
    for entry in std::fs::read_dir(&providers).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        assert_eq!(
            our_dependencies(&manifest),
            ["tollgate-plugin-api"],
            "{} may depend on tollgate-plugin-api and its own backend crate, nothing else of ours",
            manifest.display()
        );
        checked += 1;
    }
    assert!(checked >= 3, "found only {checked} providers");
}

/// The only places with foreign functions (and so `unsafe` code): the plugin ABI, and the
/// libostree calls its Rust bindings do not wrap.
const FFI_PLACES: [&str; 2] = ["plugin-api/", "client-helper/src/libostree.rs"];

/// The workspace's Rust files, outside `target/` and the FFI places, that contain `needle`.
fn rust_files_outside_ffi_with(needle: &str) -> Vec<String> {
    let root = workspace_root();
    files_under(&root)
        .into_iter()
        .filter(|f| {
            f.ends_with(".rs") && !f.starts_with("target/") && !f.starts_with("fuzz/target/")
        })
        .filter(|f| !FFI_PLACES.iter().any(|p| f.starts_with(p)))
        .filter(|f| {
            std::fs::read_to_string(root.join(f))
                .unwrap()
                .contains(needle)
        })
        .collect()
}

#[test]
fn only_the_ffi_places_declare_extern_c_or_allow_unsafe_code() {
    for needle in [
        ["extern", " \"C\""].concat(),
        ["allow(", "unsafe_code)"].concat(),
    ] {
        let offenders = rust_files_outside_ffi_with(&needle);
        assert!(
            offenders.is_empty(),
            "{needle} outside {FFI_PLACES:?}: {offenders:?}"
        );
    }
}

/// The crates whose command line sits in a `commands/` layer over a library core.
const LAYERED: [&str; 2] = ["server/src/", "client-helper/src/"];

/// The core files of a layered crate (all but `commands/` and the crate roots, `lib.rs` and
/// `main.rs`, which declare it and call its entry point) that name `needle`.
fn core_files_with(needle: &str) -> Vec<String> {
    let root = workspace_root();
    files_under(&root)
        .into_iter()
        .filter(|f| f.ends_with(".rs"))
        .filter_map(|f| {
            let src = LAYERED.iter().find(|src| f.starts_with(*src))?;
            let inner = &f[src.len()..];
            let is_core =
                !inner.starts_with("commands/") && !["lib.rs", "main.rs"].contains(&inner);
            is_core.then_some(f)
        })
        .filter(|f| {
            std::fs::read_to_string(root.join(f))
                .unwrap()
                .contains(needle)
        })
        .collect()
}

#[test]
fn the_core_never_uses_the_commands_or_clap() {
    for needle in ["commands::", "clap::", "use clap", "clap_"] {
        let offenders = core_files_with(needle);
        assert!(
            offenders.is_empty(),
            "`{needle}` in the library core, outside commands/: {offenders:?}. The commands \
             use the core, never the other way round: move what both need into the core, \
             with plain values or an option struct instead of clap's arguments"
        );
    }
    // The rule has something to hold: each layered crate has a commands/ folder using clap.
    for src in LAYERED {
        let commands = workspace_root().join(src).join("commands/mod.rs");
        let text = std::fs::read_to_string(&commands)
            .unwrap_or_else(|e| panic!("{}: {e}", commands.display()));
        assert!(
            text.contains("use clap"),
            "{} does not use clap",
            commands.display()
        );
    }
}
