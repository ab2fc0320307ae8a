/* tests/bench/bench_ops.c - one row per op at the shapes of a 64x64 latent
 * (512^2 images) and a 136x128 latent (1088x1024 NetDiffusion images, 17,408
 * tokens at the first UNet level), on the "cpu" backend: milliseconds (median
 * of 3-15 samples, each the time per run of a ~10 ms burst of back-to-back
 * runs), GFLOP/s (2 per multiply-add; 1 per output element for the
 * memory-bound ops), and the same op in PyTorch on the CPU with the same
 * thread count (tests/bench/bench_ops_torch.py, kept running as a coprocess
 * and timed sample by sample right after each of ours, so a loaded machine
 * slows both sides alike), as a ratio of the medians (torch ms / our ms:
 * > 1 means we are faster).
 *
 * PyTorch is optional: found via $ND_PYTHON, /work/venv/bin/python, or
 * python3, whichever can `import torch`; otherwise the table says
 * "PyTorch: not installed". ND_BENCH_QUICK=1 keeps only the 64x64 rows;
 * ND_BENCH_ONLY=text times only the rows whose label contains it.
 *
 * ND_BENCH_BACKEND=cuda (build/cuda/bench_ops, on a machine with a GPU): the
 * GPU table instead, at batch 1, 2 and 8, every tensor fp16 in device memory;
 * TFLOP/s and its share of the GPU's dense fp16 tensor-core peak
 * (ND_GPU_PEAK_TFLOPS, default 989.4: H100/H200 SXM); PyTorch on the same GPU
 * in fp16 beside it (scaled_dot_product_attention, cuDNN convolution). A
 * sample is then the time per run of a burst ended by a stream sync. */
#include "kernels/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ROWS 192

typedef struct {
    char label[48], shape[48];
    nd_op op;
    int nsrc;
    nd_tensor src[ND_OP_MAX_SRC];
    bool has[ND_OP_MAX_SRC];
    nd_tensor dst;
    nd_op_call call;
    double ms, flops, torch_ms;
    double best_ms, torch_best_ms; /* minimums of the same runs */
} row;

static row rows[MAX_ROWS];
static int n_rows;
static nd_arena arena;
static nd_err err;
static uint64_t rs = 42;
static bool gpu; /* the GPU table: f16 tensors in the backend's device memory */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static float rnd(void)
{
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rs >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static nd_tensor tensor(nd_dtype dt, int ndim, const int64_t *shape, bool fill)
{
    nd_tensor t;
    if (nd_arena_tensor(&arena, dt, ndim, shape, &t, &err)) {
        fprintf(stderr, "bench_ops: %s\n", err.msg);
        exit(1);
    }
    size_t n = (size_t)nd_tensor_numel(&t);
    if (dt == ND_F32)
        for (size_t i = 0; i < n; i++)
            ((float *)t.data)[i] = fill ? rnd() : 0.0f;
    else if (fill)
        for (size_t i = 0; i < n; i++)
            ((uint16_t *)t.data)[i] = nd_f32_to_f16(rnd());
    else
        memset(t.data, 0, n * 2);
    return t;
}

/* row builder: add(op, label, shape-text), then S(...) per source, D(...) */
static row *cur;
static void add(nd_op op, const char *label, const char *shape)
{
    cur = &rows[n_rows++];
    memset(cur, 0, sizeof *cur);
    cur->op = op;
    snprintf(cur->label, sizeof cur->label, "%s", label);
    snprintf(cur->shape, sizeof cur->shape, "%s", shape);
}
static void src_(int i, const int64_t *sh, int nd)
{
    cur->src[i] = tensor(gpu ? ND_F16 : ND_F32, nd, sh, true);
    cur->has[i] = true;
    if (i + 1 > cur->nsrc)
        cur->nsrc = i + 1;
}
#define S(i, ...) src_(i, (const int64_t[]){__VA_ARGS__}, (int)(sizeof((const int64_t[]){__VA_ARGS__}) / 8))
static void none(int i)
{
    if (i + 1 > cur->nsrc)
        cur->nsrc = i + 1;
}
static void dst_(nd_dtype dt, const int64_t *sh, int nd)
{
    cur->dst = tensor(dt, nd, sh, false);
}
#define D(...) dst_(gpu ? ND_F16 : ND_F32, (const int64_t[]){__VA_ARGS__}, (int)(sizeof((const int64_t[]){__VA_ARGS__}) / 8))
#define D16(...) dst_(gpu ? ND_F32 : ND_F16, (const int64_t[]){__VA_ARGS__}, (int)(sizeof((const int64_t[]){__VA_ARGS__}) / 8))

/* The PyTorch side runs as a coprocess (bench_ops_torch.py --serve): each
 * row's spec is sent to it once (it builds its tensors and warms up), then
 * every repetition times our op once and asks it to time its op once right
 * after, so both sides see the same machine load; the table shows the medians. */
typedef struct {
    FILE *to, *from;
    pid_t pid;
} coproc;

static bool coproc_open(coproc *cp, const char *py, int n_threads)
{
    int in[2], out[2];
    if (pipe(in) || pipe(out))
        return false;
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        char nt[16];
        snprintf(nt, sizeof nt, "%d", n_threads);
        const char *dev = gpu ? "--cuda" : NULL;
        execl(py, py, "tests/bench/bench_ops_torch.py", nt, "--serve", dev, (char *)NULL);
        execlp(py, py, "tests/bench/bench_ops_torch.py", nt, "--serve", dev, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    cp->to = fdopen(in[1], "w");
    cp->from = fdopen(out[0], "r");
    cp->pid = pid;
    return cp->to && cp->from;
}

static void coproc_close(coproc *cp)
{
    if (cp->to)
        fclose(cp->to);
    if (cp->from)
        fclose(cp->from);
    if (cp->pid > 0)
        waitpid(cp->pid, NULL, 0);
}

/* one reply line: a number, or NAN for "none"/"err"/EOF */
static double coproc_ask(coproc *cp, const char *line)
{
    char buf[256];
    fputs(line, cp->to);
    fflush(cp->to);
    if (!fgets(buf, sizeof buf, cp->from))
        return NAN;
    char *end;
    double v = strtod(buf, &end);
    return end == buf ? NAN : v;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    if (n <= 0)
        return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void write_spec(FILE *f, int idx, const row *r);

#define MAX_REPS 15
/* Pause between our run and PyTorch's, both ways. PyTorch's OpenMP workers
 * (libgomp) spin-wait for a few milliseconds after each parallel region; a
 * run of ours started inside that window had one core of two taken from it
 * and its median came out up to twice its best (a 320x320 linear: 7-9 ms
 * against 4.8 ms). Our own pool sleeps after microseconds, so the pause only
 * lets each side start on idle cores; it is not counted in either time. */
#define SETTLE_US 20000
#define BURST_MS 10.0

/* Times one row on the backend, interleaved with PyTorch when cp != NULL. */
static void time_row(nd_backend *be, row *r, int idx, coproc *cp)
{
    nd_op_call *c = &r->call;
    c->op = r->op;
    for (int i = 0; i < r->nsrc; i++)
        c->src[i] = r->has[i] ? &r->src[i] : NULL;
    c->dst = &r->dst;
    r->flops = nd_op_flops(c);
    r->torch_ms = NAN;
    bool torch = false;
    if (cp) {
        char *line = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&line, &len);
        write_spec(m, idx, r);
        fclose(m);
        torch = !isnan(coproc_ask(cp, line)); /* builds + warms up; "ok 1" */
        free(line);
    }
    double w0 = now_ms();
    if (nd_op_run(be, c, &err) || nd_backend_sync(be, &err)) { /* also the warm-up */
        fprintf(stderr, "bench_ops: %s: %s\n", r->label, err.msg);
        exit(1);
    }
    /* A sample is a burst of k back-to-back runs after one untimed run (the
     * UNet runs its ops back to back, with warm threads and caches), k such
     * that a burst lasts ~BURST_MS; its time per run is one sample. */
    double w = now_ms() - w0;
    int k = w >= BURST_MS ? 1 : (int)(BURST_MS / (w > 0.01 ? w : 0.01)) + 1;
    if (k > (gpu ? 2000 : 50))
        k = gpu ? 2000 : 50;
    char tk[32];
    snprintf(tk, sizeof tk, "t %d\n", k);
    double ours[MAX_REPS], theirs[MAX_REPS], total = 0;
    int n = 0, nt = 0;
    /* at least 3 samples, up to MAX_REPS while under ~1.5 s of op time */
    while (n < MAX_REPS && (n < 3 || total < (gpu ? 300 : 1500))) {
        if (torch && !gpu)
            usleep(SETTLE_US);
        if (k > 1)
            nd_op_run(be, c, &err);
        nd_backend_sync(be, &err);
        double t0 = now_ms();
        for (int i = 0; i < k; i++)
            nd_op_run(be, c, &err);
        if (nd_backend_sync(be, &err)) {
            fprintf(stderr, "bench_ops: %s: %s\n", r->label, err.msg);
            exit(1);
        }
        ours[n] = (now_ms() - t0) / k;
        total += ours[n++] * k;
        if (torch) {
            if (!gpu)
                usleep(SETTLE_US);
            double t = coproc_ask(cp, tk);
            if (isnan(t)) {
                torch = false;
                nt = 0;
            } else {
                theirs[nt++] = t;
                total += t * k;
            }
        }
    }
    r->ms = median(ours, n); /* sorts */
    r->best_ms = ours[0];
    r->torch_best_ms = NAN;
    if (torch && nt) {
        r->torch_ms = median(theirs, nt);
        r->torch_best_ms = theirs[0];
    }
}

static void shape_str(FILE *f, const nd_tensor *t, bool has)
{
    if (!has) {
        fputs(" -", f);
        return;
    }
    fputc(' ', f);
    for (int i = 0; i < t->ndim; i++)
        fprintf(f, "%s%lld", i ? "," : "", (long long)t->shape[i]);
}

static void write_spec(FILE *f, int idx, const row *r)
{
    const nd_op_call *c = &r->call;
    fprintf(f, "%d %s %d", idx, nd_op_name(r->op), r->nsrc);
    for (int i = 0; i < r->nsrc; i++)
        shape_str(f, &r->src[i], r->has[i]);
    shape_str(f, &r->dst, true);
    fprintf(f, " %s", nd_dtype_name(r->dst.dtype));
    switch (r->op) {
    case ND_OP_CONV2D:
        fprintf(f, " %d %d %d %d %d", c->p.conv.stride, c->p.conv.pad_top, c->p.conv.pad_bottom,
                c->p.conv.pad_left, c->p.conv.pad_right);
        break;
    case ND_OP_GROUP_NORM:
    case ND_OP_LAYER_NORM:
        fprintf(f, " %d %g %d", c->p.norm.groups, c->p.norm.eps, c->p.norm.silu);
        break;
    case ND_OP_ATTENTION:
        fprintf(f, " %d %d", c->p.attn.n_heads, c->p.attn.causal);
        break;
    case ND_OP_SCALE:
        fprintf(f, " %g %g", c->p.scale.scale, c->p.scale.bias);
        break;
    case ND_OP_TIMESTEP_EMB:
        fprintf(f, " %d", c->p.ts.dim);
        break;
    default:
        break;
    }
    fputc('\n', f);
}

static const char *find_python(void)
{
    static char buf[512];
    const char *cands[] = {getenv("ND_PYTHON"), "/work/venv/bin/python", "python3"};
    for (size_t i = 0; i < 3; i++) {
        if (!cands[i] || !*cands[i])
            continue;
        char cmd[700];
        snprintf(cmd, sizeof cmd, "%s -c 'import torch' >/dev/null 2>&1", cands[i]);
        if (system(cmd) == 0) {
            snprintf(buf, sizeof buf, "%s", cands[i]);
            return buf;
        }
    }
    return NULL;
}

static void build_rows(int H, int W, bool big, int B)
{
    int64_t N = (int64_t)H * W;
    char s[48];
#define SH(...) (snprintf(s, sizeof s, __VA_ARGS__), s)
    add(ND_OP_LINEAR, "linear q/k/v/out 320", SH("[%d,%lld,320]x[320,320]", B, (long long)N));
    S(0, B, N, 320); S(1, 320, 320); none(2); D(B, N, 320);
    add(ND_OP_LINEAR, "linear ff 320->2560 +b", SH("[%d,%lld,320]x[2560,320]", B, (long long)N));
    S(0, B, N, 320); S(1, 2560, 320); S(2, 2560); D(B, N, 2560);
    add(ND_OP_CONV2D, "conv3x3 320->320", SH("[%d,320,%d,%d]", B, H, W));
    S(0, B, 320, H, W); S(1, 320, 320, 3, 3); S(2, 320); D(B, 320, H, W);
    cur->call.p.conv = (nd_conv2d_params){1, 1, 1, 1, 1};
    add(ND_OP_CONV2D, "conv3x3 4->320 (conv_in)", SH("[%d,4,%d,%d]", B, H, W));
    S(0, B, 4, H, W); S(1, 320, 4, 3, 3); S(2, 320); D(B, 320, H, W);
    cur->call.p.conv = (nd_conv2d_params){1, 1, 1, 1, 1};
    add(ND_OP_CONV2D, "conv3x3 s2 320->320", SH("[%d,320,%d,%d]", B, H, W));
    S(0, B, 320, H, W); S(1, 320, 320, 3, 3); S(2, 320); D(B, 320, H / 2, W / 2);
    cur->call.p.conv = (nd_conv2d_params){2, 1, 1, 1, 1};
    add(ND_OP_CONV2D, "conv1x1 320->320 (proj_in)", SH("[%d,320,%d,%d]", B, H, W));
    S(0, B, 320, H, W); S(1, 320, 320, 1, 1); S(2, 320); D(B, 320, H, W);
    cur->call.p.conv = (nd_conv2d_params){1, 0, 0, 0, 0};
    add(ND_OP_CONV2D, "conv3x3 1280->1280 @/8", SH("[%d,1280,%d,%d]", B, H / 8, W / 8));
    S(0, B, 1280, H / 8, W / 8); S(1, 1280, 1280, 3, 3); S(2, 1280); D(B, 1280, H / 8, W / 8);
    cur->call.p.conv = (nd_conv2d_params){1, 1, 1, 1, 1};
    add(ND_OP_GROUP_NORM, "group_norm+silu 32g", SH("[%d,320,%d,%d]", B, H, W));
    S(0, B, 320, H, W); S(1, 320); S(2, 320); D(B, 320, H, W);
    cur->call.p.norm = (nd_norm_params){32, 1e-5f, true};
    add(ND_OP_LAYER_NORM, "layer_norm", SH("[%d,%lld,320]", B, (long long)N));
    S(0, B, N, 320); S(1, 320); S(2, 320); D(B, N, 320);
    cur->call.p.norm = (nd_norm_params){0, 1e-5f, false};
    add(ND_OP_ATTENTION, "attention self 8x40", SH("[%d,%lld,320]", B, (long long)N));
    S(0, B, N, 320); S(1, B, N, 320); S(2, B, N, 320); D(B, N, 320);
    cur->call.p.attn = (nd_attention_params){8, 0, false};
    add(ND_OP_ATTENTION, "attention cross 8x40, 77 keys", SH("[%d,%lld,320]", B, (long long)N));
    S(0, B, N, 320); S(1, B, 77, 320); S(2, B, 77, 320); D(B, N, 320);
    cur->call.p.attn = (nd_attention_params){8, 0, false};
    add(ND_OP_ATTENTION, "attention self 8x80 (level 1)", SH("[%d,%lld,640]", B, (long long)N / 4));
    S(0, B, N / 4, 640); S(1, B, N / 4, 640); S(2, B, N / 4, 640); D(B, N / 4, 640);
    cur->call.p.attn = (nd_attention_params){8, 0, false};
    if (!big) { /* the VAE's one head of 512 over the latent's tokens; at 17408
                   tokens it is 620 GFLOP per call, too long for a benchmark row */
        add(ND_OP_ATTENTION, "attention VAE 1x512", SH("[%d,%lld,512]", B, (long long)N));
        S(0, B, N, 512); S(1, B, N, 512); S(2, B, N, 512); D(B, N, 512);
        cur->call.p.attn = (nd_attention_params){1, 0, false};
    }
    add(ND_OP_SOFTMAX, "softmax over 77", SH("[%d,%lld,77]", 8 * B, (long long)N));
    S(0, 8 * B, N, 77); D(8 * B, N, 77);
    add(ND_OP_GEGLU, "geglu", SH("[%d,%lld,2560]", B, (long long)N));
    S(0, B, N, 2560); D(B, N, 1280);
    add(ND_OP_GELU, "gelu (erf)", SH("[%d,%lld,1280]", B, (long long)N));
    S(0, B, N, 1280); D(B, N, 1280);
    add(ND_OP_SILU, "silu", SH("[%d,320,%d,%d]", B, H, W));
    S(0, B, 320, H, W); D(B, 320, H, W);
    add(ND_OP_ADD, "add same shape", SH("[%d,320,%d,%d]", B, H, W));
    S(0, B, 320, H, W); S(1, B, 320, H, W); D(B, 320, H, W);
    add(ND_OP_ADD, "add per-channel bcast", SH("[%d,320,%d,%d]+[1,320,1,1]", B, H, W));
    S(0, B, 320, H, W); S(1, B, 320, 1, 1); D(B, 320, H, W);
    add(ND_OP_MUL, "mul same shape", SH("[%d,320,%d,%d]", B, H, W));
    S(0, B, 320, H, W); S(1, B, 320, H, W); D(B, 320, H, W);
    add(ND_OP_SCALE, "scale", SH("[%d,320,%d,%d]", B, H, W));
    S(0, B, 320, H, W); D(B, 320, H, W);
    cur->call.p.scale = (nd_scale_params){0.5f, 0.25f};
    add(ND_OP_CONCAT, "concat channels", SH("[%d,320,%d,%d]x2", B, H, W));
    S(0, B, 320, H, W); S(1, B, 320, H, W); D(B, 640, H, W);
    add(ND_OP_UPSAMPLE2X, "upsample2x nearest", SH("[%d,640,%d,%d]", B, H / 2, W / 2));
    S(0, B, 640, H / 2, W / 2); D(B, 640, H, W);
    add(ND_OP_TRANSPOSE, "transpose NCHW->NLC", SH("[%d,320,%lld]", B, (long long)N));
    S(0, B, 320, N); D(B, N, 320);
    add(ND_OP_COPY, gpu ? "copy f16->f32" : "copy f32->f16", SH("[%d,320,%d,%d]", B, H, W));
    S(0, B, 320, H, W); D16(B, 320, H, W);
#undef SH
}

/* The rows' tensors, copied into the backend's device memory (the GPU table). */
static void to_device(nd_backend *be, nd_arena *dev, int r0, int r1)
{
    for (int r = r0; r < r1; r++) {
        nd_tensor *ts[ND_OP_MAX_SRC + 1];
        int n = 0;
        for (int i = 0; i < rows[r].nsrc; i++)
            if (rows[r].has[i])
                ts[n++] = &rows[r].src[i];
        ts[n++] = &rows[r].dst;
        for (int i = 0; i < n; i++) {
            size_t b = nd_tensor_bytes(ts[i]);
            void *p = nd_arena_alloc(dev, b, &err);
            if (!p || nd_backend_upload(be, p, ts[i]->data, b, &err)) {
                fprintf(stderr, "bench_ops: %s: %s\n", rows[r].label, err.msg);
                exit(1);
            }
            ts[i]->data = p;
            ts[i]->device = be->device;
        }
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    /* OpenBLAS's idle workers spin (sched_yield) for ~2^28 cycles after each
     * SGEMM, which would steal a core from the PyTorch run timed right after
     * ours; the shortest timeout makes them sleep at once (costing us their
     * wake-up, not PyTorch anything). Read at library load, hence the exec. */
    if (!getenv("OPENBLAS_THREAD_TIMEOUT")) {
        setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
        execv("/proc/self/exe", argv);
    }
    const char *be_name = getenv("ND_BENCH_BACKEND");
    be_name = be_name && *be_name ? be_name : "cpu";
    nd_backend *be;
    nd_backend_config cfg = {0, 512u << 20, NULL};
    if (nd_backend_open(be_name, &cfg, &be, &err)) {
        fprintf(stderr, "bench_ops: %s\n", err.msg);
        return 1;
    }
    gpu = be->device != ND_DEV_CPU;
    nd_arena dev = {0};
    if (nd_arena_init(&arena, (size_t)(gpu ? 12 : 3) << 30, &err) ||
        (gpu && nd_backend_arena_init(be, &dev, (size_t)16 << 30, &err))) {
        fprintf(stderr, "bench_ops: %s\n", err.msg);
        return 1;
    }
    const char *py = find_python();
    bool quick = getenv("ND_BENCH_QUICK") != NULL;
    const char *pk = getenv("ND_GPU_PEAK_TFLOPS");
    double peak = pk && atof(pk) > 0 ? atof(pk) : 989.4;
    coproc cpr = {0}, *cp = NULL;
    if (py && coproc_open(&cpr, py, gpu ? 1 : be->n_threads))
        cp = &cpr;
    double la0[3] = {NAN, NAN, NAN};
    getloadavg(la0, 3);
    if (gpu)
        printf("backend %s, fp16 tensors in device memory; peak for %%peak: %.1f dense fp16 "
               "TFLOP/s; PyTorch: %s\n",
               be->name, peak, cp ? py : "not installed");
    else
        printf("backend %s, %d threads; PyTorch: %s; load average at the start: %.2f %.2f %.2f\n",
               be->name, be->n_threads, cp ? py : "not installed", la0[0], la0[1], la0[2]);
    const struct {
        int h, w;
        const char *name;
    } lat[] = {{64, 64, "64x64 latent (512x512)"}, {136, 128, "136x128 latent (1088x1024)"}};
    const int batches[] = {1, 2, 8};
    int n_b = gpu ? 3 : 1;
    enum { MAX_SECT = 6 };
    int first[MAX_SECT + 1] = {0}, n_sect = 0;
    char sect_name[MAX_SECT][64];
    for (int l = 0; l < (quick ? 1 : 2); l++)
        for (int bi = 0; bi < n_b; bi++) {
            size_t mark = nd_arena_mark(&arena), dmark = nd_arena_mark(&dev);
            int r0 = n_rows;
            first[n_sect] = r0;
            if (gpu)
                snprintf(sect_name[n_sect], sizeof sect_name[0], "%s, batch %d", lat[l].name,
                         batches[bi]);
            else
                snprintf(sect_name[n_sect], sizeof sect_name[0], "%s", lat[l].name);
            n_sect++;
            build_rows(lat[l].h, lat[l].w, l == 1, batches[bi]);
            if (gpu) {
                to_device(be, &dev, r0, n_rows);
                nd_arena_reset(&arena, mark); /* the host copies are done with */
            }
            const char *only = getenv("ND_BENCH_ONLY"); /* rows whose label has it */
            for (int r = r0; r < n_rows; r++) {
                if (only && !strstr(rows[r].label, only)) {
                    rows[r].ms = rows[r].torch_ms = NAN;
                    continue;
                }
                time_row(be, &rows[r], r, cp);
                fprintf(stderr, "  %-32s %9.3f ms  torch %9.3f ms\n", rows[r].label, rows[r].ms,
                        rows[r].torch_ms);
            }
            nd_arena_reset(&arena, mark);
            nd_arena_reset(&dev, dmark);
        }
    first[n_sect] = n_rows;
    if (cp)
        coproc_close(cp);
    for (int l = 0; l < n_sect; l++) {
        printf("\n%s\n", sect_name[l]);
        if (gpu)
            printf("%-31s %-28s %9s %8s %6s %10s %8s\n", "op", "shape", "ms", "TFLOP/s", "%peak",
                   "torch ms", "speedup");
        else
            printf("%-31s %-28s %10s %9s %10s %8s %8s\n", "op", "shape", "ms", "GFLOP/s",
                   "torch ms", "speedup", "best/best");
        for (int r = first[l]; r < first[l + 1]; r++) {
            const row *w = &rows[r];
            if (gpu)
                printf("%-31s %-28s %9.4f %8.2f %5.1f%% ", w->label, w->shape, w->ms,
                       w->flops / (w->ms * 1e9), 100.0 * w->flops / (w->ms * 1e9) / peak);
            else
                printf("%-31s %-28s %10.3f %9.1f ", w->label, w->shape, w->ms,
                       w->flops / (w->ms * 1e6));
            if (!cp)
                printf("%10s %8s\n", "n/a", "n/a");
            else if (isnan(w->torch_ms))
                printf("%10s %8s\n", "failed", "n/a");
            else if (gpu)
                printf("%10.4f %7.2fx\n", w->torch_ms, w->torch_ms / w->ms);
            else
                printf("%10.3f %7.2fx %7.2fx\n", w->torch_ms, w->torch_ms / w->ms,
                       w->torch_best_ms / w->best_ms);
        }
    }
    if (!cp)
        printf("\nPyTorch: not installed (set ND_PYTHON to a python that can import torch)\n");
    if (gpu) {
        printf("\nspeedup = torch ms / our ms (> 1: we are faster); medians of 3-15 samples, a "
               "sample = the time per run of a burst of back-to-back runs (~10 ms) ended by a "
               "stream sync, C and PyTorch samples interleaved; PyTorch fp16 on the same GPU: "
               "attention = F.scaled_dot_product_attention, conv = cuDNN (benchmark mode); "
               "TFLOP/s counts 2 per multiply-add, 1 per output element for memory-bound ops\n");
        nd_backend_arena_free(be, &dev);
    } else {
        double la[3] = {NAN, NAN, NAN};
        getloadavg(la, 3);
        printf("\nload average at the end: %.2f %.2f %.2f (%ld cores online)\n", la[0], la[1],
               la[2], sysconf(_SC_NPROCESSORS_ONLN));
        printf("\nspeedup = torch ms / our ms (> 1: we are faster); medians of 3-15 samples, a sample = the time per run of a burst of back-to-back runs (~10 ms, after one untimed run), C and PyTorch samples interleaved with 20 ms between them (OpenMP spin-waits die down); best/best = ratio of the fastest runs; "
               "GFLOP/s counts 2 per multiply-add, 1 per output element for memory-bound ops\n");
    }
    nd_backend_close(be);
    nd_arena_free(&arena);
    return 0;
}
