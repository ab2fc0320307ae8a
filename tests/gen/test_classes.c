/* tests/gen/test_classes.c - class tables built from real labelled captures. */
#include "gen/gen.h"
#include "tests/harness.h"

#include <unistd.h>

static char buf[4096];
static const char *td(const char *rel)
{
    snprintf(buf, sizeof buf, "%s/%s", nd_testdata(), rel);
    return buf;
}

static const char *caps[] = {"apps/netflix/ndpi_netflix__netflix.pcap",
                             "apps/zoom/ndpi_zoom_p2p__zoom.pcapng",
                             "protocols/dns/zeek_dns-edns-ecs.pcap",
                             "protocols/ssh/zeek_ssh_sshguess.pcap"};

/* Removes a test's mkdtemp folder and what is in it. */
static void remove_dir(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* Flow options labelling from flows.csv and dropping unlabelled flows;
 * the caller frees the labeler. */
static nd_labeler *csv_labels(nd_flow_opts *fo, nd_err *err)
{
    nd_labeler *lab = NULL;
    nd_flow_opts_init(fo);
    if (nd_labeler_new(&lab, err))
        return NULL;
    if (nd_labeler_load_csv(lab, td("flows.csv"), err)) {
        nd_labeler_free(lab);
        return NULL;
    }
    fo->labeler = lab;
    fo->drop_unlabelled = true;
    return lab;
}

static nd_status build_k(const char *dir, int min_template_packets, int templates,
                         nd_class_table *t, nd_err *err)
{
    nd_class_build_opts o;
    nd_class_build_opts_init(&o);
    nd_layout_init(&o.layout, 64, 8, 8, err);
    o.templates = templates;
    o.min_flows = 3;
    if (min_template_packets)
        o.min_template_packets = min_template_packets;
    nd_class_builder *b;
    nd_status st = nd_class_builder_new(&o, &b, err);
    if (st)
        return st;
    nd_flow_opts fo;
    nd_labeler *lab = csv_labels(&fo, err);
    if (!lab)
        st = ND_EINVAL;
    for (size_t i = 0; i < ND_ARRAY_LEN(caps) && !st; i++)
        st = nd_class_builder_add_capture(b, td(caps[i]), &fo, err);
    char tpl[4200];
    snprintf(tpl, sizeof tpl, "%s/templates", dir);
    char skipped[1024];
    if (!st)
        st = nd_class_builder_finish(b, dir, tpl, t, skipped, sizeof skipped, err);
    nd_class_builder_free(b);
    nd_labeler_free(lab);
    return st;
}

static nd_status build_min(const char *dir, int min_template_packets, nd_class_table *t,
                           nd_err *err)
{
    return build_k(dir, min_template_packets, 2, t, err);
}

static nd_status build(const char *dir, nd_class_table *t, nd_err *err)
{
    return build_min(dir, 0, t, err);
}

/* The IP protocol of template k's first packet and its packets (read back
 * from its PNG). */
static int template_rows(const nd_class_table *t, const nd_class *c, int k, int *packets)
{
    char p[4096];
    nd_class_template_path(t, c, k, p, sizeof p);
    uint8_t *rgb = NULL;
    int w, h;
    nd_err err = {{0}};
    if (nd_png_read(p, &rgb, &w, &h, &err))
        return -1;
    int8_t *bits = malloc((size_t)w * (size_t)h);
    for (size_t i = 0; bits && i < (size_t)w * (size_t)h; i++) {
        const uint8_t *px = rgb + 3 * i;
        bits[i] = px[0] == 255 && px[1] == 0 ? 1 : px[1] == 255 && px[0] == 0 ? 0 : -1;
    }
    nd_rows r = {0};
    uint64_t v = 0;
    int proto = -1;
    if (bits && !nd_rows_from_bits(&t->layout, bits, &r, &err) && r.n > 0 &&
        (nd_row_get(r.bits, ND_F_IPV4_PROTO, &v) || nd_row_get(r.bits, ND_F_IPV6_NH, &v)))
        proto = (int)v;
    if (packets)
        *packets = r.n;
    nd_rows_free(&r);
    free(bits);
    free(rgb);
    return proto;
}

static int template_proto(const nd_class_table *t, const nd_class *c, int k)
{
    return template_rows(t, c, k, NULL);
}

/* Every flow of the captures: label, transport, packets (at most 64). */
typedef struct { char label[64]; int proto, n; } flow_len;
typedef struct { flow_len v[4096]; int n; } flow_lens;

static nd_status collect(void *ctx, const nd_flow *f, nd_err *err)
{
    (void)err;
    flow_lens *fl = ctx;
    if (f->label[0] && f->n > 0 && fl->n < (int)ND_ARRAY_LEN(fl->v)) {
        flow_len *x = &fl->v[fl->n++];
        snprintf(x->label, sizeof x->label, "%s", f->label);
        x->proto = f->proto;
        x->n = f->n;
    }
    return ND_OK;
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* Templates follow the class's lengths: per transport, the flows at evenly
 * spaced quantiles of length (rank floor((i + 1/2) m / s) of m flows of 2+
 * packets for s slots), TCP first, shortest first; slots by transport share
 * (netflix: 29 TCP and 7 UDP flows over 4 slots: 3 TCP, 1 UDP). The lengths
 * are counted here from the captures, apart from the builder. */
static void test_templates_follow_lengths(void)
{
    char dir[] = "/tmp/ndtest_classes_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    nd_class_table t;
    nd_err err = {{0}};
    CHECK_OK(build_k(dir, 2, 4, &t, &err), &err);
    static flow_lens fl;
    fl.n = 0;
    nd_flow_opts fo;
    nd_labeler *lab = csv_labels(&fo, &err);
    CHECK_OK(lab ? ND_OK : ND_EINVAL, &err);
    fo.max_packets = 64;
    for (size_t i = 0; i < ND_ARRAY_LEN(caps); i++)
        CHECK_OK(nd_flows_from_capture(td(caps[i]), &fo, collect, &fl, NULL, &err), &err);
    nd_labeler_free(lab);
    struct { const char *cls; int tcp, udp; } want[] = {
        {"netflix", 3, 1}, {"ssh", 4, 0}, {"dns", 0, 4},
    };
    for (size_t w = 0; w < ND_ARRAY_LEN(want); w++) {
        const nd_class *c = nd_class_table_find(&t, want[w].cls);
        CHECK(c != NULL);
        if (!c)
            continue;
        CHECK_EQ_INT(c->n_templates, want[w].tcp + want[w].udp);
        int k = 0;
        for (int proto = 6; proto <= 17; proto += 11) {
            int s = proto == 6 ? want[w].tcp : want[w].udp, lens[4096], m = 0;
            for (int i = 0; i < fl.n; i++)
                if (!strcmp(fl.v[i].label, want[w].cls) && fl.v[i].proto == proto && fl.v[i].n >= 2)
                    lens[m++] = fl.v[i].n;
            qsort(lens, (size_t)m, sizeof *lens, cmp_int);
            for (int i = 0; i < s && k < c->n_templates; i++, k++) {
                int n = -1, p = template_rows(&t, c, k, &n);
                int expect = lens[((2 * i + 1) * m) / (2 * s)];
                CHECKF(p == proto && n == expect, "%s template %d: proto %d, %d packets; want %d, %d "
                       "(of %d flows)", want[w].cls, k, p, n, proto, expect, m);
            }
        }
    }
    nd_class_table_free(&t);
    remove_dir(dir);
}

/* Every transport carrying 15% or more of a class's flows has a template:
 * netflix's 36 flows are 29 TCP and 7 UDP (19%; two-packet DNS, so
 * templates of 2 packets or more); by share alone UDP would get 0.39 of 2
 * slots and lose to TCP's 1.61. */
static void test_templates_cover_transports(void)
{
    char dir[] = "/tmp/ndtest_classes_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    nd_class_table t;
    nd_err err = {{0}};
    CHECK_OK(build_min(dir, 2, &t, &err), &err);
    const nd_class *nf = nd_class_table_find(&t, "netflix");
    CHECK(nf != NULL);
    if (nf) {
        CHECK(nf->transport[1] >= 0.15);
        CHECK_EQ_INT(nf->n_templates, 2);
        int p0 = template_proto(&t, nf, 0), p1 = template_proto(&t, nf, 1);
        CHECKF(p0 == 6 && p1 == 17, "netflix templates: protocols %d and %d, want 6 then 17", p0, p1);
    }
    nd_class_table_free(&t);
    remove_dir(dir);
}

static void test_build_save_load(void)
{
    char dir[] = "/tmp/ndtest_classes_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    nd_class_table t;
    nd_err err = {{0}};
    CHECK_OK(build(dir, &t, &err), &err);
    const nd_class *nf = nd_class_table_find(&t, "netflix");
    const nd_class *zoom = nd_class_table_find(&t, "zoom");
    const nd_class *dns = nd_class_table_find(&t, "dns");
    const nd_class *ssh = nd_class_table_find(&t, "ssh");
    CHECK(nf && zoom && dns && ssh);
    if (nf && zoom && dns && ssh) {
        CHECK_EQ_INT(nf->flows, 36);                 /* flows.csv's count */
        CHECK(nf->transport[0] > 0.75);              /* netflix: TCP      */
        CHECK(zoom->transport[1] > 0.95);            /* zoom p2p: UDP     */
        CHECK(dns->port[0] == 53 && dns->port_proto[0] == 17);
        CHECK(ssh->port[0] == 22 && ssh->port_proto[0] == 6 && ssh->port_share[0] == 1.0);
        CHECK(!strcmp(nf->prompt, "pixelated network data, type-1")); /* name order: dns, netflix */
        CHECK(nf->n_templates == 2 && ssh->n_templates == 2);
        CHECK(nf->stats.packets > 0);
        /* templates are images of the table's layout */
        char p[4096];
        nd_class_template_path(&t, ssh, 0, p, sizeof p);
        uint8_t *rgb;
        int w, h;
        CHECK_OK(nd_png_read(p, &rgb, &w, &h, &err), &err);
        CHECK_EQ_INT(w, 1088 + 8);
        CHECK_EQ_INT(h, 64);
        free(rgb);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/classes.json", dir);
    CHECK_OK(nd_class_table_save(&t, path, &err), &err);
    nd_class_table u;
    CHECK_OK(nd_class_table_load(path, &u, &err), &err);
    CHECK_EQ_INT(u.n, t.n);
    CHECK_EQ_INT(u.layout.width, t.layout.width);
    for (int i = 0; i < t.n && i < u.n; i++) {
        const nd_class *a = &t.v[i], *b = &u.v[i];
        CHECK(!strcmp(a->name, b->name) && !strcmp(a->prompt, b->prompt));
        CHECK(a->flows == b->flows && a->packets == b->packets && a->n_ports == b->n_ports);
        CHECK(memcmp(&a->stats, &b->stats, sizeof a->stats) == 0);
        CHECK(fabs(a->transport[0] - b->transport[0]) < 1e-9);
        CHECK(a->n_templates == b->n_templates && !strcmp(a->templates[0], b->templates[0]));
    }
    nd_class_table_free(&u);
    nd_class_table_free(&t);
    /* the same inputs give the same file */
    nd_class_table t2;
    char path2[4200];
    snprintf(path2, sizeof path2, "%s/classes2.json", dir);
    CHECK_OK(build(dir, &t2, &err), &err);
    CHECK_OK(nd_class_table_save(&t2, path2, &err), &err);
    nd_class_table_free(&t2);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", path, path2);
    CHECK(system(cmd) == 0);
    remove_dir(dir);
}

static void test_strict_parsing(void)
{
    const char *good_class =
        "{\"name\":\"x\",\"prompt\":\"p\",\"flows\":1,\"packets\":2,\"mean_packets\":2,"
        "\"transport\":{\"tcp\":1,\"udp\":0,\"icmp\":0},\"ipv6_share\":0,\"ports\":[],"
        "\"templates\":[],\"stats\":{\"flows\":1,\"packets\":2,"
        "\"gap_same_direction\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"
        "\"gap_direction_change\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"
        "\"ttl_initiator\":{\"64\":2},\"ttl_responder\":{}}}";
    const char *head = "{\"format\":\"netdiffd-classes/1\",\"layout\":{\"packets\":16,\"columns\":"
                       "\"netdiffusion\",\"timing_cols\":0,\"timing_scale\":8},\"classes\":[";
    char j[4096];
    nd_class_table t;
    nd_err err = {{0}};
    snprintf(j, sizeof j, "%s%s]}", head, good_class);
    CHECK_OK(nd_class_table_parse(j, strlen(j), ".", &t, &err), &err);
    CHECK_EQ_INT(t.n, 1);
    if (t.n == 1)
        CHECK_EQ_INT(t.v[0].stats.ttl_hist[0][64], 2);
    CHECK(t.strength == 0); /* not stated */
    nd_class_table_free(&t);
    /* the model's img2img strength: optional, 0 < S <= 1, saved back as read */
    const char *shead = "{\"format\":\"netdiffd-classes/1\",\"strength\":0.5,\"layout\":{"
                        "\"packets\":16,\"columns\":\"netdiffusion\",\"timing_cols\":0,"
                        "\"timing_scale\":8},\"classes\":[";
    snprintf(j, sizeof j, "%s%s]}", shead, good_class);
    CHECK_OK(nd_class_table_parse(j, strlen(j), ".", &t, &err), &err);
    CHECK(t.strength == 0.5f);
    char tmpd[] = "/tmp/nd_cls_XXXXXX", sp[200];
    if (t.n && mkdtemp(tmpd)) {
        snprintf(sp, sizeof sp, "%s/c.json", tmpd);
        nd_class_table u;
        CHECK_OK(nd_class_table_save(&t, sp, &err), &err);
        CHECK_OK(nd_class_table_load(sp, &u, &err), &err);
        CHECK(u.strength == 0.5f);
        nd_class_table_free(&u);
        unlink(sp);
        rmdir(tmpd);
    }
    nd_class_table_free(&t);
    const char *sbad[] = {"0", "1.5", "-1", "\"x\""};
    for (size_t i = 0; i < ND_ARRAY_LEN(sbad); i++) {
        char h[512];
        snprintf(h, sizeof h, "{\"format\":\"netdiffd-classes/1\",\"strength\":%s,%s", sbad[i],
                 head + strlen("{\"format\":\"netdiffd-classes/1\","));
        snprintf(j, sizeof j, "%s%s]}", h, good_class);
        nd_status st = nd_class_table_parse(j, strlen(j), ".", &t, &err);
        CHECKF(st == ND_EFORMAT && strstr(err.msg, "strength"), "strength %s: %d '%s'", sbad[i],
               (int)st, err.msg);
    }
    struct { const char *json; const char *msg; } bad[] = {
        {"{\"format\":\"other\"}", "not netdiffd-classes/1"},
        {"[1,2]", "not an object"},
        {"{\"format\":\"netdiffd-classes/1\",\"layout\":{},\"classes\":[]}", "layout.packets"},
        {"{\"format\":\"netdiffd-classes/1\",\"extra\":1}", "unknown key 'extra'"},
        {"{\"format\":\"netdiffd-classes/1\",\"format\":\"x\"}", "duplicate"},
        {"[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]", "nested deeper"},
        {"{\"format\":", "line 1"},
    };
    for (size_t i = 0; i < ND_ARRAY_LEN(bad); i++) {
        nd_status st = nd_class_table_parse(bad[i].json, strlen(bad[i].json), ".", &t, &err);
        CHECKF(st == ND_EFORMAT && strstr(err.msg, bad[i].msg), "case %zu: %d '%s'", i, (int)st,
               err.msg);
    }
    /* one class field at a time made wrong */
    struct { const char *from, *to, *msg; } edits[] = {
        {"\"flows\":1,", "\"flows\":-1,", "classes[0].flows"},
        {"\"tcp\":1", "\"tcp\":1.5", "transport.tcp"},
        {"\"name\":\"x\"", "\"name\":\"a b\"", "name must be"},
        {"\"ports\":[]", "\"ports\":[{\"port\":70000,\"proto\":\"tcp\",\"share\":1}]", "port"},
        {"\"64\":2", "\"300\":2", "keys must be 0..255"},
        {"\"ipv6_share\":0,", "\"ipv6_share\":0,\"colour\":1,", "unknown key 'colour'"},
    };
    for (size_t i = 0; i < ND_ARRAY_LEN(edits); i++) {
        char cls[2048];
        const char *at = strstr(good_class, edits[i].from);
        snprintf(cls, sizeof cls, "%.*s%s%s", (int)(at - good_class), good_class, edits[i].to,
                 at + strlen(edits[i].from));
        snprintf(j, sizeof j, "%s%s]}", head, cls);
        nd_status st = nd_class_table_parse(j, strlen(j), ".", &t, &err);
        CHECKF(st == ND_EFORMAT && strstr(err.msg, edits[i].msg), "edit %zu: %d '%s'", i, (int)st,
               err.msg);
    }
    snprintf(j, sizeof j, "%s%s,%s]}", head, good_class, good_class);
    CHECK(nd_class_table_parse(j, strlen(j), ".", &t, &err) == ND_EFORMAT &&
          strstr(err.msg, "appears twice"));
}

/* finish reads the captures again for the templates' packets: a capture
 * that changed in between is an error, not a wrong template. */
static void test_capture_changed(void)
{
    char dir[] = "/tmp/ndtest_classes_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char cap[4200], cmd[9000], tpl[4200];
    snprintf(cap, sizeof cap, "%s/ndpi_netflix__netflix.pcap", dir);
    snprintf(cmd, sizeof cmd, "cp %s %s", td("apps/netflix/ndpi_netflix__netflix.pcap"), cap);
    CHECK(system(cmd) == 0);
    nd_err err = {{0}};
    nd_class_build_opts o;
    nd_class_build_opts_init(&o);
    nd_layout_init(&o.layout, 64, 8, 8, &err);
    nd_class_builder *b;
    CHECK_OK(nd_class_builder_new(&o, &b, &err), &err);
    nd_flow_opts fo;
    nd_labeler *lab = csv_labels(&fo, &err);
    CHECK_OK(lab ? ND_OK : ND_EINVAL, &err);
    CHECK_OK(nd_class_builder_add_capture(b, cap, &fo, &err), &err);
    snprintf(cmd, sizeof cmd, "head -c 100000 %s > %s", td("apps/netflix/ndpi_netflix__netflix.pcap"), cap);
    CHECK(system(cmd) == 0);
    snprintf(tpl, sizeof tpl, "%s/templates", dir);
    nd_class_table t;
    nd_status st = nd_class_builder_finish(b, dir, tpl, &t, NULL, 0, &err);
    CHECKF(st != ND_OK && strstr(err.msg, "changed"), "finish on a changed capture: %d '%s'", (int)st,
           err.msg);
    if (!st)
        nd_class_table_free(&t);
    nd_class_builder_free(b);
    nd_labeler_free(lab);
    remove_dir(dir);
}

ND_TEST_MAIN(ND_TEST(test_capture_changed), ND_TEST(test_build_save_load), ND_TEST(test_strict_parsing), ND_TEST(test_templates_cover_transports),
             ND_TEST(test_templates_follow_lengths))
