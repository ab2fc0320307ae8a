/* kernels/ops.h - tensors, arenas, the op table and the backends that run it.
 *
 * Everything the SD1.5 models (CLIP text encoder, UNet, VAE, ControlNet)
 * compute goes through this header. Model code is written once against it;
 * a backend is chosen at run time by name ("cpu_ref", "cpu"; later "cuda",
 * "emu") and adding one touches no model code.
 *
 * Tensors
 *   Up to 4 dims, shape outermost first (PyTorch order: NCHW, [B,T,C]),
 *   always contiguous, f32 or f16 storage, living on one device. A tensor is
 *   a small value type that *describes* memory it does not own: the memory
 *   belongs to an arena (activations) or to the weights module (mmapped
 *   weights). Reshaping is free: copy the struct and change `shape`
 *   (nd_tensor_view checks the element count).
 *
 * Arenas
 *   One malloc at nd_arena_init, sized once from the model's shapes (an
 *   arena initialised with nd_arena_init_measure counts bytes without
 *   allocating, for that sizing pass). nd_arena_alloc/_tensor never call
 *   malloc; nd_arena_mark/_reset free everything allocated after a mark.
 *   So nothing inside the sampler loop allocates. An arena lives on one
 *   device (nd_backend_arena_init: the backend's) and its tensors say so.
 *
 * Ops
 *   nd_op_run(be, &call, err) runs one op; the typed helpers below (nd_linear,
 *   nd_conv2d, ...) fill an nd_op_call and call it. Shapes, dtypes and devices
 *   are checked in one place (kernels/ops.c) before a backend sees the call,
 *   so backends only compute. Inputs are never modified. The output `dst`
 *   must already be allocated by the caller with the documented shape; it may
 *   alias an input only for the element-wise ops marked "in place ok".
 *   Any tensor may be f16 or f32 (mixed is fine, e.g. f16 weights with f32
 *   activations); a backend that computes in f32 only gets f16 tensors
 *   converted through its workspace (see below).
 *
 * Backends
 *   nd_backend_open(name, cfg, &be, err) / nd_backend_close(be). An open
 *   backend owns its threads and one workspace (bytes fixed at open;
 *   cfg.workspace_bytes) used for op temporaries: im2col tiles, attention
 *   tiles, f16->f32 conversions. Ops never allocate; an op whose temporaries
 *   do not fit fails with ND_ENOMEM and says how many bytes it needs
 *   (nd_op_workspace_bytes tells the same up front). A backend is used by one
 *   thread at a time.
 *
 * Accuracy contract (tests/kernels/test_ops.c): every backend matches
 *   cpu_ref (double accumulation) with max|out-ref|/max|ref| < 1e-4 for f32
 *   storage and < 2e-3 for f16 storage. */
#ifndef ND_KERNELS_OPS_H
#define ND_KERNELS_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/nd.h"

/* ---- tensors -------------------------------------------------------------- */

#define ND_MAX_DIMS 4

typedef enum { ND_F32 = 0, ND_F16, ND_DTYPE_COUNT } nd_dtype;
typedef enum { ND_DEV_CPU = 0, ND_DEV_CUDA, ND_DEVICE_COUNT } nd_device;

typedef struct nd_tensor {
    void *data;               /* not owned; NULL in a measuring arena */
    nd_dtype dtype;
    nd_device device;
    int ndim;                 /* 1..4 */
    int64_t shape[ND_MAX_DIMS]; /* outermost first; unused dims are 1 */
} nd_tensor;

const char *nd_dtype_name(nd_dtype t);
size_t nd_dtype_size(nd_dtype t);
int64_t nd_tensor_numel(const nd_tensor *t);
size_t nd_tensor_bytes(const nd_tensor *t);
/* Wraps existing memory (e.g. an mmapped weight). */
nd_tensor nd_tensor_make(void *data, nd_dtype dtype, nd_device dev, int ndim,
                         const int64_t *shape);
/* Same memory, new shape with the same element count. */
nd_status nd_tensor_view(const nd_tensor *t, int ndim, const int64_t *shape,
                         nd_tensor *out, nd_err *err);
/* "[2,320,64,64] f16" into buf. */
const char *nd_tensor_str(const nd_tensor *t, char *buf, size_t n);

/* IEEE half <-> float, round to nearest even; F16C is used when the CPU has it. */
float nd_f16_to_f32(uint16_t h);
uint16_t nd_f32_to_f16(float f);
void nd_f16_to_f32_n(const uint16_t *src, float *dst, size_t n);
void nd_f32_to_f16_n(const float *src, uint16_t *dst, size_t n);

/* ---- arenas --------------------------------------------------------------- */

typedef struct nd_arena {
    uint8_t *base;  /* NULL when measuring */
    size_t cap;     /* bytes */
    size_t used;
    size_t peak;    /* high-water mark of `used` */
    bool measuring; /* count only; hands out NULL data */
    nd_device device; /* where base is: the device of the tensors it makes */
} nd_arena;

#define ND_ARENA_ALIGN 64
nd_status nd_arena_init(nd_arena *a, size_t bytes, nd_err *err); /* the one malloc */
void nd_arena_init_measure(nd_arena *a); /* sizing pass: unlimited, no memory */
void nd_arena_free(nd_arena *a);
void *nd_arena_alloc(nd_arena *a, size_t bytes, nd_err *err); /* NULL + ND_ENOMEM msg */
size_t nd_arena_mark(const nd_arena *a);
void nd_arena_reset(nd_arena *a, size_t mark);
nd_status nd_arena_tensor(nd_arena *a, nd_dtype dtype, int ndim, const int64_t *shape,
                          nd_tensor *out, nd_err *err);

/* ---- the op table ----------------------------------------------------------- */

typedef enum {
    ND_OP_LINEAR,       /* src x[...,K], w[N,K], b[N]|NULL -> dst[...,N]  (y = x w^T + b) */
    ND_OP_CONV2D,       /* x[B,Ci,H,W], w[Co,Ci,kh,kw], b[Co]|NULL -> dst[B,Co,Ho,Wo]     */
    ND_OP_GROUP_NORM,   /* x[B,C,...], gamma[C], beta[C] -> dst like x (optional SiLU)    */
    ND_OP_LAYER_NORM,   /* x[...,C], gamma[C], beta[C] -> dst like x (over the last dim)  */
    ND_OP_ATTENTION,    /* q[B,Nq,H*d], k[B,Nk,H*d], v[B,Nk,H*d] -> dst[B,Nq,H*d]         */
    ND_OP_SOFTMAX,      /* x -> dst, over the last dim                                    */
    ND_OP_GEGLU,        /* x[...,2C] -> dst[...,C] = x[..,:C] * gelu(x[..,C:])            */
    ND_OP_GELU,         /* exact (erf) GELU, in place ok                                  */
    ND_OP_QUICK_GELU,   /* x * sigmoid(1.702 x), in place ok                              */
    ND_OP_SILU,         /* x * sigmoid(x), in place ok                                    */
    ND_OP_ADD,          /* a + b, b broadcast (right-aligned); in place ok (dst == a)   */
    ND_OP_MUL,          /* a * b, same broadcast; in place ok (dst == a)                  */
    ND_OP_SCALE,        /* dst = x * scale + bias (scalars), in place ok                  */
    ND_OP_CONCAT,       /* a[B,Ca,...], b[B,Cb,...] -> dst[B,Ca+Cb,...] (dim 1)           */
    ND_OP_UPSAMPLE2X,   /* nearest: x[B,C,H,W] -> dst[B,C,2H,2W]                          */
    ND_OP_TIMESTEP_EMB, /* t[B] (float timesteps) -> dst[B,dim] sinusoidal                */
    ND_OP_TRANSPOSE,    /* x[B,M,N] -> dst[B,N,M] (NCHW <-> tokens: M=C, N=H*W)           */
    ND_OP_COPY,         /* dst = x, converting dtype (f32 <-> f16); same element count    */
    ND_OP_COUNT
} nd_op;

const char *nd_op_name(nd_op op); /* "linear", "conv2d", ... */

typedef struct {
    int stride;               /* 1 or 2 (any >= 1 works) */
    int pad_top, pad_bottom;  /* zero padding; SD uses 1/1, the VAE encoder */
    int pad_left, pad_right;  /* downsample uses 0/1 (pad right/bottom only)  */
} nd_conv2d_params;

typedef struct {
    int groups;  /* group norm only: 32 in SD1.5 (C % groups == 0) */
    float eps;   /* 1e-5 UNet/CLIP, 1e-6 VAE and UNet transformer GN */
    bool silu;   /* group norm only: apply SiLU after the affine */
} nd_norm_params;

typedef struct {
    int n_heads;  /* C = n_heads * head_dim */
    float scale;  /* 0 -> 1/sqrt(head_dim) */
    bool causal;  /* query i sees keys j <= i (CLIP); needs Nq == Nk */
} nd_attention_params;

typedef struct {
    float scale, bias;
} nd_scale_params;

typedef struct {
    int dim;             /* even; 320 for the UNet */
    float max_period;    /* 10000 */
    bool flip_sin_to_cos; /* true in SD1.5: [cos, sin] */
    float freq_shift;    /* 0 in SD1.5: f_i = exp(-ln(max_period) i / (dim/2 - shift)) */
} nd_timestep_params;

#define ND_OP_MAX_SRC 4
typedef struct nd_op_call {
    nd_op op;
    const nd_tensor *src[ND_OP_MAX_SRC]; /* op inputs in the order listed above */
    nd_tensor *dst;
    union {
        nd_conv2d_params conv;
        nd_norm_params norm;
        nd_attention_params attn;
        nd_scale_params scale;
        nd_timestep_params ts;
    } p;
} nd_op_call;

/* ---- backends --------------------------------------------------------------- */

typedef struct nd_backend nd_backend;
struct nd_backend {
    const char *name;
    nd_device device;       /* where its tensors must live */
    int n_threads;
    /* Can this backend compute `op` with tensors stored as `dtype`? (f16 is
     * also accepted for every supported f32 op through workspace conversion.) */
    bool (*supports_op)(const nd_backend *be, nd_op op, nd_dtype dtype);
    /* Workspace bytes the op itself needs (beyond f16 conversions). */
    size_t (*workspace_bytes)(const nd_backend *be, const nd_op_call *call);
    /* Computes a validated call; temporaries come from ws (reset afterwards by
     * the caller). Never allocates. */
    nd_status (*compute)(nd_backend *be, const nd_op_call *call, nd_arena *ws, nd_err *err);
    void (*destroy)(nd_backend *be);
    /* false: compute() only ever sees f32 tensors; nd_op_run converts f16
     * inputs into the workspace and the f32 result back into an f16 dst. */
    bool f16_native;
    /* true: compute() also takes ND_OP_COPY as it is (an f32 <-> f16
     * conversion or a same-dtype copy, never a conversion in place); false:
     * nd_op_run does a host backend's copies itself, on the calling thread. */
    bool copy_native;
    nd_arena ws; /* the workspace, allocated at open */
    void *impl;  /* backend private state */
    /* Device memory in use, in bytes (NULL: none, a host backend). */
    size_t (*device_bytes)(const nd_backend *be);
    /* Memory where this backend's tensors live (NULL for the host backends:
     * malloc / free / memcpy). dev_copy's `to_device` says the direction. */
    void *(*dev_alloc)(nd_backend *be, size_t bytes);
    void (*dev_free)(nd_backend *be, void *p);
    nd_status (*dev_copy)(nd_backend *be, void *dst, const void *src, size_t bytes,
                          bool to_device, nd_err *err);
    nd_status (*dev_zero)(nd_backend *be, void *dst, size_t bytes, nd_err *err);
    struct nd_resident *resident; /* nd_backend_resident's copies (kernels/ops.c) */
    /* Waits for the work queued so far (NULL: compute() is synchronous). */
    nd_status (*sync)(nd_backend *be, nd_err *err);
};

typedef struct {
    int n_threads;          /* 0: every online core */
    size_t workspace_bytes; /* 0: 64 MiB */
    /* cuda only: the conv2d path, "ours" (the tensor-core implicit GEMM of
     * kernels/cuda/conv.cu) or "cudnn" (cuDNN for the all-f16, symmetric
     * padding calls it can take; ours for the rest). NULL: $ND_CUDA_CONV,
     * else "ours". Other backends reject "cudnn". */
    const char *conv;
} nd_backend_config;

/* name: "cpu_ref", "cpu" (also "cuda"/"emu" once built). cfg may be NULL. */
nd_status nd_backend_open(const char *name, const nd_backend_config *cfg, nd_backend **out,
                          nd_err *err);
void nd_backend_close(nd_backend *be);
/* Device memory in use, for metrics: "cuda" reports the GPU's used memory
 * (cudaMemGetInfo: this process's context, workspace and anything else on
 * the device it owns), "emu" its emulated device allocations; 0 for the
 * backends that compute in host memory (cpu_ref, cpu). */
size_t nd_backend_device_bytes(const nd_backend *be);
/* Memory in the backend's device (be->device): device memory on "cuda",
 * host memory (malloc) on the others. The caller owns what alloc returns and
 * gives it back with nd_backend_free. alloc: NULL + ND_ENOMEM message. */
void *nd_backend_alloc(nd_backend *be, size_t bytes, nd_err *err);
void nd_backend_free(nd_backend *be, void *p);
/* Host -> device and device -> host copies of `bytes` (synchronous: done
 * when they return, after the backend's queued work). */
nd_status nd_backend_upload(nd_backend *be, void *dev_dst, const void *host_src, size_t bytes,
                            nd_err *err);
nd_status nd_backend_download(nd_backend *be, void *host_dst, const void *dev_src, size_t bytes,
                              nd_err *err);
/* Waits until every op queued on the backend has finished and reports the
 * first error a kernel hit ("cuda" queues ops on a stream; the host backends
 * are synchronous and return ND_OK at once). */
nd_status nd_backend_sync(nd_backend *be, nd_err *err);
/* Zeroes `bytes` of the backend's memory (queued like an op). */
nd_status nd_backend_zero(nd_backend *be, void *dev_dst, size_t bytes, nd_err *err);
/* Host memory that must be read by the backend's ops again and again (the
 * weights): the backend's resident copy of [host, host+bytes), uploaded on
 * the first call for that address and kept until nd_backend_close; later
 * calls return the same copy (one lock, so several threads may ask). On a
 * host backend it is `host` itself. The host bytes must not change while
 * the backend is open (weights are merged before components are made). */
const void *nd_backend_resident(nd_backend *be, const void *host, size_t bytes, nd_err *err);
/* How many bytes nd_backend_resident holds on the device (0 on the host). */
size_t nd_backend_resident_bytes(const nd_backend *be);
/* An arena in the backend's device memory (nd_arena_init's twin); free it
 * with nd_backend_arena_free. */
nd_status nd_backend_arena_init(nd_backend *be, nd_arena *a, size_t bytes, nd_err *err);
void nd_backend_arena_free(nd_backend *be, nd_arena *a);
/* Names of the backends compiled in, NULL-terminated. */
const char *const *nd_backend_names(void);

/* Checks and runs one op; see the ops above for shapes. */
nd_status nd_op_run(nd_backend *be, const nd_op_call *call, nd_err *err);
/* Checks a call's shapes/dtypes without running it. */
nd_status nd_op_check(const nd_backend *be, const nd_op_call *call, nd_err *err);
/* Workspace bytes nd_op_run will need for this call (f16 conversions included). */
size_t nd_op_workspace_bytes(const nd_backend *be, const nd_op_call *call);
/* FLOPs of a call (2 per multiply-add; element-wise ops count 1 per element). */
double nd_op_flops(const nd_op_call *call);

/* ---- typed helpers (fill an nd_op_call, then nd_op_run) ---------------------- */

nd_status nd_linear(nd_backend *be, const nd_tensor *x, const nd_tensor *w, const nd_tensor *b,
                    nd_tensor *y, nd_err *err);
nd_status nd_conv2d(nd_backend *be, const nd_tensor *x, const nd_tensor *w, const nd_tensor *b,
                    int stride, int pad, nd_tensor *y, nd_err *err);
nd_status nd_conv2d_ex(nd_backend *be, const nd_tensor *x, const nd_tensor *w,
                       const nd_tensor *b, const nd_conv2d_params *p, nd_tensor *y, nd_err *err);
nd_status nd_group_norm(nd_backend *be, const nd_tensor *x, const nd_tensor *gamma,
                        const nd_tensor *beta, int groups, float eps, bool silu, nd_tensor *y,
                        nd_err *err);
nd_status nd_layer_norm(nd_backend *be, const nd_tensor *x, const nd_tensor *gamma,
                        const nd_tensor *beta, float eps, nd_tensor *y, nd_err *err);
nd_status nd_attention(nd_backend *be, const nd_tensor *q, const nd_tensor *k,
                       const nd_tensor *v, int n_heads, bool causal, nd_tensor *out, nd_err *err);
nd_status nd_softmax(nd_backend *be, const nd_tensor *x, nd_tensor *y, nd_err *err);
nd_status nd_geglu(nd_backend *be, const nd_tensor *x, nd_tensor *y, nd_err *err);
nd_status nd_gelu(nd_backend *be, const nd_tensor *x, nd_tensor *y, nd_err *err);
nd_status nd_quick_gelu(nd_backend *be, const nd_tensor *x, nd_tensor *y, nd_err *err);
nd_status nd_silu(nd_backend *be, const nd_tensor *x, nd_tensor *y, nd_err *err);
nd_status nd_add(nd_backend *be, const nd_tensor *a, const nd_tensor *b, nd_tensor *y, nd_err *err);
nd_status nd_mul(nd_backend *be, const nd_tensor *a, const nd_tensor *b, nd_tensor *y, nd_err *err);
nd_status nd_scale(nd_backend *be, const nd_tensor *x, float scale, float bias, nd_tensor *y,
                   nd_err *err);
nd_status nd_concat(nd_backend *be, const nd_tensor *a, const nd_tensor *b, nd_tensor *y,
                    nd_err *err);
nd_status nd_upsample2x(nd_backend *be, const nd_tensor *x, nd_tensor *y, nd_err *err);
nd_status nd_timestep_embedding(nd_backend *be, const nd_tensor *t, int dim, nd_tensor *y,
                                nd_err *err); /* SD1.5 settings: 10000, cos first, shift 0 */
nd_status nd_transpose(nd_backend *be, const nd_tensor *x, nd_tensor *y, nd_err *err);
nd_status nd_copy(nd_backend *be, const nd_tensor *x, nd_tensor *y, nd_err *err);

#endif
