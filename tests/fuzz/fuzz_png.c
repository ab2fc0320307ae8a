/* libFuzzer: PNG decoding and the image -> rows path on arbitrary bytes. */
#include "codec/codec.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *rgb;
    int w, h;
    if (nd_png_read_mem(data, size, &rgb, &w, &h, NULL) != ND_OK)
        return 0;
    nd_layout l;
    nd_layout_netdiffusion(&l, h);
    if (w == l.width) {
        int8_t *bits = malloc((size_t)w * h);
        nd_conf *conf = malloc((size_t)w * h * sizeof *conf);
        if (bits && conf) {
            nd_snap_u8(ND_SNAP_NEAREST, rgb, (size_t)w * h, bits, conf);
            nd_rows t;
            if (nd_rows_from_bits(&l, bits, &t, NULL) == ND_OK)
                nd_rows_free(&t);
        }
        free(bits);
        free(conf);
    }
    free(rgb);
    return 0;
}
