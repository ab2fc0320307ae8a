/* eval/out_json.c - the report as JSON (jansson). Numbers are printed with 6
 * significant digits so that the same inputs give the same bytes. */
#include "eval/internal.h"

#include <jansson.h>

static json_t *metric(const nd_eval_metric *m)
{
    return json_pack("{s:f,s:f,s:f}", "jsd", m->jsd, "tvd", m->tvd, "hel", m->hel);
}

static json_t *cmp_json(const nd_eval_cmp *c)
{
    if (!c->present)
        return json_null();
    json_t *o = json_pack("{s:I,s:I,s:i,s:o}", "flows_real", (json_int_t)c->flows_a,
                          "flows_other", (json_int_t)c->flows_b, "n_mean", c->n_mean, "mean",
                          c->n_mean ? metric(&c->mean) : json_null());
    json_t *g = json_object(), *fs = json_object();
    for (int i = 0; i < ND_EG_COUNT; i++)
        if (c->group_n[i])
            json_object_set_new(g, nd_eval_group_names[i], metric(&c->group_mean[i]));
    for (int i = 0; i < ND_EVAL_NFEAT; i++) {
        const nd_eval_fcmp *x = &c->f[i];
        if (!x->defined)
            continue;
        json_object_set_new(fs, nd_eval_features[i].name,
                            json_pack("{s:I,s:I,s:f,s:f,s:f}", "n_real", (json_int_t)x->n_a,
                                      "n_other", (json_int_t)x->n_b, "jsd", x->m.jsd, "tvd",
                                      x->m.tvd, "hel", x->m.hel));
    }
    json_object_set_new(o, "groups", g);
    json_object_set_new(o, "features", fs);
    return o;
}

static json_t *memo_stats(const nd_eval_memo_stats *s)
{
    return json_pack("{s:I,s:f,s:f,s:f,s:f,s:f,s:I}", "flows", (json_int_t)s->n, "min", s->min,
                     "p5", s->p5, "median", s->median, "mean", s->mean, "p95", s->p95, "exact",
                     (json_int_t)s->exact);
}

nd_status nd_eval_write_json(const nd_eval *e, FILE *f, nd_err *err)
{
    const nd_eval_report *r = nd_eval_report_of(e);
    json_t *root = json_object();
    json_object_set_new(
        root, "metrics",
        json_pack("{s:s,s:s,s:s,s:s,s:s}", "jsd",
                  "Jensen-Shannon divergence, log base 2, in [0,1] (scipy "
                  "jensenshannon(p, q, base=2)**2)",
                  "tvd", "total variation distance, 1/2 sum |p-q|", "hel",
                  "Hellinger distance, sqrt(1 - sum sqrt(p q))", "floor",
                  "real flows split in two halves by seed, one against the other", "random",
                  "random bits passed through the repair heuristics"));
    json_object_set_new(root, "seed", json_integer((json_int_t)r->seed));
    json_t *sides = json_object();
    for (int s = 0; s < ND_EVAL_SIDES; s++)
        json_object_set_new(sides, nd_eval_side_names[s],
                            json_pack("{s:I,s:I}", "flows", (json_int_t)r->flows[s], "packets",
                                      (json_int_t)r->packets[s]));
    json_object_set_new(root, "sides", sides);
    json_t *feats = json_array();
    for (int i = 0; i < ND_EVAL_NFEAT; i++)
        json_array_append_new(feats, json_pack("{s:s,s:s,s:b,s:s}", "name",
                                               nd_eval_features[i].name, "group",
                                               nd_eval_group_names[nd_eval_features[i].group],
                                               "aggregate", nd_eval_features[i].aggregate,
                                               "binning", nd_eval_features[i].doc));
    json_object_set_new(root, "features", feats);
    json_t *scopes = json_array();
    for (int i = 0; i < r->n_scopes; i++) {
        const nd_eval_scope *s = &r->scopes[i];
        json_t *o = json_pack("{s:s}", "class", i == 0 ? "*" : s->label);
        for (int k = 0; k < ND_CMP_COUNT; k++)
            json_object_set_new(o, nd_eval_cmp_names[k], cmp_json(&s->cmp[k]));
        json_array_append_new(scopes, o);
    }
    json_object_set_new(root, "scopes", scopes);
    json_object_set_new(root, "classes_real_only", json_integer(r->n_real_only));
    json_object_set_new(root, "classes_synth_only", json_integer(r->n_synth_only));
    json_t *val = json_object();
    for (int s = 0; s < ND_EVAL_SIDES; s++) {
        const nd_valid_counts *v = &r->valid[s];
        if (!v->packets)
            continue;
        json_t *bad = json_object(), *unv = json_object();
        for (int c = 0; c < ND_V_COUNT; c++) {
            json_object_set_new(bad, nd_valid_check_names[c], json_integer((json_int_t)v->bad[c]));
            json_object_set_new(unv, nd_valid_check_names[c],
                                json_integer((json_int_t)v->unverified[c]));
        }
        json_object_set_new(val, nd_eval_side_names[s],
                            json_pack("{s:I,s:I,s:o,s:o}", "packets", (json_int_t)v->packets,
                                      "invalid", (json_int_t)v->invalid, "failed", bad,
                                      "unverified", unv));
    }
    json_object_set_new(root, "validity", val);
    const nd_eval_memo *m = &r->memo;
    json_t *mj = json_pack("{s:b,s:i,s:i,s:s,s:I}", "present", m->present, "packets",
                           r->mem_packets, "columns", nd_fp_columns(), "train",
                           m->train_is_split ? "real half A" : "train", "train_flows",
                           (json_int_t)m->n_train);
    if (m->present) {
        json_object_set_new(mj, "synth", memo_stats(&m->synth));
        json_object_set_new(mj, "heldout", memo_stats(&m->heldout));
        json_object_set_new(mj, "synth_at_or_below_heldout_p5", json_real(m->below_heldout_p5));
        json_object_set_new(mj, "heldout_at_or_below_heldout_p5", json_real(m->heldout_below_p5));
    }
    json_object_set_new(root, "memorization", mj);
    int rc = json_dumpf(root, f, JSON_INDENT(1) | JSON_REAL_PRECISION(6));
    json_decref(root);
    fputc('\n', f);
    if (rc != 0 || ferror(f))
        return nd_fail(err, ND_EIO, "cannot write the JSON report");
    return ND_OK;
}
