//! Replaying what the fuzzers found: each crate's fuzz entry points run every input kept in
//! `fuzz/regressions/<target>/`, so that a crash once found stays fixed.

use std::path::PathBuf;

/// Runs `target` on every file in `fuzz/regressions/<name>/` and returns how many there are.
/// Panics naming the first file that fails again, and when the folder is missing or empty.
pub fn replay_regressions(name: &str, target: fn(&[u8])) -> usize {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    for path in &files {
        let data = std::fs::read(path).unwrap();
        let outcome = std::panic::catch_unwind(|| target(&data));
        assert!(outcome.is_ok(), "{} fails again", path.display());
    }
    files.len()
}
