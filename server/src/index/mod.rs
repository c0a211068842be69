//! The reachability index: for every object of a repository, whether it is public or which
//! gated refs reach it.
//!
//! A ref is gated when its commit says `xa.token-type` ≠ 0 or its name matches a `gated-refs`
//! pattern; every commit of its history (parents still in the repository) belongs to it. An
//! object is public when any public ref's history reaches it; otherwise it carries the set of
//! gated refs whose histories reach it. Deltas and delta indexes are judged by their to-commit,
//! so they need no entries of their own.
//!
//! A built index is immutable: [`live::LiveIndex`] makes a new one when the refs change and
//! swaps it in whole, so a request always sees one consistent index. Entries (checksum, access
//! id) are sorted by checksum, with where each run of leading checksum bits starts, so a lookup
//! searches a few neighbours: 37 to 38 bytes per object.
//!
//! **Building.** Public refs are walked first, then gated ones, each on as many threads as the
//! machine has (up to four). A dirtree is read once per ref at most, and a gated walk does not go
//! below a dirtree a public walk has seen: everything below a public dirtree is public. The walks
//! yield (checksum, ref) pairs, one list per kind of object, which one sort a kind groups by
//! object.
//!
//! **Updating.** When refs have only been added or moved forward (the old tip is in the new
//! tip's history) and no ref changed between public and gated, [`RepoIndex::update`] walks only
//! the new commits, and does not go below a dirtree the old index already opens to the walking
//! ref (everything below it is opened to that ref too). Changed entries go to a small sorted
//! table of recent entries, searched before the main one and folded into it once it holds an
//! eighth as many entries, so an update costs time in proportion to what it adds. Anything else —
//! a ref deleted, moved to an unrelated commit, or switched between public and gated, or an old
//! index that met missing objects — rebuilds in full, because access can then shrink.

pub(crate) mod live;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use foldhash::HashSet;
use tollgate_ostree_format::{
    Checksum, ObjectType, Repo, RepoError, WalkError, commit_closure_visit, commit_history,
    load_commit,
};

/// Access id of public objects and refs.
const PUBLIC: u32 = u32::MAX;
/// Threads a build walks on at most.
const MAX_THREADS: usize = 4;
/// Objects one ref's history may reach before the ref is taken for hostile and left out, unless
/// the configuration says otherwise (`[limits] max-ref-objects`): far more than any real tree
/// (a whole OS is about a million), few enough that one publisher's ref cannot hold the index
/// thread or its memory (about 40 bytes a walked object).
pub(crate) const DEFAULT_MAX_REF_OBJECTS: usize = 20_000_000;

/// (checksum, access id).
type Entry = ([u8; 32], u32);
/// What a walk yields for one kind: an object reached as that kind, and the access id of the
/// walking ref.
type Pair = Entry;

/// The kinds of object the index tells apart. A checksum opens only files of the kind it was
/// reached as: a commit named as some tree's dirmeta opens a `.dirmeta` of that name, never
/// the `.commit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    /// Commits, and their detached metadata (`.commitmeta`), reached as a ref's history.
    Commit,
    DirTree,
    DirMeta,
    /// Content objects (`.filez`).
    File,
}

const KINDS: usize = 4;

impl Kind {
    const ALL: [Kind; KINDS] = [Kind::Commit, Kind::DirTree, Kind::DirMeta, Kind::File];

    /// The kind an object file is judged as; `None` for tombstones, which the index does not
    /// hold (they are public).
    pub(crate) fn of(object: ObjectType) -> Option<Kind> {
        match object {
            ObjectType::Commit | ObjectType::CommitMeta => Some(Kind::Commit),
            ObjectType::DirTree => Some(Kind::DirTree),
            ObjectType::DirMeta => Some(Kind::DirMeta),
            ObjectType::File => Some(Kind::File),
            ObjectType::TombstoneCommit => None,
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// What the index says about an object or a ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access<'a> {
    Public,
    /// Reached only by these gated refs (ids into [`RepoIndex::ref_name`]).
    Gated(&'a [u32]),
    /// Not in the index: not reachable from any ref when it was built.
    Unknown,
}

/// Decides whether a ref is gated by its name (the `gated-refs` patterns).
pub(crate) type NamePolicy<'a> = &'a (dyn Fn(&str) -> bool + Sync);

/// What an index is built by, besides the repository.
#[derive(Clone, Copy)]
pub(crate) struct Rules<'a> {
    pub gated_by_name: NamePolicy<'a>,
    /// Objects one ref's history may reach before the ref is left out as hostile.
    pub max_ref_objects: usize,
}

impl<'a> Rules<'a> {
    /// `gated_by_name`, and the default limit on a ref's objects.
    #[cfg(test)]
    pub(crate) fn by_name(gated_by_name: NamePolicy<'a>) -> Rules<'a> {
        Rules {
            gated_by_name,
            max_ref_objects: DEFAULT_MAX_REF_OBJECTS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum IndexError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("walking ref {name}")]
    Walk {
        name: String,
        #[source]
        source: Box<WalkError>,
    },
}

/// Counts that describe an index, for logs, metrics and benchmarks.
#[derive(Debug, Clone, Default)]
pub(crate) struct IndexStats {
    /// Objects, each kind counted apart (a checksum reached as two kinds counts twice).
    pub objects: usize,
    pub public_objects: usize,
    pub public_refs: usize,
    pub gated_refs: usize,
    /// Refs left out because their tip commit could not be walked (missing, corrupt or
    /// unreadable objects, or more than [`Rules::max_ref_objects`]): their ref files and what only
    /// they reach are refused.
    pub left_out_refs: usize,
    /// Distinct sets of gated refs.
    pub access_sets: usize,
    pub build_time: Duration,
    /// Bytes held by the index's tables.
    pub bytes: usize,
    /// Whether this index was made by updating the one before rather than building anew.
    pub incremental: bool,
    /// Objects the walks of this build or update went through (dirtrees read, and what they
    /// name): the work done.
    pub walked: usize,
}

/// A ref's tip as indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tip {
    name: String,
    commit: Checksum,
    gated: bool,
    /// Gated by a `gated-refs` pattern only: the commit has no `xa.token-type`.
    by_name_only: bool,
}

/// An immutable reachability index of one repository.
#[derive(Debug)]
pub(crate) struct RepoIndex {
    /// Per [`Kind`]: (checksum, access id), sorted by checksum; shared with the indexes
    /// updated from this one.
    objects: [Arc<Table>; KINDS],
    /// Per [`Kind`]: entries added or changed by updates since `objects` was laid out, sorted
    /// by checksum; they take precedence over `objects`.
    recent: [Vec<Entry>; KINDS],
    /// Access sets by id: sorted gated ref ids.
    sets: Vec<Box<[u32]>>,
    /// Gated ref names by id.
    gated_refs: Vec<String>,
    /// Gated refs whose commits carry no `xa.token-type`: gated only by a name pattern.
    gated_by_name_only: Vec<String>,
    /// Every ref by name (but those left out): its access id.
    refs: HashMap<String, u32>,
    /// Every tip indexed (refs/heads and refs/mirrors), sorted.
    tips: Vec<Tip>,
    /// A walk met a missing or corrupt object: the next update builds anew.
    partial: bool,
    stats: IndexStats,
}

/// Commits to walk for one ref, and the access id they give.
#[derive(Debug)]
struct Work {
    name: String,
    id: u32,
    /// Newest first: the tip, then its history.
    commits: Vec<Checksum>,
}

/// What the walks yielded.
#[derive(Default)]
struct Walked {
    /// By kind (`Kind::slot`): the kind is never stored, so a pair is 36 bytes.
    pairs: [Vec<Pair>; KINDS],
    /// Dirtrees walked by public commits walked whole (what gated walks need not go below).
    trees: HashSet<[u8; 32]>,
    /// Some commit could not be walked.
    partial: bool,
    /// Refs whose tip could not be walked.
    left_out: Vec<String>,
}

impl RepoIndex {
    /// An index that knows nothing, so that every file is refused: what a failed rebuild
    /// leaves in place.
    pub(crate) fn closed() -> RepoIndex {
        RepoIndex {
            objects: std::array::from_fn(|_| Arc::new(Table::new(Vec::new()))),
            recent: Default::default(),
            sets: Vec::new(),
            gated_refs: Vec::new(),
            gated_by_name_only: Vec::new(),
            refs: HashMap::new(),
            tips: Vec::new(),
            // Nothing to build on.
            partial: true,
            stats: IndexStats::default(),
        }
    }

    /// Builds the index of `repo`. `progress` is called now and then with the number of objects
    /// walked so far, so that a long build can say how it is going.
    pub(crate) fn build(
        repo: &Repo,
        rules: Rules<'_>,
        progress: &mut dyn FnMut(usize),
    ) -> Result<RepoIndex, IndexError> {
        RepoIndex::make(None, repo, rules, progress)
    }

    /// The index of `repo` as it is now, made from this one by walking only what is new when
    /// the refs have only been added or moved forward; built anew otherwise.
    pub(crate) fn update(
        &self,
        repo: &Repo,
        rules: Rules<'_>,
        progress: &mut dyn FnMut(usize),
    ) -> Result<RepoIndex, IndexError> {
        RepoIndex::make(Some(self), repo, rules, progress)
    }

    fn make(
        previous: Option<&RepoIndex>,
        repo: &Repo,
        rules: Rules<'_>,
        progress: &mut dyn FnMut(usize),
    ) -> Result<RepoIndex, IndexError> {
        let started = Instant::now();
        let tips = read_tips(repo, rules.gated_by_name)?;
        let max = rules.max_ref_objects;
        let mut index = None;
        if let Some(previous) = previous.filter(|p| !p.partial)
            && let Some(work) = plan_update(previous, &tips, repo)
        {
            index = RepoIndex::assemble(Some(previous), repo, tips.clone(), work, max, progress)?;
        }
        let index = match index {
            Some(index) => index,
            None => {
                let work = plan_build(&tips, repo)?;
                // A build, with no index before it, always lays one out; were it ever not to,
                // the closed index refuses everything.
                RepoIndex::assemble(None, repo, tips, work, max, progress)?
                    .unwrap_or_else(RepoIndex::closed)
            }
        };
        Ok(RepoIndex::timed(index, started))
    }

    fn timed(mut index: RepoIndex, started: Instant) -> RepoIndex {
        index.stats.build_time = started.elapsed();
        index
    }

    /// Walks `work` and lays the index out, on top of `previous` when updating. `None` when
    /// an update met something only a full build decides rightly: a gated ref reaching a
    /// commit that was public, or a commit that could not be walked.
    fn assemble(
        previous: Option<&RepoIndex>,
        repo: &Repo,
        tips: Vec<Tip>,
        work: Vec<Work>,
        max: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Option<RepoIndex>, IndexError> {
        // Gated ref ids: those of the old index, then new names in name order.
        let mut gated_names: Vec<String> = previous.map_or_else(Vec::new, |p| p.gated_refs.clone());
        let mut new_names: Vec<&str> = tips
            .iter()
            .filter(|t| t.gated && !gated_names.contains(&t.name))
            .map(|t| t.name.as_str())
            .collect();
        new_names.sort_unstable();
        new_names.dedup();
        gated_names.extend(new_names.into_iter().map(str::to_owned));
        let ids: HashMap<&str, u32> = gated_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), id_of(i)))
            .collect();
        let (mut public_work, gated_work): (Vec<Work>, Vec<Work>) = work
            .into_iter()
            .map(|mut w| {
                w.id = ids.get(w.name.as_str()).copied().unwrap_or(PUBLIC);
                w
            })
            .partition(|w| w.id == PUBLIC);

        // A public ref's history never opens a commit that a gated ref reaches (its tip or its
        // history): anyone may make a public commit whose parent is a gated one, or point a
        // public ref at one. What such a commit's tree shares with public trees stays public
        // through them.
        let gated_commits: HashSet<[u8; 32]> = gated_work
            .iter()
            .flat_map(|w| &w.commits)
            .map(|c| *c.as_bytes())
            .collect();
        let was_gated = |c: &[u8; 32]| {
            previous.is_some_and(|p| matches!(p.lookup(Kind::Commit, c), Access::Gated(_)))
        };
        if let Some(p) = previous
            && gated_commits
                .iter()
                .any(|c| p.lookup(Kind::Commit, c) == Access::Public)
        {
            // Access shrinks: only a build can take it away.
            return Ok(None);
        }
        for w in &mut public_work {
            w.commits
                .retain(|c| !gated_commits.contains(c.as_bytes()) && !was_gated(c.as_bytes()));
        }

        let seen = AtomicUsize::new(0);
        let public = walk_all(repo, previous, &public_work, &[], max, &seen, progress)?;
        let public_trees: Vec<&HashSet<[u8; 32]>> = public.iter().map(|w| &w.trees).collect();
        let gated = walk_all(
            repo,
            previous,
            &gated_work,
            &public_trees,
            max,
            &seen,
            progress,
        )?;
        let partial = public.iter().chain(&gated).any(|w| w.partial);
        if partial && previous.is_some() {
            return Ok(None);
        }
        let mut left_out: Vec<String> = public
            .iter()
            .chain(&gated)
            .flat_map(|w| w.left_out.iter().cloned())
            .collect();
        left_out.sort_unstable();
        left_out.dedup();
        let walked = seen.load(Ordering::Relaxed);
        progress(walked);
        let mut all = public;
        all.extend(gated);

        let mut sets: Vec<Box<[u32]>> = previous.map_or_else(Vec::new, |p| p.sets.clone());
        let mut set_ids: HashMap<Box<[u32]>, u32> = sets
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), id_of(i)))
            .collect();
        let mut intern = |ids: &[u32]| -> u32 {
            if let Some(id) = set_ids.get(ids) {
                return *id;
            }
            sets.push(ids.into());
            let id = id_of(sets.len() - 1);
            set_ids.insert(ids.into(), id);
            id
        };

        // One entry per object of a kind: the union of what reaches it now and what reached
        // it before. A kind at a time, so that only one kind's pairs are held beside the
        // tables.
        let mut entries: [Vec<Entry>; KINDS] = Default::default();
        let (mut added, mut made_public) = (0usize, 0usize);
        let mut union: Vec<u32> = Vec::new();
        for kind in Kind::ALL {
            let k = kind.slot();
            let mut pairs: Vec<Pair> =
                Vec::with_capacity(all.iter().map(|w| w.pairs[k].len()).sum());
            for w in &mut all {
                pairs.append(&mut w.pairs[k]);
                w.pairs[k].shrink_to_fit();
            }
            // By object, then access id: PUBLIC sorts last. Checksums are uniform, so their
            // first eight bytes nearly always decide, without a 32-byte compare.
            pairs.sort_unstable_by(|a, b| prefix(&a.0).cmp(&prefix(&b.0)).then_with(|| a.cmp(b)));
            let groups = pairs.chunk_by(|a, b| a.0 == b.0);
            entries[k].reserve_exact(groups.clone().count());
            for group in groups {
                let checksum = group[0].0;
                let now_public = group.last().is_some_and(|p| p.1 == PUBLIC);
                let before = previous.map_or(Access::Unknown, |p| p.lookup(kind, &checksum));
                let id = match before {
                    Access::Public => continue,
                    _ if now_public => PUBLIC,
                    Access::Gated(old) => {
                        union.clear();
                        union.extend_from_slice(old);
                        union.extend(group.iter().map(|p| p.1));
                        union.sort_unstable();
                        union.dedup();
                        if union.len() == old.len() {
                            continue;
                        }
                        intern(&union)
                    }
                    Access::Unknown => {
                        union.clear();
                        union.extend(group.iter().map(|p| p.1));
                        union.dedup();
                        intern(&union)
                    }
                };
                added += usize::from(matches!(before, Access::Unknown));
                made_public += usize::from(id == PUBLIC);
                entries[k].push((checksum, id));
            }
        }
        drop(all);

        let mut objects: [Arc<Table>; KINDS] =
            std::array::from_fn(|_| Arc::new(Table::new(Vec::new())));
        let mut recent: [Vec<Entry>; KINDS] = Default::default();
        for (kind, entries) in Kind::ALL.into_iter().zip(entries) {
            let k = kind.slot();
            (objects[k], recent[k]) = match previous {
                None => {
                    let mut entries = entries;
                    entries.shrink_to_fit();
                    (Arc::new(Table::new(entries)), Vec::new())
                }
                Some(p) => {
                    let recent = merge(&p.recent[k], &entries);
                    if recent.len() > p.objects[k].entries.len() / 8 + 1024 {
                        let merged = merge(&p.objects[k].entries, &recent);
                        (Arc::new(Table::new(merged)), Vec::new())
                    } else {
                        (Arc::clone(&p.objects[k]), recent)
                    }
                }
            };
        }

        let mut refs = HashMap::new();
        for tip in &tips {
            if left_out.binary_search(&tip.name).is_ok() {
                continue;
            }
            let id = match ids.get(tip.name.as_str()) {
                Some(id) if tip.gated => intern(&[*id]),
                _ => PUBLIC,
            };
            refs.insert(tip.name.clone(), id);
        }
        let mut gated_by_name_only: Vec<String> = tips
            .iter()
            .filter(|t| t.by_name_only)
            .map(|t| t.name.clone())
            .collect();
        gated_by_name_only.dedup();

        let entry = std::mem::size_of::<Entry>();
        let bytes = objects.iter().map(|t| t.bytes()).sum::<usize>()
            + recent.iter().map(|r| r.capacity() * entry).sum::<usize>()
            + sets.iter().map(|s| s.len() * 4 + 16).sum::<usize>()
            + gated_names.iter().map(|n| n.len() + 24).sum::<usize>()
            + refs.keys().map(|n| n.len() + 32).sum::<usize>();
        let before = previous.map(|p| &p.stats);
        let stats = IndexStats {
            objects: before.map_or(0, |s| s.objects) + added,
            public_objects: before.map_or(0, |s| s.public_objects) + made_public,
            public_refs: refs.values().filter(|id| **id == PUBLIC).count(),
            gated_refs: gated_names.len(),
            left_out_refs: left_out.len(),
            access_sets: sets.len(),
            build_time: Duration::ZERO,
            bytes,
            incremental: previous.is_some(),
            walked,
        };
        Ok(Some(RepoIndex {
            objects,
            recent,
            sets,
            gated_refs: gated_names,
            gated_by_name_only,
            refs,
            tips,
            partial,
            stats,
        }))
    }

    pub(crate) fn stats(&self) -> &IndexStats {
        &self.stats
    }

    /// Who may have the object of this kind with this checksum.
    pub(crate) fn object(&self, kind: Kind, checksum: &Checksum) -> Access<'_> {
        self.lookup(kind, checksum.as_bytes())
    }

    fn lookup(&self, kind: Kind, checksum: &[u8; 32]) -> Access<'_> {
        let k = kind.slot();
        match search(&self.recent[k], checksum).or_else(|| self.objects[k].get(checksum)) {
            Some(id) => self.access(id),
            None => Access::Unknown,
        }
    }

    /// Whether everything below the dirtree `tree` is already open to `id`.
    fn covers(&self, tree: &[u8; 32], id: u32) -> bool {
        match self.lookup(Kind::DirTree, tree) {
            Access::Public => true,
            Access::Gated(ids) => id != PUBLIC && ids.binary_search(&id).is_ok(),
            Access::Unknown => false,
        }
    }

    /// Who may read the ref file `refs/heads/<name>` (or a mirror of that name).
    pub(crate) fn ref_file(&self, name: &str) -> Access<'_> {
        self.refs
            .get(name)
            .map_or(Access::Unknown, |id| self.access(*id))
    }

    /// The name of the gated ref with this id.
    pub(crate) fn ref_name(&self, id: u32) -> &str {
        self.gated_refs.get(id as usize).map_or("", String::as_str)
    }

    /// Gated refs whose commits do not say `xa.token-type`: flatpak will not ask for a token
    /// for them, so flatpak clients cannot install them.
    pub(crate) fn gated_by_name_only(&self) -> &[String] {
        &self.gated_by_name_only
    }

    fn access(&self, id: u32) -> Access<'_> {
        if id == PUBLIC {
            return Access::Public;
        }
        // An id without a set cannot come from `make`; refuse rather than open.
        self.sets
            .get(id as usize)
            .map_or(Access::Gated(&[]), |s| Access::Gated(s))
    }
}

fn id_of(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(PUBLIC - 1)
}

/// Every ref's tip, and whether it is gated. A ref whose commit cannot be read is gated: its
/// content is unknown, so nothing may be assumed public.
fn read_tips(repo: &Repo, gated_by_name: NamePolicy<'_>) -> Result<Vec<Tip>, IndexError> {
    // A file under refs/ that is not a ref is left out, with a warning: what it would reach
    // stays unknown, and unknown objects are never served.
    let mut skip = |e: RepoError| tracing::warn!("{e}; leaving it out of the index");
    let mut refs: Vec<(String, Checksum)> = repo
        .heads_skipping(&mut skip)?
        .into_iter()
        .map(|(name, c)| (name.to_string(), c))
        .collect();
    refs.extend(
        repo.mirrors_skipping(&mut skip)?
            .into_iter()
            .map(|(_, name, c)| (name.to_string(), c)),
    );
    let mut tips: Vec<Tip> = refs
        .into_iter()
        .map(|(name, commit)| {
            let by_commit = match load_commit(repo, commit) {
                Ok(c) => c.token_type().is_some_and(|t| t != 0),
                Err(e) => {
                    tracing::warn!("ref {name}: {e}; treating it as gated");
                    true
                }
            };
            let by_name = gated_by_name(&name);
            Tip {
                gated: by_commit || by_name,
                by_name_only: by_name && !by_commit,
                name,
                commit,
            }
        })
        .collect();
    tips.sort_by(|a, b| (&a.name, a.commit.as_bytes()).cmp(&(&b.name, b.commit.as_bytes())));
    // The same ref under refs/heads and refs/mirrors is one ref: gated if either tip is.
    for same in tips.chunk_by_mut(|a, b| a.name == b.name) {
        let gated = same.iter().any(|t| t.gated);
        for tip in same {
            tip.gated = gated;
        }
    }
    Ok(tips)
}

/// Every tip's whole history.
fn plan_build(tips: &[Tip], repo: &Repo) -> Result<Vec<Work>, IndexError> {
    tips.iter()
        .map(|tip| {
            Ok(Work {
                name: tip.name.clone(),
                id: PUBLIC,
                commits: history(repo, &tip.name, tip.commit)?,
            })
        })
        .collect()
}

/// The commits new since `previous`, when every change is a ref added or moved forward;
/// `None` when the index must be built anew. Both lists are sorted by name (`read_tips`), and
/// a name's tips (refs/heads and refs/mirrors) are matched among themselves.
fn plan_update(previous: &RepoIndex, tips: &[Tip], repo: &Repo) -> Option<Vec<Work>> {
    let mut old_by_name: HashMap<&str, &[Tip]> = previous
        .tips
        .chunk_by(|a, b| a.name == b.name)
        .map(|same| (same[0].name.as_str(), same))
        .collect();
    let mut work = Vec::new();
    for same in tips.chunk_by(|a, b| a.name == b.name) {
        // A ref deleted (fewer tips of a name) or switched between public and gated (one
        // `gated` for all tips of a name) can take access away.
        let mut unmatched: Vec<&Tip> = match old_by_name.remove(same[0].name.as_str()) {
            Some(old) if old.len() != same.len() || old[0].gated != same[0].gated => return None,
            Some(old) => old.iter().collect(),
            None => Vec::new(),
        };
        for tip in same {
            if let Some(i) = unmatched.iter().position(|o| o.commit == tip.commit) {
                unmatched.swap_remove(i);
                continue;
            }
            let commits = history(repo, &tip.name, tip.commit).ok()?;
            let commits = match unmatched.pop() {
                // Moved: forward only, onto a history that holds the old tip.
                Some(old) => {
                    let cut = commits.iter().position(|c| *c == old.commit)?;
                    commits[..cut].to_vec()
                }
                None => commits,
            };
            work.push(Work {
                name: tip.name.clone(),
                id: PUBLIC,
                commits,
            });
        }
    }
    // A name no longer there: a ref deleted.
    old_by_name.is_empty().then_some(work)
}

/// `commit` and its ancestors still in the repository. A parent that cannot be read ends the
/// history there; so does a tip that cannot be read (its walk then leaves the ref out). What only
/// the rest reaches stays unknown: closed.
fn history(repo: &Repo, name: &str, commit: Checksum) -> Result<Vec<Checksum>, IndexError> {
    match commit_history(repo, commit) {
        Ok(history) => Ok(history),
        Err(e) if of_one_ref(&e) => {
            tracing::warn!("ref {name}: {}; indexing its tip commit only", chain(&e));
            Ok(vec![commit])
        }
        Err(e) => Err(IndexError::Walk {
            name: name.to_owned(),
            source: Box::new(e),
        }),
    }
}

/// Whether a walk's error is the walked ref's own (a missing, corrupt or unreadable object:
/// the ref is left out, the rest indexed) rather than the storage's (a bucket that does not
/// answer: the rebuild fails, and the last good index stays).
fn of_one_ref(e: &WalkError) -> bool {
    use std::io::ErrorKind as K;
    match e {
        WalkError::Missing(_) | WalkError::Corrupt { .. } => true,
        WalkError::Io { source, .. } => matches!(
            source.kind(),
            K::InvalidData
                | K::InvalidInput
                | K::PermissionDenied
                | K::IsADirectory
                | K::NotADirectory
        ),
    }
}

/// An error and its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Walks `work` on up to [`MAX_THREADS`] threads (this one among them, which reports
/// progress). A walk does not go below a dirtree in `public_trees`, nor below one `previous`
/// already opens to the walking ref. A commit that cannot be walked is left out with all that
/// is older in its ref's history; a ref whose tip cannot be walked is left out whole.
fn walk_all(
    repo: &Repo,
    previous: Option<&RepoIndex>,
    work: &[Work],
    public_trees: &[&HashSet<[u8; 32]>],
    max: usize,
    seen: &AtomicUsize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Walked>, IndexError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS)
        .min(work.len());
    let next = AtomicUsize::new(0);
    let worker = |progress: &mut dyn FnMut(usize)| -> Result<Walked, IndexError> {
        let mut out = Walked::default();
        // The dirtrees this ref's walk entered, and those the current commit's walk entered
        // (taken back when the commit fails, since what lies below them was not all seen).
        let mut own: HashSet<[u8; 32]> = HashSet::default();
        let mut entered: Vec<[u8; 32]> = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = work.get(i) else {
                return Ok(out);
            };
            own.clear();
            let lengths = |out: &Walked| out.pairs.each_ref().map(Vec::len);
            let ref_start = lengths(&out);
            let mut reached = 0usize;
            for (n, commit) in item.commits.iter().enumerate() {
                let commit_start = lengths(&out);
                entered.clear();
                let count = std::cell::Cell::new(0usize);
                let result = commit_closure_visit(
                    repo,
                    *commit,
                    &mut |tree| {
                        let tree = tree.as_bytes();
                        // Public walks of this thread share what they walked whole.
                        let walked_here = item.id == PUBLIC && out.trees.contains(tree);
                        let enter = reached + count.get() <= max
                            && !walked_here
                            && !public_trees.iter().any(|s| s.contains(tree))
                            && !previous.is_some_and(|p| p.covers(tree, item.id))
                            && own.insert(*tree);
                        if enter {
                            entered.push(*tree);
                        }
                        enter
                    },
                    &mut |object| {
                        count.set(count.get() + 1);
                        if let Some(kind) = Kind::of(object.kind) {
                            out.pairs[kind.slot()].push((*object.checksum.as_bytes(), item.id));
                        }
                    },
                );
                let count = count.get();
                reached += count;
                let total = seen.fetch_add(count, Ordering::Relaxed) + count;
                progress(total);
                let failure = match result {
                    Ok(()) if reached <= max => continue,
                    Ok(()) => format!(
                        "it reaches more than {max} objects (raise [limits] max-ref-objects \
                         if that is its real size)"
                    ),
                    Err(e) if of_one_ref(&e) => chain(&e),
                    Err(e) => {
                        return Err(IndexError::Walk {
                            name: item.name.clone(),
                            source: Box::new(e),
                        });
                    }
                };
                out.partial = true;
                for (pairs, len) in out.pairs.iter_mut().zip(commit_start) {
                    pairs.truncate(len);
                }
                for tree in &entered {
                    own.remove(tree);
                }
                if n == 0 {
                    for (pairs, len) in out.pairs.iter_mut().zip(ref_start) {
                        pairs.truncate(len);
                    }
                    own.clear();
                    out.left_out.push(item.name.clone());
                    tracing::warn!(
                        "ref {}, commit {commit}: {failure}; leaving the ref out of the index \
                         (its ref file and what only it reaches are refused) until it is \
                         repaired or deleted",
                        item.name
                    );
                } else {
                    tracing::warn!(
                        "ref {}, commit {commit} of its history: {failure}; indexing the \
                         history only down to the commit after it",
                        item.name
                    );
                }
                break;
            }
            if item.id == PUBLIC {
                out.trees.extend(own.drain());
            }
        }
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .map(|_| scope.spawn(|| worker(&mut |_| {})))
            .collect();
        let mut all = vec![worker(progress)?];
        for helper in helpers {
            all.push(
                helper
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e))?,
            );
        }
        Ok(all)
    })
}

/// `base` and `newer` (both sorted by checksum) as one sorted table; `newer` wins.
fn merge(base: &[Entry], newer: &[Entry]) -> Vec<Entry> {
    let mut out = Vec::with_capacity(base.len() + newer.len());
    let (mut i, mut j) = (0, 0);
    while i < base.len() && j < newer.len() {
        match base[i].0.cmp(&newer[j].0) {
            std::cmp::Ordering::Less => {
                out.push(base[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(newer[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(newer[j]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&base[i..]);
    out.extend_from_slice(&newer[j..]);
    out
}

/// Entries sorted by checksum, with where each run of checksums sharing their leading bits
/// starts: a lookup reads one pair of bounds and searches the few entries between them, two
/// cache misses instead of one per step of a binary search over the whole table (at 10^6
/// objects, twenty). Checksums are uniform, so the runs are even; about 8 bytes per 4 objects.
#[derive(Debug)]
struct Table {
    entries: Vec<Entry>,
    /// `starts[b]`: the first entry whose leading `bits` bits are `b` or more; then the length.
    starts: Vec<usize>,
    bits: u32,
}

impl Table {
    fn new(entries: Vec<Entry>) -> Table {
        // Four to eight entries per run.
        let bits = (entries.len() / 4).max(1).ilog2();
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        let mut at = 0;
        for run in 0..1u64 << bits {
            while entries.get(at).is_some_and(|e| leading(&e.0, bits) < run) {
                at += 1;
            }
            starts.push(at);
        }
        starts.push(entries.len());
        Table {
            entries,
            starts,
            bits,
        }
    }

    fn get(&self, checksum: &[u8; 32]) -> Option<u32> {
        let run = usize::try_from(leading(checksum, self.bits)).ok()?;
        let (start, end) = (*self.starts.get(run)?, *self.starts.get(run + 1)?);
        search(self.entries.get(start..end)?, checksum)
    }

    fn bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.starts.capacity() * std::mem::size_of::<usize>()
    }
}

/// The leading `bits` bits of a checksum, as a number.
fn leading(checksum: &[u8; 32], bits: u32) -> u64 {
    prefix(checksum).checked_shr(64 - bits).unwrap_or(0)
}

/// The access id of `checksum` in entries sorted by checksum.
fn search(entries: &[Entry], checksum: &[u8; 32]) -> Option<u32> {
    // The first eight bytes settle nearly every comparison; the order is the same.
    let key = prefix(checksum);
    let found =
        entries.binary_search_by(|(c, _)| prefix(c).cmp(&key).then_with(|| c.cmp(checksum)));
    found.ok().map(|i| entries[i].1)
}

/// A checksum's first eight bytes as a number: ordering by it orders as the bytes do, and for
/// uniform checksums it nearly always decides a comparison without a 32-byte compare.
fn prefix(checksum: &[u8; 32]) -> u64 {
    checksum.first_chunk().map_or(0, |b| u64::from_be_bytes(*b))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tollgate_tests::fixture::{Fixture, write_files};

    use super::*;

    #[test]
    fn the_run_table_finds_every_entry_and_nothing_else() {
        // Checksums spread evenly, crowded at the ends, and sizes around the run boundaries.
        let checksum = |n: u64| {
            let mut c = [0u8; 32];
            let spread = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            c[..8].copy_from_slice(&spread.to_be_bytes());
            c[16] = 1;
            c[24..].copy_from_slice(&n.to_be_bytes());
            c
        };
        let edge = |first: u8, n: u64| {
            let mut c = [first; 32];
            c[24..].copy_from_slice(&n.to_be_bytes());
            c
        };
        for len in [0u64, 1, 3, 4, 7, 8, 9, 100, 1000, 4097] {
            let mut entries: Vec<Entry> = (0..len)
                .map(|n| (checksum(n), n as u32))
                .chain((0..3).map(|n| (edge(0, n), 1000 + n as u32)))
                .chain((0..3).map(|n| (edge(0xff, n), 2000 + n as u32)))
                .collect();
            entries.sort_unstable();
            let table = Table::new(entries.clone());
            for (c, id) in &entries {
                assert_eq!(table.get(c), Some(*id), "len {len}");
            }
            for n in len..len + 50 {
                assert_eq!(table.get(&checksum(n)), None, "len {len}, absent {n}");
            }
            assert_eq!(table.get(&edge(0, 99)), None);
            assert_eq!(table.get(&edge(0xff, 99)), None);
        }
    }

    /// Every object on disk and every ref, as the index answers for it, with gated refs by name.
    fn answers(index: &RepoIndex, repo: &Path) -> Vec<(String, String)> {
        let show = |access: Access<'_>| match access {
            Access::Public => "public".to_owned(),
            Access::Unknown => "unknown".to_owned(),
            Access::Gated(ids) => {
                let mut names: Vec<&str> = ids.iter().map(|id| index.ref_name(*id)).collect();
                names.sort_unstable();
                names.join(",")
            }
        };
        let mut out = Vec::new();
        for dir in std::fs::read_dir(repo.join("objects")).unwrap().flatten() {
            for file in std::fs::read_dir(dir.path()).unwrap().flatten() {
                let name = file.file_name().into_string().unwrap();
                let hex = format!("{}{}", dir.file_name().to_str().unwrap(), &name[..62]);
                let kind = ObjectType::from_extension(&name[63..])
                    .and_then(Kind::of)
                    .unwrap();
                let access = index.object(kind, &Checksum::from_hex(&hex).unwrap());
                out.push((name, show(access)));
            }
        }
        for name in ["runtime/r", "app/a", "app/b"] {
            out.push((name.to_owned(), show(index.ref_file(name))));
        }
        out.sort();
        out
    }

    #[test]
    fn updates_walk_only_what_is_new_and_answer_as_a_full_build() {
        let fx = Fixture::new();
        fn file<'a>(name: &'a str, body: &str) -> (&'a str, Vec<u8>) {
            (name, body.as_bytes().to_vec())
        }
        let runtime = fx.join("runtime");
        write_files(
            &runtime,
            &[file("lib/libc.so", "libc"), file("share/a", "a")],
        );
        let (path, _) = fx.archive_repo("repo", "runtime/r", &runtime);
        let repo = Repo::open(&path).unwrap();
        let gated = |name: &str| name.starts_with("app/");
        let mut index = RepoIndex::build(&repo, Rules::by_name(&gated), &mut |_| {}).unwrap();

        // Each step changes the repository with the real ostree, then updates the index; the
        // update must answer exactly as a build from scratch, and say whether it walked only
        // the new commits.
        let mut step = |what: &str, policy: NamePolicy<'_>, incremental: bool| -> IndexStats {
            let updated = index
                .update(&repo, Rules::by_name(policy), &mut |_| {})
                .unwrap();
            let built = RepoIndex::build(&repo, Rules::by_name(policy), &mut |_| {}).unwrap();
            assert_eq!(updated.stats().incremental, incremental, "{what}");
            assert_eq!(answers(&updated, &path), answers(&built, &path), "{what}");
            assert_eq!(updated.stats().objects, built.stats().objects, "{what}");
            assert_eq!(
                updated.stats().public_objects,
                built.stats().public_objects,
                "{what}"
            );
            let stats = updated.stats().clone();
            index = updated;
            stats
        };

        let app = fx.join("app");
        let mut files: Vec<(String, String)> = (0..40)
            .map(|i| (format!("files/part{}/f{i}", i % 4), format!("app file {i}")))
            .collect();
        files.push(("share/a".to_owned(), "a".to_owned()));
        let write = |files: &[(String, String)]| {
            let files: Vec<(&str, Vec<u8>)> = files
                .iter()
                .map(|(n, b)| (n.as_str(), b.as_bytes().to_vec()))
                .collect();
            write_files(&app, &files);
        };
        write(&files);
        fx.commit(&path, "app/a", &app, "a new gated ref");
        let first = step("a new gated ref", &gated, true);
        assert!(first.walked >= 40, "{first:?}");

        // One more file in one folder: the walk reads the changed dirtrees and their entries,
        // not the three folders that did not change.
        files.push(("files/part0/new".to_owned(), "new".to_owned()));
        write(&files);
        fx.commit(&path, "app/a", &app, "one more file");
        let second = step("a new commit on the gated ref", &gated, true);
        assert!(
            second.walked < first.walked / 2,
            "{second:?} after {first:?}"
        );

        // A second gated ref sharing the app's files, then the public runtime taking one of
        // them: shared objects carry both refs, and what the runtime reaches turns public.
        fx.commit(&path, "app/b", &app, "the same files");
        step("a second gated ref", &gated, true);
        write_files(&runtime, &[file("files/part1/f1", "app file 1")]);
        fx.commit(&path, "runtime/r", &runtime, "the runtime takes a file");
        step("the public ref reaches a gated file", &gated, true);

        // Nothing changed but the ref files: nothing to walk.
        let same = step("nothing new", &gated, true);
        assert_eq!(same.walked, 0);

        // Changes that can take access away: built anew.
        let app_b = fx.rev_parse(&path, "app/b");
        fx.ostree(&path).args(["refs", "--delete", "app/b"]).run();
        step("a gated ref deleted", &gated, false);
        step("the runtime turned gated", &|_: &str| true, false);
        step("everything public again", &|_: &str| false, false);
        let runtime_first = fx.rev_parse(&path, "runtime/r^");
        fx.ostree(&path)
            .args(["reset", "runtime/r", &runtime_first])
            .run();
        step("a ref moved back", &gated, false);
        fx.ostree(&path)
            .args(["refs", "--create=app/b", &app_b])
            .run();
        step("a deleted ref back", &gated, true);
    }

    #[test]
    fn a_long_run_of_updates_folds_recent_entries_into_the_main_table() {
        let fx = Fixture::new();
        let tree = fx.join("tree");
        write_files(&tree, &[("a", b"a".to_vec())]);
        let (path, _) = fx.archive_repo("repo", "app/a", &tree);
        let repo = Repo::open(&path).unwrap();
        let gated = |_: &str| true;
        let mut index = RepoIndex::build(&repo, Rules::by_name(&gated), &mut |_| {}).unwrap();
        let mut folded = false;
        for i in 0..12 {
            let files: Vec<(String, Vec<u8>)> = (0..200)
                .map(|j| (format!("d{i}/f{j}"), format!("{i} {j}").into_bytes()))
                .collect();
            let files: Vec<(&str, Vec<u8>)> =
                files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
            write_files(&tree, &files);
            fx.commit(&path, "app/a", &tree, "more");
            let before: usize = index.recent.iter().map(Vec::len).sum();
            index = index
                .update(&repo, Rules::by_name(&gated), &mut |_| {})
                .unwrap();
            folded |= index.recent.iter().map(Vec::len).sum::<usize>() < before;
            let built = RepoIndex::build(&repo, Rules::by_name(&gated), &mut |_| {}).unwrap();
            assert_eq!(answers(&index, &path), answers(&built, &path));
        }
        assert!(folded, "recent entries were never folded in");
    }
}
