//! The one model of the gating rules every gating test checks against: what each file of a
//! repository must answer to each kind of token, computed from what the real `ostree log` and
//! `ostree ls -R` say each ref reaches, not from the server's own code.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use tollgate_ostree_format::{Checksum, ObjectType, RepoPath};

use crate::fixture::{Fixture, files_under};
use crate::http::{Response, request};
use crate::server::Server;

/// The kind under which the gate judges an object, as the rules name them: commits with their
/// detached metadata, directory trees, directory metadata, and files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Commit,
    DirTree,
    DirMeta,
    File,
}

impl Kind {
    fn of(t: ObjectType) -> Option<Kind> {
        match t {
            ObjectType::Commit | ObjectType::CommitMeta => Some(Kind::Commit),
            ObjectType::DirTree => Some(Kind::DirTree),
            ObjectType::DirMeta => Some(Kind::DirMeta),
            ObjectType::File => Some(Kind::File),
            ObjectType::TombstoneCommit => None,
        }
    }
}

/// Every commit of the ref's history, as `ostree log` shows it.
pub fn history(fx: &Fixture, repo: &Path, r: &str) -> Vec<Checksum> {
    let log = fx.ostree(repo).args(["log", r]).run();
    log.lines()
        .filter_map(|l| l.strip_prefix("commit "))
        .map(|c| Checksum::from_hex(c.trim()).unwrap())
        .collect()
}

/// What a commit holds, each object under the kind it is reached as: the commit itself, and
/// every dirtree, dirmeta and file `ostree ls -R -C` shows for it.
fn held_by(fx: &Fixture, repo: &Path, commit: &Checksum) -> HashSet<(Kind, Checksum)> {
    let mut objects = HashSet::from([(Kind::Commit, *commit)]);
    let listing = fx
        .ostree(repo)
        .args(["ls", "-R", "-C", &commit.to_string()])
        .run();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let sum = |i: usize| Checksum::from_hex(fields[i]).unwrap();
        if line.starts_with('d') {
            objects.insert((Kind::DirTree, sum(4)));
            objects.insert((Kind::DirMeta, sum(5)));
        } else {
            objects.insert((Kind::File, sum(4)));
        }
    }
    objects
}

/// Whether the real ostree finds a non-zero `xa.token-type` on the ref's commit.
pub fn has_token_type(fx: &Fixture, repo: &Path, r: &str) -> bool {
    let out = fx
        .ostree(repo)
        .args(["show", "--print-metadata-key=xa.token-type", r])
        .output();
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() != "0"
}

/// Who may have a file, as the real ostree's view of the repository says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Public,
    /// Reached only by these gated refs.
    Gated(BTreeSet<String>),
    /// A delta to a public commit from one of these gated refs' commits.
    Withheld(BTreeSet<String>),
    /// On disk, but no ref reaches it.
    Unreachable,
}

/// Every servable file of the repository as it is now, with who may have it, by the rules (from
/// the real ostree's view of each ref, not from the index's code):
///
/// - a ref is gated when its tip commit has a non-zero `xa.token-type`;
/// - every commit of a gated ref's history (as `ostree log` shows it) is gated;
/// - an object is public when a commit of a public ref's history that no gated ref reaches
///   holds it, as the kind it is (`.commit`/`.commitmeta` for the commit, `.dirtree`/`.dirmeta`
///   for directories, `.filez` for files): a checksum public as one kind opens nothing else;
/// - otherwise it opens to a token of any gated ref whose history holds it; else nobody;
/// - deltas and delta indexes are judged as the commits they join.
pub fn expectations(fx: &Fixture, repo: &Path) -> Vec<(String, Expect)> {
    let refs = files_under(&repo.join("refs/heads"));
    let histories: HashMap<String, Vec<Checksum>> = refs
        .iter()
        .map(|r| (r.clone(), history(fx, repo, r)))
        .collect();
    let (gated_refs, public_refs): (Vec<String>, Vec<String>) =
        refs.into_iter().partition(|r| has_token_type(fx, repo, r));
    let mut holds: HashMap<Checksum, HashSet<(Kind, Checksum)>> = HashMap::new();
    for c in histories.values().flatten() {
        if !holds.contains_key(c) {
            holds.insert(*c, held_by(fx, repo, c));
        }
    }
    let gated_commits: HashSet<&Checksum> = gated_refs.iter().flat_map(|r| &histories[r]).collect();
    let public: HashSet<(Kind, Checksum)> = public_refs
        .iter()
        .flat_map(|r| &histories[r])
        .filter(|c| !gated_commits.contains(c))
        .flat_map(|c| holds[c].iter().copied())
        .collect();
    let mut gated: HashMap<(Kind, Checksum), BTreeSet<String>> = HashMap::new();
    for r in &gated_refs {
        for o in histories[r].iter().flat_map(|c| &holds[c]) {
            if !public.contains(o) {
                gated.entry(*o).or_default().insert(r.clone());
            }
        }
    }
    let judge = |kind: Kind, c: &Checksum| {
        let key = (kind, *c);
        match (public.contains(&key), gated.get(&key)) {
            (true, _) => Expect::Public,
            (false, Some(refs)) => Expect::Gated(refs.clone()),
            (false, None) => Expect::Unreachable,
        }
    };
    let mut files = Vec::new();
    for rel in files_under(repo) {
        let expect = match RepoPath::parse(&rel) {
            None => continue,
            Some(RepoPath::Object(o)) => match Kind::of(o.kind) {
                Some(kind) => judge(kind, &o.checksum),
                None => Expect::Public,
            },
            // Open only when both the target and the source are open to the request.
            Some(RepoPath::Delta { delta, .. }) => {
                let to = judge(Kind::Commit, &delta.to);
                match (to, delta.from.map(|f| judge(Kind::Commit, &f))) {
                    (Expect::Unreachable, _) | (_, Some(Expect::Unreachable)) => {
                        Expect::Unreachable
                    }
                    (Expect::Public, Some(Expect::Gated(source))) => Expect::Withheld(source),
                    (to, _) => to,
                }
            }
            Some(RepoPath::DeltaIndex(to)) => judge(Kind::Commit, &to),
            Some(RepoPath::Head(name)) if gated_refs.iter().any(|r| r == name.as_str()) => {
                Expect::Gated(BTreeSet::from([name.to_string()]))
            }
            Some(_) => Expect::Public,
        };
        files.push((rel, expect));
    }
    files
}

/// What a token does for a request.
#[derive(Debug, Clone, Copy)]
pub enum Presented<'a> {
    /// No token, or one the server must refuse: 401 for anything gated.
    Invalid,
    /// A valid token that covers no ref of this repository: 403 for anything gated.
    CoversNothing,
    /// A valid token covering this ref.
    Covers(&'a str),
}

/// The status `file` must get with `token`.
pub fn wanted(expect: &Expect, token: Presented<'_>) -> u16 {
    match (expect, token) {
        (Expect::Public, _) => 200,
        (Expect::Unreachable, _) => 404,
        (Expect::Gated(_), Presented::Invalid) => 401,
        (Expect::Gated(_), Presented::CoversNothing) => 403,
        (Expect::Gated(refs), Presented::Covers(r)) => {
            if refs.contains(r) {
                200
            } else {
                403
            }
        }
        (Expect::Withheld(refs), Presented::Covers(r)) if refs.contains(r) => 200,
        (Expect::Withheld(_), _) => 404,
    }
}

/// Asks for every file with `header` (an Authorization value) and compares with what `token`
/// must get; returns the mismatches.
pub fn mismatches(
    server: &Server,
    repo: &Path,
    files: &[(String, Expect)],
    header: Option<&str>,
    token: Presented<'_>,
) -> Vec<String> {
    let headers: Vec<(&str, &str)> = header.iter().map(|h| ("Authorization", *h)).collect();
    let mut wrong = Vec::new();
    for (rel, expect) in files {
        let r = request(server.addr, "GET", &format!("/{rel}"), &headers);
        let want = wanted(expect, token);
        if r.status != want {
            wrong.push(format!(
                "{rel} ({expect:?}): {} instead of {want}",
                r.status
            ));
            continue;
        }
        check_answer(repo, rel, expect, &r);
    }
    wrong
}

/// Checks the headers and body of one answer.
fn check_answer(repo: &Path, rel: &str, expect: &Expect, r: &Response) {
    if r.status == 200 {
        if rel != "config" {
            assert_eq!(r.body, std::fs::read(repo.join(rel)).unwrap(), "{rel}");
        }
        let private = r.header("cache-control") == Some("private, no-store");
        assert_eq!(
            private,
            *expect != Expect::Public,
            "{rel}: {:?}",
            r.header("cache-control")
        );
        return;
    }
    if r.status == 401 {
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{rel}"
        );
    }
    let body = String::from_utf8_lossy(&r.body);
    assert!(body.contains("\"error-type\""), "{rel}: {body}");
}
