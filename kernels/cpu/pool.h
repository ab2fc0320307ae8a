/* kernels/cpu/pool.h - a persistent thread pool for the cpu backend: threads
 * are made once at backend open, so running an op creates none. */
#ifndef ND_KERNELS_CPU_POOL_H
#define ND_KERNELS_CPU_POOL_H

#include <stdint.h>

#include "common/nd.h"

typedef struct nd_pool nd_pool;
/* fn(ctx, task, thread): thread is 0..n_threads-1 (0 = the caller), so a task
 * can use per-thread scratch. Tasks are handed out dynamically. */
typedef void (*nd_task_fn)(void *ctx, int64_t task, int thread);

nd_status nd_pool_create(int n_threads, nd_pool **out, nd_err *err);
void nd_pool_destroy(nd_pool *p);
int nd_pool_threads(const nd_pool *p);
/* Runs tasks 0..n_tasks-1 and returns when all are done. */
void nd_pool_run(nd_pool *p, int64_t n_tasks, nd_task_fn fn, void *ctx);

#endif
