/* cli/cmd_eval.c - `netdiff eval REAL SYNTH`: how close synthetic flows are to
 * real ones. All the work is eval/'s; this file parses and prints. */
#include "cli/cli.h"
#include "cli/eval_random.h"
#include "eval/eval.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: netdiff eval REAL SYNTH [options]\n"
    "       netdiff eval --distances < PAIRS\n"
    "\n"
    "Compares the flows of REAL and SYNTH (capture files - pcap, pcapng, .gz - or\n"
    "directories of them): per-field distributions (JSD base 2, TVD, Hellinger),\n"
    "per class when both sides are labelled, against two baselines (REAL split in\n"
    "halves: the floor; random bits through the repair); packet validity;\n"
    "memorization (distance to the nearest training flow). Prints a table.\n"
    "\n"
    "options:\n"
    "  --json FILE       also write the report as JSON ('-': standard output, no table)\n"
    "  --html FILE       also write an HTML page with a histogram per feature\n"
    "  --train PATH      the generator's training captures (default: REAL's half A)\n"
    "  --labels CSV      labels of captures' flows (src,sport,dst,dport,label[,file]);\n"
    "                    pcapng pcapml comments and file names label the rest\n"
    "  --no-classes      no per-class tables\n"
    "  --random N        flows in the random baseline (default: as many as SYNTH; 0: none)\n"
    "  --seed N          seed of the REAL split and the random baseline (default 1)\n"
    "  --mem-packets N   packets per flow the memorization distance compares (16)\n"
    "  --packets K       packets per flow read from captures (1024)\n"
    "  --idle SECS       idle timeout that ends a flow (120)\n"
    "  --no-fin-rst      flows do not end at FIN/RST (else later packets of the same\n"
    "                    5-tuple join no flow; validity still checks every packet)\n"
    "  --distances       read lines \"p1 p2 ...;q1 q2 ...\" (two histograms) and print\n"
    "                    \"jsd tvd hel\" per line (scripts and tests)\n";

/* --distances: a checkable window onto the metric code. */
static int distances(void)
{
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;
    double *p = NULL, *q = NULL;
    size_t pc = 0;
    int rc = 0;
    while (getline(&line, &cap, stdin) > 0) {
        lineno++;
        char *semi = strchr(line, ';');
        if (!semi) {
            rc = cli_usage_error("eval", "standard input line %d: no ';'", lineno);
            break;
        }
        *semi = 0;
        size_t np = 0, nq = 0;
        for (int side = 0; side < 2 && !rc; side++) {
            char *s = side ? semi + 1 : line, *end;
            size_t *n = side ? &nq : &np;
            for (;;) {
                while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
                    s++;
                if (!*s)
                    break;
                double v = strtod(s, &end);
                if (end == s || !(v >= 0)) {
                    rc = cli_usage_error("eval", "standard input line %d: bad count near '%.20s'",
                                         lineno, s);
                    break;
                }
                if (*n >= pc) {
                    pc = pc ? 2 * pc : 64;
                    p = realloc(p, pc * sizeof *p);
                    q = realloc(q, pc * sizeof *q);
                    if (!p || !q) {
                        rc = cli_fail("eval", ND_ENOMEM, "out of memory");
                        break;
                    }
                }
                (side ? q : p)[(*n)++] = v;
                s = end;
            }
        }
        if (rc)
            break;
        if (np != nq) {
            rc = cli_usage_error("eval", "standard input line %d: %zu bins against %zu", lineno,
                                 np, nq);
            break;
        }
        nd_eval_metric m = nd_eval_distances(p, q, np);
        printf("%.12f %.12f %.12f\n", m.jsd, m.tvd, m.hel);
    }
    free(line);
    free(p);
    free(q);
    return rc;
}

static int write_to(const char *path, nd_status (*fn)(const nd_eval *, FILE *, nd_err *),
                    const nd_eval *e)
{
    nd_err err = {{0}};
    FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
    if (!f)
        return cli_fail("eval", ND_EIO, "%s: cannot create", path);
    nd_status st = fn(e, f, &err);
    if (f != stdout && fclose(f) != 0 && st == ND_OK)
        st = nd_fail(&err, ND_EIO, "cannot write");
    if (st)
        return cli_fail("eval", st, "%s: %s", path, err.msg);
    return 0;
}

static int run(int argc, char **argv)
{
    enum { O_JSON = 256, O_HTML, O_TRAIN, O_LABELS, O_NOCLS, O_RANDOM, O_SEED, O_MEM, O_PACKETS,
           O_IDLE, O_DIST, O_NOFIN, O_HELP };
    static const struct option lo[] = {
        {"json", required_argument, 0, O_JSON},      {"html", required_argument, 0, O_HTML},
        {"train", required_argument, 0, O_TRAIN},    {"labels", required_argument, 0, O_LABELS},
        {"no-classes", no_argument, 0, O_NOCLS},     {"random", required_argument, 0, O_RANDOM},
        {"seed", required_argument, 0, O_SEED},      {"mem-packets", required_argument, 0, O_MEM},
        {"packets", required_argument, 0, O_PACKETS}, {"idle", required_argument, 0, O_IDLE},
        {"distances", no_argument, 0, O_DIST},       {"help", no_argument, 0, O_HELP},
        {"no-fin-rst", no_argument, 0, O_NOFIN},
        {0, 0, 0, 0}};
    nd_eval_opts o;
    nd_eval_opts_init(&o);
    const char *json = NULL, *html = NULL, *train = NULL;
    long n_random = -1, v;
    int dist = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case O_JSON: json = optarg; break;
        case O_HTML: html = optarg; break;
        case O_TRAIN: train = optarg; break;
        case O_LABELS: o.labels_csv = optarg; break;
        case O_NOCLS: o.per_class = false; break;
        case O_DIST: dist = 1; break;
        case O_NOFIN: o.no_fin_rst = true; break;
        case O_RANDOM:
            if (cli_parse_long(optarg, 0, 1000000, &n_random))
                return cli_usage_error("eval", "--random: want 0..1000000, got '%s'", optarg);
            break;
        case O_SEED:
            if (cli_parse_long(optarg, 0, (long)(~0UL >> 1), &v))
                return cli_usage_error("eval", "--seed: want a whole number, got '%s'", optarg);
            o.seed = (uint64_t)v;
            break;
        case O_MEM:
            if (cli_parse_long(optarg, 1, 1024, &v))
                return cli_usage_error("eval", "--mem-packets: want 1..1024, got '%s'", optarg);
            o.mem_packets = (int)v;
            break;
        case O_PACKETS:
            if (cli_parse_long(optarg, 1, 1 << 20, &v))
                return cli_usage_error("eval", "--packets: want 1..1048576, got '%s'", optarg);
            o.max_packets = (int)v;
            break;
        case O_IDLE: {
            char *end;
            o.idle_timeout = strtod(optarg, &end);
            if (*end || !(o.idle_timeout > 0))
                return cli_usage_error("eval", "--idle: want seconds > 0, got '%s'", optarg);
            break;
        }
        case 'h':
        case O_HELP: fputs(usage_text, stdout); return 0;
        default:
            return cli_usage_error("eval", "unknown or incomplete option '%s' (see --help)",
                                   argv[optind - 1]);
        }
    }
    if (dist) {
        if (optind != argc)
            return cli_usage_error("eval", "--distances reads standard input, no files");
        return distances();
    }
    if (argc - optind != 2)
        return cli_usage_error("eval", "want REAL and SYNTH (see --help)");
    const char *real = argv[optind], *synth = argv[optind + 1];

    nd_err err = {{0}};
    nd_eval *e = NULL;
    nd_status st = nd_eval_new(&o, &e, &err);
    if (st)
        return cli_fail("eval", st, "%s", err.msg);
    int rc = 0;
    if ((st = nd_eval_add_path(e, ND_EVAL_REAL, real, &err)) ||
        (st = nd_eval_add_path(e, ND_EVAL_SYNTH, synth, &err)) ||
        (train && (st = nd_eval_add_path(e, ND_EVAL_TRAIN, train, &err)))) {
        rc = cli_fail("eval", st, "%s", err.msg);
        goto out;
    }
    if (!nd_eval_flows(e, ND_EVAL_REAL) || !nd_eval_flows(e, ND_EVAL_SYNTH)) {
        rc = cli_fail("eval", ND_EFORMAT, "%s: no TCP/UDP/ICMP flows",
                      nd_eval_flows(e, ND_EVAL_REAL) ? synth : real);
        goto out;
    }
    uint64_t nr = n_random < 0 ? nd_eval_flows(e, ND_EVAL_SYNTH) : (uint64_t)n_random;
    if ((st = cli_eval_random(e, nr, o.seed, &err))) {
        rc = cli_fail("eval", st, "random baseline: %s", err.msg);
        goto out;
    }
    if ((st = nd_eval_finish(e, NULL, &err))) {
        rc = cli_fail("eval", st, "%s", err.msg);
        goto out;
    }
    if (!(json && !strcmp(json, "-")) && (st = nd_eval_write_text(e, stdout, &err)))
        rc = cli_fail("eval", st, "standard output: %s", err.msg);
    if (!rc && json)
        rc = write_to(json, nd_eval_write_json, e);
    if (!rc && html)
        rc = write_to(html, nd_eval_write_html, e);
out:
    nd_eval_free(e);
    return rc;
}

const nd_cmd nd_cmd_eval = {"eval", "compare synthetic with real flows (JSD/TVD/Hellinger, "
                                    "validity, memorization)", run};
