/* kernels/backend_impl.h - what backends share inside kernels/ (not public).
 * A backend gets only validated calls (kernels/ops.c checked every shape). */
#ifndef ND_KERNELS_BACKEND_IMPL_H
#define ND_KERNELS_BACKEND_IMPL_H

#include "kernels/ops.h"

nd_status nd_cpu_ref_open(const nd_backend_config *cfg, nd_backend **out, nd_err *err);
nd_status nd_cpu_open(const nd_backend_config *cfg, nd_backend **out, nd_err *err);
/* kernels/cuda/backend.cu through nvcc ("cuda") or the SIMT emulation ("emu");
 * weak: present only in binaries that link those objects (make cuda / emu). */
nd_status nd_cuda_open(const nd_backend_config *cfg, nd_backend **out, nd_err *err)
    __attribute__((weak));
nd_status nd_emu_open(const nd_backend_config *cfg, nd_backend **out, nd_err *err)
    __attribute__((weak));

/* The reference computation of any validated f32 call (cpu_ref's compute);
 * the fast backend uses it for the ops too small to be worth a fast path. */
nd_status nd_ref_compute(nd_backend *be, const nd_op_call *c, nd_arena *ws, nd_err *err);
size_t nd_ref_workspace_bytes(const nd_backend *be, const nd_op_call *c);

/* Broadcast of b onto a's shape (ND_OP_ADD / ND_OP_MUL), with adjacent dims
 * merged when they broadcast the same way, so that the innermost run is as
 * long as possible: [B,C,H,W] + [B,C,1,1] becomes 2 dims {B*C: stride 1,
 * H*W: stride 0}. */
typedef struct {
    int nd;
    int64_t n[ND_MAX_DIMS];  /* dims of a (merged) */
    int64_t bs[ND_MAX_DIMS]; /* b's stride per merged dim, 0 where broadcast */
} nd_bcast;
void nd_bcast_plan(const nd_tensor *a, const nd_tensor *b, nd_bcast *p);

/* Output size of one conv dim. */
static inline int64_t nd_conv_out(int64_t in, int64_t k, int stride, int p0, int p1)
{
    return (in + p0 + p1 - k) / stride + 1;
}

#endif
