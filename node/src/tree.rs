//! Directory trees between the file system and content, written once for both places that move
//! them: a [`Node`](crate::Node) storing and fetching pieces itself ([`crate::Node::put_dir`],
//! [`crate::Node::get_to_file`]), and the API client ([`crate::api::Client`]), which has a
//! daemon store and fetch them. Each says how one piece moves ([`PutPieces`], [`GetPieces`]);
//! the walk, its order and bounds, staging, and the all-or-nothing rename are here.
//!
//! A put walks the tree iteratively with [`DirWalk`], files first within a directory, deepest
//! directories sealed first, so each directory is one bounded manifest whatever the size of the
//! tree. A get writes into a temporary directory beside the output and renames it into place
//! when complete; it is iterative, refuses trees deeper than [`MAX_DEPTH`] and entry names that
//! are not file names, and counts the files first so that a small hostile DAG that expands to
//! billions of files is refused before anything is written.

use std::future::Future;
use std::path::{Path, PathBuf};

use cairn_dht::Key;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tracing::warn;

use crate::error::{GetError, PutError};
use crate::fsutil::{OutputTarget, output_target, staging_dir};
use crate::manifest::{DirEntry, EntryKind, MAX_DEPTH, ManifestError, valid_name};
use crate::{ContentId, DirWalk, GetSummary, WalkStep};

/// How a directory put stores its pieces.
pub(crate) trait PutPieces {
    /// What a piece can fail with.
    type Error: From<PutError>;

    /// Stores the file at `path`: its root id and size.
    fn file(&mut self, path: &Path)
    -> impl Future<Output = Result<(Key, u64), Self::Error>> + Send;

    /// Stores one directory of stored `entries` (at `dir` on disk, for errors): its id and
    /// size. `root` is the tree's root, stored last.
    fn dir(
        &mut self,
        entries: Vec<DirEntry>,
        dir: &Path,
        root: bool,
    ) -> impl Future<Output = Result<(Key, u64), Self::Error>> + Send;
}

/// Puts the directory tree at `root` through `pieces`: its root id and size. Symbolic links and
/// special files are skipped, with a warning.
pub(crate) async fn put_tree<P: PutPieces + Send>(
    root: &Path,
    pieces: &mut P,
) -> Result<(Key, u64), P::Error> {
    // One list of entries per open directory, the root's at the bottom.
    let mut open: Vec<(String, Vec<DirEntry>)> = vec![(String::new(), Vec::new())];
    for step in DirWalk::new(root)? {
        match step? {
            WalkStep::Open { name } => open.push((name, Vec::new())),
            WalkStep::File { name, path, .. } => {
                let (id, size) = pieces.file(&path).await?;
                if let Some((_, entries)) = open.last_mut() {
                    entries.push(DirEntry {
                        name,
                        kind: EntryKind::File,
                        id,
                        size,
                    });
                }
            }
            WalkStep::Skipped { path } => {
                warn!(path = %path.display(), "skipping: not a regular file or directory");
            }
            WalkStep::Close { dir } => {
                let Some((name, entries)) = open.pop() else {
                    break;
                };
                let (id, size) = pieces.dir(entries, &dir, open.is_empty()).await?;
                match open.last_mut() {
                    Some((_, parent)) => parent.push(DirEntry {
                        name,
                        kind: EntryKind::Dir,
                        id,
                        size,
                    }),
                    None => return Ok((id, size)),
                }
            }
        }
    }
    Err(PutError::Read {
        path: root.to_owned(),
        source: std::io::Error::other("the directory walk ended before the root"),
    }
    .into())
}

/// What a get finds at an id.
pub(crate) enum Piece<F> {
    /// A directory and its entries.
    Dir(Vec<DirEntry>),
    /// A file, as the source needs it to write its bytes.
    File(F),
}

/// How a get fetches its pieces.
pub(crate) trait GetPieces {
    /// A file, ready to write.
    type File: Send;
    /// What a piece can fail with.
    type Error: From<GetError> + Send;

    /// What `id` is; `entry` is the directory entry that names it, to check it against.
    fn open(
        &mut self,
        id: Key,
        entry: &DirEntry,
    ) -> impl Future<Output = Result<Piece<Self::File>, Self::Error>> + Send;

    /// Refuses the tree under `id` if a get of it would write too many files.
    fn count(&mut self, id: ContentId) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// A file's bytes, in order.
    fn bytes(
        &mut self,
        file: Self::File,
    ) -> impl Future<
        Output = Result<
            impl Stream<Item = Result<bytes::Bytes, Self::Error>> + Send + 'static,
            Self::Error,
        >,
    > + Send;
}

/// Writes `root` (what `id` is) to `out`. The output appears whole or not at all: it is
/// written under a temporary name beside `out` and renamed when complete. An existing file at
/// `out` is replaced, a symbolic link is followed (what it names is replaced, not the link), a
/// device or FIFO (`/dev/null`, a named pipe) is written to in place, and an existing
/// directory is refused.
pub(crate) async fn get_tree<G: GetPieces + Send>(
    pieces: &mut G,
    id: ContentId,
    root: Piece<G::File>,
    out: &Path,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<GetSummary, G::Error> {
    let mut summary = GetSummary { size: 0, files: 0 };
    let mut written = |n: u64| {
        summary.size += n;
        progress(n);
    };
    let dest = match output_target(out).map_err(GetError::from)? {
        OutputTarget::Special(path) => {
            let Piece::File(file) = root else {
                return Err(GetError::IsDirectory(id).into());
            };
            let mut f = tokio::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .await
                .map_err(write_error(&path))?;
            write_file(pieces, file, &mut f, &path, &mut written).await?;
            summary.files = 1;
            return Ok(summary);
        }
        OutputTarget::Create(path) => path,
    };
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if matches!(root, Piece::Dir(_)) {
        pieces.count(id).await?;
    }
    let staging = staging_dir(&parent).map_err(write_error(&dest))?;
    let staged = staging.path().join("content");
    let files = write_tree(pieces, id, root, &staged, &mut written).await?;
    std::fs::rename(&staged, &dest).map_err(write_error(&dest))?;
    summary.files = files;
    Ok(summary)
}

/// Writes the file or directory tree `root` to `out`, which must not exist: its file count.
async fn write_tree<G: GetPieces + Send>(
    pieces: &mut G,
    content: ContentId,
    root: Piece<G::File>,
    out: &Path,
    written: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, G::Error> {
    let entries = match root {
        Piece::Dir(entries) => entries,
        Piece::File(file) => {
            let mut f = create(out).await?;
            write_file(pieces, file, &mut f, out, written).await?;
            return Ok(1);
        }
    };
    tokio::fs::create_dir(out).await.map_err(write_error(out))?;
    let mut files = 0;
    // Open directories: where they are and the entries still to write, next at the end.
    let mut open = vec![(out.to_owned(), reversed(entries))];
    while let Some((dir, entries)) = open.last_mut() {
        let Some(entry) = entries.pop() else {
            open.pop();
            continue;
        };
        if !valid_name(&entry.name) {
            return Err(GetError::Manifest {
                content,
                source: ManifestError::Invalid("an entry's name is not a file name"),
            }
            .into());
        }
        let path = dir.join(&entry.name);
        match pieces.open(entry.id, &entry).await? {
            Piece::Dir(entries) => {
                if open.len() >= MAX_DEPTH {
                    return Err(GetError::TooDeep(content).into());
                }
                tokio::fs::create_dir(&path)
                    .await
                    .map_err(write_error(&path))?;
                open.push((path, reversed(entries)));
            }
            Piece::File(file) => {
                let mut f = create(&path).await?;
                write_file(pieces, file, &mut f, &path, written).await?;
                files += 1;
            }
        }
    }
    Ok(files)
}

/// Writes one file's bytes to `out` (at `path`) and syncs it, so that it is on disk before the
/// tree is renamed into place.
async fn write_file<G: GetPieces + Send>(
    pieces: &mut G,
    file: G::File,
    out: &mut tokio::fs::File,
    path: &Path,
    written: &mut (dyn FnMut(u64) + Send),
) -> Result<(), G::Error> {
    let mut bytes = std::pin::pin!(pieces.bytes(file).await?);
    while let Some(piece) = bytes.next().await {
        let piece = piece?;
        out.write_all(&piece).await.map_err(write_error(path))?;
        written(piece.len() as u64);
    }
    out.flush().await.map_err(write_error(path))?;
    // A device or pipe cannot be synced; a regular file must be before it is renamed.
    match out.sync_all().await {
        Err(e) if out.metadata().await.is_ok_and(|m| m.is_file()) => Err(GetError::Write {
            path: path.to_owned(),
            source: e,
        }
        .into()),
        _ => Ok(()),
    }
}

async fn create(path: &Path) -> Result<tokio::fs::File, GetError> {
    tokio::fs::File::create(path)
        .await
        .map_err(write_error(path))
}

/// Makes a write error about `path`.
pub(crate) fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> GetError + use<> {
    let path = path.to_owned();
    move |source| GetError::Write { path, source }
}

/// `v` reversed, so that popping from the end visits it in order.
fn reversed<T>(mut v: Vec<T>) -> Vec<T> {
    v.reverse();
    v
}
