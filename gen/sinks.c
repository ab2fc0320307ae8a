/* gen/sinks.c - where finished flows go: a capture, a manifest. */
#include "gen/gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct nd_capture_sink {
    nd_capwriter *w;
    int linktype;
};

static nd_status capture_flow(void *ctx, const nd_gen_flow *f, nd_err *err)
{
    nd_capture_sink *s = ctx;
    if (f->out->n && f->out->linktype != s->linktype)
        return nd_fail(err, ND_EINVAL, "flow %llu has link type %d, the capture %d",
                       (unsigned long long)f->index, f->out->linktype, s->linktype);
    char comment[128];
    snprintf(comment, sizeof comment, "%llu,%s", (unsigned long long)f->index, f->cls->name);
    return nd_repair_write(s->w, f->out, comment, err);
}

nd_status nd_capture_sink_new(nd_capfmt fmt, int linktype, nd_write_fn fn, void *fn_ctx,
                              nd_capture_sink **out, nd_gen_sink *sink, nd_err *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    (*out)->linktype = linktype;
    nd_status st = nd_capwriter_open(fmt, linktype, fn, fn_ctx, &(*out)->w, err);
    if (st) {
        free(*out);
        *out = NULL;
        return st;
    }
    sink->ctx = *out;
    sink->flow = capture_flow;
    return ND_OK;
}

void nd_capture_sink_free(nd_capture_sink *s)
{
    if (!s)
        return;
    nd_capwriter_free(s->w);
    free(s);
}

struct nd_manifest_sink {
    FILE *f;
    uint64_t n;
};

static nd_status manifest_flow(void *ctx, const nd_gen_flow *f, nd_err *err)
{
    nd_manifest_sink *s = ctx;
    const nd_repair_out *o = f->out;
    double t0 = o->n ? (double)o->pkts[0].ts_sec + o->pkts[0].ts_nsec * 1e-9 : 0;
    double t1 = o->n ? (double)o->pkts[o->n - 1].ts_sec + o->pkts[o->n - 1].ts_nsec * 1e-9 : 0;
    fprintf(s->f, "%s\n {\"index\": %llu, \"class\": \"%s\", \"seed\": %llu, \"packets\": %d, "
            "\"bytes\": %llu, \"transport\": \"%s\", \"ip\": %d, \"first_ts\": %.6f, "
            "\"last_ts\": %.6f, \"repaired\": {",
            s->n ? "," : "", (unsigned long long)f->index, f->cls->name,
            (unsigned long long)f->seed, o->n, (unsigned long long)f->bytes,
            o->proto == 6 ? "tcp" : o->proto == 17 ? "udp" : o->proto == 1 || o->proto == 58 ? "icmp" : "none",
            o->ipver, t0, t1);
    int first = 1;
    for (int i = 0; i < ND_RP_COUNT; i++)
        if (f->counts->changed[i]) {
            fprintf(s->f, "%s\"%s\": %llu", first ? "" : ", ", nd_repair_counter_name(i),
                    (unsigned long long)f->counts->changed[i]);
            first = 0;
        }
    fputs("}}", s->f);
    s->n++;
    if (ferror(s->f))
        return nd_fail(err, ND_EIO, "manifest: write failed");
    return ND_OK;
}

nd_status nd_manifest_sink_new(FILE *f, nd_manifest_sink **out, nd_gen_sink *sink, nd_err *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return nd_fail(err, ND_ENOMEM, "out of memory");
    (*out)->f = f;
    fputc('[', f);
    sink->ctx = *out;
    sink->flow = manifest_flow;
    return ND_OK;
}

nd_status nd_manifest_sink_finish(nd_manifest_sink *s, nd_err *err)
{
    fputs(s->n ? "\n]\n" : "]\n", s->f);
    if (fflush(s->f) || ferror(s->f))
        return nd_fail(err, ND_EIO, "manifest: write failed");
    return ND_OK;
}

void nd_manifest_sink_free(nd_manifest_sink *s) { free(s); }
