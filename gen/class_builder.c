/* gen/class_builder.c - a class table from labelled captures. */
#include "gen/gen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void nd_class_build_opts_init(nd_class_build_opts *o)
{
    memset(o, 0, sizeof *o);
    nd_layout_netdiffusion(&o->layout, 1024);
    o->templates = 4;
    o->min_flows = 5;
    o->min_template_packets = 8;
    o->prompt_format = "pixelated network data, type-%d";
}

typedef struct {
    uint8_t proto;
    uint16_t port;
    uint64_t flows;
} port_count;

typedef struct {
    nd_rows rows;
    int n;                 /* packets, for ranking */
    uint64_t order;        /* arrival order: ties go to the earlier flow */
} template_flow;

typedef struct {
    char name[ND_CLASS_NAME_MAX];
    uint64_t flows, packets, proto_flows[3], v6_flows;
    port_count *ports;
    int n_ports, cap_ports;
    template_flow *tpl[3]; /* per transport (TCP, UDP, other): best first, at most opts.templates */
    int n_tpl[3];
    nd_class_stats stats;
} class_acc;

struct nd_class_builder {
    nd_class_build_opts o;
    class_acc *c;
    int n, cap;
    uint64_t order;
};

nd_status nd_class_builder_new(const nd_class_build_opts *o, nd_class_builder **out, nd_err *err)
{
    *out = NULL;
    if (o->templates < 0 || o->templates > ND_CLASS_MAX_TEMPLATES || o->min_flows < 1 ||
        !o->prompt_format || !strstr(o->prompt_format, "%d"))
        return nd_fail(err, ND_EINVAL, "bad class-build options (templates 0..%d, min flows >= 1, "
                       "a prompt format with %%d)", ND_CLASS_MAX_TEMPLATES);
    nd_class_builder *b = calloc(1, sizeof *b);
    if (!b)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    b->o = *o;
    *out = b;
    return ND_OK;
}

static class_acc *acc_for(nd_class_builder *b, const char *name, nd_err *err)
{
    for (int i = 0; i < b->n; i++)
        if (!strcmp(b->c[i].name, name))
            return &b->c[i];
    if (b->n == b->cap) {
        int nc = b->cap ? b->cap * 2 : 16;
        class_acc *v = realloc(b->c, (size_t)nc * sizeof *v);
        if (!v) {
            nd_fail(err, ND_ENOMEM, "out of memory");
            return NULL;
        }
        b->c = v;
        b->cap = nc;
    }
    class_acc *a = &b->c[b->n++];
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    nd_class_stats_clear(&a->stats);
    return a;
}

static nd_status add_port(class_acc *a, uint8_t proto, uint16_t port, nd_err *err)
{
    for (int i = 0; i < a->n_ports; i++)
        if (a->ports[i].port == port && a->ports[i].proto == proto) {
            a->ports[i].flows++;
            return ND_OK;
        }
    if (a->n_ports == a->cap_ports) {
        int nc = a->cap_ports ? a->cap_ports * 2 : 16;
        port_count *v = realloc(a->ports, (size_t)nc * sizeof *v);
        if (!v)
            return nd_fail(err, ND_ENOMEM, "out of memory");
        a->ports = v;
        a->cap_ports = nc;
    }
    a->ports[a->n_ports++] = (port_count){proto, port, 1};
    return ND_OK;
}

static int transport_index(int proto)
{
    return proto == 6 ? 0 : proto == 17 ? 1 : 2;
}

/* Keeps the flow as a template candidate if it ranks among the best of its
 * transport (most packets, earliest on ties). */
static nd_status consider_template(nd_class_builder *b, class_acc *a, const nd_flow *f,
                                   nd_err *err)
{
    int k = b->o.templates, t = transport_index(f->proto);
    if (k == 0 || f->n < b->o.min_template_packets)
        return ND_OK;
    template_flow *tp = a->tpl[t];
    if (!tp) {
        tp = a->tpl[t] = calloc((size_t)k, sizeof *tp);
        if (!tp)
            return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    int pos = a->n_tpl[t];
    while (pos > 0 && tp[pos - 1].n < f->n)
        pos--;
    if (pos >= k)
        return ND_OK;
    nd_rows rows;
    nd_status st = nd_flow_rows(f, 0, &rows, err);
    if (st)
        return st;
    if (a->n_tpl[t] == k) {
        nd_rows_free(&tp[k - 1].rows);
        a->n_tpl[t]--;
    }
    memmove(&tp[pos + 1], &tp[pos], (size_t)(a->n_tpl[t] - pos) * sizeof *tp);
    tp[pos] = (template_flow){rows, f->n, b->order};
    a->n_tpl[t]++;
    return ND_OK;
}

static bool better(const template_flow *x, const template_flow *y)
{
    return x->n > y->n || (x->n == y->n && x->order < y->order);
}

/* The class's templates, best first: its fullest real flows, except that
 * every transport carrying at least 15% of its flows gets its fullest flow
 * in. A class drawn by img2img only makes flows of its templates'
 * transport: youtube's, zoom's and D-Link camera's fullest flows are all
 * UDP, and without this none of their TCP flows (a fifth to a half of
 * them) was ever drawn. */
static int pick_templates(const nd_class_builder *b, const class_acc *a,
                          const template_flow **pick)
{
    int k = b->o.templates, n = 0, next[3] = {0, 0, 0};
    for (int t = 0; t < 3 && n < k; t++)
        if (a->n_tpl[t] > 0 && (double)a->proto_flows[t] >= 0.15 * (double)a->flows) {
            pick[n++] = &a->tpl[t][0];
            next[t] = 1;
        }
    while (n < k) { /* the rest by packets, across transports */
        int bt = -1;
        for (int t = 0; t < 3; t++)
            if (next[t] < a->n_tpl[t] &&
                (bt < 0 || better(&a->tpl[t][next[t]], &a->tpl[bt][next[bt]])))
                bt = t;
        if (bt < 0)
            break;
        pick[n++] = &a->tpl[bt][next[bt]++];
    }
    for (int i = 1; i < n; i++) /* best first */
        for (int j = i; j > 0 && better(pick[j], pick[j - 1]); j--) {
            const template_flow *x = pick[j];
            pick[j] = pick[j - 1];
            pick[j - 1] = x;
        }
    return n;
}

nd_status nd_class_builder_add_flow(nd_class_builder *b, const nd_flow *f, nd_err *err)
{
    if (!f->label[0] || f->n == 0)
        return ND_OK;
    class_acc *a = acc_for(b, f->label, err);
    if (!a)
        return ND_ENOMEM;
    b->order++;
    a->flows++;
    a->packets += (uint64_t)f->n;
    a->proto_flows[transport_index(f->proto)]++;
    a->v6_flows += f->ipver == 6;
    nd_class_stats_add_flow(&a->stats, f);
    nd_status st = ND_OK;
    if (f->proto == 6 || f->proto == 17)
        st = add_port(a, f->proto, f->port[1], err);
    if (!st)
        st = consider_template(b, a, f, err);
    return st;
}

static nd_status sink(void *ctx, const nd_flow *f, nd_err *err)
{
    return nd_class_builder_add_flow(ctx, f, err);
}

nd_status nd_class_builder_add_capture(nd_class_builder *b, const char *path,
                                       const nd_flow_opts *fo, nd_err *err)
{
    nd_flow_opts o = *fo;
    if (o.max_packets > b->o.layout.packets)
        o.max_packets = b->o.layout.packets;
    return nd_flows_from_capture(path, &o, sink, b, NULL, err);
}

static int cmp_acc(const void *x, const void *y)
{
    return strcmp(((const class_acc *)x)->name, ((const class_acc *)y)->name);
}

static int cmp_port(const void *x, const void *y)
{
    const port_count *a = x, *b = y;
    if (a->flows != b->flows)
        return a->flows > b->flows ? -1 : 1;
    if (a->proto != b->proto)
        return a->proto < b->proto ? -1 : 1;
    return a->port < b->port ? -1 : a->port > b->port;
}

static nd_status mkdirs(const char *dir, nd_err *err)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0777) && errno != EEXIST)
                return nd_fail(err, ND_EIO, "%s: %s", p, strerror(errno));
            *s = '/';
        }
    if (mkdir(p, 0777) && errno != EEXIST)
        return nd_fail(err, ND_EIO, "%s: %s", p, strerror(errno));
    return ND_OK;
}

/* template_dir relative to table_dir when it lies below it. */
static const char *relative_to(const char *path, const char *base)
{
    size_t n = strlen(base);
    if (n && !strncmp(path, base, n) && path[n] == '/')
        return path + n + 1;
    return path;
}

nd_status nd_class_builder_finish(nd_class_builder *b, const char *table_dir,
                                  const char *template_dir, nd_class_table *out, char *skipped,
                                  size_t skipped_n, nd_err *err)
{
    memset(out, 0, sizeof *out);
    if (skipped && skipped_n)
        skipped[0] = '\0';
    qsort(b->c, (size_t)b->n, sizeof *b->c, cmp_acc);
    int keep = 0;
    for (int i = 0; i < b->n; i++)
        keep += b->c[i].flows >= (uint64_t)b->o.min_flows;
    if (keep == 0)
        return nd_fail(err, ND_EINVAL, "no class has %d or more labelled flows", b->o.min_flows);
    nd_status st = ND_OK;
    if (b->o.templates > 0 && (st = mkdirs(template_dir, err)))
        return st;
    out->v = calloc((size_t)keep, sizeof *out->v);
    uint8_t *rgb = malloc((size_t)b->o.layout.width * (size_t)b->o.layout.packets * 3);
    if (!out->v || !rgb) {
        free(out->v);
        free(rgb);
        out->v = NULL;
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    out->layout = b->o.layout;
    snprintf(out->dir, sizeof out->dir, "%s", table_dir);
    for (int i = 0; i < b->n && !st; i++) {
        class_acc *a = &b->c[i];
        if (a->flows < (uint64_t)b->o.min_flows) {
            if (skipped) {
                size_t l = strlen(skipped);
                snprintf(skipped + l, skipped_n - l, "%s%s: %llu flows", l ? "\n" : "", a->name,
                         (unsigned long long)a->flows);
            }
            continue;
        }
        nd_class *c = &out->v[out->n];
        snprintf(c->name, sizeof c->name, "%s", a->name);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(c->prompt, sizeof c->prompt, b->o.prompt_format, out->n);
#pragma GCC diagnostic pop
        c->flows = a->flows;
        c->packets = a->packets;
        c->mean_packets = (double)a->packets / (double)a->flows;
        for (int k = 0; k < 3; k++)
            c->transport[k] = (double)a->proto_flows[k] / (double)a->flows;
        c->ipv6_share = (double)a->v6_flows / (double)a->flows;
        qsort(a->ports, (size_t)a->n_ports, sizeof *a->ports, cmp_port);
        c->n_ports = a->n_ports < ND_CLASS_TOP_PORTS ? a->n_ports : ND_CLASS_TOP_PORTS;
        for (int k = 0; k < c->n_ports; k++) {
            c->port[k] = a->ports[k].port;
            c->port_proto[k] = a->ports[k].proto;
            c->port_share[k] = (double)a->ports[k].flows / (double)a->flows;
        }
        c->stats = a->stats;
        const template_flow *pick[ND_CLASS_MAX_TEMPLATES];
        int n_pick = pick_templates(b, a, pick);
        for (int k = 0; k < n_pick && !st; k++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s_%d.png", template_dir, a->name, k);
            nd_image_from_rows(&b->o.layout, &pick[k]->rows, rgb);
            st = nd_png_write(path, rgb, b->o.layout.width, b->o.layout.packets, err);
            const char *rel = relative_to(path, table_dir);
            if (strlen(rel) >= sizeof c->templates[k]) {
                st = nd_fail(err, ND_EINVAL, "%s: template path longer than 255 bytes", rel);
                break;
            }
            memcpy(c->templates[k], rel, strlen(rel) + 1);
            c->n_templates = k + 1;
        }
        out->n++;
    }
    free(rgb);
    if (st)
        nd_class_table_free(out);
    return st;
}

void nd_class_builder_free(nd_class_builder *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->n; i++) {
        for (int t = 0; t < 3; t++) {
            for (int k = 0; k < b->c[i].n_tpl[t]; k++)
                nd_rows_free(&b->c[i].tpl[t][k].rows);
            free(b->c[i].tpl[t]);
        }
        free(b->c[i].ports);
    }
    free(b->c);
    free(b);
}
