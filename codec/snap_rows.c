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
        if (nd_any_drawn(px, l->n_bit_cols))
            break;
    }
    nd_col_runs *r = malloc(sizeof *r); /* image.c: runs of image columns */
    if (!r) {
        nd_rows_free(out);
        return nd_fail(err, ND_ENOMEM, "out of memory");
    }
    nd_col_runs_of(l, r);
    bool addr_shown[4];
    nd_layout_addr_shown(l, addr_shown);
    for (int y = 0; y <= last; y++) {
        int8_t *row = nd_rows_push(out, err); /* cannot fail: l->packets rows fit */
        nd_conf *rc = row_conf ? row_conf + (size_t)y * ND_HDR_BITS : NULL;
        if (rc)
            memset(rc, ND_CONF_SURE, ND_HDR_BITS);
        size_t at = (size_t)y * w;
        for (int k = 0; k < r->n; k++)
            nd_snap_run(m, fmt, planes, plane, at + r->x0[k], r->len[k], row + r->c0[k],
                        rc ? rc + r->c0[k] : NULL);
        nd_row_fill_addrs(row, addr_shown);
        if (l->timing_cols) {
            nd_snap_run(m, fmt, planes, plane, at + (size_t)l->n_bit_cols,
                        (size_t)l->timing_cols, px, NULL);
            out->gap_us[y] = nd_layout_gap_of_bits(l, px);
        }
    }
    free(r);
    return ND_OK;
}
