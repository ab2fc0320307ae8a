/* tests/bench/bench_pipeline.c - images per second of the whole SD1.5
 * txt2img pipeline with a ControlNet, as NetDiffusion runs it: text encoder
 * (negative + positive prompt), the hint encoder once per image, UNet +
 * ControlNet with CFG as one doubled batch for STEPS DDIM steps, then the VAE
 * decode of every image (one at a time) back to host memory. Random
 * full-size weights made here from the manifests (tests/bench/random_sd15.h,
 * f16 files; loaded as f16 on a GPU, f32 on the CPU), at NetDiffusion's
 * 1088 x 1024 images (a 136 x 128 latent), batch 1 to 16, beside diffusers'
 * StableDiffusionControlNetPipeline on the same files, device and inputs
 * (tests/bench/bench_pipeline_torch.py: fp16 + SDPA on a GPU, in the same
 * run, after ours). The #8 GPU table; on a machine without a GPU backend it
 * says so and stops (a CPU image at this size takes minutes: force it with
 * ND_BENCH_BACKEND=cpu, best at a smaller ND_BENCH_SIZE).
 *   ND_BENCH_BACKEND=cuda       (default: cuda when linked in, build/cuda/bench_pipeline)
 *   ND_BENCH_SIZE=1088x1024     (image height x width, multiples of 64)
 *   ND_BENCH_BATCHES="1 2 4 8 16"
 *   ND_BENCH_STEPS=20
 *   ND_BENCH_REPS=2             (timed calls per batch, best kept; one untimed warm-up)
 *   ND_PYTHON=python3           (torch + diffusers; without them only ours runs)
 * Reported per batch: seconds per call, images/s, the split (text, hint,
 * steps, VAE), the device memory in use at the end of the call (cuda: the
 * GPU's, emu / cpu: 0 or the emulator's), then diffusers' images/s and the
 * ratio. Ours runs first for every batch, then the peer for every batch (two
 * full models would not share a GPU fairly). */
#include "kernels/ops.h"
#include "model/sd.h"
#include "weights/weights.h"
#include "tests/bench/random_sd15.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_B 16
#define MAX_BATCHES 8

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct {
    int B;
    double total, text, hint, steps, vae; /* best call, seconds */
    size_t dev_bytes, arena_bytes;
    double mean_abs;                      /* of the decoded images: finite? */
    bool fail;
    char why[600];
    double p_total;                       /* diffusers; < 0: none */
} row;

/* Everything one batch size needs. */
typedef struct {
    nd_backend *be;
    nd_text_encoder *te;
    nd_unet *u;
    nd_controlnet *cn;
    nd_vae *v;
    nd_denoiser *d;
    nd_arena a;      /* text encoder, hint encoder, VAE (be's memory) */
    float *ctx;      /* [2][77][768] in be's memory: uncond, cond */
    float *hemb;     /* [B][hemb_n] in be's memory */
    size_t hemb_n;
} parts;

static void parts_free(parts *p)
{
    nd_denoiser_free(p->d);
    nd_vae_free(p->v);
    nd_controlnet_free(p->cn);
    nd_unet_free(p->u);
    nd_text_encoder_free(p->te);
    if (p->be) {
        nd_backend_arena_free(p->be, &p->a);
        nd_backend_free(p->be, p->ctx);
        nd_backend_free(p->be, p->hemb);
    }
    nd_backend_close(p->be);
    memset(p, 0, sizeof *p);
}

static nd_status components(parts *p, const nd_weights *w, nd_err *e)
{
    nd_status st;
    if ((st = nd_text_encoder_new(w, p->be, NULL, &p->te, e)) ||
        (st = nd_unet_new(w, p->be, &p->u, e)) || (st = nd_controlnet_new(w, p->be, &p->cn, e)) ||
        (st = nd_vae_new(w, p->be, &p->v, e)))
        return st;
    return ND_OK;
}

/* Opens the backend with the workspace the ops need and sizes everything
 * for batch B at latent h x w, as gen/model_drawer.c does. */
static nd_status parts_new(parts *p, const char *bename, const nd_weights *w, int B, int h, int wd,
                           nd_err *e)
{
    memset(p, 0, sizeof *p);
    nd_backend_config bc = {0, 1u << 20, NULL};
    nd_status st;
    if ((st = nd_backend_open(bename, &bc, &p->be, e)) || (st = components(p, w, e)))
        return st;
    nd_denoiser_params dp;
    nd_denoiser_params_init(&dp);
    dp.max_batch = B;
    dp.height = h;
    dp.width = wd;
    size_t den_a, ws, a1, w1, a2, w2, a3, w3;
    if ((st = nd_denoiser_measure(p->u, p->cn, &dp, &den_a, &ws, e)) ||
        (st = nd_text_encoder_measure(p->te, 2, 77, &a1, &w1, e)) ||
        (st = nd_vae_measure(p->v, false, 1, h, wd, &a2, &w2, e)) ||
        (st = nd_controlnet_embed_measure(p->cn, 1, h, wd, &a3, &w3, e)))
        return st;
    ws = ws > w1 ? ws : w1;
    ws = ws > w2 ? ws : w2;
    ws = ws > w3 ? ws : w3;
    size_t arena = a1 > a2 ? a1 : a2;
    arena = (arena > a3 ? arena : a3) + (64u << 10);
    /* reopen with that workspace */
    nd_text_encoder_free(p->te), nd_unet_free(p->u), nd_controlnet_free(p->cn), nd_vae_free(p->v);
    p->te = NULL, p->u = NULL, p->cn = NULL, p->v = NULL;
    nd_backend_close(p->be);
    p->be = NULL;
    bc.workspace_bytes = ws + (1u << 20);
    if ((st = nd_backend_open(bename, &bc, &p->be, e)) || (st = components(p, w, e)) ||
        (st = nd_denoiser_new(p->u, p->cn, &dp, &p->d, e)) ||
        (st = nd_backend_arena_init(p->be, &p->a, arena, e)))
        return st;
    int64_t es[4];
    nd_controlnet_hint_emb_shape(p->cn, 1, h, wd, es);
    p->hemb_n = (size_t)(es[1] * es[2] * es[3]);
    size_t ctx_b = 2 * 77 * (size_t)nd_text_encoder_dim(p->te) * sizeof(float);
    if (!(p->ctx = nd_backend_alloc(p->be, ctx_b, e)) ||
        !(p->hemb = nd_backend_alloc(p->be, (size_t)B * p->hemb_n * sizeof(float), e)))
        return ND_ENOMEM;
    return ND_OK;
}

/* A hint with the look of an nPrint flow's canny edges: a band of vertical
 * edges on the first rows (packets), less further down; [3][H][W] in [0,1]. */
static void make_hint(float *hint, int H, int W, int k)
{
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int rows = H / (2 + k % 3);
            float v = (y < rows && (x * 7 + k) % 13 < 2) ? 1.0f : 0.0f;
            for (int c = 0; c < 3; c++)
                hint[((size_t)c * H + y) * W + x] = v;
        }
}

/* One call: B images from seeds k*B.., host latents, images back on the host. */
static nd_status call(parts *p, const int32_t ids[2][77], int B, int h, int wd, int steps,
                      float *hint, float *x, float *xin, float *eps, float *img, row *r, nd_err *e)
{
    nd_status st;
    double t0 = now(), t1;
    int C = nd_unet_in_channels(p->u), D = nd_text_encoder_dim(p->te), f = nd_vae_factor(p->v);
    size_t per = (size_t)C * h * wd, npx = (size_t)h * f * wd * f;
    /* text encoder: [negative; positive] in one batch, kept in be's memory */
    size_t mark = nd_arena_mark(&p->a);
    int64_t sc[3] = {2, 77, D}, s1[3] = {1, 77, D};
    nd_tensor c2, cu = nd_tensor_make(p->ctx, ND_F32, p->be->device, 3, s1),
                  cc = nd_tensor_make(p->ctx + 77 * (size_t)D, ND_F32, p->be->device, 3, s1),
                  call2 = nd_tensor_make(p->ctx, ND_F32, p->be->device, 3, sc);
    if ((st = nd_arena_tensor(&p->a, ND_F32, 3, sc, &c2, e)) ||
        (st = nd_text_encoder_run(p->te, &ids[0][0], 2, 77, &p->a, &c2, e)) ||
        (st = nd_copy(p->be, &c2, &call2, e)) || (st = nd_backend_sync(p->be, e)))
        return st;
    nd_arena_reset(&p->a, mark);
    t1 = now();
    double text = t1 - t0;
    /* the hint encoder, once per image */
    int64_t hs[4] = {1, 3, h * f, wd * f}, es[4];
    nd_controlnet_hint_emb_shape(p->cn, 1, h, wd, es);
    nd_tensor ht, het[MAX_B];
    for (int i = 0; i < B; i++) {
        make_hint(hint, h * f, wd * f, i);
        het[i] = nd_tensor_make(p->hemb + (size_t)i * p->hemb_n, ND_F32, p->be->device, 4, es);
        if ((st = nd_arena_tensor(&p->a, ND_F32, 4, hs, &ht, e)) ||
            (st = nd_backend_upload(p->be, ht.data, hint, nd_tensor_bytes(&ht), e)) ||
            (st = nd_controlnet_embed_hint(p->cn, &ht, &p->a, &het[i], e)))
            return st;
        nd_arena_reset(&p->a, mark);
    }
    if ((st = nd_backend_sync(p->be, e)))
        return st;
    double hint_s = now() - t1;
    t1 = now();
    /* DDIM with CFG 7.5 and the ControlNet at 1.0 */
    sd_sampler *smp[MAX_B] = {0};
    nd_tensor hint_host = nd_tensor_make(hint, ND_F32, ND_DEV_CPU, 4, hs);
    nd_denoise_sample s[MAX_B];
    for (int i = 0; i < B && !st; i++) {
        st = sd_sampler_new(&smp[i], SD_SAMPLER_DDIM, steps, per, e);
        sd_noise_fill((uint64_t)i + 1, 0, SD_NOISE_INIT, 0, x + i * per, per);
    }
    for (int k = 0; k < steps && !st; k++) {
        for (int i = 0; i < B; i++) {
            float sc1 = sd_sampler_input_scale(smp[i], k);
            for (size_t j = 0; j < per; j++)
                xin[i * per + j] = x[i * per + j] * sc1;
            s[i] = (nd_denoise_sample){.x = xin + i * per, .t = sd_sampler_timestep(smp[i], k),
                                       .ctx_cond = &cc, .ctx_uncond = &cu, .hint = &hint_host,
                                       .hint_emb = &het[i], .guidance = 7.5f,
                                       .control_scale = 1.0f};
        }
        if ((st = nd_denoiser_eps(p->d, s, B, eps, e)))
            break;
        for (int i = 0; i < B && !st; i++)
            st = sd_sampler_step(smp[i], k, x + i * per, eps + i * per, NULL, NULL, e);
    }
    for (int i = 0; i < B; i++)
        sd_sampler_free(smp[i]);
    if (st)
        return st;
    double steps_s = now() - t1;
    t1 = now();
    /* VAE decode, one image at a time, back to the host */
    double sum = 0;
    float inv = 1.0f / nd_vae_scaling_factor(p->v);
    int64_t zs[4] = {1, C, h, wd}, is[4] = {1, 3, h * f, wd * f};
    for (int i = 0; i < B; i++) {
        nd_tensor z, im;
        if ((st = nd_arena_tensor(&p->a, ND_F32, 4, zs, &z, e)) ||
            (st = nd_arena_tensor(&p->a, ND_F32, 4, is, &im, e)) ||
            (st = nd_backend_upload(p->be, z.data, x + i * per, per * sizeof(float), e)) ||
            (st = nd_scale(p->be, &z, inv, 0.0f, &z, e)) ||
            (st = nd_vae_decode(p->v, &z, &p->a, &im, e)) ||
            (st = nd_backend_download(p->be, img, im.data, npx * 3 * sizeof(float), e)))
            return st;
        nd_arena_reset(&p->a, mark);
        for (size_t j = 0; j < npx * 3; j += 97)
            sum += fabsf(img[j]);
    }
    double vae_s = now() - t1, total = now() - t0;
    if (total < r->total) {
        r->total = total, r->text = text, r->hint = hint_s, r->steps = steps_s, r->vae = vae_s;
        r->mean_abs = sum / (double)(B * ((npx * 3 + 96) / 97));
    }
    return ND_OK;
}

static void run_batch(const char *bename, const nd_weights *w, const int32_t ids[2][77], int B,
                      int h, int wd, int steps, int reps, row *r)
{
    nd_err e = {{0}};
    parts p;
    r->B = B;
    r->total = INFINITY;
    r->p_total = -1;
    int C = 4, f = 8;
    size_t per = (size_t)C * h * wd, npx = (size_t)h * f * wd * f;
    float *hint = malloc(npx * 3 * sizeof(float)), *x = malloc(B * per * sizeof(float)),
          *xin = malloc(B * per * sizeof(float)), *eps = malloc(B * per * sizeof(float)),
          *img = malloc(npx * 3 * sizeof(float));
    nd_status st = hint && x && xin && eps && img ? parts_new(&p, bename, w, B, h, wd, &e)
                                                  : nd_fail(&e, ND_ENOMEM, "out of memory");
    if (!st) {
        r->arena_bytes = nd_denoiser_arena_bytes(p.d);
        /* one untimed call of one step: first-call set-up (weights upload,
         * cuBLAS / cuDNN plans) is not the steady state */
        row warm = {.total = INFINITY};
        st = call(&p, ids, B, h, wd, 1, hint, x, xin, eps, img, &warm, &e);
    }
    for (int k = 0; k < reps && !st; k++) {
        st = call(&p, ids, B, h, wd, steps, hint, x, xin, eps, img, r, &e);
        r->dev_bytes = nd_backend_device_bytes(p.be);
        printf("  batch %2d call %d: %.2f s\n", B, k + 1, r->total);
        fflush(stdout);
    }
    if (st) {
        r->fail = true;
        snprintf(r->why, sizeof r->why, "%s", e.msg);
        printf("  batch %2d: %s\n", B, e.msg);
    }
    parts_free(&p);
    free(hint), free(x), free(xin), free(eps), free(img);
}

/* diffusers on every batch, after ours: "B seconds" lines. */
static void peer(const char *dir, const char *bename, int H, int W, int steps, int reps, row *rows,
                 int n)
{
    const char *py = getenv("ND_PYTHON");
    char cmd[4096], bl[128] = "";
    for (int i = 0; i < n; i++)
        if (!rows[i].fail)
            snprintf(bl + strlen(bl), sizeof bl - strlen(bl), "%s%d", *bl ? "," : "", rows[i].B);
    if (!*bl)
        return;
    snprintf(cmd, sizeof cmd, "%s tests/bench/bench_pipeline_torch.py %s %s %dx%d %d %d %s",
             py && *py ? py : "python3", dir, strcmp(bename, "cuda") ? "cpu" : "cuda", H, W, steps,
             reps, bl);
    printf("diffusers: %s\n", cmd);
    fflush(stdout);
    FILE *f = popen(cmd, "r");
    if (!f) {
        printf("diffusers: could not start\n");
        return;
    }
    char line[256];
    while (fgets(line, sizeof line, f)) {
        int B;
        double s;
        if (sscanf(line, "%d %lf", &B, &s) != 2)
            continue;
        for (int i = 0; i < n; i++)
            if (rows[i].B == B)
                rows[i].p_total = s;
    }
    int rc = pclose(f);
    if (rc)
        printf("diffusers: exit status %d (2: no torch / diffusers)\n", WEXITSTATUS(rc));
}

int main(void)
{
    const char *bename = getenv("ND_BENCH_BACKEND"), *size = getenv("ND_BENCH_SIZE"),
               *bs = getenv("ND_BENCH_BATCHES"), *st_s = getenv("ND_BENCH_STEPS"),
               *reps_s = getenv("ND_BENCH_REPS");
    bool have_cuda = false;
    for (const char *const *n = nd_backend_names(); *n; n++)
        have_cuda |= !strcmp(*n, "cuda");
    if (!bename || !*bename) {
        if (!have_cuda) {
            printf("pipeline: no GPU backend in this build (make cuda: build/cuda/bench_pipeline "
                   "on a machine with a GPU; ND_BENCH_BACKEND=cpu forces the CPU): skipped\n");
            return 0;
        }
        bename = "cuda";
    }
    int H = 1088, W = 1024, steps = st_s && atoi(st_s) > 0 ? atoi(st_s) : 20;
    int reps = reps_s && atoi(reps_s) > 0 ? atoi(reps_s) : 2;
    if (size && (sscanf(size, "%dx%d", &H, &W) != 2 || H < 64 || W < 64 || H % 64 || W % 64)) {
        fprintf(stderr, "ND_BENCH_SIZE %s: want HxW, multiples of 64\n", size);
        return 2;
    }
    int batches[MAX_BATCHES], nb = 0;
    char list[128];
    snprintf(list, sizeof list, "%s", bs && *bs ? bs : "1 2 4 8 16");
    for (char *t = strtok(list, " ,"); t && nb < MAX_BATCHES; t = strtok(NULL, " ,"))
        if (atoi(t) >= 1 && atoi(t) <= MAX_B)
            batches[nb++] = atoi(t);
    char dir[] = "/tmp/nd_bench_pipe_XXXXXX", mp[600], cp[600], ip[600];
    if (!mkdtemp(dir))
        return 1;
    snprintf(mp, sizeof mp, "%s/sd15.safetensors", dir);
    snprintf(cp, sizeof cp, "%s/cn.safetensors", dir);
    snprintf(ip, sizeof ip, "%s/prompt_ids.safetensors", dir);
    int rc = 0;
    nd_weights *w = NULL;
    sd_tokenizer *tok = NULL;
    nd_err e = {{0}};
    double t0 = now();
    if (make_file(MAN "sd15_ldm.json", "", mp) ||
        make_file(MAN "controlnet_canny_ldm.json", "control_model.", cp)) {
        fprintf(stderr, "could not write the random weights\n");
        rc = 1;
        goto out;
    }
    nd_backend *probe = NULL;
    nd_backend_config pc = {0, 1u << 20, NULL};
    if (nd_backend_open(bename, &pc, &probe, &e)) {
        fprintf(stderr, "backend %s: %s\n", bename, e.msg);
        rc = 1;
        goto out;
    }
    bool gpu = probe->device != ND_DEV_CPU;
    nd_backend_close(probe);
    nd_weights_params wp;
    nd_weights_params_init(&wp);
    wp.controlnet = cp;
    wp.dtype = gpu ? ND_WDT_F16 : ND_WDT_F32;
    int32_t ids[2][77];
    if (nd_weights_load(mp, &wp, &w, &e) || sd_tokenizer_new(&tok, &e) ||
        sd_tokenize(tok, "", ids[0], NULL, &e) ||
        sd_tokenize(tok, "pixelated network data, type-0", ids[1], NULL, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        rc = 1;
        goto out;
    }
    { /* the ids for the peer: both sides encode the same prompts */
        nd_st_writer *sw = nd_st_writer_new();
        int64_t sh[2] = {2, 77};
        if (nd_st_writer_add(sw, "ids", ND_WDT_I32, 2, sh, ids, &e) ||
            nd_st_writer_save(sw, ip, &e)) {
            fprintf(stderr, "%s: %s\n", ip, e.msg);
            rc = 1;
        }
        nd_st_writer_free(sw);
        if (rc)
            goto out;
    }
    printf("random SD1.5 + ControlNet written and loaded (%s) in %.1f s; %dx%d images "
           "(latent %dx%d), %d DDIM steps, CFG 7.5, ControlNet 1.0, backend %s, best of %d\n",
           gpu ? "f16" : "f32", now() - t0, H, W, H / 8, W / 8, steps, bename, reps);
    row rows[MAX_BATCHES];
    for (int i = 0; i < nb; i++) {
        memset(&rows[i], 0, sizeof rows[i]);
        run_batch(bename, w, (const int32_t(*)[77])ids, batches[i], H / 8, W / 8, steps, reps,
                  &rows[i]);
    }
    nd_weights_free(w);
    w = NULL;
    peer(dir, bename, H, W, steps, reps, rows, nb);
    printf("\n%dx%d, %d steps, %s          seconds per call:\n", H, W, steps, bename);
    printf("batch   images/s   total     text     hint    steps      vae  dev MiB  arena MiB  "
           "diffusers img/s  ours/diffusers\n");
    for (int i = 0; i < nb; i++) {
        row *r = &rows[i];
        if (r->fail) {
            printf("%5d   failed: %s\n", r->B, r->why);
            continue;
        }
        printf("%5d %10.3f %7.2f %8.3f %8.3f %8.2f %8.2f %8.0f %10.0f", r->B, r->B / r->total,
               r->total, r->text, r->hint, r->steps, r->vae, r->dev_bytes / 1048576.0,
               r->arena_bytes / 1048576.0);
        if (r->p_total > 0)
            printf(" %16.3f %14.2fx", r->B / r->p_total, r->p_total / r->total);
        else
            printf(" %16s %15s", "-", "-");
        printf("%s\n", isfinite(r->mean_abs) ? "" : "  NON-FINITE images");
    }
out:
    nd_weights_free(w);
    sd_tokenizer_free(tok);
    unlink(mp), unlink(cp), unlink(ip);
    char tmp[700];
    snprintf(tmp, sizeof tmp, "rm -rf %s", dir);
    if (system(tmp)) {
    }
    return rc;
}
