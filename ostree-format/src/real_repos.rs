//! Tests on repositories made by the real `ostree` and `flatpak`: what this crate parses must be
//! what those tools wrote and what they say is there.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use proptest::prelude::*;
use tollgate_tests::fixture::{Fixture, files_under, sample_tree, write_files};

use crate::{
    Checksum, Commit, DirMeta, DirTree, ObjectName, ObjectSource, ObjectType, Repo, RepoError,
    RepoPath, Summary, SummaryIndex, WalkError, commit_closure, commit_history,
};

fn object_bytes(repo: &Path, checksum: &str, kind: ObjectType) -> Vec<u8> {
    let name = ObjectName::new(Checksum::from_hex(checksum).unwrap(), kind);
    std::fs::read(repo.join(name.relative_path())).unwrap()
}

/// `ostree ls -R -C`: every object of a commit's tree, as the real ostree lists it.
fn ostree_ls_objects(fx: &Fixture, repo: &Path, rev: &str) -> BTreeSet<ObjectName> {
    let out = fx.ostree(repo).args(["ls", "-R", "-C", rev]).run();
    let mut objects = BTreeSet::new();
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let sum = |i: usize| Checksum::from_hex(fields[i]).unwrap();
        if line.starts_with('d') {
            objects.insert(ObjectName::new(sum(4), ObjectType::DirTree));
            objects.insert(ObjectName::new(sum(5), ObjectType::DirMeta));
        } else {
            objects.insert(ObjectName::new(sum(4), ObjectType::File));
        }
    }
    objects
}

/// The objects a fresh `ostree pull-local --depth=0` copies: what ostree itself thinks a pull of
/// the commit needs.
fn ostree_pulled_objects(fx: &Fixture, repo: &Path, rev: &str, name: &str) -> BTreeSet<ObjectName> {
    let copy = fx.join(name);
    fx.ostree(&copy).args(["init", "--mode=archive"]).run();
    fx.ostree(&copy)
        .args(["pull-local", "--depth=0"])
        .arg(repo)
        .arg(rev)
        .run();
    files_under(&copy.join("objects"))
        .iter()
        .map(|rel| {
            let (dir, file) = rel.split_once('/').unwrap();
            let (rest, ext) = file.split_once('.').unwrap();
            ObjectName::new(
                Checksum::from_hex(&format!("{dir}{rest}")).unwrap(),
                ObjectType::from_extension(ext).unwrap(),
            )
        })
        .collect()
}

fn rev_parse(fx: &Fixture, repo: &Path, rev: &str) -> String {
    fx.ostree(repo)
        .args(["rev-parse", rev])
        .run()
        .trim()
        .to_owned()
}

#[test]
fn commit_dirtree_and_dirmeta_match_ostree() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let repo = fx.join("repo");
    fx.ostree(&repo).args(["init", "--mode=archive"]).run();
    let first = fx.commit(&repo, "test/a", &tree, "first");
    let second = fx
        .ostree(&repo)
        .args([
            "commit",
            "--branch=test/a",
            "--subject=second subject",
            "--body=a body\nof two lines",
            "--timestamp=2024-02-03T04:05:06Z",
            "--add-metadata-string=version=1.2.3",
            "--owner-uid=1234",
        ])
        .arg(&tree)
        .run();
    let second = second.trim();

    let commit = Commit::parse(&object_bytes(&repo, second, ObjectType::Commit)).unwrap();
    assert_eq!(commit.subject, "second subject");
    assert_eq!(commit.body, "a body\nof two lines");
    assert_eq!(commit.timestamp, 1_706_933_106);
    assert_eq!(commit.parent.map(|p| p.to_string()), Some(first.clone()));
    assert_eq!(commit.metadata.get_str("version"), Some("1.2.3"));
    assert_eq!(commit.token_type(), None);
    let first_commit = Commit::parse(&object_bytes(&repo, &first, ObjectType::Commit)).unwrap();
    assert_eq!(first_commit.parent, None);

    // The root's checksums, as `ostree ls -d -C` prints them.
    let root = fx.ostree(&repo).args(["ls", "-d", "-C", second, "/"]).run();
    let fields: Vec<&str> = root.split_whitespace().collect();
    assert_eq!(commit.root_tree.to_string(), fields[4]);
    assert_eq!(commit.root_meta.to_string(), fields[5]);

    let dirmeta = DirMeta::parse(&object_bytes(&repo, fields[5], ObjectType::DirMeta)).unwrap();
    assert_eq!(
        (dirmeta.uid, dirmeta.gid, dirmeta.mode & 0o7777),
        (1234, 0, 0o755)
    );
    assert_eq!(dirmeta.mode & 0o170000, 0o040000, "a directory");

    // The root directory lists what `ostree ls` lists, with the same checksums.
    let dirtree = DirTree::parse(&object_bytes(&repo, fields[4], ObjectType::DirTree)).unwrap();
    let listed = fx
        .ostree(&repo)
        .args(["ls", "-C", second, "/usr/bin"])
        .run();
    let usr = dirtree.dirs.iter().find(|d| d.name == "usr").expect("usr");
    let usr_tree = DirTree::parse(&object_bytes(
        &repo,
        &usr.tree.to_string(),
        ObjectType::DirTree,
    ))
    .unwrap();
    let bin = usr_tree
        .dirs
        .iter()
        .find(|d| d.name == "bin")
        .expect("usr/bin");
    let bin_tree = DirTree::parse(&object_bytes(
        &repo,
        &bin.tree.to_string(),
        ObjectType::DirTree,
    ))
    .unwrap();
    let names: Vec<&str> = bin_tree.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["hello", "hi"]);
    for (name, checksum) in &bin_tree.files {
        assert!(
            listed
                .lines()
                .any(|l| l.ends_with(&format!("/usr/bin/{name}"))
                    && l.contains(&checksum.to_string()))
                || listed
                    .lines()
                    .any(|l| l.contains(&format!("/usr/bin/{name} ->"))
                        && l.contains(&checksum.to_string())),
            "{name} {checksum} not in:\n{listed}"
        );
    }
    assert_eq!(
        dirtree
            .dirs
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>(),
        ["etc", "usr"],
        "dirtrees list entries sorted"
    );
}

#[test]
fn summaries_match_ostree() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let repo = fx.join("repo");
    fx.ostree(&repo)
        .args(["init", "--mode=archive", "--collection-id=org.example.Test"])
        .run();
    let a = fx.commit(&repo, "test/a", &tree, "a");
    let b = fx.commit(&repo, "test/b", &tree, "b");

    let summary = Summary::parse(&std::fs::read(repo.join("summary")).unwrap()).unwrap();
    let refs: Vec<(String, String)> = summary
        .refs
        .iter()
        .map(|r| (r.name.clone(), r.checksum.to_string()))
        .collect();
    // With a collection ID, ostree adds its own `ostree-metadata` ref; the summary lists exactly
    // the refs `ostree refs` lists, sorted.
    let mut expected: Vec<(String, String)> = fx
        .ostree(&repo)
        .arg("refs")
        .run()
        .lines()
        .map(|r| (r.to_owned(), rev_parse(&fx, &repo, r)))
        .collect();
    expected.sort();
    assert_eq!(refs, expected);
    assert!(refs.contains(&("test/a".to_owned(), a.clone())));
    assert!(refs.contains(&("test/b".to_owned(), b)));
    assert_eq!(summary.collection_id(), Some("org.example.Test"));
    assert!(summary.last_modified().is_some());
    let commit = Commit::parse(&object_bytes(&repo, &a, ObjectType::Commit)).unwrap();
    let entry = summary.refs.iter().find(|r| r.name == "test/a").unwrap();
    assert_eq!(
        entry.metadata.get_u64_be("ostree.commit.timestamp"),
        Some(commit.timestamp)
    );
    assert_eq!(
        entry.size,
        object_bytes(&repo, &a, ObjectType::Commit).len() as u64
    );

    let opened = Repo::open(&repo).unwrap();
    assert_eq!(
        opened.config().collection_id.as_ref().unwrap().as_str(),
        "org.example.Test"
    );
    let heads: Vec<(String, String)> = opened
        .heads()
        .unwrap()
        .iter()
        .map(|(r, c)| (r.to_string(), c.to_string()))
        .collect();
    assert_eq!(heads, expected, "refs/heads as `ostree refs` lists them");
}

/// A Flatpak repository as `flatpak build-export` makes it: a gated runtime (token type 2) in
/// two commits, a public one, static deltas and the indexed summary.
struct FlatpakRepo {
    fx: Fixture,
    repo: PathBuf,
    arch: String,
}

/// The shared repository: built once for the tests that run at the same time, and removed
/// with its fixture when the last of them is done (a static would never drop it).
fn flatpak_repo() -> Arc<FlatpakRepo> {
    static REPO: Mutex<Weak<FlatpakRepo>> = Mutex::new(Weak::new());
    let mut shared = REPO.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(repo) = shared.upgrade() {
        return repo;
    }
    let fx = Fixture::new();
    let repo = fx.join("repo");
    fx.flatpak_runtime(&repo, "org.example.Public", 0, None);
    fx.flatpak_runtime(&repo, "org.example.Gated", 0, Some(2));
    fx.flatpak_runtime(&repo, "org.example.Gated", 1, Some(2));
    fx.flatpak_update_repo(&repo);
    let arch = fx.flatpak_arch();
    let built = Arc::new(FlatpakRepo { fx, repo, arch });
    *shared = Arc::downgrade(&built);
    built
}

#[test]
fn flatpak_token_type_and_summary_index() {
    let shared = flatpak_repo();
    let FlatpakRepo { fx, repo, arch } = &*shared;
    let gated = rev_parse(
        fx,
        repo,
        &format!("runtime/org.example.Gated/{arch}/stable"),
    );
    let public = rev_parse(
        fx,
        repo,
        &format!("runtime/org.example.Public/{arch}/stable"),
    );
    let commit = |c: &str| Commit::parse(&object_bytes(repo, c, ObjectType::Commit)).unwrap();
    assert_eq!(commit(&gated).token_type(), Some(2));
    assert_eq!(commit(&public).token_type(), None);

    let index = SummaryIndex::parse(&std::fs::read(repo.join("summary.idx")).unwrap()).unwrap();
    let subset = index
        .subsets
        .iter()
        .find(|s| &s.name == arch)
        .expect("a subset per arch");
    let sub_summary = repo.join(format!("summaries/{}.gz", subset.digest));
    assert!(
        sub_summary.is_file(),
        "{sub_summary:?} is what summary.idx names"
    );
    assert!(index.metadata.get("ostree.summary.mode").is_some());
}

#[test]
fn closure_equals_what_ostree_holds() {
    let shared = flatpak_repo();
    let FlatpakRepo { fx, repo, arch } = &*shared;
    let source = Repo::open(repo).unwrap();
    for (i, name) in ["org.example.Gated", "org.example.Public"]
        .iter()
        .enumerate()
    {
        let rev = format!("runtime/{name}/{arch}/stable");
        let commit = rev_parse(fx, repo, &rev);
        let closure: BTreeSet<ObjectName> =
            commit_closure(&source, Checksum::from_hex(&commit).unwrap())
                .unwrap()
                .into_iter()
                .collect();

        let pulled = ostree_pulled_objects(fx, repo, &rev, &format!("pulled-{i}"));
        assert_eq!(
            closure, pulled,
            "closure of {rev} differs from what pull-local copied"
        );

        let mut listed = ostree_ls_objects(fx, repo, &commit);
        listed.insert(ObjectName::new(
            Checksum::from_hex(&commit).unwrap(),
            ObjectType::Commit,
        ));
        assert_eq!(
            closure, listed,
            "closure of {rev} differs from `ostree ls -R -C`"
        );
    }
}

#[test]
fn closure_includes_detached_metadata_and_history_follows_parents() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let (repo, c1) = fx.archive_repo("repo", "test/a", &tree);
    write_files(&tree, &[("new-file", b"new".to_vec())]);
    let c2 = fx.commit(&repo, "test/a", &tree, "second");
    let c3 = fx
        .ostree(&repo)
        .args([
            "commit",
            "--branch=test/a",
            "--add-detached-metadata-string=sig=x",
        ])
        .arg(&tree)
        .run();
    let c3 = c3.trim().to_owned();
    let source = Repo::open(&repo).unwrap();
    let sum = |c: &str| Checksum::from_hex(c).unwrap();

    let closure: BTreeSet<_> = commit_closure(&source, sum(&c3))
        .unwrap()
        .into_iter()
        .collect();
    assert!(closure.contains(&ObjectName::new(sum(&c3), ObjectType::CommitMeta)));
    assert_eq!(closure, ostree_pulled_objects(&fx, &repo, &c3, "pulled"));

    let history = commit_history(&source, sum(&c3)).unwrap();
    assert_eq!(history, [sum(&c3), sum(&c2), sum(&c1)]);
    fx.ostree(&repo)
        .args(["prune", "--refs-only", "--depth=1"])
        .run();
    let history = commit_history(&source, sum(&c3)).unwrap();
    assert_eq!(
        history,
        [sum(&c3), sum(&c2)],
        "pruned parents end the history"
    );
}

#[test]
fn walk_reports_missing_and_corrupt_objects() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let (repo, commit) = fx.archive_repo("repo", "test/a", &tree);
    let source = Repo::open(&repo).unwrap();
    let commit = Checksum::from_hex(&commit).unwrap();
    let root = Commit::parse(
        &source
            .read(&ObjectName::new(commit, ObjectType::Commit))
            .unwrap()
            .unwrap(),
    )
    .unwrap()
    .root_tree;
    let root_path = repo.join(ObjectName::new(root, ObjectType::DirTree).relative_path());

    let bytes = std::fs::read(&root_path).unwrap();
    std::fs::write(&root_path, &bytes[..bytes.len() / 2]).unwrap();
    match commit_closure(&source, commit) {
        Err(WalkError::Corrupt { object, .. }) => assert_eq!(object.checksum, root),
        other => panic!("expected a corrupt root dirtree, got {other:?}"),
    }
    std::fs::remove_file(&root_path).unwrap();
    match commit_closure(&source, commit) {
        Err(WalkError::Missing(object)) => {
            assert_eq!(object, ObjectName::new(root, ObjectType::DirTree))
        }
        other => panic!("expected a missing root dirtree, got {other:?}"),
    }
}

#[test]
fn repos_of_other_kinds_are_refused_by_name() {
    let fx = Fixture::new();
    let bare = fx.join("bare");
    fx.ostree(&bare).args(["init", "--mode=bare-user"]).run();
    assert!(
        matches!(Repo::open(&bare), Err(RepoError::NotArchive { mode, .. }) if mode == "bare-user")
    );
    assert!(matches!(
        Repo::open(&fx.join("nothing")),
        Err(RepoError::Missing { .. })
    ));
    std::fs::create_dir(fx.join("empty")).unwrap();
    assert!(matches!(
        Repo::open(&fx.join("empty")),
        Err(RepoError::NotARepo { .. })
    ));
    std::fs::write(fx.join("a-file"), "x").unwrap();
    assert!(matches!(
        Repo::open(&fx.join("a-file")),
        Err(RepoError::NotADirectory { .. })
    ));
    // A copied config without the objects next to it.
    std::fs::create_dir(fx.join("half")).unwrap();
    std::fs::write(fx.join("half/config"), "[core]\nmode=archive-z2\n").unwrap();
    let err = Repo::open(&fx.join("half")).unwrap_err();
    assert!(matches!(err, RepoError::NoObjects { .. }), "{err:?}");
    assert!(
        err.to_string().ends_with("has no `objects` folder"),
        "{err}"
    );
}

#[test]
fn every_file_of_a_flatpak_repo_has_exactly_one_path() {
    let shared = flatpak_repo();
    let FlatpakRepo { repo, .. } = &*shared;
    let mut kinds = HashSet::new();
    for rel in files_under(repo) {
        let servable = !(rel.starts_with("tmp/")
            || rel.starts_with("state/")
            || rel.starts_with("extensions/")
            || rel.starts_with("refs/remotes/")
            || rel.starts_with('.'));
        match RepoPath::parse(&rel) {
            Some(path) => {
                assert!(servable, "{rel} must not be servable");
                assert_eq!(path.relative_path(), rel);
                kinds.insert(std::mem::discriminant(&path));
            }
            None => assert!(!servable, "{rel} is a repository file but was refused"),
        }
    }
    // config, summary, sub-summaries, objects, deltas, delta indexes, refs.
    assert_eq!(kinds.len(), 7, "the repo holds every kind of file");
    let deltas: Vec<_> = files_under(&repo.join("deltas"));
    assert!(
        deltas.iter().any(|d| d.contains('-')),
        "a from-to delta exists: {deltas:?}"
    );
}

#[derive(Debug, Clone, Copy)]
enum Sample {
    Commit,
    DirTree,
    DirMeta,
    Summary,
    SummaryIndex,
}

/// The metadata objects and summaries of the shared Flatpak repository, for corruption tests.
fn samples() -> &'static [(Sample, Vec<u8>)] {
    static SAMPLES: OnceLock<Vec<(Sample, Vec<u8>)>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let shared = flatpak_repo();
        let FlatpakRepo { repo, .. } = &*shared;
        let mut out = metadata_objects(repo);
        out.push((
            Sample::Summary,
            std::fs::read(repo.join("summary")).unwrap(),
        ));
        out.push((
            Sample::SummaryIndex,
            std::fs::read(repo.join("summary.idx")).unwrap(),
        ));
        out
    })
}

/// The commits, dirtrees and dirmetas of `repo`.
fn metadata_objects(repo: &Path) -> Vec<(Sample, Vec<u8>)> {
    let mut out = Vec::new();
    for rel in files_under(&repo.join("objects")) {
        let kind = match RepoPath::parse(&format!("objects/{rel}")) {
            Some(RepoPath::Object(o)) if o.kind == ObjectType::Commit => Sample::Commit,
            Some(RepoPath::Object(o)) if o.kind == ObjectType::DirTree => Sample::DirTree,
            Some(RepoPath::Object(o)) if o.kind == ObjectType::DirMeta => Sample::DirMeta,
            _ => continue,
        };
        out.push((
            kind,
            std::fs::read(repo.join("objects").join(&rel)).unwrap(),
        ));
    }
    out
}

fn parses(kind: Sample, bytes: &[u8]) -> bool {
    match kind {
        Sample::Commit => Commit::parse(bytes).is_ok(),
        Sample::DirTree => DirTree::parse(bytes).is_ok(),
        Sample::DirMeta => DirMeta::parse(bytes).is_ok(),
        Sample::Summary => Summary::parse(bytes).is_ok(),
        Sample::SummaryIndex => SummaryIndex::parse(bytes).is_ok(),
    }
}

/// The commit, dirtrees and dirmetas of a commit the real ostree makes of a fixed tree at a
/// fixed time: the same bytes on every run, so what this test finds it always finds.
fn deterministic_objects() -> Vec<(Sample, Vec<u8>)> {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let repo = fx.join("repo");
    fx.ostree(&repo).args(["init", "--mode=archive"]).run();
    fx.ostree(&repo)
        .args([
            "commit",
            "--branch=fixed",
            "--subject=fixed",
            "--timestamp=2020-01-01T00:00:00Z",
        ])
        .args(["--owner-uid=0", "--owner-gid=0"])
        .arg(&tree)
        .run();
    metadata_objects(&repo)
}

#[test]
fn truncated_objects_are_errors() {
    let objects = deterministic_objects();
    assert!(objects.len() > 10, "{} objects", objects.len());
    for (kind, bytes) in &objects {
        assert!(parses(*kind, bytes), "the whole {kind:?} parses");
        let accepted: Vec<usize> = (0..bytes.len())
            .filter(|&n| parses(*kind, &bytes[..n]))
            .collect();
        assert!(
            accepted.is_empty(),
            "{kind:?} truncated to {accepted:?} bytes parsed as valid"
        );
    }
}

/// Summaries have no checksum, and a GVariant container can have prefixes that are valid
/// containers too, so a truncated summary may parse (as a smaller one); `summary.sig` is what
/// protects a summary. What must hold is that no truncation panics.
#[test]
fn truncated_summaries_never_panic() {
    for (kind, bytes) in samples() {
        if matches!(kind, Sample::Summary | Sample::SummaryIndex) {
            assert!(parses(*kind, bytes));
            for n in 0..bytes.len() {
                let _ = parses(*kind, &bytes[..n]);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Flipped bytes in real objects give an error or a value, never a panic.
    #[test]
    fn corrupted_objects_never_panic(
        which in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let samples = samples();
        let (kind, mut bytes) = samples[which.index(samples.len())].clone();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = parses(kind, &bytes);
        let _ = DirTree::children(&bytes, &mut Vec::new(), &mut Vec::new());
        // The framed reader takes in nothing the deserializer refuses, and reads the same.
        if let (Some(framed), deserialized) = crate::objects::children_both_ways(&bytes) {
            prop_assert!(deserialized.is_ok(), "framed read what the deserializer refuses: {deserialized:?}");
            prop_assert_eq!(Some(framed), deserialized.ok());
        }
    }
}

/// Every dirtree the real ostree and flatpak wrote is read by the framed reader (the walk's
/// fast path), with the same children as the general deserializer finds.
#[test]
fn real_dirtrees_are_read_by_the_framed_reader() {
    let mut read = 0;
    let deterministic = deterministic_objects();
    for (kind, bytes) in samples().iter().chain(&deterministic) {
        if !matches!(kind, Sample::DirTree) {
            continue;
        }
        let (framed, deserialized) = crate::objects::children_both_ways(bytes);
        let framed = framed
            .unwrap_or_else(|| panic!("the framed reader declined a real dirtree: {bytes:02x?}"));
        assert_eq!(framed, deserialized.unwrap());
        read += 1;
    }
    assert!(read > 10, "only {read} dirtrees in the samples");
}

#[test]
fn mirror_refs_as_ostree_pull_mirror_writes_them() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let (mirror, commit) = fx.mirror_repo("os/x86_64", &tree);

    let opened = Repo::open(&mirror).unwrap();
    let mirrors: Vec<(String, String, String)> = opened
        .mirrors()
        .unwrap()
        .iter()
        .map(|(cid, r, c)| (cid.to_string(), r.to_string(), c.to_string()))
        .collect();
    assert_eq!(
        mirrors,
        [("org.example.Src".to_owned(), "os/x86_64".to_owned(), commit)]
    );
    assert_eq!(
        opened.config().collection_id.as_ref().unwrap().as_str(),
        "org.example.Mirror"
    );
}

#[test]
fn files_under_refs_that_are_not_refs() {
    let fx = Fixture::new();
    let tree = sample_tree(&fx.join("tree"));
    let (repo, commit) = fx.archive_repo("repo", "test/a", &tree);
    // A ref alias, as `ostree refs --alias --create=alias test/a` makes it: a symlink.
    fx.ostree(&repo)
        .args(["refs", "--alias", "--create=alias", "test/a"])
        .run();
    std::fs::write(repo.join("refs/heads/garbage"), "SECRET-CONTENT").unwrap();
    let opened = Repo::open(&repo).unwrap();

    let mut skipped = Vec::new();
    let heads = opened
        .heads_skipping(&mut |e| skipped.push(e.to_string()))
        .unwrap();
    let names: Vec<String> = heads.iter().map(|(r, c)| format!("{r} {c}")).collect();
    assert_eq!(names, [format!("test/a {commit}")]);
    skipped.sort();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped[0].ends_with("refs/heads/alias: a symlink (a ref alias?); refs that are symlinks are not read or served"), "{skipped:?}");
    assert!(
        skipped[1].contains("refs/heads/garbage: not a ref file"),
        "{skipped:?}"
    );
    assert!(
        !skipped[1].contains("SECRET"),
        "a non-ref file's content is never quoted"
    );

    // The strict listing refuses instead.
    assert!(matches!(
        opened.heads(),
        Err(RepoError::RefSymlink { .. } | RepoError::RefContent { .. })
    ));
}
