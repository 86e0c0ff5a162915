//! Content health and garbage collection: how many live, verified copies of each chunk of some
//! content the network holds ([`Node::health`]), and removing cached chunks ([`Node::gc`]).

use futures::{StreamExt, stream};
use rand::Rng;
use serde::{Deserialize, Serialize};

use cairn_dht::{Key, ProofOutcome, proof};

use crate::driver::Command;
use crate::store::GcReport;
use crate::{ContentId, GetError, Node, NodeStopped};

/// Chunks whose holders are looked up and challenged at once.
const HEALTH_CONCURRENCY: usize = 8;

/// The copies of one chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHealth {
    /// The chunk id, as hex.
    pub id: String,
    /// Other peers that proved they keep the chunk, pinned or as a replica (a keyed hash of
    /// its bytes under a fresh random key, which only a holder of the bytes can compute; a
    /// cached copy, which may be evicted, does not count).
    pub copies: usize,
    /// Other peers that said they hold it (its closest peers, and announced providers).
    pub claimed: usize,
    /// Of those, the peers whose proof was wrong (each loses standing here).
    pub invalid: usize,
}

/// How well the network holds some content: see [`Node::health`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    /// The content.
    pub content: String,
    /// Copies each chunk should have.
    pub replication: usize,
    /// Each distinct chunk (manifests included), in the order the content lists them.
    pub chunks: Vec<ChunkHealth>,
}

impl Health {
    /// The fewest verified copies of any chunk.
    pub fn min(&self) -> usize {
        self.chunks.iter().map(|c| c.copies).min().unwrap_or(0)
    }

    /// The median of the chunks' verified copies (the lower one of an even count).
    pub fn median(&self) -> usize {
        let mut copies: Vec<usize> = self.chunks.iter().map(|c| c.copies).collect();
        copies.sort_unstable();
        copies
            .get(copies.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(0)
    }

    /// The chunks with fewer verified copies than `replication`.
    pub fn at_risk(&self) -> impl Iterator<Item = &ChunkHealth> {
        self.chunks.iter().filter(|c| c.copies < self.replication)
    }
}

impl Node {
    /// Asks the network how many live, verified copies each chunk of `content` has: for each,
    /// every holder among its closest peers is found ([`cairn_dht::Dht::find_all_holders`])
    /// and challenged to prove it holds the bytes. Copies on this node are not counted: the
    /// figures say what would survive it. Proofs are checked against this node's copy, so
    /// what it does not store is fetched first (kept as cache), like a get.
    pub async fn health(&self, content: ContentId) -> Result<Health, GetError> {
        let replication = self.stats().await?.network.replication;
        let staging = self.inner.store.staging();
        let ids = self.walk(content, true, &staging).await?;
        let chunks: Vec<Result<ChunkHealth, GetError>> = stream::iter(ids)
            .map(|id| self.chunk_health(id))
            .buffered(HEALTH_CONCURRENCY)
            .collect()
            .await;
        Ok(Health {
            content: content.to_string(),
            replication,
            chunks: chunks.into_iter().collect::<Result<_, _>>()?,
        })
    }

    async fn chunk_health(&self, id: Key) -> Result<ChunkHealth, GetError> {
        let holders = self
            .call(|reply| Command::FindAllHolders { key: id, reply })
            .await?
            .map_err(|e| GetError::Busy(e.to_string()))?;
        let local = crate::protocol::node_id(&self.peer_id());
        let holders: Vec<_> = holders.into_iter().filter(|h| h.id != local).collect();
        let mut health = ChunkHealth {
            id: format!("{id:x}"),
            copies: 0,
            claimed: holders.len(),
            invalid: 0,
        };
        // The walk fetched and staged every chunk; one gone meanwhile cannot be checked.
        let Some(bytes) = self.stored(id).await? else {
            return Ok(health);
        };
        let challenges = holders.into_iter().map(|peer| {
            let mut nonce = [0u8; 32];
            rand::rng().fill_bytes(&mut nonce);
            let expected = Some(proof(&nonce, &bytes));
            async move {
                self.call(|reply| Command::Prove {
                    peer,
                    id,
                    nonce,
                    expected,
                    reply: Some(reply),
                })
                .await
            }
        });
        for outcome in futures::future::join_all(challenges).await {
            match outcome? {
                ProofOutcome::Valid => health.copies += 1,
                ProofOutcome::Invalid => health.invalid += 1,
                _ => {}
            }
        }
        Ok(health)
    }

    /// Removes cached chunks (fetched by gets, neither pinned nor kept as replicas for the
    /// network), least recently used first, until at most `keep` bytes of cache remain; with
    /// `dry_run` only reports what it would remove. See [`crate::store::Store::collect_garbage`].
    pub async fn gc(&self, keep: u64, dry_run: bool) -> Result<GcReport, GetError> {
        let store = self.inner.store.clone();
        Ok(
            tokio::task::spawn_blocking(move || store.collect_garbage(keep, dry_run))
                .await
                .map_err(|_| NodeStopped)??,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(copies: &[usize]) -> Health {
        Health {
            content: String::new(),
            replication: 5,
            chunks: copies
                .iter()
                .map(|&copies| ChunkHealth {
                    id: String::new(),
                    copies,
                    claimed: copies,
                    invalid: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn min_median_and_chunks_at_risk() {
        let h = health(&[5, 3, 6, 5, 0]);
        assert_eq!((h.min(), h.median()), (0, 5));
        assert_eq!(
            h.at_risk().map(|c| c.copies).collect::<Vec<_>>(),
            vec![3, 0]
        );
        assert_eq!(health(&[4, 2]).median(), 2);
        assert_eq!((health(&[]).min(), health(&[]).median()), (0, 0));
    }
}
