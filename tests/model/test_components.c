/* tests/model/test_components.c - the CLIP text encoder, UNet, VAE and
 * ControlNet against diffusers' outputs on the tiny fixtures
 * (tests/fixtures/weights/outputs.safetensors, train/make_fixtures.py), on
 * every backend linked in (tests/model/fixture.h), with arenas sized by the
 * measuring pass. */
#include "tests/model/fixture.h"

static void run_text_encoder(const char *model)
{
    nd_err e = {{0}};
    fixture f;
    nd_tensor want;
    if (!fixture_open(&f, model, &e) || !ref(&f, "te.last_hidden_state", &want))
        goto out;
    const nd_st_tensor *ids = nd_st_find(f.outs, "te.input_ids");
    CHECK(ids && ids->dtype == ND_WDT_I32 && ids->ndim == 2);
    if (!ids)
        goto out;
    for (const char *const *b = test_backends(); *b; b++) {
        nd_backend *be = open_be(*b, 0, &e);
        nd_text_encoder *te = NULL;
        CHECK_OK(nd_text_encoder_new(f.w, be, NULL, &te, &e), &e);
        if (!be || !te) {
            nd_backend_close(be);
            continue;
        }
        int B = (int)ids->shape[0], T = (int)ids->shape[1];
        CHECK_EQ_INT(nd_text_encoder_dim(te), want.shape[2]);
        size_t bytes = 0, ws = 0;
        CHECK_OK(nd_text_encoder_measure(te, B, T, &bytes, &ws, &e), &e);
        nd_arena a;
        CHECK_OK(nd_backend_arena_init(be, &a, bytes, &e), &e);
        nd_tensor out;
        int64_t sh[3] = {B, T, nd_text_encoder_dim(te)};
        CHECK_OK(nd_arena_tensor(&a, ND_F32, 3, sh, &out, &e), &e);
        CHECK_OK(nd_text_encoder_run(te, ids->data, B, T, &a, &out, &e), &e);
        CHECK(a.peak <= bytes);
        report("text encoder", *b, rel_err_on(be, &out, &want), bytes);
        /* bad ids are refused */
        int32_t bad[77];
        memcpy(bad, ids->data, sizeof bad);
        bad[3] = 1 << 20;
        nd_arena_reset(&a, 0);
        CHECK_OK(nd_arena_tensor(&a, ND_F32, 3, sh, &out, &e), &e);
        CHECK(nd_text_encoder_run(te, bad, 1, 77, &a, &out, &e) == ND_EINVAL);
        nd_backend_arena_free(be, &a);
        nd_text_encoder_free(te);
        nd_backend_close(be);
    }
out:
    fixture_close(&f);
}

static void test_text_encoder(void)
{
    run_text_encoder(FX "tiny_diffusers");
}

static void test_text_encoder_ldm(void)
{
    run_text_encoder(FX "tiny_ldm.safetensors");
}

/* UNet alone, or with the ControlNet's residuals fed in. */
static void run_unet(const char *model, bool control)
{
    nd_err e = {{0}};
    fixture f;
    nd_tensor hx, ht, hctx, want, hhint;
    if (!fixture_open(&f, model, &e) || !ref(&f, "unet.sample", &hx) ||
        !ref(&f, "unet.timestep", &ht) || !ref(&f, "te.last_hidden_state", &hctx) ||
        !ref(&f, control ? "unet.out_control" : "unet.out", &want) ||
        (control && !ref(&f, "controlnet.hint", &hhint)))
        goto out;
    for (const char *const *b = test_backends(); *b; b++) {
        nd_backend *be = open_be(*b, 0, &e);
        nd_unet *u = NULL;
        nd_controlnet *cn = NULL;
        CHECK_OK(nd_unet_new(f.w, be, &u, &e), &e);
        if (control)
            CHECK_OK(nd_controlnet_new(f.w, be, &cn, &e), &e);
        nd_arena in_a = {0};
        if (!be || !u || (control && !cn))
            goto next;
        stage_init(be, &in_a,
                   nd_tensor_bytes(&hx) + nd_tensor_bytes(&ht) + nd_tensor_bytes(&hctx) +
                       (control ? nd_tensor_bytes(&hhint) : 0), &e);
        nd_tensor x = staged(be, &in_a, &hx, &e), t = staged(be, &in_a, &ht, &e),
                  ctx = staged(be, &in_a, &hctx, &e),
                  hint = control ? staged(be, &in_a, &hhint, &e) : hx;
        int B = (int)x.shape[0], H = (int)x.shape[2], W = (int)x.shape[3], T = (int)ctx.shape[1];
        size_t ub = 0, cb = 0, ws = 0;
        CHECK_OK(nd_unet_measure(u, B, H, W, T, control, &ub, &ws, &e), &e);
        if (control)
            CHECK_OK(nd_controlnet_measure(cn, B, H, W, T, &cb, &ws, &e), &e);
        size_t total = ub + cb;
        nd_arena a;
        CHECK_OK(nd_backend_arena_init(be, &a, total, &e), &e);
        nd_tensor out, res[32];
        const nd_tensor *rp[32];
        int64_t so[4] = {B, nd_unet_out_channels(u), H, W};
        CHECK_OK(nd_arena_tensor(&a, ND_F32, 4, so, &out, &e), &e);
        nd_unet_input in = {.x = &x, .t = &t, .ctx = &ctx};
        if (control) {
            int nd = nd_controlnet_n_down(cn);
            CHECK_EQ_INT(nd, nd_unet_n_skips(u));
            for (int i = 0; i <= nd; i++) {
                int64_t sh[4];
                nd_controlnet_res_shape(cn, i, B, H, W, sh);
                CHECK_OK(nd_arena_tensor(&a, ND_F32, 4, sh, &res[i], &e), &e);
                rp[i] = &res[i];
            }
            nd_controlnet_input ci = {.x = &x, .t = &t, .ctx = &ctx, .hint = &hint, .scale = 1.0f};
            CHECK_OK(nd_controlnet_run(cn, &ci, &a, res, &res[nd], &e), &e);
            /* each residual against diffusers */
            double worst = 0;
            char name[64];
            for (int i = 0; i <= nd; i++) {
                nd_tensor r;
                if (i < nd)
                    snprintf(name, sizeof name, "controlnet.down.%d", i);
                else
                    snprintf(name, sizeof name, "controlnet.mid");
                if (!ref(&f, name, &r))
                    continue;
                double er = rel_err_on(be, &res[i], &r);
                CHECKF(er < tol, "%s: %g", name, er);
                if (!(er <= worst))
                    worst = er;
            }
            report("controlnet residuals", *b, worst, cb);
            /* the fixture's UNet got the residuals at conditioning scale 0.7 */
            ci.scale = 0.7f;
            CHECK_OK(nd_controlnet_run(cn, &ci, &a, res, &res[nd], &e), &e);
            in.down_res = rp;
            in.mid_res = &res[nd];
        }
        CHECK_OK(nd_unet_run(u, &in, &a, &out, &e), &e);
        CHECK(a.peak <= total);
        report(control ? "unet + controlnet" : "unet", *b, rel_err_on(be, &out, &want), ub);
        nd_backend_arena_free(be, &a);
    next:
        if (be)
            nd_backend_arena_free(be, &in_a);
        nd_controlnet_free(cn);
        nd_unet_free(u);
        nd_backend_close(be);
    }
out:
    fixture_close(&f);
}

static void test_unet(void)
{
    run_unet(FX "tiny_diffusers", false);
}

static void test_unet_ldm(void)
{
    run_unet(FX "tiny_ldm.safetensors", false);
}

static void test_unet_controlnet(void)
{
    run_unet(FX "tiny_diffusers", true);
}

static void test_vae(void)
{
    nd_err e = {{0}};
    fixture f;
    nd_tensor hz, want, himg, want_mom;
    if (!fixture_open(&f, FX "tiny_diffusers", &e) || !ref(&f, "vae.latent", &hz) ||
        !ref(&f, "vae.decode", &want))
        goto out;
    bool enc = ref(&f, "vae.image", &himg) && ref(&f, "vae.encode_moments", &want_mom);
    for (const char *const *b = test_backends(); *b; b++) {
        nd_backend *be = open_be(*b, 0, &e);
        nd_vae *v = NULL;
        CHECK_OK(nd_vae_new(f.w, be, &v, &e), &e);
        if (!be || !v) {
            nd_backend_close(be);
            continue;
        }
        CHECK(fabsf(nd_vae_scaling_factor(v) - 0.18215f) < 1e-7f);
        nd_arena in_a;
        stage_init(be, &in_a, nd_tensor_bytes(&hz) + (enc ? nd_tensor_bytes(&himg) : 0), &e);
        nd_tensor z = staged(be, &in_a, &hz, &e), img_in = enc ? staged(be, &in_a, &himg, &e) : hz;
        int B = (int)z.shape[0], H = (int)z.shape[2], W = (int)z.shape[3], fct = nd_vae_factor(v);
        size_t bytes = 0, ws = 0;
        CHECK_OK(nd_vae_measure(v, false, B, H, W, &bytes, &ws, &e), &e);
        nd_arena a;
        CHECK_OK(nd_backend_arena_init(be, &a, bytes, &e), &e);
        nd_tensor img;
        int64_t si[4] = {B, 3, H * fct, W * fct};
        CHECK_OK(nd_arena_tensor(&a, ND_F32, 4, si, &img, &e), &e);
        CHECK_OK(nd_vae_decode(v, &z, &a, &img, &e), &e);
        CHECK(a.peak <= bytes);
        report("vae decode", *b, rel_err_on(be, &img, &want), bytes);
        nd_backend_arena_free(be, &a);
        if (enc) {
            int eB = (int)img_in.shape[0], eh = (int)img_in.shape[2] / fct,
                ew = (int)img_in.shape[3] / fct;
            CHECK_OK(nd_vae_measure(v, true, eB, eh, ew, &bytes, &ws, &e), &e);
            CHECK_OK(nd_backend_arena_init(be, &a, bytes, &e), &e);
            nd_tensor mom;
            int64_t sm[4] = {eB, 2 * nd_vae_latent_channels(v), eh, ew};
            CHECK_OK(nd_arena_tensor(&a, ND_F32, 4, sm, &mom, &e), &e);
            CHECK_OK(nd_vae_encode(v, &img_in, &a, &mom, &e), &e);
            report("vae encode", *b, rel_err_on(be, &mom, &want_mom), bytes);
            nd_backend_arena_free(be, &a);
        }
        nd_backend_arena_free(be, &in_a);
        nd_vae_free(v);
        nd_backend_close(be);
    }
out:
    fixture_close(&f);
}

/* The original (lllyasviel) ControlNet layout, bf16 in the file. */
static void test_unet_controlnet_ldm(void)
{
    cn_path = FX "tiny_controlnet_ldm.safetensors";
    run_unet(FX "tiny_ldm.safetensors", true);
    cn_path = FX "tiny_controlnet_diffusers";
}

/* f16 weights (the GPU layout; f32 backends widen them per op): the fixture's
 * values are f16-exact, so only activation rounding differs (< 1e-2). */
static void test_f16_weights(void)
{
    w_dtype = ND_WDT_F16;
    tol = 1e-2;
    run_unet(FX "tiny_diffusers", true);
    run_text_encoder(FX "tiny_diffusers");
    w_dtype = ND_WDT_F32;
    tol = TOL;
}

/* The batched denoiser: two samples in one doubled CFG batch. Sample 0 has
 * uncond == cond (so any g gives diffusers' unet.out), sample 1 has a
 * different uncond and g = 1 with the hint at scale 0.7 (so eps = the
 * fixture's unet.out_control). Both run at once on every backend. Sample
 * 0's context is in the backend's memory, sample 1's tensors are host
 * memory: the two ways a caller may pass them. */
static void test_denoiser(void)
{
    nd_err e = {{0}};
    fixture f;
    nd_tensor x, t, ctx, want, want_c, hint;
    if (!fixture_open(&f, FX "tiny_diffusers", &e) || !ref(&f, "unet.sample", &x) ||
        !ref(&f, "unet.timestep", &t) || !ref(&f, "te.last_hidden_state", &ctx) ||
        !ref(&f, "unet.out", &want) || !ref(&f, "unet.out_control", &want_c) ||
        !ref(&f, "controlnet.hint", &hint))
        goto out;
    for (const char *const *b = test_backends(); *b; b++) {
        nd_backend *be = open_be(*b, 0, &e);
        nd_unet *u = NULL;
        nd_controlnet *cn = NULL;
        nd_denoiser *d = NULL;
        CHECK_OK(nd_unet_new(f.w, be, &u, &e), &e);
        CHECK_OK(nd_controlnet_new(f.w, be, &cn, &e), &e);
        nd_denoiser_params p;
        nd_denoiser_params_init(&p);
        p.max_batch = 2;
        p.height = (int)x.shape[2];
        p.width = (int)x.shape[3];
        p.n_ctx = (int)ctx.shape[1];
        if (u && cn)
            CHECK_OK(nd_denoiser_new(u, cn, &p, &d, &e), &e);
        nd_arena in_a = {0};
        if (!d)
            goto next;
        stage_init(be, &in_a, nd_tensor_bytes(&ctx), &e);
        nd_tensor dctx = staged(be, &in_a, &ctx, &e);
        /* a different unconditional context: half the context (a permutation of
         * tokens would not do: cross-attention does not see the order) */
        static float other[77 * 64];
        int64_t T = ctx.shape[1], C = ctx.shape[2];
        CHECK(T * C <= (int64_t)ND_ARRAY_LEN(other));
        for (int64_t i = 0; i < T * C && T * C <= (int64_t)ND_ARRAY_LEN(other); i++)
            other[i] = 0.5f * ((const float *)ctx.data)[i];
        nd_tensor unc = nd_tensor_make(other, ND_F32, ND_DEV_CPU, 3, ctx.shape);
        float t0 = ((const float *)t.data)[0];
        nd_denoise_sample s[2] = {
            {.x = x.data, .t = t0, .ctx_cond = &dctx, .ctx_uncond = &dctx, .guidance = 7.5f},
            {.x = x.data, .t = t0, .ctx_cond = &ctx, .ctx_uncond = &unc, .hint = &hint,
             .guidance = 1.0f, .control_scale = 0.7f},
        };
        int64_t per = nd_tensor_numel(&want);
        float *eps = calloc((size_t)per * 2, sizeof *eps);
        CHECK_OK(nd_denoiser_eps(d, s, 2, eps, &e), &e);
        nd_tensor e0 = nd_tensor_make(eps, ND_F32, ND_DEV_CPU, 4, want.shape);
        nd_tensor e1 = nd_tensor_make(eps + per, ND_F32, ND_DEV_CPU, 4, want.shape);
        report("denoiser cfg sample 0", *b, rel_err(&e0, &want),
               nd_denoiser_arena_bytes(d));
        report("denoiser cfg+control 1", *b, rel_err(&e1, &want_c),
               nd_denoiser_arena_bytes(d));
        /* guidance matters: sample 1 with g = 3 is no longer the cond output */
        s[1].guidance = 3.0f;
        CHECK_OK(nd_denoiser_eps(d, &s[1], 1, eps, &e), &e);
        CHECK(rel_err(&e0, &want_c) > 1e-3);
        CHECK(nd_denoiser_eps(d, s, 3, eps, &e) == ND_EINVAL);
        /* a host context must be f32 (it is uploaded as it is) */
        if (be->device != ND_DEV_CPU) {
            nd_tensor h16 = ctx;
            h16.dtype = ND_F16;
            s[1].ctx_uncond = &h16;
            CHECK(nd_denoiser_eps(d, &s[1], 1, eps, &e) == ND_EINVAL);
        }
        free(eps);
    next:
        if (be)
            nd_backend_arena_free(be, &in_a);
        nd_denoiser_free(d);
        nd_controlnet_free(cn);
        nd_unet_free(u);
        nd_backend_close(be);
    }
out:
    fixture_close(&f);
}

/* Wrong shapes are refused with ND_EINVAL before anything runs. */
static void test_bad_shapes(void)
{
    nd_err e = {{0}};
    fixture f;
    nd_tensor x, t, ctx;
    if (!fixture_open(&f, FX "tiny_diffusers", &e) || !ref(&f, "unet.sample", &x) ||
        !ref(&f, "unet.timestep", &t) || !ref(&f, "te.last_hidden_state", &ctx))
        goto out;
    nd_backend *be = open_be("cpu_ref", 0, &e);
    nd_unet *u = NULL;
    CHECK_OK(nd_unet_new(f.w, be, &u, &e), &e);
    if (u) {
        nd_arena a;
        CHECK_OK(nd_arena_init(&a, 1 << 20, &e), &e);
        nd_tensor out;
        int64_t so[4] = {1, 4, 8, 8};
        CHECK_OK(nd_arena_tensor(&a, ND_F32, 4, so, &out, &e), &e);
        size_t used = a.used;
        nd_tensor x2 = x;
        x2.shape[2] = 7; /* not a multiple of 2 */
        nd_unet_input in = {.x = &x2, .t = &t, .ctx = &ctx};
        CHECK(nd_unet_run(u, &in, &a, &out, &e) == ND_EINVAL);
        nd_tensor c2 = ctx;
        c2.shape[2] = 65;
        c2.shape[1] = 1;
        in.x = &x;
        in.ctx = &c2;
        CHECK(nd_unet_run(u, &in, &a, &out, &e) == ND_EINVAL);
        in.ctx = &ctx;
        out.shape[1] = 3;
        CHECK(nd_unet_run(u, &in, &a, &out, &e) == ND_EINVAL);
        CHECK_EQ_INT(a.used, used); /* nothing left allocated */
        nd_arena_free(&a);
    }
    nd_unet_free(u);
    nd_backend_close(be);
out:
    fixture_close(&f);
}

ND_TEST_MAIN(ND_TEST(test_text_encoder), ND_TEST(test_text_encoder_ldm), ND_TEST(test_unet),
             ND_TEST(test_unet_ldm), ND_TEST(test_unet_controlnet),
             ND_TEST(test_unet_controlnet_ldm), ND_TEST(test_f16_weights), ND_TEST(test_vae), ND_TEST(test_denoiser),
             ND_TEST(test_bad_shapes))
