/* tests/heuristics/shape_sample.c - flows whose payloads repair shapes
 * (heuristics/shape.c), at every payload length, for test_shape.sh's
 * tshark check: UDP flows on each shaped port (and an unshaped one) with
 * one packet of each length 0..300 and every 7th up to 1472, both
 * directions; TCP flows on the shaped TCP ports with a handshake and data
 * segments of many lengths both ways. Rows are built here, through the
 * public API only, as a model would draw them.
 * Usage: shape_sample OUT.pcap SEED. Prints "flows packets". */
#include "tests/heuristics/helpers.h"

static int8_t *ip_row(nd_rows *t, int proto, uint32_t l4len)
{
    int8_t *r = nd_rows_push(t, NULL);
    nd_row_set(r, ND_F_IPV4_VER, 4);
    nd_row_set(r, ND_F_IPV4_HL, 5);
    nd_row_set(r, ND_F_IPV4_TOS, 0);
    nd_row_set(r, ND_F_IPV4_TL, 20 + l4len);
    nd_row_set(r, ND_F_IPV4_ID, 0);
    nd_row_set(r, ND_F_IPV4_RBIT, 0);
    nd_row_set(r, ND_F_IPV4_DFBIT, 1);
    nd_row_set(r, ND_F_IPV4_MFBIT, 0);
    nd_row_set(r, ND_F_IPV4_FOFF, 0);
    nd_row_set(r, ND_F_IPV4_TTL, 64);
    nd_row_set(r, ND_F_IPV4_PROTO, (uint64_t)proto);
    nd_row_set(r, ND_F_IPV4_CKSUM, 0);
    nd_row_set(r, ND_F_IPV4_SRC, 0);
    nd_row_set(r, ND_F_IPV4_DST, 0);
    return r;
}

static void udp_flow(nd_rows *t, uint16_t port)
{
    for (uint32_t n = 0, k = 0; n <= 1472; n = n < 300 ? n + 1 : n + 7, k++) {
        int8_t *r = ip_row(t, 17, 8 + n);
        bool back = k & 1;
        nd_row_set(r, ND_F_UDP_SPORT, back ? port : 50123);
        nd_row_set(r, ND_F_UDP_DPORT, back ? 50123 : port);
        nd_row_set(r, ND_F_UDP_LEN, 8 + n);
        nd_row_set(r, ND_F_UDP_CKSUM, 0);
    }
}

static void tcp_row(nd_rows *t, uint16_t port, bool back, uint8_t flags, uint32_t seq,
                    uint32_t ack, uint32_t n)
{
    int8_t *r = ip_row(t, 6, 20 + n);
    nd_row_set(r, ND_F_TCP_SPRT, back ? port : 50124);
    nd_row_set(r, ND_F_TCP_DPRT, back ? 50124 : port);
    nd_row_set(r, ND_F_TCP_SEQ, seq);
    nd_row_set(r, ND_F_TCP_ACKN, ack);
    nd_row_set(r, ND_F_TCP_DOFF, 5);
    nd_row_set(r, ND_F_TCP_RES, 0);
    nd_row_set(r, ND_F_TCP_NS, 0);
    nd_bits_from_bytes(r + nd_fields[ND_F_TCP_CWR].col, &flags, 1);
    nd_row_set(r, ND_F_TCP_WSIZE, 64240);
    nd_row_set(r, ND_F_TCP_CKSUM, 0);
    nd_row_set(r, ND_F_TCP_URP, 0);
}

static void tcp_flow(nd_rows *t, uint16_t port, uint64_t *rs)
{
    uint32_t s[2] = {1000, 900000}; /* next seq per side */
    tcp_row(t, port, false, 0x02, s[0]++, 0, 0);
    tcp_row(t, port, true, 0x12, s[1]++, s[0], 0);
    tcp_row(t, port, false, 0x10, s[0], s[1], 0);
    for (int k = 0; k < 240; k++) {
        bool back = (th_next(rs) % 3) == 0 ? !(k & 1) : (k & 1);
        uint32_t n = (uint32_t)(th_next(rs) % 4 == 0 ? th_next(rs) % 40 : th_next(rs) % 1461);
        tcp_row(t, port, back, 0x18, s[back], s[!back], n);
        s[back] += n;
    }
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    uint64_t rs = strtoull(argv[2], NULL, 0);
    static const uint16_t udp_ports[] = {53, 5353, 123, 67, 68, 1900, 520, 521, 44444};
    static const uint16_t tcp_ports[] = {22, 80, 8080, 443, 993, 8443, 44445};
    nd_repair_opts o;
    nd_repair_opts_init(&o);
    o.seed = rs;
    nd_repair_ctx *c;
    nd_err err = {{0}};
    FILE *f = fopen(argv[1], "wb");
    nd_capwriter *w;
    if (nd_repair_ctx_new(&o, &c, &err) || !f ||
        nd_capwriter_open_file(ND_CAP_PCAP, o.linktype, f, &w, &err))
        return 1;
    long pk = 0;
    int flows = 0;
    for (size_t i = 0; i < ND_ARRAY_LEN(udp_ports) + ND_ARRAY_LEN(tcp_ports); i++) {
        nd_rows t;
        if (nd_rows_init(&t, 0, 512, &err))
            return 1;
        if (i < ND_ARRAY_LEN(udp_ports))
            udp_flow(&t, udp_ports[i]);
        else
            tcp_flow(&t, tcp_ports[i - ND_ARRAY_LEN(udp_ports)], &rs);
        nd_repair_out out;
        if (nd_repair_flow(c, &t, NULL, NULL, (uint64_t)i, &out, NULL, &err) ||
            nd_repair_write(w, &out, NULL, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        if (out.n != t.n) {
            fprintf(stderr, "flow %zu: %d packets of %d rows\n", i, out.n, t.n);
            return 1;
        }
        pk += out.n;
        flows++;
        nd_rows_free(&t);
    }
    nd_capwriter_free(w);
    fclose(f);
    nd_repair_ctx_free(c);
    printf("%d %ld\n", flows, pk);
    return 0;
}
