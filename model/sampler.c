/* model/sampler.c - SD1.5's noise schedule, the samplers (DDIM, Euler, Euler
 * ancestral, DPM++ 2M Karras) and classifier-free guidance. Each sampler is
 * written as the diffusers 0.42 scheduler computes it (float32 scalars and
 * element-wise updates in the same order), configured as SD1.5 ships:
 * scaled-linear betas, "leading" spacing, steps_offset 1, clip_sample off,
 * set_alpha_to_one off, epsilon prediction. tests/model/test_sampler.c replays
 * diffusers runs (tests/fixtures/model/samplers.json). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/sd.h"

#define BETA_START 0.00085
#define BETA_END   0.012

void sd_schedule_sd15(sd_schedule *s)
{
    /* torch.linspace(sqrt(b0), sqrt(b1), 1000, float32) ** 2; cumprod
     * accumulates in double on the CPU (acc_type) and stores float */
    const float start = (float)sqrt(BETA_START), end = (float)sqrt(BETA_END);
    const int n = SD_TRAIN_STEPS;
    const float step = (end - start) / (float)(n - 1);
    double acc = 1.0;
    for (int i = 0; i < n; i++) {
        float b = i < n / 2 ? start + step * (float)i : end - step * (float)(n - 1 - i);
        s->betas[i] = b * b;
        acc *= (double)(1.0f - s->betas[i]);
        s->alphas_cumprod[i] = (float)acc;
        float a = s->alphas_cumprod[i];
        s->sigmas[i] = sqrtf((1.0f - a) / a);
    }
}

static const char *const names[SD_SAMPLER_COUNT] = {"ddim", "euler", "euler_a", "dpmpp_2m_karras"};

const char *sd_sampler_name(sd_sampler_kind kind)
{
    return (unsigned)kind < SD_SAMPLER_COUNT ? names[kind] : "?";
}

nd_status sd_sampler_parse(const char *name, sd_sampler_kind *kind, nd_err *err)
{
    for (int k = 0; k < SD_SAMPLER_COUNT; k++)
        if (name && !strcmp(name, names[k])) {
            *kind = (sd_sampler_kind)k;
            return ND_OK;
        }
    return nd_fail(err, ND_ENOTFOUND, "unknown sampler '%s' (ddim, euler, euler_a, dpmpp_2m_karras)",
                   name ? name : "");
}

struct sd_sampler {
    sd_sampler_kind kind;
    int steps, ratio;
    size_t n;
    sd_schedule sch;
    float *t;      /* [steps]   */
    float *sigma;  /* [steps+1] */
    float *prev_x0; /* DPM++: the previous step's x0 prediction */
    int last_i;     /* the last step run, -2 if none */
    float *zbuf;    /* Euler a noise */
};

void sd_sampler_free(sd_sampler *s)
{
    if (!s)
        return;
    free(s->t);
    free(s->sigma);
    free(s->prev_x0);
    free(s->zbuf);
    free(s);
}

/* diffusers _sigma_to_t: interpolation in log sigma over the training table */
static double sigma_to_t(double sigma, const float *log_sigmas)
{
    double ls = log(sigma > 1e-10 ? sigma : 1e-10);
    int low = -1;
    for (int i = 0; i < SD_TRAIN_STEPS; i++)
        if (ls - (double)log_sigmas[i] >= 0)
            low = i;
    if (low < 0)
        low = 0; /* argmax of an all-zero cumsum */
    if (low > SD_TRAIN_STEPS - 2)
        low = SD_TRAIN_STEPS - 2;
    double lo = log_sigmas[low], hi = log_sigmas[low + 1];
    double w = (lo - ls) / (lo - hi);
    w = w < 0 ? 0 : w > 1 ? 1 : w;
    return (1 - w) * low + w * (low + 1);
}

nd_status sd_sampler_new(sd_sampler **out, sd_sampler_kind kind, int steps, size_t n, nd_err *err)
{
    *out = NULL;
    if ((unsigned)kind >= SD_SAMPLER_COUNT)
        return nd_fail(err, ND_EINVAL, "sampler: unknown kind %d", (int)kind);
    /* leading + offset 1: the first timestep (steps-1)*(1000//steps)+1 must
     * exist, which rules out exactly 1000 steps */
    if (steps < 1 || steps >= SD_TRAIN_STEPS)
        return nd_fail(err, ND_EINVAL, "sampler: %d steps (1..%d)", steps, SD_TRAIN_STEPS - 1);
    if (!n)
        return nd_fail(err, ND_EINVAL, "sampler: empty latent");
    sd_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return nd_fail(err, ND_ENOMEM, "sampler: out of memory");
    s->kind = kind;
    s->steps = steps;
    s->n = n;
    s->last_i = -2;
    s->ratio = SD_TRAIN_STEPS / steps;
    sd_schedule_sd15(&s->sch);
    s->t = malloc((size_t)steps * sizeof *s->t);
    s->sigma = malloc((size_t)(steps + 1) * sizeof *s->sigma);
    if (kind == SD_SAMPLER_DPMPP_2M_KARRAS)
        s->prev_x0 = malloc(n * sizeof *s->prev_x0);
    if (kind == SD_SAMPLER_EULER_A)
        s->zbuf = malloc(n * sizeof *s->zbuf);
    if (!s->t || !s->sigma || (kind == SD_SAMPLER_DPMPP_2M_KARRAS && !s->prev_x0) ||
        (kind == SD_SAMPLER_EULER_A && !s->zbuf)) {
        sd_sampler_free(s);
        return nd_fail(err, ND_ENOMEM, "sampler: out of memory");
    }
    if (kind == SD_SAMPLER_DPMPP_2M_KARRAS) {
        float log_sigmas[SD_TRAIN_STEPS];
        for (int i = 0; i < SD_TRAIN_STEPS; i++)
            log_sigmas[i] = logf(s->sch.sigmas[i]);
        double smin = s->sch.sigmas[0], smax = s->sch.sigmas[SD_TRAIN_STEPS - 1];
        double rmin = pow(smin, 1 / 7.0), rmax = pow(smax, 1 / 7.0);
        for (int i = 0; i < steps; i++) {
            double ramp = steps > 1 ? (double)i / (steps - 1) : 0.0;
            double sg = pow(rmax + ramp * (rmin - rmax), 7.0);
            s->sigma[i] = (float)sg;
            s->t[i] = (float)nearbyint(sigma_to_t(sg, log_sigmas)); /* half to even */
        }
    } else {
        for (int i = 0; i < steps; i++) {
            int t = (steps - 1 - i) * s->ratio + 1;
            s->t[i] = (float)t;
            s->sigma[i] = s->sch.sigmas[t];
        }
    }
    s->sigma[steps] = 0;
    *out = s;
    return ND_OK;
}

int sd_sampler_steps(const sd_sampler *s) { return s->steps; }

float sd_sampler_timestep(const sd_sampler *s, int i)
{
    return i >= 0 && i < s->steps ? s->t[i] : 0.0f;
}

float sd_sampler_sigma(const sd_sampler *s, int i)
{
    return i >= 0 && i <= s->steps ? s->sigma[i] : 0.0f;
}

static bool k_form(const sd_sampler *s)
{
    return s->kind == SD_SAMPLER_EULER || s->kind == SD_SAMPLER_EULER_A;
}

float sd_sampler_input_scale(const sd_sampler *s, int i)
{
    if (!k_form(s) || i < 0 || i >= s->steps)
        return 1.0f;
    float sg = s->sigma[i];
    return 1.0f / sqrtf(sg * sg + 1.0f);
}

float sd_sampler_init_noise_sigma(const sd_sampler *s)
{
    if (!k_form(s))
        return 1.0f;
    float mx = s->sigma[0]; /* leading spacing: sqrt(max_sigma^2 + 1) */
    return sqrtf(mx * mx + 1.0f);
}

static void vp(float sigma, float *alpha, float *sigma_vp)
{
    *alpha = 1.0f / sqrtf(sigma * sigma + 1.0f);
    *sigma_vp = sigma * *alpha;
}

void sd_sampler_add_noise(const sd_sampler *s, int i, const float *x0, const float *z, float *out)
{
    if (i < 0)
        i = 0;
    if (i >= s->steps)
        i = s->steps - 1;
    float a, b;
    if (s->kind == SD_SAMPLER_DDIM) {
        float ac = s->sch.alphas_cumprod[(int)s->t[i]];
        a = sqrtf(ac);
        b = sqrtf(1.0f - ac);
    } else if (s->kind == SD_SAMPLER_DPMPP_2M_KARRAS) {
        vp(s->sigma[i], &a, &b);
    } else {
        a = 1.0f;
        b = s->sigma[i];
    }
    for (size_t j = 0; j < s->n; j++)
        out[j] = a * x0[j] + b * z[j];
}

nd_status sd_sampler_step(sd_sampler *s, int i, float *x, const float *eps, sd_noise_fn noise,
                          void *noise_ctx, nd_err *err)
{
    if (i < 0 || i >= s->steps)
        return nd_fail(err, ND_EINVAL, "sampler: step %d of %d", i, s->steps);
    const size_t n = s->n;
    switch (s->kind) {
    case SD_SAMPLER_DDIM: {
        int t = (int)s->t[i], prev = t - s->ratio;
        float ac = s->sch.alphas_cumprod[t];
        float ac_prev = prev >= 0 ? s->sch.alphas_cumprod[prev] : s->sch.alphas_cumprod[0];
        float sb = sqrtf(1.0f - ac), sa = sqrtf(ac);
        float sa_prev = sqrtf(ac_prev), dir = sqrtf(1.0f - ac_prev);
        for (size_t j = 0; j < n; j++) {
            float x0 = (x[j] - sb * eps[j]) / sa;
            x[j] = sa_prev * x0 + dir * eps[j];
        }
        break;
    }
    case SD_SAMPLER_EULER: {
        float sg = s->sigma[i], dt = s->sigma[i + 1] - sg;
        for (size_t j = 0; j < n; j++) {
            float x0 = x[j] - sg * eps[j];
            float d = (x[j] - x0) / sg;
            x[j] = x[j] + d * dt;
        }
        break;
    }
    case SD_SAMPLER_EULER_A: {
        float from = s->sigma[i], to = s->sigma[i + 1];
        float up = sqrtf(to * to * (from * from - to * to) / (from * from));
        float down = sqrtf(to * to - up * up), dt = down - from;
        if (up > 0.0f && !noise)
            return nd_fail(err, ND_EINVAL, "sampler: euler_a needs a noise source");
        if (up > 0.0f)
            noise(noise_ctx, i, s->zbuf, n);
        for (size_t j = 0; j < n; j++) {
            float x0 = x[j] - from * eps[j];
            float d = (x[j] - x0) / from;
            float v = x[j] + d * dt;
            x[j] = up > 0.0f ? v + s->zbuf[j] * up : v;
        }
        break;
    }
    case SD_SAMPLER_DPMPP_2M_KARRAS: {
        float a_s, s_s, a_t, s_t;
        vp(s->sigma[i], &a_s, &s_s);
        bool first = s->last_i != i - 1, last = i == s->steps - 1;
        float nxt = s->sigma[i + 1];
        if (nxt == 0.0f) { /* lambda_t = inf: x = x0 */
            for (size_t j = 0; j < n; j++)
                x[j] = (x[j] - s_s * eps[j]) / a_s;
            break;
        }
        vp(nxt, &a_t, &s_t);
        float l_t = logf(a_t) - logf(s_t), l_s = logf(a_s) - logf(s_s);
        float h = l_t - l_s, em = expf(-h) - 1.0f, ratio = s_t / s_s, c0 = a_t * em;
        if (first || last) {
            for (size_t j = 0; j < n; j++) {
                float x0 = (x[j] - s_s * eps[j]) / a_s;
                s->prev_x0[j] = x0;
                x[j] = ratio * x[j] - c0 * x0;
            }
        } else {
            float a_p, s_p;
            vp(s->sigma[i - 1], &a_p, &s_p);
            float l_p = logf(a_p) - logf(s_p);
            float r0 = (l_s - l_p) / h, inv_r0 = 1.0f / r0;
            for (size_t j = 0; j < n; j++) {
                float x0 = (x[j] - s_s * eps[j]) / a_s;
                float d1 = inv_r0 * (x0 - s->prev_x0[j]);
                s->prev_x0[j] = x0;
                x[j] = ratio * x[j] - c0 * x0 - 0.5f * c0 * d1;
            }
        }
        break;
    }
    default:
        return nd_fail(err, ND_EINVAL, "sampler: bad kind");
    }
    s->last_i = i;
    return ND_OK;
}

nd_status sd_sample(sd_sampler *s, int first, float *x, sd_model_fn model, void *model_ctx,
                    sd_noise_fn noise, void *noise_ctx, nd_err *err)
{
    if (first < 0 || first >= s->steps || !model)
        return nd_fail(err, ND_EINVAL, "sample: bad arguments");
    float *xin = malloc(s->n * sizeof *xin), *eps = malloc(s->n * sizeof *eps);
    nd_status st = ND_OK;
    if (!xin || !eps)
        st = nd_fail(err, ND_ENOMEM, "sample: out of memory");
    for (int i = first; !st && i < s->steps; i++) {
        float c = sd_sampler_input_scale(s, i);
        for (size_t j = 0; j < s->n; j++)
            xin[j] = c * x[j];
        st = model(model_ctx, xin, s->t[i], eps, err);
        if (!st)
            st = sd_sampler_step(s, i, x, eps, noise, noise_ctx, err);
    }
    free(xin);
    free(eps);
    return st;
}

void sd_cfg_combine(const float *eps2, size_t n, float g, float *out)
{
    for (size_t j = 0; j < n; j++) {
        float u = eps2[j], c = eps2[n + j];
        out[j] = u + g * (c - u);
    }
}
