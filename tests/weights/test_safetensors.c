/* tests/weights/test_safetensors.c - the reader's strictness, the writer, dtypes. */
#include "tests/harness.h"
#include "weights/weights.h"

#include <unistd.h>

/* a file from a header string and a data buffer of LEN bytes */
static nd_status open_raw(const char *hdr, size_t hl_claim, size_t data_len, nd_err *err)
{
    size_t hl = strlen(hdr);
    size_t n = 8 + hl + data_len;
    unsigned char *b = calloc(1, n);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)hl_claim >> (8 * i));
    memcpy(b + 8, hdr, hl);
    nd_st_file *f = NULL;
    nd_status st = nd_st_open_mem(b, n, &f, err);
    nd_st_close(f);
    free(b);
    return st;
}

static nd_status hdr(const char *h, size_t data_len, nd_err *err)
{
    return open_raw(h, strlen(h), data_len, err);
}

static void test_valid_minimal(void)
{
    nd_err e = {{0}};
    CHECK_OK(hdr("{}", 0, &e), &e);
    CHECK_OK(hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, &e), &e);
    /* 0-d scalar and zero-size tensor are legal */
    CHECK_OK(hdr("{\"s\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,2]},"
                 "\"z\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[2,2]}}", 2, &e), &e);
    CHECK_OK(hdr("{\"__metadata__\":{\"format\":\"pt\"}}", 0, &e), &e);
}

static void expect_bad(const char *h, size_t data_len, const char *needle)
{
    nd_err e = {{0}};
    nd_status st = hdr(h, data_len, &e);
    CHECKF(st == ND_EFORMAT, "accepted (%d): %s", st, h);
    CHECKF(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
}

static void test_hostile_headers(void)
{
    nd_err e = {{0}};
    CHECK(open_raw("{}", 1000, 0, &e) == ND_EFORMAT && strstr(e.msg, "past the end"));
    CHECK(open_raw("{}", (size_t)1 << 40, 0, &e) == ND_EFORMAT && strstr(e.msg, "limit"));
    unsigned char tiny[5] = {1, 0, 0, 0, 0};
    nd_st_file *f;
    CHECK(nd_st_open_mem(tiny, sizeof tiny, &f, &e) == ND_EFORMAT && strstr(e.msg, "too short"));
    expect_bad("[1,2]", 0, "not start");
    expect_bad("{\"a\":1}", 0, "not an object");
    expect_bad("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "needs 12 bytes");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, "gap");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "past the");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, "trailing");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
               "\"data_offsets\":[0,8]}}", 8, "too large");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,8]}}", 8, "shape");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "data_offsets");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, "exactly");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, "duplicate");
    expect_bad("{\"\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "JSON");
    expect_bad("{\"__metadata__\":{\"k\":1}}", 0, "not a string");
    char deep[600] = "{\"a\":";
    for (int i = 0; i < 200; i++)
        strcat(deep, "[");
    expect_bad(deep, 0, "nested");
}

static void test_write_read_roundtrip(void)
{
    nd_err e = {{0}};
    char path[] = "/tmp/nd_st_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[3] = {0x3c00, 0x4000, 0xc000};
    uint16_t s = 0x3f80; /* bf16 1.0 */
    nd_st_writer *w = nd_st_writer_new();
    CHECK_OK(nd_st_writer_add(w, "w.a", ND_WDT_F32, 2, (int64_t[]){2, 3}, a, &e), &e);
    CHECK_OK(nd_st_writer_add(w, "w.h", ND_WDT_F16, 1, (int64_t[]){3}, h, &e), &e);
    CHECK_OK(nd_st_writer_add(w, "alpha", ND_WDT_BF16, 0, NULL, &s, &e), &e);
    CHECK_OK(nd_st_writer_add(w, "empty", ND_WDT_F32, 2, (int64_t[]){0, 4}, NULL, &e), &e);
    CHECK(nd_st_writer_add(w, "w.a", ND_WDT_F32, 1, (int64_t[]){1}, a, &e) == ND_EINVAL);
    CHECK_OK(nd_st_writer_meta(w, "format", "pt", &e), &e);
    CHECK_OK(nd_st_writer_save(w, path, &e), &e);
    nd_st_writer_free(w);
    nd_st_file *f;
    CHECK_OK(nd_st_open(path, &f, &e), &e);
    if (f) {
        CHECK_EQ_INT(nd_st_count(f), 4);
        const nd_st_tensor *t = nd_st_find(f, "w.a");
        CHECK(t && t->dtype == ND_WDT_F32 && t->ndim == 2 && t->shape[1] == 3 && t->nbytes == 24);
        CHECK(t && !memcmp(t->data, a, 24));
        CHECK(t && (uintptr_t)t->data % 8 == 0); /* header padded to 8 */
        t = nd_st_find(f, "alpha");
        CHECK(t && t->ndim == 0 && t->numel == 1);
        float v = 0;
        CHECK(t && !nd_wconvert(&v, ND_WDT_F32, t->data, t->dtype, 1, &e) && v == 1.0f);
        CHECK(nd_st_find(f, "empty") && nd_st_find(f, "empty")->numel == 0);
        CHECK(nd_st_meta(f, "format") && !strcmp(nd_st_meta(f, "format"), "pt"));
        CHECK(nd_st_find(f, "nope") == NULL);
        nd_st_close(f);
    }
    /* truncation anywhere fails cleanly */
    FILE *fp = fopen(path, "rb");
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fclose(fp);
    for (long cut = 0; cut < n; cut += 7) {
        CHECK(truncate(path, cut) == 0);
        CHECK(nd_st_open(path, &f, &e) != ND_OK);
    }
    unlink(path);
    CHECK(nd_st_open("/nonexistent/x.safetensors", &f, &e) == ND_EIO);
}

static void test_dtype_conversion(void)
{
    nd_err e = {{0}};
    float in[8] = {1.0f, -2.5f, 65504.0f, 1e-7f, 0.0f, 1.0f + 1.0f / 2048, 70000.0f, 3.14159f};
    uint16_t h[8];
    CHECK_OK(nd_wconvert(h, ND_WDT_F16, in, ND_WDT_F32, 8, &e), &e);
    CHECK_EQ_INT(h[0], 0x3c00);
    CHECK_EQ_INT(h[1], 0xc100);
    CHECK_EQ_INT(h[2], 0x7bff);
    CHECK_EQ_INT(h[3], 0x0002); /* subnormal: 1e-7 / 2^-24 = 1.68 -> 2 */
    CHECK_EQ_INT(h[5], 0x3c00); /* tie rounds to even */
    CHECK_EQ_INT(h[6], 0x7c00); /* overflow to inf */
    float back[8];
    CHECK_OK(nd_wconvert(back, ND_WDT_F32, h, ND_WDT_F16, 8, &e), &e);
    CHECK(back[0] == 1.0f && back[1] == -2.5f && back[2] == 65504.0f && fabsf(back[7] - 3.140625f) < 1e-6f);
    CHECK(fabsf(back[3] - 2 * 5.9604645e-8f) < 1e-12f);
    uint16_t b[8];
    CHECK_OK(nd_wconvert(b, ND_WDT_BF16, in, ND_WDT_F32, 8, &e), &e);
    CHECK_EQ_INT(b[0], 0x3f80);
    CHECK_EQ_INT(b[1], 0xc020);
    CHECK_OK(nd_wconvert(back, ND_WDT_F32, b, ND_WDT_BF16, 8, &e), &e);
    CHECK(back[0] == 1.0f && fabsf(back[7] - 3.140625f) < 1e-6f);
    /* every f16 survives f16 -> f32 -> f16 */
    int bad = 0;
    for (uint32_t x = 0; x < 65536; x++) {
        uint16_t hx = (uint16_t)x, hy;
        float fx;
        nd_wconvert(&fx, ND_WDT_F32, &hx, ND_WDT_F16, 1, NULL);
        nd_wconvert(&hy, ND_WDT_F16, &fx, ND_WDT_F32, 1, NULL);
        if (hy != hx && !((hx & 0x7c00) == 0x7c00 && (hx & 0x3ff)))
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(nd_wconvert(b, ND_WDT_I32, in, ND_WDT_F32, 1, &e) == ND_EUNSUPPORTED);
}

ND_TEST_MAIN(ND_TEST(test_valid_minimal), ND_TEST(test_hostile_headers),
             ND_TEST(test_write_read_roundtrip), ND_TEST(test_dtype_conversion))
