/* gen/model_drawer.c - the SD pipeline behind the drawer interface. */
#include "gen/gen.h"
#include "kernels/ops.h"
#include "model/sd.h"
#include "weights/weights.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

void nd_model_params_init(nd_model_params *p)
{
    memset(p, 0, sizeof *p);
    p->backend = "cpu";
    p->batch = 1;
    p->steps = 20;
    p->sampler = SD_SAMPLER_DDIM;
    p->cfg = 7.5f;
    p->control_scale = 1.0f;
    p->strength = 0.0f; /* the class table's, else 1 */
    p->negative = "";
}

struct nd_model_drawer {
    nd_model_params p;
    const nd_class_table *t;
    nd_weights *w;
    nd_backend *be;
    sd_tokenizer *tok;
    nd_text_encoder *te;
    nd_unet *unet;
    nd_controlnet *cn;
    nd_vae *vae;
    nd_denoiser *den;
    nd_arena arena;            /* text encoder and VAE activations (be's memory) */
    int lat_c, lat_h, lat_w, factor, n_ctx, dim;
    /* prompt embeddings: [n_classes + 1][n_ctx][dim]; the last is the
     * negative. In be's memory (so that a step on a GPU copies none), as
     * are the hint embeddings; latents, eps and hints are host arrays. */
    float *emb;
    uint8_t *emb_ready;
    nd_tensor *emb_t;
    /* per batch slot */
    float *hints;              /* [batch][3][H][W] */
    int *hint_of;              /* which (class, template) a slot's hint is, -1 */
    nd_tensor *hint_t;         /* [batch] views of hints */
    float *hemb;               /* [batch][hemb_n]: the hints through the hint encoder (be) */
    nd_tensor *hemb_t;         /* [batch] views of hemb */
    size_t hemb_n;             /* floats per hint embedding */
    float *x, *eps, *xin;      /* [batch][lat] */
    /* img2img: the templates' latents, [n_classes * ND_CLASS_MAX_TEMPLATES]
     * pointers to [lat] floats, each made on first use (NULL until then) */
    float **tlat;
    double t_text, t_hint, t_steps, t_vae;
    /* the engine's decoder (nd_model_drawer_steps): its own backend, VAE and
     * arena, so that a finished flow decodes on the engine's post thread
     * while the next step runs on the main backend */
    size_t vae_arena, vae_ws;  /* what one decode needs */
    nd_backend *dec_be;
    nd_vae *dec_vae;
    nd_arena dec_arena;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void nd_model_drawer_times(const nd_model_drawer *m, nd_model_times *t)
{
    t->text = m->t_text;
    t->hint = m->t_hint;
    t->steps = m->t_steps;
    t->vae = m->t_vae;
}

size_t nd_model_drawer_device_bytes(const nd_model_drawer *m)
{
    return m ? nd_backend_device_bytes(m->be) : 0;
}

void nd_model_drawer_free(nd_model_drawer *m)
{
    if (!m)
        return;
    nd_denoiser_free(m->den);
    nd_vae_free(m->dec_vae);
    if (m->dec_be)
        nd_backend_arena_free(m->dec_be, &m->dec_arena);
    nd_backend_close(m->dec_be);
    nd_vae_free(m->vae);
    nd_controlnet_free(m->cn);
    nd_unet_free(m->unet);
    nd_text_encoder_free(m->te);
    sd_tokenizer_free(m->tok);
    if (m->be) {
        nd_backend_arena_free(m->be, &m->arena);
        nd_backend_free(m->be, m->emb);
        nd_backend_free(m->be, m->hemb);
    }
    nd_backend_close(m->be);
    nd_weights_free(m->w);
    free(m->emb_ready);
    free(m->emb_t);
    free(m->hints);
    free(m->hint_of);
    free(m->hint_t);
    free(m->hemb_t);
    free(m->x);
    free(m->eps);
    free(m->xin);
    for (int i = 0; m->tlat && i < m->t->n * ND_CLASS_MAX_TEMPLATES; i++)
        free(m->tlat[i]);
    free(m->tlat);
    free(m);
}

/* The embedding of prompt slot k (a class, or n for the negative prompt). */
static nd_status embedding(nd_model_drawer *m, int k, const char *prompt, nd_err *err)
{
    if (m->emb_ready[k])
        return ND_OK;
    int32_t ids[SD_TOKENS];
    nd_status st = sd_tokenize(m->tok, prompt, ids, NULL, err);
    if (st)
        return st;
    double t0 = now_s();
    size_t mark = nd_arena_mark(&m->arena);
    int64_t sh[3] = {1, m->n_ctx, m->dim};
    nd_tensor out;
    float *dst = m->emb + (size_t)k * (size_t)m->n_ctx * (size_t)m->dim;
    nd_tensor e = nd_tensor_make(dst, ND_F32, m->be->device, 3, sh);
    if (!(st = nd_arena_tensor(&m->arena, ND_F32, 3, sh, &out, err)) &&
        !(st = nd_text_encoder_run(m->te, ids, 1, m->n_ctx, &m->arena, &out, err)) &&
        !(st = nd_copy(m->be, &out, &e, err))) {
        m->emb_t[k] = e;
        m->emb_ready[k] = 1;
    }
    nd_arena_reset(&m->arena, mark);
    m->t_text += now_s() - t0;
    return st;
}

static nd_status canny_hint(nd_model_drawer *m, const nd_class *c, int tpl, float *h, nd_err *err);

/* The canny hint of a class template into h (host, [3][H][W]; zero without
 * one) and its embedding by the ControlNet's hint encoder into e ([hemb_n],
 * the backend's memory): once per hint, not once per sampler step. */
static nd_status compute_hint(nd_model_drawer *m, const nd_class *c, int tpl, float *h, float *e,
                              nd_err *err)
{
    double t0 = now_s();
    const nd_layout *l = &m->t->layout;
    nd_status st = canny_hint(m, c, tpl, h, err);
    if (!st) {
        int64_t hs[4] = {1, 3, l->packets, l->width}, es[4];
        nd_controlnet_hint_emb_shape(m->cn, 1, m->lat_h, m->lat_w, es);
        nd_tensor ht, et = nd_tensor_make(e, ND_F32, m->be->device, 4, es);
        size_t mark = nd_arena_mark(&m->arena);
        if (!(st = nd_arena_tensor(&m->arena, ND_F32, 4, hs, &ht, err)) &&
            !(st = nd_backend_upload(m->be, ht.data, h, nd_tensor_bytes(&ht), err)))
            st = nd_controlnet_embed_hint(m->cn, &ht, &m->arena, &et, err);
        nd_arena_reset(&m->arena, mark);
    }
    m->t_hint += now_s() - t0;
    return st;
}

/* The RGB bytes of template tpl of class c (the caller frees *rgb). */
static nd_status read_template(nd_model_drawer *m, const nd_class *c, int tpl, uint8_t **rgb,
                               nd_err *err)
{
    const nd_layout *l = &m->t->layout;
    char path[4096];
    nd_class_template_path(m->t, c, tpl, path, sizeof path);
    int w, hh;
    nd_status st = nd_png_read(path, rgb, &w, &hh, err);
    if (st)
        return st;
    if (w != l->width || hh != l->packets) {
        free(*rgb);
        *rgb = NULL;
        return nd_fail(err, ND_EFORMAT, "%s: template is %dx%d, the layout %dx%d", path, w, hh,
                       l->width, l->packets);
    }
    return ND_OK;
}

static nd_status canny_hint(nd_model_drawer *m, const nd_class *c, int tpl, float *h, nd_err *err)
{
    const nd_layout *l = &m->t->layout;
    size_t npx = (size_t)l->width * (size_t)l->packets;
    if (tpl < 0) {
        memset(h, 0, npx * 3 * sizeof *h);  /* no template: an empty hint */
        return ND_OK;
    }
    uint8_t *rgb;
    nd_status st = read_template(m, c, tpl, &rgb, err);
    if (st)
        return st;
    uint8_t *edges = malloc(npx);
    if (!edges) {
        free(rgb);
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    st = sd_canny(rgb, l->width, l->packets, 3, (size_t)l->width * 3, SD_CANNY_LOW,
                  SD_CANNY_HIGH, edges, err);
    if (!st)
        sd_canny_hint(edges, l->width, l->packets, h);
    free(edges);
    free(rgb);
    return st;
}

/* The latent of template tpl of class c: the VAE encoder's mean (its mode,
 * no sampling, so it is the same on every run) times the scaling factor, as
 * diffusers' img2img makes init_latents. Cached per template. */
static nd_status template_latent(nd_model_drawer *m, const nd_class *c, int tpl,
                                 const float **out, nd_err *err)
{
    const nd_layout *l = &m->t->layout;
    size_t per = (size_t)m->lat_c * (size_t)m->lat_h * (size_t)m->lat_w;
    size_t npx = (size_t)l->width * (size_t)l->packets;
    size_t key = (size_t)(c - m->t->v) * ND_CLASS_MAX_TEMPLATES + (size_t)tpl;
    size_t n_keys = (size_t)m->t->n * ND_CLASS_MAX_TEMPLATES;
    if (!m->tlat && !(m->tlat = calloc(n_keys, sizeof *m->tlat)))
        return nd_fail(err, ND_ENOMEM, "out of memory");
    if (m->tlat[key]) {
        *out = m->tlat[key];
        return ND_OK;
    }
    float *x0 = malloc(per * sizeof(float));
    if (!x0)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    uint8_t *rgb;
    nd_status st = read_template(m, c, tpl, &rgb, err);
    if (st) {
        free(x0);
        return st;
    }
    float *planar = malloc(npx * 3 * sizeof(float)); /* once per template */
    if (!planar) {
        free(x0);
        free(rgb);
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < npx; i++)  /* interleaved bytes -> planar [-1, 1] */
        for (int ch = 0; ch < 3; ch++)
            planar[(size_t)ch * npx + i] = rgb[i * 3 + (size_t)ch] / 127.5f - 1.0f;
    double t0 = now_s();
    size_t mark = nd_arena_mark(&m->arena);
    int64_t is[4] = {1, 3, l->packets, l->width}, ms[4] = {1, 2 * m->lat_c, m->lat_h, m->lat_w};
    nd_tensor img, mom;
    if (!(st = nd_arena_tensor(&m->arena, ND_F32, 4, is, &img, err)) &&
        !(st = nd_arena_tensor(&m->arena, ND_F32, 4, ms, &mom, err)) &&
        !(st = nd_backend_upload(m->be, img.data, planar, nd_tensor_bytes(&img), err)) &&
        !(st = nd_vae_encode(m->vae, &img, &m->arena, &mom, err)) &&
        /* channels [0, latent) of the one sample: the mean */
        !(st = nd_backend_download(m->be, x0, mom.data, per * sizeof(float), err))) {
        float sf = nd_vae_scaling_factor(m->vae);
        for (size_t j = 0; j < per; j++)
            x0[j] *= sf;
        m->tlat[key] = x0;
        *out = x0;
        x0 = NULL;
    }
    nd_arena_reset(&m->arena, mark);
    free(x0); /* on failure */
    free(planar);
    free(rgb);
    m->t_hint += now_s() - t0;
    return st;
}

/* The sampler step a flow starts at: diffusers' img2img runs the last
 * int(steps * strength) steps (at least one here); 0 for strength 1. */
static int start_step(int steps, float strength)
{
    if (!(strength < 1.0f))
        return 0;
    int run = (int)((float)steps * strength);
    if (run < 1)
        run = 1;
    return steps - run;
}

/* A flow's x at its first step: x_T = sigma0 * z from the flow's seed, or
 * with strength < 1 and a template, the template's latent noised with the
 * same z to step `first` (sd_sampler_add_noise, as the scheduler's
 * add_noise). *first is the step it starts at. */
static nd_status init_latent(nd_model_drawer *m, const nd_draw_req *req, sd_sampler *smp,
                             float strength, float *x, int *first, nd_err *err)
{
    size_t per = (size_t)m->lat_c * (size_t)m->lat_h * (size_t)m->lat_w;
    sd_noise_fill(req->seed, 0, SD_NOISE_INIT, 0, x, per);
    *first = req->template_index >= 0 ? start_step(sd_sampler_steps(smp), strength) : 0;
    if (*first == 0) {
        float sigma0 = sd_sampler_init_noise_sigma(smp);
        for (size_t j = 0; j < per; j++)
            x[j] *= sigma0;
        return ND_OK;
    }
    const float *x0 = NULL;
    nd_status st = template_latent(m, req->cls, req->template_index, &x0, err);
    if (!st)
        sd_sampler_add_noise(smp, *first, x0, x, x);  /* out may alias z */
    return st;
}

/* The canny hint of a class template into slot b (cached while unchanged). */
static nd_status hint(nd_model_drawer *m, int b, const nd_class *c, int tpl, nd_err *err)
{
    int key = tpl < 0 ? -1 : (int)(c - m->t->v) * ND_CLASS_MAX_TEMPLATES + tpl;
    if (m->hint_of[b] == key && key >= 0)
        return ND_OK;
    const nd_layout *l = &m->t->layout;
    size_t npx = (size_t)l->width * (size_t)l->packets;
    nd_status st = compute_hint(m, c, tpl, m->hints + (size_t)b * npx * 3,
                                m->hemb + (size_t)b * m->hemb_n, err);
    m->hint_of[b] = st ? -2 : key;
    return st;
}

static nd_tensor emb_view(const nd_model_drawer *m, float *e)
{
    int64_t es[4];
    nd_controlnet_hint_emb_shape(m->cn, 1, m->lat_h, m->lat_w, es);
    return nd_tensor_make(e, ND_F32, m->be->device, 4, es);
}

typedef struct {
    const nd_draw_req *req;
    size_t per;                /* floats per sample latent */
} noise_ctx;

/* Ancestral noise per flow: stream SD_NOISE_STEP(step) of the flow's seed. */
static void step_noise(void *ctx, int step, float *z, size_t n)
{
    noise_ctx *nc = ctx;
    size_t b = n / nc->per;
    for (size_t i = 0; i < b; i++)
        sd_noise_fill(nc->req[i].seed, 0, SD_NOISE_STEP(step), 0, z + i * nc->per, nc->per);
}

/* VAE decode of one final latent x into planar [3][packets][width] in [0, 1]
 * with vae on be (activations from arena, be's memory). */
static nd_status decode(nd_model_drawer *m, nd_backend *be, nd_vae *vae, nd_arena *arena,
                        const float *x, float *planar, nd_err *err)
{
    const nd_layout *l = &m->t->layout;
    size_t per = (size_t)m->lat_c * (size_t)m->lat_h * (size_t)m->lat_w;
    size_t npx = (size_t)l->width * (size_t)l->packets;
    double t0 = now_s();
    float inv = 1.0f / nd_vae_scaling_factor(vae);
    nd_status st;
    size_t mark = nd_arena_mark(arena);
    int64_t zs[4] = {1, m->lat_c, m->lat_h, m->lat_w}, is[4] = {1, 3, l->packets, l->width};
    nd_tensor z, img;
    /* z = x / scaling on the device (x * inv + 0: the same bits as on the
     * host); the image comes back into planar, clamped there */
    if (!(st = nd_arena_tensor(arena, ND_F32, 4, zs, &z, err)) &&
        !(st = nd_arena_tensor(arena, ND_F32, 4, is, &img, err)) &&
        !(st = nd_backend_upload(be, z.data, x, per * sizeof(float), err)) &&
        !(st = nd_scale(be, &z, inv, 0.0f, &z, err)) &&
        !(st = nd_vae_decode(vae, &z, arena, &img, err)) &&
        !(st = nd_backend_download(be, planar, img.data, npx * 3 * sizeof(float), err))) {
        for (size_t j = 0; j < npx * 3; j++) {
            float v = planar[j] * 0.5f + 0.5f;
            planar[j] = v < 0 ? 0 : v > 1 ? 1 : v;
        }
    }
    nd_arena_reset(arena, mark);
    m->t_vae += now_s() - t0;
    return st;
}

static nd_status draw(void *ctx, const nd_draw_req *req, int n, float *planar, nd_err *err)
{
    nd_model_drawer *m = ctx;
    const nd_layout *l = &m->t->layout;
    size_t per = (size_t)m->lat_c * (size_t)m->lat_h * (size_t)m->lat_w;
    size_t npx = (size_t)l->width * (size_t)l->packets;
    nd_status st;
    int neg = m->t->n;
    if ((st = embedding(m, neg, m->p.negative, err)))
        return st;
    for (int i = 0; i < n; i++) {
        int k = (int)(req[i].cls - m->t->v);
        if ((st = embedding(m, k, req[i].cls->prompt, err)))
            return st;
        if (m->cn && (st = hint(m, i, req[i].cls, req[i].template_index, err)))
            return st;
    }
    /* a sampler per flow: with img2img, flows start at different steps (a
     * class without templates starts from noise) */
    sd_sampler *smp[64] = {0};
    int first[64];
    for (int i = 0; i < n && !st; i++)
        if (!(st = sd_sampler_new(&smp[i], (sd_sampler_kind)m->p.sampler, m->p.steps, per, err)))
            st = init_latent(m, &req[i], smp[i], m->p.strength, m->x + (size_t)i * per, &first[i],
                             err);
    nd_denoise_sample s[64];
    int idx[64];
    double t0 = now_s();
    for (int step = 0; step < m->p.steps && !st; step++) {
        int k = 0; /* the flows that have started: sample j is flow idx[j] */
        for (int i = 0; i < n; i++) {
            if (step < first[i])
                continue;
            float *xin = m->xin + (size_t)k * per;
            const float *x = m->x + (size_t)i * per;
            float sc = sd_sampler_input_scale(smp[i], step);
            for (size_t j = 0; j < per; j++)
                xin[j] = x[j] * sc;
            int64_t hs[4] = {1, 3, l->packets, l->width};
            s[k] = (nd_denoise_sample){
                .x = xin,
                .t = sd_sampler_timestep(smp[i], step),
                .ctx_cond = &m->emb_t[req[i].cls - m->t->v],
                .ctx_uncond = &m->emb_t[neg],
                .hint = NULL,
                .guidance = m->p.cfg,
                .control_scale = m->p.control_scale,
            };
            if (m->cn) {
                m->hint_t[k] = nd_tensor_make(m->hints + (size_t)i * npx * 3, ND_F32, ND_DEV_CPU,
                                              4, hs);
                m->hemb_t[k] = emb_view(m, m->hemb + (size_t)i * m->hemb_n);
                s[k].hint = &m->hint_t[k];
                s[k].hint_emb = &m->hemb_t[k];
            }
            idx[k++] = i;
        }
        if (k && (st = nd_denoiser_eps(m->den, s, k, m->eps, err)))
            break;
        for (int j = 0; j < k && !st; j++) {
            noise_ctx nc = {&req[idx[j]], per};
            st = sd_sampler_step(smp[idx[j]], step, m->x + (size_t)idx[j] * per,
                                 m->eps + (size_t)j * per, step_noise, &nc, err);
        }
    }
    for (int i = 0; i < n; i++)
        sd_sampler_free(smp[i]);
    m->t_steps += now_s() - t0;
    if (st)
        return st;
    /* VAE decode, one flow at a time (the arena is sized for one) */
    for (int i = 0; i < n && !st; i++)
        st = decode(m, m->be, m->vae, &m->arena, m->x + (size_t)i * per,
                    planar + (size_t)i * npx * 3, err);
    return st;
}

nd_status nd_model_drawer_new(const nd_model_params *p, const nd_class_table *t,
                              nd_model_drawer **out, nd_drawer *d, nd_err *err)
{
    *out = NULL;
    if (p->batch < 1 || p->batch > 64 || p->steps < 1 || p->steps > 999 || !p->model)
        return nd_fail(err, ND_EINVAL, "bad model parameters (batch 1..64, steps 1..999, a model)");
    if (!(p->strength >= 0.0f && p->strength <= 1.0f))
        return nd_fail(err, ND_EINVAL, "strength %g is not in (0, 1]", (double)p->strength);
    if (p->n_loras < 0 || p->n_loras > ND_MODEL_MAX_LORAS)
        return nd_fail(err, ND_EINVAL, "at most %d LoRAs", ND_MODEL_MAX_LORAS);
    nd_model_drawer *m = calloc(1, sizeof *m);
    if (!m)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    m->p = *p;
    m->t = t;
    if (!(m->p.strength > 0))
        m->p.strength = t->strength > 0 ? t->strength : 1.0f;
    nd_status st;
    nd_weights_params wp;
    nd_weights_params_init(&wp);
    wp.controlnet = p->controlnet;
    for (int i = 0; i < p->n_loras; i++) {
        wp.loras[i].path = p->loras[i].path;
        wp.loras[i].scale = p->loras[i].scale;
    }
    wp.n_loras = p->n_loras;
    if ((st = sd_tokenizer_new(&m->tok, err)))
        goto fail;
    const nd_layout *l = &t->layout;
    /* open the backend once the workspace the ops need is known: measure
     * with a throwaway backend first */
    nd_backend_config bc = {.n_threads = p->threads, .workspace_bytes = 0};
    if ((st = nd_backend_open(p->backend, &bc, &m->be, err)))
        goto fail;
    /* f16 weights on a device (half the upload and memory, and the tensor
     * cores take f16), f32 on the host backends */
    wp.dtype = m->be->device == ND_DEV_CPU ? ND_WDT_F32 : ND_WDT_F16;
    if ((st = nd_weights_load(p->model, &wp, &m->w, err)))
        goto fail;
    if ((st = nd_text_encoder_new(m->w, m->be, NULL, &m->te, err)) ||
        (st = nd_unet_new(m->w, m->be, &m->unet, err)) ||
        (st = nd_vae_new(m->w, m->be, &m->vae, err)))
        goto fail;
    if (p->controlnet && (st = nd_controlnet_new(m->w, m->be, &m->cn, err)))
        goto fail;
    m->factor = nd_vae_factor(m->vae);
    if (l->width % m->factor || l->packets % m->factor) {
        st = nd_fail(err, ND_EINVAL, "image %dx%d is not a multiple of the VAE's factor %d",
                     l->width, l->packets, m->factor);
        goto fail;
    }
    m->lat_c = nd_vae_latent_channels(m->vae);
    m->lat_h = l->packets / m->factor;
    m->lat_w = l->width / m->factor;
    m->n_ctx = nd_text_encoder_max_tokens(m->te);
    m->dim = nd_text_encoder_dim(m->te);
    if (m->dim != nd_unet_context_dim(m->unet) || m->lat_c != nd_unet_in_channels(m->unet)) {
        st = nd_fail(err, ND_EFORMAT, "%s: text encoder width %d / latent channels %d do not "
                     "fit the UNet (%d / %d)", p->model, m->dim, m->lat_c,
                     nd_unet_context_dim(m->unet), nd_unet_in_channels(m->unet));
        goto fail;
    }
    nd_denoiser_params dp;
    nd_denoiser_params_init(&dp);
    dp.max_batch = p->batch;
    dp.height = m->lat_h;
    dp.width = m->lat_w;
    dp.n_ctx = m->n_ctx;
    dp.cfg = true;
    size_t den_arena, ws_need = 0, a1, w1, a2, w2, ws;
    if ((st = nd_denoiser_measure(m->unet, m->cn, &dp, &den_arena, &ws, err)))
        goto fail;
    ws_need = ws;
    if ((st = nd_text_encoder_measure(m->te, 1, m->n_ctx, &a1, &w1, err)) ||
        (st = nd_vae_measure(m->vae, false, 1, m->lat_h, m->lat_w, &a2, &w2, err)))
        goto fail;
    {   /* the template latents of img2img (any flow may ask for one) */
        size_t a4, w4;
        if ((st = nd_vae_measure(m->vae, true, 1, m->lat_h, m->lat_w, &a4, &w4, err)))
            goto fail;
        a1 = a4 > a1 ? a4 : a1;
        w1 = w4 > w1 ? w4 : w1;
    }
    if (m->cn) {
        size_t a3, w3;
        if ((st = nd_controlnet_embed_measure(m->cn, 1, m->lat_h, m->lat_w, &a3, &w3, err)))
            goto fail;
        a2 = a3 > a2 ? a3 : a2;
        w2 = w3 > w2 ? w3 : w2;
        int64_t es[4];
        nd_controlnet_hint_emb_shape(m->cn, 1, m->lat_h, m->lat_w, es);
        m->hemb_n = (size_t)(es[1] * es[2] * es[3]);
    }
    if (w1 > ws_need)
        ws_need = w1;
    if (w2 > ws_need)
        ws_need = w2;
    if (ws_need > (64u << 20)) {
        /* reopen with the workspace the largest op needs */
        nd_denoiser_free(m->den);
        m->den = NULL;
        nd_text_encoder_free(m->te);
        nd_unet_free(m->unet);
        nd_vae_free(m->vae);
        nd_controlnet_free(m->cn);
        m->te = NULL, m->unet = NULL, m->vae = NULL, m->cn = NULL;
        nd_backend_close(m->be);
        bc.workspace_bytes = ws_need;
        if ((st = nd_backend_open(p->backend, &bc, &m->be, err)) ||
            (st = nd_text_encoder_new(m->w, m->be, NULL, &m->te, err)) ||
            (st = nd_unet_new(m->w, m->be, &m->unet, err)) ||
            (st = nd_vae_new(m->w, m->be, &m->vae, err)) ||
            (p->controlnet && (st = nd_controlnet_new(m->w, m->be, &m->cn, err))))
            goto fail;
    }
    if ((st = nd_denoiser_new(m->unet, m->cn, &dp, &m->den, err)))
        goto fail;
    /* one arena for the text encoder, the hint encoder and the VAE: they
     * never run together (the engine's decoder has its own, of the same size) */
    m->vae_arena = a2;
    m->vae_ws = w2;
    if ((st = nd_backend_arena_init(m->be, &m->arena, (a1 > a2 ? a1 : a2) + (64u << 10), err)))
        goto fail;
    size_t per = (size_t)m->lat_c * (size_t)m->lat_h * (size_t)m->lat_w;
    size_t npx = (size_t)l->width * (size_t)l->packets;
    m->emb = nd_backend_alloc(m->be, (size_t)(t->n + 1) * (size_t)m->n_ctx * (size_t)m->dim *
                                         sizeof(float), err);
    m->emb_ready = calloc((size_t)t->n + 1, 1);
    m->emb_t = calloc((size_t)t->n + 1, sizeof *m->emb_t);
    m->hints = m->cn ? calloc((size_t)p->batch * npx * 3, sizeof(float)) : NULL;
    m->hint_of = malloc((size_t)p->batch * sizeof *m->hint_of);
    m->hint_t = calloc((size_t)p->batch, sizeof *m->hint_t);
    m->hemb = m->cn ? nd_backend_alloc(m->be, (size_t)p->batch * m->hemb_n * sizeof(float), err)
                    : NULL;
    m->hemb_t = calloc((size_t)p->batch, sizeof *m->hemb_t);
    m->x = malloc((size_t)p->batch * per * sizeof(float));
    m->eps = malloc((size_t)p->batch * per * sizeof(float));
    m->xin = malloc((size_t)p->batch * per * sizeof(float));
    if (!m->emb || !m->emb_ready || !m->emb_t || (m->cn && (!m->hints || !m->hemb)) || !m->hint_of || !m->hint_t || !m->hemb_t || !m->x ||
        !m->eps || !m->xin) {
        st = nd_fail(err, ND_ENOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < p->batch; i++)
        m->hint_of[i] = -2;
    d->ctx = m;
    d->max_batch = p->batch;
    d->layout = *l;
    d->draw = draw;
    *out = m;
    return ND_OK;
fail:
    nd_model_drawer_free(m);
    return st;
}

/* ---- step by step, for the engine (continuous batching) ---- */

typedef struct {
    nd_draw_req req;
    sd_sampler *smp;
    int step, steps;
    float cfg;
    float *x;                  /* [per] this flow's latent          */
    float *hint;               /* [3][H][W] or NULL (no ControlNet) */
    float *hemb;               /* [hemb_n]: its embedding (the backend's memory) */
} model_flow;

static void flow_free(void *ctx, void *flow)
{
    nd_model_drawer *m = ctx;
    model_flow *f = flow;
    if (!f)
        return;
    sd_sampler_free(f->smp);
    free(f->x);
    free(f->hint);
    nd_backend_free(m->be, f->hemb);
    free(f);
}

static nd_status flow_begin(void *ctx, const nd_draw_req *req, const nd_flow_params *p,
                            void **out, nd_err *err)
{
    nd_model_drawer *m = ctx;
    const nd_layout *l = &m->t->layout;
    size_t per = (size_t)m->lat_c * (size_t)m->lat_h * (size_t)m->lat_w;
    size_t npx = (size_t)l->width * (size_t)l->packets;
    nd_status st;
    if ((st = embedding(m, m->t->n, m->p.negative, err)) ||
        (st = embedding(m, (int)(req->cls - m->t->v), req->cls->prompt, err)))
        return st;
    model_flow *f = calloc(1, sizeof *f);
    if (!f)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    f->req = *req;
    f->steps = p && p->steps > 0 ? p->steps : m->p.steps;
    f->cfg = p && p->cfg >= 0 ? p->cfg : m->p.cfg;
    int kind = p && p->sampler >= 0 ? p->sampler : m->p.sampler;
    f->x = malloc(per * sizeof(float));
    if (!f->x || (m->cn && (!(f->hint = malloc(npx * 3 * sizeof(float))) ||
                            !(f->hemb = nd_backend_alloc(m->be, m->hemb_n * sizeof(float),
                                                         err))))) {
        flow_free(m, f);
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    if ((st = sd_sampler_new(&f->smp, (sd_sampler_kind)kind, f->steps, per, err)) ||
        (m->cn && (st = compute_hint(m, req->cls, req->template_index, f->hint, f->hemb, err)))) {
        flow_free(m, f);
        return st;
    }
    /* as draw(): x_T from the flow's seed, or its template's latent noised */
    float strength = p && p->strength > 0 ? p->strength : m->p.strength;
    if (strength > 1.0f || (st = init_latent(m, req, f->smp, strength, f->x, &f->step, err))) {
        flow_free(m, f);
        return st ? st : nd_fail(err, ND_EINVAL, "strength %g is not in (0, 1]", (double)strength);
    }
    *out = f;
    return ND_OK;
}

static nd_status flows_step(void *ctx, void *const *flows, int n, uint8_t *done, nd_err *err)
{
    nd_model_drawer *m = ctx;
    const nd_layout *l = &m->t->layout;
    size_t per = (size_t)m->lat_c * (size_t)m->lat_h * (size_t)m->lat_w;
    if (n > m->p.batch)
        return nd_fail(err, ND_EINVAL, "%d flows in a step, the model takes %d", n, m->p.batch);
    nd_denoise_sample s[64];
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        model_flow *f = flows[i];
        float sc = sd_sampler_input_scale(f->smp, f->step);
        for (size_t j = 0; j < per; j++)
            m->xin[(size_t)i * per + j] = f->x[j] * sc;
        int64_t hs[4] = {1, 3, l->packets, l->width};
        s[i] = (nd_denoise_sample){
            .x = m->xin + (size_t)i * per,
            .t = sd_sampler_timestep(f->smp, f->step),
            .ctx_cond = &m->emb_t[f->req.cls - m->t->v],
            .ctx_uncond = &m->emb_t[m->t->n],
            .hint = NULL,
            .guidance = f->cfg,
            .control_scale = m->p.control_scale,
        };
        if (m->cn) {
            m->hint_t[i] = nd_tensor_make(f->hint, ND_F32, ND_DEV_CPU, 4, hs);
            m->hemb_t[i] = emb_view(m, f->hemb);
            s[i].hint = &m->hint_t[i];
            s[i].hint_emb = &m->hemb_t[i];
        }
    }
    nd_status st = nd_denoiser_eps(m->den, s, n, m->eps, err);
    for (int i = 0; i < n && !st; i++) {
        model_flow *f = flows[i];
        noise_ctx nc = {&f->req, per};
        st = sd_sampler_step(f->smp, f->step, f->x, m->eps + (size_t)i * per, step_noise, &nc, err);
        f->step++;
        done[i] = f->step >= f->steps;
    }
    m->t_steps += now_s() - t0;
    return st;
}

/* On the decoder's own backend: may run beside begin() and step(). */
static nd_status flow_finish(void *ctx, void *flow, float *planar, nd_err *err)
{
    nd_model_drawer *m = ctx;
    return decode(m, m->dec_be, m->dec_vae, &m->dec_arena, ((model_flow *)flow)->x, planar, err);
}

nd_status nd_model_drawer_steps(nd_model_drawer *m, nd_step_drawer *sd, nd_err *err)
{
    if (!m->dec_be) {
        /* the decoder runs beside the next step: by default on half the cores */
        long cores = m->p.threads > 0 ? m->p.threads : sysconf(_SC_NPROCESSORS_ONLN);
        int dec = m->p.decode_threads > 0 ? m->p.decode_threads : cores > 1 ? (int)(cores / 2) : 1;
        nd_backend_config bc = {.n_threads = dec,
                                .workspace_bytes = m->vae_ws > (64u << 20) ? m->vae_ws : 0};
        nd_status st;
        if ((st = nd_backend_open(m->p.backend, &bc, &m->dec_be, err)) ||
            (st = nd_vae_new(m->w, m->dec_be, &m->dec_vae, err)) ||
            (st = nd_backend_arena_init(m->dec_be, &m->dec_arena, m->vae_arena + (64u << 10),
                                        err)))
            return st;  /* what was made is freed with the drawer */
    }
    *sd = (nd_step_drawer){m, m->p.batch, m->t->layout, flow_begin, flows_step, flow_finish,
                           flow_free, 1};
    return ND_OK;
}

/* Copies of a small model per core (see gen.h). */
#define SMALL_MODEL_BYTES ((off_t)256 << 20)

int nd_model_auto_copies(const nd_model_params *p, int threads)
{
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    if (threads == 1 || !p->backend || strncmp(p->backend, "cpu", 3))
        return 1;
    const char *files[2 + ND_MODEL_MAX_LORAS] = {p->model, p->controlnet};
    for (int i = 0; i < p->n_loras; i++)
        files[2 + i] = p->loras[i].path;
    off_t total = 0;
    for (int i = 0; i < 2 + p->n_loras; i++) {
        struct stat sb;
        if (!files[i])
            continue;
        /* a diffusers folder (or anything unreadable): assume it is large */
        if (stat(files[i], &sb) || !S_ISREG(sb.st_mode))
            return 1;
        total += sb.st_size;
    }
    if (total >= SMALL_MODEL_BYTES)
        return 1;
    return threads < ND_MODEL_MAX_COPIES ? threads : ND_MODEL_MAX_COPIES;
}
