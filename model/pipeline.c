/* model/pipeline.c - the batched denoiser: N samples, CFG as one doubled
 * batch, optional ControlNet with per-sample hint and scale, one arena in
 * the backend's memory. Latents and eps stay host arrays (the samplers run
 * on the host); a step uploads the inputs and downloads the UNet's output,
 * a few hundred KB, and everything between stays on the device. */
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "model/internal.h"
#include "model/sd.h"

struct nd_denoiser {
    nd_unet *u;
    nd_controlnet *cn;
    nd_backend *be;
    nd_denoiser_params p;
    nd_arena a;     /* in the backend's memory */
    float *host_t;  /* [2 * max_batch] timesteps, staged for upload */
    float *host_out; /* [2 * max_batch][out_channels*h*w]: the UNet's output */
};

void nd_denoiser_params_init(nd_denoiser_params *p)
{
    memset(p, 0, sizeof *p);
    p->max_batch = 1;
    p->height = p->width = 64;
    p->n_ctx = 77;
    p->cfg = true;
}

#define TRY(x)                                                                \
    do {                                                                      \
        nd_status st_ = (x);                                                  \
        if (st_)                                                              \
            return st_;                                                       \
    } while (0)

/* Sample i of a batch tensor (contiguous, outermost dim). */
static nd_tensor slice(const nd_tensor *t, int64_t i)
{
    nd_tensor s = *t;
    size_t per = nd_tensor_bytes(t) / (size_t)t->shape[0];
    s.shape[0] = 1;
    s.data = t->data ? (char *)t->data + (size_t)i * per : NULL;
    return s;
}

/* A sample's tensors may be host memory or the backend's own. */
static bool where_ok(const nd_backend *be, const nd_tensor *t)
{
    return t->device == be->device || (t->device == ND_DEV_CPU && t->dtype == ND_F32);
}

static bool ctx_ok(const nd_backend *be, const nd_tensor *c, int n_ctx, int dim)
{
    return c && c->ndim == 3 && c->shape[0] == 1 && c->shape[1] == n_ctx && c->shape[2] == dim &&
           where_ok(be, c);
}

/* dst (the backend's memory) = src (where_ok: the backend's, or host f32
 * with dst's shape, uploaded as it is). */
static nd_status put(nd_backend *be, const nd_tensor *src, nd_tensor *dst, nd_err *err)
{
    if (src->device == dst->device)
        return nd_copy(be, src, dst, err);
    return nd_backend_upload(be, dst->data, src->data, nd_tensor_bytes(dst), err);
}

/* emb[j] (j < M) = the hint embedding of sample j % n: the sample's own, or
 * computed here from its hint (one sample at a time), zero without a hint
 * (its residuals are scaled by 0). A measuring arena only sizes the
 * one-sample hint encoder. */
static nd_status hint_embeddings(nd_denoiser *d, nd_arena *a, const nd_denoise_sample *s, int n,
                                 nd_tensor *emb, nd_err *err)
{
    int64_t M = emb->shape[0];
    size_t mark = nd_arena_mark(a);
    if (a->measuring) {
        int f = nd_controlnet_hint_factor(d->cn);
        int64_t sh[4] = {1, 3, emb->shape[2] * f, emb->shape[3] * f};
        nd_tensor h, e = slice(emb, 0);
        TRY(nd_arena_tensor(a, ND_F32, 4, sh, &h, err));
        TRY(nd_controlnet_embed_hint(d->cn, &h, a, &e, err));
        nd_arena_reset(a, mark);
        return ND_OK;
    }
    for (int i = 0; i < n; i++) {
        nd_tensor e = slice(emb, i);
        if (s[i].hint_emb) {
            TRY(put(d->be, s[i].hint_emb, &e, err));
        } else if (s[i].hint && s[i].hint->device == a->device) {
            TRY(nd_controlnet_embed_hint(d->cn, s[i].hint, a, &e, err));
        } else if (s[i].hint) { /* a host hint: into the arena first */
            nd_tensor h;
            TRY(nd_arena_tensor(a, ND_F32, 4, s[i].hint->shape, &h, err));
            TRY(put(d->be, s[i].hint, &h, err));
            TRY(nd_controlnet_embed_hint(d->cn, &h, a, &e, err));
        } else {
            TRY(nd_backend_zero(d->be, e.data, nd_tensor_bytes(&e), err));
        }
        nd_arena_reset(a, mark);
    }
    for (int64_t j = n; j < M; j++) {
        nd_tensor e = slice(emb, j), src = slice(emb, j % n);
        TRY(nd_copy(d->be, &src, &e, err));
    }
    return ND_OK;
}

/* The whole call; with a measuring arena (s == NULL) it only sizes. */
static nd_status step(nd_denoiser *d, nd_arena *a, const nd_denoise_sample *s, int n, float *eps,
                      nd_err *err)
{
    const nd_denoiser_params *p = &d->p;
    bool dry = a->measuring;
    int M = p->cfg ? 2 * n : n, cin = nd_unet_in_channels(d->u), cout = nd_unet_out_channels(d->u);
    int dim = nd_unet_context_dim(d->u);
    int64_t H = p->height, W = p->width;
    bool control = d->cn != NULL;
    if (!dry && control) {
        control = false;
        for (int i = 0; i < n; i++)
            control |= s[i].hint != NULL;
    }
    nd_tensor x, t, ctx, out, hemb, res[64];
    const nd_tensor *rp[64];
    int64_t sx[4] = {M, cin, H, W}, st[1] = {M}, sc[3] = {M, p->n_ctx, dim},
            so[4] = {M, cout, H, W};
    TRY(nd_arena_tensor(a, ND_F32, 4, sx, &x, err));
    TRY(nd_arena_tensor(a, ND_F32, 1, st, &t, err));
    TRY(nd_arena_tensor(a, ND_F32, 3, sc, &ctx, err));
    TRY(nd_arena_tensor(a, ND_F32, 4, so, &out, err));
    if (!dry) {
        size_t per = (size_t)(cin * H * W);
        for (int j = 0; j < M; j++) {
            const nd_denoise_sample *sj = &s[j % n];
            bool uncond = p->cfg && j < n;
            TRY(nd_backend_upload(d->be, (float *)x.data + j * per, sj->x, per * sizeof(float),
                                  err));
            d->host_t[j] = sj->t;
            nd_tensor dst = slice(&ctx, j);
            TRY(put(d->be, uncond ? sj->ctx_uncond : sj->ctx_cond, &dst, err));
        }
        TRY(nd_backend_upload(d->be, t.data, d->host_t, (size_t)M * sizeof(float), err));
    }
    /* [uncond x n; cond x n] share x, t and the hint pairwise */
    nd_unet_input in = {.x = &x, .t = &t, .ctx = &ctx, .cfg_pairs = p->cfg};
    if (control) {
        int nd = nd_controlnet_n_down(d->cn);
        if (nd + 1 > (int)ND_ARRAY_LEN(res))
            return nd_fail(err, ND_EUNSUPPORTED, "denoiser: %d ControlNet residuals", nd);
        int64_t se[4];
        nd_controlnet_hint_emb_shape(d->cn, M, (int)H, (int)W, se);
        TRY(nd_arena_tensor(a, ND_F32, 4, se, &hemb, err));
        for (int i = 0; i <= nd; i++) {
            int64_t s4[4];
            nd_controlnet_res_shape(d->cn, i, M, (int)H, (int)W, s4);
            TRY(nd_arena_tensor(a, ND_F32, 4, s4, &res[i], err));
            rp[i] = &res[i];
        }
        /* the hint encoder once per sample (batch 1, whatever the batch), not
         * per CFG half: both halves see the same hint */
        TRY(hint_embeddings(d, a, s, n, &hemb, err));
        nd_controlnet_input ci = {.x = &x, .t = &t, .ctx = &ctx, .scale = 1.0f, .hint_emb = &hemb,
                                  .cfg_pairs = p->cfg};
        TRY(nd_controlnet_run(d->cn, &ci, a, res, &res[nd], err));
        /* per-sample conditioning scale (0 for samples without a hint) */
        for (int j = 0; j < M && !dry; j++) {
            const nd_denoise_sample *sj = &s[j % n];
            float sc1 = sj->hint ? sj->control_scale : 0.0f;
            if (sc1 == 1.0f)
                continue;
            for (int i = 0; i <= nd; i++) {
                nd_tensor r = slice(&res[i], j);
                TRY(nd_scale(d->be, &r, sc1, 0.0f, &r, err));
            }
        }
        in.down_res = rp;
        in.mid_res = &res[nd];
    }
    TRY(nd_unet_run(d->u, &in, a, &out, err));
    if (dry)
        return ND_OK;
    size_t per = (size_t)(cout * H * W);
    const float *o = d->host_out;
    TRY(nd_backend_download(d->be, d->host_out, out.data, (size_t)M * per * sizeof(float), err));
    for (int i = 0; i < n; i++) {
        float *e = eps + i * per;
        if (!p->cfg) {
            memcpy(e, o + i * per, per * sizeof(float));
            continue;
        }
        const float *eu = o + i * per, *ec = o + (n + i) * per;
        float g = s[i].guidance;
        for (size_t k = 0; k < per; k++)
            e[k] = eu[k] + g * (ec[k] - eu[k]);
    }
    return ND_OK;
}

static nd_status check_params(const nd_unet *u, const nd_denoiser_params *p, nd_err *err)
{
    if (!u || p->max_batch < 1 || p->height < 1 || p->width < 1 || p->n_ctx < 1)
        return nd_fail(err, ND_EINVAL, "denoiser: bad parameters");
    return ND_OK;
}

nd_status nd_denoiser_measure(nd_unet *u, nd_controlnet *cn, const nd_denoiser_params *p,
                              size_t *arena_bytes, size_t *ws_bytes, nd_err *err)
{
    nd_denoiser_params def;
    if (!p) {
        nd_denoiser_params_init(&def);
        p = &def;
    }
    TRY(check_params(u, p, err));
    nd_denoiser d = {.u = u, .cn = cn, .be = nd_unet_backend_(u), .p = *p};
    nd_arena a;
    nd_arena_init_measure(&a);
    TRY(step(&d, &a, NULL, p->max_batch, NULL, err));
    if (arena_bytes)
        *arena_bytes = a.peak;
    if (ws_bytes) {
        int M = p->cfg ? 2 * p->max_batch : p->max_batch;
        size_t uw = 0, cw = 0;
        TRY(nd_unet_measure(u, M, p->height, p->width, p->n_ctx, cn != NULL, NULL, &uw, err));
        if (cn)
            TRY(nd_controlnet_measure(cn, M, p->height, p->width, p->n_ctx, NULL, &cw, err));
        *ws_bytes = uw > cw ? uw : cw;
    }
    return ND_OK;
}

nd_status nd_denoiser_new(nd_unet *u, nd_controlnet *cn, const nd_denoiser_params *p,
                          nd_denoiser **out, nd_err *err)
{
    nd_denoiser_params def;
    if (!p) {
        nd_denoiser_params_init(&def);
        p = &def;
    }
    *out = NULL;
    if (cn && nd_controlnet_backend_(cn) != nd_unet_backend_(u))
        return nd_fail(err, ND_EINVAL, "denoiser: the UNet and ControlNet use different backends");
    size_t bytes = 0, ws = 0;
    TRY(nd_denoiser_measure(u, cn, p, &bytes, &ws, err));
    nd_backend *be = nd_unet_backend_(u);
    if (ws > be->ws.cap)
        return nd_fail(err, ND_ENOMEM,
                       "denoiser: backend %s has %zu workspace bytes, the ops need %zu",
                       be->name, be->ws.cap, ws);
    nd_denoiser *d = calloc(1, sizeof *d);
    if (!d)
        return nd_fail(err, ND_ENOMEM, "denoiser: out of memory");
    d->u = u;
    d->cn = cn;
    d->be = be;
    d->p = *p;
    size_t M = (size_t)p->max_batch * 2;
    d->host_t = malloc(M * sizeof(float));
    d->host_out = malloc(M * (size_t)nd_unet_out_channels(u) * (size_t)p->height *
                         (size_t)p->width * sizeof(float));
    nd_status st = d->host_t && d->host_out
                       ? nd_backend_arena_init(be, &d->a, bytes, err)
                       : nd_fail(err, ND_ENOMEM, "denoiser: out of memory");
    if (st) {
        nd_denoiser_free(d);
        return st;
    }
    *out = d;
    return ND_OK;
}

void nd_denoiser_free(nd_denoiser *d)
{
    if (!d)
        return;
    nd_backend_arena_free(d->be, &d->a);
    free(d->host_t);
    free(d->host_out);
    free(d);
}

size_t nd_denoiser_arena_bytes(const nd_denoiser *d)
{
    return d->a.cap;
}

nd_status nd_denoiser_eps(nd_denoiser *d, const nd_denoise_sample *s, int n, float *eps,
                          nd_err *err)
{
    const nd_denoiser_params *p = &d->p;
    if (n < 1 || n > p->max_batch || !s || !eps)
        return nd_fail(err, ND_EINVAL, "denoiser: %d samples (1..%d)", n, p->max_batch);
    int dim = nd_unet_context_dim(d->u);
    for (int i = 0; i < n; i++) {
        if (!s[i].x || !ctx_ok(d->be, s[i].ctx_cond, p->n_ctx, dim) ||
            (p->cfg && !ctx_ok(d->be, s[i].ctx_uncond, p->n_ctx, dim)))
            return nd_fail(err, ND_EINVAL,
                           "denoiser: sample %d needs x and [1,%d,%d] contexts (%s's memory, or "
                           "host f32)", i, p->n_ctx, dim, d->be->name);
        if (s[i].hint && !d->cn)
            return nd_fail(err, ND_EINVAL, "denoiser: sample %d has a hint but no ControlNet", i);
        if (s[i].hint) {
            int f = nd_controlnet_hint_factor(d->cn);
            const nd_tensor *h = s[i].hint;
            if (h->ndim != 4 || h->shape[0] != 1 || h->shape[1] != 3 ||
                h->shape[2] != (int64_t)p->height * f || h->shape[3] != (int64_t)p->width * f ||
                !where_ok(d->be, h))
                return nd_fail(err, ND_EINVAL, "denoiser: sample %d hint must be [1,3,%d,%d]", i,
                               p->height * f, p->width * f);
            int64_t se[4];
            nd_controlnet_hint_emb_shape(d->cn, 1, p->height, p->width, se);
            const nd_tensor *e = s[i].hint_emb;
            if (e && (e->ndim != 4 || e->shape[0] != 1 || e->shape[1] != se[1] ||
                      e->shape[2] != se[2] || e->shape[3] != se[3] || !where_ok(d->be, e)))
                return nd_fail(err, ND_EINVAL, "denoiser: sample %d hint_emb must be [1,%lld,%d,%d]",
                               i, (long long)se[1], p->height, p->width);
        }
    }
    nd_arena_reset(&d->a, 0);
    nd_status st = step(d, &d->a, s, n, eps, err);
    nd_arena_reset(&d->a, 0);
    return st;
}
