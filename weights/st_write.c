/* weights/st_write.c - safetensors writer (for tools, tests, benchmarks).
 * Layout as the reference writer: tensors sorted by alignment (largest dtype
 * first) then name, header padded with spaces to a multiple of 8. */
#include "weights/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *name;
    nd_wdtype dt;
    int ndim;
    int64_t shape[ND_W_MAXDIM];
    uint64_t nbytes;
    const void *data;
} wt;

struct nd_st_writer {
    wt *t;
    size_t n, cap;
    json_t *meta;
};

nd_st_writer *nd_st_writer_new(void)
{
    return calloc(1, sizeof(nd_st_writer));
}

void nd_st_writer_free(nd_st_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        free(w->t[i].name);
    free(w->t);
    json_decref(w->meta);
    free(w);
}

nd_status nd_st_writer_add(nd_st_writer *w, const char *name, nd_wdtype dt, int ndim,
                           const int64_t *shape, const void *data, nd_err *err)
{
    if ((unsigned)dt >= ND_WDT_COUNT || ndim < 0 || ndim > ND_W_MAXDIM || !name ||
        !strcmp(name, "__metadata__"))
        return nd_fail(err, ND_EINVAL, "bad tensor '%s'", name ? name : "(null)");
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name))
            return nd_fail(err, ND_EINVAL, "duplicate tensor '%s'", name);
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 64;
        wt *t = realloc(w->t, nc * sizeof *t);
        if (!t)
            return nd_fail(err, ND_ENOMEM, "out of memory");
        w->t = t;
        w->cap = nc;
    }
    wt *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return nd_fail(err, ND_EINVAL, "tensor '%s': negative dimension", name);
        t->shape[i] = shape[i];
        numel *= (uint64_t)shape[i];
    }
    t->name = strdup(name);
    if (!t->name)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    t->dt = dt;
    t->ndim = ndim;
    t->nbytes = numel * nd_wdtype_size(dt);
    t->data = data;
    w->n++;
    return ND_OK;
}

nd_status nd_st_writer_meta(nd_st_writer *w, const char *key, const char *value, nd_err *err)
{
    if (!w->meta && !(w->meta = json_object()))
        return nd_fail(err, ND_ENOMEM, "out of memory");
    if (json_object_set_new(w->meta, key, json_string(value)))
        return nd_fail(err, ND_EINVAL, "bad metadata '%s' (not UTF-8?)", key);
    return ND_OK;
}

static int by_align_name(const void *a, const void *b)
{
    const wt *x = a, *y = b;
    size_t sx = nd_wdtype_size(x->dt), sy = nd_wdtype_size(y->dt);
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

nd_status nd_st_writer_save(nd_st_writer *w, const char *path, nd_err *err)
{
    qsort(w->t, w->n, sizeof *w->t, by_align_name);
    json_t *h = json_object();
    if (!h)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    if (w->meta)
        json_object_set(h, "__metadata__", w->meta);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        wt *t = &w->t[i];
        json_t *e = json_object(), *sh = json_array();
        for (int d = 0; d < t->ndim; d++)
            json_array_append_new(sh, json_integer(t->shape[d]));
        json_object_set_new(e, "dtype", json_string(nd_wdtype_name(t->dt)));
        json_object_set_new(e, "shape", sh);
        json_object_set_new(e, "data_offsets",
                            json_pack("[II]", (json_int_t)off, (json_int_t)(off + t->nbytes)));
        json_object_set_new(h, t->name, e);
        off += t->nbytes;
    }
    char *js = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(h);
    if (!js)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    size_t jl = strlen(js), padded = (jl + 7) & ~(size_t)7;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(js);
        return nd_fail(err, ND_EIO, "%s: %s", path, strerror(errno));
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(js, 1, jl, f) == jl;
    for (size_t i = jl; ok && i < padded; i++)
        ok = fputc(' ', f) != EOF;
    free(js);
    uint64_t end = 8 + padded;
    for (size_t i = 0; ok && i < w->n; i++) {
        end += w->t[i].nbytes;
        if (!w->t[i].nbytes)
            continue;
        if (w->t[i].data)
            ok = fwrite(w->t[i].data, 1, w->t[i].nbytes, f) == w->t[i].nbytes;
        else
            ok = !fseeko(f, (off_t)w->t[i].nbytes, SEEK_CUR);
    }
    /* a trailing hole needs the size set explicitly */
    if (ok && fflush(f) == 0)
        ok = !ftruncate(fileno(f), (off_t)end);
    if (fclose(f) || !ok)
        return nd_fail(err, ND_EIO, "%s: write failed: %s", path, strerror(errno));
    return ND_OK;
}
