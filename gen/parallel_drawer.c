/* gen/parallel_drawer.c - several drawers as one (see gen.h).
 *
 * Drawer 0 draws on the caller's thread; every other drawer has a thread of
 * its own, made once, that sleeps between calls. A call hands drawer i the
 * contiguous share [i*n/k, (i+1)*n/k) of the requests and the matching
 * images of the output, so no two drawers touch the same memory, and waits
 * for all of them: a flow's image depends only on its request (gen.h,
 * "Determinism"), so the split never changes the bytes. */
#include "gen/gen.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct worker {
    struct nd_parallel_drawer *p;
    int id;
    pthread_t th;
    bool started;
    /* the current share */
    const nd_draw_req *req;
    int n;
    float *planar;
    nd_status st;
    nd_err err;
} worker;

struct nd_parallel_drawer {
    int k;
    nd_drawer *d; /* the caller's drawers (copied) */
    worker *w;
    size_t img_floats; /* one planar image */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t round; /* bumped per call; a worker draws once per round */
    int pending;    /* shares of this round not finished */
    bool stop;
};

static void *worker_main(void *arg)
{
    worker *w = arg;
    nd_parallel_drawer *p = w->p;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->round == seen)
            pthread_cond_wait(&p->go, &p->mu);
        if (p->stop)
            break;
        seen = p->round;
        if (w->n > 0) {
            pthread_mutex_unlock(&p->mu);
            w->st = p->d[w->id].draw(p->d[w->id].ctx, w->req, w->n, w->planar, &w->err);
            pthread_mutex_lock(&p->mu);
            if (--p->pending == 0)
                pthread_cond_signal(&p->done);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static nd_status parallel_draw(void *ctx, const nd_draw_req *req, int n, float *planar,
                               nd_err *err)
{
    nd_parallel_drawer *p = ctx;
    pthread_mutex_lock(&p->mu);
    p->pending = 0;
    for (int i = 0; i < p->k; i++) {
        worker *w = &p->w[i];
        int a = (int)((int64_t)i * n / p->k), b = (int)((int64_t)(i + 1) * n / p->k);
        w->req = req + a;
        w->n = b - a;
        w->planar = planar + (size_t)a * p->img_floats;
        w->st = ND_OK;
        if (i > 0 && w->n > 0)
            p->pending++;
    }
    p->round++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);

    worker *w0 = &p->w[0];
    if (w0->n > 0)
        w0->st = p->d[0].draw(p->d[0].ctx, w0->req, w0->n, w0->planar, &w0->err);

    pthread_mutex_lock(&p->mu);
    while (p->pending > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    /* the first failing share's error, in request order */
    for (int i = 0; i < p->k; i++)
        if (p->w[i].st) {
            *err = p->w[i].err;
            return p->w[i].st;
        }
    return ND_OK;
}

void nd_parallel_drawer_free(nd_parallel_drawer *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->k; i++)
        if (p->w[i].started)
            pthread_join(p->w[i].th, NULL);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p->w);
    free(p->d);
    free(p);
}

nd_status nd_parallel_drawer_new(const nd_drawer *ds, int k, nd_parallel_drawer **out,
                                 nd_drawer *d, nd_err *err)
{
    if (k < 1)
        return nd_fail(err, ND_EINVAL, "parallel drawer: no drawers");
    for (int i = 1; i < k; i++)
        if (ds[i].max_batch != ds[0].max_batch || ds[i].layout.packets != ds[0].layout.packets ||
            ds[i].layout.width != ds[0].layout.width)
            return nd_fail(err, ND_EINVAL,
                           "parallel drawer: drawer %d differs in batch or layout from drawer 0", i);
    nd_parallel_drawer *p = calloc(1, sizeof *p);
    if (!p)
        return nd_fail(err, ND_ENOMEM, "parallel drawer: out of memory");
    p->k = k;
    p->d = calloc((size_t)k, sizeof *p->d);
    p->w = calloc((size_t)k, sizeof *p->w);
    p->img_floats = 3 * (size_t)ds[0].layout.packets * (size_t)ds[0].layout.width;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    if (!p->d || !p->w) {
        nd_parallel_drawer_free(p);
        return nd_fail(err, ND_ENOMEM, "parallel drawer: out of memory");
    }
    memcpy(p->d, ds, (size_t)k * sizeof *ds);
    for (int i = 0; i < k; i++) {
        p->w[i].p = p;
        p->w[i].id = i;
    }
    for (int i = 1; i < k; i++) {
        if (pthread_create(&p->w[i].th, NULL, worker_main, &p->w[i])) {
            nd_parallel_drawer_free(p);
            return nd_fail(err, ND_ENOMEM, "parallel drawer: cannot start thread %d", i);
        }
        p->w[i].started = true;
    }
    *d = (nd_drawer){p, ds[0].max_batch * k, ds[0].layout, parallel_draw};
    *out = p;
    return ND_OK;
}
