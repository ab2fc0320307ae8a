/* gen/gen.h - the generation job and the class table it draws from.
 *
 * Class table: what a model can generate, one entry per class: its name, the
 * prompt the model was trained with (NetDiffusion style, "pixelated network
 * data, type-N"), template flows whose canny edges guide the ControlNet, and
 * the statistics of the class's real traffic that the repair step needs
 * (inter-arrival times per direction change, TTLs) plus summary facts
 * (transport shares, server ports) used to check conditioning. It is made
 * from labelled captures (nd_class_builder, `netdiff classes build`) and
 * stored as JSON (conf/classes.json) with template images beside it.
 *
 * Ownership: an nd_class_table owns its classes; free it with
 * nd_class_table_free. Strings inside belong to the table. No function here
 * prints; errors are nd_status + one line in nd_err naming the file. */
#ifndef ND_GEN_H
#define ND_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/codec.h"
#include "common/nd.h"
#include "heuristics/repair.h"

/* ============================================================ class table */

#define ND_CLASS_NAME_MAX 64
#define ND_CLASS_PROMPT_MAX 160
#define ND_CLASS_MAX_TEMPLATES 16
#define ND_CLASS_TOP_PORTS 8
#define ND_CLASS_FORMAT "netdiffd-classes/1"

typedef struct nd_class {
    char name[ND_CLASS_NAME_MAX];
    char prompt[ND_CLASS_PROMPT_MAX];
    uint64_t flows, packets;            /* real traffic the entry was built from   */
    double transport[3];                /* share of flows: TCP, UDP, ICMP          */
    double ipv6_share;                  /* share of flows over IPv6                */
    int n_ports;                        /* server-side ports, most flows first     */
    uint16_t port[ND_CLASS_TOP_PORTS];
    uint8_t port_proto[ND_CLASS_TOP_PORTS]; /* 6 or 17                             */
    double port_share[ND_CLASS_TOP_PORTS];
    double mean_packets;                /* packets per flow (first K kept)         */
    int n_templates;                    /* template flows, as layout images        */
    char templates[ND_CLASS_MAX_TEMPLATES][256]; /* paths relative to the table     */
    nd_class_stats stats;               /* what the repair draws from              */
} nd_class;

typedef struct nd_class_table {
    int n;
    nd_class *v;                        /* sorted by name                          */
    nd_layout layout;                   /* the images' layout (templates)          */
    /* Optional "strength": the img2img strength the model is meant to be
     * drawn at (its model card says why) when a request names none;
     * 0: not stated (1.0, text to image from noise). */
    float strength;
    char dir[4096];                     /* folder of the table: templates resolve here */
} nd_class_table;

/* Reads a class table (strict: unknown keys, wrong types and out-of-range
 * values are errors naming the key). */
nd_status nd_class_table_load(const char *path, nd_class_table *t, nd_err *err);
/* The same from memory (dir: where templates resolve; may be "."). */
nd_status nd_class_table_parse(const char *json, size_t n, const char *dir, nd_class_table *t,
                               nd_err *err);
/* Writes the table as JSON (atomically: temporary file, then rename). */
nd_status nd_class_table_save(const nd_class_table *t, const char *path, nd_err *err);
/* The class called name, or NULL. */
const nd_class *nd_class_table_find(const nd_class_table *t, const char *name);
/* Full path of template k of class c, into buf. */
void nd_class_template_path(const nd_class_table *t, const nd_class *c, int k, char *buf,
                            size_t n);
void nd_class_table_free(nd_class_table *t);

/* The repair statistics of a class, with its server ports filled in. */
void nd_class_stats_of(const nd_class *c, nd_class_stats *s);

/* Building a table from labelled captures. */
typedef struct nd_class_builder nd_class_builder;
typedef struct nd_class_build_opts {
    nd_layout layout;                   /* template image layout (packet budget)   */
    int templates;                      /* template flows kept per class (8)       */
    int min_flows;                      /* classes with fewer flows are left out (5) */
    int min_template_packets;           /* templates need at least this many (1)   */
    const char *prompt_format;          /* printf format with one %d ("pixelated network data, type-%d") */
} nd_class_build_opts;
void nd_class_build_opts_init(nd_class_build_opts *o);

nd_status nd_class_builder_new(const nd_class_build_opts *o, nd_class_builder **out,
                               nd_err *err);
/* Splits a capture into flows (fo: flow options with the labeler) and adds
 * every labelled flow to its class. The builder keeps path and a copy of
 * *fo: finish reads the captures again (templates are chosen from a class's
 * whole length distribution, and only their packets are kept), so the files
 * must not change and fo's labeler and bpf must live until finish. */
nd_status nd_class_builder_add_capture(nd_class_builder *b, const char *path,
                                       const nd_flow_opts *fo, nd_err *err);
/* Finishes the table: classes with at least min_flows flows, sorted by name,
 * prompts numbered in that order. A class's templates are flows of at least
 * min_template_packets packets, as many per transport as its share of the
 * flows (at least one for a transport with 15% of them), at evenly spaced
 * quantiles of length, so that drawing them in turn draws flows like the
 * class's; listed by transport (TCP, UDP, other), shortest first. Template
 * images are written into
 * template_dir (created if needed), their paths stored relative to
 * table_dir. skipped (may be NULL) receives one "name: N flows" line per
 * class left out, separated by newlines. */
nd_status nd_class_builder_finish(nd_class_builder *b, const char *table_dir,
                                  const char *template_dir, nd_class_table *out,
                                  char *skipped, size_t skipped_n, nd_err *err);
void nd_class_builder_free(nd_class_builder *b);

/* ========================================================= the generation job
 *
 * A job asks for flows of some classes; gen/ turns it into batched draws of a
 * drawer (the model pipeline, or anything that makes layout images), snaps
 * each image to bits, repairs the bits into packets with the class's
 * statistics, and hands every finished flow to the sinks at once. Flow k of a
 * job has seed nd_gen_flow_seed(job seed, k): the same job gives the same
 * flows whatever the batch size. cli/ and server/ only parse requests and
 * call this.
 *
 * Determinism. The same job and options give the same bytes on the same
 * backend, run after run and whatever the batch size and thread count
 * (tests/gen/test_model_determinism.c checks the drawn floats bit for bit at
 * batch 1, 3, 8 and 1, 2 threads; test_generate.sh the pcaps). Why it holds
 * on the CPU backend: a sample's arithmetic never depends on the other
 * samples of its batch or on how the work is split over threads:
 *  - its noise is a counter-based function of its seed (model/noise.c), its
 *    hint, prompt embedding, hint embedding and VAE decode are computed for
 *    it alone (batch 1), the repair draws from (job seed, flow index);
 *  - every pool task computes a fixed piece (a group of one image, rows of
 *    one sample, an attention (sample, head, query tile)) with no reduction
 *    across tasks, so which thread runs it does not matter;
 *  - convolutions run one image at a time (im2col bands, Winograd tile bands
 *    sized from the layer, not the batch), so running the part of a CFG
 *    pair before its first cross-attention once (nd_unet_input.cfg_pairs)
 *    gives both halves the bits they would have had;
 *  - OpenBLAS SGEMM partitions M and N over its threads, never K, so an
 *    output element is one dot product in one kernel. But it picks its
 *    kernel from the matrix shape, and its few-row kernels round differently
 *    from its blocked ones (measured: rows of a 2-row time embedding product
 *    change between M = 2 and M = 16). So the per-sample vectors (the time
 *    embedding MLP, every resnet's time_emb_proj) go row by row
 *    (ndg_linear_rows); the token products, with >= 77 rows per sample, stay
 *    batched: the blocked kernels give a row the same bits for any M
 *    (checked from 1 to 16 samples of 77 and 276 tokens).
 * Another BLAS build or another CPU may round differently: same backend
 * means same binary, same libraries, same machine type. */

#define ND_GEN_MAX_ITEMS 64

typedef struct nd_draw_req {
    const nd_class *cls;        /* what to draw                                 */
    uint64_t flow_index;        /* position in the job                           */
    uint64_t seed;              /* nd_gen_flow_seed(job seed, flow_index)        */
    int template_index;         /* which of the class's templates guides it (-1 none) */
} nd_draw_req;

/* What draws images. draw() fills planar f32 images in [0, 1] (the VAE's
 * output layout: [n][3][packets][width] of `layout`), one per request;
 * requests in one call are at most max_batch. */
typedef struct nd_drawer {
    void *ctx;
    int max_batch;
    nd_layout layout;
    nd_status (*draw)(void *ctx, const nd_draw_req *req, int n, float *planar, nd_err *err);
} nd_drawer;

/* One finished flow, valid during the sink call. */
typedef struct nd_gen_flow {
    uint64_t index;             /* position in the job                           */
    const nd_class *cls;
    uint64_t seed;
    const nd_repair_out *out;   /* the packets                                   */
    const nd_repair_counts *counts; /* what repair changed in this flow          */
    uint64_t bytes;             /* sum of packet lengths                         */
} nd_gen_flow;

typedef struct nd_gen_sink {
    void *ctx;
    nd_status (*flow)(void *ctx, const nd_gen_flow *f, nd_err *err);
} nd_gen_sink;

typedef struct nd_gen_item {
    char cls[ND_CLASS_NAME_MAX];
    uint64_t count;
} nd_gen_item;

typedef struct nd_gen_job {
    int n_items;
    nd_gen_item items[ND_GEN_MAX_ITEMS];
    uint64_t seed;
    int linktype;               /* ND_LINKTYPE_ETHERNET (default) or ND_LINKTYPE_RAW */
    int64_t start_us;           /* time of the first flow (repair's default if 0)   */
    uint64_t max_flows;         /* a job asking for more is refused (1e6)           */
} nd_gen_job;
void nd_gen_job_init(nd_gen_job *j);

/* Parses "NAME" (with count n) or "NAME=COUNT,NAME=COUNT,..." into the job,
 * checking every name against the table (an unknown class lists the known
 * ones) and the total against j->max_flows. */
nd_status nd_gen_job_parse(nd_gen_job *j, const char *spec, uint64_t n, const nd_class_table *t,
                           nd_err *err);
uint64_t nd_gen_job_total(const nd_gen_job *j);
/* The seed of flow k of a job with seed s (splitmix64 of both, 53 bits so
 * that JSON readers using doubles keep it exact). */
uint64_t nd_gen_flow_seed(uint64_t s, uint64_t k);

typedef struct nd_gen_stats {
    uint64_t flows, packets, bytes;
    double seconds_draw, seconds_post; /* drawing vs snap + repair + sinks      */
    nd_repair_counts counts;           /* summed over the job                   */
} nd_gen_stats;

/* Called after every finished flow (done of total); may be NULL. */
typedef void (*nd_gen_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Runs a job. cancel (may be NULL) is polled between draws: when it becomes
 * non-zero the job stops with ND_ECANCELLED after the flows already handed
 * over. A sink's error stops the job with that error. */
nd_status nd_gen_run(const nd_gen_job *job, const nd_class_table *t, const nd_drawer *d,
                     const nd_gen_sink *sinks, int n_sinks, nd_gen_progress_fn progress,
                     void *progress_ctx, volatile const int *cancel, nd_gen_stats *stats,
                     nd_err *err);

/* ======================================================= the model drawer
 *
 * The SD pipeline (model/sd.h) as a drawer: per request the class prompt
 * (embedding cached per class), the canny hint of one of the class's template
 * flows, initial noise from the flow's seed (so a flow does not depend on
 * the batch it was drawn in), the sampler loop over a batched CFG denoiser,
 * VAE decode, and the image in [0, 1]. */
#define ND_MODEL_MAX_LORAS 8
typedef struct nd_model_params {
    const char *model;          /* LDM single file or diffusers folder          */
    const char *controlnet;     /* NULL: no ControlNet                           */
    int n_loras;
    struct { const char *path; float scale; } loras[ND_MODEL_MAX_LORAS];
    const char *backend;        /* "cpu" (default), "cpu_ref"                    */
    int threads;                /* 0: every core                                 */
    int decode_threads;         /* the step drawer's own VAE decoder (nd_model_
                                 * drawer_steps); 0: half of threads or cores.
                                 * A caller that runs both at once on a fixed
                                 * core budget gives threads + decode_threads =
                                 * the budget: more oversubscribes the cores */
    int batch;                  /* flows drawn at once (1)                       */
    int steps;                  /* sampler steps (20)                            */
    int sampler;                /* sd_sampler_kind (DDIM)                        */
    float cfg;                  /* guidance scale (7.5)                          */
    float control_scale;        /* ControlNet conditioning scale (1.0)           */
    /* img2img (SDEdit) strength in (0, 1]: 1 draws from pure noise; below 1
     * the flow starts from its template's latent (the VAE encoder's mean)
     * noised to the sampler step diffusers' img2img would start at, and runs
     * only the remaining steps (max(1, int(steps * strength)) of them).
     * Flows of a class without templates always start from noise.
     * 0 (the default): the class table's "strength", else 1.0. */
    float strength;
    const char *negative;       /* negative prompt ("")                          */
} nd_model_params;
void nd_model_params_init(nd_model_params *p);

typedef struct nd_model_drawer nd_model_drawer;
/* Loads the model for the class table t (its layout is the image size); the
 * table must outlive the drawer. *d is ready to pass to nd_gen_run. */
nd_status nd_model_drawer_new(const nd_model_params *p, const nd_class_table *t,
                              nd_model_drawer **out, nd_drawer *d, nd_err *err);
void nd_model_drawer_free(nd_model_drawer *m);
/* Seconds spent per stage so far: text encoder, hints (template PNG, canny,
 * the ControlNet's hint encoder: once per hint), the sampler steps (UNet +
 * ControlNet + sampler), VAE decode. */
typedef struct nd_model_times {
    double text, hint, steps, vae;
} nd_model_times;
void nd_model_drawer_times(const nd_model_drawer *m, nd_model_times *t);
/* Device memory its backend has in use (0 on the CPU backends; see
 * nd_backend_device_bytes in kernels/ops.h). */
size_t nd_model_drawer_device_bytes(const nd_model_drawer *m);

/* The embedded default model: where its files are. home is $ND_HOME, else
 * the parent of the running binary's folder (build/ in a checkout). */
typedef struct nd_default_paths {
    char home[2048];
    char model[2300];           /* weights/default/netdiff_default.safetensors  */
    char controlnet[2300];      /* weights/default/control_netdiff_canny.safetensors */
    char lora[2300];            /* weights/default/netdiff_lora.safetensors     */
    char classes[2300];         /* conf/classes.json                             */
} nd_default_paths;
void nd_default_paths_get(nd_default_paths *p);

/* Several drawers as one, drawing at once: k copies of a model, each on its
 * own thread (and its own backend threads), for models whose ops are too
 * small to split over cores well (the default model: a core per copy beats
 * two cores per op, where every op ends waiting for the slower thread).
 * draw() gives drawer i the contiguous share [i*n/k, (i+1)*n/k) of its
 * requests; max_batch is the sum. The drawers must have the same max_batch
 * and layout, and stay the caller's (freed after this). Since a flow's image
 * depends only on its request, the bytes are those of one drawer. */
typedef struct nd_parallel_drawer nd_parallel_drawer;
nd_status nd_parallel_drawer_new(const nd_drawer *ds, int k, nd_parallel_drawer **out,
                                 nd_drawer *d, nd_err *err);
void nd_parallel_drawer_free(nd_parallel_drawer *p);
/* The copies worth making of the model p names with `threads` cores: each
 * core its own copy when the model is small (its weight files under 256 MiB
 * together, on a CPU backend), at most ND_MODEL_MAX_COPIES; else 1. */
#define ND_MODEL_MAX_COPIES 64
int nd_model_auto_copies(const nd_model_params *p, int threads);

/* Sinks that cli/ and server/ share. */
/* A capture (pcap or pcapng; pcapng packets carry "FLOWINDEX,CLASS"). */
typedef struct nd_capture_sink nd_capture_sink;
nd_status nd_capture_sink_new(nd_capfmt fmt, int linktype, nd_write_fn fn, void *fn_ctx,
                              nd_capture_sink **out, nd_gen_sink *sink, nd_err *err);
void nd_capture_sink_free(nd_capture_sink *s);
/* The manifest: a JSON array, one object per flow (class, index, seed,
 * packets, bytes, first/last timestamp, fields repair changed). */
typedef struct nd_manifest_sink nd_manifest_sink;
nd_status nd_manifest_sink_new(FILE *f, nd_manifest_sink **out, nd_gen_sink *sink, nd_err *err);
/* Closes the array; the FILE stays the caller's. */
nd_status nd_manifest_sink_finish(nd_manifest_sink *s, nd_err *err);
void nd_manifest_sink_free(nd_manifest_sink *s);

/* ============================================ step drawers and the engine
 *
 * Continuous batching: a step drawer advances many flows by one denoising
 * step in one model call, each flow with its own latent, sampler, seed,
 * prompt, hint, guidance and timestep, so flows of different requests (and
 * classes, step counts, samplers) share a call and a new flow joins at the
 * next step. A flow's result depends only on its request (per-flow sampler
 * and seeded noise), never on what it was batched with: the engine gives the
 * same bytes as nd_gen_run for the same job. */

/* Per-request sampling options (0 / negative: the drawer's defaults). */
typedef struct nd_flow_params {
    int steps;                  /* 0: default                                    */
    int sampler;                /* sd_sampler_kind, -1: default                  */
    float cfg;                  /* < 0: default                                  */
    float strength;             /* img2img strength (nd_model_params); <= 0: default */
} nd_flow_params;
void nd_flow_params_init(nd_flow_params *p);

typedef struct nd_step_drawer {
    void *ctx;
    int max_batch;              /* flows per step() call at most                  */
    nd_layout layout;
    /* A flow's state: initial latent from req->seed, its sampler. */
    nd_status (*begin)(void *ctx, const nd_draw_req *req, const nd_flow_params *p, void **flow,
                       nd_err *err);
    /* One step of every flow in flows[0..n) (each at its own step) in one batched
     * call; done[i] = 1 when flow i has taken its last step. */
    nd_status (*step)(void *ctx, void *const *flows, int n, uint8_t *done, nd_err *err);
    /* The finished flow's image (planar [3][packets][width] in [0, 1]). */
    nd_status (*finish)(void *ctx, void *flow, float *planar, nd_err *err);
    void (*end)(void *ctx, void *flow);     /* frees a flow's state (any time)  */
    /* 1: finish() and end() of a finished flow may run on another thread
     * while begin() and step() run (they touch only the flow); 0: they run
     * on the thread that calls step(). */
    int finish_concurrent;
} nd_step_drawer;

/* Any drawer as a one-step step drawer (step() draws every flow whole). */
typedef struct nd_oneshot_drawer nd_oneshot_drawer;
nd_status nd_oneshot_drawer_new(const nd_drawer *d, nd_oneshot_drawer **out, nd_step_drawer *sd,
                                nd_err *err);
void nd_oneshot_drawer_free(nd_oneshot_drawer *o);
/* The model drawer, step by step (flow params override nd_model_params').
 * Opens a second backend (half the threads) and VAE for finish(), so that
 * decoding runs beside the next step (finish_concurrent). */
nd_status nd_model_drawer_steps(nd_model_drawer *m, nd_step_drawer *sd, nd_err *err);

/* A stand-in drawer for tests and load runs without a model: each image is
 * one of the class's template flows plus noise from the flow's seed (~1% of
 * bits flipped). Deterministic per flow; no steps. */
typedef struct nd_standin_drawer nd_standin_drawer;
nd_status nd_standin_drawer_new(const nd_class_table *t, int max_batch, nd_standin_drawer **out,
                                nd_drawer *d, nd_err *err);
void nd_standin_drawer_free(nd_standin_drawer *s);

/* The engine: one thread packs flows of every submitted request into one
 * step() call per model step (up to max_batch), round-robin by request (at
 * most per_request flows of one request in a batch while other requests
 * want flows; a request alone may fill the batch); a second thread snaps,
 * repairs (one repair context per request, as nd_gen_run) and hands each
 * finished flow to its request's sinks, in job order, while the next step
 * runs. Sinks run on that post thread; done on either of the two. */
typedef struct nd_engine_params {
    int max_batch;              /* flows per step (the step drawer's max_batch)  */
    int max_requests;           /* requests queued or running at most (64)       */
    int per_request;            /* flows of one request in flight while others
                                   want flows too (0: max_batch)               */
    void *hook_ctx;             /* observers, may be NULL:                       */
    void (*on_step)(void *ctx, int batch, double seconds);
    void (*on_admit)(void *ctx, double queue_wait_seconds); /* a request's first flow */
} nd_engine_params;
void nd_engine_params_init(nd_engine_params *p);

typedef struct nd_engine nd_engine;
typedef struct nd_engine_req nd_engine_req;
/* Called once per request when it ends: ND_OK (every flow delivered),
 * ND_ECANCELLED, or the error that stopped it. No sink call follows. */
typedef void (*nd_engine_done_fn)(void *ctx, nd_status st, const char *msg,
                                  const nd_gen_stats *stats);

typedef struct nd_engine_counters {
    uint64_t steps, flows, packets, flows_cancelled, requests_done;
    int queued, running, active_flows;      /* requests waiting / with flows in flight */
} nd_engine_counters;

/* The table and drawer must outlive the engine. */
nd_status nd_engine_new(const nd_engine_params *p, const nd_class_table *t,
                        const nd_step_drawer *d, nd_engine **out, nd_err *err);
/* Stops the thread; requests still running end with ND_ECANCELLED. */
void nd_engine_free(nd_engine *e);
/* Queues a job. ND_ENOMEM "queue full" when max_requests are queued or
 * running (try later); ND_EINVAL for a bad job. *out: a reference to give
 * back with nd_engine_release (the request lives until both sides let go). */
nd_status nd_engine_submit(nd_engine *e, const nd_gen_job *job, const nd_flow_params *fp,
                           const nd_gen_sink *sinks, int n_sinks, nd_engine_done_fn done,
                           void *done_ctx, nd_engine_req **out, nd_err *err);
/* Drops the request's remaining flows at the next step (thread-safe; not
 * after nd_engine_free). Release may come after the engine is freed. */
void nd_engine_cancel(nd_engine_req *r);
void nd_engine_release(nd_engine_req *r);
void nd_engine_counters_get(nd_engine *e, nd_engine_counters *c);

#endif
