/* heuristics/repair.h - the snapped rows of one generated flow become packets
 * that real tools accept (tshark, scapy, tcpreplay), staying as close to what
 * the model drew as validity allows, and counting every field it changed.
 *
 * The whole public contract of the heuristics module:
 *   rows (+ per-bit confidence) + class stats + seed -> packets with timestamps
 *                                                      (nd_repair_flow)
 *   repaired packets -> a capture writer                (nd_repair_write)
 *   real flows -> class statistics for the class table  (nd_class_stats_*)
 *
 * Rules (why each exists is in the .c files):
 *   - rows: trailing rows without a network header end the flow; a row in
 *     the middle without one is dropped (counted); a row is a packet only if
 *     the flow's network block is mostly present in it.
 *   - one network (IPv4/IPv6) and one transport (TCP/UDP/ICMP) per flow by a
 *     confidence-weighted vote over the blocks' fixed-header cells.
 *   - direction per packet from the drawn ports (which of the flow's two
 *     ports is the source), ICMP from echo request/reply; the flow's two
 *     ports are the most frequent drawn pair.
 *   - addresses and MACs per flow from pools, deterministic from seed + flow id.
 *   - fields the model controls are kept when legal: TOS/TC, TTL / hop
 *     limit (a drawn 0 or incomplete one becomes the side's most common),
 *     flow label, DF, IP ID (any complete value: repair never fragments),
 *     lengths, ports, flags, window, urgent pointer, options (parsed and
 *     kept when well-formed), seq/ack/TS option when consistent with what
 *     each side sent (with keep_seq_gaps, also a jump over segments the
 *     capture missed; a retransmission when it is a tail copy, see below).
 *   - checksums always computed; payload bytes drawn by the model are kept
 *     (payload columns), the rest are random-looking bytes from the seed,
 *     shaped into well-formed messages where a port's dissector parses them
 *     (DNS/mDNS, TLS records, ...: repair.c's payload shaping).
 *
 * Faithfulness (tests/heuristics/test_repair.c, test_faithful_real_flows):
 * real flows through the NetDiffusion image and repair change only
 *   - what the image does not carry: addresses (pools), timestamps (class
 *     gaps; the layout has no timing columns), payload bytes (no payload
 *     columns), and checksums (recomputed over the new addresses and bytes);
 *   - nothing else: every other field the model draws comes out exactly as
 *     drawn (rate 0, asserted per field). Rules that do change drawn values
 *     on generated rows (never on real traffic) include: a TCP segment that
 *     partly overlaps data its side already sent gets the side's next seq
 *     (only a copy ending where the side's data ends is a retransmission to
 *     tshark; other overlaps reach its reassembly and are reported as
 *     malformed), flags by handshake phase, SYN-only options off SYNs, acks
 *     beyond what the peer sent, a FIN before its side's last new data, an
 *     option list that does not parse snapped to the nearest layout real
 *     stacks send (heuristics/options.c), a server port one or two bits
 *     from one of the class's (or a system port it never serves on) made
 *     the class's, a TTL one or two bits and 32+ hops from its side's
 *     steady value made that value, an NTP payload under its 48-byte
 *     header made 48 bytes.
 *
 * Ownership: nd_repair_ctx owns every buffer; nd_repair_flow's output
 * (nd_repair_out) points into it and stays valid until the next call on the
 * same context. A context is not thread-safe; use one per thread. Nothing
 * here allocates per packet: buffers grow per flow, and only when a flow is
 * bigger than every flow before it. Nothing here prints. */
#ifndef ND_HEURISTICS_REPAIR_H
#define ND_HEURISTICS_REPAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/codec.h"
#include "common/nd.h"

/* ------------------------------------------------------ class statistics */

/* Inter-arrival gaps are kept as a log2 histogram: bin 0 holds gaps of 0 us,
 * bin k (1..ND_GAP_BINS-1) gaps in [2^(k-1), 2^k) us; the last bin is open. */
#define ND_GAP_BINS 36

/* What the repair needs from a class's real traffic. Plain data: the class
 * table stores it (conf/classes.json; serialising it is the class-table
 * builder's job: it is arrays of counts). */
typedef struct nd_class_stats {
    /* [0]: gap before a packet in the same direction as the one before it;
     * [1]: gap before a packet that changes direction. Counts of packets. */
    uint64_t gap_hist[2][ND_GAP_BINS];
    /* TTL / hop limit histograms per side (0 initiator, 1 responder), used
     * when the model's TTLs of a side are all zero. */
    uint64_t ttl_hist[2][256];
    uint64_t flows, packets;  /* how much real traffic the stats came from */
    /* The class's server ports, most common first (filled by the caller from
     * its class table; n_server_ports 0 when unknown). A drawn port 0 on the
     * server side becomes the first of these with the flow's transport, and
     * so does a drawn system port (< 1024) that is not among them (a model's
     * bit error landing on another protocol's dissector). */
    int n_server_ports;
    uint16_t server_port[8];
    uint8_t server_proto[8];  /* 6 or 17 */
} nd_class_stats;

/* A sensible built-in default: gaps log-uniform around 100 us - 50 ms,
 * TTL 64 (initiator) / 56 (responder). Used when no class table is given. */
void nd_class_stats_default(nd_class_stats *s);
/* Zeroes s, ready for nd_class_stats_add_flow. */
void nd_class_stats_clear(nd_class_stats *s);
/* Adds a real flow's gaps and TTLs (codec's flow type, packets in time
 * order). Call for every flow of a class, then store s in the class table. */
void nd_class_stats_add_flow(nd_class_stats *s, const nd_flow *f);
/* Merges b into a (e.g. per-file stats into the class's). */
void nd_class_stats_merge(nd_class_stats *a, const nd_class_stats *b);
/* A stats value with no gaps (or no TTLs) of a kind falls back to the
 * default's for that kind when the repair draws from it. */

/* ----------------------------------------------------------------- options */

typedef struct nd_repair_opts {
    uint64_t seed;              /* everything random derives from (seed, flow id) */
    int linktype;               /* ND_LINKTYPE_ETHERNET (default) or ND_LINKTYPE_RAW */
    int mtu;                    /* largest IP packet; longer drawn lengths are cut (1500) */
    int64_t start_us;           /* time of the first packet of flow id 0, us since epoch */
    int64_t flow_spacing_us;    /* flow id k starts at start_us + k * spacing (1 s) */
    /* Endpoint pools: side 0 = initiator (client), 1 = responder (server).
     * Host bits are drawn per flow; network bits kept. */
    uint8_t v4_net[2][4];
    uint8_t v4_prefix[2];       /* 0..30 */
    uint8_t v6_net[2][16];
    uint8_t v6_prefix[2];       /* 0..126 */
    uint8_t mac_oui[2][3];      /* MACs: OUI + 3 bytes drawn per flow (unicast, local) */
    /* false (default): every segment follows the previous one of its side
     * and acks never pass what the peer sent. true: a drawn forward jump of
     * up to 1 MiB is kept, as in captures that missed segments (tshark then
     * reports "previous segment not captured", which is what was drawn). */
    bool keep_seq_gaps;
} nd_repair_opts;

/* Defaults: seed 0, Ethernet, mtu 1500, strict seq/ack, start 2024-01-01T00:00:00Z, 1 s spacing,
 * clients 10.0.0.0/8 and fd00:a::/32, servers 198.18.0.0/15 and
 * fd00:b::/32 (both benchmarking / private ranges), OUIs 02:00:0a, 02:00:0b. */
void nd_repair_opts_init(nd_repair_opts *o);

/* -------------------------------------------------------------- counters */

/* Per-field change counters. Index: an nd_field_id, or one of the extras
 * below. seen[i]: packets where the field was emitted; changed[i]: packets
 * where the emitted value differs from what the model drew (a vacant drawn
 * field that had to be filled counts as changed). Add across flows freely. */
enum {
    ND_RP_GAP = ND_F_COUNT,     /* timestamp gap (changed = not taken from the rows) */
    ND_RP_PAYLOAD,              /* payload bytes not drawn by the model (per packet) */
    ND_RP_DIR,                  /* packet direction ambiguous in the drawn ports      */
    ND_RP_COUNT
};
typedef struct nd_repair_counts {
    uint64_t flows, rows, packets;
    uint64_t rows_padding;      /* trailing rows without a network header       */
    uint64_t rows_dropped;      /* rows inside the flow without a network header */
    uint64_t blocks_vacated;    /* drawn blocks that lost the protocol vote (per row) */
    uint64_t seen[ND_RP_COUNT];
    uint64_t changed[ND_RP_COUNT];
} nd_repair_counts;

/* Name of counter i ("ipv4_ttl", ..., "gap", "payload", "dir"). */
const char *nd_repair_counter_name(int i);
void nd_repair_counts_add(nd_repair_counts *a, const nd_repair_counts *b);

/* ---------------------------------------------------------------- repair */

/* One repaired packet; data points into the context's buffer. */
typedef struct nd_repair_pkt {
    int64_t ts_sec;
    uint32_t ts_nsec;           /* whole microseconds */
    uint32_t len;               /* frame bytes (link header included)  */
    uint8_t dir;                /* 0 initiator -> responder, 1 back     */
    const uint8_t *data;
} nd_repair_pkt;

typedef struct nd_repair_out {
    int n;                      /* packets (0 for an all-padding image) */
    int linktype;
    uint8_t ipver, proto;       /* the voted protocols (0 when n == 0)  */
    const nd_repair_pkt *pkts;
} nd_repair_out;

typedef struct nd_repair_ctx nd_repair_ctx;

/* opts may be NULL (defaults). Returns ND_EINVAL for bad options. */
nd_status nd_repair_ctx_new(const nd_repair_opts *opts, nd_repair_ctx **out, nd_err *err);
void nd_repair_ctx_free(nd_repair_ctx *c);
/* Moves the clock: the next flows start at start_us + flow id * spacing
 * (a caller with its own running clock sets spacing 0 and calls this). */
void nd_repair_set_start(nd_repair_ctx *c, int64_t start_us);

/* Repairs one flow. rows: the snapped rows (any payload_bytes; gap_us used
 * where >= 0). conf: NULL (every cell sure), or one confidence per cell of
 * rows (rows->n * nd_row_width(rows->payload_bytes) values, codec.h's
 * nd_conf): it weighs each cell's vote, 0.5 + q / 510, in the protocol vote
 * and in telling the two sides apart by their ports. cls: NULL for the
 * built-in default. flow_id: keys the randomness and the start time (same
 * rows + seed + flow id = same bytes). counts: NULL, or added to. */
nd_status nd_repair_flow(nd_repair_ctx *c, const nd_rows *rows, const nd_conf *conf,
                         const nd_class_stats *cls, uint64_t flow_id, nd_repair_out *out,
                         nd_repair_counts *counts, nd_err *err);

/* Maps per-pixel confidence of an image with layout l (l->width *
 * l->packets values, from nd_snap_*) to the per-cell confidence
 * nd_repair_flow takes, for the first n_rows rows of width
 * nd_row_width(payload_bytes) (row_conf: n_rows * width values). Cells the
 * image does not show get ND_CONF_SURE (the codec fills them by rule). */
void nd_repair_conf_from_image(const nd_layout *l, const nd_conf *img_conf, int n_rows,
                               int payload_bytes, nd_conf *row_conf);

/* Writes out's packets to w (its link type must be out->linktype). comment
 * (pcapng only, may be NULL) goes on every packet, e.g. "FLOWID,LABEL". */
nd_status nd_repair_write(nd_capwriter *w, const nd_repair_out *out, const char *comment,
                          nd_err *err);

#endif
