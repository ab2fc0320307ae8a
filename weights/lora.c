/* weights/lora.c - kohya and diffusers/PEFT LoRAs: parsing and merging.
 * Merge rule for every format (docs/sd15.md 8.5):
 *   W' = W + scale * (alpha / rank) * up @ down,  rank = dim 0 of down (lora_A);
 * conv LoRAs (LoCon) flatten down to [r, in*kh*kw] and up to [out, r]. */
#include "weights/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *target;                 /* module as the file names it   */
    const nd_st_tensor *down, *up, *alpha_t;
    float alpha;                  /* resolved: alpha_t, metadata, or rank */
    int rank, is_conv, text;
} lmod;

struct nd_lora {
    nd_st_file *f;
    lmod *m;
    size_t n, cap;
    nd_lora_report rep;
};

void nd_lora_free(nd_lora *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->m[i].target);
    free(l->m);
    nd_st_close(l->f);
    free(l);
}

static lmod *module(nd_lora *l, const char *name, size_t len)
{
    for (size_t i = 0; i < l->n; i++)
        if (strlen(l->m[i].target) == len && !strncmp(l->m[i].target, name, len))
            return &l->m[i];
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 128;
        lmod *v = realloc(l->m, nc * sizeof *v);
        if (!v)
            return NULL;
        l->m = v;
        l->cap = nc;
    }
    lmod *m = &l->m[l->n];
    memset(m, 0, sizeof *m);
    if (!(m->target = strndup(name, len)))
        return NULL;
    l->n++;
    return m;
}

static int suffix(const char *k, const char *suf, size_t *base)
{
    size_t a = strlen(k), b = strlen(suf);
    if (a <= b || strcmp(k + a - b, suf))
        return 0;
    *base = a - b;
    return 1;
}

/* LyCORIS / DoRA variants are named so the user knows what they have */
static const char *variant(const char *k)
{
    if (strstr(k, ".hada_"))
        return "LoHa (LyCORIS)";
    if (strstr(k, ".lokr_"))
        return "LoKr (LyCORIS)";
    if (strstr(k, ".lora_mid."))
        return "LoCon with Tucker decomposition (lora_mid)";
    if (strstr(k, "dora_scale") || strstr(k, "lora_magnitude_vector"))
        return "DoRA";
    if (strstr(k, ".diff") || strstr(k, ".diff_b"))
        return "full-weight difference (LyCORIS 'full')";
    return NULL;
}

/* diffusers' older attention-processor names: X.processor.to_q_lora.down.weight */
static int old_diffusers(const char *k, char *target, size_t cap, int *is_up)
{
    const char *p = strstr(k, ".processor.");
    if (!p)
        return 0;
    const char *q = p + 11;
    static const char *const m[][2] = {{"to_q_lora.", "to_q"}, {"to_k_lora.", "to_k"},
                                       {"to_v_lora.", "to_v"}, {"to_out_lora.", "to_out.0"}};
    for (size_t i = 0; i < ND_ARRAY_LEN(m); i++) {
        size_t n = strlen(m[i][0]);
        if (!strncmp(q, m[i][0], n)) {
            if (!strcmp(q + n, "down.weight"))
                *is_up = 0;
            else if (!strcmp(q + n, "up.weight"))
                *is_up = 1;
            else
                return 0;
            snprintf(target, cap, "%.*s.%s", (int)(p - k), k, m[i][1]);
            return 1;
        }
    }
    return 0;
}

/* PEFT alpha for one module from the lora_adapter_metadata JSON: "<comp>.lora_alpha",
 * "<comp>.alpha_pattern" (suffix match on the module path), "<comp>.use_rslora". */
static void peft_alpha(json_t *meta, lmod *m)
{
    m->alpha = (float)m->rank;
    if (!json_is_object(meta))
        return;
    const char *dot = strchr(m->target, '.');
    if (!dot)
        return;
    char key[128];
    int cl = (int)(dot - m->target);
    snprintf(key, sizeof key, "%.*s.lora_alpha", cl, m->target);
    json_t *a = json_object_get(meta, key);
    if (json_is_number(a))
        m->alpha = (float)json_number_value(a);
    snprintf(key, sizeof key, "%.*s.alpha_pattern", cl, m->target);
    json_t *pat = json_object_get(meta, key);
    const char *pk;
    json_t *pv;
    if (json_is_object(pat))
        json_object_foreach(pat, pk, pv) {
            size_t tl = strlen(dot + 1), kl = strlen(pk);
            if (json_is_number(pv) && kl <= tl && !strcmp(dot + 1 + tl - kl, pk) &&
                (kl == tl || dot[1 + tl - kl - 1] == '.'))
                m->alpha = (float)json_number_value(pv);
        }
    snprintf(key, sizeof key, "%.*s.use_rslora", cl, m->target);
    /* rsLoRA scales by alpha/sqrt(r); express it as an alpha for alpha/r */
    if (json_is_true(json_object_get(meta, key)))
        m->alpha = m->alpha * sqrtf((float)m->rank);
}

nd_status nd_lora_open(const char *path, nd_lora **out, nd_err *err)
{
    *out = NULL;
    nd_lora *l = calloc(1, sizeof *l);
    if (!l)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    nd_status st = nd_st_open(path, &l->f, err);
    if (st) {
        free(l);
        return st;
    }
    int kohya = 0, peft = 0;
    for (size_t i = 0; i < nd_st_count(l->f) && !st; i++) {
        const nd_st_tensor *t = nd_st_at(l->f, i);
        const char *k = t->name, *v = variant(k);
        size_t b;
        int is_up;
        char tgt[320];
        lmod *m = NULL;
        if (v) {
            st = nd_fail(err, ND_EUNSUPPORTED, "%s: %s weights ('%s') are not supported; only "
                         "plain LoRA/LoCon (lora_down/lora_up/alpha, lora_A/lora_B)", path, v, k);
        } else if (suffix(k, ".lora_down.weight", &b) || suffix(k, ".lora_up.weight", &b)) {
            kohya = 1;
            if ((m = module(l, k, b)))
                *(strstr(k + b, "down") ? &m->down : &m->up) = t;
        } else if (suffix(k, ".lora_A.weight", &b) || suffix(k, ".lora_B.weight", &b)) {
            peft = 1;
            if ((m = module(l, k, b)))
                *(k[b + 6] == 'A' ? &m->down : &m->up) = t;
        } else if (old_diffusers(k, tgt, sizeof tgt, &is_up)) {
            peft = 1;
            if ((m = module(l, tgt, strlen(tgt))))
                *(is_up ? &m->up : &m->down) = t;
        } else if (suffix(k, ".alpha", &b)) {
            if ((m = module(l, k, b)))
                m->alpha_t = t;
        } else {
            st = nd_fail(err, ND_EFORMAT, "%s: '%s' is not a LoRA key", path, k);
        }
        if (!st && !m && !v)
            st = nd_fail(err, ND_ENOMEM, "out of memory");
    }
    if (!st && kohya + peft != 1)
        st = nd_fail(err, ND_EFORMAT, "%s: %s", path,
                     kohya ? "mixes kohya and PEFT keys" : "holds no LoRA weights");
    json_t *meta = NULL;
    const char *ms = l->f ? nd_st_meta(l->f, "lora_adapter_metadata") : NULL;
    if (!st && ms && !(meta = nd_wjson_load(ms, strlen(ms), err)))
        st = nd_wrap(err, ND_EFORMAT, "%s: lora_adapter_metadata", path);
    l->rep.format = kohya ? ND_WFMT_LORA_KOHYA : ND_WFMT_LORA_PEFT;
    l->rep.rank_min = 1 << 30;
    for (size_t i = 0; i < l->n && !st; i++) {
        lmod *m = &l->m[i];
        if (!m->down || !m->up) {
            st = nd_fail(err, ND_EFORMAT, "%s: module '%s' lacks its %s weight", path, m->target,
                         m->down ? "up (lora_B)" : "down (lora_A)");
            break;
        }
        const nd_st_tensor *d = m->down, *u = m->up;
        int fl = (d->dtype == ND_WDT_F32 || d->dtype == ND_WDT_F16 || d->dtype == ND_WDT_BF16) &&
                 (u->dtype == ND_WDT_F32 || u->dtype == ND_WDT_F16 || u->dtype == ND_WDT_BF16);
        if (!fl || (d->ndim != 2 && d->ndim != 4) || u->ndim != d->ndim || u->shape[1] != d->shape[0] ||
            d->shape[0] < 1 || (u->ndim == 4 && (u->shape[2] != 1 || u->shape[3] != 1))) {
            st = nd_fail(err, ND_EFORMAT, "%s: module '%s': down/up shapes or dtypes do not "
                         "form a LoRA", path, m->target);
            break;
        }
        m->rank = (int)d->shape[0];
        m->is_conv = d->ndim == 4 && (d->shape[2] != 1 || d->shape[3] != 1);
        m->text = !strncmp(m->target, "lora_te", 7) || !strncmp(m->target, "text_encoder.", 13);
        if (m->alpha_t) {
            const nd_st_tensor *a = m->alpha_t;
            if (a->numel != 1 || nd_wconvert(&m->alpha, ND_WDT_F32, a->data, a->dtype, 1, NULL)) {
                st = nd_fail(err, ND_EFORMAT, "%s: '%s.alpha' is not one float", path, m->target);
                break;
            }
        } else if (kohya) {
            m->alpha = (float)m->rank; /* no alpha: scale 1 */
        } else {
            peft_alpha(meta, m);
        }
        l->rep.n_modules++;
        l->rep.n_text += m->text;
        l->rep.n_unet += !m->text;
        l->rep.n_conv += m->is_conv;
        if (m->rank < l->rep.rank_min)
            l->rep.rank_min = m->rank;
        if (m->rank > l->rep.rank_max)
            l->rep.rank_max = m->rank;
    }
    json_decref(meta);
    if (!st && !l->n)
        st = nd_fail(err, ND_EFORMAT, "%s: holds no LoRA modules", path);
    if (st) {
        nd_lora_free(l);
        return st;
    }
    *out = l;
    return ND_OK;
}

const nd_lora_report *nd_lora_get_report(const nd_lora *l) { return &l->rep; }
size_t nd_lora_count(const nd_lora *l) { return l->n; }
const char *nd_lora_target(const nd_lora *l, size_t i, int *rank, float *alpha, int *is_conv)
{
    if (i >= l->n)
        return NULL;
    if (rank)
        *rank = l->m[i].rank;
    if (alpha)
        *alpha = l->m[i].alpha;
    if (is_conv)
        *is_conv = l->m[i].is_conv;
    return l->m[i].target;
}

/* ---- target resolution ------------------------------------------------------- */

/* kohya spelling of a canonical weight: "unet.a.b.weight" -> "lora_unet_a_b" */
static int kohya_name(const char *canon, char *out, size_t cap)
{
    const char *rest;
    const char *pre;
    if (!strncmp(canon, "unet.", 5))
        pre = "lora_unet_", rest = canon + 5;
    else if (!strncmp(canon, "text_encoder.", 13))
        pre = "lora_te_", rest = canon + 13;
    else
        return 0;
    size_t n = strlen(rest);
    if (n < 8 || strcmp(rest + n - 7, ".weight"))
        return 0;
    int w = snprintf(out, cap, "%s%.*s", pre, (int)(n - 7), rest);
    if (w < 0 || (size_t)w >= cap)
        return 0;
    for (char *p = out; *p; p++)
        if (*p == '.')
            *p = '_';
    return 1;
}

typedef struct {
    char *k;
    size_t idx;
} kmap;

static int kmap_cmp(const void *a, const void *b)
{
    return strcmp(((const kmap *)a)->k, ((const kmap *)b)->k);
}

/* Resolves every module to a tensor of w; -1 index when unmatched. */
static nd_status resolve(nd_weights *w, const nd_lora *l, nd_wtensor **tg, nd_err *err)
{
    kmap *km = NULL;
    size_t nk = 0;
    if (l->rep.format == ND_WFMT_LORA_KOHYA) {
        /* "_" is ambiguous, so enumerate the model's own modules in kohya
         * spelling and look names up exactly (as A1111-style loaders do) */
        km = calloc(nd_weights_count(w) + 1, sizeof *km);
        if (!km)
            return nd_fail(err, ND_ENOMEM, "out of memory");
        char buf[320];
        for (size_t i = 0; i < nd_weights_count(w); i++)
            if (kohya_name(nd_weights_at(w, i)->name, buf, sizeof buf)) {
                km[nk].k = strdup(buf);
                km[nk++].idx = i;
            }
        qsort(km, nk, sizeof *km, kmap_cmp);
    }
    nd_status st = ND_OK;
    for (size_t i = 0; i < l->n; i++) {
        const lmod *m = &l->m[i];
        tg[i] = NULL;
        char buf[400];
        if (km) {
            const char *t = m->target;
            if (!strncmp(t, "lora_te1_", 9)) /* SDXL-style first encoder name */
                snprintf(buf, sizeof buf, "lora_te_%s", t + 9), t = buf;
            kmap key = {(char *)t, 0}, *hit = bsearch(&key, km, nk, sizeof key, kmap_cmp);
            if (hit)
                tg[i] = nd_weights_get_mut(w, nd_weights_at(w, hit->idx)->name);
        } else {
            const char *t = m->target;
            if (!strncmp(t, "text_encoder.", 13) && strncmp(t + 13, "text_model.", 11))
                snprintf(buf, sizeof buf, "text_encoder.text_model.%s.weight", t + 13);
            else
                snprintf(buf, sizeof buf, "%s.weight", t);
            tg[i] = nd_weights_get_mut(w, buf);
        }
    }
    for (size_t i = 0; i < nk; i++)
        free(km[i].k);
    free(km);
    return st;
}

static nd_status apply(nd_wtensor *t, const lmod *m, float scale, nd_wdtype keep, nd_err *err)
{
    const nd_st_tensor *d = m->down, *u = m->up;
    int64_t out = t->shape[0], r = m->rank;
    uint64_t inner = out ? t->numel / (uint64_t)out : 0;
    if (u->shape[0] != out || d->numel != (uint64_t)r * inner || u->numel != (uint64_t)(out * r))
        return nd_fail(err, ND_EFORMAT, "LoRA module '%s' ([%lld x %lld] @ [%lld x ...]) does "
                       "not fit %s", m->target, (long long)u->shape[0], (long long)r,
                       (long long)d->shape[0], t->name);
    float *W = malloc(t->numel * sizeof *W), *D = malloc(d->numel * sizeof *D),
          *U = malloc(u->numel * sizeof *U);
    nd_status st = ND_OK;
    if (!W || !D || !U)
        st = nd_fail(err, ND_ENOMEM, "out of memory merging %s", t->name);
    if (!st)
        st = nd_wconvert(W, ND_WDT_F32, t->data, t->dtype, t->numel, err);
    if (!st)
        st = nd_wconvert(D, ND_WDT_F32, d->data, d->dtype, d->numel, err);
    if (!st)
        st = nd_wconvert(U, ND_WDT_F32, u->data, u->dtype, u->numel, err);
    if (!st) {
        float s = scale * m->alpha / (float)r;
        for (int64_t o = 0; o < out; o++) {
            float *wr = W + (uint64_t)o * inner;
            for (int64_t k = 0; k < r; k++) {
                float c = s * U[o * r + k];
                const float *dr = D + (uint64_t)k * inner;
                for (uint64_t x = 0; x < inner; x++)
                    wr[x] += c * dr[x];
            }
        }
        /* the merged tensor is owned from now on, in the model's dtype */
        void *dst = t->owned ? (void *)t->data : malloc(t->numel * nd_wdtype_size(keep));
        if (!dst) {
            st = nd_fail(err, ND_ENOMEM, "out of memory merging %s", t->name);
        } else {
            nd_wconvert(dst, keep, W, ND_WDT_F32, t->numel, NULL);
            t->data = dst;
            t->owned = 1;
        }
    }
    free(W);
    free(D);
    free(U);
    return st;
}

static nd_status merge(nd_weights *w, const char *path, float scale, int dry,
                       nd_lora_report *rep, nd_err *err)
{
    nd_wformat f = ND_WFMT_UNKNOWN;
    nd_status st = nd_wdetect(path, &f, err);
    if (st)
        return st;
    if (f != ND_WFMT_LORA_KOHYA && f != ND_WFMT_LORA_PEFT)
        return nd_fail(err, ND_EFORMAT, "%s: %s, not a LoRA", path, nd_wformat_name(f));
    if (!isfinite(scale))
        return nd_fail(err, ND_EINVAL, "LoRA scale must be finite");
    nd_lora *l;
    if ((st = nd_lora_open(path, &l, err)))
        return st;
    nd_wtensor **tg = calloc(l->n + 1, sizeof *tg);
    if (!tg) {
        nd_lora_free(l);
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    st = resolve(w, l, tg, err);
    /* check everything before changing anything */
    for (size_t i = 0; i < l->n && !st; i++) {
        if (!tg[i]) {
            st = nd_fail(err, ND_ENOTFOUND, "%s: LoRA module '%s' matches no tensor of the model",
                         path, l->m[i].target);
            break;
        }
        const nd_wtensor *t = tg[i];
        const lmod *m = &l->m[i];
        uint64_t inner = t->shape[0] ? t->numel / (uint64_t)t->shape[0] : 0;
        if (m->up->shape[0] != t->shape[0] || m->down->numel != (uint64_t)m->rank * inner)
            st = nd_fail(err, ND_EFORMAT, "%s: LoRA module '%s' does not fit %s", path, m->target,
                         t->name);
    }
    for (size_t i = 0; i < l->n && !st && !dry; i++)
        st = apply(tg[i], &l->m[i], scale, nd_weights_dtype(w), err);
    l->rep.n_applied = st ? 0 : l->n;
    if (rep)
        *rep = l->rep;
    free(tg);
    nd_lora_free(l);
    return st;
}

nd_status nd_weights_merge_lora(nd_weights *w, const char *path, float scale,
                                nd_lora_report *rep, nd_err *err)
{
    return merge(w, path, scale, 0, rep, err);
}

nd_status nd_weights_check_lora(nd_weights *w, const char *path, nd_lora_report *rep, nd_err *err)
{
    return merge(w, path, 1.0f, 1, rep, err);
}
