/* eval/features.c - the feature table and its binning (the documented part:
 * NetDiffusion never published theirs, so every choice is written here).
 *
 * Why these bins: a bin per value is right for small categorical fields
 * (flags, TTL, protocol, ports below 1024); magnitudes (lengths, gaps,
 * windows) spread over orders of magnitude and get quarter-octave bins (about
 * 19% wide) so that two samples of the same traffic land in the same bins;
 * packet sizes get 32-byte bins below 2048 because their peaks (40, 52, 1500)
 * matter; values that are random by design (IPv4 id, seq/ack, checksums, flow
 * label) get 16 equal bins over their range plus a bin for 0, which tests
 * "uniform-looking" without punishing two samples for drawing different
 * random numbers. */
#include "eval/eval.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

const char *const nd_eval_group_names[ND_EG_COUNT] = {"ipv4", "ipv6", "tcp", "udp", "icmp",
                                                       "flow"};

#define FE(name, g, b, w, agg, doc) {name, g, b, w, agg, doc}
#define X(name, g, w, doc) FE(name, g, ND_BIN_EXACT, w, true, doc)
#define U(name, g, w, doc) FE(name, g, ND_BIN_UNI16, w, true, doc)
const nd_eval_feature nd_eval_features[ND_EVAL_NFEAT] = {
    [ND_F_IPV4_VER] = X("ipv4_ver", ND_EG_IPV4, 4, "IPv4 version nibble; exact"),
    [ND_F_IPV4_HL] = X("ipv4_hl", ND_EG_IPV4, 4, "IPv4 header length (words); exact"),
    [ND_F_IPV4_TOS] = X("ipv4_tos", ND_EG_IPV4, 8, "IPv4 TOS byte; exact"),
    [ND_F_IPV4_TL] = FE("ipv4_tl", ND_EG_IPV4, ND_BIN_LIN32, 16, true,
                        "IPv4 total length; 32-byte bins < 2048, then quarter octaves"),
    [ND_F_IPV4_ID] = U("ipv4_id", ND_EG_IPV4, 16, "IPv4 id; 0, then 16 equal bins"),
    [ND_F_IPV4_RBIT] = X("ipv4_rbit", ND_EG_IPV4, 1, "IPv4 reserved flag; exact"),
    [ND_F_IPV4_DFBIT] = X("ipv4_dfbit", ND_EG_IPV4, 1, "IPv4 DF flag; exact"),
    [ND_F_IPV4_MFBIT] = X("ipv4_mfbit", ND_EG_IPV4, 1, "IPv4 MF flag; exact"),
    [ND_F_IPV4_FOFF] = FE("ipv4_foff", ND_EG_IPV4, ND_BIN_LOG2Q, 13, true,
                          "IPv4 fragment offset; quarter octaves"),
    [ND_F_IPV4_TTL] = X("ipv4_ttl", ND_EG_IPV4, 8, "IPv4 TTL; exact"),
    [ND_F_IPV4_PROTO] = X("ipv4_proto", ND_EG_IPV4, 8, "IPv4 protocol; exact"),
    [ND_F_IPV4_CKSUM] = U("ipv4_cksum", ND_EG_IPV4, 16, "IPv4 checksum; 0, then 16 equal bins"),
    [ND_F_IPV4_SRC] = FE("ipv4_src", ND_EG_IPV4, ND_BIN_HASH, 32, false,
                         "IPv4 source address; exact (hashed); not aggregated"),
    [ND_F_IPV4_DST] = FE("ipv4_dst", ND_EG_IPV4, ND_BIN_HASH, 32, false,
                         "IPv4 destination address; exact (hashed); not aggregated"),
    [ND_F_IPV4_OPT] = X("ipv4_opt", ND_EG_IPV4, 8, "IPv4 options length in bytes; exact"),
    [ND_F_IPV6_VER] = X("ipv6_ver", ND_EG_IPV6, 4, "IPv6 version nibble; exact"),
    [ND_F_IPV6_TC] = X("ipv6_tc", ND_EG_IPV6, 8, "IPv6 traffic class; exact"),
    [ND_F_IPV6_FL] = U("ipv6_fl", ND_EG_IPV6, 20, "IPv6 flow label; 0, then 16 equal bins"),
    [ND_F_IPV6_LEN] = FE("ipv6_len", ND_EG_IPV6, ND_BIN_LIN32, 16, true,
                         "IPv6 payload length; 32-byte bins < 2048, then quarter octaves"),
    [ND_F_IPV6_NH] = X("ipv6_nh", ND_EG_IPV6, 8, "IPv6 next header; exact"),
    [ND_F_IPV6_HL] = X("ipv6_hl", ND_EG_IPV6, 8, "IPv6 hop limit; exact"),
    [ND_F_IPV6_SRC] = FE("ipv6_src", ND_EG_IPV6, ND_BIN_HASH, 64, false,
                         "IPv6 source address; exact (hashed); not aggregated"),
    [ND_F_IPV6_DST] = FE("ipv6_dst", ND_EG_IPV6, ND_BIN_HASH, 64, false,
                         "IPv6 destination address; exact (hashed); not aggregated"),
    [ND_F_TCP_SPRT] = FE("tcp_sprt", ND_EG_TCP, ND_BIN_PORT, 16, true,
                         "TCP source port; exact < 1024, then 1024-wide bins"),
    [ND_F_TCP_DPRT] = FE("tcp_dprt", ND_EG_TCP, ND_BIN_PORT, 16, true,
                         "TCP destination port; exact < 1024, then 1024-wide bins"),
    [ND_F_TCP_SEQ] = U("tcp_seq", ND_EG_TCP, 32, "TCP sequence number; 0, then 16 equal bins"),
    [ND_F_TCP_ACKN] = U("tcp_ackn", ND_EG_TCP, 32, "TCP ack number; 0, then 16 equal bins"),
    [ND_F_TCP_DOFF] = X("tcp_doff", ND_EG_TCP, 4, "TCP data offset (words); exact"),
    [ND_F_TCP_RES] = X("tcp_res", ND_EG_TCP, 3, "TCP reserved bits; exact"),
    [ND_F_TCP_NS] = X("tcp_ns", ND_EG_TCP, 1, "TCP NS flag; exact"),
    [ND_F_TCP_CWR] = X("tcp_cwr", ND_EG_TCP, 1, "TCP CWR flag; exact"),
    [ND_F_TCP_ECE] = X("tcp_ece", ND_EG_TCP, 1, "TCP ECE flag; exact"),
    [ND_F_TCP_URG] = X("tcp_urg", ND_EG_TCP, 1, "TCP URG flag; exact"),
    [ND_F_TCP_ACKF] = X("tcp_ackf", ND_EG_TCP, 1, "TCP ACK flag; exact"),
    [ND_F_TCP_PSH] = X("tcp_psh", ND_EG_TCP, 1, "TCP PSH flag; exact"),
    [ND_F_TCP_RST] = X("tcp_rst", ND_EG_TCP, 1, "TCP RST flag; exact"),
    [ND_F_TCP_SYN] = X("tcp_syn", ND_EG_TCP, 1, "TCP SYN flag; exact"),
    [ND_F_TCP_FIN] = X("tcp_fin", ND_EG_TCP, 1, "TCP FIN flag; exact"),
    [ND_F_TCP_WSIZE] = FE("tcp_wsize", ND_EG_TCP, ND_BIN_LOG2Q, 16, true,
                          "TCP window; quarter octaves"),
    [ND_F_TCP_CKSUM] = U("tcp_cksum", ND_EG_TCP, 16, "TCP checksum; 0, then 16 equal bins"),
    [ND_F_TCP_URP] = U("tcp_urp", ND_EG_TCP, 16, "TCP urgent pointer; 0, then 16 equal bins"),
    [ND_F_TCP_OPT] = X("tcp_opt", ND_EG_TCP, 8, "TCP options length in bytes; exact"),
    [ND_F_UDP_SPORT] = FE("udp_sport", ND_EG_UDP, ND_BIN_PORT, 16, true,
                          "UDP source port; exact < 1024, then 1024-wide bins"),
    [ND_F_UDP_DPORT] = FE("udp_dport", ND_EG_UDP, ND_BIN_PORT, 16, true,
                          "UDP destination port; exact < 1024, then 1024-wide bins"),
    [ND_F_UDP_LEN] = FE("udp_len", ND_EG_UDP, ND_BIN_LIN32, 16, true,
                        "UDP length; 32-byte bins < 2048, then quarter octaves"),
    [ND_F_UDP_CKSUM] = U("udp_cksum", ND_EG_UDP, 16, "UDP checksum; 0, then 16 equal bins"),
    [ND_F_ICMP_TYPE] = X("icmp_type", ND_EG_ICMP, 8, "ICMP type; exact"),
    [ND_F_ICMP_CODE] = X("icmp_code", ND_EG_ICMP, 8, "ICMP code; exact"),
    [ND_F_ICMP_CKSUM] = U("icmp_cksum", ND_EG_ICMP, 16, "ICMP checksum; 0, then 16 equal bins"),
    [ND_F_ICMP_ROH] = U("icmp_roh", ND_EG_ICMP, 32,
                        "ICMP rest of header; 0, then 16 equal bins"),
    [ND_EF_TRANSPORT] = X("transport", ND_EG_FLOW, 16,
                          "per packet: IP version and protocol (v4/tcp ...); exact"),
    [ND_EF_TCP_FLAGS] = X("tcp_flags", ND_EG_TCP, 8,
                          "per TCP packet: the flag byte (CWR..FIN) as a whole; exact"),
    [ND_EF_PKT_SIZE] = FE("pkt_size", ND_EG_FLOW, ND_BIN_LIN32, 32, true,
                          "per packet: IP length on the wire; 32-byte bins < 2048, then "
                          "quarter octaves"),
    [ND_EF_IAT] = FE("iat_us", ND_EG_FLOW, ND_BIN_LOG2Q, 64, true,
                     "per packet but a flow's first: gap to the previous packet in us; "
                     "quarter octaves"),
    [ND_EF_FLOW_LEN] = FE("flow_len", ND_EG_FLOW, ND_BIN_LOG2Q, 64, true,
                          "per flow: packets; quarter octaves (exact below 5)"),
    [ND_EF_FLOW_DUR] = FE("flow_dur_us", ND_EG_FLOW, ND_BIN_LOG2Q, 64, true,
                          "per flow: first to last kept packet in us; quarter octaves"),
    [ND_EF_DIR_PATTERN] = X("dir_pattern", ND_EG_FLOW, 16,
                            "per flow: directions of the first 8 packets (0 initiator, 1 "
                            "responder); exact"),
    [ND_EF_DIR_FRAC] = X("dir_frac", ND_EG_FLOW, 8,
                         "per flow: share of initiator packets; 10 equal bins"),
};
#undef X
#undef U
#undef FE

/* Quarter-octave bin: v in [2^(e+j/4), 2^(e+(j+1)/4)) -> 1 + 4e + j. */
static const double qstep[4] = {1.0, 1.189207115002721, 1.414213562373095, 1.681792830507429};
static uint64_t log2q(uint64_t v)
{
    if (!v)
        return 0;
    int e = 63 - __builtin_clzll(v);
    double r = (double)v / ldexp(1.0, e);
    int j = 3;
    while (j > 0 && r < qstep[j])
        j--;
    return 1 + 4 * (uint64_t)e + (uint64_t)j;
}
static uint64_t log2q_lo(uint64_t key)
{
    if (!key)
        return 0;
    int e = (int)((key - 1) / 4), j = (int)((key - 1) % 4);
    if (e >= 64)
        return UINT64_MAX;
    double lo = ceil(ldexp(qstep[j], e));
    return lo >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)lo;
}

#define LIN32_TOP 2048
#define LIN32_BINS (LIN32_TOP / 32)

uint64_t nd_eval_bin(nd_eval_binning b, int width, uint64_t v)
{
    switch (b) {
    case ND_BIN_LOG2Q:
        return log2q(v);
    case ND_BIN_LIN32:
        return v < LIN32_TOP ? v / 32 : LIN32_BINS + (log2q(v) - log2q(LIN32_TOP));
    case ND_BIN_UNI16:
        return v == 0 ? 0 : 1 + (width > 4 ? v >> (width - 4) : v);
    case ND_BIN_PORT:
        return v < 1024 ? v : 1023 + (v >> 10);
    case ND_BIN_EXACT:
    case ND_BIN_HASH:
    default:
        return v;
    }
}

uint64_t nd_eval_bin_lo(nd_eval_binning b, int width, uint64_t key)
{
    switch (b) {
    case ND_BIN_LOG2Q:
        return log2q_lo(key);
    case ND_BIN_LIN32:
        return key < LIN32_BINS ? key * 32 : log2q_lo(key - LIN32_BINS + log2q(LIN32_TOP));
    case ND_BIN_UNI16:
        if (key == 0)
            return 0;
        return width > 4 ? ((key - 1) << (width - 4) ? (key - 1) << (width - 4) : 1) : key - 1;
    case ND_BIN_PORT:
        return key < 1024 ? key : (key - 1023) << 10;
    case ND_BIN_EXACT:
    case ND_BIN_HASH:
    default:
        return key;
    }
}

static const char *proto_name(unsigned p)
{
    switch (p) {
    case 1: return "icmp";
    case 6: return "tcp";
    case 17: return "udp";
    case 58: return "icmp6";
    default: return NULL;
    }
}

void nd_eval_bin_text(int f, uint64_t key, char *buf, size_t n)
{
    const nd_eval_feature *fe = &nd_eval_features[f];
    if (f == ND_EF_TRANSPORT) {
        const char *p = proto_name((unsigned)(key & 0xff));
        if (p)
            snprintf(buf, n, "v%u/%s", (unsigned)(key >> 8), p);
        else
            snprintf(buf, n, "v%u/%u", (unsigned)(key >> 8), (unsigned)(key & 0xff));
    } else if (f == ND_EF_TCP_FLAGS) {
        static const char letters[] = "CEUAPRSF"; /* CWR ECE URG ACK PSH RST SYN FIN */
        size_t o = 0;
        for (int i = 0; i < 8 && o + 1 < n; i++)
            if (key & (0x80u >> i))
                buf[o++] = letters[i];
        if (o == 0 && n > 1)
            buf[o++] = '-';
        buf[o < n ? o : n - 1] = 0;
    } else if (f == ND_EF_DIR_PATTERN) {
        unsigned k = (unsigned)(key >> 8);
        size_t o = 0;
        for (unsigned i = 0; i < k && o + 1 < n; i++)
            buf[o++] = (key >> (k - 1 - i)) & 1 ? '1' : '0';
        buf[o < n ? o : n - 1] = 0;
    } else if (f == ND_EF_DIR_FRAC) {
        snprintf(buf, n, "%.1f-%.1f", (double)key / 10, (double)(key + 1) / 10);
    } else if (fe->binning == ND_BIN_HASH) {
        snprintf(buf, n, "#%04" PRIx64, key & 0xffff);
    } else if (fe->binning == ND_BIN_EXACT ||
               (fe->binning == ND_BIN_PORT && key < 1024) ||
               (fe->binning == ND_BIN_UNI16 && key == 0) ||
               (fe->binning == ND_BIN_LOG2Q && key <= 1)) {
        snprintf(buf, n, "%" PRIu64, nd_eval_bin_lo(fe->binning, fe->width, key));
    } else {
        uint64_t lo = nd_eval_bin_lo(fe->binning, fe->width, key);
        uint64_t hi = nd_eval_bin_lo(fe->binning, fe->width, key + 1);
        if (hi <= lo + 1)
            snprintf(buf, n, "%" PRIu64, lo);
        else
            snprintf(buf, n, "%" PRIu64 "-%" PRIu64, lo, hi - 1);
    }
}
