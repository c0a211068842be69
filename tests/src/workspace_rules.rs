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

#[test]
fn only_the_plugin_api_declares_extern_c() {
    let root = workspace_root();
    let needle = ["extern", " \"C\""].concat();
    let offenders: Vec<String> = files_under(&root)
        .into_iter()
        .filter(|f| {
            f.ends_with(".rs") && !f.starts_with("target/") && !f.starts_with("plugin-api/")
        })
        .filter(|f| {
            std::fs::read_to_string(root.join(f))
                .unwrap()
                .contains(&needle)
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "extern \"C\" outside plugin-api: {offenders:?}"
    );
}
