//! The peers a node knew, kept in `peers.json` in its data directory, so that a restarted node
//! rejoins through them when it is given no bootstrap address (the engine retries a bootstrap
//! that found nobody, see `Dht::bootstrap`), and `Node::add_peer` for joining at runtime.

use std::path::Path;
use std::time::Duration;

use tracing::warn;

use crate::Node;
use crate::protocol::PeerAddr;

/// The file in the data directory.
pub(crate) const PEERS_FILE: &str = "peers.json";

/// Peers saved at most (the routing table's, best first).
const MAX_SAVED: usize = 256;

/// How often the peer list is saved while the node runs.
pub(crate) const SAVE_INTERVAL: Duration = Duration::from_secs(60);

/// The peers saved in `dir`; none if there is no file, and none (with a warning) if it cannot
/// be read: it is a hint, never needed.
pub(crate) fn load(dir: &Path) -> Vec<PeerAddr> {
    let path = dir.join(PEERS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the saved peers; ignoring them");
            return Vec::new();
        }
    };
    match serde_json::from_slice::<Vec<PeerAddr>>(&bytes) {
        Ok(mut peers) => {
            peers.truncate(MAX_SAVED);
            peers
        }
        Err(e) => {
            warn!(path = %path.display(), error = %e, "the saved peers file is damaged; ignoring it");
            Vec::new()
        }
    }
}

/// Saves `peers` in `dir` (written aside, then renamed over the old list).
pub(crate) fn save(dir: &Path, peers: &[PeerAddr]) -> std::io::Result<()> {
    let peers = &peers[..peers.len().min(MAX_SAVED)];
    let bytes = serde_json::to_vec_pretty(peers).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{PEERS_FILE}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(PEERS_FILE))
}

impl Node {
    /// Connects to the peer at `addr` (which must end in `/p2p/<peer id>`) and joins the
    /// network through it, at runtime; returns how many close peers answered.
    pub async fn add_peer(&self, addr: &libp2p::Multiaddr) -> Result<usize, AddPeerError> {
        let peer =
            crate::protocol::peer_of(addr).ok_or_else(|| AddPeerError::NoPeerId(addr.clone()))?;
        if peer == self.peer_id() {
            return Err(AddPeerError::Itself(addr.clone()));
        }
        let seed = PeerAddr {
            peer,
            addr: crate::protocol::without_peer(addr),
        };
        Ok(self.bootstrap(vec![seed]).await?)
    }

    /// The routing table's peers as addresses to save.
    pub(crate) async fn known_peers(&self) -> Option<Vec<PeerAddr>> {
        let peers = self.peers().await.ok()?;
        Some(
            peers
                .into_iter()
                .map(|p| PeerAddr {
                    peer: p.peer_id,
                    addr: p.addr,
                })
                .collect(),
        )
    }

    /// Saves the routing table's peers in the data directory, if there is one and it has any
    /// (an empty table would only erase what a later start could use).
    pub(crate) async fn save_peers(&self) {
        let Some(dir) = self.inner.data_dir.clone() else {
            return;
        };
        let Some(peers) = self.known_peers().await.filter(|p| !p.is_empty()) else {
            return;
        };
        let written = tokio::task::spawn_blocking(move || save(&dir, &peers)).await;
        if let Ok(Err(e)) = written {
            warn!(error = %e, "cannot save the peer list");
        }
    }
}

/// Saves the peer list every [`SAVE_INTERVAL`] until the node stops.
pub(crate) async fn keep_saving(node: Node) {
    loop {
        tokio::time::sleep(SAVE_INTERVAL).await;
        if node.peers().await.is_err() {
            return; // stopped
        }
        node.save_peers().await;
    }
}

/// Why [`Node::add_peer`] could not try a peer.
#[derive(Debug, thiserror::Error)]
pub enum AddPeerError {
    /// The address does not say which peer it is.
    #[error(
        "'{0}' names no peer: add /p2p/<peer id> at its end (the peer's `cairn status` shows its full addresses)"
    )]
    NoPeerId(libp2p::Multiaddr),
    /// The address is this node's own.
    #[error("'{0}' is this node itself; give the address of another peer")]
    Itself(libp2p::Multiaddr),
    /// An invite with no address in it.
    #[error("the invite has no address to reach its node at; ask for a new one (`cairn invite`)")]
    NoAddress,
    /// The node has stopped.
    #[error(transparent)]
    Stopped(#[from] crate::error::NodeStopped),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_list_loads_back_and_a_damaged_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_empty(), "no file");
        let peer = PeerAddr {
            peer: libp2p::PeerId::random(),
            addr: "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
        };
        save(dir.path(), std::slice::from_ref(&peer)).unwrap();
        assert_eq!(load(dir.path()), vec![peer]);
        std::fs::write(dir.path().join(PEERS_FILE), b"{ not json").unwrap();
        assert!(load(dir.path()).is_empty());
    }
}
