//! Manifests: the canonical CBOR documents that tie chunks into files and files into folders.
//!
//! - A [`Manifest::File`] lists a file's data chunks in order, with their lengths; a file of
//!   at most [`INLINE_MAX`] bytes is kept in its manifest instead (`data`), so a small value
//!   is one chunk to place and one to fetch, not two.
//! - A file of more than [`MAX_LINKS`] chunks gets a tree: a [`Manifest::FileTree`] lists the
//!   manifests of consecutive parts, which are `File`s or, for huge files, `FileTree`s again.
//! - A [`Manifest::Dir`] lists named entries, sorted by name, each the content id of a file or a
//!   directory.
//!
//! A manifest is stored as a chunk like any other; the content id is the hash of the root
//! manifest, so a reader verifies the root against the id, every link against its hash, and so
//! every byte. Encoding is canonical: one value has one encoding, and decoding refuses anything
//! that does not re-encode to the same bytes, so a content id names exactly one document.

use cairn_dht::Key;
use serde::{Deserialize, Serialize};

use crate::chunker::MAX_CHUNK;

/// Largest file kept inside its manifest (see [`Manifest::File`]): 4 KiB, far below the
/// smallest data chunk the chunker cuts (64 KiB), so a file this small would otherwise be one
/// chunk and a manifest naming it.
pub const INLINE_MAX: usize = 4096;

/// Most links in one manifest: 4096 links of ~45 bytes stay far below [`MAX_CHUNK`], and a
/// two-level tree covers 16 M chunks (4 TiB at the average chunk size).
pub const MAX_LINKS: usize = 4096;

/// Deepest nesting of directories under a root that any walk follows. A path of 1,024
/// one-letter directories is 2 KiB, already half of Linux's `PATH_MAX`, so no real content comes
/// near it; it bounds what a hostile chain of manifests can make a walk do. Walks are
/// iterative, so the limit is about work and memory, not the stack.
pub const MAX_DEPTH: usize = 1024;

/// Deepest tree of manifests under one file: five levels of [`MAX_LINKS`] parts cover far more
/// chunks than any disk holds, so a deeper one is a stranger's construction, refused.
pub const MAX_TREE_DEPTH: usize = 8;

/// Most files one get writes out of a directory tree: ten million is more than any real tree
/// people copy as one, and three manifests of [`MAX_LINKS`] entries that each list the next
/// would otherwise make a get write 68 billion.
pub const MAX_TREE_FILES: u64 = 10_000_000;

/// Longest entry name in bytes: `NAME_MAX` on Linux, macOS and Windows, so every name a
/// directory holds can be written back to a disk.
pub const MAX_NAME: usize = 255;

/// A manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Manifest {
    /// A file (or a part of one): its data chunks in order.
    File {
        /// Total bytes.
        size: u64,
        /// Data chunks in order (none when `data` holds the file).
        chunks: Vec<Link>,
        /// The whole file, when it is at most [`INLINE_MAX`] bytes. Left out of the encoding
        /// when absent, so manifests written before it keep their ids.
        #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
        data: Option<Vec<u8>>,
    },
    /// A large file: the manifests of its consecutive parts.
    FileTree {
        /// Total bytes.
        size: u64,
        /// Part manifests in order.
        parts: Vec<Link>,
    },
    /// A directory.
    Dir {
        /// Entries sorted by name, names unique.
        entries: Vec<DirEntry>,
    },
}

/// A hash and the number of file bytes under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The chunk or manifest hash.
    pub id: Key,
    /// File bytes it covers.
    pub size: u64,
}

/// One entry of a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// The name (one path component, no `/`).
    pub name: String,
    /// Whether the entry is a file or a directory.
    pub kind: EntryKind,
    /// The entry's root manifest.
    pub id: Key,
    /// File bytes under it (for a directory, the sum of its files).
    pub size: u64,
}

/// File or directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A file.
    File,
    /// A directory.
    Dir,
}

/// Why bytes are not a valid manifest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not decodable CBOR of a manifest.
    #[error("not a cairn manifest: {0}")]
    Decode(String),
    /// Decodable, but not in canonical form.
    #[error("manifest is not canonically encoded")]
    NotCanonical,
    /// A limit or an invariant is broken (sizes do not add up, names unsorted, …).
    #[error("invalid manifest: {0}")]
    Invalid(&'static str),
}

impl Manifest {
    /// The manifest of a file of at most [`INLINE_MAX`] bytes, which holds the bytes itself.
    pub fn inline(data: Vec<u8>) -> Self {
        Manifest::File {
            size: data.len() as u64,
            chunks: Vec::new(),
            data: Some(data),
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        cbor4ii::serde::to_vec(Vec::new(), self).expect("encoding to a Vec cannot fail")
    }

    /// Decodes and checks a manifest.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_CHUNK {
            return Err(ManifestError::Invalid("larger than a chunk"));
        }
        let m: Manifest =
            cbor4ii::serde::from_slice(bytes).map_err(|e| ManifestError::Decode(e.to_string()))?;
        if m.encode() != bytes {
            return Err(ManifestError::NotCanonical);
        }
        m.validate()?;
        Ok(m)
    }

    /// File bytes under this manifest.
    pub fn size(&self) -> u64 {
        match self {
            Manifest::File { size, .. } | Manifest::FileTree { size, .. } => *size,
            Manifest::Dir { entries } => {
                entries.iter().map(|e| e.size).fold(0, u64::saturating_add)
            }
        }
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let sum = |links: &[Link]| links.iter().try_fold(0u64, |a, l| a.checked_add(l.size));
        match self {
            Manifest::File {
                size,
                data: Some(data),
                chunks,
            } => {
                if !chunks.is_empty() || data.len() > INLINE_MAX || data.len() as u64 != *size {
                    return Err(ManifestError::Invalid(
                        "inline data with chunks, too long, or not the file's size",
                    ));
                }
            }
            Manifest::File {
                size,
                chunks,
                data: None,
            } => {
                if chunks.len() > MAX_LINKS {
                    return Err(ManifestError::Invalid("too many chunks"));
                }
                if chunks.iter().any(|c| c.size as usize > MAX_CHUNK) {
                    return Err(ManifestError::Invalid("chunk larger than the maximum"));
                }
                if sum(chunks) != Some(*size) {
                    return Err(ManifestError::Invalid("chunk sizes do not add up"));
                }
            }
            Manifest::FileTree { size, parts } => {
                if parts.is_empty() || parts.len() > MAX_LINKS {
                    return Err(ManifestError::Invalid("tree with no parts or too many"));
                }
                if sum(parts) != Some(*size) {
                    return Err(ManifestError::Invalid("part sizes do not add up"));
                }
            }
            Manifest::Dir { entries } => {
                if entries.len() > MAX_LINKS {
                    return Err(ManifestError::Invalid("too many directory entries"));
                }
                for e in entries {
                    if !valid_name(&e.name) {
                        return Err(ManifestError::Invalid("bad entry name"));
                    }
                }
                if entries.windows(2).any(|w| w[0].name >= w[1].name) {
                    return Err(ManifestError::Invalid(
                        "entries not sorted by name or not unique",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether `name` may name a directory entry: one non-empty path component of at most
/// [`MAX_NAME`] bytes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
}

/// Builds a file's manifest tree bottom-up as chunks stream past, holding at most one
/// manifest's worth of links per tree level.
#[derive(Debug, Default)]
pub struct TreeBuilder {
    /// levels[0]: data chunk links; levels[n]: links to manifests of level n-1.
    levels: Vec<Vec<Link>>,
}

impl TreeBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next data chunk. Returns the manifests completed by it, to be stored.
    pub fn push(&mut self, link: Link) -> Vec<(Key, Vec<u8>)> {
        let mut out = Vec::new();
        self.push_at(0, link, &mut out);
        out
    }

    /// Ends the file. Returns the manifests still to store, the root last, and the root id.
    pub fn finish(mut self) -> (Vec<(Key, Vec<u8>)>, Key) {
        let mut out = Vec::new();
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        let mut level = 0;
        loop {
            let links = std::mem::take(&mut self.levels[level]);
            let top = level + 1 == self.levels.len();
            if top && level > 0 && links.len() == 1 {
                // A single manifest at the top: it is the root.
                return (out, links[0].id);
            }
            let link = seal(level, links, &mut out);
            if top {
                return (out, link.id);
            }
            self.levels[level + 1].push(link);
            level += 1;
        }
    }

    fn push_at(&mut self, level: usize, link: Link, out: &mut Vec<(Key, Vec<u8>)>) {
        if self.levels.len() <= level {
            self.levels.push(Vec::new());
        }
        if self.levels[level].len() == MAX_LINKS {
            let full = std::mem::take(&mut self.levels[level]);
            let sealed = seal(level, full, out);
            self.push_at(level + 1, sealed, out);
        }
        self.levels[level].push(link);
    }
}

fn seal(level: usize, links: Vec<Link>, out: &mut Vec<(Key, Vec<u8>)>) -> Link {
    let size = links.iter().map(|l| l.size).sum();
    let m = if level == 0 {
        Manifest::File {
            size,
            chunks: links,
            data: None,
        }
    } else {
        Manifest::FileTree { size, parts: links }
    };
    let bytes = m.encode();
    let id = Key::hash(&bytes);
    out.push((id, bytes));
    Link { id, size }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(i: u64) -> Link {
        Link {
            id: Key::hash(&i.to_be_bytes()),
            size: 10,
        }
    }

    #[test]
    fn a_small_file_lives_in_its_manifest_and_old_manifests_keep_their_encoding() {
        let m = Manifest::inline(b"hello".to_vec());
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        assert_eq!(m.size(), 5);
        // Without data the field is left out: the encoding (and so the id) of a manifest
        // written before inline data is what it was.
        let plain = Manifest::File {
            size: 20,
            chunks: vec![link(1), link(2)],
            data: None,
        };
        #[derive(Serialize)]
        enum Old {
            File { size: u64, chunks: Vec<Link> },
        }
        let old = Old::File {
            size: 20,
            chunks: vec![link(1), link(2)],
        };
        assert_eq!(
            plain.encode(),
            cbor4ii::serde::to_vec(Vec::new(), &old).unwrap()
        );
        let invalid = |m: Manifest| Manifest::decode(&m.encode()).is_err();
        assert!(invalid(Manifest::File {
            size: 6,
            chunks: vec![],
            data: Some(b"hello".to_vec()),
        }));
        assert!(invalid(Manifest::File {
            size: 15,
            chunks: vec![link(1)],
            data: Some(b"hello".to_vec()),
        }));
        assert!(invalid(Manifest::inline(vec![0; INLINE_MAX + 1])));
    }

    #[test]
    fn round_trip_and_canonical() {
        let m = Manifest::File {
            size: 20,
            chunks: vec![link(1), link(2)],
            data: None,
        };
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        assert!(Manifest::decode(b"garbage").is_err());
        let bad = Manifest::File {
            size: 21,
            chunks: vec![link(1), link(2)],
            data: None,
        };
        assert_eq!(
            Manifest::decode(&bad.encode()),
            Err(ManifestError::Invalid("chunk sizes do not add up"))
        );
        let unsorted = Manifest::Dir {
            entries: vec![
                DirEntry {
                    name: "b".into(),
                    kind: EntryKind::File,
                    id: link(1).id,
                    size: 1,
                },
                DirEntry {
                    name: "a".into(),
                    kind: EntryKind::File,
                    id: link(2).id,
                    size: 1,
                },
            ],
        };
        assert!(Manifest::decode(&unsorted.encode()).is_err());
    }

    #[test]
    fn deeply_nested_bytes_from_a_peer_are_an_error_not_a_stack_overflow() {
        // 500,000 nested one-element CBOR arrays (and maps) fit in a chunk.
        for head in [0x81u8, 0xa1] {
            let mut bytes = vec![head; 500_000];
            bytes.push(0);
            assert!(Manifest::decode(&bytes).is_err());
        }
    }

    #[test]
    fn names_are_bounded() {
        assert!(valid_name(&"a".repeat(MAX_NAME)));
        assert!(!valid_name(&"a".repeat(MAX_NAME + 1)));
        assert!(!valid_name("a/b") && !valid_name("..") && !valid_name("") && !valid_name("a\0"));
    }

    #[test]
    fn small_file_is_one_manifest_and_empty_file_too() {
        let mut b = TreeBuilder::new();
        assert!(b.push(link(1)).is_empty());
        let (out, root) = b.finish();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, root);
        let (out, root) = TreeBuilder::new().finish();
        assert_eq!(
            Manifest::decode(&out[0].1).unwrap(),
            Manifest::File {
                size: 0,
                chunks: vec![],
                data: None,
            }
        );
        assert_eq!(out[0].0, root);
    }

    #[test]
    fn large_file_gets_a_tree() {
        let mut b = TreeBuilder::new();
        let mut stored = Vec::new();
        let n = MAX_LINKS * 2 + 5;
        for i in 0..n as u64 {
            stored.extend(b.push(link(i)));
        }
        let (rest, root) = b.finish();
        stored.extend(rest);
        let by_id: std::collections::HashMap<Key, Manifest> = stored
            .iter()
            .map(|(id, bytes)| (*id, Manifest::decode(bytes).unwrap()))
            .collect();
        let Manifest::FileTree { size, parts } = &by_id[&root] else {
            panic!("root is a tree")
        };
        assert_eq!(*size, n as u64 * 10);
        assert_eq!(parts.len(), 3);
        let leaves: usize = parts
            .iter()
            .map(|p| match &by_id[&p.id] {
                Manifest::File { chunks, .. } => chunks.len(),
                _ => panic!("parts are files"),
            })
            .sum();
        assert_eq!(leaves, n);
        for (_, bytes) in &stored {
            assert!(bytes.len() < MAX_CHUNK / 4);
        }
    }
}
