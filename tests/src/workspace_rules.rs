//! Rules of the workspace's shape that the code review would otherwise have to remember.

use std::path::{Path, PathBuf};

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

/// The workspace's own Rust files (not in `target/` or `.git/`), workspace-relative.
fn rust_files() -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if entry.file_type().unwrap().is_dir() {
                if name != "target" && name != ".git" {
                    walk(root, &path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).unwrap();
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    let root = workspace_root();
    walk(&root, &root, &mut out);
    out.sort();
    out
}

/// The workspace's Rust files that `keep` picks and that contain `needle`.
fn rust_files_with(needle: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let root = workspace_root();
    rust_files()
        .into_iter()
        .filter(|f| keep(f))
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
        let offenders = rust_files_with(&needle, |f| !FFI_PLACES.iter().any(|p| f.starts_with(p)));
        assert!(
            offenders.is_empty(),
            "{needle} outside {FFI_PLACES:?}: {offenders:?}"
        );
    }
}

/// The crates whose command line sits in a `commands/` layer over a library core.
const LAYERED: [&str; 2] = ["server/src/", "client-helper/src/"];

/// Whether `file` is in the core of a layered crate: all but `commands/` and the crate roots,
/// `lib.rs` and `main.rs`, which declare it and call its entry point.
fn in_the_core(file: &str) -> bool {
    LAYERED.iter().any(|src| {
        file.strip_prefix(src).is_some_and(|inner| {
            !inner.starts_with("commands/") && !["lib.rs", "main.rs"].contains(&inner)
        })
    })
}

#[test]
fn the_core_never_uses_the_commands_or_clap() {
    for needle in ["commands::", "clap::", "use clap", "clap_"] {
        let offenders = rust_files_with(needle, in_the_core);
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

/// The backticked spans of a line of Markdown.
fn code_spans(line: &str) -> impl Iterator<Item = &str> {
    line.split('`').skip(1).step_by(2)
}

/// Whether a code span names a file or folder of the tree (`store/`, `repos.rs`,
/// `include/tollgate_provider.h`), rather than a type, command or value.
fn names_a_path(span: &str) -> bool {
    let plain = span
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
    plain && (span.contains('/') || span.ends_with(".rs") || span.ends_with(".h"))
}

/// One section of ARCHITECTURE.md's code map: the folder its heading names (the workspace root
/// when it names none) and the paths its bullets name.
struct MapSection {
    heading: String,
    folder: PathBuf,
    /// The paths named, inside the section's folder (and the bullet's).
    paths: Vec<String>,
    /// The same, as written.
    named: Vec<String>,
}

fn code_map() -> Vec<MapSection> {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let map = text
        .split_once("## Code map")
        .and_then(|(_, rest)| rest.split_once("\n## "))
        .map(|(map, _)| map)
        .expect("ARCHITECTURE.md has a `## Code map` section followed by another");
    let mut sections: Vec<MapSection> = Vec::new();
    let mut bullet_folder = String::new();
    for line in map.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            let folder = code_spans(heading)
                .find(|s| s.ends_with('/'))
                .map_or(root.clone(), |f| root.join(f));
            sections.push(MapSection {
                heading: heading.to_owned(),
                folder,
                paths: Vec::new(),
                named: Vec::new(),
            });
        } else if let Some(section) = sections.last_mut() {
            // A bullet that starts with a folder (`- `http/`: `mod.rs` …`) names the files
            // after it inside that folder.
            if line.starts_with("- ") {
                bullet_folder = code_spans(line)
                    .next()
                    .filter(|s| s.ends_with('/') && line.starts_with(&format!("- `{s}`")))
                    .unwrap_or_default()
                    .to_owned();
            }
            for span in code_spans(line).filter(|s| names_a_path(s)) {
                let inside = if span == bullet_folder {
                    span.to_owned()
                } else {
                    format!("{bullet_folder}{span}")
                };
                section.paths.push(inside);
                section.named.push(span.to_owned());
            }
        }
    }
    assert!(sections.len() >= 6, "the code map has too few sections");
    sections
}

#[test]
fn the_code_map_names_files_that_exist_and_every_module() {
    let root = workspace_root();
    for section in code_map() {
        // Each path, in the section's folder (or, like `server/migrations/`, from the top).
        for (path, named) in section.paths.iter().zip(&section.named) {
            assert!(
                section.folder.join(path).exists() || root.join(named).exists(),
                "ARCHITECTURE.md, under `{}`, names `{path}`, which is not in the tree",
                section.heading
            );
        }
        if section.folder == root {
            continue;
        }
        // Every Rust file of a crate's section is named, or its folder is.
        let inside_root = section
            .folder
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy();
        let prefix = format!("{}/", inside_root.trim_end_matches('/'));
        let named = |file: &str| {
            section.paths.iter().any(|p| {
                let p = p.trim_end_matches('/');
                file == p || file.starts_with(&format!("{p}/"))
            })
        };
        for file in rust_files() {
            let Some(inside) = file.strip_prefix(&prefix) else {
                continue;
            };
            assert!(
                named(inside),
                "ARCHITECTURE.md's code map does not name `{file}` (under `{}`): give it a \
                 line, or name its folder",
                section.heading
            );
        }
    }
}

#[test]
fn the_architecture_lists_the_ffi_places_the_rule_enforces() {
    let text = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).unwrap();
    let (_, after) = text
        .split_once("the FFI places are ")
        .expect("ARCHITECTURE.md says which the FFI places are");
    let (listed, _) = after.split_once(':').unwrap();
    let mut listed: Vec<&str> = code_spans(listed).collect();
    listed.sort_unstable();
    let mut enforced = FFI_PLACES.to_vec();
    enforced.sort_unstable();
    assert_eq!(
        listed, enforced,
        "ARCHITECTURE.md's FFI places against FFI_PLACES in workspace_rules.rs"
    );
}

/// The modules `tests/src/lib.rs` declares: the harness (`pub mod`) and the tests
/// (`#[cfg(test)] mod`).
fn test_crate_modules() -> (Vec<String>, Vec<String>) {
    let lib = std::fs::read_to_string(workspace_root().join("tests/src/lib.rs")).unwrap();
    let (mut harness, mut tests) = (Vec::new(), Vec::new());
    for line in lib.lines() {
        if let Some(name) = line.strip_prefix("pub mod ") {
            harness.push(name.trim_end_matches(';').to_owned());
        } else if let Some(name) = line.strip_prefix("mod ") {
            tests.push(name.trim_end_matches(';').to_owned());
        }
    }
    (harness, tests)
}

#[test]
fn tests_use_the_harness_and_never_each_other() {
    let (harness, tests) = test_crate_modules();
    assert!(
        harness.len() >= 10 && tests.len() >= 20,
        "{harness:?} {tests:?}"
    );
    let src = workspace_root().join("tests/src");
    for test in &tests {
        let text = std::fs::read_to_string(src.join(format!("{test}.rs"))).unwrap();
        for prefix in ["crate::", "super::"] {
            for (at, _) in text.match_indices(prefix) {
                let rest = &text[at + prefix.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    name.is_empty() || harness.contains(&name),
                    "tests/src/{test}.rs uses `{prefix}{name}`, which is not in the harness: \
                     what tests share belongs in a `pub mod` of tests/src/lib.rs"
                );
            }
        }
    }
}
