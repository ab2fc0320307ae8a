#!/usr/bin/env python3
"""Load client for netdiffd: C concurrent clients, each looping GET /generate
for SECS seconds. Prints one table row: requests/s, flows/s, p50/p99 latency,
errors. Stdlib only (http.client, threads)."""
import http.client, sys, threading, time

host, port, conc, secs, cls, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], int(sys.argv[6])
lat, errors, flows, lock = [], [0], [0], threading.Lock()
end = time.monotonic() + secs

def worker(k):
    seed = k * 1000000
    while time.monotonic() < end:
        seed += 1
        t0 = time.monotonic()
        try:
            c = http.client.HTTPConnection(host, port, timeout=120)
            c.request("GET", f"/generate?class={cls}&n={n}&seed={seed}")
            r = c.getresponse()
            body = r.read()
            ok = r.status == 200 and len(body) > 24
            c.close()
        except Exception:
            ok = False
        dt = time.monotonic() - t0
        with lock:
            if ok:
                lat.append(dt); flows[0] += n
            else:
                errors[0] += 1
        if not ok:
            time.sleep(0.05)

t0 = time.monotonic()
th = [threading.Thread(target=worker, args=(k,)) for k in range(conc)]
for t in th: t.start()
for t in th: t.join()
wall = time.monotonic() - t0
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")
print(f"{conc:>7} {len(lat)/wall:>9.1f} {flows[0]/wall:>9.1f} {q(0.5):>9.1f} {q(0.99):>9.1f} {errors[0]:>6}")
