/* tests/fuzz/fuzz_safetensors.c - hostile safetensors headers and data: the
 * reader must answer with an error or a file whose every tensor lies inside
 * the buffer (touched below, so ASan sees any escape). */
#include "weights/weights.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy, so an out-of-bounds read past SIZE is caught */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    nd_st_file *f = NULL;
    nd_err e;
    if (nd_st_open_mem(buf, size, &f, &e) == ND_OK) {
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < nd_st_count(f); i++) {
            const nd_st_tensor *t = nd_st_at(f, i);
            if (t->nbytes) {
                sink ^= ((const uint8_t *)t->data)[0];
                sink ^= ((const uint8_t *)t->data)[t->nbytes - 1];
            }
            if (t->numel && t->numel < 4096 &&
                (t->dtype == ND_WDT_F16 || t->dtype == ND_WDT_BF16 || t->dtype == ND_WDT_F32)) {
                float *o = malloc(t->numel * sizeof *o);
                if (o)
                    nd_wconvert(o, ND_WDT_F32, t->data, t->dtype, t->numel, NULL);
                free(o);
            }
            if (nd_st_find(f, t->name) != t)
                abort();
        }
        for (size_t i = 0; i < nd_st_meta_count(f); i++)
            (void)nd_st_meta(f, nd_st_meta_key(f, i));
        (void)sink;
        nd_st_close(f);
    }
    free(buf);
    return 0;
}
