/* tests/codec/test_codec.c - the codec against real captures and references. */
#include "codec/codec.h"
#include "tests/harness.h"

#include <unistd.h>

/* Our column names are nPrint's: the header of a real nPrint file. */
static void test_column_names_match_nprint_header(void)
{
    nd_rows t;
    nd_err err;
    CHECK_OK(nd_csv_read(nd_td("nprint/netdiffusion_correct_format_netflix.nprint.gz"), &t, &err), &err);
    CHECK_EQ_INT(t.n, 1024);
    CHECK_EQ_INT(t.payload_bytes, 0);
    nd_rows_free(&t);
    /* names round-trip through nd_col_find for every column */
    char name[48];
    for (int c = 0; c < ND_HDR_BITS + 16; c++) {
        nd_col_name(c, name, sizeof name);
        CHECKF(nd_col_find(name) == c, "column %d (%s) found at %d", c, name, nd_col_find(name));
    }
    CHECK_EQ_INT(nd_col_find("ipv4_src_0"), 96);
    CHECK_EQ_INT(nd_col_find("tcp_sprt_0"), 800);
    CHECK_EQ_INT(nd_col_find("icmp_roh_31"), 1407);
    CHECK_EQ_INT(nd_col_find("ipv4_ver_4"), -1);
    CHECK_EQ_INT(nd_col_find("ipv4_ver_01"), -1);
    CHECK_EQ_INT(nd_col_find("bogus_3"), -1);
}

/* NetDiffusion's own fine-tune image is exactly our image of its nPrint. */
static void test_image_equals_netdiffusion_png(void)
{
    nd_err err;
    nd_rows t;
    CHECK_OK(nd_csv_read(nd_td("nprint/netdiffusion_netflix_01.nprint.gz"), &t, &err), &err);
    nd_layout l;
    nd_layout_netdiffusion(&l, 1024);
    CHECK_EQ_INT(l.width, 1088);
    uint8_t *ours = malloc((size_t)l.width * l.packets * 3);
    nd_image_from_rows(&l, &t, ours);
    uint8_t *theirs;
    int w, h;
    CHECK_OK(nd_png_read(nd_td("nprint/netdiffusion_netflix_01_finetune.png"), &theirs, &w, &h, &err), &err);
    CHECK_EQ_INT(w, 1088);
    CHECK_EQ_INT(h, 1024);
    size_t diff = 0;
    for (size_t i = 0; i < (size_t)w * h * 3; i++)
        diff += ours[i] != theirs[i];
    CHECK_EQ_INT(diff, 0);
    /* and back: snapping a clean image is the identity, rows come back */
    int8_t *bits = malloc((size_t)w * h);
    nd_conf *conf = malloc((size_t)w * h * sizeof *conf);
    nd_snap_u8(ND_SNAP_NEAREST, theirs, (size_t)w * h, bits, conf);
    int bad_conf = 0;
    for (size_t i = 0; i < (size_t)w * h; i++)
        bad_conf += conf[i] != ND_CONF_SURE;
    CHECK_EQ_INT(bad_conf, 0);
    nd_rows back;
    CHECK_OK(nd_rows_from_bits(&l, bits, &back, &err), &err);
    CHECK_EQ_INT(back.n, t.n);
    size_t mism = 0;
    for (int r = 0; r < t.n && r < back.n; r++)
        for (int x = 0; x < l.n_bit_cols; x++)
            mism += nd_rows_at(&t, r)[l.bit_cols[x]] != nd_rows_at(&back, r)[l.bit_cols[x]];
    CHECK_EQ_INT(mism, 0);
    nd_rows_free(&back);
    free(bits);
    free(conf);
    free(theirs);
    free(ours);
    nd_rows_free(&t);
}

/* rows -> PNG -> rows is the identity, timing columns included. */
static void test_png_round_trip_random(void)
{
    nd_rng_state = nd_test_seed();
    nd_err err;
    nd_layout l;
    CHECK_OK(nd_layout_init(&l, 37, 8, 8, &err), &err);
    nd_rows t;
    CHECK_OK(nd_rows_init(&t, 0, 37, &err), &err);
    for (int r = 0; r < 29; r++) {
        int8_t *row = nd_rows_push(&t, &err);
        for (int x = 0; x < l.n_bit_cols; x++)
            row[l.bit_cols[x]] = (int8_t)((int)(nd_rnd() % 3) - 1);
        row[l.bit_cols[0]] = 1; /* never an all-vacant row before the end */
        t.gap_us[r] = r == 0 ? 0 : (int64_t)(nd_rnd() % 5000000);
    }
    uint8_t *rgb = malloc((size_t)l.width * l.packets * 3);
    nd_image_from_rows(&l, &t, rgb);
    char png[] = "/tmp/ndtest_png_XXXXXX";
    int fd = mkstemp(png);
    close(fd);
    CHECK_OK(nd_png_write(png, rgb, l.width, l.packets, &err), &err);
    uint8_t *rgb2;
    int w, h;
    CHECK_OK(nd_png_read(png, &rgb2, &w, &h, &err), &err);
    unlink(png);
    CHECK_EQ_INT(w, l.width);
    CHECK_EQ_INT(h, l.packets);
    CHECK(memcmp(rgb, rgb2, (size_t)w * h * 3) == 0);
    int8_t *bits = malloc((size_t)w * h);
    nd_snap_u8(ND_SNAP_NEAREST, rgb2, (size_t)w * h, bits, NULL);
    nd_rows back;
    CHECK_OK(nd_rows_from_bits(&l, bits, &back, &err), &err);
    CHECK_EQ_INT(back.n, 29);
    for (int r = 0; r < 29 && r < back.n; r++) {
        for (int x = 0; x < l.n_bit_cols; x++)
            CHECK(nd_rows_at(&t, r)[l.bit_cols[x]] == nd_rows_at(&back, r)[l.bit_cols[x]]);
        /* the gap survives up to its log quantisation: within 2^(1/16) */
        double a = (double)t.gap_us[r] + 1, b = (double)back.gap_us[r] + 1;
        CHECKF(b / a < 1.0444 && a / b < 1.0444, "row %d gap %lld -> %lld", r,
               (long long)t.gap_us[r], (long long)back.gap_us[r]);
    }
    nd_rows_free(&back);
    nd_rows_free(&t);
    free(bits);
    free(rgb);
    free(rgb2);
}

/* Our PNG writer copies the compressed form of trailing identical rows:
 * libpng must read back exactly the pixels written, for padding runs
 * around the copy sizes, no padding, and an image of identical rows. */
static void test_png_padding_runs(void)
{
    nd_rng_state = nd_test_seed() + 4;
    const int w = 37, heights[] = {1, 2, 63, 64, 65, 129, 200};
    const int data_rows[] = {0, 1, 5, 63, 64, 65, 128, 199, 200};
    nd_err err;
    char png[] = "/tmp/ndtest_pad_XXXXXX";
    int fd = mkstemp(png);
    close(fd);
    for (size_t a = 0; a < ND_ARRAY_LEN(heights); a++)
        for (size_t b = 0; b < ND_ARRAY_LEN(data_rows); b++) {
            int h = heights[a], d = data_rows[b] < h ? data_rows[b] : h;
            uint8_t *rgb = malloc((size_t)w * h * 3), *back;
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w * 3; x++)
                    rgb[(size_t)y * w * 3 + x] = y < d ? (uint8_t)nd_rnd() : (uint8_t)(x % 3 == 2 ? 255 : 0);
            int rw, rh;
            CHECK_OK(nd_png_write(png, rgb, w, h, &err), &err);
            CHECK_OK(nd_png_read(png, &back, &rw, &rh, &err), &err);
            CHECKF(rw == w && rh == h && !memcmp(rgb, back, (size_t)w * h * 3),
                   "h %d, %d data rows: pixels differ", h, d);
            free(rgb);
            free(back);
        }
    unlink(png);
}

/* Every packet of real captures: row -> bytes gives back its IP + transport
 * header bytes exactly (the raw inverse), when they were fully captured. */
static void test_raw_inverse_real_headers(void)
{
    const char *files[] = {"apps/netflix/ndpi_netflix__netflix.pcap",
                           "apps/meet/ndpi_stun_google_meet__meet.pcapng",
                           "protocols/dns/dpkt_examples_data_dns_icmp.pcap",
                           "parser/vlan_mpls_zeek_mixed-vlan-mpls.pcap",
                           "apps/reddit/ndpi_reddit__reddit.pcap"};
    int8_t row[ND_HDR_BITS];
    uint8_t out[256];
    long checked = 0, bad = 0;
    for (size_t i = 0; i < ND_ARRAY_LEN(files); i++) {
        nd_reader *r;
        nd_err err;
        CHECK_OK(nd_reader_open(nd_td(files[i]), &r, &err), &err);
        if (!r)
            continue;
        nd_packet p;
        int got;
        while (nd_reader_next(r, &p, &got, &err) == ND_OK && got) {
            nd_pktinfo pi;
            if (!p.l3 || !nd_row_encode(p.l3, p.l3_caplen, 0, row, &pi))
                continue;
            uint32_t l3h = p.ipver == 4 ? (uint32_t)(p.l3[0] & 15) * 4 : 40;
            uint32_t l4h = pi.proto == 6 ? (uint32_t)(p.l3[l3h + 12] >> 4) * 4 : 8;
            if (l3h + l4h > p.l3_caplen)
                continue;
            size_t n = nd_row_to_bytes(row, 0, out, sizeof out);
            checked++;
            if (n != l3h + l4h || memcmp(out, p.l3, n))
                bad++;
        }
        nd_reader_close(r);
    }
    CHECKF(checked > 1500, "only %ld packets checked", checked);
    CHECK_EQ_INT(bad, 0);
}

/* Link layers: every capture of these kinds yields IP packets. */
static void test_link_layers(void)
{
    struct { const char *f; long min_ip; } c[] = {
        {"parser/sll2_zeek_linux_dlt_sll2.pcap", 4},
        {"parser/sll_tcpdump_resp_1_benchmark.pcap", 150},
        {"parser/null_loopback_zeek_redis_pubsub.pcap", 60},
        {"parser/rawip_ndpi_ocs.pcap", 946},
        {"parser/vlan0_zeek_http-vlan-0.pcap", 14},
        {"parser/qinq_pppoe_zeek_pppoe-over-qinq.pcap", 86},
        {"parser/pcapng_be_gopacket_test010.pcapng", 0},
        {"parser/gzip_zeek_ssh_kex-quadratic-1000.pcap.gz", 11},
        {"parser/nanosec_tcpdump_tcp-handshake-nano.pcap", 3},
    };
    for (size_t i = 0; i < ND_ARRAY_LEN(c); i++) {
        nd_reader *r;
        nd_err err;
        CHECK_OK(nd_reader_open(nd_td(c[i].f), &r, &err), &err);
        if (!r)
            continue;
        nd_packet p;
        int got;
        long ip = 0, all = 0;
        int64_t last_ns = -1;
        while (nd_reader_next(r, &p, &got, &err) == ND_OK && got) {
            all++;
            ip += p.l3 != NULL;
            CHECK(p.ts_nsec < 1000000000u);
            last_ns = p.ts_nsec;
        }
        CHECKF(ip >= c[i].min_ip, "%s: %ld IP packets of %ld", c[i].f, ip, all);
        if (strstr(c[i].f, "nanosec"))
            CHECKF(last_ns % 1000 != 0, "nanoseconds lost: %lld", (long long)last_ns);
        nd_reader_close(r);
    }
}

static nd_status count_flow(void *ctx, const nd_flow *f, nd_err *err)
{
    (void)err;
    long *n = ctx;
    n[0]++;
    n[1] += f->n;
    if (strcmp(f->label, "netflix"))
        n[2]++;
    return ND_OK;
}

/* Flow assembly agrees with the MANIFEST's per-file 5-tuple count. */
static void test_flows_match_manifest(void)
{
    nd_flow_opts o;
    nd_flow_opts_init(&o);
    o.end_on_fin_rst = false;
    o.idle_timeout = 1e9;
    long n[3] = {0, 0, 0};
    nd_err err;
    CHECK_OK(nd_flows_from_capture(nd_td("apps/netflix/ndpi_netflix__netflix.pcap"), &o, count_flow,
                                   n, NULL, &err), &err);
    CHECK_EQ_INT(n[0], 36);      /* flows.csv lists 36 TCP/UDP flows */
    CHECK_EQ_INT(n[1], 1145);    /* every packet in a flow */
    CHECK_EQ_INT(n[2], 0);       /* all labelled netflix from the name */
    /* first K packets only */
    o.max_packets = 5;
    memset(n, 0, sizeof n);
    CHECK_OK(nd_flows_from_capture(nd_td("apps/netflix/ndpi_netflix__netflix.pcap"), &o, count_flow,
                                   n, NULL, &err), &err);
    CHECK_EQ_INT(n[0], 36);
    CHECK(n[1] <= 36 * 5);
}

static nd_status check_labels(void *ctx, const nd_flow *f, nd_err *err)
{
    (void)err;
    long *n = ctx;
    n[0]++;
    n[1] += f->label[0] != 0 && strcmp(f->label, "pcapml_sample-test_os-labels") != 0;
    return ND_OK;
}

static void test_labels(void)
{
    char b[64];
    nd_label_from_filename("/x/ndpi_netflix__netflix.pcap", b, sizeof b);
    CHECK(!strcmp(b, "netflix"));
    nd_label_from_filename("netflix_01.pcap", b, sizeof b);
    CHECK(!strcmp(b, "netflix"));
    nd_label_from_filename("a/iotsentinel_Aria_Setup-A-5-STA.pcap.gz", b, sizeof b);
    CHECK(!strcmp(b, "iotsentinel_Aria_Setup-A-5-STA"));
    /* pcapml comments label the flows of the labelled sample */
    nd_labeler *l;
    nd_err err;
    CHECK_OK(nd_labeler_new(&l, &err), &err);
    nd_labeler_use_comments(l, true);
    nd_flow_opts o;
    nd_flow_opts_init(&o);
    o.labeler = l;
    long n[2] = {0, 0};
    CHECK_OK(nd_flows_from_capture(nd_td("labelled/pcapml_sample-test_os-labels.pcapng"), &o,
                                   check_labels, n, NULL, &err), &err);
    CHECK(n[0] >= 10);
    CHECK_EQ_INT(n[1], n[0]);
    nd_labeler_free(l);
    /* the testdata's flows.csv labels every flow of a capture it lists */
    CHECK_OK(nd_labeler_new(&l, &err), &err);
    CHECK_OK(nd_labeler_load_csv(l, nd_td("flows.csv"), &err), &err);
    o.labeler = l;
    o.drop_unlabelled = true;
    o.end_on_fin_rst = false;
    long m[3] = {0, 0, 0};
    CHECK_OK(nd_flows_from_capture(nd_td("apps/netflix/ndpi_netflix__netflix.pcap"), &o, count_flow,
                                   m, NULL, &err), &err);
    CHECK_EQ_INT(m[0], 36);
    CHECK_EQ_INT(m[2], 0);
    /* a BPF rule labels what matches */
    CHECK(nd_labeler_add_bpf(l, "web", "tcp port 443", &err) == ND_OK);
    CHECK(nd_labeler_add_bpf(l, "bad", "tcp port", &err) == ND_EINVAL);
    nd_labeler_free(l);
}

/* Writer -> reader: packets, timestamps and pcapng comments survive. */
static void test_capwriter_round_trip(void)
{
    nd_rng_state = nd_test_seed() + 1;
    for (int fmt = 0; fmt < 2; fmt++) {
        char path[] = "/tmp/ndtest_cap_XXXXXX";
        int fd = mkstemp(path);
        FILE *f = fdopen(fd, "wb");
        nd_capwriter *w;
        nd_err err;
        CHECK_OK(nd_capwriter_open_file(fmt ? ND_CAP_PCAPNG : ND_CAP_PCAP, ND_LINKTYPE_RAW, f, &w,
                                        &err), &err);
        uint8_t pkt[60];
        for (int i = 0; i < 50; i++) {
            for (size_t k = 0; k < sizeof pkt; k++)
                pkt[k] = (uint8_t)nd_rnd();
            pkt[0] = 0x45;
            char c[32];
            snprintf(c, sizeof c, "%d,cls%d", i, i % 3);
            CHECK_OK(nd_capwriter_packet(w, 1700000000 + i, (uint32_t)i * 1000, pkt,
                                         (uint32_t)(20 + i % 40), 100, c, &err), &err);
        }
        nd_capwriter_free(w);
        fclose(f);
        nd_reader *r;
        CHECK_OK(nd_reader_open(path, &r, &err), &err);
        nd_packet p;
        int got, i = 0;
        while (r && nd_reader_next(r, &p, &got, &err) == ND_OK && got) {
            CHECK_EQ_INT(p.ts_sec, 1700000000 + i);
            CHECK_EQ_INT(p.ts_nsec, i * 1000);
            CHECK_EQ_INT(p.caplen, 20 + i % 40);
            CHECK_EQ_INT(p.wirelen, 100);
            CHECK(p.l3 != NULL);
            if (fmt) {
                char c[32];
                snprintf(c, sizeof c, "%d,cls%d", i, i % 3);
                CHECK(p.comment && !strcmp(p.comment, c));
            }
            i++;
        }
        CHECK_EQ_INT(i, 50);
        nd_reader_close(r);
        unlink(path);
    }
}

/* A sink that keeps what it is given, and counts the calls. */
typedef struct {
    uint8_t *b;
    size_t n, cap;
    int calls;
} mem_sink;
static nd_status mem_write(void *ctx, const void *buf, size_t n, nd_err *err)
{
    (void)err;
    mem_sink *m = ctx;
    if (m->n + n > m->cap) {
        m->cap = 2 * (m->n + n);
        m->b = realloc(m->b, m->cap);
    }
    memcpy(m->b + m->n, buf, n);
    m->n += n;
    m->calls++;
    return ND_OK;
}

/* Held records reach the sink as the same bytes, in fewer and larger
 * writes (none over the hold size but by one record), all by the flush. */
static void test_capwriter_hold(void)
{
    nd_rng_state = nd_test_seed() + 4;
    static uint8_t pkt[1500];
    for (size_t k = 0; k < sizeof pkt; k++)
        pkt[k] = (uint8_t)nd_rnd();
    for (int fmt = 0; fmt < 2; fmt++) {
        mem_sink m[2] = {{0}, {0}};
        for (int held = 0; held < 2; held++) {
            nd_capwriter *w;
            nd_err err;
            CHECK_OK(nd_capwriter_open(fmt ? ND_CAP_PCAPNG : ND_CAP_PCAP, ND_LINKTYPE_RAW,
                                       mem_write, &m[held], &w, &err), &err);
            for (int round = 0; round < 3; round++) {
                if (held)
                    nd_capwriter_hold(w);
                for (int i = 0; i < 150; i++)
                    CHECK_OK(nd_capwriter_packet(w, 1700000000 + i, 0, pkt,
                                                 (uint32_t)(20 + (i * 37 + round) % 1480), 0,
                                                 "7,cls", &err), &err);
                if (held) {
                    size_t before = m[held].n;
                    CHECK_OK(nd_capwriter_flush(w, &err), &err);
                    CHECK(m[held].n > before); /* the last records came with the flush */
                }
            }
            nd_capwriter_free(w);
        }
        CHECK(m[0].n == m[1].n && !memcmp(m[0].b, m[1].b, m[0].n));
        CHECK_EQ_INT(m[0].calls, 1 + 3 * 150);
        CHECKF(m[1].calls > 3 && m[1].calls < 30, "%d writes held", m[1].calls);
        free(m[0].b);
        free(m[1].b);
    }
}

/* CSV write -> read keeps every bit, the index and the gaps. */
static void test_csv_round_trip(void)
{
    nd_rng_state = nd_test_seed() + 2;
    nd_err err;
    nd_rows t;
    CHECK_OK(nd_rows_init(&t, 3, 4, &err), &err);
    for (int r = 0; r < 40; r++) {
        int8_t *row = nd_rows_push(&t, &err);
        for (int c = 0; c < nd_row_width(3); c++)
            row[c] = (int8_t)((int)(nd_rnd() % 3) - 1);
        snprintf(t.index[r], sizeof t.index[r], "10.0.0.%d", r);
        t.gap_us[r] = (int64_t)(nd_rnd() % 100000);
    }
    nd_nprint_opts o;
    nd_nprint_opts_init(&o);
    o.payload_bytes = 3;
    o.rts = true;
    char path[] = "/tmp/ndtest_csv_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    CHECK_OK(nd_csv_write(f, &o, &t, &err), &err);
    fclose(f);
    nd_rows b;
    CHECK_OK(nd_csv_read(path, &b, &err), &err);
    unlink(path);
    CHECK_EQ_INT(b.n, 40);
    CHECK_EQ_INT(b.payload_bytes, 3);
    for (int r = 0; r < 40 && r < b.n; r++) {
        CHECK(memcmp(nd_rows_at(&t, r), nd_rows_at(&b, r), (size_t)nd_row_width(3)) == 0);
        CHECK(!strcmp(t.index[r], b.index[r]));
        CHECK_EQ_INT(t.gap_us[r], b.gap_us[r]);
    }
    nd_rows_free(&t);
    nd_rows_free(&b);
}

/* Bad CSVs: a clear error naming the file and line. */
static void test_csv_errors(void)
{
    const char *cases[][2] = {
        {"src_ip,ipv4_ver_0,bogus_1\n1.2.3.4,0,1\n", "unknown column 'bogus_1'"},
        {"src_ip,ipv4_ver_0,ipv4_ver_1\n1.2.3.4,0\n", ":2: 2 fields"},
        {"src_ip,ipv4_ver_0\n1.2.3.4,7\n", "is not 1, 0 or -1"},
        {"src_ip,ipv4_ver_0\n1.2.3.4,1,1\n", "more fields"},
        {"src_ip\n1.2.3.4\n", "no nPrint bit columns"},
        {"", "empty file"},
    };
    for (size_t i = 0; i < ND_ARRAY_LEN(cases); i++) {
        char path[] = "/tmp/ndtest_bad_XXXXXX";
        int fd = mkstemp(path);
        FILE *f = fdopen(fd, "w");
        fputs(cases[i][0], f);
        fclose(f);
        nd_rows t;
        nd_err err = {{0}};
        nd_status st = nd_csv_read(path, &t, &err);
        CHECKF(st == ND_EFORMAT, "case %zu: status %d", i, (int)st);
        CHECKF(strstr(err.msg, cases[i][1]) && strstr(err.msg, path), "case %zu: '%s'", i, err.msg);
        if (st == ND_OK)
            nd_rows_free(&t);
        unlink(path);
    }
}

static void test_field_access(void)
{
    int8_t row[ND_HDR_BITS];
    memset(row, ND_VACANT, sizeof row);
    uint64_t v;
    CHECK(!nd_row_get(row, ND_F_TCP_SEQ, &v));
    nd_row_set(row, ND_F_TCP_SEQ, 0xdeadbeef);
    CHECK(nd_row_get(row, ND_F_TCP_SEQ, &v) && v == 0xdeadbeef);
    nd_row_set(row, ND_F_IPV4_FOFF, 0x1abc);
    CHECK(nd_row_get(row, ND_F_IPV4_FOFF, &v) && v == 0x1abc);
    CHECK(nd_row_get(row, ND_F_IPV4_MFBIT, &v) == false);
    nd_row_vacate(row, ND_F_TCP_SEQ);
    CHECK(!nd_row_get(row, ND_F_TCP_SEQ, &v));
    /* the table is contiguous and ordered */
    for (int f = 1; f < ND_F_COUNT; f++)
        CHECK(nd_fields[f].col == nd_fields[f - 1].col + nd_fields[f - 1].width);
    CHECK(nd_fields[ND_F_COUNT - 1].col + nd_fields[ND_F_COUNT - 1].width == ND_HDR_BITS);
}

ND_TEST_MAIN(ND_TEST(test_field_access), ND_TEST(test_column_names_match_nprint_header),
             ND_TEST(test_image_equals_netdiffusion_png), ND_TEST(test_png_round_trip_random), ND_TEST(test_png_padding_runs),
             ND_TEST(test_raw_inverse_real_headers),
             ND_TEST(test_link_layers), ND_TEST(test_flows_match_manifest), ND_TEST(test_labels),
             ND_TEST(test_capwriter_round_trip), ND_TEST(test_capwriter_hold), ND_TEST(test_csv_round_trip),
             ND_TEST(test_csv_errors))
