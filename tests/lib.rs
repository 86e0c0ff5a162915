//! Integration tests of cairn with real nodes on loopback. Empty until the node exists; the
//! engine's own network tests live in `dht/tests/`.
