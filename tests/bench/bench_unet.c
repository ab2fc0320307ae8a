/* tests/bench/bench_unet.c - one SD1.5 UNet step (and one ControlNet eval) at
 * full size on the CPU, with random weights made here from the committed
 * manifests (never committed; f16 files in a temporary folder, deleted after,
 * loaded as f32), side by side with diffusers on PyTorch CPU on the SAME
 * weights and inputs (tests/bench/bench_unet_torch.py as a coprocess: each of
 * our runs is followed by one of its runs, so both see the same load; the two
 * hold their f32 models at once, ~11 GB at 64x64; see ND_BENCH_SEQUENTIAL). Reports seconds
 * per eval (best of ND_BENCH_REPS), the activation arena (the model's own
 * sizing pass), peak RSS during the runs (high-water mark reset per shape)
 * and diffusers' max rel. error against our eps. Memory: both sides hold the
 * UNet + ControlNet only, as f32 (our loader leaves the file's VAE and CLIP
 * out and drops the f16 file's pages as it converts); sd.cpp holds its whole
 * pipeline and its peak is the whole process's (load, CLIP, VAE decode too).
 *   ND_BENCH_SHAPES="64x64x1 136x128x1 64x64x4"  (latent HxWxbatch; default 64x64x1;
 *                                              BENCH_FULL=1: 64x64 and 136x128, batch 1 and 4;
 *                                              136x128x4: ~1.9 GB of our activations)
 *   ND_BENCH_BACKEND=cpu                       (or cpu_ref)
 *   ND_BENCH_CONTROL=0                         (skip the ControlNet)
 *   ND_BENCH_REPS=2                            (timed runs per shape, each side)
 *   ND_BENCH_SEQUENTIAL=1                      (per shape: ours, our model freed, then
 *                                              diffusers alone; 0: always alternate; unset:
 *                                              sequential where both would not fit in
 *                                              MemAvailable; the table's mode column)
 *   ND_PYTHON=/work/venv/bin/python            (PyTorch + diffusers; default python3;
 *                                              the peer is skipped, and says so, without them)
 *   SDCPP=/path/to/sd-cli                      (stable-diffusion.cpp, built outside the
 *                                              repository: txt2img on the same weight files
 *                                              at cfg 1 (one UNet + ControlNet eval per step),
 *                                              SDCPP_STEPS=2 steps, SDCPP_ARGS="--type f32"; the
 *                                              last step's time from its progress bar (the first
 *                                              one also loads the weights); B images are sampled
 *                                              one after another; a shape whose time, estimated
 *                                              from the same latent at a smaller batch, is over
 *                                              SDCPP_MAX_S=900 s is skipped and says so. -W/-H are
 *                                              the latent's x8 (136x128: -H 1088 -W 1024).
 *                                              Timing only: its noise and prompt are its own.) */
#include "codec/codec.h"
#include "kernels/ops.h"
#include "model/sd.h"
#include "weights/weights.h"
#include "tests/proc_status.h"
#include "tests/bench/random_sd15.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static long rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

/* Peak RSS per shape: reset the kernel's high-water mark, read VmHWM after. */
static void peak_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

/* A "Key: N kB" line of /proc/self/status in MB, or -1. */
static long status_mb(const char *key)
{
    long kb = nd_proc_status_kb(key);
    return kb >= 0 ? kb / 1024 : -1;
}

static long peak_mb(void)
{
    long hwm = status_mb("VmHWM");
    return hwm >= 0 ? hwm : rss_mb();
}

#define DIE(...)                                                              \
    do {                                                                      \
        fprintf(stderr, __VA_ARGS__);                                         \
        fputc('\n', stderr);                                                  \
        rc = 1;                                                               \
        goto out;                                                             \
    } while (0)

#define MAX_SHAPES 8
typedef struct {
    char tag[32];
    int H, W, B;
    double unet, cn;     /* best seconds, ours */
    long peak;           /* MB */
    double p_unet, p_cn, p_peak, p_err; /* diffusers; p_unet < 0: no result */
    double s_step, s_peak;               /* sd.cpp; s_step < 0: no result */
    bool seq;            /* ours and diffusers one after another, not alternating */
    bool s_fail;         /* sd.cpp failed (or was skipped for a failure) here */
} shape_res;

/* The inputs and our eps for the peer: DIR/io_TAG.safetensors. */
static int save_io(const char *dir, const char *tag, const nd_tensor *const *t,
                   const char *const *names, int n)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/io_%s.safetensors", dir, tag);
    nd_st_writer *w = nd_st_writer_new();
    nd_err e;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        int64_t sh[4];
        for (int d = 0; d < t[i]->ndim; d++)
            sh[d] = t[i]->shape[d];
        rc = nd_st_writer_add(w, names[i], ND_WDT_F32, t[i]->ndim, sh, t[i]->data, &e) ? -1 : 0;
    }
    if (!rc && nd_st_writer_save(w, path, &e))
        rc = -1;
    if (rc)
        fprintf(stderr, "%s: %s\n", path, e.msg);
    nd_st_writer_free(w);
    return rc;
}

/* diffusers as a coprocess (bench_unet_torch.py --serve): each of our runs is
 * followed by one of its runs on the same inputs, so both are timed under the
 * same load on this shared machine. */
typedef struct {
    pid_t pid;
    FILE *to, *from;
} peer;

static bool peer_start(peer *c, const char *dir, int threads)
{
    const char *py = getenv("ND_PYTHON");
    if (!py || !*py)
        py = "python3";
    char cmd[2048], line[256];
    snprintf(cmd, sizeof cmd, "exec %s tests/bench/bench_unet_torch.py %s %d --serve", py, dir,
             threads);
    printf("diffusers peer: %s\n", cmd);
    fflush(stdout);
    int in[2], out[2];
    memset(c, 0, sizeof *c);
    if (pipe(in) || pipe(out))
        return false;
    c->pid = fork();
    if (c->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    c->to = fdopen(in[1], "w");
    c->from = fdopen(out[0], "r");
    if (c->pid > 0 && c->to && c->from && fgets(line, sizeof line, c->from) &&
        !strncmp(line, "ready", 5))
        return true;
    int st = 0;
    if (c->to)
        fclose(c->to);
    if (c->from)
        fclose(c->from);
    if (c->pid > 0)
        waitpid(c->pid, &st, 0);
    printf("diffusers peer: skipped (exit %d; PyTorch + diffusers in ND_PYTHON=%s?)\n",
           WIFEXITED(st) ? WEXITSTATUS(st) : st, py);
    memset(c, 0, sizeof *c);
    return false;
}

/* Sends "what tag", reads the answer line into line. */
static bool peer_ask(peer *c, const char *what, const char *tag, char *line, size_t n)
{
    if (!c->to)
        return false;
    fprintf(c->to, "%s %s\n", what, tag);
    fflush(c->to);
    return fgets(line, (int)n, c->from) != NULL;
}

static void peer_stop(peer *c)
{
    if (!c->to)
        return;
    fclose(c->to);
    fclose(c->from);
    waitpid(c->pid, NULL, 0);
    memset(c, 0, sizeof *c);
}

/* stable-diffusion.cpp's CLI on the same files; fills s_step, s_peak. */
static void run_sdcpp(const char *dir, int threads, shape_res *r, int n)
{
    const char *sd = getenv("SDCPP"), *args = getenv("SDCPP_ARGS"), *st = getenv("SDCPP_STEPS");
    if (!sd || !*sd) {
        printf("stable-diffusion.cpp peer: skipped (set SDCPP=/path/to/sd-cli)\n");
        return;
    }
    int steps = st && atoi(st) > 0 ? atoi(st) : 2;
    bool timed = access("/usr/bin/time", X_OK) == 0;
    const char *mx = getenv("SDCPP_MAX_S");
    double max_s = mx && atof(mx) > 0 ? atof(mx) : 900;
    for (int i = 0; i < n; i++) {
        /* its images are sampled one by one: a latent size it has done at a
         * smaller batch tells how long this one would take */
        double est = -1;
        bool failed = false; /* the same latent failed at a smaller batch: so would this */
        for (int j = 0; j < i; j++)
            if (r[j].H == r[i].H && r[j].W == r[i].W) {
                if (r[j].s_step > 0)
                    est = r[j].s_step / r[j].B * r[i].B * (steps + 1);
                failed |= r[j].s_fail && r[j].B <= r[i].B;
            }
        if (failed) {
            printf("  sd.cpp %s: skipped (failed at %dx%d with a smaller batch)\n", r[i].tag, r[i].H,
                   r[i].W);
            r[i].s_fail = true;
            continue;
        }
        if (est > max_s) {
            printf("  sd.cpp %s: skipped (~%.0f s estimated from %dx%d at a smaller batch, over "
                   "SDCPP_MAX_S=%.0f)\n", r[i].tag, est, r[i].H, r[i].W, max_s);
            fflush(stdout);
            continue;
        }
        /* a control image of the hint's size (sd.cpp reads images, not tensors) */
        int w = r[i].W * 8, h = r[i].H * 8;
        char png[1024], cmd[4096], line[1024];
        snprintf(png, sizeof png, "%s/control.png", dir);
        uint8_t *rgb = malloc((size_t)w * (size_t)h * 3);
        uint64_t s = 1234567;
        for (size_t j = 0; rgb && j < (size_t)w * (size_t)h * 3; j++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            rgb[j] = (uint8_t)(s >> 56);
        }
        nd_err e;
        if (!rgb || nd_png_write(png, rgb, w, h, &e)) {
            free(rgb);
            printf("stable-diffusion.cpp peer: could not write %s\n", png);
            return;
        }
        free(rgb);
        snprintf(cmd, sizeof cmd,
                 "%s%s -m %s/unet.safetensors --control-net %s/cn.safetensors --control-image %s "
                 "-W %d -H %d --steps %d --cfg-scale 1 -b %d -t %d -s 42 --sampling-method euler "
                 "-p 'pixelated network data' -o %s/sdcpp.png %s 2>&1",
                 timed ? "/usr/bin/time -f 'ND_MAXRSS_KB %M' " : "", sd, dir, dir, png, w, h, steps,
                 r[i].B, threads, dir, args ? args : "--type f32");
        printf("stable-diffusion.cpp peer: %s\n", cmd);
        fflush(stdout);
        FILE *p = popen(cmd, "r");
        /* its progress bar gives each step's seconds ("\r|===| k/n - 12.3s/it"): the last
         * step of each image is past the lazy weight loading of its first step */
        double total = 0, v;
        long kb = -1;
        int images = 0;
        while (p && fgets(line, sizeof line, p)) {
            for (const char *q = line; (q = strstr(q, " - ")) != NULL; q += 3) {
                const char *b = q;
                while (b > line && b[-1] != ' ' && b[-1] != '|')
                    b--;
                int k, nn;
                char unit[8];
                if (sscanf(b, "%d/%d - %lf%7[a-z/]", &k, &nn, &v, unit) == 4 && k == nn &&
                    nn == steps && (!strcmp(unit, "s/it") || !strcmp(unit, "it/s")) && v > 0)
                    total += strcmp(unit, "s/it") ? 1.0 / v : v, images++;
            }
            sscanf(line, "ND_MAXRSS_KB %ld", &kb);
        }
        int rc = p ? pclose(p) : -1;
        snprintf(png, sizeof png, "%s/sdcpp.png", dir);
        unlink(png);
        for (int b = 0; b < r[i].B; b++) { /* a batch's images: sdcpp_0.png ... */
            snprintf(png, sizeof png, "%s/sdcpp_%d.png", dir, b);
            unlink(png);
        }
        snprintf(png, sizeof png, "%s/control.png", dir);
        unlink(png);
        if (rc != 0 || images != r[i].B) {
            /* the shell gives a killed child as 128 + signal: 137 is SIGKILL, what the OOM
             * killer sends (sd.cpp without --diffusion-fa holds the whole score matrix:
             * 23 GB at 136x128) */
            int ex = rc > 0 && WIFEXITED(rc) ? WEXITSTATUS(rc) : rc;
            printf("  sd.cpp %s: failed (exit %d%s, %d of %d images sampled)\n", r[i].tag, ex,
                   ex == 137 ? ": killed, likely out of memory" : "", images, r[i].B);
            r[i].s_fail = true;
            continue;
        }
        r[i].s_step = total;
        r[i].s_peak = kb >= 0 ? kb / 1024.0 : -1;
        printf("  sd.cpp %s: %.2f s per step (unet + controlnet, %d image%s), peak RSS %.0f MB\n",
               r[i].tag, r[i].s_step, r[i].B, r[i].B > 1 ? "s one by one" : "", r[i].s_peak);
        fflush(stdout);
    }
}

static void table(const shape_res *r, int n, bool control, const char *be, int threads, int reps)
{
    printf("\nSD1.5 %s, one step, random weights (same files both sides), %s %d threads, best of %d\n",
           control ? "UNet + ControlNet" : "UNet", be, threads, reps);
    printf("%-10s | %-4s | %-30s | %-30s | %-7s | %-17s | %-20s | %s\n", "latent xB", "mode",
           "netdiffd unet+cn=s  peak MB", "diffusers unet+cn=s peak MB", "speedup",
           "max rel err (eps)", "sd.cpp s/step  peak MB", "speedup");
    for (int i = 0; i < n; i++) {
        char ours[64], theirs[64] = "-", sp[16] = "-", er[32] = "-", sdc[48] = "-", sp2[16] = "-";
        if (r[i].s_fail)
            snprintf(sdc, sizeof sdc, "failed (see above)");
        if (r[i].s_step >= 0) {
            snprintf(sdc, sizeof sdc, "%.2f  %.0f", r[i].s_step, r[i].s_peak);
            snprintf(sp2, sizeof sp2, "%.2fx", r[i].s_step / (r[i].unet + r[i].cn));
        }
        snprintf(ours, sizeof ours, "%.2f+%.2f=%.2f  %ld", r[i].unet, r[i].cn, r[i].unet + r[i].cn,
                 r[i].peak);
        if (r[i].p_unet >= 0) {
            snprintf(theirs, sizeof theirs, "%.2f+%.2f=%.2f  %.0f", r[i].p_unet, r[i].p_cn,
                     r[i].p_unet + r[i].p_cn, r[i].p_peak);
            snprintf(sp, sizeof sp, "%.2fx", (r[i].p_unet + r[i].p_cn) / (r[i].unet + r[i].cn));
            snprintf(er, sizeof er, "%.3g", r[i].p_err);
        }
        printf("%-10s | %-4s | %-30s | %-30s | %-7s | %-17s | %-20s | %s\n", r[i].tag,
               r[i].seq ? "seq" : "alt", ours, theirs, sp, er, sdc, sp2);
    }
    printf("mode: alt = each of our runs followed by one of diffusers' (both models held); seq = "
           "ours, then diffusers alone (memory)\n");
}

/* MemAvailable of /proc/meminfo in MB, or -1. */
static long mem_available_mb(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb >= 0 ? kb / 1024 : -1;
}

/* VmRSS of process PID in MB (0 when unreadable). */
static long pid_rss_mb(pid_t pid)
{
    char path[64], line[256];
    long kb = 0;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb / 1024;
}

/* Whether this shape runs the two sides one after another (ours, then
 * diffusers alone) instead of alternating with both models held.
 * ND_BENCH_SEQUENTIAL=1 / 0 forces it; else it is chosen when both sides'
 * estimated peaks would not fit in what the machine has: ours is the f32
 * weights plus the measured arena and workspace; diffusers' the same weights,
 * twice our activations (a guess: no liveness-planned arena there) and 1 GB of
 * Python and PyTorch. What both already hold counts as available. */
static bool sequential(const peer *py, bool peer_gone, size_t w_bytes, size_t act_bytes)
{
    const char *sq = getenv("ND_BENCH_SEQUENTIAL");
    if (sq && *sq)
        return strcmp(sq, "0") != 0;
    if (peer_gone)
        return false;
    long avail = mem_available_mb();
    if (avail < 0)
        return false;
    long held = status_mb("VmRSS") + (py->pid > 0 ? pid_rss_mb(py->pid) : 0);
    double need = (2.0 * w_bytes + 3.0 * act_bytes) / (1 << 20) + 1024 + 1024 /* margin */;
    printf("memory: both sides need ~%.0f MB, %ld MB available (+ %ld MB held now)\n", need, avail,
           held);
    return need > (double)(avail + held);
}

/* The f32 bytes of the UNet and the ControlNet. */
static size_t weight_bytes(const nd_weights *w)
{
    const nd_weights_report *r = nd_weights_get_report(w);
    return (size_t)(r->comp[ND_WC_UNET].n_params + r->comp[ND_WC_CONTROLNET].n_params) * 4;
}

int main(void)
{
    char dir[] = "/tmp/nd_bench_unet_XXXXXX", up[600], cp[600];
    if (!mkdtemp(dir))
        return 1;
    snprintf(up, sizeof up, "%s/unet.safetensors", dir);
    snprintf(cp, sizeof cp, "%s/cn.safetensors", dir);
    int rc = 0, n_shapes = 0, threads = 0, cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    shape_res res_[MAX_SHAPES];
    const char *shapes = getenv("ND_BENCH_SHAPES");
    const char *full = getenv("BENCH_FULL");
    const char *bename = getenv("ND_BENCH_BACKEND");
    const char *ctl = getenv("ND_BENCH_CONTROL");
    const char *reps_s = getenv("ND_BENCH_REPS");
    int reps = reps_s && atoi(reps_s) > 0 ? atoi(reps_s) : 2;
    bool control = !ctl || strcmp(ctl, "0");
    if (!bename)
        bename = "cpu";
    nd_weights *w = NULL;
    nd_backend *be = NULL;
    nd_unet *u = NULL;
    nd_controlnet *cn = NULL;
    nd_err e = {{0}};
    peer py = {0};
    bool peer_gone = false; /* PyTorch or diffusers missing: not tried again */
    double t0 = now();
    if (make_file(MAN "sd15_ldm.json", "", up) ||
        (control && make_file(MAN "controlnet_canny_ldm.json", "control_model.", cp)))
        DIE("could not write the random weights");
    printf("random SD1.5 (UNet, VAE, CLIP)%s (f16 files from the manifests) written in %.1f s\n",
           control ? " + ControlNet" : "", now() - t0);
    nd_weights_params p;
    nd_weights_params_init(&p);
    p.controlnet = control ? cp : NULL;
    /* the step needs the UNet and ControlNet only (diffusers' side loads no more) */
    p.skip = 1u << ND_WC_VAE | 1u << ND_WC_TEXT;
    nd_backend_config cfg = {0, 0, NULL};
    char list[256];
    snprintf(list, sizeof list, "%s",
             shapes && *shapes ? shapes
             : full && !strcmp(full, "1") ? "64x64x1 136x128x1 64x64x4 136x128x4"
                                           : "64x64x1");
    for (char *tok = strtok(list, " ,"); tok; tok = strtok(NULL, " ,")) {
        int H, W, B;
        if (sscanf(tok, "%dx%dx%d", &H, &W, &B) != 3 || n_shapes == MAX_SHAPES)
            DIE("bad shape %s (or more than %d)", tok, MAX_SHAPES);
        shape_res *r = &res_[n_shapes++];
        memset(r, 0, sizeof *r);
        snprintf(r->tag, sizeof r->tag, "%dx%dx%d", H, W, B);
        r->H = H, r->W = W, r->B = B, r->p_unet = -1, r->s_step = -1;
        if (!w) {
            t0 = now();
            if (nd_weights_load(up, &p, &w, &e))
                DIE("load: %s", e.msg);
            printf("loaded as f32 in %.1f s\n", now() - t0);
        }
        size_t ub = 0, uws = 0, cb = 0, cws = 0;
        /* measuring needs a backend for workspace sizes: open a small one first */
        if (!be) {
            nd_backend_config c0 = {0, 1 << 20, NULL};
            if (nd_backend_open(bename, &c0, &be, &e))
                DIE("backend: %s", e.msg);
        }
        nd_unet_free(u);
        nd_controlnet_free(cn);
        u = NULL, cn = NULL;
        if (nd_unet_new(w, be, &u, &e) || (control && nd_controlnet_new(w, be, &cn, &e)))
            DIE("model: %s", e.msg);
        if (nd_unet_measure(u, B, H, W, 77, control, &ub, &uws, &e) ||
            (control && nd_controlnet_measure(cn, B, H, W, 77, &cb, &cws, &e)))
            DIE("measure: %s", e.msg);
        size_t ws = uws > cws ? uws : cws;
        /* each measure counts the inputs (x, t, ctx, residuals) and its own
         * run on top; they run one after the other on the same inputs, so
         * one arena holds the larger plus what only the other has (hint, out) */
        int f8 = control ? nd_controlnet_hint_factor(cn) : 8;
        size_t arena = (ub > cb ? ub : cb) + (size_t)B * 4 * H * W * 4 +
                       (control ? (size_t)B * 3 * H * f8 * W * f8 * 4 : 0) + 2 * ND_ARENA_ALIGN;
        nd_unet_free(u);
        nd_controlnet_free(cn);
        u = NULL, cn = NULL;
        nd_backend_close(be);
        be = NULL;
        r->seq = sequential(&py, peer_gone, weight_bytes(w), arena + ws);
        if (r->seq)
            peer_stop(&py);
        else if (!py.to && !peer_gone) /* the same thread count as our backend */
            peer_gone = !peer_start(&py, dir, cores);
        printf("%s: %s\n", r->tag,
               r->seq ? "sequential (ours, then diffusers alone)"
                      : "alternating (each of our runs, then one of diffusers')");
        cfg.workspace_bytes = ws + (1 << 20);
        if (nd_backend_open(bename, &cfg, &be, &e))
            DIE("backend: %s", e.msg);
        threads = be->n_threads;
        if (nd_unet_new(w, be, &u, &e) || (control && nd_controlnet_new(w, be, &cn, &e)))
            DIE("model: %s", e.msg);
        peak_reset();
        nd_arena a;
        if (nd_arena_init(&a, arena, &e))
            DIE("arena: %s", e.msg);
        nd_tensor x, t, ctx, hint, out, res[16];
        const nd_tensor *rp[16];
        int64_t sx[4] = {B, 4, H, W}, st[1] = {B}, sc[3] = {B, 77, nd_unet_context_dim(u)},
                sh[4] = {B, 3, H * f8, W * f8};
        if (nd_arena_tensor(&a, ND_F32, 4, sx, &x, &e) || nd_arena_tensor(&a, ND_F32, 1, st, &t, &e) ||
            nd_arena_tensor(&a, ND_F32, 3, sc, &ctx, &e) || nd_arena_tensor(&a, ND_F32, 4, sx, &out, &e))
            DIE("arena: %s", e.msg);
        fill(&x, 1, 1.0f);
        fill(&ctx, 2, 1.0f);
        for (int i = 0; i < B; i++)
            ((float *)t.data)[i] = 500.0f;
        nd_unet_input in = {.x = &x, .t = &t, .ctx = &ctx};
        if (control) {
            if (nd_arena_tensor(&a, ND_F32, 4, sh, &hint, &e))
                DIE("arena: %s", e.msg);
            fill(&hint, 3, 0.5f);
            int n = nd_controlnet_n_down(cn);
            for (int i = 0; i <= n; i++) {
                int64_t s4[4];
                nd_controlnet_res_shape(cn, i, B, H, W, s4);
                if (nd_arena_tensor(&a, ND_F32, 4, s4, &res[i], &e))
                    DIE("arena: %s", e.msg);
                rp[i] = &res[i];
            }
            in.down_res = rp;
            in.mid_res = &res[n];
        }
        r->unet = r->cn = INFINITY;
        const nd_tensor *io[] = {&x, &t, &ctx, &out, &hint};
        const char *names[] = {"x", "t", "ctx", "eps", "hint"};
        char line[256];
        for (int k = 0; k < reps; k++) {
            if (control) {
                nd_controlnet_input ci = {.x = &x, .t = &t, .ctx = &ctx, .hint = &hint, .scale = 1.0f};
                double c0 = now();
                if (nd_controlnet_run(cn, &ci, &a, res, &res[nd_controlnet_n_down(cn)], &e))
                    DIE("controlnet: %s", e.msg);
                r->cn = fmin(r->cn, now() - c0);
            }
            double u0 = now();
            if (nd_unet_run(u, &in, &a, &out, &e))
                DIE("unet: %s", e.msg);
            double tu = now() - u0;
            r->unet = fmin(r->unet, tu);
            /* the peer's turn, right after ours, on the same inputs */
            if (k == 0 && save_io(dir, r->tag, io, names, control ? 5 : 4))
                DIE("could not write the peer's inputs");
            printf("  %s run %d: netdiffd unet %.2f s", r->tag, k + 1, tu);
            if (!r->seq && peer_ask(&py, "run", r->tag, line, sizeof line))
                printf("; diffusers unet, controlnet s: %s", strchr(line, ' ') ? strchr(line, ' ') + 1 : line);
            else
                printf("\n");
            fflush(stdout);
        }
        if (!control)
            r->cn = 0;
        r->peak = peak_mb();
        const float *o = out.data;
        double sum = 0;
        int bad = 0;
        for (int64_t i = 0; i < nd_tensor_numel(&out); i++) {
            sum += fabs(o[i]);
            bad += !isfinite(o[i]);
        }
        printf("latent %dx%d batch %d on %s (%d threads): unet %.2f s/step", H, W, B, be->name,
               be->n_threads, r->unet);
        if (control)
            printf(", controlnet %.2f s", r->cn);
        /* file-backed: what is left of the f16 file's pages after the f32 conversion */
        printf("; arena %.0f MB (measured: unet %.0f, controlnet %.0f), workspace %.0f MB, peak RSS "
               "%ld MB (now: anon %ld MB, file %ld MB); mean|eps| %.3g%s\n",
               arena / 1e6, ub / 1e6, cb / 1e6, cfg.workspace_bytes / 1e6, r->peak,
               status_mb("RssAnon"), status_mb("RssFile"), sum / (double)nd_tensor_numel(&out),
               bad ? " NON-FINITE" : "");
        fflush(stdout);
        if (a.peak > arena)
            DIE("arena peak %zu above the measured %zu", a.peak, arena);
        nd_arena_free(&a);
        if (r->seq && !peer_gone) { /* ours gone, then diffusers alone */
            nd_controlnet_free(cn);
            nd_unet_free(u);
            nd_backend_close(be);
            nd_weights_free(w);
            cn = NULL, u = NULL, be = NULL, w = NULL;
            peer_gone = !peer_start(&py, dir, cores);
            for (int k = 0; k < reps && py.to; k++)
                if (peer_ask(&py, "run", r->tag, line, sizeof line))
                    printf("  %s diffusers run %d: unet, controlnet s: %s", r->tag, k + 1,
                           strchr(line, ' ') ? strchr(line, ' ') + 1 : line);
        }
        if (peer_ask(&py, "end", r->tag, line, sizeof line) &&
            sscanf(line, "%*s %lf %lf %lf %lf", &r->p_unet, &r->p_cn, &r->p_peak, &r->p_err) != 4)
            r->p_unet = -1;
        if (r->p_unet >= 0) /* the table comes at the end: each shape's row as it is done */
            printf("  %s diffusers: unet %.2f s, controlnet %.2f s, peak RSS %.0f MB, max rel err "
                   "%.3g (netdiffd %.2f s, peak %ld MB: %.2fx)\n", r->tag, r->p_unet, r->p_cn,
                   r->p_peak, r->p_err, r->unet + r->cn, r->peak,
                   (r->p_unet + r->p_cn) / (r->unet + r->cn));
        fflush(stdout);
        if (r->seq)
            peer_stop(&py);
    }
    peer_stop(&py);
    nd_controlnet_free(cn);
    nd_unet_free(u);
    nd_backend_close(be);
    nd_weights_free(w);
    cn = NULL, u = NULL, be = NULL, w = NULL;
    if (!control)
        unlink(cp);
    if (control)
        run_sdcpp(dir, threads, res_, n_shapes);
    table(res_, n_shapes, control, bename, threads, reps);
out:
    peer_stop(&py);
    nd_controlnet_free(cn);
    nd_unet_free(u);
    nd_backend_close(be);
    nd_weights_free(w);
    for (int i = 0; i < n_shapes; i++) {
        char io[2048];
        snprintf(io, sizeof io, "%s/io_%s.safetensors", dir, res_[i].tag);
        unlink(io);
    }
    unlink(up);
    unlink(cp);
    rmdir(dir);
    return rc;
}
