#!/usr/bin/env python3
"""Utility score as in NetDiffusion's Table 2: a random forest on nPrint bit
features (scikit-learn), trained on one set of flows and tested on another.

Flows come from pcap/pcapng files labelled per flow (pcapml comments "ID,LABEL",
as `netdiff decode --format pcapng` writes them, or --labels CSV); the features
are the bits of each flow's image made by `netdiff encode` (1 / 0 / -1 vacant,
first --packets packets, timing columns dropped), so Python never re-encodes.

  python eval/utility.py --real-train TRAIN.pcapng --real-test HELDOUT.pcapng \
      --synth SYNTH.pcapng [--json OUT.json]

prints accuracy and macro-F1 with per-class recall for
  real/real    train on real train flows, test on held-out real flows (reference)
  real->synth  train on real train flows, test on synthetic flows
  synth->real  train on synthetic flows, test on held-out real flows
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def flows(netdiff, cap, packets, labels=None):
    from PIL import Image
    with tempfile.TemporaryDirectory() as d:
        cmd = [netdiff, "encode", cap, "--images", d, "--packets", str(packets), "--labelled-only"]
        if labels:
            cmd += ["--labels", labels]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        X, y = [], []
        for n in sorted(os.listdir(d)):
            im = np.array(Image.open(os.path.join(d, n)).convert("RGB"))[:, :1088]
            bits = np.where(im[..., 2] > 127, -1, np.where(im[..., 0] > 127, 1, 0)).astype(np.int8)
            X.append(bits.reshape(-1))
            y.append(n[:-4].rsplit("_", 1)[0])
    return np.array(X), np.array(y)


def score(Xtr, ytr, Xte, yte, seed):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, f1_score, recall_score
    rf = RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1)
    rf.fit(Xtr, ytr)
    p = rf.predict(Xte)
    cls = sorted(set(yte))
    rec = recall_score(yte, p, labels=cls, average=None, zero_division=0)
    return {"accuracy": float(accuracy_score(yte, p)),
            "macro_f1": float(f1_score(yte, p, labels=cls, average="macro", zero_division=0)),
            "n_train": int(len(ytr)), "n_test": int(len(yte)),
            "recall": {c: float(r) for c, r in zip(cls, rec)}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--real-train", required=True)
    ap.add_argument("--real-test", required=True)
    ap.add_argument("--synth", required=True)
    ap.add_argument("--labels", help="labels CSV for captures without pcapml comments")
    ap.add_argument("--packets", type=int, default=16, help="packets per flow in the features")
    ap.add_argument("--netdiff", default=os.path.join(ROOT, "build", "netdiff"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    a = ap.parse_args()
    Rtr = flows(a.netdiff, a.real_train, a.packets, a.labels)
    Rte = flows(a.netdiff, a.real_test, a.packets, a.labels)
    S = flows(a.netdiff, a.synth, a.packets, a.labels)
    keep = sorted(set(Rtr[1]) & set(Rte[1]) & set(S[1]))
    sel = lambda XY: (XY[0][np.isin(XY[1], keep)], XY[1][np.isin(XY[1], keep)])
    Rtr, Rte, S = sel(Rtr), sel(Rte), sel(S)
    res = {"classes": keep, "packets": a.packets,
           "real/real": score(*Rtr, *Rte, a.seed),
           "real->synth": score(*Rtr, *S, a.seed),
           "synth->real": score(*S, *Rte, a.seed)}
    print("%-12s %8s %8s %7s %7s" % ("setting", "accuracy", "macroF1", "train", "test"))
    for k in ("real/real", "real->synth", "synth->real"):
        r = res[k]
        print("%-12s %8.3f %8.3f %7d %7d" % (k, r["accuracy"], r["macro_f1"], r["n_train"], r["n_test"]))
    print("\nper-class recall:")
    print("%-22s %9s %11s %11s" % ("class", "real/real", "real->synth", "synth->real"))
    for c in keep:
        print("%-22s %9.2f %11.2f %11.2f" % (c, res["real/real"]["recall"].get(c, 0),
                                            res["real->synth"]["recall"].get(c, 0),
                                            res["synth->real"]["recall"].get(c, 0)))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
