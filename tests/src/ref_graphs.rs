//! A property test of the gate: repositories with random ref graphs (content shared between
//! refs, parents across refs, refs pointed at others' commits, refs turning public or gated, and
//! hostile commits naming other objects' checksums under other kinds), served by the real
//! server, and every file asked for without a token and with a token for each gated ref. The
//! answers are checked against `gating::expectations`, the model computed from the real
//! `ostree`'s view of each ref (`ostree log`, `ostree ls -R -C`) by the rules, not by the
//! index's code. So that a run cannot pass by meeting none of the rules, the seeds together
//! must yield public, gated and unreachable objects, a checksum public as one kind and gated as
//! another, and a public ref whose history runs through a gated ref's commit.
//!
//! Each case is made from a seed; `TOLLGATE_GRAPH_SEED=N` runs that one case alone, and a
//! failure names its seed. A second round of random changes is made while the server runs, so
//! the index's updates are checked as well as its builds.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tollgate_ostree_format::Checksum;

use crate::cmd::Cmd;
use crate::fixture::{Fixture, files_under, write_files};
use crate::model::{Expect, Presented, expectations, has_token_type, history, mismatches};
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

/// How often the cases met what the rules are about.
#[derive(Debug, Default)]
struct Met {
    public: usize,
    gated: usize,
    unreachable: usize,
    /// Checksums public as one kind and gated as another.
    public_and_gated_kinds: usize,
    /// Public refs whose history holds a gated ref's commit.
    public_history_through_gated: usize,
}

/// Every file asked for without a token and with each gated ref's token; the mismatches.
fn check(case: &Case, server: &Server, data: &Path, round: &str, met: &mut Met) -> Vec<String> {
    let files = expectations(&case.fx, &case.repo);
    let refs = files_under(&case.repo.join("refs/heads"));
    let (gated_refs, public_refs): (Vec<String>, Vec<String>) = refs
        .into_iter()
        .partition(|r| has_token_type(&case.fx, &case.repo, r));

    let mut by_checksum: HashMap<&str, Vec<&Expect>> = HashMap::new();
    for (rel, expect) in &files {
        match expect {
            Expect::Public => met.public += 1,
            Expect::Gated(_) => met.gated += 1,
            Expect::Unreachable => met.unreachable += 1,
            Expect::Withheld(_) => {}
        }
        if let Some(name) = rel.strip_prefix("objects/")
            && let Some((sum, _)) = name.split_once('.')
        {
            by_checksum.entry(sum).or_default().push(expect);
        }
    }
    met.public_and_gated_kinds += by_checksum
        .values()
        .filter(|e| e.contains(&&Expect::Public) && e.iter().any(|e| matches!(e, Expect::Gated(_))))
        .count();
    let gated_commits: BTreeSet<Checksum> = gated_refs
        .iter()
        .flat_map(|g| history(&case.fx, &case.repo, g))
        .collect();
    met.public_history_through_gated += public_refs
        .iter()
        .filter(|r| {
            history(&case.fx, &case.repo, r)
                .iter()
                .any(|c| gated_commits.contains(c))
        })
        .count();

    let mut wrong = mismatches(server, &case.repo, &files, None, Presented::Invalid);
    for g in &gated_refs {
        let bearer = format!("Bearer {}", tokens::issue(data, &[g], None, 600));
        wrong.extend(mismatches(
            server,
            &case.repo,
            &files,
            Some(&bearer),
            Presented::Covers(g),
        ));
    }
    wrong.into_iter().map(|w| format!("{round}: {w}")).collect()
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

fn run_case(seed: u64, met: &mut Met) -> Vec<String> {
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
    let mut wrong = check(&case, &server, &data, "built", met);
    let before = server.log().matches("indexed ").count();
    for _ in 0..4 {
        case.step();
    }
    case.ostree().args(["summary", "-u"]).run();
    wait_for_index(&server, before);
    wrong.extend(check(&case, &server, &data, "updated", met));
    wrong
}

#[test]
fn random_ref_graphs_answer_as_the_rules_say() {
    let seeds: Vec<u64> = match std::env::var("TOLLGATE_GRAPH_SEED") {
        Ok(s) => vec![s.parse().expect("TOLLGATE_GRAPH_SEED is a number")],
        Err(_) => (1..=10).collect(),
    };
    let every_seed = seeds.len() > 1;
    let mut failed = Vec::new();
    let mut met = Met::default();
    for seed in seeds {
        // A check that panics (a wrong body, say) still names its seed.
        let wrong =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(seed, &mut met)))
                .unwrap_or_else(|panic| {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    vec![format!("panicked: {message}")]
                });
        if !wrong.is_empty() {
            failed.push(format!(
                "seed {seed} (TOLLGATE_GRAPH_SEED={seed}):\n  {}",
                wrong.join("\n  ")
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    if every_seed {
        assert!(
            met.public > 0
                && met.gated > 0
                && met.unreachable > 0
                && met.public_and_gated_kinds > 0
                && met.public_history_through_gated > 0,
            "the cases did not meet every rule: {met:?}"
        );
    }
}
