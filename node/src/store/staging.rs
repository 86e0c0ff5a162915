//! Chunks held for a put in progress: stored as evictable cache (so a put that fails or is
//! cancelled leaves nothing that can never be evicted), yet protected from eviction until the
//! put pins them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_dht::Key;

/// How many guards stage each id. Shared by the store and its [`Staging`] guards.
pub(crate) type Staged = Arc<Mutex<HashMap<Key, u32>>>;

/// Chunks a put in progress has stored and must not lose to eviction before it pins them. In
/// memory only: dropping it (the put finished, failed or was cancelled) or a restart makes them
/// evictable cache.
#[derive(Debug)]
pub struct Staging {
    staged: Staged,
    /// The ids this guard staged, each counted once in `staged` however often it was added.
    mine: Mutex<HashSet<Key>>,
}

impl Staging {
    pub(crate) fn new(staged: Staged) -> Self {
        Self {
            staged,
            mine: Mutex::new(HashSet::new()),
        }
    }

    /// Protects `id` (call before inserting it, so a concurrent eviction cannot take it in
    /// between).
    pub fn add(&self, id: &Key) {
        if lock(&self.mine).insert(*id) {
            *lock(&self.staged).entry(*id).or_insert(0) += 1;
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let mine = std::mem::take(&mut *lock(&self.mine));
        let mut staged = lock(&self.staged);
        for id in mine {
            if let Some(n) = staged.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    staged.remove(&id);
                }
            }
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update above is a single map operation: a panic elsewhere while the lock was held
    // cannot have left the map half-changed.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
