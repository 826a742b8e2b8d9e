//! Cryptography behind small boundaries: BLS12-381 (blst) for attestations and
//! quorum proofs, BN254 (arkworks) for Zellular finality signatures.

pub mod bls;
pub mod bn254;
