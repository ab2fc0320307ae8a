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
