/* model/sd.h - Stable Diffusion 1.5 in C: the whole public contract of the
 * model module (CLIP tokenizer and text encoder, UNet2DCondition, VAE,
 * ControlNet, samplers, canny, the batched pipeline).
 *
 * Written once against kernels/ops.h (compute) and weights/weights.h
 * (parameters): every backend runs the same code, and every shape comes from
 * the loaded model's configuration, so a tiny test model and full SD1.5 share
 * every line. No I/O other than through weights.h; no printing; errors are
 * nd_status + nd_err.
 *
 * The header has two sections, each owned by one part of the module:
 *   1. tokenizer, noise, schedules, samplers, canny (no kernels needed)
 *   2. components (text encoder, UNet, VAE, ControlNet) and the pipeline */
#ifndef ND_MODEL_SD_H
#define ND_MODEL_SD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/nd.h"

/* ==== 1. tokenizer, noise, schedules, samplers, canny ==================== */

/* ---- CLIP BPE tokenizer (model/tokenizer.c) ----
 * The OpenAI CLIP vocabulary embedded in the library (model/data/). Same ids
 * as transformers.CLIPTokenizer: NFC, whitespace runs -> " ", lowercase, the
 * CLIP pre-split, byte-level BPE; "<|startoftext|>"/"<|endoftext|>" written in
 * a prompt are the special ids. Prompts must be UTF-8 (else ND_EFORMAT) and at
 * most SD_PROMPT_MAX bytes (else ND_EINVAL). Loaded once, then read-only:
 * one tokenizer may be used by many threads. */
#define SD_TOKENS      77      /* framed length: BOS + 75 + EOS, padded       */
#define SD_TOK_BOS     49406   /* <|startoftext|>                             */
#define SD_TOK_EOS     49407   /* <|endoftext|>, also SD1.5's padding         */
#define SD_TOK_PAD     49407
#define SD_VOCAB_SIZE  49408
#define SD_PROMPT_MAX  (64 * 1024)

typedef struct sd_tokenizer sd_tokenizer;

nd_status sd_tokenizer_new(sd_tokenizer **out, nd_err *err);
void sd_tokenizer_free(sd_tokenizer *tok);
/* The unframed BPE ids of text[0..len): the first min(cap, total) go to ids,
 * the total count to *n_total (may exceed cap). */
nd_status sd_tokenize_raw(const sd_tokenizer *tok, const char *text, size_t len,
                          int32_t *ids, size_t cap, size_t *n_total, nd_err *err);
/* SD1.5 framing (diffusers): BOS, the first 75 ids, EOS, then SD_TOK_PAD up to
 * 77. *truncated (may be NULL) tells whether ids were dropped. */
nd_status sd_tokenize(const sd_tokenizer *tok, const char *text,
                      int32_t ids[SD_TOKENS], bool *truncated, nd_err *err);
/* A1111 / sd.cpp long prompts: 75-id chunks each framed to 77, at most
 * max_chunks (ids holds 77 * max_chunks); an empty prompt is one chunk. */
nd_status sd_tokenize_chunks(const sd_tokenizer *tok, const char *text,
                             int32_t *ids, size_t max_chunks, size_t *n_chunks,
                             nd_err *err);
/* The vocabulary string of an id (byte-level symbols, "</w>" suffix), or NULL. */
const char *sd_token_str(const sd_tokenizer *tok, int32_t id);

/* ---- seeded Gaussian noise (model/noise.c) ----
 * Counter-based (Philox4x32-10 keyed by the seed, Box-Muller): element i of
 * stream (seed, sample, stream) is a pure function of those four numbers, so a
 * sample's noise does not depend on the batch size, thread count or backend
 * (it is made on the host). Stream SD_NOISE_INIT is the initial latent,
 * SD_NOISE_STEP(k) the ancestral noise of sampler step k. */
#define SD_NOISE_INIT      0u
#define SD_NOISE_STEP(k)   (1u + (uint32_t)(k))

float sd_noise_at(uint64_t seed, uint32_t sample, uint32_t stream, uint64_t index);
/* out[j] = sd_noise_at(seed, sample, stream, first + j), j < n (faster). */
void sd_noise_fill(uint64_t seed, uint32_t sample, uint32_t stream, uint64_t first,
                   float *out, size_t n);

/* ---- schedule and samplers (model/sampler.c) ---- */
#define SD_TRAIN_STEPS 1000   /* sd_sampler_new takes 1..999 steps */

/* SD1.5's training schedule: scaled-linear betas 0.00085..0.012, computed in
 * float32 as diffusers does; sigmas[t] = sqrt((1 - abar_t) / abar_t). */
typedef struct {
    float betas[SD_TRAIN_STEPS];
    float alphas_cumprod[SD_TRAIN_STEPS];
    float sigmas[SD_TRAIN_STEPS];
} sd_schedule;
void sd_schedule_sd15(sd_schedule *s);

typedef enum {
    SD_SAMPLER_DDIM = 0,          /* eta 0                                   */
    SD_SAMPLER_EULER,
    SD_SAMPLER_EULER_A,           /* ancestral, eta 1: needs a noise source  */
    SD_SAMPLER_DPMPP_2M_KARRAS,   /* DPM++ 2M (dpmsolver++, order 2), Karras */
    SD_SAMPLER_COUNT
} sd_sampler_kind;

/* "ddim", "euler", "euler_a", "dpmpp_2m_karras"; parse returns ND_ENOTFOUND. */
const char *sd_sampler_name(sd_sampler_kind kind);
nd_status sd_sampler_parse(const char *name, sd_sampler_kind *kind, nd_err *err);

/* Fills z[0..n) with fresh N(0,1) noise for sampler step `step` (the whole
 * batch's latents, in the order the sampler's x holds them). */
typedef void (*sd_noise_fn)(void *ctx, int step, float *z, size_t n);
/* The standard source: sample b of the batch (n / batch elements each) gets
 * sd_noise_fill(seed, first_sample + b, SD_NOISE_STEP(step), 0, ...). */
typedef struct { uint64_t seed; uint32_t first_sample; size_t batch; } sd_noise_source;
void sd_noise_source_fn(void *ctx /* sd_noise_source* */, int step, float *z, size_t n);

/* One sampling run: `steps` steps over latents of n floats (whole batch).
 * "leading" spacing with steps offset 1 for every kind (ratio 1000 // steps),
 * as SD1.5's scheduler config; DPM++ takes its timesteps from the Karras
 * sigmas. Each step i: x_in = input_scale(i) * x; eps = model(x_in, t = timestep(i))
 * (after CFG); sd_sampler_step(i) updates x in place. Steps run in order
 * 0..steps-1 (DPM++ keeps the previous step's x0 prediction). */
typedef struct sd_sampler sd_sampler;
nd_status sd_sampler_new(sd_sampler **out, sd_sampler_kind kind, int steps, size_t n,
                         nd_err *err);
void sd_sampler_free(sd_sampler *s);
int sd_sampler_steps(const sd_sampler *s);
float sd_sampler_timestep(const sd_sampler *s, int i);  /* the UNet's t         */
float sd_sampler_sigma(const sd_sampler *s, int i);     /* i = 0..steps; [steps] = 0 */
float sd_sampler_input_scale(const sd_sampler *s, int i);
/* x_T = init_noise_sigma * N(0,1) (1 for DDIM and DPM++; sqrt(sigma_0^2+1) for Euler). */
float sd_sampler_init_noise_sigma(const sd_sampler *s);
/* noise/noise_ctx: only SD_SAMPLER_EULER_A uses them (ND_EINVAL if NULL). */
nd_status sd_sampler_step(sd_sampler *s, int i, float *x, const float *eps,
                          sd_noise_fn noise, void *noise_ctx, nd_err *err);
/* img2img / hires: the noised latent at step i, out = add_noise(x0, z) as the
 * diffusers scheduler's add_noise with timestep(i); start sampling at step i. */
void sd_sampler_add_noise(const sd_sampler *s, int i, const float *x0, const float *z,
                          float *out);

/* The model as a callback, for sd_sample: eps[0..n) for x_in[0..n) at t. */
typedef nd_status (*sd_model_fn)(void *ctx, const float *x_in, float t, float *eps,
                                 nd_err *err);
/* Runs steps first..steps-1 on x (x_T already scaled by init_noise_sigma). */
nd_status sd_sample(sd_sampler *s, int first, float *x, sd_model_fn model, void *model_ctx,
                    sd_noise_fn noise, void *noise_ctx, nd_err *err);

/* Classifier-free guidance over a doubled batch: eps2 = [uncond (n); cond (n)],
 * out[j] = u + g * (c - u). out may alias eps2. */
void sd_cfg_combine(const float *eps2, size_t n, float g, float *out);

/* ---- canny (model/canny.c) ----
 * OpenCV's cv2.Canny(img, low, high) (aperture 3, L1 gradient), which the
 * ControlNet annotators (lllyasviel, Mikubill's extension, controlnet_aux) run
 * on the RGB image: Sobel 3x3 with replicated borders per channel, the channel
 * with the largest |dx|+|dy| per pixel, non-maximum suppression, hysteresis
 * (8-connected; strict > low / > high). No blur (cv2.Canny has none). img is
 * h rows of w pixels with `channels` (1 or 3) interleaved bytes, row stride
 * `stride` bytes; edges is [h*w], 0 or 255. ControlNet canny: 100 / 200. */
#define SD_CANNY_LOW  100
#define SD_CANNY_HIGH 200
nd_status sd_canny(const uint8_t *img, int w, int h, int channels, size_t stride,
                   int low, int high, uint8_t *edges, nd_err *err);
/* Optional pre-blur (the textbook canny; the ControlNet annotators do NOT
 * blur): cv2.GaussianBlur(img, (5, 5), sigma) bit-exact for 8-bit images
 * (OpenCV's fixed-point path, BORDER_REFLECT_101), e.g. sigma 1.4. out has
 * the layout of img with stride w * channels; channels 1..4. */
nd_status sd_gaussian_blur5(const uint8_t *img, int w, int h, int channels, size_t stride,
                            double sigma, uint8_t *out, nd_err *err);
/* The ControlNet hint: hint[c*h*w + i] = edges[i] / 255 for c = 0..2 ([3,h,w]). */
void sd_canny_hint(const uint8_t *edges, int w, int h, float *hint);

/* ==== 2. components and the pipeline ===================================== */

/* Every component is created from loaded weights (nd_weights_load) and an
 * open backend (nd_backend_open), borrows both (they must outlive it), takes
 * every shape from the weights' configuration and holds no activations.
 * A run gets its activations from the caller's arena: temporaries are taken
 * after a mark and released before it returns; outputs are tensors the
 * caller has allocated (f32, on the backend's device: an arena from
 * nd_backend_arena_init) with the documented shape; inputs live there too.
 * On a device backend the weights are the backend's resident copies
 * (nd_backend_resident), uploaded by the first run that reads them. Given
 * a measuring arena (nd_arena_init_measure) a run computes nothing and
 * only counts, so one pass sizes the arena that later runs it;
 * the *_measure functions do that for one call and also say how much backend
 * workspace (nd_backend_config.workspace_bytes) the ops need. */
typedef struct nd_tensor nd_tensor;
typedef struct nd_arena nd_arena;
typedef struct nd_backend nd_backend;
typedef struct nd_weights nd_weights;

/* ---- CLIP text encoder: ids -> last_hidden_state ---- */
typedef struct nd_text_encoder nd_text_encoder;
typedef struct {
    int clip_skip; /* diffusers' clip_skip: 0 = all layers (SD1.5), 1 = penultimate */
} nd_text_encoder_params;
void nd_text_encoder_params_init(nd_text_encoder_params *p);
nd_status nd_text_encoder_new(const nd_weights *w, nd_backend *be, const nd_text_encoder_params *p,
                              nd_text_encoder **out, nd_err *err); /* p may be NULL */
void nd_text_encoder_free(nd_text_encoder *te);
int nd_text_encoder_dim(const nd_text_encoder *te);        /* hidden size: 768 */
int nd_text_encoder_max_tokens(const nd_text_encoder *te); /* 77 */
/* ids[batch*n_tokens] (framed and padded by the tokenizer) -> out[batch,n_tokens,dim].
 * ids may be NULL only with a measuring arena. */
nd_status nd_text_encoder_run(nd_text_encoder *te, const int32_t *ids, int batch, int n_tokens,
                              nd_arena *a, nd_tensor *out, nd_err *err);
nd_status nd_text_encoder_measure(nd_text_encoder *te, int batch, int n_tokens,
                                  size_t *arena_bytes, size_t *ws_bytes, nd_err *err);

/* ---- UNet2DConditionModel: eps prediction ---- */
typedef struct nd_unet nd_unet;
nd_status nd_unet_new(const nd_weights *w, nd_backend *be, nd_unet **out, nd_err *err);
void nd_unet_free(nd_unet *u);
int nd_unet_in_channels(const nd_unet *u);  /* 4 */
int nd_unet_out_channels(const nd_unet *u); /* 4 */
int nd_unet_context_dim(const nd_unet *u);  /* 768 */
/* Number of skip tensors (ControlNet down residuals): 12 for SD1.5. */
int nd_unet_n_skips(const nd_unet *u);
typedef struct {
    const nd_tensor *x;   /* [B,in,H,W] latent (H, W multiples of 2^(levels-1)) */
    const nd_tensor *t;   /* [B] f32 timesteps (fractional ok) */
    const nd_tensor *ctx; /* [B,T,context_dim] */
    /* Optional ControlNet residuals (already scaled): down_res[i] is added to
     * skip i, mid_res to the mid block's output; NULL for none. */
    const nd_tensor *const *down_res; /* n_skips tensors */
    const nd_tensor *mid_res;
    /* The caller's promise that sample j and j + B/2 have the same x and t
     * (a CFG batch [uncond; cond]): the part before the first cross-attention
     * then runs once per pair (same bits, less work). */
    bool cfg_pairs;
} nd_unet_input;
nd_status nd_unet_run(nd_unet *u, const nd_unet_input *in, nd_arena *a, nd_tensor *out,
                      nd_err *err); /* out [B,out,H,W] */
nd_status nd_unet_measure(nd_unet *u, int batch, int h, int w, int n_ctx, bool control,
                          size_t *arena_bytes, size_t *ws_bytes, nd_err *err);

/* ---- ControlNet: residuals for the UNet ---- */
typedef struct nd_controlnet nd_controlnet;
/* Uses the "controlnet." tensors of w (nd_weights_params.controlnet). */
nd_status nd_controlnet_new(const nd_weights *w, nd_backend *be, nd_controlnet **out, nd_err *err);
void nd_controlnet_free(nd_controlnet *cn);
int nd_controlnet_n_down(const nd_controlnet *cn); /* = nd_unet_n_skips: 12 */
int nd_controlnet_hint_factor(const nd_controlnet *cn); /* hint pixels per latent: 8 */
typedef struct {
    const nd_tensor *x, *t, *ctx; /* as nd_unet_input */
    const nd_tensor *hint;        /* [B,3,H*f,W*f], values in [0,1] */
    float scale;                  /* conditioning scale, multiplies every residual */
    /* Optional: the hint already through the hint encoder
     * (nd_controlnet_embed_hint), [B,C0,H,W]; then hint is not read. */
    const nd_tensor *hint_emb;
    bool cfg_pairs;               /* as nd_unet_input (and the same hint per pair) */
} nd_controlnet_input;
/* Shape of down residual i (i == n_down: the mid residual) for a latent HxW. */
void nd_controlnet_res_shape(const nd_controlnet *cn, int i, int batch, int h, int w,
                             int64_t shape[4]);
/* down[n_down] and mid must be allocated with nd_controlnet_res_shape's shapes. */
nd_status nd_controlnet_run(nd_controlnet *cn, const nd_controlnet_input *in, nd_arena *a,
                            nd_tensor *down, nd_tensor *mid, nd_err *err);
nd_status nd_controlnet_measure(nd_controlnet *cn, int batch, int h, int w, int n_ctx,
                                size_t *arena_bytes, size_t *ws_bytes, nd_err *err);
/* The hint encoder (controlnet_cond_embedding) alone: hint [B,3,h*f,w*f] ->
 * emb [B,C0,h,w] (shape from nd_controlnet_hint_emb_shape), what
 * nd_controlnet_run adds to conv_in's output. It depends on the hint only,
 * not on the latent, timestep or prompt, and at the hint's full resolution
 * it is most of the ControlNet's work on a small model: a sampler loop
 * computes it once per hint instead of once per step and CFG half. */
void nd_controlnet_hint_emb_shape(const nd_controlnet *cn, int batch, int h, int w,
                                  int64_t shape[4]);
nd_status nd_controlnet_embed_hint(nd_controlnet *cn, const nd_tensor *hint, nd_arena *a,
                                   nd_tensor *emb, nd_err *err);
nd_status nd_controlnet_embed_measure(nd_controlnet *cn, int batch, int h, int w,
                                      size_t *arena_bytes, size_t *ws_bytes, nd_err *err);

/* ---- AutoencoderKL ---- */
typedef struct nd_vae nd_vae;
nd_status nd_vae_new(const nd_weights *w, nd_backend *be, nd_vae **out, nd_err *err);
void nd_vae_free(nd_vae *v);
float nd_vae_scaling_factor(const nd_vae *v); /* 0.18215 */
int nd_vae_factor(const nd_vae *v);           /* pixels per latent side: 8 */
int nd_vae_latent_channels(const nd_vae *v);  /* 4 */
/* diffusers vae.decode: z [B,4,h,w] is the *unscaled* latent (the pipeline
 * divides by the scaling factor) -> img [B,3,h*f,w*f] in about [-1,1]. */
nd_status nd_vae_decode(nd_vae *v, const nd_tensor *z, nd_arena *a, nd_tensor *img, nd_err *err);
/* diffusers vae.encode: img [B,3,H,W] in [-1,1] -> moments [B,2*latent,H/f,W/f]:
 * channels [0,latent) the mean (the latent_dist mode), then the log-variance
 * (before diffusers' clamp to [-30,20]); unscaled. */
nd_status nd_vae_encode(nd_vae *v, const nd_tensor *img, nd_arena *a, nd_tensor *moments,
                        nd_err *err);
nd_status nd_vae_measure(nd_vae *v, bool encode, int batch, int h, int w, size_t *arena_bytes,
                         size_t *ws_bytes, nd_err *err); /* h, w: latent size */

/* ---- batched denoiser: the pipeline's model call ---- */
/* One guided eps prediction for N samples at once, each with its own latent,
 * timestep, prompt embeddings, hint, guidance and ControlNet scale. With CFG
 * the UNet (and ControlNet) run once on the doubled batch [uncond x N, cond x N]
 * and eps = eps_u + g (eps_c - eps_u) per sample. All activations come from
 * one arena allocated at nd_denoiser_new (sized by the measuring pass for
 * max_batch, in the backend's memory); nothing allocates per step. Latents
 * and eps are host f32 arrays on every backend (the samplers run on the
 * host): a call uploads x and t and downloads the UNet's output. A sample's
 * contexts, hint and hint embedding may be the backend's tensors (best: no
 * copy each step) or host f32 tensors (uploaded each call). */
typedef struct nd_denoiser nd_denoiser;
typedef struct {
    int max_batch;      /* N samples per call (1) */
    int height, width;  /* latent size (64x64) */
    int n_ctx;          /* tokens per context (77) */
    bool cfg;           /* classifier-free guidance: doubled batch (true) */
} nd_denoiser_params;
void nd_denoiser_params_init(nd_denoiser_params *p);
/* cn may be NULL. Fails with ND_ENOMEM when the backend's workspace is
 * smaller than the ops need (the message says how much). */
nd_status nd_denoiser_new(nd_unet *u, nd_controlnet *cn, const nd_denoiser_params *p,
                          nd_denoiser **out, nd_err *err);
void nd_denoiser_free(nd_denoiser *d);
size_t nd_denoiser_arena_bytes(const nd_denoiser *d);
/* Workspace the ops need for these params (also without a denoiser: the
 * backend must be opened with at least this much). */
nd_status nd_denoiser_measure(nd_unet *u, nd_controlnet *cn, const nd_denoiser_params *p,
                              size_t *arena_bytes, size_t *ws_bytes, nd_err *err);
typedef struct {
    const float *x;              /* [in_channels,h,w] model input (already c_in-scaled) */
    float t;                     /* timestep (fractional ok) */
    const nd_tensor *ctx_cond;   /* [1,n_ctx,dim] (a cached prompt embedding) */
    const nd_tensor *ctx_uncond; /* [1,n_ctx,dim]; unused without CFG */
    const nd_tensor *hint;       /* [1,3,h*f,w*f] in [0,1], or NULL: no ControlNet */
    /* Optional, with hint: the hint's embedding [1,C0,h,w] from
     * nd_controlnet_embed_hint, so the hint encoder is not run again
     * (bit-identical to passing the hint alone). */
    const nd_tensor *hint_emb;
    float guidance;              /* CFG scale g */
    float control_scale;         /* ControlNet conditioning scale */
} nd_denoise_sample;
/* eps[n*out_channels*h*w] for samples s[0..n), n <= max_batch. */
nd_status nd_denoiser_eps(nd_denoiser *d, const nd_denoise_sample *s, int n, float *eps,
                          nd_err *err);

#endif
