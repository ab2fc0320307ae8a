/* tests/gen/fixture.h - the small class table the gen tests share: ssh and
 * zoom flows from ../shared/testdata (labels from flows.csv), 32-packet
 * images, three templates per class, built in a temporary folder. */
#ifndef ND_TESTS_GEN_FIXTURE_H
#define ND_TESTS_GEN_FIXTURE_H

#include "gen/gen.h"
#include "tests/harness.h"

static char fx_buf[4096];
static const char *td(const char *rel)
{
    snprintf(fx_buf, sizeof fx_buf, "%s/%s", nd_testdata(), rel);
    return fx_buf;
}

/* Builds the table into `table` with its templates under dir (a mkdtemp
 * template the caller owns). */
static void fixture_table(char *dir, nd_class_table *table)
{
    CHECK(mkdtemp(dir) != NULL);
    nd_class_build_opts o;
    nd_class_build_opts_init(&o);
    nd_err err = {{0}};
    nd_layout_init(&o.layout, 32, 0, 8, &err);
    o.templates = 3;
    o.min_flows = 2;
    nd_class_builder *b;
    CHECK_OK(nd_class_builder_new(&o, &b, &err), &err);
    nd_labeler *lab;
    nd_labeler_new(&lab, &err);
    CHECK_OK(nd_labeler_load_csv(lab, td("flows.csv"), &err), &err);
    nd_flow_opts fo;
    nd_flow_opts_init(&fo);
    fo.labeler = lab;
    fo.drop_unlabelled = true;
    CHECK_OK(nd_class_builder_add_capture(b, td("protocols/ssh/zeek_ssh_sshguess.pcap"), &fo, &err), &err);
    CHECK_OK(nd_class_builder_add_capture(b, td("apps/zoom/ndpi_zoom_p2p__zoom.pcapng"), &fo, &err), &err);
    char tpl[4200];
    snprintf(tpl, sizeof tpl, "%s/templates", dir);
    CHECK_OK(nd_class_builder_finish(b, dir, tpl, table, NULL, 0, &err), &err);
    nd_class_builder_free(b);
    nd_labeler_free(lab);
}

/* fixture_table once per test program (tests share the table). */
static void fixture_once(char *dir, nd_class_table *table)
{
    static int done;
    if (!done) {
        done = 1;
        fixture_table(dir, table);
    }
}

#endif
