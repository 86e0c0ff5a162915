//! Named keys: the ed25519 secret keys a node publishes names under, one name per key.
//!
//! The key called `self` is the node's own name key, kept where it always was
//! ([`crate::NAME_KEY_FILE`] in the data directory), so a node upgraded from a version without
//! named keys keeps its name. The others are kept one file per key in `keys/` (directory mode
//! 0700, files 0600, each the 32 bytes of the secret key, written atomically and never over an
//! existing file). A node without a data directory keeps its keys in memory only.
//!
//! The node renews the records of every key it holds (the engine asks at half a record's life,
//! see [`cairn_dht::Event::RenewRecord`]) and publishes each again after a restart. A removed
//! key's name is no longer renewed: it lapses when its last record expires.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, RwLock};

use cairn_dht::SignedRecord;
use tracing::warn;

use crate::error::{KeyError, SpawnError};
use crate::names::Name;
use crate::{NodeStopped, printable};

/// The name of the node's own key.
pub const SELF_KEY: &str = "self";
/// The directory, in the data directory, holding the named keys other than `self`.
pub const KEYS_DIR: &str = "keys";
/// Longest key name, in bytes.
pub const MAX_KEY_NAME: usize = 64;
/// Keys a node holds at most, `self` included: each is a name the node renews.
pub const MAX_KEYS: usize = 1024;

/// The name of a key: 1 to [`MAX_KEY_NAME`] ASCII letters, digits, `-`, `_` or `.`, not
/// starting with `.`, so that it is a safe file name on every platform.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyName(String);

impl KeyName {
    /// The node's own key, `self`.
    pub fn self_key() -> Self {
        Self(SELF_KEY.to_owned())
    }

    /// Whether this is the node's own key.
    pub fn is_self(&self) -> bool {
        self.0 == SELF_KEY
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyName {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if s.is_empty() || s.len() > MAX_KEY_NAME || s.starts_with('.') || !s.chars().all(allowed) {
            let shown: String = s.chars().take(80).collect();
            return Err(KeyError::BadName(printable(&shown)));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyName({})", self.0)
    }
}

/// A key as listed: its name here, and the name (`cairnname1…`) it publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// What the key is called on this node.
    pub key: KeyName,
    /// The name its records are published under.
    pub name: Name,
}

/// A secret key with its public key, worked out once.
#[derive(Clone, Copy)]
struct Secret {
    secret: [u8; 32],
    public: [u8; 32],
}

impl Secret {
    fn new(secret: [u8; 32]) -> Self {
        Self {
            secret,
            public: SignedRecord::public_key_of(&secret),
        }
    }
}

/// The keys of one node, shared by its handles and its driver (which renews their records).
pub(crate) struct Keyring {
    /// `keys/` in the data directory; `None` for a node kept in memory.
    dir: Option<PathBuf>,
    keys: RwLock<BTreeMap<KeyName, Secret>>,
    /// Held across a generation's or a removal's file work, so two never interleave; the map's
    /// lock is held only to read or update it, never across I/O, so the driver never waits on
    /// a disk.
    writes: Mutex<()>,
}

impl fmt::Debug for Keyring {
    // By hand, so no secret key reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("dir", &self.dir)
            .field("keys", &self.read().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// A keyring in memory only, with `self_secret` as the `self` key.
    pub(crate) fn in_memory(self_secret: [u8; 32]) -> Self {
        let mut keys = BTreeMap::new();
        keys.insert(KeyName::self_key(), Secret::new(self_secret));
        Self {
            dir: None,
            keys: RwLock::new(keys),
            writes: Mutex::new(()),
        }
    }

    /// The keyring of data directory `data_dir`: `self_secret` and the keys in `keys/`. A key
    /// file that cannot be read or is not a key stops the start (a name would otherwise lapse
    /// unnoticed); files whose names are no key names (an editor's backup, an interrupted
    /// write's temporary) are skipped, the temporaries removed.
    pub(crate) fn open(data_dir: &Path, self_secret: [u8; 32]) -> Result<Self, SpawnError> {
        let mut ring = Self::in_memory(self_secret);
        let dir = data_dir.join(KEYS_DIR);
        let bad = |path: &Path, reason: String| SpawnError::Key {
            path: path.to_owned(),
            reason,
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => Some(entries),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(bad(&dir, e.to_string())),
        };
        let keys = ring.keys.get_mut().unwrap_or_else(|e| e.into_inner());
        for entry in entries.into_iter().flatten() {
            let entry = entry.map_err(|e| bad(&dir, e.to_string()))?;
            let path = entry.path();
            let file_name = entry.file_name();
            let Some(text) = file_name.to_str() else {
                warn!(path = %path.display(), "skipping a file in keys/ whose name is not UTF-8");
                continue;
            };
            if text.starts_with(".tmp") {
                // An interrupted write's temporary (see `fsutil::write_private_new`).
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let name = match text.parse::<KeyName>() {
                Ok(name) if name.is_self() => {
                    warn!(path = %path.display(), "skipping keys/self: the key called self is {}", crate::NAME_KEY_FILE);
                    continue;
                }
                Ok(name) => name,
                Err(_) => {
                    warn!(path = %path.display(), "skipping a file in keys/ whose name is no key name");
                    continue;
                }
            };
            if keys.len() >= MAX_KEYS {
                return Err(bad(
                    &path,
                    format!("more than {MAX_KEYS} keys in {}", dir.display()),
                ));
            }
            let bytes = std::fs::read(&path).map_err(|e| bad(&path, e.to_string()))?;
            let secret: [u8; 32] = bytes
                .try_into()
                .map_err(|_| bad(&path, "not 32 bytes".into()))?;
            keys.insert(name, Secret::new(secret));
        }
        ring.dir = Some(dir);
        Ok(ring)
    }

    /// The secret of the `self` key.
    pub(crate) fn self_secret(&self) -> [u8; 32] {
        self.read()
            .get(&KeyName::self_key())
            .map(|s| s.secret)
            .expect("the self key is never removed")
    }

    /// The secret of key `name`.
    pub(crate) fn secret(&self, name: &KeyName) -> Result<[u8; 32], KeyError> {
        self.read()
            .get(name)
            .map(|s| s.secret)
            .ok_or_else(|| KeyError::Unknown(name.clone()))
    }

    /// The secret whose public key is `public`, if this node holds it: to renew a record.
    pub(crate) fn secret_for(&self, public: &[u8; 32]) -> Option<[u8; 32]> {
        self.read()
            .values()
            .find(|s| s.public == *public)
            .map(|s| s.secret)
    }

    /// Every key's secret.
    pub(crate) fn secrets(&self) -> Vec<[u8; 32]> {
        self.read().values().map(|s| s.secret).collect()
    }

    /// Every key, `self` first, then by name.
    pub(crate) fn list(&self) -> Vec<KeyInfo> {
        let keys = self.read();
        let info = |(key, s): (&KeyName, &Secret)| KeyInfo {
            key: key.clone(),
            name: Name::from_public_key(s.public),
        };
        let own = keys.iter().filter(|(k, _)| k.is_self()).map(info);
        own.chain(keys.iter().filter(|(k, _)| !k.is_self()).map(info))
            .collect()
    }

    /// Creates key `name` from `secret` (fresh random bytes), on disk first. Blocking.
    pub(crate) fn generate(&self, name: &KeyName, secret: [u8; 32]) -> Result<KeyInfo, KeyError> {
        let _writing = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        {
            let keys = self.read();
            if keys.contains_key(name) {
                return Err(KeyError::Exists(name.clone()));
            }
            if keys.len() >= MAX_KEYS {
                return Err(KeyError::TooMany);
            }
        }
        if let Some(dir) = &self.dir {
            create_private_dir(dir).map_err(|source| KeyError::Io {
                path: dir.clone(),
                source,
            })?;
            let path = dir.join(name.as_str());
            crate::fsutil::write_private_new(&path, &secret).map_err(|source| {
                if source.kind() == std::io::ErrorKind::AlreadyExists {
                    KeyError::Exists(name.clone())
                } else {
                    KeyError::Io { path, source }
                }
            })?;
        }
        let secret = Secret::new(secret);
        self.write().insert(name.clone(), secret);
        Ok(KeyInfo {
            key: name.clone(),
            name: Name::from_public_key(secret.public),
        })
    }

    /// Removes key `name`, from disk first; `self` is refused. Blocking.
    pub(crate) fn remove(&self, name: &KeyName) -> Result<KeyInfo, KeyError> {
        if name.is_self() {
            return Err(KeyError::RemoveSelf);
        }
        let _writing = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let public = self
            .read()
            .get(name)
            .map(|s| s.public)
            .ok_or_else(|| KeyError::Unknown(name.clone()))?;
        if let Some(dir) = &self.dir {
            let path = dir.join(name.as_str());
            match std::fs::remove_file(&path) {
                Ok(()) => crate::fsutil::sync_dir(dir),
                // Removed by hand meanwhile: what was asked is done.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(KeyError::Io { path, source }),
            }
        }
        self.write().remove(name);
        Ok(KeyInfo {
            key: name.clone(),
            name: Name::from_public_key(public),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<KeyName, Secret>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<KeyName, Secret>> {
        self.keys.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates `dir` readable by its owner only (mode 0700 on Unix) if it is missing.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                crate::fsutil::sync_dir(parent);
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Fresh random bytes for a new secret key.
pub(crate) fn random_secret() -> [u8; 32] {
    use rand::Rng;
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    secret
}

impl crate::Node {
    /// Creates a new key called `name`, whose name (see [`KeyInfo::name`]) can then be
    /// published with [`Node::publish_name_under`](crate::Node::publish_name_under). Refused if
    /// a key of that name exists: its name would be lost for good.
    pub async fn generate_key(&self, name: &KeyName) -> Result<KeyInfo, KeyError> {
        let (keys, name) = (self.inner.keys.clone(), name.clone());
        tokio::task::spawn_blocking(move || keys.generate(&name, random_secret()))
            .await
            .map_err(|_| KeyError::Stopped(NodeStopped))?
    }

    /// Every key of this node, `self` first, then by name.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.inner.keys.list()
    }

    /// The key called `name`.
    pub fn key(&self, name: &KeyName) -> Result<KeyInfo, KeyError> {
        let secret = self.inner.keys.secret(name)?;
        Ok(KeyInfo {
            key: name.clone(),
            name: Name::from_public_key(SignedRecord::public_key_of(&secret)),
        })
    }

    /// Removes the key called `name` (not `self`) and its file: its name is no longer renewed,
    /// and lapses when its last record expires. The secret is gone for good; nobody can publish
    /// under that name again.
    pub async fn remove_key(&self, name: &KeyName) -> Result<KeyInfo, KeyError> {
        let (keys, name) = (self.inner.keys.clone(), name.clone());
        tokio::task::spawn_blocking(move || keys.remove(&name))
            .await
            .map_err(|_| KeyError::Stopped(NodeStopped))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_safe_file_names() {
        for good in [
            "self",
            "blog",
            "a",
            "my-site_2.0",
            "A.b-C_d",
            &"x".repeat(64),
        ] {
            assert_eq!(good.parse::<KeyName>().unwrap().as_str(), good);
        }
        for bad in [
            "",
            ".hidden",
            ".",
            "..",
            "a/b",
            "a\\b",
            "with space",
            "tab\t",
            "nul\0",
            "été",
            "a:b",
            "*",
            &"x".repeat(65),
        ] {
            let err = bad.parse::<KeyName>().unwrap_err();
            assert!(matches!(err, KeyError::BadName(_)), "{bad:?}");
            let text = err.to_string();
            assert!(!text.contains('\n') && !text.contains('\t'), "{text}");
            assert!(text.contains("at most 64"), "{text}");
        }
    }

    #[test]
    fn keys_are_kept_listed_found_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::open(dir.path(), [1; 32]).unwrap();
        let blog: KeyName = "blog".parse().unwrap();
        let made = ring.generate(&blog, [2; 32]).unwrap();
        assert!(matches!(
            ring.generate(&blog, [3; 32]),
            Err(KeyError::Exists(_))
        ));
        assert!(matches!(
            ring.generate(&KeyName::self_key(), [3; 32]),
            Err(KeyError::Exists(_))
        ));
        let listed: Vec<String> = ring.list().iter().map(|k| k.key.to_string()).collect();
        assert_eq!(listed, ["self", "blog"]);
        assert_eq!(ring.secret_for(&made.name.public_key()), Some([2; 32]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.path().join(KEYS_DIR)), 0o700);
            assert_eq!(mode(&dir.path().join(KEYS_DIR).join("blog")), 0o600);
        }

        // Opened again: the same keys; an interrupted write's temporary is swept, a stray file
        // skipped.
        std::fs::write(dir.path().join(KEYS_DIR).join(".tmpAbC123"), b"half").unwrap();
        std::fs::write(dir.path().join(KEYS_DIR).join("notes.txt~"), b"x").unwrap();
        drop(ring);
        let ring = Keyring::open(dir.path(), [1; 32]).unwrap();
        assert_eq!(ring.secret(&blog).unwrap(), [2; 32]);
        assert!(!dir.path().join(KEYS_DIR).join(".tmpAbC123").exists());
        assert_eq!(ring.list().len(), 2);

        assert!(matches!(
            ring.remove(&KeyName::self_key()),
            Err(KeyError::RemoveSelf)
        ));
        assert_eq!(ring.remove(&blog).unwrap(), made);
        assert!(matches!(ring.remove(&blog), Err(KeyError::Unknown(_))));
        assert!(ring.secret_for(&made.name.public_key()).is_none());
        assert!(!dir.path().join(KEYS_DIR).join("blog").exists());
        drop(ring);
        let ring = Keyring::open(dir.path(), [1; 32]).unwrap();
        assert_eq!(ring.list().len(), 1);
    }

    #[test]
    fn a_damaged_key_file_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(KEYS_DIR)).unwrap();
        std::fs::write(dir.path().join(KEYS_DIR).join("blog"), b"short").unwrap();
        let err = Keyring::open(dir.path(), [1; 32]).unwrap_err();
        assert!(err.to_string().contains("not 32 bytes"), "{err}");
    }
}
