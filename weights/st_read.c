/* weights/st_read.c - strict safetensors reader over mmap.
 * Validation follows the reference parser (safetensors/src/tensor.rs): header
 * length capped, UTF-8 JSON object without duplicate keys, known dtypes,
 * numel * dtype size == end - begin, offsets contiguous from 0 in offset order
 * (so no gaps, no overlaps) and the buffer ending exactly at the file's end. */
#include "weights/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct nd_st_file {
    const unsigned char *base; /* whole file                */
    size_t size;
    int mapped;                /* 1: munmap on close        */
    nd_st_tensor *t;           /* sorted by name            */
    size_t n;
    char **meta;               /* key, value pairs          */
    size_t n_meta;
    char *names;               /* all tensor names, packed  */
};

void nd_st_close(nd_st_file *f)
{
    if (!f)
        return;
    if (f->mapped && f->base)
        munmap((void *)f->base, f->size);
    for (size_t i = 0; i < 2 * f->n_meta; i++)
        free(f->meta[i]);
    free(f->meta);
    free(f->names);
    free(f->t);
    free(f);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const nd_st_tensor *)a)->name, ((const nd_st_tensor *)b)->name);
}

static int by_offset(const void *a, const void *b)
{
    const nd_st_tensor *x = *(const nd_st_tensor *const *)a, *y = *(const nd_st_tensor *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    /* zero-size tensors share an offset with the next one: put them first */
    return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

static nd_status parse_meta(nd_st_file *f, json_t *m, nd_err *err)
{
    if (!json_is_object(m))
        return nd_fail(err, ND_EFORMAT, "__metadata__ is not an object");
    size_t n = json_object_size(m);
    f->meta = calloc(2 * n + 1, sizeof *f->meta);
    if (!f->meta)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) {
        if (!json_is_string(v))
            return nd_fail(err, ND_EFORMAT, "__metadata__ value of '%.64s' is not a string", k);
        f->meta[2 * f->n_meta] = strdup(k);
        f->meta[2 * f->n_meta + 1] = strdup(json_string_value(v));
        f->n_meta++;
        if (!f->meta[2 * f->n_meta - 2] || !f->meta[2 * f->n_meta - 1])
            return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    return ND_OK;
}

static nd_status parse_entry(const char *name, json_t *e, nd_st_tensor *t, nd_err *err)
{
    if (!json_is_object(e))
        return nd_fail(err, ND_EFORMAT, "tensor '%.64s': entry is not an object", name);
    json_t *dt = json_object_get(e, "dtype"), *sh = json_object_get(e, "shape"),
           *off = json_object_get(e, "data_offsets");
    if (!json_is_string(dt) || !json_is_array(sh) || !json_is_array(off) ||
        json_object_size(e) != 3)
        return nd_fail(err, ND_EFORMAT,
                       "tensor '%.64s': want exactly dtype, shape and data_offsets", name);
    int d = nd_wdtype_from_name(json_string_value(dt));
    if (d < 0)
        return nd_fail(err, ND_EFORMAT, "tensor '%.64s': unknown dtype '%.16s'", name,
                       json_string_value(dt));
    t->dtype = (nd_wdtype)d;
    size_t nd = json_array_size(sh);
    if (nd > ND_W_MAXDIM)
        return nd_fail(err, ND_EFORMAT, "tensor '%.64s': %zu dimensions (max %d)", name, nd,
                       ND_W_MAXDIM);
    t->ndim = (int)nd;
    uint64_t numel = 1;
    int overflow = 0, zero = 0;
    for (size_t i = 0; i < nd; i++) {
        json_t *x = json_array_get(sh, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return nd_fail(err, ND_EFORMAT, "tensor '%.64s': shape is not a list of sizes", name);
        t->shape[i] = (int64_t)json_integer_value(x);
        zero |= t->shape[i] == 0;
    }
    /* a zero dimension makes numel 0 whatever the others are */
    for (size_t i = 0; i < nd && !zero; i++) {
        uint64_t v = (uint64_t)t->shape[i];
        if (numel > UINT64_MAX / v)
            overflow = 1;
        else
            numel *= v;
    }
    if (zero)
        numel = 0;
    uint64_t es = nd_wdtype_size(t->dtype);
    if (overflow || numel > (UINT64_MAX >> 1) / es)
        return nd_fail(err, ND_EFORMAT, "tensor '%.64s': shape too large", name);
    t->numel = numel;
    t->nbytes = numel * es;
    if (json_array_size(off) != 2 || !json_is_integer(json_array_get(off, 0)) ||
        !json_is_integer(json_array_get(off, 1)))
        return nd_fail(err, ND_EFORMAT, "tensor '%.64s': data_offsets is not [begin, end]", name);
    json_int_t b = json_integer_value(json_array_get(off, 0)),
               e2 = json_integer_value(json_array_get(off, 1));
    if (b < 0 || e2 < b)
        return nd_fail(err, ND_EFORMAT, "tensor '%.64s': bad data_offsets [%lld, %lld]", name,
                       (long long)b, (long long)e2);
    if ((uint64_t)(e2 - b) != t->nbytes)
        return nd_fail(err, ND_EFORMAT,
                       "tensor '%.64s': %s shape needs %llu bytes but data_offsets span %llu",
                       name, nd_wdtype_name(t->dtype), (unsigned long long)t->nbytes,
                       (unsigned long long)(e2 - b));
    t->offset = (uint64_t)b;
    return ND_OK;
}

static nd_status parse(nd_st_file *f, nd_err *err)
{
    if (f->size < 8)
        return nd_fail(err, ND_EFORMAT, "file of %zu bytes is too short for a safetensors header",
                       f->size);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | f->base[i];
    if (hl > ND_ST_MAX_HEADER)
        return nd_fail(err, ND_EFORMAT, "header length %llu exceeds the %u-byte limit",
                       (unsigned long long)hl, ND_ST_MAX_HEADER);
    if (hl > f->size - 8)
        return nd_fail(err, ND_EFORMAT, "header length %llu runs past the end of the %zu-byte file",
                       (unsigned long long)hl, f->size);
    if (hl < 2)
        return nd_fail(err, ND_EFORMAT, "header of %llu bytes cannot hold a JSON object",
                       (unsigned long long)hl);
    const char *h = (const char *)f->base + 8;
    if (h[0] != '{')
        return nd_fail(err, ND_EFORMAT, "header does not start with '{' (not a safetensors file?)");
    if (memchr(h, 0, hl))
        return nd_fail(err, ND_EFORMAT, "header contains a NUL byte");
    nd_err jerr;
    json_t *root = nd_wjson_load(h, hl, &jerr);
    if (!root)
        return nd_fail(err, ND_EFORMAT, "header: %s", jerr.msg);
    nd_status st = ND_OK;
    if (!json_is_object(root)) {
        st = nd_fail(err, ND_EFORMAT, "header is not a JSON object");
        goto out;
    }
    size_t cap = json_object_size(root);
    f->t = calloc(cap + 1, sizeof *f->t);
    size_t names_len = 0;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) names_len += strlen(k) + 1;
    f->names = malloc(names_len + 1);
    if (!f->t || !f->names) {
        st = nd_fail(err, ND_ENOMEM, "out of memory for %zu tensors", cap);
        goto out;
    }
    char *np = f->names;
    json_object_foreach(root, k, v) {
        if (!strcmp(k, "__metadata__")) {
            if ((st = parse_meta(f, v, err)))
                goto out;
            continue;
        }
        nd_st_tensor *t = &f->t[f->n];
        if ((st = parse_entry(k, v, t, err)))
            goto out;
        size_t kl = strlen(k);
        memcpy(np, k, kl + 1);
        t->name = np;
        np += kl + 1;
        f->n++;
    }
    /* offsets: contiguous from 0 in offset order, ending at the file's end */
    uint64_t buf_len = f->size - 8 - hl;
    const unsigned char *data = f->base + 8 + hl;
    nd_st_tensor **ord = malloc((f->n + 1) * sizeof *ord);
    if (!ord) {
        st = nd_fail(err, ND_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < f->n; i++)
        ord[i] = &f->t[i];
    qsort(ord, f->n, sizeof *ord, by_offset);
    uint64_t pos = 0;
    for (size_t i = 0; i < f->n; i++) {
        nd_st_tensor *t = ord[i];
        if (t->offset != pos) {
            st = nd_fail(err, ND_EFORMAT,
                         "tensor '%.64s' starts at %llu but the previous tensor ends at %llu (%s)",
                         t->name, (unsigned long long)t->offset, (unsigned long long)pos,
                         t->offset < pos ? "overlap" : "gap");
            break;
        }
        pos += t->nbytes;
        if (pos > buf_len) {
            st = nd_fail(err, ND_EFORMAT,
                         "tensor '%.64s' ends at %llu, past the %llu-byte data buffer", t->name,
                         (unsigned long long)pos, (unsigned long long)buf_len);
            break;
        }
        t->data = data + t->offset;
    }
    free(ord);
    if (!st && pos != buf_len)
        st = nd_fail(err, ND_EFORMAT, "data buffer is %llu bytes but tensors cover %llu (%s)",
                     (unsigned long long)buf_len, (unsigned long long)pos,
                     pos < buf_len ? "trailing bytes" : "truncated");
    if (!st)
        qsort(f->t, f->n, sizeof *f->t, by_name);
out:
    json_decref(root);
    return st;
}

nd_status nd_st_open_mem(const void *buf, size_t len, nd_st_file **out, nd_err *err)
{
    *out = NULL;
    nd_st_file *f = calloc(1, sizeof *f);
    if (!f)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    f->base = buf;
    f->size = len;
    nd_status st = parse(f, err);
    if (st) {
        nd_st_close(f);
        return st;
    }
    *out = f;
    return ND_OK;
}

nd_status nd_st_open(const char *path, nd_st_file **out, nd_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return nd_fail(err, ND_EIO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        close(fd);
        return nd_fail(err, ND_EIO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    void *m = NULL;
    if (size) {
        m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            return nd_fail(err, ND_EIO, "%s: mmap: %s", path, strerror(e));
        }
    }
    close(fd); /* the mapping keeps the file */
    nd_st_file *f = calloc(1, sizeof *f);
    if (!f) {
        if (m)
            munmap(m, size);
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    f->base = m;
    f->size = size;
    f->mapped = m != NULL;
    nd_status st = parse(f, err);
    if (st) {
        nd_st_close(f);
        return nd_wrap(err, st, "%s", path);
    }
    *out = f;
    return ND_OK;
}

/* A read-only private file mapping is never written, so its pages always come
 * back from the file: dropping them is safe even where a page is shared with a
 * neighbouring tensor that is still a zero-copy view (it just faults in again).
 * A caller's buffer (nd_st_open_mem) may be anonymous memory: left alone. */
void nd_st_release(const nd_st_file *f, const void *p, size_t n)
{
    if (!f->mapped || !n)
        return;
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)p & ~(pg - 1),
              b = ((uintptr_t)p + n + pg - 1) & ~(pg - 1), lo = (uintptr_t)f->base,
              hi = (lo + f->size + pg - 1) & ~(pg - 1);
    if (a < lo || b > hi)
        return;
    madvise((void *)a, b - a, MADV_DONTNEED);
}

size_t nd_st_count(const nd_st_file *f) { return f->n; }
uint64_t nd_st_file_size(const nd_st_file *f) { return f->size; }

const nd_st_tensor *nd_st_at(const nd_st_file *f, size_t i)
{
    return i < f->n ? &f->t[i] : NULL;
}

const nd_st_tensor *nd_st_find(const nd_st_file *f, const char *name)
{
    nd_st_tensor key = {.name = name};
    return bsearch(&key, f->t, f->n, sizeof key, by_name);
}

const char *nd_st_meta(const nd_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[2 * i], key))
            return f->meta[2 * i + 1];
    return NULL;
}

size_t nd_st_meta_count(const nd_st_file *f) { return f->n_meta; }
const char *nd_st_meta_key(const nd_st_file *f, size_t i)
{
    return i < f->n_meta ? f->meta[2 * i] : NULL;
}
