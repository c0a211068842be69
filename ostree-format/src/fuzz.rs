//! Entry points for the fuzz targets in `fuzz/`: each takes arbitrary bytes, runs one parser on
//! them and everything a server then reads from the result, and panics only when a parser
//! breaks a promise (a panic is what the fuzzer reports). The tests below run every input in
//! `fuzz/regressions/`, so a crash once found stays fixed.

use crate::objects::framed;
use crate::{Commit, DirMeta, DirTree, Metadata, RepoPath, Summary, SummaryIndex};

/// Every typed read of every key, as the index and the gate make them.
fn read_all(metadata: &Metadata) {
    let keys: Vec<String> = metadata.keys().map(str::to_owned).collect();
    assert_eq!(keys.len(), metadata.len());
    for key in &keys {
        let _ = metadata.get_str(key);
        let _ = metadata.get_bool(key);
        let _ = metadata.get_i32(key);
        let _ = metadata.get_u64_be(key);
        let _ = metadata.get_str_array(key);
    }
}

pub fn commit(data: &[u8]) {
    if let Ok(commit) = Commit::parse(data) {
        read_all(&commit.metadata);
        let _ = commit.token_type();
    }
}

/// Also holds the closure walk's fast reader to its promise: whatever it reads, the general
/// deserializer reads the same (it may only decline, never accept more or answer otherwise).
pub fn dirtree(data: &[u8]) {
    let (mut fast_files, mut fast_dirs) = (Vec::new(), Vec::new());
    if framed::children(data, &mut fast_files, &mut fast_dirs).is_some() {
        let (mut files, mut dirs) = (Vec::new(), Vec::new());
        let general = DirTree::children_deserialized(data, &mut files, &mut dirs);
        assert!(
            general.is_ok(),
            "the fast reader took a dirtree the deserializer refuses: {general:?}"
        );
        assert_eq!(
            (fast_files, fast_dirs),
            (files, dirs),
            "the two readers disagree"
        );
    }
    if let Ok(tree) = DirTree::parse(data) {
        for (name, _) in &tree.files {
            assert!(
                !name.is_empty() && !name.contains('/') && name != "." && name != "..",
                "a dirtree file name that leaves its directory was accepted: {name:?}"
            );
        }
        for dir in &tree.dirs {
            assert!(
                !dir.name.is_empty()
                    && !dir.name.contains('/')
                    && dir.name != "."
                    && dir.name != "..",
                "a dirtree directory name that leaves its directory was accepted: {:?}",
                dir.name
            );
        }
    }
}

pub fn dirmeta(data: &[u8]) {
    let _ = DirMeta::parse(data);
}

pub fn summary(data: &[u8]) {
    if let Ok(summary) = Summary::parse(data) {
        read_all(&summary.metadata);
        for r in &summary.refs {
            read_all(&r.metadata);
        }
        let _ = summary.collection_id();
        let _ = summary.last_modified();
    }
}

pub fn summary_index(data: &[u8]) {
    if let Ok(index) = SummaryIndex::parse(data) {
        read_all(&index.metadata);
        for subset in &index.subsets {
            read_all(&subset.metadata);
        }
    }
}

/// A request path, as the server has it once percent-decoded and stripped of its leading `/`.
/// What the grammar accepts names exactly the file asked for: its rebuilt path is the input,
/// and it has no segment that could leave the folder it names.
pub fn request_path(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Some(parsed) = RepoPath::parse(path) else {
        return;
    };
    let rebuilt = parsed.relative_path();
    assert_eq!(rebuilt, path, "the parsed path names another file");
    assert!(
        !path.starts_with('/')
            && !path.contains('\\')
            && !path.contains('\0')
            && path
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."),
        "a path that could leave its folder was accepted: {path:?}"
    );
    assert_eq!(RepoPath::parse(&rebuilt), Some(parsed));
}

#[cfg(test)]
mod tests {
    use tollgate_tests::fuzz::replay_regressions;

    #[test]
    fn fuzz_regressions_stay_fixed() {
        replay_regressions("commit", super::commit);
        replay_regressions("dirtree", super::dirtree);
        replay_regressions("dirmeta", super::dirmeta);
        replay_regressions("summary", super::summary);
        replay_regressions("summary_index", super::summary_index);
        replay_regressions("request_path", super::request_path);
    }
}
