/* model/graph.c - the graph-building layer of the components (see graph.h). */
#include "model/graph.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void ndg_init(ndg *g, nd_backend *be, const nd_weights *w, const char *prefix, nd_arena *a,
              nd_err *err)
{
    memset(g, 0, sizeof *g);
    g->be = be;
    g->w = w;
    g->a = a;
    g->err = err;
    g->prefix = prefix;
    g->dry = a->measuring;
}

nd_status ndg_wtensor(const nd_weights *w, const char *name, nd_tensor *out, nd_err *err)
{
    const nd_wtensor *t = nd_weights_get(w, name);
    if (!t)
        return nd_fail(err, ND_ENOTFOUND, "weight %s is missing", name);
    if (t->ndim < 1 || t->ndim > ND_MAX_DIMS || (t->dtype != ND_WDT_F32 && t->dtype != ND_WDT_F16))
        return nd_fail(err, ND_EUNSUPPORTED, "weight %s: %d dims of %s", name, t->ndim,
                       nd_wdtype_name(t->dtype));
    *out = nd_tensor_make((void *)t->data, t->dtype == ND_WDT_F16 ? ND_F16 : ND_F32, ND_DEV_CPU,
                          t->ndim, t->shape);
    return ND_OK;
}

static void wname(const ndg *g, char *buf, size_t n, const char *fmt, va_list ap)
{
    size_t k = (size_t)snprintf(buf, n, "%s", g->prefix);
    if (k < n)
        vsnprintf(buf + k, n - k, fmt, ap);
}

nd_status ndg_w(ndg *g, nd_tensor *out, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    wname(g, name, sizeof name, fmt, ap);
    va_end(ap);
    NDG_TRY(ndg_wtensor(g->w, name, out, g->err));
    out->device = g->be->device;
    if (g->dry || g->be->device == ND_DEV_CPU)
        return ND_OK; /* a measuring pass reads no weight */
    /* on a device: the backend's resident copy, uploaded on first use */
    const void *d = nd_backend_resident(g->be, out->data, nd_tensor_bytes(out), g->err);
    if (!d)
        return nd_wrap(g->err, ND_ENOMEM, "weight %s on %s", name, g->be->name);
    out->data = (void *)d;
    return ND_OK;
}

bool ndg_has(const ndg *g, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    wname(g, name, sizeof name, fmt, ap);
    va_end(ap);
    return nd_weights_get(g->w, name) != NULL;
}

nd_status ndg_new(ndg *g, nd_tensor *out, int ndim, int64_t d0, int64_t d1, int64_t d2,
                  int64_t d3)
{
    int64_t sh[4] = {d0, d1, d2, d3};
    return nd_arena_tensor(g->a, ND_F32, ndim, sh, out, g->err);
}

nd_tensor ndg_view(const nd_tensor *t, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t sh[4] = {d0, d1, d2, d3};
    nd_tensor v = *t;
    v.ndim = ndim;
    for (int i = 0; i < ND_MAX_DIMS; i++)
        v.shape[i] = i < ndim ? sh[i] : 1;
    return v;
}

nd_tensor ndg_half(const nd_tensor *t, int which)
{
    nd_tensor h = *t;
    h.shape[0] /= 2;
    if (t->data)
        h.data = (char *)t->data + (size_t)which * nd_tensor_bytes(&h);
    return h;
}

nd_status ndg_run(ndg *g, nd_op_call *c)
{
    size_t ws = nd_op_workspace_bytes(g->be, c);
    if (ws > g->ws_need)
        g->ws_need = ws;
    if (g->dry)
        return ND_OK;
    return nd_op_run(g->be, c, g->err);
}

static nd_status alloc_like(ndg *g, nd_tensor *y, int ndim, const int64_t *sh)
{
    if (y->ndim)
        return ND_OK;
    return nd_arena_tensor(g->a, ND_F32, ndim, sh, y, g->err);
}

static nd_status linear(ndg *g, const nd_tensor *x, const char *name, bool per_row, nd_tensor *y)
{
    nd_tensor w, b;
    NDG_TRY(ndg_w(g, &w, "%s.weight", name));
    bool hb = ndg_has(g, "%s.bias", name);
    if (hb)
        NDG_TRY(ndg_w(g, &b, "%s.bias", name));
    if (w.ndim == 4 && w.shape[2] == 1 && w.shape[3] == 1) /* 1x1 conv as a linear */
        w = ndg_view(&w, 2, w.shape[0], w.shape[1], 0, 0);
    if (w.ndim != 2)
        return nd_fail(g->err, ND_EFORMAT, "%s%s.weight is not a linear weight", g->prefix, name);
    int64_t sh[ND_MAX_DIMS];
    memcpy(sh, x->shape, sizeof sh);
    sh[x->ndim - 1] = w.shape[0];
    NDG_TRY(alloc_like(g, y, x->ndim, sh));
    if (!per_row) {
        nd_op_call c = {.op = ND_OP_LINEAR, .src = {x, &w, hb ? &b : NULL}, .dst = y};
        return ndg_run(g, &c);
    }
    int64_t K = w.shape[1], N = w.shape[0], rows = nd_tensor_numel(x) / K;
    for (int64_t r = 0; r < rows; r++) {
        nd_tensor xr = ndg_view(x, 2, 1, K, 0, 0), yr = ndg_view(y, 2, 1, N, 0, 0);
        xr.data = x->data ? (float *)x->data + r * K : NULL;
        yr.data = y->data ? (float *)y->data + r * N : NULL;
        nd_op_call c = {.op = ND_OP_LINEAR, .src = {&xr, &w, hb ? &b : NULL}, .dst = &yr};
        NDG_TRY(ndg_run(g, &c));
    }
    return ND_OK;
}

nd_status ndg_linear(ndg *g, const nd_tensor *x, const char *name, nd_tensor *y)
{
    return linear(g, x, name, false, y);
}

nd_status ndg_linear_rows(ndg *g, const nd_tensor *x, const char *name, nd_tensor *y)
{
    return linear(g, x, name, true, y);
}

static int64_t conv_out(int64_t n, int64_t k, int s, int p0, int p1)
{
    return (n + p0 + p1 - k) / s + 1;
}

nd_status ndg_conv(ndg *g, const nd_tensor *x, const char *name, int stride, int pt, int pb,
                   int pl, int pr, nd_tensor *y)
{
    nd_tensor w, b;
    NDG_TRY(ndg_w(g, &w, "%s.weight", name));
    bool hb = ndg_has(g, "%s.bias", name);
    if (hb)
        NDG_TRY(ndg_w(g, &b, "%s.bias", name));
    if (w.ndim != 4 || x->ndim != 4)
        return nd_fail(g->err, ND_EFORMAT, "%s%s: conv wants 4-d weight and input", g->prefix,
                       name);
    int64_t sh[4] = {x->shape[0], w.shape[0], conv_out(x->shape[2], w.shape[2], stride, pt, pb),
                     conv_out(x->shape[3], w.shape[3], stride, pl, pr)};
    NDG_TRY(alloc_like(g, y, 4, sh));
    nd_op_call c = {.op = ND_OP_CONV2D, .src = {x, &w, hb ? &b : NULL}, .dst = y,
                    .p.conv = {stride, pt, pb, pl, pr}};
    return ndg_run(g, &c);
}

nd_status ndg_gn(ndg *g, const nd_tensor *x, const char *name, int groups, float eps, bool silu,
                 nd_tensor *y)
{
    nd_tensor w, b;
    NDG_TRY(ndg_w(g, &w, "%s.weight", name));
    NDG_TRY(ndg_w(g, &b, "%s.bias", name));
    NDG_TRY(alloc_like(g, y, x->ndim, x->shape));
    nd_op_call c = {.op = ND_OP_GROUP_NORM, .src = {x, &w, &b}, .dst = y,
                    .p.norm = {groups, eps, silu}};
    return ndg_run(g, &c);
}

nd_status ndg_ln(ndg *g, const nd_tensor *x, const char *name, float eps, nd_tensor *y)
{
    nd_tensor w, b;
    NDG_TRY(ndg_w(g, &w, "%s.weight", name));
    NDG_TRY(ndg_w(g, &b, "%s.bias", name));
    NDG_TRY(alloc_like(g, y, x->ndim, x->shape));
    nd_op_call c = {.op = ND_OP_LAYER_NORM, .src = {x, &w, &b}, .dst = y, .p.norm = {0, eps, false}};
    return ndg_run(g, &c);
}

nd_status ndg_attn(ndg *g, const nd_tensor *q, const nd_tensor *k, const nd_tensor *v,
                   int heads, bool causal, nd_tensor *y)
{
    NDG_TRY(alloc_like(g, y, q->ndim, q->shape));
    nd_op_call c = {.op = ND_OP_ATTENTION, .src = {q, k, v}, .dst = y,
                    .p.attn = {heads, 0.0f, causal}};
    return ndg_run(g, &c);
}

nd_status ndg_unary(ndg *g, nd_op op, const nd_tensor *x, nd_tensor *y)
{
    int64_t sh[ND_MAX_DIMS];
    memcpy(sh, x->shape, sizeof sh);
    if (op == ND_OP_GEGLU)
        sh[x->ndim - 1] /= 2;
    else if (op == ND_OP_UPSAMPLE2X)
        sh[2] *= 2, sh[3] *= 2;
    else if (op == ND_OP_TRANSPOSE)
        sh[1] = x->shape[2], sh[2] = x->shape[1];
    NDG_TRY(alloc_like(g, y, x->ndim, sh));
    nd_op_call c = {.op = op, .src = {x}, .dst = y};
    return ndg_run(g, &c);
}

nd_status ndg_binary(ndg *g, nd_op op, const nd_tensor *a, const nd_tensor *b, nd_tensor *y)
{
    int64_t sh[ND_MAX_DIMS];
    memcpy(sh, a->shape, sizeof sh);
    if (op == ND_OP_CONCAT)
        sh[1] += b->shape[1];
    NDG_TRY(alloc_like(g, y, a->ndim, sh));
    nd_op_call c = {.op = op, .src = {a, b}, .dst = y};
    return ndg_run(g, &c);
}

nd_status ndg_scale(ndg *g, const nd_tensor *x, float s, float b, nd_tensor *y)
{
    NDG_TRY(alloc_like(g, y, x->ndim, x->shape));
    nd_op_call c = {.op = ND_OP_SCALE, .src = {x}, .dst = y, .p.scale = {s, b}};
    return ndg_run(g, &c);
}

nd_status ndg_tsemb(ndg *g, const nd_tensor *t, int dim, nd_tensor *y)
{
    int64_t sh[2] = {t->shape[0], dim};
    NDG_TRY(alloc_like(g, y, 2, sh));
    nd_op_call c = {.op = ND_OP_TIMESTEP_EMB, .src = {t}, .dst = y,
                    .p.ts = {dim, 10000.0f, true, 0.0f}};
    return ndg_run(g, &c);
}

nd_status ndg_to_tokens(ndg *g, const nd_tensor *x, nd_tensor *y)
{
    nd_tensor v = ndg_view(x, 3, x->shape[0], x->shape[1], x->shape[2] * x->shape[3], 0);
    return ndg_unary(g, ND_OP_TRANSPOSE, &v, y);
}

nd_status ndg_to_image(ndg *g, const nd_tensor *x, int64_t h, int64_t w, nd_tensor *y)
{
    if (y->ndim) {
        nd_tensor yv = ndg_view(y, 3, y->shape[0], y->shape[1], y->shape[2] * y->shape[3], 0);
        return ndg_unary(g, ND_OP_TRANSPOSE, x, &yv);
    }
    NDG_TRY(ndg_new(g, y, 4, x->shape[0], x->shape[2], h, w));
    nd_tensor yv = ndg_view(y, 3, x->shape[0], x->shape[2], h * w, 0);
    return ndg_unary(g, ND_OP_TRANSPOSE, x, &yv);
}

/* ---- shared blocks ---------------------------------------------------------------- */

const char *ndg_fmt(char *buf, size_t n, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, n, f, ap);
    va_end(ap);
    return buf;
}

static const char *sub(char *buf, size_t n, const char *name, const char *what)
{
    return ndg_fmt(buf, n, "%s.%s", name, what);
}

nd_status ndg_resnet(ndg *g, const nd_tensor *x, const nd_tensor *temb_act, const char *name,
                     int groups, float eps, nd_tensor *y)
{
    char b[256];
    nd_tensor w1;
    NDG_TRY(ndg_w(g, &w1, "%s.conv1.weight", name));
    int64_t co = w1.shape[0];
    int64_t sh[4] = {x->shape[0], co, x->shape[2], x->shape[3]};
    NDG_TRY(alloc_like(g, y, 4, sh));
    size_t mark = nd_arena_mark(g->a);
    /* conv1's output below norm1's, so norm1's (as big as x: the concatenated
     * input in the UNet's up blocks) is released as soon as conv1 has read it */
    nd_tensor h = {0}, h2;
    NDG_TRY(ndg_new(g, &h2, 4, sh[0], sh[1], sh[2], sh[3]));
    size_t m1 = nd_arena_mark(g->a);
    NDG_TRY(ndg_gn(g, x, sub(b, sizeof b, name, "norm1"), groups, eps, true, &h));
    NDG_TRY(ndg_conv(g, &h, sub(b, sizeof b, name, "conv1"), 1, 1, 1, 1, 1, &h2));
    nd_arena_reset(g->a, m1);
    if (temb_act) {
        nd_tensor tp = {0};
        NDG_TRY(ndg_linear_rows(g, temb_act, sub(b, sizeof b, name, "time_emb_proj"), &tp));
        nd_tensor tv = ndg_view(&tp, 4, tp.shape[0], tp.shape[1], 1, 1);
        NDG_TRY(ndg_binary(g, ND_OP_ADD, &h2, &tv, &h2));
    }
    nd_tensor h3 = {0};
    NDG_TRY(ndg_gn(g, &h2, sub(b, sizeof b, name, "norm2"), groups, eps, true, &h3));
    nd_tensor h4 = h2; /* conv2 writes into h2's memory */
    NDG_TRY(ndg_conv(g, &h3, sub(b, sizeof b, name, "conv2"), 1, 1, 1, 1, 1, &h4));
    if (ndg_has(g, "%s.conv_shortcut.weight", name)) {
        nd_tensor s = h3; /* h3 is dead: reuse it for the shortcut */
        s.shape[1] = co;
        NDG_TRY(ndg_conv(g, x, sub(b, sizeof b, name, "conv_shortcut"), 1, 0, 0, 0, 0, &s));
        NDG_TRY(ndg_binary(g, ND_OP_ADD, &s, &h4, y));
    } else {
        NDG_TRY(ndg_binary(g, ND_OP_ADD, x, &h4, y));
    }
    nd_arena_reset(g->a, mark);
    return ND_OK;
}

static nd_status attention_block(ndg *g, nd_tensor *h, const nd_tensor *ctx, const char *name,
                                 const char *norm, const char *attn, int heads)
{
    char b[256];
    size_t mark = nd_arena_mark(g->a);
    nd_tensor n = {0}, q = {0}, k = {0}, v = {0}, o = {0};
    NDG_TRY(ndg_ln(g, h, sub(b, sizeof b, name, norm), 1e-5f, &n));
    const nd_tensor *kv = ctx ? ctx : &n;
    ndg_fmt(b, sizeof b, "%s.%s.to_q", name, attn);
    NDG_TRY(ndg_linear(g, &n, b, &q));
    ndg_fmt(b, sizeof b, "%s.%s.to_k", name, attn);
    NDG_TRY(ndg_linear(g, kv, b, &k));
    ndg_fmt(b, sizeof b, "%s.%s.to_v", name, attn);
    NDG_TRY(ndg_linear(g, kv, b, &v));
    if (nd_tensor_bytes(&n) == nd_tensor_bytes(&q)) /* n is dead once q, k, v are made */
        o = ndg_view(&n, q.ndim, q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
    NDG_TRY(ndg_attn(g, &q, &k, &v, heads, false, &o));
    ndg_fmt(b, sizeof b, "%s.%s.to_out.0", name, attn);
    NDG_TRY(ndg_linear(g, &o, b, &q)); /* q is dead: reuse */
    NDG_TRY(ndg_binary(g, ND_OP_ADD, h, &q, h));
    nd_arena_reset(g->a, mark);
    return ND_OK;
}

/* GEGLU feed-forward, h += ff(norm3(h)), on one sample's rows at a time in
 * blocks of at most FF_ROWS: every op of it is row-local, and its widest
 * activation (8x the model width before GEGLU) is then a block's, not the
 * batch's. A sample's blocks are the same whatever batch it is in, so its
 * bits do not depend on the batch (gen.h, determinism). */
#define FF_ROWS 2048

static nd_tensor rows_of(const nd_tensor *t, int64_t r0, int64_t rows)
{
    int64_t n = t->shape[t->ndim - 1];
    nd_tensor v = ndg_view(t, 3, 1, rows, n, 0);
    v.data = t->data ? (char *)t->data + (size_t)(r0 * n) * nd_dtype_size(t->dtype) : NULL;
    return v;
}

static nd_status feed_forward(ndg *g, nd_tensor *h, const char *tb)
{
    char b[256];
    nd_tensor w0;
    NDG_TRY(ndg_w(g, &w0, "%s.ff.net.0.proj.weight", tb));
    int64_t B = h->shape[0], T = h->shape[1], C = h->shape[2], F = w0.shape[0];
    int64_t R = T < FF_ROWS ? T : FF_ROWS;
    size_t mark = nd_arena_mark(g->a);
    nd_tensor ln, f, gg, o;
    NDG_TRY(ndg_new(g, &ln, 3, 1, R, C, 0));
    NDG_TRY(ndg_new(g, &f, 3, 1, R, F, 0));
    NDG_TRY(ndg_new(g, &gg, 3, 1, R, F / 2, 0));
    NDG_TRY(ndg_new(g, &o, 3, 1, R, C, 0));
    for (int64_t s = 0; s < B; s++)
        for (int64_t r0 = 0; r0 < T; r0 += R) {
            int64_t n = T - r0 < R ? T - r0 : R;
            nd_tensor hv = rows_of(h, s * T + r0, n), lv = rows_of(&ln, 0, n),
                      fv = rows_of(&f, 0, n), gv = rows_of(&gg, 0, n), ov = rows_of(&o, 0, n);
            NDG_TRY(ndg_ln(g, &hv, sub(b, sizeof b, tb, "norm3"), 1e-5f, &lv));
            NDG_TRY(ndg_linear(g, &lv, sub(b, sizeof b, tb, "ff.net.0.proj"), &fv));
            NDG_TRY(ndg_unary(g, ND_OP_GEGLU, &fv, &gv));
            NDG_TRY(ndg_linear(g, &gv, sub(b, sizeof b, tb, "ff.net.2"), &ov));
            NDG_TRY(ndg_binary(g, ND_OP_ADD, &hv, &ov, &hv));
        }
    nd_arena_reset(g->a, mark);
    return ND_OK;
}

/* pairs: x is the first half of a CFG batch whose halves are the same up to
 * here; the norm, proj_in and the first block's self-attention run on it
 * once, and the tokens are copied to the second half just before the first
 * cross-attention, where the halves' contexts part. y is the whole batch. */
static nd_status transformer(ndg *g, const nd_tensor *x, const nd_tensor *ctx, const char *name,
                             int groups, int heads, bool pairs, nd_tensor *y)
{
    char b[256];
    int64_t B = x->shape[0] * (pairs ? 2 : 1), C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t ysh[4] = {B, C, H, W};
    NDG_TRY(alloc_like(g, y, 4, ysh));
    size_t mark = nd_arena_mark(g->a);
    nd_tensor pw, h;
    NDG_TRY(ndg_w(g, &pw, "%s.proj_in.weight", name));
    /* the token stream first: the norm and layout temporaries under it go
     * as soon as proj_in has read them */
    NDG_TRY(ndg_new(g, &h, 3, B, H * W, pw.shape[0], 0));
    nd_tensor hx = pairs ? ndg_half(&h, 0) : h; /* the rows x feeds */
    size_t m1 = nd_arena_mark(g->a);
    nd_tensor n = {0}, t = {0};
    NDG_TRY(ndg_gn(g, x, sub(b, sizeof b, name, "norm"), groups, 1e-6f, false, &n));
    NDG_TRY(ndg_to_tokens(g, &n, &t));
    NDG_TRY(ndg_linear(g, &t, sub(b, sizeof b, name, "proj_in"), &hx));
    nd_arena_reset(g->a, m1);
    for (int i = 0; ndg_has(g, "%s.transformer_blocks.%d.norm1.weight", name, i); i++) {
        char tb[256];
        ndg_fmt(tb, sizeof tb, "%s.transformer_blocks.%d", name, i);
        NDG_TRY(attention_block(g, i == 0 ? &hx : &h, NULL, tb, "norm1", "attn1", heads));
        if (i == 0 && pairs) {
            nd_tensor h1 = ndg_half(&h, 1);
            NDG_TRY(ndg_unary(g, ND_OP_COPY, &hx, &h1));
        }
        NDG_TRY(attention_block(g, &h, ctx, tb, "norm2", "attn2", heads));
        NDG_TRY(feed_forward(g, &h, tb));
    }
    nd_tensor p = {0}, img = {0};
    NDG_TRY(ndg_linear(g, &h, sub(b, sizeof b, name, "proj_out"), &p));
    if (pw.shape[0] == C) /* h is dead: the image layout goes there */
        img = ndg_view(&h, 4, B, C, H, W);
    NDG_TRY(ndg_to_image(g, &p, H, W, &img));
    if (pairs) {
        for (int k = 0; k < 2; k++) {
            nd_tensor ik = ndg_half(&img, k), yk = ndg_half(y, k);
            NDG_TRY(ndg_binary(g, ND_OP_ADD, x, &ik, &yk));
        }
    } else {
        NDG_TRY(ndg_binary(g, ND_OP_ADD, x, &img, y)); /* y may be x: in place */
    }
    nd_arena_reset(g->a, mark);
    return ND_OK;
}

nd_status ndg_transformer(ndg *g, const nd_tensor *x, const nd_tensor *ctx, const char *name,
                          int groups, int heads, nd_tensor *y)
{
    return transformer(g, x, ctx, name, groups, heads, false, y);
}

nd_status ndg_transformer_pairs(ndg *g, const nd_tensor *x_half, const nd_tensor *ctx,
                                const char *name, int groups, int heads, nd_tensor *y)
{
    return transformer(g, x_half, ctx, name, groups, heads, true, y);
}
