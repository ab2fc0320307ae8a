#!/bin/sh
# tests/eval/test_scipy.sh - our JSD/TVD/Hellinger against scipy on random
# histograms (scipy from PyPI). Skipped, and says so, without scipy.
# ND_PYTHON picks the interpreter; else /work/venv/bin/python, else python3.
. tests/lib.sh
PY=""
for p in "${ND_PYTHON:-}" /work/venv/bin/python python3; do
  [ -n "$p" ] && command -v "$p" >/dev/null 2>&1 && "$p" -c "import scipy, numpy" 2>/dev/null &&
    { PY=$p; break; }
done
if [ -z "$PY" ]; then
  skip "scipy comparison: no python with scipy and numpy (pip install scipy numpy)"
  nd_done; exit
fi
seed=${ND_SEED:-$(date +%s)}
echo "  seed $seed (replay with ND_SEED=$seed)"
"$PY" - "$seed" >"$ND_TMP/in" <<'PYEOF'
import sys, numpy as np
rng = np.random.default_rng(int(sys.argv[1]))
for i in range(300):
    n = int(rng.integers(1, 60))
    p = rng.random(n) * (rng.random(n) < 0.8)          # some empty bins
    q = rng.random(n) * (rng.random(n) < 0.8)
    if i % 7 == 0:
        p = rng.integers(0, 1000, n).astype(float)       # integer counts
    if p.sum() == 0: p[0] = 1
    if q.sum() == 0: q[-1] = 1
    print(" ".join(repr(float(x)) for x in p) + ";" + " ".join(repr(float(x)) for x in q))
PYEOF
"$NETDIFF" eval --distances <"$ND_TMP/in" >"$ND_TMP/out"
check "netdiff eval --distances ran" [ $? -eq 0 ]
check "JSD = jensenshannon(base=2)**2, TVD, Hellinger agree with scipy to 1e-9" \
  "$PY" - "$ND_TMP/in" "$ND_TMP/out" <<'PYEOF'
import sys, numpy as np
from scipy.spatial.distance import jensenshannon
ins = open(sys.argv[1]).read().splitlines()
outs = open(sys.argv[2]).read().splitlines()
assert len(ins) == len(outs) == 300, (len(ins), len(outs))
worst = 0.0
for line, o in zip(ins, outs):
    a, b = line.split(";")
    p = np.array([float(x) for x in a.split()]); q = np.array([float(x) for x in b.split()])
    jsd, tvd, hel = (float(x) for x in o.split())
    ref_jsd = jensenshannon(p, q, base=2) ** 2
    pn, qn = p / p.sum(), q / q.sum()
    ref_tvd = 0.5 * np.abs(pn - qn).sum()
    # Hellinger from scipy's euclidean distance of the square roots
    from scipy.spatial.distance import euclidean
    ref_hel = euclidean(np.sqrt(pn), np.sqrt(qn)) / np.sqrt(2)
    for got, ref in ((jsd, ref_jsd), (tvd, ref_tvd), (hel, ref_hel)):
        worst = max(worst, abs(got - ref))
        assert abs(got - ref) < 1e-9, (line[:80], got, ref)
print("  300 random pairs, worst difference %.2e" % worst)
PYEOF
nd_done
