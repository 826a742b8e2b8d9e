//! The message a Zellular finality signature covers.
//!
//! Python's `json.dumps({...}, sort_keys=True)` with default separators and
//! `ensure_ascii=True`; the signed bytes are the 32 ASCII hex digits of its XXH3-128.

use std::fmt::Write;

use super::chain::xxh128_hex;

/// The fields of a finalization (locking) message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalityMessage<'a> {
    pub app_name: &'a str,
    pub chaining_hash: &'a str,
    pub index: u64,
    pub parent_index: u64,
    /// `"locked"` for finality signatures (`"sequenced"` for the locking form).
    pub state: &'a str,
    pub timestamp: i64,
}

impl FinalityMessage<'_> {
    /// The exact JSON text Python produces with `sort_keys=True`.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(160);
        s.push_str("{\"app_name\": ");
        push_py_json_str(&mut s, self.app_name);
        s.push_str(", \"chaining_hash\": ");
        push_py_json_str(&mut s, self.chaining_hash);
        let _ = write!(
            s,
            ", \"index\": {}, \"parent_index\": {}, \"state\": ",
            self.index, self.parent_index
        );
        push_py_json_str(&mut s, self.state);
        let _ = write!(s, ", \"timestamp\": {}}}", self.timestamp);
        s
    }

    /// The bytes that are signed: `xxh128_hex(json)` as ASCII.
    pub fn signed_bytes(&self) -> String {
        xxh128_hex(self.to_json().as_bytes())
    }
}

/// Appends `v` as a JSON string literal the way Python's `json.dumps` does with
/// `ensure_ascii=True`: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, and `\uXXXX`
/// (lowercase, UTF-16 surrogate pairs) for everything outside printable ASCII.
pub fn push_py_json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}
