/* cli/cmd_generate.c - `netdiff generate`: a class and a count in, labelled
 * valid pcaps out. Parses options and calls gen/ (the job, the model drawer,
 * the sinks); computes nothing itself. */
#include "cli/cli.h"
#include "gen/gen.h"
#include "model/sd.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: netdiff generate --class NAME -n COUNT -o OUT.pcap [options]\n"
    "       netdiff generate --class NAME=COUNT,NAME=COUNT... -o OUT.pcap [options]\n"
    "\n"
    "Draws flows of the given classes with the model (the embedded default unless\n"
    "--model is given), repairs them into valid packets and writes one capture\n"
    "(or one per class with --split-by-class) plus a JSON manifest beside it\n"
    "(OUT.json: per flow its class, seed, packets, bytes and what repair changed).\n"
    "Flows are written as they finish; the same seed and options give the same\n"
    "bytes whatever --batch and --threads are.\n"
    "\n"
    "  --class SPEC          NAME, or NAME=COUNT,... (several classes in one run)\n"
    "  -n COUNT              flows per class given without a count (default 1)\n"
    "  -o FILE               the capture (written atomically)\n"
    "  --split-by-class DIR  one capture per class, DIR/NAME.pcap[ng], instead of -o\n"
    "  --format pcap|pcapng  pcapng packets carry \"FLOW,CLASS\" comments (pcapml)\n"
    "  --seed S              (default 0)\n"
    "  --steps K             sampler steps (default 20)\n"
    "  --sampler NAME        ddim (default), euler, euler_a, dpmpp_2m\n"
    "  --cfg G               classifier-free guidance scale (default 7.5)\n"
    "  --control-scale C     ControlNet conditioning scale (default 1.0)\n"
    "  --strength S          img2img from the class template's flow: 0 < S <= 1, the share\n"
    "                        of the steps run from it noised (1: from pure noise; default:\n"
    "                        the class table's \"strength\", else 1; the embedded model: 0.5)\n"
    "  --negative TEXT       negative prompt (default empty)\n"
    "  --backend NAME        cpu (default), cpu_ref; cuda in `make cuda`'s build/cuda/netdiff,\n"
    "                        emu (the CUDA kernels emulated) in `make emu`'s build/emu/netdiff\n"
    "  --batch B             flows drawn at once (default 1)\n"
    "  --threads T           compute threads (default: every core)\n"
    "  --copies K            model copies drawing at once, each on T/K threads and\n"
    "                        up to B flows (default: one per thread for a model under\n"
    "                        256 MiB on the CPU, such as the default; else 1)\n"
    "  --model PATH          an SD1.5-family model: LDM .safetensors or diffusers folder\n"
    "  --lora PATH[:SCALE]   a LoRA (kohya or PEFT) merged at SCALE (default 1); repeatable\n"
    "  --controlnet PATH     a ControlNet (original or diffusers layout)\n"
    "  --no-controlnet       draw without the default model's ControlNet\n"
    "  --classes FILE        the class table (default: the default model's)\n"
    "  --raw-ip              raw IP link type instead of Ethernet\n"
    "\n"
    "The default model lives in weights/default/ and conf/ beside the binary's\n"
    "folder (or under $ND_HOME).\n";

typedef struct {
    FILE *f;
} file_sink;
static nd_status fwrite_fn(void *ctx, const void *b, size_t n, nd_err *err)
{
    if (fwrite(b, 1, n, ((file_sink *)ctx)->f) != n)
        return nd_fail(err, ND_EIO, "write failed (%s)", strerror(errno));
    return ND_OK;
}

/* Progress on a terminal: flows, flows/s, ETA. */
typedef struct {
    double t0;
    int tty;
} progress_state;
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
/* CPU seconds of the whole process (every thread), user + system */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}
static void progress(void *ctx, uint64_t done, uint64_t total)
{
    progress_state *p = ctx;
    if (!p->tty)
        return;
    double dt = now_s() - p->t0, rate = dt > 0 ? (double)done / dt : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    int w = 30, fill = total ? (int)((double)w * (double)done / (double)total) : w;
    fprintf(stderr, "\r[%.*s%*s] %llu/%llu flows  %.2f flows/s  ETA %.0fs ", fill,
            "##############################", w - fill, "", (unsigned long long)done,
            (unsigned long long)total, rate, eta);
    if (done == total)
        fputc('\n', stderr);
}

/* Per-class captures for --split-by-class: files opened on a class's first flow. */
typedef struct {
    const nd_class_table *t;
    const char *dir;
    nd_capfmt fmt;
    int linktype;
    FILE **f;
    file_sink *fs;
    nd_capture_sink **cs;
    nd_gen_sink *gs;
} split_sink;

static void split_path(const split_sink *s, int k, int tmp, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s.%s%s", s->dir, s->t->v[k].name,
             s->fmt == ND_CAP_PCAPNG ? "pcapng" : "pcap", tmp ? ".part" : "");
}

static nd_status split_flow(void *ctx, const nd_gen_flow *fl, nd_err *err)
{
    split_sink *s = ctx;
    int k = (int)(fl->cls - s->t->v);
    if (!s->cs[k]) {
        char p[4200];
        split_path(s, k, 1, p, sizeof p);
        s->f[k] = fopen(p, "wb");
        if (!s->f[k])
            return nd_fail(err, ND_EIO, "%s: %s", p, strerror(errno));
        s->fs[k].f = s->f[k];
        nd_status st = nd_capture_sink_new(s->fmt, s->linktype, fwrite_fn, &s->fs[k], &s->cs[k],
                                           &s->gs[k], err);
        if (st)
            return st;
    }
    return s->gs[k].flow(s->gs[k].ctx, fl, err);
}

static int parse_sampler(const char *s, int *kind)
{
    if (!strcmp(s, "dpmpp_2m"))
        s = "dpmpp_2m_karras";
    sd_sampler_kind k;
    if (sd_sampler_parse(s, &k, NULL))
        return -1;
    *kind = (int)k;
    return 0;
}

static int run(int argc, char **argv)
{
    const char *spec = NULL, *out = NULL, *split = NULL, *classes = NULL;
    long n = 1, v;
    unsigned long long seed = 0;
    nd_capfmt fmt = ND_CAP_PCAP;
    bool no_cn = false, raw_ip = false;
    nd_model_params mp;
    nd_model_params_init(&mp);
    const char *cn_path = NULL, *model_path = NULL;
    int copies = 0; /* 0: nd_model_auto_copies */
    enum { O_CLASS = 256, O_SPLIT, O_FORMAT, O_SEED, O_STEPS, O_SAMPLER, O_CFG, O_CS, O_STR, O_NEG,
           O_BACKEND, O_BATCH, O_THREADS, O_COPIES, O_MODEL, O_LORA, O_CN, O_NOCN, O_CLASSES, O_RAW, O_HELP };
    static const struct option lo[] = {
        {"class", required_argument, 0, O_CLASS}, {"split-by-class", required_argument, 0, O_SPLIT},
        {"format", required_argument, 0, O_FORMAT}, {"seed", required_argument, 0, O_SEED},
        {"steps", required_argument, 0, O_STEPS}, {"sampler", required_argument, 0, O_SAMPLER},
        {"cfg", required_argument, 0, O_CFG}, {"control-scale", required_argument, 0, O_CS},
        {"strength", required_argument, 0, O_STR},
        {"negative", required_argument, 0, O_NEG}, {"backend", required_argument, 0, O_BACKEND},
        {"batch", required_argument, 0, O_BATCH}, {"threads", required_argument, 0, O_THREADS},
        {"copies", required_argument, 0, O_COPIES},
        {"model", required_argument, 0, O_MODEL}, {"lora", required_argument, 0, O_LORA},
        {"controlnet", required_argument, 0, O_CN}, {"no-controlnet", no_argument, 0, O_NOCN},
        {"classes", required_argument, 0, O_CLASSES}, {"raw-ip", no_argument, 0, O_RAW},
        {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    static char lora_buf[ND_MODEL_MAX_LORAS][4096];
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "n:o:h", lo, NULL)) != -1) {
        char *end;
        switch (c) {
        case O_CLASS: spec = optarg; break;
        case 'n':
            if (cli_parse_long(optarg, 1, 1000000, &n))
                return cli_usage_error("generate", "-n takes 1..1000000, got '%s'", optarg);
            break;
        case 'o': out = optarg; break;
        case O_SPLIT: split = optarg; break;
        case O_FORMAT:
            if (!strcmp(optarg, "pcap")) fmt = ND_CAP_PCAP;
            else if (!strcmp(optarg, "pcapng")) fmt = ND_CAP_PCAPNG;
            else return cli_usage_error("generate", "--format takes pcap or pcapng");
            break;
        case O_SEED:
            errno = 0;
            seed = strtoull(optarg, &end, 0);
            if (errno || *end || !*optarg || optarg[0] == '-')
                return cli_usage_error("generate", "--seed takes an unsigned integer, got '%s'", optarg);
            break;
        case O_STEPS:
            if (cli_parse_long(optarg, 1, 999, &v))
                return cli_usage_error("generate", "--steps takes 1..999");
            mp.steps = (int)v;
            break;
        case O_SAMPLER:
            if (parse_sampler(optarg, &mp.sampler))
                return cli_usage_error("generate", "--sampler takes ddim, euler, euler_a or dpmpp_2m, got '%s'", optarg);
            break;
        case O_CFG:
            mp.cfg = strtof(optarg, &end);
            if (*end || !(mp.cfg >= 0 && mp.cfg <= 100))
                return cli_usage_error("generate", "--cfg takes 0..100");
            break;
        case O_CS:
            mp.control_scale = strtof(optarg, &end);
            if (*end || !(mp.control_scale >= 0 && mp.control_scale <= 10))
                return cli_usage_error("generate", "--control-scale takes 0..10");
            break;
        case O_STR:
            mp.strength = strtof(optarg, &end);
            if (*end || !*optarg || !(mp.strength > 0 && mp.strength <= 1))
                return cli_usage_error("generate", "--strength takes 0 < S <= 1, got '%s'", optarg);
            break;
        case O_NEG: mp.negative = optarg; break;
        case O_BACKEND: mp.backend = optarg; break;
        case O_BATCH:
            if (cli_parse_long(optarg, 1, 64, &v))
                return cli_usage_error("generate", "--batch takes 1..64");
            mp.batch = (int)v;
            break;
        case O_THREADS:
            if (cli_parse_long(optarg, 1, 1024, &v))
                return cli_usage_error("generate", "--threads takes 1..1024");
            mp.threads = (int)v;
            break;
        case O_COPIES:
            if (cli_parse_long(optarg, 1, ND_MODEL_MAX_COPIES, &v))
                return cli_usage_error("generate", "--copies takes 1..%d",
                                       ND_MODEL_MAX_COPIES);
            copies = (int)v;
            break;
        case O_MODEL: model_path = optarg; break;
        case O_LORA: {
            if (mp.n_loras == ND_MODEL_MAX_LORAS)
                return cli_usage_error("generate", "at most %d --lora", ND_MODEL_MAX_LORAS);
            char *b = lora_buf[mp.n_loras];
            snprintf(b, sizeof lora_buf[0], "%s", optarg);
            float scale = 1.0f;
            char *colon = strrchr(b, ':');
            if (colon) {
                scale = strtof(colon + 1, &end);
                if (*end || colon[1] == '\0' || !(scale >= -10 && scale <= 10))
                    return cli_usage_error("generate", "--lora takes PATH[:SCALE], got '%s'", optarg);
                *colon = '\0';
            }
            mp.loras[mp.n_loras].path = b;
            mp.loras[mp.n_loras].scale = scale;
            mp.n_loras++;
            break;
        }
        case O_CN: cn_path = optarg; break;
        case O_NOCN: no_cn = true; break;
        case O_CLASSES: classes = optarg; break;
        case O_RAW: raw_ip = true; break;
        case 'h': case O_HELP: fputs(usage_text, stdout); return 0;
        default: return cli_usage_error("generate", "unknown option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("generate", "unexpected argument '%s'", argv[optind]);
    if (!spec)
        return cli_usage_error("generate", "--class is required (see netdiff classes)");
    if (!out == !split)
        return cli_usage_error("generate", "give -o FILE or --split-by-class DIR (one of them)");

    /* the default model, beside the binary */
    nd_default_paths dp;
    nd_default_paths_get(&dp);
    const char *def_model = dp.model, *def_cn = dp.controlnet, *def_lora = dp.lora,
               *def_classes = dp.classes;
    bool default_model = model_path == NULL;
    mp.model = model_path ? model_path : def_model;
    if (cn_path)
        mp.controlnet = cn_path;
    else if (default_model && !no_cn && access(def_cn, R_OK) == 0)
        mp.controlnet = def_cn;
    if (no_cn)
        mp.controlnet = NULL;
    if (default_model && mp.n_loras == 0 && access(def_lora, R_OK) == 0) {
        mp.loras[0].path = def_lora;
        mp.loras[0].scale = 1.0f;
        mp.n_loras = 1;
    }
    if (!classes)
        classes = getenv("ND_CLASSES") && *getenv("ND_CLASSES") ? getenv("ND_CLASSES") : def_classes;

    nd_err err = {{0}};
    nd_class_table t;
    nd_status st = nd_class_table_load(classes, &t, &err);
    if (st)
        return cli_fail("generate", st, "%s", err.msg);
    nd_gen_job job;
    nd_gen_job_init(&job);
    job.seed = seed;
    job.linktype = raw_ip ? ND_LINKTYPE_RAW : ND_LINKTYPE_ETHERNET;
    if ((st = nd_gen_job_parse(&job, spec, (uint64_t)n, &t, &err))) {
        nd_class_table_free(&t);
        return cli_usage_error("generate", "%s", err.msg);
    }
    nd_model_drawer *md[ND_MODEL_MAX_COPIES] = {NULL};
    nd_parallel_drawer *pd = NULL;
    nd_standin_drawer *sdw = NULL;
    nd_drawer drawer;
    /* hidden: ND_STANDIN_DRAWER=1 draws class templates plus seeded noise
     * (gen/standin_drawer.c), for tests and load runs without a model */
    const char *standin = getenv("ND_STANDIN_DRAWER");
    if (standin && !strcmp(standin, "1")) {
        if ((st = nd_standin_drawer_new(&t, mp.batch, &sdw, &drawer, &err))) {
            nd_class_table_free(&t);
            return cli_fail("generate", st, "%s", err.msg);
        }
    } else {
        /* K copies of the model, each with T/K threads, drawing at once */
        if (!copies)
            copies = nd_model_auto_copies(&mp, mp.threads);
        if (copies > 1) {
            int threads = mp.threads;
            if (threads <= 0) {
                long nc = sysconf(_SC_NPROCESSORS_ONLN);
                threads = nc > 0 ? (int)nc : 1;
            }
            mp.threads = threads / copies > 0 ? threads / copies : 1;
        }
        nd_drawer ds[ND_MODEL_MAX_COPIES];
        for (int i = 0; i < copies && !st; i++)
            st = nd_model_drawer_new(&mp, &t, &md[i], &ds[i], &err);
        if (!st && copies > 1)
            st = nd_parallel_drawer_new(ds, copies, &pd, &drawer, &err);
        else if (!st)
            drawer = ds[0];
        if (st) {
            for (int i = 0; i < copies; i++)
                nd_model_drawer_free(md[i]);
            nd_class_table_free(&t);
            return cli_fail("generate", st, "%s", err.msg);
        }
    }

    /* outputs: temporary names, renamed when the job succeeds */
    char tmp[4300], man_path[4400], man_tmp[4500];
    FILE *capf = NULL, *manf = NULL;
    file_sink fs = {NULL};
    nd_capture_sink *cs = NULL;
    nd_manifest_sink *ms = NULL;
    nd_gen_sink sinks[2];
    int n_sinks = 0;
    split_sink ss = {0};
    const char *base = out ? out : split;
    if (out) {
        snprintf(tmp, sizeof tmp, "%s.part%ld", out, (long)getpid());
        snprintf(man_path, sizeof man_path, "%s.json", out);
    } else {
        if (mkdir(split, 0777) && errno != EEXIST) {
            st = nd_fail(&err, ND_EIO, "%s: %s", split, strerror(errno));
            goto done;
        }
        snprintf(man_path, sizeof man_path, "%s/manifest.json", split);
    }
    snprintf(man_tmp, sizeof man_tmp, "%s.part%ld", man_path, (long)getpid());
    (void)base;
    if (out) {
        capf = fopen(tmp, "wb");
        if (!capf) {
            st = nd_fail(&err, ND_EIO, "%s: %s", out, strerror(errno));
            goto done;
        }
        fs.f = capf;
        if ((st = nd_capture_sink_new(fmt, job.linktype, fwrite_fn, &fs, &cs, &sinks[n_sinks], &err)))
            goto done;
        n_sinks++;
    } else {
        ss.t = &t;
        ss.dir = split;
        ss.fmt = fmt;
        ss.linktype = job.linktype;
        ss.f = calloc((size_t)t.n, sizeof *ss.f);
        ss.fs = calloc((size_t)t.n, sizeof *ss.fs);
        ss.cs = calloc((size_t)t.n, sizeof *ss.cs);
        ss.gs = calloc((size_t)t.n, sizeof *ss.gs);
        if (!ss.f || !ss.fs || !ss.cs || !ss.gs) {
            st = nd_fail(&err, ND_ENOMEM, "out of memory");
            goto done;
        }
        sinks[n_sinks++] = (nd_gen_sink){&ss, split_flow};
    }
    manf = fopen(man_tmp, "w");
    if (!manf) {
        st = nd_fail(&err, ND_EIO, "%s: %s", man_path, strerror(errno));
        goto done;
    }
    if ((st = nd_manifest_sink_new(manf, &ms, &sinks[n_sinks], &err)))
        goto done;
    n_sinks++;
    progress_state ps = {now_s(), isatty(2)};
    nd_gen_stats gs;
    double cpu0 = cpu_s();
    st = nd_gen_run(&job, &t, &drawer, sinks, n_sinks, progress, &ps, NULL, &gs, &err);
    if (!st)
        st = nd_manifest_sink_finish(ms, &err);
    if (!st && capf && fflush(capf))
        st = nd_fail(&err, ND_EIO, "%s: write failed", out);
    if (!st) {
        /* per stage: the copies' seconds over the copies (they ran at once) */
        nd_model_times mt = {0};
        for (int i = 0; i < copies && md[i]; i++) {
            nd_model_times ti;
            nd_model_drawer_times(md[i], &ti);
            mt.text += ti.text / copies;
            mt.hint += ti.hint / copies;
            mt.steps += ti.steps / copies;
            mt.vae += ti.vae / copies;
        }
        /* model loading not included; tests/bench/bench_generate.sh reads this line */
        fprintf(stderr, "netdiff generate: %llu flows, %llu packets in %.3f s (%.3f flows/s; "
                "text %.3fs, hint %.3fs, UNet %.3fs, VAE %.3fs, snap+repair+write %.3fs; "
                "cpu %.3fs)\n",
                (unsigned long long)gs.flows, (unsigned long long)gs.packets,
                gs.seconds_draw + gs.seconds_post,
                (double)gs.flows / (gs.seconds_draw + gs.seconds_post + 1e-9), mt.text, mt.hint,
                mt.steps, mt.vae, gs.seconds_post, cpu_s() - cpu0);
    }
done:
    nd_capture_sink_free(cs);
    nd_manifest_sink_free(ms);
    int close_fail = 0;
    if (capf && fclose(capf))
        close_fail = 1;
    if (manf && fclose(manf))
        close_fail = 1;
    if (!st && close_fail)
        st = nd_fail(&err, ND_EIO, "%s: write failed", base);
    for (int k = 0; ss.cs && k < t.n; k++) {
        nd_capture_sink_free(ss.cs[k]);
        if (ss.f[k] && fclose(ss.f[k]) && !st)
            st = nd_fail(&err, ND_EIO, "%s: write failed", split);
        char p[4200], q[4200];
        split_path(&ss, k, 1, p, sizeof p);
        split_path(&ss, k, 0, q, sizeof q);
        if (ss.f[k]) {
            if (st)
                remove(p);
            else if (rename(p, q))
                st = nd_fail(&err, ND_EIO, "%s: %s", q, strerror(errno));
        }
    }
    if (out) {
        if (st)
            remove(tmp);
        else if (rename(tmp, out))
            st = nd_fail(&err, ND_EIO, "%s: %s", out, strerror(errno));
    }
    if (st)
        remove(man_tmp);
    else if (rename(man_tmp, man_path))
        st = nd_fail(&err, ND_EIO, "%s: %s", man_path, strerror(errno));
    free(ss.f);
    free(ss.fs);
    free(ss.cs);
    free(ss.gs);
    nd_parallel_drawer_free(pd);
    for (int i = 0; i < copies; i++)
        nd_model_drawer_free(md[i]);
    nd_standin_drawer_free(sdw);
    nd_class_table_free(&t);
    if (st)
        return cli_fail("generate", st, "%s", err.msg);
    return 0;
}

const nd_cmd nd_cmd_generate = {"generate", "a class and a count in, labelled valid pcaps out", run};
