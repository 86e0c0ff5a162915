//! A cairn peer. Not built yet: this crate will drive the [`cairn_dht`] engine over libp2p and
//! keep chunks on disk (see the "real peer" issue). Until then it only re-exports the engine.

pub use cairn_dht as dht;
