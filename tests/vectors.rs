//! Every case of the reference vectors (xxhash, zellular SDK + eigensdk) as a test.

mod common;

use common::{s, vector};
use livenessd::crypto::bn254::{self, hash_to_g1, PublicKey, SecretKey, Signature};
use livenessd::zellular::chain;
use livenessd::zellular::finality::FinalityMessage;
use livenessd::zellular::operators::{OperatorJson, OperatorSet};
use num_bigint::BigUint;
use serde_json::Value;

fn hex_decode(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn chaining_hash_vectors() {
    let v = vector("zellular_chaining.json");
    let mut prev = s(&v["initial_chaining_hash"]).to_owned();
    let batches = v["batches"].as_array().unwrap();
    assert!(batches.len() >= 24);
    for b in batches {
        let batch = s(&b["batch"]);
        assert_eq!(hex_decode(s(&b["batch_utf8_hex"])), batch.as_bytes());
        assert_eq!(
            chain::xxh128_hex(batch.as_bytes()),
            s(&b["batch_hash"]),
            "batch {}",
            b["index"]
        );
        prev = chain::next(&prev, batch);
        assert_eq!(prev, s(&b["chaining_hash"]), "chain at {}", b["index"]);
    }
    let all: Vec<&str> = batches.iter().map(|b| s(&b["batch"])).collect();
    assert_eq!(chain::fold("", all), prev);
}

fn bn() -> Value {
    vector("zellular_bn254.json")
}

fn key_by_name<'a>(v: &'a Value, name: &str) -> &'a Value {
    common::named(v, "keys", name)
}

fn xy(v: &Value, field: &str) -> [String; 2] {
    [s(&v[field][0]).to_owned(), s(&v[field][1]).to_owned()]
}

fn pk_of(k: &Value) -> PublicKey {
    let (x, y) = (xy(k, "pubkeyG2_X"), xy(k, "pubkeyG2_Y"));
    PublicKey::from_xy([&x[0], &x[1]], [&y[0], &y[1]]).unwrap()
}

#[test]
fn bn254_keys() {
    let v = bn();
    for k in v["keys"].as_array().unwrap() {
        let sk = SecretKey::from_hex(s(&k["sk_hex"])).unwrap();
        assert_eq!(
            BigUint::parse_bytes(sk.to_hex().as_bytes(), 16)
                .unwrap()
                .to_string(),
            s(&k["sk_dec"])
        );
        assert_eq!(
            bn254::g1_to_string(&sk.public_key_g1()),
            s(&k["pubkey_g1_str"])
        );
        let pk = sk.public_key_g2();
        assert_eq!(pk.to_mcl_string(), s(&k["pubkey_g2_str"]), "{}", k["name"]);
        let (x, y) = pk.to_xy();
        assert_eq!(x, xy(k, "pubkeyG2_X"));
        assert_eq!(y, xy(k, "pubkeyG2_Y"));
        assert_eq!(pk_of(k), pk);
    }
    let g = &v["curve"]["g2_generator"];
    let gen = pk_of(g);
    assert_eq!(gen.to_mcl_string(), s(&v["curve"]["g2_generator_str"]));
}

#[test]
fn bn254_key_parse_quirk() {
    let v = bn();
    for c in v["key_parse_quirk"]["cases"].as_array().unwrap() {
        let sk = SecretKey::from_hex(s(&c["sk_hex_input"])).unwrap();
        let got = BigUint::parse_bytes(sk.to_hex().as_bytes(), 16).unwrap();
        let want = BigUint::parse_bytes(s(&c["sk_effective_hex"]).as_bytes(), 16).unwrap();
        assert_eq!(got, want, "{}", c["sk_hex_input"]);
        assert_eq!(
            bn254::g1_to_string(&sk.public_key_g1()),
            s(&c["pubkey_g1_str"])
        );
        let (x, y) = sk.public_key_g2().to_xy();
        assert_eq!(x, xy(c, "pubkeyG2_X"));
        assert_eq!(y, xy(c, "pubkeyG2_Y"));
    }
    assert!(SecretKey::from_hex("").is_err());
    assert!(SecretKey::from_hex("xyz").is_err());
    assert!(SecretKey::from_hex(&"1".repeat(65)).is_err());
}

#[test]
fn bn254_map_to_curve() {
    let v = bn();
    for c in v["map_to_curve"].as_array().unwrap() {
        let p = hash_to_g1(&hex_decode(s(&c["input_hex"])));
        assert_eq!(
            bn254::g1_to_string(&p),
            s(&c["point_str"]),
            "input {}",
            c["input_hex"]
        );
    }
    let col = &v["map_to_curve_collision"];
    let (m1, m2) = (s(&col["m1_utf8"]), s(&col["m2_utf8"]));
    assert_eq!(
        bn254::g1_to_string(&hash_to_g1(m1.as_bytes())),
        s(&col["point_str"])
    );
    assert_eq!(hash_to_g1(m1.as_bytes()), hash_to_g1(m2.as_bytes()));
    let k = key_by_name(&v, s(&col["key"]));
    let sk = SecretKey::from_hex(s(&k["sk_hex"])).unwrap();
    let sig = sk.sign(m1.as_bytes());
    assert_eq!(sig.to_string(), s(&col["signature_over_m1"]));
    assert_eq!(
        bn254::verify(&pk_of(k).0, m2.as_bytes(), &sig),
        col["verifies_for_m2"].as_bool().unwrap()
    );
}

fn message<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap()
}

#[test]
fn finality_messages() {
    let v = bn();
    for m in v["messages"].as_array().unwrap() {
        let f = &m["fields"];
        let msg = FinalityMessage {
            app_name: s(&f["app_name"]),
            chaining_hash: s(&f["chaining_hash"]),
            index: f["index"].as_u64().unwrap(),
            parent_index: f["parent_index"].as_u64().unwrap(),
            state: s(&f["state"]),
            timestamp: f["timestamp"].as_i64().unwrap(),
        };
        assert_eq!(msg.to_json(), s(&m["json"]), "{}", m["name"]);
        assert_eq!(msg.signed_bytes(), s(&m["xxh128"]));
        assert_eq!(
            msg.signed_bytes().as_bytes(),
            hex_decode(s(&m["signed_bytes_hex"]))
        );
        assert_eq!(
            bn254::g1_to_string(&hash_to_g1(msg.signed_bytes().as_bytes())),
            s(&m["map_to_curve_str"])
        );
    }
}

#[test]
fn python_json_escapes() {
    let mut out = String::new();
    livenessd::zellular::finality::push_py_json_str(
        &mut out,
        "a\"\\\n\r\t\u{8}\u{c}\u{1}\u{7f}é😀",
    );
    assert_eq!(out, r#""a\"\\\n\r\t\b\f\u0001\u007f\u00e9\ud83d\ude00""#);
}

#[test]
fn single_signatures() {
    let v = bn();
    let cases = v["single_signatures"].as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        let k = key_by_name(&v, s(&c["key"]));
        let m = message(&v, s(&c["message"]));
        let bytes = s(&m["xxh128"]).as_bytes();
        let sk = SecretKey::from_hex(s(&k["sk_hex"])).unwrap();
        let valid = c["valid"].as_bool().unwrap();
        if valid {
            assert_eq!(sk.sign(bytes).to_string(), s(&c["signature"]));
        }
        let ok = Signature::parse(s(&c["signature"]))
            .map(|sig| bn254::verify(&pk_of(k).0, bytes, &sig))
            .unwrap_or(false);
        assert_eq!(ok, valid, "{} {}", c["key"], c["message"]);
    }
}

fn operator_set(v: &Value, name: &str) -> OperatorSet {
    let set = &v["operator_sets"][name];
    let ops = set["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            serde_json::from_value::<OperatorJson>(o.clone())
                .unwrap()
                .to_operator()
                .unwrap()
        })
        .collect();
    OperatorSet::new(ops, set["threshold_percent"].as_f64().unwrap()).unwrap()
}

#[test]
fn operator_sets_aggregate_keys() {
    let v = bn();
    for (name, set) in v["operator_sets"].as_object().unwrap() {
        let os = operator_set(&v, name);
        assert_eq!(
            os.aggregate_key().to_mcl_string(),
            s(&set["aggregated_pubkey_g2_str"]),
            "{name}"
        );
        assert_eq!(os.total_stake(), set["total_stake"].as_f64().unwrap());
    }
}

#[test]
fn verify_cases() {
    let v = bn();
    let cases = v["verify_cases"].as_array().unwrap();
    let (mut pos, mut neg) = (0, 0);
    for c in cases {
        let set = operator_set(&v, s(&c["operator_set"]));
        let nonsigners: Vec<String> = serde_json::from_value(c["nonsigners"].clone()).unwrap();
        let res = set.verify(s(&c["message_json"]), s(&c["signature"]), &nonsigners);
        let expected = c["expected"].as_bool().unwrap();
        assert_eq!(
            res.is_ok(),
            expected,
            "{}: {} ({res:?})",
            c["name"],
            c["reason"]
        );
        if expected {
            pos += 1
        } else {
            neg += 1
        }
        // The aggregate is the sum of the individual signatures.
        if let Some(parts) = c["signer_signatures"].as_object() {
            if let Ok(agg) = Signature::parse(s(&c["signature"])) {
                let sigs: Vec<Signature> = parts
                    .values()
                    .map(|p| Signature::parse(s(p)).unwrap())
                    .collect();
                if expected {
                    assert_eq!(Signature::aggregate(&sigs), agg, "{}", c["name"]);
                }
            }
        }
    }
    assert!(pos >= 6 && neg >= 15, "{pos} positive, {neg} negative");
}

#[test]
fn signature_parse_cases() {
    let v = bn();
    let set = operator_set(&v, "set4");
    let m = message(&v, "m1");
    for c in v["signature_parse_cases"]["cases"].as_array().unwrap() {
        let res = set.verify(s(&m["json"]), s(&c["signature"]), &["0xd4".to_owned()]);
        assert_eq!(
            res.is_ok(),
            c["expected"].as_bool().unwrap(),
            "{}",
            c["name"]
        );
    }
    // Canonical output is the "1 x y" form.
    let canonical = s(&v["signature_parse_cases"]["cases"][0]["signature"]);
    let compressed = s(&v["signature_parse_cases"]["cases"][1]["signature"]);
    assert_eq!(Signature::parse(compressed).unwrap().to_string(), canonical);
}

#[test]
fn bad_signature_strings_are_errors_not_panics() {
    for bad in [
        "",
        " ",
        "1",
        "1 2",
        "5 1 2",
        "x",
        "1 -1 2",
        "1 0x1 2",
        "2",
        "4 1 2",
        "1 21888242871839275222246405745257275088696311157297823662689037894645226208583 2",
        "1 1 3",
    ] {
        assert!(Signature::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(Signature::parse("0").unwrap().to_string(), "0");
}
