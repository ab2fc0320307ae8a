/* model/vae.c - AutoencoderKL (diffusers) encoder and decoder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/graph.h"
#include "model/sd.h"

struct nd_vae {
    nd_backend *be;
    const nd_weights *w;
    nd_vae_config cfg;
    int factor;
    size_t ws_need;
};

nd_status nd_vae_new(const nd_weights *w, nd_backend *be, nd_vae **out, nd_err *err)
{
    *out = NULL;
    const nd_vae_config *c = nd_weights_vae(w);
    if (!c || !c->present)
        return nd_fail(err, ND_ENOTFOUND, "vae: the weights hold no VAE");
    if (c->n_blocks < 1 || c->n_blocks > ND_W_MAXBLOCKS || c->layers_per_block < 1 ||
        c->norm_num_groups < 1 || c->latent_channels < 1)
        return nd_fail(err, ND_EUNSUPPORTED, "vae: unsupported configuration");
    nd_vae *v = calloc(1, sizeof *v);
    if (!v)
        return nd_fail(err, ND_ENOMEM, "vae: out of memory");
    v->be = be;
    v->w = w;
    v->cfg = *c;
    v->factor = 1;
    char b[128];
    for (int i = 0; i < c->n_blocks; i++) {
        ndg_fmt(b, sizeof b, "vae.decoder.up_blocks.%d.upsamplers.0.conv.weight", i);
        if (nd_weights_get(w, b))
            v->factor *= 2;
    }
    *out = v;
    return ND_OK;
}

void nd_vae_free(nd_vae *v)
{
    free(v);
}

float nd_vae_scaling_factor(const nd_vae *v) { return v->cfg.scaling_factor; }
int nd_vae_factor(const nd_vae *v) { return v->factor; }
int nd_vae_latent_channels(const nd_vae *v) { return v->cfg.latent_channels; }

/* Single-head self-attention over H*W tokens with a residual (VAE mid). */
static nd_status vae_attention(ndg *g, nd_tensor *x, const char *name, int groups)
{
    char b[128];
    size_t mark = nd_arena_mark(g->a);
    nd_tensor n = {0}, t = {0}, q = {0}, k = {0}, v = {0}, o = {0};
    ndg_fmt(b, sizeof b, "%s.group_norm", name);
    NDG_TRY(ndg_gn(g, x, b, groups, 1e-6f, false, &n));
    NDG_TRY(ndg_to_tokens(g, &n, &t));
    ndg_fmt(b, sizeof b, "%s.to_q", name);
    NDG_TRY(ndg_linear(g, &t, b, &q));
    ndg_fmt(b, sizeof b, "%s.to_k", name);
    NDG_TRY(ndg_linear(g, &t, b, &k));
    ndg_fmt(b, sizeof b, "%s.to_v", name);
    NDG_TRY(ndg_linear(g, &t, b, &v));
    NDG_TRY(ndg_attn(g, &q, &k, &v, 1, false, &o));
    ndg_fmt(b, sizeof b, "%s.to_out.0", name);
    NDG_TRY(ndg_linear(g, &o, b, &q));
    NDG_TRY(ndg_to_image(g, &q, x->shape[2], x->shape[3], &n));
    NDG_TRY(ndg_binary(g, ND_OP_ADD, x, &n, x));
    nd_arena_reset(g->a, mark);
    return ND_OK;
}

static nd_status mid_block(ndg *g, const nd_vae_config *c, const char *side, nd_tensor *h)
{
    char b[128];
    nd_tensor y = {0}, y2 = {0};
    ndg_fmt(b, sizeof b, "%s.mid_block.resnets.0", side);
    NDG_TRY(ndg_resnet(g, h, NULL, b, c->norm_num_groups, 1e-6f, &y));
    if (ndg_has(g, "%s.mid_block.attentions.0.to_q.weight", side)) {
        ndg_fmt(b, sizeof b, "%s.mid_block.attentions.0", side);
        NDG_TRY(vae_attention(g, &y, b, c->norm_num_groups));
    }
    ndg_fmt(b, sizeof b, "%s.mid_block.resnets.1", side);
    NDG_TRY(ndg_resnet(g, &y, NULL, b, c->norm_num_groups, 1e-6f, &y2));
    *h = y2;
    return ND_OK;
}

nd_status nd_vae_decode(nd_vae *v, const nd_tensor *z, nd_arena *a, nd_tensor *img, nd_err *err)
{
    const nd_vae_config *c = &v->cfg;
    if (!z || z->ndim != 4 || z->shape[1] != c->latent_channels)
        return nd_fail(err, ND_EINVAL, "vae decode: z must be [B,%d,h,w]", c->latent_channels);
    int64_t B = z->shape[0], H = z->shape[2] * v->factor, W = z->shape[3] * v->factor;
    if (!img || img->ndim != 4 || img->shape[0] != B || img->shape[1] != c->out_channels ||
        img->shape[2] != H || img->shape[3] != W)
        return nd_fail(err, ND_EINVAL, "vae decode: img must be [%lld,%d,%lld,%lld]",
                       (long long)B, c->out_channels, (long long)H, (long long)W);
    ndg g;
    ndg_init(&g, v->be, v->w, "vae.", a, err);
    size_t mark = nd_arena_mark(a);
    int groups = c->norm_num_groups;
    char b[128];
    nd_tensor p = {0}, h = {0};
    const nd_tensor *zin = z;
    if (ndg_has(&g, "post_quant_conv.weight")) {
        NDG_TRY(ndg_conv(&g, z, "post_quant_conv", 1, 0, 0, 0, 0, &p));
        zin = &p;
    }
    NDG_TRY(ndg_conv(&g, zin, "decoder.conv_in", 1, 1, 1, 1, 1, &h));
    NDG_TRY(mid_block(&g, c, "decoder", &h));
    for (int i = 0; i < c->n_blocks; i++) {
        for (int l = 0; l <= c->layers_per_block; l++) {
            nd_tensor y = {0};
            ndg_fmt(b, sizeof b, "decoder.up_blocks.%d.resnets.%d", i, l);
            NDG_TRY(ndg_resnet(&g, &h, NULL, b, groups, 1e-6f, &y));
            h = y;
        }
        if (ndg_has(&g, "decoder.up_blocks.%d.upsamplers.0.conv.weight", i)) {
            nd_tensor up = {0}, y = {0};
            NDG_TRY(ndg_unary(&g, ND_OP_UPSAMPLE2X, &h, &up));
            ndg_fmt(b, sizeof b, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            NDG_TRY(ndg_conv(&g, &up, b, 1, 1, 1, 1, 1, &y));
            h = y;
        }
    }
    nd_tensor o = {0};
    NDG_TRY(ndg_gn(&g, &h, "decoder.conv_norm_out", groups, 1e-6f, true, &o));
    NDG_TRY(ndg_conv(&g, &o, "decoder.conv_out", 1, 1, 1, 1, 1, img));
    nd_arena_reset(a, mark);
    if (g.ws_need > v->ws_need)
        v->ws_need = g.ws_need;
    return ND_OK;
}

nd_status nd_vae_encode(nd_vae *v, const nd_tensor *img, nd_arena *a, nd_tensor *moments,
                        nd_err *err)
{
    const nd_vae_config *c = &v->cfg;
    int64_t f = v->factor;
    if (!img || img->ndim != 4 || img->shape[1] != c->in_channels || img->shape[2] % f ||
        img->shape[3] % f)
        return nd_fail(err, ND_EINVAL, "vae encode: img must be [B,%d,H,W], H and W multiples of %lld",
                       c->in_channels, (long long)f);
    int64_t B = img->shape[0], H = img->shape[2] / f, W = img->shape[3] / f;
    if (!moments || moments->ndim != 4 || moments->shape[0] != B ||
        moments->shape[1] != 2 * c->latent_channels || moments->shape[2] != H ||
        moments->shape[3] != W)
        return nd_fail(err, ND_EINVAL, "vae encode: moments must be [%lld,%d,%lld,%lld]",
                       (long long)B, 2 * c->latent_channels, (long long)H, (long long)W);
    ndg g;
    ndg_init(&g, v->be, v->w, "vae.", a, err);
    size_t mark = nd_arena_mark(a);
    int groups = c->norm_num_groups;
    char b[128];
    nd_tensor h = {0};
    NDG_TRY(ndg_conv(&g, img, "encoder.conv_in", 1, 1, 1, 1, 1, &h));
    for (int i = 0; i < c->n_blocks; i++) {
        for (int l = 0; l < c->layers_per_block; l++) {
            nd_tensor y = {0};
            ndg_fmt(b, sizeof b, "encoder.down_blocks.%d.resnets.%d", i, l);
            NDG_TRY(ndg_resnet(&g, &h, NULL, b, groups, 1e-6f, &y));
            h = y;
        }
        if (ndg_has(&g, "encoder.down_blocks.%d.downsamplers.0.conv.weight", i)) {
            nd_tensor y = {0};
            ndg_fmt(b, sizeof b, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            NDG_TRY(ndg_conv(&g, &h, b, 2, 0, 1, 0, 1, &y)); /* pad right/bottom only */
            h = y;
        }
    }
    NDG_TRY(mid_block(&g, c, "encoder", &h));
    nd_tensor o = {0}, q = {0};
    NDG_TRY(ndg_gn(&g, &h, "encoder.conv_norm_out", groups, 1e-6f, true, &o));
    if (ndg_has(&g, "quant_conv.weight")) {
        NDG_TRY(ndg_conv(&g, &o, "encoder.conv_out", 1, 1, 1, 1, 1, &q));
        NDG_TRY(ndg_conv(&g, &q, "quant_conv", 1, 0, 0, 0, 0, moments));
    } else {
        NDG_TRY(ndg_conv(&g, &o, "encoder.conv_out", 1, 1, 1, 1, 1, moments));
    }
    nd_arena_reset(a, mark);
    if (g.ws_need > v->ws_need)
        v->ws_need = g.ws_need;
    return ND_OK;
}

nd_status nd_vae_measure(nd_vae *v, bool encode, int batch, int h, int w, size_t *arena_bytes,
                         size_t *ws_bytes, nd_err *err)
{
    const nd_vae_config *c = &v->cfg;
    nd_arena a;
    nd_arena_init_measure(&a);
    nd_tensor lat, img;
    int64_t f = v->factor;
    int64_t sl[4] = {batch, encode ? 2 * c->latent_channels : c->latent_channels, h, w};
    int64_t si[4] = {batch, encode ? c->in_channels : c->out_channels, h * f, w * f};
    NDG_TRY(nd_arena_tensor(&a, ND_F32, 4, sl, &lat, err));
    NDG_TRY(nd_arena_tensor(&a, ND_F32, 4, si, &img, err));
    size_t before = v->ws_need;
    v->ws_need = 0;
    nd_status st = encode ? nd_vae_encode(v, &img, &a, &lat, err)
                          : nd_vae_decode(v, &lat, &a, &img, err);
    if (ws_bytes)
        *ws_bytes = v->ws_need;
    if (v->ws_need < before)
        v->ws_need = before;
    if (arena_bytes)
        *arena_bytes = a.peak;
    return st;
}
