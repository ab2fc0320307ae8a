/* eval/paths.c - captures and directories of captures -> flows -> nd_eval. */
#include "eval/internal.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct sink_ctx {
    nd_eval *e;
    nd_eval_side side;
} sink_ctx;

static nd_status sink(void *ctx, const nd_flow *f, nd_err *err)
{
    sink_ctx *s = ctx;
    return nd_eval_add_flow_unchecked(s->e, s->side, f, err);
}

static nd_status get_labeler(nd_eval *e, nd_labeler **out, nd_err *err)
{
    nd_labeler **slot = nd_eval_labeler_slot(e);
    if (!*slot) {
        nd_status st = nd_labeler_new(slot, err);
        if (st != ND_OK)
            return st;
        nd_labeler_use_comments(*slot, true);
        const char *csv = nd_eval_opts_of(e)->labels_csv;
        if (csv && (st = nd_labeler_load_csv(*slot, csv, err)) != ND_OK) {
            nd_labeler_free(*slot);
            *slot = NULL;
            return st;
        }
    }
    *out = *slot;
    return ND_OK;
}

/* Validity of every IP packet, in a pass of its own: flows do not keep all
 * packets (tombstones after RST/FIN, the packet budget, other protocols). */
static nd_status check_packets(nd_eval *e, nd_eval_side side, const char *path, nd_err *err)
{
    nd_reader *rd;
    nd_status st = nd_reader_open(path, &rd, err);
    if (st)
        return st;
    nd_packet p;
    int got;
    while ((st = nd_reader_next(rd, &p, &got, err)) == ND_OK && got)
        if (p.l3)
            nd_eval_count_packet(e, side, p.l3, p.l3_caplen,
                                 p.wirelen - (uint32_t)(p.l3 - p.frame));
    nd_reader_close(rd);
    return st;
}

static nd_status add_file(nd_eval *e, nd_eval_side side, const char *path, nd_err *err)
{
    const nd_eval_opts *o = nd_eval_opts_of(e);
    nd_flow_opts fo;
    nd_flow_opts_init(&fo);
    fo.max_packets = o->max_packets;
    /* whole packets up to jumbo-free MTUs, so checksums can be verified;
     * longer ones (TSO captures) count as unverified, not invalid */
    fo.keep_bytes = 2048;
    if (o->idle_timeout > 0)
        fo.idle_timeout = o->idle_timeout;
    if (o->no_fin_rst)
        fo.end_on_fin_rst = false;
    nd_status st = get_labeler(e, &fo.labeler, err);
    if (st != ND_OK)
        return st;
    sink_ctx ctx = {e, side};
    nd_flow_stats stats;
    st = nd_flows_from_capture(path, &fo, sink, &ctx, &stats, err);
    if (st == ND_OK && side != ND_EVAL_TRAIN)
        st = check_packets(e, side, path, err);
    if (st != ND_OK && err && !strstr(err->msg, path))
        nd_wrap(err, st, "%s", path);
    return st;
}

static bool capture_name(const char *n)
{
    static const char *const ext[] = {".pcap", ".pcapng", ".cap", ".gz"};
    size_t ln = strlen(n);
    for (size_t i = 0; i < ND_ARRAY_LEN(ext); i++) {
        size_t le = strlen(ext[i]);
        if (ln > le && !strcmp(n + ln - le, ext[i]))
            return true;
    }
    return false;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static nd_status add_any(nd_eval *e, nd_eval_side side, const char *path, int depth, nd_err *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return nd_fail(err, ND_EIO, "%s: cannot open", path);
    if (!S_ISDIR(sb.st_mode))
        return add_file(e, side, path, err);
    if (depth > 16)
        return nd_fail(err, ND_EINVAL, "%s: directories nested too deep", path);
    DIR *d = opendir(path);
    if (!d)
        return nd_fail(err, ND_EIO, "%s: cannot open directory", path);
    char **names = NULL;
    size_t n = 0, cap = 0;
    nd_status st = ND_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                st = nd_fail(err, ND_ENOMEM, "out of memory");
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) {
            st = nd_fail(err, ND_ENOMEM, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (st == ND_OK)
        qsort(names, n, sizeof *names, cmp_name);  /* same order everywhere */
    for (size_t i = 0; i < n && st == ND_OK; i++) {
        size_t len = strlen(path) + strlen(names[i]) + 2;
        char *full = malloc(len);
        if (!full) {
            st = nd_fail(err, ND_ENOMEM, "out of memory");
            break;
        }
        snprintf(full, len, "%s/%s", path, names[i]);
        struct stat cb;
        if (stat(full, &cb) == 0 && (S_ISDIR(cb.st_mode) || capture_name(names[i])))
            st = add_any(e, side, full, depth + 1, err);
        free(full);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return st;
}

nd_status nd_eval_add_path(nd_eval *e, nd_eval_side side, const char *path, nd_err *err)
{
    if ((int)side < 0 || side >= ND_EVAL_SIDES)
        return nd_fail(err, ND_EINVAL, "no side %d", (int)side);
    return add_any(e, side, path, 0, err);
}
