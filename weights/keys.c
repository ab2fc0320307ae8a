/* weights/keys.c - the tensors a component must have, from its config, with
 * diffusers names and shapes. Loading checks files against these lists, so
 * missing, unexpected and mis-shaped keys are found by one comparison. */
#include "weights/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nd_wkeys_free(nd_wkeys *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->v[i].name);
    free(k->v);
    memset(k, 0, sizeof *k);
}

typedef struct {
    nd_wkeys *k;
    int oom;
} kb;

static void add(kb *b, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt,
                ...) __attribute__((format(printf, 7, 8)));
static void add(kb *b, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt,
                ...)
{
    if (b->oom)
        return;
    nd_wkeys *k = b->k;
    if (k->n == k->cap) {
        size_t nc = k->cap ? 2 * k->cap : 256;
        nd_wkey *v = realloc(k->v, nc * sizeof *v);
        if (!v) {
            b->oom = 1;
            return;
        }
        k->v = v;
        k->cap = nc;
    }
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    nd_wkey *e = &k->v[k->n];
    e->name = strdup(name);
    if (!e->name) {
        b->oom = 1;
        return;
    }
    e->ndim = ndim;
    e->shape[0] = d0, e->shape[1] = d1, e->shape[2] = d2, e->shape[3] = d3;
    k->n++;
}

/* weight + bias helpers; P is the module path */
static void conv(kb *b, const char *p, int64_t o, int64_t i, int64_t ks)
{
    add(b, 4, o, i, ks, ks, "%s.weight", p);
    add(b, 1, o, 0, 0, 0, "%s.bias", p);
}
static void lin(kb *b, const char *p, int64_t o, int64_t i, int bias)
{
    add(b, 2, o, i, 0, 0, "%s.weight", p);
    if (bias)
        add(b, 1, o, 0, 0, 0, "%s.bias", p);
}
static void norm(kb *b, const char *p, int64_t c)
{
    add(b, 1, c, 0, 0, 0, "%s.weight", p);
    add(b, 1, c, 0, 0, 0, "%s.bias", p);
}

static void resnet(kb *b, const char *p, int64_t cin, int64_t cout, int64_t temb)
{
    char s[200];
    snprintf(s, sizeof s, "%s.norm1", p), norm(b, s, cin);
    snprintf(s, sizeof s, "%s.conv1", p), conv(b, s, cout, cin, 3);
    if (temb)
        snprintf(s, sizeof s, "%s.time_emb_proj", p), lin(b, s, cout, temb, 1);
    snprintf(s, sizeof s, "%s.norm2", p), norm(b, s, cout);
    snprintf(s, sizeof s, "%s.conv2", p), conv(b, s, cout, cout, 3);
    if (cin != cout)
        snprintf(s, sizeof s, "%s.conv_shortcut", p), conv(b, s, cout, cin, 1);
}

static void transformer(kb *b, const char *p, int64_t c, int64_t cross, int linear_proj)
{
    char s[200];
    snprintf(s, sizeof s, "%s.norm", p), norm(b, s, c);
    if (linear_proj) {
        snprintf(s, sizeof s, "%s.proj_in", p), lin(b, s, c, c, 1);
    } else {
        snprintf(s, sizeof s, "%s.proj_in", p), conv(b, s, c, c, 1);
    }
    const char *tb = "transformer_blocks.0";
    for (int a = 1; a <= 2; a++) {
        int64_t kv = a == 1 ? c : cross;
        snprintf(s, sizeof s, "%s.%s.attn%d.to_q", p, tb, a), lin(b, s, c, c, 0);
        snprintf(s, sizeof s, "%s.%s.attn%d.to_k", p, tb, a), lin(b, s, c, kv, 0);
        snprintf(s, sizeof s, "%s.%s.attn%d.to_v", p, tb, a), lin(b, s, c, kv, 0);
        snprintf(s, sizeof s, "%s.%s.attn%d.to_out.0", p, tb, a), lin(b, s, c, c, 1);
    }
    snprintf(s, sizeof s, "%s.%s.ff.net.0.proj", p, tb), lin(b, s, 8 * c, c, 1);
    snprintf(s, sizeof s, "%s.%s.ff.net.2", p, tb), lin(b, s, c, 4 * c, 1);
    for (int n = 1; n <= 3; n++)
        snprintf(s, sizeof s, "%s.%s.norm%d", p, tb, n), norm(b, s, c);
    if (linear_proj) {
        snprintf(s, sizeof s, "%s.proj_out", p), lin(b, s, c, c, 1);
    } else {
        snprintf(s, sizeof s, "%s.proj_out", p), conv(b, s, c, c, 1);
    }
}

nd_status nd_wkeys_unet(const nd_unet_config *c, int cn, nd_wkeys *out)
{
    memset(out, 0, sizeof *out);
    kb b = {out, 0};
    char p[200];
    const int n = c->n_blocks, L = c->layers_per_block, *boc = c->block_out_channels;
    const int64_t b0 = boc[0], T = 4 * b0, X = c->cross_attention_dim;
    const int lp = c->use_linear_projection;
    conv(&b, "conv_in", b0, c->in_channels, 3);
    lin(&b, "time_embedding.linear_1", T, b0, 1);
    lin(&b, "time_embedding.linear_2", T, T, 1);
    int zc = 0; /* ControlNet zero convs, one per down-path output */
    if (cn) {
        const int *ce = c->cond_embed_channels;
        conv(&b, "controlnet_cond_embedding.conv_in", ce[0], c->cond_channels, 3);
        for (int i = 0; i + 1 < c->n_cond_embed; i++) {
            snprintf(p, sizeof p, "controlnet_cond_embedding.blocks.%d", 2 * i);
            conv(&b, p, ce[i], ce[i], 3);
            snprintf(p, sizeof p, "controlnet_cond_embedding.blocks.%d", 2 * i + 1);
            conv(&b, p, ce[i + 1], ce[i], 3);
        }
        conv(&b, "controlnet_cond_embedding.conv_out", b0, ce[c->n_cond_embed - 1], 3);
        snprintf(p, sizeof p, "controlnet_down_blocks.%d", zc++);
        conv(&b, p, b0, b0, 1);
    }
    for (int i = 0; i < n; i++) {
        int64_t o = boc[i], in = i ? boc[i - 1] : b0;
        for (int j = 0; j < L; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            resnet(&b, p, j ? o : in, o, T);
            if (c->down_attn[i]) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
                transformer(&b, p, o, X, lp);
            }
            if (cn) {
                snprintf(p, sizeof p, "controlnet_down_blocks.%d", zc++);
                conv(&b, p, o, o, 1);
            }
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
            conv(&b, p, o, o, 3);
            if (cn) {
                snprintf(p, sizeof p, "controlnet_down_blocks.%d", zc++);
                conv(&b, p, o, o, 1);
            }
        }
    }
    const int64_t cm = boc[n - 1];
    resnet(&b, "mid_block.resnets.0", cm, cm, T);
    transformer(&b, "mid_block.attentions.0", cm, X, lp);
    resnet(&b, "mid_block.resnets.1", cm, cm, T);
    if (cn) {
        conv(&b, "controlnet_mid_block", cm, cm, 1);
    } else {
        for (int i = 0; i < n; i++) {
            int64_t o = boc[n - 1 - i], prev = boc[n - 1 - (i ? i - 1 : 0)],
                    in = boc[n - 1 - (i + 1 < n ? i + 1 : n - 1)];
            for (int j = 0; j <= L; j++) {
                int64_t skip = j == L ? in : o, rin = j ? o : prev;
                snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
                resnet(&b, p, rin + skip, o, T);
                if (c->up_attn[i]) {
                    snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
                    transformer(&b, p, o, X, lp);
                }
            }
            if (i < n - 1) {
                snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
                conv(&b, p, o, o, 3);
            }
        }
        norm(&b, "conv_norm_out", b0);
        conv(&b, "conv_out", c->out_channels, b0, 3);
    }
    if (b.oom) {
        nd_wkeys_free(out);
        return ND_ENOMEM;
    }
    return ND_OK;
}

static void vae_mid(kb *b, const char *side, int64_t c)
{
    char p[200];
    snprintf(p, sizeof p, "%s.mid_block.resnets.0", side), resnet(b, p, c, c, 0);
    snprintf(p, sizeof p, "%s.mid_block.attentions.0.group_norm", side), norm(b, p, c);
    static const char *const proj[] = {"to_q", "to_k", "to_v", "to_out.0"};
    for (int i = 0; i < 4; i++)
        snprintf(p, sizeof p, "%s.mid_block.attentions.0.%s", side, proj[i]), lin(b, p, c, c, 1);
    snprintf(p, sizeof p, "%s.mid_block.resnets.1", side), resnet(b, p, c, c, 0);
}

nd_status nd_wkeys_vae(const nd_vae_config *c, nd_wkeys *out)
{
    memset(out, 0, sizeof *out);
    kb b = {out, 0};
    char p[200];
    const int n = c->n_blocks, L = c->layers_per_block, *boc = c->block_out_channels;
    const int64_t lat = c->latent_channels, cm = boc[n - 1];
    conv(&b, "encoder.conv_in", boc[0], c->in_channels, 3);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < L; j++) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
            resnet(&b, p, j ? boc[i] : (i ? boc[i - 1] : boc[0]), boc[i], 0);
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            conv(&b, p, boc[i], boc[i], 3);
        }
    }
    vae_mid(&b, "encoder", cm);
    norm(&b, "encoder.conv_norm_out", cm);
    conv(&b, "encoder.conv_out", 2 * lat, cm, 3);
    conv(&b, "quant_conv", 2 * lat, 2 * lat, 1);
    conv(&b, "post_quant_conv", lat, lat, 1);
    conv(&b, "decoder.conv_in", cm, lat, 3);
    vae_mid(&b, "decoder", cm);
    for (int i = 0; i < n; i++) {
        int64_t o = boc[n - 1 - i], prev = boc[n - 1 - (i ? i - 1 : 0)];
        for (int j = 0; j <= L; j++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
            resnet(&b, p, j ? o : prev, o, 0);
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            conv(&b, p, o, o, 3);
        }
    }
    norm(&b, "decoder.conv_norm_out", boc[0]);
    conv(&b, "decoder.conv_out", c->out_channels, boc[0], 3);
    if (b.oom) {
        nd_wkeys_free(out);
        return ND_ENOMEM;
    }
    return ND_OK;
}

nd_status nd_wkeys_clip(const nd_clip_config *c, nd_wkeys *out)
{
    memset(out, 0, sizeof *out);
    kb b = {out, 0};
    char p[200];
    const int64_t H = c->hidden_size, I = c->intermediate_size;
    add(&b, 2, c->vocab_size, H, 0, 0, "text_model.embeddings.token_embedding.weight");
    add(&b, 2, c->max_position_embeddings, H, 0, 0,
        "text_model.embeddings.position_embedding.weight");
    for (int l = 0; l < c->num_layers; l++) {
        static const char *const proj[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        for (int i = 0; i < 4; i++) {
            snprintf(p, sizeof p, "text_model.encoder.layers.%d.self_attn.%s", l, proj[i]);
            lin(&b, p, H, H, 1);
        }
        snprintf(p, sizeof p, "text_model.encoder.layers.%d.layer_norm1", l), norm(&b, p, H);
        snprintf(p, sizeof p, "text_model.encoder.layers.%d.layer_norm2", l), norm(&b, p, H);
        snprintf(p, sizeof p, "text_model.encoder.layers.%d.mlp.fc1", l), lin(&b, p, I, H, 1);
        snprintf(p, sizeof p, "text_model.encoder.layers.%d.mlp.fc2", l), lin(&b, p, H, I, 1);
    }
    norm(&b, "text_model.final_layer_norm", H);
    if (b.oom) {
        nd_wkeys_free(out);
        return ND_ENOMEM;
    }
    return ND_OK;
}
