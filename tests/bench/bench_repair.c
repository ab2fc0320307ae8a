/* tests/bench/bench_repair.c - packets and flows per second through
 * snap + repair + pcap write for 1024-packet flows, one core. Images are
 * real flows' NetDiffusion images (1088 x 1024) with noise, snapped with
 * confidence, from 8-bit RGB (a PNG), planar f32 and planar f16 (what a VAE
 * decoder hands the generator, on the CPU or copied back from a GPU). The
 * planar chain is gen/job.c's: snap straight to rows and per-cell
 * confidence (nd_snap_rows, one pass), repair with that confidence (the
 * vote uses it), pcap write through the real writer to /dev/null. The PNG
 * chain is `netdiff decode`'s: snap (with confidence), bits -> rows,
 * confidence -> per-cell confidence, repair, write. Where /dev/null is not
 * the null device (some containers make it a plain file, whose writes then
 * fill memory and time the kernel's page cache), the writer's bytes go to a
 * sink that drops them instead, and the table says so.
 *
 * The images are larger together (8 x 13 MB of f32) than the caches, so
 * every snap reads its input from memory, as a generator's would.
 * ND_BENCH_SECONDS (default 3) sets how long each input format runs. */
#include <sys/stat.h>
#include <time.h>

#include "tests/heuristics/helpers.h"

/* CPU time of this thread: "per core" means per CPU-second, and a shared
 * machine's other work then does not count against us (it still shares
 * caches and memory bandwidth). */
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* IEEE half from float (round to nearest even; values here are in [0, 1]). */
static uint16_t to_f16(float f)
{
    _Float16 h = (_Float16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

enum { NIMG = 8, PK = 1024 };
enum { IN_U8, IN_F32, IN_F16, IN_COUNT };
static const char *const in_name[IN_COUNT] = {"u8 RGB (PNG)", "planar f32 (VAE)",
                                              "planar f16 (VAE)"};
enum { ST_SNAP, ST_ROWS, ST_CONF, ST_REPAIR, ST_WRITE, ST_COUNT };
static const char *const st_name[ST_COUNT] = {"snap (bits + confidence)", "bits -> rows (codec)",
                                              "confidence -> cells", "repair (with confidence)",
                                              "pcap write"};

static nd_status drop(void *ctx, const void *buf, size_t n, nd_err *err)
{
    (void)buf;
    (void)err;
    *(size_t *)ctx += n;
    return ND_OK;
}

int main(void)
{
    const char *dir = getenv("ND_TESTDATA") ? getenv("ND_TESTDATA") : "../shared/testdata";
    double secs = getenv("ND_BENCH_SECONDS") ? atof(getenv("ND_BENCH_SECONDS")) : 3.0;
    th_flows real;
    if (th_load(&real, dir, th_real_files, (int)ND_ARRAY_LEN(th_real_files), 400, 1024, false) <= 0)
        return 1;
    /* NIMG images of 1024 packets: real flows of one IP version
     * concatenated to fill the budget (a mixed flow would lose the rows
     * of the other version to the vote) */
    nd_layout l;
    nd_layout_netdiffusion(&l, PK);
    size_t npx = (size_t)l.width * PK;
    uint8_t *rgb[NIMG];
    float *f32[NIMG];
    uint16_t *f16[NIMG];
    uint64_t rs = 1;
    for (int m = 0; m < NIMG; m++) {
        nd_rows t;
        nd_err err = {{0}};
        nd_rows_init(&t, 0, PK, &err);
        while (t.n < PK) {
            const nd_rows *r = &real.v[th_next(&rs) % (uint64_t)real.n];
            if (r->n == 0 || nd_rows_at(r, 0)[0] != 0) /* IPv4: version 0100 */
                continue;
            for (int i = 0; i < r->n && t.n < PK; i++)
                memcpy(nd_rows_push(&t, &err), nd_rows_at(r, i), (size_t)nd_row_width(0));
        }
        rgb[m] = malloc(npx * 3);
        nd_image_from_rows(&l, &t, rgb[m]);
        for (size_t i = 0; i < npx * 3; i++) /* model-like noise on every channel */
            rgb[m][i] = (uint8_t)(rgb[m][i] ? rgb[m][i] - (th_next(&rs) & 63)
                                            : (th_next(&rs) & 63));
        nd_rows_free(&t);
        f32[m] = malloc(npx * 3 * sizeof(float));
        f16[m] = malloc(npx * 3 * sizeof(uint16_t));
        for (size_t i = 0; i < npx; i++)
            for (int ch = 0; ch < 3; ch++) {
                float v = (float)rgb[m][3 * i + (size_t)ch] / 255.0f;
                f32[m][(size_t)ch * npx + i] = v;
                f16[m][(size_t)ch * npx + i] = to_f16(v);
            }
    }
    int8_t *bits = malloc(npx);
    nd_conf *conf = malloc(npx * sizeof *conf);
    nd_conf *row_conf = malloc((size_t)PK * (size_t)nd_row_width(0) * sizeof *row_conf);
    nd_rows rows;
    nd_err err = {{0}};
    nd_repair_ctx *c;
    nd_repair_ctx_new(NULL, &c, &err);
    struct stat sb;
    bool null_dev = stat("/dev/null", &sb) == 0 && S_ISCHR(sb.st_mode);
    FILE *f = null_dev ? fopen("/dev/null", "wb") : NULL;
    size_t dropped = 0;
    nd_capwriter *w;
    if (f)
        nd_capwriter_open_file(ND_CAP_PCAP, ND_LINKTYPE_ETHERNET, f, &w, &err);
    else
        nd_capwriter_open(ND_CAP_PCAP, ND_LINKTYPE_ETHERNET, drop, &dropped, &w, &err);
    double t[IN_COUNT][ST_COUNT] = {{0}};
    long pk[IN_COUNT] = {0}, flows[IN_COUNT] = {0};
    /* the formats take turns image by image, so that a busy machine slows
     * them alike and the columns compare */
    double t0 = now();
    while (now() - t0 < secs * IN_COUNT) {
        for (int m = 0; m < NIMG; m++) {
            for (int in = 0; in < IN_COUNT; in++) {
                double a = now(), b, cc, d;
                if (in == IN_U8) {
                    nd_snap_u8(ND_SNAP_NEAREST, rgb[m], npx, bits, conf);
                    b = now();
                    nd_rows_from_bits(&l, bits, &rows, &err);
                    cc = now();
                    nd_repair_conf_from_image(&l, conf, rows.n, 0, row_conf);
                    d = now();
                } else {
                    nd_snap_rows(ND_SNAP_NEAREST, in == IN_F32 ? ND_PIX_F32 : ND_PIX_F16,
                                 in == IN_F32 ? (const void *)f32[m] : (const void *)f16[m], &l,
                                 &rows, row_conf, &err);
                    b = cc = d = now(); /* rows and cell confidence made by the snap */
                }
                nd_repair_out out;
                nd_repair_flow(c, &rows, row_conf, NULL, (uint64_t)flows[in], &out, NULL, &err);
                double e = now();
                nd_repair_write(w, &out, NULL, &err);
                double g = now();
                nd_rows_free(&rows);
                t[in][ST_SNAP] += b - a;
                t[in][ST_ROWS] += cc - b;
                t[in][ST_CONF] += d - cc;
                t[in][ST_REPAIR] += e - d;
                t[in][ST_WRITE] += g - e;
                pk[in] += out.n;
                flows[in]++;
            }
        }
    }
    printf("flows of 1024 packets, 1088x1024 images, one core; packets/s (flows/s)%s\n",
           null_dev ? "" : "\n(/dev/null is not the null device here: pcap bytes dropped by a sink)");
    printf("%-26s", "stage");
    for (int in = 0; in < IN_COUNT; in++)
        printf(" %22s", in_name[in]);
    printf("\n");
    double tot[IN_COUNT] = {0}, post[IN_COUNT] = {0};
    for (int s = 0; s < ST_COUNT; s++) {
        printf("%-26s", st_name[s]);
        for (int in = 0; in < IN_COUNT; in++) {
            if (t[in][s] == 0)
                printf(" %22s", "(in the snap)");
            else
                printf(" %13.0f (%6.1f)", (double)pk[in] / t[in][s], (double)flows[in] / t[in][s]);
            tot[in] += t[in][s];
            if (s != ST_SNAP)
                post[in] += t[in][s];
        }
        printf("\n");
    }
    printf("%-26s", "all but snap");
    for (int in = 0; in < IN_COUNT; in++)
        printf(" %13.0f (%6.1f)", (double)pk[in] / post[in], (double)flows[in] / post[in]);
    printf("\n%-26s", "whole chain");
    for (int in = 0; in < IN_COUNT; in++)
        printf(" %13.0f (%6.1f)", (double)pk[in] / tot[in], (double)flows[in] / tot[in]);
    printf("\n(%ld flows, %ld packets per format on average)\n",
           (flows[0] + flows[1] + flows[2]) / 3, (pk[0] + pk[1] + pk[2]) / 3);
    nd_capwriter_free(w);
    if (f)
        fclose(f);
    nd_repair_ctx_free(c);
    for (int m = 0; m < NIMG; m++) {
        free(rgb[m]);
        free(f32[m]);
        free(f16[m]);
    }
    free(bits);
    free(conf);
    free(row_conf);
    th_free(&real);
    return 0;
}
