//! Object types and the names they have in an archive repository's `objects/` folder.

use std::fmt;

use crate::checksum::Checksum;

/// The kinds of files an archive repository keeps under `objects/XX/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    Commit,
    /// Detached commit metadata (signatures); optional, named like its commit.
    CommitMeta,
    DirTree,
    DirMeta,
    /// A content object, zlib-compressed with its header. Named by the checksum of the
    /// uncompressed object, not of the bytes on disk.
    File,
    /// Left behind by `ostree prune` when repos advertise `ostree.summary.tombstone-commits`.
    TombstoneCommit,
}

impl ObjectType {
    pub const ALL: [ObjectType; 6] = [
        ObjectType::Commit,
        ObjectType::CommitMeta,
        ObjectType::DirTree,
        ObjectType::DirMeta,
        ObjectType::File,
        ObjectType::TombstoneCommit,
    ];

    /// The file name extension in an archive repository.
    pub fn extension(self) -> &'static str {
        match self {
            ObjectType::Commit => "commit",
            ObjectType::CommitMeta => "commitmeta",
            ObjectType::DirTree => "dirtree",
            ObjectType::DirMeta => "dirmeta",
            ObjectType::File => "filez",
            ObjectType::TombstoneCommit => "tombstone-commit",
        }
    }

    pub fn from_extension(ext: &str) -> Option<ObjectType> {
        ObjectType::ALL.into_iter().find(|t| t.extension() == ext)
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// One object of a repository: its checksum and its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName {
    pub checksum: Checksum,
    pub kind: ObjectType,
}

impl ObjectName {
    pub fn new(checksum: Checksum, kind: ObjectType) -> ObjectName {
        ObjectName { checksum, kind }
    }

    /// The path relative to the repository root: `objects/ab/cdef....dirtree`.
    pub fn relative_path(&self) -> String {
        let hex = self.checksum.to_hex();
        format!("objects/{}/{}.{}", &hex[..2], &hex[2..], self.kind)
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.checksum, self.kind)
    }
}
