/* kernels/ops.c - the op table: names, shape checks, FLOP counts, the backend
 * registry and the one dispatch path every op goes through (including the
 * f16 -> f32 workspace conversion for backends that compute in f32). */
#include "kernels/backend_impl.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[] = {
    [ND_OP_LINEAR] = "linear",         [ND_OP_CONV2D] = "conv2d",
    [ND_OP_GROUP_NORM] = "group_norm", [ND_OP_LAYER_NORM] = "layer_norm",
    [ND_OP_ATTENTION] = "attention",   [ND_OP_SOFTMAX] = "softmax",
    [ND_OP_GEGLU] = "geglu",           [ND_OP_GELU] = "gelu",
    [ND_OP_QUICK_GELU] = "quick_gelu", [ND_OP_SILU] = "silu",
    [ND_OP_ADD] = "add",               [ND_OP_MUL] = "mul",
    [ND_OP_SCALE] = "scale",           [ND_OP_CONCAT] = "concat",
    [ND_OP_UPSAMPLE2X] = "upsample2x", [ND_OP_TIMESTEP_EMB] = "timestep_emb",
    [ND_OP_TRANSPOSE] = "transpose",   [ND_OP_COPY] = "copy",
};
_Static_assert(ND_ARRAY_LEN(op_names) == ND_OP_COUNT, "op_names must name every nd_op");

/* Number of src tensors each op takes (optional ones included). */
static const int op_nsrc[] = {
    [ND_OP_LINEAR] = 3,     [ND_OP_CONV2D] = 3,       [ND_OP_GROUP_NORM] = 3,
    [ND_OP_LAYER_NORM] = 3, [ND_OP_ATTENTION] = 3,    [ND_OP_SOFTMAX] = 1,
    [ND_OP_GEGLU] = 1,      [ND_OP_GELU] = 1,         [ND_OP_QUICK_GELU] = 1,
    [ND_OP_SILU] = 1,       [ND_OP_ADD] = 2,          [ND_OP_MUL] = 2,
    [ND_OP_SCALE] = 1,      [ND_OP_CONCAT] = 2,       [ND_OP_UPSAMPLE2X] = 1,
    [ND_OP_TIMESTEP_EMB] = 1, [ND_OP_TRANSPOSE] = 1,  [ND_OP_COPY] = 1,
};
_Static_assert(ND_ARRAY_LEN(op_nsrc) == ND_OP_COUNT, "op_nsrc must cover every nd_op");

const char *nd_op_name(nd_op op)
{
    return (unsigned)op < ND_OP_COUNT ? op_names[op] : "?";
}

/* ---- registry ------------------------------------------------------------------ */

typedef nd_status (*open_fn)(const nd_backend_config *, nd_backend **, nd_err *);
static const struct {
    const char *name;
    open_fn open;
} registry[] = {
    {"cpu_ref", nd_cpu_ref_open},
    {"cpu", nd_cpu_open},
    {"emu", nd_emu_open},   /* weak: NULL unless linked */
    {"cuda", nd_cuda_open}, /* weak: NULL unless linked */
};

/* The backends linked into this binary, in registry order. */
const char *const *nd_backend_names(void)
{
    static const char *names[ND_ARRAY_LEN(registry) + 1];
    size_t n = 0;
    for (size_t i = 0; i < ND_ARRAY_LEN(registry); i++)
        if (registry[i].open)
            names[n++] = registry[i].name;
    names[n] = NULL;
    return names;
}

nd_status nd_backend_open(const char *name, const nd_backend_config *cfg, nd_backend **out,
                          nd_err *err)
{
    static const nd_backend_config defaults = {0, 0, NULL};
    *out = NULL;
    const char *conv = cfg && cfg->conv && *cfg->conv ? cfg->conv : "ours";
    if (strcmp(conv, "ours") != 0 && strcmp(conv, "cudnn") != 0)
        return nd_fail(err, ND_EINVAL, "conv path '%s' (want ours or cudnn)", conv);
    for (size_t i = 0; i < ND_ARRAY_LEN(registry); i++)
        if (name && !strcmp(name, registry[i].name) && registry[i].open) {
            /* only the cuda backend (and its emulation, which refuses it
             * itself) has a second conv path */
            if (!strcmp(conv, "cudnn") && strcmp(name, "cuda") != 0 && strcmp(name, "emu") != 0)
                return nd_fail(err, ND_EUNSUPPORTED, "%s: no cuDNN conv path (cuda only)", name);
            return registry[i].open(cfg ? cfg : &defaults, out, err);
        }
    char have[96] = "";
    const char *const *names = nd_backend_names();
    for (size_t i = 0; names[i]; i++)
        snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", i ? ", " : "", names[i]);
    return nd_fail(err, ND_ENOTFOUND, "no backend named '%s' (have: %s)",
                   name ? name : "(null)", have);
}

static void resident_free(nd_backend *be);

void nd_backend_close(nd_backend *be)
{
    if (!be)
        return;
    resident_free(be);
    if (be->destroy)
        be->destroy(be);
}

size_t nd_backend_device_bytes(const nd_backend *be)
{
    return be && be->device_bytes ? be->device_bytes(be) : 0;
}

void *nd_backend_alloc(nd_backend *be, size_t bytes, nd_err *err)
{
    /* whole ND_ARENA_ALIGN blocks, aligned as the arenas are (at least one) */
    size_t n = bytes ? (bytes + ND_ARENA_ALIGN - 1) & ~(size_t)(ND_ARENA_ALIGN - 1) : ND_ARENA_ALIGN;
    void *p = be->dev_alloc ? be->dev_alloc(be, n) : aligned_alloc(ND_ARENA_ALIGN, n);
    if (!p)
        nd_fail(err, ND_ENOMEM, "%s: cannot allocate %zu bytes of device memory", be->name, bytes);
    return p;
}

void nd_backend_free(nd_backend *be, void *p)
{
    if (!p)
        return;
    if (be->dev_free)
        be->dev_free(be, p);
    else
        free(p);
}

/* a host backend's "device" is host memory */
static nd_status copy_mem(nd_backend *be, void *dst, const void *src, size_t bytes,
                          bool to_device, nd_err *err)
{
    if (be->dev_copy)
        return be->dev_copy(be, dst, src, bytes, to_device, err);
    if (bytes)
        memmove(dst, src, bytes);
    return ND_OK;
}

nd_status nd_backend_upload(nd_backend *be, void *dev_dst, const void *host_src, size_t bytes,
                            nd_err *err)
{
    return copy_mem(be, dev_dst, host_src, bytes, true, err);
}

nd_status nd_backend_download(nd_backend *be, void *host_dst, const void *dev_src, size_t bytes,
                              nd_err *err)
{
    return copy_mem(be, host_dst, dev_src, bytes, false, err);
}

nd_status nd_backend_sync(nd_backend *be, nd_err *err)
{
    return be->sync ? be->sync(be, err) : ND_OK;
}

nd_status nd_backend_zero(nd_backend *be, void *dev_dst, size_t bytes, nd_err *err)
{
    if (be->dev_zero)
        return be->dev_zero(be, dev_dst, bytes, err);
    if (bytes)
        memset(dev_dst, 0, bytes);
    return ND_OK;
}

/* ---- resident copies (weights on a device) ---------------------------------------- */

/* Copies live in chunks of device memory taken RES_CHUNK at a time (one
 * cudaMalloc per ~1000 SD1.5 tensors would waste the allocator's
 * granularity); an open-addressing table maps a host address to its copy. */
#define RES_CHUNK ((size_t)64 << 20)
#define RES_ALIGN ((size_t)256)

typedef struct {
    const void *host;
    size_t bytes;
    void *dev;
} res_slot;

struct nd_resident {
    pthread_mutex_t lock;
    res_slot *slot;
    size_t cap, n; /* cap: a power of two */
    void **chunks;
    size_t n_chunks;
    uint8_t *cur;  /* free space of the newest chunk */
    size_t left;
    size_t bytes;  /* held in copies */
};

static size_t res_hash(const void *p, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & (cap - 1);
}

static res_slot *res_find(struct nd_resident *r, const void *host)
{
    for (size_t i = res_hash(host, r->cap);; i = (i + 1) & (r->cap - 1))
        if (r->slot[i].host == host || !r->slot[i].host)
            return &r->slot[i];
}

static bool res_grow(struct nd_resident *r)
{
    size_t cap = r->cap ? r->cap * 2 : 1024;
    res_slot *old = r->slot, *ns = calloc(cap, sizeof *ns);
    if (!ns)
        return false;
    size_t ocap = r->cap;
    r->slot = ns;
    r->cap = cap;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].host)
            *res_find(r, old[i].host) = old[i];
    free(old);
    return true;
}

static void *res_carve(nd_backend *be, struct nd_resident *r, size_t bytes, nd_err *err)
{
    size_t need = (bytes + RES_ALIGN - 1) & ~(RES_ALIGN - 1);
    if (need > r->left) {
        size_t n = need > RES_CHUNK ? need : RES_CHUNK;
        void **cs = realloc(r->chunks, (r->n_chunks + 1) * sizeof *cs);
        if (!cs) {
            nd_fail(err, ND_ENOMEM, "out of memory");
            return NULL;
        }
        r->chunks = cs;
        void *c = nd_backend_alloc(be, n, err);
        if (!c)
            return NULL;
        r->chunks[r->n_chunks++] = c;
        r->cur = c;
        r->left = n;
    }
    void *p = r->cur;
    r->cur += need;
    r->left -= need;
    return p;
}

const void *nd_backend_resident(nd_backend *be, const void *host, size_t bytes, nd_err *err)
{
    if (be->device == ND_DEV_CPU || !host)
        return host;
    static pthread_mutex_t make_lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&make_lock);
    if (!be->resident && (be->resident = calloc(1, sizeof *be->resident)))
        pthread_mutex_init(&be->resident->lock, NULL);
    pthread_mutex_unlock(&make_lock);
    struct nd_resident *r = be->resident;
    if (!r) {
        nd_fail(err, ND_ENOMEM, "out of memory");
        return NULL;
    }
    const void *out = NULL;
    pthread_mutex_lock(&r->lock);
    if (r->n * 2 >= r->cap && !res_grow(r)) {
        nd_fail(err, ND_ENOMEM, "out of memory");
        goto done;
    }
    res_slot *sl = res_find(r, host);
    if (sl->host && sl->bytes >= bytes) {
        out = sl->dev;
        goto done;
    }
    /* new, or asked for more bytes than the copy has: a new copy (the old
     * one stays in its chunk until close) */
    void *dev = res_carve(be, r, bytes, err);
    if (!dev || copy_mem(be, dev, host, bytes, true, err))
        goto done;
    if (!sl->host)
        r->n++;
    *sl = (res_slot){host, bytes, dev};
    r->bytes += bytes;
    out = dev;
done:
    pthread_mutex_unlock(&r->lock);
    return out;
}

size_t nd_backend_resident_bytes(const nd_backend *be)
{
    return be && be->resident ? be->resident->bytes : 0;
}

static void resident_free(nd_backend *be)
{
    struct nd_resident *r = be->resident;
    if (!r)
        return;
    for (size_t i = 0; i < r->n_chunks; i++)
        nd_backend_free(be, r->chunks[i]);
    pthread_mutex_destroy(&r->lock);
    free(r->chunks);
    free(r->slot);
    free(r);
    be->resident = NULL;
}

nd_status nd_backend_arena_init(nd_backend *be, nd_arena *a, size_t bytes, nd_err *err)
{
    memset(a, 0, sizeof *a);
    a->device = be->device;
    bytes = (bytes + ND_ARENA_ALIGN - 1) & ~(size_t)(ND_ARENA_ALIGN - 1);
    a->base = nd_backend_alloc(be, bytes, err); /* whole blocks: nothing rounded twice */
    if (!a->base)
        return ND_ENOMEM;
    a->cap = bytes;
    return ND_OK;
}

void nd_backend_arena_free(nd_backend *be, nd_arena *a)
{
    nd_backend_free(be, a->base);
    memset(a, 0, sizeof *a);
}

/* ---- checks ---------------------------------------------------------------------- */

static bool same_shape(const nd_tensor *a, const nd_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

static bool is_vec(const nd_tensor *t, int64_t n)
{
    return t->ndim == 1 && t->shape[0] == n;
}

#define BAD(...) nd_fail(err, ND_EINVAL, __VA_ARGS__)

static nd_status want_shape(const char *op, const nd_tensor *t, int ndim, const int64_t *shape,
                            nd_err *err)
{
    nd_tensor w = nd_tensor_make(NULL, t->dtype, t->device, ndim, shape);
    if (!same_shape(t, &w)) {
        char a[96], b[96];
        return BAD("%s: dst is %s, want %s", op, nd_tensor_str(t, a, sizeof a),
                   nd_tensor_str(&w, b, sizeof b));
    }
    return ND_OK;
}

nd_status nd_op_check(const nd_backend *be, const nd_op_call *c, nd_err *err)
{
    if ((unsigned)c->op >= ND_OP_COUNT)
        return BAD("op %d out of range", (int)c->op);
    const char *name = op_names[c->op];
    const nd_tensor *s0 = c->src[0], *s1 = c->src[1], *s2 = c->src[2], *y = c->dst;
    if (!y || !s0)
        return BAD("%s: missing dst or first input", name);
    for (int i = 0; i <= op_nsrc[c->op]; i++) {
        const nd_tensor *t = i < op_nsrc[c->op] ? c->src[i] : y;
        if (!t)
            continue;
        if (t->ndim < 1 || t->ndim > ND_MAX_DIMS || (unsigned)t->dtype >= ND_DTYPE_COUNT)
            return BAD("%s: tensor %d malformed (ndim %d)", name, i, t->ndim);
        if (t->device != be->device)
            return BAD("%s: tensor %d is on device %d, backend %s wants %d", name, i,
                       (int)t->device, be->name, (int)be->device);
        if (!t->data)
            return BAD("%s: tensor %d has no data", name, i);
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] < 1)
                return BAD("%s: tensor %d dim %d is %lld", name, i, d, (long long)t->shape[d]);
    }
    if (!be->supports_op(be, c->op, ND_F32))
        return nd_fail(err, ND_EUNSUPPORTED, "%s: not supported by backend %s", name, be->name);

    int64_t sh[ND_MAX_DIMS];
    switch (c->op) {
    case ND_OP_LINEAR: {
        int64_t K = s0->shape[s0->ndim - 1];
        if (!s1 || s1->ndim != 2 || s1->shape[1] != K)
            return BAD("linear: weight must be [N,%lld]", (long long)K);
        int64_t N = s1->shape[0];
        if (s2 && !is_vec(s2, N))
            return BAD("linear: bias must be [%lld]", (long long)N);
        memcpy(sh, s0->shape, sizeof sh);
        sh[s0->ndim - 1] = N;
        return want_shape(name, y, s0->ndim, sh, err);
    }
    case ND_OP_CONV2D: {
        const nd_conv2d_params *p = &c->p.conv;
        if (s0->ndim != 4 || !s1 || s1->ndim != 4 || s1->shape[1] != s0->shape[1])
            return BAD("conv2d: want x[B,Ci,H,W] and w[Co,Ci,kh,kw]");
        if (p->stride < 1 || p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 ||
            p->pad_right < 0)
            return BAD("conv2d: stride %d or a padding is out of range", p->stride);
        if (s2 && !is_vec(s2, s1->shape[0]))
            return BAD("conv2d: bias must be [%lld]", (long long)s1->shape[0]);
        int64_t ho = nd_conv_out(s0->shape[2], s1->shape[2], p->stride, p->pad_top, p->pad_bottom);
        int64_t wo = nd_conv_out(s0->shape[3], s1->shape[3], p->stride, p->pad_left, p->pad_right);
        if (ho < 1 || wo < 1 || s0->shape[2] + p->pad_top + p->pad_bottom < s1->shape[2] ||
            s0->shape[3] + p->pad_left + p->pad_right < s1->shape[3])
            return BAD("conv2d: kernel larger than the padded input");
        int64_t want[4] = {s0->shape[0], s1->shape[0], ho, wo};
        return want_shape(name, y, 4, want, err);
    }
    case ND_OP_GROUP_NORM: {
        if (s0->ndim < 2)
            return BAD("group_norm: want x[B,C,...]");
        int64_t C = s0->shape[1];
        if (c->p.norm.groups < 1 || C % c->p.norm.groups)
            return BAD("group_norm: %lld channels in %d groups", (long long)C, c->p.norm.groups);
        if ((s1 && !is_vec(s1, C)) || (s2 && !is_vec(s2, C)))
            return BAD("group_norm: gamma/beta must be [%lld]", (long long)C);
        if (!(c->p.norm.eps > 0))
            return BAD("group_norm: eps must be > 0");
        return want_shape(name, y, s0->ndim, s0->shape, err);
    }
    case ND_OP_LAYER_NORM: {
        int64_t C = s0->shape[s0->ndim - 1];
        if ((s1 && !is_vec(s1, C)) || (s2 && !is_vec(s2, C)))
            return BAD("layer_norm: gamma/beta must be [%lld]", (long long)C);
        if (!(c->p.norm.eps > 0))
            return BAD("layer_norm: eps must be > 0");
        return want_shape(name, y, s0->ndim, s0->shape, err);
    }
    case ND_OP_ATTENTION: {
        const nd_attention_params *p = &c->p.attn;
        if (!s1 || !s2 || s0->ndim != 3 || s1->ndim != 3 || !same_shape(s1, s2))
            return BAD("attention: want q[B,Nq,C], k and v [B,Nk,C]");
        if (s1->shape[0] != s0->shape[0] || s1->shape[2] != s0->shape[2])
            return BAD("attention: q and k differ in batch or channels");
        if (p->n_heads < 1 || s0->shape[2] % p->n_heads)
            return BAD("attention: %lld channels in %d heads", (long long)s0->shape[2],
                       p->n_heads);
        if (p->causal && s0->shape[1] != s1->shape[1])
            return BAD("attention: causal needs Nq == Nk");
        return want_shape(name, y, 3, s0->shape, err);
    }
    case ND_OP_GEGLU:
        if (s0->shape[s0->ndim - 1] % 2)
            return BAD("geglu: last dim must be even");
        memcpy(sh, s0->shape, sizeof sh);
        sh[s0->ndim - 1] /= 2;
        return want_shape(name, y, s0->ndim, sh, err);
    case ND_OP_SOFTMAX:
    case ND_OP_GELU:
    case ND_OP_QUICK_GELU:
    case ND_OP_SILU:
    case ND_OP_SCALE:
        return want_shape(name, y, s0->ndim, s0->shape, err);
    case ND_OP_ADD:
    case ND_OP_MUL:
        if (!s1 || s1->ndim > s0->ndim)
            return BAD("%s: b must have at most a's dims", name);
        for (int i = 0; i < s1->ndim; i++) {
            int64_t bd = s1->shape[s1->ndim - 1 - i], ad = s0->shape[s0->ndim - 1 - i];
            if (bd != 1 && bd != ad)
                return BAD("%s: b dim %d is %lld, a has %lld", name, s1->ndim - 1 - i,
                           (long long)bd, (long long)ad);
        }
        return want_shape(name, y, s0->ndim, s0->shape, err);
    case ND_OP_CONCAT:
        if (!s1 || s0->ndim < 2 || s0->ndim != s1->ndim)
            return BAD("concat: want a[B,Ca,...], b[B,Cb,...]");
        for (int i = 0; i < s0->ndim; i++)
            if (i != 1 && s0->shape[i] != s1->shape[i])
                return BAD("concat: a and b differ in dim %d", i);
        memcpy(sh, s0->shape, sizeof sh);
        sh[1] += s1->shape[1];
        return want_shape(name, y, s0->ndim, sh, err);
    case ND_OP_UPSAMPLE2X:
        if (s0->ndim != 4)
            return BAD("upsample2x: want x[B,C,H,W]");
        memcpy(sh, s0->shape, sizeof sh);
        sh[2] *= 2;
        sh[3] *= 2;
        return want_shape(name, y, 4, sh, err);
    case ND_OP_TIMESTEP_EMB: {
        const nd_timestep_params *p = &c->p.ts;
        if (s0->ndim != 1 || p->dim < 2 || p->dim % 2 || !(p->max_period > 0) ||
            !((float)(p->dim / 2) - p->freq_shift > 0))
            return BAD("timestep_emb: want t[B], an even dim and max_period > 0");
        int64_t want[2] = {s0->shape[0], p->dim};
        return want_shape(name, y, 2, want, err);
    }
    case ND_OP_TRANSPOSE: {
        if (s0->ndim != 3)
            return BAD("transpose: want x[B,M,N]");
        int64_t want[3] = {s0->shape[0], s0->shape[2], s0->shape[1]};
        return want_shape(name, y, 3, want, err);
    }
    case ND_OP_COPY:
        if (nd_tensor_numel(s0) != nd_tensor_numel(y))
            return BAD("copy: element counts differ");
        return ND_OK;
    case ND_OP_COUNT:
        break;
    }
    return BAD("bad op");
}

/* ---- FLOPs ------------------------------------------------------------------------ */

double nd_op_flops(const nd_op_call *c)
{
    const nd_tensor *s0 = c->src[0], *s1 = c->src[1];
    double out = (double)nd_tensor_numel(c->dst);
    switch (c->op) {
    case ND_OP_LINEAR:
        return 2.0 * out * (double)s1->shape[1];
    case ND_OP_CONV2D:
        return 2.0 * out * (double)(s1->shape[1] * s1->shape[2] * s1->shape[3]);
    case ND_OP_ATTENTION:
        return 4.0 * (double)s0->shape[0] * (double)s0->shape[1] * (double)s1->shape[1] *
               (double)s0->shape[2];
    default:
        return out;
    }
}

/* ---- dispatch ---------------------------------------------------------------------- */

static bool any_f16(const nd_op_call *c)
{
    for (int i = 0; i < ND_OP_MAX_SRC; i++)
        if (c->src[i] && c->src[i]->dtype == ND_F16)
            return true;
    return c->dst->dtype == ND_F16;
}

size_t nd_op_workspace_bytes(const nd_backend *be, const nd_op_call *c)
{
    size_t n = 0;
    if (c->op != ND_OP_COPY && !be->f16_native && any_f16(c)) {
        for (int i = 0; i < ND_OP_MAX_SRC; i++)
            if (c->src[i] && c->src[i]->dtype == ND_F16)
                n += (size_t)nd_tensor_numel(c->src[i]) * 4 + ND_ARENA_ALIGN;
        if (c->dst->dtype == ND_F16)
            n += (size_t)nd_tensor_numel(c->dst) * 4 + ND_ARENA_ALIGN;
    }
    return n + (be->workspace_bytes ? be->workspace_bytes(be, c) : 0);
}

/* Element-wise dtype conversion / copy on the CPU (ND_OP_COPY for backends
 * without native f16; memmove so that dst may alias src). */
static void cpu_copy(const nd_tensor *x, nd_tensor *y)
{
    size_t n = (size_t)nd_tensor_numel(x);
    if (x->dtype == y->dtype)
        memmove(y->data, x->data, n * nd_dtype_size(x->dtype));
    else if (x->dtype == ND_F16)
        nd_f16_to_f32_n(x->data, y->data, n);
    else
        nd_f32_to_f16_n(x->data, y->data, n);
}

nd_status nd_op_run(nd_backend *be, const nd_op_call *call, nd_err *err)
{
    nd_status st = nd_op_check(be, call, err);
    if (st)
        return st;
    if (call->op == ND_OP_COPY && !be->f16_native && be->device == ND_DEV_CPU) {
        if (call->src[0]->data == call->dst->data && call->src[0]->dtype != call->dst->dtype)
            return BAD("copy: cannot convert dtype in place");
        if (be->copy_native)
            return be->compute(be, call, &be->ws, err);
        cpu_copy(call->src[0], call->dst);
        return ND_OK;
    }
    nd_arena *ws = &be->ws;
    size_t mark = nd_arena_mark(ws);
    if (be->f16_native || !any_f16(call)) {
        st = be->compute(be, call, ws, err);
        nd_arena_reset(ws, mark);
        return st;
    }
    /* f32-only backend: widen f16 inputs into the workspace, compute, narrow. */
    nd_op_call c = *call;
    nd_tensor tmp[ND_OP_MAX_SRC + 1];
    for (int i = 0; i < ND_OP_MAX_SRC; i++) {
        const nd_tensor *s = call->src[i];
        if (!s || s->dtype != ND_F16)
            continue;
        tmp[i] = *s;
        tmp[i].dtype = ND_F32;
        tmp[i].data = nd_arena_alloc(ws, nd_tensor_bytes(&tmp[i]), err);
        if (!tmp[i].data) {
            nd_arena_reset(ws, mark);
            return nd_wrap(err, ND_ENOMEM, "%s: f16 input %d (workspace needs %zu bytes)",
                           op_names[c.op], i, nd_op_workspace_bytes(be, call));
        }
        nd_f16_to_f32_n(s->data, tmp[i].data, (size_t)nd_tensor_numel(s));
        c.src[i] = &tmp[i];
    }
    nd_tensor *ydst = call->dst;
    if (ydst->dtype == ND_F16) {
        nd_tensor *t = &tmp[ND_OP_MAX_SRC];
        *t = *ydst;
        t->dtype = ND_F32;
        t->data = nd_arena_alloc(ws, nd_tensor_bytes(t), err);
        if (!t->data) {
            nd_arena_reset(ws, mark);
            return nd_wrap(err, ND_ENOMEM, "%s: f16 output (workspace needs %zu bytes)",
                           op_names[c.op], nd_op_workspace_bytes(be, call));
        }
        c.dst = t;
    }
    st = be->compute(be, &c, ws, err);
    if (!st && c.dst != ydst)
        nd_f32_to_f16_n(c.dst->data, ydst->data, (size_t)nd_tensor_numel(ydst));
    nd_arena_reset(ws, mark);
    return st;
}

/* ---- broadcast plan ------------------------------------------------------------------ */

void nd_bcast_plan(const nd_tensor *a, const nd_tensor *b, nd_bcast *p)
{
    int64_t n[ND_MAX_DIMS], bs[ND_MAX_DIMS];
    int nd = a->ndim;
    int64_t stride = 1;
    for (int i = nd - 1; i >= 0; i--) {
        int bi = i - (nd - b->ndim);
        int64_t bd = bi >= 0 ? b->shape[bi] : 1;
        n[i] = a->shape[i];
        bs[i] = (bd == 1) ? 0 : stride;
        stride *= bd;
    }
    /* merge dims: drop size-1 dims, fuse neighbours whose b strides chain */
    p->nd = 0;
    for (int i = 0; i < nd; i++) {
        if (n[i] == 1)
            continue;
        if (p->nd > 0) {
            int j = p->nd - 1;
            bool both_bcast = p->bs[j] == 0 && bs[i] == 0;
            bool chain = bs[i] != 0 && p->bs[j] == bs[i] * n[i];
            if (both_bcast || chain) {
                p->n[j] *= n[i];
                p->bs[j] = bs[i];
                continue;
            }
        }
        p->n[p->nd] = n[i];
        p->bs[p->nd] = bs[i];
        p->nd++;
    }
    if (p->nd == 0) {
        p->nd = 1;
        p->n[0] = 1;
        p->bs[0] = 0;
    }
}

/* ---- typed helpers --------------------------------------------------------------------- */

static nd_status run1(nd_backend *be, nd_op op, const nd_tensor *a, const nd_tensor *b,
                      const nd_tensor *c3, nd_tensor *y, nd_err *err)
{
    nd_op_call c = {.op = op, .src = {a, b, c3}, .dst = y};
    return nd_op_run(be, &c, err);
}

nd_status nd_linear(nd_backend *be, const nd_tensor *x, const nd_tensor *w, const nd_tensor *b,
                    nd_tensor *y, nd_err *err)
{
    return run1(be, ND_OP_LINEAR, x, w, b, y, err);
}

nd_status nd_conv2d_ex(nd_backend *be, const nd_tensor *x, const nd_tensor *w,
                       const nd_tensor *b, const nd_conv2d_params *p, nd_tensor *y, nd_err *err)
{
    nd_op_call c = {.op = ND_OP_CONV2D, .src = {x, w, b}, .dst = y, .p.conv = *p};
    return nd_op_run(be, &c, err);
}

nd_status nd_conv2d(nd_backend *be, const nd_tensor *x, const nd_tensor *w, const nd_tensor *b,
                    int stride, int pad, nd_tensor *y, nd_err *err)
{
    nd_conv2d_params p = {stride, pad, pad, pad, pad};
    return nd_conv2d_ex(be, x, w, b, &p, y, err);
}

nd_status nd_group_norm(nd_backend *be, const nd_tensor *x, const nd_tensor *gamma,
                        const nd_tensor *beta, int groups, float eps, bool silu, nd_tensor *y,
                        nd_err *err)
{
    nd_op_call c = {.op = ND_OP_GROUP_NORM, .src = {x, gamma, beta}, .dst = y,
                    .p.norm = {groups, eps, silu}};
    return nd_op_run(be, &c, err);
}

nd_status nd_layer_norm(nd_backend *be, const nd_tensor *x, const nd_tensor *gamma,
                        const nd_tensor *beta, float eps, nd_tensor *y, nd_err *err)
{
    nd_op_call c = {.op = ND_OP_LAYER_NORM, .src = {x, gamma, beta}, .dst = y,
                    .p.norm = {0, eps, false}};
    return nd_op_run(be, &c, err);
}

nd_status nd_attention(nd_backend *be, const nd_tensor *q, const nd_tensor *k,
                       const nd_tensor *v, int n_heads, bool causal, nd_tensor *out, nd_err *err)
{
    nd_op_call c = {.op = ND_OP_ATTENTION, .src = {q, k, v}, .dst = out,
                    .p.attn = {n_heads, 0.0f, causal}};
    return nd_op_run(be, &c, err);
}

nd_status nd_softmax(nd_backend *be, const nd_tensor *x, nd_tensor *y, nd_err *err)
{
    return run1(be, ND_OP_SOFTMAX, x, NULL, NULL, y, err);
}
nd_status nd_geglu(nd_backend *be, const nd_tensor *x, nd_tensor *y, nd_err *err)
{
    return run1(be, ND_OP_GEGLU, x, NULL, NULL, y, err);
}
nd_status nd_gelu(nd_backend *be, const nd_tensor *x, nd_tensor *y, nd_err *err)
{
    return run1(be, ND_OP_GELU, x, NULL, NULL, y, err);
}
nd_status nd_quick_gelu(nd_backend *be, const nd_tensor *x, nd_tensor *y, nd_err *err)
{
    return run1(be, ND_OP_QUICK_GELU, x, NULL, NULL, y, err);
}
nd_status nd_silu(nd_backend *be, const nd_tensor *x, nd_tensor *y, nd_err *err)
{
    return run1(be, ND_OP_SILU, x, NULL, NULL, y, err);
}
nd_status nd_add(nd_backend *be, const nd_tensor *a, const nd_tensor *b, nd_tensor *y, nd_err *err)
{
    return run1(be, ND_OP_ADD, a, b, NULL, y, err);
}
nd_status nd_mul(nd_backend *be, const nd_tensor *a, const nd_tensor *b, nd_tensor *y, nd_err *err)
{
    return run1(be, ND_OP_MUL, a, b, NULL, y, err);
}
nd_status nd_scale(nd_backend *be, const nd_tensor *x, float scale, float bias, nd_tensor *y,
                   nd_err *err)
{
    nd_op_call c = {.op = ND_OP_SCALE, .src = {x}, .dst = y, .p.scale = {scale, bias}};
    return nd_op_run(be, &c, err);
}
nd_status nd_concat(nd_backend *be, const nd_tensor *a, const nd_tensor *b, nd_tensor *y,
                    nd_err *err)
{
    return run1(be, ND_OP_CONCAT, a, b, NULL, y, err);
}
nd_status nd_upsample2x(nd_backend *be, const nd_tensor *x, nd_tensor *y, nd_err *err)
{
    return run1(be, ND_OP_UPSAMPLE2X, x, NULL, NULL, y, err);
}
nd_status nd_timestep_embedding(nd_backend *be, const nd_tensor *t, int dim, nd_tensor *y,
                                nd_err *err)
{
    nd_op_call c = {.op = ND_OP_TIMESTEP_EMB, .src = {t}, .dst = y,
                    .p.ts = {dim, 10000.0f, true, 0.0f}};
    return nd_op_run(be, &c, err);
}
nd_status nd_transpose(nd_backend *be, const nd_tensor *x, nd_tensor *y, nd_err *err)
{
    return run1(be, ND_OP_TRANSPOSE, x, NULL, NULL, y, err);
}
nd_status nd_copy(nd_backend *be, const nd_tensor *x, nd_tensor *y, nd_err *err)
{
    return run1(be, ND_OP_COPY, x, NULL, NULL, y, err);
}
