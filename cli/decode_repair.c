/* cli/decode_repair.c - `netdiff decode`'s repair step (cli/decode_hook.h):
 * one flow's rows -> heuristics/repair.h -> the capture writer. */
#include <stdlib.h>

#include "cli/decode_hook.h"
#include "heuristics/repair.h"

const int nd_decode_linktype = ND_LINKTYPE_ETHERNET;

nd_status nd_decode_repair(nd_capwriter *w, const nd_rows *rows, const float *conf,
                           const char *label, uint64_t seed, uint64_t flow_id, int64_t *t_us,
                           uint64_t *packets, nd_err *err)
{
    /* One context for the process (decode is single-threaded); rebuilt
     * only when the seed changes. Freed at exit by the OS. */
    static nd_repair_ctx *ctx;
    static uint64_t ctx_seed;
    (void)label;
    /* conf is per image pixel and the hook does not pass the layout, so
     * the vote runs unweighted here (see nd_repair_conf_from_image). */
    (void)conf;
    nd_repair_opts o;
    nd_repair_opts_init(&o);
    o.seed = seed;
    o.start_us = *t_us;
    o.flow_spacing_us = 0; /* the caller's clock places the flow */
    if (!ctx || ctx_seed != seed) {
        nd_repair_ctx_free(ctx);
        ctx = NULL;
        nd_status cst = nd_repair_ctx_new(&o, &ctx, err);
        if (cst)
            return cst;
        ctx_seed = seed;
    }
    nd_repair_set_start(ctx, *t_us);
    nd_status st;
    nd_repair_out out;
    st = nd_repair_flow(ctx, rows, NULL, NULL, flow_id, &out, NULL, err);
    if (st)
        return st;
    st = nd_repair_write(w, &out, NULL, err);
    if (st)
        return st;
    *packets += (uint64_t)out.n;
    if (out.n) {
        const nd_repair_pkt *l = &out.pkts[out.n - 1];
        *t_us = l->ts_sec * 1000000 + l->ts_nsec / 1000 + 1000000; /* 1 s between flows */
    }
    return ND_OK;
}
