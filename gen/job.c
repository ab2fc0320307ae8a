/* gen/job.c - a job: draw, snap, repair, hand each flow to the sinks. */
#include "gen/gen.h"
#include "gen/internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

void nd_gen_job_init(nd_gen_job *j)
{
    memset(j, 0, sizeof *j);
    j->linktype = ND_LINKTYPE_ETHERNET;
    j->max_flows = 1000000;
}

void nd_class_stats_of(const nd_class *c, nd_class_stats *s)
{
    *s = c->stats;
    s->n_server_ports = c->n_ports < 8 ? c->n_ports : 8;
    for (int i = 0; i < s->n_server_ports; i++) {
        s->server_port[i] = c->port[i];
        s->server_proto[i] = c->port_proto[i];
    }
}

uint64_t nd_gen_job_total(const nd_gen_job *j)
{
    uint64_t n = 0;
    for (int i = 0; i < j->n_items; i++)
        n += j->items[i].count;
    return n;
}

uint64_t nd_gen_flow_seed(uint64_t s, uint64_t k)
{
    uint64_t z = s ^ (k * 0x9e3779b97f4a7c15ull) ^ 0x6e65746469666664ull; /* "netdiffd" */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    /* 53 bits: a flow's seed survives JSON readers that use doubles */
    return (z ^ (z >> 31)) & ((1ull << 53) - 1);
}

static void known_classes(const nd_class_table *t, char *buf, size_t n)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < t->n && o + 1 < n; i++) {
        int w = snprintf(buf + o, n - o, "%s%s", i ? ", " : "", t->v[i].name);
        if (w < 0 || (size_t)w >= n - o) {
            snprintf(buf + (n > 4 ? n - 4 : 0), n > 4 ? 4 : n, "...");
            break;
        }
        o += (size_t)w;
    }
}

static nd_status add_item(nd_gen_job *j, const char *name, uint64_t count,
                          const nd_class_table *t, nd_err *err)
{
    if (!nd_class_table_find(t, name)) {
        char known[400];
        known_classes(t, known, sizeof known);
        return nd_fail(err, ND_EINVAL, "unknown class '%.60s' (known: %s)", name, known);
    }
    if (count == 0)
        return nd_fail(err, ND_EINVAL, "class '%s': the count must be at least 1", name);
    for (int i = 0; i < j->n_items; i++)
        if (!strcmp(j->items[i].cls, name))
            return nd_fail(err, ND_EINVAL, "class '%s' given twice", name);
    if (j->n_items == ND_GEN_MAX_ITEMS)
        return nd_fail(err, ND_EINVAL, "at most %d classes in one job", ND_GEN_MAX_ITEMS);
    snprintf(j->items[j->n_items].cls, sizeof j->items[0].cls, "%s", name);
    j->items[j->n_items].count = count;
    j->n_items++;
    if (nd_gen_job_total(j) > j->max_flows)
        return nd_fail(err, ND_EINVAL, "%llu flows asked, at most %llu in one job",
                       (unsigned long long)nd_gen_job_total(j), (unsigned long long)j->max_flows);
    return ND_OK;
}

nd_status nd_gen_job_parse(nd_gen_job *j, const char *spec, uint64_t n, const nd_class_table *t,
                           nd_err *err)
{
    if (!spec || !*spec)
        return nd_fail(err, ND_EINVAL, "no class given");
    if (strlen(spec) > 4096)
        return nd_fail(err, ND_EINVAL, "class list too long");
    char buf[4200];
    snprintf(buf, sizeof buf, "%s", spec);
    if (!strchr(buf, '=') && !strchr(buf, ','))
        return add_item(j, buf, n, t, err);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        uint64_t count = n;
        if (eq) {
            *eq = '\0';
            char *end;
            unsigned long long v = strtoull(eq + 1, &end, 10);
            if (*end || !eq[1] || eq[1] == '-' || v > j->max_flows)
                return nd_fail(err, ND_EINVAL, "class '%.60s': bad count '%.20s'", tok, eq + 1);
            count = v;
        }
        nd_status st = add_item(j, tok, count, t, err);
        if (st)
            return st;
    }
    if (j->n_items == 0)
        return nd_fail(err, ND_EINVAL, "no class given in '%.60s'", spec);
    return ND_OK;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

nd_status nd_gen_scratch_init(nd_gen_scratch *s, const nd_layout *l, nd_err *err)
{
    s->row_conf = malloc((size_t)l->packets * (size_t)nd_row_width(0) * sizeof *s->row_conf);
    if (!s->row_conf) {
        nd_gen_scratch_free(s);
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    return ND_OK;
}

void nd_gen_scratch_free(nd_gen_scratch *s)
{
    free(s->row_conf);
    memset(s, 0, sizeof *s);
}

nd_status nd_gen_repair_ctx(const nd_gen_job *job, nd_repair_ctx **rc, nd_err *err)
{
    nd_repair_opts ro;
    nd_repair_opts_init(&ro);
    ro.seed = job->seed;
    ro.linktype = job->linktype;
    if (job->start_us)
        ro.start_us = job->start_us;
    return nd_repair_ctx_new(&ro, rc, err);
}

nd_status nd_gen_post(const nd_layout *l, const float *planar, nd_gen_scratch *s,
                      nd_repair_ctx *rc, const nd_draw_req *req, const nd_gen_sink *sinks,
                      int n_sinks, nd_gen_stats *stats, nd_err *err)
{
    /* pixels straight to rows and cell confidence, in one pass */
    nd_rows rows;
    nd_status st = nd_snap_rows(ND_SNAP_NEAREST, ND_PIX_F32, planar, l, &rows, s->row_conf, err);
    if (st)
        return st;
    nd_repair_out out;
    nd_repair_counts counts;
    memset(&counts, 0, sizeof counts);
    nd_class_stats cstats;
    nd_class_stats_of(req->cls, &cstats);
    st = nd_repair_flow(rc, &rows, s->row_conf, &cstats, req->flow_index, &out, &counts,
                        err);
    nd_rows_free(&rows);
    if (st)
        return st;
    uint64_t bytes = 0;
    for (int p = 0; p < out.n; p++)
        bytes += out.pkts[p].len;
    nd_gen_flow gf = {req->flow_index, req->cls, req->seed, &out, &counts, bytes};
    for (int k = 0; k < n_sinks && !st; k++)
        st = sinks[k].flow(sinks[k].ctx, &gf, err);
    if (st)
        return st;
    stats->flows++;
    stats->packets += (uint64_t)out.n;
    stats->bytes += bytes;
    nd_repair_counts_add(&stats->counts, &counts);
    return ND_OK;
}

nd_status nd_gen_next_req(const nd_gen_job *job, const nd_class_table *t, int *item,
                          uint64_t *in_item, uint64_t k, nd_draw_req *req, nd_err *err)
{
    while (*in_item >= job->items[*item].count) {
        (*item)++;
        *in_item = 0;
    }
    const nd_class *c = nd_class_table_find(t, job->items[*item].cls);
    if (!c)
        return nd_fail(err, ND_EINVAL, "unknown class '%s'", job->items[*item].cls);
    req->cls = c;
    req->flow_index = k;
    req->seed = nd_gen_flow_seed(job->seed, k);
    /* templates in turn, so a class's flows follow all its templates (they
     * are the class's length quantiles); the first one from the job's seed,
     * so that jobs of one flow do not all start from template 0 */
    if (c->n_templates) {
        uint64_t n = (uint64_t)c->n_templates;
        uint64_t first = nd_gen_flow_seed(job->seed, UINT64_MAX - (uint64_t)*item) % n;
        req->template_index = (int)((first + *in_item) % n);
    } else {
        req->template_index = -1;
    }
    (*in_item)++;
    return ND_OK;
}

nd_status nd_gen_run(const nd_gen_job *job, const nd_class_table *t, const nd_drawer *d,
                     const nd_gen_sink *sinks, int n_sinks, nd_gen_progress_fn progress,
                     void *progress_ctx, volatile const int *cancel, nd_gen_stats *stats,
                     nd_err *err)
{
    nd_gen_stats st0;
    if (!stats)
        stats = &st0;
    memset(stats, 0, sizeof *stats);
    const nd_layout *l = &d->layout;
    if (d->max_batch < 1 || l->width != t->layout.width || l->packets < 1)
        return nd_fail(err, ND_EINVAL, "the drawer's images (%d wide) do not fit the class "
                       "table's layout (%d wide)", l->width, t->layout.width);
    uint64_t total = nd_gen_job_total(job);
    size_t npx = (size_t)l->width * (size_t)l->packets;
    float *planar = malloc((size_t)d->max_batch * npx * 3 * sizeof(float));
    nd_draw_req *req = malloc((size_t)d->max_batch * sizeof *req);
    nd_gen_scratch sc = {0};
    nd_repair_ctx *rc = NULL;
    nd_status st = ND_OK;
    if (!planar || !req) {
        st = nd_fail(err, ND_ENOMEM, "out of memory for a batch of %d images", d->max_batch);
        goto done;
    }
    if ((st = nd_gen_scratch_init(&sc, l, err)) || (st = nd_gen_repair_ctx(job, &rc, err)))
        goto done;
    /* flows in job order: every class's flows in turn */
    int item = 0;
    uint64_t in_item = 0, k = 0;
    while (k < total && !st) {
        if (cancel && *cancel) {
            st = nd_fail(err, ND_ECANCELLED, "cancelled after %llu of %llu flows",
                         (unsigned long long)k, (unsigned long long)total);
            break;
        }
        int n = 0;
        while (n < d->max_batch && k + (uint64_t)n < total) {
            if ((st = nd_gen_next_req(job, t, &item, &in_item, k + (uint64_t)n, &req[n], err)))
                goto done;
            n++;
        }
        double t0 = now_s();
        if ((st = d->draw(d->ctx, req, n, planar, err)))
            break;
        double t1 = now_s();
        stats->seconds_draw += t1 - t0;
        for (int i = 0; i < n && !st; i++) {
            st = nd_gen_post(l, planar + (size_t)i * npx * 3, &sc, rc, &req[i], sinks, n_sinks,
                             stats, err);
            if (!st && progress)
                progress(progress_ctx, stats->flows, total);
        }
        k += (uint64_t)n;
        stats->seconds_post += now_s() - t1;
    }
done:
    nd_repair_ctx_free(rc);
    nd_gen_scratch_free(&sc);
    free(planar);
    free(req);
    return st;
}
