//! The OSTree archive repository format, read in Rust: checksums and their two spellings,
//! object types, the closed grammar of servable paths, the GVariant objects (commit, dirtree,
//! dirmeta), the summary and flatpak's summary index, refs, and the closure of a commit.
//!
//! This crate reads and validates; it does no networking and never writes to a repository.
//! Every parser returns a typed error on corrupt or truncated input and must never panic:
//! a server feeds it whatever is on disk. It does not depend on libostree or GLib.

mod checksum;
#[doc(hidden)]
pub mod fuzz;
mod object;
mod objects;
mod path;
mod refs;
mod repo;
mod storage;
mod walk;

pub use checksum::{Checksum, ChecksumError};
pub use object::{ObjectName, ObjectType};
pub use objects::{
    COMMIT_SIGNATURE, Commit, DIRMETA_SIGNATURE, DIRTREE_SIGNATURE, DirEntry, DirMeta, DirTree,
    Metadata, ObjectError, SUMMARY_INDEX_SIGNATURE, SUMMARY_SIGNATURE, Subset, Summary,
    SummaryIndex, SummaryRef,
};
pub use path::{DeltaFile, DeltaName, RepoPath, SubSummary, SummaryFile};
pub use refs::{CollectionId, NameError, RefName};
pub use repo::{Repo, RepoConfig, RepoError, client_config, flatpak_repo_file};
pub use storage::{Listed, LocalStorage, Storage};
pub use walk::{
    ObjectSource, WalkError, commit_closure, commit_closure_into, commit_closure_visit,
    commit_history, load_commit,
};

#[cfg(test)]
mod real_repos;
