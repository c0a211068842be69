//! Parsers for the GVariant metadata objects of an OSTree repository and for the summary files.
//!
//! Each parser takes the whole file and returns an owned value or an [`ObjectError`]; corrupt,
//! truncated or hostile input is an error, never a panic. Values OSTree stores big-endian inside
//! little-endian GVariant (timestamps, uid/gid/mode) are converted here, so callers see plain
//! numbers. Repositories are assumed to be written on a little-endian host, as all real ones are.

use std::collections::HashMap;

use serde::Deserialize;
use serde_bytes::Bytes;
use zgvariant::serialized::{Context, Data};
use zgvariant::{LE, OwnedVariant, Type, Variant};

use crate::checksum::{Checksum, ChecksumError};

/// What is wrong with an object's or summary's bytes.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("{what} is not valid GVariant of type {signature}")]
    Malformed {
        what: &'static str,
        signature: &'static str,
        #[source]
        source: zgvariant::Error,
    },
    #[error("{what}: the {field} is not a SHA-256 checksum")]
    Checksum {
        what: &'static str,
        field: &'static str,
        #[source]
        source: ChecksumError,
    },
    #[error("{what}: {name:?} is not a valid file name")]
    FileName { what: &'static str, name: String },
}

/// An `a{sv}` dictionary of commit, summary or ref metadata.
#[derive(Debug, Default)]
pub struct Metadata(HashMap<String, OwnedVariant>);

impl Metadata {
    fn from_borrowed(
        map: HashMap<&str, Variant<'_>>,
        what: &'static str,
    ) -> Result<Self, ObjectError> {
        let mut owned = HashMap::with_capacity(map.len());
        for (key, value) in map {
            let value = value
                .try_into_owned()
                .map_err(|source| ObjectError::Malformed {
                    what,
                    signature: "a{sv}",
                    source,
                })?;
            owned.insert(key.to_owned(), value);
        }
        Ok(Metadata(owned))
    }

    pub fn get(&self, key: &str) -> Option<&Variant<'static>> {
        self.0.get(key).map(|v| &**v)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Variant::Str(s) => Some(s.as_str()),
            _ => None,
        }
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Variant::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// An `i` value stored little-endian, such as flatpak's `xa.token-type`.
    pub fn get_i32(&self, key: &str) -> Option<i32> {
        match self.get(key)? {
            Variant::I32(i) => Some(*i),
            _ => None,
        }
    }

    /// A `t` value that OSTree stores big-endian, such as `ostree.commit.timestamp`.
    pub fn get_u64_be(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            Variant::U64(t) => Some(u64::from_be(t.to_le())),
            _ => None,
        }
    }

    /// An `as` value, such as `ostree.ref-binding`.
    pub fn get_str_array(&self, key: &str) -> Option<Vec<String>> {
        match self.get(key)? {
            Variant::Array(array) => array
                .inner()
                .iter()
                .map(|v| match v {
                    Variant::Str(s) => Some(s.as_str().to_owned()),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }
}

/// OSTree writes its GVariant objects little-endian, starting at offset 0.
fn gvariant(bytes: &[u8]) -> Data<'_> {
    Data::new(bytes, Context::new(LE, 0))
}

fn malformed(
    what: &'static str,
    signature: &'static str,
) -> impl FnOnce(zgvariant::Error) -> ObjectError {
    move |source| ObjectError::Malformed {
        what,
        signature,
        source,
    }
}

pub const COMMIT_SIGNATURE: &str = "(a{sv}aya(say)sstayay)";
pub const DIRTREE_SIGNATURE: &str = "(a(say)a(sayay))";
pub const DIRMETA_SIGNATURE: &str = "(uuua(ayay))";
pub const SUMMARY_SIGNATURE: &str = "(a(s(taya{sv}))a{sv})";
pub const SUMMARY_INDEX_SIGNATURE: &str = "(a{s(ayaaya{sv})}a{sv})";

fn checksum(
    bytes: &[u8],
    what: &'static str,
    field: &'static str,
) -> Result<Checksum, ObjectError> {
    Checksum::from_slice(bytes).map_err(|source| ObjectError::Checksum {
        what,
        field,
        source,
    })
}

/// A file name inside a dirtree, as OSTree allows them: not empty, not `.` or `..`, no `/`.
fn file_name<'n>(name: &'n str, what: &'static str) -> Result<&'n str, ObjectError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(ObjectError::FileName {
            what,
            name: name.to_owned(),
        });
    }
    Ok(name)
}

#[derive(Deserialize, Type)]
struct RawCommit<'a>(
    #[serde(borrow)] HashMap<&'a str, Variant<'a>>,
    #[serde(borrow)] &'a Bytes,
    #[serde(borrow)] Vec<(&'a str, &'a Bytes)>,
    &'a str,
    &'a str,
    u64,
    &'a Bytes,
    &'a Bytes,
);

/// A `.commit` object.
#[derive(Debug)]
pub struct Commit {
    pub metadata: Metadata,
    pub parent: Option<Checksum>,
    /// Related objects (name, commit); OSTree keeps the field but nothing fills it today.
    pub related: Vec<(String, Checksum)>,
    pub subject: String,
    pub body: String,
    /// Seconds since the epoch.
    pub timestamp: u64,
    pub root_tree: Checksum,
    pub root_meta: Checksum,
}

impl Commit {
    pub fn parse(bytes: &[u8]) -> Result<Commit, ObjectError> {
        const WHAT: &str = "commit";
        let data = gvariant(bytes);
        let (raw, _): (RawCommit<'_>, usize) = data
            .deserialize()
            .map_err(malformed(WHAT, COMMIT_SIGNATURE))?;
        let parent = match raw.1.len() {
            0 => None,
            _ => Some(checksum(raw.1, WHAT, "parent")?),
        };
        let related = raw
            .2
            .iter()
            .map(|(name, c)| Ok(((*name).to_owned(), checksum(c, WHAT, "related commit")?)))
            .collect::<Result<_, ObjectError>>()?;
        Ok(Commit {
            metadata: Metadata::from_borrowed(raw.0, WHAT)?,
            parent,
            related,
            subject: raw.3.to_owned(),
            body: raw.4.to_owned(),
            timestamp: u64::from_be(raw.5.to_le()),
            root_tree: checksum(raw.6, WHAT, "root dirtree")?,
            root_meta: checksum(raw.7, WHAT, "root dirmeta")?,
        })
    }

    /// flatpak's `xa.token-type`: non-zero means a client must ask for a token.
    pub fn token_type(&self) -> Option<i32> {
        self.metadata.get_i32("xa.token-type")
    }
}

#[derive(Deserialize, Type)]
struct RawDirTree<'a>(
    #[serde(borrow)] Vec<(&'a str, &'a Bytes)>,
    #[serde(borrow)] Vec<(&'a str, &'a Bytes, &'a Bytes)>,
);

/// A `.dirtree` object: the files and subdirectories of one directory.
#[derive(Debug)]
pub struct DirTree {
    /// (name, content object checksum)
    pub files: Vec<(String, Checksum)>,
    pub dirs: Vec<DirEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub tree: Checksum,
    pub meta: Checksum,
}

impl DirTree {
    pub fn parse(bytes: &[u8]) -> Result<DirTree, ObjectError> {
        const WHAT: &str = "dirtree";
        let data = gvariant(bytes);
        let (raw, _): (RawDirTree<'_>, usize) = data
            .deserialize()
            .map_err(malformed(WHAT, DIRTREE_SIGNATURE))?;
        let files = raw
            .0
            .iter()
            .map(|(name, c)| {
                Ok((
                    file_name(name, WHAT)?.to_owned(),
                    checksum(c, WHAT, "file")?,
                ))
            })
            .collect::<Result<_, ObjectError>>()?;
        let dirs = raw
            .1
            .iter()
            .map(|(name, tree, meta)| {
                Ok(DirEntry {
                    name: file_name(name, WHAT)?.to_owned(),
                    tree: checksum(tree, WHAT, "subdirectory dirtree")?,
                    meta: checksum(meta, WHAT, "subdirectory dirmeta")?,
                })
            })
            .collect::<Result<_, ObjectError>>()?;
        Ok(DirTree { files, dirs })
    }

    /// The checksums a dirtree refers to, without keeping names: what a closure walk needs,
    /// with no allocation per entry beyond the output. Appends to `files` and `dirs`.
    pub(crate) fn children(
        bytes: &[u8],
        files: &mut Vec<Checksum>,
        dirs: &mut Vec<(Checksum, Checksum)>,
    ) -> Result<(), ObjectError> {
        let before = (files.len(), dirs.len());
        if framed::children(bytes, files, dirs).is_some() {
            return Ok(());
        }
        files.truncate(before.0);
        dirs.truncate(before.1);
        Self::children_deserialized(bytes, files, dirs)
    }

    /// [`DirTree::children`] through the general GVariant deserializer.
    pub(crate) fn children_deserialized(
        bytes: &[u8],
        files: &mut Vec<Checksum>,
        dirs: &mut Vec<(Checksum, Checksum)>,
    ) -> Result<(), ObjectError> {
        const WHAT: &str = "dirtree";
        let data = gvariant(bytes);
        let (raw, _): (RawDirTree<'_>, usize) = data
            .deserialize()
            .map_err(malformed(WHAT, DIRTREE_SIGNATURE))?;
        for (name, c) in &raw.0 {
            file_name(name, WHAT)?;
            files.push(checksum(c, WHAT, "file")?);
        }
        for (name, tree, meta) in &raw.1 {
            file_name(name, WHAT)?;
            dirs.push((
                checksum(tree, WHAT, "subdirectory dirtree")?,
                checksum(meta, WHAT, "subdirectory dirmeta")?,
            ));
        }
        Ok(())
    }
}

/// Reads a dirtree's children straight from its GVariant framing, for the one layout ostree
/// writes, `(a(say)a(sayay))` in normal form: the closure walk's hot path, several times
/// faster than the general deserializer. `None` for anything it does not take in (including
/// every malformed input), and the caller asks the general deserializer, which then decides —
/// so this reader can only be faster, never accept more or answer differently.
pub(crate) mod framed {
    use super::Checksum;

    /// The size of the framing offsets of a container of `len` bytes (GVariant, 2.3.6).
    fn offset_size(len: usize) -> usize {
        match len {
            0..=0xff => 1,
            0x100..=0xffff => 2,
            0x1_0000..=0xffff_ffff => 4,
            _ => 8,
        }
    }

    /// The little-endian framing offset of `size` bytes at `at`.
    fn offset(bytes: &[u8], at: usize, size: usize) -> Option<usize> {
        let mut raw = [0u8; 8];
        raw[..size].copy_from_slice(bytes.get(at..at.checked_add(size)?)?);
        usize::try_from(u64::from_le_bytes(raw)).ok()
    }

    /// The elements of an array of variable-size, byte-aligned elements.
    fn elements(array: &[u8]) -> Option<impl Iterator<Item = Option<&[u8]>>> {
        let (table, size) = if array.is_empty() {
            (0, 1)
        } else {
            let size = offset_size(array.len());
            let last = array.len().checked_sub(size)?;
            // The last offset ends the last element and starts the table, which it is part of.
            let table = offset(array, last, size)?;
            if table > last || !(array.len() - table).is_multiple_of(size) {
                return None;
            }
            (table, size)
        };
        let mut start = 0;
        Some((table..array.len()).step_by(size).map(move |at| {
            let end = offset(array, at, size)?;
            if end > table {
                return None;
            }
            let element = array.get(start..end)?;
            start = end;
            Some(element)
        }))
    }

    /// A tuple's members, when all but the last are variable-size and byte-aligned: the ends of
    /// the first `N - 1` are framing offsets at the tuple's end, the first member's last.
    fn members<const N: usize>(tuple: &[u8]) -> Option<[&[u8]; N]> {
        let size = offset_size(tuple.len());
        let body_end = tuple.len().checked_sub(size * (N - 1))?;
        let mut parts = [&tuple[..0]; N];
        let mut start = 0;
        for (i, part) in parts.iter_mut().enumerate() {
            let end = if i + 1 == N {
                body_end
            } else {
                offset(tuple, tuple.len() - size * (i + 1), size)?
            };
            if end < start || end > body_end {
                return None;
            }
            *part = &tuple[start..end];
            start = end;
        }
        Some(parts)
    }

    /// A NUL-terminated GVariant string that is a file name ostree accepts.
    fn name(s: &[u8]) -> Option<()> {
        let (0, name) = s.split_last()? else {
            return None;
        };
        let name = std::str::from_utf8(name).ok()?;
        super::file_name(name, "dirtree").ok().map(|_| ())
    }

    fn checksum(bytes: &[u8]) -> Option<Checksum> {
        Checksum::from_slice(bytes).ok()
    }

    pub(crate) fn children(
        bytes: &[u8],
        files: &mut Vec<Checksum>,
        dirs: &mut Vec<(Checksum, Checksum)>,
    ) -> Option<()> {
        let [file_array, dir_array] = members::<2>(bytes)?;
        for file in elements(file_array)? {
            let [n, c] = members::<2>(file?)?;
            name(n)?;
            files.push(checksum(c)?);
        }
        for dir in elements(dir_array)? {
            let [n, tree, meta] = members::<3>(dir?)?;
            name(n)?;
            dirs.push((checksum(tree)?, checksum(meta)?));
        }
        Some(())
    }
}

/// A dirtree's file checksums and (tree, meta) pairs.
#[cfg(test)]
pub(crate) type Children = (Vec<Checksum>, Vec<(Checksum, Checksum)>);

/// A dirtree's children as each reader finds them: the framed reader's (`None` where it
/// declines) and the general deserializer's, for the tests that hold one to the other.
#[cfg(test)]
pub(crate) fn children_both_ways(
    bytes: &[u8],
) -> (Option<Children>, Result<Children, ObjectError>) {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    let framed = framed::children(bytes, &mut files, &mut dirs).map(|()| (files, dirs));
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    let deserialized =
        DirTree::children_deserialized(bytes, &mut files, &mut dirs).map(|()| (files, dirs));
    (framed, deserialized)
}

#[derive(Deserialize, Type)]
struct RawDirMeta<'a>(u32, u32, u32, #[serde(borrow)] Vec<(&'a Bytes, &'a Bytes)>);

/// A `.dirmeta` object: a directory's owner, mode and extended attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMeta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl DirMeta {
    pub fn parse(bytes: &[u8]) -> Result<DirMeta, ObjectError> {
        let data = gvariant(bytes);
        let (raw, _): (RawDirMeta<'_>, usize) = data
            .deserialize()
            .map_err(malformed("dirmeta", DIRMETA_SIGNATURE))?;
        Ok(DirMeta {
            uid: u32::from_be(raw.0.to_le()),
            gid: u32::from_be(raw.1.to_le()),
            mode: u32::from_be(raw.2.to_le()),
            xattrs: raw
                .3
                .iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect(),
        })
    }
}

#[derive(Deserialize, Type)]
#[allow(clippy::type_complexity)]
struct RawSummary<'a>(
    #[serde(borrow)] Vec<(&'a str, (u64, &'a Bytes, HashMap<&'a str, Variant<'a>>))>,
    #[serde(borrow)] HashMap<&'a str, Variant<'a>>,
);

/// The `summary` file: every ref with its commit, and repository metadata.
#[derive(Debug)]
pub struct Summary {
    /// Sorted by name, as OSTree writes them.
    pub refs: Vec<SummaryRef>,
    pub metadata: Metadata,
}

#[derive(Debug)]
pub struct SummaryRef {
    pub name: String,
    /// The commit object's size in bytes.
    pub size: u64,
    pub checksum: Checksum,
    /// Per-ref metadata such as `ostree.commit.timestamp`.
    pub metadata: Metadata,
}

impl Summary {
    pub fn parse(bytes: &[u8]) -> Result<Summary, ObjectError> {
        const WHAT: &str = "summary";
        let data = gvariant(bytes);
        let (raw, _): (RawSummary<'_>, usize) = data
            .deserialize()
            .map_err(malformed(WHAT, SUMMARY_SIGNATURE))?;
        let refs = raw
            .0
            .into_iter()
            .map(|(name, (size, c, metadata))| {
                Ok(SummaryRef {
                    name: name.to_owned(),
                    size,
                    checksum: checksum(c, WHAT, "ref's commit")?,
                    metadata: Metadata::from_borrowed(metadata, WHAT)?,
                })
            })
            .collect::<Result<_, ObjectError>>()?;
        Ok(Summary {
            refs,
            metadata: Metadata::from_borrowed(raw.1, WHAT)?,
        })
    }

    pub fn collection_id(&self) -> Option<&str> {
        self.metadata.get_str("ostree.summary.collection-id")
    }

    pub fn last_modified(&self) -> Option<u64> {
        self.metadata.get_u64_be("ostree.summary.last-modified")
    }
}

#[derive(Deserialize, Type)]
#[allow(clippy::type_complexity)]
struct RawSummaryIndex<'a>(
    #[serde(borrow)] HashMap<&'a str, (&'a Bytes, Vec<&'a Bytes>, HashMap<&'a str, Variant<'a>>)>,
    #[serde(borrow)] HashMap<&'a str, Variant<'a>>,
);

/// flatpak's `summary.idx`: one sub-summary per subset (usually per architecture).
#[derive(Debug)]
pub struct SummaryIndex {
    /// Sorted by subset name.
    pub subsets: Vec<Subset>,
    pub metadata: Metadata,
}

#[derive(Debug)]
pub struct Subset {
    pub name: String,
    /// SHA-256 of the uncompressed sub-summary; the file is `summaries/<digest>.gz`.
    pub digest: Checksum,
    /// Digests of earlier versions, for which `summaries/<old>-<digest>.delta` may exist.
    pub history: Vec<Checksum>,
    pub metadata: Metadata,
}

impl SummaryIndex {
    pub fn parse(bytes: &[u8]) -> Result<SummaryIndex, ObjectError> {
        const WHAT: &str = "summary index";
        let data = gvariant(bytes);
        let (raw, _): (RawSummaryIndex<'_>, usize) = data
            .deserialize()
            .map_err(malformed(WHAT, SUMMARY_INDEX_SIGNATURE))?;
        let mut subsets = raw
            .0
            .into_iter()
            .map(|(name, (digest, history, metadata))| {
                Ok(Subset {
                    name: name.to_owned(),
                    digest: checksum(digest, WHAT, "sub-summary digest")?,
                    history: history
                        .iter()
                        .map(|h| checksum(h, WHAT, "earlier sub-summary digest"))
                        .collect::<Result<_, _>>()?,
                    metadata: Metadata::from_borrowed(metadata, WHAT)?,
                })
            })
            .collect::<Result<Vec<_>, ObjectError>>()?;
        subsets.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(SummaryIndex {
            subsets,
            metadata: Metadata::from_borrowed(raw.1, WHAT)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_ostree() {
        assert_eq!(RawCommit::SIGNATURE, COMMIT_SIGNATURE);
        assert_eq!(RawDirTree::SIGNATURE, DIRTREE_SIGNATURE);
        assert_eq!(RawDirMeta::SIGNATURE, DIRMETA_SIGNATURE);
        assert_eq!(RawSummary::SIGNATURE, SUMMARY_SIGNATURE);
        assert_eq!(RawSummaryIndex::SIGNATURE, SUMMARY_INDEX_SIGNATURE);
    }

    #[test]
    fn empty_and_garbage_input_are_errors() {
        for bytes in [&b""[..], b"\xff\xff\xff\xff", &[0x41; 7]] {
            assert!(Commit::parse(bytes).is_err(), "{bytes:?}");
            assert!(DirMeta::parse(bytes).is_err(), "{bytes:?}");
            assert!(Summary::parse(bytes).is_err(), "{bytes:?}");
            assert!(SummaryIndex::parse(bytes).is_err(), "{bytes:?}");
        }
        assert!(Commit::parse(b"\0").is_err());
        assert!(DirMeta::parse(b"\0").is_err());
    }

    /// Framing that only a careless writer makes: the framed reader leaves each to the
    /// deserializer or reads it as the deserializer does.
    #[test]
    fn the_framed_reader_takes_in_nothing_the_deserializer_refuses() {
        let cases: &[&[u8]] = &[
            b"",
            b"\0",
            // A one-byte file array whose offset points past the elements into itself.
            &[1, 1],
            // Offsets out of order, and past the end.
            &[0, 5, 1],
            &[b'a', 0, 9, 2, 2],
            &[0xff; 9],
        ];
        for bytes in cases {
            if let (Some(framed), deserialized) = children_both_ways(bytes) {
                let deserialized = deserialized
                    .unwrap_or_else(|e| panic!("{bytes:?}: framed read it, deserializer: {e}"));
                assert_eq!(framed, deserialized, "{bytes:?}");
            }
        }
        assert!(children_both_ways(&[1, 1]).0.is_none());
    }

    #[test]
    fn one_zero_byte_is_an_empty_summary_or_dirtree() {
        // Two empty containers and the one framing offset that separates them.
        let summary = Summary::parse(b"\0").unwrap();
        assert!(summary.refs.is_empty() && summary.metadata.is_empty());
        let tree = DirTree::parse(b"\0").unwrap();
        assert!(tree.files.is_empty() && tree.dirs.is_empty());
        assert!(SummaryIndex::parse(b"\0").unwrap().subsets.is_empty());
    }
}
