/* eval/eval.h - how close are synthetic flows to real ones?
 *
 * The whole public contract of the eval module:
 *   two histograms                -> JSD, TVD, Hellinger        (nd_eval_distances)
 *   one IP packet's bytes         -> what tools would reject   (nd_valid_check)
 *   flows (codec's nd_flow)       -> per-feature histograms, validity counts and
 *                                    memorization fingerprints (nd_eval_add_flow)
 *   captures (files, directories) -> the same, through codec's flow reader
 *   everything added              -> a report: per feature, aggregated, per class,
 *                                    for SYNTH and the two baselines    (nd_eval_finish)
 *   the report                    -> text table, JSON, HTML with SVG histograms
 *
 * Metrics (all in [0, 1], 0 = identical distributions):
 *   JSD  Jensen-Shannon DIVERGENCE with base-2 logarithms (not scipy's
 *        jensenshannon, which is the distance sqrt(JSD) in nats by default:
 *        ours = scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2).
 *   TVD  total variation distance, 1/2 sum |p - q|.
 *   HEL  Hellinger distance, sqrt(1 - sum sqrt(p q)).
 * Each feature's values are put in bins (see nd_eval_binning and the feature
 * table in eval/features.c, documented in nd_eval_feature_doc); bins are the
 * union of the bins either side uses. A feature with no values on either side
 * is undefined (skipped); with values on one side only it scores 1.
 * Aggregates are unweighted means over the defined features marked
 * "aggregate" (every header field but the four address fields, plus the flow
 * features), overall and per group (ipv4, ipv6, tcp, udp, icmp, flow).
 *
 * Sides: REAL flows are also split, deterministically by seed, into halves
 * A and B: A vs B is the floor (what sampling noise alone scores; each half
 * has half the flows, so the floor is slightly pessimistic). RANDOM flows are
 * whatever the caller adds (the CLI: random bits through heuristics' repair).
 * Memorization: each SYNTH flow's distance to its nearest TRAIN flow, against
 * held-out real flows' distance to TRAIN. With no TRAIN flows, TRAIN = half A
 * and held-out = half B.
 *
 * Ownership: nd_eval owns everything it computes; pointers it returns stay
 * valid until nd_eval_free. Flows passed in are copied as far as needed
 * (features and fingerprints), never kept. Nothing here prints: writers take
 * the caller's FILE. Same inputs, same options -> the same report bytes. */
#ifndef ND_EVAL_H
#define ND_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "codec/codec.h"
#include "common/nd.h"

/* ---------------------------------------------------------------- metrics */

typedef struct nd_eval_metric {
    double jsd, tvd, hel;
} nd_eval_metric;

/* Distances between two histograms of n bins (counts >= 0, normalised here).
 * Both empty: all 0. One empty: all 1. */
nd_eval_metric nd_eval_distances(const double *p, const double *q, size_t n);

/* ---------------------------------------------------------------- binning */

typedef enum nd_eval_binning {
    ND_BIN_EXACT,   /* one bin per value                                         */
    ND_BIN_LOG2Q,   /* quarter octaves: 0 -> bin 0, v -> 1 + floor(4 log2 v)       */
    ND_BIN_LIN32,   /* 32-wide bins up to 2048, then quarter octaves (sizes)      */
    ND_BIN_UNI16,   /* 0 alone, else 16 equal bins of the field's range (ids, seq, checksums) */
    ND_BIN_PORT,    /* < 1024 exact, else 1024-wide bins                          */
    ND_BIN_HASH,    /* categorical value that is a hash (addresses)               */
} nd_eval_binning;

/* The bin key of a value (width = the feature's bit width, for UNI16). */
uint64_t nd_eval_bin(nd_eval_binning b, int width, uint64_t value);
/* Lowest value falling in bin key (for axis labels); HASH/EXACT: key itself. */
uint64_t nd_eval_bin_lo(nd_eval_binning b, int width, uint64_t key);

/* --------------------------------------------------------------- features */

/* Features 0..ND_F_COUNT-1 are codec's header fields (same ids, nd_field_id);
 * then derived ones. Options (ipv4_opt, tcp_opt) are their length in bytes;
 * addresses are hashed. */
enum {
    ND_EF_TRANSPORT = ND_F_COUNT, /* ipver << 8 | protocol, per packet           */
    ND_EF_TCP_FLAGS,              /* the TCP flag byte, per TCP packet            */
    ND_EF_PKT_SIZE,               /* IP packet length on the wire, bytes          */
    ND_EF_IAT,                    /* gap to the flow's previous packet, us        */
    ND_EF_FLOW_LEN,               /* packets in the flow, per flow                */
    ND_EF_FLOW_DUR,               /* first to last packet, us, per flow           */
    ND_EF_DIR_PATTERN,            /* directions of the first 8 packets, per flow  */
    ND_EF_DIR_FRAC,               /* share of initiator packets in tenths, per flow */
    ND_EVAL_NFEAT
};

enum nd_eval_group { ND_EG_IPV4, ND_EG_IPV6, ND_EG_TCP, ND_EG_UDP, ND_EG_ICMP, ND_EG_FLOW,
                     ND_EG_COUNT };
extern const char *const nd_eval_group_names[ND_EG_COUNT];

typedef struct nd_eval_feature {
    const char *name;
    uint8_t group;            /* enum nd_eval_group                     */
    uint8_t binning;          /* nd_eval_binning                        */
    uint8_t width;            /* bits of the value (for UNI16)          */
    bool aggregate;           /* counted in the aggregated means        */
    const char *doc;          /* one line: what the value is, its bins  */
} nd_eval_feature;
extern const nd_eval_feature nd_eval_features[ND_EVAL_NFEAT];

/* Human text of a bin key of feature f (e.g. "[64,96)", "0110 (4)"), into buf. */
void nd_eval_bin_text(int f, uint64_t key, char *buf, size_t n);

/* --------------------------------------------------------------- validity */

/* What a packet checker (kernel, Wireshark "[bad]"/expert error, Zeek weird,
 * Suricata decoder event, tcpreplay/scapy sanity) rejects. Checksums are
 * checked only when every byte they cover was captured; otherwise the packet
 * counts as unverifiable for them, not invalid. */
enum nd_valid_check {
    ND_V_SHORT,        /* fewer bytes than the headers need                   */
    ND_V_VERSION,      /* IP version not 4 or 6                               */
    ND_V_IHL,          /* IPv4 header length < 20 bytes                        */
    ND_V_IP_LEN,       /* IPv4 total / IPv6 payload length beyond the packet or below the header */
    ND_V_IP_CKSUM,     /* IPv4 header checksum                                 */
    ND_V_IP_FLAGS,     /* IPv4 reserved bit set, or DF together with a fragment offset / MF */
    ND_V_TTL0,         /* IPv4 TTL / IPv6 hop limit 0                          */
    ND_V_TCP_DOFF,     /* data offset < 5 or beyond the segment                 */
    ND_V_TCP_FLAGS,    /* none; SYN+FIN; SYN+RST; FIN/PSH/URG without ACK      */
    ND_V_TCP_CKSUM,
    ND_V_UDP_LEN,      /* UDP length < 8 or != the IP payload length           */
    ND_V_UDP_CKSUM,    /* wrong, or 0 over IPv6                                */
    ND_V_ICMP_CKSUM,   /* ICMP (v4) and ICMPv6 checksum                        */
    ND_V_PORT0,        /* TCP/UDP source or destination port 0                 */
    ND_V_COUNT
};
extern const char *const nd_valid_check_names[ND_V_COUNT];

typedef struct nd_valid_result {
    uint32_t bad;          /* bit c set: check c failed                        */
    uint32_t unverified;   /* bit c set: check c could not be made (truncated)  */
} nd_valid_result;

/* Checks one IP packet: l3 holds caplen captured bytes of a wirelen-byte IP
 * packet (wirelen >= caplen; 0 means caplen). Trailing bytes past the IP
 * length are tolerated (Ethernet padding). Fragments other than the first get
 * no L4 checks; a first fragment's L4 checksum is unverified. */
nd_valid_result nd_valid_check(const uint8_t *l3, uint32_t caplen, uint32_t wirelen);

typedef struct nd_valid_counts {
    uint64_t packets;              /* checked                        */
    uint64_t invalid;              /* with at least one failed check */
    uint64_t bad[ND_V_COUNT];
    uint64_t unverified[ND_V_COUNT];
} nd_valid_counts;

/* Checks one packet and adds the outcome to vc. */
void nd_valid_count(nd_valid_counts *vc, const uint8_t *l3, uint32_t caplen, uint32_t wirelen);

/* ------------------------------------------------------------------ sides */

typedef enum nd_eval_side {
    ND_EVAL_REAL, ND_EVAL_SYNTH, ND_EVAL_RANDOM, ND_EVAL_TRAIN, ND_EVAL_SIDES
} nd_eval_side;
extern const char *const nd_eval_side_names[ND_EVAL_SIDES];

typedef struct nd_eval_opts {
    uint64_t seed;           /* the A/B split of REAL (default 1)              */
    int mem_packets;         /* packets of a flow the memorization distance sees (16) */
    int max_packets;         /* packets per flow read from captures (1024)      */
    double idle_timeout;     /* seconds, flows from captures (codec default)    */
    bool no_fin_rst;         /* flows do not end at FIN/RST (codec default: they do,
                              * and later packets of the 5-tuple join no flow)  */
    const char *labels_csv;  /* flows.csv-style labels for captures, or NULL    */
    bool per_class;          /* per-class tables when both sides have labels (true) */
} nd_eval_opts;
void nd_eval_opts_init(nd_eval_opts *o);

typedef struct nd_eval nd_eval;

nd_status nd_eval_new(const nd_eval_opts *o, nd_eval **out, nd_err *err);
void nd_eval_free(nd_eval *e);

/* Adds one flow (its label, "" = unlabelled, names its class); its packets
 * are checked for validity. */
nd_status nd_eval_add_flow(nd_eval *e, nd_eval_side side, const nd_flow *f, nd_err *err);
/* Adds every flow of a capture, or of every capture in a directory (files in
 * name order, recursively; names not ending in .pcap, .pcapng, .cap, .gz are
 * skipped). Labels: pcapml comments, then opts.labels_csv, then file name.
 * Validity covers every IP packet of the captures, also those no flow keeps
 * (after a flow's RST/FIN, beyond max_packets, not TCP/UDP/ICMP). */
nd_status nd_eval_add_path(nd_eval *e, nd_eval_side side, const char *path, nd_err *err);

/* Flows added to a side so far. */
uint64_t nd_eval_flows(const nd_eval *e, nd_eval_side side);
/* Packets of the i-th flow added to a side (0 when out of range); e.g. for a
 * baseline with REAL's flow lengths. */
int nd_eval_flow_packets(const nd_eval *e, nd_eval_side side, uint64_t i);

/* ----------------------------------------------------------------- report */

typedef struct nd_eval_fcmp {
    uint64_t n_a, n_b;       /* values on each side                     */
    bool defined;            /* false: no values on either side          */
    nd_eval_metric m;
} nd_eval_fcmp;

typedef struct nd_eval_cmp {
    bool present;            /* both sides had flows                    */
    uint64_t flows_a, flows_b;
    nd_eval_fcmp f[ND_EVAL_NFEAT];
    nd_eval_metric mean;     /* over defined aggregate features          */
    int n_mean;              /* how many features that mean covers      */
    nd_eval_metric group_mean[ND_EG_COUNT];
    int group_n[ND_EG_COUNT];
} nd_eval_cmp;

enum { ND_CMP_SYNTH, ND_CMP_FLOOR, ND_CMP_RANDOM, ND_CMP_COUNT };
extern const char *const nd_eval_cmp_names[ND_CMP_COUNT];

/* One scope: all flows ("" label, index 0) or one class. */
typedef struct nd_eval_scope {
    char label[64];
    uint64_t flows_real, flows_synth;
    nd_eval_cmp cmp[ND_CMP_COUNT];   /* REAL vs SYNTH, A vs B, REAL vs RANDOM */
} nd_eval_scope;

typedef struct nd_eval_memo_stats {
    uint64_t n;
    double min, p5, median, mean, p95;
    uint64_t exact;          /* distance 0: an exact copy (of the columns compared) */
} nd_eval_memo_stats;

typedef struct nd_eval_memo {
    bool present;            /* train and synth both had flows         */
    bool train_is_split;     /* TRAIN = half A of REAL, held-out = half B */
    uint64_t n_train;
    nd_eval_memo_stats synth, heldout;   /* nearest-train distances            */
    /* share of SYNTH flows at or below the held-out 5th percentile, and the
     * same share of the held-out flows themselves (>= 5%, more with ties) */
    double below_heldout_p5, heldout_below_p5;
} nd_eval_memo;

typedef struct nd_eval_report {
    int n_scopes;            /* scopes[0] = all flows, then classes on both sides, by name */
    int n_real_only, n_synth_only;  /* classes on one side only (no scope)  */
    nd_eval_scope *scopes;
    nd_valid_counts valid[ND_EVAL_SIDES];
    nd_eval_memo memo;
    uint64_t flows[ND_EVAL_SIDES], packets[ND_EVAL_SIDES];
    int mem_packets;
    uint64_t seed;
} nd_eval_report;

/* Computes the report from everything added (may be called again after more
 * flows are added). The report belongs to e. */
nd_status nd_eval_finish(nd_eval *e, const nd_eval_report **out, nd_err *err);

/* Histogram of feature f on a side for a class ("" = all flows): sorted bin
 * keys and counts, valid until the next add or nd_eval_free. Returns the
 * number of bins (0 when none). Split halves: side ND_EVAL_SIDES + 0 / + 1. */
size_t nd_eval_hist(const nd_eval *e, int side, const char *label, int f, const uint64_t **keys,
                    const uint64_t **counts);

/* Writers (after nd_eval_finish). Text: an aligned table for a terminal. */
nd_status nd_eval_write_text(const nd_eval *e, FILE *f, nd_err *err);
nd_status nd_eval_write_json(const nd_eval *e, FILE *f, nd_err *err);
/* One self-contained page: tables, and per feature a small SVG of the REAL
 * and SYNTH histograms, drawn by eval/svg.c. */
nd_status nd_eval_write_html(const nd_eval *e, FILE *f, nd_err *err);

/* ---------------------------------------------------------- memorization */

/* The distance between two flows as the memorization check sees them: the
 * share of cells (first mem_packets packets x compared header columns)
 * whose state (0, 1, vacant) differs; missing packets are all vacant.
 * Compared columns: every header bit but addresses, ports, IPv4 id, TCP
 * seq/ack and checksums (values a generator's repair sets, not draws). */
/* Returns -1 when out of memory. */
double nd_eval_flow_distance(const nd_flow *a, const nd_flow *b, int mem_packets);

#endif
