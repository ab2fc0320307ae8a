/* codec/rows.c - growable tables of rows. */
#include "codec/codec.h"

#include <stdlib.h>
#include <string.h>

nd_status nd_rows_init(nd_rows *t, int payload_bytes, int cap, nd_err *err)
{
    memset(t, 0, sizeof *t);
    if (payload_bytes < 0 || payload_bytes > ND_MAX_PAYLOAD_BYTES)
        return nd_fail(err, ND_EINVAL, "payload bytes %d out of range 0..%d", payload_bytes,
                       ND_MAX_PAYLOAD_BYTES);
    t->payload_bytes = payload_bytes;
    if (cap < 16)
        cap = 16;
    size_t w = (size_t)nd_row_width(payload_bytes);
    t->bits = malloc((size_t)cap * w);
    t->gap_us = malloc((size_t)cap * sizeof *t->gap_us);
    t->index = malloc((size_t)cap * sizeof *t->index);
    if (!t->bits || !t->gap_us || !t->index) {
        nd_rows_free(t);
        return nd_fail(err, ND_ENOMEM, "out of memory for %d rows", cap);
    }
    t->cap = cap;
    return ND_OK;
}

int8_t *nd_rows_push(nd_rows *t, nd_err *err)
{
    size_t w = (size_t)nd_row_width(t->payload_bytes);
    if (t->n == t->cap) {
        if (t->cap > (1 << 28)) {
            nd_fail(err, ND_ENOMEM, "too many rows");
            return NULL;
        }
        int nc = t->cap * 2;
        int8_t *b = realloc(t->bits, (size_t)nc * w);
        if (b)
            t->bits = b;
        int64_t *g = realloc(t->gap_us, (size_t)nc * sizeof *g);
        if (g)
            t->gap_us = g;
        char(*ix)[48] = realloc(t->index, (size_t)nc * sizeof *ix);
        if (ix)
            t->index = ix;
        if (!b || !g || !ix) {
            nd_fail(err, ND_ENOMEM, "out of memory for %d rows", nc);
            return NULL;
        }
        t->cap = nc;
    }
    int8_t *row = t->bits + (size_t)t->n * w;
    memset(row, ND_VACANT, w);
    t->gap_us[t->n] = -1;
    t->index[t->n][0] = '\0';
    t->n++;
    return row;
}

void nd_rows_free(nd_rows *t)
{
    free(t->bits);
    free(t->gap_us);
    free(t->index);
    memset(t, 0, sizeof *t);
}
