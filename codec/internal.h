/* codec/internal.h - shared between the files of codec/ only; not part of the
 * module's contract (that is codec/codec.h). */
#ifndef ND_CODEC_INTERNAL_H
#define ND_CODEC_INTERNAL_H
#include <stdio.h>

#include <stdint.h>
#include <string.h>

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
/* snap.c: pixels [off, off + n) of a planar image whose planes hold
 * `plane` pixels each, snapped (conf may be NULL); snap_rows.c snaps runs
 * of an image row straight into row cells with it. */
void nd_snap_run(nd_snap_mode m, nd_pixfmt fmt, const void *planes, size_t plane, size_t off,
                 size_t n, int8_t *bits, nd_conf *conf);


#include "codec/codec.h"

/* Label for a new flow from CSV, BPF rules or the fixed label; NULL if none. */
const char *nd_labeler_lookup(nd_labeler *l, const char *capture_path, const nd_packet *first,
                              const nd_pktinfo *pi);
bool nd_labeler_comments(const nd_labeler *l);
/* Label from a pcapml comment "ID,LABEL" into buf; 1 when found. */
int nd_label_from_comment(const char *comment, char *buf, size_t n);

/* Walks the packets of a flow that make rows: nd_flow_rows' rows, in order. */
typedef struct nd_flow_walk {
    const nd_flow *f;
    int i;           /* next packet */
    int64_t prev_us; /* time of the last row, -1 before the first */
} nd_flow_walk;
static inline nd_flow_walk nd_flow_walk_start(const nd_flow *f)
{
    return (nd_flow_walk){.f = f, .prev_us = -1};
}
/* The next row into row (nd_row_width(payload_bytes) values), its packet's
 * info and its gap to the previous row in microseconds (0 for the first,
 * never negative); false when no packet is left. */
bool nd_flow_walk_next(nd_flow_walk *w, int payload_bytes, int8_t *row, nd_pktinfo *pi,
                       int64_t *gap_us);

/* Opens path for reading, decompressing gzip transparently (fopencookie).
 * *is_gz tells which it was. NULL with errno set on failure. */
FILE *nd_open_maybe_gz(const char *path, int *is_gz);

/* nd_reader_open with libpcap's microsecond precision (micro = 1), as
 * nprint opens files: its rounding of finer timestamps is what -R shows. */
typedef struct nd_reader nd_reader;
nd_status nd_reader_open_prec(const char *path, int micro, nd_reader **out, nd_err *err);

/* PNG size limit, reading and writing. */
#define ND_PNG_MAX_PIXELS (64u << 20)
/* Writes a PNG file: 8-bit RGB, w x h, image data z (a zlib stream). */
nd_status nd_png_put_file(const char *path, int w, int h, const uint8_t *z, size_t zn, nd_err *err);
/* Writes a file of n bytes in one write(2); a failed write removes it. */
nd_status nd_file_put(const char *path, const uint8_t *data, size_t n, nd_err *err);

/* deflate.c: a deflate block writer for encoders that make their own tokens
 * (literals and matches); see png_bits.c. Bits go out LSB first into a
 * growable buffer. */
typedef struct nd_bitbuf {
    uint8_t *p;
    size_t n, cap;
    uint64_t acc; /* bits not yet in p */
    int nacc;
} nd_bitbuf;
/* Makes room for `more` bytes past n; -1 when out of memory. */
int nd_bits_reserve(nd_bitbuf *b, size_t more);
/* Appends the n <= 56 low bits of v (nothing above them set), LSB first;
 * 8 bytes must be reserved. Whole bytes go out at once (an unaligned 8-byte
 * store), so acc holds under 8 bits between calls. */
static inline void nd_bits_put(nd_bitbuf *b, uint64_t v, int n)
{
    b->acc |= v << b->nacc;
    b->nacc += n;
    memcpy(b->p + b->n, &b->acc, 8); /* little-endian hosts, as the rest of the codec */
    b->n += (size_t)(b->nacc >> 3);
    b->acc >>= b->nacc & 56; /* nacc <= 63 here */
    b->nacc &= 7;
}
/* Appends src's bits (src->n bytes and src->acc's src->nacc); src->n + 16
 * bytes must be reserved. */
void nd_bits_append(nd_bitbuf *b, const nd_bitbuf *src);
/* Pads to a byte boundary; -1 when out of memory. */
int nd_bits_align(nd_bitbuf *b);
/* A literal token is the byte itself; a match copies len (3..258) bytes
 * from dist (1..32768) bytes back. Token layout (32 bits): literal/length
 * symbol (9 bits), length extra value (5), distance symbol (5), distance
 * extra value (13). */
static inline uint32_t nd_tok_match(int len, int dist)
{
    /* RFC 1951 3.2.5 by arithmetic: past the first 8 lengths (4 distances)
     * each power of two holds 4 (2) symbols of one extra-bit count */
    int l = len - 3, d = dist - 1, ls, lx = 0, ds, dx = 0;
    if (len == 258) {
        ls = 28;
    } else if (l < 8) {
        ls = l;
    } else {
        int e = 29 - __builtin_clz((unsigned)l); /* floor(log2 l) - 2 */
        ls = 4 * (e + 1) + ((l >> e) & 3);
        lx = l & ((1 << e) - 1);
    }
    if (d < 4) {
        ds = d;
    } else {
        int e = 30 - __builtin_clz((unsigned)d); /* floor(log2 d) - 1 */
        ds = 2 * (e + 1) + ((d >> e) & 1);
        dx = d & ((1 << e) - 1);
    }
    return (uint32_t)(257 + ls) | (uint32_t)lx << 9 | (uint32_t)ds << 14 | (uint32_t)dx << 19;
}

/* A block's Huffman codes (RFC 1951 3.2.2, bit-reversed for LSB-first
 * output) for literal/length symbols 0..285 and distance symbols 0..29. */
typedef struct nd_huff {
    uint8_t llen[286], dlen[30];
    uint16_t lcode[286], dcode[30];
} nd_huff;
/* Codes of at most 15 bits fitted to the symbol counts (zero: no code). */
void nd_huff_from_freq(nd_huff *h, const uint32_t *lf, const uint32_t *df);
/* The bits of one match under h (its symbols must have codes); *nbits <= 48. */
uint64_t nd_huff_match(const nd_huff *h, int len, int dist, int *nbits);
/* The block header: BFINAL (final), BTYPE 2 and h's code lengths; or only
 * the code lengths (what follows BTYPE). -1 when out of memory. */
int nd_deflate_header(nd_bitbuf *b, const nd_huff *h, int final);
int nd_deflate_tables(nd_bitbuf *b, const nd_huff *h);
/* One dynamic-Huffman block: the tokens, `repeat` times over, then the end
 * of block; final sets BFINAL. -1 when out of memory. */
int nd_deflate_block(nd_bitbuf *b, const uint32_t *tok, size_t n, uint32_t repeat, int final);
/* The same block in parts, for writers that send one block many times: the
 * header (BFINAL, BTYPE, code lengths), the tokens' bits once and the end
 * of block code. nd_deflate_block is parts then put. */
typedef struct nd_block_parts {
    nd_bitbuf head, once;
    uint64_t eob;
    int eob_n;
} nd_block_parts;
int nd_deflate_block_parts(const uint32_t *tok, size_t n, uint32_t repeat, int final,
                           nd_block_parts *out);
/* head, once `repeat` times, end of block. -1 when out of memory. */
int nd_deflate_block_put(nd_bitbuf *b, const nd_block_parts *p, uint32_t repeat);
void nd_block_parts_free(nd_block_parts *p);

/* png_bits.c: the zlib stream of nd_png_write_bits' image into out; memo
 * (NULL: none) keeps the padding blocks of w-wide images up to h rows for
 * the next image. -1 when out of memory. */
typedef struct nd_pad_memo nd_pad_memo;
nd_pad_memo *nd_pad_memo_new(int w, int h);
void nd_pad_memo_free(nd_pad_memo *m);
int nd_png_bits_zstream(const int8_t *bits, int w, int n, int h, nd_pad_memo *memo,
                        nd_bitbuf *out);

/* image.c: a layout's image columns come in a few runs that map to
 * consecutive row columns (NetDiffusion's layout: four), so an image row is
 * a handful of memcpys. */
typedef struct nd_col_runs {
    int n;
    uint16_t x0[ND_HDR_BITS], c0[ND_HDR_BITS], len[ND_HDR_BITS];
} nd_col_runs;
void nd_col_runs_of(const nd_layout *l, nd_col_runs *r);
/* The row rules that rows from bits (image.c) and from a generated image
 * (snap_rows.c) share: is any of n values drawn (not vacant); which address
 * fields (IPv4 src/dst, IPv6 src/dst) the layout shows; the omitted ones
 * zeroed in a row whose IP block exists; the gap a row's timing values
 * encode (-1: all vacant). */
bool nd_any_drawn(const int8_t *b, int n);
void nd_layout_addr_shown(const nd_layout *l, bool shown[4]);
void nd_row_fill_addrs(int8_t *row, const bool shown[4]);
int64_t nd_layout_gap_of_bits(const nd_layout *l, const int8_t *timing);
/* The l->width image values of one row (nd_row_width(0) or wider) whose gap
 * to the previous row is gap_us (negative: none): the shown columns, then
 * the gap's bits. */
void nd_image_row(const nd_layout *l, const nd_col_runs *r, const int8_t *row, int64_t gap_us,
                  int8_t *out);

/* png.c: the PNG file (signature, IHDR, IDAT chunks of z, IEND) through
 * libpng, appended to out. */
nd_status nd_png_in_memory(int w, int h, const uint8_t *z, size_t zn, nd_bitbuf *out,
                           nd_err *err);

#endif
