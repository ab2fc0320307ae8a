/* tests/heuristics/repair_sample.c - writes one pcap of repaired flows of
 * every kind the property test uses (uniform random bits, real flows with
 * 0.1%..50% of bits flipped, all-vacant, single rows), for the tshark /
 * scapy / tcpreplay checks in test_tools.sh. Usage: repair_sample OUT.pcap
 * FLOWS SEED [raw]. Prints "flows packets" on stdout. */
#include "tests/heuristics/helpers.h"

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    int nflows = atoi(argv[2]);
    uint64_t rs = strtoull(argv[3], NULL, 0);
    bool raw = argc > 4 && !strcmp(argv[4], "raw");
    const char *dir = getenv("ND_TESTDATA") ? getenv("ND_TESTDATA") : "../shared/testdata";
    th_flows real;
    if (th_load(&real, dir, th_real_files, (int)ND_ARRAY_LEN(th_real_files), 400, 1024, false) <= 0)
        return 1;
    nd_repair_opts o;
    nd_repair_opts_init(&o);
    o.seed = rs;
    o.linktype = raw ? ND_LINKTYPE_RAW : ND_LINKTYPE_ETHERNET;
    nd_repair_ctx *c;
    nd_err err = {{0}};
    if (nd_repair_ctx_new(&o, &c, &err))
        return 1;
    FILE *f = fopen(argv[1], "wb");
    nd_capwriter *w;
    if (!f || nd_capwriter_open_file(ND_CAP_PCAP, o.linktype, f, &w, &err))
        return 1;
    static const double flips[] = {0.001, 0.01, 0.05, 0.1, 0.2, 0.35, 0.5};
    long pk = 0;
    for (int i = 0; i < nflows; i++) {
        nd_rows t;
        int pb = (th_next(&rs) % 4 == 0) ? (int)(th_next(&rs) % 64) : 0;
        nd_rows_init(&t, pb, 16, &err);
        int kind = (int)(th_next(&rs) % TH_KINDS);
        th_random_rows(&t, kind, &real.v[th_next(&rs) % (uint64_t)real.n],
                       flips[th_next(&rs) % ND_ARRAY_LEN(flips)], 1 + (int)(th_next(&rs) % 40),
                       &rs);
        nd_repair_out out;
        if (nd_repair_flow(c, &t, NULL, &real.stats, (uint64_t)i, &out, NULL, &err) ||
            nd_repair_write(w, &out, NULL, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        pk += out.n;
        nd_rows_free(&t);
    }
    nd_capwriter_free(w);
    fclose(f);
    nd_repair_ctx_free(c);
    th_free(&real);
    printf("%d %ld\n", nflows, pk);
    return 0;
}
