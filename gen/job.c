/* gen/job.c - a job: draw, snap, repair, hand each flow to the sinks. */
#include "gen/gen.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

void nd_gen_job_init(nd_gen_job *j)
{
    memset(j, 0, sizeof *j);
    j->linktype = ND_LINKTYPE_ETHERNET;
    j->max_flows = 1000000;
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
    return ND_OK;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
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
    int8_t *bits = malloc(npx);
    float *conf = malloc(npx * sizeof(float));
    float *row_conf = malloc((size_t)l->packets * (size_t)nd_row_width(0) * sizeof(float));
    nd_draw_req *req = malloc((size_t)d->max_batch * sizeof *req);
    nd_repair_ctx *rc = NULL;
    nd_status st = ND_OK;
    if (!planar || !bits || !conf || !row_conf || !req) {
        st = nd_fail(err, ND_ENOMEM, "out of memory for a batch of %d images", d->max_batch);
        goto done;
    }
    nd_repair_opts ro;
    nd_repair_opts_init(&ro);
    ro.seed = job->seed;
    ro.linktype = job->linktype;
    if (job->start_us)
        ro.start_us = job->start_us;
    if ((st = nd_repair_ctx_new(&ro, &rc, err)))
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
            while (in_item >= job->items[item].count) {
                item++;
                in_item = 0;
            }
            const nd_class *c = nd_class_table_find(t, job->items[item].cls);
            if (!c) {
                st = nd_fail(err, ND_EINVAL, "unknown class '%s'", job->items[item].cls);
                goto done;
            }
            uint64_t fi = k + (uint64_t)n;
            req[n].cls = c;
            req[n].flow_index = fi;
            req[n].seed = nd_gen_flow_seed(job->seed, fi);
            /* templates in turn, so a class's flows follow all its templates */
            req[n].template_index = c->n_templates ? (int)(in_item % (uint64_t)c->n_templates) : -1;
            in_item++;
            n++;
        }
        double t0 = now_s();
        if ((st = d->draw(d->ctx, req, n, planar, err)))
            break;
        double t1 = now_s();
        stats->seconds_draw += t1 - t0;
        for (int i = 0; i < n && !st; i++) {
            nd_snap_planar_f32(ND_SNAP_NEAREST, planar + (size_t)i * npx * 3, npx, bits, conf);
            nd_rows rows;
            if ((st = nd_rows_from_bits(l, bits, &rows, err)))
                break;
            nd_repair_conf_from_image(l, conf, rows.n, 0, row_conf);
            nd_repair_out out;
            nd_repair_counts counts;
            memset(&counts, 0, sizeof counts);
            st = nd_repair_flow(rc, &rows, row_conf, &req[i].cls->stats, req[i].flow_index, &out,
                                &counts, err);
            nd_rows_free(&rows);
            if (st)
                break;
            uint64_t bytes = 0;
            for (int p = 0; p < out.n; p++)
                bytes += out.pkts[p].len;
            nd_gen_flow gf = {req[i].flow_index, req[i].cls, req[i].seed, &out, &counts, bytes};
            for (int s = 0; s < n_sinks && !st; s++)
                st = sinks[s].flow(sinks[s].ctx, &gf, err);
            if (st)
                break;
            stats->flows++;
            stats->packets += (uint64_t)out.n;
            stats->bytes += bytes;
            nd_repair_counts_add(&stats->counts, &counts);
            if (progress)
                progress(progress_ctx, stats->flows, total);
        }
        k += (uint64_t)n;
        stats->seconds_post += now_s() - t1;
    }
done:
    nd_repair_ctx_free(rc);
    free(planar);
    free(bits);
    free(conf);
    free(row_conf);
    free(req);
    return st;
}
