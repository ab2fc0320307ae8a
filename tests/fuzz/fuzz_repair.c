/* tests/fuzz/fuzz_repair.c - arbitrary rows through repair: never a crash,
 * never an invalid packet (the test validator judges every packet).
 * Input: byte 0 = payload bytes (0..15), byte 1 = link type and conf flag,
 * then cells: each byte's value mod 3 -> 1 / 0 / vacant, rows filled in
 * order; with conf on, every cell's confidence comes from its byte too. */
#include "tests/heuristics/helpers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int pb = data[0] & 15;
    int raw = data[1] & 1, use_conf = (data[1] >> 1) & 1;
    data += 2;
    size -= 2;
    int w = nd_row_width(pb);
    int n = (int)(size / 64) + 1; /* short inputs still make whole rows */
    if (n > 64)
        n = 64;
    nd_rows t;
    nd_err err = {{0}};
    if (nd_rows_init(&t, pb, n, &err))
        return 0;
    nd_conf *conf = use_conf ? malloc((size_t)w * (size_t)n) : NULL;
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        int8_t *row = nd_rows_push(&t, &err);
        for (int c = 0; c < w; c++) {
            /* the input repeats over the cells so every cell is drawn */
            uint8_t b = size ? data[k++ % size] : 0;
            int v = b % 3;
            row[c] = v == 2 ? ND_VACANT : (int8_t)v;
            if (conf)
                conf[(size_t)i * (size_t)w + (size_t)c] = (nd_conf)(b & 0xfc);
        }
        t.gap_us[i] = size ? (int64_t)(data[(size_t)i % size]) * 1000 - 1000 : -1;
    }
    nd_repair_opts o;
    nd_repair_opts_init(&o);
    o.linktype = raw ? ND_LINKTYPE_RAW : ND_LINKTYPE_ETHERNET;
    nd_repair_ctx *c = NULL;
    if (nd_repair_ctx_new(&o, &c, &err))
        abort();
    nd_repair_out out;
    if (nd_repair_flow(c, &t, conf, NULL, size, &out, NULL, &err))
        abort();
    const char *e = th_check_flow(&out);
    if (e) {
        fprintf(stderr, "invalid packet: %s\n", e);
        abort();
    }
    nd_repair_ctx_free(c);
    free(conf);
    nd_rows_free(&t);
    return 0;
}
