/* tests/heuristics/test_repair.c - repair: validity on thousands of random
 * row sets, determinism, faithfulness on real flows, class statistics. */
#include "tests/harness.h"
#include "tests/heuristics/helpers.h"

static nd_repair_ctx *new_ctx(uint64_t seed, int linktype)
{
    nd_repair_opts o;
    nd_repair_opts_init(&o);
    o.seed = seed;
    o.linktype = linktype;
    nd_repair_ctx *c = NULL;
    nd_err err = {{0}};
    CHECK_OK(nd_repair_ctx_new(&o, &c, &err), &err);
    return c;
}

static uint64_t hash_out(const nd_repair_out *o)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < o->n; i++) {
        for (uint32_t k = 0; k < o->pkts[i].len; k++)
            h = (h ^ o->pkts[i].data[k]) * 1099511628211ull;
        h = (h ^ (uint64_t)o->pkts[i].ts_sec) * 1099511628211ull;
        h = (h ^ o->pkts[i].ts_nsec) * 1099511628211ull;
    }
    return h;
}

static th_flows real; /* loaded once */
static int real_loaded;
static void load_real(void)
{
    if (real_loaded)
        return;
    real_loaded = 1;
    th_load(&real, nd_testdata(), th_real_files, (int)ND_ARRAY_LEN(th_real_files), 400, 1024,
            false);
}

/* Every kind of row set, thousands of times: every packet valid. */
static void test_property_random_rows(void)
{
    load_real();
    CHECKF(real.n > 20, "only %d real flows loaded", real.n);
    uint64_t rs = nd_test_seed();
    nd_repair_ctx *c = new_ctx(rs, ND_LINKTYPE_ETHERNET);
    nd_repair_ctx *craw = new_ctx(rs, ND_LINKTYPE_RAW);
    static const double flips[] = {0.001, 0.01, 0.05, 0.1, 0.2, 0.35, 0.5};
    int runs = 3000, bad = 0, pkts = 0, protos[3] = {0, 0, 0};
    nd_repair_counts cnt;
    memset(&cnt, 0, sizeof cnt);
    for (int it = 0; it < runs; it++) {
        int kind = (int)(th_next(&rs) % TH_KINDS);
        nd_rows t;
        nd_err err = {{0}};
        int pb = (th_next(&rs) % 4 == 0) ? (int)(th_next(&rs) % 64) : 0;
        CHECK_OK(nd_rows_init(&t, pb, 16, &err), &err);
        const nd_rows *rr = real.n ? &real.v[th_next(&rs) % (uint64_t)real.n] : NULL;
        th_random_rows(&t, kind, rr, flips[th_next(&rs) % ND_ARRAY_LEN(flips)],
                       1 + (int)(th_next(&rs) % 40), &rs);
        nd_repair_out o;
        nd_repair_ctx *use = (it & 7) == 0 ? craw : c;
        nd_status st = nd_repair_flow(use, &t, NULL, NULL, (uint64_t)it, &o, &cnt, &err);
        CHECKF(st == ND_OK, "repair: %s", err.msg);
        const char *e = th_check_flow(&o);
        if (e && bad++ < 5)
            CHECKF(0, "iteration %d kind %d: %s", it, kind, e);
        if (kind == TH_VACANT)
            CHECK_EQ_INT(o.n, 0);
        if (kind == TH_SINGLE)
            CHECK(o.n <= 1);
        pkts += o.n;
        if (o.n)
            protos[o.proto == 6 ? 0 : o.proto == 17 ? 1 : 2]++;
        nd_rows_free(&t);
    }
    CHECK_EQ_INT(bad, 0);
    printf("  %d row sets, %d packets (tcp %d udp %d icmp %d flows), 0 invalid expected, %d found\n",
           runs, pkts, protos[0], protos[1], protos[2], bad);
    CHECK(protos[0] > 0 && protos[1] > 0 && protos[2] > 0);
    nd_repair_ctx_free(c);
    nd_repair_ctx_free(craw);
}

/* Confidence changes the vote: a flow whose TCP cells are drawn with low
 * confidence and UDP cells with high confidence becomes UDP. */
static void test_confidence_vote(void)
{
    nd_rows t;
    nd_err err = {{0}};
    CHECK_OK(nd_rows_init(&t, 0, 4, &err), &err);
    int w = nd_row_width(0);
    nd_conf *conf = malloc((size_t)w * 3);
    for (int i = 0; i < 3; i++) {
        int8_t *r = nd_rows_push(&t, &err);
        for (int c = 0; c < 160; c++)
            r[c] = (int8_t)((c * 7 + i) & 1);
        nd_row_set(r, ND_F_IPV4_VER, 4);
        nd_row_set(r, ND_F_IPV4_HL, 5);
        for (int c = 0; c < 160; c++) /* TCP: all 160 cells drawn, unsure... */
            r[ND_COL_TCP + c] = (int8_t)(c & 1);
        for (int c = 0; c < 56; c++) /* ...UDP: 56 of 64, sure */
            r[ND_COL_UDP + c] = (int8_t)((c >> 1) & 1);
        for (int c = 0; c < w; c++) {
            int8_t v = r[c];
            bool tcp = c >= ND_COL_TCP && c < ND_COL_UDP;
            conf[(size_t)i * (size_t)w + (size_t)c] = tcp && v != ND_VACANT ? 0 : ND_CONF_SURE;
        }
    }
    nd_repair_ctx *c = new_ctx(1, ND_LINKTYPE_RAW);
    nd_repair_out o;
    CHECK_OK(nd_repair_flow(c, &t, NULL, NULL, 0, &o, NULL, &err), &err);
    CHECK_EQ_INT(o.proto, 6); /* without confidence TCP's full block wins */
    CHECK_OK(nd_repair_flow(c, &t, conf, NULL, 0, &o, NULL, &err), &err);
    CHECK_EQ_INT(o.proto, 17);
    CHECK(th_check_flow(&o) == NULL);
    free(conf);
    nd_rows_free(&t);
    nd_repair_ctx_free(c);
}

/* Same rows + seed + flow id = same bytes; another seed = other bytes. */
static void test_determinism(void)
{
    load_real();
    uint64_t rs = 12345;
    nd_rows t;
    nd_err err = {{0}};
    CHECK_OK(nd_rows_init(&t, 8, 16, &err), &err);
    th_random_rows(&t, TH_UNIFORM, NULL, 0, 300, &rs);
    nd_repair_ctx *a = new_ctx(7, ND_LINKTYPE_ETHERNET), *b = new_ctx(7, ND_LINKTYPE_ETHERNET),
                  *d = new_ctx(8, ND_LINKTYPE_ETHERNET);
    nd_repair_out oa, ob, od;
    /* b first repairs something else: no state may leak between flows */
    if (real.n)
        CHECK_OK(nd_repair_flow(b, &real.v[0], NULL, NULL, 3, &ob, NULL, &err), &err);
    CHECK_OK(nd_repair_flow(a, &t, NULL, NULL, 42, &oa, NULL, &err), &err);
    uint64_t ha = hash_out(&oa);
    CHECK_OK(nd_repair_flow(b, &t, NULL, NULL, 42, &ob, NULL, &err), &err);
    CHECK_EQ_INT(ob.n, oa.n);
    CHECK(hash_out(&ob) == ha);
    CHECK_OK(nd_repair_flow(d, &t, NULL, NULL, 42, &od, NULL, &err), &err);
    CHECK(hash_out(&od) != ha);
    CHECK_OK(nd_repair_flow(a, &t, NULL, NULL, 43, &oa, NULL, &err), &err);
    CHECK(hash_out(&oa) != ha);
    nd_rows_free(&t);
    nd_repair_ctx_free(a);
    nd_repair_ctx_free(b);
    nd_repair_ctx_free(d);
}

/* Padding: trailing vacant rows are not packets; a vacant row in the middle
 * is dropped; a single row is one packet. */
static void test_flow_length(void)
{
    nd_rows t;
    nd_err err = {{0}};
    load_real();
    if (!real.n)
        return;
    const nd_rows *r = &real.v[0];
    CHECK_OK(nd_rows_init(&t, 0, 16, &err), &err);
    int w = nd_row_width(0);
    for (int i = 0; i < 5 && i < r->n; i++)
        memcpy(nd_rows_push(&t, &err), nd_rows_at(r, i), (size_t)w);
    int real5 = t.n;
    nd_rows_push(&t, &err); /* vacant in the middle */
    memcpy(nd_rows_push(&t, &err), nd_rows_at(r, 0), (size_t)w);
    for (int i = 0; i < 50; i++)
        nd_rows_push(&t, &err); /* padding */
    nd_repair_ctx *c = new_ctx(1, ND_LINKTYPE_ETHERNET);
    nd_repair_out o;
    nd_repair_counts cnt;
    memset(&cnt, 0, sizeof cnt);
    CHECK_OK(nd_repair_flow(c, &t, NULL, NULL, 0, &o, &cnt, &err), &err);
    CHECK_EQ_INT(o.n, real5 + 1);
    CHECK_EQ_INT(cnt.rows_padding, 50);
    CHECK_EQ_INT(cnt.rows_dropped, 1);
    CHECK(th_check_flow(&o) == NULL);
    nd_rows_free(&t);
    nd_repair_ctx_free(c);
}

/* Real flows through the NetDiffusion image (addresses omitted, no timing
 * columns) and repair: fields the model controls come out unchanged. */
static void test_faithful_real_flows(void)
{
    th_flows im;
    int n = th_load(&im, nd_testdata(), th_real_files, (int)ND_ARRAY_LEN(th_real_files), 400,
                    1024, true);
    CHECKF(n > 20, "only %d flows", n);
    nd_repair_opts op;
    nd_repair_opts_init(&op);
    op.mtu = 65535; /* captures taken with segmentation offload carry > 1500 */
    op.keep_seq_gaps = true; /* the test captures missed segments */
    nd_repair_ctx *c = NULL;
    nd_err err = {{0}};
    CHECK_OK(nd_repair_ctx_new(&op, &c, &err), &err);
    nd_repair_counts cnt;
    memset(&cnt, 0, sizeof cnt);
    int invalid = 0;
    for (int i = 0; i < im.n; i++) {
        nd_repair_out o;
        CHECK_OK(nd_repair_flow(c, &im.v[i], NULL, &im.stats, (uint64_t)i, &o, &cnt, &err),
                 &err);
        CHECK_EQ_INT(o.n, im.v[i].n);
        for (int k = 0; k < o.n; k++) /* packets only: the flows keep their seq gaps */
            invalid += th_check_packet(o.pkts[k].data, o.pkts[k].len, o.linktype) != NULL;
    }
    CHECK_EQ_INT(invalid, 0);
    printf("  %d real flows, %llu packets; per-field change rate (changed/seen):\n", im.n,
           (unsigned long long)cnt.packets);
    for (int f = 0; f < ND_RP_COUNT; f++)
        if (cnt.seen[f])
            printf("    %-12s %8llu / %-8llu %6.2f%%\n", nd_repair_counter_name(f),
                   (unsigned long long)cnt.changed[f], (unsigned long long)cnt.seen[f],
                   100.0 * (double)cnt.changed[f] / (double)cnt.seen[f]);
    /* What the image does not carry is made by rule (repair.h): addresses,
     * checksums over them, timestamps (no timing columns), payload bytes
     * (no payload columns); "dir" counts packets whose direction the ports
     * could not tell (same port both sides), not a field. Every other field
     * the model draws must survive repair exactly on real traffic. */
    static const int made[] = {
        ND_F_IPV4_SRC, ND_F_IPV4_DST, ND_F_IPV6_SRC, ND_F_IPV6_DST, ND_F_IPV4_CKSUM,
        ND_F_TCP_CKSUM, ND_F_UDP_CKSUM, ND_F_ICMP_CKSUM, ND_RP_GAP, ND_RP_PAYLOAD,
    };
    int kept_fields = 0;
    for (int f = 0; f < ND_RP_COUNT; f++) {
        bool is_made = false;
        for (size_t k = 0; k < ND_ARRAY_LEN(made); k++)
            is_made |= made[k] == f;
        if (is_made) {
            CHECKF(cnt.changed[f] == cnt.seen[f], "%s: made by rule, yet %llu of %llu kept",
                   nd_repair_counter_name(f),
                   (unsigned long long)(cnt.seen[f] - cnt.changed[f]),
                   (unsigned long long)cnt.seen[f]);
        } else if (f != ND_RP_DIR) {
            CHECKF(cnt.changed[f] == 0, "%s changed in %llu of %llu real packets",
                   nd_repair_counter_name(f), (unsigned long long)cnt.changed[f],
                   (unsigned long long)cnt.seen[f]);
            kept_fields += cnt.seen[f] > 0;
        }
    }
    CHECKF(kept_fields >= 40, "only %d drawn fields seen", kept_fields);
    /* same port on both sides: only NTP's 123 <-> 123 in these captures */
    CHECK(cnt.changed[ND_RP_DIR] * 100 <= cnt.seen[ND_RP_DIR]);
    nd_repair_ctx_free(c);
    th_free(&im);
}

/* Real flows with their gaps (rows straight from encode): gaps kept. */
static void test_gaps_kept(void)
{
    load_real();
    nd_repair_ctx *c = new_ctx(3, ND_LINKTYPE_ETHERNET);
    nd_repair_counts cnt;
    memset(&cnt, 0, sizeof cnt);
    nd_err err = {{0}};
    for (int i = 0; i < real.n && i < 50; i++) {
        nd_repair_out o;
        CHECK_OK(nd_repair_flow(c, &real.v[i], NULL, NULL, (uint64_t)i, &o, &cnt, &err), &err);
        for (int k = 1; k < o.n; k++) {
            int64_t t1 = o.pkts[k].ts_sec * 1000000 + o.pkts[k].ts_nsec / 1000;
            int64_t t0 = o.pkts[k - 1].ts_sec * 1000000 + o.pkts[k - 1].ts_nsec / 1000;
            int64_t g = real.v[i].gap_us[k];
            CHECK(t1 - t0 == (g > 60000000 ? 60000000 : g));
        }
    }
    CHECK(cnt.seen[ND_RP_GAP] > 0);
    nd_repair_ctx_free(c);
}

/* Class statistics from real flows drive the drawn gaps. */
static void test_class_stats(void)
{
    load_real();
    CHECK(real.stats.packets > 100);
    uint64_t tot = 0;
    for (int d = 0; d < 2; d++)
        for (int b = 0; b < ND_GAP_BINS; b++)
            tot += real.stats.gap_hist[d][b];
    CHECK(tot > 0 && tot < real.stats.packets);
    /* a class whose gaps are all in bin 20 ([2^19, 2^20) us) */
    nd_class_stats s;
    nd_class_stats_clear(&s);
    s.gap_hist[0][20] = s.gap_hist[1][20] = 1;
    s.ttl_hist[0][99] = 1;
    nd_rows t;
    nd_err err = {{0}};
    uint64_t rs = 5;
    CHECK_OK(nd_rows_init(&t, 0, 16, &err), &err);
    th_random_rows(&t, TH_UNIFORM, NULL, 0, 50, &rs);
    for (int i = 0; i < t.n; i++)
        t.gap_us[i] = -1;
    nd_repair_ctx *c = new_ctx(9, ND_LINKTYPE_RAW);
    nd_repair_out o;
    CHECK_OK(nd_repair_flow(c, &t, NULL, &s, 0, &o, NULL, &err), &err);
    CHECK(o.n > 1);
    for (int k = 1; k < o.n; k++) {
        int64_t g = (o.pkts[k].ts_sec - o.pkts[k - 1].ts_sec) * 1000000 +
                    ((int64_t)o.pkts[k].ts_nsec - o.pkts[k - 1].ts_nsec) / 1000;
        CHECKF(g >= (1 << 19) && g < (1 << 20), "gap %lld", (long long)g);
    }
    nd_rows_free(&t);
    nd_repair_ctx_free(c);
}

/* A drawn system server port the class does not serve on becomes its top
 * port of that transport, a port one or two bits from one it serves on
 * becomes that one; a port it does serve on, other ports >= 1024, and any
 * port of a class without a port table stay as drawn. */
static void test_server_port_rule(void)
{
    static const struct { uint16_t drawn; bool table; uint16_t want; } cases[] = {
        {256, true, 123}, {123, true, 123}, {513, true, 123}, {2000, true, 2000},
        {256, false, 256},
        /* one or two bits from a table port: that port; three: as drawn */
        {123 ^ 0x8000, true, 123}, {123 ^ 0x8000 ^ 0x10, true, 123},
        {123 ^ 0xe000, true, 123 ^ 0xe000}, {123 ^ 0x8000, false, 123 ^ 0x8000},
    };
    nd_class_stats s;
    nd_class_stats_clear(&s);
    s.n_server_ports = 2;
    s.server_port[0] = 443, s.server_proto[0] = 6; /* TCP first: not this flow's */
    s.server_port[1] = 123, s.server_proto[1] = 17;
    nd_repair_ctx *c = new_ctx(3, ND_LINKTYPE_RAW);
    nd_err err = {{0}};
    for (size_t i = 0; i < ND_ARRAY_LEN(cases); i++) {
        nd_rows t;
        CHECK_OK(nd_rows_init(&t, 0, 4, &err), &err);
        for (int k = 0; k < 2; k++) { /* initiator 24576 -> drawn port, and back */
            int8_t *r = nd_rows_push(&t, NULL);
            uint64_t v[][2] = {{ND_F_IPV4_VER, 4}, {ND_F_IPV4_HL, 5}, {ND_F_IPV4_TOS, 0},
                               {ND_F_IPV4_TL, 20 + 8 + 48}, {ND_F_IPV4_ID, 0},
                               {ND_F_IPV4_RBIT, 0}, {ND_F_IPV4_DFBIT, 1}, {ND_F_IPV4_MFBIT, 0},
                               {ND_F_IPV4_FOFF, 0}, {ND_F_IPV4_TTL, 64}, {ND_F_IPV4_PROTO, 17},
                               {ND_F_IPV4_CKSUM, 0}, {ND_F_IPV4_SRC, 0}, {ND_F_IPV4_DST, 0},
                               {ND_F_UDP_SPORT, k ? cases[i].drawn : 24576},
                               {ND_F_UDP_DPORT, k ? 24576 : cases[i].drawn},
                               {ND_F_UDP_LEN, 8 + 48}, {ND_F_UDP_CKSUM, 0}};
            for (size_t j = 0; j < ND_ARRAY_LEN(v); j++)
                nd_row_set(r, (int)v[j][0], v[j][1]);
        }
        nd_repair_out o;
        CHECK_OK(nd_repair_flow(c, &t, NULL, cases[i].table ? &s : NULL, i, &o, NULL, &err),
                 &err);
        CHECK_EQ_INT(o.n, 2);
        if (o.n == 2) { /* raw IPv4: the UDP header at 20 */
            const uint8_t *u = o.pkts[0].data + 20;
            CHECKF(th_rd16(u) == 24576 && th_rd16(u + 2) == cases[i].want,
                   "drawn %u (table %d): %u -> %u, want 24576 -> %u", cases[i].drawn,
                   cases[i].table, th_rd16(u), th_rd16(u + 2), cases[i].want);
            CHECK(th_check_flow(&o) == NULL);
        }
        nd_rows_free(&t);
    }
    nd_repair_ctx_free(c);
}

/* Drawn option areas a few bits from a real stack's layout get that
 * layout's kind and length bytes (heuristics/options.c): a SYN's always,
 * other packets' within one bit per kind or length byte; a list far from
 * every layout loses what does not parse, and the NOPs before it. */
static void test_option_snap(void)
{
    static const struct {
        uint8_t flags; /* SYN 2, ACK 16 */
        int n;
        uint8_t drawn[20];
        int want_n; /* option bytes out */
        uint8_t want[20];
    } pk[] = {
        /* SYN: Linux's MSS SACKOK TS NOP WS with SACKOK's length 3 */
        {2, 20, {2, 4, 5, 180, 4, 3, 8, 10, 0, 0, 1, 0, 0, 0, 0, 0, 1, 3, 3, 7}, 20,
         {2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 1, 0, 0, 0, 0, 0, 1, 3, 3, 7}},
        {2 | 16, 20, {2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 2, 0, 0, 0, 1, 0, 1, 3, 3, 7}, 20,
         {2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 2, 0, 0, 0, 1, 0, 1, 3, 3, 7}},
        /* NOP NOP TS with TS's length drawn 8, then kind 3 for a NOP */
        {16, 12, {1, 1, 8, 8, 0, 0, 1, 1, 0, 0, 2, 0}, 12, {1, 1, 8, 10}},
        {16, 12, {3, 1, 8, 10, 0, 0, 1, 2, 0, 0, 2, 0}, 12, {1, 1, 8, 10}},
        /* far from every layout: dropped, no NOP tail */
        {16, 12, {1, 1, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55}, 0, {0}},
    };
    nd_repair_ctx *c = new_ctx(5, ND_LINKTYPE_RAW);
    nd_err err = {{0}};
    nd_rows t;
    CHECK_OK(nd_rows_init(&t, 0, 8, &err), &err);
    for (size_t k = 0; k < ND_ARRAY_LEN(pk); k++) {
        int8_t *r = nd_rows_push(&t, NULL);
        bool back = k == 1; /* the SYN-ACK comes back */
        uint64_t v[][2] = {{ND_F_IPV4_VER, 4}, {ND_F_IPV4_HL, 5}, {ND_F_IPV4_TOS, 0},
                           {ND_F_IPV4_TL, 20 + 20 + (uint64_t)pk[k].n}, {ND_F_IPV4_ID, 0},
                           {ND_F_IPV4_RBIT, 0}, {ND_F_IPV4_DFBIT, 1}, {ND_F_IPV4_MFBIT, 0},
                           {ND_F_IPV4_FOFF, 0}, {ND_F_IPV4_TTL, 64}, {ND_F_IPV4_PROTO, 6},
                           {ND_F_IPV4_CKSUM, 0}, {ND_F_IPV4_SRC, 0}, {ND_F_IPV4_DST, 0},
                           {ND_F_TCP_SPRT, back ? 443 : 40000}, {ND_F_TCP_DPRT, back ? 40000 : 443},
                           {ND_F_TCP_SEQ, back ? 5000 : 100}, {ND_F_TCP_ACKN, k ? 101 : 0},
                           {ND_F_TCP_DOFF, 5 + (uint64_t)pk[k].n / 4}, {ND_F_TCP_RES, 0},
                           {ND_F_TCP_NS, 0}, {ND_F_TCP_CWR, 0}, {ND_F_TCP_ECE, 0},
                           {ND_F_TCP_URG, 0}, {ND_F_TCP_ACKF, (pk[k].flags & 16) != 0},
                           {ND_F_TCP_PSH, 0}, {ND_F_TCP_RST, 0},
                           {ND_F_TCP_SYN, (pk[k].flags & 2) != 0}, {ND_F_TCP_FIN, 0},
                           {ND_F_TCP_WSIZE, 502}, {ND_F_TCP_CKSUM, 0}, {ND_F_TCP_URP, 0}};
        for (size_t j = 0; j < ND_ARRAY_LEN(v); j++)
            nd_row_set(r, (int)v[j][0], v[j][1]);
        nd_row_vacate(r, ND_F_TCP_OPT);
        nd_bits_from_bytes(r + nd_fields[ND_F_TCP_OPT].col, pk[k].drawn, (size_t)pk[k].n);
    }
    nd_repair_out o;
    CHECK_OK(nd_repair_flow(c, &t, NULL, NULL, 0, &o, NULL, &err), &err);
    CHECK_EQ_INT(o.n, (int)ND_ARRAY_LEN(pk));
    for (int k = 0; k < o.n && k < (int)ND_ARRAY_LEN(pk); k++) {
        const uint8_t *tcp = o.pkts[k].data + 20; /* raw IPv4 */
        int on = (tcp[12] >> 4) * 4 - 20;
        CHECKF(on == pk[k].want_n, "packet %d: %d option bytes, want %d", k, on, pk[k].want_n);
        /* kinds and lengths as wanted (the TS values are the repair's) */
        for (int i = 0; i < on && i < pk[k].want_n; i++)
            if (!(pk[k].want_n == 12 && i >= 4) && !(pk[k].want_n == 20 && i >= 8 && i < 16))
                CHECKF(tcp[20 + i] == pk[k].want[i], "packet %d option byte %d: %u, want %u", k,
                       i, tcp[20 + i], pk[k].want[i]);
    }
    CHECK(th_check_flow(&o) == NULL);
    nd_rows_free(&t);
    nd_repair_ctx_free(c);
}

/* A drawn TTL one or two bits from its side's steady value and 32 or more
 * hops away is that value with a bit wrong; a hop or a few off it, or
 * three bits off, stays as drawn (paths change). */
static void test_ttl_bit_rule(void)
{
    static const struct { uint8_t drawn, want; } pk[] = {
        {64, 64}, {64, 64}, {64, 64}, {4, 64}, {16, 64}, {96, 64}, {192, 64},
        {72, 72}, {63, 63}, {56, 56}, {7, 7},
    };
    nd_repair_ctx *c = new_ctx(4, ND_LINKTYPE_RAW);
    nd_err err = {{0}};
    nd_rows t;
    CHECK_OK(nd_rows_init(&t, 0, 16, &err), &err);
    for (size_t k = 0; k < ND_ARRAY_LEN(pk); k++) { /* one side: 40000 -> 5000 */
        int8_t *r = nd_rows_push(&t, NULL);
        uint64_t v[][2] = {{ND_F_IPV4_VER, 4}, {ND_F_IPV4_HL, 5}, {ND_F_IPV4_TOS, 0},
                           {ND_F_IPV4_TL, 20 + 8 + 32}, {ND_F_IPV4_ID, k},
                           {ND_F_IPV4_RBIT, 0}, {ND_F_IPV4_DFBIT, 1}, {ND_F_IPV4_MFBIT, 0},
                           {ND_F_IPV4_FOFF, 0}, {ND_F_IPV4_TTL, pk[k].drawn}, {ND_F_IPV4_PROTO, 17},
                           {ND_F_IPV4_CKSUM, 0}, {ND_F_IPV4_SRC, 0}, {ND_F_IPV4_DST, 0},
                           {ND_F_UDP_SPORT, 40000}, {ND_F_UDP_DPORT, 5000},
                           {ND_F_UDP_LEN, 8 + 32}, {ND_F_UDP_CKSUM, 0}};
        for (size_t j = 0; j < ND_ARRAY_LEN(v); j++)
            nd_row_set(r, (int)v[j][0], v[j][1]);
    }
    nd_repair_out o;
    CHECK_OK(nd_repair_flow(c, &t, NULL, NULL, 0, &o, NULL, &err), &err);
    CHECK_EQ_INT(o.n, (int)ND_ARRAY_LEN(pk));
    for (int k = 0; k < o.n && k < (int)ND_ARRAY_LEN(pk); k++)
        CHECKF(o.pkts[k].data[8] == pk[k].want, "packet %d: TTL drawn %u -> %u, want %u", k,
               pk[k].drawn, o.pkts[k].data[8], pk[k].want);
    CHECK(th_check_flow(&o) == NULL);
    nd_rows_free(&t);
    nd_repair_ctx_free(c);
}

/* NTP messages are at least their 48-byte header: a shorter drawn UDP 123
 * payload is made 48 bytes (and shaped); other ports keep theirs. */
static void test_ntp_min_length(void)
{
    static const struct { uint16_t port; int drawn, want; } cases[] = {
        {123, 40, 48}, {123, 44, 48}, {123, 48, 48}, {123, 68, 68}, {5000, 40, 40},
    };
    nd_err err = {{0}};
    for (size_t i = 0; i < ND_ARRAY_LEN(cases); i++) {
        nd_repair_ctx *c = new_ctx(6, ND_LINKTYPE_RAW);
        nd_rows t;
        CHECK_OK(nd_rows_init(&t, 0, 2, &err), &err);
        int8_t *r = nd_rows_push(&t, NULL);
        uint64_t v[][2] = {{ND_F_IPV4_VER, 4}, {ND_F_IPV4_HL, 5}, {ND_F_IPV4_TOS, 0},
                           {ND_F_IPV4_TL, 20 + 8 + (uint64_t)cases[i].drawn}, {ND_F_IPV4_ID, 1},
                           {ND_F_IPV4_RBIT, 0}, {ND_F_IPV4_DFBIT, 1}, {ND_F_IPV4_MFBIT, 0},
                           {ND_F_IPV4_FOFF, 0}, {ND_F_IPV4_TTL, 64}, {ND_F_IPV4_PROTO, 17},
                           {ND_F_IPV4_CKSUM, 0}, {ND_F_IPV4_SRC, 0}, {ND_F_IPV4_DST, 0},
                           {ND_F_UDP_SPORT, 40000}, {ND_F_UDP_DPORT, cases[i].port},
                           {ND_F_UDP_LEN, 8 + (uint64_t)cases[i].drawn}, {ND_F_UDP_CKSUM, 0}};
        for (size_t j = 0; j < ND_ARRAY_LEN(v); j++)
            nd_row_set(r, (int)v[j][0], v[j][1]);
        nd_repair_out o;
        CHECK_OK(nd_repair_flow(c, &t, NULL, NULL, 0, &o, NULL, &err), &err);
        CHECK_EQ_INT(o.n, 1);
        if (o.n == 1) {
            int got = th_rd16(o.pkts[0].data + 20 + 4) - 8;
            CHECKF(got == cases[i].want, "port %u, drawn %d payload bytes: %d, want %d",
                   cases[i].port, cases[i].drawn, got, cases[i].want);
            CHECK(th_check_flow(&o) == NULL);
        }
        nd_rows_free(&t);
        nd_repair_ctx_free(c);
    }
}

static void test_bad_options(void)
{
    nd_repair_opts o;
    nd_repair_opts_init(&o);
    o.mtu = 10;
    nd_repair_ctx *c = NULL;
    nd_err err = {{0}};
    CHECK_EQ_INT(nd_repair_ctx_new(&o, &c, &err), ND_EINVAL);
    CHECK(c == NULL);
    nd_repair_opts_init(&o);
    o.linktype = 42;
    CHECK_EQ_INT(nd_repair_ctx_new(&o, &c, &err), ND_EINVAL);
}

static void test_cleanup(void)
{
    if (real_loaded)
        th_free(&real);
}

ND_TEST_MAIN(ND_TEST(test_bad_options), ND_TEST(test_option_snap), ND_TEST(test_ttl_bit_rule), ND_TEST(test_ntp_min_length), ND_TEST(test_determinism), ND_TEST(test_flow_length),
             ND_TEST(test_confidence_vote), ND_TEST(test_class_stats), ND_TEST(test_server_port_rule), ND_TEST(test_gaps_kept),
             ND_TEST(test_property_random_rows), ND_TEST(test_faithful_real_flows),
             ND_TEST(test_cleanup))
