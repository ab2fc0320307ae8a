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

#endif
