#!/usr/bin/env python3
"""Data preparation for the embedded default model.

captures (../shared/testdata: apps/, iot/, protocols/) + flows.csv labels
  -> a per-class train / held-out split of the labelled flows (train/split.json,
     committed; chosen over flows.csv rows with a fixed seed)
  -> label CSVs for each side (DATA/train_labels.csv, DATA/heldout_labels.csv)
  -> flow images made by `netdiff encode` only (DATA/images/{train,heldout}/,
     LABEL_NNNNNNNNNN.png; each capture encoded on its own so flow ids stay unique)
  -> the class table from the TRAIN flows only, by `netdiff classes build`
     (conf/classes.json, templates in conf/templates/)

Usage: python train/prepare.py [--data DIR] [--testdata DIR] [--netdiff BIN]
"""
import argparse
import collections
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# model layout (recorded in weights/default/config.json and the model card)
PACKETS = 64
TIMING_COLS = 16      # 1088 + 16 = 1104 = 16 x 69 columns: /8 VAE, /2 UNet level
TIMING_SCALE = 8
GROUPS = ("apps/", "iot/", "protocols/")
# labels that are no traffic class: no app-layer protocol / unlabelled / synthetic
NOT_CLASSES = {"", "tcp-noapp", "udp-noapp"}
MIN_FLOWS = 7           # classes with fewer labelled flows are left out (meet has 7)
HELDOUT_FRAC = 0.25
MIN_HELDOUT = 3
MAX_TRAIN = 160         # cap per class (iot_HueBridge alone has >1000 flows)
MAX_HELDOUT = 60
SEED = 20240601


def load_rows(testdata):
    rows = []
    with open(os.path.join(testdata, "flows.csv")) as f:
        for r in csv.DictReader(f):
            if r["file"].startswith(GROUPS):
                rows.append(r)
    return rows


def make_split(rows):
    by = collections.defaultdict(list)
    for r in rows:
        by[r["label"]].append(r)
    classes, left_out = {}, {}
    rng = random.Random(SEED)
    for label in sorted(by):
        flows = sorted(by[label], key=lambda r: (r["file"], float(r["first_ts"]), r["src"], r["sport"],
                                                 r["dst"], r["dport"], r["l4"]))
        if label in NOT_CLASSES or label.startswith("SYNTHETIC"):
            left_out[label] = "%d flows; not a traffic class (no app-layer label / synthetic)" % len(flows)
            continue
        if len(flows) < MIN_FLOWS:
            left_out[label] = "%d flows < %d needed to learn from and hold out" % (len(flows), MIN_FLOWS)
            continue
        rng.shuffle(flows)
        nh = max(MIN_HELDOUT, int(round(len(flows) * HELDOUT_FRAC)))
        held, train = flows[:nh][:MAX_HELDOUT], flows[nh:][:MAX_TRAIN]
        key = lambda r: [r["file"], r["l4"], r["src"], int(r["sport"]), r["dst"], int(r["dport"])]
        classes[label] = {"train": sorted(key(r) for r in train),
                          "heldout": sorted(key(r) for r in held),
                          "flows_total": len(flows)}
    return classes, left_out


def write_labels(path, classes, side):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "l4", "src", "sport", "dst", "dport", "label"])
        for label, c in sorted(classes.items()):
            for fl, l4, src, sport, dst, dport in c[side]:
                w.writerow([fl, l4, src, sport, dst, dport, label])


def encode_side(netdiff, testdata, labels_csv, files, out_dir):
    """One `netdiff encode` per capture (flow ids restart per capture), images
    renamed LABEL_<file index><flow id> so names stay unique and parseable."""
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    n = 0
    for i, fl in enumerate(files):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([netdiff, "encode", os.path.join(testdata, fl), "--images", tmp,
                            "--packets", str(PACKETS), "--timing-cols", str(TIMING_COLS),
                            "--timing-scale", str(TIMING_SCALE), "--labels", labels_csv,
                            "--labelled-only"], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            for name in sorted(os.listdir(tmp)):
                label, fid = name[:-4].rsplit("_", 1)
                shutil.move(os.path.join(tmp, name),
                            os.path.join(out_dir, "%s_%04d%06d.png" % (label, i, int(fid))))
                n += 1
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/data/default-model")
    ap.add_argument("--testdata", default=os.path.join(ROOT, "..", "shared", "testdata"))
    ap.add_argument("--netdiff", default=os.path.join(ROOT, "build", "netdiff"))
    ap.add_argument("--split", default=os.path.join(HERE, "split.json"))
    ap.add_argument("--reuse-split", action="store_true",
                    help="use the committed split file instead of drawing it again")
    a = ap.parse_args()
    testdata = os.path.abspath(a.testdata)
    os.makedirs(a.data, exist_ok=True)

    if a.reuse_split and os.path.exists(a.split):
        sp = json.load(open(a.split))
        classes, left_out = sp["classes"], sp["left_out"]
    else:
        classes, left_out = make_split(load_rows(testdata))
        sp = {"seed": SEED, "packets": PACKETS, "timing_cols": TIMING_COLS, "timing_scale": TIMING_SCALE,
              "min_flows": MIN_FLOWS, "heldout_frac": HELDOUT_FRAC, "max_train": MAX_TRAIN,
              "max_heldout": MAX_HELDOUT, "groups": list(GROUPS),
              "note": "flows are flows.csv rows: [file, l4, src, sport, dst, dport]",
              "classes": classes, "left_out": left_out}
        with open(a.split, "w") as f:
            json.dump(sp, f, indent=1, sort_keys=True)
    for side in ("train", "heldout"):
        write_labels(os.path.join(a.data, side + "_labels.csv"), classes, side)
    files = sorted({fl[0] for c in classes.values() for s in ("train", "heldout") for fl in c[s]})
    counts = {}
    for side in ("train", "heldout"):
        counts[side] = encode_side(a.netdiff, testdata, os.path.join(a.data, side + "_labels.csv"),
                                   files, os.path.join(a.data, "images", side))
    # class table from the train flows only
    conf = os.path.join(ROOT, "conf")
    if os.path.isdir(os.path.join(conf, "templates")):
        shutil.rmtree(os.path.join(conf, "templates"))
    os.makedirs(conf, exist_ok=True)
    subprocess.run([a.netdiff, "classes", "build"] + [os.path.join(testdata, g) for g in GROUPS] +
                   ["--labels", os.path.join(a.data, "train_labels.csv"), "--packets", str(PACKETS),
                    "--timing-cols", str(TIMING_COLS), "--timing-scale", str(TIMING_SCALE),
                    "--min-flows", "3",
                    # every flow may be a template: templates are the class's length
                    # quantiles, and 62 of dns's 146 flows are one packet
                    "--min-template-packets", "1",
                    # drawn by img2img from the class templates at 0.5 (the model card
                    # measures 0.5 against 1.0: this small model keeps a template's
                    # structure, but from pure noise puts header bits in wrong columns)
                    "--strength", "0.5", "-o", os.path.join(conf, "classes.json")], check=True)
    print("classes: %d kept, %d left out; images: %d train, %d held-out -> %s"
          % (len(classes), len(left_out), counts["train"], counts["heldout"], a.data))


if __name__ == "__main__":
    main()
