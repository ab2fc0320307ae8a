/* tests/kernels/test_ops.c - every op on every backend against cpu_ref.
 *
 * Each case gets fresh random inputs (seed printed; ND_SEED=... replays),
 * output tensors poisoned with NaN first so an element left unwritten fails.
 * Shapes are chosen to be multiples of no tile size: 77 tokens, odd spatial
 * sizes, one group, one channel per group, head dims 40/64/80/160/512.
 *
 * Tolerance (ARCHITECTURE.md, "Ops"): err = max|out - ref| / max|ref| must be
 * below 1e-4 with f32 storage and below 2e-3 with f16 storage (inputs and
 * output in f16; the reference then runs on the same f16-rounded inputs).
 * "mixed" runs linear/conv with f16 weights and f32 activations (2e-3).
 *
 * Backends: every one linked in (nd_backend_names: "emu" in the sanitizer
 * build, "cuda" in make cuda's), or cpu_ref plus the comma-separated list in
 * ND_TEST_BACKENDS. An op a backend does not support is skipped for it, and
 * said so; only cpu_ref and cpu must support every op.
 *
 * On emu/cuda the ops run these sources: kernels/cuda/attention.cu
 * (attention), conv.cu (conv2d), norm.cu (group norm, layer norm, softmax),
 * elem.cu (elementwise, GEGLU/GELU/SiLU, concat, upsample, timestep
 * embedding, transpose, copy), backend.cu (linear through cuBLAS). */
#include "kernels/ops.h"
#include "tests/harness.h"

#include <sys/resource.h>

#define TOL_F32 1e-4
#define TOL_F16 2e-3

/* ---- random numbers ------------------------------------------------------------- */

static uint64_t rng_state;
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float rng_uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)((rng_next() >> 40) * (1.0 / 16777216.0));
}

/* ---- backends under test -------------------------------------------------------- */

#define MAX_BE 6
static nd_backend *bes[MAX_BE];
static const char *be_label[MAX_BE];
static int n_be;
static nd_arena arena; /* the test's own tensors */
static nd_err err;

/* Is `name` in the comma-separated `list`? */
static bool wanted(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n))
            return true;
        p += len + (e != NULL);
    }
    return false;
}

static void open_backends(void)
{
    if (n_be)
        return;
    rng_state = nd_test_seed();
    CHECK_OK(nd_arena_init(&arena, 512u << 20, &err), &err);
    nd_backend_config cfg = {0, 256u << 20, NULL};
    const char *only = getenv("ND_TEST_BACKENDS");
    for (const char *const *n = nd_backend_names(); *n && n_be < MAX_BE - 1; n++) {
        if (only && strcmp(*n, "cpu_ref") != 0 && !wanted(only, *n))
            continue;
        CHECK_OK(nd_backend_open(*n, &cfg, &bes[n_be], &err), &err);
        be_label[n_be] = *n;
        printf("  backend %s\n", *n);
        n_be++;
        if (!strcmp(*n, "cuda")) { /* and its cuDNN conv path (--conv cudnn) */
            nd_backend_config dc = cfg;
            dc.conv = "cudnn";
            CHECK_OK(nd_backend_open(*n, &dc, &bes[n_be], &err), &err);
            be_label[n_be++] = "cuda(cudnn)";
        }
    }
    /* the portable (no AVX2) paths of the cpu backend, on the same machine */
    if (!only || wanted(only, "cpu")) {
        setenv("ND_NO_AVX2", "1", 1);
        CHECK_OK(nd_backend_open("cpu", &cfg, &bes[n_be], &err), &err);
        unsetenv("ND_NO_AVX2");
        be_label[n_be++] = "cpu(no-avx2)";
        /* AVX2 at most (the AVX-512 paths off), on a CPU that has AVX-512 */
        setenv("ND_NO_AVX512", "1", 1);
        CHECK_OK(nd_backend_open("cpu", &cfg, &bes[n_be], &err), &err);
        unsetenv("ND_NO_AVX512");
        be_label[n_be++] = "cpu(no-avx512)";
    }
}

static nd_backend *find_backend(const char *label)
{
    for (int b = 0; b < n_be; b++)
        if (!strcmp(be_label[b], label))
            return bes[b];
    return NULL;
}

/* Says once per backend and op that the op is skipped there. */
static bool runs_op(int b, nd_op op)
{
    static bool said[MAX_BE][ND_OP_COUNT];
    if (bes[b]->supports_op(bes[b], op, ND_F32))
        return true;
    if (!said[b][op])
        printf("  skip: %s does not support %s\n", be_label[b], nd_op_name(op));
    said[b][op] = true;
    return false;
}

/* ---- tensors -------------------------------------------------------------------- */

static nd_tensor new_tensor(nd_dtype dt, int ndim, const int64_t *shape)
{
    nd_tensor t;
    nd_status st = nd_arena_tensor(&arena, dt, ndim, shape, &t, &err);
    if (st) {
        printf("    test arena: %s\n", err.msg);
        exit(2);
    }
    return t;
}

static float get(const nd_tensor *t, int64_t i)
{
    return t->dtype == ND_F32 ? ((float *)t->data)[i] : nd_f16_to_f32(((uint16_t *)t->data)[i]);
}

static void set(nd_tensor *t, int64_t i, float v)
{
    if (t->dtype == ND_F32)
        ((float *)t->data)[i] = v;
    else
        ((uint16_t *)t->data)[i] = nd_f32_to_f16(v);
}

static nd_tensor convert(const nd_tensor *src, nd_dtype dt)
{
    nd_tensor t = new_tensor(dt, src->ndim, src->shape);
    for (int64_t i = 0; i < nd_tensor_numel(src); i++)
        set(&t, i, get(src, i));
    return t;
}

static void poison(nd_tensor *t)
{
    for (int64_t i = 0; i < nd_tensor_numel(t); i++)
        set(t, i, NAN);
}

/* err = max|out - ref| / max|ref|; NaN anywhere gives NaN */
static double rel_err(const nd_tensor *out, const nd_tensor *ref)
{
    double md = 0, mr = 0;
    for (int64_t i = 0; i < nd_tensor_numel(ref); i++) {
        double o = get(out, i), r = get(ref, i);
        if (isnan(o) || isnan(r))
            return NAN;
        md = fmax(md, fabs(o - r));
        mr = fmax(mr, fabs(r));
    }
    return mr > 0 ? md / mr : md;
}

/* ---- tensors in a backend's memory ------------------------------------------------ */

/* The device copies of one run, freed together by unstage(). */
static void *staged_mem[ND_OP_MAX_SRC + 1];
static int n_staged;

/* *out = a copy of host tensor t in be's memory (device memory on cuda). */
static bool stage(nd_backend *be, const nd_tensor *t, nd_tensor *out)
{
    size_t n = nd_tensor_bytes(t);
    void *p = nd_backend_alloc(be, n, &err);
    if (!p || nd_backend_upload(be, p, t->data, n, &err)) {
        printf("    staging on %s: %s\n", be->name, err.msg);
        nd_backend_free(be, p);
        return false;
    }
    staged_mem[n_staged++] = p;
    *out = *t;
    out->data = p;
    out->device = be->device;
    return true;
}

static void unstage(nd_backend *be)
{
    while (n_staged > 0)
        nd_backend_free(be, staged_mem[--n_staged]);
}

/* ---- one case: the call to build, run on every backend in f32, f16, mixed -------- */

static nd_op_call cur;
static nd_tensor cur_src[ND_OP_MAX_SRC], cur_dst;
static int cur_nsrc;
static bool cur_inplace; /* dst aliases src[0] */
static double worst[MAX_BE][3];

static void begin(nd_op op)
{
    memset(&cur, 0, sizeof cur);
    cur.op = op;
    cur_nsrc = 0;
    cur_inplace = false;
}

static void src_(int i, float lo, float hi, const int64_t *shape, int ndim)
{
    cur_src[i] = new_tensor(ND_F32, ndim, shape);
    for (int64_t j = 0; j < nd_tensor_numel(&cur_src[i]); j++)
        ((float *)cur_src[i].data)[j] = rng_uniform(lo, hi);
    if (i + 1 > cur_nsrc)
        cur_nsrc = i + 1;
    cur.src[i] = &cur_src[i];
}
#define SRC(i, lo, hi, ...)                                                                 \
    src_(i, lo, hi, (const int64_t[]){__VA_ARGS__},                                         \
         (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
static void nosrc(int i)
{
    if (i + 1 > cur_nsrc)
        cur_nsrc = i + 1;
    cur.src[i] = NULL;
}

static void dst_(const int64_t *shape, int ndim)
{
    cur_dst = new_tensor(ND_F32, ndim, shape);
    cur.dst = &cur_dst;
}
#define DST(...)                                                                            \
    dst_((const int64_t[]){__VA_ARGS__},                                                    \
         (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))

/* Runs the built call on every backend; mode 0 f32, 1 f16, 2 mixed (f16 src[1]). */
static void run_case(const char *label)
{
    size_t mark = nd_arena_mark(&arena);
    bool weights = cur.op == ND_OP_LINEAR || cur.op == ND_OP_CONV2D;
    for (int mode = 0; mode < 3; mode++) {
        if (mode == 2 && !weights)
            continue;
        size_t mark2 = nd_arena_mark(&arena);
        /* inputs as the backend sees them, and their f32 values for the oracle */
        nd_tensor in[ND_OP_MAX_SRC], in32[ND_OP_MAX_SRC];
        nd_op_call rc = cur, bc = cur;
        for (int i = 0; i < cur_nsrc; i++) {
            if (!cur.src[i])
                continue;
            nd_dtype dt = (mode == 1 || (mode == 2 && i == 1)) ? ND_F16 : ND_F32;
            in[i] = convert(&cur_src[i], dt);
            in32[i] = convert(&in[i], ND_F32);
            rc.src[i] = &in32[i];
            bc.src[i] = &in[i];
        }
        nd_dtype ydt = mode == 1 ? ND_F16 : ND_F32;
        nd_tensor ref = new_tensor(ND_F32, cur_dst.ndim, cur_dst.shape);
        poison(&ref);
        rc.dst = &ref;
        CHECK_OK(nd_op_run(bes[0], &rc, &err), &err);
        double tol = mode == 0 ? TOL_F32 : TOL_F16;
        for (int b = 0; b < n_be; b++) {
            if (!runs_op(b, cur.op))
                continue;
            nd_tensor y, x0;
            if (cur_inplace) { /* dst is a fresh copy of src[0], passed as both */
                x0 = convert(&in[0], in[0].dtype);
                y = x0;
            } else {
                y = new_tensor(ydt, cur_dst.ndim, cur_dst.shape);
                poison(&y);
            }
            /* every backend computes in its own memory (device memory on
             * cuda): inputs and the poisoned dst go there, the result back */
            nd_tensor din[ND_OP_MAX_SRC], dy;
            nd_op_call dc = bc;
            bool staged = stage(bes[b], &y, &dy);
            for (int i = 0; i < cur_nsrc && staged; i++) {
                if (!cur.src[i])
                    continue;
                if (i == 0 && cur_inplace) {
                    din[0] = dy;
                } else if (!stage(bes[b], &in[i], &din[i])) {
                    staged = false;
                    break;
                }
                dc.src[i] = &din[i];
            }
            dc.dst = &dy;
            nd_status st = staged ? nd_op_run(bes[b], &dc, &err) : ND_ENOMEM;
            if (!st)
                st = nd_backend_download(bes[b], y.data, dy.data, nd_tensor_bytes(&y), &err);
            unstage(bes[b]);
            CHECKF(st == ND_OK, "%s %s mode %d: %s", be_label[b], label, mode, err.msg);
            if (st)
                continue;
            double e = rel_err(&y, &ref);
            CHECKF(e < tol, "%s %s on %s %s: err %.3g (tolerance %.0e)", nd_op_name(cur.op),
                   label, be_label[b], mode == 0 ? "f32" : mode == 1 ? "f16" : "mixed", e, tol);
            if (!(e <= worst[b][mode]))
                worst[b][mode] = isnan(e) ? INFINITY : fmax(e, worst[b][mode]);
        }
        nd_arena_reset(&arena, mark2);
    }
    nd_arena_reset(&arena, mark);
}

/* ---- the cases ------------------------------------------------------------------- */

static void test_linear(void)
{
    open_backends();
    begin(ND_OP_LINEAR); /* CLIP-like: 77 tokens */
    SRC(0, -1, 1, 2, 77, 64); SRC(1, -1, 1, 48, 64); SRC(2, -1, 1, 48); DST(2, 77, 48);
    run_case("[2,77,64]x[48,64]+b");
    begin(ND_OP_LINEAR);
    SRC(0, -1, 1, 1, 33, 40); SRC(1, -1, 1, 50, 40); nosrc(2); DST(1, 33, 50);
    run_case("[1,33,40]x[50,40] no bias");
    begin(ND_OP_LINEAR);
    SRC(0, -1, 1, 3, 17); SRC(1, -1, 1, 13, 17); SRC(2, -1, 1, 13); DST(3, 13);
    run_case("[3,17]x[13,17]+b");
    begin(ND_OP_LINEAR); /* time embedding MLP shape, batch 2 */
    SRC(0, -1, 1, 2, 320); SRC(1, -0.1f, 0.1f, 128, 320); SRC(2, -1, 1, 128); DST(2, 128);
    run_case("[2,320]x[128,320]+b");
}

static void conv(const char *label, int stride, int pt, int pb, int pl, int pr)
{
    cur.p.conv = (nd_conv2d_params){stride, pt, pb, pl, pr};
    run_case(label);
}

static void test_conv2d(void)
{
    open_backends();
    begin(ND_OP_CONV2D);
    SRC(0, -1, 1, 2, 8, 9, 11); SRC(1, -1, 1, 16, 8, 3, 3); SRC(2, -1, 1, 16); DST(2, 16, 9, 11);
    conv("3x3 s1 p1 [2,8,9,11]", 1, 1, 1, 1, 1);
    begin(ND_OP_CONV2D);
    SRC(0, -1, 1, 1, 6, 13, 10); SRC(1, -1, 1, 8, 6, 3, 3); SRC(2, -1, 1, 8); DST(1, 8, 7, 5);
    conv("3x3 s2 p1 [1,6,13,10]", 2, 1, 1, 1, 1);
    begin(ND_OP_CONV2D);
    SRC(0, -1, 1, 2, 12, 7, 9); SRC(1, -1, 1, 10, 12, 1, 1); SRC(2, -1, 1, 10); DST(2, 10, 7, 9);
    conv("1x1 s1 p0 [2,12,7,9]", 1, 0, 0, 0, 0);
    begin(ND_OP_CONV2D);
    SRC(0, -1, 1, 1, 20, 5, 5); SRC(1, -1, 1, 7, 20, 1, 1); nosrc(2); DST(1, 7, 5, 5);
    conv("1x1 no bias [1,20,5,5]", 1, 0, 0, 0, 0);
    begin(ND_OP_CONV2D); /* VAE encoder downsample: pad right/bottom only */
    SRC(0, -1, 1, 1, 4, 9, 9); SRC(1, -1, 1, 5, 4, 3, 3); SRC(2, -1, 1, 5); DST(1, 5, 4, 4);
    conv("3x3 s2 pad(0,1,0,1) [1,4,9,9]", 2, 0, 1, 0, 1);
    /* strided convs with >= 8 outputs: the cpu backend's micro-GEMM path,
     * K = 576 in two passes of 512 rows, 13 rows (one partial block of 8) */
    begin(ND_OP_CONV2D);
    SRC(0, -1, 1, 2, 64, 11, 9); SRC(1, -1, 1, 13, 64, 3, 3); SRC(2, -1, 1, 13); DST(2, 13, 6, 5);
    conv("3x3 s2 p1 [2,64,11,9]->13 (K 576)", 2, 1, 1, 1, 1);
    begin(ND_OP_CONV2D);
    SRC(0, -1, 1, 1, 16, 9, 9); SRC(1, -1, 1, 9, 16, 3, 3); nosrc(2); DST(1, 9, 4, 4);
    conv("3x3 s2 pad(0,1,0,1) [1,16,9,9]->9 no bias", 2, 0, 1, 0, 1);
    /* rows wide enough for im2col's 16-lane stride-2 copy, with a tail; the
     * last tap of the last row ends the input (a read past it is ASan's) */
    begin(ND_OP_CONV2D);
    SRC(0, -1, 1, 1, 9, 5, 70); SRC(1, -1, 1, 10, 9, 3, 3); SRC(2, -1, 1, 10); DST(1, 10, 3, 35);
    conv("3x3 s2 p1 [1,9,5,70]->10", 2, 1, 1, 1, 1);
    begin(ND_OP_CONV2D);
    SRC(0, -1, 1, 1, 8, 5, 67); SRC(1, -1, 1, 8, 8, 3, 3); SRC(2, -1, 1, 8); DST(1, 8, 2, 33);
    conv("3x3 s2 pad(0,1,0,1) [1,8,5,67]->8", 2, 0, 1, 0, 1);
    begin(ND_OP_CONV2D); /* conv_in-like: 4 input channels, odd size */
    SRC(0, -1, 1, 1, 4, 15, 17); SRC(1, -1, 1, 32, 4, 3, 3); SRC(2, -1, 1, 32); DST(1, 32, 15, 17);
    conv("3x3 s1 p1 [1,4,15,17]->32", 1, 1, 1, 1, 1);
    begin(ND_OP_CONV2D);
    SRC(0, -1, 1, 1, 3, 8, 7); SRC(1, -1, 1, 4, 3, 3, 3); nosrc(2); DST(1, 4, 6, 5);
    conv("3x3 s1 p0 no bias", 1, 0, 0, 0, 0);
    /* Winograd F(2x2,3x3) (3x3 stride 1, >= 8 channels): odd sizes, bands of
     * tiles that split tile rows, and the im2col path for the same shape */
    begin(ND_OP_CONV2D);
    SRC(0, -1, 1, 2, 16, 13, 11); SRC(1, -1, 1, 12, 16, 3, 3); SRC(2, -1, 1, 12);
    DST(2, 12, 13, 11);
    setenv("ND_WG_BAND", "7", 1);
    conv("3x3 s1 p1 [2,16,13,11] winograd band 7", 1, 1, 1, 1, 1);
    unsetenv("ND_WG_BAND");
    conv("3x3 s1 p1 [2,16,13,11] winograd", 1, 1, 1, 1, 1);
    setenv("ND_CONV_WINOGRAD", "0", 1);
    conv("3x3 s1 p1 [2,16,13,11] im2col", 1, 1, 1, 1, 1);
    unsetenv("ND_CONV_WINOGRAD");
    /* 4 rows (every tile touches the padding) and 37 columns (groups of 8
     * tiles, then 3), as the default model's 4x69 latents; 40 columns: the
     * last group of 8 tiles ends at the padding column */
    begin(ND_OP_CONV2D);
    SRC(0, -1, 1, 2, 8, 4, 37); SRC(1, -1, 1, 9, 8, 3, 3); SRC(2, -1, 1, 9); DST(2, 9, 4, 37);
    conv("3x3 s1 p1 [2,8,4,37] winograd", 1, 1, 1, 1, 1);
    begin(ND_OP_CONV2D);
    SRC(0, -1, 1, 1, 8, 9, 40); SRC(1, -1, 1, 8, 8, 3, 3); SRC(2, -1, 1, 8); DST(1, 8, 9, 40);
    conv("3x3 s1 p1 [1,8,9,40] winograd", 1, 1, 1, 1, 1);
    begin(ND_OP_CONV2D);
    SRC(0, -1, 1, 1, 64, 24, 20); SRC(1, -1, 1, 48, 64, 3, 3); nosrc(2); DST(1, 48, 22, 18);
    conv("3x3 s1 p0 [1,64,24,20] winograd no bias", 1, 0, 0, 0, 0);
    begin(ND_OP_CONV2D); /* small K (27), Co not a multiple of 8, stride 2, no bias */
    SRC(0, -1, 1, 2, 3, 11, 10); SRC(1, -1, 1, 13, 3, 3, 3); nosrc(2); DST(2, 13, 6, 5);
    conv("3x3 s2 p1 [2,3,11,10]->13 no bias", 2, 1, 1, 1, 1);
    begin(ND_OP_CONV2D); /* 1x1 stride 2: not the plain GEMM path */
    SRC(0, -1, 1, 1, 5, 7, 7); SRC(1, -1, 1, 3, 5, 1, 1); SRC(2, -1, 1, 3); DST(1, 3, 4, 4);
    conv("1x1 s2 [1,5,7,7]", 2, 0, 0, 0, 0);
    /* a few output channels, K > 64 (the VAE's conv_out): the direct path */
    begin(ND_OP_CONV2D);
    SRC(0, -1, 1, 2, 32, 9, 21); SRC(1, -1, 1, 3, 32, 3, 3); SRC(2, -1, 1, 3); DST(2, 3, 9, 21);
    conv("3x3 s1 p1 [2,32,9,21]->3 direct", 1, 1, 1, 1, 1);
    begin(ND_OP_CONV2D);
    SRC(0, -1, 1, 1, 12, 7, 10); SRC(1, -1, 1, 4, 12, 3, 3); nosrc(2); DST(1, 4, 5, 8);
    conv("3x3 s1 p0 [1,12,7,10]->4 direct no bias", 1, 0, 0, 0, 0);
    begin(ND_OP_CONV2D);
    SRC(0, -1, 1, 1, 12, 6, 9); SRC(1, -1, 1, 1, 12, 3, 3); SRC(2, -1, 1, 1); DST(1, 1, 5, 8);
    conv("3x3 s1 pad(0,1,0,1) [1,12,6,9]->1 direct", 1, 0, 1, 0, 1);
    /* more than one 128 x 128 x 32 tile of the cuda tensor-core conv in every
     * direction, each ending part-way: Co 130, K 360 (11.25 k tiles), 286 pixels */
    begin(ND_OP_CONV2D);
    SRC(0, -1, 1, 2, 40, 13, 11); SRC(1, -0.3f, 0.3f, 130, 40, 3, 3); SRC(2, -1, 1, 130);
    DST(2, 130, 13, 11);
    conv("3x3 s1 p1 [2,40,13,11]->130 (tiles)", 1, 1, 1, 1, 1);
}

static void gn(const char *label, int groups, float eps, bool silu)
{
    cur.p.norm = (nd_norm_params){groups, eps, silu};
    run_case(label);
}

static void test_group_norm(void)
{
    open_backends();
    begin(ND_OP_GROUP_NORM);
    SRC(0, -2, 2, 2, 64, 5, 7); SRC(1, 0.5f, 1.5f, 64); SRC(2, -1, 1, 64); DST(2, 64, 5, 7);
    gn("[2,64,5,7] 32 groups silu", 32, 1e-5f, true);
    begin(ND_OP_GROUP_NORM); /* one channel per group, eps 1e-6 */
    SRC(0, -2, 2, 1, 32, 9, 9); SRC(1, 0.5f, 1.5f, 32); SRC(2, -1, 1, 32); DST(1, 32, 9, 9);
    gn("[1,32,9,9] 32 groups eps1e-6", 32, 1e-6f, false);
    begin(ND_OP_GROUP_NORM); /* one group */
    SRC(0, -2, 2, 1, 12, 3, 5); SRC(1, 0.5f, 1.5f, 12); SRC(2, -1, 1, 12); DST(1, 12, 3, 5);
    gn("[1,12,3,5] 1 group silu", 1, 1e-5f, true);
    begin(ND_OP_GROUP_NORM); /* offset data: the statistics must not lose precision */
    SRC(0, 9, 11, 1, 64, 3, 3); SRC(1, 0.5f, 1.5f, 64); SRC(2, -1, 1, 64); DST(1, 64, 3, 3);
    gn("[1,64,3,3] mean 10", 32, 1e-6f, true);
    begin(ND_OP_GROUP_NORM); /* no affine, 3-d input */
    SRC(0, -2, 2, 2, 32, 13); nosrc(1); nosrc(2); DST(2, 32, 13);
    gn("[2,32,13] no affine", 8, 1e-5f, false);
}

static void test_layer_norm(void)
{
    open_backends();
    begin(ND_OP_LAYER_NORM);
    SRC(0, -2, 2, 2, 77, 96); SRC(1, 0.5f, 1.5f, 96); SRC(2, -1, 1, 96); DST(2, 77, 96);
    cur.p.norm.eps = 1e-5f;
    run_case("[2,77,96]");
    begin(ND_OP_LAYER_NORM);
    SRC(0, 4, 6, 5, 33); SRC(1, 0.5f, 1.5f, 33); SRC(2, -1, 1, 33); DST(5, 33);
    cur.p.norm.eps = 1e-5f;
    run_case("[5,33] mean 5");
}

static void attn(const char *label, int heads, bool causal)
{
    cur.p.attn = (nd_attention_params){heads, 0.0f, causal};
    run_case(label);
}

static void test_attention(void)
{
    open_backends();
    begin(ND_OP_ATTENTION); /* UNet level 0: d 40, self */
    SRC(0, -2, 2, 1, 100, 80); SRC(1, -2, 2, 1, 100, 80); SRC(2, -1, 1, 1, 100, 80);
    DST(1, 100, 80);
    attn("self N100 2x40", 2, false);
    begin(ND_OP_ATTENTION); /* cross attention: 77 keys, d 80 */
    SRC(0, -2, 2, 2, 65, 160); SRC(1, -2, 2, 2, 77, 160); SRC(2, -1, 1, 2, 77, 160);
    DST(2, 65, 160);
    attn("cross Nq65 Nk77 2x80", 2, false);
    begin(ND_OP_ATTENTION); /* CLIP: causal, d 64 */
    SRC(0, -2, 2, 2, 77, 128); SRC(1, -2, 2, 2, 77, 128); SRC(2, -1, 1, 2, 77, 128);
    DST(2, 77, 128);
    attn("causal N77 2x64", 2, true);
    begin(ND_OP_ATTENTION); /* d 160 */
    SRC(0, -2, 2, 1, 50, 320); SRC(1, -2, 2, 1, 77, 320); SRC(2, -1, 1, 1, 77, 320);
    DST(1, 50, 320);
    attn("cross Nq50 Nk77 2x160", 2, false);
    begin(ND_OP_ATTENTION); /* VAE: one head of 512 */
    SRC(0, -1, 1, 1, 70, 512); SRC(1, -1, 1, 1, 70, 512); SRC(2, -1, 1, 1, 70, 512);
    DST(1, 70, 512);
    attn("self N70 1x512", 1, false);
    begin(ND_OP_ATTENTION); /* few queries, keys across several tiles */
    SRC(0, -2, 2, 1, 3, 40); SRC(1, -2, 2, 1, 601, 40); SRC(2, -1, 1, 1, 601, 40);
    DST(1, 3, 40);
    attn("Nq3 Nk601 1x40", 1, false);
    begin(ND_OP_ATTENTION); /* causal across query and key tiles */
    SRC(0, -2, 2, 1, 300, 40); SRC(1, -2, 2, 1, 300, 40); SRC(2, -1, 1, 1, 300, 40);
    DST(1, 300, 40);
    attn("causal N300 1x40", 1, true);
    begin(ND_OP_ATTENTION); /* peaked scores: the online max must rescale */
    SRC(0, -6, 6, 1, 97, 64); SRC(1, -6, 6, 1, 333, 64); SRC(2, -1, 1, 1, 333, 64);
    DST(1, 97, 64);
    attn("peaked Nq97 Nk333 1x64", 1, false);
    /* the default model's heads (8 wide; the cpu backend's keys-in-lanes
     * path): odd query counts (rows in pairs, one left), key counts not a
     * multiple of 16, cross with 77 keys, peaked scores, 16 wide */
    begin(ND_OP_ATTENTION);
    SRC(0, -2, 2, 3, 277, 64); SRC(1, -2, 2, 3, 277, 64); SRC(2, -1, 1, 3, 277, 64);
    DST(3, 277, 64);
    attn("self N277 8x8", 8, false);
    begin(ND_OP_ATTENTION);
    SRC(0, -2, 2, 2, 35, 64); SRC(1, -2, 2, 2, 77, 64); SRC(2, -1, 1, 2, 77, 64);
    DST(2, 35, 64);
    attn("cross Nq35 Nk77 8x8", 8, false);
    begin(ND_OP_ATTENTION);
    SRC(0, -9, 9, 1, 33, 16); SRC(1, -9, 9, 1, 5, 16); SRC(2, -1, 1, 1, 5, 16);
    DST(1, 33, 16);
    attn("peaked Nq33 Nk5 2x8", 2, false);
    begin(ND_OP_ATTENTION);
    SRC(0, -2, 2, 2, 41, 48); SRC(1, -2, 2, 2, 130, 48); SRC(2, -1, 1, 2, 130, 48);
    DST(2, 41, 48);
    attn("Nq41 Nk130 3x16", 3, false);
    begin(ND_OP_ATTENTION);
    SRC(0, -2, 2, 1, 50, 16); SRC(1, -2, 2, 1, 50, 16); SRC(2, -1, 1, 1, 50, 16);
    DST(1, 50, 16);
    attn("causal N50 2x8", 2, true);
}

/* Long sequences at the UNet's first and last head dims: many query and key
 * tiles, self and causal. */
static void test_attention_1024(void)
{
    open_backends();
    begin(ND_OP_ATTENTION); /* UNet level 0 (64x64 latents: 4096 tokens), d 40 */
    SRC(0, -2, 2, 1, 1031, 80); SRC(1, -2, 2, 1, 1031, 80); SRC(2, -1, 1, 1, 1031, 80);
    DST(1, 1031, 80);
    attn("self N1031 2x40", 2, false);
    begin(ND_OP_ATTENTION); /* d 160, one head */
    SRC(0, -1, 1, 1, 1025, 160); SRC(1, -1, 1, 1, 1025, 160); SRC(2, -1, 1, 1, 1025, 160);
    DST(1, 1025, 160);
    attn("self N1025 1x160", 1, false);
    begin(ND_OP_ATTENTION);
    SRC(0, -2, 2, 1, 1030, 40); SRC(1, -2, 2, 1, 1030, 40); SRC(2, -1, 1, 1, 1030, 40);
    DST(1, 1030, 40);
    attn("causal N1030 1x40", 1, true);
}

static void test_softmax(void)
{
    open_backends();
    begin(ND_OP_SOFTMAX);
    SRC(0, -8, 8, 3, 77); DST(3, 77);
    run_case("[3,77]");
    begin(ND_OP_SOFTMAX);
    SRC(0, -8, 8, 2, 5, 1001); DST(2, 5, 1001);
    run_case("[2,5,1001]");
}

static void test_activations(void)
{
    open_backends();
    static const nd_op ops[] = {ND_OP_GELU, ND_OP_QUICK_GELU, ND_OP_SILU};
    for (size_t i = 0; i < 3; i++) {
        begin(ops[i]);
        SRC(0, -8, 8, 3, 1001); DST(3, 1001);
        run_case("[3,1001]");
        begin(ops[i]);
        SRC(0, -8, 8, 2, 7, 5, 3); DST(2, 7, 5, 3);
        cur_inplace = true;
        run_case("[2,7,5,3] in place");
    }
    begin(ND_OP_GEGLU);
    SRC(0, -5, 5, 2, 77, 80); DST(2, 77, 40);
    run_case("[2,77,80]");
    begin(ND_OP_GEGLU);
    SRC(0, -5, 5, 1, 7, 26); DST(1, 7, 13);
    run_case("[1,7,26]");
}

static void test_add_mul_scale(void)
{
    open_backends();
    for (int k = 0; k < 2; k++) {
        nd_op op = k ? ND_OP_MUL : ND_OP_ADD;
        begin(op);
        SRC(0, -1, 1, 2, 3, 5, 7); SRC(1, -1, 1, 2, 3, 5, 7); DST(2, 3, 5, 7);
        run_case("same shape");
        begin(op); /* resnet: + time embedding per channel */
        SRC(0, -1, 1, 2, 8, 5, 7); SRC(1, -1, 1, 2, 8, 1, 1); DST(2, 8, 5, 7);
        run_case("[2,8,5,7] . [2,8,1,1]");
        begin(op); /* bias over tokens */
        SRC(0, -1, 1, 2, 77, 96); SRC(1, -1, 1, 96); DST(2, 77, 96);
        run_case("[2,77,96] . [96]");
        begin(op);
        SRC(0, -1, 1, 2, 9, 33); SRC(1, -1, 1, 1, 9, 1); DST(2, 9, 33);
        run_case("[2,9,33] . [1,9,1]");
        begin(op);
        SRC(0, -1, 1, 3, 4, 5); SRC(1, -1, 1, 1); DST(3, 4, 5);
        run_case("[3,4,5] . [1]");
        begin(op); /* mid-dim broadcast with an inner run */
        SRC(0, -1, 1, 2, 3, 4, 5); SRC(1, -1, 1, 2, 1, 4, 5); DST(2, 3, 4, 5);
        run_case("[2,3,4,5] . [2,1,4,5]");
        begin(op);
        SRC(0, -1, 1, 4, 40000); SRC(1, -1, 1, 4, 40000); DST(4, 40000);
        cur_inplace = true;
        run_case("[4,40000] in place");
    }
    begin(ND_OP_SCALE);
    SRC(0, -5, 5, 5, 37); DST(5, 37);
    cur.p.scale = (nd_scale_params){1.0f / 0.18215f, 0.5f};
    run_case("[5,37] x/0.18215+0.5");
}

static void test_shape_ops(void)
{
    open_backends();
    begin(ND_OP_CONCAT);
    SRC(0, -1, 1, 2, 5, 3, 7); SRC(1, -1, 1, 2, 3, 3, 7); DST(2, 8, 3, 7);
    run_case("[2,5,3,7]+[2,3,3,7]");
    begin(ND_OP_UPSAMPLE2X);
    SRC(0, -1, 1, 2, 3, 5, 7); DST(2, 3, 10, 14);
    run_case("[2,3,5,7]");
    begin(ND_OP_UPSAMPLE2X); /* rows of 16 + 11 and 9 (the 16-lane loop's masks), 2 tasks */
    SRC(0, -1, 1, 1, 5, 7, 27); DST(1, 5, 14, 54);
    run_case("[1,5,7,27]");
    begin(ND_OP_UPSAMPLE2X);
    SRC(0, -1, 1, 1, 3, 4, 9); DST(1, 3, 8, 18);
    run_case("[1,3,4,9]");
    begin(ND_OP_TRANSPOSE);
    SRC(0, -1, 1, 2, 40, 77); DST(2, 77, 40);
    run_case("[2,40,77]");
    begin(ND_OP_TRANSPOSE);
    SRC(0, -1, 1, 1, 33, 65); DST(1, 65, 33);
    run_case("[1,33,65]");
    begin(ND_OP_COPY);
    SRC(0, -1, 1, 3, 7); DST(21);
    run_case("[3,7] -> [21]");
    begin(ND_OP_COPY); /* more than one of the cpu backend's 16384-element chunks, odd tail */
    SRC(0, -1, 1, 3, 7001); DST(21003);
    run_case("[3,7001] -> [21003]");
    begin(ND_OP_TIMESTEP_EMB);
    SRC(0, 0, 999, 3); DST(3, 320);
    cur.p.ts = (nd_timestep_params){320, 10000.0f, true, 0.0f};
    run_case("t[3] dim 320");
    begin(ND_OP_TIMESTEP_EMB);
    SRC(0, 0, 50, 2); DST(2, 6);
    cur.p.ts = (nd_timestep_params){6, 100.0f, false, 1.0f};
    run_case("t[2] dim 6 sin first shift 1");
}

/* Every op appears above; this keeps the list honest as ops are added. */
static void test_every_op_covered(void)
{
    open_backends();
    for (int b = 0; b < n_be; b++) {
        bool complete = !strcmp(bes[b]->name, "cpu_ref") || !strcmp(bes[b]->name, "cpu");
        int lacking = 0;
        for (int op = 0; op < ND_OP_COUNT; op++) {
            bool has = bes[b]->supports_op(bes[b], (nd_op)op, ND_F32);
            CHECKF(has || !complete, "%s lacks %s", be_label[b], nd_op_name((nd_op)op));
            lacking += !has;
            CHECKF(strcmp(nd_op_name((nd_op)op), "?") != 0, "op %d has no name", op);
        }
        printf("  %s: %d of %d ops\n", be_label[b], ND_OP_COUNT - lacking, ND_OP_COUNT);
    }
    printf("  worst err (f32 / f16 / mixed):");
    for (int b = 0; b < n_be; b++)
        printf(" %s %.1e/%.1e/%.1e;", be_label[b], worst[b][0], worst[b][1], worst[b][2]);
    printf("\n");
}

/* ---- 17408 tokens x head dim 40 on cpu: right, and O(N d) memory ----------------- */

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_attention_17408(void)
{
    open_backends();
    nd_backend *cpu = find_backend("cpu");
    if (!cpu) {
        printf("  skip: the cpu backend is not under test\n");
        return;
    }
    const int64_t N = 17408, C = 40;
    size_t mark = nd_arena_mark(&arena);
    int64_t sh[3] = {1, N, C};
    nd_tensor q = new_tensor(ND_F32, 3, sh), k = new_tensor(ND_F32, 3, sh),
              v = new_tensor(ND_F32, 3, sh), o = new_tensor(ND_F32, 3, sh);
    for (int64_t i = 0; i < N * C; i++) {
        ((float *)q.data)[i] = rng_uniform(-2, 2);
        ((float *)k.data)[i] = rng_uniform(-2, 2);
        ((float *)v.data)[i] = rng_uniform(-1, 1);
    }
    poison(&o);
    long rss0 = max_rss_kb();
    size_t ws_used0 = cpu->ws.used;
    cpu->ws.peak = ws_used0;
    CHECK_OK(nd_attention(cpu, &q, &k, &v, 1, false, &o, &err), &err);
    long rss1 = max_rss_kb();
    size_t ws_peak = cpu->ws.peak - ws_used0;
    double n2 = (double)N * N * 4; /* bytes of one f32 score matrix */
    printf("  17408x40: workspace peak %zu bytes (N*d*4 = %lld, N^2*4 = %.0f), max RSS +%ld KiB\n",
           ws_peak, (long long)(N * C * 4), n2, rss1 - rss0);
    /* O(N d): the op's temporaries (K transposed + per-thread tiles) stay
     * within one input's size plus 1 MiB per thread... */
    CHECKF(ws_peak < (size_t)(N * C * 4) + ((size_t)cpu->n_threads << 20),
           "workspace %zu is not O(N*d)", ws_peak);
    CHECK(ws_peak == nd_op_workspace_bytes(cpu, &(nd_op_call){.op = ND_OP_ATTENTION,
                                                             .src = {&q, &k, &v}, .dst = &o,
                                                             .p.attn = {1, 0, false}}) -
                         ND_ARENA_ALIGN ||
          ws_peak <= nd_op_workspace_bytes(cpu, &(nd_op_call){.op = ND_OP_ATTENTION,
                                                              .src = {&q, &k, &v}, .dst = &o,
                                                              .p.attn = {1, 0, false}}));
    /* ...and the process grew by far less than one N x N matrix (1.2 GB) */
    CHECKF((double)(rss1 - rss0) * 1024 < n2 / 8, "max RSS grew %ld KiB", rss1 - rss0);
    /* rows are independent: check 64 of them (first, last, random) against cpu_ref */
    int64_t rows = 64, sq[3] = {1, rows, C};
    nd_tensor qs = new_tensor(ND_F32, 3, sq), os = new_tensor(ND_F32, 3, sq),
              got = new_tensor(ND_F32, 3, sq);
    for (int64_t r = 0; r < rows; r++) {
        int64_t i = r == 0 ? 0 : r == 1 ? N - 1 : (int64_t)(rng_next() % (uint64_t)N);
        memcpy((float *)qs.data + r * C, (float *)q.data + i * C, C * 4);
        memcpy((float *)got.data + r * C, (float *)o.data + i * C, C * 4);
    }
    poison(&os);
    CHECK_OK(nd_attention(bes[0], &qs, &k, &v, 1, false, &os, &err), &err);
    double e = rel_err(&got, &os);
    printf("  17408x40: err %.2e on %lld sampled rows\n", e, (long long)rows);
    CHECKF(e < TOL_F32, "err %.3g", e);
    for (int64_t i = 0; i < N * C; i++)
        if (isnan(((float *)o.data)[i])) {
            CHECKF(0, "output element %lld unwritten", (long long)i);
            break;
        }
    nd_arena_reset(&arena, mark);
}

/* ---- the rest of the contract ------------------------------------------------------ */

static void test_errors(void)
{
    open_backends();
    nd_backend *be = NULL;
    CHECK(nd_backend_open("nope", NULL, &be, &err) == ND_ENOTFOUND && be == NULL);
    size_t mark = nd_arena_mark(&arena);
    nd_tensor x = new_tensor(ND_F32, 2, (int64_t[]){3, 4}), w = new_tensor(ND_F32, 2, (int64_t[]){5, 6});
    nd_tensor y = new_tensor(ND_F32, 2, (int64_t[]){3, 5});
    for (int b = 0; b < n_be; b++) {
        err.msg[0] = 0;
        CHECK(nd_linear(bes[b], &x, &w, NULL, &y, &err) == ND_EINVAL && strstr(err.msg, "linear"));
        nd_tensor y2 = new_tensor(ND_F32, 2, (int64_t[]){3, 4});
        CHECK(nd_attention(bes[b], &x, &x, &x, 3, false, &y2, &err) == ND_EINVAL);
        CHECK(nd_add(bes[b], &x, &w, &y2, &err) == ND_EINVAL);
        nd_tensor cu = x;
        cu.device = ND_DEV_CUDA;
        CHECK(nd_silu(bes[b], &cu, &y2, &err) == ND_EINVAL);
        if (!strcmp(bes[b]->name, "emu")) {
            /* host memory labelled as the device's: a GPU would fault on it,
             * the emulator refuses it (its checks make the model tests on
             * emu prove that nothing hands a kernel host memory) */
            float host[12] = {0};
            nd_tensor hx = nd_tensor_make(host, ND_F32, ND_DEV_CUDA, 2, (int64_t[]){3, 4});
            nd_tensor dy = hx;
            dy.data = nd_backend_alloc(bes[b], nd_tensor_bytes(&dy), &err);
            CHECK(nd_silu(bes[b], &hx, &dy, &err) == ND_EINVAL && strstr(err.msg, "device memory"));
            CHECK(nd_backend_upload(bes[b], host, dy.data, sizeof host, &err) == ND_EBACKEND);
            CHECK_OK(nd_backend_upload(bes[b], dy.data, host, sizeof host, &err), &err);
            CHECK_OK(nd_silu(bes[b], &dy, &dy, &err), &err);
            nd_backend_free(bes[b], dy.data);
        }
    }
    /* a workspace too small for an im2col band: ND_ENOMEM, saying how much
     * (5 output channels: more than the direct path's 4, fewer than Winograd's 8) */
    /* a conv path other than ours is refused where it does not exist */
    for (const char *const *n = nd_backend_names(); *n; n++) {
        nd_backend_config bad = {0, 1u << 20, "winograd"};
        CHECK(nd_backend_open(*n, &bad, &be, &err) != ND_OK && be == NULL);
        if (!strcmp(*n, "emu")) {
            bad.conv = "cudnn";
            CHECK(nd_backend_open(*n, &bad, &be, &err) == ND_EUNSUPPORTED && be == NULL &&
                  strstr(err.msg, "cuDNN"));
        }
    }
    nd_backend_config small = {1, 1024, NULL};
    CHECK_OK(nd_backend_open("cpu", &small, &be, &err), &err);
    nd_tensor cx = new_tensor(ND_F32, 4, (int64_t[]){1, 8, 9, 9});
    nd_tensor cw = new_tensor(ND_F32, 4, (int64_t[]){5, 8, 3, 3});
    nd_tensor cy = new_tensor(ND_F32, 4, (int64_t[]){1, 5, 9, 9});
    if (be) {
        CHECK(nd_conv2d(be, &cx, &cw, NULL, 1, 1, &cy, &err) == ND_ENOMEM);
        CHECK(strstr(err.msg, "workspace needs") != NULL);
        nd_backend_close(be);
    }
    nd_arena_reset(&arena, mark);
}

static void test_arena(void)
{
    nd_arena a;
    nd_err e;
    CHECK_OK(nd_arena_init(&a, 1000, &e), &e);
    nd_tensor t;
    CHECK_OK(nd_arena_tensor(&a, ND_F32, 2, (int64_t[]){10, 10}, &t, &e), &e);
    CHECK(((uintptr_t)t.data % ND_ARENA_ALIGN) == 0);
    size_t m = nd_arena_mark(&a);
    CHECK(nd_arena_tensor(&a, ND_F32, 2, (int64_t[]){10, 100}, &t, &e) == ND_ENOMEM);
    CHECK_OK(nd_arena_tensor(&a, ND_F16, 1, (int64_t[]){100}, &t, &e), &e);
    nd_arena_reset(&a, m);
    CHECK_EQ_INT(a.used, m);
    nd_arena_free(&a);
    nd_arena meas;
    nd_arena_init_measure(&meas);
    CHECK_OK(nd_arena_tensor(&meas, ND_F32, 4, (int64_t[]){2, 320, 64, 64}, &t, &e), &e);
    CHECK(t.data == NULL && meas.peak == 2u * 320 * 64 * 64 * 4);
    nd_tensor v;
    CHECK_OK(nd_tensor_view(&t, 3, (int64_t[]){2, 320, 4096}, &v, &e), &e);
    CHECK(nd_tensor_view(&t, 2, (int64_t[]){2, 321}, &v, &e) == ND_EINVAL);
}

static void test_f16_conversion(void)
{
    /* every half survives half -> float -> half (NaNs stay NaN) */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = nd_f16_to_f32((uint16_t)h);
        uint16_t back = nd_f32_to_f16(f);
        bool nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff);
        if (nan ? !isnan(f) : back != h)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(nd_f16_to_f32(0x3c00) == 1.0f && nd_f16_to_f32(0xc000) == -2.0f);
    CHECK(nd_f16_to_f32(0x0001) == ldexpf(1, -24)); /* smallest subnormal */
    CHECK(nd_f32_to_f16(65520.0f) == 0x7c00 && nd_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(nd_f32_to_f16(1.0f + ldexpf(1, -11)) == 0x3c00); /* tie to even */
    /* the bulk (F16C when present) path agrees with the scalar one */
    rng_state ^= 0x1234;
    enum { N = 4099 };
    static float src[N], back[N];
    static uint16_t hv[N];
    for (int i = 0; i < N; i++) {
        uint32_t bits = (uint32_t)rng_next();
        memcpy(&src[i], &bits, 4);
        if (isnan(src[i]))
            src[i] = 1.5f;
    }
    nd_f32_to_f16_n(src, hv, N);
    nd_f16_to_f32_n(hv, back, N);
    int diff = 0;
    for (int i = 0; i < N; i++)
        diff += hv[i] != nd_f32_to_f16(src[i]) || back[i] != nd_f16_to_f32(hv[i]);
    CHECK_EQ_INT(diff, 0);
}

/* device memory for metrics: none on the host backends, the workspace (at
 * least) on the emulated and real devices */
static void test_device_bytes(void)
{
    CHECK(nd_backend_device_bytes(NULL) == 0);
    for (const char *const *n = nd_backend_names(); *n; n++) {
        nd_backend *be;
        nd_err e;
        nd_backend_config cfg = {1, 3u << 20, NULL};
        CHECK_OK(nd_backend_open(*n, &cfg, &be, &e), &e);
        size_t got = nd_backend_device_bytes(be);
        if (!strcmp(*n, "cpu") || !strcmp(*n, "cpu_ref"))
            CHECKF(got == 0, "%s: %zu device bytes", *n, got);
        else
            CHECKF(got >= 3u << 20, "%s: %zu device bytes, the workspace is 3 MiB", *n, got);
        nd_backend_close(be);
    }
}

/* Resident copies (the weights on a device): the host address itself on the
 * host backends; elsewhere one upload per address, the same copy on every
 * later call, a new one when more bytes are asked for, the bytes intact, and
 * arenas and zeroing in the backend's memory. */
static void test_resident(void)
{
    enum { N = 3000 };
    static float host[2 * N];
    for (int i = 0; i < 2 * N; i++)
        host[i] = (float)i * 0.25f - 7.0f;
    float back[2 * N];
    for (const char *const *n = nd_backend_names(); *n; n++) {
        nd_backend *be;
        nd_err e;
        nd_backend_config cfg = {1, 1u << 20, NULL};
        CHECK_OK(nd_backend_open(*n, &cfg, &be, &e), &e);
        const void *a = nd_backend_resident(be, host, N * sizeof(float), &e);
        const void *b = nd_backend_resident(be, host + N, N * sizeof(float), &e);
        CHECK(a && b && a != b);
        if (be->device == ND_DEV_CPU) {
            CHECK(a == host && b == host + N && nd_backend_resident_bytes(be) == 0);
        } else {
            CHECK(a != host && nd_backend_resident_bytes(be) == 2 * N * sizeof(float));
            CHECK(nd_backend_resident(be, host, N * sizeof(float), &e) == a); /* no re-upload */
            CHECK(nd_backend_resident(be, host, 100, &e) == a);              /* a prefix: same */
            const void *c = nd_backend_resident(be, host, 2 * N * sizeof(float), &e);
            CHECK(c && c != a); /* more bytes: a new copy */
            CHECK_OK(nd_backend_download(be, back, c, sizeof back, &e), &e);
            CHECK(!memcmp(back, host, sizeof back));
        }
        CHECK_OK(nd_backend_download(be, back, b, N * sizeof(float), &e), &e);
        CHECK(!memcmp(back, host + N, N * sizeof(float)));
        /* an arena there makes tensors that say so, and zeroing works there */
        nd_arena ar;
        nd_tensor t;
        CHECK_OK(nd_backend_arena_init(be, &ar, 4096, &e), &e);
        CHECK_OK(nd_arena_tensor(&ar, ND_F32, 1, (int64_t[]){100}, &t, &e), &e);
        CHECK(t.device == be->device);
        CHECK_OK(nd_backend_upload(be, t.data, host, 400, &e), &e);
        CHECK_OK(nd_backend_zero(be, t.data, 400, &e), &e);
        CHECK_OK(nd_backend_download(be, back, t.data, 400, &e), &e);
        int nz = 0;
        for (int i = 0; i < 100; i++)
            nz += back[i] != 0.0f;
        CHECK_EQ_INT(nz, 0);
        nd_backend_arena_free(be, &ar);
        nd_backend_close(be);
    }
}

ND_TEST_MAIN(ND_TEST(test_arena), ND_TEST(test_f16_conversion), ND_TEST(test_device_bytes),
             ND_TEST(test_resident), ND_TEST(test_linear),
             ND_TEST(test_conv2d), ND_TEST(test_group_norm), ND_TEST(test_layer_norm),
             ND_TEST(test_attention), ND_TEST(test_attention_1024), ND_TEST(test_softmax), ND_TEST(test_activations),
             ND_TEST(test_add_mul_scale), ND_TEST(test_shape_ops), ND_TEST(test_every_op_covered),
             ND_TEST(test_errors), ND_TEST(test_attention_17408))
