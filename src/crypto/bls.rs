//! BLS12-381, min-pk, the IETF proof-of-possession ciphersuite (blspy `PopSchemeMPL`,
//! Ethereum): public keys in G1 (48 bytes compressed), signatures in G2 (96 bytes),
//! both as lowercase hex without `0x`; secret keys are 32 bytes big-endian hex.
//!
//! Same-message aggregation (a quorum proof) is only safe against rogue keys because
//! every configured key's proof of possession is checked ([`PublicKey::verify_pop`]).

use std::fmt;

use blst::min_pk;
use blst::BLST_ERROR;
use rand::RngCore;

/// Domain separation tag of signatures.
pub const SIGN_DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
/// Domain separation tag of proofs of possession (they sign the 48-byte public key).
pub const POP_DST: &[u8] = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

/// Why a BLS value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlsError {
    #[error("not hex")]
    NotHex,
    #[error("wrong length: {got} bytes, expected {expected}")]
    InvalidLength { got: usize, expected: usize },
    #[error("not a valid point or key encoding ({0:?})")]
    Decode(BLST_ERROR),
    #[error("public key is the identity or outside the subgroup")]
    InvalidKey,
}

/// A BLS secret key. No `Debug`/`Display`: it is never printed or logged.
pub struct SecretKey(min_pk::SecretKey);

/// A G1 public key (validated: on curve, in the subgroup, not the identity).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(min_pk::PublicKey);

/// A G2 signature (or an aggregate), group-checked when parsed.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature(min_pk::Signature);

fn from_hex(s: &str, expected: usize) -> Result<Vec<u8>, BlsError> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    if s.len() != expected * 2 {
        return Err(BlsError::InvalidLength {
            got: s.len() / 2,
            expected,
        });
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or(BlsError::NotHex)
        })
        .collect()
}

/// The compressed encoding of the G1 identity: the infinity flag, all else zero.
fn is_identity(pk: &min_pk::PublicKey) -> bool {
    let c = pk.compress();
    c[0] == 0xc0 && c[1..].iter().all(|&b| b == 0)
}

/// Lowercase hex of bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
        s.push(char::from_digit((b & 15) as u32, 16).unwrap_or('0'));
    }
    s
}

impl SecretKey {
    /// A fresh key from 32 bytes of the operating system's randomness (IETF KeyGen).
    pub fn generate() -> Self {
        let mut ikm = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut ikm);
        Self::key_gen(&ikm).expect("32-byte ikm is enough")
    }

    /// blspy `PopSchemeMPL.key_gen(seed)` (seed ≥ 32 bytes): the KeyGen of the
    /// IETF draft version blspy implements (blst's `key_gen_v3`).
    pub fn key_gen(seed: &[u8]) -> Result<Self, BlsError> {
        min_pk::SecretKey::key_gen_v3(seed, &[])
            .map(SecretKey)
            .map_err(BlsError::Decode)
    }

    /// 32 bytes big-endian hex (`PrivateKey.from_bytes`).
    pub fn from_hex(s: &str) -> Result<Self, BlsError> {
        let b = from_hex(s, 32)?;
        min_pk::SecretKey::from_bytes(&b)
            .map(SecretKey)
            .map_err(BlsError::Decode)
    }

    /// The hex form, for key files only.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0.to_bytes())
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.sk_to_pk())
    }

    /// `PopSchemeMPL.sign(sk, msg)`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.0.sign(msg, SIGN_DST, &[]))
    }

    /// `PopSchemeMPL.pop_prove(sk)`: a signature of the compressed public key.
    pub fn prove_possession(&self) -> Signature {
        Signature(self.0.sign(&self.0.sk_to_pk().compress(), POP_DST, &[]))
    }
}

impl PublicKey {
    /// 48-byte compressed hex; the identity and points outside G1 are refused.
    pub fn from_hex(s: &str) -> Result<Self, BlsError> {
        let b = from_hex(s, 48)?;
        let pk = min_pk::PublicKey::key_validate(&b).map_err(|e| match e {
            BLST_ERROR::BLST_PK_IS_INFINITY | BLST_ERROR::BLST_POINT_NOT_IN_GROUP => {
                BlsError::InvalidKey
            }
            e => BlsError::Decode(e),
        })?;
        Ok(PublicKey(pk))
    }

    pub fn to_hex(&self) -> String {
        to_hex(&self.0.compress())
    }

    /// The 48-byte compressed form.
    pub fn to_bytes(&self) -> [u8; 48] {
        self.0.compress()
    }

    /// `PopSchemeMPL.pop_verify(pk, proof)`.
    pub fn verify_pop(&self, pop: &Signature) -> bool {
        pop.0
            .verify(true, &self.0.compress(), POP_DST, &[], &self.0, false)
            == BLST_ERROR::BLST_SUCCESS
    }

    /// The sum of keys (G1), as blspy's `G1Element +` gives it.
    pub fn aggregate<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> Option<PublicKey> {
        let refs: Vec<&min_pk::PublicKey> = keys.into_iter().map(|k| &k.0).collect();
        if refs.is_empty() {
            return None;
        }
        // Keys that cancel out (pk and −pk) sum to the identity, which would make
        // any signature of the identity "valid": never an aggregate key.
        min_pk::AggregatePublicKey::aggregate(&refs, false)
            .ok()
            .map(|a| a.to_public_key())
            .filter(|pk| !is_identity(pk))
            .map(PublicKey)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Signature {
    /// 96-byte compressed hex (`str(G2Element)`), group-checked.
    pub fn from_hex(s: &str) -> Result<Self, BlsError> {
        let b = from_hex(s, 96)?;
        let sig = min_pk::Signature::sig_validate(&b, false).map_err(BlsError::Decode)?;
        Ok(Signature(sig))
    }

    pub fn to_hex(&self) -> String {
        to_hex(&self.0.compress())
    }

    /// `PopSchemeMPL.verify(pk, msg, sig)`.
    pub fn verify(&self, pk: &PublicKey, msg: &[u8]) -> bool {
        self.0.verify(false, msg, SIGN_DST, &[], &pk.0, false) == BLST_ERROR::BLST_SUCCESS
    }

    /// `PopSchemeMPL.aggregate(sigs)`: the G2 sum.
    pub fn aggregate<'a>(sigs: impl IntoIterator<Item = &'a Signature>) -> Option<Signature> {
        let refs: Vec<&min_pk::Signature> = sigs.into_iter().map(|s| &s.0).collect();
        if refs.is_empty() {
            return None;
        }
        min_pk::AggregateSignature::aggregate(&refs, false)
            .ok()
            .map(|a| Signature(a.to_signature()))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

/// One aggregate signature to check in a batch: `sig` over `msg` by `pk` (already
/// the aggregate of the signers' keys).
pub struct BatchItem<'a> {
    pub msg: &'a [u8],
    pub pk: &'a PublicKey,
    pub sig: &'a Signature,
}

/// Checks many (message, key, signature) triples at once with random linear
/// combination: one multi-pairing instead of one pairing pair per item. `true` means
/// every item is valid (except with probability 2^-64); on `false`, check one by one
/// to find the bad ones.
pub fn verify_batch(items: &[BatchItem<'_>]) -> bool {
    match items {
        [] => true,
        [one] => one.sig.verify(one.pk, one.msg),
        _ => {
            let msgs: Vec<&[u8]> = items.iter().map(|i| i.msg).collect();
            let pks: Vec<&min_pk::PublicKey> = items.iter().map(|i| &i.pk.0).collect();
            let sigs: Vec<&min_pk::Signature> = items.iter().map(|i| &i.sig.0).collect();
            let mut rng = rand::rngs::OsRng;
            let rands: Vec<blst::blst_scalar> = items
                .iter()
                .map(|_| {
                    let mut b = [0u8; 32];
                    // 64 random bits, never zero.
                    let r = rng.next_u64() | 1;
                    b[..8].copy_from_slice(&r.to_le_bytes());
                    blst::blst_scalar { b }
                })
                .collect();
            min_pk::Signature::verify_multiple_aggregate_signatures(
                &msgs, SIGN_DST, &pks, false, &sigs, false, &rands, 64,
            ) == BLST_ERROR::BLST_SUCCESS
        }
    }
}

/// `H(msg)` in G2 with the signature DST (the point a signature is a multiple of).
#[allow(unsafe_code)]
fn hash_to_g2(msg: &[u8]) -> blst::blst_p2 {
    let mut out = blst::blst_p2::default();
    // SAFETY: blst_hash_to_g2 writes one point to `out` and only reads `msg` and the
    // DST for the lengths given; the augmentation is empty (null pointer, length 0).
    unsafe {
        blst::blst_hash_to_g2(
            &mut out,
            msg.as_ptr(),
            msg.len(),
            SIGN_DST.as_ptr(),
            SIGN_DST.len(),
            std::ptr::null(),
            0,
        );
    }
    out
}

/// The G1 generator (the public key of the secret scalar 1).
fn g1_generator() -> blst::blst_p1_affine {
    let mut one = [0u8; 32];
    one[31] = 1;
    let sk = min_pk::SecretKey::from_bytes(&one).expect("1 is a valid scalar");
    *<&blst::blst_p1_affine>::from(&sk.sk_to_pk())
}

/// A message and its signature, for batch verification.
pub type Signed<'a> = (&'a [u8], &'a Signature);

/// Signatures that share one public key.
pub type KeyGroup<'a> = (&'a PublicKey, &'a [Signed<'a>]);

/// Batch verification of many signatures under one public key — the common case
/// of events signed by the same quorum. See [`verify_batch_grouped`].
pub fn verify_batch_same_key(pk: &PublicKey, items: &[Signed<'_>]) -> bool {
    verify_batch_grouped(&[(pk, items)])
}

/// Batch verification of signatures grouped by public key. With random 64-bit
/// `r_i` it checks `Π_g e(pk_g, Σ_{i∈g} r_i·H(m_i)) == e(G1, Σ_i r_i·σ_i)`: one
/// Miller loop per distinct key plus one, and a single final exponentiation
/// (blst's general batch needs a Miller loop per item). `true` means every
/// signature is valid (except with probability 2^-64); on `false`, check one by
/// one. Signatures must be group-checked (they are when parsed).
pub fn verify_batch_grouped(groups: &[KeyGroup<'_>]) -> bool {
    use blst::MultiPoint;
    let groups: Vec<_> = groups
        .iter()
        .filter(|(_, items)| !items.is_empty())
        .collect();
    match groups.as_slice() {
        [] => return true,
        [(pk, [(m, s)])] => return s.verify(pk, m),
        _ => {}
    }
    let mut rng = rand::rngs::OsRng;
    let mut all_rands = Vec::new();
    let mut all_sigs: Vec<min_pk::Signature> = Vec::new();
    let mut h_sums: Vec<blst::blst_p2> = Vec::with_capacity(groups.len());
    let mut pks: Vec<blst::blst_p1_affine> = Vec::with_capacity(groups.len() + 1);
    for (pk, items) in &groups {
        let hashes: Vec<blst::blst_p2> = items.iter().map(|(m, _)| hash_to_g2(m)).collect();
        let mut rands = Vec::with_capacity(items.len() * 8);
        for _ in items.iter() {
            rands.extend_from_slice(&(rng.next_u64() | 1).to_le_bytes());
        }
        h_sums.push(blst::p2_affines::from(&hashes).mult(&rands, 64));
        all_rands.extend_from_slice(&rands);
        all_sigs.extend(items.iter().map(|(_, s)| s.0));
        pks.push(*<&blst::blst_p1_affine>::from(&pk.0));
    }
    let s_sum = all_sigs.as_slice().mult(&all_rands, 64).to_signature();
    let mut qs: Vec<blst::blst_p2_affine> = blst::p2_affines::from(&h_sums).as_slice().to_vec();
    let lhs = blst::blst_fp12::miller_loop_n(&qs, &pks);
    qs.clear();
    let s_aff: &blst::blst_p2_affine = (&s_sum).into();
    let rhs = blst::blst_fp12::miller_loop(s_aff, &g1_generator());
    blst::blst_fp12::finalverify(&lhs, &rhs)
}
