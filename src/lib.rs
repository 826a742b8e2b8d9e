//! livenessd: a decentralized, verifiable record of which operator nodes of an
//! EigenLayer AVS were up and which were down, ordered by the Zellular sequencer.
//!
//! Layout (see `ARCHITECTURE.md` for the whole picture). Data flows one way:
//! probe → attest → sequence → replicate → answer.
//! - [`crypto::bn254`]: Zellular finality signatures (BLS on BN254, arkworks).
//! - [`zellular`]: the chaining hash, finality messages, operator sets (static or
//!   EigenLayer subgraph), and the client: submit, and the verified finalized stream.
//! - [`devseq`]: `livenessd sequencer`, the embedded Zellular-compatible dev sequencer.
//! - [`config`]: node configuration (figment layers, validation); every
//!   configuration type lives here.
//! - [`clock`]: the time of day, injectable for tests.
//! - [`crypto::bls`]: BLS12-381 PoP signatures (blst) for attestations and proofs.
//! - [`events`]: downtime events, the monitoring-node set, quorum verification.
//! - [`prober`]: concurrent HTTP/TCP probes with flap damping and failure causes.
//! - [`signer`]: the only holder of the BLS secret key.
//! - [`peers`]: calls to the other monitoring nodes; quorum collection.
//! - [`aggregator`]: quorum proofs of confirmed changes, posted to Zellular;
//!   heartbeats.
//! - [`replicator`]: finalized batches → verified events → the replica, under the
//!   apply rules; [`freshness`]: whether the replica may sign.
//! - [`answers`]: downtime, interval table, epoch summaries from the replica.
//! - [`store`]: SQLite persistence; the only module that issues SQL.
//! - [`node`]: the shared [`node::NodeContext`] and the wiring of the tasks.
//! - [`http`]: the node's HTTP API, a thin adapter over the context.
//! - [`http_client`]: outgoing HTTPS (rustls, platform roots, extra CAs).
//! - [`keyfile`]: secret key files with safe permissions; [`os_error`]: OS
//!   errors in words.
//! - [`metrics`], [`process_metrics`]: Prometheus metrics at `/metrics`;
//!   [`stats`]: per-target figures for the status page, badges and gauges;
//!   [`notify`]: webhooks on applied transitions; [`timefmt`]: times for people.
//! - [`network`]: the network's definition; `livenessd network init`.
//! - [`devnet`]: `livenessd devnet`, a local network in one command (`--demo`).
//! - [`verify`]: `livenessd verify`, offline proof checking; [`audit`]: offline
//!   replay of a replica.
//! - [`cli`]: the command line; `main.rs` only calls [`cli::main`].

pub mod aggregator;
pub mod answers;
pub mod audit;
pub mod certificate;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod devnet;
pub mod devseq;
pub mod events;
pub mod export;
pub mod freshness;
pub mod http;
pub mod http_client;
pub mod http_server;
pub mod keyfile;
pub mod metrics;
pub mod network;
pub mod node;
pub mod notify;
pub mod os_error;
pub mod peers;
pub mod prober;
pub mod process_metrics;
pub mod propose;
pub mod pursuit;
pub mod replicator;
pub mod signer;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod timefmt;
pub mod verify;
pub mod zellular;
