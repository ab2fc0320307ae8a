/* weights/internal.h - shared between the files of weights/ only; not part of
 * the public contract (weights.h is). */
#ifndef ND_WEIGHTS_INTERNAL_H
#define ND_WEIGHTS_INTERNAL_H

#include "weights/weights.h"

#include <jansson.h>

int nd_wdtype_from_name(const char *s);

/* Expected tensors of a component, from its config: canonical names without
 * the component prefix, with their shapes. */
typedef struct {
    char *name;
    int ndim;
    int64_t shape[4];
} nd_wkey;
typedef struct {
    nd_wkey *v;
    size_t n, cap;
} nd_wkeys;
void nd_wkeys_free(nd_wkeys *k);
nd_status nd_wkeys_unet(const nd_unet_config *c, int controlnet, nd_wkeys *out);
nd_status nd_wkeys_vae(const nd_vae_config *c, nd_wkeys *out);
nd_status nd_wkeys_clip(const nd_clip_config *c, nd_wkeys *out);

/* Shape lookup used by config inference: returns ndim and fills shape, or -1
 * when NAME is absent. */
typedef int (*nd_wshape_fn)(void *ctx, const char *name, int64_t *shape);
nd_status nd_unet_config_infer(nd_wshape_fn f, void *ctx, int controlnet, nd_unet_config *c,
                               nd_err *err);
nd_status nd_vae_config_infer(nd_wshape_fn f, void *ctx, nd_vae_config *c, nd_err *err);
nd_status nd_clip_config_infer(nd_wshape_fn f, void *ctx, nd_clip_config *c, nd_err *err);

/* Key mapping from the LDM / original ControlNet spelling to diffusers names
 * (no component prefix). L = layers_per_block. Returns 1 and writes OUT when
 * the key maps, 0 when it is not a key of that component. */
int nd_ldm_unet_key(const char *in, int L, char *out, size_t cap);
int nd_ldm_vae_key(const char *in, int n_blocks, char *out, size_t cap);
int nd_ldm_controlnet_key(const char *in, int L, int hint_last, char *out, size_t cap);
/* Reads the json with limits (size, depth) fit for untrusted input. */
json_t *nd_wjson_load(const char *buf, size_t len, nd_err *err);
nd_status nd_wread_file(const char *path, size_t max, char **out, size_t *len, nd_err *err);

/* Drops the resident pages of [p, p+n) of a mapped file (a tensor already
 * converted into a copy), so a loaded f16 file does not stay in the RSS beside
 * its f32 copy; a no-op for nd_st_open_mem buffers. */
void nd_st_release(const nd_st_file *f, const void *p, size_t n);

/* load.c internals used by lora.c */
nd_wtensor *nd_weights_get_mut(nd_weights *w, const char *name);
nd_wdtype nd_weights_dtype(const nd_weights *w);

#endif
