/* tests/bench/bench_unet.c - one SD1.5 UNet step (and one ControlNet eval) at
 * full size on the CPU, with random weights made here from the committed
 * manifests (never committed; f16 files under /tmp, deleted after, loaded as
 * f32). Reports seconds per eval, GFLOP/s, the activation arena (measured by
 * the model's own sizing pass) and peak RSS.
 *   ND_BENCH_SHAPES="64x64x1 136x128x1 64x64x4"  (latent HxWxbatch; default 64x64x1)
 *   ND_BENCH_BACKEND=cpu                       (or cpu_ref)
 *   ND_BENCH_CONTROL=0                         (skip the ControlNet) */
#include "kernels/ops.h"
#include "model/sd.h"
#include "weights/weights.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAN "tests/fixtures/weights/manifests/"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Writes the manifest's tensors whose names start with PREFIX as f16, random
 * values from one shared pool (|x| < 0.05; norm weights near 1). */
static int make_file(const char *manifest, const char *prefix, const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(manifest, 0, &je);
    if (!j) {
        fprintf(stderr, "%s: %s\n", manifest, je.text);
        return -1;
    }
    size_t pool_n = 64u << 20;
    uint16_t *pool = malloc(pool_n * sizeof *pool), *ones = malloc(4096 * sizeof *ones);
    if (!pool || !ones)
        return -1;
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < pool_n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        pool[i] = nd_f32_to_f16((float)((s >> 40) * (1.0 / (1 << 24)) - 0.5) * 0.1f);
    }
    for (size_t i = 0; i < 4096; i++)
        ones[i] = nd_f32_to_f16(1.0f + nd_f16_to_f32(pool[i]));
    nd_st_writer *w = nd_st_writer_new();
    const char *k;
    json_t *v;
    size_t off = 0;
    json_object_foreach(json_object_get(j, "tensors"), k, v) {
        if (strncmp(k, prefix, strlen(prefix)))
            continue;
        int64_t sh[8], n = 1;
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(v, "shape"), i, x) n *= (sh[i] = json_integer_value(x));
        int nd = (int)json_array_size(json_object_get(v, "shape"));
        const uint16_t *data;
        size_t kl = strlen(k);
        bool norm_w = nd == 1 && kl > 7 && !strcmp(k + kl - 7, ".weight") && n <= 4096;
        if (norm_w) {
            data = ones;
        } else {
            if (off + (size_t)n > pool_n)
                off = 0;
            data = pool + off;
            off += (size_t)n % 4099;
        }
        nd_err e;
        if (nd_st_writer_add(w, k, ND_WDT_F16, nd, sh, data, &e)) {
            fprintf(stderr, "add %s: %s\n", k, e.msg);
            return -1;
        }
    }
    nd_err e;
    int rc = nd_st_writer_save(w, path, &e) ? -1 : 0;
    if (rc)
        fprintf(stderr, "write: %s\n", e.msg);
    nd_st_writer_free(w);
    free(pool);
    free(ones);
    json_decref(j);
    return rc;
}

static void fill(nd_tensor *t, uint64_t seed, float scale)
{
    float *d = t->data;
    int64_t n = nd_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        d[i] = (float)((seed >> 40) * (1.0 / (1 << 24)) - 0.5) * 2 * scale;
    }
}

static long rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

#define DIE(...)                                                              \
    do {                                                                      \
        fprintf(stderr, __VA_ARGS__);                                         \
        fputc('\n', stderr);                                                  \
        rc = 1;                                                               \
        goto out;                                                             \
    } while (0)

int main(void)
{
    char up[] = "/tmp/nd_bench_unet_XXXXXX", cp[] = "/tmp/nd_bench_cn_XXXXXX";
    int fu = mkstemp(up), fc = mkstemp(cp), rc = 0;
    if (fu < 0 || fc < 0)
        return 1;
    close(fu);
    close(fc);
    const char *shapes = getenv("ND_BENCH_SHAPES");
    const char *bename = getenv("ND_BENCH_BACKEND");
    const char *ctl = getenv("ND_BENCH_CONTROL");
    bool control = !ctl || strcmp(ctl, "0");
    nd_weights *w = NULL;
    nd_backend *be = NULL;
    nd_unet *u = NULL;
    nd_controlnet *cn = NULL;
    nd_err e = {{0}};
    double t0 = now();
    if (make_file(MAN "sd15_ldm.json", "", up) ||
        (control && make_file(MAN "controlnet_canny_ldm.json", "control_model.", cp)))
        DIE("could not write the random weights");
    printf("random SD1.5 (UNet, VAE, CLIP)%s (f16 files from the manifests) written in %.1f s\n",
           control ? " + ControlNet" : "", now() - t0);
    nd_weights_params p;
    nd_weights_params_init(&p);
    p.controlnet = control ? cp : NULL;
    t0 = now();
    if (nd_weights_load(up, &p, &w, &e))
        DIE("load: %s", e.msg);
    printf("loaded as f32 in %.1f s\n", now() - t0);
    nd_backend_config cfg = {0, 0};
    /* workspace: sized from the largest shape below, so open after measuring */
    if (nd_unet_new(w, NULL, &u, &e) || (control && nd_controlnet_new(w, NULL, &cn, &e)))
        DIE("model: %s", e.msg);
    char list[256];
    snprintf(list, sizeof list, "%s", shapes && *shapes ? shapes : "64x64x1");
    for (char *tok = strtok(list, " ,"); tok; tok = strtok(NULL, " ,")) {
        int H, W, B;
        if (sscanf(tok, "%dx%dx%d", &H, &W, &B) != 3)
            DIE("bad shape %s", tok);
        size_t ub = 0, uws = 0, cb = 0, cws = 0;
        /* measuring needs a backend for workspace sizes: open a small one first */
        if (!be) {
            nd_backend_config c0 = {0, 1 << 20};
            if (nd_backend_open(bename ? bename : "cpu", &c0, &be, &e))
                DIE("backend: %s", e.msg);
        }
        nd_unet_free(u);
        nd_controlnet_free(cn);
        u = NULL, cn = NULL;
        if (nd_unet_new(w, be, &u, &e) || (control && nd_controlnet_new(w, be, &cn, &e)))
            DIE("model: %s", e.msg);
        if (nd_unet_measure(u, B, H, W, 77, control, &ub, &uws, &e) ||
            (control && nd_controlnet_measure(cn, B, H, W, 77, &cb, &cws, &e)))
            DIE("measure: %s", e.msg);
        size_t ws = uws > cws ? uws : cws;
        nd_unet_free(u);
        nd_controlnet_free(cn);
        u = NULL, cn = NULL;
        nd_backend_close(be);
        be = NULL;
        cfg.workspace_bytes = ws + (1 << 20);
        if (nd_backend_open(bename ? bename : "cpu", &cfg, &be, &e))
            DIE("backend: %s", e.msg);
        if (nd_unet_new(w, be, &u, &e) || (control && nd_controlnet_new(w, be, &cn, &e)))
            DIE("model: %s", e.msg);
        /* inputs + residuals + both arenas' worth: one arena */
        nd_arena a;
        if (nd_arena_init(&a, ub + cb, &e))
            DIE("arena: %s", e.msg);
        nd_tensor x, t, ctx, hint, out, res[16];
        const nd_tensor *rp[16];
        int f = control ? nd_controlnet_hint_factor(cn) : 8;
        int64_t sx[4] = {B, 4, H, W}, st[1] = {B}, sc[3] = {B, 77, nd_unet_context_dim(u)},
                sh[4] = {B, 3, H * f, W * f};
        if (nd_arena_tensor(&a, ND_F32, 4, sx, &x, &e) || nd_arena_tensor(&a, ND_F32, 1, st, &t, &e) ||
            nd_arena_tensor(&a, ND_F32, 3, sc, &ctx, &e) || nd_arena_tensor(&a, ND_F32, 4, sx, &out, &e))
            DIE("arena: %s", e.msg);
        fill(&x, 1, 1.0f);
        fill(&ctx, 2, 1.0f);
        for (int i = 0; i < B; i++)
            ((float *)t.data)[i] = 500.0f;
        nd_unet_input in = {.x = &x, .t = &t, .ctx = &ctx};
        double tc = 0;
        if (control) {
            if (nd_arena_tensor(&a, ND_F32, 4, sh, &hint, &e))
                DIE("arena: %s", e.msg);
            fill(&hint, 3, 0.5f);
            int n = nd_controlnet_n_down(cn);
            for (int i = 0; i <= n; i++) {
                int64_t s4[4];
                nd_controlnet_res_shape(cn, i, B, H, W, s4);
                if (nd_arena_tensor(&a, ND_F32, 4, s4, &res[i], &e))
                    DIE("arena: %s", e.msg);
                rp[i] = &res[i];
            }
            nd_controlnet_input ci = {.x = &x, .t = &t, .ctx = &ctx, .hint = &hint, .scale = 1.0f};
            double c0 = now();
            if (nd_controlnet_run(cn, &ci, &a, res, &res[n], &e))
                DIE("controlnet: %s", e.msg);
            tc = now() - c0;
            in.down_res = rp;
            in.mid_res = &res[n];
        }
        double u0 = now();
        if (nd_unet_run(u, &in, &a, &out, &e))
            DIE("unet: %s", e.msg);
        double tu = now() - u0;
        const float *o = out.data;
        double sum = 0;
        int bad = 0;
        for (int64_t i = 0; i < nd_tensor_numel(&out); i++) {
            sum += fabs(o[i]);
            bad += !isfinite(o[i]);
        }
        printf("latent %dx%d batch %d on %s (%d threads): unet %.2f s/step", H, W, B, be->name,
               be->n_threads, tu);
        if (control)
            printf(", controlnet %.2f s", tc);
        printf("; arena %.0f MB (unet %.0f + controlnet %.0f), workspace %.0f MB, peak RSS %ld MB; "
               "mean|eps| %.3g%s\n",
               (ub + cb) / 1e6, ub / 1e6, cb / 1e6, cfg.workspace_bytes / 1e6, rss_mb(),
               sum / (double)nd_tensor_numel(&out), bad ? " NON-FINITE" : "");
        fflush(stdout);
        if (a.peak > ub + cb)
            DIE("arena peak %zu above the measured %zu", a.peak, ub + cb);
        nd_arena_free(&a);
    }
out:
    nd_controlnet_free(cn);
    nd_unet_free(u);
    nd_backend_close(be);
    nd_weights_free(w);
    unlink(up);
    unlink(cp);
    return rc;
}
