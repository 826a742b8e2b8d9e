//! Zellular finality signatures: BLS on BN254 (alt_bn128), as eigensdk signs and the
//! `zellular` SDK verifies them.
//!
//! * Signatures live in G1, public keys in G2.
//! * `H(m)` is eigensdk's try-and-increment map: `x = int(m) mod p`, then
//!   `y = (x³+3)^((p+1)/4)` until `y² = x³+3`. It does not hash its input first, so
//!   nearby inputs may share a point; interoperability requires reproducing that.
//! * Text formats are mcl's `getStr(10)`: `"1 <x> <y>"` for G1 and
//!   `"1 <x.c0> <x.c1> <y.c0> <y.c1>"` for G2; operator keys come as
//!   `pubkeyG2_X = [x.c1, x.c0]`, `pubkeyG2_Y = [y.c1, y.c0]` (subgraph order).
//! * Verification: `e(H(m), apk) == e(sig, G2)` with `apk` the sum of the keys of all
//!   operators with stake > 0 minus every listed non-signer's key.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use ark_bn254::{Bn254, Fq, Fq2, Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::pairing::Pairing;
use ark_ec::{AffineRepr, CurveGroup};
use ark_ff::{BigInteger, Field, One, PrimeField, UniformRand, Zero};
use num_bigint::BigUint;

/// Why a BN254 value could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Bn254Error {
    #[error("empty point string")]
    Empty,
    #[error("unknown point format tag {0:?} (want 0, 1, 2, 3 or 4)")]
    BadTag(String),
    #[error("missing coordinate {0}")]
    MissingCoordinate(usize),
    #[error("not a decimal field element: {0:?}")]
    NotDecimal(String),
    #[error("field element is not below the field modulus")]
    NotReduced,
    #[error("point is not on the curve")]
    NotOnCurve,
    #[error("point is not in the prime-order subgroup")]
    NotInSubgroup,
    #[error("not a hex secret key: {0}")]
    BadSecretKey(&'static str),
}

/// A G1 point: a signature (or an aggregate of signatures).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub G1Affine);

/// A G2 point: an operator's public key (or an aggregate of keys).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub G2Affine);

/// A BN254 secret scalar. Deliberately has no `Debug`/`Display` that would print it.
#[derive(Clone)]
pub struct SecretKey(Fr);

fn p_biguint() -> &'static BigUint {
    static P: OnceLock<BigUint> = OnceLock::new();
    P.get_or_init(|| BigUint::from(Fq::MODULUS))
}

fn r_biguint() -> &'static BigUint {
    static R: OnceLock<BigUint> = OnceLock::new();
    R.get_or_init(|| BigUint::from(Fr::MODULUS))
}

/// `(p + 1) / 4`, the exponent of eigensdk's square root.
fn sqrt_exponent() -> &'static [u64] {
    static E: OnceLock<Vec<u64>> = OnceLock::new();
    E.get_or_init(|| {
        let e: BigUint = (p_biguint() + 1u32) >> 2usize;
        e.to_u64_digits()
    })
}

/// Parses a decimal field element strictly (digits only, leading zeros allowed, `< p`).
pub fn parse_fq(s: &str) -> Result<Fq, Bn254Error> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Bn254Error::NotDecimal(truncate(s)));
    }
    let v = BigUint::parse_bytes(s.as_bytes(), 10)
        .ok_or_else(|| Bn254Error::NotDecimal(truncate(s)))?;
    if &v >= p_biguint() {
        return Err(Bn254Error::NotReduced);
    }
    Ok(Fq::from(v))
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Decimal text of a field element.
pub fn fq_to_dec(f: &Fq) -> String {
    BigUint::from(f.into_bigint()).to_str_radix(10)
}

/// eigensdk's `map_to_curve`: try-and-increment, `y` exactly as the power gives it.
pub fn hash_to_g1(msg: &[u8]) -> G1Affine {
    let mut x = Fq::from_be_bytes_mod_order(msg);
    let three = Fq::from(3u64);
    loop {
        let beta = x.square() * x + three;
        let y = beta.pow(sqrt_exponent());
        if y.square() == beta {
            return G1Affine::new_unchecked(x, y);
        }
        x += Fq::one();
    }
}

fn fields(s: &str) -> impl Iterator<Item = &str> {
    s.split([' ', '\t', '\n', '\r']).filter(|t| !t.is_empty())
}

impl Signature {
    /// Parses mcl's `setStr(s, 10)` formats: `0`, `1 x y`, `2 x`/`3 x` (compressed,
    /// 3 = odd y), `4 X Y Z` (Jacobian). Trailing fields are ignored, as mcl does.
    pub fn parse(s: &str) -> Result<Self, Bn254Error> {
        let mut it = fields(s);
        let tag = it.next().ok_or(Bn254Error::Empty)?;
        let mut coord = |i: usize| -> Result<Fq, Bn254Error> {
            parse_fq(it.next().ok_or(Bn254Error::MissingCoordinate(i))?)
        };
        let point = match tag {
            "0" => G1Affine::identity(),
            "1" => {
                let (x, y) = (coord(0)?, coord(1)?);
                G1Affine::new_unchecked(x, y)
            }
            "2" | "3" => {
                let x = coord(0)?;
                let beta = x.square() * x + Fq::from(3u64);
                let mut y = beta.sqrt().ok_or(Bn254Error::NotOnCurve)?;
                let want_odd = tag == "3";
                if y.into_bigint().is_odd() != want_odd {
                    y = -y;
                }
                G1Affine::new_unchecked(x, y)
            }
            "4" => {
                let (x, y, z) = (coord(0)?, coord(1)?, coord(2)?);
                if z.is_zero() {
                    G1Affine::identity()
                } else {
                    let zi = z.inverse().ok_or(Bn254Error::NotOnCurve)?;
                    let zi2 = zi.square();
                    G1Affine::new_unchecked(x * zi2, y * zi2 * zi)
                }
            }
            other => return Err(Bn254Error::BadTag(truncate(other))),
        };
        if !point.is_on_curve() {
            return Err(Bn254Error::NotOnCurve);
        }
        // G1 of BN254 has cofactor 1: on the curve means in the group.
        Ok(Signature(point))
    }

    /// Sum of signatures (same-message aggregation).
    pub fn aggregate<'a>(sigs: impl IntoIterator<Item = &'a Signature>) -> Signature {
        let sum: G1Projective = sigs.into_iter().map(|s| s.0.into_group()).sum();
        Signature(sum.into_affine())
    }
}

impl fmt::Display for Signature {
    /// mcl `getStr(10)`: `"1 x y"`, or `"0"` for the point at infinity.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.xy() {
            None => f.write_str("0"),
            Some((x, y)) => write!(f, "1 {} {}", fq_to_dec(&x), fq_to_dec(&y)),
        }
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl FromStr for Signature {
    type Err = Bn254Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Signature::parse(s)
    }
}

impl PublicKey {
    /// From the subgraph / `StaticNetwork` fields `pubkeyG2_X = [x.c1, x.c0]`,
    /// `pubkeyG2_Y = [y.c1, y.c0]` (decimal). All zeros is the point at infinity.
    pub fn from_xy(x: [&str; 2], y: [&str; 2]) -> Result<Self, Bn254Error> {
        let x = Fq2::new(parse_fq(x[1])?, parse_fq(x[0])?);
        let y = Fq2::new(parse_fq(y[1])?, parse_fq(y[0])?);
        if x.is_zero() && y.is_zero() {
            return Ok(PublicKey(G2Affine::identity()));
        }
        let p = G2Affine::new_unchecked(x, y);
        if !p.is_on_curve() {
            return Err(Bn254Error::NotOnCurve);
        }
        if !p.is_in_correct_subgroup_assuming_on_curve() {
            return Err(Bn254Error::NotInSubgroup);
        }
        Ok(PublicKey(p))
    }

    /// `(pubkeyG2_X, pubkeyG2_Y)` as decimal strings, subgraph order.
    pub fn to_xy(&self) -> ([String; 2], [String; 2]) {
        match self.0.xy() {
            None => (["0".into(), "0".into()], ["0".into(), "0".into()]),
            Some((x, y)) => (
                [fq_to_dec(&x.c1), fq_to_dec(&x.c0)],
                [fq_to_dec(&y.c1), fq_to_dec(&y.c0)],
            ),
        }
    }

    /// mcl `getStr(10)` of the G2 point: `"1 x.c0 x.c1 y.c0 y.c1"`.
    pub fn to_mcl_string(&self) -> String {
        match self.0.xy() {
            None => "0".into(),
            Some((x, y)) => format!(
                "1 {} {} {} {}",
                fq_to_dec(&x.c0),
                fq_to_dec(&x.c1),
                fq_to_dec(&y.c0),
                fq_to_dec(&y.c1)
            ),
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_mcl_string())
    }
}

impl SecretKey {
    /// eigensdk `KeyPair.from_string(hex)`: hex (optional `0x`), at most 64 digits.
    /// A value ≥ r is not reduced the usual way: mcl keeps the raw limbs as Montgomery
    /// form, so the key becomes `v · 2^-256 mod r`. Reproduced so that keys derived the
    /// way zsequencer's tooling derives them give the same public keys.
    pub fn from_hex(s: &str) -> Result<Self, Bn254Error> {
        let s = s.trim();
        let s = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        if s.is_empty() || s.len() > 64 {
            return Err(Bn254Error::BadSecretKey("want 1 to 64 hex digits"));
        }
        let v = BigUint::parse_bytes(s.as_bytes(), 16)
            .ok_or(Bn254Error::BadSecretKey("not hexadecimal"))?;
        let r = r_biguint();
        let v = if &v < r {
            v
        } else {
            let inv_2_256 = (BigUint::one() << 256u32).modpow(&(r - 2u32), r);
            (v * inv_2_256) % r
        };
        Ok(SecretKey(Fr::from(v)))
    }

    /// A fresh random key from the operating system's generator.
    pub fn random() -> Self {
        let mut rng = rand::rngs::OsRng;
        loop {
            let k = Fr::rand(&mut rng);
            if !k.is_zero() {
                return SecretKey(k);
            }
        }
    }

    /// 64 lowercase hex digits (for key files only).
    pub fn to_hex(&self) -> String {
        let b = self.0.into_bigint().to_bytes_be();
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    pub fn public_key_g2(&self) -> PublicKey {
        PublicKey((G2Affine::generator() * self.0).into_affine())
    }

    pub fn public_key_g1(&self) -> G1Affine {
        (G1Affine::generator() * self.0).into_affine()
    }

    /// The sum of several keys: signing with it gives the aggregate signature of all.
    pub fn sum<'a>(keys: impl IntoIterator<Item = &'a SecretKey>) -> SecretKey {
        SecretKey(keys.into_iter().map(|k| k.0).sum())
    }

    /// `sk · H(msg)`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature((hash_to_g1(msg) * self.0).into_affine())
    }
}

/// Sums keys, like eigensdk's `G2Point +=`.
pub fn sum_keys<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> G2Projective {
    keys.into_iter().map(|k| k.0.into_group()).sum()
}

/// `e(H(msg), apk) == e(sig, G2)`. The point at infinity is never a valid signature.
pub fn verify(apk: &G2Affine, msg: &[u8], sig: &Signature) -> bool {
    if sig.0.is_zero() {
        return false;
    }
    let h = hash_to_g1(msg);
    let neg_sig = -sig.0;
    let out = Bn254::multi_pairing([h, neg_sig], [*apk, G2Affine::generator()]);
    out.0 == <Bn254 as Pairing>::TargetField::one()
}

/// Formats the G1 public key like mcl (used for display of dev keys).
pub fn g1_to_string(p: &G1Affine) -> String {
    Signature(*p).to_string()
}
