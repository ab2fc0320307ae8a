/* gen/standin_drawer.c - a drawer without a model: a class template plus
 * seeded noise. For tests and load runs of cli/ and server/ (selected there
 * by a hidden environment variable); the model path is the same code after. */
#include "gen/gen.h"

#include <stdlib.h>
#include <string.h>

struct nd_standin_drawer {
    const nd_class_table *t;
    uint8_t **tpl;              /* [class * ND_CLASS_MAX_TEMPLATES + k], decoded once */
};

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static nd_status draw(void *ctx, const nd_draw_req *req, int n, float *planar, nd_err *err)
{
    nd_standin_drawer *s = ctx;
    const nd_layout *l = &s->t->layout;
    size_t npx = (size_t)l->width * (size_t)l->packets;
    for (int i = 0; i < n; i++) {
        const uint8_t *rgb = NULL;
        if (req[i].template_index >= 0) {
            size_t key = (size_t)(req[i].cls - s->t->v) * ND_CLASS_MAX_TEMPLATES +
                         (size_t)req[i].template_index;
            if (!s->tpl[key]) {
                char p[4096];
                int w, h;
                uint8_t *img;
                nd_class_template_path(s->t, req[i].cls, req[i].template_index, p, sizeof p);
                nd_status st = nd_png_read(p, &img, &w, &h, err);
                if (st)
                    return st;
                if (w != l->width || h != l->packets) {
                    free(img);
                    return nd_fail(err, ND_EFORMAT, "%s: template is %dx%d, the layout %dx%d", p,
                                   w, h, l->width, l->packets);
                }
                s->tpl[key] = img;
            }
            rgb = s->tpl[key];
        }
        float *o = planar + (size_t)i * npx * 3;
        for (size_t px = 0; px < npx; px++)
            for (int c = 0; c < 3; c++) {
                /* noise that flips ~1% of bits: the seed decides which */
                uint64_t r = mix(req[i].seed ^ (px * 3 + (uint64_t)c));
                float v = rgb ? rgb[3 * px + (size_t)c] / 255.0f : 0.0f;
                if ((r & 255) < 2)
                    v = 1.0f - v;
                o[(size_t)c * npx + px] = v + (float)((r >> 8) & 255) / 2560.0f - 0.05f;
            }
    }
    return ND_OK;
}

nd_status nd_standin_drawer_new(const nd_class_table *t, int max_batch, nd_standin_drawer **out,
                                nd_drawer *d, nd_err *err)
{
    *out = NULL;
    if (max_batch < 1 || max_batch > 4096)
        return nd_fail(err, ND_EINVAL, "stand-in drawer: batch 1..4096");
    nd_standin_drawer *s = calloc(1, sizeof *s);
    if (!s || !(s->tpl = calloc((size_t)(t->n ? t->n : 1) * ND_CLASS_MAX_TEMPLATES, sizeof *s->tpl))) {
        free(s);
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    s->t = t;
    *d = (nd_drawer){s, max_batch, t->layout, draw};
    *out = s;
    return ND_OK;
}

void nd_standin_drawer_free(nd_standin_drawer *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->t->n * ND_CLASS_MAX_TEMPLATES; i++)
        free(s->tpl[i]);
    free(s->tpl);
    free(s);
}
