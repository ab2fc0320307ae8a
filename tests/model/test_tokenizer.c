/* tests/model/test_tokenizer.c - the CLIP tokenizer against the ids that
 * transformers.CLIPTokenizer gives (tests/fixtures/model/tokenizer.json, made
 * by train/make_model_fixtures.py), the framing, chunks and bad input. */
#include <jansson.h>

#include "model/sd.h"
#include "tests/harness.h"

#define FX "tests/fixtures/model/tokenizer.json"

static sd_tokenizer *tok;

static sd_tokenizer *get_tok(void)
{
    if (!tok) {
        nd_err err = {{0}};
        nd_status st = sd_tokenizer_new(&tok, &err);
        CHECKF(st == ND_OK, "sd_tokenizer_new: %s", err.msg);
    }
    return tok;
}

static void test_vocab(void)
{
    sd_tokenizer *t = get_tok();
    if (!t)
        return;
    CHECK(!strcmp(sd_token_str(t, 0), "!"));
    CHECK(!strcmp(sd_token_str(t, 256), "!</w>"));
    CHECK(!strcmp(sd_token_str(t, 320), "a</w>"));
    CHECK(!strcmp(sd_token_str(t, 2368), "cat</w>"));
    CHECK(!strcmp(sd_token_str(t, SD_TOK_BOS), "<|startoftext|>"));
    CHECK(!strcmp(sd_token_str(t, SD_TOK_EOS), "<|endoftext|>"));
    CHECK(sd_token_str(t, SD_VOCAB_SIZE) == NULL);
    CHECK(sd_token_str(t, -1) == NULL);
}

static int ids_equal(json_t *arr, const int32_t *ids, size_t n)
{
    if (json_array_size(arr) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(arr, i)) != ids[i])
            return 0;
    return 1;
}

static void print_ids(const char *what, const int32_t *ids, size_t n)
{
    printf("      %s:", what);
    for (size_t i = 0; i < n && i < 40; i++)
        printf(" %d", ids[i]);
    printf("\n");
}

static void test_fixture_prompts(void)
{
    sd_tokenizer *t = get_tok();
    json_error_t je;
    json_t *root = json_load_file(FX, 0, &je);
    CHECKF(root != NULL, "%s: %s", FX, je.text);
    if (!t || !root)
        return;
    json_t *rows = json_object_get(root, "prompts");
    CHECK(json_array_size(rows) >= 90);
    int32_t raw[1024], framed[SD_TOKENS];
    size_t bad = 0;
    for (size_t r = 0; r < json_array_size(rows); r++) {
        json_t *row = json_array_get(rows, r);
        const char *p = json_string_value(json_object_get(row, "prompt"));
        json_t *want = json_object_get(row, "ids");
        size_t n = 0;
        nd_err err = {{0}};
        nd_status st = sd_tokenize_raw(t, p, strlen(p), raw, 1024, &n, &err);
        CHECKF(st == ND_OK, "prompt %zu: %s", r, err.msg);
        bool trunc = false;
        st = sd_tokenize(t, p, framed, &trunc, &err);
        CHECKF(st == ND_OK, "prompt %zu: %s", r, err.msg);
        CHECK(trunc == (n > 75));
        int ok_raw = n <= 1024 && ids_equal(want, raw, n);
        int ok_framed = ids_equal(json_object_get(row, "framed"), framed, SD_TOKENS);
        if (!ok_raw || !ok_framed) {
            if (bad++ < 8) {
                printf("    prompt %zu %s:\n", r, p);
                print_ids("got ", raw, n);
                printf("      want:");
                for (size_t i = 0; i < json_array_size(want) && i < 40; i++)
                    printf(" %lld", (long long)json_integer_value(json_array_get(want, i)));
                printf("\n");
            }
        }
        CHECKF(ok_raw && ok_framed, "prompt %zu differs from transformers", r);
    }
    json_decref(root);
}

static void test_framing(void)
{
    sd_tokenizer *t = get_tok();
    if (!t)
        return;
    int32_t ids[SD_TOKENS];
    bool trunc = true;
    nd_err err;
    CHECK_OK(sd_tokenize(t, "", ids, &trunc, &err), &err);
    CHECK(!trunc);
    CHECK_EQ_INT(ids[0], SD_TOK_BOS);
    for (int i = 1; i < SD_TOKENS; i++)
        CHECK_EQ_INT(ids[i], SD_TOK_PAD);
    const int32_t want[] = {49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407};
    CHECK_OK(sd_tokenize(t, "a photograph of an astronaut riding a horse", ids, NULL, &err), &err);
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(ids[i], want[i]);
    CHECK_EQ_INT(ids[10], SD_TOK_PAD);
    CHECK_EQ_INT(ids[76], SD_TOK_PAD);
    /* 80 words: truncated to 75 + EOS */
    char buf[512] = "";
    for (int i = 0; i < 80; i++)
        strcat(buf, "cat ");
    CHECK_OK(sd_tokenize(t, buf, ids, &trunc, &err), &err);
    CHECK(trunc);
    CHECK_EQ_INT(ids[75], 2368);
    CHECK_EQ_INT(ids[76], SD_TOK_EOS);
    /* chunks: 80 -> 75 + 5 */
    int32_t ch[3 * SD_TOKENS];
    size_t nc = 0;
    CHECK_OK(sd_tokenize_chunks(t, buf, ch, 3, &nc, &err), &err);
    CHECK_EQ_INT(nc, 2);
    CHECK_EQ_INT(ch[0], SD_TOK_BOS);
    CHECK_EQ_INT(ch[76], SD_TOK_EOS);
    CHECK_EQ_INT(ch[77], SD_TOK_BOS);
    CHECK_EQ_INT(ch[77 + 5], 2368);
    CHECK_EQ_INT(ch[77 + 6], SD_TOK_EOS);
    CHECK_EQ_INT(ch[77 + 7], SD_TOK_PAD);
    CHECK_OK(sd_tokenize_chunks(t, buf, ch, 1, &nc, &err), &err);
    CHECK_EQ_INT(nc, 1);
    CHECK_OK(sd_tokenize_chunks(t, "", ch, 3, &nc, &err), &err);
    CHECK_EQ_INT(nc, 1);
    CHECK_EQ_INT(ch[1], SD_TOK_EOS);
}

static void test_bad_input(void)
{
    sd_tokenizer *t = get_tok();
    if (!t)
        return;
    int32_t ids[SD_TOKENS];
    nd_err err;
    const char *bad[] = {"\xff", "a\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"};
    for (size_t i = 0; i < ND_ARRAY_LEN(bad); i++)
        CHECK_EQ_INT(sd_tokenize(t, bad[i], ids, NULL, &err), ND_EFORMAT);
    size_t n;
    char *big = malloc(SD_PROMPT_MAX + 2);
    memset(big, 'a', SD_PROMPT_MAX + 1);
    big[SD_PROMPT_MAX + 1] = 0;
    CHECK_EQ_INT(sd_tokenize_raw(t, big, SD_PROMPT_MAX + 1, ids, SD_TOKENS, &n, &err), ND_EINVAL);
    /* the longest allowed single word: BPE stays fast and exact-length ids */
    clock_t c0 = clock();
    CHECK_OK(sd_tokenize_raw(t, big, SD_PROMPT_MAX, ids, SD_TOKENS, &n, &err), &err);
    CHECK(n > 0 && n <= SD_PROMPT_MAX);
    CHECKF(clock() - c0 < 5 * CLOCKS_PER_SEC, "64 KiB word took too long");
    free(big);
    /* NUL inside the raw API is an ordinary control character */
    CHECK_OK(sd_tokenize_raw(t, "a\0b", 3, ids, SD_TOKENS, &n, &err), &err);
    CHECK_EQ_INT(n, 3);
}

static void test_done(void)
{
    sd_tokenizer_free(tok);
    tok = NULL;
}

ND_TEST_MAIN(ND_TEST(test_vocab), ND_TEST(test_fixture_prompts), ND_TEST(test_framing),
             ND_TEST(test_bad_input), ND_TEST(test_done))
