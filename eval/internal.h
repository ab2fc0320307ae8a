/* eval/internal.h - what the eval/ files share; not part of the contract. */
#ifndef ND_EVAL_INTERNAL_H
#define ND_EVAL_INTERNAL_H

#include "eval/eval.h"

/* ------------------------------------------------ histogram: key -> count */
typedef struct nd_hmap {
    uint64_t *key, *cnt;     /* open addressing; cnt == 0 marks a free slot */
    size_t cap, n;
    uint64_t total;
    uint64_t *skey, *scnt;   /* sorted copy, rebuilt when dirty           */
    size_t sn;
    bool dirty;
} nd_hmap;

bool nd_hmap_add(nd_hmap *h, uint64_t key, uint64_t count);
/* Sorted view; false when out of memory. */
bool nd_hmap_sorted(nd_hmap *h);
void nd_hmap_free(nd_hmap *h);

/* Distances between two histograms given as sorted key/count arrays. */
nd_eval_metric nd_eval_distances_sparse(const uint64_t *ka, const uint64_t *ca, size_t na,
                                        const uint64_t *kb, const uint64_t *cb, size_t nb,
                                        double *scratch_p, double *scratch_q);

/* ------------------------------------------------------------ extraction */
typedef struct nd_featval {
    uint16_t f;
    uint64_t key;            /* already binned */
} nd_featval;

typedef struct nd_featvec {
    nd_featval *v;
    size_t n, cap;
} nd_featvec;

/* Appends the binned feature values of one flow to out and adds its
 * packets' checks to vc (may be NULL). false: out of memory. */
bool nd_eval_extract(const nd_flow *f, nd_featvec *out, nd_valid_counts *vc);

/* ---------------------------------------------------------- fingerprints */
/* A flow for the memorization distance: mem_packets rows x ND_FP_WORDS words,
 * two planes (value bit, present bit). */
#define ND_FP_WORDS 16       /* 1024 bits >= the compared columns (checked) */
int nd_fp_columns(void);     /* compared columns */
size_t nd_fp_size(int mem_packets);  /* uint64 words per fingerprint */
void nd_fp_make(const nd_flow *f, int mem_packets, uint64_t *fp);
/* Differing cells of two fingerprints; stops early once > limit. */
uint64_t nd_fp_diff(const uint64_t *a, const uint64_t *b, int mem_packets, uint64_t limit);

/* ---------------------------------------------------------- context */
/* The report as last finished (the writers read it). */
const nd_eval_report *nd_eval_report_of(const nd_eval *e);
/* eval/paths.c keeps its labeler in the context (made on first use). */
nd_labeler **nd_eval_labeler_slot(nd_eval *e);
const nd_eval_opts *nd_eval_opts_of(const nd_eval *e);

/* nd_eval_add_flow without the packet checks (eval/paths.c checks every
 * packet of a capture itself, also those no flow keeps). */
nd_status nd_eval_add_flow_unchecked(nd_eval *e, nd_eval_side side, const nd_flow *f,
                                     nd_err *err);
/* Adds one packet's checks to a side's validity counts. */
void nd_eval_count_packet(nd_eval *e, nd_eval_side side, const uint8_t *l3, uint32_t caplen,
                          uint32_t wirelen);

/* ------------------------------------------------------------ svg */
/* One small histogram picture of feature f: bins of REAL (a) and SYNTH (b). */
void nd_svg_hist(FILE *out, int f, const uint64_t *ka, const uint64_t *ca, size_t na,
                 const uint64_t *kb, const uint64_t *cb, size_t nb);

/* Writes s with <, > and & escaped (HTML text and SVG <text>). */
void nd_xml_escape(FILE *o, const char *s);

#endif
