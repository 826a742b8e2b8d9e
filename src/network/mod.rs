//! The network: the monitoring nodes and targets every node of it shares.
//!
//! - [`init`]: `livenessd network init` — keys (0600), the shared nodes file and
//!   per-node configurations for a new network (the devnet uses it too).

pub mod init;
