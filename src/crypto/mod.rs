//! Cryptography behind small boundaries: BN254 for Zellular finality signatures.

pub mod bn254;
