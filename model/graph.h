/* model/graph.h - internal: the small graph-building layer the components
 * (text encoder, UNet, VAE, ControlNet) are written with. Not public.
 *
 * A graph context ties one backend, the loaded weights (with a component
 * prefix such as "unet.") and the caller's activation arena together. Every
 * op helper allocates its output from the arena when the output tensor is
 * still empty (ndim == 0), else writes into the tensor given. In a measuring
 * arena ("dry" run) nothing is computed: shapes flow, arena bytes and the
 * backend workspace each op would need are counted, so the same code sizes
 * the arena that later runs it. */
#ifndef ND_MODEL_GRAPH_H
#define ND_MODEL_GRAPH_H

#include <stdbool.h>
#include <stddef.h>

#include "common/nd.h"
#include "kernels/ops.h"
#include "weights/weights.h"

typedef struct {
    nd_backend *be;
    const nd_weights *w;
    nd_arena *a;
    nd_err *err;
    const char *prefix; /* "unet." ... */
    bool dry;           /* measuring arena: no compute */
    size_t ws_need;     /* largest workspace an op asked for */
} ndg;

#define NDG_TRY(x)                                                            \
    do {                                                                      \
        nd_status st_ = (x);                                                  \
        if (st_)                                                              \
            return st_;                                                       \
    } while (0)

void ndg_init(ndg *g, nd_backend *be, const nd_weights *w, const char *prefix, nd_arena *a,
              nd_err *err);

/* Weights: NAME is printf-formatted and gets the prefix. On a device
 * backend the tensor is the backend's resident copy (nd_backend_resident:
 * uploaded on the first run that reads it, then kept). */
nd_status ndg_w(ndg *g, nd_tensor *out, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool ndg_has(const ndg *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same check against a weights object and an absolute name (no context):
 * the host tensor, for shape checks. */
nd_status ndg_wtensor(const nd_weights *w, const char *name, nd_tensor *out, nd_err *err);

/* snprintf that may truncate (names are short); returns buf. */
const char *ndg_fmt(char *buf, size_t n, const char *f, ...) __attribute__((format(printf, 3, 4)));

/* A new f32 activation of the given shape (unused trailing dims: pass 0). */
nd_status ndg_new(ndg *g, nd_tensor *out, int ndim, int64_t d0, int64_t d1, int64_t d2,
                  int64_t d3);
/* Same memory, new shape. */
nd_tensor ndg_view(const nd_tensor *t, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3);

/* Batch half `which` (0 or 1) of t: a view, [B/2,...] (no data in a dry
 * run); for the two halves of a CFG batch. */
nd_tensor ndg_half(const nd_tensor *t, int which);

/* Runs (or, dry, only accounts) one call whose dst is allocated. */
nd_status ndg_run(ndg *g, nd_op_call *c);

/* Op helpers. NAME is the module's weight prefix ("conv_in" -> conv_in.weight
 * and conv_in.bias if present); y is allocated when y->ndim == 0. */
nd_status ndg_linear(ndg *g, const nd_tensor *x, const char *name, nd_tensor *y);
/* The same, one SGEMM per row: for the per-sample vectors (the time
 * embedding, one row per sample). BLAS picks its kernels by the matrix
 * shape, and the kernels for a few rows and for many round differently, so
 * a batched call would make a sample's bits depend on how many samples
 * share the batch; row by row they never do. Token activations (>= 77 rows
 * per sample) always take the blocked kernels, whose rows do not depend on M. */
nd_status ndg_linear_rows(ndg *g, const nd_tensor *x, const char *name, nd_tensor *y);
nd_status ndg_conv(ndg *g, const nd_tensor *x, const char *name, int stride, int pt, int pb,
                   int pl, int pr, nd_tensor *y);
nd_status ndg_gn(ndg *g, const nd_tensor *x, const char *name, int groups, float eps, bool silu,
                 nd_tensor *y);
nd_status ndg_ln(ndg *g, const nd_tensor *x, const char *name, float eps, nd_tensor *y);
nd_status ndg_attn(ndg *g, const nd_tensor *q, const nd_tensor *k, const nd_tensor *v,
                   int heads, bool causal, nd_tensor *y);
nd_status ndg_unary(ndg *g, nd_op op, const nd_tensor *x, nd_tensor *y); /* gelu, silu, geglu, transpose, upsample, copy */
nd_status ndg_binary(ndg *g, nd_op op, const nd_tensor *a, const nd_tensor *b, nd_tensor *y); /* add, mul, concat */
nd_status ndg_scale(ndg *g, const nd_tensor *x, float s, float b, nd_tensor *y);
nd_status ndg_tsemb(ndg *g, const nd_tensor *t, int dim, nd_tensor *y);

/* [B,C,H,W] <-> [B,H*W,C] */
nd_status ndg_to_tokens(ndg *g, const nd_tensor *x, nd_tensor *y);
nd_status ndg_to_image(ndg *g, const nd_tensor *x, int64_t h, int64_t w, nd_tensor *y);

/* Shared blocks. */
/* ResnetBlock2D; temb_act = SiLU(temb) [B,Ct] or NULL (VAE). */
nd_status ndg_resnet(ndg *g, const nd_tensor *x, const nd_tensor *temb_act, const char *name,
                     int groups, float eps, nd_tensor *y);
/* Transformer2DModel with one or more BasicTransformerBlocks (UNet); y may
 * be x (in place). */
nd_status ndg_transformer(ndg *g, const nd_tensor *x, const nd_tensor *ctx, const char *name,
                          int groups, int heads, nd_tensor *y);
/* The same for a CFG batch whose two halves are equal up to x: x_half is
 * the first half ([B/2,C,H,W]), y (allocated here when empty) the whole
 * [B,C,H,W]. Everything before the first cross-attention (the norm,
 * proj_in, the first block's self-attention) runs once per pair; exact,
 * since every op computes a sample independently of its batch. */
nd_status ndg_transformer_pairs(ndg *g, const nd_tensor *x_half, const nd_tensor *ctx,
                                const char *name, int groups, int heads, nd_tensor *y);

#endif
