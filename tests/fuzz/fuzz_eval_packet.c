/* tests/fuzz/fuzz_eval_packet.c - arbitrary bytes as an IP packet: the
 * validity checker and the feature extraction (through a one- or two-packet
 * flow) must never read out of bounds or crash. First byte: how many bytes
 * of the rest count as captured (the rest is "on the wire" only). */
#include <stdint.h>
#include <string.h>

#include "eval/eval.h"

static nd_eval *E;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 4096)
        return 0;
    uint32_t n = (uint32_t)size - 1, cut = data[0] % 8;
    uint32_t cap = cut && cut * 8 < n ? n - cut * 8 : n;
    (void)nd_valid_check(data + 1, cap, n);
    if (!E && nd_eval_new(NULL, &E, NULL) != ND_OK)
        return 0;
    nd_flow_pkt p[2] = {
        {.ts_sec = 1, .ts_nsec = 0, .wirelen = n, .len = cap, .dir = 0, .data = data + 1},
        {.ts_sec = 1, .ts_nsec = 5000, .wirelen = n, .len = cap, .dir = 1, .data = data + 1},
    };
    nd_flow f;
    memset(&f, 0, sizeof f);
    f.n = 1 + (data[0] >> 7);
    f.n_total = (uint64_t)f.n;
    f.pkts = p;
    memcpy(f.label, "fuzz", 5);
    (void)nd_eval_add_flow(E, (data[0] >> 3) & 1 ? ND_EVAL_REAL : ND_EVAL_SYNTH, &f, NULL);
    if (nd_eval_flows(E, ND_EVAL_REAL) + nd_eval_flows(E, ND_EVAL_SYNTH) > 2000) {
        const nd_eval_report *r;
        (void)nd_eval_finish(E, &r, NULL);
        nd_eval_free(E);
        E = NULL;
    }
    return 0;
}
