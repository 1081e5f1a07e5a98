#!/usr/bin/env python3
"""`dbsp plan --mask FILE.npy --gpus 8 --json` on masks written by NumPy follows docs/cli.md, and its
static rho_s equals SPEC 3 computed here independently."""
import json
import subprocess
import sys
import tempfile

import numpy as np

dbsp = sys.argv[1]


def spec_ratio(mask, U, R):
    heads, qb, kb = mask.shape
    def begin(p, n, parts):
        return p * n // parts
    W = np.zeros((U, R, R))
    for g in range(U):
        for a in range(R):
            for b in range(R):
                W[g, a, b] = mask[begin(g, heads, U):begin(g + 1, heads, U),
                                  begin(a, qb, R):begin(a + 1, qb, R),
                                  begin(b, kb, R):begin(b + 1, kb, R)].sum()
    T = [sum(max(W[g, r, (r + t) % R] for r in range(R)) for t in range(R)) for g in range(U)]
    total = W.sum()
    return max(T) / (total / (U * R)) if total else 1.0


def check_layer(obj, mask, gpus):
    strategies = obj["strategies"]
    grids = {(s["ulysses"], s["ring"]) for s in strategies}
    assert grids == {(gpus // r, r) for r in range(1, gpus + 1) if gpus % r == 0}, grids
    for s in strategies:
        assert set(s) == {"ulysses", "ring", "policy", "imbalance_ratio", "moved_blocks",
                          "predicted_ms", "shared_heads"}, s
        assert s["policy"] in ("static", "dbsp-paper", "dbsp")
        # Only ours shares heads, and only on grids without a ring.
        assert s["shared_heads"] >= 0
        assert s["shared_heads"] == 0 or (s["policy"] == "dbsp" and s["ring"] == 1), s
        assert s["imbalance_ratio"] >= 1.0 - 1e-12 and s["predicted_ms"] > 0
        if s["policy"] == "static":
            expect = spec_ratio(mask, s["ulysses"], s["ring"])
            assert abs(s["imbalance_ratio"] - expect) < 1e-9, (s, expect)
            assert s["moved_blocks"] == 0
    by = {(s["ulysses"], s["ring"], s["policy"]): s["imbalance_ratio"] for s in strategies}
    for (u, r, p), rho in by.items():
        if p == "dbsp":
            assert rho <= by[(u, r, "static")] + 1e-12 and rho <= by[(u, r, "dbsp-paper")] + 1e-12


rng = np.random.default_rng(7)
with tempfile.TemporaryDirectory() as tmp:
    # One layer, bool, 13 heads (not divisible by 8), 37 blocks (not divisible by 8).
    mask = rng.random((13, 37, 37)) < rng.random((13, 1, 1)) * 0.6
    path = f"{tmp}/layer.npy"
    np.save(path, mask)
    out = json.loads(subprocess.check_output([dbsp, "plan", "--mask", path, "--gpus", "8", "--json"]))
    check_layer(out, mask.astype(np.int64), 8)
    # Steps x layers, uint8.
    series = (rng.random((2, 3, 6, 20, 20)) < 0.3).astype(np.uint8)
    path = f"{tmp}/series.npy"
    np.save(path, series)
    out = json.loads(subprocess.check_output([dbsp, "plan", "--mask", path, "--gpus", "6", "--json"]))
    assert len(out["layers"]) == 6
    for entry in out["layers"]:
        check_layer(entry, series[entry["step"], entry["layer"]].astype(np.int64), 6)
    # A corrupt file is a clear error, not a crash.
    bad = f"{tmp}/bad.npy"
    open(bad, "wb").write(b"\x93NUMPY\x01\x00garbage")
    r = subprocess.run([dbsp, "plan", "--mask", bad, "--gpus", "8"], capture_output=True, text=True)
    assert r.returncode == 2 and "bad.npy" in r.stderr, (r.returncode, r.stderr)
print("plan JSON contract OK")
