/* server/request.c - a generation request from a query string or a JSON
 * body: every check before the 200; errors as problem details. */
#include "model/sd.h"
#include "server/server.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static int problem(nd_srv_problem *p, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int problem(nd_srv_problem *p, int status, const char *code, const char *fmt, ...)
{
    p->status = status;
    p->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->detail, sizeof p->detail, fmt, ap);
    va_end(ap);
    return -1;
}

static void req_init(nd_srv_request *r, long max_n)
{
    memset(r, 0, sizeof *r);
    nd_gen_job_init(&r->job);
    r->job.max_flows = (uint64_t)max_n;
    nd_flow_params_init(&r->fp);
    r->fmt = ND_CAP_PCAP;
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int set_sampler(nd_srv_request *r, const char *s, nd_srv_problem *p)
{
    if (!strcmp(s, "dpmpp_2m"))
        s = "dpmpp_2m_karras";
    sd_sampler_kind k;
    if (strlen(s) > 64 || sd_sampler_parse(s, &k, NULL))
        return problem(p, 400, "bad_parameter",
                       "sampler takes ddim, euler, euler_a or dpmpp_2m, got '%.40s'", s);
    r->fp.sampler = (int)k;
    return 0;
}

static int set_format(nd_srv_request *r, const char *s, nd_srv_problem *p)
{
    if (!strcmp(s, "pcap"))
        r->fmt = ND_CAP_PCAP;
    else if (!strcmp(s, "pcapng"))
        r->fmt = ND_CAP_PCAPNG;
    else
        return problem(p, 400, "bad_parameter", "format takes pcap or pcapng, got '%.40s'", s);
    return 0;
}

static int set_cfg(nd_srv_request *r, double g, nd_srv_problem *p)
{
    if (!(g >= 0 && g <= 100))
        return problem(p, 400, "bad_parameter", "cfg takes 0..100");
    r->fp.cfg = (float)g;
    return 0;
}

static int set_strength(nd_srv_request *r, double v, nd_srv_problem *p)
{
    if (!(v > 0 && v <= 1))
        return problem(p, 400, "bad_parameter", "strength takes 0 < S <= 1");
    r->fp.strength = (float)v;
    return 0;
}

/* nd_gen_job_parse's error as a problem: unknown classes are their own code */
static int job_problem(const nd_err *e, nd_srv_problem *p)
{
    if (strstr(e->msg, "unknown class"))
        return problem(p, 400, "unknown_class", "%s", e->msg);
    if (strstr(e->msg, "flows asked") || strstr(e->msg, "bad count"))
        return problem(p, 400, "too_many_flows", "%s", e->msg);
    return problem(p, 400, "bad_parameter", "%s", e->msg);
}

static void first_class(nd_srv_request *r)
{
    if (r->job.n_items)
        snprintf(r->first_class, sizeof r->first_class, "%s", r->job.items[0].cls);
}

int nd_srv_parse_query(const nd_srv_kv *kv, int n, const nd_class_table *t, long max_n,
                       nd_srv_request *r, nd_srv_problem *p)
{
    req_init(r, max_n);
    const char *cls = NULL, *nstr = NULL;
    static const char *known[] = {"class", "n", "seed", "steps", "sampler", "cfg", "format",
                                  "strength"};
    for (int i = 0; i < n; i++) {
        const char *k = kv[i].key, *v = kv[i].value ? kv[i].value : "";
        int which = -1;
        for (int j = 0; j < (int)(sizeof known / sizeof known[0]); j++)
            if (!strcmp(k, known[j]))
                which = j;
        if (which < 0)
            return problem(p, 400, "unknown_parameter",
                           "unknown parameter '%.40s' (known: class, n, seed, steps, sampler, cfg, format, strength)", k);
        for (int j = 0; j < i; j++)
            if (!strcmp(kv[j].key, k))
                return problem(p, 400, "bad_parameter", "parameter '%s' given twice", k);
        uint64_t u;
        switch (which) {
        case 0: cls = v; break;
        case 1: nstr = v; break;
        case 2:
            if (parse_u64(v, 0, UINT64_MAX, &u))
                return problem(p, 400, "bad_parameter", "seed takes an unsigned integer, got '%.40s'", v);
            r->job.seed = u;
            break;
        case 3:
            if (parse_u64(v, 1, 1000, &u))
                return problem(p, 400, "bad_parameter", "steps takes 1..1000, got '%.40s'", v);
            r->fp.steps = (int)u;
            break;
        case 4:
            if (set_sampler(r, v, p))
                return -1;
            break;
        case 5:
        case 7: {
            /* cfg and strength: a number, then the setter checks its range */
            char *end;
            errno = 0;
            double g = strtod(v, &end);
            if (!*v || *end || errno)
                return problem(p, 400, "bad_parameter", "%s takes a number %s, got '%.40s'", k,
                               which == 5 ? "0..100" : "0 < S <= 1", v);
            if ((which == 5 ? set_cfg : set_strength)(r, g, p))
                return -1;
            break;
        }
        case 6:
            if (set_format(r, v, p))
                return -1;
            break;
        }
    }
    if (!cls || !*cls)
        return problem(p, 400, "missing_parameter", "class is required (see GET /v1/classes)");
    uint64_t count = 1;
    if (nstr && parse_u64(nstr, 1, (uint64_t)max_n, &count))
        return problem(p, 400, nstr[0] >= '0' && nstr[0] <= '9' && strlen(nstr) < 20 ? "too_many_flows" : "bad_parameter",
                       "n takes 1..%ld, got '%.40s'", max_n, nstr);
    nd_err e = {{0}};
    if (nd_gen_job_parse(&r->job, cls, count, t, &e))
        return job_problem(&e, p);
    first_class(r);
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* in place: '+' -> ' ', %XX -> byte; -1 on a bad escape or a NUL */
static int url_decode(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (*s == '+') {
            *o++ = ' ';
        } else if (*s == '%') {
            int a = hexval(s[1]), b = a < 0 ? -1 : hexval(s[2]);
            if (a < 0 || b < 0 || (a == 0 && b == 0))
                return -1;
            *o++ = (char)(a * 16 + b);
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
    return 0;
}

int nd_srv_parse_query_string(const char *qs, const nd_class_table *t, long max_n,
                              nd_srv_request *r, nd_srv_problem *p)
{
    req_init(r, max_n);
    if (strlen(qs) > 8192)
        return problem(p, 400, "bad_parameter", "query string too long");
    char buf[8200];
    snprintf(buf, sizeof buf, "%s", qs);
    nd_srv_kv kv[32];
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, "&", &save); tok; tok = strtok_r(NULL, "&", &save)) {
        if (n == 32)
            return problem(p, 400, "bad_parameter", "too many parameters");
        char *eq = strchr(tok, '=');
        if (eq)
            *eq++ = '\0';
        if (url_decode(tok) || (eq && url_decode(eq)))
            return problem(p, 400, "bad_parameter", "bad %%-escape in the query string");
        kv[n].key = tok;
        kv[n].value = eq ? eq : "";
        n++;
    }
    return nd_srv_parse_query(kv, n, t, max_n, r, p);
}

int nd_srv_parse_json(const char *body, size_t n, const nd_class_table *t, long max_n,
                      nd_srv_request *r, nd_srv_problem *p)
{
    req_init(r, max_n);
    json_error_t je;
    json_t *root = json_loadb(body, n, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return problem(p, 400, "bad_json", "body is not JSON: %s (line %d)", je.text, je.line);
    int rc = -1;
    if (!json_is_object(root)) {
        problem(p, 400, "bad_json", "body must be a JSON object");
        goto out;
    }
    const char *key;
    json_t *v;
    json_t *classes = NULL, *cls = NULL, *jn = NULL;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "classes")) {
            classes = v;
        } else if (!strcmp(key, "class")) {
            cls = v;
        } else if (!strcmp(key, "n")) {
            jn = v;
        } else if (!strcmp(key, "seed")) {
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                problem(p, 400, "bad_parameter", "seed takes an unsigned integer");
                goto out;
            }
            r->job.seed = (uint64_t)json_integer_value(v);
        } else if (!strcmp(key, "steps")) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000) {
                problem(p, 400, "bad_parameter", "steps takes 1..1000");
                goto out;
            }
            r->fp.steps = (int)json_integer_value(v);
        } else if (!strcmp(key, "sampler")) {
            if (!json_is_string(v)) {
                problem(p, 400, "bad_parameter", "sampler takes a string");
                goto out;
            }
            if (set_sampler(r, json_string_value(v), p))
                goto out;
        } else if (!strcmp(key, "cfg") || !strcmp(key, "strength")) {
            bool cfg = key[0] == 'c';
            if (!json_is_number(v)) {
                problem(p, 400, "bad_parameter", "%s takes a number %s", key,
                        cfg ? "0..100" : "0 < S <= 1");
                goto out;
            }
            if ((cfg ? set_cfg : set_strength)(r, json_number_value(v), p))
                goto out;
        } else if (!strcmp(key, "format")) {
            if (!json_is_string(v)) {
                problem(p, 400, "bad_parameter", "format takes pcap or pcapng");
                goto out;
            }
            if (set_format(r, json_string_value(v), p))
                goto out;
        } else {
            problem(p, 400, "unknown_parameter", "unknown key '%.40s' (known: classes, class, n, "
                    "seed, steps, sampler, cfg, format, strength)", key);
            goto out;
        }
    }
    nd_err e = {{0}};
    if (classes && (cls || jn)) {
        problem(p, 400, "bad_parameter", "give \"classes\" or \"class\" with \"n\", not both");
        goto out;
    }
    if (classes) {
        if (!json_is_object(classes) || json_object_size(classes) == 0) {
            problem(p, 400, "bad_parameter", "classes takes an object {\"NAME\": COUNT, ...}");
            goto out;
        }
        json_object_foreach(classes, key, v) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max_n) {
                problem(p, 400, "too_many_flows", "class '%.60s': the count takes 1..%ld", key, max_n);
                goto out;
            }
            if (strchr(key, ',') || strchr(key, '=') || !*key) {
                problem(p, 400, "unknown_class", "bad class name '%.60s'", key);
                goto out;
            }
            if (nd_gen_job_parse(&r->job, key, (uint64_t)json_integer_value(v), t, &e)) {
                job_problem(&e, p);
                goto out;
            }
        }
    } else {
        if (!cls || !json_is_string(cls) || !*json_string_value(cls)) {
            problem(p, 400, "missing_parameter", "\"classes\" or \"class\" is required");
            goto out;
        }
        long long cnt = 1;
        if (jn) {
            if (!json_is_integer(jn) || json_integer_value(jn) < 1 || json_integer_value(jn) > max_n) {
                problem(p, 400, "too_many_flows", "n takes 1..%ld", max_n);
                goto out;
            }
            cnt = json_integer_value(jn);
        }
        if (nd_gen_job_parse(&r->job, json_string_value(cls), (uint64_t)cnt, t, &e)) {
            job_problem(&e, p);
            goto out;
        }
    }
    first_class(r);
    rc = 0;
out:
    json_decref(root);
    return rc;
}
