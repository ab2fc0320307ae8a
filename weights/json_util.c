/* weights/json_util.c - JSON and small-file reading with limits, for headers
 * and config files that come from outside. */
#include "weights/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ND_WJSON_MAX_DEPTH 64

/* jansson recurses once per nesting level; a hostile "[[[[..." would use the
 * stack, so depth is checked first with a scan that skips strings. */
static int json_depth_ok(const char *s, size_t n)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > ND_WJSON_MAX_DEPTH)
                return 0;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return 1;
}

json_t *nd_wjson_load(const char *buf, size_t len, nd_err *err)
{
    if (!json_depth_ok(buf, len)) {
        nd_fail(err, ND_EFORMAT, "JSON nested deeper than %d levels", ND_WJSON_MAX_DEPTH);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        nd_fail(err, ND_EFORMAT, "bad JSON at line %d column %d: %s", je.line, je.column,
                je.text);
    return j;
}

nd_status nd_wread_file(const char *path, size_t max, char **out, size_t *len, nd_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return nd_fail(err, ND_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        fclose(f);
        return nd_fail(err, ND_EFORMAT, "%s: not a regular file of at most %zu bytes", path,
                       max);
    }
    char *b = malloc((size_t)st.st_size + 1);
    if (!b) {
        fclose(f);
        return nd_fail(err, ND_ENOMEM, "%s: out of memory", path);
    }
    size_t n = fread(b, 1, (size_t)st.st_size, f);
    fclose(f);
    if (n != (size_t)st.st_size) {
        free(b);
        return nd_fail(err, ND_EIO, "%s: short read", path);
    }
    b[n] = 0;
    *out = b;
    *len = n;
    return ND_OK;
}
