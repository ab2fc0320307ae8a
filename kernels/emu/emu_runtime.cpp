/* kernels/emu/emu_runtime.cpp - the SIMT emulation runtime behind emu.h.
 *
 * A launch hands the grid's blocks to up to `workers` OS threads (an atomic
 * block counter). A worker runs one block at a time: every thread of the
 * block is a fiber with its own stack (hand-rolled context switch on x86-64,
 * ucontext elsewhere), and a scheduler loop resumes the fibers round-robin.
 * A fiber runs until it blocks: at __syncthreads (released when every live
 * thread of the block arrived) or at a warp collective (released when every
 * live lane in the mask arrived; its data slots are double-buffered so that
 * one barrier per collective suffices). A fiber that waits is not resumed
 * until the generation counter it waits on moves; a full round in which no
 * fiber could be resumed is a deadlock and aborts with the kernel named.
 * Exited threads count as arrived. Fiber switches are announced to
 * AddressSanitizer (start/finish_switch_fiber) and a reused stack is
 * unpoisoned, so the whole thing runs under ASan. */
#include "kernels/emu/emu.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <map>

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

__thread emu_thread_pub *emu_cur_thread;
__thread emu_block_pub *emu_cur_block;

/* ---- context switch ------------------------------------------------------------------ */

#if defined(__x86_64__)
/* emu_ctx_switch(&save_sp, new_sp): pushes the callee-saved registers, MXCSR
 * and the x87 control word, saves rsp, loads new_sp and pops the same. A new
 * fiber's stack is laid out so that the pops land in emu_ctx_entry with
 * r12 = argument, r13 = function. */
extern "C" void emu_ctx_switch(void **save_sp, void *new_sp);
extern "C" void emu_ctx_entry(void);
asm(R"(
    .text
    .globl emu_ctx_switch
    .type emu_ctx_switch,@function
emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_ctx_switch, .-emu_ctx_switch
    .globl emu_ctx_entry
    .type emu_ctx_entry,@function
emu_ctx_entry:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size emu_ctx_entry, .-emu_ctx_entry
)");
#endif

/* ---- runtime structures --------------------------------------------------------------- */

enum { MAX_THREADS = 1024, MAX_WARPS = 32 };
static const size_t STACK_BYTES = 256u << 10; /* per fiber, plus a guard page */
static const size_t SMEM_DEFAULT = 48u << 10, SMEM_OPTIN_MAX = 227u << 10;

struct emu_worker;

struct emu_fiber {
    emu_thread_pub pub; /* first: emu_cur_thread points here */
    emu_worker *w;
    void *sp;
#if !defined(__x86_64__)
    ucontext_t uc;
#endif
    char *stack_lo;
    bool done;
    const unsigned *wait_on; /* blocked while *wait_on == wait_val */
    unsigned wait_val;
    void *asan_fake;
};

struct emu_warp {
    unsigned live;     /* lanes that exist and have not exited */
    unsigned arrived;  /* lanes waiting in the current collective */
    unsigned mask;     /* the current collective's mask */
    unsigned gen;      /* bumped at every release */
    unsigned got[2];   /* lanes whose slot is valid, per buffer */
    unsigned char slot[2][32][EMU_SLOT];
};

struct emu_worker {
    emu_block_pub blk; /* first: emu_cur_block points here */
    emu_fiber *fibers;
    char *stacks;
    int cap; /* fibers whose stacks are mapped */
    void *sched_sp;
#if !defined(__x86_64__)
    ucontext_t sched_uc;
#endif
    const void *sched_bottom;
    size_t sched_size;
    void *sched_fake;
    emu_fiber *cur;
    int nthreads, nlive;
    unsigned bar_count, bar_gen;
    bool progress;
    emu_warp warps[MAX_WARPS];
    unsigned char *smem;
    size_t smem_cap, smem_size;
    /* the launch */
    const char *name;
    void (*thunk)(void *);
    void *ctx;
};

enum { MAX_WORKERS = 8 };
static emu_worker g_workers[MAX_WORKERS];
static int g_nworkers = 0; /* 0: not set */
static cudaError_t g_last_error = cudaSuccess;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread emu_worker *t_worker;

void emu_set_workers(int n)
{
    g_nworkers = n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : n;
}

static int nworkers(void)
{
    if (!g_nworkers) {
        const char *e = getenv("ND_EMU_WORKERS");
        long n = e ? atol(e) : sysconf(_SC_NPROCESSORS_ONLN);
        emu_set_workers(n > 0 ? (int)n : 1);
    }
    return g_nworkers;
}

void emu_fatal(const char *fmt, ...)
{
    emu_worker *w = t_worker;
    fprintf(stderr, "emu: ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (w && w->name) {
        fprintf(stderr, " [kernel %s, block (%u,%u,%u)", w->name, w->blk.bid.x, w->blk.bid.y,
                w->blk.bid.z);
        if (w->cur)
            fprintf(stderr, ", thread (%u,%u,%u)", w->cur->pub.tid.x, w->cur->pub.tid.y,
                    w->cur->pub.tid.z);
        fprintf(stderr, "]");
    }
    fprintf(stderr, "\n");
    abort();
}

/* ---- fibers ---------------------------------------------------------------------------- */

static void to_scheduler(emu_fiber *f, bool exiting)
{
    emu_worker *w = f->w;
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(exiting ? NULL : &f->asan_fake, w->sched_bottom, w->sched_size);
#endif
#if defined(__x86_64__)
    emu_ctx_switch(&f->sp, w->sched_sp);
#else
    swapcontext(&f->uc, &w->sched_uc);
#endif
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(f->asan_fake, NULL, NULL);
#endif
    (void)exiting;
}

static void release_if_complete(emu_worker *w, emu_warp *wp)
{
    if (w->bar_count && w->bar_count >= (unsigned)w->nlive) {
        w->bar_count = 0;
        w->bar_gen++;
    }
    if (wp && wp->arrived) {
        unsigned need = wp->mask & wp->live;
        if ((wp->arrived & need) == need) {
            wp->got[wp->gen & 1] = wp->arrived;
            wp->arrived = 0;
            wp->gen++;
        }
    }
}

static void fiber_main(void *arg)
{
    emu_fiber *f = (emu_fiber *)arg;
    emu_worker *w = f->w;
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(NULL, &w->sched_bottom, &w->sched_size);
#endif
    w->thunk(w->ctx);
    f->done = true;
    w->nlive--;
    w->progress = true;
    emu_warp *wp = &w->warps[f->pub.warp];
    wp->live &= ~(1u << f->pub.lane);
    release_if_complete(w, wp);
    to_scheduler(f, true);
    emu_fatal("a finished fiber was resumed");
}

#if !defined(__x86_64__)
static void fiber_main_uc(unsigned lo, unsigned hi)
{
    fiber_main((void *)(((uintptr_t)hi << 32) | lo));
}
#endif

static void ensure_fibers(emu_worker *w, int n)
{
    if (n <= w->cap)
        return;
    size_t per = STACK_BYTES + 4096;
    /* mapped once for the most threads a block can have, touched lazily */
    if (!w->stacks) {
        void *m = mmap(NULL, per * MAX_THREADS, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED)
            emu_fatal("cannot map fiber stacks: %s", strerror(errno));
        w->stacks = (char *)m;
        w->fibers = (emu_fiber *)calloc(MAX_THREADS, sizeof(emu_fiber));
        if (!w->fibers)
            emu_fatal("out of memory");
        for (int i = 0; i < MAX_THREADS; i++) /* guard pages */
            mprotect(w->stacks + (size_t)i * per, 4096, PROT_NONE);
    }
    for (int i = w->cap; i < n; i++) {
        w->fibers[i].stack_lo = w->stacks + (size_t)i * per + 4096;
        w->fibers[i].w = w;
    }
    w->cap = n;
}

static void fiber_reset(emu_fiber *f)
{
    f->done = false;
    f->wait_on = NULL;
    f->asan_fake = NULL;
#ifdef EMU_ASAN
    /* frames left by the previous block's thread (it never returned) */
    __asan_unpoison_memory_region(f->stack_lo, STACK_BYTES);
#endif
#if defined(__x86_64__)
    uint64_t *top = (uint64_t *)(f->stack_lo + STACK_BYTES);
    uint64_t *sp = top - 10; /* 16-byte aligned: pops land with rsp = top - 16 */
    uint32_t ctl[2] = {0x1f80u, 0x037fu}; /* default MXCSR and x87 control word */
    memcpy(&sp[0], ctl, 8);
    sp[1] = 0;                          /* r15 */
    sp[2] = 0;                          /* r14 */
    sp[3] = (uint64_t)(uintptr_t)fiber_main; /* r13 */
    sp[4] = (uint64_t)(uintptr_t)f;     /* r12 */
    sp[5] = 0;                          /* rbx */
    sp[6] = 0;                          /* rbp */
    sp[7] = (uint64_t)(uintptr_t)emu_ctx_entry;
    sp[8] = sp[9] = 0;
    f->sp = sp;
#else
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack_lo;
    f->uc.uc_stack.ss_size = STACK_BYTES;
    f->uc.uc_link = NULL;
    uintptr_t p = (uintptr_t)f;
    makecontext(&f->uc, (void (*)(void))fiber_main_uc, 2, (unsigned)p, (unsigned)(p >> 32));
#endif
}

static void resume(emu_worker *w, emu_fiber *f)
{
    w->cur = f;
    emu_cur_thread = &f->pub;
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(&w->sched_fake, f->stack_lo, STACK_BYTES);
#endif
#if defined(__x86_64__)
    emu_ctx_switch(&w->sched_sp, f->sp);
#else
    swapcontext(&w->sched_uc, &f->uc);
#endif
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(w->sched_fake, NULL, NULL);
#endif
    w->cur = NULL;
}

/* ---- barriers ------------------------------------------------------------------------------ */

static emu_fiber *current(const char *what)
{
    emu_worker *w = t_worker;
    if (!w || !w->cur)
        emu_fatal("%s called outside a kernel", what);
    return w->cur;
}

static void block_on(emu_fiber *f, const unsigned *counter, unsigned val)
{
    f->wait_on = counter;
    f->wait_val = val;
    while (*counter == val)
        to_scheduler(f, false);
    f->wait_on = NULL;
}

void emu_syncthreads(void)
{
    emu_fiber *f = current("__syncthreads");
    emu_worker *w = f->w;
    unsigned gen = w->bar_gen;
    w->progress = true;
    w->bar_count++;
    release_if_complete(w, NULL);
    if (w->bar_gen == gen)
        block_on(f, &w->bar_gen, gen);
}

const unsigned char (*emu_warp_collective(unsigned mask, const void *in, size_t n,
                                          unsigned *got))[EMU_SLOT]
{
    emu_fiber *f = current("a warp collective");
    emu_worker *w = f->w;
    emu_warp *wp = &w->warps[f->pub.warp];
    unsigned bit = 1u << f->pub.lane;
    if (!(mask & bit))
        emu_fatal("lane %u calls a *_sync operation whose mask 0x%08x excludes it", f->pub.lane,
                  mask);
    if (wp->arrived && wp->mask != mask)
        emu_fatal("lanes of warp %u disagree on a *_sync mask (0x%08x vs 0x%08x)", f->pub.warp,
                  wp->mask, mask);
    if (n > EMU_SLOT)
        emu_fatal("warp collective of %zu bytes", n);
    unsigned gen = wp->gen, par = gen & 1;
    if (n)
        memcpy(wp->slot[par][f->pub.lane], in, n);
    wp->mask = mask;
    wp->arrived |= bit;
    w->progress = true;
    release_if_complete(w, wp);
    if (wp->gen == gen)
        block_on(f, &wp->gen, gen);
    *got = wp->got[par];
    return wp->slot[par];
}

void *emu_dynamic_smem(void)
{
    emu_worker *w = t_worker;
    if (!w || !w->cur)
        emu_fatal("dynamic shared memory used outside a kernel");
    return w->smem;
}

/* ---- blocks and launches --------------------------------------------------------------------- */

static void run_block(emu_worker *w, unsigned b)
{
    dim3 g = w->blk.gdim, bd = w->blk.bdim;
    w->blk.bid.x = b % g.x;
    w->blk.bid.y = (b / g.x) % g.y;
    w->blk.bid.z = b / (g.x * g.y);
    int n = w->nthreads;
    w->nlive = n;
    w->bar_count = 0;
    for (int i = 0; i < (n + 31) / 32; i++) {
        emu_warp *wp = &w->warps[i];
        int lanes = n - i * 32 < 32 ? n - i * 32 : 32;
        wp->live = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
        wp->arrived = 0;
        wp->mask = 0;
    }
    if (w->smem_size)
        memset(w->smem, 0xff, w->smem_size); /* uninitialised shared memory reads NaN */
    for (int i = 0; i < n; i++) {
        emu_fiber *f = &w->fibers[i];
        f->pub.tid.x = (unsigned)i % bd.x;
        f->pub.tid.y = ((unsigned)i / bd.x) % bd.y;
        f->pub.tid.z = (unsigned)i / (bd.x * bd.y);
        f->pub.linear = (unsigned)i;
        f->pub.lane = (unsigned)i % 32;
        f->pub.warp = (unsigned)i / 32;
        fiber_reset(f);
    }
    for (;;) {
        bool any = false, resumed = false;
        w->progress = false;
        for (int i = 0; i < n; i++) {
            emu_fiber *f = &w->fibers[i];
            if (f->done)
                continue;
            any = true;
            if (f->wait_on && *f->wait_on == f->wait_val)
                continue;
            resumed = true;
            resume(w, f);
        }
        if (!any)
            break;
        if (!resumed || !w->progress) {
            int waiting = 0;
            for (int i = 0; i < n; i++)
                waiting += !w->fibers[i].done;
            emu_fatal("deadlock: %d of %d threads wait at a barrier that can never complete "
                      "(%u at __syncthreads)",
                      waiting, n, w->bar_count);
        }
    }
}

struct launch_job {
    dim3 grid, block;
    size_t smem;
    const char *name;
    void (*thunk)(void *);
    void *ctx;
    unsigned nblocks;
    unsigned next; /* atomic */
};

static void *worker_run(void *arg)
{
    launch_job *j = ((launch_job **)arg)[0];
    emu_worker *w = (emu_worker *)((void **)arg)[1];
    emu_worker *saved_w = t_worker;
    emu_block_pub *saved_b = emu_cur_block;
    emu_thread_pub *saved_t = emu_cur_thread;
    t_worker = w;
    emu_cur_block = &w->blk;
    w->blk.gdim = j->grid;
    w->blk.bdim = j->block;
    w->nthreads = (int)(j->block.x * j->block.y * j->block.z);
    w->name = j->name;
    w->thunk = j->thunk;
    w->ctx = j->ctx;
    ensure_fibers(w, w->nthreads);
    if (j->smem > w->smem_cap) {
        free(w->smem);
        w->smem = (unsigned char *)aligned_alloc(128, (j->smem + 127) & ~(size_t)127);
        if (!w->smem)
            emu_fatal("out of memory for shared memory");
        w->smem_cap = j->smem;
    }
    w->smem_size = j->smem;
    for (;;) {
        unsigned b = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (b >= j->nblocks)
            break;
        run_block(w, b);
    }
    w->name = NULL;
    t_worker = saved_w;
    emu_cur_block = saved_b;
    emu_cur_thread = saved_t;
    return NULL;
}

/* per-kernel opt-in for more than 48 KiB of dynamic shared memory */
enum { MAX_ATTR = 256 };
static struct {
    const void *func;
    int max_dyn;
} g_attr[MAX_ATTR];

cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value)
{
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
        (size_t)value > SMEM_OPTIN_MAX)
        return g_last_error = cudaErrorInvalidValue;
    pthread_mutex_lock(&g_lock);
    int i = 0;
    while (i < MAX_ATTR && g_attr[i].func && g_attr[i].func != func)
        i++;
    cudaError_t r = cudaSuccess;
    if (i == MAX_ATTR)
        r = cudaErrorMemoryAllocation;
    else
        g_attr[i].func = func, g_attr[i].max_dyn = value;
    pthread_mutex_unlock(&g_lock);
    return r;
}

static size_t max_dyn_smem(const void *func)
{
    size_t r = SMEM_DEFAULT;
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_ATTR && g_attr[i].func; i++)
        if (g_attr[i].func == func)
            r = (size_t)g_attr[i].max_dyn;
    pthread_mutex_unlock(&g_lock);
    return r;
}

void emu_launch_raw(dim3 grid, dim3 block, size_t smem, cudaStream_t st, const char *name,
                    const void *func, void (*thunk)(void *), void *ctx)
{
    (void)st;
    uint64_t nt = (uint64_t)block.x * block.y * block.z;
    uint64_t nb = (uint64_t)grid.x * grid.y * grid.z;
    if (nt == 0 || nt > MAX_THREADS || block.z > 64 || nb == 0 || grid.y > 65535 ||
        grid.z > 65535 || nb > 0xffffffffu) {
        g_last_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (smem > max_dyn_smem(func)) { /* as on the GPU: too much shared memory fails */
        g_last_error = cudaErrorInvalidValue;
        return;
    }
    if (t_worker && t_worker->cur)
        emu_fatal("kernel %s launched from device code", name);
    launch_job j = {grid, block, smem, name, thunk, ctx, (unsigned)nb, 0};
    int nw = nworkers();
    if ((uint64_t)nw > nb)
        nw = (int)nb;
    pthread_mutex_lock(&g_lock); /* one launch at a time owns the workers */
    pthread_t th[MAX_WORKERS];
    void *args[MAX_WORKERS][2];
    int started = 0;
    for (int i = 1; i < nw; i++) {
        args[i][0] = &j;
        args[i][1] = &g_workers[i];
        if (pthread_create(&th[i], NULL, worker_run, args[i]) == 0)
            started = i;
        else
            break;
    }
    args[0][0] = &j;
    args[0][1] = &g_workers[0];
    worker_run(args[0]);
    for (int i = 1; i <= started; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_unlock(&g_lock);
}

/* ---- host runtime shim ---------------------------------------------------------------------------- */

/* Emulated device memory is host memory, so a kernel handed a host pointer
 * would work here and fault on a GPU. Every cudaMalloc block is recorded, and
 * the emu backend refuses an op whose tensors lie outside them
 * (emu_is_device): the emulator then catches what a GPU would. */
static pthread_mutex_t g_mem_lock = PTHREAD_MUTEX_INITIALIZER;
static std::map<uintptr_t, size_t> g_blocks; /* start -> bytes */
static size_t g_mem_bytes;

cudaError_t cudaMalloc(void **p, size_t n)
{
    size_t bytes = (n + 255) & ~(size_t)255;
    *p = aligned_alloc(256, bytes ? bytes : 256);
    if (!*p)
        return g_last_error = cudaErrorMemoryAllocation;
    pthread_mutex_lock(&g_mem_lock);
    g_blocks[(uintptr_t)*p] = n;
    g_mem_bytes += n;
    pthread_mutex_unlock(&g_mem_lock);
    return cudaSuccess;
}
cudaError_t cudaFree(void *p)
{
    if (!p)
        return cudaSuccess;
    pthread_mutex_lock(&g_mem_lock);
    auto it = g_blocks.find((uintptr_t)p);
    bool known = it != g_blocks.end();
    if (known) {
        g_mem_bytes -= it->second;
        g_blocks.erase(it);
    }
    pthread_mutex_unlock(&g_mem_lock);
    if (!known)
        return g_last_error = cudaErrorInvalidValue; /* as the driver: not ours */
    free(p);
    return cudaSuccess;
}
bool emu_is_device(const void *p, size_t n)
{
    uintptr_t a = (uintptr_t)p;
    pthread_mutex_lock(&g_mem_lock);
    auto it = g_blocks.upper_bound(a);
    bool in = it != g_blocks.begin() && (--it, a - it->first <= it->second &&
                                         n <= it->second - (a - it->first));
    pthread_mutex_unlock(&g_mem_lock);
    return in;
}
size_t emu_device_bytes(void)
{
    pthread_mutex_lock(&g_mem_lock);
    size_t n = g_mem_bytes;
    pthread_mutex_unlock(&g_mem_lock);
    return n;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k)
{
    /* the device side of a copy must be device memory, as on a GPU */
    if (n && (((k == cudaMemcpyHostToDevice || k == cudaMemcpyDeviceToDevice) &&
               !emu_is_device(dst, n)) ||
              ((k == cudaMemcpyDeviceToHost || k == cudaMemcpyDeviceToDevice) &&
               !emu_is_device(src, n))))
        return g_last_error = cudaErrorInvalidValue;
    if (n)
        memmove(dst, src, n);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t)
{
    return cudaMemcpy(dst, src, n, k);
}
cudaError_t cudaMemset(void *p, int v, size_t n)
{
    if (n && !emu_is_device(p, n))
        return g_last_error = cudaErrorInvalidValue;
    if (n)
        memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t)
{
    return cudaMemset(p, v, n);
}

struct emu_stream {
    int unused;
};
struct emu_event {
    double t_ms;
};

cudaError_t cudaStreamCreate(cudaStream_t *st)
{
    *st = (cudaStream_t)calloc(1, sizeof(emu_stream));
    return *st ? cudaSuccess : (g_last_error = cudaErrorMemoryAllocation);
}
cudaError_t cudaStreamDestroy(cudaStream_t st)
{
    free(st);
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t)
{
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e)
{
    *e = (cudaEvent_t)calloc(1, sizeof(emu_event));
    return *e ? cudaSuccess : (g_last_error = cudaErrorMemoryAllocation);
}
cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    free(e);
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t)
{
    if (!e)
        return cudaErrorInvalidResourceHandle;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    e->t_ms = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t)
{
    return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
    if (!a || !b)
        return cudaErrorInvalidResourceHandle;
    *ms = (float)(b->t_ms - a->t_ms);
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void)
{
    return cudaSuccess;
}
cudaError_t cudaGetLastError(void)
{
    cudaError_t e = g_last_error;
    g_last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void)
{
    return g_last_error;
}
cudaError_t cudaSetDevice(int dev)
{
    return dev == 0 ? cudaSuccess : cudaErrorInvalidValue;
}
cudaError_t cudaGetDeviceCount(int *n)
{
    *n = 1;
    return cudaSuccess;
}
const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    }
    return "unknown error";
}

/* ---- cuBLAS shim ---------------------------------------------------------------------------------- */

struct emu_cublas {
    cudaStream_t st;
};

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    *h = (cublasHandle_t)calloc(1, sizeof(emu_cublas));
    return *h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}
cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    free(h);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t st)
{
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    h->st = st;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float *alpha, const float *A, int lda,
                           const float *B, int ldb, const float *beta, float *C, int ldc)
{
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || k < 0 || ldc < (m > 1 ? m : 1) ||
        lda < ((ta == CUBLAS_OP_N ? m : k) > 1 ? (ta == CUBLAS_OP_N ? m : k) : 1) ||
        ldb < ((tb == CUBLAS_OP_N ? k : n) > 1 ? (tb == CUBLAS_OP_N ? k : n) : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float acc = 0;
            for (int p = 0; p < k; p++) {
                float a = ta == CUBLAS_OP_N ? A[i + (size_t)p * lda] : A[p + (size_t)i * lda];
                float b = tb == CUBLAS_OP_N ? B[p + (size_t)j * ldb] : B[j + (size_t)p * ldb];
                acc += a * b;
            }
            float *c = &C[i + (size_t)j * ldc];
            *c = *beta == 0 ? *alpha * acc : *alpha * acc + *beta * *c;
        }
    return CUBLAS_STATUS_SUCCESS;
}
extern "C" {
float nd_f16_to_f32(uint16_t h);
uint16_t nd_f32_to_f16(float f);
}

static float emu_elem(const void *p, cudaDataType_t t, size_t i)
{
    return t == CUDA_R_16F ? nd_f16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType_t at,
                            int lda, const void *B, cudaDataType_t bt, int ldb, const void *beta,
                            void *C, cudaDataType_t ct, int ldc, cublasComputeType_t comp,
                            cublasGemmAlgo_t algo)
{
    (void)algo;
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    int ar = ta == CUBLAS_OP_N ? m : k, br = tb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || comp != CUBLAS_COMPUTE_32F || ldc < (m > 1 ? m : 1) ||
        lda < (ar > 1 ? ar : 1) || ldb < (br > 1 ? br : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float acc = 0;
            for (int p = 0; p < k; p++) {
                float a = ta == CUBLAS_OP_N ? emu_elem(A, at, i + (size_t)p * lda)
                                            : emu_elem(A, at, p + (size_t)i * lda);
                float b = tb == CUBLAS_OP_N ? emu_elem(B, bt, p + (size_t)j * ldb)
                                            : emu_elem(B, bt, j + (size_t)p * ldb);
                acc += a * b;
            }
            size_t ci = i + (size_t)j * ldc;
            float v = be == 0 ? al * acc : al * acc + be * emu_elem(C, ct, ci);
            if (ct == CUDA_R_16F)
                ((uint16_t *)C)[ci] = nd_f32_to_f16(v);
            else
                ((float *)C)[ci] = v;
        }
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}
