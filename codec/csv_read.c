/* codec/csv_read.c - nPrint CSV files (nprint's own and NetDiffusion's). */
#include "codec/codec.h"
#include "codec/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { COL_BIT, COL_INDEX, COL_RTS, COL_TVSEC, COL_TVUSEC, COL_SKIP };

typedef struct {
    int kind;
    int col;      /* row column for COL_BIT */
} col_role;

static int is_index_name(const char *s)
{
    static const char *const names[] = {"src_ip", "dst_ip", "src_prt", "dst_prt", "flow",
                                        "tx_mac", "", "Unnamed: 0"};
    for (size_t i = 0; i < ND_ARRAY_LEN(names); i++)
        if (!strcmp(s, names[i]))
            return 1;
    return 0;
}

nd_status nd_csv_read(const char *path, nd_rows *out, nd_err *err)
{
    memset(out, 0, sizeof *out);
    int is_gz = 0;
    FILE *f = nd_open_maybe_gz(path, &is_gz);
    if (!f)
        return nd_fail(err, ND_EIO, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    col_role *roles = NULL;
    int ncols = 0, max_payload_col = -1, n_bits = 0;
    nd_status st = ND_OK;
    long lineno = 0;
    bool rows_ready = false;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (strlen(line) != (size_t)len) {
            st = nd_fail(err, ND_EFORMAT, "%s:%ld: NUL byte in a text file", path, lineno);
            goto done;
        }
        if (lineno == 1) {
            /* header: every column must be known */
            int capr = 2048;
            roles = malloc((size_t)capr * sizeof *roles);
            if (!roles) {
                st = nd_fail(err, ND_ENOMEM, "out of memory");
                goto done;
            }
            char *s = line;
            for (;;) {
                char *c = strchr(s, ',');
                if (c)
                    *c = '\0';
                if (ncols == capr) {
                    capr *= 2;
                    col_role *nr = realloc(roles, (size_t)capr * sizeof *nr);
                    if (!nr || capr > 8 * ND_MAX_PAYLOAD_BYTES + 4096) {
                        free(nr ? nr : roles);
                        roles = NULL;
                        st = nd_fail(err, ND_EFORMAT, "%s:1: too many columns", path);
                        goto done;
                    }
                    roles = nr;
                }
                col_role r = {COL_SKIP, -1};
                int bc = nd_col_find(s);
                if (bc >= 0) {
                    r.kind = COL_BIT;
                    r.col = bc;
                    n_bits++;
                    if (bc >= ND_HDR_BITS && bc > max_payload_col)
                        max_payload_col = bc;
                } else if (!strcmp(s, "rts")) {
                    r.kind = COL_RTS;
                } else if (!strcmp(s, "tv_sec")) {
                    r.kind = COL_TVSEC;
                } else if (!strcmp(s, "tv_usec")) {
                    r.kind = COL_TVUSEC;
                } else if (ncols == 0 && is_index_name(s)) {
                    r.kind = COL_INDEX;
                } else {
                    st = nd_fail(err, ND_EFORMAT, "%s:1: unknown column '%.60s' (column %d)",
                                 path, s, ncols + 1);
                    goto done;
                }
                roles[ncols++] = r;
                if (!c)
                    break;
                s = c + 1;
            }
            if (n_bits == 0) {
                st = nd_fail(err, ND_EFORMAT, "%s:1: no nPrint bit columns in the header", path);
                goto done;
            }
            int pb = max_payload_col < 0 ? 0 : (max_payload_col - ND_HDR_BITS) / 8 + 1;
            if ((st = nd_rows_init(out, pb, 1024, err)))
                goto done;
            rows_ready = true;
            continue;
        }
        if (len == 0)
            continue;
        int8_t *row = nd_rows_push(out, err);
        if (!row) {
            st = ND_ENOMEM;
            goto done;
        }
        char *s = line;
        int64_t tv_sec = -1, tv_usec = -1;
        for (int i = 0; i < ncols; i++) {
            char *c = strchr(s, ',');
            if (!c && i != ncols - 1) {
                st = nd_fail(err, ND_EFORMAT, "%s:%ld: %d fields, the header has %d", path,
                             lineno, i + 1, ncols);
                goto done;
            }
            if (c)
                *c = '\0';
            const col_role *r = &roles[i];
            if (r->kind == COL_BIT) {
                if (s[0] == '1' && !s[1])
                    row[r->col] = 1;
                else if (s[0] == '0' && !s[1])
                    row[r->col] = 0;
                else if (s[0] == '-' && s[1] == '1' && !s[2])
                    row[r->col] = ND_VACANT;
                else {
                    st = nd_fail(err, ND_EFORMAT, "%s:%ld: column %d: '%.20s' is not 1, 0 or -1",
                                 path, lineno, i + 1, s);
                    goto done;
                }
            } else if (r->kind != COL_SKIP) {
                char *end;
                errno = 0;
                long long v = r->kind == COL_INDEX ? 0 : strtoll(s, &end, 10);
                if (r->kind != COL_INDEX && (errno || *end || !*s)) {
                    st = nd_fail(err, ND_EFORMAT, "%s:%ld: column %d: '%.20s' is not a number",
                                 path, lineno, i + 1, s);
                    goto done;
                }
                if (r->kind == COL_INDEX)
                    snprintf(out->index[out->n - 1], sizeof out->index[0], "%.47s", s);
                else if (r->kind == COL_RTS)
                    out->gap_us[out->n - 1] = v < 0 ? -1 : v;
                else if (r->kind == COL_TVSEC)
                    tv_sec = v;
                else
                    tv_usec = v;
            }
            if (i < ncols - 1) {
                s = c + 1;
            } else if (c) {
                st = nd_fail(err, ND_EFORMAT, "%s:%ld: more fields than the header's %d", path,
                             lineno, ncols);
                goto done;
            }
        }
        (void)tv_sec;
        (void)tv_usec;
    }
    if (lineno == 0)
        st = nd_fail(err, ND_EFORMAT, "%s: empty file", path);
    else if (ferror(f))
        st = nd_fail(err, ND_EIO, "%s: read error", path);
done:
    free(line);
    free(roles);
    fclose(f);
    if (st && rows_ready)
        nd_rows_free(out);
    return st;
}
