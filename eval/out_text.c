/* eval/out_text.c - the report as an aligned table for a terminal. */
#include "eval/internal.h"

#include <inttypes.h>

static void m3(FILE *f, const nd_eval_metric *m, bool ok)
{
    if (ok)
        fprintf(f, " %5.3f %5.3f %5.3f", m->jsd, m->tvd, m->hel);
    else
        fprintf(f, " %5s %5s %5s", "-", "-", "-");
}

static void header(FILE *f, const char *first)
{
    fprintf(f, "%-18s %9s %9s |%18s |%18s | %18s\n", first, "n_real", "n_synth",
            "synth JSD TVD HEL", "floor JSD TVD HEL", "random JSD TVD HEL");
}

static void scope_table(FILE *f, const nd_eval_scope *s)
{
    const nd_eval_cmp *c = s->cmp;
    header(f, "feature");
    for (int i = 0; i < ND_EVAL_NFEAT; i++) {
        const nd_eval_fcmp *x = &c[ND_CMP_SYNTH].f[i];
        if (!x->defined && !c[ND_CMP_FLOOR].f[i].defined)
            continue;  /* nothing on either side: say nothing */
        fprintf(f, "%-17s%c %9" PRIu64 " %9" PRIu64 " |", nd_eval_features[i].name,
                nd_eval_features[i].aggregate ? ' ' : '*', x->n_a, x->n_b);
        for (int k = 0; k < ND_CMP_COUNT; k++) {
            m3(f, &c[k].f[i].m, c[k].present && c[k].f[i].defined);
            fputs(k + 1 < ND_CMP_COUNT ? " |" : "\n", f);
        }
    }
    fprintf(f, "%-18s %9s %9s |", "MEAN", "", "");
    for (int k = 0; k < ND_CMP_COUNT; k++) {
        m3(f, &c[k].mean, c[k].present && c[k].n_mean);
        fputs(k + 1 < ND_CMP_COUNT ? " |" : "\n", f);
    }
    for (int g = 0; g < ND_EG_COUNT; g++) {
        if (!c[ND_CMP_SYNTH].group_n[g] && !c[ND_CMP_FLOOR].group_n[g])
            continue;
        fprintf(f, "  mean %-11s %9s %9s |", nd_eval_group_names[g], "", "");
        for (int k = 0; k < ND_CMP_COUNT; k++) {
            m3(f, &c[k].group_mean[g], c[k].present && c[k].group_n[g]);
            fputs(k + 1 < ND_CMP_COUNT ? " |" : "\n", f);
        }
    }
}

static void validity(FILE *f, const nd_eval_report *r)
{
    fprintf(f, "\nValidity: packets a tool would reject (unverifiable checks, e.g. truncated "
               "captures, in brackets)\n");
    fprintf(f, "%-14s", "check");
    for (int s = 0; s < ND_EVAL_SIDES; s++)
        if (r->valid[s].packets)
            fprintf(f, " %18s", nd_eval_side_names[s]);
    fputc('\n', f);
    fprintf(f, "%-14s", "packets");
    for (int s = 0; s < ND_EVAL_SIDES; s++)
        if (r->valid[s].packets)
            fprintf(f, " %18" PRIu64, r->valid[s].packets);
    fputc('\n', f);
    fprintf(f, "%-14s", "invalid");
    for (int s = 0; s < ND_EVAL_SIDES; s++)
        if (r->valid[s].packets)
            fprintf(f, " %10" PRIu64 " %6.2f%%", r->valid[s].invalid,
                    100.0 * (double)r->valid[s].invalid / (double)r->valid[s].packets);
    fputc('\n', f);
    for (int c = 0; c < ND_V_COUNT; c++) {
        bool any = false;
        for (int s = 0; s < ND_EVAL_SIDES; s++)
            any |= r->valid[s].bad[c] || r->valid[s].unverified[c];
        if (!any)
            continue;
        fprintf(f, "  %-12s", nd_valid_check_names[c]);
        for (int s = 0; s < ND_EVAL_SIDES; s++) {
            if (!r->valid[s].packets)
                continue;
            char b[32];
            snprintf(b, sizeof b, "[%" PRIu64 "]", r->valid[s].unverified[c]);
            fprintf(f, " %10" PRIu64 " %7s", r->valid[s].bad[c],
                    r->valid[s].unverified[c] ? b : "");
        }
        fputc('\n', f);
    }
}

static void memo_line(FILE *f, const char *name, const nd_eval_memo_stats *s)
{
    fprintf(f, "%-14s %7" PRIu64 " %7.4f %7.4f %7.4f %7.4f %7.4f %7" PRIu64 "\n", name, s->n,
            s->min, s->p5, s->median, s->mean, s->p95, s->exact);
}

nd_status nd_eval_write_text(const nd_eval *e, FILE *f, nd_err *err)
{
    const nd_eval_report *r = nd_eval_report_of(e);
    fprintf(f, "netdiff eval: real %" PRIu64 " flows / %" PRIu64 " packets, synth %" PRIu64
               " / %" PRIu64,
            r->flows[ND_EVAL_REAL], r->packets[ND_EVAL_REAL], r->flows[ND_EVAL_SYNTH],
            r->packets[ND_EVAL_SYNTH]);
    if (r->flows[ND_EVAL_RANDOM])
        fprintf(f, ", random %" PRIu64 " / %" PRIu64, r->flows[ND_EVAL_RANDOM],
                r->packets[ND_EVAL_RANDOM]);
    if (r->flows[ND_EVAL_TRAIN])
        fprintf(f, ", train %" PRIu64 " / %" PRIu64, r->flows[ND_EVAL_TRAIN],
                r->packets[ND_EVAL_TRAIN]);
    fprintf(f, "\nJSD = Jensen-Shannon divergence, log base 2 (= scipy jensenshannon(p, q, "
               "base=2)**2); TVD = total variation; HEL = Hellinger. All in [0,1], 0 = same.\n"
               "floor = real split in halves (seed %" PRIu64 ") against itself; random = random "
               "bits through the repair; * = not in the means.\n",
            r->seed);
    for (int i = 0; i < r->n_scopes; i++) {
        const nd_eval_scope *s = &r->scopes[i];
        if (i == 0) {
            fprintf(f, "\n== all flows (real %" PRIu64 ", synth %" PRIu64 ")\n",
                    s->flows_real, s->flows_synth);
            scope_table(f, s);
        }
    }
    if (r->n_real_only || r->n_synth_only)
        fprintf(f, "\nclasses on one side only (no per-class comparison): real %d, synth %d\n",
                r->n_real_only, r->n_synth_only);
    if (r->n_scopes > 1) {
        fprintf(f, "\n== per class: mean over features (full tables: --json / --html)\n");
        fprintf(f, "%-18s %9s %9s |%18s |%18s | %18s\n", "class", "flows_re", "flows_syn",
                "synth JSD TVD HEL", "floor JSD TVD HEL", "random JSD TVD HEL");
        for (int i = 1; i < r->n_scopes; i++) {
            const nd_eval_scope *s = &r->scopes[i];
            const nd_eval_cmp *c = s->cmp;
            fprintf(f, "%-18.18s %9" PRIu64 " %9" PRIu64 " |", s->label, s->flows_real,
                    s->flows_synth);
            for (int k = 0; k < ND_CMP_COUNT; k++) {
                m3(f, &c[k].mean, c[k].present && c[k].n_mean);
                fputs(k + 1 < ND_CMP_COUNT ? " |" : "\n", f);
            }
        }
    }
    validity(f, r);
    const nd_eval_memo *m = &r->memo;
    fprintf(f, "\nMemorization: distance to the nearest training flow (share of differing "
               "cells, first %d packets x %d header columns; train = %s)\n",
            r->mem_packets, nd_fp_columns(), m->train_is_split ? "real half A" : "--train");
    if (!m->present) {
        fprintf(f, "  not computed: no training or no synthetic flows\n");
    } else {
        fprintf(f, "%-14s %7s %7s %7s %7s %7s %7s %7s\n", "", "flows", "min", "p5", "median",
                "mean", "p95", "exact");
        memo_line(f, "synth", &m->synth);
        memo_line(f, m->train_is_split ? "held-out (B)" : "held-out real", &m->heldout);
        fprintf(f, "flows at or below the held-out 5th percentile: synth %.1f%%, held-out "
                   "%.1f%% (a generator that copies its training data: synth >> held-out)\n",
                100 * m->below_heldout_p5, 100 * m->heldout_below_p5);
    }
    if (ferror(f))
        return nd_fail(err, ND_EIO, "cannot write the report");
    return ND_OK;
}
