/* model/text_encoder.c - the CLIP text encoder (HF CLIPTextModel,
 * last_hidden_state), written against kernels/ops.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/graph.h"
#include "model/sd.h"

#define TE "text_encoder.text_model."

struct nd_text_encoder {
    nd_backend *be;
    const nd_weights *w;
    nd_clip_config cfg;
    int n_layers; /* layers run (clip skip applied) */
    size_t ws_need;
};

void nd_text_encoder_params_init(nd_text_encoder_params *p)
{
    memset(p, 0, sizeof *p);
}

nd_status nd_text_encoder_new(const nd_weights *w, nd_backend *be, const nd_text_encoder_params *p,
                              nd_text_encoder **out, nd_err *err)
{
    nd_text_encoder_params def;
    if (!p) {
        nd_text_encoder_params_init(&def);
        p = &def;
    }
    *out = NULL;
    const nd_clip_config *c = nd_weights_clip(w);
    if (!c || !c->present)
        return nd_fail(err, ND_ENOTFOUND, "text encoder: the weights hold no text encoder");
    if (p->clip_skip < 0 || p->clip_skip >= c->num_layers)
        return nd_fail(err, ND_EINVAL, "text encoder: clip_skip %d with %d layers", p->clip_skip,
                       c->num_layers);
    nd_tensor t;
    nd_status st = ndg_wtensor(w, TE "embeddings.token_embedding.weight", &t, err);
    if (st)
        return st;
    if (t.ndim != 2 || t.shape[1] != c->hidden_size)
        return nd_fail(err, ND_EFORMAT, "text encoder: token table is not [vocab,%d]",
                       c->hidden_size);
    nd_text_encoder *te = calloc(1, sizeof *te);
    if (!te)
        return nd_fail(err, ND_ENOMEM, "text encoder: out of memory");
    te->be = be;
    te->w = w;
    te->cfg = *c;
    te->cfg.vocab_size = (int)t.shape[0];
    te->n_layers = c->num_layers - p->clip_skip;
    *out = te;
    return ND_OK;
}

void nd_text_encoder_free(nd_text_encoder *te)
{
    free(te);
}

int nd_text_encoder_dim(const nd_text_encoder *te)
{
    return te->cfg.hidden_size;
}

int nd_text_encoder_max_tokens(const nd_text_encoder *te)
{
    return te->cfg.max_position_embeddings;
}

nd_status nd_text_encoder_run(nd_text_encoder *te, const int32_t *ids, int batch, int n_tokens,
                              nd_arena *a, nd_tensor *out, nd_err *err)
{
    const nd_clip_config *c = &te->cfg;
    int64_t B = batch, T = n_tokens, C = c->hidden_size;
    if (batch < 1 || n_tokens < 1 || n_tokens > c->max_position_embeddings)
        return nd_fail(err, ND_EINVAL, "text encoder: %d x %d tokens (at most %d per sequence)",
                       batch, n_tokens, c->max_position_embeddings);
    if (out->ndim != 3 || out->shape[0] != B || out->shape[1] != T || out->shape[2] != C)
        return nd_fail(err, ND_EINVAL, "text encoder: out must be [%d,%d,%lld]", batch,
                       n_tokens, (long long)C);
    if (!ids && !a->measuring)
        return nd_fail(err, ND_EINVAL, "text encoder: no token ids");
    ndg g;
    ndg_init(&g, te->be, te->w, TE, a, err);
    size_t mark = nd_arena_mark(a);
    nd_tensor tok, pos, x;
    NDG_TRY(ndg_w(&g, &tok, "embeddings.token_embedding.weight"));
    NDG_TRY(ndg_w(&g, &pos, "embeddings.position_embedding.weight"));
    NDG_TRY(ndg_new(&g, &x, 3, B, T, C, 0));
    /* token gather: one row copy per token */
    size_t es = nd_dtype_size(tok.dtype);
    for (int64_t i = 0; i < B * T; i++) {
        if (!ids)
            break;
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return nd_fail(err, ND_EINVAL, "text encoder: token id %d outside the vocabulary (%d)",
                           ids[i], c->vocab_size);
        if (g.dry)
            continue;
        int64_t sh[1] = {C};
        nd_tensor row = nd_tensor_make((char *)tok.data + (size_t)ids[i] * (size_t)C * es,
                                       tok.dtype, tok.device, 1, sh);
        nd_tensor dst = nd_tensor_make((float *)x.data + i * C, ND_F32, x.device, 1, sh);
        NDG_TRY(ndg_unary(&g, ND_OP_COPY, &row, &dst));
    }
    nd_tensor pv = ndg_view(&pos, 2, T, C, 0, 0); /* the first T positions */
    NDG_TRY(ndg_binary(&g, ND_OP_ADD, &x, &pv, &x));
    float eps = c->layer_norm_eps;
    char b[128];
    for (int l = 0; l < te->n_layers; l++) {
        size_t m = nd_arena_mark(a);
        nd_tensor n = {0}, q = {0}, k = {0}, v = {0}, o = {0};
        ndg_fmt(b, sizeof b, "encoder.layers.%d.layer_norm1", l);
        NDG_TRY(ndg_ln(&g, &x, b, eps, &n));
        ndg_fmt(b, sizeof b, "encoder.layers.%d.self_attn.q_proj", l);
        NDG_TRY(ndg_linear(&g, &n, b, &q));
        ndg_fmt(b, sizeof b, "encoder.layers.%d.self_attn.k_proj", l);
        NDG_TRY(ndg_linear(&g, &n, b, &k));
        ndg_fmt(b, sizeof b, "encoder.layers.%d.self_attn.v_proj", l);
        NDG_TRY(ndg_linear(&g, &n, b, &v));
        NDG_TRY(ndg_attn(&g, &q, &k, &v, c->num_heads, true, &o));
        ndg_fmt(b, sizeof b, "encoder.layers.%d.self_attn.out_proj", l);
        NDG_TRY(ndg_linear(&g, &o, b, &q));
        NDG_TRY(ndg_binary(&g, ND_OP_ADD, &x, &q, &x));
        ndg_fmt(b, sizeof b, "encoder.layers.%d.layer_norm2", l);
        NDG_TRY(ndg_ln(&g, &x, b, eps, &n));
        nd_tensor f = {0};
        ndg_fmt(b, sizeof b, "encoder.layers.%d.mlp.fc1", l);
        NDG_TRY(ndg_linear(&g, &n, b, &f));
        NDG_TRY(ndg_unary(&g, c->quick_gelu ? ND_OP_QUICK_GELU : ND_OP_GELU, &f, &f));
        ndg_fmt(b, sizeof b, "encoder.layers.%d.mlp.fc2", l);
        NDG_TRY(ndg_linear(&g, &f, b, &q));
        NDG_TRY(ndg_binary(&g, ND_OP_ADD, &x, &q, &x));
        nd_arena_reset(a, m);
    }
    NDG_TRY(ndg_ln(&g, &x, "final_layer_norm", eps, out));
    nd_arena_reset(a, mark);
    if (g.ws_need > te->ws_need)
        te->ws_need = g.ws_need;
    return ND_OK;
}

nd_status nd_text_encoder_measure(nd_text_encoder *te, int batch, int n_tokens,
                                  size_t *arena_bytes, size_t *ws_bytes, nd_err *err)
{
    nd_arena a;
    nd_arena_init_measure(&a);
    nd_tensor out;
    int64_t sh[3] = {batch, n_tokens, te->cfg.hidden_size};
    nd_status st = nd_arena_tensor(&a, ND_F32, 3, sh, &out, err);
    if (!st) {
        size_t before = te->ws_need;
        te->ws_need = 0;
        st = nd_text_encoder_run(te, NULL, batch, n_tokens, &a, &out, err);
        if (ws_bytes)
            *ws_bytes = te->ws_need;
        if (te->ws_need < before)
            te->ws_need = before;
    }
    if (arena_bytes)
        *arena_bytes = a.peak;
    return st;
}
