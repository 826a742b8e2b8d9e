#!/usr/bin/env python3
"""Verify livenessd's BLS signatures with the reference library (blspy PopSchemeMPL).

    python scripts/blspy_verify.py ITEMS.json

ITEMS.json: a list of {"kind", "message", "public_keys": [hex G1...], "signature": hex G2}.
Each signature must verify (PopSchemeMPL.verify against the sum of the keys), and must
NOT verify for the message with one character changed. Exit 0 when all hold.
"""

import json
import sys

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
