/* codec/png.c - PNG in and out through libpng (simplified API). */
#include "codec/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <png.h>
#include <zlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nd_status finish_read(png_image *img, const char *what, uint8_t **rgb, int *w, int *h,
                             nd_err *err)
{
    if (img->width == 0 || img->height == 0 ||
        (uint64_t)img->width * img->height > ND_PNG_MAX_PIXELS) {
        png_image_free(img);
        return nd_fail(err, ND_EFORMAT, "%s: image size %ux%u out of range", what, img->width,
                       img->height);
    }
    img->format = PNG_FORMAT_RGB;
    size_t n = PNG_IMAGE_SIZE(*img);
    uint8_t *buf = malloc(n);
    if (!buf) {
        png_image_free(img);
        return nd_fail(err, ND_ENOMEM, "%s: out of memory", what);
    }
    /* no background: alpha is dropped, as NetDiffusion's RGBA files are opaque */
    if (!png_image_finish_read(img, NULL, buf, 0, NULL)) {
        nd_status st = nd_fail(err, ND_EFORMAT, "%s: %s", what, img->message);
        free(buf);
        png_image_free(img);
        return st;
    }
    *rgb = buf;
    *w = (int)img->width;
    *h = (int)img->height;
    return ND_OK;
}

nd_status nd_png_read(const char *path, uint8_t **rgb, int *w, int *h, nd_err *err)
{
    *rgb = NULL;
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path))
        return nd_fail(err, ND_EFORMAT, "%s: not a readable PNG (%s)", path, img.message);
    return finish_read(&img, path, rgb, w, h, err);
}

nd_status nd_png_read_mem(const uint8_t *data, size_t n, uint8_t **rgb, int *w, int *h,
                          nd_err *err)
{
    *rgb = NULL;
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, data, n))
        return nd_fail(err, ND_EFORMAT, "not a readable PNG (%s)", img.message);
    return finish_read(&img, "PNG", rgb, w, h, err);
}

/* Writing. Flow images are mostly padding: identical blue rows after the
 * last packet. libpng writes the header and the chunks (png_write_info,
 * png_write_chunk), but the image data stream is made here: the rows up to
 * the first of the trailing identical rows go through zlib (UP filter, level
 * 1, RLE), then a full flush; every further identical row is, after the UP
 * filter, a row of zeros, whose compressed form after a full flush is the
 * same bytes every time, so it is compressed once and copied, and its
 * Adler-32 is combined arithmetically. A 1088x1024 image of a short flow
 * costs its packets' rows, not its padding. */
static void png_err_fn(png_structp png, png_const_charp msg)
{
    nd_err *err = png_get_error_ptr(png);
    if (err)
        snprintf(err->msg, sizeof err->msg, "%s", msg);
    png_longjmp(png, 1);
}
static void png_warn_fn(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* Compresses in[0..n) into b with the given flush; raw deflate stream z. */
static int z_put(z_stream *z, nd_bitbuf *b, const uint8_t *in, size_t n, int flush)
{
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)n;
    do {
        if (nd_bits_reserve(b, 65536))
            return -1;
        z->next_out = b->p + b->n;
        z->avail_out = 65536;
        int rc = deflate(z, flush);
        if (rc == Z_STREAM_ERROR)
            return -1;
        b->n += 65536 - z->avail_out;
    } while (z->avail_out == 0 || z->avail_in > 0);
    return 0;
}

/* The zlib stream (header, deflate data, Adler-32) of the filtered image. */
static int image_zstream(const uint8_t *rgb, int w, int h, nd_bitbuf *out)
{
    size_t stride = (size_t)w * 3, fl = stride + 1;
    /* trailing rows identical to row k..h-1 */
    int k = h - 1;
    while (k > 0 && !memcmp(rgb + (size_t)(k - 1) * stride, rgb + (size_t)(h - 1) * stride, stride))
        k--;
    uint8_t *row = malloc(fl);
    if (!row)
        return -1;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 1, Z_DEFLATED, -15, 8, Z_RLE) != Z_OK) {
        free(row);
        return -1;
    }
    int rc = nd_bits_reserve(out, 2);
    if (!rc) {
        out->p[out->n++] = 0x78; /* deflate, 32K window */
        out->p[out->n++] = 0x01; /* fastest; 0x7801 % 31 == 0 */
    }
    uLong adler = adler32(0L, Z_NULL, 0);
    /* rows 0..k: UP filter (row 0 against zeros, i.e. unfiltered) */
    for (int y = 0; y <= k && !rc; y++) {
        const uint8_t *cur = rgb + (size_t)y * stride;
        row[0] = y == 0 ? 0 : 2;
        if (y == 0) {
            memcpy(row + 1, cur, stride);
        } else {
            const uint8_t *prev = cur - stride;
            for (size_t i = 0; i < stride; i++)
                row[1 + i] = (uint8_t)(cur[i] - prev[i]);
        }
        adler = adler32(adler, row, (uInt)fl);
        rc = z_put(&z, out, row, fl, y == k ? Z_FULL_FLUSH : Z_NO_FLUSH);
    }
    /* rows k+1..h-1: each an UP-filtered row of zeros. A run of 64 such rows
     * and a single one are compressed once each (after a full flush the
     * compressed bytes do not depend on what came before) and copied. */
    if (!rc && k < h - 1) {
        enum { RUN = 64 };
        uint8_t *zrows = calloc(RUN, fl);
        nd_bitbuf one[2] = {{0}, {0}};
        uLong a[2];
        rc = zrows == NULL;
        for (int r = 0; r < RUN && !rc; r++)
            zrows[(size_t)r * fl] = 2;
        for (int v = 0; v < 2 && !rc; v++) {
            size_t len = v ? fl : (size_t)RUN * fl;
            z_stream z1;
            memset(&z1, 0, sizeof z1);
            rc = deflateInit2(&z1, 1, Z_DEFLATED, -15, 8, Z_RLE) != Z_OK;
            if (!rc)
                rc = z_put(&z1, &one[v], zrows, len, Z_FULL_FLUSH);
            deflateEnd(&z1);
            a[v] = adler32(adler32(0L, Z_NULL, 0), zrows, (uInt)len);
        }
        for (int y = k + 1; y < h && !rc;) {
            int v = h - y >= RUN ? 0 : 1;
            if (nd_bits_reserve(out, one[v].n)) {
                rc = -1;
                break;
            }
            memcpy(out->p + out->n, one[v].p, one[v].n);
            out->n += one[v].n;
            adler = adler32_combine(adler, a[v], (z_off_t)(v ? fl : (size_t)RUN * fl));
            y += v ? 1 : RUN;
        }
        free(one[0].p);
        free(one[1].p);
        free(zrows);
    }
    /* the final (empty) block */
    if (!rc)
        rc = z_put(&z, out, NULL, 0, Z_FINISH);
    deflateEnd(&z);
    free(row);
    if (!rc && !nd_bits_reserve(out, 4)) {
        out->p[out->n++] = (uint8_t)(adler >> 24);
        out->p[out->n++] = (uint8_t)(adler >> 16);
        out->p[out->n++] = (uint8_t)(adler >> 8);
        out->p[out->n++] = (uint8_t)adler;
    } else {
        rc = -1;
    }
    return rc;
}

/* libpng writes the signature and the chunks into memory, so the file is
 * one write(2): with thousands of small images per run, stdio's buffering
 * and libpng's per-chunk writes were a visible share of the time. */
static void mem_write_fn(png_structp png, png_bytep data, png_size_t len)
{
    nd_bitbuf *b = png_get_io_ptr(png);
    if (nd_bits_reserve(b, len))
        png_error(png, "out of memory");
    memcpy(b->p + b->n, data, len);
    b->n += len;
}
static void mem_flush_fn(png_structp png) { (void)png; }

nd_status nd_png_in_memory(int w, int h, const uint8_t *z, size_t zn, nd_bitbuf *out, nd_err *err)
{
    nd_err perr = {{0}};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &perr, png_err_fn,
                                              png_warn_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return nd_fail(err, ND_ENOMEM, "%s", perr.msg);
    }
    png_set_write_fn(png, out, mem_write_fn, mem_flush_fn);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (size_t off = 0; off < zn; off += 1u << 20) {
        size_t len = zn - off < (1u << 20) ? zn - off : (1u << 20);
        png_write_chunk(png, (png_const_bytep) "IDAT", z + off, len);
    }
    png_write_chunk(png, (png_const_bytep) "IEND", NULL, 0);
    png_destroy_write_struct(&png, &info);
    return ND_OK;
}

nd_status nd_file_put(const char *path, const uint8_t *data, size_t n, nd_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
        return nd_fail(err, ND_EIO, "%s: %s", path, strerror(errno));
    size_t off = 0;
    while (off < n) {
        ssize_t k = write(fd, data + off, n - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        off += (size_t)k;
    }
    if (off < n) {
        nd_status st = nd_fail(err, ND_EIO, "%s: %s", path, strerror(errno));
        close(fd);
        remove(path);
        return st;
    }
    if (close(fd)) {
        remove(path);
        return nd_fail(err, ND_EIO, "%s: write failed", path);
    }
    return ND_OK;
}

nd_status nd_png_put_file(const char *path, int w, int h, const uint8_t *z, size_t zn, nd_err *err)
{
    nd_bitbuf file = {0};
    if (nd_bits_reserve(&file, zn + 128)) /* signature, IHDR, chunk framing, IEND */
        return nd_fail(err, ND_ENOMEM, "%s: out of memory", path);
    nd_status st = nd_png_in_memory(w, h, z, zn, &file, err);
    if (st)
        st = nd_wrap(err, st, "%s", path);
    else
        st = nd_file_put(path, file.p, file.n, err);
    free(file.p);
    return st;
}

nd_status nd_png_write(const char *path, const uint8_t *rgb, int w, int h, nd_err *err)
{
    if (w <= 0 || h <= 0 || (uint64_t)w * (uint64_t)h > ND_PNG_MAX_PIXELS)
        return nd_fail(err, ND_EINVAL, "%s: bad image size %dx%d", path, w, h);
    nd_bitbuf zs = {0};
    if (image_zstream(rgb, w, h, &zs)) {
        free(zs.p);
        return nd_fail(err, ND_ENOMEM, "%s: compression failed", path);
    }
    nd_status st = nd_png_put_file(path, w, h, zs.p, zs.n, err);
    free(zs.p);
    return st;
}
