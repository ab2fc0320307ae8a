/* server/server.h - netdiffd: configuration (one table for the file and the
 * flags), request parsing (query string / JSON -> a generation job), the
 * metrics registry. Parsers are pure (no I/O) so the fuzz targets drive them.
 * Generation itself is gen/'s engine (gen/gen.h). */
#ifndef ND_SERVER_H
#define ND_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gen/gen.h"

/* ---- configuration ---- */
#define ND_SRV_PATH_MAX 1024
typedef struct nd_srv_config {
    char listen[64];            /* 127.0.0.1                                     */
    int port;                   /* 8080; 0: any free port                        */
    int threads;                /* compute threads (0: every core)               */
    char model[ND_SRV_PATH_MAX];      /* "" : the default model                  */
    char lora[ND_SRV_PATH_MAX];       /* PATH[:SCALE] or ""                      */
    char controlnet[ND_SRV_PATH_MAX]; /* "" : the default model's; "none"        */
    char classes[ND_SRV_PATH_MAX];    /* "" : the default model's table          */
    char backend[32];           /* cpu                                           */
    int max_batch;              /* flows per model step (8)                      */
    int per_request;            /* flows of one request in a step while other
                                   requests want flows (0: max_batch / 2)      */
    long max_n;                 /* flows per request at most (100000)            */
    int queue;                  /* requests queued or running at most (64)       */
    int request_timeout;        /* seconds a request may take (600)              */
    int drain_grace;            /* seconds SIGTERM waits for streams (30)        */
    int max_connections;        /* (256)                                         */
    char token[256];            /* bearer token ("" : none)                      */
} nd_srv_config;

void nd_srv_config_init(nd_srv_config *c);
/* Sets key (file spelling or flag spelling without "--"; '_' == '-') to value.
 * ND_ENOTFOUND for an unknown key, ND_EINVAL for a bad value. */
nd_status nd_srv_config_set(nd_srv_config *c, const char *key, const char *value, nd_err *err);
/* "key value" lines, '#' comments; errors name the line. */
nd_status nd_srv_config_parse(nd_srv_config *c, const char *text, size_t n, const char *name,
                              nd_err *err);
nd_status nd_srv_config_load(nd_srv_config *c, const char *path, nd_err *err);
/* The flags' help text, from the table. */
void nd_srv_config_help(FILE *f);

/* ---- requests ---- */
typedef struct nd_srv_request {
    nd_gen_job job;
    nd_flow_params fp;
    nd_capfmt fmt;
    char first_class[ND_CLASS_NAME_MAX];   /* for the file name */
} nd_srv_request;

/* An error answer: RFC 9457 problem details. */
typedef struct nd_srv_problem {
    int status;                 /* 400 ...                                       */
    const char *code;           /* stable: "bad_parameter", "unknown_class", ... */
    char detail[600];
} nd_srv_problem;

typedef struct nd_srv_kv {
    const char *key, *value;
} nd_srv_kv;

/* Query parameters (already URL-decoded) -> request. 0, or -1 with p set. */
int nd_srv_parse_query(const nd_srv_kv *kv, int n, const nd_class_table *t, long max_n,
                       nd_srv_request *r, nd_srv_problem *p);
/* A raw query string "a=b&c=d" (URL-decoding here; for the fuzz target). */
int nd_srv_parse_query_string(const char *qs, const nd_class_table *t, long max_n,
                              nd_srv_request *r, nd_srv_problem *p);
/* POST /v1/generate body: {"classes": {"NAME": COUNT, ...} | "class": "NAME",
 * "n": N, "seed": S, "steps": K, "sampler": "...", "cfg": G, "format": "pcap"} */
int nd_srv_parse_json(const char *body, size_t n, const nd_class_table *t, long max_n,
                      nd_srv_request *r, nd_srv_problem *p);

#endif
