/* tests/model/fixture.h - what the component and pipeline tests share: the
 * tiny diffusers model (tests/fixtures/weights/, train/make_fixtures.py), a
 * reference file of diffusers' outputs, the error measure and the backends
 * under test.
 *
 * Backends: every one linked in (cpu_ref, cpu, and emu: model/module.mk links
 * the SIMT emulation of the CUDA kernels into the model tests), or only those
 * ND_TEST_BACKENDS lists (comma-separated). The oracle is diffusers, so any
 * subset is a complete test. */
#ifndef ND_TESTS_MODEL_FIXTURE_H
#define ND_TESTS_MODEL_FIXTURE_H

#include "kernels/ops.h"
#include "model/sd.h"
#include "tests/harness.h"
#include "weights/weights.h"

#define FX "tests/fixtures/weights/"
#define TOL 1e-4

typedef struct {
    nd_weights *w;
    nd_st_file *outs;
} fixture;

static const char *cn_path = FX "tiny_controlnet_diffusers";
static nd_wdtype w_dtype = ND_WDT_F32;
static double tol = TOL;

/* Loads `model` (with cn_path's ControlNet, as w_dtype) and the reference
 * outputs `outs_path`. */
static bool fixture_open_outs(fixture *f, const char *model, const char *outs_path, nd_err *e)
{
    memset(f, 0, sizeof *f);
    nd_weights_params p;
    nd_weights_params_init(&p);
    p.controlnet = cn_path;
    p.dtype = w_dtype;
    nd_status st = nd_weights_load(model, &p, &f->w, e);
    CHECKF(st == ND_OK, "load %s: %s", model, e->msg);
    st = nd_st_open(outs_path, &f->outs, e);
    CHECKF(st == ND_OK, "%s: %s", outs_path, e->msg);
    return f->w && f->outs;
}

static __attribute__((unused)) bool fixture_open(fixture *f, const char *model, nd_err *e)
{
    return fixture_open_outs(f, model, FX "outputs.safetensors", e);
}

static void fixture_close(fixture *f)
{
    nd_weights_free(f->w);
    nd_st_close(f->outs);
}

/* A fixture tensor (f32) as an nd_tensor (read-only: inputs are never written). */
static bool ref(const fixture *f, const char *name, nd_tensor *out)
{
    const nd_st_tensor *t = nd_st_find(f->outs, name);
    CHECKF(t && t->dtype == ND_WDT_F32 && t->ndim >= 1 && t->ndim <= 4, "fixture %s", name);
    if (!t || t->dtype != ND_WDT_F32 || t->ndim < 1 || t->ndim > 4)
        return false;
    *out = nd_tensor_make((void *)t->data, ND_F32, ND_DEV_CPU, t->ndim, t->shape);
    return true;
}

/* max|got-want| / max|want|; checks the element count too. */
static double rel_err(const nd_tensor *got, const nd_tensor *want)
{
    int64_t n = nd_tensor_numel(want);
    if (nd_tensor_numel(got) != n)
        return INFINITY;
    const float *g = got->data, *w = want->data;
    double md = 0, mw = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)g[i] - w[i]);
        if (!(d <= md))
            md = d; /* NaN propagates */
        if (fabs(w[i]) > mw)
            mw = fabs(w[i]);
    }
    return mw > 0 ? md / mw : md;
}

/* Is `name` in the comma-separated `list`? */
static bool fx_listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && !strncmp(p, name, n))
            return true;
        p += len + (c != NULL);
    }
    return false;
}

/* The backends under test (NULL-terminated; see the top of the file). */
static const char *const *test_backends(void)
{
    static const char *names[8];
    if (names[0])
        return names;
    const char *only = getenv("ND_TEST_BACKENDS");
    size_t n = 0;
    for (const char *const *b = nd_backend_names(); *b && n + 1 < ND_ARRAY_LEN(names); b++)
        if (!only || fx_listed(only, *b))
            names[n++] = *b;
    return names;
}

static nd_backend *open_be(const char *name, size_t ws, nd_err *e)
{
    nd_backend_config cfg = {0, ws, NULL};
    nd_backend *be = NULL;
    nd_status st = nd_backend_open(name, &cfg, &be, e);
    CHECKF(st == ND_OK, "open %s: %s", name, e->msg);
    return be;
}

/* ---- the backend's memory (device memory on cuda and emu) ---- */

/* Fixture tensors are host memory; a component takes its inputs in the
 * backend's memory, so each test copies them into an arena of their own
 * there (the component's arena keeps the size its measuring pass said). */
static __attribute__((unused)) void stage_init(nd_backend *be, nd_arena *a, size_t bytes, nd_err *e)
{
    nd_status st = nd_backend_arena_init(be, a, bytes + 8 * ND_ARENA_ALIGN, e);
    CHECKF(st == ND_OK, "staging arena on %s: %s", be->name, e->msg);
}

/* A copy of host tensor h in a (be's memory). */
static __attribute__((unused)) nd_tensor staged(nd_backend *be, nd_arena *a, const nd_tensor *h, nd_err *e)
{
    nd_tensor t = {0};
    nd_status st = nd_arena_tensor(a, h->dtype, h->ndim, h->shape, &t, e);
    if (!st)
        st = nd_backend_upload(be, t.data, h->data, nd_tensor_bytes(h), e);
    CHECKF(st == ND_OK, "staging on %s: %s", be->name, e->msg);
    return t;
}

/* rel_err of a tensor in be's memory against a host one. */
static __attribute__((unused)) double rel_err_on(nd_backend *be, const nd_tensor *got, const nd_tensor *want)
{
    if (got->device == ND_DEV_CPU)
        return rel_err(got, want);
    nd_tensor h = *got;
    h.device = ND_DEV_CPU;
    h.data = malloc(nd_tensor_bytes(got));
    nd_err e = {{0}};
    double r = INFINITY;
    if (h.data && nd_backend_download(be, h.data, got->data, nd_tensor_bytes(got), &e) == ND_OK)
        r = rel_err(&h, want);
    free(h.data);
    return r;
}

static void report(const char *what, const char *be, double err, size_t arena)
{
    printf("    %-22s %-8s max rel err %.3g (arena %zu KiB)\n", what, be, err, arena >> 10);
    CHECKF(err < tol, "%s on %s: max rel err %g >= %g", what, be, err, tol);
}

#endif
