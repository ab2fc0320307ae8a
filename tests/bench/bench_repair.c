/* tests/bench/bench_repair.c - packets and flows per second through
 * snap + repair + pcap write for 1024-packet flows, one core. Images are
 * real flows' NetDiffusion images (1088 x 1024) with noise, snapped with
 * confidence, both from 8-bit RGB (a PNG) and from planar floats (what the
 * VAE decoder hands the generator); the pcap goes to /dev/null through the
 * real writer. */
#include <time.h>

#include "tests/heuristics/helpers.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(void)
{
    const char *dir = getenv("ND_TESTDATA") ? getenv("ND_TESTDATA") : "../shared/testdata";
    th_flows real;
    if (th_load(&real, dir, th_real_files, (int)ND_ARRAY_LEN(th_real_files), 400, 1024, false) <= 0)
        return 1;
    /* 8 images of 1024 packets: real flows concatenated to fill the budget */
    enum { NIMG = 8, PK = 1024 };
    nd_layout l;
    nd_layout_netdiffusion(&l, PK);
    size_t npx = (size_t)l.width * PK;
    uint8_t *rgb[NIMG];
    uint64_t rs = 1;
    for (int m = 0; m < NIMG; m++) {
        nd_rows t;
        nd_err err = {{0}};
        nd_rows_init(&t, 0, PK, &err);
        while (t.n < PK) {
            const nd_rows *r = &real.v[th_next(&rs) % (uint64_t)real.n];
            for (int i = 0; i < r->n && t.n < PK; i++)
                memcpy(nd_rows_push(&t, &err), nd_rows_at(r, i), (size_t)nd_row_width(0));
        }
        rgb[m] = malloc(npx * 3);
        nd_image_from_rows(&l, &t, rgb[m]);
        for (size_t i = 0; i < npx * 3; i++) /* model-like noise on every channel */
            rgb[m][i] = (uint8_t)(rgb[m][i] ? rgb[m][i] - (th_next(&rs) & 63)
                                            : (th_next(&rs) & 63));
        nd_rows_free(&t);
    }
    float *planar[NIMG];
    for (int m = 0; m < NIMG; m++) {
        planar[m] = malloc(npx * 3 * sizeof(float));
        for (size_t i = 0; i < npx; i++)
            for (int ch = 0; ch < 3; ch++)
                planar[m][(size_t)ch * npx + i] = (float)rgb[m][3 * i + (size_t)ch] / 255.0f;
    }
    int8_t *bits = malloc(npx);
    float *conf = malloc(npx * sizeof(float));
    nd_rows rows;
    nd_err err = {{0}};
    nd_repair_ctx *c;
    nd_repair_ctx_new(NULL, &c, &err);
    FILE *f = fopen("/dev/null", "wb");
    nd_capwriter *w;
    nd_capwriter_open_file(ND_CAP_PCAP, ND_LINKTYPE_ETHERNET, f, &w, &err);
    double t_snap = 0, t_snap_f = 0, t_rows = 0, t_rep = 0, t_wr = 0;
    long pk = 0, flows = 0;
    double t0 = now();
    while (now() - t0 < 3.0) {
        for (int m = 0; m < NIMG; m++) {
            double a0 = now();
            nd_snap_u8(ND_SNAP_NEAREST, rgb[m], npx, bits, conf);
            double a = now();
            nd_snap_planar_f32(ND_SNAP_NEAREST, planar[m], npx, bits, conf);
            double b = now();
            t_snap += a - a0;
            nd_rows_from_bits(&l, bits, &rows, &err);
            double cc = now();
            nd_repair_out out;
            /* confidence laid out per row cell: the image's columns are a
             * subset, so the vote here runs without it (see report) */
            nd_repair_flow(c, &rows, NULL, NULL, (uint64_t)flows, &out, NULL, &err);
            double d = now();
            nd_repair_write(w, &out, NULL, &err);
            double e = now();
            nd_rows_free(&rows);
            t_snap_f += b - a;
            t_rows += cc - b;
            t_rep += d - cc;
            t_wr += e - d;
            pk += out.n;
            flows++;
        }
    }
    double tot = t_snap + t_rows + t_rep + t_wr, tot_f = t_snap_f + t_rows + t_rep + t_wr;
    printf("flows of 1024 packets, 1088x1024 images, one core, %ld flows, %ld packets\n", flows, pk);
    printf("%-28s %12s %12s\n", "stage", "packets/s", "flows/s");
    printf("%-28s %12.0f %12.1f\n", "snap u8 RGB (nearest + conf)", (double)pk / t_snap, (double)flows / t_snap);
    printf("%-28s %12.0f %12.1f\n", "snap planar f32 (VAE out)", (double)pk / t_snap_f, (double)flows / t_snap_f);
    printf("%-28s %12.0f %12.1f\n", "bits -> rows (codec)", (double)pk / t_rows, (double)flows / t_rows);
    printf("%-28s %12.0f %12.1f\n", "repair", (double)pk / t_rep, (double)flows / t_rep);
    printf("%-28s %12.0f %12.1f\n", "pcap write", (double)pk / t_wr, (double)flows / t_wr);
    printf("%-28s %12.0f %12.1f\n", "repair + write", (double)pk / (t_rep + t_wr), (double)flows / (t_rep + t_wr));
    printf("%-28s %12.0f %12.1f\n", "all four, from u8 RGB", (double)pk / tot, (double)flows / tot);
    printf("%-28s %12.0f %12.1f\n", "all four, from planar f32", (double)pk / tot_f, (double)flows / tot_f);
    nd_capwriter_free(w);
    fclose(f);
    nd_repair_ctx_free(c);
    for (int m = 0; m < NIMG; m++) {
        free(rgb[m]);
        free(planar[m]);
    }
    free(bits);
    free(conf);
    th_free(&real);
    return 0;
}
