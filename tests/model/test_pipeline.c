/* tests/model/test_pipeline.c - whole txt2img runs against diffusers'
 * StableDiffusionControlNetPipeline on the tiny model
 * (tests/fixtures/model/pipeline.safetensors, train/make_model_fixtures.py
 * pipeline): negative and positive prompt through the text encoder, a canny
 * hint made by sd_canny from the fixture's RGB crop, CFG (g 7.5) with the
 * ControlNet (scale 0.8) through the batched denoiser, DDIM (5 steps) and
 * Euler (4 steps) from the fixture's initial noise, then the VAE decode and
 * diffusers' postprocessing (x/2 + 1/2, clamped to [0,1]).
 *
 * Compared: the latent after every step and the final image, max rel. error
 * < 1e-4 on every backend under test (tests/model/fixture.h), plus the same
 * runs with f16 weights (< 1e-2). The prompt's ids come from the fixture: the
 * tiny model has its own 520-token vocabulary, while sd_tokenize is CLIP's
 * (checked against transformers in test_tokenizer). The same loop as
 * gen/model_drawer.c: x = z * init_noise_sigma; per step x_in = scale * x,
 * eps = denoiser(x_in, t), sd_sampler_step. The prompt embeddings stay in
 * the backend's memory (device memory on emu), the hint is a host tensor. */
#include "tests/model/fixture.h"

#define PX "tests/fixtures/model/pipeline.safetensors"

/* A fixture tensor of any dtype, or NULL (after a failed check). */
static const nd_st_tensor *raw(const fixture *f, const char *name, nd_wdtype dt, int ndim)
{
    const nd_st_tensor *t = nd_st_find(f->outs, name);
    CHECKF(t && t->dtype == dt && t->ndim == ndim, "fixture %s", name);
    return t && t->dtype == dt && t->ndim == ndim ? t : NULL;
}

/* The ControlNet hint as the annotators make it: canny(100, 200) of the
 * fixture's RGB bytes, edges / 255 on three channels. hint has 3*h*w floats. */
static bool make_hint(const fixture *f, float *hint, int h, int w)
{
    nd_err e = {{0}};
    const nd_st_tensor *rgb = raw(f, "hint.rgb", ND_WDT_U8, 3);
    if (!rgb || rgb->shape[0] != h || rgb->shape[1] != w || rgb->shape[2] != 3) {
        CHECKF(0, "hint.rgb is not [%d,%d,3]", h, w);
        return false;
    }
    uint8_t *edges = malloc((size_t)h * (size_t)w);
    CHECK_OK(sd_canny(rgb->data, w, h, 3, (size_t)w * 3, SD_CANNY_LOW, SD_CANNY_HIGH, edges, &e),
             &e);
    sd_canny_hint(edges, w, h, hint);
    free(edges);
    return true;
}

/* The hint equals the one diffusers was given (bit-exact: canny is). */
static void test_hint(void)
{
    nd_err e = {{0}};
    fixture f;
    nd_tensor want;
    if (fixture_open_outs(&f, FX "tiny_diffusers", PX, &e) && ref(&f, "hint", &want)) {
        int h = (int)want.shape[2], w = (int)want.shape[3];
        float *hint = malloc((size_t)h * (size_t)w * 3 * sizeof *hint);
        if (make_hint(&f, hint, h, w))
            CHECK(memcmp(hint, want.data, (size_t)h * (size_t)w * 3 * sizeof *hint) == 0);
        free(hint);
    }
    fixture_close(&f);
}

/* Everything one backend needs for a run. */
typedef struct {
    nd_backend *be;
    nd_text_encoder *te;
    nd_unet *u;
    nd_controlnet *cn;
    nd_vae *v;
    nd_denoiser *d;
    nd_arena a; /* prompt embeddings, then the VAE decode (be's memory) */
} parts;

static void parts_free(parts *p)
{
    if (p->be)
        nd_backend_arena_free(p->be, &p->a);
    nd_denoiser_free(p->d);
    nd_vae_free(p->v);
    nd_controlnet_free(p->cn);
    nd_unet_free(p->u);
    nd_text_encoder_free(p->te);
    nd_backend_close(p->be);
}

static bool parts_new(parts *p, const fixture *f, const char *be, int h, int w, nd_err *e)
{
    memset(p, 0, sizeof *p);
    if (!(p->be = open_be(be, 0, e)))
        return false;
    CHECK_OK(nd_text_encoder_new(f->w, p->be, NULL, &p->te, e), e);
    CHECK_OK(nd_unet_new(f->w, p->be, &p->u, e), e);
    CHECK_OK(nd_controlnet_new(f->w, p->be, &p->cn, e), e);
    CHECK_OK(nd_vae_new(f->w, p->be, &p->v, e), e);
    if (!p->te || !p->u || !p->cn || !p->v)
        return false;
    nd_denoiser_params dp;
    nd_denoiser_params_init(&dp);
    dp.height = h;
    dp.width = w;
    dp.n_ctx = nd_text_encoder_max_tokens(p->te);
    CHECK_OK(nd_denoiser_new(p->u, p->cn, &dp, &p->d, e), e);
    size_t tb = 0, vb = 0, ws = 0;
    CHECK_OK(nd_text_encoder_measure(p->te, 2, dp.n_ctx, &tb, &ws, e), e);
    CHECK_OK(nd_vae_measure(p->v, false, 1, h, w, &vb, &ws, e), e);
    /* the embeddings stay while the VAE runs; tensors rounded to the alignment */
    size_t emb = 2 * (size_t)dp.n_ctx * (size_t)nd_text_encoder_dim(p->te) * sizeof(float);
    size_t img = 3 * (size_t)(h * w) * (size_t)(nd_vae_factor(p->v) * nd_vae_factor(p->v)) *
                 sizeof(float);
    size_t lat = (size_t)(nd_vae_latent_channels(p->v) * h * w) * sizeof(float);
    CHECK_OK(nd_backend_arena_init(p->be, &p->a, emb + (tb > vb + img + lat ? tb : vb + img + lat) +
                                                     4 * ND_ARENA_ALIGN, e), e);
    return p->d != NULL && p->a.base != NULL;
}

/* The worst max rel. error of the run's latents (after each step) and of
 * the output image, against diffusers. */
typedef struct {
    double latent, image;
} run_err;

static bool run_one(parts *p, const fixture *f, sd_sampler_kind kind, const char *name,
                    run_err *re, nd_err *e)
{
    char key[64];
    nd_tensor z, lat, img_want, hint_t, ts, params;
    snprintf(key, sizeof key, "%s.latents", name);
    if (!ref(f, "z", &z) || !ref(f, key, &lat))
        return false;
    snprintf(key, sizeof key, "%s.image", name);
    if (!ref(f, key, &img_want))
        return false;
    snprintf(key, sizeof key, "%s.timesteps", name);
    if (!ref(f, key, &ts))
        return false;
    snprintf(key, sizeof key, "%s.params", name);
    if (!ref(f, key, &params) || params.shape[0] != 2)
        return false;
    const nd_st_tensor *ids = raw(f, "prompt.ids", ND_WDT_I32, 2);
    if (!ids || ids->shape[0] != 2)
        return false;
    int steps = (int)lat.shape[0], C = (int)z.shape[1], H = (int)z.shape[2], W = (int)z.shape[3];
    int T = (int)ids->shape[1], D = nd_text_encoder_dim(p->te), fv = nd_vae_factor(p->v);
    int fc = nd_controlnet_hint_factor(p->cn);
    size_t per = (size_t)C * (size_t)(H * W);
    const float guidance = ((const float *)params.data)[0], cscale = ((const float *)params.data)[1];

    /* prompt embeddings: [negative; positive] in one batch, as diffusers */
    nd_arena_reset(&p->a, 0);
    nd_tensor ctx, ctx_u, ctx_c;
    int64_t sc[3] = {2, T, D}, s1[3] = {1, T, D};
    CHECK_OK(nd_arena_tensor(&p->a, ND_F32, 3, sc, &ctx, e), e);
    CHECK_OK(nd_text_encoder_run(p->te, ids->data, 2, T, &p->a, &ctx, e), e);
    ctx_u = nd_tensor_make(ctx.data, ND_F32, ctx.device, 3, s1);
    ctx_c = nd_tensor_make((float *)ctx.data + (size_t)T * (size_t)D, ND_F32, ctx.device, 3, s1);

    float *hint = malloc(3 * per / (size_t)C * (size_t)(fc * fc) * sizeof *hint);
    float *x = malloc(per * sizeof *x), *xin = malloc(per * sizeof *x), *eps = malloc(per * sizeof *x);
    int64_t sh[4] = {1, 3, H * fc, W * fc};
    hint_t = nd_tensor_make(hint, ND_F32, ND_DEV_CPU, 4, sh);
    sd_sampler *smp = NULL;
    CHECK_OK(sd_sampler_new(&smp, kind, steps, per, e), e);
    bool ok = smp && make_hint(f, hint, H * fc, W * fc);
    for (int i = 0; ok && i < steps; i++)
        CHECKF(sd_sampler_timestep(smp, i) == ((const float *)ts.data)[i], "%s t[%d] %g != %g",
               name, i, sd_sampler_timestep(smp, i), ((const float *)ts.data)[i]);

    float sigma0 = ok ? sd_sampler_init_noise_sigma(smp) : 0;
    for (size_t j = 0; j < per; j++)
        x[j] = ((const float *)z.data)[j] * sigma0;
    re->latent = 0;
    for (int i = 0; ok && i < steps; i++) {
        float s = sd_sampler_input_scale(smp, i);
        for (size_t j = 0; j < per; j++)
            xin[j] = x[j] * s;
        nd_denoise_sample ds = {.x = xin, .t = sd_sampler_timestep(smp, i), .ctx_cond = &ctx_c,
                                .ctx_uncond = &ctx_u, .hint = &hint_t, .guidance = guidance,
                                .control_scale = cscale};
        CHECK_OK(nd_denoiser_eps(p->d, &ds, 1, eps, e), e);
        CHECK_OK(sd_sampler_step(smp, i, x, eps, NULL, NULL, e), e);
        int64_t s4[4] = {1, C, H, W};
        nd_tensor got = nd_tensor_make(x, ND_F32, ND_DEV_CPU, 4, s4);
        nd_tensor want = nd_tensor_make((float *)lat.data + (size_t)i * per, ND_F32, ND_DEV_CPU,
                                        4, s4);
        double er = rel_err(&got, &want);
        if (!(er <= re->latent))
            re->latent = er;
        ok = nd_test_cur_failed == 0;
    }

    /* VAE decode of x / scaling_factor, then diffusers' postprocess */
    re->image = INFINITY;
    if (ok) {
        nd_tensor zt, img;
        int64_t zs[4] = {1, C, H, W}, is[4] = {1, 3, H * fv, W * fv};
        CHECK_OK(nd_arena_tensor(&p->a, ND_F32, 4, zs, &zt, e), e);
        CHECK_OK(nd_arena_tensor(&p->a, ND_F32, 4, is, &img, e), e);
        float inv = 1.0f / nd_vae_scaling_factor(p->v);
        for (size_t j = 0; j < per; j++)
            xin[j] = x[j] * inv;
        CHECK_OK(nd_backend_upload(p->be, zt.data, xin, per * sizeof *xin, e), e);
        CHECK_OK(nd_vae_decode(p->v, &zt, &p->a, &img, e), e);
        nd_tensor himg = img;
        himg.device = ND_DEV_CPU;
        float *px = himg.data = malloc(nd_tensor_bytes(&img));
        CHECK_OK(nd_backend_download(p->be, px, img.data, nd_tensor_bytes(&img), e), e);
        for (int64_t j = 0; j < nd_tensor_numel(&img); j++) {
            float v = px[j] * 0.5f + 0.5f;
            px[j] = v < 0 ? 0 : v > 1 ? 1 : v;
        }
        re->image = rel_err(&himg, &img_want);
        free(px);
        CHECK(p->a.peak <= p->a.cap);
    }
    sd_sampler_free(smp);
    free(hint);
    free(x);
    free(xin);
    free(eps);
    return ok;
}

static void run_pipeline(sd_sampler_kind kind)
{
    nd_err e = {{0}};
    fixture f;
    nd_tensor z;
    const char *name = sd_sampler_name(kind);
    if (!fixture_open_outs(&f, FX "tiny_diffusers", PX, &e) || !ref(&f, "z", &z))
        goto out;
    for (const char *const *b = test_backends(); *b; b++) {
        parts p;
        run_err re = {INFINITY, INFINITY};
        char what[64];
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (parts_new(&p, &f, *b, (int)z.shape[2], (int)z.shape[3], &e))
            run_one(&p, &f, kind, name, &re, &e);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        snprintf(what, sizeof what, "%s%s latents", name, w_dtype == ND_WDT_F16 ? " f16" : "");
        report(what, *b, re.latent, p.a.cap);
        snprintf(what, sizeof what, "%s%s image", name, w_dtype == ND_WDT_F16 ? " f16" : "");
        report(what, *b, re.image, p.a.cap);
        printf("    (%s on %s: %.2f s)\n", name, *b,
               (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
        parts_free(&p);
    }
out:
    fixture_close(&f);
}

static void test_ddim(void)
{
    run_pipeline(SD_SAMPLER_DDIM);
}

static void test_euler(void)
{
    run_pipeline(SD_SAMPLER_EULER);
}

/* f16 weights (the GPU layout): the fixture's values are f16-exact, so only
 * activation rounding may differ; the bound for f16 is 1e-2. */
static void test_f16_weights(void)
{
    w_dtype = ND_WDT_F16;
    tol = 1e-2;
    run_pipeline(SD_SAMPLER_EULER);
    w_dtype = ND_WDT_F32;
    tol = TOL;
}

ND_TEST_MAIN(ND_TEST(test_hint), ND_TEST(test_ddim), ND_TEST(test_euler),
             ND_TEST(test_f16_weights))
