/* codec/png.c - PNG in and out through libpng (simplified API). */
#include "codec/codec.h"

#include <png.h>
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

nd_status nd_png_write(const char *path, const uint8_t *rgb, int w, int h, nd_err *err)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&img, path, 0, rgb, 0, NULL)) {
        nd_status st = nd_fail(err, ND_EIO, "%s: %s", path, img.message);
        png_image_free(&img);
        return st;
    }
    return ND_OK;
}
