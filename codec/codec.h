/* codec/codec.h - a flow becomes a picture, a picture becomes a flow.
 *
 * The whole public contract of the codec module:
 *   captures (pcap, pcapng, gzip'd either)  -> packets      (nd_reader)
 *   packets                                 -> flows        (nd_flows_*)
 *   packets                                 -> nPrint rows  (nd_row_encode)
 *   nPrint rows                            <-> nPrint CSV   (nd_csv_*)
 *   nPrint rows                            <-> RGB image    (nd_image_*, nd_layout)
 *   RGB image                              <-> PNG          (nd_png_*)
 *   generated pixels                        -> rows + confidence (nd_snap_*)
 *   rows                                    -> wire bytes   (nd_row_to_bytes, raw inverse)
 *   packets                                 -> pcap/pcapng  (nd_capwriter)
 *
 * Rows. A row is an int8_t array of nd_row_width(payload_bytes) values, each
 * 1, 0 or ND_VACANT (-1): the 1408 header bit columns of nPrint 1.2.1's
 * `-4 -6 -t -u -i` in nPrint's order (ipv4 480, ipv6 320, tcp 480, udp 64,
 * icmp 64; every field MSB first; options left-aligned), then 8*payload_bytes
 * payload bits. All five blocks are always present in a row; which ones a CSV
 * shows is the writer's choice (nd_nprint_opts).
 *
 * Ownership: functions that return a pointer through an out-parameter hand
 * the caller ownership, to be released with the matching *_free / *_close.
 * Nothing keeps a pointer to caller memory past the call unless it says so.
 * No function here prints; errors come back as nd_status + nd_err. */
#ifndef ND_CODEC_H
#define ND_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/nd.h"

/* ------------------------------------------------------------------ layout */

#define ND_VACANT (-1)

enum nd_block { ND_BLK_IPV4, ND_BLK_IPV6, ND_BLK_TCP, ND_BLK_UDP, ND_BLK_ICMP, ND_BLK_COUNT };

#define ND_BITS_IPV4 480
#define ND_BITS_IPV6 320
#define ND_BITS_TCP 480
#define ND_BITS_UDP 64
#define ND_BITS_ICMP 64
#define ND_COL_IPV4 0
#define ND_COL_IPV6 (ND_COL_IPV4 + ND_BITS_IPV4)  /* 480  */
#define ND_COL_TCP (ND_COL_IPV6 + ND_BITS_IPV6)   /* 800  */
#define ND_COL_UDP (ND_COL_TCP + ND_BITS_TCP)     /* 1280 */
#define ND_COL_ICMP (ND_COL_UDP + ND_BITS_UDP)    /* 1344 */
#define ND_HDR_BITS (ND_COL_ICMP + ND_BITS_ICMP)  /* 1408 */
#define ND_MAX_PAYLOAD_BYTES 65535

/* Width of a row with payload_bytes payload bytes (nPrint -p N). */
static inline int nd_row_width(int payload_bytes) { return ND_HDR_BITS + 8 * payload_bytes; }

typedef enum nd_field_id {
    ND_F_IPV4_VER, ND_F_IPV4_HL, ND_F_IPV4_TOS, ND_F_IPV4_TL, ND_F_IPV4_ID,
    ND_F_IPV4_RBIT, ND_F_IPV4_DFBIT, ND_F_IPV4_MFBIT, ND_F_IPV4_FOFF, ND_F_IPV4_TTL,
    ND_F_IPV4_PROTO, ND_F_IPV4_CKSUM, ND_F_IPV4_SRC, ND_F_IPV4_DST, ND_F_IPV4_OPT,
    ND_F_IPV6_VER, ND_F_IPV6_TC, ND_F_IPV6_FL, ND_F_IPV6_LEN, ND_F_IPV6_NH,
    ND_F_IPV6_HL, ND_F_IPV6_SRC, ND_F_IPV6_DST,
    ND_F_TCP_SPRT, ND_F_TCP_DPRT, ND_F_TCP_SEQ, ND_F_TCP_ACKN, ND_F_TCP_DOFF,
    ND_F_TCP_RES, ND_F_TCP_NS, ND_F_TCP_CWR, ND_F_TCP_ECE, ND_F_TCP_URG,
    ND_F_TCP_ACKF, ND_F_TCP_PSH, ND_F_TCP_RST, ND_F_TCP_SYN, ND_F_TCP_FIN,
    ND_F_TCP_WSIZE, ND_F_TCP_CKSUM, ND_F_TCP_URP, ND_F_TCP_OPT,
    ND_F_UDP_SPORT, ND_F_UDP_DPORT, ND_F_UDP_LEN, ND_F_UDP_CKSUM,
    ND_F_ICMP_TYPE, ND_F_ICMP_CODE, ND_F_ICMP_CKSUM, ND_F_ICMP_ROH,
    ND_F_COUNT
} nd_field_id;

typedef struct nd_field {
    const char *name;   /* nPrint's name, e.g. "tcp_doff"; columns are name_k */
    uint8_t block;      /* enum nd_block */
    uint16_t col;       /* first column in the row */
    uint16_t width;     /* bits */
} nd_field;

/* nPrint's field table, in column order; nd_fields[f].col is exact. */
extern const nd_field nd_fields[ND_F_COUNT];

/* Column name of row column c ("ipv4_ver_0", ..., "payload_bit_7"), into buf. */
void nd_col_name(int c, char *buf, size_t n);
/* Column index of a name, or -1. Accepts payload_bit_k for any k < 8*65535. */
int nd_col_find(const char *name);

/* Reads a field of at most 64 bits as an unsigned integer (MSB first).
 * Returns false when any of its bits is vacant (those count as 0). */
bool nd_row_get(const int8_t *row, nd_field_id f, uint64_t *value);
/* Writes a field of at most 64 bits (all bits become 0/1). */
void nd_row_set(int8_t *row, nd_field_id f, uint64_t value);
/* Makes a whole field vacant; nd_row_vacate_block does a whole block. */
void nd_row_vacate(int8_t *row, nd_field_id f);
void nd_row_vacate_block(int8_t *row, enum nd_block b);
/* Copies n bytes into n*8 columns starting at col (MSB first). */
void nd_bits_from_bytes(int8_t *row_at_col, const uint8_t *bytes, size_t n);

/* ----------------------------------------------------------------- reading */

typedef struct nd_packet {
    uint64_t index;          /* 0-based position in the capture              */
    int64_t ts_sec;          /* capture time, seconds since the epoch        */
    uint32_t ts_nsec;        /* and nanoseconds                              */
    uint32_t caplen;         /* bytes captured of the frame                  */
    uint32_t wirelen;        /* bytes the frame had on the wire              */
    int linktype;            /* LINKTYPE_* of the frame                      */
    const uint8_t *frame;    /* caplen bytes; valid until the next read      */
    const uint8_t *l3;       /* the IP header inside frame, NULL if none     */
    uint32_t l3_caplen;      /* captured bytes from l3 to the frame's end    */
    uint8_t ipver;           /* 4 or 6 when l3 is set, else 0                */
    const char *comment;     /* pcapng packet comment (pcapml label) or NULL */
} nd_packet;

typedef struct nd_reader nd_reader;

/* Opens a pcap or pcapng file (sniffed by magic, not by name; .gz is
 * decompressed on the fly). path "-" reads standard input. */
nd_status nd_reader_open(const char *path, nd_reader **out, nd_err *err);
/* Restricts reading to packets matching a BPF expression (libpcap syntax). */
nd_status nd_reader_set_filter(nd_reader *r, const char *bpf, nd_err *err);
/* Reads the next packet. *got = 1 with a packet, 0 at the end of the file.
 * A damaged file returns ND_EFORMAT naming the packet; the packets before it
 * were delivered. The link layer is decoded: Ethernet, 802.1Q/802.1ad VLAN
 * (any depth), MPLS, PPPoE session, Linux SLL and SLL2, raw IP, BSD NULL /
 * loopback. Frames cut short by the snaplen keep what was captured. */
nd_status nd_reader_next(nd_reader *r, nd_packet *pkt, int *got, nd_err *err);
/* LINKTYPE_* of the capture (of its first interface for pcapng). */
int nd_reader_linktype(const nd_reader *r);
const char *nd_reader_path(const nd_reader *r);
void nd_reader_close(nd_reader *r);

/* --------------------------------------------------------- nPrint encoding */

/* What nd_row_encode learned of a packet. */
typedef struct nd_pktinfo {
    uint8_t ipver;           /* 4 or 6                                   */
    uint8_t proto;           /* 6 TCP, 17 UDP, 1 ICMP                    */
    uint8_t src[16], dst[16];/* addresses (IPv4 in the first 4 bytes)    */
    uint16_t sport, dport;   /* 0 for ICMP                               */
    uint8_t tcp_flags;       /* FIN 0x01 SYN 0x02 RST 0x04 ... (TCP)     */
    uint32_t payload_len;    /* from the IP length field, bounded by caplen */
} nd_pktinfo;

/* Fills row (nd_row_width(payload_bytes) values) with nPrint's bits for the
 * IP packet at l3 (caplen bytes captured). Returns false when nPrint writes
 * no row for it: not IPv4/IPv6, or not TCP/UDP/ICMP right after the fixed
 * header. Deliberate difference from nPrint: a bit that lies beyond the
 * captured bytes is vacant (nPrint reads past the buffer), and IPv6+TCP
 * payload bits are the real payload (nPrint's are garbage). info may be NULL;
 * row may be NULL to learn only info (and whether a row would be written). */
bool nd_row_encode(const uint8_t *l3, uint32_t caplen, int payload_bytes, int8_t *row,
                   nd_pktinfo *info);

/* Formats an address from nd_pktinfo as nPrint does (inet_ntoa / inet_ntop). */
void nd_addr_text(uint8_t ipver, const uint8_t *addr, char *buf, size_t n);

/* nPrint's output options (its command-line flags). */
typedef struct nd_nprint_opts {
    bool ipv4, ipv6, tcp, udp, icmp; /* -4 -6 -t -u -i                       */
    int payload_bytes;               /* -p N                                 */
    bool rts;                        /* -R: gap to the previous row, in us    */
    bool abs_ts;                     /* -A: tv_sec,tv_usec columns            */
    int index;                       /* -O: 0 src_ip 1 dst_ip 2 src_prt 3 dst_prt 4 flow */
    int fill;                        /* -F: value written for vacant bits     */
    uint64_t count;                  /* -c: stop within the first N packets read (0 all) */
} nd_nprint_opts;

/* NetDiffusion's set: -4 -6 -t -u -i -p 0, index src_ip, fill -1. */
void nd_nprint_opts_init(nd_nprint_opts *o);

typedef struct nd_encode_stats {
    uint64_t packets;        /* read from the capture              */
    uint64_t rows;           /* written                            */
    uint64_t skipped;        /* no row (non-IP, other transports)  */
} nd_encode_stats;

/* Streams a whole capture to nPrint CSV, one row per packet nPrint would
 * write, byte-identical to `nprint -P path FLAGS` for captures nPrint parses
 * correctly. On a damaged capture the rows before the damage are written and
 * ND_EFORMAT is returned. bpf may be NULL. */
nd_status nd_encode_csv(const char *path, const char *bpf, const nd_nprint_opts *o, FILE *out,
                        nd_encode_stats *stats, nd_err *err);

/* ------------------------------------------------------------- row tables */

/* A table of rows, e.g. one flow or one nPrint CSV. */
typedef struct nd_rows {
    int n;                   /* rows                                         */
    int cap;                 /* allocated rows                               */
    int payload_bytes;       /* row width = nd_row_width(payload_bytes)      */
    int8_t *bits;            /* n * width values                             */
    int64_t *gap_us;         /* per row: gap to the previous row in us, or -1 unknown */
    char (*index)[48];       /* per row: index column text ("" if none)     */
} nd_rows;

nd_status nd_rows_init(nd_rows *t, int payload_bytes, int cap, nd_err *err);
/* Appends one row (vacant, gap -1, empty index); returns it or NULL (ENOMEM). */
int8_t *nd_rows_push(nd_rows *t, nd_err *err);
static inline int8_t *nd_rows_at(const nd_rows *t, int i)
{
    return t->bits + (size_t)i * (size_t)nd_row_width(t->payload_bytes);
}
void nd_rows_free(nd_rows *t);

/* Reads an nPrint CSV: nPrint's own files with any subset of blocks, index,
 * rts, tv_sec/tv_usec and payload columns, and NetDiffusion's files (1088 bit
 * columns with or without pandas' unnamed index column). Columns are matched
 * by name; blocks a file lacks are vacant. Errors name the line and column. */
nd_status nd_csv_read(const char *path, nd_rows *out, nd_err *err);
/* Writes rows as nPrint CSV with o's columns (o->payload_bytes must not
 * exceed t->payload_bytes). Uses t->index for the index column. */
nd_status nd_csv_write(FILE *f, const nd_nprint_opts *o, const nd_rows *t, nd_err *err);

/* ------------------------------------------------------------------ images */

/* A model's image layout: which row columns become image columns, how many
 * packets (image rows) it has, and any extra columns it declares. */
#define ND_MAX_TIMING_COLS 16
typedef struct nd_layout {
    int packets;                     /* image height: the model's packet budget */
    int n_bit_cols;                  /* row columns shown (1088 for NetDiffusion) */
    uint16_t bit_cols[ND_HDR_BITS];  /* which row columns, in image order      */
    int timing_cols;                 /* extra columns: log-quantised gap       */
    int timing_scale;                /* quantisation steps per doubling        */
    int width;                       /* n_bit_cols + timing_cols               */
} nd_layout;

/* NetDiffusion's layout: every header column but the four address fields
 * (1088 columns), no extra columns, `packets` rows. */
void nd_layout_netdiffusion(nd_layout *l, int packets);
/* The same plus timing_cols columns holding q = round(log2(1 + gap_us) *
 * timing_scale), clamped to timing_cols bits, MSB first; vacant on padding. */
nd_status nd_layout_init(nd_layout *l, int packets, int timing_cols, int timing_scale,
                         nd_err *err);
/* Quantise / dequantise a gap with a layout's timing columns. */
uint32_t nd_layout_gap_q(const nd_layout *l, int64_t gap_us);
int64_t nd_layout_gap_us(const nd_layout *l, uint32_t q);

/* Colours: 1 red (255,0,0), 0 green (0,255,0), vacant blue (0,0,255). */
/* Draws the first min(t->n, l->packets) rows of t into rgb (l->width *
 * l->packets * 3 bytes, row-major); the rest are blue padding rows. */
void nd_image_from_rows(const nd_layout *l, const nd_rows *t, uint8_t *rgb);
/* The same image as values (1, 0, -1: the form nd_rows_from_bits reads), only
 * its packet rows: writes min(t->n, l->packets) rows of l->width values into
 * bits and returns that count; the rest of the image is padding. */
int nd_image_bits_from_rows(const nd_layout *l, const nd_rows *t, int8_t *bits);
/* The inverse for clean (snapped) bits: bits are l->width * l->packets values
 * (exactly 1, 0 or -1 per pixel, as nd_snap_* writes them). Trailing all-vacant rows end the
 * flow and are not appended. Address columns the layout omits are filled
 * with zeros in a row whose IP block is present, and vacant otherwise. */
nd_status nd_rows_from_bits(const nd_layout *l, const int8_t *bits, nd_rows *out, nd_err *err);

/* PNG through libpng. Read accepts 8-bit grey/RGB/RGBA/palette and returns
 * RGB8 (*rgb malloc'd, caller frees). Write writes RGB8. */
nd_status nd_png_read(const char *path, uint8_t **rgb, int *w, int *h, nd_err *err);
nd_status nd_png_read_mem(const uint8_t *data, size_t n, uint8_t **rgb, int *w, int *h,
                          nd_err *err);
nd_status nd_png_write(const char *path, const uint8_t *rgb, int w, int h, nd_err *err);
/* Writes the w x h three-colour image whose first n rows are bits (w values
 * a row: 1 red, 0 green, anything else blue, as nd_image_from_rows draws)
 * and whose other h - n rows are blue padding: the pixels nd_png_write
 * would write for nd_image_from_rows' buffer, at the cost of the n rows
 * only (no RGB buffer, padding as a repeated token list). */
nd_status nd_png_write_bits(const char *path, const int8_t *bits, int w, int n, int h,
                            nd_err *err);

/* Colour snapping: each pixel to 1 / 0 / -1 and a confidence.
 * ND_SNAP_NEAREST: nearest of the three colours (Euclidean in RGB), which
 * is simply the largest channel (ties: red, then green).
 * ND_SNAP_NETDIFFUSION: their color_processor.py rule: red if r > 0 and
 * g < 160 and b < 100, else the largest channel, ties red > green > blue.
 *
 * Confidence (nd_conf, one byte per pixel: a generator moves millions of
 * them per flow): the margin by which the largest channel beat the middle
 * one, channels clipped to [0, 1] and scaled to 0..255. 255: exactly one of
 * the three colours; 0: a tie between the two nearest colours. It is the
 * nearest-colour rule's own margin, so it is computed in the same pass as
 * the bit. As a weight in [0.5, 1] (nd_conf_weight), 0.5 + q / 510: on the
 * line between two colours this equals d2 / (d1 + d2), d1 and d2 the
 * distances to the nearest and the second-nearest colour. */
typedef uint8_t nd_conf;
#define ND_CONF_SURE 255 /* a cell set by rule, not drawn */
static inline float nd_conf_weight(nd_conf q) { return 0.5f + (float)q / 510.0f; }

typedef enum { ND_SNAP_NEAREST, ND_SNAP_NETDIFFUSION } nd_snap_mode;
void nd_snap_u8(nd_snap_mode m, const uint8_t *rgb, size_t n_pixels, int8_t *bits,
                nd_conf *conf /* may be NULL */);
/* Float pixels in [0, 1] (e.g. a VAE's output mapped from [-1, 1]). */
void nd_snap_f32(nd_snap_mode m, const float *rgb, size_t n_pixels, int8_t *bits,
                 nd_conf *conf);
/* The same on planar input, the layout a VAE decoder produces ([3][n]: all
 * red, then all green, then all blue), which vectorises. */
void nd_snap_planar_f32(nd_snap_mode m, const float *planes, size_t n_pixels, int8_t *bits,
                        nd_conf *conf);

/* Planar pixel formats a decoder hands over: 32-bit floats, or IEEE
 * half floats (uint16_t bit patterns; what a GPU VAE produces in fp16). */
typedef enum { ND_PIX_F32, ND_PIX_F16 } nd_pixfmt;
/* A whole planar image ([3][height][width]), the generator's fast path.
 * Finds the flow's end first: from the bottom up, rows whose pixels all
 * snap to vacant (blue padding) get vacant bits and no confidence; the
 * rows above and including the last other row get bits and confidence
 * (conf may be NULL). Returns that row count (0: an all-blue image).
 * bits: width * height values; conf: width * height, of which only the
 * returned rows are written. Same bits and confidence as
 * nd_snap_planar_f32 on the same (f32) pixels. */
int nd_snap_image(nd_snap_mode m, nd_pixfmt fmt, const void *planes, int width, int height,
                  int8_t *bits, nd_conf *conf);
/* Snap, rows and per-cell confidence in one pass, a generator's path: the
 * rows nd_rows_from_bits makes of nd_snap_image's bits of a planar image
 * with layout l (out is initialised here; free it with nd_rows_free),
 * and, when row_conf is not NULL (l->packets * nd_row_width(0) values),
 * each row cell's confidence: its pixel's, ND_CONF_SURE for cells the
 * image does not show (what heuristics' nd_repair_conf_from_image makes of
 * nd_snap_image's confidence). No image-sized buffers in between: each
 * pixel is snapped into its row cell. */
nd_status nd_snap_rows(nd_snap_mode m, nd_pixfmt fmt, const void *planes, const nd_layout *l,
                       nd_rows *out, nd_conf *row_conf, nd_err *err);

/* ----------------------------------------------------------- raw inverse */

/* The wire bytes of one row, from the IP header on: the non-vacant bits of
 * the row in column order, packed MSB first (nPrint -N's rule), cut to whole
 * bytes. Returns the byte count (0 for an all-vacant row: padding, no
 * packet), or 0 and sets *overflow when cap is too small. */
size_t nd_row_to_bytes(const int8_t *row, int payload_bytes, uint8_t *out, size_t cap);

/* --------------------------------------------------------------- writing */

#define ND_LINKTYPE_ETHERNET 1
#define ND_LINKTYPE_RAW 101

typedef enum { ND_CAP_PCAP, ND_CAP_PCAPNG } nd_capfmt;

/* Where a writer's bytes go: a FILE, or a callback (HTTP streaming). */
typedef nd_status (*nd_write_fn)(void *ctx, const void *buf, size_t n, nd_err *err);

typedef struct nd_capwriter nd_capwriter;
/* Writes the file header at once. linktype is ND_LINKTYPE_RAW or _ETHERNET.
 * pcap uses microsecond timestamps; pcapng nanoseconds (if_tsresol 9). */
nd_status nd_capwriter_open(nd_capfmt fmt, int linktype, nd_write_fn fn, void *ctx,
                            nd_capwriter **out, nd_err *err);
nd_status nd_capwriter_open_file(nd_capfmt fmt, int linktype, FILE *f, nd_capwriter **out,
                                 nd_err *err);
/* One packet. wirelen >= len (0 means len). comment (pcapng only, may be
 * NULL): pcapml convention "FLOWID,LABEL". Bytes are passed through to the
 * sink before returning (buffered only by the sink itself), unless held. */
nd_status nd_capwriter_packet(nd_capwriter *w, int64_t ts_sec, uint32_t ts_nsec,
                              const uint8_t *data, uint32_t len, uint32_t wirelen,
                              const char *comment, nd_err *err);
/* Holds the next packets' records in the writer, to pass them to the sink
 * in writes of up to 64 KB instead of one per packet; nd_capwriter_flush
 * passes on what is held and ends holding. */
void nd_capwriter_hold(nd_capwriter *w);
nd_status nd_capwriter_flush(nd_capwriter *w, nd_err *err);
/* Frees the writer (records still held are dropped: flush first); it does
 * not close the FILE. */
void nd_capwriter_free(nd_capwriter *w);

/* ------------------------------------------------------------------ flows */

typedef enum {
    ND_FLOW_END_EOF, ND_FLOW_END_FIN, ND_FLOW_END_RST, ND_FLOW_END_IDLE, ND_FLOW_END_COUNT
} nd_flow_end;
extern const char *const nd_flow_end_names[ND_FLOW_END_COUNT];

/* One packet kept in a flow. */
typedef struct nd_flow_pkt {
    int64_t ts_sec;
    uint32_t ts_nsec;
    uint32_t wirelen;        /* of the IP packet (from the frame)          */
    uint32_t len;            /* bytes kept in data (IP header on)          */
    uint8_t dir;             /* 0 initiator->responder, 1 back             */
    const uint8_t *data;
} nd_flow_pkt;

typedef struct nd_flow {
    uint64_t id;             /* flows numbered in order of first packet, 0-based */
    char label[64];          /* "" when unlabelled                       */
    uint8_t ipver, proto;
    uint8_t addr[2][16];     /* [0] initiator, [1] responder             */
    uint16_t port[2];
    int n;                   /* packets kept (<= max_packets)            */
    uint64_t n_total;        /* packets seen, kept or not                */
    nd_flow_end end;
    nd_flow_pkt *pkts;
} nd_flow;

typedef struct nd_labeler nd_labeler;

typedef struct nd_flow_opts {
    int max_packets;         /* K: packets kept per flow (1024 NetDiffusion) */
    double idle_timeout;     /* seconds without a packet that end a flow  */
    bool end_on_fin_rst;     /* RST, or FIN from both sides + final ACK, ends a flow */
    int keep_bytes;          /* bytes of each IP packet kept (>= 120)      */
    const char *bpf;         /* only packets matching it; NULL for all    */
    nd_labeler *labeler;     /* NULL: label from the file name            */
    bool drop_unlabelled;    /* skip flows the labeler has no label for   */
} nd_flow_opts;
void nd_flow_opts_init(nd_flow_opts *o);

/* Called for each finished flow; the flow and its packets are valid only
 * during the call. Returning an error stops the run with that error. */
typedef nd_status (*nd_flow_sink)(void *ctx, const nd_flow *flow, nd_err *err);

typedef struct nd_flow_stats {
    uint64_t packets, ip_packets, flows, flows_labelled;
} nd_flow_stats;

/* Reads a capture and hands each bidirectional 5-tuple flow (TCP, UDP,
 * ICMP; ports 0 for ICMP) to sink as it ends: by RST / FIN, idle timeout,
 * or the end of the file. Memory is bounded by the flows alive at once. */
nd_status nd_flows_from_capture(const char *path, const nd_flow_opts *o, nd_flow_sink sink,
                                void *ctx, nd_flow_stats *stats, nd_err *err);

/* The rows of a flow (one per packet nd_row_encode accepts), with gaps. */
nd_status nd_flow_rows(const nd_flow *f, int payload_bytes, nd_rows *out, nd_err *err);

/* Flows to NetDiffusion PNG files, the fast way: each image is made straight
 * from the flow's packets and its file is written on a second thread, so
 * that the file system creating files overlaps with encoding the next flow.
 * At most a bounded number of finished files wait (memory stays bounded by
 * the flow table). The files are byte for byte nd_flow_rows ->
 * nd_image_bits_from_rows -> nd_png_write_bits. */
typedef struct nd_flow_pngs nd_flow_pngs;
nd_status nd_flow_pngs_new(const nd_layout *l, nd_flow_pngs **out, nd_err *err);
/* Makes f's image and queues it for path; *rows is its packet rows (0: the
 * flow makes no row and no file). Returns the failure of an earlier file,
 * once (files queued after a failed one are dropped until the next flush). */
nd_status nd_flow_pngs_put(nd_flow_pngs *w, const nd_flow *f, const char *path, int *rows,
                           nd_err *err);
/* Waits for every queued file; the failure put has not yet reported, and
 * the count of files written since the last flush (written may be NULL). */
nd_status nd_flow_pngs_flush(nd_flow_pngs *w, uint64_t *written, nd_err *err);
/* Writes what is queued, then frees. */
void nd_flow_pngs_free(nd_flow_pngs *w);

/* Labels. Precedence: pcapml packet comment, CSV of 5-tuples, BPF per class,
 * fixed label, label from the file name. */
nd_status nd_labeler_new(nd_labeler **out, nd_err *err);
/* A label for every flow. */
nd_status nd_labeler_set_fixed(nd_labeler *l, const char *label, nd_err *err);
/* Use "sampleID,label" packet comments (pcapml) when present. */
void nd_labeler_use_comments(nd_labeler *l, bool on);
/* CSV with a header naming at least src,sport,dst,dport,label (optional
 * l4/proto and file columns; file rows apply only to captures of that
 * base name). Matching ignores direction. */
nd_status nd_labeler_load_csv(nd_labeler *l, const char *path, nd_err *err);
/* Flows whose first packet matches bpf get label (first rule wins). */
nd_status nd_labeler_add_bpf(nd_labeler *l, const char *label, const char *bpf, nd_err *err);
void nd_labeler_free(nd_labeler *l);
/* The label a file name implies (capture, CSV or PNG name; extensions
 * dropped): "netflix_01.pcap" -> "netflix",
 * "ndpi_netflix__netflix.pcap" -> "netflix" (text after the last "__"). */
void nd_label_from_filename(const char *path, char *buf, size_t n);

#endif
