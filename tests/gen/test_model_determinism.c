/* tests/gen/test_model_determinism.c - the model drawer on the embedded
 * default model gives every flow the same image, bit for bit, whatever the
 * batch it is drawn in (1, 3, 8; batches that mix classes, prompts and
 * hints) and the thread count (1, 2): gen.h's determinism contract checked
 * on the floats the snap reads, not only on the pcap bytes (a snap can hide
 * a last-bit difference). Also: the step drawer (continuous batching) gives
 * the same images, and another seed other images; all of it again with
 * img2img (strength 0.5: flows start from their template's latent, a
 * class without templates from noise, in the same batches). Few steps: it
 * checks arithmetic identity, not image quality, except that img2img at a
 * tiny strength gives back its template. Skipped without the default model
 * (weights/default/). */
#include "gen/gen.h"
#include "model/sd.h"
#include "tests/harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODEL "weights/default/netdiff_default.safetensors"
#define CNET "weights/default/control_netdiff_canny.safetensors"
#define LORA "weights/default/netdiff_lora.safetensors"
#define CLASSES "conf/classes.json"
#define FLOWS 9 /* batch 8 leaves a partial batch of 1, batch 3 three full ones */
#define STEPS 2

static nd_class_table table;
static int have_model = -1;
static float strength = 1.0f; /* of the drawers the tests make */

static int setup(void)
{
    if (have_model < 0) {
        have_model = access(MODEL, R_OK) == 0 && access(CNET, R_OK) == 0 &&
                     access(LORA, R_OK) == 0 && access(CLASSES, R_OK) == 0;
        nd_err err = {{0}};
        if (have_model)
            CHECK_OK(nd_class_table_load(CLASSES, &table, &err), &err);
        else
            printf("  skip: no default model in weights/default/\n");
    }
    return have_model;
}

/* A class without templates, or NULL. */
static const nd_class *untemplated(void)
{
    for (int i = 0; i < table.n; i++)
        if (!table.v[i].n_templates)
            return &table.v[i];
    return NULL;
}

/* The requests of a job of FLOWS flows alternating two classes, so that
 * every batch mixes prompts and hints; every third flow is of a class
 * without templates where the table has one (img2img starts it from noise). */
static void requests(uint64_t seed, nd_draw_req *req)
{
    for (int k = 0; k < FLOWS; k++) {
        const nd_class *c = &table.v[(k % 2) * (table.n / 2)];
        if (k % 3 == 2 && untemplated())
            c = untemplated();
        req[k] = (nd_draw_req){c, (uint64_t)k, nd_gen_flow_seed(seed, (uint64_t)k),
                               c->n_templates ? (k / 2) % c->n_templates : -1};
    }
}

static void params(nd_model_params *p, int batch, int threads)
{
    nd_model_params_init(p);
    p->model = MODEL;
    p->controlnet = CNET;
    p->n_loras = 1;
    p->loras[0].path = LORA;
    p->loras[0].scale = 1.0f;
    p->batch = batch;
    p->threads = threads;
    p->steps = STEPS;
    p->strength = strength;
}

/* All FLOWS images ([FLOWS][3][packets][width]) drawn in batches of `batch`. */
static float *draw_all(int batch, int threads, uint64_t seed)
{
    nd_model_params p;
    params(&p, batch, threads);
    nd_model_drawer *m;
    nd_drawer d;
    nd_err err = {{0}};
    CHECK_OK(nd_model_drawer_new(&p, &table, &m, &d, &err), &err);
    if (!m)
        return NULL;
    size_t per = (size_t)3 * (size_t)table.layout.packets * (size_t)table.layout.width;
    float *img = malloc(FLOWS * per * sizeof(float));
    nd_draw_req req[FLOWS];
    requests(seed, req);
    for (int k = 0; k < FLOWS; k += batch) {
        int n = FLOWS - k < batch ? FLOWS - k : batch;
        CHECK_OK(d.draw(d.ctx, req + k, n, img + (size_t)k * per, &err), &err);
    }
    nd_model_drawer_free(m);
    return img;
}

static size_t image_floats(void)
{
    return FLOWS * (size_t)3 * (size_t)table.layout.packets * (size_t)table.layout.width;
}

static void test_batch_and_threads_bit_identical(void)
{
    if (!setup())
        return;
    float *ref = draw_all(1, 1, 42);
    CHECK(ref != NULL);
    static const int cfg[][2] = {{3, 1}, {8, 1}, {1, 2}, {3, 2}, {8, 2}};
    for (size_t i = 0; ref && i < sizeof cfg / sizeof cfg[0]; i++) {
        float *got = draw_all(cfg[i][0], cfg[i][1], 42);
        CHECK(got != NULL);
        if (!got)
            continue;
        size_t n = image_floats(), first = n;
        for (size_t j = 0; j < n && first == n; j++)
            if (memcmp(&ref[j], &got[j], sizeof(float)))
                first = j;
        CHECKF(first == n, "batch %d, %d threads: float %zu is %.9g, batch 1 gave %.9g",
               cfg[i][0], cfg[i][1], first, first < n ? got[first] : 0.0, first < n ? ref[first] : 0.0);
        free(got);
    }
    /* the images are not trivially equal: another seed changes them */
    float *other = draw_all(3, 2, 43);
    CHECK(other && memcmp(ref, other, image_floats() * sizeof(float)) != 0);
    free(other);
    free(ref);
}

/* The step drawer (the engine's continuous batching) with flows joining at
 * different steps gives the one-shot drawer's images. */
static void test_step_drawer_same_images(void)
{
    if (!setup())
        return;
    float *ref = draw_all(1, 2, 42);
    nd_model_params p;
    params(&p, 4, 2);
    nd_model_drawer *m;
    nd_drawer d;
    nd_step_drawer sd;
    nd_err err = {{0}};
    CHECK_OK(nd_model_drawer_new(&p, &table, &m, &d, &err), &err);
    if (!m || !ref) {
        free(ref);
        return;
    }
    CHECK_OK(nd_model_drawer_steps(m, &sd, &err), &err);
    size_t per = (size_t)3 * (size_t)table.layout.packets * (size_t)table.layout.width;
    float *img = malloc(per * sizeof(float));
    nd_draw_req req[FLOWS];
    requests(42, req);
    void *live[4];
    int idx[4], n_live = 0, next = 0, finished = 0;
    while (finished < FLOWS) {
        /* one new flow per step while there is room: flows sit at different steps */
        if (next < FLOWS && n_live < 4) {
            CHECK_OK(sd.begin(sd.ctx, &req[next], NULL, &live[n_live], &err), &err);
            idx[n_live++] = next++;
        }
        uint8_t done[4] = {0};
        CHECK_OK(sd.step(sd.ctx, live, n_live, done, &err), &err);
        for (int i = n_live - 1; i >= 0; i--) {
            if (!done[i])
                continue;
            CHECK_OK(sd.finish(sd.ctx, live[i], img, &err), &err);
            CHECKF(!memcmp(img, ref + (size_t)idx[i] * per, per * sizeof(float)),
                   "flow %d: the step drawer's image differs", idx[i]);
            sd.end(sd.ctx, live[i]);
            live[i] = live[n_live - 1];
            idx[i] = idx[n_live - 1];
            n_live--;
            finished++;
        }
    }
    free(img);
    free(ref);
    nd_model_drawer_free(m);
}

static void test_img2img_bit_identical(void)
{
    strength = 0.5f; /* STEPS 2: one step, from step 1 */
    test_batch_and_threads_bit_identical();
    test_step_drawer_same_images();
    strength = 1.0f;
}

/* A drawer given no strength (0) draws at the class table's "strength", or
 * at 1 where the table states none: the same images as when told so. */
static void test_table_strength_is_the_default(void)
{
    if (!setup())
        return;
    strength = 0.0f;
    float *dflt = draw_all(3, 1, 11);
    strength = table.strength > 0 ? table.strength : 1.0f;
    float *told = draw_all(3, 1, 11);
    strength = table.strength > 0 ? 1.0f : 0.5f; /* and another strength differs */
    float *other = draw_all(3, 1, 11);
    strength = 1.0f;
    printf("  class table strength: %g\n", (double)table.strength);
    if (dflt && told && other) {
        CHECK(!memcmp(dflt, told, image_floats() * sizeof(float)));
        CHECK(memcmp(dflt, other, image_floats() * sizeof(float)) != 0);
    }
    free(dflt);
    free(told);
    free(other);
}

/* Share of pixels of planar image img ([3][n] in [0, 1]) whose strongest
 * channel is the template's (interleaved RGB bytes): the colour the snap
 * picks among NetDiffusion's red 1 / green 0 / blue vacant. */
static double close_share(const float *img, const uint8_t *rgb, size_t n)
{
    size_t same = 0;
    for (size_t i = 0; i < n; i++) {
        int a = 0, b = 0;
        for (int ch = 1; ch < 3; ch++) {
            if (img[(size_t)ch * n + i] > img[(size_t)a * n + i])
                a = ch;
            if (rgb[i * 3 + (size_t)ch] > rgb[i * 3 + (size_t)b])
                b = ch;
        }
        same += a == b;
    }
    return (double)same / (double)n;
}

/* img2img does start from the template: at strength 0.05 of 20 steps (the
 * last step only, from t = 1) the image is the template back through the
 * VAE, which drawing from noise is not (0.975 of this template's pixels
 * against 0.39 with the shipped model: its VAE gets 99% of all held-out
 * pixels right and 88% of those holding bits);
 * and a class without templates draws the same image at any strength. */
static void test_img2img_starts_from_template(void)
{
    if (!setup())
        return;
    const nd_class *c = &table.v[0];
    CHECK(c->n_templates > 0);
    if (!c->n_templates)
        return;
    size_t n = (size_t)table.layout.packets * (size_t)table.layout.width;
    char path[4096];
    nd_class_template_path(&table, c, 0, path, sizeof path);
    uint8_t *rgb;
    int w, h;
    nd_err err = {{0}};
    CHECK_OK(nd_png_read(path, &rgb, &w, &h, &err), &err);
    float *img = malloc(3 * n * sizeof(float)), *img2 = malloc(3 * n * sizeof(float)),
          *img3 = malloc(3 * n * sizeof(float));
    double share[2];
    const float strengths[2] = {0.05f, 1.0f};
    for (int i = 0; i < 2; i++) {
        nd_model_params p;
        strength = strengths[i];
        params(&p, 1, 2);
        p.steps = 20;
        nd_model_drawer *m;
        nd_drawer d;
        CHECK_OK(nd_model_drawer_new(&p, &table, &m, &d, &err), &err);
        nd_draw_req req = {c, 0, nd_gen_flow_seed(5, 0), 0};
        CHECK_OK(d.draw(d.ctx, &req, 1, img, &err), &err);
        share[i] = close_share(img, rgb, n);
        const nd_class *u = untemplated();
        if (u) { /* no template: strength changes nothing */
            nd_draw_req r2 = {u, 1, nd_gen_flow_seed(5, 1), -1};
            CHECK_OK(d.draw(d.ctx, &r2, 1, i ? img2 : img3, &err), &err);
            if (i)
                CHECKF(!memcmp(img3, img2, 3 * n * sizeof(float)),
                       "%s (no template): strength 0.05 and 1 differ", u->name);
        }
        nd_model_drawer_free(m);
    }
    strength = 1.0f;
    printf("  %s template 0: pixels as the template's, strength 0.05 %.4f, 1.0 %.4f\n", c->name,
           share[0], share[1]);
    CHECKF(share[0] > 0.8, "strength 0.05: only %.4f of the pixels are the template's", share[0]);
    CHECKF(share[0] > share[1] + 0.1, "strength 0.05 (%.4f) no closer than 1.0 (%.4f)", share[0],
           share[1]);
    free(img);
    free(img2);
    free(img3);
    free(rgb);
}

ND_TEST_MAIN(ND_TEST(test_batch_and_threads_bit_identical), ND_TEST(test_step_drawer_same_images),
             ND_TEST(test_img2img_bit_identical), ND_TEST(test_table_strength_is_the_default), ND_TEST(test_img2img_starts_from_template))
