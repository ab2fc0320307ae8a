/* kernels/cpu/cpu.c - the "cpu" backend: OpenBLAS SGEMM for linear and conv,
 * tiled flash attention, fused norms, vectorised element-wise ops; every core
 * through one thread pool; AVX2/FMA picked at run time with portable
 * fallbacks. Checked against cpu_ref by tests/kernels/test_ops.c. */
#include "kernels/cpu/simd.h"

#include <cblas.h>
#include <stdlib.h>
#include <unistd.h>

static bool cpu_supports(const nd_backend *be, nd_op op, nd_dtype dt)
{
    (void)be;
    return (unsigned)op < ND_OP_COUNT && (dt == ND_F32 || dt == ND_F16);
}

static size_t cpu_ws(const nd_backend *be, const nd_op_call *c)
{
    switch (c->op) {
    case ND_OP_CONV2D: return cpu_conv2d_ws(be, c);
    case ND_OP_ATTENTION: return cpu_attention_ws(be, c);
    default: return 0;
    }
}

static nd_status cpu_compute(nd_backend *be, const nd_op_call *c, nd_arena *ws, nd_err *err)
{
    switch (c->op) {
    case ND_OP_LINEAR: return cpu_linear(be, c, ws, err);
    case ND_OP_CONV2D: return cpu_conv2d(be, c, ws, err);
    case ND_OP_ATTENTION: return cpu_attention(be, c, ws, err);
    case ND_OP_GROUP_NORM:
    case ND_OP_LAYER_NORM:
    case ND_OP_SOFTMAX: return cpu_norm(be, c, err);
    case ND_OP_TIMESTEP_EMB: /* [B,320] once per step: not worth a fast path */
        return nd_ref_compute(be, c, ws, err);
    case ND_OP_COPY: return cpu_copy(be, c);
    default: return cpu_elem(be, c, err);
    }
}

static void cpu_destroy(nd_backend *be)
{
    cpu_state *s = be->impl;
    if (s)
        nd_pool_destroy(s->pool);
    free(s);
    nd_arena_free(&be->ws);
    free(be);
}

nd_status nd_cpu_open(const nd_backend_config *cfg, nd_backend **out, nd_err *err)
{
    int n = cfg->n_threads;
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    nd_backend *be = calloc(1, sizeof *be);
    cpu_state *s = calloc(1, sizeof *s);
    if (!be || !s) {
        free(be);
        free(s);
        return nd_fail(err, ND_ENOMEM, "cpu: out of memory");
    }
    *be = (nd_backend){
        .name = "cpu",
        .device = ND_DEV_CPU,
        .n_threads = n,
        .supports_op = cpu_supports,
        .workspace_bytes = cpu_ws,
        .compute = cpu_compute,
        .destroy = cpu_destroy,
        .f16_native = false,
        .copy_native = true,
        .impl = s,
    };
#ifdef ND_HAVE_X86
    __builtin_cpu_init();
    s->avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
              !getenv("ND_NO_AVX2"); /* ND_NO_AVX2=1 forces the portable paths */
    s->avx512 = s->avx2 && __builtin_cpu_supports("avx512f") &&
                !getenv("ND_NO_AVX512"); /* ND_NO_AVX512=1: AVX2 at most */
#endif
    nd_status st = nd_pool_create(n, &s->pool, err);
    if (!st)
        st = nd_arena_init(&be->ws, cfg->workspace_bytes ? cfg->workspace_bytes : 64u << 20, err);
    if (st) {
        cpu_destroy(be);
        return st;
    }
    /* OpenBLAS runs single-threaded inside our pool's tasks (gemm.c); its
     * thread count is global to the process, and 1 suits every backend. */
    openblas_set_num_threads(1);
    *out = be;
    return ND_OK;
}
