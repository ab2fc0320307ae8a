/* codec/png.c - PNG in and out through libpng (simplified API). */
#include "codec/codec.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ND_PNG_MAX_PIXELS (64u << 20)

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

/* The full libpng API rather than the simplified one, to choose the
 * compression: three-colour images are long runs, so the SUB filter turns
 * them into zeros and zlib's RLE strategy at level 1 packs those several
 * times faster than the defaults, at nearly the same size. */
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

nd_status nd_png_write(const char *path, const uint8_t *rgb, int w, int h, nd_err *err)
{
    if (w <= 0 || h <= 0)
        return nd_fail(err, ND_EINVAL, "%s: bad image size %dx%d", path, w, h);
    FILE *f = fopen(path, "wb");
    if (!f)
        return nd_fail(err, ND_EIO, "%s: %s", path, strerror(errno));
    nd_err perr = {{0}};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &perr, png_err_fn,
                                              png_warn_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        remove(path);
        return nd_fail(err, ND_ENOMEM, "%s: out of memory", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        remove(path);
        return nd_fail(err, ND_EIO, "%s: %s", path, perr.msg);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_UP);
    png_set_compression_level(png, 1);
    png_set_compression_strategy(png, 3 /* Z_RLE */);
    png_write_info(png, info);
    for (int y = 0; y < h; y++)
        png_write_row(png, (png_const_bytep)(rgb + (size_t)y * (size_t)w * 3));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    if (fclose(f)) {
        remove(path);
        return nd_fail(err, ND_EIO, "%s: write failed", path);
    }
    return ND_OK;
}
