/* heuristics/counts.c - names and sums of the per-field change counters. */
#include "heuristics/repair.h"

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

void nd_repair_conf_from_image(const nd_layout *l, const float *img_conf, int n_rows,
                               int payload_bytes, float *row_conf)
{
    int w = nd_row_width(payload_bytes);
    for (int i = 0; i < n_rows; i++) {
        float *rc = row_conf + (size_t)i * (size_t)w;
        for (int c = 0; c < w; c++)
            rc[c] = 1.0f;
        if (i >= l->packets)
            continue;
        const float *ic = img_conf + (size_t)i * (size_t)l->width;
        for (int k = 0; k < l->n_bit_cols; k++)
            if (l->bit_cols[k] < w)
                rc[l->bit_cols[k]] = ic[k];
    }
}
