/* eval/svg.c - one small SVG histogram per feature, REAL against SYNTH.
 * Our own drawing (no plotting library): at most 40 bars pairs; when a
 * feature has more bins, the 39 most common (in either side) are kept in key
 * order and the rest lumped into a last "other" pair. Each pair has a
 * tooltip with the bin and both shares. */
#include "eval/internal.h"

#include <stdlib.h>
#include <string.h>

#define W 320
#define H 120
#define PAD_L 34
#define PAD_B 18
#define MAXBARS 40

typedef struct bin {
    uint64_t key;
    double a, b;
    bool other;
} bin;

static int by_mass(const void *x, const void *y)
{
    const bin *p = x, *q = y;
    double mp = p->a + p->b, mq = q->a + q->b;
    if (mp != mq)
        return mp > mq ? -1 : 1;
    return p->key < q->key ? -1 : p->key > q->key;
}
static int by_key(const void *x, const void *y)
{
    const bin *p = x, *q = y;
    return p->key < q->key ? -1 : p->key > q->key;
}

void nd_xml_escape(FILE *o, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", o);
        else if (*s == '&')
            fputs("&amp;", o);
        else if (*s == '>')
            fputs("&gt;", o);
        else
            fputc(*s, o);
    }
}

void nd_svg_hist(FILE *o, int f, const uint64_t *ka, const uint64_t *ca, size_t na,
                 const uint64_t *kb, const uint64_t *cb, size_t nb)
{
    double ta = 0, tb = 0;
    for (size_t i = 0; i < na; i++)
        ta += (double)ca[i];
    for (size_t i = 0; i < nb; i++)
        tb += (double)cb[i];
    bin *v = calloc(na + nb + 1, sizeof *v);
    if (!v)
        return;
    size_t i = 0, j = 0, n = 0;
    while (i < na || j < nb) {
        bin *x = &v[n++];
        if (j >= nb || (i < na && ka[i] < kb[j])) {
            x->key = ka[i];
            x->a = (double)ca[i++] / ta;
        } else if (i >= na || kb[j] < ka[i]) {
            x->key = kb[j];
            x->b = (double)cb[j++] / tb;
        } else {
            x->key = ka[i];
            x->a = (double)ca[i++] / ta;
            x->b = (double)cb[j++] / tb;
        }
    }
    if (n > MAXBARS) {
        qsort(v, n, sizeof *v, by_mass);
        bin rest = {UINT64_MAX, 0, 0, true};
        for (size_t k = MAXBARS - 1; k < n; k++)
            rest.a += v[k].a, rest.b += v[k].b;
        qsort(v, MAXBARS - 1, sizeof *v, by_key);
        v[MAXBARS - 1] = rest;
        n = MAXBARS;
    }
    double top = 0;
    for (size_t k = 0; k < n; k++) {
        if (v[k].a > top)
            top = v[k].a;
        if (v[k].b > top)
            top = v[k].b;
    }
    if (top <= 0)
        top = 1;
    double plot_w = W - PAD_L - 4, plot_h = H - PAD_B - 6;
    double slot = n ? plot_w / (double)n : plot_w, bw = slot * 0.42;
    fprintf(o, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' "
               "viewBox='0 0 %d %d' font-family='sans-serif' font-size='9'>\n",
            W, H, W, H);
    fprintf(o, "<line x1='%d' y1='%.1f' x2='%d' y2='%.1f' stroke='#888'/>\n", PAD_L, 6 + plot_h,
            W - 4, 6 + plot_h);
    fprintf(o, "<text x='%d' y='12' text-anchor='end'>%.0f%%</text>\n", PAD_L - 3, 100 * top);
    fprintf(o, "<text x='%d' y='%.1f' text-anchor='end'>0</text>\n", PAD_L - 3, 6 + plot_h);
    char t[64];
    for (size_t k = 0; k < n; k++) {
        double x = PAD_L + slot * (double)k + slot * 0.08;
        double ha = plot_h * v[k].a / top, hb = plot_h * v[k].b / top;
        if (v[k].other)
            snprintf(t, sizeof t, "other bins");
        else
            nd_eval_bin_text(f, v[k].key, t, sizeof t);
        fputs("<g><title>", o);
        nd_xml_escape(o, t);
        fprintf(o, ": real %.2f%%, synth %.2f%%</title>", 100 * v[k].a, 100 * v[k].b);
        fprintf(o, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='#3b6fb6'/>", x,
                6 + plot_h - ha, bw, ha);
        fprintf(o, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='#e8833a'/></g>\n",
                x + bw, 6 + plot_h - hb, bw, hb);
        if (k == 0 || k + 1 == n) {
            fprintf(o, "<text x='%.1f' y='%d' text-anchor='%s'>", k == 0 ? (double)PAD_L
                                                                          : (double)(W - 4),
                    H - 4, k == 0 ? "start" : "end");
            nd_xml_escape(o, t);
            fputs("</text>\n", o);
        }
    }
    fputs("</svg>\n", o);
    free(v);
}
