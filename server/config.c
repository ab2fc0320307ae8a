/* server/config.c - netdiffd's configuration: one table for conf/netdiffd.conf
 * ("key value" lines) and the command-line flags (--key value). */
#include "server/server.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { K_STR, K_INT } kind;
typedef struct {
    const char *key;
    kind k;
    size_t off, size;           /* K_STR: buffer size; K_INT: unused */
    long lo, hi;
    const char *help;
} entry;

#define S(field) offsetof(nd_srv_config, field), sizeof(((nd_srv_config *)0)->field)
#define I(field) offsetof(nd_srv_config, field), 0
static const entry table[] = {
    {"listen", K_STR, S(listen), 0, 0, "address to listen on (127.0.0.1)"},
    {"port", K_INT, I(port), 0, 65535, "TCP port (8080; 0: any free port)"},
    {"threads", K_INT, I(threads), 0, 1024, "compute threads, shared by the model steps and the VAE decoder beside them (0: every core)"},
    {"model", K_STR, S(model), 0, 0, "SD1.5-family model (default: the embedded default model)"},
    {"lora", K_STR, S(lora), 0, 0, "a LoRA PATH[:SCALE] merged into the model"},
    {"controlnet", K_STR, S(controlnet), 0, 0, "ControlNet (default: the default model's; none)"},
    {"classes", K_STR, S(classes), 0, 0, "class table (default: the default model's)"},
    {"backend", K_STR, S(backend), 0, 0, "compute backend: cpu, cpu_ref; cuda in make cuda's build/cuda/netdiffd (cpu)"},
    {"max-batch", K_INT, I(max_batch), 1, 64, "flows per model step (8)"},
    {"per-request", K_INT, I(per_request), 0, 64, "flows of one request in a step while others want flows (0: half the batch)"},
    {"max-n", K_INT, I(max_n), 1, 1000000, "flows per request at most (100000)"},
    {"queue", K_INT, I(queue), 1, 100000, "requests queued or running at most (64)"},
    {"request-timeout", K_INT, I(request_timeout), 1, 86400, "seconds one request may take (600)"},
    {"drain-grace", K_INT, I(drain_grace), 0, 3600, "seconds SIGTERM waits for streams (30)"},
    {"max-connections", K_INT, I(max_connections), 1, 65536, "concurrent connections (256)"},
    {"token", K_STR, S(token), 0, 0, "bearer token required on every route but the probes"},
};
#undef S
#undef I

void nd_srv_config_init(nd_srv_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->listen, sizeof c->listen, "127.0.0.1");
    c->port = 8080;
    snprintf(c->backend, sizeof c->backend, "cpu");
    c->max_batch = 8;
    c->max_n = 100000;
    c->queue = 64;
    c->request_timeout = 600;
    c->drain_grace = 30;
    c->max_connections = 256;
}

nd_status nd_srv_config_set(nd_srv_config *c, const char *key, const char *value, nd_err *err)
{
    char k[64];
    size_t n = strlen(key);
    if (n >= sizeof k)
        return nd_fail(err, ND_ENOTFOUND, "unknown key '%.40s...'", key);
    for (size_t i = 0; i <= n; i++)
        k[i] = key[i] == '_' ? '-' : key[i];
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        const entry *e = &table[i];
        if (strcmp(e->key, k))
            continue;
        char *dst = (char *)c + e->off;
        if (e->k == K_STR) {
            if (strlen(value) >= e->size)
                return nd_fail(err, ND_EINVAL, "%s: value longer than %zu bytes", k, e->size - 1);
            memcpy(dst, value, strlen(value) + 1);
            return ND_OK;
        }
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < e->lo || v > e->hi)
            return nd_fail(err, ND_EINVAL, "%s takes %ld..%ld, got '%.40s'", k, e->lo, e->hi, value);
        if (e->off == offsetof(nd_srv_config, max_n))
            c->max_n = v;
        else
            *(int *)(void *)dst = (int)v;
        return ND_OK;
    }
    return nd_fail(err, ND_ENOTFOUND, "unknown key '%.60s'", key);
}

nd_status nd_srv_config_parse(nd_srv_config *c, const char *text, size_t n, const char *name,
                              nd_err *err)
{
    size_t i = 0;
    int line = 0;
    while (i < n) {
        line++;
        size_t j = i;
        while (j < n && text[j] != '\n')
            j++;
        char buf[2048];
        size_t len = j - i;
        if (len >= sizeof buf)
            return nd_fail(err, ND_EFORMAT, "%s:%d: line too long", name, line);
        memcpy(buf, text + i, len);
        buf[len] = '\0';
        i = j + 1;
        if (memchr(buf, '\0', len))
            return nd_fail(err, ND_EFORMAT, "%s:%d: NUL byte", name, line);
        char *s = buf;
        char *hash = strchr(s, '#');
        if (hash)
            *hash = '\0';
        while (*s == ' ' || *s == '\t' || *s == '\r')
            s++;
        size_t L = strlen(s);
        while (L && (s[L - 1] == ' ' || s[L - 1] == '\t' || s[L - 1] == '\r'))
            s[--L] = '\0';
        if (!*s)
            continue;
        char *v = s;
        while (*v && *v != ' ' && *v != '\t')
            v++;
        if (!*v)
            return nd_fail(err, ND_EFORMAT, "%s:%d: '%.60s' has no value (key value)", name, line, s);
        *v++ = '\0';
        while (*v == ' ' || *v == '\t')
            v++;
        nd_err e2 = {{0}};
        nd_status st = nd_srv_config_set(c, s, v, &e2);
        if (st)
            return nd_fail(err, st, "%s:%d: %s", name, line, e2.msg);
    }
    return ND_OK;
}

nd_status nd_srv_config_load(nd_srv_config *c, const char *path, nd_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return nd_fail(err, ND_EIO, "%s: %s", path, strerror(errno));
    char *buf = malloc(1 << 20);
    if (!buf) {
        fclose(f);
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    size_t n = fread(buf, 1, (1 << 20), f);
    int bad = ferror(f) || n == (1 << 20);
    fclose(f);
    nd_status st = bad ? nd_fail(err, ND_EFORMAT, "%s: unreadable or over 1 MiB", path)
                       : nd_srv_config_parse(c, buf, n, path, err);
    free(buf);
    return st;
}

void nd_srv_config_help(FILE *f)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        char k[64];
        snprintf(k, sizeof k, "--%s %s", table[i].key, table[i].k == K_INT ? "N" : "VALUE");
        fprintf(f, "  %-24s %s\n", k, table[i].help);
    }
}
