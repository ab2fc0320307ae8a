/* gen/classes.c - the class table as JSON (jansson), read strictly. */
#include "gen/gen.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CLASSES 4096
#define MAX_JSON_DEPTH 16

const nd_class *nd_class_table_find(const nd_class_table *t, const char *name)
{
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->v[i].name, name))
            return &t->v[i];
    return NULL;
}

void nd_class_template_path(const nd_class_table *t, const nd_class *c, int k, char *buf,
                            size_t n)
{
    if (c->templates[k][0] == '/' || !t->dir[0])
        snprintf(buf, n, "%s", c->templates[k]);
    else
        snprintf(buf, n, "%s/%s", t->dir, c->templates[k]);
}

void nd_class_table_free(nd_class_table *t)
{
    free(t->v);
    memset(t, 0, sizeof *t);
}

/* ---- writing ---- */

static json_t *hist_json(const uint64_t *h, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer((json_int_t)h[i]));
    return a;
}

static json_t *ttl_json(const uint64_t *h)
{
    json_t *o = json_object();
    for (int i = 0; i < 256; i++)
        if (h[i]) {
            char k[16];
            snprintf(k, sizeof k, "%d", i);
            json_object_set_new(o, k, json_integer((json_int_t)h[i]));
        }
    return o;
}

static json_t *class_json(const nd_class *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(c->name));
    json_object_set_new(o, "prompt", json_string(c->prompt));
    json_object_set_new(o, "flows", json_integer((json_int_t)c->flows));
    json_object_set_new(o, "packets", json_integer((json_int_t)c->packets));
    json_object_set_new(o, "mean_packets", json_real(c->mean_packets));
    json_t *tr = json_object();
    json_object_set_new(tr, "tcp", json_real(c->transport[0]));
    json_object_set_new(tr, "udp", json_real(c->transport[1]));
    json_object_set_new(tr, "icmp", json_real(c->transport[2]));
    json_object_set_new(o, "transport", tr);
    json_object_set_new(o, "ipv6_share", json_real(c->ipv6_share));
    json_t *ports = json_array();
    for (int i = 0; i < c->n_ports; i++) {
        json_t *p = json_object();
        json_object_set_new(p, "port", json_integer(c->port[i]));
        json_object_set_new(p, "proto", json_string(c->port_proto[i] == 6 ? "tcp" : "udp"));
        json_object_set_new(p, "share", json_real(c->port_share[i]));
        json_array_append_new(ports, p);
    }
    json_object_set_new(o, "ports", ports);
    json_t *tpl = json_array();
    for (int i = 0; i < c->n_templates; i++)
        json_array_append_new(tpl, json_string(c->templates[i]));
    json_object_set_new(o, "templates", tpl);
    json_t *st = json_object();
    json_object_set_new(st, "flows", json_integer((json_int_t)c->stats.flows));
    json_object_set_new(st, "packets", json_integer((json_int_t)c->stats.packets));
    json_object_set_new(st, "gap_same_direction", hist_json(c->stats.gap_hist[0], ND_GAP_BINS));
    json_object_set_new(st, "gap_direction_change", hist_json(c->stats.gap_hist[1], ND_GAP_BINS));
    json_object_set_new(st, "ttl_initiator", ttl_json(c->stats.ttl_hist[0]));
    json_object_set_new(st, "ttl_responder", ttl_json(c->stats.ttl_hist[1]));
    json_object_set_new(o, "stats", st);
    return o;
}

nd_status nd_class_table_save(const nd_class_table *t, const char *path, nd_err *err)
{
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string(ND_CLASS_FORMAT));
    json_t *lay = json_object();
    json_object_set_new(lay, "packets", json_integer(t->layout.packets));
    json_object_set_new(lay, "columns", json_string("netdiffusion"));
    json_object_set_new(lay, "timing_cols", json_integer(t->layout.timing_cols));
    json_object_set_new(lay, "timing_scale", json_integer(t->layout.timing_scale));
    json_object_set_new(root, "layout", lay);
    if (t->strength > 0)
        json_object_set_new(root, "strength", json_real(t->strength));
    json_t *cl = json_array();
    for (int i = 0; i < t->n; i++)
        json_array_append_new(cl, class_json(&t->v[i]));
    json_object_set_new(root, "classes", cl);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    int rc = json_dump_file(root, tmp, JSON_INDENT(1) | JSON_REAL_PRECISION(9));
    json_decref(root);
    if (rc || rename(tmp, path)) {
        int e = errno;
        remove(tmp);
        return nd_fail(err, ND_EIO, "%s: cannot write (%s)", path, strerror(e));
    }
    return ND_OK;
}

/* ---- reading ---- */

typedef struct {
    const char *src;
    nd_err *err;
    nd_status st;
} rd;

static int bad(rd *r, const char *where, const char *what)
{
    if (r->st == ND_OK)
        r->st = nd_fail(r->err, ND_EFORMAT, "%s: %s", where, what);
    return -1;
}

/* Only these keys; anything else is an error (typos must not pass). */
static int check_keys(rd *r, json_t *o, const char *where, const char *const *keys)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        int ok = 0;
        for (const char *const *p = keys; *p; p++)
            ok |= !strcmp(*p, k);
        if (!ok) {
            char msg[160];
            snprintf(msg, sizeof msg, "unknown key '%.60s'", k);
            return bad(r, where, msg);
        }
    }
    return 0;
}

static int get_uint(rd *r, json_t *o, const char *key, const char *where, uint64_t max,
                    uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    char w[200];
    snprintf(w, sizeof w, "%s.%s", where, key);
    if (!json_is_integer(v))
        return bad(r, w, "missing or not an integer");
    json_int_t x = json_integer_value(v);
    if (x < 0 || (uint64_t)x > max)
        return bad(r, w, "out of range");
    *out = (uint64_t)x;
    return 0;
}

static int get_share(rd *r, json_t *o, const char *key, const char *where, double *out)
{
    json_t *v = json_object_get(o, key);
    char w[200];
    snprintf(w, sizeof w, "%s.%s", where, key);
    if (!json_is_number(v))
        return bad(r, w, "missing or not a number");
    double x = json_number_value(v);
    if (!(x >= 0 && x <= 1))
        return bad(r, w, "not within 0..1");
    *out = x;
    return 0;
}

static int get_str(rd *r, json_t *o, const char *key, const char *where, char *buf, size_t n)
{
    json_t *v = json_object_get(o, key);
    char w[200];
    snprintf(w, sizeof w, "%s.%s", where, key);
    if (!json_is_string(v))
        return bad(r, w, "missing or not a string");
    if (json_string_length(v) >= n || strlen(json_string_value(v)) != json_string_length(v))
        return bad(r, w, "too long or has a NUL");
    snprintf(buf, n, "%s", json_string_value(v));
    return 0;
}

static int read_hist(rd *r, json_t *a, const char *where, uint64_t *h, int n)
{
    if (!json_is_array(a) || (int)json_array_size(a) != n)
        return bad(r, where, "must be an array of 36 counts");
    for (int i = 0; i < n; i++) {
        json_t *v = json_array_get(a, (size_t)i);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return bad(r, where, "counts must be integers >= 0");
        h[i] = (uint64_t)json_integer_value(v);
    }
    return 0;
}

static int read_ttl(rd *r, json_t *o, const char *where, uint64_t *h)
{
    if (!json_is_object(o))
        return bad(r, where, "must be an object of TTL -> count");
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        char *end;
        long t = strtol(k, &end, 10);
        if (*end || !*k || t < 0 || t > 255 || !json_is_integer(v) || json_integer_value(v) < 0)
            return bad(r, where, "keys must be 0..255 and counts integers >= 0");
        h[t] = (uint64_t)json_integer_value(v);
    }
    return 0;
}

static int valid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return 0;
    return 1;
}

static int read_class(rd *r, json_t *o, int idx, nd_class *c)
{
    char where[64];
    snprintf(where, sizeof where, "classes[%d]", idx);
    if (!json_is_object(o))
        return bad(r, where, "not an object");
    static const char *const keys[] = {"name", "prompt", "flows", "packets", "mean_packets",
                                       "transport", "ipv6_share", "ports", "templates",
                                       "stats", NULL};
    if (check_keys(r, o, where, keys))
        return -1;
    memset(c, 0, sizeof *c);
    if (get_str(r, o, "name", where, c->name, sizeof c->name) ||
        get_str(r, o, "prompt", where, c->prompt, sizeof c->prompt) ||
        get_uint(r, o, "flows", where, UINT64_MAX / 2, &c->flows) ||
        get_uint(r, o, "packets", where, UINT64_MAX / 2, &c->packets) ||
        get_share(r, o, "ipv6_share", where, &c->ipv6_share))
        return -1;
    if (!valid_name(c->name))
        return bad(r, where, "name must be letters, digits, _ - .");
    json_t *mp = json_object_get(o, "mean_packets");
    if (!json_is_number(mp) || !(json_number_value(mp) >= 0 && json_number_value(mp) < 1e9))
        return bad(r, where, "mean_packets missing or out of range");
    c->mean_packets = json_number_value(mp);
    json_t *tr = json_object_get(o, "transport");
    static const char *const tkeys[] = {"tcp", "udp", "icmp", NULL};
    char tw[96];
    snprintf(tw, sizeof tw, "%s.transport", where);
    if (!json_is_object(tr))
        return bad(r, tw, "missing or not an object");
    if (check_keys(r, tr, tw, tkeys) || get_share(r, tr, "tcp", tw, &c->transport[0]) ||
        get_share(r, tr, "udp", tw, &c->transport[1]) ||
        get_share(r, tr, "icmp", tw, &c->transport[2]))
        return -1;
    json_t *ports = json_object_get(o, "ports");
    snprintf(tw, sizeof tw, "%s.ports", where);
    if (!json_is_array(ports) || json_array_size(ports) > ND_CLASS_TOP_PORTS)
        return bad(r, tw, "must be an array of at most 8 ports");
    c->n_ports = (int)json_array_size(ports);
    for (int i = 0; i < c->n_ports; i++) {
        json_t *p = json_array_get(ports, (size_t)i);
        static const char *const pkeys[] = {"port", "proto", "share", NULL};
        char pw[128];
        snprintf(pw, sizeof pw, "%s[%d]", tw, i);
        uint64_t port;
        char proto[8];
        if (!json_is_object(p))
            return bad(r, pw, "not an object");
        if (check_keys(r, p, pw, pkeys) || get_uint(r, p, "port", pw, 65535, &port) ||
            get_str(r, p, "proto", pw, proto, sizeof proto) ||
            get_share(r, p, "share", pw, &c->port_share[i]))
            return -1;
        if (strcmp(proto, "tcp") && strcmp(proto, "udp"))
            return bad(r, pw, "proto must be tcp or udp");
        c->port[i] = (uint16_t)port;
        c->port_proto[i] = proto[0] == 't' ? 6 : 17;
    }
    json_t *tpl = json_object_get(o, "templates");
    snprintf(tw, sizeof tw, "%s.templates", where);
    if (!json_is_array(tpl) || json_array_size(tpl) > ND_CLASS_MAX_TEMPLATES)
        return bad(r, tw, "must be an array of at most 16 paths");
    c->n_templates = (int)json_array_size(tpl);
    for (int i = 0; i < c->n_templates; i++) {
        json_t *s = json_array_get(tpl, (size_t)i);
        if (!json_is_string(s) || json_string_length(s) == 0 ||
            json_string_length(s) >= sizeof c->templates[i] ||
            strlen(json_string_value(s)) != json_string_length(s))
            return bad(r, tw, "paths must be non-empty strings under 256 bytes");
        snprintf(c->templates[i], sizeof c->templates[i], "%s", json_string_value(s));
    }
    json_t *st = json_object_get(o, "stats");
    snprintf(tw, sizeof tw, "%s.stats", where);
    static const char *const skeys[] = {"flows", "packets", "gap_same_direction",
                                        "gap_direction_change", "ttl_initiator",
                                        "ttl_responder", NULL};
    if (!json_is_object(st))
        return bad(r, tw, "missing or not an object");
    if (check_keys(r, st, tw, skeys) ||
        get_uint(r, st, "flows", tw, UINT64_MAX / 2, &c->stats.flows) ||
        get_uint(r, st, "packets", tw, UINT64_MAX / 2, &c->stats.packets) ||
        read_hist(r, json_object_get(st, "gap_same_direction"), tw, c->stats.gap_hist[0],
                  ND_GAP_BINS) ||
        read_hist(r, json_object_get(st, "gap_direction_change"), tw, c->stats.gap_hist[1],
                  ND_GAP_BINS) ||
        read_ttl(r, json_object_get(st, "ttl_initiator"), tw, c->stats.ttl_hist[0]) ||
        read_ttl(r, json_object_get(st, "ttl_responder"), tw, c->stats.ttl_hist[1]))
        return -1;
    return 0;
}

/* Nesting depth outside strings: jansson recurses without a limit of ours. */
static int too_deep(const char *s, size_t n)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = 0;
        } else if (ch == '"') {
            in_str = 1;
        } else if (ch == '{' || ch == '[') {
            if (++depth > MAX_JSON_DEPTH)
                return 1;
        } else if (ch == '}' || ch == ']') {
            depth--;
        }
    }
    return 0;
}

static int cmp_class(const void *a, const void *b)
{
    return strcmp(((const nd_class *)a)->name, ((const nd_class *)b)->name);
}

nd_status nd_class_table_parse(const char *json, size_t n, const char *dir, nd_class_table *t,
                               nd_err *err)
{
    memset(t, 0, sizeof *t);
    rd r = {.src = dir && *dir ? dir : "class table", .err = err, .st = ND_OK};
    char src[4200];
    snprintf(src, sizeof src, "%s", r.src);
    r.src = src;
    if (too_deep(json, n))
        return nd_fail(err, ND_EFORMAT, "JSON nested deeper than %d", MAX_JSON_DEPTH);
    json_error_t je;
    json_t *root = json_loadb(json, n, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return nd_fail(err, ND_EFORMAT, "line %d column %d: %s", je.line, je.column, je.text);
    nd_status st = ND_OK;
    static const char *const rkeys[] = {"format", "layout", "strength", "classes", NULL};
    static const char *const lkeys[] = {"packets", "columns", "timing_cols", "timing_scale", NULL};
    char fmt[64], cols[32];
    uint64_t packets, tcols, tscale;
    if (!json_is_object(root)) {
        bad(&r, "top level", "not an object");
        goto done;
    }
    if (check_keys(&r, root, "top level", rkeys) ||
        get_str(&r, root, "format", "top level", fmt, sizeof fmt))
        goto done;
    if (strcmp(fmt, ND_CLASS_FORMAT)) {
        bad(&r, "format", "not " ND_CLASS_FORMAT);
        goto done;
    }
    json_t *lay = json_object_get(root, "layout");
    if (!json_is_object(lay)) {
        bad(&r, "layout", "missing or not an object");
        goto done;
    }
    if (check_keys(&r, lay, "layout", lkeys) ||
        get_uint(&r, lay, "packets", "layout", 65536, &packets) ||
        get_str(&r, lay, "columns", "layout", cols, sizeof cols) ||
        get_uint(&r, lay, "timing_cols", "layout", ND_MAX_TIMING_COLS, &tcols) ||
        get_uint(&r, lay, "timing_scale", "layout", 1024, &tscale))
        goto done;
    if (strcmp(cols, "netdiffusion")) {
        bad(&r, "layout.columns", "only \"netdiffusion\" is known");
        goto done;
    }
    if (nd_layout_init(&t->layout, (int)packets, (int)tcols, (int)tscale, err)) {
        r.st = nd_wrap(err, ND_EFORMAT, "layout");
        goto done;
    }
    /* optional: the model's img2img strength when a request names none */
    if (json_object_get(root, "strength")) {
        double sv;
        if (get_share(&r, root, "strength", "top level", &sv))
            goto done;
        if (!(sv > 0)) {
            bad(&r, "top level.strength", "must be above 0 (0 < S <= 1)");
            goto done;
        }
        t->strength = (float)sv;
    }
    json_t *cl = json_object_get(root, "classes");
    if (!json_is_array(cl) || json_array_size(cl) == 0 || json_array_size(cl) > MAX_CLASSES) {
        bad(&r, "classes", "must be a non-empty array of at most 4096 classes");
        goto done;
    }
    t->n = (int)json_array_size(cl);
    t->v = calloc((size_t)t->n, sizeof *t->v);
    if (!t->v) {
        r.st = nd_fail(err, ND_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < t->n; i++)
        if (read_class(&r, json_array_get(cl, (size_t)i), i, &t->v[i]))
            goto done;
    qsort(t->v, (size_t)t->n, sizeof *t->v, cmp_class);
    for (int i = 1; i < t->n; i++)
        if (!strcmp(t->v[i].name, t->v[i - 1].name)) {
            char msg[128];
            snprintf(msg, sizeof msg, "class '%s' appears twice", t->v[i].name);
            bad(&r, "classes", msg);
            goto done;
        }
    snprintf(t->dir, sizeof t->dir, "%s", dir ? dir : ".");
done:
    st = r.st;
    json_decref(root);
    if (st)
        nd_class_table_free(t);
    return st;
}

nd_status nd_class_table_load(const char *path, nd_class_table *t, nd_err *err)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f)
        return nd_fail(err, ND_EIO, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            if (cap > (64u << 20)) {
                free(buf);
                fclose(f);
                return nd_fail(err, ND_EFORMAT, "%s: larger than 64 MiB", path);
            }
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return nd_fail(err, ND_ENOMEM, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(buf);
        return nd_fail(err, ND_EIO, "%s: read error", path);
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    nd_status st = nd_class_table_parse(buf, n, dir, t, err);
    free(buf);
    if (st)
        return nd_wrap(err, st, "%s", path);
    return ND_OK;
}
