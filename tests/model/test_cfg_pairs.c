/* tests/model/test_cfg_pairs.c - the speed paths of the batched denoiser
 * give the same bits as the plain ones, on the tiny fixtures (both CPU
 * backends):
 *  - cfg_pairs (the part before the first cross-attention run once per
 *    [uncond; cond] pair) against the UNet / ControlNet run on the whole
 *    batch;
 *  - a hint embedding made once (nd_controlnet_embed_hint) against the hint
 *    encoder run inside nd_controlnet_run.
 * And the pairs really differ after the cross-attention (different
 * contexts), so the test would see a wrong copy. */
#include "tests/harness.h"
#include "kernels/ops.h"
#include "model/sd.h"
#include "weights/weights.h"

#define FX "tests/fixtures/weights/"

static const char *const backends[] = {"cpu_ref", "cpu"};

/* [a; a] of a [1,...] tensor, in the arena */
static nd_tensor twice(nd_arena *a, const nd_tensor *t, nd_err *e)
{
    int64_t sh[4] = {2, 0, 0, 0};
    for (int i = 1; i < t->ndim; i++)
        sh[i] = t->shape[i];
    nd_tensor out = {0};
    CHECK_OK(nd_arena_tensor(a, ND_F32, t->ndim, sh, &out, e), e);
    if (out.data) {
        size_t n = nd_tensor_bytes(t);
        memcpy(out.data, t->data, n);
        memcpy((char *)out.data + n, t->data, n);
    }
    return out;
}

/* NaN-poison the arena's free space, so a value the run forgot to write
 * cannot pass as the one an earlier run left there */
static void poison(nd_arena *a)
{
    memset(a->base + a->used, 0xff, a->cap - a->used);
}

static bool same(const nd_tensor *a, const nd_tensor *b)
{
    return nd_tensor_bytes(a) == nd_tensor_bytes(b) && !memcmp(a->data, b->data, nd_tensor_bytes(a));
}

static bool halves_differ(const nd_tensor *t)
{
    size_t n = nd_tensor_bytes(t) / 2;
    return memcmp(t->data, (const char *)t->data + n, n) != 0;
}

static void test_pairs_and_hint_embedding_bit_identical(void)
{
    nd_err e = {{0}};
    nd_weights_params wp;
    nd_weights_params_init(&wp);
    wp.controlnet = FX "tiny_controlnet_diffusers";
    nd_weights *w = NULL;
    nd_st_file *outs = NULL;
    CHECK_OK(nd_weights_load(FX "tiny_diffusers", &wp, &w, &e), &e);
    CHECK_OK(nd_st_open(FX "outputs.safetensors", &outs, &e), &e);
    if (!w || !outs)
        goto out;
    nd_tensor x1, t1, c1, h1;
    const char *names[4] = {"unet.sample", "unet.timestep", "te.last_hidden_state", "controlnet.hint"};
    nd_tensor *dst[4] = {&x1, &t1, &c1, &h1};
    for (int i = 0; i < 4; i++) {
        const nd_st_tensor *st = nd_st_find(outs, names[i]);
        CHECKF(st && st->dtype == ND_WDT_F32, "fixture %s", names[i]);
        if (!st || st->dtype != ND_WDT_F32)
            goto out;
        *dst[i] = nd_tensor_make((void *)st->data, ND_F32, ND_DEV_CPU, st->ndim, st->shape);
    }
    for (size_t b = 0; b < ND_ARRAY_LEN(backends); b++) {
        nd_backend_config cfg = {0, 0, NULL};
        nd_backend *be = NULL;
        nd_unet *u = NULL;
        nd_controlnet *cn = NULL;
        nd_arena a = {0};
        CHECK_OK(nd_backend_open(backends[b], &cfg, &be, &e), &e);
        if (!be)
            continue;
        CHECK_OK(nd_unet_new(w, be, &u, &e), &e);
        CHECK_OK(nd_controlnet_new(w, be, &cn, &e), &e);
        CHECK_OK(nd_arena_init(&a, 64u << 20, &e), &e);
        if (!u || !cn || !a.base)
            goto next;
        int H = (int)x1.shape[2], W = (int)x1.shape[3], nd = nd_controlnet_n_down(cn);
        /* a CFG batch: the same latent, timestep and hint, contexts c and c/2 */
        nd_tensor x = twice(&a, &x1, &e), ctx = twice(&a, &c1, &e), hint = twice(&a, &h1, &e);
        nd_tensor t = {0};
        int64_t st2[1] = {2};
        CHECK_OK(nd_arena_tensor(&a, ND_F32, 1, st2, &t, &e), &e);
        ((float *)t.data)[0] = ((float *)t.data)[1] = ((const float *)t1.data)[0];
        int64_t per_ctx = nd_tensor_numel(&c1);
        for (int64_t i = 0; i < per_ctx; i++)
            ((float *)ctx.data)[i] *= 0.5f;
        /* ControlNet: hint inside, whole batch / embedding given, pairs */
        nd_tensor r0[32], r1[32], emb;
        int64_t se[4];
        nd_controlnet_hint_emb_shape(cn, 2, H, W, se);
        CHECK_OK(nd_arena_tensor(&a, ND_F32, 4, se, &emb, &e), &e);
        for (int i = 0; i <= nd && i < 32; i++) {
            int64_t sh[4];
            nd_controlnet_res_shape(cn, i, 2, H, W, sh);
            CHECK_OK(nd_arena_tensor(&a, ND_F32, 4, sh, &r0[i], &e), &e);
            CHECK_OK(nd_arena_tensor(&a, ND_F32, 4, sh, &r1[i], &e), &e);
        }
        nd_controlnet_input ci = {.x = &x, .t = &t, .ctx = &ctx, .hint = &hint, .scale = 1.0f};
        CHECK_OK(nd_controlnet_run(cn, &ci, &a, r0, &r0[nd], &e), &e);
        poison(&a);
        CHECK_OK(nd_controlnet_embed_hint(cn, &hint, &a, &emb, &e), &e);
        nd_controlnet_input cp = {.x = &x, .t = &t, .ctx = &ctx, .scale = 1.0f, .hint_emb = &emb,
                                  .cfg_pairs = true};
        CHECK_OK(nd_controlnet_run(cn, &cp, &a, r1, &r1[nd], &e), &e);
        for (int i = 0; i <= nd; i++)
            CHECKF(same(&r0[i], &r1[i]), "%s: ControlNet residual %d differs", backends[b], i);
        CHECK(halves_differ(&r0[nd])); /* the mid block saw the two contexts */
        /* UNet with those residuals: whole batch / pairs */
        const nd_tensor *rp[32];
        for (int i = 0; i < nd; i++)
            rp[i] = &r0[i];
        nd_tensor o0, o1;
        int64_t so[4] = {2, nd_unet_out_channels(u), H, W};
        CHECK_OK(nd_arena_tensor(&a, ND_F32, 4, so, &o0, &e), &e);
        CHECK_OK(nd_arena_tensor(&a, ND_F32, 4, so, &o1, &e), &e);
        nd_unet_input in = {.x = &x, .t = &t, .ctx = &ctx, .down_res = rp, .mid_res = &r0[nd]};
        CHECK_OK(nd_unet_run(u, &in, &a, &o0, &e), &e);
        in.cfg_pairs = true;
        poison(&a);
        CHECK_OK(nd_unet_run(u, &in, &a, &o1, &e), &e);
        CHECKF(same(&o0, &o1), "%s: UNet output with cfg_pairs differs", backends[b]);
        CHECK(halves_differ(&o0));
    next:
        nd_arena_free(&a);
        nd_controlnet_free(cn);
        nd_unet_free(u);
        nd_backend_close(be);
    }
out:
    nd_st_close(outs);
    nd_weights_free(w);
}

ND_TEST_MAIN(ND_TEST(test_pairs_and_hint_embedding_bit_identical))
