/* gen/internal.h - what job.c and engine.c share (not public). */
#ifndef ND_GEN_INTERNAL_H
#define ND_GEN_INTERNAL_H
#include "gen/gen.h"

/* Buffers for one flow's snap + repair. */
typedef struct nd_gen_scratch {
    nd_conf *row_conf; /* codec.h: one byte per row cell */
} nd_gen_scratch;
nd_status nd_gen_scratch_init(nd_gen_scratch *s, const nd_layout *l, nd_err *err);
void nd_gen_scratch_free(nd_gen_scratch *s);
/* The repair context a job's flows go through (seed, link type, start). */
nd_status nd_gen_repair_ctx(const nd_gen_job *job, nd_repair_ctx **rc, nd_err *err);
/* Snap, repair, sinks for one drawn image; adds to stats. */
nd_status nd_gen_post(const nd_layout *l, const float *planar, nd_gen_scratch *s,
                      nd_repair_ctx *rc, const nd_draw_req *req, const nd_gen_sink *sinks,
                      int n_sinks, nd_gen_stats *stats, nd_err *err);
/* The request for flow k of a job (item / in_item walk the job's items). */
nd_status nd_gen_next_req(const nd_gen_job *job, const nd_class_table *t, int *item,
                          uint64_t *in_item, uint64_t k, nd_draw_req *req, nd_err *err);
#endif
