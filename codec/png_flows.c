/* codec/png_flows.c - flows to PNG files: encoding here, file creation on a
 * second thread.
 *
 * Making a file costs the file system more than encoding the image costs us
 * (ext4 creating thousands of small files), so the finished bytes go to a
 * writer thread through a bounded queue and the next flow is encoded while
 * the last one is written. The queue holds at most QUEUE_FILES files and
 * QUEUE_BYTES bytes: memory stays bounded by the flow table, not the input.
 * Each image is made straight from the flow's packets (a row at a time into
 * its values; no nd_rows, no RGB buffer) with scratch kept from flow to flow,
 * and is byte for byte what nd_image_bits_from_rows + nd_png_write_bits
 * write. */
#include "codec/codec.h"
#include "codec/internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define QUEUE_FILES 64
#define QUEUE_BYTES ((size_t)32 << 20)

typedef struct {
    char *path;
    uint8_t *data;
    size_t n;
} job;

struct nd_flow_pngs {
    nd_layout l;
    nd_col_runs runs;
    nd_pad_memo *memo;
    int8_t row[ND_HDR_BITS];
    int8_t *bits; /* cap_rows rows of l.width values */
    int cap_rows;
    nd_bitbuf z;  /* the zlib stream, reused */

    bool threaded;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake, room, idle; /* to the writer; to put; to flush */
    job q[QUEUE_FILES];
    int head, count;
    size_t bytes;
    bool busy, stop;
    bool discard;     /* a file failed: drop the queue until the next flush */
    nd_status st;     /* that failure, until put or flush reports it */
    nd_err err;
    uint64_t written; /* files written since the last flush */
};

static void job_free(job *j)
{
    free(j->path);
    free(j->data);
}

/* Called with mu held, with it released around the write. */
static void write_job(nd_flow_pngs *w, job *j)
{
    nd_status st = ND_OK;
    nd_err e = {{0}};
    if (!w->discard) {
        pthread_mutex_unlock(&w->mu);
        st = nd_file_put(j->path, j->data, j->n, &e);
        pthread_mutex_lock(&w->mu);
    }
    job_free(j);
    if (st && !w->discard) {
        w->discard = true;
        w->st = st;
        w->err = e;
    } else if (!st && !w->discard) {
        w->written++;
    }
}

static void *writer_main(void *arg)
{
    nd_flow_pngs *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->count && !w->stop)
            pthread_cond_wait(&w->wake, &w->mu);
        if (!w->count)
            break;
        job j = w->q[w->head];
        w->busy = true;
        write_job(w, &j);
        w->busy = false;
        w->head = (w->head + 1) % QUEUE_FILES;
        w->count--;
        w->bytes -= j.n;
        pthread_cond_signal(&w->room);
        if (!w->count)
            pthread_cond_broadcast(&w->idle);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

nd_status nd_flow_pngs_new(const nd_layout *l, nd_flow_pngs **out, nd_err *err)
{
    *out = NULL;
    if (l->width <= 0 || l->packets <= 0 ||
        (uint64_t)l->width * (uint64_t)l->packets > ND_PNG_MAX_PIXELS)
        return nd_fail(err, ND_EINVAL, "bad image size %dx%d", l->width, l->packets);
    nd_flow_pngs *w = calloc(1, sizeof *w);
    if (!w || !(w->memo = nd_pad_memo_new(l->width, l->packets))) {
        free(w);
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    w->l = *l;
    nd_col_runs_of(l, &w->runs);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->room, NULL);
    pthread_cond_init(&w->idle, NULL);
    /* without a thread every file is written in put: slower, same files */
    w->threaded = pthread_create(&w->thread, NULL, writer_main, w) == 0;
    *out = w;
    return ND_OK;
}

/* The pending failure, once; mu held. */
static nd_status take_error(nd_flow_pngs *w, nd_err *err)
{
    nd_status st = w->st;
    if (st && err)
        *err = w->err;
    w->st = ND_OK;
    return st;
}

/* The image's packet rows into w->bits; their count. */
static int flow_bits(nd_flow_pngs *w, const nd_flow *f)
{
    const nd_layout *l = &w->l;
    nd_flow_walk walk = nd_flow_walk_start(f);
    nd_pktinfo pi;
    int64_t gap;
    int n = 0;
    while (n < l->packets && nd_flow_walk_next(&walk, 0, w->row, &pi, &gap)) {
        nd_image_row(l, &w->runs, w->row, gap, w->bits + (size_t)n * (size_t)l->width);
        n++;
    }
    return n;
}

nd_status nd_flow_pngs_put(nd_flow_pngs *w, const nd_flow *f, const char *path, int *rows,
                           nd_err *err)
{
    *rows = 0;
    const nd_layout *l = &w->l;
    int need = f->n < l->packets ? f->n : l->packets;
    if (need > w->cap_rows) {
        int8_t *b = realloc(w->bits, (size_t)need * (size_t)l->width);
        if (!b)
            return nd_fail(err, ND_ENOMEM, "%s: out of memory", path);
        w->bits = b;
        w->cap_rows = need;
    }
    int n = flow_bits(w, f);
    if (n == 0)
        return ND_OK;
    w->z.n = 0;
    w->z.acc = 0;
    w->z.nacc = 0;
    job j = {0};
    nd_bitbuf file = {0};
    if (nd_png_bits_zstream(w->bits, l->width, n, l->packets, w->memo, &w->z) ||
        nd_bits_reserve(&file, w->z.n + 128) || !(j.path = strdup(path))) {
        free(file.p);
        return nd_fail(err, ND_ENOMEM, "%s: out of memory", path);
    }
    nd_status st = nd_png_in_memory(l->width, l->packets, w->z.p, w->z.n, &file, err);
    if (st) {
        free(file.p);
        free(j.path);
        return nd_wrap(err, st, "%s", path);
    }
    j.data = file.p;
    j.n = file.n;
    *rows = n;
    pthread_mutex_lock(&w->mu);
    if (!w->threaded) {
        write_job(w, &j);
    } else {
        while (w->count == QUEUE_FILES || (w->count && w->bytes + j.n > QUEUE_BYTES))
            pthread_cond_wait(&w->room, &w->mu);
        w->q[(w->head + w->count) % QUEUE_FILES] = j;
        w->count++;
        w->bytes += j.n;
        pthread_cond_signal(&w->wake);
    }
    st = take_error(w, err);
    pthread_mutex_unlock(&w->mu);
    return st;
}

nd_status nd_flow_pngs_flush(nd_flow_pngs *w, uint64_t *written, nd_err *err)
{
    pthread_mutex_lock(&w->mu);
    while (w->count || w->busy)
        pthread_cond_wait(&w->idle, &w->mu);
    nd_status st = take_error(w, err);
    w->discard = false;
    if (written)
        *written = w->written;
    w->written = 0;
    pthread_mutex_unlock(&w->mu);
    return st;
}

void nd_flow_pngs_free(nd_flow_pngs *w)
{
    if (!w)
        return;
    if (w->threaded) {
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL); /* writes what is queued first */
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->room);
    pthread_cond_destroy(&w->idle);
    nd_pad_memo_free(w->memo);
    free(w->bits);
    free(w->z.p);
    free(w);
}
