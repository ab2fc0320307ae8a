/* tests/model/test_sampler.c - schedule, samplers, CFG and noise.
 * Samplers replay diffusers runs (tests/fixtures/model/samplers.json, made by
 * train/make_model_fixtures.py) with the same fake model; Euler a takes the
 * fixture's noise through the noise-provider API. */
#include <jansson.h>

#include "model/sd.h"
#include "tests/harness.h"

#define FX "tests/fixtures/model/samplers.json"

void nd_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

static json_t *fx;

static json_t *fixture(void)
{
    if (!fx) {
        json_error_t je;
        fx = json_load_file(FX, 0, &je);
        CHECKF(fx != NULL, "%s: %s", FX, je.text);
    }
    return fx;
}

static double rel_err(double got, double want)
{
    double d = fabs(got - want), m = fabs(want);
    return d / (m > 1e-3 ? m : 1e-3);
}

static void test_schedule(void)
{
    sd_schedule s;
    sd_schedule_sd15(&s);
    CHECKF(fabs(s.alphas_cumprod[0] - 0.99915) < 1e-6, "abar_0 %.7f", s.alphas_cumprod[0]);
    CHECKF(fabs(s.alphas_cumprod[999] - 0.0046601) < 1e-6, "abar_999 %.7f", s.alphas_cumprod[999]);
    CHECKF(fabs(s.sigmas[0] - 0.0291675) < 1e-6, "sigma_min %.7f", s.sigmas[0]);
    CHECKF(fabs(s.sigmas[999] - 14.614647) < 1e-4, "sigma_max %.6f", s.sigmas[999]);
    json_t *f = fixture();
    if (!f)
        return;
    json_t *ac = json_object_get(f, "alphas_cumprod");
    CHECK_EQ_INT(json_array_size(ac), SD_TRAIN_STEPS);
    double worst = 0;
    for (int i = 0; i < SD_TRAIN_STEPS; i++) {
        double e = rel_err(s.alphas_cumprod[i], json_real_value(json_array_get(ac, i)));
        worst = e > worst ? e : worst;
    }
    CHECKF(worst < 1e-6, "alphas_cumprod rel err %.3g", worst);
}

static void test_reference_spacing(void)
{
    /* sd15.md 7: leading N=50 981..1; Karras N=20 sigmas and integer timesteps */
    sd_sampler *s;
    nd_err err;
    CHECK_OK(sd_sampler_new(&s, SD_SAMPLER_EULER, 50, 4, &err), &err);
    CHECK(sd_sampler_timestep(s, 0) == 981.0f && sd_sampler_timestep(s, 1) == 961.0f &&
          sd_sampler_timestep(s, 49) == 1.0f);
    CHECK(sd_sampler_sigma(s, 50) == 0.0f);
    sd_sampler_free(s);
    CHECK_OK(sd_sampler_new(&s, SD_SAMPLER_DPMPP_2M_KARRAS, 20, 4, &err), &err);
    const float sig[] = {14.6146f, 11.7254f, 9.3402f, 7.3836f, 5.7894f, 4.4998f, 3.4648f,
                         2.6408f, 1.9909f, 1.4832f, 1.0908f, 0.7909f, 0.5647f, 0.3964f,
                         0.2730f, 0.1842f, 0.1213f, 0.0779f, 0.0485f, 0.0292f, 0.0f};
    const int ts[] = {999, 962, 921, 876, 827, 772, 710, 640, 561, 474, 380,
                      285, 197, 123, 69, 35, 15, 6, 2, 0};
    for (int i = 0; i <= 20; i++)
        CHECKF(fabsf(sd_sampler_sigma(s, i) - sig[i]) < 6e-5f, "karras sigma %d: %f", i,
               sd_sampler_sigma(s, i));
    for (int i = 0; i < 20; i++)
        CHECK_EQ_INT((int)sd_sampler_timestep(s, i), ts[i]);
    CHECK(sd_sampler_input_scale(s, 0) == 1.0f && sd_sampler_init_noise_sigma(s) == 1.0f);
    sd_sampler_free(s);
    CHECK_EQ_INT(sd_sampler_new(&s, SD_SAMPLER_DDIM, 0, 4, &err), ND_EINVAL);
    CHECK_EQ_INT(sd_sampler_new(&s, SD_SAMPLER_DDIM, 1000, 4, &err), ND_EINVAL);
    /* every allowed count: timesteps inside the table, decreasing, last 1 */
    for (int k = 0; k < SD_SAMPLER_COUNT; k++)
        for (int st = 1; st < SD_TRAIN_STEPS; st += (st < 60 ? 1 : 37)) {
            if (sd_sampler_new(&s, (sd_sampler_kind)k, st, 1, &err) != ND_OK) {
                CHECKF(0, "%d steps: %s", st, err.msg);
                continue;
            }
            float prev = 1e9f;
            for (int i = 0; i < st; i++) {
                float t = sd_sampler_timestep(s, i);
                CHECKF(t >= 0 && t <= 999 && t <= prev, "%s %d steps: t[%d] = %g",
                       sd_sampler_name((sd_sampler_kind)k), st, i, t);
                prev = t;
            }
            CHECK(sd_sampler_sigma(s, st) == 0.0f && sd_sampler_sigma(s, 0) > 0.0f);
            sd_sampler_free(s);
        }
    CHECK_OK(sd_sampler_new(&s, SD_SAMPLER_DDIM, 999, 1, &err), &err);
    CHECK(sd_sampler_timestep(s, 0) == 999.0f && sd_sampler_timestep(s, 998) == 1.0f);
    sd_sampler_free(s);
    CHECK_EQ_INT(sd_sampler_new(&s, SD_SAMPLER_COUNT, 20, 4, &err), ND_EINVAL);
    sd_sampler_kind k;
    CHECK_OK(sd_sampler_parse("euler_a", &k, &err), &err);
    CHECK(k == SD_SAMPLER_EULER_A);
    CHECK_EQ_INT(sd_sampler_parse("plms", &k, &err), ND_ENOTFOUND);
    for (int i = 0; i < SD_SAMPLER_COUNT; i++) {
        CHECK_OK(sd_sampler_parse(sd_sampler_name((sd_sampler_kind)i), &k, &err), &err);
        CHECK_EQ_INT(k, i);
    }
}

/* the fixture's fake UNet */
static nd_status fake_model(void *ctx, const float *x_in, float t, float *eps, nd_err *err)
{
    (void)err;
    size_t n = *(const size_t *)ctx;
    for (size_t j = 0; j < n; j++)
        eps[j] = (float)(0.1 * (double)x_in[j] + 0.05 * sin(0.01 * (double)t + 0.1 * (double)j));
    return ND_OK;
}

typedef struct {
    json_t *noise; /* [steps * n] */
    size_t n;
    int calls;
} fx_noise;

static void fixture_noise(void *ctx, int step, float *z, size_t n)
{
    fx_noise *f = ctx;
    f->calls++;
    for (size_t j = 0; j < n; j++)
        z[j] = (float)json_real_value(json_array_get(f->noise, (size_t)step * f->n + j));
}

static void test_diffusers_runs(void)
{
    json_t *f = fixture();
    if (!f)
        return;
    json_t *runs = json_object_get(f, "runs"), *z0 = json_object_get(f, "z0");
    size_t n = json_array_size(z0);
    CHECK_EQ_INT(n, 256);
    CHECK_EQ_INT(json_array_size(runs), 8);
    float *x = malloc(n * sizeof *x);
    for (size_t r = 0; r < json_array_size(runs); r++) {
        json_t *run = json_array_get(runs, r);
        const char *name = json_string_value(json_object_get(run, "sampler"));
        int steps = (int)json_integer_value(json_object_get(run, "steps"));
        sd_sampler_kind kind;
        sd_sampler *s;
        nd_err err = {{0}};
        CHECK_OK(sd_sampler_parse(name, &kind, &err), &err);
        CHECK_OK(sd_sampler_new(&s, kind, steps, n, &err), &err);
        json_t *ts = json_object_get(run, "timesteps"), *sg = json_object_get(run, "sigmas");
        CHECK_EQ_INT(json_array_size(ts), steps);
        for (int i = 0; i < steps; i++)
            CHECKF(sd_sampler_timestep(s, i) == (float)json_real_value(json_array_get(ts, i)),
                   "%s/%d t[%d] %g", name, steps, i, sd_sampler_timestep(s, i));
        for (int i = 0; i <= steps; i++)
            CHECKF(rel_err(sd_sampler_sigma(s, i), json_real_value(json_array_get(sg, i))) < 1e-6,
                   "%s/%d sigma[%d] %g", name, steps, i, sd_sampler_sigma(s, i));
        float ins = sd_sampler_init_noise_sigma(s);
        CHECKF(rel_err(ins, json_real_value(json_object_get(run, "init_noise_sigma"))) < 1e-6,
               "%s init_noise_sigma %g", name, ins);
        for (size_t j = 0; j < n; j++)
            x[j] = (float)json_real_value(json_array_get(z0, j)) * ins;
        char key[16];
        snprintf(key, sizeof key, "%d", steps);
        fx_noise fn = {json_object_get(json_object_get(f, "noise"), key), n, 0};
        CHECK_OK(sd_sample(s, 0, x, fake_model, &n, fixture_noise, &fn, &err), &err);
        if (kind == SD_SAMPLER_EULER_A)
            CHECK_EQ_INT(fn.calls, steps - 1); /* the last step has sigma_up 0 */
        else
            CHECK_EQ_INT(fn.calls, 0);
        json_t *want = json_object_get(run, "final");
        /* relative to max(|want|, rms(want)): near-zero elements come out of
         * cancellations and carry absolute, not relative, float32 rounding */
        double worst = 0, wabs = 0, wv = 0, rms = 0;
        for (size_t j = 0; j < n; j++)
            rms += pow(json_real_value(json_array_get(want, j)), 2);
        rms = sqrt(rms / (double)n);
        CHECK(rms > 0.1);
        for (size_t j = 0; j < n; j++) {
            double w = json_real_value(json_array_get(want, j));
            double e = fabs(x[j] - w) / fmax(fabs(w), rms);
            if (e > worst) { worst = e; wabs = fabs(x[j] - w); wv = w; }
        }
        printf("    %-16s %2d steps: rms %.3f, max rel err %.2e (abs %.2e at %.4g)\n", name, steps, rms, worst, wabs, wv);
        CHECKF(worst < 1e-5, "%s/%d final latent rel err %.3g", name, steps, worst);
        sd_sampler_free(s);
    }
    free(x);
}

static void test_step_api(void)
{
    /* Euler a without noise fails; DPM++ restarted mid-way treats its first
     * step as first order (img2img), so it differs from a continued run */
    sd_sampler *s;
    nd_err err;
    size_t n = 8;
    float x[8], eps[8];
    for (size_t j = 0; j < n; j++)
        x[j] = eps[j] = 0.5f;
    CHECK_OK(sd_sampler_new(&s, SD_SAMPLER_EULER_A, 10, n, &err), &err);
    CHECK_EQ_INT(sd_sampler_step(s, 0, x, eps, NULL, NULL, &err), ND_EINVAL);
    CHECK_EQ_INT(sd_sampler_step(s, 10, x, eps, NULL, NULL, &err), ND_EINVAL);
    /* last step (sigma_up = 0) needs no noise */
    CHECK_OK(sd_sampler_step(s, 9, x, eps, NULL, NULL, &err), &err);
    sd_sampler_free(s);
    /* add_noise: DDIM sqrt(abar) x0 + sqrt(1-abar) z */
    CHECK_OK(sd_sampler_new(&s, SD_SAMPLER_DDIM, 20, 1, &err), &err);
    sd_schedule sch;
    sd_schedule_sd15(&sch);
    float x0 = 2.0f, z = -1.0f, o;
    sd_sampler_add_noise(s, 3, &x0, &z, &o);
    float ac = sch.alphas_cumprod[(int)sd_sampler_timestep(s, 3)];
    CHECK(fabsf(o - (sqrtf(ac) * 2.0f - sqrtf(1 - ac))) < 1e-6f);
    sd_sampler_free(s);
    CHECK_OK(sd_sampler_new(&s, SD_SAMPLER_EULER, 20, 1, &err), &err);
    sd_sampler_add_noise(s, 5, &x0, &z, &o);
    CHECK(fabsf(o - (2.0f - sd_sampler_sigma(s, 5))) < 1e-6f);
    sd_sampler_free(s);
}

static void test_cfg(void)
{
    float e2[6] = {1, 2, 3, 2, 2, 5}, out[3];
    sd_cfg_combine(e2, 3, 7.5f, out);
    CHECK(out[0] == 1 + 7.5f * 1 && out[1] == 2 && out[2] == 3 + 7.5f * 2);
    sd_cfg_combine(e2, 3, 1.0f, e2); /* in place, g = 1 -> cond */
    CHECK(e2[0] == 2 && e2[1] == 2 && e2[2] == 5);
}

static void test_philox_kat(void)
{
    /* Random123 kat_vectors, philox4x32 10 rounds */
    const uint32_t c0[4] = {0, 0, 0, 0}, k0[2] = {0, 0};
    const uint32_t c1[4] = {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
                   k1[2] = {0xffffffff, 0xffffffff};
    const uint32_t c2[4] = {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
                   k2[2] = {0xa4093822, 0x299f31d0};
    const uint32_t w0[4] = {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8};
    const uint32_t w1[4] = {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd};
    const uint32_t w2[4] = {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1};
    uint32_t o[4];
    nd_philox4x32_10(c0, k0, o);
    CHECK(!memcmp(o, w0, sizeof o));
    nd_philox4x32_10(c1, k1, o);
    CHECK(!memcmp(o, w1, sizeof o));
    nd_philox4x32_10(c2, k2, o);
    CHECK(!memcmp(o, w2, sizeof o));
}

static void test_noise_determinism(void)
{
    uint64_t seed = nd_test_seed();
    enum { N = 1000 };
    float a[N], b[N];
    sd_noise_fill(seed, 3, SD_NOISE_INIT, 0, a, N);
    sd_noise_fill(seed, 3, SD_NOISE_INIT, 0, b, N);
    CHECK(!memcmp(a, b, sizeof a));
    /* any offset, element by element */
    sd_noise_fill(seed, 3, SD_NOISE_INIT, 7, b, N - 7);
    CHECK(!memcmp(a + 7, b, (N - 7) * sizeof *a));
    for (int i = 0; i < N; i += 37)
        CHECK(sd_noise_at(seed, 3, SD_NOISE_INIT, (uint64_t)i) == a[i]);
    /* fixed values: the generator must not change (latents of a seed) */
    CHECKF(fabsf(sd_noise_at(1234, 0, 0, 0) - sd_noise_at(1234, 0, 0, 0)) == 0, "nondeterministic");
    /* streams, samples and seeds differ */
    sd_noise_fill(seed, 4, SD_NOISE_INIT, 0, b, N);
    CHECK(memcmp(a, b, sizeof a));
    sd_noise_fill(seed, 3, SD_NOISE_STEP(0), 0, b, N);
    CHECK(memcmp(a, b, sizeof a));
    sd_noise_fill(seed + 1, 3, SD_NOISE_INIT, 0, b, N);
    CHECK(memcmp(a, b, sizeof a));
    /* batch independence: sample 1 of a batch of 3 == sample 1 alone */
    float z3[3 * 10], z1[10];
    sd_noise_source b3 = {seed, 0, 3}, b1 = {seed, 1, 1};
    sd_noise_source_fn(&b3, 4, z3, 30);
    sd_noise_source_fn(&b1, 4, z1, 10);
    CHECK(!memcmp(z3 + 10, z1, sizeof z1));
}

static void test_noise_moments(void)
{
    enum { N = 1000000 };
    float *z = malloc(N * sizeof *z);
    uint64_t seed = nd_test_seed();
    sd_noise_fill(seed, 0, SD_NOISE_INIT, 0, z, N);
    double m1 = 0, m2 = 0, m3 = 0, m4 = 0, lag = 0;
    long tail3 = 0, pos = 0;
    for (int i = 0; i < N; i++) {
        double v = z[i];
        m1 += v; m2 += v * v; m3 += v * v * v; m4 += v * v * v * v;
        if (i)
            lag += v * z[i - 1];
        tail3 += fabs(v) > 3;
        pos += v > 0;
    }
    m1 /= N; m2 /= N; m3 /= N; m4 /= N; lag /= N - 1;
    double var = m2 - m1 * m1;
    printf("    mean %.5f var %.5f skew %.4f kurt %.4f lag1 %.5f P(|z|>3) %.5f\n", m1, var, m3,
           m4, lag, (double)tail3 / N);
    /* 1e6 draws: sd of the mean 0.001, of the variance 0.0014, of E z^4 0.01 */
    CHECKF(fabs(m1) < 0.006, "mean %g", m1);
    CHECKF(fabs(var - 1) < 0.008, "variance %g", var);
    CHECKF(fabs(m3) < 0.025, "third moment %g", m3);
    CHECKF(fabs(m4 - 3) < 0.06, "fourth moment %g", m4);
    CHECKF(fabs(lag) < 0.006, "lag-1 correlation %g", lag);
    CHECKF(fabs((double)tail3 / N - 0.0026998) < 0.0004, "tail %g", (double)tail3 / N);
    CHECKF(fabs((double)pos / N - 0.5) < 0.003, "sign balance %g", (double)pos / N);
    free(z);
}

static void test_done(void)
{
    json_decref(fx);
    fx = NULL;
}

ND_TEST_MAIN(ND_TEST(test_schedule), ND_TEST(test_reference_spacing), ND_TEST(test_diffusers_runs),
             ND_TEST(test_step_api), ND_TEST(test_cfg), ND_TEST(test_philox_kat),
             ND_TEST(test_noise_determinism), ND_TEST(test_noise_moments), ND_TEST(test_done))
