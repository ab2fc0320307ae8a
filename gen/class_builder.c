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
    o->templates = 8;
    o->min_flows = 5;
    o->min_template_packets = 1;
    o->prompt_format = "pixelated network data, type-%d";
}

typedef struct {
    uint8_t proto;
    uint16_t port;
    uint64_t flows;
} port_count;

/* A flow that may become a template: its packets and arrival order (the
 * order identifies it when the captures are read again). */
typedef struct {
    int n;
    uint64_t order;
} candidate;

typedef struct {
    uint64_t order;        /* the chosen flow                   */
    nd_rows rows;          /* its packets, from the second read */
    bool found;
} template_flow;

typedef struct {
    char name[ND_CLASS_NAME_MAX];
    uint64_t flows, packets, proto_flows[3], v6_flows;
    port_count *ports;
    int n_ports, cap_ports;
    candidate *cand[3];    /* per transport (TCP, UDP, other): flows long enough */
    int n_cand[3], cap_cand[3];
    template_flow tpl[ND_CLASS_MAX_TEMPLATES]; /* chosen at finish */
    int n_tpl;
    nd_class_stats stats;
} class_acc;

/* A capture as added, read again at finish to fetch the templates' packets. */
typedef struct {
    char *path;
    nd_flow_opts fo;
    nd_status first;       /* what the first read returned */
} capture_ref;

struct nd_class_builder {
    nd_class_build_opts o;
    class_acc *c;
    int n, cap;
    uint64_t order;
    capture_ref *caps;
    int n_caps, cap_caps;
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

static class_acc *find_acc(nd_class_builder *b, const char *name)
{
    for (int i = 0; i < b->n; i++)
        if (!strcmp(b->c[i].name, name))
            return &b->c[i];
    return NULL;
}

static class_acc *acc_for(nd_class_builder *b, const char *name, nd_err *err)
{
    class_acc *found = find_acc(b, name);
    if (found)
        return found;
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

static nd_status add_candidate(nd_class_builder *b, class_acc *a, const nd_flow *f, nd_err *err)
{
    int t = transport_index(f->proto);
    if (b->o.templates == 0 || f->n < b->o.min_template_packets)
        return ND_OK;
    if (a->n_cand[t] == a->cap_cand[t]) {
        int nc = a->cap_cand[t] ? a->cap_cand[t] * 2 : 16;
        candidate *v = realloc(a->cand[t], (size_t)nc * sizeof *v);
        if (!v)
            return nd_fail(err, ND_ENOMEM, "out of memory");
        a->cand[t] = v;
        a->cap_cand[t] = nc;
    }
    a->cand[t][a->n_cand[t]++] = (candidate){f->n, b->order};
    return ND_OK;
}

static int cmp_candidate(const void *x, const void *y)
{
    const candidate *a = x, *b = y;
    if (a->n != b->n)
        return a->n < b->n ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

/* Chooses the class's templates so that drawing them in turn draws flows
 * like the class's: each transport gets slots in proportion to its share
 * of the flows (at least one when it carries 15% of them), and within a
 * transport the slots go to the flows at evenly spaced quantiles of
 * length. Taking the fullest flows instead made every DNS template a long
 * exchange while most DNS flows are one query and its answer, and left
 * youtube, zoom and the D-Link camera (fullest flows all UDP) with no TCP
 * template at all. */
static void plan_templates(const nd_class_builder *b, class_acc *a)
{
    int k = b->o.templates, slots[3] = {0, 0, 0}, used = 0;
    double want[3];
    for (int t = 0; t < 3; t++)
        want[t] = (double)k * (double)a->proto_flows[t] / (double)a->flows;
    for (;;) { /* the 15% floor first, largest share first */
        int bt = -1;
        for (int t = 0; t < 3; t++)
            if (!slots[t] && a->n_cand[t] > 0 && want[t] >= 0.15 * k &&
                (bt < 0 || want[t] > want[bt]))
                bt = t;
        if (bt < 0 || used == k)
            break;
        slots[bt] = 1;
        used++;
    }
    while (used < k) { /* then to the transport furthest below its share */
        int bt = -1;
        for (int t = 0; t < 3; t++)
            if (slots[t] < a->n_cand[t] &&
                (bt < 0 || want[t] - slots[t] > want[bt] - slots[bt]))
                bt = t;
        if (bt < 0)
            break;
        slots[bt]++;
        used++;
    }
    a->n_tpl = 0;
    for (int t = 0; t < 3; t++) {
        int m = a->n_cand[t];
        if (m == 0)
            continue;
        qsort(a->cand[t], (size_t)m, sizeof *a->cand[t], cmp_candidate);
        /* rank floor((i + 1/2) m / s): strictly increasing since m >= s */
        for (int i = 0; i < slots[t]; i++) {
            int r = (int)(((2 * (int64_t)i + 1) * m) / (2 * (int64_t)slots[t]));
            a->tpl[a->n_tpl++] = (template_flow){.order = a->cand[t][r].order};
        }
    }
}

static nd_status add_flow(nd_class_builder *b, const nd_flow *f, nd_err *err)
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
        st = add_candidate(b, a, f, err);
    return st;
}

static nd_status sink(void *ctx, const nd_flow *f, nd_err *err)
{
    return add_flow(ctx, f, err);
}

/* The second read: keeps the packets of the chosen flows. */
static nd_status template_sink(void *ctx, const nd_flow *f, nd_err *err)
{
    nd_class_builder *b = ctx;
    if (!f->label[0] || f->n == 0)
        return ND_OK;
    b->order++;
    class_acc *a = find_acc(b, f->label);
    if (!a)
        return ND_OK;
    for (int k = 0; k < a->n_tpl; k++)
        if (a->tpl[k].order == b->order && !a->tpl[k].found) {
            nd_status st = nd_flow_rows(f, 0, &a->tpl[k].rows, err);
            if (st)
                return st;
            a->tpl[k].found = true;
        }
    return ND_OK;
}

nd_status nd_class_builder_add_capture(nd_class_builder *b, const char *path,
                                       const nd_flow_opts *fo, nd_err *err)
{
    if (b->n_caps == b->cap_caps) {
        int nc = b->cap_caps ? b->cap_caps * 2 : 16;
        capture_ref *v = realloc(b->caps, (size_t)nc * sizeof *v);
        if (!v)
            return nd_fail(err, ND_ENOMEM, "out of memory");
        b->caps = v;
        b->cap_caps = nc;
    }
    capture_ref *c = &b->caps[b->n_caps];
    if (!(c->path = strdup(path)))
        return nd_fail(err, ND_ENOMEM, "out of memory");
    c->fo = *fo;
    if (c->fo.max_packets > b->o.layout.packets)
        c->fo.max_packets = b->o.layout.packets;
    b->n_caps++;
    c->first = nd_flows_from_capture(path, &c->fo, sink, b, NULL, err);
    return c->first;
}

/* Reads the captures again in the same order; the flows come back in the
 * same order, so a template is found by its arrival number. */
static nd_status fetch_templates(nd_class_builder *b, nd_err *err)
{
    b->order = 0;
    for (int i = 0; i < b->n_caps; i++) {
        const capture_ref *c = &b->caps[i];
        nd_err e2;
        nd_status st = nd_flows_from_capture(c->path, &c->fo, template_sink, b, NULL, &e2);
        if (st && st != c->first) /* a capture that failed the first time fails again */
            return nd_fail(err, st, "the captures changed while the class table was built: %s",
                           e2.msg);
    }
    for (int i = 0; i < b->n; i++)
        for (int k = 0; k < b->c[i].n_tpl; k++)
            if (!b->c[i].tpl[k].found)
                return nd_fail(err, ND_EIO, "the captures changed while the class table was "
                               "built (template flow %llu of class %s is gone)",
                               (unsigned long long)b->c[i].tpl[k].order, b->c[i].name);
    return ND_OK;
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
    if (b->o.templates > 0) {
        bool any = false;
        for (int i = 0; i < b->n; i++)
            if (b->c[i].flows >= (uint64_t)b->o.min_flows) {
                plan_templates(b, &b->c[i]);
                any |= b->c[i].n_tpl > 0;
            }
        if ((st = mkdirs(template_dir, err)) || (any && (st = fetch_templates(b, err))))
            return st;
    }
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
        for (int k = 0; k < a->n_tpl && !st; k++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s_%d.png", template_dir, a->name, k);
            nd_image_from_rows(&b->o.layout, &a->tpl[k].rows, rgb);
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
        for (int k = 0; k < b->c[i].n_tpl; k++)
            if (b->c[i].tpl[k].found)
                nd_rows_free(&b->c[i].tpl[k].rows);
        for (int t = 0; t < 3; t++)
            free(b->c[i].cand[t]);
        free(b->c[i].ports);
    }
    for (int i = 0; i < b->n_caps; i++)
        free(b->caps[i].path);
    free(b->caps);
    free(b->c);
    free(b);
}
