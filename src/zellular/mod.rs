//! The Zellular side: chaining hash, finality messages, operator sets, wire shapes,
//! and the client (submit + verified finalized stream).

pub mod chain;
pub mod client;
pub mod finality;
pub mod operators;
pub mod wire;

pub use client::{
    Client, ClientConfig, Cursor, FinalizedBatch, FinalizedStream, StreamError, SubmitError,
};
pub use operators::{Operator, OperatorSet, OperatorSource, DEFAULT_THRESHOLD_PERCENT};
