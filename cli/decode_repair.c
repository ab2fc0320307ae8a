/* cli/decode_repair.c - `netdiff decode`'s repair step (cli/decode_hook.h):
 * one flow's rows -> heuristics/repair.h -> the capture writer. */
#include <stdio.h>
#include <stdlib.h>

#include "cli/decode_hook.h"
#include "heuristics/repair.h"

const int nd_decode_linktype = ND_LINKTYPE_ETHERNET;

nd_status nd_decode_repair(nd_capwriter *w, const nd_rows *rows, const nd_layout *layout,
                           const nd_conf *conf, const char *label, uint64_t seed, uint64_t flow_id,
                           int64_t *t_us, uint64_t *packets, nd_err *err)
{
    /* One context for the process (decode is single-threaded); rebuilt
     * only when the seed changes. Freed at exit by the OS. */
    static nd_repair_ctx *ctx;
    static uint64_t ctx_seed;
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
    /* per-pixel confidence -> per-cell confidence for the vote */
    nd_conf *row_conf = NULL;
    if (layout && conf && rows->n > 0) {
        row_conf = malloc((size_t)rows->n * (size_t)nd_row_width(rows->payload_bytes) *
                          sizeof *row_conf);
        if (!row_conf)
            return nd_fail(err, ND_ENOMEM, "out of memory");
        nd_repair_conf_from_image(layout, conf, rows->n, rows->payload_bytes, row_conf);
    }
    st = nd_repair_flow(ctx, rows, row_conf, NULL, flow_id, &out, NULL, err);
    free(row_conf);
    if (st)
        return st;
    char comment[128];
    snprintf(comment, sizeof comment, "%llu,%s", (unsigned long long)flow_id, label);
    st = nd_repair_write(w, &out, comment, err);
    if (st)
        return st;
    *packets += (uint64_t)out.n;
    if (out.n) {
        const nd_repair_pkt *l = &out.pkts[out.n - 1];
        *t_us = l->ts_sec * 1000000 + l->ts_nsec / 1000 + 1000000; /* 1 s between flows */
    }
    return ND_OK;
}
