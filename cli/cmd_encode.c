/* cli/cmd_encode.c - `netdiff encode`: captures to nPrint CSV or images. */
#include "cli/cli.h"
#include "codec/codec.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: netdiff encode IN.pcap [nPrint flags] [-o OUT.csv]\n"
    "       netdiff encode IN... --images DIR [flow options]\n"
    "       netdiff encode IN... --csv-dir DIR [flow options]\n"
    "\n"
    "CSV mode writes nPrint 1.2.1's CSV for every packet of one capture, the same\n"
    "bytes as `nprint -P IN FLAGS -W OUT.csv`. Flow modes split captures (files or\n"
    "directories; pcap, pcapng, .gz) into bidirectional flows and write one PNG\n"
    "(NetDiffusion's image format) or one nPrint CSV per flow, named\n"
    "LABEL_FLOWID.png / .csv (flow ids run on across the inputs).\n"
    "\n"
    "nPrint flags (default, NetDiffusion's set: -4 -6 -t -u -i -p 0):\n"
    "  -4 -6 -t -u -i   IPv4 / IPv6 / TCP / UDP / ICMP header bits\n"
    "  -p N             first N payload bytes (8N columns)\n"
    "  -R               rts column (gap to the previous row, microseconds)\n"
    "  -A               tv_sec,tv_usec columns\n"
    "  -O K             index column: 0 src_ip 1 dst_ip 2 src_prt 3 dst_prt 4 flow\n"
    "  -F V             value for vacant bits (default -1)\n"
    "  -c N             only the first N packets read\n"
    "  -f BPF           only packets matching a libpcap filter\n"
    "  -o, -W FILE      output file (default standard output)\n"
    "\n"
    "flow options:\n"
    "  --packets K      packets per flow / image height (default 1024)\n"
    "  --timing-cols T  extra image columns for the log-quantised gap (default 0)\n"
    "  --timing-scale S steps per doubling of the gap (default 8)\n"
    "  --idle SECS      idle timeout that ends a flow (default 120)\n"
    "  --no-fin-rst     do not end TCP flows at FIN/RST\n"
    "  --min-packets M  skip flows with fewer packets (default 1)\n"
    "  --label NAME     label every flow NAME (default: from the file name)\n"
    "  --labels CSV     labels from a CSV of 5-tuples (src,sport,dst,dport,label[,file])\n"
    "  --class NAME=BPF label flows whose first packet matches BPF (repeatable)\n"
    "  --labelled-only  skip flows without a label from --labels/--class/comments\n"
    "pcapng packet comments in the pcapml convention (\"ID,LABEL\") label flows.\n";

typedef struct {
    const char *out_dir;
    nd_flow_pngs *pngs;         /* PNG per flow; NULL: CSV per flow */
    nd_nprint_opts nopts;
    int min_packets;
    uint64_t written, skipped;
    const char *cur_file;
    uint64_t id_base;          /* flow ids continue across input files ...  */
    uint64_t id_end;           /* ... so names never collide                */
} flow_job;

static nd_status write_flow(void *ctx, const nd_flow *f, nd_err *err)
{
    flow_job *j = ctx;
    if (j->id_base + f->id + 1 > j->id_end)
        j->id_end = j->id_base + f->id + 1;
    if (f->n < j->min_packets) {
        j->skipped++;
        return ND_OK;
    }
    const char *label = f->label[0] ? f->label : "unlabelled";
    char path[4096];
    snprintf(path, sizeof path, "%s/%s_%06llu.%s", j->out_dir, label,
             (unsigned long long)(j->id_base + f->id), j->pngs ? "png" : "csv");
    if (j->pngs) {
        /* the file is written later, on the writer's thread (counted then) */
        int rows;
        nd_status st = nd_flow_pngs_put(j->pngs, f, path, &rows, err);
        if (!st && rows == 0)
            j->skipped++;
        return st;
    }
    nd_rows rows;
    nd_status st = nd_flow_rows(f, j->nopts.payload_bytes, &rows, err);
    if (st)
        return st;
    if (rows.n == 0) {
        nd_rows_free(&rows);
        j->skipped++;
        return ND_OK;
    }
    FILE *o = fopen(path, "w");
    if (!o) {
        st = nd_fail(err, ND_EIO, "%s: %s", path, strerror(errno));
    } else {
        st = nd_csv_write(o, &j->nopts, &rows, err);
        if (fclose(o) && !st)
            st = nd_fail(err, ND_EIO, "%s: write failed", path);
    }
    nd_rows_free(&rows);
    if (!st)
        j->written++;
    return st;
}

static int run(int argc, char **argv)
{
    nd_nprint_opts o;
    nd_nprint_opts_init(&o);
    bool any_block = false;
    const char *out = NULL, *bpf = NULL, *images = NULL, *csv_dir = NULL;
    const char *label = NULL, *labels_csv = NULL;
    const char *class_rules[64];
    int n_class = 0;
    long packets = 1024, timing_cols = 0, timing_scale = 8, min_packets = 1, v;
    double idle = 120;
    bool fin_rst = true, labelled_only = false;
    bool b4 = false, b6 = false, bt = false, bu = false, bi = false;

    enum { O_IMAGES = 256, O_CSVDIR, O_PACKETS, O_TCOLS, O_TSCALE, O_IDLE, O_NOFIN, O_MINP,
           O_LABEL, O_LABELS, O_CLASS, O_LONLY, O_HELP };
    static const struct option lopts[] = {
        {"images", required_argument, 0, O_IMAGES}, {"csv-dir", required_argument, 0, O_CSVDIR},
        {"packets", required_argument, 0, O_PACKETS}, {"timing-cols", required_argument, 0, O_TCOLS},
        {"timing-scale", required_argument, 0, O_TSCALE}, {"idle", required_argument, 0, O_IDLE},
        {"no-fin-rst", no_argument, 0, O_NOFIN}, {"min-packets", required_argument, 0, O_MINP},
        {"label", required_argument, 0, O_LABEL}, {"labels", required_argument, 0, O_LABELS},
        {"class", required_argument, 0, O_CLASS}, {"labelled-only", no_argument, 0, O_LONLY},
        {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "46tuip:RAO:F:c:f:o:W:h", lopts, NULL)) != -1) {
        switch (c) {
        case '4': b4 = any_block = true; break;
        case '6': b6 = any_block = true; break;
        case 't': bt = any_block = true; break;
        case 'u': bu = any_block = true; break;
        case 'i': bi = any_block = true; break;
        case 'p':
            if (cli_parse_long(optarg, 0, ND_MAX_PAYLOAD_BYTES, &v))
                return cli_usage_error("encode", "-p takes 0..%d, got '%s'", ND_MAX_PAYLOAD_BYTES, optarg);
            o.payload_bytes = (int)v;
            any_block = true;
            break;
        case 'R': o.rts = true; break;
        case 'A': o.abs_ts = true; break;
        case 'O':
            if (cli_parse_long(optarg, 0, 4, &v))
                return cli_usage_error("encode", "-O takes 0..4, got '%s'", optarg);
            o.index = (int)v;
            break;
        case 'F':
            if (cli_parse_long(optarg, -128, 127, &v))
                return cli_usage_error("encode", "-F takes -128..127, got '%s'", optarg);
            o.fill = (int)v;
            break;
        case 'c':
            if (cli_parse_long(optarg, 0, 2000000000L, &v))
                return cli_usage_error("encode", "-c takes a count, got '%s'", optarg);
            o.count = (uint64_t)v;
            break;
        case 'f': bpf = optarg; break;
        case 'o': case 'W': out = optarg; break;
        case O_IMAGES: images = optarg; break;
        case O_CSVDIR: csv_dir = optarg; break;
        case O_PACKETS:
            if (cli_parse_long(optarg, 1, 65536, &packets))
                return cli_usage_error("encode", "--packets takes 1..65536, got '%s'", optarg);
            break;
        case O_TCOLS:
            if (cli_parse_long(optarg, 0, ND_MAX_TIMING_COLS, &timing_cols))
                return cli_usage_error("encode", "--timing-cols takes 0..%d", ND_MAX_TIMING_COLS);
            break;
        case O_TSCALE:
            if (cli_parse_long(optarg, 1, 1024, &timing_scale))
                return cli_usage_error("encode", "--timing-scale takes 1..1024");
            break;
        case O_IDLE: {
            char *end;
            idle = strtod(optarg, &end);
            if (*end || !(idle > 0))
                return cli_usage_error("encode", "--idle takes seconds > 0, got '%s'", optarg);
            break;
        }
        case O_NOFIN: fin_rst = false; break;
        case O_MINP:
            if (cli_parse_long(optarg, 1, 1 << 30, &min_packets))
                return cli_usage_error("encode", "--min-packets takes a count >= 1");
            break;
        case O_LABEL: label = optarg; break;
        case O_LABELS: labels_csv = optarg; break;
        case O_CLASS:
            if (n_class == 64)
                return cli_usage_error("encode", "at most 64 --class rules");
            class_rules[n_class++] = optarg;
            break;
        case O_LONLY: labelled_only = true; break;
        case 'h': case O_HELP:
            fputs(usage_text, stdout);
            return 0;
        default:
            return cli_usage_error("encode", "unknown option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (any_block) {
        o.ipv4 = b4; o.ipv6 = b6; o.tcp = bt; o.udp = bu; o.icmp = bi;
    }
    int nin = argc - optind;
    if (nin < 1)
        return cli_usage_error("encode", "no input capture (see --help)");
    nd_err err = {{0}};
    nd_status st;

    if (!images && !csv_dir) {
        if (nin != 1)
            return cli_usage_error("encode", "CSV mode takes one capture; use --images or --csv-dir for several");
        const char *in = argv[optind];
        FILE *f = stdout;
        char tmp[4096];
        if (out && strcmp(out, "-")) {
            /* write to a temporary name, rename on success: no partial file */
            snprintf(tmp, sizeof tmp, "%s.tmp%ld", out, (long)getpid());
            f = fopen(tmp, "w");
            if (!f)
                return cli_fail("encode", ND_EIO, "%s: %s", out, strerror(errno));
        }
        nd_encode_stats es;
        st = nd_encode_csv(in, bpf, &o, f, &es, &err);
        if (f != stdout) {
            if (fclose(f) && !st)
                st = nd_fail(&err, ND_EIO, "%s: write failed", out);
            if (st == ND_OK || (st == ND_EFORMAT && es.rows > 0)) {
                if (rename(tmp, out))
                    return cli_fail("encode", ND_EIO, "%s: %s", out, strerror(errno));
            } else {
                remove(tmp);
            }
        } else if (fflush(stdout) && !st) {
            st = nd_fail(&err, ND_EIO, "standard output: write failed");
        }
        if (st)
            return cli_fail("encode", st, "%s", err.msg);
        return 0;
    }

    /* flow modes */
    flow_job j = {0};
    j.out_dir = images ? images : csv_dir;
    j.nopts = o;
    j.min_packets = (int)min_packets;
    nd_layout layout;
    if (nd_layout_init(&layout, (int)packets, (int)timing_cols, (int)timing_scale, &err))
        return cli_usage_error("encode", "%s", err.msg);
    if (mkdir(j.out_dir, 0777) && errno != EEXIST)
        return cli_fail("encode", ND_EIO, "%s: %s", j.out_dir, strerror(errno));
    nd_labeler *lab = NULL;
    if ((st = nd_labeler_new(&lab, &err)))
        return cli_fail("encode", st, "%s", err.msg);
    nd_labeler_use_comments(lab, true);
    if (label && (st = nd_labeler_set_fixed(lab, label, &err)))
        return cli_usage_error("encode", "--label: %s", err.msg);
    if (labels_csv && (st = nd_labeler_load_csv(lab, labels_csv, &err))) {
        nd_labeler_free(lab);
        return cli_fail("encode", st, "%s", err.msg);
    }
    for (int i = 0; i < n_class; i++) {
        char rule[1024];
        snprintf(rule, sizeof rule, "%s", class_rules[i]);
        char *eq = strchr(rule, '=');
        if (!eq || eq == rule || !eq[1]) {
            nd_labeler_free(lab);
            return cli_usage_error("encode", "--class takes NAME=BPF, got '%s'", class_rules[i]);
        }
        *eq = '\0';
        if ((st = nd_labeler_add_bpf(lab, rule, eq + 1, &err))) {
            nd_labeler_free(lab);
            return cli_usage_error("encode", "--class %s: %s", rule, err.msg);
        }
    }
    nd_flow_opts fo;
    nd_flow_opts_init(&fo);
    fo.max_packets = (int)packets;
    fo.idle_timeout = idle;
    fo.end_on_fin_rst = fin_rst;
    fo.bpf = bpf;
    fo.labeler = lab;
    fo.drop_unlabelled = labelled_only;
    if (!images && o.payload_bytes + 120 > fo.keep_bytes)
        fo.keep_bytes = o.payload_bytes + 120;

    if (images && (st = nd_flow_pngs_new(&layout, &j.pngs, &err))) {
        nd_labeler_free(lab);
        return cli_fail("encode", st, "%s", err.msg);
    }
    char **files = NULL;
    int nf = 0, capf = 0, failed = 0;
    for (int i = optind; i < argc; i++)
        if (cli_collect_paths(argv[i], &files, &nf, &capf))
            fprintf(stderr, "netdiff encode: %s: %s\n", argv[i], strerror(errno)), failed++;
    for (int i = 0; i < nf; i++) {
        j.cur_file = files[i];
        nd_flow_stats fs;
        st = nd_flows_from_capture(files[i], &fo, write_flow, &j, &fs, &err);
        j.id_base = j.id_end;
        if (j.pngs) {
            /* this input's files are all written (or one failed) before the next */
            uint64_t done;
            nd_err werr = {{0}};
            nd_status wst = nd_flow_pngs_flush(j.pngs, &done, &werr);
            j.written += done;
            if (wst && !st) {
                st = wst;
                err = werr;
            }
        }
        if (st) {
            fprintf(stderr, "netdiff encode: %s\n", err.msg);
            failed++;
        }
        free(files[i]);
    }
    free(files);
    nd_labeler_free(lab);
    nd_flow_pngs_free(j.pngs);
    fprintf(stderr, "netdiff encode: %llu flows written to %s (%llu skipped), %d of %d inputs failed\n",
            (unsigned long long)j.written, j.out_dir, (unsigned long long)j.skipped, failed, nf);
    return failed ? 1 : 0;
}

const nd_cmd nd_cmd_encode = {"encode", "captures -> nPrint CSV (nprint-identical) or per-flow images", run};
