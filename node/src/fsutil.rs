//! Small file-system helpers shared by the node and the command line.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename), readable and writable by
/// the owner only (mode 0600 on Unix): for keys and tokens.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    private_temp(dir, bytes)?
        .persist(path)
        .map_err(|e| e.error)?;
    Ok(())
}

/// A synced temporary file in `dir` holding `bytes`, mode 0600 on Unix, to be renamed into place.
fn private_temp(dir: &Path, bytes: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

/// As [`write_private`], but never over an existing file: fails with
/// [`std::io::ErrorKind::AlreadyExists`] if `path` exists (for a key, whose loss would lose a
/// name for good). The directory is synced after the rename, so the new file survives a crash.
pub fn write_private_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    private_temp(dir, bytes)?
        .persist_noclobber(path)
        .map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// Syncs directory `dir`, so that a file created, renamed or removed in it stays so after a
/// crash. Best effort: some platforms and file systems cannot sync a directory.
pub fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// What a file looked like when a read of it started, to tell at its end whether it changed
/// while it was read (a put must store what the file held, not a mix of two versions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSnapshot {
    len: u64,
    modified: Option<std::time::SystemTime>,
    regular: bool,
}

impl FileSnapshot {
    /// The file as `meta` describes it.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            regular: meta.is_file(),
        }
    }

    /// Its length when the read started.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty by its metadata.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the file changed, given its metadata `now` and the bytes `read` to its end. A
    /// regular file changed if it was modified, or if the bytes read or its length now differ
    /// from its length then; one that said it was empty but gave bytes (`/proc`, `/sys`) is read
    /// to its end and is not counted as changed for that. Pipes and devices have no length to
    /// compare and never count as changed.
    pub fn changed(&self, now: &std::fs::Metadata, read: u64) -> bool {
        if !self.regular {
            return false;
        }
        now.modified().ok() != self.modified
            || (self.len > 0 && (read != self.len || now.len() != self.len))
    }
}

/// The error a [`WatchedFile`] returns at its end when the file changed while it was read.
#[derive(Debug, thiserror::Error)]
#[error("changed while it was being read")]
pub struct FileChanged;

/// Whether `e` is a [`FileChanged`].
pub fn is_changed(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<FileChanged>())
}

/// A file opened for a put, read to the end of what it gives (not to the length `stat`
/// reported, which is 0 for `/proc` files and FIFOs), failing at its end with [`FileChanged`]
/// if it changed meanwhile.
#[derive(Debug)]
pub struct WatchedFile {
    file: std::fs::File,
    snapshot: FileSnapshot,
    read: u64,
}

impl WatchedFile {
    /// Opens `path` for reading; a directory is refused.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(std::io::Error::other("is a directory"));
        }
        Ok(Self {
            file,
            snapshot: FileSnapshot::of(&meta),
            read: 0,
        })
    }

    /// The file as it was when opened.
    pub fn snapshot(&self) -> FileSnapshot {
        self.snapshot
    }
}

impl std::io::Read for WatchedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read += n as u64;
        if n == 0 && !buf.is_empty() && self.snapshot.changed(&self.file.metadata()?, self.read) {
            return Err(std::io::Error::other(FileChanged));
        }
        Ok(n)
    }
}

/// Where a get writes its output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputTarget {
    /// A path to create whole or not at all, through a temporary beside it that is renamed into
    /// place: nothing is there yet, or a regular file that is replaced.
    Create(std::path::PathBuf),
    /// An existing device or FIFO (`/dev/null`, a named pipe): written to in place, never
    /// replaced.
    Special(std::path::PathBuf),
}

/// Why an output path cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A directory is in the way.
    #[error("{0} already exists and is a directory; choose another output path or remove it")]
    IsDirectory(std::path::PathBuf),
    /// A symbolic link that points nowhere.
    #[error("{0} is a symbolic link to a missing file; give the path it should point to")]
    DanglingLink(std::path::PathBuf),
    /// A socket or another kind of file that cannot be written to.
    #[error(
        "{0} is a socket or another file that cannot be written to; choose another output path"
    )]
    Unwritable(std::path::PathBuf),
    /// Its metadata could not be read.
    #[error("cannot use {path} as output: {source}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// What writing to `out` means: a symbolic link is followed to what it names (the link is not
/// replaced), a device or FIFO is written to in place, a directory is refused.
pub fn output_target(out: &Path) -> Result<OutputTarget, OutputError> {
    let io = |source| OutputError::Io {
        path: out.to_owned(),
        source,
    };
    let meta = match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(OutputTarget::Create(out.to_owned()));
        }
        Err(e) => return Err(io(e)),
        Ok(m) => m,
    };
    let (path, meta) = if meta.file_type().is_symlink() {
        let target = std::fs::canonicalize(out).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => OutputError::DanglingLink(out.to_owned()),
            _ => io(e),
        })?;
        let meta = std::fs::metadata(&target).map_err(io)?;
        (target, meta)
    } else {
        (out.to_owned(), meta)
    };
    if meta.is_dir() {
        return Err(OutputError::IsDirectory(out.to_owned()));
    }
    if meta.is_file() {
        return Ok(OutputTarget::Create(path));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_char_device() || t.is_block_device() || t.is_fifo() {
            return Ok(OutputTarget::Special(path));
        }
    }
    Err(OutputError::Unwritable(out.to_owned()))
}

/// Prefix of the temporary directories a get stages its output in, followed by the getter's
/// process id (so a later get can tell an abandoned one from one in progress).
pub const STAGING_PREFIX: &str = ".cairn-get-";

/// A temporary directory in `parent` to stage a get's output in; removed when dropped. First
/// removes what gets killed before they could clean up left in `parent` (on Linux, where a
/// process id tells whether its owner still runs).
pub fn staging_dir(parent: &Path) -> std::io::Result<tempfile::TempDir> {
    sweep_staging(parent);
    tempfile::Builder::new()
        .prefix(&format!("{STAGING_PREFIX}{}-", std::process::id()))
        .tempdir_in(parent)
}

fn sweep_staging(parent: &Path) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(STAGING_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(path = %entry.path().display(), "removing an interrupted get's leftovers");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watched_file_reads_to_the_end_and_notices_changes() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        let mut f = WatchedFile::open(&path).unwrap();
        let mut out = Vec::new();
        f.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello");

        // Grows while being read.
        let mut f = WatchedFile::open(&path).unwrap();
        let mut buf = [0u8; 2];
        f.read_exact(&mut buf).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b" world")
            .unwrap();
        let err = f.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(is_changed(&err), "{err}");

        // Shrinks while being read.
        let mut f = WatchedFile::open(&path).unwrap();
        std::fs::write(&path, b"x").unwrap();
        let err = f.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(is_changed(&err), "{err}");

        // /proc files say they are empty and are read whole.
        if Path::new("/proc/self/status").exists() {
            let mut f = WatchedFile::open(Path::new("/proc/self/status")).unwrap();
            assert!(f.snapshot().is_empty());
            let mut out = Vec::new();
            f.read_to_end(&mut out).unwrap();
            assert!(!out.is_empty());
        }
    }

    #[cfg(unix)]
    #[test]
    fn output_targets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        assert_eq!(
            output_target(&file).unwrap(),
            OutputTarget::Create(file.clone())
        );
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(
            output_target(&file).unwrap(),
            OutputTarget::Create(file.clone())
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(
            output_target(&link).unwrap(),
            OutputTarget::Create(std::fs::canonicalize(&file).unwrap())
        );
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(matches!(
            output_target(&dangling),
            Err(OutputError::DanglingLink(_))
        ));
        assert!(matches!(
            output_target(dir.path()),
            Err(OutputError::IsDirectory(_))
        ));
        assert_eq!(
            output_target(Path::new("/dev/null")).unwrap(),
            OutputTarget::Special("/dev/null".into())
        );
    }

    #[test]
    fn staging_dirs_of_dead_getters_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        // No process has id u32::MAX - 1 (Linux ids stay below 2^22).
        let stale = dir
            .path()
            .join(format!("{STAGING_PREFIX}{}-abc", u32::MAX - 1));
        std::fs::create_dir(&stale).unwrap();
        let live = staging_dir(dir.path()).unwrap();
        assert!(live.path().exists());
        if cfg!(target_os = "linux") {
            assert!(!stale.exists(), "a dead getter's staging dir is removed");
        }
        let second = staging_dir(dir.path()).unwrap();
        assert!(live.path().exists(), "our own staging dir is kept");
        drop((live, second));
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        super::write_private(&path, b"x").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
    }

    #[test]
    fn new_private_files_never_replace_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        super::write_private_new(&path, b"first").unwrap();
        let err = super::write_private_new(&path, b"second").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary is left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
