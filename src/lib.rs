//! livenessd: a decentralized, verifiable record of which operator nodes of an
//! EigenLayer AVS were up and which were down, ordered by the Zellular sequencer.
//!
//! Layout (see `ARCHITECTURE.md` for the whole picture):
//! - [`crypto::bn254`]: Zellular finality signatures (BLS on BN254, arkworks).
//! - [`zellular`]: the chaining hash, finality messages, operator sets (static or
//!   EigenLayer subgraph), and the client: submit, and the verified finalized stream.
//! - [`devseq`]: `livenessd sequencer`, the embedded Zellular-compatible dev sequencer.
//! - [`config`]: node configuration (figment layers, validation).
//! - [`crypto::bls`]: BLS12-381 PoP signatures (blst) for attestations and proofs.
//! - [`events`]: downtime events, the monitoring-node set, quorum verification.
//! - [`prober`]: concurrent HTTP/TCP probes with flap damping.
//! - [`signer`]: the only holder of the BLS secret key.
//! - [`replicator`]: finalized batches → verified events → the replica.
//! - [`answers`]: downtime, interval table, epoch summaries from the replica.
//! - [`aggregator`]: quorum proofs of confirmed changes, posted to Zellular.
//! - [`http`]: the node's HTTP API; [`node`]: wiring and supervision.
//! - [`store`]: SQLite persistence; the only module that issues SQL.
//! - [`keyfile`]: secret key files with safe permissions.
//! - [`metrics`]: counters for every rejected input, served at `/metrics`.
//! - [`devnet`]: `livenessd devnet`, a local network in one command (`--demo`).
//! - [`verify`]: `livenessd verify`, offline proof checking.
//! - [`cli`]: the command line; `main.rs` only calls [`cli::main`].

pub mod aggregator;
pub mod answers;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod devnet;
pub mod devseq;
pub mod events;
pub mod http;
pub mod keyfile;
pub mod metrics;
pub mod node;
pub mod prober;
pub mod replicator;
pub mod signer;
pub mod store;
pub mod telemetry;
pub mod verify;
pub mod zellular;
