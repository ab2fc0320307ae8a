/* cli/cmd_classes.c - `netdiff classes`: list a class table, or build one
 * from labelled captures. */
#include "cli/cli.h"
#include "gen/gen.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: netdiff classes [--classes FILE] [--long]\n"
    "       netdiff classes build CAPTURE|DIR... -o FILE [options]\n"
    "\n"
    "Without 'build': lists the classes a class table (default: the default\n"
    "model's conf/classes.json, or $ND_CLASSES) can generate, one per line, name first.\n"
    "\n"
    "'build' splits labelled captures into flows and writes a class table: per\n"
    "class the prompt (\"pixelated network data, type-N\", N in name order), the\n"
    "real flows as template images (per transport as many as its share of the\n"
    "flows, at least one with 15% of them, at evenly spaced quantiles of length;\n"
    "beside the table in DIR/templates),\n"
    "and the statistics the repair step draws from (gaps, TTLs), plus transport\n"
    "and server-port shares.\n"
    "  -o FILE            the table to write (JSON)\n"
    "  --templates-dir D  where template PNGs go (default: FILE's folder/templates)\n"
    "  --templates N      template flows per class (default 8, at most 16)\n"
    "  --min-flows N      leave out classes with fewer flows (default 5)\n"
    "  --min-template-packets N  template flows need at least N packets (default 1;\n"
    "                     a class with no such flow has no template and is drawn from noise)\n"
    "  --packets K        packet budget of the images (default 1024)\n"
    "  --timing-cols T    timing columns of the images (default 0)\n"
    "  --timing-scale S   (default 8)\n"
    "  --labels CSV       flow labels from a CSV of 5-tuples (src,sport,dst,dport,label[,file])\n"
    "  --class NAME=BPF   label flows whose first packet matches BPF (repeatable)\n"
    "  --label NAME       label every flow NAME\n"
    "  --idle SECS        idle timeout ending a flow (default 120)\n"
    "  --no-fin-rst       do not end TCP flows at FIN/RST\n"
    "  --strength S       record the img2img strength (0 < S <= 1) the model is meant\n"
    "                     to be drawn at when a request names none (default: none: 1)\n"
    "Flows without a label (from these options or pcapml comments) are ignored.\n";

static int list(int argc, char **argv)
{
    nd_default_paths dp;
    nd_default_paths_get(&dp);
    const char *path = getenv("ND_CLASSES");
    if (!path || !*path)
        path = dp.classes;
    int lng = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--classes") && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--long"))
            lng = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_text, stdout);
            return 0;
        } else
            return cli_usage_error("classes", "unknown argument '%s' (see --help)", argv[i]);
    }
    nd_class_table t;
    nd_err err = {{0}};
    nd_status st = nd_class_table_load(path, &t, &err);
    if (st)
        return cli_fail("classes", st, "%s", err.msg);
    for (int i = 0; i < t.n; i++) {
        const nd_class *c = &t.v[i];
        if (!lng) {
            printf("%s\t%s\n", c->name, c->prompt);
            continue;
        }
        int dom = c->transport[0] >= c->transport[1] ? (c->transport[0] >= c->transport[2] ? 0 : 2)
                                                     : (c->transport[1] >= c->transport[2] ? 1 : 2);
        static const char *const tn[] = {"tcp", "udp", "icmp"};
        printf("%s\t%s\t%llu flows\t%.1f pkts/flow\t%s %.0f%%", c->name, c->prompt,
               (unsigned long long)c->flows, c->mean_packets, tn[dom], 100 * c->transport[dom]);
        if (c->n_ports)
            printf("\t%s/%u %.0f%%", c->port_proto[0] == 6 ? "tcp" : "udp", c->port[0],
                   100 * c->port_share[0]);
        printf("\t%d templates\n", c->n_templates);
    }
    nd_class_table_free(&t);
    return 0;
}

static int build(int argc, char **argv)
{
    const char *out = NULL, *tdir = NULL, *labels = NULL, *label = NULL;
    const char *rules[64];
    int n_rules = 0;
    long templates = 8, min_flows = 5, min_tpl = 1, packets = 1024, tcols = 0, tscale = 8;
    double idle = 120, strength = 0;
    bool fin_rst = true;
    enum { O_TDIR = 256, O_TPL, O_MINF, O_PK, O_TC, O_TS, O_LABELS, O_CLASS, O_LABEL, O_IDLE,
           O_NOFIN, O_STR, O_MINT, O_HELP };
    static const struct option lo[] = {
        {"templates-dir", required_argument, 0, O_TDIR}, {"templates", required_argument, 0, O_TPL},
        {"min-flows", required_argument, 0, O_MINF}, {"packets", required_argument, 0, O_PK},
        {"timing-cols", required_argument, 0, O_TC}, {"timing-scale", required_argument, 0, O_TS},
        {"labels", required_argument, 0, O_LABELS}, {"class", required_argument, 0, O_CLASS},
        {"label", required_argument, 0, O_LABEL}, {"idle", required_argument, 0, O_IDLE},
        {"no-fin-rst", no_argument, 0, O_NOFIN}, {"strength", required_argument, 0, O_STR},
        {"min-template-packets", required_argument, 0, O_MINT},
        {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case O_TDIR: tdir = optarg; break;
        case O_TPL:
            if (cli_parse_long(optarg, 0, ND_CLASS_MAX_TEMPLATES, &templates))
                return cli_usage_error("classes", "--templates takes 0..%d", ND_CLASS_MAX_TEMPLATES);
            break;
        case O_MINF:
            if (cli_parse_long(optarg, 1, 1000000, &min_flows))
                return cli_usage_error("classes", "--min-flows takes a count >= 1");
            break;
        case O_MINT:
            if (cli_parse_long(optarg, 1, 65536, &min_tpl))
                return cli_usage_error("classes", "--min-template-packets takes 1..65536");
            break;
        case O_PK:
            if (cli_parse_long(optarg, 1, 65536, &packets))
                return cli_usage_error("classes", "--packets takes 1..65536");
            break;
        case O_TC:
            if (cli_parse_long(optarg, 0, ND_MAX_TIMING_COLS, &tcols))
                return cli_usage_error("classes", "--timing-cols takes 0..%d", ND_MAX_TIMING_COLS);
            break;
        case O_TS:
            if (cli_parse_long(optarg, 1, 1024, &tscale))
                return cli_usage_error("classes", "--timing-scale takes 1..1024");
            break;
        case O_LABELS: labels = optarg; break;
        case O_CLASS:
            if (n_rules == 64)
                return cli_usage_error("classes", "at most 64 --class rules");
            rules[n_rules++] = optarg;
            break;
        case O_LABEL: label = optarg; break;
        case O_IDLE: {
            char *end;
            idle = strtod(optarg, &end);
            if (*end || !(idle > 0))
                return cli_usage_error("classes", "--idle takes seconds > 0");
            break;
        }
        case O_NOFIN: fin_rst = false; break;
        case O_STR: {
            char *end;
            strength = strtod(optarg, &end);
            if (*end || !*optarg || !(strength > 0 && strength <= 1))
                return cli_usage_error("classes", "--strength takes 0 < S <= 1, got '%s'", optarg);
            break;
        }
        case 'h': case O_HELP: fputs(usage_text, stdout); return 0;
        default: return cli_usage_error("classes", "unknown option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (!out)
        return cli_usage_error("classes", "build needs -o FILE");
    if (optind >= argc)
        return cli_usage_error("classes", "build needs labelled captures");
    char table_dir[4096], tdir_buf[4200];
    snprintf(table_dir, sizeof table_dir, "%s", out);
    char *sl = strrchr(table_dir, '/');
    if (sl)
        *sl = '\0';
    else
        snprintf(table_dir, sizeof table_dir, ".");
    if (!tdir) {
        snprintf(tdir_buf, sizeof tdir_buf, "%s/templates", table_dir);
        tdir = tdir_buf;
    }
    nd_err err = {{0}};
    nd_class_build_opts bo;
    nd_class_build_opts_init(&bo);
    if (nd_layout_init(&bo.layout, (int)packets, (int)tcols, (int)tscale, &err))
        return cli_usage_error("classes", "%s", err.msg);
    bo.templates = (int)templates;
    bo.min_flows = (int)min_flows;
    bo.min_template_packets = (int)min_tpl;
    nd_labeler *lab;
    nd_status st = nd_labeler_new(&lab, &err);
    if (st)
        return cli_fail("classes", st, "%s", err.msg);
    nd_labeler_use_comments(lab, true);
    if (label && (st = nd_labeler_set_fixed(lab, label, &err)))
        goto usage_fail;
    if (labels && (st = nd_labeler_load_csv(lab, labels, &err))) {
        nd_labeler_free(lab);
        return cli_fail("classes", st, "%s", err.msg);
    }
    for (int i = 0; i < n_rules; i++) {
        char rule[1024];
        snprintf(rule, sizeof rule, "%s", rules[i]);
        char *eq = strchr(rule, '=');
        if (!eq || eq == rule || !eq[1]) {
            nd_fail(&err, ND_EINVAL, "--class takes NAME=BPF, got '%s'", rules[i]);
            goto usage_fail;
        }
        *eq = '\0';
        if ((st = nd_labeler_add_bpf(lab, rule, eq + 1, &err)))
            goto usage_fail;
    }
    nd_flow_opts fo;
    nd_flow_opts_init(&fo);
    fo.max_packets = (int)packets;
    fo.idle_timeout = idle;
    fo.end_on_fin_rst = fin_rst;
    fo.labeler = lab;
    fo.drop_unlabelled = true;
    nd_class_builder *b;
    if ((st = nd_class_builder_new(&bo, &b, &err))) {
        nd_labeler_free(lab);
        return cli_fail("classes", st, "%s", err.msg);
    }
    char **files = NULL;
    int nf = 0, capf = 0, failed = 0;
    for (int i = optind; i < argc; i++)
        if (cli_collect_paths(argv[i], &files, &nf, &capf)) {
            fprintf(stderr, "netdiff classes: %s: %s\n", argv[i], strerror(errno));
            failed++;
        }
    for (int i = 0; i < nf; i++) {
        if ((st = nd_class_builder_add_capture(b, files[i], &fo, &err))) {
            fprintf(stderr, "netdiff classes: %s\n", err.msg);
            failed++;
        }
        free(files[i]);
    }
    free(files);
    nd_class_table t;
    char skipped[8192];
    st = nd_class_builder_finish(b, table_dir, tdir, &t, skipped, sizeof skipped, &err);
    nd_class_builder_free(b);
    nd_labeler_free(lab);
    if (st)
        return cli_fail("classes", st, "%s", err.msg);
    t.strength = (float)strength;
    st = nd_class_table_save(&t, out, &err);
    if (!st) {
        fprintf(stderr, "netdiff classes: %d classes written to %s", t.n, out);
        if (skipped[0]) {
            fprintf(stderr, "; left out (too few flows):");
            for (char *s = strtok(skipped, "\n"); s; s = strtok(NULL, "\n"))
                fprintf(stderr, " [%s]", s);
        }
        fputc('\n', stderr);
    }
    nd_class_table_free(&t);
    if (st)
        return cli_fail("classes", st, "%s", err.msg);
    return failed ? 1 : 0;
usage_fail:
    nd_labeler_free(lab);
    return cli_usage_error("classes", "%s", err.msg);
}

static int run(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "build"))
        return build(argc - 1, argv + 1);
    return list(argc, argv);
}

const nd_cmd nd_cmd_classes = {"classes", "list a class table, or build one from labelled captures", run};
