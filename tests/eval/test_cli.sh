#!/bin/sh
# tests/eval/test_cli.sh - `netdiff eval` end to end on real captures.
. tests/lib.sh
T=$ND_TESTDATA
NF=$T/apps/netflix
ZM=$T/apps/zoom
SY=$T/nprint/SYNTHETIC_netdiffusion_generated_netflix_5.pcap
PY=python3

# usage errors exit 2, runtime errors 1 with the file named
"$NETDIFF" eval >/dev/null 2>&1; check "no arguments: exit 2" [ $? -eq 2 ]
"$NETDIFF" eval "$NF" >/dev/null 2>&1; check "one argument: exit 2" [ $? -eq 2 ]
"$NETDIFF" eval --seed x "$NF" "$ZM" >/dev/null 2>&1; check "bad --seed: exit 2" [ $? -eq 2 ]
"$NETDIFF" eval "$NF" "$ND_TMP/nope.pcap" >/dev/null 2>"$ND_TMP/err"; rc=$?
check "missing SYNTH: exit 1" [ $rc -eq 1 ]
check "missing SYNTH: message names it" grep -q "nope.pcap" "$ND_TMP/err"
check "missing SYNTH: one line" [ "$(wc -l < "$ND_TMP/err")" -eq 1 ]
"$NETDIFF" eval "$T/parser/damaged_noheader_pcapfix_test_without_pcap_header.pcap" "$ZM" \
  >/dev/null 2>"$ND_TMP/err"; rc=$?
check "damaged REAL: exit 1 naming it" sh -c "[ $rc -eq 1 ] && grep -q without_pcap_header '$ND_TMP/err'"

# two real captures: a table with every part
"$NETDIFF" eval "$NF" "$ZM" >"$ND_TMP/t1" 2>"$ND_TMP/err"
check "netflix vs zoom: exit 0" [ $? -eq 0 ]
for w in "== all flows" MEAN "mean tcp" Validity Memorization ipv4_ttl iat_us dir_pattern; do
  check "table has '$w'" grep -q "$w" "$ND_TMP/t1"
done

# same inputs, same report (text, JSON, HTML)
"$NETDIFF" eval "$NF" "$ZM" --json "$ND_TMP/a.json" --html "$ND_TMP/a.html" >"$ND_TMP/t2" &&
"$NETDIFF" eval "$NF" "$ZM" --json "$ND_TMP/b.json" --html "$ND_TMP/b.html" >/dev/null
check "report files written" [ -s "$ND_TMP/a.json" ] && [ -s "$ND_TMP/a.html" ]
check "deterministic text" cmp -s "$ND_TMP/t1" "$ND_TMP/t2"
check "deterministic JSON" cmp -s "$ND_TMP/a.json" "$ND_TMP/b.json"
check "deterministic HTML" cmp -s "$ND_TMP/a.html" "$ND_TMP/b.html"
"$NETDIFF" eval "$NF" "$ZM" --seed 2 --json "$ND_TMP/c.json" >/dev/null
check "another seed, another split" sh -c "! cmp -s '$ND_TMP/a.json' '$ND_TMP/c.json'"

if command -v $PY >/dev/null; then
  check "JSON report parses and agrees with the table" $PY - "$ND_TMP/a.json" "$ND_TMP/t1" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
t = open(sys.argv[2]).read()
all_ = d["scopes"][0]
assert all_["class"] == "*"
m = all_["synth"]["mean"]
line = [l for l in t.splitlines() if l.startswith("MEAN")][0]
assert "%.3f %.3f %.3f" % (m["jsd"], m["tvd"], m["hel"]) in line, (m, line)
for k in ("synth", "floor", "random"):
    assert all_[k] is not None, k
    for f, v in all_[k]["features"].items():
        assert 0 <= v["jsd"] <= 1 and 0 <= v["tvd"] <= 1 and 0 <= v["hel"] <= 1, (k, f, v)
assert d["sides"]["real"]["flows"] > 10 and d["sides"]["synth"]["flows"] > 10
assert d["validity"]["real"]["packets"] >= d["sides"]["real"]["packets"]  # every packet, not only kept ones
assert d["memorization"]["present"]
PYEOF
  check "HTML: one well-formed SVG per feature with values" $PY - "$ND_TMP/a.html" <<'PYEOF'
import re, sys, xml.dom.minidom
s = open(sys.argv[1]).read()
svgs = re.findall(r"<svg.*?</svg>", s, re.S)
assert len(svgs) >= 40, len(svgs)
for v in svgs:
    xml.dom.minidom.parseString(v)
assert "ipv4_ttl" in s and "Memorization" in s and "<script" not in s
PYEOF
else
  skip "JSON/HTML structure checks: no python3"
fi

# a capture against itself scores 0 everywhere; its floor does not
"$NETDIFF" eval "$NF" "$NF" --json - >"$ND_TMP/self.json"
check "self: JSON on stdout when --json -" grep -q '"scopes"' "$ND_TMP/self.json"
if command -v $PY >/dev/null; then
  check "self: synth mean 0, floor > 0, random > floor" $PY - "$ND_TMP/self.json" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))["scopes"][0]
assert d["synth"]["mean"] == {"jsd": 0.0, "tvd": 0.0, "hel": 0.0}, d["synth"]["mean"]
assert d["floor"]["mean"]["jsd"] > 0
assert d["random"]["mean"]["jsd"] > d["floor"]["mean"]["jsd"]
PYEOF
fi

# validity against facts about NetDiffusion's published output (docs/netdiffusion.md
# section 8): 1024 TCP packets, IP checksums correct, every TCP checksum wrong.
"$NETDIFF" eval "$NF" "$SY" --json "$ND_TMP/nd.json" >/dev/null
if command -v $PY >/dev/null; then
  check "NetDiffusion sample: 1024 bad TCP checksums, 0 bad IP checksums" $PY - "$ND_TMP/nd.json" <<'PYEOF'
import json, sys
v = json.load(open(sys.argv[1]))["validity"]
s = v["synth"]
assert s["packets"] == 1024 and s["failed"]["tcp_cksum"] == 1024, s
assert s["failed"]["ipv4_cksum"] == 0 and s["failed"]["ip_length"] == 0, s
assert v["real"]["invalid"] == 0, v["real"]
PYEOF
fi

# --no-fin-rst: NetDiffusion's one 5-tuple with RSTs inside stays one flow of 1024
"$NETDIFF" eval "$NF" "$SY" --no-fin-rst >"$ND_TMP/nofin"
check "--no-fin-rst: one synthetic flow of 1024 packets" grep -q "synth 1 / 1024" "$ND_TMP/nofin"

# per-class tables when both sides are labelled; --train for memorization
"$NETDIFF" eval "$NF" "$NF" --labels "$T/flows.csv" --train "$NF" >"$ND_TMP/cls" 2>&1
check "labelled: per-class table" grep -q "^netflix " "$ND_TMP/cls"
check "--train: every synth flow is an exact copy" \
  sh -c "grep '^synth ' '$ND_TMP/cls' | awk '{exit !(\$2 == \$8)}'"
"$NETDIFF" eval "$NF" "$NF" --no-classes >"$ND_TMP/nocls"
check "--no-classes: no per-class table" sh -c "! grep -q 'per class' '$ND_TMP/nocls'"

# --distances: the hand-computed case (1/2,1/2) vs (1,0)
out=$(printf '1 1;1 0\n3 0;0 5\n' | "$NETDIFF" eval --distances)
check "--distances hand values" [ "$out" = "0.311278124459 0.500000000000 0.541196100146
1.000000000000 1.000000000000 1.000000000000" ]
printf '1 2;1\n' | "$NETDIFF" eval --distances >/dev/null 2>&1
check "--distances: unequal bins exit 2" [ $? -eq 2 ]
nd_done
