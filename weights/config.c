/* weights/config.c - component configurations: parsed from diffusers /
 * transformers config.json, or inferred from tensor shapes when a file (LDM,
 * original ControlNet) carries none. Values that shapes cannot show (heads,
 * GroupNorm groups, eps) take SD1.5's. */
#include "weights/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int jint(json_t *o, const char *k, int def, int *bad)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v))
        return def;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000) {
        *bad = 1;
        return def;
    }
    return (int)json_integer_value(v);
}

static float jnum(json_t *o, const char *k, float def, int *bad)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v))
        return def;
    if (!json_is_number(v)) {
        *bad = 1;
        return def;
    }
    return (float)json_number_value(v);
}

/* An int, or a list of equal ints (newer diffusers allow per-block lists). */
static int jint_or_list(json_t *o, const char *k, int def, int *bad)
{
    json_t *v = json_object_get(o, k);
    if (json_is_array(v)) {
        if (!json_array_size(v) || !json_is_integer(json_array_get(v, 0))) {
            *bad = 1;
            return def;
        }
        json_int_t first = json_integer_value(json_array_get(v, 0));
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) if (!json_is_integer(x) || json_integer_value(x) != first)
            *bad = 2;
        if (first < 0 || first > 1000000)
            *bad = 1;
        return (int)first;
    }
    return jint(o, k, def, bad);
}

static int jints(json_t *o, const char *k, int *out, int maxn, int *bad)
{
    json_t *v = json_object_get(o, k);
    if (!v)
        return -1;
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > (size_t)maxn) {
        *bad = 1;
        return 0;
    }
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        if (!json_is_integer(x) || json_integer_value(x) <= 0 || json_integer_value(x) > 100000) {
            *bad = 1;
            return 0;
        }
        out[i] = (int)json_integer_value(x);
    }
    return (int)json_array_size(v);
}

/* block type lists: 1 for CrossAttn*, 0 for plain; -1 count on error */
static int jblocks(json_t *o, const char *k, int *out, int *bad)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_array(v) || json_array_size(v) > ND_W_MAXBLOCKS) {
        if (v)
            *bad = 1;
        return -1;
    }
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        const char *s = json_string_value(x);
        if (!s) {
            *bad = 1;
            return -1;
        }
        out[i] = strstr(s, "CrossAttn") != NULL;
    }
    return (int)json_array_size(v);
}

static nd_status load_obj(const char *json, size_t len, json_t **out, nd_err *err)
{
    *out = nd_wjson_load(json, len, err);
    if (!*out)
        return ND_EFORMAT;
    if (!json_is_object(*out)) {
        json_decref(*out);
        return nd_fail(err, ND_EFORMAT, "config is not a JSON object");
    }
    return ND_OK;
}

static const int sd15_unet_boc[4] = {320, 640, 1280, 1280};

nd_status nd_unet_config_parse(const char *json, size_t len, nd_unet_config *c, nd_err *err)
{
    json_t *o;
    nd_status st = load_obj(json, len, &o, err);
    if (st)
        return st;
    memset(c, 0, sizeof *c);
    int bad = 0;
    const char *cls = json_string_value(json_object_get(o, "_class_name"));
    int cn = cls && !strcmp(cls, "ControlNetModel");
    c->present = c->from_json = 1;
    c->in_channels = jint(o, "in_channels", 4, &bad);
    c->out_channels = cn ? 0 : jint(o, "out_channels", 4, &bad);
    c->n_blocks = jints(o, "block_out_channels", c->block_out_channels, ND_W_MAXBLOCKS, &bad);
    if (c->n_blocks < 0) {
        c->n_blocks = 4;
        memcpy(c->block_out_channels, sd15_unet_boc, sizeof sd15_unet_boc);
    }
    int lb = 0;
    c->layers_per_block = jint_or_list(o, "layers_per_block", 2, &lb);
    int nd = jblocks(o, "down_block_types", c->down_attn, &bad);
    if (nd < 0)
        for (int i = 0; i < c->n_blocks; i++)
            c->down_attn[i] = i < c->n_blocks - 1;
    int nu = cn ? -1 : jblocks(o, "up_block_types", c->up_attn, &bad);
    if (nu < 0 && !cn)
        for (int i = 0; i < c->n_blocks; i++)
            c->up_attn[i] = i > 0;
    c->cross_attention_dim = jint_or_list(o, "cross_attention_dim", 768, &bad);
    int hb = 0;
    c->num_heads = jint_or_list(o, "attention_head_dim", 8, &hb);
    if (json_is_integer(json_object_get(o, "num_attention_heads")))
        c->num_heads = jint(o, "num_attention_heads", 8, &bad);
    c->norm_num_groups = jint(o, "norm_num_groups", 32, &bad);
    c->norm_eps = jnum(o, "norm_eps", 1e-5f, &bad);
    json_t *ulp = json_object_get(o, "use_linear_projection");
    c->use_linear_projection = json_is_true(ulp);
    c->sample_size = jint(o, "sample_size", 64, &bad);
    int tl = 0;
    int tlayers = jint_or_list(o, "transformer_layers_per_block", 1, &tl);
    if (cn) {
        c->cond_channels = jint(o, "conditioning_channels", 3, &bad);
        c->n_cond_embed = jints(o, "conditioning_embedding_out_channels", c->cond_embed_channels,
                                ND_W_MAXBLOCKS, &bad);
        if (c->n_cond_embed < 0) {
            static const int def[4] = {16, 32, 96, 256};
            c->n_cond_embed = 4;
            memcpy(c->cond_embed_channels, def, sizeof def);
        }
    }
    json_decref(o);
    if (bad || hb == 1 || lb == 1 || tl == 1)
        return nd_fail(err, ND_EFORMAT, "UNet config: a field has the wrong type or range");
    if (lb == 2 || hb == 2 || tl == 2 || tlayers != 1)
        return nd_fail(err, ND_EUNSUPPORTED,
                       "UNet config: per-block layer/head lists and stacked transformers are "
                       "not SD1.5 and not supported");
    if ((nd >= 0 && nd != c->n_blocks) || (nu >= 0 && nu != c->n_blocks))
        return nd_fail(err, ND_EFORMAT, "UNet config: %d block channels but %d down / %d up types",
                       c->n_blocks, nd, nu);
    if (c->layers_per_block < 1 || c->layers_per_block > 8 || c->in_channels < 1 ||
        (!cn && c->out_channels < 1) || c->cross_attention_dim < 1 || c->num_heads < 1 ||
        c->norm_num_groups < 1)
        return nd_fail(err, ND_EFORMAT, "UNet config: a size is zero or out of range");
    return ND_OK;
}

nd_status nd_vae_config_parse(const char *json, size_t len, nd_vae_config *c, nd_err *err)
{
    json_t *o;
    nd_status st = load_obj(json, len, &o, err);
    if (st)
        return st;
    memset(c, 0, sizeof *c);
    int bad = 0;
    c->present = c->from_json = 1;
    c->in_channels = jint(o, "in_channels", 3, &bad);
    c->out_channels = jint(o, "out_channels", 3, &bad);
    c->latent_channels = jint(o, "latent_channels", 4, &bad);
    c->n_blocks = jints(o, "block_out_channels", c->block_out_channels, ND_W_MAXBLOCKS, &bad);
    if (c->n_blocks < 0) {
        static const int def[4] = {128, 256, 512, 512};
        c->n_blocks = 4;
        memcpy(c->block_out_channels, def, sizeof def);
    }
    c->layers_per_block = jint(o, "layers_per_block", 2, &bad);
    c->norm_num_groups = jint(o, "norm_num_groups", 32, &bad);
    c->sample_size = jint(o, "sample_size", 512, &bad);
    c->scaling_factor = jnum(o, "scaling_factor", 0.18215f, &bad);
    json_decref(o);
    if (bad || c->layers_per_block < 1 || c->layers_per_block > 8 || c->in_channels < 1 ||
        c->out_channels < 1 || c->latent_channels < 1 || c->norm_num_groups < 1)
        return nd_fail(err, ND_EFORMAT, "VAE config: a field has the wrong type or range");
    return ND_OK;
}

nd_status nd_clip_config_parse(const char *json, size_t len, nd_clip_config *c, nd_err *err)
{
    json_t *o;
    nd_status st = load_obj(json, len, &o, err);
    if (st)
        return st;
    /* a CLIPConfig (text + vision) nests the text part */
    json_t *t = json_object_get(o, "text_config");
    json_t *src = json_is_object(t) ? t : o;
    memset(c, 0, sizeof *c);
    int bad = 0;
    c->present = c->from_json = 1;
    c->vocab_size = jint(src, "vocab_size", 49408, &bad);
    c->hidden_size = jint(src, "hidden_size", 512, &bad);
    c->intermediate_size = jint(src, "intermediate_size", 2048, &bad);
    c->num_layers = jint(src, "num_hidden_layers", 12, &bad);
    c->num_heads = jint(src, "num_attention_heads", 8, &bad);
    c->max_position_embeddings = jint(src, "max_position_embeddings", 77, &bad);
    c->layer_norm_eps = jnum(src, "layer_norm_eps", 1e-5f, &bad);
    json_t *act = json_object_get(src, "hidden_act");
    c->quick_gelu = !act || (json_is_string(act) && !strcmp(json_string_value(act), "quick_gelu"));
    if (act && !json_is_string(act))
        bad = 1;
    json_decref(o);
    if (bad || c->vocab_size < 1 || c->hidden_size < 1 || c->intermediate_size < 1 ||
        c->num_layers < 1 || c->num_layers > 1000 || c->num_heads < 1 ||
        c->max_position_embeddings < 1 || c->hidden_size % c->num_heads)
        return nd_fail(err, ND_EFORMAT, "CLIP config: a field has the wrong type or range");
    return ND_OK;
}

/* ---- inference from shapes -------------------------------------------------- */

static int shape_of(nd_wshape_fn f, void *ctx, int64_t *sh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int shape_of(nd_wshape_fn f, void *ctx, int64_t *sh, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return f(ctx, name, sh);
}

nd_status nd_unet_config_infer(nd_wshape_fn f, void *ctx, int cn, nd_unet_config *c, nd_err *err)
{
    int64_t sh[ND_W_MAXDIM];
    memset(c, 0, sizeof *c);
    if (shape_of(f, ctx, sh, "conv_in.weight") != 4)
        return nd_fail(err, ND_EFORMAT, "%s: no 4-d conv_in.weight to infer the config from",
                       cn ? "ControlNet" : "UNet");
    c->present = 1;
    c->in_channels = (int)sh[1];
    if (!cn && shape_of(f, ctx, sh, "conv_out.weight") == 4)
        c->out_channels = (int)sh[0];
    while (c->n_blocks < ND_W_MAXBLOCKS &&
           shape_of(f, ctx, sh, "down_blocks.%d.resnets.0.conv1.weight", c->n_blocks) == 4)
        c->block_out_channels[c->n_blocks++] = (int)sh[0];
    while (c->layers_per_block < 8 &&
           shape_of(f, ctx, sh, "down_blocks.0.resnets.%d.conv1.weight", c->layers_per_block) > 0)
        c->layers_per_block++;
    if (!c->n_blocks || !c->layers_per_block)
        return nd_fail(err, ND_EFORMAT, "%s: no down_blocks.0.resnets.0 to infer the config from",
                       cn ? "ControlNet" : "UNet");
    c->cross_attention_dim = 768;
    int found_cross = 0;
    for (int i = 0; i < c->n_blocks; i++) {
        int nd = shape_of(f, ctx, sh, "down_blocks.%d.attentions.0.proj_in.weight", i);
        c->down_attn[i] = nd > 0;
        if (nd > 0)
            c->use_linear_projection = nd == 2;
        if (nd > 0 && !found_cross &&
            shape_of(f, ctx, sh, "down_blocks.%d.attentions.0.transformer_blocks.0.attn2.to_k.weight",
                     i) == 2) {
            c->cross_attention_dim = (int)sh[1];
            found_cross = 1;
        }
        if (!cn)
            c->up_attn[i] = shape_of(f, ctx, sh, "up_blocks.%d.attentions.0.proj_in.weight", i) > 0;
    }
    if (!found_cross &&
        shape_of(f, ctx, sh, "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight") == 2)
        c->cross_attention_dim = (int)sh[1];
    c->num_heads = 8;
    c->norm_num_groups = 32;
    c->norm_eps = 1e-5f;
    c->sample_size = 64;
    if (cn) {
        if (shape_of(f, ctx, sh, "controlnet_cond_embedding.conv_in.weight") != 4)
            return nd_fail(err, ND_EFORMAT, "ControlNet: no hint encoder (controlnet_cond_embedding)");
        c->cond_channels = (int)sh[1];
        c->cond_embed_channels[0] = (int)sh[0];
        c->n_cond_embed = 1;
        while (c->n_cond_embed < ND_W_MAXBLOCKS &&
               shape_of(f, ctx, sh, "controlnet_cond_embedding.blocks.%d.weight",
                        2 * c->n_cond_embed - 1) == 4)
            c->cond_embed_channels[c->n_cond_embed++] = (int)sh[0];
    }
    return ND_OK;
}

nd_status nd_vae_config_infer(nd_wshape_fn f, void *ctx, nd_vae_config *c, nd_err *err)
{
    int64_t sh[ND_W_MAXDIM];
    memset(c, 0, sizeof *c);
    if (shape_of(f, ctx, sh, "decoder.conv_in.weight") != 4)
        return nd_fail(err, ND_EFORMAT, "VAE: no decoder.conv_in.weight to infer the config from");
    c->present = 1;
    c->latent_channels = (int)sh[1];
    if (shape_of(f, ctx, sh, "decoder.conv_out.weight") == 4)
        c->out_channels = (int)sh[0];
    c->in_channels = 3;
    if (shape_of(f, ctx, sh, "encoder.conv_in.weight") == 4)
        c->in_channels = (int)sh[1];
    while (c->n_blocks < ND_W_MAXBLOCKS &&
           shape_of(f, ctx, sh, "encoder.down_blocks.%d.resnets.0.conv1.weight", c->n_blocks) == 4)
        c->block_out_channels[c->n_blocks++] = (int)sh[0];
    while (c->layers_per_block < 8 &&
           shape_of(f, ctx, sh, "encoder.down_blocks.0.resnets.%d.conv1.weight",
                    c->layers_per_block) > 0)
        c->layers_per_block++;
    if (!c->n_blocks)
        return nd_fail(err, ND_EFORMAT, "VAE: no encoder.down_blocks to infer the config from");
    c->norm_num_groups = 32;
    c->sample_size = 512;
    c->scaling_factor = 0.18215f;
    return ND_OK;
}

nd_status nd_clip_config_infer(nd_wshape_fn f, void *ctx, nd_clip_config *c, nd_err *err)
{
    int64_t sh[ND_W_MAXDIM];
    memset(c, 0, sizeof *c);
    if (shape_of(f, ctx, sh, "text_model.embeddings.token_embedding.weight") != 2)
        return nd_fail(err, ND_EFORMAT, "CLIP: no token_embedding to infer the config from");
    c->present = 1;
    c->vocab_size = (int)sh[0];
    c->hidden_size = (int)sh[1];
    if (shape_of(f, ctx, sh, "text_model.embeddings.position_embedding.weight") == 2)
        c->max_position_embeddings = (int)sh[0];
    while (c->num_layers < 1000 &&
           shape_of(f, ctx, sh, "text_model.encoder.layers.%d.mlp.fc1.weight", c->num_layers) == 2)
        c->intermediate_size = (int)sh[0], c->num_layers++;
    /* ViT-L/14 (SD1.5) has 64-wide heads */
    c->num_heads = c->hidden_size % 64 == 0 ? c->hidden_size / 64 : 1;
    c->layer_norm_eps = 1e-5f;
    c->quick_gelu = 1;
    return ND_OK;
}
