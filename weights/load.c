/* weights/load.c - format detection and loading: files -> canonical tensors.
 * Each component goes through one path whatever the format: collect
 * (diffusers name -> file tensor), take the config from config.json or infer
 * it from shapes, compare with the expected key list, then expose each tensor
 * as a zero-copy view or a converted copy. */
#include "weights/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILES 8
#define MAX_PROBLEMS_KEPT 4096

struct nd_weights {
    nd_weights_params p;
    nd_st_file *files[MAX_FILES];
    int n_files;
    nd_wtensor *t;
    size_t n, cap;
    nd_unet_config unet, cn;
    nd_vae_config vae;
    nd_clip_config clip;
    nd_weights_report rep;
    char **problems;
    size_t n_problems, cap_problems;
    char *tokenizer_dir;
};

/* one candidate tensor of a component: its diffusers name and source */
typedef struct {
    char *name;
    const nd_st_tensor *src;
} entry;
typedef struct {
    entry *v;
    size_t n, cap;
} entries;

static void entries_free(entries *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->v[i].name);
    free(e->v);
    memset(e, 0, sizeof *e);
}

static nd_status entries_add(entries *e, const char *name, const nd_st_tensor *src, nd_err *err)
{
    if (e->n == e->cap) {
        size_t nc = e->cap ? 2 * e->cap : 256;
        entry *v = realloc(e->v, nc * sizeof *v);
        if (!v)
            return nd_fail(err, ND_ENOMEM, "out of memory");
        e->v = v;
        e->cap = nc;
    }
    if (!(e->v[e->n].name = strdup(name)))
        return nd_fail(err, ND_ENOMEM, "out of memory");
    e->v[e->n++].src = src;
    return ND_OK;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

static const entry *entries_find(const entries *e, const char *name)
{
    entry k = {(char *)name, NULL};
    return bsearch(&k, e->v, e->n, sizeof k, entry_cmp);
}

static int entries_shape(void *ctx, const char *name, int64_t *shape)
{
    const entry *x = entries_find(ctx, name);
    if (!x)
        return -1;
    memcpy(shape, x->src->shape, sizeof x->src->shape);
    return x->src->ndim;
}

/* ---- small helpers ------------------------------------------------------------ */

const char *nd_wformat_name(nd_wformat f)
{
    static const char *const n[] = {
        [ND_WFMT_UNKNOWN] = "unknown",
        [ND_WFMT_DIFFUSERS] = "diffusers folder",
        [ND_WFMT_DIFFUSERS_COMPONENT] = "diffusers component",
        [ND_WFMT_LDM] = "LDM single file",
        [ND_WFMT_CONTROLNET_LDM] = "ControlNet (original single file)",
        [ND_WFMT_CONTROLNET_DIFFUSERS] = "ControlNet (diffusers)",
        [ND_WFMT_LORA_KOHYA] = "LoRA (kohya)",
        [ND_WFMT_LORA_PEFT] = "LoRA (diffusers/PEFT)",
        [ND_WFMT_PICKLE] = "PyTorch pickle",
    };
    return (unsigned)f < ND_ARRAY_LEN(n) ? n[f] : "?";
}

const char *nd_wcomponent_name(nd_wcomponent c)
{
    static const char *const n[] = {"unet", "vae", "text_encoder", "controlnet"};
    return (unsigned)c < ND_WC_COUNT ? n[c] : "?";
}

static int is_dir(const char *p)
{
    struct stat st;
    return !stat(p, &st) && S_ISDIR(st.st_mode);
}

static int is_file(const char *p)
{
    struct stat st;
    return !stat(p, &st) && S_ISREG(st.st_mode);
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int has_prefix(const char *s, const char *p)
{
    return !strncmp(s, p, strlen(p));
}

static nd_status pickle_error(const char *path, nd_err *err)
{
    return nd_fail(err, ND_EUNSUPPORTED,
                   "%s is a PyTorch pickle (.ckpt/.pt/.bin), which can run code when loaded and "
                   "is refused; convert it once to safetensors with Python: python3 -c \"import "
                   "torch; from safetensors.torch import save_file; sd = torch.load('%s', "
                   "map_location='cpu', weights_only=True); sd = sd.get('state_dict', sd); "
                   "save_file({k: v.contiguous().clone() for k, v in sd.items() if "
                   "torch.is_tensor(v)}, 'model.safetensors')\"",
                   path, path);
}

/* pickle / torch zip magic: protocol 2-5 opcode, or a zip local header */
static int looks_pickle(const char *path)
{
    if (ends_with(path, ".ckpt") || ends_with(path, ".pt") || ends_with(path, ".pth") ||
        ends_with(path, ".bin") || ends_with(path, ".pkl"))
        return 1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    unsigned char m[4] = {0};
    ssize_t n = read(fd, m, 4);
    close(fd);
    return n >= 2 && ((m[0] == 0x80 && m[1] >= 2 && m[1] <= 5) ||
                      (n == 4 && m[0] == 'P' && m[1] == 'K' && m[2] == 3 && m[3] == 4));
}

/* Guesses a safetensors file's format from its keys. */
static nd_wformat classify(const nd_st_file *f)
{
    int ldm = 0, cn_ldm = 0, kohya = 0, peft = 0, cn_diff = 0, comp = 0;
    for (size_t i = 0; i < nd_st_count(f); i++) {
        const char *k = nd_st_at(f, i)->name;
        if (has_prefix(k, "control_model.") || has_prefix(k, "input_hint_block.") ||
            has_prefix(k, "zero_convs."))
            cn_ldm = 1;
        else if (has_prefix(k, "model.diffusion_model.") || has_prefix(k, "first_stage_model.") ||
                 has_prefix(k, "cond_stage_model."))
            ldm = 1;
        else if (has_prefix(k, "lora_unet_") || has_prefix(k, "lora_te_") ||
                 has_prefix(k, "lora_te1_"))
            kohya = 1;
        else if (strstr(k, ".lora_A.") || strstr(k, ".lora_B.") || strstr(k, "_lora.down.") ||
                 strstr(k, "_lora.up."))
            peft = 1;
        else if (has_prefix(k, "controlnet_cond_embedding."))
            cn_diff = 1;
        else if (has_prefix(k, "conv_in.") || has_prefix(k, "encoder.") ||
                 has_prefix(k, "text_model.") || has_prefix(k, "embeddings.token_embedding"))
            comp = 1;
    }
    if (cn_ldm)
        return ND_WFMT_CONTROLNET_LDM; /* some also carry a full base UNet */
    if (ldm)
        return ND_WFMT_LDM;
    if (kohya)
        return ND_WFMT_LORA_KOHYA;
    if (peft)
        return ND_WFMT_LORA_PEFT;
    if (cn_diff)
        return ND_WFMT_CONTROLNET_DIFFUSERS;
    if (comp)
        return ND_WFMT_DIFFUSERS_COMPONENT;
    return ND_WFMT_UNKNOWN;
}

static char *path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", a, b);
    return s;
}

static const char *config_class(const char *dir, char *buf, size_t cap)
{
    char *p = path_join(dir, "config.json");
    char *txt = NULL;
    size_t len;
    const char *res = NULL;
    if (p && !nd_wread_file(p, 1 << 20, &txt, &len, NULL)) {
        json_t *j = nd_wjson_load(txt, len, NULL);
        const char *c = json_string_value(json_object_get(j, "_class_name"));
        if (!c && json_object_get(j, "architectures"))
            c = json_string_value(json_array_get(json_object_get(j, "architectures"), 0));
        if (c) {
            snprintf(buf, cap, "%s", c);
            res = buf;
        }
        json_decref(j);
    }
    free(txt);
    free(p);
    return res;
}

nd_status nd_wdetect(const char *path, nd_wformat *out, nd_err *err)
{
    *out = ND_WFMT_UNKNOWN;
    if (is_dir(path)) {
        char *mi = path_join(path, "model_index.json");
        int has_mi = mi && is_file(mi);
        free(mi);
        if (has_mi) {
            *out = ND_WFMT_DIFFUSERS;
            return ND_OK;
        }
        char cls[128];
        if (config_class(path, cls, sizeof cls)) {
            *out = !strcmp(cls, "ControlNetModel") ? ND_WFMT_CONTROLNET_DIFFUSERS
                                                   : ND_WFMT_DIFFUSERS_COMPONENT;
            return ND_OK;
        }
        return nd_fail(err, ND_EFORMAT,
                       "%s: a folder without model_index.json or config.json is not a diffusers "
                       "model", path);
    }
    if (!is_file(path))
        return nd_fail(err, ND_ENOTFOUND, "%s: no such file or folder", path);
    if (looks_pickle(path)) {
        *out = ND_WFMT_PICKLE;
        return ND_OK;
    }
    nd_st_file *f;
    nd_status st = nd_st_open(path, &f, err);
    if (st)
        return st;
    *out = classify(f);
    nd_st_close(f);
    return ND_OK;
}

/* ---- problems ----------------------------------------------------------------- */

static void problem(nd_weights *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(nd_weights *w, const char *fmt, ...)
{
    w->n_problems++;
    if (w->n_problems > MAX_PROBLEMS_KEPT)
        return;
    if (w->n_problems > w->cap_problems) {
        size_t nc = w->cap_problems ? 2 * w->cap_problems : 32;
        char **v = realloc(w->problems, nc * sizeof *v);
        if (!v) {
            w->n_problems--;
            return;
        }
        w->problems = v;
        w->cap_problems = nc;
    }
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    w->problems[w->n_problems - 1] = strdup(buf);
    if (!w->problems[w->n_problems - 1])
        w->n_problems--;
}

static void shape_str(char *b, size_t cap, int nd, const int64_t *s)
{
    size_t o = (size_t)snprintf(b, cap, "[");
    for (int i = 0; i < nd && o < cap; i++)
        o += (size_t)snprintf(b + o, cap - o, "%s%lld", i ? "," : "", (long long)s[i]);
    if (o < cap)
        snprintf(b + o, cap - o, "]");
}

/* ---- adding tensors ----------------------------------------------------------- */

/* p.skip: the VAE or text encoder left out on request */
static int skipped(const nd_weights *w, nd_wcomponent c)
{
    return (c == ND_WC_VAE || c == ND_WC_TEXT) && (w->p.skip & (1u << c));
}

static int is_float_dt(nd_wdtype d)
{
    return d == ND_WDT_F32 || d == ND_WDT_F16 || d == ND_WDT_BF16;
}

/* A tensor already in the wanted dtype and aligned is a view of the mapping. */
static int is_view(const nd_weights *w, const nd_st_tensor *src)
{
    return src->dtype == w->p.dtype && ((uintptr_t)src->data % nd_wdtype_size(w->p.dtype)) == 0;
}

/* F: the file SRC lies in; a converted tensor's source pages are dropped
 * from it at once, so converting never holds the file and the copy together. */
static nd_status add_tensor(nd_weights *w, const nd_st_file *f, const char *name,
                            const nd_st_tensor *src, int ndim, const int64_t *shape, nd_err *err)
{
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 1024;
        nd_wtensor *t = realloc(w->t, nc * sizeof *t);
        if (!t)
            return nd_fail(err, ND_ENOMEM, "out of memory");
        w->t = t;
        w->cap = nc;
    }
    nd_wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->src_name = src->name;
    if (!t->name)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    t->src_dtype = src->dtype;
    t->dtype = w->p.dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) /* the rest stays 0 */
        t->shape[d] = shape[d];
    t->numel = src->numel;
    size_t es = nd_wdtype_size(t->dtype);
    if (is_view(w, src)) {
        t->data = src->data; /* zero copy: a view of the mapping */
    } else {
        void *buf = malloc(t->numel ? t->numel * es : 1);
        if (!buf) {
            free((void *)t->name);
            return nd_fail(err, ND_ENOMEM, "%s: out of memory converting %llu elements", name,
                           (unsigned long long)t->numel);
        }
        nd_status st = nd_wconvert(buf, t->dtype, src->data, src->dtype, t->numel, err);
        if (st) {
            free(buf);
            free((void *)t->name);
            return nd_wrap(err, st, "%s", name);
        }
        t->data = buf;
        t->owned = 1;
        nd_st_release(f, src->data, src->nbytes);
    }
    w->n++;
    return ND_OK;
}

/* Checks a component's entries against its expected keys and adds them. */
static nd_status add_component(nd_weights *w, const nd_st_file *f, nd_wcomponent c, entries *e,
                               nd_err *err)
{
    qsort(e->v, e->n, sizeof *e->v, entry_cmp);
    for (size_t i = 1; i < e->n; i++)
        if (!strcmp(e->v[i].name, e->v[i - 1].name))
            return nd_fail(err, ND_EFORMAT, "%s: '%s' and '%s' both map to %s",
                           nd_wcomponent_name(c), e->v[i - 1].src->name, e->v[i].src->name,
                           e->v[i].name);
    nd_status st = ND_OK;
    nd_wkeys keys = {0};
    switch (c) {
    case ND_WC_UNET:
        if (!w->unet.present)
            st = nd_unet_config_infer(entries_shape, e, 0, &w->unet, err);
        if (!st)
            st = nd_wkeys_unet(&w->unet, 0, &keys);
        break;
    case ND_WC_CONTROLNET:
        if (!w->cn.present)
            st = nd_unet_config_infer(entries_shape, e, 1, &w->cn, err);
        if (!st)
            st = nd_wkeys_unet(&w->cn, 1, &keys);
        break;
    case ND_WC_VAE:
        if (!w->vae.present)
            st = nd_vae_config_infer(entries_shape, e, &w->vae, err);
        if (!st)
            st = nd_wkeys_vae(&w->vae, &keys);
        break;
    default:
        if (!w->clip.present)
            st = nd_clip_config_infer(entries_shape, e, &w->clip, err);
        if (!st)
            st = nd_wkeys_clip(&w->clip, &keys);
        break;
    }
    if (st == ND_ENOMEM)
        return nd_fail(err, st, "out of memory");
    if (st)
        return st;
    nd_wcomponent_report *r = &w->rep.comp[c];
    r->present = 1;
    const char *cname = nd_wcomponent_name(c);
    char *used = calloc(e->n + 1, 1);
    if (!used) {
        nd_wkeys_free(&keys);
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    char name[320], s1[96], s2[96];
    size_t first_problem = w->n_problems;
    for (size_t k = 0; k < keys.n && !st; k++) {
        const nd_wkey *x = &keys.v[k];
        snprintf(name, sizeof name, "%s.%s", cname, x->name);
        const entry *en = entries_find(e, x->name);
        if (!en) {
            shape_str(s1, sizeof s1, x->ndim, x->shape);
            problem(w, "missing %s %s", name, s1);
            r->n_missing++;
            continue;
        }
        used[en - e->v] = 1;
        const nd_st_tensor *src = en->src;
        int same = src->ndim == x->ndim;
        for (int d = 0; same && d < x->ndim; d++)
            same = src->shape[d] == x->shape[d];
        /* LDM's VAE attention is a 1x1 conv [C,C,1,1] where diffusers has [C,C] */
        if (!same && x->ndim == 2 && src->ndim == 4 && src->shape[0] == x->shape[0] &&
            src->shape[1] == x->shape[1] && src->shape[2] == 1 && src->shape[3] == 1)
            same = 1;
        if (!same) {
            shape_str(s1, sizeof s1, src->ndim, src->shape);
            shape_str(s2, sizeof s2, x->ndim, x->shape);
            problem(w, "shape %s (%s) is %s, expected %s", name, src->name, s1, s2);
            r->n_mismatch++;
            continue;
        }
        if (!is_float_dt(src->dtype)) {
            problem(w, "dtype %s (%s) is %s; only F32, F16 and BF16 are loaded", name, src->name,
                    nd_wdtype_name(src->dtype));
            r->n_mismatch++;
            continue;
        }
        st = add_tensor(w, f, name, src, x->ndim, x->shape, err);
        if (!st) {
            r->n_tensors++;
            r->n_params += src->numel;
            r->dtype_count[src->dtype]++;
        }
    }
    for (size_t i = 0; i < e->n && !st; i++)
        if (!used[i]) {
            problem(w, "unexpected %s.%s (%s)", cname, e->v[i].name, e->v[i].src->name);
            r->n_unexpected++;
        }
    /* once more at the end: the kernel maps a fault's neighbour pages too
     * (fault-around), so converting one tensor brings back edges of others
     * already released; small tensors would otherwise stay mostly resident */
    for (size_t i = 0; i < e->n; i++)
        if (used[i] && !is_view(w, e->v[i].src))
            nd_st_release(f, e->v[i].src->data, e->v[i].src->nbytes);
    free(used);
    nd_wkeys_free(&keys);
    if (!st && w->p.strict && w->n_problems > first_problem) {
        const char *p0 = first_problem < MAX_PROBLEMS_KEPT ? w->problems[first_problem] : "?";
        st = nd_fail(err, ND_EFORMAT,
                     "%s: %zu missing, %zu unexpected, %zu mis-shaped keys (first: %s)", cname,
                     r->n_missing, r->n_unexpected, r->n_mismatch, p0);
    }
    return st;
}

/* ---- sources -------------------------------------------------------------------- */

static nd_status open_file(nd_weights *w, const char *path, nd_st_file **f, nd_err *err)
{
    if (w->n_files == MAX_FILES)
        return nd_fail(err, ND_EINVAL, "too many files");
    nd_status st = nd_st_open(path, f, err);
    if (!st)
        w->files[w->n_files++] = *f;
    return st;
}

/* diffusers text-encoder spelling: transformers 5.x drops "text_model." */
static void te_name(const char *k, char *out, size_t cap)
{
    if (has_prefix(k, "text_model."))
        snprintf(out, cap, "%s", k);
    else
        snprintf(out, cap, "text_model.%s", k);
}

/* old diffusers VAE attention names (query/key/value/proj_attn) */
static void vae_name(const char *k, char *out, size_t cap)
{
    static const char *const m[][2] = {
        {".attentions.0.query.", ".attentions.0.to_q."},
        {".attentions.0.key.", ".attentions.0.to_k."},
        {".attentions.0.value.", ".attentions.0.to_v."},
        {".attentions.0.proj_attn.", ".attentions.0.to_out.0."},
    };
    for (size_t i = 0; i < ND_ARRAY_LEN(m); i++) {
        const char *p = strstr(k, m[i][0]);
        if (p) {
            snprintf(out, cap, "%.*s%s%s", (int)(p - k), k, m[i][1], p + strlen(m[i][0]));
            return;
        }
    }
    snprintf(out, cap, "%s", k);
}

/* A diffusers-named file for component c (no prefix on its keys). */
static nd_status load_diffusers_file(nd_weights *w, nd_wcomponent c, const char *path,
                                     nd_err *err)
{
    nd_st_file *f;
    nd_status st = open_file(w, path, &f, err);
    if (st)
        return st;
    entries e = {0};
    char nm[320];
    for (size_t i = 0; i < nd_st_count(f) && !st; i++) {
        const nd_st_tensor *t = nd_st_at(f, i);
        if (c == ND_WC_TEXT) {
            if (strstr(t->name, "position_ids")) { /* an int64 buffer, not a weight */
                w->rep.n_skipped++;
                continue;
            }
            te_name(t->name, nm, sizeof nm);
        } else if (c == ND_WC_VAE) {
            vae_name(t->name, nm, sizeof nm);
        } else {
            snprintf(nm, sizeof nm, "%s", t->name);
        }
        st = entries_add(&e, nm, t, err);
    }
    if (!st)
        st = add_component(w, f, c, &e, err);
    entries_free(&e);
    return st ? nd_wrap(err, st, "%s", path) : ND_OK;
}

static nd_status read_config(const char *dir, nd_wcomponent c, nd_weights *w, nd_err *err)
{
    char *p = path_join(dir, "config.json");
    if (!p)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    if (!is_file(p)) {
        free(p);
        return ND_OK; /* inferred from shapes later */
    }
    char *txt;
    size_t len;
    nd_status st = nd_wread_file(p, 4 << 20, &txt, &len, err);
    if (!st) {
        switch (c) {
        case ND_WC_UNET: st = nd_unet_config_parse(txt, len, &w->unet, err); break;
        case ND_WC_CONTROLNET: st = nd_unet_config_parse(txt, len, &w->cn, err); break;
        case ND_WC_VAE: st = nd_vae_config_parse(txt, len, &w->vae, err); break;
        default: st = nd_clip_config_parse(txt, len, &w->clip, err); break;
        }
        free(txt);
        if (st)
            nd_wrap(err, st, "%s", p);
    }
    free(p);
    return st;
}

/* Finds the weights file of a component folder; pickles alone are refused. */
static nd_status component_file(const char *dir, nd_wdtype want, char **out, nd_err *err)
{
    static const char *const names[] = {"diffusion_pytorch_model.safetensors", "model.safetensors"};
    static const char *const fp16[] = {"diffusion_pytorch_model.fp16.safetensors",
                                       "model.fp16.safetensors"};
    for (int pass = 0; pass < 2; pass++) {
        /* on the f16 path prefer the fp16 variant when both exist */
        const char *const *list = (pass == 0) == (want == ND_WDT_F16) ? fp16 : names;
        for (int i = 0; i < 2; i++) {
            char *p = path_join(dir, list[i]);
            if (p && is_file(p)) {
                *out = p;
                return ND_OK;
            }
            free(p);
        }
    }
    static const char *const pk[] = {"diffusion_pytorch_model.bin", "pytorch_model.bin"};
    for (int i = 0; i < 2; i++) {
        char *p = path_join(dir, pk[i]);
        int found = p && is_file(p);
        if (found) {
            nd_status st = pickle_error(p, err);
            free(p);
            return st;
        }
        free(p);
    }
    return nd_fail(err, ND_ENOTFOUND, "%s: no diffusion_pytorch_model.safetensors or "
                                      "model.safetensors", dir);
}

static nd_status load_component_dir(nd_weights *w, nd_wcomponent c, const char *dir, nd_err *err)
{
    nd_status st = read_config(dir, c, w, err);
    if (st)
        return st;
    char *f = NULL;
    if ((st = component_file(dir, w->p.dtype, &f, err)))
        return st;
    st = load_diffusers_file(w, c, f, err);
    free(f);
    return st;
}

static nd_status load_diffusers(nd_weights *w, const char *path, nd_err *err)
{
    char *mi = path_join(path, "model_index.json"), *txt = NULL;
    size_t len;
    nd_status st = mi ? nd_wread_file(mi, 1 << 20, &txt, &len, err) : ND_ENOMEM;
    json_t *j = NULL;
    if (!st) {
        j = nd_wjson_load(txt, len, err);
        if (!j || !json_is_object(j))
            st = nd_wrap(err, ND_EFORMAT, "%s", mi);
    }
    free(txt);
    static const struct { const char *dir; nd_wcomponent c; } comps[] = {
        {"unet", ND_WC_UNET}, {"vae", ND_WC_VAE}, {"text_encoder", ND_WC_TEXT}};
    for (size_t i = 0; i < ND_ARRAY_LEN(comps) && !st; i++) {
        json_t *v = json_object_get(j, comps[i].dir);
        if (skipped(w, comps[i].c))
            continue;
        if (!json_is_array(v) || json_is_null(json_array_get(v, 1))) {
            if (w->p.strict)
                st = nd_fail(err, ND_EFORMAT, "%s: model_index.json lists no %s", path,
                             comps[i].dir);
            continue;
        }
        char *d = path_join(path, comps[i].dir);
        st = d ? load_component_dir(w, comps[i].c, d, err) : ND_ENOMEM;
        free(d);
    }
    if (!st) {
        char *tok = path_join(path, "tokenizer"), *voc = tok ? path_join(tok, "vocab.json") : NULL,
             *mer = tok ? path_join(tok, "merges.txt") : NULL;
        if (voc && mer && is_file(voc) && is_file(mer)) {
            w->tokenizer_dir = tok;
            tok = NULL;
        } else if (w->p.strict) {
            st = nd_fail(err, ND_EFORMAT, "%s: tokenizer/vocab.json or tokenizer/merges.txt missing",
                         path);
        }
        free(tok);
        free(voc);
        free(mer);
    }
    json_decref(j);
    free(mi);
    return st;
}

/* LDM layers_per_block: the first downsampler is input_blocks.(L+1).0.op */
static int ldm_layers(const nd_st_file *f, const char *prefix, int *hint_last)
{
    size_t pl = strlen(prefix);
    int L = 0, max_in = 0;
    *hint_last = 0;
    for (size_t i = 0; i < nd_st_count(f); i++) {
        const char *k = nd_st_at(f, i)->name;
        if (strncmp(k, prefix, pl))
            continue;
        k += pl;
        int n, h;
        char rest[8];
        if (sscanf(k, "input_blocks.%d.0.o%1[p]", &n, rest) == 2 && n > 1 && (!L || n - 1 < L))
            L = n - 1;
        if (sscanf(k, "input_blocks.%d.", &n) == 1 && n > max_in)
            max_in = n;
        if (sscanf(k, "input_hint_block.%d.", &h) == 1 && h > *hint_last)
            *hint_last = h;
    }
    return L ? L : max_in; /* one level: no downsampler */
}

static nd_status load_ldm(nd_weights *w, const char *path, nd_err *err)
{
    nd_st_file *f;
    nd_status st = open_file(w, path, &f, err);
    if (st)
        return st;
    const char *up = "model.diffusion_model.", *vp = "first_stage_model.",
               *tp = "cond_stage_model.transformer.";
    int hl, L = ldm_layers(f, up, &hl), nb = 0;
    for (size_t i = 0; i < nd_st_count(f); i++) {
        int k;
        if (sscanf(nd_st_at(f, i)->name, "first_stage_model.encoder.down.%d.", &k) == 1 && k + 1 > nb)
            nb = k + 1;
    }
    entries eu = {0}, ev = {0}, et = {0};
    char nm[320];
    for (size_t i = 0; i < nd_st_count(f) && !st; i++) {
        const nd_st_tensor *t = nd_st_at(f, i);
        const char *k = t->name;
        if (has_prefix(k, up)) {
            if (!nd_ldm_unet_key(k + strlen(up), L, nm, sizeof nm))
                snprintf(nm, sizeof nm, "?%s", k); /* reported as unexpected */
            st = entries_add(&eu, nm, t, err);
        } else if (has_prefix(k, vp)) {
            if (!nd_ldm_vae_key(k + strlen(vp), nb, nm, sizeof nm))
                snprintf(nm, sizeof nm, "?%s", k);
            st = entries_add(&ev, nm, t, err);
        } else if (has_prefix(k, tp)) {
            if (strstr(k, "position_ids")) {
                w->rep.n_skipped++;
                continue;
            }
            te_name(k + strlen(tp), nm, sizeof nm);
            st = entries_add(&et, nm, t, err);
        } else {
            w->rep.n_skipped++; /* model_ema.*, DDPM buffers, ... */
        }
    }
    if (!st && !eu.n)
        st = nd_fail(err, ND_EFORMAT, "no model.diffusion_model.* (UNet) tensors");
    if (!st)
        st = add_component(w, f, ND_WC_UNET, &eu, err);
    if (!st && skipped(w, ND_WC_VAE))
        w->rep.n_skipped += ev.n;
    else if (!st && ev.n)
        st = add_component(w, f, ND_WC_VAE, &ev, err);
    else if (!st && w->p.strict)
        st = nd_fail(err, ND_EFORMAT, "no first_stage_model.* (VAE) tensors");
    if (!st && skipped(w, ND_WC_TEXT))
        w->rep.n_skipped += et.n;
    else if (!st && et.n)
        st = add_component(w, f, ND_WC_TEXT, &et, err);
    else if (!st && w->p.strict)
        st = nd_fail(err, ND_EFORMAT, "no cond_stage_model.transformer.* (CLIP) tensors");
    entries_free(&eu);
    entries_free(&ev);
    entries_free(&et);
    return st ? nd_wrap(err, st, "%s", path) : ND_OK;
}

static nd_status load_controlnet_ldm(nd_weights *w, const char *path, nd_err *err)
{
    nd_st_file *f;
    nd_status st = open_file(w, path, &f, err);
    if (st)
        return st;
    const char *pre = nd_st_find(f, "control_model.time_embed.0.weight") ? "control_model." : "";
    int hl, L = ldm_layers(f, pre, &hl);
    entries e = {0};
    char nm[320];
    for (size_t i = 0; i < nd_st_count(f) && !st; i++) {
        const nd_st_tensor *t = nd_st_at(f, i);
        if (!has_prefix(t->name, pre) || (!*pre && has_prefix(t->name, "model."))) {
            w->rep.n_skipped++; /* e.g. a base UNet shipped along */
            continue;
        }
        if (!nd_ldm_controlnet_key(t->name + strlen(pre), L, hl, nm, sizeof nm))
            snprintf(nm, sizeof nm, "?%s", t->name);
        st = entries_add(&e, nm, t, err);
    }
    if (!st)
        st = add_component(w, f, ND_WC_CONTROLNET, &e, err);
    entries_free(&e);
    return st ? nd_wrap(err, st, "%s", path) : ND_OK;
}

static nd_status load_controlnet(nd_weights *w, const char *path, nd_err *err)
{
    nd_wformat f = ND_WFMT_UNKNOWN;
    nd_status st = nd_wdetect(path, &f, err);
    if (st)
        return st;
    if (f == ND_WFMT_PICKLE)
        return pickle_error(path, err);
    if (f == ND_WFMT_CONTROLNET_LDM)
        return load_controlnet_ldm(w, path, err);
    if (f != ND_WFMT_CONTROLNET_DIFFUSERS)
        return nd_fail(err, ND_EFORMAT, "%s: %s, not a ControlNet", path, nd_wformat_name(f));
    if (is_dir(path))
        return load_component_dir(w, ND_WC_CONTROLNET, path, err);
    return load_diffusers_file(w, ND_WC_CONTROLNET, path, err);
}

static nd_status load_component_any(nd_weights *w, const char *path, nd_err *err)
{
    nd_wcomponent c = ND_WC_UNET;
    if (is_dir(path)) {
        char cls[128];
        const char *k = config_class(path, cls, sizeof cls);
        if (k && !strcmp(k, "AutoencoderKL"))
            c = ND_WC_VAE;
        else if (k && strstr(k, "CLIPText"))
            c = ND_WC_TEXT;
        else if (!k || strcmp(k, "UNet2DConditionModel"))
            return nd_fail(err, ND_EUNSUPPORTED, "%s: component class '%s' is not supported", path,
                           k ? k : "?");
        return load_component_dir(w, c, path, err);
    }
    nd_st_file *f;
    nd_status st = nd_st_open(path, &f, err);
    if (st)
        return st;
    if (nd_st_find(f, "decoder.conv_in.weight"))
        c = ND_WC_VAE;
    else if (!nd_st_find(f, "conv_in.weight"))
        c = ND_WC_TEXT;
    nd_st_close(f);
    return load_diffusers_file(w, c, path, err);
}

/* ---- public ------------------------------------------------------------------- */

void nd_weights_params_init(nd_weights_params *p)
{
    memset(p, 0, sizeof *p);
    p->dtype = ND_WDT_F32;
    p->strict = 1;
}

void nd_weights_free(nd_weights *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++) {
        free((void *)w->t[i].name);
        if (w->t[i].owned)
            free((void *)w->t[i].data);
    }
    free(w->t);
    for (int i = 0; i < w->n_files; i++)
        nd_st_close(w->files[i]);
    size_t kept = w->n_problems < MAX_PROBLEMS_KEPT ? w->n_problems : MAX_PROBLEMS_KEPT;
    for (size_t i = 0; i < kept; i++)
        free(w->problems[i]);
    free(w->problems);
    free(w->tokenizer_dir);
    free(w);
}

static int wt_cmp(const void *a, const void *b)
{
    return strcmp(((const nd_wtensor *)a)->name, ((const nd_wtensor *)b)->name);
}

nd_status nd_weights_load(const char *path, const nd_weights_params *p, nd_weights **out,
                          nd_err *err)
{
    *out = NULL;
    nd_weights *w = calloc(1, sizeof *w);
    if (!w)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    if (p)
        w->p = *p;
    else
        nd_weights_params_init(&w->p);
    if (w->p.dtype != ND_WDT_F32 && w->p.dtype != ND_WDT_F16) {
        free(w);
        return nd_fail(err, ND_EINVAL, "weights dtype must be F32 or F16");
    }
    nd_wformat f = ND_WFMT_UNKNOWN;
    nd_status st = nd_wdetect(path, &f, err);
    if (!st) {
        w->rep.format = f;
        switch (f) {
        case ND_WFMT_DIFFUSERS: st = load_diffusers(w, path, err); break;
        case ND_WFMT_DIFFUSERS_COMPONENT: st = load_component_any(w, path, err); break;
        case ND_WFMT_LDM: st = load_ldm(w, path, err); break;
        case ND_WFMT_CONTROLNET_LDM:
        case ND_WFMT_CONTROLNET_DIFFUSERS: st = load_controlnet(w, path, err); break;
        case ND_WFMT_PICKLE: st = pickle_error(path, err); break;
        case ND_WFMT_LORA_KOHYA:
        case ND_WFMT_LORA_PEFT:
            st = nd_fail(err, ND_EINVAL, "%s is a LoRA: load a base model and pass the LoRA "
                                         "with its scale", path);
            break;
        default:
            st = nd_fail(err, ND_EFORMAT, "%s: not a recognised Stable Diffusion model (no "
                                          "known key layout)", path);
        }
    }
    if (!st && w->p.controlnet) {
        if (w->cn.present)
            st = nd_fail(err, ND_EINVAL, "two ControlNets given");
        else
            st = load_controlnet(w, w->p.controlnet, err);
    }
    if (!st)
        qsort(w->t, w->n, sizeof *w->t, wt_cmp);
    for (int i = 0; i < w->p.n_loras && !st; i++)
        st = nd_weights_merge_lora(w, w->p.loras[i].path, w->p.loras[i].scale, NULL, err);
    if (st) {
        nd_weights_free(w);
        return st;
    }
    *out = w;
    return ND_OK;
}

const nd_wtensor *nd_weights_get(const nd_weights *w, const char *name)
{
    nd_wtensor k = {.name = name};
    return bsearch(&k, w->t, w->n, sizeof k, wt_cmp);
}

/* for lora.c: the same lookup, writable */
nd_wtensor *nd_weights_get_mut(nd_weights *w, const char *name)
{
    nd_wtensor k = {.name = name};
    return bsearch(&k, w->t, w->n, sizeof k, wt_cmp);
}
nd_wdtype nd_weights_dtype(const nd_weights *w) { return w->p.dtype; }

size_t nd_weights_count(const nd_weights *w) { return w->n; }
const nd_wtensor *nd_weights_at(const nd_weights *w, size_t i) { return i < w->n ? &w->t[i] : NULL; }
const nd_unet_config *nd_weights_unet(const nd_weights *w) { return w->unet.present ? &w->unet : NULL; }
const nd_unet_config *nd_weights_controlnet(const nd_weights *w) { return w->cn.present ? &w->cn : NULL; }
const nd_vae_config *nd_weights_vae(const nd_weights *w) { return w->vae.present ? &w->vae : NULL; }
const nd_clip_config *nd_weights_clip(const nd_weights *w) { return w->clip.present ? &w->clip : NULL; }
const nd_weights_report *nd_weights_get_report(const nd_weights *w) { return &w->rep; }
const char *nd_weights_tokenizer_dir(const nd_weights *w) { return w->tokenizer_dir; }
size_t nd_weights_n_problems(const nd_weights *w) { return w->n_problems; }
const char *nd_weights_problem(const nd_weights *w, size_t i)
{
    return i < w->n_problems && i < MAX_PROBLEMS_KEPT ? w->problems[i] : NULL;
}
