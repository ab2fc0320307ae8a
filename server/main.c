/* server/main.c - netdiffd: HTTP in front of gen/'s engine. Parses requests,
 * streams each flow's packets as it is repaired, answers probes and metrics,
 * drains on SIGTERM, reloads on SIGHUP. Computes nothing gen/ does. */
#include "gen/gen.h"
#include "model/sd.h"
#include "server/metrics.h"
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BODY_MAX (64 * 1024)
#define STREAM_BUF_MAX (256u << 20)

static volatile sig_atomic_t g_term, g_hup;
static void on_signal(int sig)
{
    if (sig == SIGHUP)
        g_hup = 1;
    else
        g_term = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct srv {
    nd_srv_config cfg;          /* under cfg_mu (SIGHUP replaces parts)          */
    pthread_mutex_t cfg_mu;
    int argc;
    char **argv;
    const char *conf_path;
    nd_class_table table;
    int have_table;
    nd_model_drawer *md;
    nd_standin_drawer *standin;
    nd_oneshot_drawer *oneshot;
    nd_step_drawer sd;
    nd_engine *engine;
    nd_metrics *metrics;
    atomic_int ready, draining, stopping, in_flight;
    double load_seconds;
    char model_desc[ND_SRV_PATH_MAX], cn_desc[ND_SRV_PATH_MAX], lora_desc[ND_SRV_PATH_MAX];
    char classes_path[ND_SRV_PATH_MAX];
    struct MHD_Daemon *mhd;
} srv;

/* ------------------------------------------------------------- responses */

static const char *status_title(int s)
{
    switch (s) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

static enum MHD_Result send_buf(srv *s, struct MHD_Connection *c, int route, int status,
                                const char *type, const char *body, size_t n,
                                const char *h1, const char *v1)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(n, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (h1)
        MHD_add_response_header(r, h1, v1);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    nd_metrics_request(s->metrics, route, status);
    return ret;
}

static enum MHD_Result send_problem(srv *s, struct MHD_Connection *c, int route, int status,
                                    const char *code, const char *detail, const char *url,
                                    const char *h1, const char *v1)
{
    char type[128];
    snprintf(type, sizeof type, "urn:netdiffd:problem:%s", code);
    json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "type", type, "title",
                          status_title(status), "status", status, "detail", detail ? detail : "",
                          "code", code, "instance", url ? url : "");
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    enum MHD_Result r = send_buf(s, c, route, status, "application/problem+json",
                                 txt ? txt : "{}", txt ? strlen(txt) : 2, h1, v1);
    free(txt);
    return r;
}

static enum MHD_Result send_json(srv *s, struct MHD_Connection *c, int route, json_t *o)
{
    char *txt = o ? json_dumps(o, JSON_INDENT(1)) : NULL;
    json_decref(o);
    if (!txt)
        return send_problem(s, c, route, 500, "internal", "out of memory", NULL, NULL, NULL);
    size_t n = strlen(txt);
    enum MHD_Result r = send_buf(s, c, route, 200, "application/json", txt, n, NULL, NULL);
    free(txt);
    return r;
}

/* --------------------------------------------------------------- streams */

/* One streamed response: the engine's sinks append here (engine thread), the
 * MHD reader drains it (connection thread). Freed when both let go. */
typedef struct stream {
    srv *s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf;
    size_t len, off, cap;
    int finished, failed_write;
    nd_status st;
    atomic_int refs;
    nd_engine_req *req;
    nd_capture_sink *cs;
    nd_gen_sink cap_sink;
    int fd;                     /* the client's socket, to see a hang-up         */
    double t0, deadline;
    int first;
} stream;

static void stream_unref(stream *st)
{
    if (atomic_fetch_sub(&st->refs, 1) != 1)
        return;
    nd_engine_release(st->req);
    nd_capture_sink_free(st->cs);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st->buf);
    free(st);
}

static nd_status stream_write(void *ctx, const void *b, size_t n, nd_err *err)
{
    stream *st = ctx;
    pthread_mutex_lock(&st->mu);
    if (st->off && st->off == st->len)
        st->off = st->len = 0;
    if (st->len + n > st->cap) {
        if (st->off) {
            memmove(st->buf, st->buf + st->off, st->len - st->off);
            st->len -= st->off;
            st->off = 0;
        }
        if (st->len + n > STREAM_BUF_MAX) {
            pthread_mutex_unlock(&st->mu);
            return nd_fail(err, ND_ENOMEM, "client too slow: %u MiB unread", STREAM_BUF_MAX >> 20);
        }
        size_t cap = st->cap ? st->cap : 65536;
        while (cap < st->len + n)
            cap *= 2;
        char *p = realloc(st->buf, cap);
        if (!p) {
            pthread_mutex_unlock(&st->mu);
            return nd_fail(err, ND_ENOMEM, "out of memory");
        }
        st->buf = p;
        st->cap = cap;
    }
    memcpy(st->buf + st->len, b, n);
    st->len += n;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    return ND_OK;
}

/* the request's sink: the capture, then the metrics */
static nd_status stream_flow(void *ctx, const nd_gen_flow *f, nd_err *err)
{
    stream *st = ctx;
    nd_status r = st->cap_sink.flow(st->cap_sink.ctx, f, err);
    if (r)
        return r;
    nd_metrics_flow(st->s->metrics, f->cls->name, (uint64_t)f->out->n);
    if (!st->first) {
        st->first = 1;
        nd_metrics_observe(st->s->metrics, "netdiffd_time_to_first_flow_seconds", now_s() - st->t0);
    }
    return ND_OK;
}

static void stream_done(void *ctx, nd_status status, const char *msg, const nd_gen_stats *stats)
{
    stream *st = ctx;
    (void)stats;
    if (status && status != ND_ECANCELLED)
        fprintf(stderr, "netdiffd: a stream ended early: %s\n", msg);
    pthread_mutex_lock(&st->mu);
    st->finished = 1;
    st->st = status;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    stream_unref(st);
}

static int client_gone(int fd)
{
    if (fd < 0)
        return 0;
    struct pollfd p = {fd, POLLRDHUP, 0};
    if (poll(&p, 1, 0) <= 0)
        return 0;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    stream *st = cls;
    (void)pos;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        if (st->len > st->off) {
            size_t n = st->len - st->off < max ? st->len - st->off : max;
            memcpy(out, st->buf + st->off, n);
            st->off += n;
            pthread_mutex_unlock(&st->mu);
            return (ssize_t)n;
        }
        if (st->finished) {
            nd_status s = st->st;
            pthread_mutex_unlock(&st->mu);
            /* after the 200 an error can only abort the stream */
            return s ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (atomic_load(&st->s->stopping) || now_s() > st->deadline || client_gone(st->fd)) {
            pthread_mutex_unlock(&st->mu);
            nd_engine_cancel(st->req);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&st->cv, &st->mu, &ts);
    }
}

static void stream_free_cb(void *cls)
{
    stream *st = cls;
    /* the response is over (sent, or the client went away): drop what is left */
    nd_engine_cancel(st->req);
    nd_metrics_observe(st->s->metrics, "netdiffd_request_duration_seconds", now_s() - st->t0);
    atomic_fetch_sub(&st->s->in_flight, 1);
    stream_unref(st);
}

static enum MHD_Result start_generate(srv *s, struct MHD_Connection *c, int route,
                                      const char *url, nd_srv_request *rq)
{
    stream *st = calloc(1, sizeof *st);
    if (!st)
        return send_problem(s, c, route, 503, "out_of_memory", "out of memory", url, "Retry-After", "5");
    st->s = s;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    atomic_init(&st->refs, 1);
    st->t0 = now_s();
    pthread_mutex_lock(&s->cfg_mu);
    int timeout = s->cfg.request_timeout;
    pthread_mutex_unlock(&s->cfg_mu);
    st->deadline = st->t0 + timeout;
    /* a stream may wait in the queue longer than the idle timeout meant for
     * silent connections: its own deadline (and a hang-up) end it instead */
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)timeout + 5u);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    st->fd = ci ? ci->connect_fd : -1;
    nd_err err = {{0}};
    /* the file header goes into the buffer now: it is the first chunk */
    if (nd_capture_sink_new(rq->fmt, rq->job.linktype, stream_write, st, &st->cs, &st->cap_sink, &err)) {
        stream_unref(st);
        return send_problem(s, c, route, 503, "out_of_memory", err.msg, url, "Retry-After", "5");
    }
    nd_gen_sink sink = {st, stream_flow};
    atomic_fetch_add(&st->refs, 1);   /* the engine's */
    nd_status rc = nd_engine_submit(s->engine, &rq->job, &rq->fp, &sink, 1, stream_done, st,
                                    &st->req, &err);
    if (rc) {
        atomic_fetch_sub(&st->refs, 1);
        stream_unref(st);
        if (rc == ND_ENOMEM)
            return send_problem(s, c, route, 429, "queue_full", err.msg, url, "Retry-After", "1");
        return send_problem(s, c, route, 400, "bad_parameter", err.msg, url, NULL, NULL);
    }
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024,
                                                               stream_read, st, stream_free_cb);
    if (!r) {
        nd_engine_cancel(st->req);
        stream_unref(st);
        return MHD_NO;
    }
    atomic_fetch_add(&s->in_flight, 1);
    char disp[256], flows[32];
    snprintf(disp, sizeof disp, "attachment; filename=\"netdiff-%s-%llu.%s\"", rq->first_class,
             (unsigned long long)rq->job.seed, rq->fmt == ND_CAP_PCAPNG ? "pcapng" : "pcap");
    snprintf(flows, sizeof flows, "%llu", (unsigned long long)nd_gen_job_total(&rq->job));
    MHD_add_response_header(r, "Content-Type", rq->fmt == ND_CAP_PCAPNG ? "application/x-pcapng"
                                                                         : "application/vnd.tcpdump.pcap");
    MHD_add_response_header(r, "Content-Disposition", disp);
    MHD_add_response_header(r, "X-Netdiff-Flows", flows);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    nd_metrics_request(s->metrics, route, 200);
    return ret;
}

/* ---------------------------------------------------------------- routes */

typedef struct {
    int route, done, too_big;
    char *body;
    size_t n;
    nd_srv_kv kv[32];
    int n_kv, kv_over;
} conn_ctx;

static enum MHD_Result collect_kv(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    conn_ctx *cc = cls;
    (void)kind;
    if (cc->n_kv == 32) {
        cc->kv_over = 1;
        return MHD_NO;
    }
    cc->kv[cc->n_kv].key = key;
    cc->kv[cc->n_kv].value = value ? value : "";
    cc->n_kv++;
    return MHD_YES;
}

static json_t *classes_json(const nd_class_table *t)
{
    json_t *a = json_array();
    for (int i = 0; i < t->n; i++) {
        const nd_class *c = &t->v[i];
        json_array_append_new(a, json_pack("{s:s, s:s, s:I, s:I, s:f, s:i, s:{s:f, s:f, s:f}}", "name",
                                           c->name, "prompt", c->prompt, "flows", (json_int_t)c->flows,
                                           "packets", (json_int_t)c->packets, "mean_packets",
                                           c->mean_packets, "templates", c->n_templates, "transport",
                                           "tcp", c->transport[0], "udp", c->transport[1], "icmp",
                                           c->transport[2]));
    }
    return json_pack("{s:o}", "classes", a);
}

static int route_of(const char *url)
{
    static const char *paths[] = {"/generate", "/v1/generate", "/v1/classes", "/v1/model",
                                  "/livez", "/readyz", "/metrics"};
    for (int i = 0; i < 7; i++)
        if (!strcmp(url, paths[i]))
            return i;
    return R_OTHER;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    srv *s = cls;
    (void)version;
    conn_ctx *cc = *con_cls;
    int route = route_of(url);
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    int post = !strcmp(method, "POST");
    if (!cc) {
        cc = calloc(1, sizeof *cc);
        if (!cc)
            return MHD_NO;
        cc->route = route;
        *con_cls = cc;
        if (route == R_V1_GENERATE && post) {
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
            if (cl && strtoull(cl, NULL, 10) > BODY_MAX) {
                cc->done = 1;
                return send_problem(s, c, route, 413, "body_too_large", "the body is over 64 KiB", url, NULL, NULL);
            }
            const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
            if (!ct || strncasecmp(ct, "application/json", 16) ||
                (ct[16] && ct[16] != ';' && ct[16] != ' ')) {
                cc->done = 1;
                return send_problem(s, c, route, 415, "unsupported_media_type",
                                    "POST /v1/generate takes application/json", url, "Accept-Post", "application/json");
            }
            return MHD_YES;    /* the body follows */
        }
    }
    if (cc->done) {
        *upload_size = 0;       /* answered already; discard what comes */
        return MHD_YES;
    }
    if (*upload_size) {
        if (cc->n + *upload_size > BODY_MAX) {
            cc->too_big = 1;
        } else {
            char *p = realloc(cc->body, cc->n + *upload_size + 1);
            if (!p)
                return MHD_NO;
            cc->body = p;
            memcpy(cc->body + cc->n, upload, *upload_size);
            cc->n += *upload_size;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    cc->done = 1;

    /* probes: cheap, no token */
    if (route == R_LIVEZ || route == R_READYZ) {
        if (!get)
            return send_problem(s, c, route, 405, "method_not_allowed", "use GET", url, "Allow", "GET, HEAD");
        if (route == R_LIVEZ)
            return send_buf(s, c, route, 200, "text/plain; charset=utf-8", "ok\n", 3, NULL, NULL);
        if (atomic_load(&s->draining))
            return send_problem(s, c, route, 503, "draining", "shutting down", url, "Retry-After", "5");
        if (!atomic_load(&s->ready))
            return send_problem(s, c, route, 503, "loading", "the model is loading", url, "Retry-After", "5");
        return send_buf(s, c, route, 200, "text/plain; charset=utf-8", "ready\n", 6, NULL, NULL);
    }
    /* the bearer token, when configured */
    char token[256];
    long max_n;
    pthread_mutex_lock(&s->cfg_mu);
    snprintf(token, sizeof token, "%s", s->cfg.token);
    max_n = s->cfg.max_n;
    pthread_mutex_unlock(&s->cfg_mu);
    if (token[0]) {
        const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        size_t tl = strlen(token);
        int okay = a && !strncmp(a, "Bearer ", 7) && strlen(a + 7) == tl;
        unsigned diff = 0;
        for (size_t i = 0; okay && i < tl; i++)
            diff |= (unsigned)(a[7 + i] ^ token[i]);
        if (!okay || diff)
            return send_problem(s, c, route, 401, "unauthorized", "a bearer token is required", url,
                                "WWW-Authenticate", "Bearer realm=\"netdiffd\"");
    }
    if (route == R_OTHER)
        return send_problem(s, c, route, 404, "not_found", "no such route (see /v1/classes, /generate)", url, NULL, NULL);
    if (route == R_V1_GENERATE ? !post : !get)
        return send_problem(s, c, route, 405, "method_not_allowed",
                            route == R_V1_GENERATE ? "use POST" : "use GET", url, "Allow",
                            route == R_V1_GENERATE ? "POST" : "GET, HEAD");
    if (route == R_METRICS) {
        nd_engine_counters k = {0};
        if (atomic_load(&s->ready))
            nd_engine_counters_get(s->engine, &k);
        nd_metrics_gauges g = {(double)k.queued, (double)atomic_load(&s->in_flight),
                               (double)k.active_flows,
                               atomic_load(&s->ready) ? (double)nd_model_drawer_device_bytes(s->md) : 0.0,
                               s->load_seconds,
                               atomic_load(&s->ready) && !atomic_load(&s->draining) ? 1.0 : 0.0,
                               k.flows_cancelled, k.steps, ND_VERSION, ND_GIT_REV,
                               s->standin ? "standin" : s->cfg.backend};
        /* count this scrape before rendering so it shows itself */
        nd_metrics_request(s->metrics, route, 200);
        size_t n;
        char *txt = nd_metrics_render(s->metrics, &g, &n);
        if (!txt)
            return MHD_NO;
        struct MHD_Response *r = MHD_create_response_from_buffer(n, txt, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (atomic_load(&s->draining))
        return send_problem(s, c, route, 503, "draining", "shutting down", url, "Retry-After", "5");
    if (!atomic_load(&s->ready))
        return send_problem(s, c, route, 503, "loading", "the model is loading", url, "Retry-After", "5");
    if (route == R_V1_CLASSES)
        return send_json(s, c, route, classes_json(&s->table));
    if (route == R_V1_MODEL) {
        json_t *loras = json_array();
        if (s->lora_desc[0])
            json_array_append_new(loras, json_string(s->lora_desc));
        return send_json(s, c, route, json_pack(
            "{s:s, s:s, s:o, s:o, s:s, s:s, s:s, s:{s:i, s:i, s:i}, s:i, s:i, s:f}",
            "model", s->model_desc, "classes", s->classes_path,
            "controlnet", s->cn_desc[0] ? json_string(s->cn_desc) : json_null(), "loras", loras,
            "backend", s->standin ? "standin" : s->cfg.backend, "dtype", "f32",
            "layout_kind", "nprint",
            "layout", "packets", s->table.layout.packets, "width", s->table.layout.width,
            "timing_cols", s->table.layout.timing_cols,
            "max_batch", s->cfg.max_batch, "n_classes", s->table.n, "load_seconds", s->load_seconds));
    }
    /* generation: everything checked before the 200 */
    nd_srv_request rq;
    nd_srv_problem p = {0};
    int bad;
    if (route == R_GENERATE) {
        MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_kv, cc);
        if (cc->kv_over) {
            p = (nd_srv_problem){400, "bad_parameter", "too many parameters"};
            bad = -1;
        } else {
            bad = nd_srv_parse_query(cc->kv, cc->n_kv, &s->table, max_n, &rq, &p);
        }
    } else {
        if (cc->too_big)
            return send_problem(s, c, route, 413, "body_too_large", "the body is over 64 KiB", url, NULL, NULL);
        bad = nd_srv_parse_json(cc->body ? cc->body : "", cc->n, &s->table, max_n, &rq, &p);
    }
    if (bad)
        return send_problem(s, c, route, p.status, p.code, p.detail, url, NULL, NULL);
    return start_generate(s, c, route, url, &rq);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    conn_ctx *cc = *con_cls;
    if (cc) {
        free(cc->body);
        free(cc);
        *con_cls = NULL;
    }
}

/* ------------------------------------------------------ model and engine */

static void on_step(void *ctx, int batch, double seconds)
{
    srv *s = ctx;
    nd_metrics_observe(s->metrics, "netdiffd_batch_size", batch);
    nd_metrics_observe(s->metrics, "netdiffd_step_duration_seconds", seconds);
}

static void on_admit(void *ctx, double wait)
{
    nd_metrics_observe(((srv *)ctx)->metrics, "netdiffd_queue_wait_seconds", wait);
}

/* The same options and defaults as `netdiff generate`. */
static nd_status load_model(srv *s, nd_err *err)
{
    double t0 = now_s();
    const nd_srv_config *c = &s->cfg;
    nd_default_paths dp;        /* the embedded default model, as netdiff finds it */
    nd_default_paths_get(&dp);
    if (c->classes[0])
        snprintf(s->classes_path, sizeof s->classes_path, "%s", c->classes);
    else if (getenv("ND_CLASSES") && *getenv("ND_CLASSES"))
        snprintf(s->classes_path, sizeof s->classes_path, "%s", getenv("ND_CLASSES"));
    else
        snprintf(s->classes_path, sizeof s->classes_path, "%.1000s", dp.classes);
    nd_status st = nd_class_table_load(s->classes_path, &s->table, err);
    if (st)
        return st;
    s->have_table = 1;
    const char *standin = getenv("ND_STANDIN_DRAWER");
    if (standin && !strcmp(standin, "1")) {
        /* hidden: the stand-in drawer (tests, load runs without a model) */
        nd_drawer d;
        snprintf(s->model_desc, sizeof s->model_desc, "standin");
        if ((st = nd_standin_drawer_new(&s->table, c->max_batch, &s->standin, &d, err)) ||
            (st = nd_oneshot_drawer_new(&d, &s->oneshot, &s->sd, err)))
            return st;
    } else {
        nd_model_params mp;
        nd_model_params_init(&mp);
        mp.backend = c->backend;
        /* one core budget for the step backend and the decoder beside it,
         * which run at the same time: giving each every core made OpenBLAS's
         * threads fight (0.84x the CLI's flows/s at 64 clients on 2 cores,
         * 1.23x split 1 + 1) */
        long budget = c->threads > 0 ? c->threads : sysconf(_SC_NPROCESSORS_ONLN);
        if (budget < 1)
            budget = 1;
        mp.decode_threads = budget > 1 ? (int)(budget / 2) : 1;
        mp.threads = budget > 1 ? (int)(budget - budget / 2) : 1;
        mp.batch = c->max_batch;
        int dflt = !c->model[0];
        snprintf(s->model_desc, sizeof s->model_desc, "%.1000s", dflt ? dp.model : c->model);
        mp.model = s->model_desc;
        if (c->controlnet[0] && strcmp(c->controlnet, "none"))
            snprintf(s->cn_desc, sizeof s->cn_desc, "%.1000s", c->controlnet);
        else if (!c->controlnet[0] && dflt) {
            if (access(dp.controlnet, R_OK) == 0)
                snprintf(s->cn_desc, sizeof s->cn_desc, "%.1000s", dp.controlnet);
        }
        mp.controlnet = s->cn_desc[0] ? s->cn_desc : NULL;
        float scale = 1.0f;
        if (c->lora[0]) {
            snprintf(s->lora_desc, sizeof s->lora_desc, "%s", c->lora);
            char *colon = strrchr(s->lora_desc, ':');
            char *end;
            if (colon && (scale = strtof(colon + 1, &end), !*end && colon[1]))
                *colon = '\0';
            else
                scale = 1.0f;
        } else if (dflt) {
            if (access(dp.lora, R_OK) == 0)
                snprintf(s->lora_desc, sizeof s->lora_desc, "%.1000s", dp.lora);
        }
        if (s->lora_desc[0]) {
            mp.loras[0].path = s->lora_desc;
            mp.loras[0].scale = scale;
            mp.n_loras = 1;
        }
        nd_drawer d;
        if ((st = nd_model_drawer_new(&mp, &s->table, &s->md, &d, err)))
            return st;
        if ((st = nd_model_drawer_steps(s->md, &s->sd, err)))
            return st;
    }
    /* warm-up: one step of one flow (embeddings, hint, arena) */
    if (s->table.n > 0) {
        nd_draw_req rq = {&s->table.v[0], 0, nd_gen_flow_seed(0, 0),
                          s->table.v[0].n_templates ? 0 : -1};
        void *flow = NULL;
        uint8_t done = 0;
        if ((st = s->sd.begin(s->sd.ctx, &rq, NULL, &flow, err)))
            return st;
        st = s->sd.step(s->sd.ctx, &flow, 1, &done, err);
        s->sd.end(s->sd.ctx, flow);
        if (st)
            return st;
    }
    nd_engine_params ep;
    nd_engine_params_init(&ep);
    ep.max_batch = c->max_batch;
    ep.max_requests = c->queue;
    ep.per_request = c->per_request ? c->per_request : (c->max_batch + 1) / 2;
    ep.hook_ctx = s;
    ep.on_step = on_step;
    ep.on_admit = on_admit;
    if ((st = nd_engine_new(&ep, &s->table, &s->sd, &s->engine, err)))
        return st;
    s->load_seconds = now_s() - t0;
    return ND_OK;
}

/* ---------------------------------------------------------- config, main */

static const char usage_head[] =
    "usage: netdiffd [--config FILE] [--KEY VALUE]...\n"
    "\n"
    "The netdiff generation daemon: GET /generate?class=NAME&n=N[&seed=S][&steps=K]\n"
    "[&sampler=ddim|euler|euler_a|dpmpp_2m][&cfg=G][&strength=S][&format=pcap|pcapng] streams a\n"
    "labelled capture, flow by flow; POST /v1/generate takes the same as JSON with\n"
    "several classes. Also /v1/classes, /v1/model, /livez, /readyz, /metrics.\n"
    "Same seed and options: the same bytes as `netdiff generate`.\n"
    "\n"
    "  --config FILE            'key value' lines with the keys below (default:\n"
    "                           conf/netdiffd.conf beside the binary's folder, if present)\n"
    "  --help, --version\n";

/* defaults, then the file, then the flags (later wins) */
static nd_status build_config(srv *s, nd_srv_config *c, nd_err *err)
{
    nd_srv_config_init(c);
    const char *conf = NULL;
    for (int i = 1; i + 1 < s->argc; i++)
        if (!strcmp(s->argv[i], "--config"))
            conf = s->argv[i + 1];
    static char def[4400];      /* s->conf_path may point here after we return */
    if (!conf) {
        nd_default_paths dp;
        nd_default_paths_get(&dp);
        snprintf(def, sizeof def, "%.4000s/conf/netdiffd.conf", dp.home);
        if (access(def, R_OK) == 0)
            conf = def;
    }
    s->conf_path = conf;
    nd_status st;
    if (conf && (st = nd_srv_config_load(c, conf, err)))
        return st;
    for (int i = 1; i < s->argc; i++) {
        const char *a = s->argv[i];
        if (strncmp(a, "--", 2))
            return nd_fail(err, ND_EINVAL, "unexpected argument '%s' (see --help)", a);
        const char *eq = strchr(a, '=');
        char key[64];
        const char *val;
        if (eq) {
            snprintf(key, sizeof key, "%.*s", (int)(eq - a - 2 < 63 ? eq - a - 2 : 63), a + 2);
            val = eq + 1;
        } else {
            if (i + 1 >= s->argc)
                return nd_fail(err, ND_EINVAL, "%s needs a value", a);
            snprintf(key, sizeof key, "%s", a + 2);
            val = s->argv[++i];
        }
        if (!strcmp(key, "config"))
            continue;
        nd_err e2 = {{0}};
        if ((st = nd_srv_config_set(c, key, val, &e2)))
            return nd_fail(err, ND_EINVAL, "--%s: %s", key, e2.msg);
    }
    return ND_OK;
}

static void reload(srv *s)
{
    nd_srv_config c;
    nd_err err = {{0}};
    if (build_config(s, &c, &err)) {
        fprintf(stderr, "netdiffd: SIGHUP: config not reloaded: %s\n", err.msg);
        return;
    }
    pthread_mutex_lock(&s->cfg_mu);
    /* what applies at once; the rest needs a restart */
    int restart = strcmp(c.listen, s->cfg.listen) || c.port != s->cfg.port ||
                  strcmp(c.model, s->cfg.model) || strcmp(c.classes, s->cfg.classes) ||
                  strcmp(c.lora, s->cfg.lora) || strcmp(c.controlnet, s->cfg.controlnet) ||
                  strcmp(c.backend, s->cfg.backend) || c.max_batch != s->cfg.max_batch ||
                  c.queue != s->cfg.queue || c.threads != s->cfg.threads ||
                  c.per_request != s->cfg.per_request || c.max_connections != s->cfg.max_connections;
    memcpy(s->cfg.token, c.token, sizeof c.token);
    s->cfg.max_n = c.max_n;
    s->cfg.request_timeout = c.request_timeout;
    s->cfg.drain_grace = c.drain_grace;
    pthread_mutex_unlock(&s->cfg_mu);
    fprintf(stderr, "netdiffd: SIGHUP: reloaded %s (token, max-n, request-timeout, drain-grace)%s\n",
            s->conf_path ? s->conf_path : "(flags only)",
            restart ? "; model, listen and engine keys changed: they take a restart" : "");
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_head, stdout);
            nd_srv_config_help(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--version")) {
            printf("netdiffd %s (%s)\n", ND_VERSION, ND_GIT_REV);
            return 0;
        }
    }
    static srv S;
    srv *s = &S;
    s->argc = argc;
    s->argv = argv;
    pthread_mutex_init(&s->cfg_mu, NULL);
    nd_err err = {{0}};
    if (build_config(s, &s->cfg, &err)) {
        fprintf(stderr, "netdiffd: %s\n", err.msg);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    s->metrics = nd_metrics_new();
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)s->cfg.port);
    if (!s->metrics || inet_pton(AF_INET, s->cfg.listen, &addr.sin_addr) != 1) {
        fprintf(stderr, "netdiffd: listen: '%s' is not an IPv4 address\n", s->cfg.listen);
        nd_metrics_free(s->metrics);
        return 2;
    }
    s->mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                                  MHD_USE_ITC,
                              0, NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, &addr,
                              MHD_OPTION_NOTIFY_COMPLETED, completed, s,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->cfg.max_connections,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
                              MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
    if (!s->mhd) {
        fprintf(stderr, "netdiffd: cannot listen on %s:%d\n", s->cfg.listen, s->cfg.port);
        nd_metrics_free(s->metrics);
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    fprintf(stderr, "netdiffd: listening on http://%s:%u\n", s->cfg.listen,
            di ? (unsigned)di->port : (unsigned)s->cfg.port);
    int rc = 0;
    nd_status st = load_model(s, &err);
    if (st) {
        fprintf(stderr, "netdiffd: %s\n", err.msg);
        rc = 1;
        g_term = 1;
    } else {
        atomic_store(&s->ready, 1);
        fprintf(stderr, "netdiffd: ready (%s, %d classes, batch %d, %.2f s)\n", s->model_desc,
                s->table.n, s->cfg.max_batch, s->load_seconds);
    }
    while (!g_term) {
        usleep(50000);
        if (g_hup) {
            g_hup = 0;
            reload(s);
        }
    }
    /* drain: readyz 503, new work refused, streams finish within the grace */
    atomic_store(&s->draining, 1);
    pthread_mutex_lock(&s->cfg_mu);
    double grace_end = now_s() + s->cfg.drain_grace;
    pthread_mutex_unlock(&s->cfg_mu);
    if (!rc)
        fprintf(stderr, "netdiffd: draining (%d streams)\n", atomic_load(&s->in_flight));
    while (atomic_load(&s->in_flight) > 0 && now_s() < grace_end)
        usleep(20000);
    atomic_store(&s->stopping, 1);
    MHD_stop_daemon(s->mhd);
    nd_engine_free(s->engine);
    nd_oneshot_drawer_free(s->oneshot);
    nd_standin_drawer_free(s->standin);
    nd_model_drawer_free(s->md);
    if (s->have_table)
        nd_class_table_free(&s->table);
    nd_metrics_free(s->metrics);
    pthread_mutex_destroy(&s->cfg_mu);
    if (!rc)
        fprintf(stderr, "netdiffd: stopped\n");
    return rc;
}
