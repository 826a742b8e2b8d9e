//! The batch chaining hash: `chain_i = h(chain_{i-1} + h(batch_i))`, `chain_0 = ""`,
//! with `h` = XXH3-128 (seed 0) as 32 lowercase hex digits (Python
//! `xxhash.xxh128_hexdigest`).

use xxhash_rust::xxh3::{xxh3_128, Xxh3};

/// XXH3-128 of the UTF-8 bytes of `s`, as 32 lowercase hex digits.
pub fn xxh128_hex(s: &[u8]) -> String {
    format!("{:032x}", xxh3_128(s))
}

/// The chaining hash after appending `batch` to a chain ending in `prev`.
///
/// Hashes `prev ‖ h(batch)` in a streaming hasher: no intermediate string.
pub fn next(prev: &str, batch: &str) -> String {
    let batch_hash = format!("{:032x}", xxh3_128(batch.as_bytes()));
    let mut h = Xxh3::new();
    h.update(prev.as_bytes());
    h.update(batch_hash.as_bytes());
    format!("{:032x}", h.digest128())
}

/// Chains a sequence of batches from `start`.
pub fn fold<'a>(start: &str, batches: impl IntoIterator<Item = &'a str>) -> String {
    batches
        .into_iter()
        .fold(start.to_owned(), |prev, b| next(&prev, b))
}
