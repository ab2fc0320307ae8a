/* tests/eval/test_eval.c - features, comparisons, the split, memorization,
 * on hand-built flows with hand-computed answers. */
#include "eval/eval.h"
#include "tests/eval/pkt.h"
#include "tests/harness.h"

#define CHECK_NEAR(a, b)                                                                   \
    CHECKF(fabs((double)(a) - (double)(b)) < 1e-6, "%s = %.9f, want %.9f", #a, (double)(a), \
           (double)(b))

static tp_flow F1, F2;

static uint64_t count_of(const nd_eval *e, int side, const char *label, int f, uint64_t key)
{
    const uint64_t *k, *c;
    size_t n = nd_eval_hist(e, side, label, f, &k, &c);
    for (size_t i = 0; i < n; i++)
        if (k[i] == key)
            return c[i];
    return 0;
}

static nd_eval *fresh(void)
{
    nd_eval *e = NULL;
    nd_err err = {{0}};
    CHECK_OK(nd_eval_new(NULL, &e, &err), &err);
    return e;
}

static void test_features_of_a_flow(void)
{
    nd_eval *e = fresh();
    nd_err err = {{0}};
    tp_make(&F1, 5, 64, 100, "web");
    CHECK_OK(nd_eval_add_flow(e, ND_EVAL_SYNTH, &F1.f, &err), &err);
    /* SYN, SYN-ACK, ACK, PSH-ACK, PSH-ACK */
    CHECK_EQ_INT(count_of(e, ND_EVAL_SYNTH, "", ND_F_TCP_SYN, 1), 2);
    CHECK_EQ_INT(count_of(e, ND_EVAL_SYNTH, "", ND_F_TCP_SYN, 0), 3);
    CHECK_EQ_INT(count_of(e, ND_EVAL_SYNTH, "", ND_EF_TCP_FLAGS, 0x18), 2);
    CHECK_EQ_INT(count_of(e, ND_EVAL_SYNTH, "", ND_F_IPV4_TTL, 64), 5);
    CHECK_EQ_INT(count_of(e, ND_EVAL_SYNTH, "", ND_EF_TRANSPORT, 4 << 8 | 6), 5);
    CHECK_EQ_INT(count_of(e, ND_EVAL_SYNTH, "", ND_F_IPV4_TL, 40 / 32), 3);
    CHECK_EQ_INT(count_of(e, ND_EVAL_SYNTH, "", ND_F_IPV4_TL, 140 / 32), 2);
    CHECK_EQ_INT(count_of(e, ND_EVAL_SYNTH, "", ND_EF_PKT_SIZE, 140 / 32), 2);
    CHECK_EQ_INT(count_of(e, ND_EVAL_SYNTH, "", ND_F_TCP_DPRT, 443), 3);
    CHECK_EQ_INT(count_of(e, ND_EVAL_SYNTH, "", ND_F_TCP_OPT, 0), 5);
    CHECK_EQ_INT(count_of(e, ND_EVAL_SYNTH, "", ND_F_UDP_LEN, 0), 0);  /* no UDP */
    /* 1 ms gaps: 1000 us -> 1 + 4*9 + j, 1000/512 = 1.95 -> j = 3 */
    CHECK_EQ_INT(count_of(e, ND_EVAL_SYNTH, "", ND_EF_IAT, 40), 4);
    CHECK_EQ_INT(count_of(e, ND_EVAL_SYNTH, "", ND_EF_FLOW_LEN, nd_eval_bin(ND_BIN_LOG2Q, 64, 5)), 1);
    CHECK_EQ_INT(count_of(e, ND_EVAL_SYNTH, "", ND_EF_DIR_PATTERN, 5 << 8 | 0x0a), 1); /* 01010 */
    CHECK_EQ_INT(count_of(e, ND_EVAL_SYNTH, "", ND_EF_DIR_FRAC, 6), 1);  /* 3/5 */
    CHECK_EQ_INT(count_of(e, ND_EVAL_SYNTH, "web", ND_F_IPV4_TTL, 64), 5);
    CHECK_EQ_INT(nd_eval_flows(e, ND_EVAL_SYNTH), 1);
    const nd_eval_report *r;
    CHECK_OK(nd_eval_finish(e, &r, &err), &err);
    CHECK_EQ_INT(r->valid[ND_EVAL_SYNTH].packets, 5);
    CHECK_EQ_INT(r->valid[ND_EVAL_SYNTH].invalid, 0);
    nd_eval_free(e);
}

static void test_identical_sides_score_zero(void)
{
    nd_eval *e = fresh();
    nd_err err = {{0}};
    tp_make(&F1, 6, 64, 200, "web");
    CHECK_OK(nd_eval_add_flow(e, ND_EVAL_REAL, &F1.f, &err), &err);
    CHECK_OK(nd_eval_add_flow(e, ND_EVAL_SYNTH, &F1.f, &err), &err);
    const nd_eval_report *r;
    CHECK_OK(nd_eval_finish(e, &r, &err), &err);
    const nd_eval_cmp *c = &r->scopes[0].cmp[ND_CMP_SYNTH];
    CHECK(c->present);
    CHECK(c->n_mean > 20);
    CHECK_NEAR(c->mean.jsd, 0);
    CHECK_NEAR(c->mean.tvd, 0);
    CHECK_NEAR(c->mean.hel, 0);
    CHECK(!c->f[ND_F_UDP_LEN].defined);
    CHECK(r->n_scopes == 2 && !strcmp(r->scopes[1].label, "web"));
    /* one real flow: one half is empty, no floor */
    CHECK(!r->scopes[0].cmp[ND_CMP_FLOOR].present);
    nd_eval_free(e);
}

/* REAL TTLs {64 x3}, SYNTH {64, 64, 128}: the hand-computed thirds case. */
static void test_ttl_thirds(void)
{
    nd_eval *e = fresh();
    nd_err err = {{0}};
    tp_make(&F1, 3, 64, 0, "");
    tp_make(&F2, 3, 64, 0, "");
    F2.buf[2][8] = 128;  /* checksum now wrong: counted by validity */
    CHECK_OK(nd_eval_add_flow(e, ND_EVAL_REAL, &F1.f, &err), &err);
    CHECK_OK(nd_eval_add_flow(e, ND_EVAL_SYNTH, &F2.f, &err), &err);
    const nd_eval_report *r;
    CHECK_OK(nd_eval_finish(e, &r, &err), &err);
    CHECK_EQ_INT(r->n_scopes, 1);
    const nd_eval_fcmp *t = &r->scopes[0].cmp[ND_CMP_SYNTH].f[ND_F_IPV4_TTL];
    CHECK(t->defined && t->n_a == 3 && t->n_b == 3);
    CHECK_NEAR(t->m.jsd, 0.1908745);
    CHECK_NEAR(t->m.tvd, 1.0 / 3);
    CHECK_NEAR(t->m.hel, sqrt(1 - sqrt(2.0 / 3)));
    CHECK_EQ_INT(r->valid[ND_EVAL_SYNTH].invalid, 1);
    CHECK_EQ_INT(r->valid[ND_EVAL_SYNTH].bad[ND_V_IP_CKSUM], 1);
    CHECK_EQ_INT(r->valid[ND_EVAL_REAL].invalid, 0);
    nd_eval_free(e);
}

/* A flow present on one side only scores 1 on that feature. */
static void test_one_sided_feature(void)
{
    nd_eval *e = fresh();
    nd_err err = {{0}};
    tp_make(&F1, 3, 64, 0, "");
    CHECK_OK(nd_eval_add_flow(e, ND_EVAL_REAL, &F1.f, &err), &err);
    CHECK_OK(nd_eval_add_flow(e, ND_EVAL_SYNTH, &F1.f, &err), &err);
    nd_eval_add_flow(e, ND_EVAL_SYNTH, &F1.f, &err);
    const nd_eval_report *r;
    CHECK_OK(nd_eval_finish(e, &r, &err), &err);
    /* features of 3-packet flows: identical shape, only counts double */
    CHECK_NEAR(r->scopes[0].cmp[ND_CMP_SYNTH].mean.jsd, 0);
    nd_eval_free(e);
}

static void test_split_balanced_and_seeded(void)
{
    uint64_t halves[2][40];
    for (int run = 0; run < 2; run++) {
        nd_eval_opts o;
        nd_eval_opts_init(&o);
        o.seed = 7;
        nd_eval *e = NULL;
        nd_err err = {{0}};
        CHECK_OK(nd_eval_new(&o, &e, &err), &err);
        for (int i = 0; i < 40; i++) {
            tp_make(&F1, 3, (uint8_t)(10 + i), 0, i < 21 ? "a" : "b");
            CHECK_OK(nd_eval_add_flow(e, ND_EVAL_REAL, &F1.f, &err), &err);
        }
        /* ttl 10+i tells which half flow i went to */
        int in_a = 0, a_a = 0;
        for (int i = 0; i < 40; i++) {
            halves[run][i] = count_of(e, ND_EVAL_SIDES + 0, "", ND_F_IPV4_TTL, (uint64_t)(10 + i));
            in_a += halves[run][i] != 0;
            if (i < 21)
                a_a += halves[run][i] != 0;
        }
        CHECK(in_a == 20 || in_a == 19 || in_a == 21);
        CHECK(a_a == 10 || a_a == 11);
        const nd_eval_report *r;
        CHECK_OK(nd_eval_finish(e, &r, &err), &err);
        CHECK(r->scopes[0].cmp[ND_CMP_FLOOR].present);
        CHECK(r->scopes[0].cmp[ND_CMP_FLOOR].f[ND_F_IPV4_TTL].m.jsd > 0.99);  /* disjoint TTLs */
        CHECK_NEAR(r->scopes[0].cmp[ND_CMP_FLOOR].f[ND_F_TCP_SYN].m.jsd, 0);
        nd_eval_free(e);
    }
    CHECK(!memcmp(halves[0], halves[1], sizeof halves[0]));
}

static void test_flow_distance(void)
{
    tp_make(&F1, 4, 64, 10, "");
    tp_make(&F2, 4, 64, 10, "");
    CHECK_NEAR(nd_eval_flow_distance(&F1.f, &F2.f, 16), 0);
    /* different ports, seq and checksums: not compared */
    F2.buf[0][20] ^= 0xff;
    F2.buf[0][24] ^= 0xff;
    F2.buf[0][10] ^= 0xff;
    CHECK_NEAR(nd_eval_flow_distance(&F1.f, &F2.f, 16), 0);
    /* TTL 64 -> 128 in one packet: 2 bits of 16 x 880 compared cells */
    F2.buf[1][8] = 128;
    CHECK_NEAR(nd_eval_flow_distance(&F1.f, &F2.f, 16), 2.0 / (16 * 880));
    /* a shorter flow: the missing packet's present cells all differ */
    tp_make(&F2, 3, 64, 10, "");
    double d = nd_eval_flow_distance(&F1.f, &F2.f, 16);
    /* IPv4 (480 - 64 addr - 16 id - 16 cksum = 384 cells but only 160 of
     * header present, options vacant) + TCP 20 bytes (160 - 32 ports - 64
     * seq/ack - 16 cksum = 48) + 10 payload bytes are not columns */
    CHECK_NEAR(d, (160.0 - 64 - 16 - 16 + 48) / (16 * 880));
}

static void test_memorization_copies(void)
{
    nd_eval *e = fresh();
    nd_err err = {{0}};
    for (int i = 0; i < 20; i++) {
        tp_make(&F1, 3 + i % 5, (uint8_t)(30 + 3 * i), (uint32_t)i, "");
        CHECK_OK(nd_eval_add_flow(e, ND_EVAL_REAL, &F1.f, &err), &err);
        CHECK_OK(nd_eval_add_flow(e, ND_EVAL_SYNTH, &F1.f, &err), &err);  /* copies of all */
    }
    const nd_eval_report *r;
    CHECK_OK(nd_eval_finish(e, &r, &err), &err);
    const nd_eval_memo *m = &r->memo;
    CHECK(m->present && m->train_is_split);
    CHECK_EQ_INT(m->n_train, 10);
    CHECK_EQ_INT(m->synth.n, 20);
    CHECK_EQ_INT(m->heldout.n, 10);
    CHECK_EQ_INT(m->synth.exact, 10);  /* the half-A copies */
    CHECK_EQ_INT(m->heldout.exact, 0);
    CHECK(m->heldout.min > 0);
    /* the 10 exact copies, plus copies of held-out flows at the held-out p5 */
    CHECK(m->heldout_below_p5 >= 0.1 && m->heldout_below_p5 < 0.5);
    CHECK_NEAR(m->below_heldout_p5, (10 + 10 * m->heldout_below_p5) / 20);
    nd_eval_free(e);

    /* with an explicit TRAIN set: held-out = all of REAL */
    e = fresh();
    tp_make(&F1, 4, 64, 0, "");
    tp_make(&F2, 4, 100, 0, "");
    CHECK_OK(nd_eval_add_flow(e, ND_EVAL_TRAIN, &F1.f, &err), &err);
    CHECK_OK(nd_eval_add_flow(e, ND_EVAL_REAL, &F2.f, &err), &err);
    CHECK_OK(nd_eval_add_flow(e, ND_EVAL_SYNTH, &F1.f, &err), &err);
    CHECK_OK(nd_eval_finish(e, &r, &err), &err);
    CHECK(r->memo.present && !r->memo.train_is_split);
    CHECK_EQ_INT(r->memo.synth.exact, 1);
    CHECK_EQ_INT(r->memo.heldout.n, 1);
    /* 64 = 01000000, 100 = 01100100: 2 bits in each of 4 packets */
    CHECK_NEAR(r->memo.heldout.min, 8.0 / (16 * 880));
    nd_eval_free(e);
}

static void test_random_side_per_class(void)
{
    nd_eval *e = fresh();
    nd_err err = {{0}};
    tp_make(&F1, 4, 64, 0, "a");
    CHECK_OK(nd_eval_add_flow(e, ND_EVAL_REAL, &F1.f, &err), &err);
    CHECK_OK(nd_eval_add_flow(e, ND_EVAL_SYNTH, &F1.f, &err), &err);
    tp_make(&F2, 4, 200, 0, "");
    CHECK_OK(nd_eval_add_flow(e, ND_EVAL_RANDOM, &F2.f, &err), &err);
    const nd_eval_report *r;
    CHECK_OK(nd_eval_finish(e, &r, &err), &err);
    CHECK_EQ_INT(r->n_scopes, 2);
    for (int s = 0; s < 2; s++) {
        const nd_eval_cmp *c = &r->scopes[s].cmp[ND_CMP_RANDOM];
        CHECK(c->present);
        CHECK_NEAR(c->f[ND_F_IPV4_TTL].m.jsd, 1);
        CHECK(c->mean.jsd > 0 && c->mean.jsd < 1);
    }
    nd_eval_free(e);
}

ND_TEST_MAIN(ND_TEST(test_features_of_a_flow), ND_TEST(test_identical_sides_score_zero),
             ND_TEST(test_ttl_thirds), ND_TEST(test_one_sided_feature),
             ND_TEST(test_split_balanced_and_seeded), ND_TEST(test_flow_distance),
             ND_TEST(test_memorization_copies), ND_TEST(test_random_side_per_class))
