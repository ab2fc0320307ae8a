/* tests/gen/test_engine.c - continuous batching: the engine packs flows of
 * several requests into each step, new flows join at the next step, results
 * equal nd_gen_run's bytes for the same job whatever they were batched with;
 * fairness, cancellation, a full queue. Drawers: the stand-in (one step) and
 * a multi-step wrapper around it that records what each step held. */
#include "gen/gen.h"
#include "tests/harness.h"
#include "tests/gen/fixture.h"

#include <pthread.h>
#include <unistd.h>

static char dir[] = "/tmp/ndtest_engine_XXXXXX";
static nd_class_table table;

static void setup(void) { fixture_once(dir, &table); }

/* ---- a capture in memory ---- */
typedef struct {
    char *p;
    size_t n, cap;
} membuf;
static nd_status mem_write(void *ctx, const void *b, size_t n, nd_err *err)
{
    membuf *m = ctx;
    if (m->n + n > m->cap) {
        size_t c = (m->cap + n) * 2;
        char *q = realloc(m->p, c);
        if (!q)
            return nd_fail(err, ND_ENOMEM, "oom");
        m->p = q;
        m->cap = c;
    }
    memcpy(m->p + m->n, b, n);
    m->n += n;
    return ND_OK;
}

/* ---- a multi-step drawer: the stand-in image after `steps` steps ---- */
typedef struct {
    nd_drawer inner;
    int steps_default;
    int uneven;                 /* odd flows of a job need 2 steps fewer (as img2img) */
    int calls, max_n, mixed;    /* step calls; most flows in one; calls with flows at different steps */
    pthread_mutex_t mu;
} multi;
typedef struct {
    nd_draw_req req;
    int step, steps;
} mflow;
static nd_status m_begin(void *ctx, const nd_draw_req *req, const nd_flow_params *p, void **flow,
                         nd_err *err)
{
    multi *m = ctx;
    (void)err;
    mflow *f = calloc(1, sizeof *f);
    f->req = *req;
    f->steps = p && p->steps > 0 ? p->steps : m->steps_default;
    if (m->uneven && (req->flow_index & 1) && f->steps > 2)
        f->steps -= 2; /* finishes before the flow ahead of it in its job */
    *flow = f;
    return ND_OK;
}
static nd_status m_step(void *ctx, void *const *flows, int n, uint8_t *done, nd_err *err)
{
    multi *m = ctx;
    (void)err;
    int lo = 1 << 30, hi = -1;
    for (int i = 0; i < n; i++) {
        mflow *f = flows[i];
        if (f->step < lo)
            lo = f->step;
        if (f->step > hi)
            hi = f->step;
        f->step++;
        done[i] = f->step >= f->steps;
    }
    m->calls++;
    if (n > m->max_n)
        m->max_n = n;
    if (lo != hi)
        m->mixed++;
    return ND_OK;
}
static nd_status m_finish(void *ctx, void *flow, float *planar, nd_err *err)
{
    multi *m = ctx;
    return m->inner.draw(m->inner.ctx, &((mflow *)flow)->req, 1, planar, err);
}
static void m_end(void *ctx, void *flow)
{
    (void)ctx;
    free(flow);
}

/* ---- requests ---- */
typedef struct {
    membuf cap;
    nd_capture_sink *cs;
    nd_gen_sink sink;
    int done;
    nd_status st;
    uint64_t flows;
    uint64_t done_order;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} client;
static uint64_t done_counter;
static void on_done(void *ctx, nd_status st, const char *msg, const nd_gen_stats *stats)
{
    client *c = ctx;
    (void)msg;
    pthread_mutex_lock(&c->mu);
    c->done = 1;
    c->st = st;
    c->flows = stats->flows;
    c->done_order = __atomic_add_fetch(&done_counter, 1, __ATOMIC_SEQ_CST);
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}
static void client_init(client *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    nd_err err = {{0}};
    CHECK_OK(nd_capture_sink_new(ND_CAP_PCAPNG, ND_LINKTYPE_ETHERNET, mem_write, &c->cap, &c->cs,
                                 &c->sink, &err), &err);
}
static void client_wait(client *c)
{
    pthread_mutex_lock(&c->mu);
    while (!c->done)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}
static void client_free(client *c)
{
    nd_capture_sink_free(c->cs);
    free(c->cap.p);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

static void job_for(nd_gen_job *j, const char *spec, uint64_t seed)
{
    nd_err err = {{0}};
    nd_gen_job_init(j);
    j->seed = seed;
    CHECK_OK(nd_gen_job_parse(j, spec, 0, &table, &err), &err);
}

/* nd_gen_run's bytes for a job (batch 3: a different batching on purpose) */
static void reference(const char *spec, uint64_t seed, membuf *out)
{
    nd_gen_job j;
    job_for(&j, spec, seed);
    nd_err err = {{0}};
    nd_standin_drawer *s;
    nd_drawer d;
    CHECK_OK(nd_standin_drawer_new(&table, 3, &s, &d, &err), &err);
    nd_capture_sink *cs;
    nd_gen_sink sink;
    CHECK_OK(nd_capture_sink_new(ND_CAP_PCAPNG, ND_LINKTYPE_ETHERNET, mem_write, out, &cs, &sink, &err), &err);
    CHECK_OK(nd_gen_run(&j, &table, &d, &sink, 1, NULL, NULL, NULL, NULL, &err), &err);
    nd_capture_sink_free(cs);
    nd_standin_drawer_free(s);
}

static const char *specs[] = {"ssh=5,zoom=4", "zoom=7", "ssh=1", "zoom=2,ssh=3", "ssh=9"};

/* several requests at once through a multi-step drawer: same bytes as alone,
 * whether finish() runs on the engine thread or on the post thread */
static void matches_gen_run(int finish_concurrent, int uneven)
{
    setup();
    nd_err err = {{0}};
    nd_standin_drawer *s;
    multi m = {0};
    m.uneven = uneven;
    CHECK_OK(nd_standin_drawer_new(&table, 1, &s, &m.inner, &err), &err);
    m.steps_default = 5;
    nd_step_drawer sd = {&m, 4, table.layout, m_begin, m_step, m_finish, m_end, finish_concurrent};
    nd_engine_params p;
    nd_engine_params_init(&p);
    p.max_batch = 4;
    p.per_request = 2;
    nd_engine *e;
    CHECK_OK(nd_engine_new(&p, &table, &sd, &e, &err), &err);
    client c[5];
    nd_engine_req *r[5];
    for (int i = 0; i < 5; i++) {
        client_init(&c[i]);
        nd_gen_job j;
        job_for(&j, specs[i], 100 + (uint64_t)i);
        nd_flow_params fp;
        nd_flow_params_init(&fp);
        fp.steps = 3 + i;  /* different step counts share the batch */
        CHECK_OK(nd_engine_submit(e, &j, &fp, &c[i].sink, 1, on_done, &c[i], &r[i], &err), &err);
    }
    for (int i = 0; i < 5; i++) {
        client_wait(&c[i]);
        CHECK_EQ_INT(c[i].st, ND_OK);
        membuf ref = {0};
        reference(specs[i], 100 + (uint64_t)i, &ref);
        CHECKF(ref.n == c[i].cap.n && !memcmp(ref.p, c[i].cap.p, ref.n),
               "request %d: %zu bytes vs nd_gen_run's %zu", i, c[i].cap.n, ref.n);
        free(ref.p);
        nd_engine_release(r[i]);
    }
    nd_engine_counters k;
    nd_engine_counters_get(e, &k);
    CHECK_EQ_INT(k.flows, 9 + 7 + 1 + 5 + 9);
    CHECK_EQ_INT(k.flows_cancelled, 0);
    CHECK_EQ_INT(k.requests_done, 5);
    CHECK(m.max_n == 4);        /* batches were full */
    CHECK(m.mixed > 0);         /* flows joined while others were half-way */
    nd_engine_free(e);
    for (int i = 0; i < 5; i++)
        client_free(&c[i]);
    nd_standin_drawer_free(s);
}

static void test_engine_matches_gen_run(void) { matches_gen_run(0, 0); }
static void test_engine_matches_gen_run_post_finish(void) { matches_gen_run(1, 0); }
/* flows of one request that finish out of job order (img2img flows start
 * later than those of a class without templates) are still posted in it */
static void test_engine_uneven_steps_job_order(void)
{
    matches_gen_run(0, 1);
    matches_gen_run(1, 1);
}

/* a request alone fills the batch (per_request binds only while another
 * request wants flows), and still gives nd_gen_run's bytes */
static void test_engine_alone_fills_batch(void)
{
    setup();
    nd_err err = {{0}};
    nd_standin_drawer *s;
    multi m = {0};
    CHECK_OK(nd_standin_drawer_new(&table, 1, &s, &m.inner, &err), &err);
    m.steps_default = 3;
    nd_step_drawer sd = {&m, 4, table.layout, m_begin, m_step, m_finish, m_end, 1};
    nd_engine_params p;
    nd_engine_params_init(&p);
    p.max_batch = 4;
    p.per_request = 1;
    nd_engine *e;
    CHECK_OK(nd_engine_new(&p, &table, &sd, &e, &err), &err);
    client c;
    client_init(&c);
    nd_gen_job j;
    job_for(&j, "ssh=9", 42);
    nd_engine_req *r;
    CHECK_OK(nd_engine_submit(e, &j, NULL, &c.sink, 1, on_done, &c, &r, &err), &err);
    client_wait(&c);
    CHECK_EQ_INT(c.st, ND_OK);
    CHECK_EQ_INT(m.max_n, 4);
    membuf ref = {0};
    reference("ssh=9", 42, &ref);
    CHECK(ref.n == c.cap.n && !memcmp(ref.p, c.cap.p, ref.n));
    free(ref.p);
    nd_engine_release(r);
    nd_engine_free(e);
    client_free(&c);
    nd_standin_drawer_free(s);
}

/* a huge request does not starve a small one; cancel drops the rest */
static void test_engine_fair_and_cancel(void)
{
    setup();
    nd_err err = {{0}};
    nd_standin_drawer *s;
    nd_drawer d;
    CHECK_OK(nd_standin_drawer_new(&table, 2, &s, &d, &err), &err);
    nd_oneshot_drawer *o;
    nd_step_drawer sd;
    CHECK_OK(nd_oneshot_drawer_new(&d, &o, &sd, &err), &err);
    nd_engine_params p;
    nd_engine_params_init(&p);
    p.max_batch = 2;
    p.per_request = 1;
    p.max_requests = 2;
    nd_engine *e;
    CHECK_OK(nd_engine_new(&p, &table, &sd, &e, &err), &err);
    client big, small, third;
    client_init(&big);
    client_init(&small);
    client_init(&third);
    nd_gen_job jb, js;
    job_for(&jb, "ssh=100000", 1);
    job_for(&js, "zoom=3", 2);
    nd_engine_req *rb, *rs, *rt = NULL;
    CHECK_OK(nd_engine_submit(e, &jb, NULL, &big.sink, 1, on_done, &big, &rb, &err), &err);
    usleep(20000);
    CHECK_OK(nd_engine_submit(e, &js, NULL, &small.sink, 1, on_done, &small, &rs, &err), &err);
    /* the queue holds two requests: a third is refused with ND_ENOMEM */
    CHECK_EQ_INT(nd_engine_submit(e, &js, NULL, &third.sink, 1, on_done, &third, &rt, &err), ND_ENOMEM);
    CHECK(rt == NULL);
    client_wait(&small);
    CHECK_EQ_INT(small.st, ND_OK);
    CHECK_EQ_INT(small.flows, 3);
    pthread_mutex_lock(&big.mu);
    CHECK(!big.done);
    pthread_mutex_unlock(&big.mu);
    nd_engine_cancel(rb);
    client_wait(&big);
    CHECK_EQ_INT(big.st, ND_ECANCELLED);
    CHECK(big.flows < 100000);
    nd_engine_counters k;
    nd_engine_counters_get(e, &k);
    CHECK_EQ_INT(k.flows_cancelled, 100000 - big.flows);
    CHECK_EQ_INT(k.queued + k.running, 0);
    nd_engine_release(rb);
    nd_engine_release(rs);
    nd_engine_free(e);
    client_free(&big);
    client_free(&small);
    client_free(&third);
    nd_oneshot_drawer_free(o);
    nd_standin_drawer_free(s);
}

/* freeing the engine ends running requests with ND_ECANCELLED */
static void test_engine_free_cancels(void)
{
    setup();
    nd_err err = {{0}};
    nd_standin_drawer *s;
    nd_drawer d;
    CHECK_OK(nd_standin_drawer_new(&table, 1, &s, &d, &err), &err);
    nd_oneshot_drawer *o;
    nd_step_drawer sd;
    CHECK_OK(nd_oneshot_drawer_new(&d, &o, &sd, &err), &err);
    nd_engine_params p;
    nd_engine_params_init(&p);
    nd_engine *e;
    CHECK_OK(nd_engine_new(&p, &table, &sd, &e, &err), &err);
    client c;
    client_init(&c);
    nd_gen_job j;
    job_for(&j, "ssh=100000", 1);
    nd_engine_req *r;
    CHECK_OK(nd_engine_submit(e, &j, NULL, &c.sink, 1, on_done, &c, &r, &err), &err);
    usleep(20000);
    nd_engine_free(e);
    CHECK(c.done);
    CHECK_EQ_INT(c.st, ND_ECANCELLED);
    nd_engine_release(r);
    client_free(&c);
    nd_oneshot_drawer_free(o);
    nd_standin_drawer_free(s);
}

ND_TEST_MAIN(ND_TEST(test_engine_matches_gen_run), ND_TEST(test_engine_matches_gen_run_post_finish),
             ND_TEST(test_engine_uneven_steps_job_order),
             ND_TEST(test_engine_alone_fills_batch), ND_TEST(test_engine_fair_and_cancel),
             ND_TEST(test_engine_free_cancels))
