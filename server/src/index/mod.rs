//! The reachability index: for every object of a repository, whether it is public or which
//! gated refs reach it.
//!
//! A ref is gated when its commit says `xa.token-type` ≠ 0 or its name matches a `gated-refs`
//! pattern; every commit of its history (parents still in the repository) belongs to it. An
//! object is public when any public ref's history reaches it; otherwise it carries the set of
//! gated refs whose histories reach it. Deltas and delta indexes are judged by their to-commit,
//! so they need no entries of their own.
//!
//! A built index is immutable: [`live::LiveIndex`] builds a new one when the refs change and
//! swaps it in whole, so a request always sees one consistent index. Lookups are a binary
//! search in one sorted array of (checksum, access id): 36 bytes per object.

pub mod live;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use tollgate_ostree_format::{
    Checksum, ObjectName, ObjectType, Repo, RepoError, WalkError, commit_closure_into,
    commit_history, load_commit,
};

/// Access id of public objects and refs.
const PUBLIC: u32 = u32::MAX;

/// What the index says about an object or a ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    Public,
    /// Reached only by these gated refs (ids into [`RepoIndex::ref_name`]).
    Gated(&'a [u32]),
    /// Not in the index: not reachable from any ref when it was built.
    Unknown,
}

/// Decides whether a ref is gated by its name (the `gated-refs` patterns).
pub type NamePolicy<'a> = &'a (dyn Fn(&str) -> bool + Sync);

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
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
pub struct IndexStats {
    pub objects: usize,
    pub public_objects: usize,
    pub public_refs: usize,
    pub gated_refs: usize,
    /// Distinct sets of gated refs.
    pub access_sets: usize,
    pub build_time: Duration,
    /// Bytes held by the index's tables.
    pub bytes: usize,
}

/// An immutable reachability index of one repository.
#[derive(Debug)]
pub struct RepoIndex {
    /// (checksum, access id), sorted by checksum.
    objects: Vec<([u8; 32], u32)>,
    /// Access sets by id: sorted gated ref ids.
    sets: Vec<Box<[u32]>>,
    /// Gated ref names by id.
    gated_refs: Vec<String>,
    /// Gated refs whose commits carry no `xa.token-type`: gated only by a name pattern.
    gated_by_name_only: Vec<String>,
    /// Every ref by name: its access id.
    refs: HashMap<String, u32>,
    stats: IndexStats,
}

impl RepoIndex {
    /// An index that knows nothing, so that every file is refused: what a failed rebuild
    /// leaves in place.
    pub fn closed() -> RepoIndex {
        RepoIndex {
            objects: Vec::new(),
            sets: Vec::new(),
            gated_refs: Vec::new(),
            gated_by_name_only: Vec::new(),
            refs: HashMap::new(),
            stats: IndexStats::default(),
        }
    }

    /// Builds the index of `repo`. `progress` is called now and then with the number of objects
    /// seen so far, so that a long build can say how it is going.
    pub fn build(
        repo: &Repo,
        gated_by_name: NamePolicy<'_>,
        progress: &mut dyn FnMut(usize),
    ) -> Result<RepoIndex, IndexError> {
        let started = Instant::now();
        // A file under refs/ that is not a ref is left out, with a warning: what it would
        // reach stays unknown, and unknown objects are never served.
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

        // Decide which refs are gated. A ref whose commit cannot be read is gated: its content
        // is unknown, so nothing may be assumed public.
        let mut public = Vec::new();
        let mut gated: Vec<(String, Checksum)> = Vec::new();
        let mut gated_by_name_only = Vec::new();
        for (name, commit) in refs {
            let by_commit = match load_commit(repo, commit) {
                Ok(c) => c.token_type().is_some_and(|t| t != 0),
                Err(e) => {
                    tracing::warn!("ref {name}: {e}; treating it as gated");
                    true
                }
            };
            if by_commit || gated_by_name(&name) {
                if !by_commit {
                    gated_by_name_only.push(name.clone());
                }
                gated.push((name, commit));
            } else {
                public.push((name, commit));
            }
        }

        let mut seen = 0usize;
        let mut public_objects: HashSet<[u8; 32]> = HashSet::new();
        let mut walked = HashSet::new();
        for (name, commit) in &public {
            walk_history(repo, name, *commit, &mut walked, &mut |n| {
                progress(seen + n)
            })?;
            seen += walked.len();
            public_objects.extend(walked.drain().map(|o| *o.checksum.as_bytes()));
        }

        // Gated refs get ids in name order; tips that share a name (the same ref under
        // refs/heads and refs/mirrors) share an id.
        let mut gated_names: Vec<String> = gated.iter().map(|(n, _)| n.clone()).collect();
        gated_names.sort();
        gated_names.dedup();
        let ids: HashMap<&str, u32> = gated_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as u32))
            .collect();
        let mut reached: HashMap<[u8; 32], Vec<u32>> = HashMap::new();
        for (name, commit) in &gated {
            let id = ids[name.as_str()];
            walk_history(repo, name, *commit, &mut walked, &mut |n| {
                progress(seen + n)
            })?;
            seen += walked.len();
            for object in walked.drain() {
                let checksum = *object.checksum.as_bytes();
                if !public_objects.contains(&checksum) {
                    let ids = reached.entry(checksum).or_default();
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
        }

        // Intern the sets and lay the objects out sorted.
        let mut set_ids: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut sets: Vec<Box<[u32]>> = Vec::new();
        let mut intern = |mut ids: Vec<u32>| -> u32 {
            ids.sort_unstable();
            *set_ids.entry(ids).or_insert_with_key(|ids| {
                sets.push(ids.clone().into_boxed_slice());
                (sets.len() - 1) as u32
            })
        };
        let mut objects: Vec<([u8; 32], u32)> =
            Vec::with_capacity(public_objects.len() + reached.len());
        objects.extend(public_objects.iter().map(|c| (*c, PUBLIC)));
        for (checksum, ids) in reached {
            objects.push((checksum, intern(ids)));
        }
        objects.sort_unstable_by_key(|(checksum, _)| *checksum);

        let mut ref_access = HashMap::new();
        for (name, _) in &public {
            ref_access.insert(name.clone(), PUBLIC);
        }
        for (id, name) in gated_names.iter().enumerate() {
            ref_access.insert(name.clone(), intern(vec![id as u32]));
        }

        let bytes = objects.capacity() * std::mem::size_of::<([u8; 32], u32)>()
            + sets.iter().map(|s| s.len() * 4 + 16).sum::<usize>()
            + gated_names.iter().map(|n| n.len() + 24).sum::<usize>()
            + ref_access.keys().map(|n| n.len() + 32).sum::<usize>();
        let stats = IndexStats {
            objects: objects.len(),
            public_objects: public_objects.len(),
            public_refs: public.len(),
            gated_refs: gated_names.len(),
            access_sets: sets.len(),
            build_time: started.elapsed(),
            bytes,
        };
        gated_by_name_only.sort();
        gated_by_name_only.dedup();
        Ok(RepoIndex {
            objects,
            sets,
            gated_refs: gated_names,
            gated_by_name_only,
            refs: ref_access,
            stats,
        })
    }

    pub fn stats(&self) -> &IndexStats {
        &self.stats
    }

    /// Who may have the object with this checksum.
    pub fn object(&self, checksum: &Checksum) -> Access<'_> {
        match self
            .objects
            .binary_search_by(|(c, _)| c.cmp(checksum.as_bytes()))
        {
            Ok(i) => self.access(self.objects[i].1),
            Err(_) => Access::Unknown,
        }
    }

    /// Who may read the ref file `refs/heads/<name>` (or a mirror of that name).
    pub fn ref_file(&self, name: &str) -> Access<'_> {
        self.refs
            .get(name)
            .map_or(Access::Unknown, |id| self.access(*id))
    }

    /// The name of the gated ref with this id.
    pub fn ref_name(&self, id: u32) -> &str {
        self.gated_refs.get(id as usize).map_or("", String::as_str)
    }

    /// Gated refs whose commits do not say `xa.token-type`: flatpak will not ask for a token
    /// for them, so flatpak clients cannot install them.
    pub fn gated_by_name_only(&self) -> &[String] {
        &self.gated_by_name_only
    }

    fn access(&self, id: u32) -> Access<'_> {
        if id == PUBLIC {
            return Access::Public;
        }
        // An id without a set cannot come from `build`; refuse rather than open.
        self.sets
            .get(id as usize)
            .map_or(Access::Gated(&[]), |s| Access::Gated(s))
    }
}

/// Adds every object of every commit in `commit`'s history to `objects`.
fn walk_history(
    repo: &Repo,
    name: &str,
    commit: Checksum,
    objects: &mut HashSet<ObjectName>,
    progress: &mut dyn FnMut(usize),
) -> Result<(), IndexError> {
    let walk_err = |source| IndexError::Walk {
        name: name.to_owned(),
        source: Box::new(source),
    };
    let history = match commit_history(repo, commit) {
        Ok(history) => history,
        // A parent that cannot be read ends the history there; so does a tip that cannot be
        // read (warned about below). What only the rest reaches stays unknown: closed.
        Err(e @ (WalkError::Missing(_) | WalkError::Corrupt { .. })) => {
            tracing::warn!("ref {name}: {e}; indexing its tip commit only");
            vec![commit]
        }
        Err(e) => return Err(walk_err(e)),
    };
    for commit in history {
        match commit_closure_into(repo, commit, objects) {
            Ok(()) => {}
            // A partial commit (objects still arriving, or pruned): index what is there, and
            // log; missing objects cannot be served anyway.
            Err(e @ (WalkError::Missing(_) | WalkError::Corrupt { .. })) => {
                objects.insert(ObjectName::new(commit, ObjectType::Commit));
                tracing::warn!("ref {name}, commit {commit}: {e}");
            }
            Err(e) => return Err(walk_err(e)),
        }
        progress(objects.len());
    }
    Ok(())
}
