/* codec/snap_rows.c - a generated image straight to rows and per-cell
 * confidence (nd_snap_rows).
 *
 * The same result as nd_snap_image, then nd_rows_from_bits, then the
 * repair's nd_repair_conf_from_image, which pass over two image-sized
 * buffers (bits and confidence, 2 MB for a NetDiffusion image, more than
 * a core's L2) three times between them: here each run of an image row is
 * snapped into its row cells, and its confidence into the cells' slots,
 * while the row is in the cache. The row rules (trailing padding rows end
 * the flow; omitted address fields are zeros where their block exists;
 * timing columns) are nd_rows_from_bits', and tests/codec/test_snap.c
 * checks that both give the same rows and confidence. */
#include "codec/codec.h"
#include "codec/internal.h"

#include <stdlib.h>

static bool any_drawn(const int8_t *b, int n)
{
    for (int i = 0; i < n; i++)
        if (b[i] != ND_VACANT)
            return true;
    return false;
}

nd_status nd_snap_rows(nd_snap_mode m, nd_pixfmt fmt, const void *planes, const nd_layout *l,
                       nd_rows *out, nd_conf *row_conf, nd_err *err)
{
    nd_status st = nd_rows_init(out, 0, l->packets, err);
    if (st)
        return st;
    size_t w = (size_t)l->width, plane = w * (size_t)l->packets;
    int8_t px[ND_HDR_BITS + ND_MAX_TIMING_COLS]; /* one image row's bits */
    /* from the bottom: the flow ends after the last row with a drawn bit */
    int last = l->packets - 1;
    for (; last >= 0; last--) {
        nd_snap_run(m, fmt, planes, plane, (size_t)last * w, (size_t)l->n_bit_cols, px, NULL);
        if (any_drawn(px, l->n_bit_cols))
            break;
    }
    nd_col_runs *r = malloc(sizeof *r); /* image.c: runs of image columns */
    if (!r) {
        nd_rows_free(out);
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    nd_col_runs_of(l, r);
    static const nd_field_id addr_field[4] = {ND_F_IPV4_SRC, ND_F_IPV4_DST, ND_F_IPV6_SRC,
                                              ND_F_IPV6_DST};
    bool addr_shown[4] = {false, false, false, false};
    for (int k = 0; k < 4; k++)
        for (int x = 0; x < l->n_bit_cols; x++)
            addr_shown[k] |= l->bit_cols[x] == nd_fields[addr_field[k]].col;
    for (int y = 0; y <= last; y++) {
        int8_t *row = nd_rows_push(out, err); /* cannot fail: l->packets rows fit */
        nd_conf *rc = row_conf ? row_conf + (size_t)y * ND_HDR_BITS : NULL;
        if (rc)
            memset(rc, ND_CONF_SURE, ND_HDR_BITS);
        size_t at = (size_t)y * w;
        for (int k = 0; k < r->n; k++)
            nd_snap_run(m, fmt, planes, plane, at + r->x0[k], r->len[k], row + r->c0[k],
                        rc ? rc + r->c0[k] : NULL);
        bool v4 = any_drawn(row + ND_COL_IPV4, 8), v6 = any_drawn(row + ND_COL_IPV6, 8);
        for (int k = 0; k < 4; k++) {
            const nd_field *fd = &nd_fields[addr_field[k]];
            if (!addr_shown[k] && (k < 2 ? v4 : v6))
                memset(row + fd->col, 0, fd->width);
        }
        if (l->timing_cols) {
            nd_snap_run(m, fmt, planes, plane, at + (size_t)l->n_bit_cols,
                        (size_t)l->timing_cols, px, NULL);
            uint32_t q = 0;
            for (int k = 0; k < l->timing_cols; k++)
                q = (q << 1) | (uint32_t)(px[k] == 1);
            out->gap_us[y] = any_drawn(px, l->timing_cols) ? nd_layout_gap_us(l, q) : -1;
        }
    }
    free(r);
    return ND_OK;
}
