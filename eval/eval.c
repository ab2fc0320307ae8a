/* eval/eval.c - the evaluation context: sides, classes, the REAL split,
 * and the report (comparisons, validity, memorization). */
#include "eval/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const nd_eval_side_names[ND_EVAL_SIDES] = {"real", "synth", "random", "train"};
const char *const nd_eval_cmp_names[ND_CMP_COUNT] = {"synth", "floor", "random"};

/* Slots: the four sides, then REAL's halves A and B. */
enum { SLOT_A = ND_EVAL_SIDES, SLOT_B, SLOT_COUNT };

typedef struct cls {
    char label[64];
    nd_hmap h[ND_EVAL_NFEAT];
    uint64_t flows, packets;
} cls;

typedef struct slot {
    cls *c;                  /* c[0]: all flows                   */
    int n, cap;
} slot;

typedef struct fpset {
    uint64_t *fp;            /* n fingerprints                    */
    uint8_t *half;           /* REAL only: 0 = A, 1 = B            */
    size_t n, cap;
} fpset;

struct nd_eval {
    nd_eval_opts o;
    slot s[SLOT_COUNT];
    nd_valid_counts valid[ND_EVAL_SIDES];
    fpset fps[ND_EVAL_SIDES];
    struct { uint32_t *v; size_t n, cap; } lens[ND_EVAL_SIDES];
    nd_featvec scratch;
    uint64_t *fp_scratch;
    /* REAL's split: flows of a class go in pairs; a coin decides which of a
     * pair goes to A, so halves are balanced within one flow per class. */
    struct { char label[64]; uint64_t k; int first; } *split;
    int n_split, cap_split;
    nd_eval_report rep;
    nd_labeler *labeler;
};

void nd_eval_opts_init(nd_eval_opts *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->mem_packets = 16;
    o->max_packets = 1024;
    o->idle_timeout = 0;
    o->labels_csv = NULL;
    o->per_class = true;
}

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return h;
}

nd_status nd_eval_new(const nd_eval_opts *o, nd_eval **out, nd_err *err)
{
    *out = NULL;
    nd_eval_opts def;
    if (!o) {
        nd_eval_opts_init(&def);
        o = &def;
    }
    if (o->mem_packets < 1 || o->mem_packets > 1024)
        return nd_fail(err, ND_EINVAL, "memorization packets %d out of range 1..1024",
                       o->mem_packets);
    if (o->max_packets < 1)
        return nd_fail(err, ND_EINVAL, "packets per flow %d must be positive", o->max_packets);
    nd_eval *e = calloc(1, sizeof *e);
    if (!e)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    e->o = *o;
    e->fp_scratch = malloc(nd_fp_size(o->mem_packets) * sizeof *e->fp_scratch);
    if (!e->fp_scratch) {
        free(e);
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    *out = e;
    return ND_OK;
}

static void free_report(nd_eval_report *r)
{
    free(r->scopes);
    memset(r, 0, sizeof *r);
}

void nd_eval_free(nd_eval *e)
{
    if (!e)
        return;
    for (int s = 0; s < SLOT_COUNT; s++) {
        for (int c = 0; c < e->s[s].n; c++)
            for (int f = 0; f < ND_EVAL_NFEAT; f++)
                nd_hmap_free(&e->s[s].c[c].h[f]);
        free(e->s[s].c);
    }
    for (int s = 0; s < ND_EVAL_SIDES; s++) {
        free(e->lens[s].v);
        free(e->fps[s].fp);
        free(e->fps[s].half);
    }
    free(e->scratch.v);
    free(e->fp_scratch);
    free(e->split);
    free_report(&e->rep);
    if (e->labeler)
        nd_labeler_free(e->labeler);
    free(e);
}

/* Class c of slot s, created when asked; NULL when out of memory. label ""
 * is the all-flows class 0. */
static cls *get_cls(slot *s, const char *label, bool create)
{
    if (s->n == 0) {
        if (!create)
            return NULL;
        s->c = calloc(4, sizeof *s->c);
        if (!s->c)
            return NULL;
        s->cap = 4;
        s->n = 1;
    }
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->c[i].label, label))
            return &s->c[i];
    if (!create)
        return NULL;
    if (s->n == s->cap) {
        cls *nc = realloc(s->c, (size_t)s->cap * 2 * sizeof *nc);
        if (!nc)
            return NULL;
        s->c = nc;
        s->cap *= 2;
    }
    cls *c = &s->c[s->n++];
    memset(c, 0, sizeof *c);
    snprintf(c->label, sizeof c->label, "%s", label);
    return c;
}

static bool add_vals(cls *c, const nd_featvec *v, int packets)
{
    for (size_t i = 0; i < v->n; i++)
        if (!nd_hmap_add(&c->h[v->v[i].f], v->v[i].key, 1))
            return false;
    c->flows++;
    c->packets += (uint64_t)packets;
    return true;
}

static int split_half(nd_eval *e, const char *label)
{
    int i;
    for (i = 0; i < e->n_split; i++)
        if (!strcmp(e->split[i].label, label))
            break;
    if (i == e->n_split) {
        if (e->n_split == e->cap_split) {
            int nc = e->cap_split ? 2 * e->cap_split : 16;
            void *p = realloc(e->split, (size_t)nc * sizeof *e->split);
            if (!p)
                return -1;
            e->split = p;
            e->cap_split = nc;
        }
        memset(&e->split[i], 0, sizeof e->split[i]);
        snprintf(e->split[i].label, sizeof e->split[i].label, "%s", label);
        e->n_split++;
    }
    uint64_t k = e->split[i].k++;
    if (k % 2 == 0)
        e->split[i].first = (int)(mix64(e->o.seed ^ str_hash(label) ^ mix64(k / 2)) & 1);
    return k % 2 == 0 ? e->split[i].first : !e->split[i].first;
}

static bool push_fp(fpset *s, const uint64_t *fp, size_t words, int half)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        uint64_t *nf = realloc(s->fp, nc * words * sizeof *nf);
        if (!nf)
            return false;
        s->fp = nf;
        uint8_t *nh = realloc(s->half, nc);
        if (!nh)
            return false;
        s->half = nh;
        s->cap = nc;
    }
    memcpy(s->fp + s->n * words, fp, words * sizeof *fp);
    s->half[s->n++] = (uint8_t)half;
    return true;
}

static nd_status add_flow(nd_eval *e, nd_eval_side side, const nd_flow *f, bool check,
                          nd_err *err);

nd_status nd_eval_add_flow(nd_eval *e, nd_eval_side side, const nd_flow *f, nd_err *err)
{
    return add_flow(e, side, f, true, err);
}

nd_status nd_eval_add_flow_unchecked(nd_eval *e, nd_eval_side side, const nd_flow *f,
                                     nd_err *err)
{
    return add_flow(e, side, f, false, err);
}

void nd_eval_count_packet(nd_eval *e, nd_eval_side side, const uint8_t *l3, uint32_t caplen,
                          uint32_t wirelen)
{
    if ((int)side >= 0 && side < ND_EVAL_SIDES)
        nd_valid_count(&e->valid[side], l3, caplen, wirelen);
}

static nd_status add_flow(nd_eval *e, nd_eval_side side, const nd_flow *f, bool check,
                          nd_err *err)
{
    if ((int)side < 0 || side >= ND_EVAL_SIDES)
        return nd_fail(err, ND_EINVAL, "no side %d", (int)side);
    if (f->n <= 0)
        return ND_OK;
    e->scratch.n = 0;
    if (!nd_eval_extract(f, &e->scratch, check ? &e->valid[side] : NULL))
        return nd_fail(err, ND_ENOMEM, "out of memory for flow features");
    const char *label = f->label;
    bool labelled = e->o.per_class && label[0];
    int half = 0;
    int targets[2] = {side, -1};
    if (side == ND_EVAL_REAL) {
        half = split_half(e, label);
        if (half < 0)
            return nd_fail(err, ND_ENOMEM, "out of memory");
        targets[1] = half ? SLOT_B : SLOT_A;
    }
    for (int t = 0; t < 2; t++) {
        if (targets[t] < 0 || targets[t] == ND_EVAL_TRAIN)
            continue; /* TRAIN is only for memorization */
        slot *s = &e->s[targets[t]];
        cls *all = get_cls(s, "", true);
        if (!all || !add_vals(all, &e->scratch, f->n))
            return nd_fail(err, ND_ENOMEM, "out of memory for histograms");
        if (labelled) {
            cls *c = get_cls(s, label, true);
            if (!c || !add_vals(c, &e->scratch, f->n))
                return nd_fail(err, ND_ENOMEM, "out of memory for histograms");
        }
    }
    if (side != ND_EVAL_RANDOM) {
        nd_fp_make(f, e->o.mem_packets, e->fp_scratch);
        if (!push_fp(&e->fps[side], e->fp_scratch, nd_fp_size(e->o.mem_packets), half))
            return nd_fail(err, ND_ENOMEM, "out of memory for fingerprints");
    }
    if (e->lens[side].n == e->lens[side].cap) {
        size_t nc = e->lens[side].cap ? 2 * e->lens[side].cap : 256;
        uint32_t *nv = realloc(e->lens[side].v, nc * sizeof *nv);
        if (!nv)
            return nd_fail(err, ND_ENOMEM, "out of memory");
        e->lens[side].v = nv;
        e->lens[side].cap = nc;
    }
    e->lens[side].v[e->lens[side].n++] = (uint32_t)f->n;
    e->rep.flows[side]++;
    e->rep.packets[side] += (uint64_t)f->n;
    return ND_OK;
}

uint64_t nd_eval_flows(const nd_eval *e, nd_eval_side side)
{
    return side < ND_EVAL_SIDES ? e->rep.flows[side] : 0;
}

int nd_eval_flow_packets(const nd_eval *e, nd_eval_side side, uint64_t i)
{
    if ((int)side < 0 || side >= ND_EVAL_SIDES || i >= e->lens[side].n)
        return 0;
    return (int)e->lens[side].v[i];
}

size_t nd_eval_hist(const nd_eval *ce, int side, const char *label, int f, const uint64_t **keys,
                    const uint64_t **counts)
{
    nd_eval *e = (nd_eval *)ce; /* the sorted view is a cache */
    *keys = *counts = NULL;
    if (side < 0 || side >= SLOT_COUNT || f < 0 || f >= ND_EVAL_NFEAT)
        return 0;
    cls *c = get_cls(&e->s[side], label ? label : "", false);
    if (!c || !nd_hmap_sorted(&c->h[f]))
        return 0;
    *keys = c->h[f].skey;
    *counts = c->h[f].scnt;
    return c->h[f].sn;
}

/* ---------------------------------------------------------------- report */

static nd_status compare(cls *a, cls *b, nd_eval_cmp *out, nd_err *err)
{
    memset(out, 0, sizeof *out);
    if (!a || !b || !a->flows || !b->flows)
        return ND_OK;
    out->present = true;
    out->flows_a = a->flows;
    out->flows_b = b->flows;
    nd_eval_metric sum = {0, 0, 0}, gsum[ND_EG_COUNT] = {{0, 0, 0}};
    for (int f = 0; f < ND_EVAL_NFEAT; f++) {
        nd_hmap *ha = &a->h[f], *hb = &b->h[f];
        if (!nd_hmap_sorted(ha) || !nd_hmap_sorted(hb))
            return nd_fail(err, ND_ENOMEM, "out of memory");
        nd_eval_fcmp *fc = &out->f[f];
        fc->n_a = ha->total;
        fc->n_b = hb->total;
        fc->defined = ha->total || hb->total;
        if (!fc->defined)
            continue;
        size_t n = ha->sn + hb->sn;
        double *p = malloc(2 * n * sizeof *p);
        if (!p)
            return nd_fail(err, ND_ENOMEM, "out of memory");
        fc->m = nd_eval_distances_sparse(ha->skey, ha->scnt, ha->sn, hb->skey, hb->scnt, hb->sn,
                                         p, p + n);
        free(p);
        if (!nd_eval_features[f].aggregate)
            continue;
        int g = nd_eval_features[f].group;
        sum.jsd += fc->m.jsd, sum.tvd += fc->m.tvd, sum.hel += fc->m.hel;
        gsum[g].jsd += fc->m.jsd, gsum[g].tvd += fc->m.tvd, gsum[g].hel += fc->m.hel;
        out->n_mean++;
        out->group_n[g]++;
    }
    if (out->n_mean)
        out->mean = (nd_eval_metric){sum.jsd / out->n_mean, sum.tvd / out->n_mean,
                                     sum.hel / out->n_mean};
    for (int g = 0; g < ND_EG_COUNT; g++)
        if (out->group_n[g])
            out->group_mean[g] = (nd_eval_metric){
                gsum[g].jsd / out->group_n[g], gsum[g].tvd / out->group_n[g],
                gsum[g].hel / out->group_n[g]};
    return ND_OK;
}

static int cmp_label(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Lower nearest-rank percentile of sorted values. */
static double pct(const double *v, size_t n, double q)
{
    return n ? v[(size_t)floor(q * (double)(n - 1))] : 0;
}

static void stats_of(double *d, size_t n, nd_eval_memo_stats *st)
{
    memset(st, 0, sizeof *st);
    st->n = n;
    if (!n)
        return;
    qsort(d, n, sizeof *d, cmp_double);
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        s += d[i];
        st->exact += d[i] == 0;
    }
    st->min = d[0];
    st->p5 = pct(d, n, 0.05);
    st->median = pct(d, n, 0.5);
    st->p95 = pct(d, n, 0.95);
    st->mean = s / (double)n;
}

/* Nearest-train distance of every query fingerprint (those with
 * half == want_half, or all when want_half < 0), into d; returns count. */
static size_t nearest(const nd_eval *e, const fpset *q, int want_half, const fpset *t,
                      int train_half, double *d)
{
    size_t words = nd_fp_size(e->o.mem_packets), m = 0;
    double denom = (double)e->o.mem_packets * nd_fp_columns();
    for (size_t i = 0; i < q->n; i++) {
        if (want_half >= 0 && q->half[i] != want_half)
            continue;
        uint64_t best = UINT64_MAX;
        for (size_t j = 0; j < t->n && best; j++) {
            if (train_half >= 0 && t->half[j] != train_half)
                continue;
            uint64_t dd = nd_fp_diff(q->fp + i * words, t->fp + j * words, e->o.mem_packets, best);
            if (dd < best)
                best = dd;
        }
        d[m++] = best == UINT64_MAX ? 1.0 : (double)best / denom;
    }
    return m;
}

static nd_status memo(nd_eval *e, nd_eval_memo *m, nd_err *err)
{
    memset(m, 0, sizeof *m);
    const fpset *real = &e->fps[ND_EVAL_REAL], *syn = &e->fps[ND_EVAL_SYNTH];
    const fpset *train = &e->fps[ND_EVAL_TRAIN];
    m->train_is_split = train->n == 0;
    int th = m->train_is_split ? 0 : -1;   /* train: half A, or all of TRAIN */
    int hh = m->train_is_split ? 1 : -1;   /* held-out: half B, or all of REAL */
    const fpset *tr = m->train_is_split ? real : train;
    for (size_t j = 0; j < tr->n; j++)
        m->n_train += th < 0 || tr->half[j] == th;
    if (!m->n_train || !syn->n)
        return ND_OK;
    m->present = true;
    double *d = malloc((syn->n + real->n + 1) * sizeof *d);
    if (!d)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    size_t ns = nearest(e, syn, -1, tr, th, d);
    size_t nh = nearest(e, real, hh, tr, th, d + ns);
    stats_of(d + ns, nh, &m->heldout);
    stats_of(d, ns, &m->synth);
    uint64_t below = 0, hbelow = 0;
    for (size_t i = 0; i < ns; i++)
        below += nh && d[i] <= m->heldout.p5;
    for (size_t i = 0; i < nh; i++)
        hbelow += d[ns + i] <= m->heldout.p5;
    m->below_heldout_p5 = ns ? (double)below / (double)ns : 0;
    m->heldout_below_p5 = nh ? (double)hbelow / (double)nh : 0;
    free(d);
    return ND_OK;
}

nd_status nd_eval_finish(nd_eval *e, const nd_eval_report **out, nd_err *err)
{
    nd_eval_report *r = &e->rep;
    free(r->scopes);
    r->scopes = NULL;
    r->n_scopes = 0;
    /* classes named on REAL or SYNTH; per class only when both are labelled */
    slot *re = &e->s[ND_EVAL_REAL], *sy = &e->s[ND_EVAL_SYNTH];
    bool both = re->n > 1 && sy->n > 1;
    int maxc = 1 + (both ? re->n + sy->n : 0);
    const char **labels = malloc((size_t)maxc * sizeof *labels);
    r->scopes = calloc((size_t)maxc, sizeof *r->scopes);
    if (!labels || !r->scopes) {
        free(labels);
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    int nl = 0;
    r->n_real_only = r->n_synth_only = 0;
    if (both) {
        for (int i = 1; i < re->n; i++) {
            if (get_cls(sy, re->c[i].label, false))
                labels[nl++] = re->c[i].label;
            else
                r->n_real_only++;
        }
        for (int i = 1; i < sy->n; i++)
            r->n_synth_only += !get_cls(re, sy->c[i].label, false);
        qsort(labels, (size_t)nl, sizeof *labels, cmp_label);
    }
    nd_status st = ND_OK;
    for (int i = 0; i <= nl && st == ND_OK; i++) {
        const char *lab = i == 0 ? "" : labels[i - 1];
        nd_eval_scope *sc = &r->scopes[r->n_scopes++];
        snprintf(sc->label, sizeof sc->label, "%s", lab);
        cls *rc = get_cls(re, lab, false), *sc_syn = get_cls(sy, lab, false);
        sc->flows_real = rc ? rc->flows : 0;
        sc->flows_synth = sc_syn ? sc_syn->flows : 0;
        cls *rnd = get_cls(&e->s[ND_EVAL_RANDOM], lab, false);
        if (!rnd)
            rnd = get_cls(&e->s[ND_EVAL_RANDOM], "", false);
        st = compare(rc, get_cls(sy, lab, false), &sc->cmp[ND_CMP_SYNTH], err);
        if (st == ND_OK)
            st = compare(get_cls(&e->s[SLOT_A], lab, false), get_cls(&e->s[SLOT_B], lab, false),
                         &sc->cmp[ND_CMP_FLOOR], err);
        if (st == ND_OK)
            st = compare(rc, rnd, &sc->cmp[ND_CMP_RANDOM], err);
    }
    free(labels);
    if (st != ND_OK)
        return st;
    memcpy(r->valid, e->valid, sizeof r->valid);
    r->mem_packets = e->o.mem_packets;
    r->seed = e->o.seed;
    st = memo(e, &r->memo, err);
    if (st == ND_OK && out)
        *out = r;
    return st;
}

const nd_eval_report *nd_eval_report_of(const nd_eval *e) { return &e->rep; }
nd_labeler **nd_eval_labeler_slot(nd_eval *e) { return &e->labeler; }
const nd_eval_opts *nd_eval_opts_of(const nd_eval *e) { return &e->o; }
