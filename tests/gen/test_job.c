/* tests/gen/test_job.c - the generation job with a stand-in drawer: each
 * image is one of the class's real template flows plus seeded noise, so the
 * job's own work (batching, seeds, snap, repair, sinks, cancellation) is what
 * is tested; the model pipeline is tested in tests/model/. */
#include "gen/gen.h"
#include "gen/internal.h"
#include "tests/harness.h"
#include "tests/gen/fixture.h"

#include <jansson.h>
#include <unistd.h>

static char dir[] = "/tmp/ndtest_job_XXXXXX";
static nd_class_table table;

static void setup(void) { fixture_once(dir, &table); }

typedef struct {
    const nd_class_table *t;
    int calls, max_seen;
} stand_in;

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static nd_status draw(void *ctx, const nd_draw_req *req, int n, float *planar, nd_err *err)
{
    stand_in *s = ctx;
    s->calls++;
    if (n > s->max_seen)
        s->max_seen = n;
    const nd_layout *l = &s->t->layout;
    size_t npx = (size_t)l->width * l->packets;
    for (int i = 0; i < n; i++) {
        char p[4096];
        nd_class_template_path(s->t, req[i].cls, req[i].template_index, p, sizeof p);
        uint8_t *rgb;
        int w, h;
        nd_status st = nd_png_read(p, &rgb, &w, &h, err);
        if (st)
            return st;
        float *o = planar + (size_t)i * npx * 3;
        for (size_t px = 0; px < npx; px++)
            for (int c = 0; c < 3; c++) {
                /* noise that flips ~1% of bits: the seed decides which */
                uint64_t r = mix(req[i].seed ^ (px * 3 + (uint64_t)c));
                float v = rgb[3 * px + (size_t)c] / 255.0f;
                if ((r & 255) < 2)
                    v = 1.0f - v;
                o[(size_t)c * npx + px] = v + (float)((r >> 8) & 255) / 2560.0f - 0.05f;
            }
        free(rgb);
    }
    return ND_OK;
}

typedef struct {
    FILE *f;
} file_ctx;
static nd_status fwrite_fn(void *ctx, const void *b, size_t n, nd_err *err)
{
    return fwrite(b, 1, n, ((file_ctx *)ctx)->f) == n ? ND_OK : nd_fail(err, ND_EIO, "write");
}

/* Runs "ssh=5,zoom=4" with a batch size; writes pcapng + manifest. */
static nd_status run_job(int batch, const char *pcap, const char *manifest, volatile int *cancel,
                         nd_gen_stats *stats, nd_err *err)
{
    nd_gen_job j;
    nd_gen_job_init(&j);
    j.seed = 42;
    nd_status st = nd_gen_job_parse(&j, "ssh=5,zoom=4", 0, &table, err);
    if (st)
        return st;
    stand_in s = {&table, 0, 0};
    nd_drawer d = {&s, batch, table.layout, draw};
    file_ctx fc = {fopen(pcap, "wb")};
    FILE *mf = fopen(manifest, "w");
    nd_capture_sink *cs;
    nd_manifest_sink *ms;
    nd_gen_sink sinks[2];
    st = nd_capture_sink_new(ND_CAP_PCAPNG, ND_LINKTYPE_ETHERNET, fwrite_fn, &fc, &cs, &sinks[0], err);
    if (!st)
        st = nd_manifest_sink_new(mf, &ms, &sinks[1], err);
    if (!st)
        st = nd_gen_run(&j, &table, &d, sinks, 2, NULL, NULL, cancel, stats, err);
    nd_err e2;
    if (!st)
        st = nd_manifest_sink_finish(ms, &e2);
    CHECK(s.max_seen <= batch);
    nd_capture_sink_free(cs);
    nd_manifest_sink_free(ms);
    fclose(fc.f);
    fclose(mf);
    return st;
}

static int files_equal(const char *a, const char *b)
{
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
    return system(cmd) == 0;
}

static void test_job_parse(void)
{
    setup();
    nd_gen_job j;
    nd_err err = {{0}};
    nd_gen_job_init(&j);
    CHECK_OK(nd_gen_job_parse(&j, "ssh=5,zoom=4", 0, &table, &err), &err);
    CHECK_EQ_INT(nd_gen_job_total(&j), 9);
    nd_gen_job_init(&j);
    CHECK_OK(nd_gen_job_parse(&j, "zoom", 7, &table, &err), &err);
    CHECK_EQ_INT(nd_gen_job_total(&j), 7);
    const char *bad[][2] = {{"netflix", "unknown class 'netflix' (known: ssh, zoom)"},
                            {"ssh=0", "at least 1"}, {"ssh=-3", "bad count"},
                            {"ssh=2,ssh=3", "given twice"}, {"ssh=99999999", "bad count"},
                            {"", "no class"}};
    for (size_t i = 0; i < ND_ARRAY_LEN(bad); i++) {
        nd_gen_job_init(&j);
        nd_status st = nd_gen_job_parse(&j, bad[i][0], 1, &table, &err);
        CHECKF(st == ND_EINVAL && strstr(err.msg, bad[i][1]), "'%s': %d %s", bad[i][0], (int)st,
               err.msg);
    }
    nd_gen_job_init(&j);
    j.max_flows = 10;
    CHECK(nd_gen_job_parse(&j, "zoom", 11, &table, &err) == ND_EINVAL && strstr(err.msg, "at most 10"));
}

static void test_job_runs_and_is_deterministic(void)
{
    setup();
    char p1[4200], p3[4200], m1[4200], m3[4200];
    snprintf(p1, sizeof p1, "%s/b1.pcapng", dir);
    snprintf(p3, sizeof p3, "%s/b3.pcapng", dir);
    snprintf(m1, sizeof m1, "%s/b1.json", dir);
    snprintf(m3, sizeof m3, "%s/b3.json", dir);
    nd_gen_stats s1, s3;
    nd_err err = {{0}};
    CHECK_OK(run_job(1, p1, m1, NULL, &s1, &err), &err);
    CHECK_OK(run_job(3, p3, m3, NULL, &s3, &err), &err);
    CHECK_EQ_INT(s1.flows, 9);
    CHECK(s1.packets > 9);
    CHECK(files_equal(p1, p3));     /* same bytes whatever the batch */
    CHECK(files_equal(m1, m3));
    /* the manifest agrees with the stats */
    json_error_t je;
    json_t *m = json_load_file(m1, 0, &je);
    CHECK(json_is_array(m) && json_array_size(m) == 9);
    uint64_t pk = 0;
    for (size_t i = 0; m && i < json_array_size(m); i++) {
        json_t *o = json_array_get(m, i);
        pk += (uint64_t)json_integer_value(json_object_get(o, "packets"));
        CHECK(!strcmp(json_string_value(json_object_get(o, "class")), i < 5 ? "ssh" : "zoom"));
    }
    CHECK_EQ_INT(pk, s1.packets);
    json_decref(m);
    /* tshark: no bad checksum (status 0 is "bad"), no malformed header
     * (the stand-in's noisy lengths can make an application dissector of a
     * 1-byte "SSH" payload complain: that is the payload, not the packet) */
    char cmd[20000];
    snprintf(cmd, sizeof cmd,
             "tshark -n -r %s -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE "
             "-o udp.check_checksum:TRUE -Y 'ip.checksum.status == 0 or tcp.checksum.status == 0 "
             "or udp.checksum.status == 0 or icmp.checksum.status == 0' -T fields -e frame.number 2>/dev/null | wc -l; "
             "tshark -n -r %s -Y _ws.malformed -T fields -e frame.protocols 2>/dev/null | "
             "awk -F: '{p=$NF} p==\"eth\"||p==\"ethertype\"||p==\"ip\"||p==\"ipv6\"||"
             "p==\"tcp\"||p==\"udp\"||p==\"icmp\"||p==\"icmpv6\"' | wc -l; "
             "tshark -n -r %s -T fields -e frame.number 2>/dev/null | wc -l",
             p1, p1, p1);
    FILE *pp = popen(cmd, "r");
    int bad = -1, malformed = -1, seen = -1;
    if (pp) {
        if (fscanf(pp, "%d %d %d", &bad, &malformed, &seen) != 3)
            bad = -1;
        pclose(pp);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(malformed, 0);
    CHECK_EQ_INT(seen, s1.packets);
    snprintf(cmd, sizeof cmd,
             "tshark -r %s -T fields -e frame.comment 2>/dev/null | cut -d, -f2 | sort | uniq -c | wc -l", p1);
    pp = popen(cmd, "r");
    int labels = -1;
    if (pp) {
        if (fscanf(pp, "%d", &labels) != 1)
            labels = -1;
        pclose(pp);
    }
    CHECK_EQ_INT(labels, 2);
    /* a different seed, different flows */
}

static void test_job_cancel(void)
{
    setup();
    char p[4200], m[4200];
    snprintf(p, sizeof p, "%s/c.pcapng", dir);
    snprintf(m, sizeof m, "%s/c.json", dir);
    volatile int cancel = 1;
    nd_gen_stats s;
    nd_err err = {{0}};
    CHECK(run_job(2, p, m, &cancel, &s, &err) == ND_ECANCELLED);
    CHECK_EQ_INT(s.flows, 0);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    nd_class_table_free(&table);
    CHECK(system(cmd) == 0);
}

/* A class's flows take its templates in turn (each one equally often), and
 * where the turn starts follows the job's seed: jobs of one flow with
 * different seeds do not all draw template 0. */
static void test_templates_in_turn(void)
{
    setup();
    const nd_class *ssh = nd_class_table_find(&table, "ssh");
    CHECKF(ssh && ssh->n_templates == 3, "ssh: %d templates", ssh ? ssh->n_templates : -1);
    if (!ssh || ssh->n_templates != 3)
        return;
    nd_err err = {{0}};
    int firsts[3] = {0, 0, 0};
    for (uint64_t seed = 0; seed < 30; seed++) {
        nd_gen_job j;
        nd_gen_job_init(&j);
        j.seed = seed;
        CHECK_OK(nd_gen_job_parse(&j, "ssh=6", 0, &table, &err), &err);
        int item = 0, used[3] = {0, 0, 0}, first = -1;
        uint64_t in_item = 0;
        for (uint64_t k = 0; k < 6; k++) {
            nd_draw_req rq;
            CHECK_OK(nd_gen_next_req(&j, &table, &item, &in_item, k, &rq, &err), &err);
            CHECK(rq.template_index >= 0 && rq.template_index < 3);
            if (rq.template_index < 0 || rq.template_index >= 3)
                return;
            if (first < 0)
                first = rq.template_index;
            CHECK_EQ_INT(rq.template_index, (first + (int)k) % 3);
            used[rq.template_index]++;
        }
        CHECK(used[0] == 2 && used[1] == 2 && used[2] == 2);
        firsts[first]++;
    }
    CHECKF(firsts[0] >= 3 && firsts[1] >= 3 && firsts[2] >= 3,
           "first templates over 30 seeds: %d %d %d", firsts[0], firsts[1], firsts[2]);
}

ND_TEST_MAIN(ND_TEST(test_job_parse), ND_TEST(test_job_runs_and_is_deterministic),
             ND_TEST(test_templates_in_turn), ND_TEST(test_job_cancel)) /* cancel frees the table */
