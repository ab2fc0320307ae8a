/* tests/bench/bench_weights_load.c - load time and peak RSS for a full-size
 * SD1.5-shaped LDM file (f32, random values, made here and deleted after),
 * beside the safetensors Python package loading the same file.
 * Each load runs in a fresh child process after the file's pages were
 * dropped from the page cache (fsync + POSIX_FADV_DONTNEED), so it reads
 * from disk; RSS is the child's peak (ru_maxrss). */
#include "weights/weights.h"
#include "tests/bench/random_sd15.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MANIFEST "tests/fixtures/weights/manifests/sd15_ldm.json"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void drop_cache(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

/* our loader: open + validate + map every tensor, then touch every page */
static int load_ours(const char *path)
{
    double t0 = now();
    nd_weights *w;
    nd_err e;
    if (nd_weights_load(path, NULL, &w, &e)) {
        fprintf(stderr, "load: %s\n", e.msg);
        return 1;
    }
    double t1 = now();
    volatile float sum = 0;
    size_t owned = 0;
    for (size_t i = 0; i < nd_weights_count(w); i++) {
        const nd_wtensor *t = nd_weights_at(w, i);
        const float *d = t->data;
        owned += t->owned;
        for (uint64_t k = 0; k < t->numel; k += 1024)
            sum += d[k];
    }
    double t2 = now();
    printf("  netdiffd: open+map %.3f s, touch all pages %.3f s, total %.3f s, copies %zu\n",
           t1 - t0, t2 - t1, t2 - t0, owned);
    fflush(stdout);
    nd_weights_free(w);
    return 0;
}

static long child_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    return ru.ru_maxrss;
}

int main(void)
{
    char path[] = "/tmp/nd_bench_sd15_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return 1;
    close(fd);
    double t0 = now();
    fflush(stdout);
    pid_t p = fork();
    if (p == 0)
        _exit(make_file_as(MANIFEST, "", ND_WDT_F32, path) ? 1 : 0);
    int status;
    waitpid(p, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status)) {
        unlink(path);
        return 1;
    }
    FILE *f = fopen(path, "rb");
    fseeko(f, 0, SEEK_END);
    double size = (double)ftello(f);
    fclose(f);
    printf("file: SD1.5 LDM layout, f32, %.2f GB (made in %.1f s)\n", size / 1e9, now() - t0);
    fflush(stdout);
    /* ours, in a child so its peak RSS is its own */
    drop_cache(path);
    long before = child_rss_kb();
    p = fork();
    if (p == 0)
        _exit(load_ours(path));
    waitpid(p, &status, 0);
    long rss = child_rss_kb();
    printf("  netdiffd: peak RSS %.2f GB (%.0f%% of file size)%s\n", rss / 1e6 * 1.024,
           100.0 * rss * 1024 / size, rss > before ? "" : " (unmeasured)");
    /* the safetensors Python package on the same file */
    const char *py = getenv("ND_PYTHON");
    if (!py)
        py = access("/work/venv/bin/python", X_OK) == 0 ? "/work/venv/bin/python" : "python3";
    drop_cache(path);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s -c \"import time,resource,sys\n"
             "try:\n from safetensors.torch import load_file\n"
             "except Exception as e:\n print('  safetensors (Python): not installed, skipped'); sys.exit(0)\n"
             "t=time.time(); sd=load_file('%s'); s=sum(float(v.view(-1)[::1024].sum()) for v in sd.values()); "
             "t2=time.time(); rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss*1024\n"
             "print('  safetensors.torch.load_file: total %%.3f s (incl. touch), peak RSS %%.2f GB (%%.0f%%%% of file size; "
             "includes the interpreter and torch)' %% (t2-t, rss/1e9, 100*rss/%f))\"",
             py, path, size);
    fflush(stdout);
    if (system(cmd) != 0)
        printf("  safetensors (Python): failed\n");
    unlink(path);
    return 0;
}
