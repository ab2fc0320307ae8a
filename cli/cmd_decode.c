/* cli/cmd_decode.c - `netdiff decode`: nPrint CSVs or images back to packets. */
#include "cli/cli.h"
#include "cli/decode_hook.h"
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
    "usage: netdiff decode (CSV | PNG | DIR)... -o OUT.pcap [options]\n"
    "\n"
    "Turns nPrint CSVs (nprint's or NetDiffusion's, optionally .gz) and flow images\n"
    "(NetDiffusion's three colours; generated images are colour-snapped first) into\n"
    "one capture, one flow after another.\n"
    "\n"
    "  -o FILE             output capture (required; written atomically)\n"
    "  --format pcap|pcapng  pcapng carries \"FLOWID,LABEL\" packet comments (pcapml)\n"
    "  --no-repair         the raw inverse: the packet bytes are exactly the row's\n"
    "                      non-vacant bits (nPrint -N's rule), nothing recomputed\n"
    "  --seed S            seed for the repair (default 0)\n"
    "  --snap nearest|netdiffusion  colour snapping rule for images (default nearest)\n"
    "  --timing-cols T     the images carry T timing columns (default 0)\n"
    "  --timing-scale S    their quantisation steps per doubling (default 8)\n"
    "  --start SECONDS     timestamp of the first packet (default 1700000000)\n"
    "  --label NAME        label for every flow (default: from each file name)\n";

typedef struct {
    nd_capwriter *w;
    uint64_t flows, packets;
    int64_t t_us;           /* running clock */
} out_state;

static int has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

static nd_status load_rows(const char *path, const nd_layout *base, nd_snap_mode snap,
                           nd_rows *rows, nd_conf **conf, nd_layout *img_layout, nd_err *err)
{
    *conf = NULL;
    if (!has_suffix(path, ".png"))
        return nd_csv_read(path, rows, err);
    uint8_t *rgb;
    int w, h;
    nd_status st = nd_png_read(path, &rgb, &w, &h, err);
    if (st)
        return st;
    nd_layout l = *base;
    if (w != l.width) {
        free(rgb);
        return nd_fail(err, ND_EFORMAT, "%s: image is %d pixels wide, the layout needs %d "
                       "(%d bit columns + %d timing columns)", path, w, l.width, l.n_bit_cols,
                       l.timing_cols);
    }
    l.packets = h;
    *img_layout = l;
    size_t n = (size_t)w * (size_t)h;
    int8_t *bits = malloc(n);
    *conf = malloc(n * sizeof **conf);
    if (!bits || !*conf) {
        free(rgb);
        free(bits);
        free(*conf);
        *conf = NULL;
        return nd_fail(err, ND_ENOMEM, "%s: out of memory", path);
    }
    nd_snap_u8(snap, rgb, n, bits, *conf);
    st = nd_rows_from_bits(&l, bits, rows, err);
    if (st)
        nd_wrap(err, st, "%s", path);
    free(rgb);
    free(bits);
    return st;
}

/* Raw inverse: each row's non-vacant bits, as they are. */
static nd_status write_raw(out_state *o, const nd_rows *rows, const char *label, nd_err *err)
{
    uint8_t buf[65536 + 2048];
    char comment[128];
    snprintf(comment, sizeof comment, "%llu,%s", (unsigned long long)o->flows, label);
    for (int i = 0; i < rows->n; i++) {
        size_t n = nd_row_to_bytes(nd_rows_at(rows, i), rows->payload_bytes, buf, sizeof buf);
        if (n == 0)
            continue;
        if (i > 0 && rows->gap_us[i] > 0)
            o->t_us += rows->gap_us[i];
        nd_status st = nd_capwriter_packet(o->w, o->t_us / 1000000,
                                           (uint32_t)(o->t_us % 1000000) * 1000, buf,
                                           (uint32_t)n, 0, comment, err);
        if (st)
            return st;
        o->packets++;
    }
    o->flows++;
    o->t_us += 1000000;  /* flows one second apart */
    return ND_OK;
}


static int run(int argc, char **argv)
{
    const char *out = NULL, *label = NULL;
    nd_capfmt fmt = ND_CAP_PCAP;
    nd_snap_mode snap = ND_SNAP_NEAREST;
    bool repair = nd_decode_repair != NULL;
    long timing_cols = 0, timing_scale = 8, v;
    unsigned long long seed = 0;
    long long start = 1700000000LL;
    enum { O_FORMAT = 256, O_NOREPAIR, O_SEED, O_SNAP, O_TCOLS, O_TSCALE, O_START, O_LABEL, O_HELP };
    static const struct option lopts[] = {
        {"format", required_argument, 0, O_FORMAT}, {"no-repair", no_argument, 0, O_NOREPAIR},
        {"seed", required_argument, 0, O_SEED}, {"snap", required_argument, 0, O_SNAP},
        {"timing-cols", required_argument, 0, O_TCOLS}, {"timing-scale", required_argument, 0, O_TSCALE},
        {"start", required_argument, 0, O_START}, {"label", required_argument, 0, O_LABEL},
        {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "o:h", lopts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case O_FORMAT:
            if (!strcmp(optarg, "pcap")) fmt = ND_CAP_PCAP;
            else if (!strcmp(optarg, "pcapng")) fmt = ND_CAP_PCAPNG;
            else return cli_usage_error("decode", "--format takes pcap or pcapng, got '%s'", optarg);
            break;
        case O_NOREPAIR: repair = false; break;
        case O_SEED: {
            char *end;
            errno = 0;
            seed = strtoull(optarg, &end, 0);
            if (errno || *end || !*optarg)
                return cli_usage_error("decode", "--seed takes an unsigned integer, got '%s'", optarg);
            break;
        }
        case O_SNAP:
            if (!strcmp(optarg, "nearest")) snap = ND_SNAP_NEAREST;
            else if (!strcmp(optarg, "netdiffusion")) snap = ND_SNAP_NETDIFFUSION;
            else return cli_usage_error("decode", "--snap takes nearest or netdiffusion");
            break;
        case O_TCOLS:
            if (cli_parse_long(optarg, 0, ND_MAX_TIMING_COLS, &timing_cols))
                return cli_usage_error("decode", "--timing-cols takes 0..%d", ND_MAX_TIMING_COLS);
            break;
        case O_TSCALE:
            if (cli_parse_long(optarg, 1, 1024, &timing_scale))
                return cli_usage_error("decode", "--timing-scale takes 1..1024");
            break;
        case O_START:
            if (cli_parse_long(optarg, 0, 4000000000L, &v))
                return cli_usage_error("decode", "--start takes seconds since 1970");
            start = v;
            break;
        case O_LABEL: label = optarg; break;
        case 'h': case O_HELP: fputs(usage_text, stdout); return 0;
        default:
            return cli_usage_error("decode", "unknown option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (!out)
        return cli_usage_error("decode", "-o OUT.pcap is required");
    if (optind >= argc)
        return cli_usage_error("decode", "no input (CSV, PNG or directory)");
    nd_layout layout;
    nd_err err = {{0}};
    if (nd_layout_init(&layout, 1024, (int)timing_cols, (int)timing_scale, &err))
        return cli_usage_error("decode", "%s", err.msg);

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", out, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return cli_fail("decode", ND_EIO, "%s: %s", out, strerror(errno));
    out_state o = {.t_us = start * 1000000LL};
    nd_status st = nd_capwriter_open_file(fmt, (repair && &nd_decode_linktype) ? nd_decode_linktype : ND_LINKTYPE_RAW, f,
                                          &o.w, &err);
    if (st) {
        fclose(f);
        remove(tmp);
        return cli_fail("decode", st, "%s: %s", out, err.msg);
    }
    char **files = NULL;
    int nf = 0, capf = 0, failed = 0;
    for (int i = optind; i < argc; i++)
        if (cli_collect_paths(argv[i], &files, &nf, &capf)) {
            fprintf(stderr, "netdiff decode: %s: %s\n", argv[i], strerror(errno));
            failed++;
        }
    for (int i = 0; i < nf; i++) {
        nd_rows rows;
        nd_conf *conf;
        nd_layout img_layout;
        st = load_rows(files[i], &layout, snap, &rows, &conf, &img_layout, &err);
        if (st) {
            fprintf(stderr, "netdiff decode: %s\n", err.msg);
            failed++;
            free(files[i]);
            files[i] = NULL;
            continue;
        }
        char lab[64];
        if (label)
            snprintf(lab, sizeof lab, "%s", label);
        else
            nd_label_from_filename(files[i], lab, sizeof lab);
        if (repair)
            st = nd_decode_repair(o.w, &rows, conf ? &img_layout : NULL, conf, lab, seed, o.flows,
                                  &o.t_us, &o.packets, &err);
        else
            st = write_raw(&o, &rows, lab, &err);
        if (repair && !st)
            o.flows++;
        nd_rows_free(&rows);
        free(conf);
        if (st) {
            fprintf(stderr, "netdiff decode: %s: %s\n", files[i], err.msg);
            failed++;
            if (st == ND_EIO)
                break;
        }
        free(files[i]);
        files[i] = NULL;
    }
    for (int i = 0; i < nf; i++)
        free(files[i]);
    free(files);
    nd_capwriter_free(o.w);
    if (fclose(f)) {
        remove(tmp);
        return cli_fail("decode", ND_EIO, "%s: write failed", out);
    }
    if (o.flows == 0) {
        remove(tmp);
        return cli_fail("decode", ND_EFORMAT, "no flow decoded; %s not written", out);
    }
    if (rename(tmp, out)) {
        remove(tmp);
        return cli_fail("decode", ND_EIO, "%s: %s", out, strerror(errno));
    }
    fprintf(stderr, "netdiff decode: %llu flows, %llu packets written to %s%s\n",
            (unsigned long long)o.flows, (unsigned long long)o.packets, out,
            repair ? "" : " (raw, not repaired)");
    return failed ? 1 : 0;
}

const nd_cmd nd_cmd_decode = {"decode", "nPrint CSVs / images -> pcap (repaired, or raw)", run};
