/* server/metrics.c - counters and histograms, rendered in the Prometheus
 * text format 0.0.4: netdiffd_* names, base units, bounded labels (routes
 * are a fixed set, codes are HTTP codes we send, classes come from the
 * class table, capped). */
#include "server/metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

const char *const nd_m_route_name[ND_M_ROUTES] = {
    "/generate", "/v1/generate", "/v1/classes", "/v1/model", "/livez", "/readyz", "/metrics",
    "other", "none"};

#define MAX_CODES 16
#define MAX_CLASSES 256

static const double b_batch[] = {1, 2, 4, 8, 16, 32, 64};
static const double b_step[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const double b_wait[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300};

static const struct {
    const char *name, *help;
    const double *b;
    int n;
} hists[] = {
    {"netdiffd_batch_size", "Flows per model step.", b_batch, 7},
    {"netdiffd_step_duration_seconds", "Wall time of one batched model step.", b_step, 12},
    {"netdiffd_time_to_first_flow_seconds", "From request to its first streamed flow.", b_wait, 12},
    {"netdiffd_queue_wait_seconds", "From request to its first flow joining a batch.", b_wait, 12},
    {"netdiffd_request_duration_seconds", "Generation requests, request to end of stream.", b_wait, 12},
};
#define N_HISTS (int)(sizeof hists / sizeof hists[0])

struct nd_metrics {
    pthread_mutex_t mu;
    int codes[MAX_CODES];
    int n_codes;
    uint64_t req[ND_M_ROUTES][MAX_CODES];
    char cls[MAX_CLASSES][64];
    uint64_t cls_flows[MAX_CLASSES], cls_packets[MAX_CLASSES];
    int n_cls;
    nd_hist h[N_HISTS];
};

nd_metrics *nd_metrics_new(void)
{
    nd_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pthread_mutex_init(&m->mu, NULL);
    for (int i = 0; i < N_HISTS; i++) {
        m->h[i].n = hists[i].n;
        m->h[i].bounds = hists[i].b;
    }
    return m;
}

void nd_metrics_free(nd_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void nd_metrics_request(nd_metrics *m, int route, int code)
{
    if (route < 0 || route >= ND_M_ROUTES)
        route = R_OTHER;
    pthread_mutex_lock(&m->mu);
    int k = 0;
    while (k < m->n_codes && m->codes[k] != code)
        k++;
    if (k == m->n_codes && k < MAX_CODES)
        m->codes[m->n_codes++] = code;
    if (k < MAX_CODES)
        m->req[route][k]++;
    pthread_mutex_unlock(&m->mu);
}

void nd_metrics_flow(nd_metrics *m, const char *cls, uint64_t packets)
{
    pthread_mutex_lock(&m->mu);
    int k = 0;
    while (k < m->n_cls && strcmp(m->cls[k], cls))
        k++;
    if (k == m->n_cls && k < MAX_CLASSES)
        snprintf(m->cls[m->n_cls++], 64, "%s", cls);
    if (k < MAX_CLASSES) {
        m->cls_flows[k]++;
        m->cls_packets[k] += packets;
    }
    pthread_mutex_unlock(&m->mu);
}

void nd_metrics_observe(nd_metrics *m, const char *hist, double v)
{
    for (int i = 0; i < N_HISTS; i++)
        if (!strcmp(hists[i].name, hist)) {
            pthread_mutex_lock(&m->mu);
            nd_hist *h = &m->h[i];
            int b = 0;
            while (b < h->n && v > h->bounds[b])
                b++;
            h->counts[b]++;
            h->sum += v;
            h->count++;
            pthread_mutex_unlock(&m->mu);
            return;
        }
}

/* label values: escape backslash, quote, newline */
static void label(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f), fputc(*s, f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

char *nd_metrics_render(nd_metrics *m, const nd_metrics_gauges *g, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f)
        return NULL;
    pthread_mutex_lock(&m->mu);
    fputs("# HELP netdiffd_http_requests_total HTTP requests answered, by route and status code.\n"
          "# TYPE netdiffd_http_requests_total counter\n", f);
    for (int r = 0; r < ND_M_ROUTES; r++)
        for (int k = 0; k < m->n_codes; k++)
            if (m->req[r][k])
                fprintf(f, "netdiffd_http_requests_total{route=\"%s\",code=\"%d\"} %llu\n",
                        nd_m_route_name[r], m->codes[k], (unsigned long long)m->req[r][k]);
    fputs("# HELP netdiffd_flows_generated_total Flows streamed to clients, by class.\n"
          "# TYPE netdiffd_flows_generated_total counter\n", f);
    for (int k = 0; k < m->n_cls; k++) {
        fputs("netdiffd_flows_generated_total{class=\"", f);
        label(f, m->cls[k]);
        fprintf(f, "\"} %llu\n", (unsigned long long)m->cls_flows[k]);
    }
    fputs("# HELP netdiffd_packets_generated_total Packets streamed to clients, by class.\n"
          "# TYPE netdiffd_packets_generated_total counter\n", f);
    for (int k = 0; k < m->n_cls; k++) {
        fputs("netdiffd_packets_generated_total{class=\"", f);
        label(f, m->cls[k]);
        fprintf(f, "\"} %llu\n", (unsigned long long)m->cls_packets[k]);
    }
    for (int i = 0; i < N_HISTS; i++) {
        const nd_hist *h = &m->h[i];
        fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", hists[i].name, hists[i].help,
                hists[i].name);
        uint64_t cum = 0;
        for (int b = 0; b < h->n; b++) {
            cum += h->counts[b];
            fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", hists[i].name, h->bounds[b],
                    (unsigned long long)cum);
        }
        cum += h->counts[h->n];
        fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", hists[i].name,
                (unsigned long long)cum, hists[i].name, h->sum, hists[i].name,
                (unsigned long long)h->count);
    }
    pthread_mutex_unlock(&m->mu);
    fprintf(f, "# HELP netdiffd_flows_cancelled_total Flows dropped because their request "
            "ended early (disconnect, timeout, drain).\n# TYPE netdiffd_flows_cancelled_total "
            "counter\nnetdiffd_flows_cancelled_total %llu\n", (unsigned long long)g->flows_cancelled);
    fprintf(f, "# HELP netdiffd_model_steps_total Batched model steps run.\n# TYPE "
            "netdiffd_model_steps_total counter\nnetdiffd_model_steps_total %llu\n",
            (unsigned long long)g->engine_steps);
    struct { const char *n, *h; double v; } gs[] = {
        {"netdiffd_queue_depth", "Requests waiting for their first flow to join a batch.", g->queue_depth},
        {"netdiffd_requests_in_flight", "Generation requests being answered.", g->in_flight},
        {"netdiffd_active_flows", "Flows in the current batch.", g->active_flows},
        {"netdiffd_gpu_memory_used_bytes", "Device memory in use, from the model's backend (cuda: the GPU's used memory; 0 on the CPU backends).", g->gpu_memory_bytes},
        {"netdiffd_model_load_seconds", "Time taken to load the model and run the warm-up step.", g->model_load_seconds},
        {"netdiffd_ready", "1 when /readyz answers 200.", g->ready},
    };
    for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++)
        fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n%s %.9g\n", gs[i].n, gs[i].h, gs[i].n, gs[i].n, gs[i].v);
    fprintf(f, "# HELP netdiffd_build_info Build and backend of this daemon.\n# TYPE "
            "netdiffd_build_info gauge\nnetdiffd_build_info{version=\"");
    label(f, g->version);
    fputs("\",revision=\"", f);
    label(f, g->revision);
    fputs("\",backend=\"", f);
    label(f, g->backend);
    fputs("\"} 1\n", f);
    if (fclose(f)) {
        free(buf);
        return NULL;
    }
    return buf;
}
