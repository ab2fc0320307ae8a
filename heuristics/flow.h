/* heuristics/flow.h - the repair context and per-flow working state
 * (internal to heuristics/). */
#ifndef ND_HEURISTICS_FLOW_H
#define ND_HEURISTICS_FLOW_H

#include "heuristics/internal.h"
#include "heuristics/repair.h"

enum { ND_ICMP_REQ, ND_ICMP_REP, ND_ICMP_ERR };

/* One packet being built. */
typedef struct nd_pkt {
    int row;                 /* row index in the input            */
    uint8_t dir;
    uint8_t icmp_kind;
    uint32_t payload;        /* payload bytes (after the MTU cut)  */
    int64_t ts_us;
} nd_pkt;

typedef struct nd_flowctx {
    nd_repair_opts o;
    int cap;                 /* rows the arrays below hold          */
    nd_pkt *pk;
    float *pres;             /* cap * ND_BLK_COUNT                   */
    nd_prow *prow;           /* cap: each row's header cells, packed  */
    nd_repair_pkt *out;
    uint8_t *buf;
    size_t buf_cap;
    /* mode finder */
    int hcap;
    uint64_t *hkey;
    uint32_t *hcnt, *hstamp, hgen, hbest_n;
    uint64_t hbest;
    /* per flow */
    uint64_t key;            /* RNG key of (seed, flow id)           */
    int np;
    uint8_t ipver, proto;
    int net_blk, tr_blk;
    uint16_t port[2];        /* [0] initiator's, [1] responder's     */
    uint32_t ttl_hist[2][256];
    uint8_t ttl[2];
    uint32_t flow_label[2];
    uint16_t echo_id;
} nd_flowctx;

struct nd_repair_ctx {
    nd_flowctx f;
};

void nd_mode_reset(nd_flowctx *f);
void nd_mode_add(nd_flowctx *f, uint64_t key);
int nd_icmp_kind(const nd_flowctx *f, int type);
/* Fills f->pk (packets, dirs), the vote and the steady values; returns the
 * number of packets. */
int nd_flow_analyse(nd_flowctx *f, const nd_rows *rows, const nd_conf *conf,
                    nd_repair_counts *cnt);
int nd_gap_bin(int64_t gap_us);

#endif
