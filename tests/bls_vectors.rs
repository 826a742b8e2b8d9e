//! BLS12-381 PopSchemeMPL vectors from blspy (cross-checked with py_ecc).

mod common;

use common::{s, vector};
use livenessd::crypto::bls::{verify_batch, BatchItem, PublicKey, SecretKey, Signature};
use serde_json::Value;

fn key<'a>(v: &'a Value, name: &str) -> &'a Value {
    common::named(v, "keys", name)
}

/// For each message, the aggregate of every key's signature of it.
fn aggregated(keys: &[SecretKey], msgs: &[String]) -> Vec<Signature> {
    msgs.iter()
        .map(|m| {
            Signature::aggregate(
                &keys
                    .iter()
                    .map(|k| k.sign(m.as_bytes()))
                    .collect::<Vec<_>>(),
            )
            .unwrap()
        })
        .collect()
}

fn text<'a>(v: &'a Value, name: &str) -> &'a str {
    s(&v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap()["text"])
}

fn pk(v: &Value, name: &str) -> PublicKey {
    PublicKey::from_hex(s(&key(v, name)["pk"])).unwrap()
}

#[test]
fn keys_and_proofs_of_possession() {
    let v = vector("bls12381_pop.json");
    for k in v["keys"].as_array().unwrap() {
        let sk = SecretKey::from_hex(s(&k["sk"])).unwrap();
        assert_eq!(sk.to_hex(), s(&k["sk"]));
        assert_eq!(sk.public_key().to_hex(), s(&k["pk"]), "{}", k["name"]);
        assert_eq!(
            sk.prove_possession().to_hex(),
            s(&k["pop"]),
            "{}",
            k["name"]
        );
        let pop = Signature::from_hex(s(&k["pop"])).unwrap();
        assert!(PublicKey::from_hex(s(&k["pk"])).unwrap().verify_pop(&pop));
    }
    // gen1..gen3 come from key_gen(bytes([i]) * 32).
    for i in 1..=3u8 {
        let sk = SecretKey::key_gen(&[i; 32]).unwrap();
        assert_eq!(sk.to_hex(), s(&key(&v, &format!("gen{i}"))["sk"]));
    }
    let agg = &v["example_aggregate_pk"];
    let keys: Vec<PublicKey> = agg["of"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| pk(&v, s(n)))
        .collect();
    assert_eq!(PublicKey::aggregate(&keys).unwrap().to_hex(), s(&agg["pk"]));
}

#[test]
fn signatures() {
    let v = vector("bls12381_pop.json");
    for c in v["signatures"].as_array().unwrap() {
        let msg = text(&v, s(&c["message"]));
        let k = key(&v, s(&c["key"]));
        let valid = c["valid"].as_bool().unwrap();
        if valid {
            let sk = SecretKey::from_hex(s(&k["sk"])).unwrap();
            assert_eq!(sk.sign(msg.as_bytes()).to_hex(), s(&c["signature"]));
        }
        let ok = Signature::from_hex(s(&c["signature"]))
            .map(|sig| sig.verify(&pk(&v, s(&c["key"])), msg.as_bytes()))
            .unwrap_or(false);
        assert_eq!(ok, valid, "{} / {}", c["key"], c["message"]);
    }
}

#[test]
fn aggregates_minus_nonsigners() {
    let v = vector("bls12381_pop.json");
    for c in v["aggregates"].as_array().unwrap() {
        let msg = text(&v, s(&c["message"]));
        let nonsigners: Vec<&str> = c["nonsigners"].as_array().unwrap().iter().map(s).collect();
        let all: Vec<PublicKey> = c["public_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| pk(&v, s(n)))
            .collect();
        assert_eq!(
            PublicKey::aggregate(&all).unwrap().to_hex(),
            s(&c["aggregate_pk_all"])
        );
        // The verification key: every configured key but the listed non-signers'.
        let verifying: Vec<PublicKey> = c["public_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(s)
            .filter(|n| !nonsigners.contains(n))
            .map(|n| pk(&v, n))
            .collect();
        let apk = PublicKey::aggregate(&verifying).unwrap();
        assert_eq!(apk.to_hex(), s(&c["verification_pk"]), "{}", c["name"]);
        let sig = Signature::from_hex(s(&c["aggregate_signature"])).unwrap();
        assert_eq!(
            sig.verify(&apk, msg.as_bytes()),
            c["expected"].as_bool().unwrap(),
            "{}",
            c["name"]
        );
    }
}

#[test]
fn negative_cases() {
    let v = vector("bls12381_pop.json");
    for c in v["negative_cases"].as_array().unwrap() {
        assert_eq!(c["expected"], false);
        let name = s(&c["name"]);
        let encoded = c.get("signature").or(c.get("pop")).unwrap();
        let sig = match Signature::from_hex(s(encoded)) {
            Ok(sig) => sig,
            Err(_) => {
                assert_ne!(c["decodes"], true, "{name}: decodes in blspy");
                continue;
            }
        };
        let pk = pk(&v, s(&c["key"]));
        let ok = if c.get("pop").is_some() {
            pk.verify_pop(&sig)
        } else {
            let msg = c
                .get("message_text")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| text(&v, s(&c["message"])).to_owned());
            sig.verify(&pk, msg.as_bytes())
        };
        assert!(!ok, "{name} must be rejected");
    }
}

#[test]
fn batch_verification_finds_a_bad_item() {
    let keys: Vec<SecretKey> = (1..=4u8)
        .map(|i| SecretKey::key_gen(&[i; 32]).unwrap())
        .collect();
    let msgs: Vec<String> = (0..8)
        .map(|i| format!("Address: 0x{i}, State: down, Timestamp: {i}"))
        .collect();
    let apk =
        PublicKey::aggregate(&keys.iter().map(|k| k.public_key()).collect::<Vec<_>>()).unwrap();
    let mut sigs: Vec<Signature> = aggregated(&keys, &msgs);
    let items = |sigs: &[Signature]| -> bool {
        let it: Vec<BatchItem> = msgs
            .iter()
            .zip(sigs)
            .map(|(m, s)| BatchItem {
                msg: m.as_bytes(),
                pk: &apk,
                sig: s,
            })
            .collect();
        verify_batch(&it)
    };
    assert!(items(&sigs));
    sigs.swap(2, 3);
    assert!(!items(&sigs));
    assert!(verify_batch(&[]));
}

#[test]
fn malformed_encodings_are_errors() {
    assert!(PublicKey::from_hex("zz").is_err());
    assert!(PublicKey::from_hex(&"00".repeat(48)).is_err());
    // The compressed identity (0xc0...) is refused as a public key.
    assert!(PublicKey::from_hex(&format!("c0{}", "00".repeat(47))).is_err());
    assert!(Signature::from_hex(&"ff".repeat(96)).is_err());
    assert!(SecretKey::from_hex("12").is_err());
}

#[test]
fn same_key_batch_verification() {
    use livenessd::crypto::bls::verify_batch_same_key;
    let keys: Vec<SecretKey> = (1..=3u8)
        .map(|i| SecretKey::key_gen(&[i; 32]).unwrap())
        .collect();
    let apk =
        PublicKey::aggregate(&keys.iter().map(|k| k.public_key()).collect::<Vec<_>>()).unwrap();
    let msgs: Vec<String> = (0..50)
        .map(|i| format!("Address: 0x{i}, State: up, Timestamp: {i}"))
        .collect();
    let mut sigs: Vec<Signature> = aggregated(&keys, &msgs);
    let check = |sigs: &[Signature]| {
        let items: Vec<(&[u8], &Signature)> = msgs.iter().map(|m| m.as_bytes()).zip(sigs).collect();
        verify_batch_same_key(&apk, &items)
    };
    assert!(check(&sigs));
    // A signature by two of the three keys only.
    let partial = Signature::aggregate(
        &keys[..2]
            .iter()
            .map(|k| k.sign(msgs[9].as_bytes()))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let saved = std::mem::replace(&mut sigs[9], partial);
    assert!(!check(&sigs));
    sigs[9] = saved;
    sigs.swap(0, 49);
    assert!(!check(&sigs));
    sigs.swap(0, 49);
    // The blspy vectors' aggregate, in a batch with ours under its own key.
    let v = common::vector("bls12381_pop.json");
    let agg = v["aggregates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "agg_all")
        .unwrap();
    let key = |n: &str| {
        PublicKey::from_hex(s(&v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == n)
            .unwrap()["pk"]))
        .unwrap()
    };
    let ref_apk = PublicKey::aggregate(&[key("Node1"), key("Node2"), key("Node3")]).unwrap();
    let ref_sig = Signature::from_hex(s(&agg["aggregate_signature"])).unwrap();
    let ref_msg = text(&v, "state_up");
    let other_sig = {
        let sks: Vec<SecretKey> = ["Node1", "Node2", "Node3"]
            .iter()
            .map(|n| SecretKey::from_hex(&key_sk(&v, n)).unwrap())
            .collect();
        Signature::aggregate(
            &sks.iter()
                .map(|k| k.sign(b"another message"))
                .collect::<Vec<_>>(),
        )
        .unwrap()
    };
    assert!(verify_batch_same_key(
        &ref_apk,
        &[
            (ref_msg.as_bytes(), &ref_sig),
            (b"another message", &other_sig)
        ]
    ));
    assert!(!verify_batch_same_key(
        &ref_apk,
        &[
            (b"another message", &ref_sig),
            (ref_msg.as_bytes(), &other_sig)
        ]
    ));
}

fn key_sk(v: &Value, name: &str) -> String {
    s(&key(v, name)["sk"]).to_owned()
}

#[test]
fn keys_that_cancel_out_never_form_an_aggregate_key() {
    // sk and r − sk: their public keys sum to the identity.
    let r = num_bigint::BigUint::parse_bytes(
        b"73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000001",
        16,
    )
    .unwrap();
    let a = SecretKey::key_gen(&[7; 32]).unwrap();
    let neg = &r - num_bigint::BigUint::parse_bytes(a.to_hex().as_bytes(), 16).unwrap();
    let b = SecretKey::from_hex(&format!("{neg:064x}")).unwrap();
    assert!(PublicKey::aggregate(&[a.public_key(), b.public_key()]).is_none());
    let c = SecretKey::key_gen(&[8; 32]).unwrap();
    assert!(PublicKey::aggregate(&[a.public_key(), b.public_key(), c.public_key()]).is_some());
}
