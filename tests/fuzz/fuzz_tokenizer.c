/* libFuzzer: the CLIP tokenizer on arbitrary bytes (prompts come from HTTP).
 * Checks the invariants: ids in range, framing shape, raw count consistent. */
#include "model/sd.h"

#include <stdlib.h>
#include <string.h>

static sd_tokenizer *tok;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tok && sd_tokenizer_new(&tok, NULL) != ND_OK)
        abort();
    int32_t ids[256];
    size_t n = 0;
    nd_status st = sd_tokenize_raw(tok, (const char *)data, size, ids, 256, &n, NULL);
    if (st == ND_OK) {
        for (size_t i = 0; i < n && i < 256; i++)
            if (ids[i] < 0 || ids[i] >= SD_VOCAB_SIZE)
                abort();
    } else if (st != ND_EFORMAT && st != ND_EINVAL) {
        abort();
    }
    /* the NUL-terminated entry points on the same text */
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    int32_t f[SD_TOKENS];
    bool trunc;
    if (sd_tokenize(tok, s, f, &trunc, NULL) == ND_OK) {
        if (f[0] != SD_TOK_BOS || f[SD_TOKENS - 1] != SD_TOK_EOS)
            abort();
        int32_t ch[3 * SD_TOKENS];
        size_t nc = 0;
        if (sd_tokenize_chunks(tok, s, ch, 3, &nc, NULL) != ND_OK || nc < 1 || nc > 3 ||
            memcmp(ch, f, sizeof f) != 0)
            abort();
    }
    free(s);
    return 0;
}
