#!/usr/bin/env python3
"""Load client for netdiffd: C concurrent clients, each looping
GET /generate?class=CLS&n=N&seed=...[&EXTRA] for SECS seconds (then the
requests in flight finish). Prints one table row:
  clients, requests/s (completed / wall), flows/s (flows the daemon streamed
  during the last two thirds of the SECS window, from /metrics: a steady-state
  rate, without the ramp-up while the first batch is drawn nor the ramp-down),
  p50/p99 latency and p50 time to first flow (client side: the first bytes
  after the capture's file header; the whole request for a flow that has no
  packets), errors (no 200, or no capture header).
Stdlib only (http.client, threads)."""
import http.client, sys, threading, time

host, port, conc, secs, cls, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], int(sys.argv[6])
extra = ("&" + sys.argv[7]) if len(sys.argv) > 7 and sys.argv[7] else ""
HEADER = 24  # the pcap file header comes first, before any flow
lat, ttff, errors, lock = [], [], [0], threading.Lock()


def flows_streamed():
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.request("GET", "/metrics")
    body = c.getresponse().read().decode()
    c.close()
    return sum(float(l.split()[-1]) for l in body.splitlines()
               if l.startswith("netdiffd_flows_generated_total{"))


def worker(k, end):
    seed = k * 1000000
    while time.monotonic() < end:
        seed += 1
        t0 = time.monotonic()
        first = None
        try:
            c = http.client.HTTPConnection(host, port, timeout=600)
            c.request("GET", f"/generate?class={cls}&n={n}&seed={seed}{extra}")
            r = c.getresponse()
            got = 0
            while True:
                b = r.read1(65536)
                if not b:
                    break
                got += len(b)
                if first is None and got > HEADER:
                    first = time.monotonic() - t0
            ok = r.status == 200 and got >= HEADER
            c.close()
        except Exception:
            ok = False
        dt = time.monotonic() - t0
        with lock:
            if ok:
                lat.append(dt)
                ttff.append(first if first is not None else dt)
            else:
                errors[0] += 1
        if not ok:
            time.sleep(0.05)


t0 = time.monotonic()
end = t0 + secs
th = [threading.Thread(target=worker, args=(k, end)) for k in range(conc)]
for t in th:
    t.start()
time.sleep(secs / 3)
f0, w0 = flows_streamed(), time.monotonic()
time.sleep(max(0.0, end - time.monotonic()))
f1 = flows_streamed()
window = time.monotonic() - w0
for t in th:
    t.join()
wall = time.monotonic() - t0
q = lambda v, p: sorted(v)[min(len(v) - 1, int(p * len(v)))] * 1000 if v else float("nan")
print(f"{conc:>7} {len(lat)/wall:>9.2f} {(f1 - f0)/window:>9.2f} {q(lat, 0.5):>9.1f} {q(lat, 0.99):>9.1f} {q(ttff, 0.5):>9.1f} {errors[0]:>6}")
