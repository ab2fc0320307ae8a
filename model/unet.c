/* model/unet.c - UNet2DConditionModel and ControlNetModel (diffusers), which
 * share the time embedding, the down blocks and the mid block. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/graph.h"
#include "model/internal.h"
#include "model/sd.h"

#define MAX_SKIPS (1 + ND_W_MAXBLOCKS * 8)

/* What the UNet and the ControlNet share: config, skip layout. */
typedef struct {
    nd_backend *be;
    const nd_weights *w;
    nd_unet_config cfg;
    const char *prefix;
    int n_skips;
    int skip_ch[MAX_SKIPS], skip_lvl[MAX_SKIPS]; /* channels, downsampling level */
    int n_levels;
    size_t ws_need;
} net;

struct nd_unet {
    net n;
};

struct nd_controlnet {
    net n;
    int hint_factor;
};

static nd_status net_init(net *n, const nd_weights *w, nd_backend *be, const nd_unet_config *c,
                          const char *prefix, const char *what, nd_err *err)
{
    memset(n, 0, sizeof *n);
    if (!c || !c->present)
        return nd_fail(err, ND_ENOTFOUND, "%s: the weights hold no %s", what, what);
    if (c->n_blocks < 1 || c->n_blocks > ND_W_MAXBLOCKS || c->layers_per_block < 1 ||
        c->layers_per_block > 7 || c->num_heads < 1 || c->norm_num_groups < 1)
        return nd_fail(err, ND_EUNSUPPORTED, "%s: unsupported configuration", what);
    n->be = be;
    n->w = w;
    n->cfg = *c;
    n->prefix = prefix;
    n->n_levels = c->n_blocks;
    /* skip layout, from the weights present */
    ndg g;
    nd_arena dummy;
    nd_arena_init_measure(&dummy);
    ndg_init(&g, be, w, prefix, &dummy, err);
    n->skip_ch[0] = c->block_out_channels[0];
    n->n_skips = 1;
    for (int b = 0; b < c->n_blocks; b++) {
        for (int l = 0; l < c->layers_per_block; l++) {
            n->skip_ch[n->n_skips] = c->block_out_channels[b];
            n->skip_lvl[n->n_skips++] = b;
        }
        if (ndg_has(&g, "down_blocks.%d.downsamplers.0.conv.weight", b)) {
            n->skip_ch[n->n_skips] = c->block_out_channels[b];
            n->skip_lvl[n->n_skips++] = b + 1;
        }
    }
    /* every tensor the shared part reads must be there with the config's shapes */
    nd_tensor t;
    NDG_TRY(ndg_w(&g, &t, "conv_in.weight"));
    if (t.ndim != 4 || t.shape[0] != c->block_out_channels[0])
        return nd_fail(err, ND_EFORMAT, "%s: conv_in does not match the config", what);
    return ND_OK;
}

/* SiLU(time_embedding(t)): what every resnet's time_emb_proj reads. */
static nd_status time_embed(ndg *g, const net *n, const nd_tensor *t, nd_tensor *temb_act)
{
    nd_tensor ts = {0}, l1 = {0};
    NDG_TRY(ndg_tsemb(g, t, n->cfg.block_out_channels[0], &ts));
    /* row by row: see ndg_linear_rows */
    NDG_TRY(ndg_linear_rows(g, &ts, "time_embedding.linear_1", &l1));
    NDG_TRY(ndg_unary(g, ND_OP_SILU, &l1, &l1));
    NDG_TRY(ndg_linear_rows(g, &l1, "time_embedding.linear_2", temb_act));
    return ndg_unary(g, ND_OP_SILU, temb_act, temb_act);
}

/* y = [x; x]: a tensor of the first half of a CFG batch, for both halves. */
static nd_status expand_pairs(ndg *g, const nd_tensor *x, nd_tensor *y)
{
    nd_tensor src = *x;
    memset(y, 0, sizeof *y);
    NDG_TRY(ndg_new(g, y, x->ndim, 2 * x->shape[0], x->ndim > 1 ? x->shape[1] : 0,
                    x->ndim > 2 ? x->shape[2] : 0, x->ndim > 3 ? x->shape[3] : 0));
    if (g->dry)
        return ND_OK;
    nd_tensor lo = ndg_half(y, 0), hi = ndg_half(y, 1);
    NDG_TRY(nd_copy(g->be, &src, &lo, g->err));
    return nd_copy(g->be, &src, &hi, g->err);
}

/* skips[0..k) and temb from half to whole batch (in place: new tensors). */
static nd_status expand_all(ndg *g, nd_tensor *skips, int k, nd_tensor *temb)
{
    for (int i = 0; i < k; i++) {
        nd_tensor half = skips[i];
        NDG_TRY(expand_pairs(g, &half, &skips[i]));
    }
    nd_tensor half = *temb;
    return expand_pairs(g, &half, temb);
}

/* Down blocks and mid block from h = conv_in(x) (+ hint); skips[n_skips]
 * and mid are allocated here (they stay in the arena).
 *
 * pairs: h0 and *temb hold only the first half of a CFG batch whose halves
 * have the same latent and timestep (and hint): everything before the first
 * cross-attention is then the same for both halves, so it runs once per
 * pair (the first transformer's self-attention included: more than a
 * quarter of the whole pass with the default model's 1104-token level) and
 * the skips and *temb are copied for the second half when the first
 * transformer starts. Exact: every op computes a sample independently of
 * its batch (gen.h, determinism). */
static nd_status down_mid(ndg *g, const net *n, const nd_tensor *h0, nd_tensor *temb,
                          const nd_tensor *ctx, nd_tensor *skips, nd_tensor *mid, bool pairs)
{
    const nd_unet_config *c = &n->cfg;
    int groups = c->norm_num_groups, heads = c->num_heads;
    float eps = c->norm_eps;
    char b[128];
    int k = 0;
    skips[k++] = *h0;
    const nd_tensor *h = h0;
    for (int i = 0; i < c->n_blocks; i++) {
        for (int l = 0; l < c->layers_per_block; l++) {
            nd_tensor *y = &skips[k++];
            memset(y, 0, sizeof *y);
            ndg_fmt(b, sizeof b, "down_blocks.%d.resnets.%d", i, l);
            NDG_TRY(ndg_resnet(g, h, temb, b, groups, eps, y));
            if (ndg_has(g, "down_blocks.%d.attentions.%d.norm.weight", i, l)) {
                ndg_fmt(b, sizeof b, "down_blocks.%d.attentions.%d", i, l);
                if (pairs) { /* the halves part inside: at its cross-attention */
                    NDG_TRY(expand_all(g, skips, k - 1, temb));
                    nd_tensor half = *y;
                    memset(y, 0, sizeof *y);
                    NDG_TRY(ndg_transformer_pairs(g, &half, ctx, b, groups, heads, y));
                    pairs = false;
                } else {
                    NDG_TRY(ndg_transformer(g, y, ctx, b, groups, heads, y));
                }
            }
            h = y;
        }
        if (ndg_has(g, "down_blocks.%d.downsamplers.0.conv.weight", i)) {
            nd_tensor *y = &skips[k++];
            memset(y, 0, sizeof *y);
            ndg_fmt(b, sizeof b, "down_blocks.%d.downsamplers.0.conv", i);
            NDG_TRY(ndg_conv(g, h, b, 2, 1, 1, 1, 1, y));
            h = y;
        }
    }
    if (k != n->n_skips)
        return nd_fail(g->err, ND_EFORMAT, "%s: %d skips, expected %d", n->prefix, k, n->n_skips);
    if (pairs) { /* no cross-attention in the down blocks: the mid block has one */
        NDG_TRY(expand_all(g, skips, k, temb));
        h = &skips[k - 1];
    }
    /* mid: resnet, transformer, resnet */
    nd_tensor m0 = {0};
    memset(mid, 0, sizeof *mid);
    NDG_TRY(ndg_new(g, mid, 4, h->shape[0], h->shape[1], h->shape[2], h->shape[3]));
    size_t mark = nd_arena_mark(g->a);
    NDG_TRY(ndg_resnet(g, h, temb, "mid_block.resnets.0", groups, eps, &m0));
    NDG_TRY(ndg_transformer(g, &m0, ctx, "mid_block.attentions.0", groups, heads, &m0));
    NDG_TRY(ndg_resnet(g, &m0, temb, "mid_block.resnets.1", groups, eps, mid));
    nd_arena_reset(g->a, mark);
    return ND_OK;
}

static bool is_shape(const nd_tensor *t, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t sh[4] = {d0, d1, d2, d3};
    if (!t || t->ndim != ndim)
        return false;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != sh[i])
            return false;
    return true;
}

static nd_status check_common(const net *n, const char *what, const nd_tensor *x,
                              const nd_tensor *t, const nd_tensor *ctx, nd_err *err)
{
    const nd_unet_config *c = &n->cfg;
    if (!x || !t || !ctx || x->ndim != 4 || x->shape[1] != c->in_channels)
        return nd_fail(err, ND_EINVAL, "%s: x must be [B,%d,H,W]", what, c->in_channels);
    int64_t B = x->shape[0], f = (int64_t)1 << (n->n_levels - 1);
    if (x->shape[2] % f || x->shape[3] % f)
        return nd_fail(err, ND_EINVAL, "%s: latent %lldx%lld is not a multiple of %lld", what,
                       (long long)x->shape[2], (long long)x->shape[3], (long long)f);
    if (!is_shape(t, 1, B, 0, 0, 0) || t->dtype != ND_F32)
        return nd_fail(err, ND_EINVAL, "%s: t must be f32 [%lld]", what, (long long)B);
    if (ctx->ndim != 3 || ctx->shape[0] != B || ctx->shape[2] != c->cross_attention_dim)
        return nd_fail(err, ND_EINVAL, "%s: ctx must be [%lld,T,%d]", what, (long long)B,
                       c->cross_attention_dim);
    return ND_OK;
}

static void res_shape(const net *n, int i, int batch, int h, int w, int64_t sh[4])
{
    int lvl = i < n->n_skips ? n->skip_lvl[i] : n->skip_lvl[n->n_skips - 1];
    int ch = i < n->n_skips ? n->skip_ch[i] : n->cfg.block_out_channels[n->cfg.n_blocks - 1];
    sh[0] = batch;
    sh[1] = ch;
    sh[2] = h >> lvl;
    sh[3] = w >> lvl;
}

/* ---- UNet -------------------------------------------------------------------------- */

nd_status nd_unet_new(const nd_weights *w, nd_backend *be, nd_unet **out, nd_err *err)
{
    *out = NULL;
    nd_unet *u = calloc(1, sizeof *u);
    if (!u)
        return nd_fail(err, ND_ENOMEM, "unet: out of memory");
    nd_status st = net_init(&u->n, w, be, nd_weights_unet(w), "unet.", "unet", err);
    if (st) {
        free(u);
        return st;
    }
    *out = u;
    return ND_OK;
}

void nd_unet_free(nd_unet *u)
{
    free(u);
}

int nd_unet_in_channels(const nd_unet *u) { return u->n.cfg.in_channels; }
int nd_unet_out_channels(const nd_unet *u) { return u->n.cfg.out_channels; }
int nd_unet_context_dim(const nd_unet *u) { return u->n.cfg.cross_attention_dim; }
int nd_unet_n_skips(const nd_unet *u) { return u->n.n_skips; }

static nd_status fits(const nd_tensor *y, const nd_tensor *buf, nd_err *err)
{
    if (nd_tensor_numel(y) > nd_tensor_numel(buf))
        return nd_fail(err, ND_EINVAL, "unet: an up-block output is larger than its buffer");
    return ND_OK;
}

/* Elements of the largest up-block output (resnet or upsampler) from MID on. */
static int64_t up_numel(ndg *g, const net *n, const nd_tensor *mid)
{
    int64_t B = mid->shape[0], c = mid->shape[1], hh = mid->shape[2], ww = mid->shape[3];
    int64_t best = B * c * hh * ww;
    for (int i = 0; i < n->cfg.n_blocks; i++) {
        for (int l = 0; l <= n->cfg.layers_per_block; l++) {
            nd_tensor w1;
            if (ndg_w(g, &w1, "up_blocks.%d.resnets.%d.conv1.weight", i, l))
                return best; /* the loop reports it */
            c = w1.shape[0];
            if (B * c * hh * ww > best)
                best = B * c * hh * ww;
        }
        if (ndg_has(g, "up_blocks.%d.upsamplers.0.conv.weight", i)) {
            hh *= 2, ww *= 2;
            if (B * c * hh * ww > best)
                best = B * c * hh * ww;
        }
    }
    return best;
}

nd_status nd_unet_run(nd_unet *u, const nd_unet_input *in, nd_arena *a, nd_tensor *out,
                      nd_err *err)
{
    const net *n = &u->n;
    const nd_unet_config *c = &n->cfg;
    NDG_TRY(check_common(n, "unet", in->x, in->t, in->ctx, err));
    int64_t B = in->x->shape[0], H = in->x->shape[2], W = in->x->shape[3];
    if (!is_shape(out, 4, B, c->out_channels, H, W))
        return nd_fail(err, ND_EINVAL, "unet: out must be [%lld,%d,%lld,%lld]", (long long)B,
                       c->out_channels, (long long)H, (long long)W);
    if (in->down_res) {
        for (int i = 0; i <= n->n_skips; i++) {
            int64_t sh[4];
            res_shape(n, i, (int)B, (int)H, (int)W, sh);
            const nd_tensor *r = i < n->n_skips ? in->down_res[i] : in->mid_res;
            if (!is_shape(r, 4, sh[0], sh[1], sh[2], sh[3]))
                return nd_fail(err, ND_EINVAL, "unet: control residual %d must be [%lld,%lld,%lld,%lld]",
                               i, (long long)sh[0], (long long)sh[1], (long long)sh[2],
                               (long long)sh[3]);
        }
    }
    ndg g;
    ndg_init(&g, n->be, n->w, n->prefix, a, err);
    size_t mark = nd_arena_mark(a);
    int groups = c->norm_num_groups, heads = c->num_heads;
    float eps = c->norm_eps;
    nd_tensor temb = {0}, h0 = {0}, mid;
    nd_tensor skips[MAX_SKIPS];
    bool pairs = in->cfg_pairs && B % 2 == 0;
    nd_tensor xh = pairs ? ndg_half(in->x, 0) : *in->x, th = pairs ? ndg_half(in->t, 0) : *in->t;
    NDG_TRY(time_embed(&g, n, &th, &temb));
    NDG_TRY(ndg_conv(&g, &xh, "conv_in", 1, 1, 1, 1, 1, &h0));
    NDG_TRY(down_mid(&g, n, &h0, &temb, in->ctx, skips, &mid, pairs));
    if (in->mid_res)
        NDG_TRY(ndg_binary(&g, ND_OP_ADD, &mid, in->mid_res, &mid));
    /* up blocks: each output is only read by the next step (through the
     * concatenation or the upsampling copy, made before the step writes), so
     * all of them take turns in one buffer as big as the largest */
    char b[128];
    int k = n->n_skips;
    nd_tensor h = mid, hb;
    NDG_TRY(ndg_new(&g, &hb, 1, up_numel(&g, n, &mid), 0, 0, 0));
    for (int i = 0; i < c->n_blocks; i++) {
        for (int l = 0; l <= c->layers_per_block; l++) {
            if (k < 1)
                return nd_fail(err, ND_EFORMAT, "unet: more up resnets than skips");
            nd_tensor *s = &skips[--k];
            if (in->down_res)
                NDG_TRY(ndg_binary(&g, ND_OP_ADD, s, in->down_res[k], s));
            nd_tensor w1;
            NDG_TRY(ndg_w(&g, &w1, "up_blocks.%d.resnets.%d.conv1.weight", i, l));
            nd_tensor y = ndg_view(&hb, 4, B, w1.shape[0], h.shape[2], h.shape[3]);
            NDG_TRY(fits(&y, &hb, err));
            size_t m = nd_arena_mark(a);
            nd_tensor cat = {0};
            NDG_TRY(ndg_binary(&g, ND_OP_CONCAT, &h, s, &cat));
            ndg_fmt(b, sizeof b, "up_blocks.%d.resnets.%d", i, l);
            NDG_TRY(ndg_resnet(&g, &cat, &temb, b, groups, eps, &y));
            nd_arena_reset(a, m);
            if (ndg_has(&g, "up_blocks.%d.attentions.%d.norm.weight", i, l)) {
                ndg_fmt(b, sizeof b, "up_blocks.%d.attentions.%d", i, l);
                NDG_TRY(ndg_transformer(&g, &y, in->ctx, b, groups, heads, &y));
            }
            h = y;
        }
        if (ndg_has(&g, "up_blocks.%d.upsamplers.0.conv.weight", i)) {
            nd_tensor y = ndg_view(&hb, 4, B, h.shape[1], h.shape[2] * 2, h.shape[3] * 2);
            NDG_TRY(fits(&y, &hb, err));
            size_t m = nd_arena_mark(a);
            nd_tensor up = {0};
            NDG_TRY(ndg_unary(&g, ND_OP_UPSAMPLE2X, &h, &up));
            ndg_fmt(b, sizeof b, "up_blocks.%d.upsamplers.0.conv", i);
            NDG_TRY(ndg_conv(&g, &up, b, 1, 1, 1, 1, 1, &y));
            nd_arena_reset(a, m);
            h = y;
        }
    }
    if (k != 0)
        return nd_fail(err, ND_EFORMAT, "unet: %d skips left after the up blocks", k);
    nd_tensor o = {0};
    NDG_TRY(ndg_gn(&g, &h, "conv_norm_out", groups, eps, true, &o));
    NDG_TRY(ndg_conv(&g, &o, "conv_out", 1, 1, 1, 1, 1, out));
    nd_arena_reset(a, mark);
    if (g.ws_need > u->n.ws_need)
        u->n.ws_need = g.ws_need;
    return ND_OK;
}

nd_status nd_unet_measure(nd_unet *u, int batch, int h, int w, int n_ctx, bool control,
                          size_t *arena_bytes, size_t *ws_bytes, nd_err *err)
{
    const net *n = &u->n;
    nd_arena a;
    nd_arena_init_measure(&a);
    nd_tensor x, t, ctx, out, res[MAX_SKIPS + 1];
    const nd_tensor *rp[MAX_SKIPS];
    int64_t sx[4] = {batch, n->cfg.in_channels, h, w}, stt[1] = {batch},
            sc[3] = {batch, n_ctx, n->cfg.cross_attention_dim},
            so[4] = {batch, n->cfg.out_channels, h, w};
    NDG_TRY(nd_arena_tensor(&a, ND_F32, 4, sx, &x, err));
    NDG_TRY(nd_arena_tensor(&a, ND_F32, 1, stt, &t, err));
    NDG_TRY(nd_arena_tensor(&a, ND_F32, 3, sc, &ctx, err));
    NDG_TRY(nd_arena_tensor(&a, ND_F32, 4, so, &out, err));
    nd_unet_input in = {.x = &x, .t = &t, .ctx = &ctx};
    if (control) {
        for (int i = 0; i <= n->n_skips; i++) {
            int64_t sh[4];
            res_shape(n, i, batch, h, w, sh);
            NDG_TRY(nd_arena_tensor(&a, ND_F32, 4, sh, &res[i], err));
            if (i < n->n_skips)
                rp[i] = &res[i];
        }
        in.down_res = rp;
        in.mid_res = &res[n->n_skips];
    }
    size_t before = u->n.ws_need;
    u->n.ws_need = 0;
    nd_status st = nd_unet_run(u, &in, &a, &out, err);
    if (ws_bytes)
        *ws_bytes = u->n.ws_need;
    if (u->n.ws_need < before)
        u->n.ws_need = before;
    if (arena_bytes)
        *arena_bytes = a.peak;
    return st;
}

/* ---- ControlNet ------------------------------------------------------------------- */

nd_status nd_controlnet_new(const nd_weights *w, nd_backend *be, nd_controlnet **out, nd_err *err)
{
    *out = NULL;
    nd_controlnet *cn = calloc(1, sizeof *cn);
    if (!cn)
        return nd_fail(err, ND_ENOMEM, "controlnet: out of memory");
    nd_status st = net_init(&cn->n, w, be, nd_weights_controlnet(w), "controlnet.", "controlnet",
                            err);
    if (st) {
        free(cn);
        return st;
    }
    /* hint encoder: stride 2 on the odd blocks */
    cn->hint_factor = 1;
    char b[128];
    for (int k = 0;; k++) {
        ndg_fmt(b, sizeof b, "controlnet.controlnet_cond_embedding.blocks.%d.weight", k);
        if (!nd_weights_get(w, b))
            break;
        if (k % 2)
            cn->hint_factor *= 2;
    }
    *out = cn;
    return ND_OK;
}

void nd_controlnet_free(nd_controlnet *cn)
{
    free(cn);
}

int nd_controlnet_n_down(const nd_controlnet *cn) { return cn->n.n_skips; }
int nd_controlnet_hint_factor(const nd_controlnet *cn) { return cn->hint_factor; }

void nd_controlnet_res_shape(const nd_controlnet *cn, int i, int batch, int h, int w,
                             int64_t shape[4])
{
    res_shape(&cn->n, i, batch, h, w, shape);
}

void nd_controlnet_hint_emb_shape(const nd_controlnet *cn, int batch, int h, int w,
                                  int64_t shape[4])
{
    shape[0] = batch;
    shape[1] = cn->n.cfg.block_out_channels[0];
    shape[2] = h;
    shape[3] = w;
}

/* Layer K of the hint encoder: -1 is conv_in, then blocks.K (stride 2 on the
 * odd ones). */
static const char *cn_layer(char *b, size_t n, int k)
{
    return k < 0 ? ndg_fmt(b, n, "controlnet_cond_embedding.conv_in")
                 : ndg_fmt(b, n, "controlnet_cond_embedding.blocks.%d", k);
}

static int cn_stride(int k)
{
    return k >= 0 && k % 2 ? 2 : 1;
}

/* SH: a padded (1) conv NAME's input shape in, its output shape out. */
static nd_status hint_conv_shape(ndg *g, const char *name, int stride, int64_t sh[4])
{
    nd_tensor w;
    NDG_TRY(ndg_w(g, &w, "%s.weight", name));
    if (w.ndim != 4)
        return nd_fail(g->err, ND_EFORMAT, "%s%s: conv wants a 4-d weight", g->prefix, name);
    sh[1] = w.shape[0];
    sh[2] = (sh[2] + 2 - w.shape[2]) / stride + 1;
    sh[3] = (sh[3] + 2 - w.shape[3]) / stride + 1;
    return ND_OK;
}

/* y = conv NAME (x) in BUF's memory. */
static nd_status hint_conv(ndg *g, const nd_tensor *x, const char *name, int stride,
                           const nd_tensor *buf, nd_tensor *y)
{
    int64_t sh[4];
    memcpy(sh, x->shape, sizeof sh);
    NDG_TRY(hint_conv_shape(g, name, stride, sh));
    if (sh[0] * sh[1] * sh[2] * sh[3] > nd_tensor_numel(buf))
        return nd_fail(g->err, ND_EINVAL, "%s%s: output larger than its buffer", g->prefix, name);
    *y = ndg_view(buf, 4, sh[0], sh[1], sh[2], sh[3]);
    return ndg_conv(g, x, name, stride, 1, 1, 1, 1, y);
}

/* The hint encoder (controlnet_cond_embedding): hint [B,3,H*f,W*f] -> emb
 * [B,C0,H,W], allocated here when emb->ndim == 0. */
static nd_status hint_encoder(ndg *g, const nd_controlnet *cn, const nd_tensor *hint,
                              nd_tensor *emb)
{
    char b[128];
    nd_tensor out = *emb;
    if (!out.ndim) { /* the output first, so the temporaries can be released */
        int64_t sh[4], f = cn->hint_factor;
        nd_controlnet_hint_emb_shape(cn, (int)hint->shape[0], (int)(hint->shape[2] / f),
                                     (int)(hint->shape[3] / f), sh);
        NDG_TRY(ndg_new(g, &out, 4, sh[0], sh[1], sh[2], sh[3]));
    }
    /* each layer reads only the one before: two buffers as big as the
     * largest layer take turns (the first layers are at the image's full
     * size: 16 channels of 1088x1024 are 71 MB a sample) */
    size_t mark = nd_arena_mark(g->a);
    int64_t most = 0, sh[4];
    memcpy(sh, hint->shape, sizeof sh);
    for (int k = -1; k < 0 || ndg_has(g, "controlnet_cond_embedding.blocks.%d.weight", k); k++) {
        NDG_TRY(hint_conv_shape(g, cn_layer(b, sizeof b, k), cn_stride(k), sh));
        if (sh[0] * sh[1] * sh[2] * sh[3] > most)
            most = sh[0] * sh[1] * sh[2] * sh[3];
    }
    nd_tensor buf[2], e;
    NDG_TRY(ndg_new(g, &buf[0], 1, most, 0, 0, 0));
    NDG_TRY(ndg_new(g, &buf[1], 1, most, 0, 0, 0));
    NDG_TRY(hint_conv(g, hint, cn_layer(b, sizeof b, -1), cn_stride(-1), &buf[0], &e));
    NDG_TRY(ndg_unary(g, ND_OP_SILU, &e, &e));
    for (int k = 0; ndg_has(g, "controlnet_cond_embedding.blocks.%d.weight", k); k++) {
        nd_tensor e2;
        NDG_TRY(hint_conv(g, &e, cn_layer(b, sizeof b, k), cn_stride(k), &buf[(k + 1) % 2], &e2));
        NDG_TRY(ndg_unary(g, ND_OP_SILU, &e2, &e2));
        e = e2;
    }
    NDG_TRY(ndg_conv(g, &e, "controlnet_cond_embedding.conv_out", 1, 1, 1, 1, 1, &out));
    nd_arena_reset(g->a, mark);
    *emb = out;
    return ND_OK;
}

static nd_status check_hint(const nd_controlnet *cn, const nd_tensor *hint, int64_t B, int64_t H,
                            int64_t W, nd_err *err)
{
    const net *n = &cn->n;
    int64_t f = cn->hint_factor;
    if (!is_shape(hint, 4, B, n->cfg.cond_channels > 0 ? n->cfg.cond_channels : 3, H * f, W * f))
        return nd_fail(err, ND_EINVAL, "controlnet: hint must be [%lld,3,%lld,%lld]",
                       (long long)B, (long long)(H * f), (long long)(W * f));
    return ND_OK;
}

nd_status nd_controlnet_embed_hint(nd_controlnet *cn, const nd_tensor *hint, nd_arena *a,
                                   nd_tensor *emb, nd_err *err)
{
    const net *n = &cn->n;
    int64_t f = cn->hint_factor;
    if (!hint || hint->ndim != 4)
        return nd_fail(err, ND_EINVAL, "controlnet: hint must be [B,3,H,W]");
    int64_t B = hint->shape[0], H = hint->shape[2] / f, W = hint->shape[3] / f;
    NDG_TRY(check_hint(cn, hint, B, H, W, err));
    int64_t sh[4];
    nd_controlnet_hint_emb_shape(cn, (int)B, (int)H, (int)W, sh);
    if (!is_shape(emb, 4, sh[0], sh[1], sh[2], sh[3]))
        return nd_fail(err, ND_EINVAL, "controlnet: hint embedding must be [%lld,%lld,%lld,%lld]",
                       (long long)sh[0], (long long)sh[1], (long long)sh[2], (long long)sh[3]);
    ndg g;
    ndg_init(&g, n->be, n->w, n->prefix, a, err);
    NDG_TRY(hint_encoder(&g, cn, hint, emb));
    if (g.ws_need > cn->n.ws_need)
        cn->n.ws_need = g.ws_need;
    return ND_OK;
}

nd_status nd_controlnet_run(nd_controlnet *cn, const nd_controlnet_input *in, nd_arena *a,
                            nd_tensor *down, nd_tensor *mid, nd_err *err)
{
    const net *n = &cn->n;
    NDG_TRY(check_common(n, "controlnet", in->x, in->t, in->ctx, err));
    int64_t B = in->x->shape[0], H = in->x->shape[2], W = in->x->shape[3];
    if (in->hint_emb) {
        int64_t sh[4];
        nd_controlnet_hint_emb_shape(cn, (int)B, (int)H, (int)W, sh);
        if (!is_shape(in->hint_emb, 4, sh[0], sh[1], sh[2], sh[3]))
            return nd_fail(err, ND_EINVAL, "controlnet: hint_emb must be [%lld,%lld,%lld,%lld]",
                           (long long)sh[0], (long long)sh[1], (long long)sh[2],
                           (long long)sh[3]);
    } else {
        NDG_TRY(check_hint(cn, in->hint, B, H, W, err));
    }
    for (int i = 0; i <= n->n_skips; i++) {
        int64_t sh[4];
        res_shape(n, i, (int)B, (int)H, (int)W, sh);
        const nd_tensor *r = i < n->n_skips ? &down[i] : mid;
        if (!is_shape(r, 4, sh[0], sh[1], sh[2], sh[3]))
            return nd_fail(err, ND_EINVAL, "controlnet: output %d must be [%lld,%lld,%lld,%lld]",
                           i, (long long)sh[0], (long long)sh[1], (long long)sh[2],
                           (long long)sh[3]);
    }
    ndg g;
    ndg_init(&g, n->be, n->w, n->prefix, a, err);
    size_t mark = nd_arena_mark(a);
    char b[128];
    nd_tensor emb = {0}, temb = {0}, h0 = {0}, m;
    if (in->hint_emb)
        emb = *in->hint_emb;
    else
        NDG_TRY(hint_encoder(&g, cn, in->hint, &emb));
    bool pairs = in->cfg_pairs && B % 2 == 0;
    nd_tensor xh = pairs ? ndg_half(in->x, 0) : *in->x, th = pairs ? ndg_half(in->t, 0) : *in->t;
    nd_tensor eh = pairs ? ndg_half(&emb, 0) : emb;
    NDG_TRY(time_embed(&g, n, &th, &temb));
    NDG_TRY(ndg_conv(&g, &xh, "conv_in", 1, 1, 1, 1, 1, &h0));
    NDG_TRY(ndg_binary(&g, ND_OP_ADD, &h0, &eh, &h0));
    nd_tensor skips[MAX_SKIPS];
    NDG_TRY(down_mid(&g, n, &h0, &temb, in->ctx, skips, &m, pairs));
    for (int i = 0; i < n->n_skips; i++) {
        ndg_fmt(b, sizeof b, "controlnet_down_blocks.%d", i);
        NDG_TRY(ndg_conv(&g, &skips[i], b, 1, 0, 0, 0, 0, &down[i]));
        if (in->scale != 1.0f)
            NDG_TRY(ndg_scale(&g, &down[i], in->scale, 0.0f, &down[i]));
    }
    NDG_TRY(ndg_conv(&g, &m, "controlnet_mid_block", 1, 0, 0, 0, 0, mid));
    if (in->scale != 1.0f)
        NDG_TRY(ndg_scale(&g, mid, in->scale, 0.0f, mid));
    nd_arena_reset(a, mark);
    if (g.ws_need > cn->n.ws_need)
        cn->n.ws_need = g.ws_need;
    return ND_OK;
}

nd_status nd_controlnet_measure(nd_controlnet *cn, int batch, int h, int w, int n_ctx,
                                size_t *arena_bytes, size_t *ws_bytes, nd_err *err)
{
    const net *n = &cn->n;
    nd_arena a;
    nd_arena_init_measure(&a);
    nd_tensor x, t, ctx, hint, res[MAX_SKIPS + 1];
    int64_t f = cn->hint_factor;
    int64_t sx[4] = {batch, n->cfg.in_channels, h, w}, stt[1] = {batch},
            sc[3] = {batch, n_ctx, n->cfg.cross_attention_dim},
            sh_[4] = {batch, n->cfg.cond_channels > 0 ? n->cfg.cond_channels : 3, h * f, w * f};
    NDG_TRY(nd_arena_tensor(&a, ND_F32, 4, sx, &x, err));
    NDG_TRY(nd_arena_tensor(&a, ND_F32, 1, stt, &t, err));
    NDG_TRY(nd_arena_tensor(&a, ND_F32, 3, sc, &ctx, err));
    NDG_TRY(nd_arena_tensor(&a, ND_F32, 4, sh_, &hint, err));
    for (int i = 0; i <= n->n_skips; i++) {
        int64_t sh[4];
        res_shape(n, i, batch, h, w, sh);
        NDG_TRY(nd_arena_tensor(&a, ND_F32, 4, sh, &res[i], err));
    }
    nd_controlnet_input in = {.x = &x, .t = &t, .ctx = &ctx, .hint = &hint, .scale = 1.0f};
    size_t before = cn->n.ws_need;
    cn->n.ws_need = 0;
    nd_status st = nd_controlnet_run(cn, &in, &a, res, &res[n->n_skips], err);
    if (ws_bytes)
        *ws_bytes = cn->n.ws_need;
    if (cn->n.ws_need < before)
        cn->n.ws_need = before;
    if (arena_bytes)
        *arena_bytes = a.peak;
    return st;
}

nd_status nd_controlnet_embed_measure(nd_controlnet *cn, int batch, int h, int w,
                                      size_t *arena_bytes, size_t *ws_bytes, nd_err *err)
{
    nd_arena a;
    nd_arena_init_measure(&a);
    int64_t f = cn->hint_factor, se[4];
    int64_t sh[4] = {batch, cn->n.cfg.cond_channels > 0 ? cn->n.cfg.cond_channels : 3, h * f, w * f};
    nd_controlnet_hint_emb_shape(cn, batch, h, w, se);
    nd_tensor hint, emb;
    NDG_TRY(nd_arena_tensor(&a, ND_F32, 4, sh, &hint, err));
    NDG_TRY(nd_arena_tensor(&a, ND_F32, 4, se, &emb, err));
    size_t before = cn->n.ws_need;
    cn->n.ws_need = 0;
    nd_status st = nd_controlnet_embed_hint(cn, &hint, &a, &emb, err);
    if (ws_bytes)
        *ws_bytes = cn->n.ws_need;
    if (cn->n.ws_need < before)
        cn->n.ws_need = before;
    if (arena_bytes)
        *arena_bytes = a.peak;
    return st;
}

nd_backend *nd_unet_backend_(const nd_unet *u) { return u->n.be; }
nd_backend *nd_controlnet_backend_(const nd_controlnet *cn) { return cn->n.be; }
