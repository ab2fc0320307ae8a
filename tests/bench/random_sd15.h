/* tests/bench/random_sd15.h - random full-size SD1.5 weights for the
 * benchmarks, made from the committed manifests (tests/fixtures/weights/
 * manifests/): never committed, written to a temporary folder and deleted
 * after. Included by one bench program each (static functions). */
#ifndef ND_TESTS_BENCH_RANDOM_SD15_H
#define ND_TESTS_BENCH_RANDOM_SD15_H

#include "kernels/ops.h"
#include "weights/weights.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAN "tests/fixtures/weights/manifests/"

/* v stored as f16 (es 2) or f32 (es 4) at dst. */
static inline void put_as(uint8_t *dst, size_t es, float v)
{
    if (es == 2) {
        uint16_t h = nd_f32_to_f16(v);
        memcpy(dst, &h, 2);
    } else {
        memcpy(dst, &v, 4);
    }
}

/* Writes the manifest's tensors whose names start with PREFIX as DT (F16 or
 * F32), random values from one shared pool (|x| < 0.05; norm weights near
 * 1). The pool keeps the process small whatever the model's size. */
static __attribute__((unused)) int make_file_as(const char *manifest, const char *prefix,
                                                nd_wdtype dt, const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(manifest, 0, &je);
    if (!j) {
        fprintf(stderr, "%s: %s\n", manifest, je.text);
        return -1;
    }
    size_t pool_n = 64u << 20, es = dt == ND_WDT_F16 ? 2 : 4;
    uint8_t *pool = malloc(pool_n * es), *ones = malloc(4096 * es);
    if (!pool || !ones)
        return -1;
    uint64_t s = 88172645463325252ull;
    float head[4096]; /* the first pool values, for the norm weights */
    for (size_t i = 0; i < pool_n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        /* f16-exact: both dtypes hold the same values */
        float v = nd_f16_to_f32(nd_f32_to_f16((float)((s >> 40) * (1.0 / (1 << 24)) - 0.5) * 0.1f));
        if (i < 4096)
            head[i] = v;
        put_as(pool + i * es, es, v);
    }
    for (size_t i = 0; i < 4096; i++) /* norm weights: 1 + a pool value */
        put_as(ones + i * es, es, 1.0f + head[i]);
    nd_st_writer *w = nd_st_writer_new();
    const char *k;
    json_t *v;
    size_t off = 0;
    int rc = 0;
    json_object_foreach(json_object_get(j, "tensors"), k, v) {
        if (strncmp(k, prefix, strlen(prefix)))
            continue;
        int64_t sh[8], n = 1;
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(v, "shape"), i, x) n *= (sh[i] = json_integer_value(x));
        int nd = (int)json_array_size(json_object_get(v, "shape"));
        const uint8_t *data;
        size_t kl = strlen(k);
        bool norm_w = nd == 1 && kl > 7 && !strcmp(k + kl - 7, ".weight") && n <= 4096;
        if (norm_w) {
            data = ones;
        } else {
            if ((size_t)n > pool_n) {
                fprintf(stderr, "%s: %lld elements, more than the pool\n", k, (long long)n);
                rc = -1;
                break;
            }
            if (off + (size_t)n > pool_n)
                off = 0;
            data = pool + off * es;
            off += (size_t)n % 4099;
        }
        nd_err e;
        if (nd_st_writer_add(w, k, dt, nd, sh, data, &e)) {
            fprintf(stderr, "add %s: %s\n", k, e.msg);
            rc = -1;
            break;
        }
    }
    nd_err e;
    if (!rc && nd_st_writer_save(w, path, &e)) {
        fprintf(stderr, "write: %s\n", e.msg);
        rc = -1;
    }
    nd_st_writer_free(w);
    free(pool);
    free(ones);
    json_decref(j);
    return rc;
}

/* The f16 files of the benchmarks (SD1.5 is distributed in f16). */
static __attribute__((unused)) int make_file(const char *manifest, const char *prefix,
                                             const char *path)
{
    return make_file_as(manifest, prefix, ND_WDT_F16, path);
}

/* x in [-scale, scale) from a xorshift of seed (host f32 data). */
static __attribute__((unused)) void fill(nd_tensor *t, uint64_t seed, float scale)
{
    float *d = t->data;
    int64_t n = nd_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        d[i] = (float)((seed >> 40) * (1.0 / (1 << 24)) - 0.5) * 2 * scale;
    }
}

#endif
