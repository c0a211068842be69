//! Walking what a commit holds: its closure of objects, and its history of parents.
//!
//! The walk reads metadata objects (commits and dirtrees) only; it never opens content objects.
//! It is iterative, so a deep tree cannot overflow the stack, and it visits each dirtree once,
//! so a hostile repository whose objects refer to each other in a loop still terminates.

use std::collections::HashSet;
use std::io;

use crate::checksum::Checksum;
use crate::object::{ObjectName, ObjectType};
use crate::objects::{Commit, DirTree, ObjectError};

/// Where the walk reads objects from; the local file system today, object storage later.
pub trait ObjectSource {
    /// The object's bytes, or `None` when the repository does not have it.
    fn read(&self, object: &ObjectName) -> io::Result<Option<Vec<u8>>>;
    fn exists(&self, object: &ObjectName) -> io::Result<bool>;
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("object {0} is missing from the repository")]
    Missing(ObjectName),
    #[error("reading object {object}")]
    Io {
        object: ObjectName,
        #[source]
        source: io::Error,
    },
    #[error("object {object} is corrupt")]
    Corrupt {
        object: ObjectName,
        #[source]
        source: ObjectError,
    },
}

fn read_required(source: &impl ObjectSource, object: ObjectName) -> Result<Vec<u8>, WalkError> {
    source
        .read(&object)
        .map_err(|e| WalkError::Io { object, source: e })?
        .ok_or(WalkError::Missing(object))
}

/// Reads and parses one commit object.
pub fn load_commit(source: &impl ObjectSource, commit: Checksum) -> Result<Commit, WalkError> {
    let object = ObjectName::new(commit, ObjectType::Commit);
    let bytes = read_required(source, object)?;
    Commit::parse(&bytes).map_err(|e| WalkError::Corrupt { object, source: e })
}

/// Every object a pull of `commit` needs: the commit, its detached metadata if the repository
/// has it, and every dirtree, dirmeta and content object of its tree. Parents are not included;
/// see [`commit_history`].
pub fn commit_closure(
    source: &impl ObjectSource,
    commit: Checksum,
) -> Result<HashSet<ObjectName>, WalkError> {
    let mut objects = HashSet::new();
    commit_closure_into(source, commit, &mut objects)?;
    Ok(objects)
}

/// Adds the closure of `commit` to `objects`. A dirtree already in `objects` is not read again,
/// nor anything below it, so walking the commits of one history into the same set reads each
/// shared subtree once.
pub fn commit_closure_into(
    source: &impl ObjectSource,
    commit: Checksum,
    objects: &mut HashSet<ObjectName>,
) -> Result<(), WalkError> {
    let objects = std::cell::RefCell::new(objects);
    commit_closure_visit(
        source,
        commit,
        &mut |tree| {
            objects
                .borrow_mut()
                .insert(ObjectName::new(*tree, ObjectType::DirTree))
        },
        &mut |object| {
            objects.borrow_mut().insert(object);
        },
    )
}

/// Visits the closure of `commit`: the commit, its detached metadata if the repository has it,
/// then for each dirtree its dirmeta and, when `enter` says so, the dirtree itself (read, and
/// walked below). `enter` must say no to a dirtree it has said yes to before, so that a hostile
/// repository whose dirtrees refer to each other in a loop still ends; saying no to a dirtree
/// whose closure is already known skips everything below it.
pub fn commit_closure_visit(
    source: &impl ObjectSource,
    commit: Checksum,
    enter: &mut dyn FnMut(&Checksum) -> bool,
    visit: &mut dyn FnMut(ObjectName),
) -> Result<(), WalkError> {
    let root = load_commit(source, commit)?;
    visit(ObjectName::new(commit, ObjectType::Commit));
    let meta = ObjectName::new(commit, ObjectType::CommitMeta);
    if source.exists(&meta).map_err(|e| WalkError::Io {
        object: meta,
        source: e,
    })? {
        visit(meta);
    }

    let mut pending = vec![(root.root_tree, root.root_meta)];
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    while let Some((tree, meta)) = pending.pop() {
        visit(ObjectName::new(meta, ObjectType::DirMeta));
        if !enter(&tree) {
            continue;
        }
        let tree = ObjectName::new(tree, ObjectType::DirTree);
        visit(tree);
        let bytes = read_required(source, tree)?;
        files.clear();
        dirs.clear();
        DirTree::children(&bytes, &mut files, &mut dirs).map_err(|e| WalkError::Corrupt {
            object: tree,
            source: e,
        })?;
        for file in &files {
            visit(ObjectName::new(*file, ObjectType::File));
        }
        pending.extend_from_slice(&dirs);
    }
    Ok(())
}

/// `commit` and its ancestors, newest first, for as long as the parent commits are still in
/// the repository (older ones are usually pruned).
pub fn commit_history(
    source: &impl ObjectSource,
    commit: Checksum,
) -> Result<Vec<Checksum>, WalkError> {
    let mut history = vec![commit];
    let mut next = load_commit(source, commit)?.parent;
    while let Some(parent) = next {
        // A corrupt repository could make a commit its own ancestor; stop at the first repeat.
        if history.contains(&parent) {
            break;
        }
        let object = ObjectName::new(parent, ObjectType::Commit);
        let Some(bytes) = source
            .read(&object)
            .map_err(|e| WalkError::Io { object, source: e })?
        else {
            break;
        };
        let parsed = Commit::parse(&bytes).map_err(|e| WalkError::Corrupt { object, source: e })?;
        history.push(parent);
        next = parsed.parent;
    }
    Ok(history)
}
