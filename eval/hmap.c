/* eval/hmap.c - a growable uint64 -> count map (one per feature, class and
 * side), and the distances between two of them. */
#include "eval/internal.h"

#include <stdlib.h>
#include <string.h>

static size_t slot_of(uint64_t k, size_t cap)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

static bool grow(nd_hmap *h)
{
    size_t ncap = h->cap ? h->cap * 2 : 16;
    uint64_t *nk = calloc(ncap, sizeof *nk), *nc = calloc(ncap, sizeof *nc);
    if (!nk || !nc) {
        free(nk);
        free(nc);
        return false;
    }
    for (size_t i = 0; i < h->cap; i++) {
        if (!h->cnt[i])
            continue;
        size_t s = slot_of(h->key[i], ncap);
        while (nc[s])
            s = (s + 1) & (ncap - 1);
        nk[s] = h->key[i];
        nc[s] = h->cnt[i];
    }
    free(h->key);
    free(h->cnt);
    h->key = nk;
    h->cnt = nc;
    h->cap = ncap;
    return true;
}

bool nd_hmap_add(nd_hmap *h, uint64_t key, uint64_t count)
{
    if (!count)
        return true;
    if ((h->n + 1) * 4 > h->cap * 3 && !grow(h))
        return false;
    size_t s = slot_of(key, h->cap);
    while (h->cnt[s] && h->key[s] != key)
        s = (s + 1) & (h->cap - 1);
    if (!h->cnt[s]) {
        h->key[s] = key;
        h->n++;
    }
    h->cnt[s] += count;
    h->total += count;
    h->dirty = true;
    return true;
}

static int cmp_pair(const void *a, const void *b)
{
    uint64_t x = ((const uint64_t *)a)[0], y = ((const uint64_t *)b)[0];
    return x < y ? -1 : x > y;
}

bool nd_hmap_sorted(nd_hmap *h)
{
    if (!h->dirty && (h->skey || !h->n))
        return true;
    uint64_t *pairs = malloc((h->n ? h->n : 1) * 2 * sizeof *pairs);
    uint64_t *sk = malloc((h->n ? h->n : 1) * sizeof *sk);
    uint64_t *sc = malloc((h->n ? h->n : 1) * sizeof *sc);
    if (!pairs || !sk || !sc) {
        free(pairs);
        free(sk);
        free(sc);
        return false;
    }
    size_t j = 0;
    for (size_t i = 0; i < h->cap; i++)
        if (h->cnt[i]) {
            pairs[2 * j] = h->key[i];
            pairs[2 * j + 1] = h->cnt[i];
            j++;
        }
    qsort(pairs, j, 2 * sizeof *pairs, cmp_pair);
    for (size_t i = 0; i < j; i++) {
        sk[i] = pairs[2 * i];
        sc[i] = pairs[2 * i + 1];
    }
    free(pairs);
    free(h->skey);
    free(h->scnt);
    h->skey = sk;
    h->scnt = sc;
    h->sn = j;
    h->dirty = false;
    return true;
}

void nd_hmap_free(nd_hmap *h)
{
    free(h->key);
    free(h->cnt);
    free(h->skey);
    free(h->scnt);
    memset(h, 0, sizeof *h);
}

nd_eval_metric nd_eval_distances_sparse(const uint64_t *ka, const uint64_t *ca, size_t na,
                                        const uint64_t *kb, const uint64_t *cb, size_t nb,
                                        double *p, double *q)
{
    /* merge the two sorted key lists into aligned dense vectors */
    size_t i = 0, j = 0, n = 0;
    while (i < na || j < nb) {
        if (j >= nb || (i < na && ka[i] < kb[j])) {
            p[n] = (double)ca[i++];
            q[n] = 0;
        } else if (i >= na || kb[j] < ka[i]) {
            p[n] = 0;
            q[n] = (double)cb[j++];
        } else {
            p[n] = (double)ca[i++];
            q[n] = (double)cb[j++];
        }
        n++;
    }
    return nd_eval_distances(p, q, n);
}
