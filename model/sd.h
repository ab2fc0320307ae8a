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

/* ==== 2. components and the pipeline ===================================== */

#endif
