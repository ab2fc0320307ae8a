/* eval/out_html.c - one self-contained page: summary tables and a small
 * histogram per feature (REAL blue, SYNTH orange), no scripts, no fetches. */
#include "eval/internal.h"

#include <inttypes.h>

static void cell3(FILE *f, const nd_eval_metric *m, bool ok)
{
    if (ok)
        fprintf(f, "<td>%.3f</td><td>%.3f</td><td>%.3f</td>", m->jsd, m->tvd, m->hel);
    else
        fputs("<td>-</td><td>-</td><td>-</td>", f);
}

static void thead(FILE *f, const char *first)
{
    fprintf(f, "<tr><th rowspan=2>%s</th><th rowspan=2>real</th><th rowspan=2>synth</th>"
               "<th colspan=3>synth</th><th colspan=3>floor</th><th colspan=3>random</th></tr>\n"
               "<tr><th>JSD</th><th>TVD</th><th>HEL</th><th>JSD</th><th>TVD</th><th>HEL</th>"
               "<th>JSD</th><th>TVD</th><th>HEL</th></tr>\n",
            first);
}

nd_status nd_eval_write_html(const nd_eval *e, FILE *f, nd_err *err)
{
    const nd_eval_report *r = nd_eval_report_of(e);
    fputs("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>netdiff eval</title>\n"
          "<style>body{font-family:sans-serif;margin:1.5em;color:#222}"
          "table{border-collapse:collapse;font-size:12px;margin:.5em 0}"
          "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
          "th{background:#f2f2f2}td:first-child{text-align:left}"
          ".grid{display:flex;flex-wrap:wrap;gap:10px}"
          ".card{border:1px solid #ddd;padding:6px;width:330px;font-size:12px}"
          ".card b{font-size:13px}.doc{color:#666;font-size:11px;height:2.6em}"
          ".key span{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px}"
          "</style></head><body>\n<h1>netdiff eval</h1>\n",
          f);
    fprintf(f, "<p>real %" PRIu64 " flows / %" PRIu64 " packets; synth %" PRIu64 " / %" PRIu64
               "; random %" PRIu64 " / %" PRIu64 ". Split seed %" PRIu64 ".</p>\n",
            r->flows[0], r->packets[0], r->flows[1], r->packets[1], r->flows[2], r->packets[2],
            r->seed);
    fputs("<p>JSD = Jensen-Shannon divergence with log base 2 (scipy "
          "<code>jensenshannon(p, q, base=2)**2</code>), TVD = total variation distance, HEL = "
          "Hellinger distance; all in [0, 1], 0 = same distribution. <b>floor</b>: the real "
          "flows split in two halves against each other (sampling noise); <b>random</b>: random "
          "bits passed through the same repair. A feature with values on one side only scores "
          "1.</p>\n",
          f);
    for (int i = 0; i < r->n_scopes; i++) {
        const nd_eval_scope *s = &r->scopes[i];
        if (i == 0)
            fputs("<h2>Means</h2>\n<table>\n", f);
        if (i == 0)
            thead(f, "scope");
        fputs("<tr><td>", f);
        nd_xml_escape(f, i == 0 ? "all flows" : s->label);
        fprintf(f, "</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td>", s->flows_real,
                s->flows_synth);
        for (int k = 0; k < ND_CMP_COUNT; k++)
            cell3(f, &s->cmp[k].mean, s->cmp[k].present && s->cmp[k].n_mean);
        fputs("</tr>\n", f);
        if (i == 0)
            for (int g = 0; g < ND_EG_COUNT; g++) {
                if (!s->cmp[0].group_n[g] && !s->cmp[1].group_n[g])
                    continue;
                fprintf(f, "<tr><td>&nbsp;&nbsp;%s</td><td></td><td></td>", nd_eval_group_names[g]);
                for (int k = 0; k < ND_CMP_COUNT; k++)
                    cell3(f, &s->cmp[k].group_mean[g], s->cmp[k].present && s->cmp[k].group_n[g]);
                fputs("</tr>\n", f);
            }
    }
    fputs("</table>\n", f);

    fputs("<h2>Per feature (all flows)</h2>\n<p class='key'><span style='background:#3b6fb6'>"
          "</span>real<span style='background:#e8833a'></span>synth (bar heights are shares "
          "of each side's values; hover a bar for numbers)</p>\n<div class='grid'>\n",
          f);
    const nd_eval_scope *all = &r->scopes[0];
    for (int i = 0; i < ND_EVAL_NFEAT; i++) {
        const nd_eval_fcmp *x = &all->cmp[ND_CMP_SYNTH].f[i];
        const uint64_t *ka, *ca, *kb, *cb;
        size_t na = nd_eval_hist(e, ND_EVAL_REAL, "", i, &ka, &ca);
        size_t nb = nd_eval_hist(e, ND_EVAL_SYNTH, "", i, &kb, &cb);
        if (!na && !nb)
            continue;
        fprintf(f, "<div class='card'><b>%s</b>%s &nbsp; ", nd_eval_features[i].name,
                nd_eval_features[i].aggregate ? "" : " (not in means)");
        if (x->defined && all->cmp[ND_CMP_SYNTH].present)
            fprintf(f, "JSD %.3f TVD %.3f HEL %.3f", x->m.jsd, x->m.tvd, x->m.hel);
        const nd_eval_fcmp *fl = &all->cmp[ND_CMP_FLOOR].f[i];
        if (fl->defined && all->cmp[ND_CMP_FLOOR].present)
            fprintf(f, " (floor %.3f)", fl->m.jsd);
        fprintf(f, "<div class='doc'>%s; n = %" PRIu64 " / %" PRIu64 "</div>\n",
                nd_eval_features[i].doc, x->n_a, x->n_b);
        nd_svg_hist(f, i, ka, ca, na, kb, cb, nb);
        fputs("</div>\n", f);
    }
    fputs("</div>\n", f);

    fputs("<h2>Validity</h2>\n<table><tr><th>check</th>", f);
    for (int s = 0; s < ND_EVAL_SIDES; s++)
        if (r->valid[s].packets)
            fprintf(f, "<th>%s failed</th><th>%s unverifiable</th>", nd_eval_side_names[s],
                    nd_eval_side_names[s]);
    fputs("</tr>\n<tr><td>packets / invalid</td>", f);
    for (int s = 0; s < ND_EVAL_SIDES; s++)
        if (r->valid[s].packets)
            fprintf(f, "<td>%" PRIu64 "</td><td>%" PRIu64 " invalid</td>", r->valid[s].packets,
                    r->valid[s].invalid);
    fputs("</tr>\n", f);
    for (int c = 0; c < ND_V_COUNT; c++) {
        fprintf(f, "<tr><td>%s</td>", nd_valid_check_names[c]);
        for (int s = 0; s < ND_EVAL_SIDES; s++)
            if (r->valid[s].packets)
                fprintf(f, "<td>%" PRIu64 "</td><td>%" PRIu64 "</td>", r->valid[s].bad[c],
                        r->valid[s].unverified[c]);
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);

    const nd_eval_memo *m = &r->memo;
    fprintf(f, "<h2>Memorization</h2>\n<p>Distance of each flow to its nearest training flow "
               "(share of differing cells over the first %d packets and %d header columns; "
               "training = %s).</p>\n",
            r->mem_packets, nd_fp_columns(), m->train_is_split ? "real half A" : "--train");
    if (m->present) {
        fputs("<table><tr><th></th><th>flows</th><th>min</th><th>p5</th><th>median</th>"
              "<th>mean</th><th>p95</th><th>exact copies</th></tr>\n",
              f);
        const nd_eval_memo_stats *st[2] = {&m->synth, &m->heldout};
        const char *nm[2] = {"synth", "held-out real"};
        for (int k = 0; k < 2; k++)
            fprintf(f, "<tr><td>%s</td><td>%" PRIu64 "</td><td>%.4f</td><td>%.4f</td>"
                       "<td>%.4f</td><td>%.4f</td><td>%.4f</td><td>%" PRIu64 "</td></tr>\n",
                    nm[k], st[k]->n, st[k]->min, st[k]->p5, st[k]->median, st[k]->mean,
                    st[k]->p95, st[k]->exact);
        fprintf(f, "</table>\n<p>Flows at or below the held-out 5th percentile: synth %.1f%%, "
                   "held-out %.1f%% (a generator that copies its training data: synth much "
                   "higher).</p>\n",
                100 * m->below_heldout_p5, 100 * m->heldout_below_p5);
    } else {
        fputs("<p>Not computed: no training or no synthetic flows.</p>\n", f);
    }
    fputs("</body></html>\n", f);
    if (ferror(f))
        return nd_fail(err, ND_EIO, "cannot write the HTML report");
    return ND_OK;
}
