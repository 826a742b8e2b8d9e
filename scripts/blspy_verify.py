#!/usr/bin/env python3
"""Verify livenessd's BLS signatures with the reference library (blspy PopSchemeMPL).

    python scripts/blspy_verify.py ITEMS.json

ITEMS.json: a list of {"kind", "message", "public_keys": [hex G1...], "signature": hex G2}.
Each signature must verify (PopSchemeMPL.verify against the sum of the keys), and must
NOT verify for the message with one character changed. Exit 0 when all hold.

An item may also hold an epoch certificate ("certificate", with "rows", or one "row"
and its "proof"): its message and Merkle root are then recomputed here from the
documented format with hashlib alone (RFC 6962 tree, canonical JSON rows), and must
equal what livenessd computed.
"""

import hashlib
import json
import sys


def leaf_hash(row):
    data = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root(leaves):
    """RFC 6962 section 2.1: the left subtree holds the largest power of two below n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def inclusion_ok(root, size, index, leaf, path):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def certificate_message(it):
    """The documented message, rebuilt; the root checked against the rows or the proof."""
    c = it["certificate"]
    root = bytes.fromhex(c["root"])
    if "rows" in it:
        rows = sorted(it["rows"], key=lambda r: r["address"].encode())
        if len(rows) != c["rows"] or merkle_root([leaf_hash(r) for r in rows]) != root:
            raise ValueError("the rows do not make the certified root")
    if "row" in it:
        p = it["proof"]
        path = [bytes.fromhex(h) for h in p["path"]]
        if not inclusion_ok(root, c["rows"], p["index"], leaf_hash(it["row"]), path):
            raise ValueError("the row's inclusion proof fails")
    return "livenessd-epoch-certificate:v1:{}:{}:{}:{}:{}:{}:{}".format(
        c["network"], c["network_version"], c["epoch"], c["start"], c["end"], c["rows"], c["root"]
    )

from blspy import G1Element, G2Element, PopSchemeMPL


def main() -> int:
    items = json.load(open(sys.argv[1]))
    if not items:
        print("no items", file=sys.stderr)
        return 1
    bad = 0
    for it in items:
        pks = [G1Element.from_bytes(bytes.fromhex(k)) for k in it["public_keys"]]
        apk = pks[0]
        for k in pks[1:]:
            apk = apk + k
        sig = G2Element.from_bytes(bytes.fromhex(it["signature"]))
        if "certificate" in it:
            try:
                rebuilt = certificate_message(it)
            except ValueError as e:
                bad += 1
                print(f"FAIL {it['kind']}: {e}", file=sys.stderr)
                continue
            if rebuilt != it["message"]:
                bad += 1
                print(f"FAIL {it['kind']}: message {rebuilt!r} != {it['message']!r}", file=sys.stderr)
                continue
        msg = it["message"].encode("utf-8")
        ok = PopSchemeMPL.verify(apk, msg, sig)
        tampered = PopSchemeMPL.verify(apk, msg + b" ", sig)
        if it.get("pop"):
            ok = ok and PopSchemeMPL.pop_verify(pks[0], G2Element.from_bytes(bytes.fromhex(it["pop"])))
        if not ok or tampered:
            bad += 1
            print(f"FAIL {it['kind']}: {it['message']!r} ok={ok} tampered={tampered}", file=sys.stderr)
    print(f"blspy verified {len(items) - bad} of {len(items)} livenessd signatures")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
