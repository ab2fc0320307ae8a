/* weights/ldm_map.c - LDM (CompVis) and original-ControlNet key names to
 * diffusers names, the mapping of diffusers' single_file_utils.py and
 * sd.cpp's name_conversion.cpp (docs/sd15.md 8.3, 8.4), generalised over the
 * number of blocks and layers_per_block so tiny models map like SD1.5. */
#include "weights/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses "<num>." at *s; advances past the dot. -1 when absent. */
static int num(const char **s)
{
    const char *p = *s;
    if (*p < '0' || *p > '9')
        return -1;
    long v = strtol(p, (char **)&p, 10);
    if (*p != '.' || v > 100000)
        return -1;
    *s = p + 1;
    return (int)v;
}

static int starts(const char **s, const char *pre)
{
    size_t n = strlen(pre);
    if (strncmp(*s, pre, n))
        return 0;
    *s += n;
    return 1;
}

static int put(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int put(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return n > 0 && (size_t)n < cap;
}

/* UNet ResBlock inner names -> ResnetBlock2D names. */
static const char *unet_res(const char *r, char *buf, size_t cap)
{
    static const char *const m[][2] = {
        {"in_layers.0.", "norm1."},        {"in_layers.2.", "conv1."},
        {"emb_layers.1.", "time_emb_proj."}, {"out_layers.0.", "norm2."},
        {"out_layers.3.", "conv2."},        {"skip_connection.", "conv_shortcut."},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        size_t n = strlen(m[i][0]);
        if (!strncmp(r, m[i][0], n)) {
            snprintf(buf, cap, "%s%s", m[i][1], r + n);
            return buf;
        }
    }
    return NULL;
}

/* The parts shared by the UNet and the ControlNet: time embedding, input
 * blocks, middle block. */
static int unet_common(const char *s, int L, char *out, size_t cap)
{
    char rb[256];
    const char *r;
    if (starts(&s, "time_embed.")) {
        int k = num(&s);
        if (k != 0 && k != 2)
            return 0;
        return put(out, cap, "time_embedding.linear_%d.%s", k ? 2 : 1, s);
    }
    if (starts(&s, "input_blocks.")) {
        int n = num(&s), sub = num(&s);
        if (n < 0 || sub < 0)
            return 0;
        if (n == 0)
            return sub == 0 && put(out, cap, "conv_in.%s", s);
        int i = (n - 1) / (L + 1), j = (n - 1) % (L + 1);
        if (j == L)
            return sub == 0 && starts(&s, "op.") &&
                   put(out, cap, "down_blocks.%d.downsamplers.0.conv.%s", i, s);
        if (sub == 0)
            return (r = unet_res(s, rb, sizeof rb)) &&
                   put(out, cap, "down_blocks.%d.resnets.%d.%s", i, j, r);
        if (sub == 1)
            return put(out, cap, "down_blocks.%d.attentions.%d.%s", i, j, s);
        return 0;
    }
    if (starts(&s, "middle_block.")) {
        int sub = num(&s);
        if (sub == 1)
            return put(out, cap, "mid_block.attentions.0.%s", s);
        if (sub == 0 || sub == 2)
            return (r = unet_res(s, rb, sizeof rb)) &&
                   put(out, cap, "mid_block.resnets.%d.%s", sub / 2, r);
        return 0;
    }
    return 0;
}

int nd_ldm_unet_key(const char *s, int L, char *out, size_t cap)
{
    char rb[256];
    const char *r;
    if (L < 1)
        return 0;
    if (unet_common(s, L, out, cap))
        return 1;
    if (starts(&s, "out.")) {
        int k = num(&s);
        return (k == 0 || k == 2) && put(out, cap, "%s.%s", k ? "conv_out" : "conv_norm_out", s);
    }
    if (starts(&s, "output_blocks.")) {
        int n = num(&s), sub = num(&s);
        if (n < 0 || sub < 0)
            return 0;
        int i = n / (L + 1), j = n % (L + 1);
        if (sub == 0)
            return (r = unet_res(s, rb, sizeof rb)) &&
                   put(out, cap, "up_blocks.%d.resnets.%d.%s", i, j, r);
        /* an up block without attention has its upsampler at index 1 */
        if ((sub == 1 || sub == 2) && starts(&s, "conv."))
            return put(out, cap, "up_blocks.%d.upsamplers.0.conv.%s", i, s);
        if (sub == 1)
            return put(out, cap, "up_blocks.%d.attentions.%d.%s", i, j, s);
        return 0;
    }
    return 0;
}

int nd_ldm_controlnet_key(const char *s, int L, int hint_last, char *out, size_t cap)
{
    if (L < 1)
        return 0;
    if (unet_common(s, L, out, cap))
        return 1;
    if (starts(&s, "input_hint_block.")) {
        int k = num(&s);
        if (k < 0 || k % 2)
            return 0;
        if (k == 0)
            return put(out, cap, "controlnet_cond_embedding.conv_in.%s", s);
        if (k == hint_last)
            return put(out, cap, "controlnet_cond_embedding.conv_out.%s", s);
        return put(out, cap, "controlnet_cond_embedding.blocks.%d.%s", k / 2 - 1, s);
    }
    if (starts(&s, "zero_convs.")) {
        int i = num(&s);
        return i >= 0 && starts(&s, "0.") && put(out, cap, "controlnet_down_blocks.%d.%s", i, s);
    }
    if (starts(&s, "middle_block_out.0."))
        return put(out, cap, "controlnet_mid_block.%s", s);
    return 0;
}

/* VAE ResnetBlock: only the shortcut is renamed. */
static int vae_res(const char *r, char *buf, size_t cap)
{
    if (!strncmp(r, "nin_shortcut.", 13))
        return put(buf, cap, "conv_shortcut.%s", r + 13);
    return put(buf, cap, "%s", r);
}

static int vae_mid(const char *side, const char *s, char *out, size_t cap)
{
    char rb[256];
    if (starts(&s, "block_1."))
        return vae_res(s, rb, sizeof rb) && put(out, cap, "%s.mid_block.resnets.0.%s", side, rb);
    if (starts(&s, "block_2."))
        return vae_res(s, rb, sizeof rb) && put(out, cap, "%s.mid_block.resnets.1.%s", side, rb);
    if (starts(&s, "attn_1.")) {
        static const char *const m[][2] = {
            {"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."},
            {"v.", "to_v."},          {"proj_out.", "to_out.0."},
        };
        for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
            if (starts(&s, m[i][0]))
                return put(out, cap, "%s.mid_block.attentions.0.%s%s", side, m[i][1], s);
    }
    return 0;
}

int nd_ldm_vae_key(const char *s, int nb, char *out, size_t cap)
{
    char rb[256];
    if (!strncmp(s, "quant_conv.", 11) || !strncmp(s, "post_quant_conv.", 16))
        return put(out, cap, "%s", s);
    const char *side = !strncmp(s, "encoder.", 8) ? "encoder" : !strncmp(s, "decoder.", 8) ? "decoder" : NULL;
    if (!side)
        return 0;
    s += 8;
    if (!strncmp(s, "conv_in.", 8) || !strncmp(s, "conv_out.", 9))
        return put(out, cap, "%s.%s", side, s);
    if (starts(&s, "norm_out."))
        return put(out, cap, "%s.conv_norm_out.%s", side, s);
    if (starts(&s, "mid."))
        return vae_mid(side, s, out, cap);
    if (side[0] == 'e' && starts(&s, "down.")) {
        int i = num(&s);
        if (i < 0)
            return 0;
        if (starts(&s, "block.")) {
            int j = num(&s);
            return j >= 0 && vae_res(s, rb, sizeof rb) &&
                   put(out, cap, "encoder.down_blocks.%d.resnets.%d.%s", i, j, rb);
        }
        if (starts(&s, "downsample.conv."))
            return put(out, cap, "encoder.down_blocks.%d.downsamplers.0.conv.%s", i, s);
        return 0;
    }
    if (side[0] == 'd' && starts(&s, "up.")) {
        int k = num(&s), i = nb - 1 - k; /* LDM counts decoder blocks upward */
        if (k < 0 || i < 0)
            return 0;
        if (starts(&s, "block.")) {
            int j = num(&s);
            return j >= 0 && vae_res(s, rb, sizeof rb) &&
                   put(out, cap, "decoder.up_blocks.%d.resnets.%d.%s", i, j, rb);
        }
        if (starts(&s, "upsample.conv."))
            return put(out, cap, "decoder.up_blocks.%d.upsamplers.0.conv.%s", i, s);
    }
    return 0;
}
