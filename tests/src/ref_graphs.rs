//! A property test of the gate: repositories with random ref graphs (content shared between
//! refs, parents across refs, refs pointed at others' commits, refs turning public or gated, and
//! hostile commits naming other objects' checksums under other kinds), served by the real
//! server, and every object asked for without a token and with a token for each gated ref. The
//! answers are checked against a model computed from the real `ostree`'s view of each ref
//! (`ostree log`, `ostree ls -R -C`), by the rules, not by the index's code:
//!
//! - a ref is gated when its tip commit has a non-zero `xa.token-type`;
//! - every commit of a gated ref's history (as `ostree log` shows it) is gated;
//! - an object is public when a commit of a public ref's history that no gated ref reaches
//!   holds it, as the kind it is (`.commit` for the commit, `.dirtree`/`.dirmeta` for
//!   directories, `.filez` for files);
//! - otherwise it opens to a token of any gated ref whose history holds it; else nobody (404).
//!
//! Each case is made from a seed; `TOLLGATE_GRAPH_SEED=N` runs that one case alone, and a
//! failure names its seed. A second round of random changes is made while the server runs, so
//! the index's updates are checked as well as its builds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cmd::Cmd;
use crate::fixture::{Fixture, files_under, write_files};
use crate::http::request;
use crate::server::{Server, tollgate_bin};
use crate::synth::Objects;
use crate::tokens;

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const REFS: [&str; 4] = [
    "app/org.example.A/x86_64/stable",
    "app/org.example.B/x86_64/stable",
    "app/org.example.C/x86_64/stable",
    "runtime/org.example.R/x86_64/stable",
];

/// The kind an object file is, by its extension; `None` for what the model leaves out.
fn kind(ext: &str) -> Option<&'static str> {
    match ext {
        "commit" | "commitmeta" => Some("commit"),
        "dirtree" => Some("dirtree"),
        "dirmeta" => Some("dirmeta"),
        "filez" => Some("file"),
        _ => None,
    }
}

/// One case's repository, as it is made.
struct Case {
    fx: Fixture,
    repo: PathBuf,
    rng: Rng,
    made: usize,
}

impl Case {
    fn ostree(&self) -> Cmd {
        self.fx.ostree(&self.repo)
    }

    fn tip(&self, r: &str) -> Option<String> {
        let out = self.ostree().args(["rev-parse", r]).output();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn tips(&self) -> Vec<String> {
        REFS.iter().filter_map(|r| self.tip(r)).collect()
    }

    /// Every object file of a kind, by checksum.
    fn objects_of(&self, ext: &str) -> Vec<String> {
        files_under(&self.repo.join("objects"))
            .into_iter()
            .filter_map(|f| {
                let (dir, name) = f.split_once('/')?;
                let (rest, e) = name.split_once('.')?;
                (e == ext).then(|| format!("{dir}{rest}"))
            })
            .collect()
    }

    fn pick(&mut self, from: &[String]) -> Option<String> {
        (!from.is_empty()).then(|| from[self.rng.below(from.len())].clone())
    }

    /// One random change, as a publisher makes it.
    fn step(&mut self) {
        self.made += 1;
        let r = REFS[self.rng.below(REFS.len())];
        match self.rng.below(10) {
            // A new commit of a random tree from a shared pool of files, on the ref's own
            // history or on another ref's tip; gated or public.
            0..=5 => {
                let tree = self.fx.join(format!("tree-{}", self.made));
                let mut files = Vec::new();
                for i in 0..8 {
                    if self.rng.chance(40) {
                        let dir = ["", "d0/", "d1/", "d0/e/"][self.rng.below(4)];
                        files.push((format!("{dir}f{i}"), format!("content {i}\n").into_bytes()));
                    }
                }
                files.push((format!("own{}", self.made), b"own".to_vec()));
                let files: Vec<(&str, Vec<u8>)> =
                    files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
                write_files(&tree, &files);
                let mut commit =
                    self.ostree()
                        .args(["commit", &format!("--branch={r}"), "--subject=step"]);
                if self.rng.chance(50) {
                    commit = commit.arg("--add-metadata=xa.token-type=1");
                }
                let tips = self.tips();
                if self.rng.chance(25)
                    && let Some(parent) = self.pick(&tips)
                {
                    commit = commit.arg(format!("--parent={parent}"));
                }
                commit.arg(&tree).run();
            }
            // The ref pointed at another ref's commit.
            6 => {
                let tips = self.tips();
                if let Some(c) = self.pick(&tips) {
                    self.write_ref(r, &c);
                }
            }
            // A hostile public commit: its root dirmeta, a file and a subdirectory are named
            // after other objects (commits, dirtrees, files) with real objects of the claimed
            // kind written under those names, so the real ostree reads it as a whole tree.
            _ => {
                let commits = self.objects_of("commit");
                let trees = self.objects_of("dirtree");
                let files = self.objects_of("filez");
                let mut all: Vec<String> = commits.clone();
                all.extend(trees.iter().cloned());
                all.extend(files.iter().cloned());
                let (Some(meta_name), Some(file_name), Some(tree_name)) =
                    (self.pick(&all), self.pick(&all), self.pick(&all))
                else {
                    return;
                };
                let mut objects = Objects::open(&self.repo);
                objects.dirmeta_named(&meta_name);
                let real_file = objects.file(b"hostile file\n");
                let bytes = std::fs::read(self.object(&real_file, "filez")).unwrap();
                if !self.object(&file_name, "filez").exists() {
                    objects.raw(&file_name, "filez", &bytes);
                }
                let leaf = objects.dirtree(&[("x", &real_file)], &[]);
                let bytes = std::fs::read(self.object(&leaf, "dirtree")).unwrap();
                if !self.object(&tree_name, "dirtree").exists() {
                    objects.raw(&tree_name, "dirtree", &bytes);
                }
                let root =
                    objects.dirtree(&[("named", &file_name)], &[("sub", &tree_name, &meta_name)]);
                let parent = self.tip(r);
                let commit = objects.commit("hostile", None, parent.as_deref(), &root, &meta_name);
                self.write_ref(r, &commit);
            }
        }
    }

    fn write_ref(&self, r: &str, commit: &str) {
        let path = self.repo.join("refs/heads").join(r);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("{commit}\n")).unwrap();
    }

    fn object(&self, checksum: &str, ext: &str) -> PathBuf {
        self.repo
            .join("objects")
            .join(&checksum[..2])
            .join(format!("{}.{ext}", &checksum[2..]))
    }
}

/// Who may have each object file (by its path), by the rules, from the real ostree's view.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Public,
    Gated(BTreeSet<String>),
    Nobody,
}

fn model(case: &Case) -> (BTreeMap<String, Expect>, Vec<String>) {
    let mut histories: HashMap<String, Vec<String>> = HashMap::new();
    let mut gated_refs = Vec::new();
    for r in REFS {
        let Some(tip) = case.tip(r) else { continue };
        let shown = case
            .ostree()
            .args(["show", "--print-metadata-key=xa.token-type", &tip])
            .output();
        if shown.status.success() && String::from_utf8_lossy(&shown.stdout).trim() != "0" {
            gated_refs.push(r.to_owned());
        }
        let log = case.ostree().args(["log", r]).run();
        let commits = log
            .lines()
            .filter_map(|l| l.strip_prefix("commit "))
            .map(|c| c.trim().to_owned())
            .collect();
        histories.insert(r.to_owned(), commits);
    }
    // (kind, checksum) of what each commit holds.
    let mut holds: HashMap<String, BTreeSet<(&'static str, String)>> = HashMap::new();
    for commits in histories.values() {
        for c in commits {
            if holds.contains_key(c) {
                continue;
            }
            let mut set = BTreeSet::from([("commit", c.clone())]);
            let listing = case.ostree().args(["ls", "-R", "-C", c]).run();
            for line in listing.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                if line.starts_with('d') {
                    set.insert(("dirtree", f[4].to_owned()));
                    set.insert(("dirmeta", f[5].to_owned()));
                } else {
                    set.insert(("file", f[4].to_owned()));
                }
            }
            holds.insert(c.clone(), set);
        }
    }
    let gated_commits: BTreeSet<&String> = gated_refs.iter().flat_map(|g| &histories[g]).collect();
    let mut public: BTreeSet<(&str, String)> = BTreeSet::new();
    for (r, commits) in &histories {
        if gated_refs.contains(r) {
            continue;
        }
        for c in commits.iter().filter(|c| !gated_commits.contains(c)) {
            public.extend(holds[c].iter().cloned());
        }
    }
    let mut gated: HashMap<(&str, String), BTreeSet<String>> = HashMap::new();
    for g in &gated_refs {
        for c in &histories[g] {
            for o in &holds[c] {
                gated.entry(o.clone()).or_default().insert(g.clone());
            }
        }
    }
    let mut files = BTreeMap::new();
    for rel in files_under(&case.repo.join("objects")) {
        let Some((dir, name)) = rel.split_once('/') else {
            continue;
        };
        let Some((rest, ext)) = name.split_once('.') else {
            continue;
        };
        let Some(kind) = kind(ext) else { continue };
        let key = (kind, format!("{dir}{rest}"));
        let expect = if public.contains(&key) {
            Expect::Public
        } else if let Some(refs) = gated.get(&key) {
            Expect::Gated(refs.clone())
        } else {
            Expect::Nobody
        };
        files.insert(format!("/objects/{rel}"), expect);
    }
    for r in histories.keys() {
        let expect = if gated_refs.contains(r) {
            Expect::Gated(BTreeSet::from([r.clone()]))
        } else {
            Expect::Public
        };
        files.insert(format!("/refs/heads/{r}"), expect);
    }
    (files, gated_refs)
}

/// Every file asked for without a token and with each gated ref's token; the mismatches.
fn check(case: &Case, server: &Server, data: &Path, round: &str) -> Vec<String> {
    let (files, gated_refs) = model(case);
    let mut tokens: Vec<(Option<String>, Option<String>)> = vec![(None, None)];
    for g in &gated_refs {
        tokens.push((Some(g.clone()), Some(tokens::issue(data, &[g], None, 600))));
    }
    let mut wrong = Vec::new();
    for (path, expect) in &files {
        for (covers, token) in &tokens {
            let bearer = token.as_ref().map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> = bearer
                .iter()
                .map(|b| ("Authorization", b.as_str()))
                .collect();
            let got = request(server.addr, "GET", path, &headers).status;
            let want = match (expect, covers) {
                (Expect::Public, _) => 200,
                (Expect::Nobody, _) => 404,
                (Expect::Gated(_), None) => 401,
                (Expect::Gated(refs), Some(r)) if refs.contains(r) => 200,
                (Expect::Gated(_), Some(_)) => 403,
            };
            if got != want {
                wrong.push(format!(
                    "{round}: {path} ({expect:?}) with a token for {covers:?}: {got}, not {want}"
                ));
            }
        }
    }
    wrong
}

/// Waits until the server has indexed the repository as it is now: a new "indexed" line, then
/// none for a while.
fn wait_for_index(server: &Server, before: usize) {
    let count = || server.log().matches("indexed ").count();
    let deadline = Instant::now() + Duration::from_secs(20);
    while count() <= before {
        assert!(Instant::now() < deadline, "no new index:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut last = count();
    loop {
        std::thread::sleep(Duration::from_millis(700));
        let now = count();
        if now == last {
            return;
        }
        last = now;
    }
}

fn run_case(seed: u64) -> Vec<String> {
    let fx = Fixture::new();
    let repo = fx.join("repo");
    fx.ostree(&repo).args(["init", "--mode=archive"]).run();
    let data = fx.join("data");
    Cmd::new(tollgate_bin())
        .args(["keys", "generate", "--data-dir"])
        .arg(&data)
        .run();
    let mut case = Case {
        fx,
        repo,
        rng: Rng(seed),
        made: 0,
    };
    for _ in 0..8 {
        case.step();
    }
    case.ostree().args(["summary", "-u"]).run();
    let server = Server::serve(
        &[
            "--repo",
            case.repo.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        case.fx.env(),
    );
    let mut wrong = check(&case, &server, &data, "built");
    let before = server.log().matches("indexed ").count();
    for _ in 0..4 {
        case.step();
    }
    case.ostree().args(["summary", "-u"]).run();
    wait_for_index(&server, before);
    wrong.extend(check(&case, &server, &data, "updated"));
    wrong
}

#[test]
fn random_ref_graphs_answer_as_the_rules_say() {
    let seeds: Vec<u64> = match std::env::var("TOLLGATE_GRAPH_SEED") {
        Ok(s) => vec![s.parse().expect("TOLLGATE_GRAPH_SEED is a number")],
        Err(_) => (1..=10).collect(),
    };
    let mut failed = Vec::new();
    for seed in seeds {
        let wrong = run_case(seed);
        if !wrong.is_empty() {
            failed.push(format!(
                "seed {seed} (TOLLGATE_GRAPH_SEED={seed}):\n  {}",
                wrong.join("\n  ")
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
