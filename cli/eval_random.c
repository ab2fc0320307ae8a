/* cli/eval_random.c - the "random bits through the same repair" baseline of
 * `netdiff eval`: what the report would say of a generator that learned
 * nothing. Lives in cli/ because eval/ does not depend on heuristics/.
 *
 * Flow i gets the packet count of REAL's flow (i mod REAL flows), capped at
 * RANDOM_MAX_ROWS (so flow length itself is not what the baseline is judged
 * on), and every header cell uniformly 1, 0 or vacant (the three colours of a
 * random image after snapping). Then nd_repair_flow with default class stats
 * and raw-IP output, keyed by (seed, i): same seed, same baseline. */
#include "cli/eval_random.h"

#include <stdlib.h>
#include <string.h>

#include "heuristics/repair.h"

#define RANDOM_MAX_ROWS 256

static uint64_t next(uint64_t *s)
{
    uint64_t x = (*s += 0x9e3779b97f4a7c15ULL);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

nd_status cli_eval_random(nd_eval *e, uint64_t n_flows, uint64_t seed, nd_err *err)
{
    uint64_t n_real = nd_eval_flows(e, ND_EVAL_REAL);
    if (!n_flows || !n_real)
        return ND_OK;
    nd_repair_opts ro;
    nd_repair_opts_init(&ro);
    ro.seed = seed;
    ro.linktype = ND_LINKTYPE_RAW;
    nd_repair_ctx *rc = NULL;
    nd_status st = nd_repair_ctx_new(&ro, &rc, err);
    if (st)
        return st;
    nd_rows rows;
    if ((st = nd_rows_init(&rows, 0, RANDOM_MAX_ROWS, err))) {
        nd_repair_ctx_free(rc);
        return st;
    }
    nd_flow_pkt *pk = malloc(RANDOM_MAX_ROWS * 4 * sizeof *pk);
    if (!pk) {
        st = nd_fail(err, ND_ENOMEM, "out of memory");
        goto out;
    }
    for (uint64_t i = 0; i < n_flows && !st; i++) {
        int k = nd_eval_flow_packets(e, ND_EVAL_REAL, i % n_real);
        if (k > RANDOM_MAX_ROWS)
            k = RANDOM_MAX_ROWS;
        uint64_t s = seed ^ (i * 0x2545f4914f6cdd1dULL);
        rows.n = 0;
        for (int r = 0; r < k && !st; r++) {
            int8_t *row = nd_rows_push(&rows, err);
            if (!row) {
                st = ND_ENOMEM;
                break;
            }
            for (int c = 0; c < ND_HDR_BITS; c += 32) {
                uint64_t v = next(&s);
                for (int j = 0; j < 32 && c + j < ND_HDR_BITS; j++) {
                    /* 2 bits -> one of 3 states, rejecting 3 (unbiased) */
                    unsigned t = (unsigned)(v >> (2 * j)) & 3;
                    while (t == 3)
                        t = (unsigned)next(&s) & 3;
                    row[c + j] = t == 0 ? 1 : t == 1 ? 0 : ND_VACANT;
                }
            }
        }
        if (st)
            break;
        nd_repair_out out;
        if ((st = nd_repair_flow(rc, &rows, NULL, NULL, i, &out, NULL, err)))
            break;
        if (out.n <= 0)
            continue;
        if (out.n > RANDOM_MAX_ROWS * 4)
            out.n = RANDOM_MAX_ROWS * 4;
        nd_flow f;
        memset(&f, 0, sizeof f);
        f.id = i;
        f.ipver = out.ipver;
        f.proto = out.proto;
        f.n = out.n;
        f.n_total = (uint64_t)out.n;
        f.pkts = pk;
        for (int p = 0; p < out.n; p++)
            pk[p] = (nd_flow_pkt){out.pkts[p].ts_sec, out.pkts[p].ts_nsec, out.pkts[p].len,
                                  out.pkts[p].len, out.pkts[p].dir, out.pkts[p].data};
        st = nd_eval_add_flow(e, ND_EVAL_RANDOM, &f, err);
    }
out:
    free(pk);
    nd_rows_free(&rows);
    nd_repair_ctx_free(rc);
    return st;
}
