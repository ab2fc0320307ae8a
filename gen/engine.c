/* gen/engine.c - continuous batching: flows of many requests share each
 * model step; a flow joins at the next step and leaves when it is done.
 * Also the one-step adapter for drawers without steps. */
#include "gen/gen.h"
#include "gen/internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void nd_flow_params_init(nd_flow_params *p)
{
    p->steps = 0;
    p->sampler = -1;
    p->cfg = -1.0f;
    p->strength = -1.0f;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------- one-step adapter */

struct nd_oneshot_drawer {
    nd_drawer d;
    size_t npx3;
    nd_draw_req *req;           /* [max_batch] scratch */
    float *planar;              /* [max_batch][npx3]   */
};
typedef struct {
    nd_draw_req req;
    float *img;                 /* drawn by step()     */
} oneshot_flow;

static nd_status os_begin(void *ctx, const nd_draw_req *req, const nd_flow_params *p, void **flow,
                          nd_err *err)
{
    nd_oneshot_drawer *o = ctx;
    (void)p;
    oneshot_flow *f = calloc(1, sizeof *f);
    if (!f || !(f->img = malloc(o->npx3 * sizeof(float)))) {
        free(f);
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    f->req = *req;
    *flow = f;
    return ND_OK;
}

static nd_status os_step(void *ctx, void *const *flows, int n, uint8_t *done, nd_err *err)
{
    nd_oneshot_drawer *o = ctx;
    for (int at = 0; at < n;) {
        int m = n - at < o->d.max_batch ? n - at : o->d.max_batch;
        for (int i = 0; i < m; i++)
            o->req[i] = ((oneshot_flow *)flows[at + i])->req;
        nd_status st = o->d.draw(o->d.ctx, o->req, m, o->planar, err);
        if (st)
            return st;
        for (int i = 0; i < m; i++) {
            memcpy(((oneshot_flow *)flows[at + i])->img, o->planar + (size_t)i * o->npx3,
                   o->npx3 * sizeof(float));
            done[at + i] = 1;
        }
        at += m;
    }
    return ND_OK;
}

static nd_status os_finish(void *ctx, void *flow, float *planar, nd_err *err)
{
    nd_oneshot_drawer *o = ctx;
    (void)err;
    memcpy(planar, ((oneshot_flow *)flow)->img, o->npx3 * sizeof(float));
    return ND_OK;
}

static void os_end(void *ctx, void *flow)
{
    (void)ctx;
    if (flow) {
        free(((oneshot_flow *)flow)->img);
        free(flow);
    }
}

nd_status nd_oneshot_drawer_new(const nd_drawer *d, nd_oneshot_drawer **out, nd_step_drawer *sd,
                                nd_err *err)
{
    *out = NULL;
    if (d->max_batch < 1)
        return nd_fail(err, ND_EINVAL, "drawer batch must be at least 1");
    nd_oneshot_drawer *o = calloc(1, sizeof *o);
    if (!o)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    o->d = *d;
    o->npx3 = (size_t)d->layout.width * (size_t)d->layout.packets * 3;
    o->req = malloc((size_t)d->max_batch * sizeof *o->req);
    o->planar = malloc((size_t)d->max_batch * o->npx3 * sizeof(float));
    if (!o->req || !o->planar) {
        nd_oneshot_drawer_free(o);
        return nd_fail(err, ND_ENOMEM, "out of memory for a batch of %d images", d->max_batch);
    }
    /* finish() only copies the flow's own image out: any thread */
    *sd = (nd_step_drawer){o, d->max_batch, d->layout, os_begin, os_step, os_finish, os_end, 1};
    *out = o;
    return ND_OK;
}

void nd_oneshot_drawer_free(nd_oneshot_drawer *o)
{
    if (!o)
        return;
    free(o->req);
    free(o->planar);
    free(o);
}

/* ------------------------------------------------------------- the engine
 *
 * Two threads. The engine thread owns the batch: it admits flows, runs one
 * step() of every active flow per turn and takes finished flows out. The
 * post thread turns each finished flow into packets (snap, repair, sinks;
 * and finish() too when the drawer allows it off the engine thread), so the
 * next model step overlaps the previous step's repair and writing. Finished
 * flows pass through a FIFO ring in job order: a request's flows join in
 * job order, but need not finish in it (img2img flows start at a later
 * sampler step than those of a class without templates), so a flow that
 * finishes before an earlier flow of its request stays in its slot, held
 * (no more steps), until that one has left. */

void nd_engine_params_init(nd_engine_params *p)
{
    memset(p, 0, sizeof *p);
    p->max_batch = 1;
    p->max_requests = 64;
}

struct nd_engine_req {
    nd_engine *e;
    nd_engine_req *next;        /* the engine's list, in arrival order          */
    int refs;                   /* the caller's and the engine's                */
    nd_gen_job job;
    nd_flow_params fp;
    nd_gen_sink sinks[4];
    int n_sinks;
    nd_engine_done_fn done;
    void *done_ctx;
    uint64_t total, next_flow;  /* flows handed to the drawer so far            */
    int item;
    uint64_t in_item;
    int active;                 /* flows in the batch or waiting to be posted   */
    int cancel;                 /* asked by the caller                          */
    int failed;                 /* ended by an error (st, msg)                  */
    int admitted;
    nd_status st;
    char msg[ND_ERR_MAX];
    double t_submit;
    nd_repair_ctx *rc;          /* the post thread's only                        */
    nd_gen_stats stats;         /* the post thread's; read by reap once active is 0 */
};

typedef struct {
    nd_engine_req *r;
    nd_draw_req req;
    void *flow;
    bool held;                  /* finished, waiting for an earlier flow of r   */
} slot;

/* A finished flow on its way to the post thread. */
typedef struct {
    nd_engine_req *r;
    nd_draw_req req;
    void *flow;                 /* not finished yet (finish_concurrent), else NULL */
    float *planar;              /* the image finish() drew (engine thread)      */
} post_item;

struct nd_engine {
    nd_engine_params p;
    const nd_class_table *t;
    nd_step_drawer d;
    pthread_t th, post_th;
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* the engine thread waits here                 */
    pthread_cond_t post_cv;     /* the post thread waits here                   */
    pthread_cond_t room_cv;     /* the engine thread waits for room in the ring */
    int stop, post_stop, started, post_started;
    unsigned seq;               /* bumped by anything that may give the engine work */
    nd_engine_req *head;        /* queued and running requests                  */
    nd_engine_req *rr;          /* round-robin cursor: next request to admit from */
    int n_reqs;
    slot *slots;                /* [max_batch] active flows, in admission order */
    int n_slots;
    void **flows;
    uint8_t *done;              /* [max_batch] per slot: finished               */
    uint8_t *step_done;         /* [max_batch] per stepped flow                 */
    int *stepped;               /* [max_batch] the slot of each stepped flow    */
    nd_engine_req **req_of;     /* [max_batch] the slots' requests, this turn   */
    post_item *ring;            /* [max_batch] finished flows, FIFO             */
    float *ring_planar;         /* [max_batch][npx3] their images               */
    int ring_head, ring_n;
    float *planar;              /* the post thread's image (finish_concurrent)  */
    nd_gen_scratch sc;          /* the post thread's                            */
    nd_engine_counters c;
};

static void req_unref(nd_engine_req *r)
{
    if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        nd_repair_ctx_free(r->rc);
        free(r);
    }
}

static void wake_locked(nd_engine *e)
{
    e->seq++;
    pthread_cond_signal(&e->cv);
}

void nd_engine_cancel(nd_engine_req *r)
{
    pthread_mutex_lock(&r->e->mu);
    r->cancel = 1;
    wake_locked(r->e);
    pthread_mutex_unlock(&r->e->mu);
}

void nd_engine_release(nd_engine_req *r)
{
    if (r)
        req_unref(r);
}

void nd_engine_counters_get(nd_engine *e, nd_engine_counters *c)
{
    pthread_mutex_lock(&e->mu);
    *c = e->c;
    c->queued = c->running = 0;
    for (nd_engine_req *r = e->head; r; r = r->next) {
        if (r->admitted)
            c->running++;
        else
            c->queued++;
    }
    c->active_flows = e->n_slots;
    pthread_mutex_unlock(&e->mu);
}

nd_status nd_engine_submit(nd_engine *e, const nd_gen_job *job, const nd_flow_params *fp,
                           const nd_gen_sink *sinks, int n_sinks, nd_engine_done_fn done,
                           void *done_ctx, nd_engine_req **out, nd_err *err)
{
    *out = NULL;
    if (n_sinks < 0 || n_sinks > 4)
        return nd_fail(err, ND_EINVAL, "at most 4 sinks");
    uint64_t total = nd_gen_job_total(job);
    if (total == 0 || total > job->max_flows)
        return nd_fail(err, ND_EINVAL, "a job needs 1..%llu flows",
                       (unsigned long long)job->max_flows);
    for (int i = 0; i < job->n_items; i++)
        if (!nd_class_table_find(e->t, job->items[i].cls))
            return nd_fail(err, ND_EINVAL, "unknown class '%s'", job->items[i].cls);
    nd_engine_req *r = calloc(1, sizeof *r);
    if (!r)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    nd_status st = nd_gen_repair_ctx(job, &r->rc, err);
    if (st) {
        free(r);
        return st;
    }
    r->e = e;
    r->refs = 2;
    r->job = *job;
    if (fp)
        r->fp = *fp;
    else
        nd_flow_params_init(&r->fp);
    memcpy(r->sinks, sinks, (size_t)n_sinks * sizeof *sinks);
    r->n_sinks = n_sinks;
    r->done = done;
    r->done_ctx = done_ctx;
    r->total = total;
    r->t_submit = now_s();
    pthread_mutex_lock(&e->mu);
    if (e->stop || e->n_reqs >= e->p.max_requests) {
        int stopping = e->stop;
        pthread_mutex_unlock(&e->mu);
        nd_repair_ctx_free(r->rc);
        free(r);
        return nd_fail(err, ND_ENOMEM, stopping ? "the engine is stopping" : "queue full (%d requests)",
                       e->p.max_requests);
    }
    nd_engine_req **pp = &e->head;
    while (*pp)
        pp = &(*pp)->next;
    *pp = r;
    e->n_reqs++;
    wake_locked(e);
    pthread_mutex_unlock(&e->mu);
    *out = r;
    return ND_OK;
}

static int wants_flows(const nd_engine_req *r)
{
    return !r->cancel && !r->failed && r->next_flow < r->total;
}

/* Picks the flows that join this step: round-robin over requests, one flow
 * per request per turn. While other requests want flows too, a request has
 * at most per_request flows in flight; alone it may fill the batch (an idle
 * slot helps no one, and a newcomer gets its share as flows finish). Locked. */
static int admit_locked(nd_engine *e, slot *joined)
{
    int n = 0, limit = e->p.per_request > 0 ? e->p.per_request : e->p.max_batch;
    if (!e->head)
        return 0;
    int hungry = 0;
    for (nd_engine_req *r = e->head; r && hungry < 2; r = r->next)
        hungry += wants_flows(r);
    if (hungry < 2)
        limit = e->p.max_batch;
    if (!e->rr)
        e->rr = e->head;
    int idle_turns = 0;
    while (e->n_slots + n < e->p.max_batch && idle_turns < e->n_reqs) {
        nd_engine_req *r = e->rr;
        e->rr = r->next ? r->next : e->head;
        if (!wants_flows(r) || r->active >= limit) {
            idle_turns++;
            continue;
        }
        idle_turns = 0;
        nd_err err = {{0}};
        slot *s = &joined[n];
        s->r = r;
        s->flow = NULL;
        s->held = false;
        if (nd_gen_next_req(&r->job, e->t, &r->item, &r->in_item, r->next_flow, &s->req, &err)) {
            r->failed = 1;
            r->st = ND_EINVAL;
            snprintf(r->msg, sizeof r->msg, "%s", err.msg);
            continue;
        }
        r->next_flow++;
        r->active++;
        if (!r->admitted) {
            r->admitted = 1;
            if (e->p.on_admit)
                e->p.on_admit(e->p.hook_ctx, now_s() - r->t_submit);
        }
        n++;
    }
    return n;
}

static void fail_req(nd_engine_req *r, nd_status st, const char *msg)
{
    if (r->failed || r->cancel)
        return;
    r->failed = 1;
    r->st = st;
    snprintf(r->msg, sizeof r->msg, "%s", msg);
}

/* Ends requests that have nothing more to do: done() outside the lock.
 * Either thread may call it; a request is taken off the list once. */
static void reap(nd_engine *e)
{
    for (;;) {
        pthread_mutex_lock(&e->mu);
        nd_engine_req **pp = &e->head, *r = NULL;
        for (; *pp; pp = &(*pp)->next) {
            nd_engine_req *q = *pp;
            if (q->active == 0 && (q->cancel || q->failed || e->stop ||
                                   q->stats.flows == q->total)) {
                r = q;
                *pp = q->next;
                if (e->rr == q)
                    e->rr = q->next;
                e->n_reqs--;
                break;
            }
        }
        if (r) {
            e->c.requests_done++;
            if (r->stats.flows < r->total)
                e->c.flows_cancelled += r->total - r->stats.flows;
        }
        pthread_mutex_unlock(&e->mu);
        if (!r)
            return;
        nd_status st = ND_OK;
        const char *msg = "";
        if (r->failed) {
            st = r->st;
            msg = r->msg;
        } else if (r->stats.flows < r->total) {
            st = ND_ECANCELLED;
            msg = "cancelled";
        }
        if (r->done)
            r->done(r->done_ctx, st, msg, &r->stats);
        req_unref(r);
    }
}

/* ------------------------------------------------------- the post thread */

static void *post_main(void *arg)
{
    nd_engine *e = arg;
    const nd_layout *l = &e->d.layout;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->ring_n && !e->post_stop)
            pthread_cond_wait(&e->post_cv, &e->mu);
        if (!e->ring_n)
            break;      /* stopping, and nothing left */
        post_item *it = &e->ring[e->ring_head];
        nd_engine_req *r = it->r;
        int skip = r->cancel || r->failed || e->post_stop;
        pthread_mutex_unlock(&e->mu);
        nd_status fs = ND_OK;
        nd_err ferr = {{0}};
        uint64_t pk0 = r->stats.packets;
        if (!skip) {
            double p0 = now_s();
            const float *planar = it->planar;
            if (it->flow) {
                fs = e->d.finish(e->d.ctx, it->flow, e->planar, &ferr);
                planar = e->planar;
            }
            if (!fs)
                fs = nd_gen_post(l, planar, &e->sc, r->rc, &it->req, r->sinks, r->n_sinks,
                                 &r->stats, &ferr);
            r->stats.seconds_post += now_s() - p0;
        }
        if (it->flow)
            e->d.end(e->d.ctx, it->flow);
        pthread_mutex_lock(&e->mu);
        r->active--;
        if (fs)
            fail_req(r, fs, ferr.msg);
        else if (!skip) {
            e->c.flows++;
            e->c.packets += r->stats.packets - pk0;
        }
        e->ring_head = (e->ring_head + 1) % e->p.max_batch;
        e->ring_n--;
        pthread_cond_signal(&e->room_cv);
        int over = r->active == 0;
        wake_locked(e);     /* room for this request's next flows */
        if (over) {
            pthread_mutex_unlock(&e->mu);
            reap(e);
            pthread_mutex_lock(&e->mu);
        }
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* Hands a finished flow to the post thread (waits for room in the ring).
 * 0, or -1 when the engine stops first. */
static int hand_over(nd_engine *e, slot *s)
{
    pthread_mutex_lock(&e->mu);
    while (e->ring_n == e->p.max_batch && !e->stop)
        pthread_cond_wait(&e->room_cv, &e->mu);
    if (e->stop) {
        pthread_mutex_unlock(&e->mu);
        return -1;
    }
    int k = (e->ring_head + e->ring_n) % e->p.max_batch;
    pthread_mutex_unlock(&e->mu);
    /* slot k is this thread's until ring_n counts it */
    post_item *it = &e->ring[k];
    size_t npx3 = (size_t)e->d.layout.width * (size_t)e->d.layout.packets * 3;
    *it = (post_item){s->r, s->req, NULL, e->ring_planar + (size_t)k * npx3};
    if (e->d.finish_concurrent) {
        it->flow = s->flow;
    } else {
        nd_err err = {{0}};
        nd_status st = e->d.finish(e->d.ctx, s->flow, it->planar, &err);
        e->d.end(e->d.ctx, s->flow);
        if (st) {
            pthread_mutex_lock(&e->mu);
            fail_req(s->r, st, err.msg);
            s->r->active--;
            pthread_mutex_unlock(&e->mu);
            return 0;
        }
    }
    pthread_mutex_lock(&e->mu);
    e->ring_n++;
    pthread_cond_signal(&e->post_cv);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

/* ----------------------------------------------------- the engine thread */

static void *engine_main(void *arg)
{
    nd_engine *e = arg;
    slot *joined = malloc((size_t)e->p.max_batch * sizeof *joined);
    for (;;) {
        pthread_mutex_lock(&e->mu);
        /* flows of cancelled or failed requests leave the batch */
        int keep = 0;
        for (int i = 0; i < e->n_slots; i++) {
            slot *s = &e->slots[i];
            if (s->r->cancel || s->r->failed || e->stop) {
                e->d.end(e->d.ctx, s->flow);
                s->r->active--;
            } else {
                e->slots[keep++] = *s;
            }
        }
        e->n_slots = keep;
        if (e->stop) {
            pthread_mutex_unlock(&e->mu);
            break;
        }
        int n_new = admit_locked(e, joined);
        if (e->n_slots == 0 && n_new == 0) {
            /* nothing to run: end what is over, then sleep until a submit, a
             * cancel or a posted flow changes something */
            unsigned seq = e->seq;
            pthread_mutex_unlock(&e->mu);
            reap(e);
            pthread_mutex_lock(&e->mu);
            while (!e->stop && e->seq == seq)
                pthread_cond_wait(&e->cv, &e->mu);
            pthread_mutex_unlock(&e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        /* new flows: their latents and samplers (outside the lock) */
        for (int i = 0; i < n_new; i++) {
            nd_err err = {{0}};
            nd_engine_req *r = joined[i].r;
            if (e->d.begin(e->d.ctx, &joined[i].req, &r->fp, &joined[i].flow, &err)) {
                pthread_mutex_lock(&e->mu);
                fail_req(r, ND_EINVAL, err.msg);
                r->active--;
                pthread_mutex_unlock(&e->mu);
                continue;
            }
            pthread_mutex_lock(&e->mu);
            e->slots[e->n_slots++] = joined[i];
            pthread_mutex_unlock(&e->mu);
        }
        int n = e->n_slots;   /* only this thread changes the slots */
        if (n == 0) {
            reap(e);
            continue;
        }
        /* held flows are finished: only the others take a step (there is
         * one: a held flow waits for an earlier one still running) */
        int m = 0;
        for (int i = 0; i < n; i++) {
            e->done[i] = e->slots[i].held;
            e->req_of[i] = e->slots[i].r;
            if (!e->slots[i].held) {
                e->flows[m] = e->slots[i].flow;
                e->stepped[m++] = i;
            }
        }
        nd_err err = {{0}};
        double t0 = now_s();
        nd_status st = e->d.step(e->d.ctx, e->flows, m, e->step_done, &err);
        for (int j = 0; j < m && !st; j++)
            e->done[e->stepped[j]] = e->step_done[j];
        double dt = now_s() - t0;
        if (e->p.on_step)
            e->p.on_step(e->p.hook_ctx, m, dt);
        pthread_mutex_lock(&e->mu);
        e->c.steps++;
        if (st) {
            /* the model failed: every request in the batch ends with the error */
            for (int i = 0; i < n; i++)
                fail_req(e->slots[i].r, st, err.msg);
        }
        pthread_mutex_unlock(&e->mu);
        if (st) {
            reap(e);
            continue;
        }
        /* finished flows leave the batch for the post thread, in slot order
         * (a request's flows join in job order), unless an earlier flow of
         * their request is still running: then they stay, held */
        keep = 0;
        for (int i = 0; i < n; i++) {
            slot *s = &e->slots[i];
            bool blocked = false;
            for (int j = 0; j < i && !blocked; j++)
                blocked = !e->done[j] && e->req_of[j] == e->req_of[i];
            if (!e->done[i] || blocked) {
                s->held = e->done[i];
                e->slots[keep++] = *s;
                continue;
            }
            pthread_mutex_lock(&e->mu);
            int skip = s->r->cancel || s->r->failed;
            if (skip)
                s->r->active--;
            pthread_mutex_unlock(&e->mu);
            if (skip || hand_over(e, s)) {
                if (!skip) {
                    pthread_mutex_lock(&e->mu);
                    s->r->active--;
                    pthread_mutex_unlock(&e->mu);
                }
                e->d.end(e->d.ctx, s->flow);
            }
        }
        pthread_mutex_lock(&e->mu);
        e->n_slots = keep;
        pthread_mutex_unlock(&e->mu);
        reap(e);
    }
    /* stopping: every flow leaves, the post thread drops what it holds,
     * every request ends */
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < e->n_slots; i++) {
        e->d.end(e->d.ctx, e->slots[i].flow);
        e->slots[i].r->active--;
    }
    e->n_slots = 0;
    e->post_stop = 1;
    pthread_cond_signal(&e->post_cv);
    pthread_mutex_unlock(&e->mu);
    if (e->post_started)
        pthread_join(e->post_th, NULL);
    e->post_started = 0;
    reap(e);
    free(joined);
    return NULL;
}

nd_status nd_engine_new(const nd_engine_params *p, const nd_class_table *t,
                        const nd_step_drawer *d, nd_engine **out, nd_err *err)
{
    *out = NULL;
    if (p->max_batch < 1 || p->max_batch > d->max_batch)
        return nd_fail(err, ND_EINVAL, "engine batch %d: 1..%d (the drawer's)", p->max_batch,
                       d->max_batch);
    if (p->max_requests < 1)
        return nd_fail(err, ND_EINVAL, "the queue needs room for a request");
    if (d->layout.width != t->layout.width || d->layout.packets != t->layout.packets)
        return nd_fail(err, ND_EINVAL, "the drawer's images (%dx%d) do not fit the class "
                       "table's layout (%dx%d)", d->layout.width, d->layout.packets,
                       t->layout.width, t->layout.packets);
    nd_engine *e = calloc(1, sizeof *e);
    if (!e)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    e->p = *p;
    e->t = t;
    e->d = *d;
    size_t npx3 = (size_t)d->layout.width * (size_t)d->layout.packets * 3;
    size_t nb = (size_t)p->max_batch;
    e->slots = calloc(nb, sizeof *e->slots);
    e->flows = calloc(nb, sizeof *e->flows);
    e->done = calloc(nb, 1);
    e->step_done = calloc(nb, 1);
    e->stepped = calloc(nb, sizeof *e->stepped);
    e->req_of = calloc(nb, sizeof *e->req_of);
    e->ring = calloc(nb, sizeof *e->ring);
    /* images cross the ring only when finish() runs on the engine thread */
    e->ring_planar = d->finish_concurrent ? NULL : malloc(nb * npx3 * sizeof(float));
    e->planar = d->finish_concurrent ? malloc(npx3 * sizeof(float)) : NULL;
    nd_status st = ND_OK;
    if (!e->slots || !e->flows || !e->done || !e->step_done || !e->stepped || !e->req_of ||
        !e->ring || !(e->ring_planar || e->planar))
        st = nd_fail(err, ND_ENOMEM, "out of memory");
    if (!st)
        st = nd_gen_scratch_init(&e->sc, &d->layout, err);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    pthread_cond_init(&e->post_cv, NULL);
    pthread_cond_init(&e->room_cv, NULL);
    if (!st && pthread_create(&e->post_th, NULL, post_main, e))
        st = nd_fail(err, ND_ENOMEM, "cannot start the post thread");
    else if (!st)
        e->post_started = 1;
    if (!st && pthread_create(&e->th, NULL, engine_main, e))
        st = nd_fail(err, ND_ENOMEM, "cannot start the engine thread");
    else if (!st)
        e->started = 1;
    if (st) {
        nd_engine_free(e);
        return st;
    }
    *out = e;
    return ND_OK;
}

void nd_engine_free(nd_engine *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    wake_locked(e);
    pthread_cond_signal(&e->room_cv);
    pthread_mutex_unlock(&e->mu);
    if (e->started)
        pthread_join(e->th, NULL);
    if (e->post_started) {  /* the engine thread never ran */
        pthread_mutex_lock(&e->mu);
        e->post_stop = 1;
        pthread_cond_signal(&e->post_cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->post_th, NULL);
    }
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    pthread_cond_destroy(&e->post_cv);
    pthread_cond_destroy(&e->room_cv);
    nd_gen_scratch_free(&e->sc);
    free(e->slots);
    free(e->flows);
    free(e->done);
    free(e->step_done);
    free(e->stepped);
    free(e->req_of);
    free(e->ring);
    free(e->ring_planar);
    free(e->planar);
    free(e);
}
