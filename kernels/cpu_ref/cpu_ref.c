/* kernels/cpu_ref/cpu_ref.c - the "cpu_ref" backend: the oracle every other
 * backend is tested against. Single-threaded, f32 storage in, double inside. */
#include "kernels/cpu_ref/ref.h"

#include <stdlib.h>
#include <string.h>

size_t nd_ref_workspace_bytes(const nd_backend *be, const nd_op_call *c)
{
    (void)be;
    if (c->op == ND_OP_ATTENTION) /* one row of scores */
        return (size_t)c->src[1]->shape[1] * sizeof(double) + ND_ARENA_ALIGN;
    return 0;
}

nd_status nd_ref_compute(nd_backend *be, const nd_op_call *c, nd_arena *ws, nd_err *err)
{
    const nd_tensor *a = c->src[0], *b = c->src[1], *d = c->src[2];
    nd_tensor *y = c->dst;
    switch (c->op) {
    case ND_OP_LINEAR: ref_linear(a, b, d, y); break;
    case ND_OP_CONV2D: ref_conv2d(a, b, d, &c->p.conv, y); break;
    case ND_OP_ATTENTION: {
        double *s = nd_arena_alloc(ws, nd_ref_workspace_bytes(be, c), err);
        if (!s)
            return nd_wrap(err, ND_ENOMEM, "attention");
        ref_attention(a, b, d, &c->p.attn, y, s);
        break;
    }
    case ND_OP_GROUP_NORM: ref_group_norm(a, b, d, &c->p.norm, y); break;
    case ND_OP_LAYER_NORM: ref_layer_norm(a, b, d, &c->p.norm, y); break;
    case ND_OP_SOFTMAX: ref_softmax(a, y); break;
    case ND_OP_GEGLU: ref_geglu(a, y); break;
    case ND_OP_GELU:
    case ND_OP_QUICK_GELU:
    case ND_OP_SILU: ref_unary(c->op, a, y); break;
    case ND_OP_ADD:
    case ND_OP_MUL: ref_binary(c->op, a, b, y); break;
    case ND_OP_SCALE: ref_scale(a, &c->p.scale, y); break;
    case ND_OP_CONCAT: ref_concat(a, b, y); break;
    case ND_OP_UPSAMPLE2X: ref_upsample2x(a, y); break;
    case ND_OP_TIMESTEP_EMB: ref_timestep_emb(a, &c->p.ts, y); break;
    case ND_OP_TRANSPOSE: ref_transpose(a, y); break;
    case ND_OP_COPY: memmove(y->data, a->data, nd_tensor_bytes(a)); break;
    case ND_OP_COUNT: return nd_fail(err, ND_EINVAL, "bad op");
    }
    return ND_OK;
}

static bool ref_supports(const nd_backend *be, nd_op op, nd_dtype dt)
{
    (void)be;
    return (unsigned)op < ND_OP_COUNT && (dt == ND_F32 || dt == ND_F16);
}

static void ref_destroy(nd_backend *be)
{
    nd_arena_free(&be->ws);
    free(be);
}

nd_status nd_cpu_ref_open(const nd_backend_config *cfg, nd_backend **out, nd_err *err)
{
    nd_backend *be = calloc(1, sizeof *be);
    if (!be)
        return nd_fail(err, ND_ENOMEM, "cpu_ref: out of memory");
    *be = (nd_backend){
        .name = "cpu_ref",
        .device = ND_DEV_CPU,
        .n_threads = 1,
        .supports_op = ref_supports,
        .workspace_bytes = nd_ref_workspace_bytes,
        .compute = nd_ref_compute,
        .destroy = ref_destroy,
        .f16_native = false,
    };
    nd_status st = nd_arena_init(&be->ws, cfg->workspace_bytes ? cfg->workspace_bytes : 64u << 20, err);
    if (st) {
        free(be);
        return st;
    }
    *out = be;
    return ND_OK;
}
