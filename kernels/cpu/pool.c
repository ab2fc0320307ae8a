/* kernels/cpu/pool.c - see pool.h. Workers sleep on a condition variable
 * between runs; within a run tasks are claimed with an atomic counter so
 * uneven tasks (causal attention, edge tiles) balance themselves. Before
 * sleeping, a worker (and the caller waiting for the workers) spins for a
 * few microseconds: the ops of a UNet step come back to back, and a futex
 * wake-up costs as much as a whole small element-wise op.
 *
 * Placement: each worker is pinned to a CPU of its own, and a caller found on
 * one of them is moved to the pool's "home" CPU before the run. Left to the
 * scheduler, a worker woken by the caller was often placed on the caller's
 * CPU (wake-affine) and the two then stayed there, taking turns on one core
 * while the other idled: in one process out of two on this 2-core VM, every
 * op of a 2-thread backend ran 2-3x slower (an add of 1.3M floats 0.30 ms
 * instead of 0.10; bench_ops' medians were twice its best). CPUs are taken
 * from the process's allowed set (taskset, cgroup cpusets) round-robin
 * across the pools of the process, so that two backends running at once
 * (the engine's decoder beside its model) do not pile onto the same CPUs.
 * A pool with more threads than allowed CPUs pins nothing. */
#include "kernels/cpu/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

struct nd_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    atomic_uint_fast64_t generation; /* bumped per run; workers wait for a change */
    atomic_int busy;                 /* workers still inside the current run */
    bool stop;
    /* the current run */
    nd_task_fn fn;
    void *ctx;
    int64_t n_tasks;
    atomic_int_fast64_t next;
    /* placement (pinned = false: none) */
    bool pinned;
    int home;                        /* the CPU the caller is moved to      */
    int *cpu;                        /* cpu[i]: worker i's CPU (i >= 1)     */
    cpu_set_t worker_cpus;
};

/* Hands out CPUs of the allowed set round-robin to the pools of the process. */
static atomic_int next_cpu_slot;

static void place(nd_pool *p)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed))
        return;
    int n_allowed = CPU_COUNT(&allowed);
    if (p->n < 2 || p->n > n_allowed || !(p->cpu = calloc((size_t)p->n, sizeof *p->cpu)))
        return;
    int list[CPU_SETSIZE], k = 0;
    for (int c = 0; c < CPU_SETSIZE && k < n_allowed; c++)
        if (CPU_ISSET(c, &allowed))
            list[k++] = c;
    int base = atomic_fetch_add(&next_cpu_slot, p->n);
    p->home = list[base % n_allowed];
    CPU_ZERO(&p->worker_cpus);
    for (int i = 1; i < p->n; i++) {
        p->cpu[i] = list[(base + i) % n_allowed];
        CPU_SET(p->cpu[i], &p->worker_cpus);
    }
    p->pinned = true;
}

/* Before a run: a caller sitting on a worker's CPU moves to the home CPU
 * (pinned there for the move, then given its own CPU set back: it stays
 * unless the scheduler has a reason to move it). */
static void caller_to_home(nd_pool *p)
{
    int c = sched_getcpu();
    if (!p->pinned || c < 0 || !CPU_ISSET(c, &p->worker_cpus))
        return;
    cpu_set_t mine, home;
    if (pthread_getaffinity_np(pthread_self(), sizeof mine, &mine))
        return;
    CPU_ZERO(&home);
    CPU_SET(p->home, &home);
    if (!pthread_setaffinity_np(pthread_self(), sizeof home, &home))
        pthread_setaffinity_np(pthread_self(), sizeof mine, &mine);
}

typedef struct {
    nd_pool *p;
    int id;
} worker_arg;

static void drain(nd_pool *p, int thread)
{
    for (;;) {
        int64_t t = atomic_fetch_add(&p->next, 1);
        if (t >= p->n_tasks)
            break;
        p->fn(p->ctx, t, thread);
    }
}

/* spin iterations before sleeping (a pause is ~10-40 ns) */
#define SPIN 2000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker(void *arg)
{
    worker_arg wa = *(worker_arg *)arg;
    free(arg);
    nd_pool *p = wa.p;
    uint64_t seen = 0;
    if (p->pinned) { /* best effort: unpinned it still works */
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(p->cpu[wa.id], &one);
        pthread_setaffinity_np(pthread_self(), sizeof one, &one);
    }
    for (;;) {
        for (int i = 0; i < SPIN && atomic_load(&p->generation) == seen; i++)
            cpu_relax();
        if (atomic_load(&p->generation) == seen) {
            pthread_mutex_lock(&p->mu);
            while (!p->stop && atomic_load(&p->generation) == seen)
                pthread_cond_wait(&p->start, &p->mu);
            bool stop = p->stop;
            pthread_mutex_unlock(&p->mu);
            if (stop)
                break;
        }
        seen = atomic_load(&p->generation);
        drain(p, wa.id);
        if (atomic_fetch_sub(&p->busy, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

nd_status nd_pool_create(int n_threads, nd_pool **out, nd_err *err)
{
    if (n_threads < 1)
        n_threads = 1;
    nd_pool *p = calloc(1, sizeof *p);
    if (!p)
        return nd_fail(err, ND_ENOMEM, "pool: out of memory");
    p->n = n_threads;
    place(p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p->cpu);
        free(p);
        return nd_fail(err, ND_ENOMEM, "pool: out of memory");
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa || pthread_create(&p->threads[i], NULL, worker, wa ? (*wa = (worker_arg){p, i}, wa) : NULL)) {
            free(wa);
            p->n = i; /* destroy joins the ones started */
            nd_pool_destroy(p);
            return nd_fail(err, ND_EBACKEND, "pool: cannot start thread %d", i);
        }
    }
    *out = p;
    return ND_OK;
}

void nd_pool_destroy(nd_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p->cpu);
    free(p);
}

int nd_pool_threads(const nd_pool *p)
{
    return p->n;
}

void nd_pool_run(nd_pool *p, int64_t n_tasks, nd_task_fn fn, void *ctx)
{
    if (n_tasks <= 0)
        return;
    if (p->n == 1 || n_tasks == 1) {
        for (int64_t t = 0; t < n_tasks; t++)
            fn(ctx, t, 0);
        return;
    }
    caller_to_home(p);
    /* no worker is inside a run here (the last run waited for busy == 0) */
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    atomic_store(&p->busy, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->generation, 1); /* publishes the fields above */
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    drain(p, 0);
    for (int i = 0; i < SPIN && atomic_load(&p->busy) > 0; i++)
        cpu_relax();
    if (atomic_load(&p->busy) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->busy) > 0)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
