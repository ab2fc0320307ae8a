/* codec/internal.h - shared between the files of codec/ only; not part of the
 * module's contract (that is codec/codec.h). */
#ifndef ND_CODEC_INTERNAL_H
#define ND_CODEC_INTERNAL_H
#include <stdio.h>

#include <stdint.h>

/* libpcap's DLT_* values as pcap_datalink() reports them on Linux. */
enum {
    ND_DLT_NULL = 0,
    ND_DLT_EN10MB = 1,
    ND_DLT_RAW_BSD = 12,
    ND_DLT_RAW_OPENBSD = 14,
    ND_DLT_LOOP = 108,
    ND_DLT_LINUX_SLL = 113,
    ND_DLT_IPV4 = 228,
    ND_DLT_IPV6 = 229,
    ND_DLT_LINUX_SLL2 = 276,
};

/* Offset of the IP header in a frame of the given link type, or -1. */
long nd_link_l3_offset(int linktype, const uint8_t *frame, uint32_t caplen);


#include "codec/codec.h"

/* Label for a new flow from CSV, BPF rules or the fixed label; NULL if none. */
const char *nd_labeler_lookup(nd_labeler *l, const char *capture_path, const nd_packet *first,
                              const nd_pktinfo *pi);
bool nd_labeler_comments(const nd_labeler *l);
/* Label from a pcapml comment "ID,LABEL" into buf; 1 when found. */
int nd_label_from_comment(const char *comment, char *buf, size_t n);


/* Opens path for reading, decompressing gzip transparently (fopencookie).
 * *is_gz tells which it was. NULL with errno set on failure. */
FILE *nd_open_maybe_gz(const char *path, int *is_gz);

/* nd_reader_open with libpcap's microsecond precision (micro = 1), as
 * nprint opens files: its rounding of finer timestamps is what -R shows. */
typedef struct nd_reader nd_reader;
nd_status nd_reader_open_prec(const char *path, int micro, nd_reader **out, nd_err *err);

#endif
