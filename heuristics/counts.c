/* heuristics/counts.c - names and sums of the per-field change counters. */
#include "heuristics/repair.h"

#include <string.h>

const char *nd_repair_counter_name(int i)
{
    if (i >= 0 && i < ND_F_COUNT)
        return nd_fields[i].name;
    switch (i) {
    case ND_RP_GAP: return "gap";
    case ND_RP_PAYLOAD: return "payload";
    case ND_RP_DIR: return "dir";
    default: return "?";
    }
}

void nd_repair_counts_add(nd_repair_counts *a, const nd_repair_counts *b)
{
    a->flows += b->flows;
    a->rows += b->rows;
    a->packets += b->packets;
    a->rows_padding += b->rows_padding;
    a->rows_dropped += b->rows_dropped;
    a->blocks_vacated += b->blocks_vacated;
    for (int i = 0; i < ND_RP_COUNT; i++) {
        a->seen[i] += b->seen[i];
        a->changed[i] += b->changed[i];
    }
}

void nd_repair_conf_from_image(const nd_layout *l, const nd_conf *img_conf, int n_rows,
                               int payload_bytes, nd_conf *row_conf)
{
    int w = nd_row_width(payload_bytes);
    /* runs of image columns that are adjacent row columns too (the
     * layout's blocks): one copy each per row */
    uint16_t x0[ND_HDR_BITS], c0[ND_HDR_BITS], len[ND_HDR_BITS];
    int nr = 0;
    for (int k = 0; k < l->n_bit_cols;) {
        int c = l->bit_cols[k], n = 1;
        while (k + n < l->n_bit_cols && l->bit_cols[k + n] == c + n)
            n++;
        if (c < w) {
            x0[nr] = (uint16_t)k;
            c0[nr] = (uint16_t)c;
            len[nr++] = (uint16_t)(c + n <= w ? n : w - c);
        }
        k += n;
    }
    for (int i = 0; i < n_rows; i++) {
        nd_conf *rc = row_conf + (size_t)i * (size_t)w;
        memset(rc, ND_CONF_SURE, (size_t)w);
        if (i >= l->packets)
            continue;
        const nd_conf *ic = img_conf + (size_t)i * (size_t)l->width;
        for (int r = 0; r < nr; r++)
            memcpy(rc + c0[r], ic + x0[r], len[r]);
    }
}
