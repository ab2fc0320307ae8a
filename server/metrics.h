/* server/metrics.h - the daemon's Prometheus metrics (text format 0.0.4). */
#ifndef ND_SERVER_METRICS_H
#define ND_SERVER_METRICS_H
#include <stdint.h>
#include <stdio.h>

#define ND_M_ROUTES 9
enum { R_GENERATE, R_V1_GENERATE, R_V1_CLASSES, R_V1_MODEL, R_LIVEZ, R_READYZ, R_METRICS,
       R_OTHER, R_NONE };
extern const char *const nd_m_route_name[ND_M_ROUTES];

typedef struct nd_hist {
    int n;
    const double *bounds;       /* upper bounds, ascending; +Inf implied         */
    uint64_t counts[24];        /* per bucket (not cumulative), [n] = +Inf       */
    double sum;
    uint64_t count;
} nd_hist;

typedef struct nd_metrics nd_metrics;
nd_metrics *nd_metrics_new(void);
void nd_metrics_free(nd_metrics *m);
void nd_metrics_request(nd_metrics *m, int route, int code);
void nd_metrics_flow(nd_metrics *m, const char *cls, uint64_t packets);
void nd_metrics_observe(nd_metrics *m, const char *hist, double v);
/* the gauges and constants the exposition needs */
typedef struct nd_metrics_gauges {
    double queue_depth, in_flight, active_flows, gpu_memory_bytes, model_load_seconds, ready;
    uint64_t flows_cancelled, engine_steps;
    const char *version, *revision, *backend;
} nd_metrics_gauges;
/* Writes the exposition into a malloc'd string. */
char *nd_metrics_render(nd_metrics *m, const nd_metrics_gauges *g, size_t *len);
#endif
