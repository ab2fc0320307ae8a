/* codec/image.c - rows <-> NetDiffusion's three-colour images. */
#include "codec/codec.h"
#include "codec/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void nd_layout_netdiffusion(nd_layout *l, int packets)
{
    memset(l, 0, sizeof *l);
    l->packets = packets;
    /* every header column but ipv4_src/dst and ipv6_src/dst, in order */
    for (int c = 0; c < ND_HDR_BITS; c++) {
        bool addr = (c >= nd_fields[ND_F_IPV4_SRC].col && c < nd_fields[ND_F_IPV4_OPT].col) ||
                    (c >= nd_fields[ND_F_IPV6_SRC].col && c < ND_COL_TCP);
        if (!addr)
            l->bit_cols[l->n_bit_cols++] = (uint16_t)c;
    }
    l->timing_scale = 8;
    l->width = l->n_bit_cols;
}

nd_status nd_layout_init(nd_layout *l, int packets, int timing_cols, int timing_scale,
                         nd_err *err)
{
    if (packets < 1 || packets > 65536)
        return nd_fail(err, ND_EINVAL, "packet budget %d out of range 1..65536", packets);
    if (timing_cols < 0 || timing_cols > ND_MAX_TIMING_COLS)
        return nd_fail(err, ND_EINVAL, "timing columns %d out of range 0..%d", timing_cols,
                       ND_MAX_TIMING_COLS);
    if (timing_scale < 1 || timing_scale > 1024)
        return nd_fail(err, ND_EINVAL, "timing scale %d out of range 1..1024", timing_scale);
    nd_layout_netdiffusion(l, packets);
    l->timing_cols = timing_cols;
    l->timing_scale = timing_scale;
    l->width = l->n_bit_cols + timing_cols;
    return ND_OK;
}

uint32_t nd_layout_gap_q(const nd_layout *l, int64_t gap_us)
{
    if (gap_us <= 0 || l->timing_cols == 0)
        return 0;
    double q = floor(log2(1.0 + (double)gap_us) * l->timing_scale + 0.5);
    double qmax = (double)((1u << l->timing_cols) - 1);
    return (uint32_t)(q > qmax ? qmax : q);
}

int64_t nd_layout_gap_us(const nd_layout *l, uint32_t q)
{
    if (q == 0 || l->timing_cols == 0)
        return 0;
    double us = exp2((double)q / l->timing_scale) - 1.0;
    return (int64_t)floor(us + 0.5);
}

void nd_col_runs_of(const nd_layout *l, nd_col_runs *r)
{
    r->n = 0;
    for (int x = 0; x < l->n_bit_cols; x++) {
        if (r->n && l->bit_cols[x] == r->c0[r->n - 1] + r->len[r->n - 1] &&
            x == r->x0[r->n - 1] + r->len[r->n - 1]) {
            r->len[r->n - 1]++;
        } else {
            r->x0[r->n] = (uint16_t)x;
            r->c0[r->n] = l->bit_cols[x];
            r->len[r->n] = 1;
            r->n++;
        }
    }
}

void nd_image_row(const nd_layout *l, const nd_col_runs *r, const int8_t *row, int64_t gap_us,
                  int8_t *out)
{
    for (int k = 0; k < r->n; k++)
        memcpy(out + r->x0[k], row + r->c0[k], r->len[k]);
    if (l->timing_cols) {
        uint32_t q = nd_layout_gap_q(l, gap_us < 0 ? 0 : gap_us);
        for (int k = 0; k < l->timing_cols; k++)
            out[l->n_bit_cols + k] = (int8_t)((q >> (l->timing_cols - 1 - k)) & 1);
    }
}

/* Image row y's l->width values: the shown columns, then the gap's bits. */
static void row_values(const nd_layout *l, const nd_col_runs *r, const nd_rows *t, int y,
                       int8_t *out)
{
    nd_image_row(l, r, nd_rows_at(t, y), t->gap_us ? t->gap_us[y] : -1, out);
}

int nd_image_bits_from_rows(const nd_layout *l, const nd_rows *t, int8_t *bits)
{
    int n = t->n < l->packets ? t->n : l->packets;
    nd_col_runs r;
    nd_col_runs_of(l, &r);
    for (int y = 0; y < n; y++)
        row_values(l, &r, t, y, bits + (size_t)y * (size_t)l->width);
    return n;
}

static const uint8_t colour[3][3] = {{0, 0, 255}, {0, 255, 0}, {255, 0, 0}}; /* -1, 0, 1 */

void nd_image_from_rows(const nd_layout *l, const nd_rows *t, uint8_t *rgb)
{
    int n = t->n < l->packets ? t->n : l->packets;
    size_t stride = (size_t)l->width * 3;
    nd_col_runs r;
    nd_col_runs_of(l, &r);
    int8_t v[ND_HDR_BITS + ND_MAX_TIMING_COLS];
    for (int y = 0; y < l->packets; y++) {
        uint8_t *px = rgb + (size_t)y * stride;
        if (y >= n) {
            /* padding: one blue row, then copies of it */
            if (y == n)
                for (int x = 0; x < l->width; x++)
                    memcpy(px + 3 * x, colour[0], 3);
            else
                memcpy(px, rgb + (size_t)n * stride, stride);
            continue;
        }
        row_values(l, &r, t, y, v);
        for (int x = 0; x < l->width; x++)
            memcpy(px + 3 * x, colour[v[x] == 1 ? 2 : v[x] == 0 ? 1 : 0], 3);
    }
}

bool nd_any_drawn(const int8_t *b, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, b + i, 8);
        if (v != 0xffffffffffffffffull)
            return true;
    }
    for (; i < n; i++)
        if (b[i] != ND_VACANT)
            return true;
    return false;
}

static const nd_field_id addr_field[4] = {ND_F_IPV4_SRC, ND_F_IPV4_DST, ND_F_IPV6_SRC,
                                          ND_F_IPV6_DST};

void nd_layout_addr_shown(const nd_layout *l, bool shown[4])
{
    for (int k = 0; k < 4; k++) {
        shown[k] = false;
        for (int x = 0; x < l->n_bit_cols; x++)
            shown[k] |= l->bit_cols[x] == nd_fields[addr_field[k]].col;
    }
}

void nd_row_fill_addrs(int8_t *row, const bool shown[4])
{
    bool v4 = nd_any_drawn(row + ND_COL_IPV4, 8), v6 = nd_any_drawn(row + ND_COL_IPV6, 8);
    for (int k = 0; k < 4; k++) {
        const nd_field *fd = &nd_fields[addr_field[k]];
        if (!shown[k] && (k < 2 ? v4 : v6))
            memset(row + fd->col, 0, fd->width);
    }
}

int64_t nd_layout_gap_of_bits(const nd_layout *l, const int8_t *t)
{
    if (!nd_any_drawn(t, l->timing_cols))
        return -1;
    uint32_t q = 0;
    for (int k = 0; k < l->timing_cols; k++)
        q = (q << 1) | (uint32_t)(t[k] == 1);
    return nd_layout_gap_us(l, q);
}

nd_status nd_rows_from_bits(const nd_layout *l, const int8_t *bits, nd_rows *out, nd_err *err)
{
    nd_status st = nd_rows_init(out, 0, l->packets, err);
    if (st)
        return st;
    /* which address fields the layout shows (NetDiffusion's shows none) */
    bool addr_shown[4];
    nd_layout_addr_shown(l, addr_shown);
    /* the flow ends after the last row that has any non-vacant bit */
    int last = -1;
    for (int y = l->packets - 1; y >= 0 && last < 0; y--)
        if (nd_any_drawn(bits + (size_t)y * (size_t)l->width, l->n_bit_cols))
            last = y;
    nd_col_runs *runs = malloc(sizeof *runs);
    if (!runs) {
        nd_rows_free(out);
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    nd_col_runs_of(l, runs);
    for (int y = 0; y <= last; y++) {
        const int8_t *b = bits + (size_t)y * (size_t)l->width;
        int8_t *row = nd_rows_push(out, err);
        if (!row) {
            free(runs);
            nd_rows_free(out);
            return ND_ENOMEM;
        }
        for (int k = 0; k < runs->n; k++)
            memcpy(row + runs->c0[k], b + runs->x0[k], runs->len[k]);
        nd_row_fill_addrs(row, addr_shown);
        if (l->timing_cols)
            out->gap_us[out->n - 1] = nd_layout_gap_of_bits(l, b + l->n_bit_cols);
    }
    free(runs);
    return ND_OK;
}
