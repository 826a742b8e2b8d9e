//! livenessd: a decentralized, verifiable record of which operator nodes of an
//! EigenLayer AVS were up and which were down, ordered by the Zellular sequencer.
//!
//! Layout (see `ARCHITECTURE.md` for the whole picture):
//! - [`crypto::bn254`]: Zellular finality signatures (BLS on BN254, arkworks).
//! - [`zellular`]: the chaining hash, finality messages, operator sets (static or
//!   EigenLayer subgraph), and the client: submit, and the verified finalized stream.
//! - [`devseq`]: `livenessd sequencer`, the embedded Zellular-compatible dev sequencer.
//! - [`store`]: SQLite persistence; the only module that issues SQL.
//! - [`keyfile`]: secret key files with safe permissions.
//! - [`metrics`]: counters for every rejected input, served at `/metrics`.
//! - [`cli`]: the command line; `main.rs` only calls [`cli::main`].

pub mod cli;
pub mod crypto;
pub mod devseq;
pub mod keyfile;
pub mod metrics;
pub mod store;
pub mod telemetry;
pub mod zellular;
