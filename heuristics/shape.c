/* heuristics/shape.c - payload bytes a port's dissector accepts.
 *
 * The model draws a payload length, not a message. Random bytes are right
 * for encrypted traffic, but on a port with a plain-text or binary
 * protocol every tool (tshark first) reads them as that protocol and
 * reports a malformed message. Here the seeded random bytes keep their
 * length and most of their randomness, inside the framing the protocol
 * needs: a header, length fields that add up, an end marker. Where a
 * protocol cannot hold the drawn length at all (RIP's 20-byte entries, a
 * DHCP message under 240 bytes, NTP under 48) the bytes stay random: tshark
 * then reports them malformed, as it does for real traffic that uses those
 * ports for something else (Telegram on UDP 521).
 *
 * TCP protocols frame a byte stream, so their shapes are functions of the
 * stream offset: a retransmission repeats exactly the bytes it resends. */
#include "heuristics/shape.h"

#include "heuristics/internal.h"

#include <stdio.h>
#include <string.h>

static char hex_char(uint64_t key, uint64_t i) { return "0123456789abcdef"[nd_rand(key, i) & 15]; }

/* ------------------------------------------------------------------ UDP */

/* DNS over UDP 53 (and mDNS, 5353): a well-formed message of exactly n
 * bytes: header (a seeded id; query from the initiator, response from the
 * responder), one question with a seeded name, and an EDNS OPT record
 * whose padding option (RFC 7830) takes the rest. Under 12 bytes nothing
 * fits; under 17 the header alone (no question). */
static void dns_shape(uint8_t *p, uint32_t n, int response, uint64_t key)
{
    if (n < 12)
        return;
    memset(p, 0, n);
    nd_put16(p, (uint16_t)nd_rand(key, 1));
    nd_put16(p + 2, response ? 0x8180 : 0x0100);
    if (n < 17)
        return;
    uint32_t rest = n - 12, q;  /* q: bytes of the encoded name */
    if (rest - 4 < 1 + 15)
        q = rest - 4;           /* no room for OPT: the name takes it all */
    else {
        q = 8 + (uint32_t)(nd_rand(key, 2) % 24);
        if (q > rest - 4 - 15)
            q = rest - 4 - 15;
    }
    if (q > 255)
        q = 255;
    if (q == 2)
        q = 1;                  /* a label needs 3 bytes: the root name, one byte left over */
    nd_put16(p + 4, 1);         /* one question */
    uint8_t *o = p + 12;
    uint32_t left = q - 1;      /* label bytes before the final 0 */
    uint64_t c = 3;
    while (left > 0) {
        uint32_t len = left - 1 < 63 ? left - 1 : 63;
        if (left - (len + 1) == 1)
            len--;              /* never leave one byte: no room for a label */
        if (len == 0)
            len = 1;
        *o++ = (uint8_t)len;
        for (uint32_t i = 0; i < len; i++)
            *o++ = (uint8_t)('a' + nd_rand(key, c++) % 26);
        left -= len + 1;
    }
    *o++ = 0;
    nd_put16(o, 1);             /* QTYPE A  */
    nd_put16(o + 2, 1);         /* QCLASS IN */
    o += 4;
    uint32_t used = (uint32_t)(o - p);
    if (n - used >= 15) {
        nd_put16(p + 10, 1);    /* one additional record: OPT */
        uint32_t pad = n - used - 15;
        o[0] = 0;               /* root name */
        nd_put16(o + 1, 41);    /* OPT */
        nd_put16(o + 3, 1232);  /* UDP payload size */
        /* ttl (extended rcode, version, flags) 0 */
        nd_put16(o + 9, (uint16_t)(4 + pad));
        nd_put16(o + 11, 12);   /* option: padding */
        nd_put16(o + 13, (uint16_t)pad);
    }
}

/* NTP (UDP 123): a version 4 client (initiator) or server packet, 48
 * bytes of header, then extension fields (RFC 7822: type, length, value;
 * at least 16 bytes, whole words) while more than a MAC's 24 bytes are
 * left, and the rest as key id + MAC, which any length reads as. */
static void ntp_shape(uint8_t *p, uint32_t n, int dir)
{
    if (n < 48)
        return;
    p[0] = (uint8_t)(4 << 3 | (dir ? 4 : 3)); /* LI 0, VN 4, mode client / server */
    p[1] = dir ? (uint8_t)(1 + p[1] % 15) : 0; /* stratum */
    p[2] = (uint8_t)(4 + p[2] % 14);           /* poll 2^4 .. 2^17 s */
    p[3] = (uint8_t)(0xe8 + p[3] % 16);        /* precision ~ 2^-24 .. 2^-9 */
    uint32_t at = 48;
    while (n - at > 24) {
        uint32_t len = (n - at - 24 + 3) & ~3u; /* leave at most 24 */
        if (len < 16)
            len = 16;
        if (len > n - at)
            break;
        nd_put16(p + at, 0x0104);               /* unique identifier */
        nd_put16(p + at + 2, (uint16_t)len);
        at += len;
    }
}

/* DHCP / BOOTP (UDP 67, 68): the 236-byte BOOTP header with the
 * initiator's request or the responder's reply, the magic cookie, a
 * message type option, private options (224-254, any bytes) holding the
 * random bytes, and the end option. Under 240 bytes it cannot be one. */
static void dhcp_shape(uint8_t *p, uint32_t n, int dir)
{
    if (n < 240)
        return;
    p[0] = dir ? 2 : 1;                    /* BOOTREPLY / BOOTREQUEST */
    p[1] = 1;                              /* Ethernet */
    p[2] = 6;
    p[3] = 0;                              /* hops */
    /* xid random; secs, flags 0; client address only in a reply */
    memset(p + 8, 0, 4);
    if (!dir)
        memset(p + 12, 0, 16);             /* ciaddr yiaddr siaddr giaddr */
    memset(p + 34, 0, 10);                 /* chaddr's padding after 6 bytes */
    memset(p + 44, 0, 192);                /* sname, file */
    nd_put32(p + 236, 0x63825363);
    uint32_t at = 240, left = n - 240;
    if (left >= 4) {
        p[at] = 53;
        p[at + 1] = 1;
        p[at + 2] = dir ? 5 : 3;           /* ACK / REQUEST */
        at += 3;
        left -= 3;
    }
    if (!left)
        return;
    left--;                                /* the end option's byte */
    for (uint8_t code = 224; left >= 2; code = code == 254 ? 224 : (uint8_t)(code + 1)) {
        uint32_t len = left - 2 < 255 ? left - 2 : 255;
        p[at] = code;
        p[at + 1] = (uint8_t)len;
        at += 2 + len;
        left -= 2 + len;
    }
    if (left)
        p[at++] = 0;                       /* pad */
    p[at] = 255;
}

/* SSDP (UDP 1900): HTTP over UDP, plain text. A search from the
 * initiator, a response from the responder, the random bytes as hex in
 * extension headers, then the empty line that ends the message. */
static void ssdp_shape(uint8_t *p, uint32_t n, int dir, uint64_t key)
{
    static const char req[] = "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n"
                              "MAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n";
    static const char rsp[] = "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nEXT:\r\n";
    const char *h = dir ? rsp : req;
    uint32_t hl = (uint32_t)strlen(h);
    uint64_t c = 0;
    if (n < hl + 2) {
        /* too short for a start line: a line of hex, the HTTP dissector's
         * "continuation" of a message it has not seen */
        for (uint32_t i = 0; i < n; i++)
            p[i] = (uint8_t)hex_char(key, c++);
        return;
    }
    /* the fixed lines; 1..7 bytes too few for a line of their own
     * become spaces before the last line's end (allowed whitespace) */
    uint32_t rest = n - 2 - hl, pad = rest < 8 ? rest : 0, at = hl - 2;
    memcpy(p, h, at);
    memset(p + at, ' ', pad);
    at += pad;
    rest -= pad;
    p[at++] = '\r';
    p[at++] = '\n';
    /* "X-<hex>: <hex>\r\n" lines of 8..80 bytes take the rest */
    while (rest >= 8) {
        uint32_t len = rest <= 80 ? rest : 72, name = (len - 6) / 2;
        p[at] = 'X';
        p[at + 1] = '-';
        for (uint32_t i = 0; i < name; i++)
            p[at + 2 + i] = (uint8_t)hex_char(key, c++);
        p[at + 2 + name] = ':';
        p[at + 3 + name] = ' ';
        for (uint32_t i = at + 4 + name; i < at + len - 2; i++)
            p[i] = (uint8_t)hex_char(key, c++);
        p[at + len - 2] = '\r';
        p[at + len - 1] = '\n';
        at += len;
        rest -= len;
    }
    p[at] = '\r';
    p[at + 1] = '\n';
}

/* RIP (UDP 520) and RIPng (521): a response of 20-byte route entries after
 * the 4-byte header, when the length is one. */
static void rip_shape(uint8_t *p, uint32_t n, int ng)
{
    if (n < 24 || (n - 4) % 20)
        return;
    p[0] = 2;                        /* response */
    p[1] = ng ? 1 : 2;               /* version */
    p[2] = p[3] = 0;
    for (uint32_t at = 4; at < n; at += 20) {
        if (ng) {
            p[at + 18] = (uint8_t)(p[at + 18] % 129); /* prefix length */
            p[at + 19] = (uint8_t)(1 + p[at + 19] % 16); /* metric */
        } else {
            nd_put16(p + at, 2);     /* AF_INET */
            nd_put32(p + at + 16, 1 + p[at + 19] % 16u);
        }
    }
}

void nd_shape_udp(uint8_t *p, uint32_t n, const uint16_t port[2], int dir, uint64_t key)
{
    /* tshark tries the lower port's dissector first */
    uint16_t lo = port[0] < port[1] ? port[0] : port[1], hi = port[0] ^ port[1] ^ lo;
    for (int i = 0; i < 2; i++) {
        switch (i ? hi : lo) {
        case 53:
        case 5353: dns_shape(p, n, dir == 1, key); return;
        case 123: ntp_shape(p, n, dir); return;
        case 67:
        case 68: dhcp_shape(p, n, dir); return;
        case 1900: ssdp_shape(p, n, dir, key); return;
        case 520: rip_shape(p, n, 0); return;
        case 521: rip_shape(p, n, 1); return;
        default: break;
        }
    }
    /* any other port: no random start that tshark's heuristic dissectors
     * (on by default) take for their protocol and then find malformed:
     * RTCP (version 2, packet type 192..223) and OSI CLTP (a length
     * indicator that fits, then the UD code 0x4_). The second byte moves
     * out of both ranges. */
    if (n >= 2 && (p[0] >> 6) == 2 && p[1] >= 192 && p[1] <= 223)
        p[1] ^= 0x80;
    if (n >= 2 && (p[1] >> 4) == 4 && p[0] < n)
        p[1] ^= 0x10;
}

/* ------------------------------------------------------------------ TCP */

/* Overlays stream bytes [s, s + len) of src onto the segment at off. */
static void overlay(uint8_t *p, uint32_t n, uint64_t off, uint64_t s, const uint8_t *src,
                    uint32_t len)
{
    uint64_t a = s > off ? s : off, b = s + len < off + n ? s + len : off + n;
    for (uint64_t i = a; i < b; i++)
        p[i - off] = src[i - s];
}

/* HTTP (TCP 80, 8080): each side's stream opens with a request (initiator)
 * or a response header announcing a body longer than any capture, which
 * the random bytes then are (tshark waits for the rest of it). */
static void http_stream(uint8_t *p, uint32_t n, uint64_t off, int dir, uint64_t key)
{
    char h[128];
    int hl;
    if (dir)
        hl = snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream"
                                   "\r\nContent-Length: 999999999\r\n\r\n");
    else {
        char id[9];
        for (int i = 0; i < 8; i++)
            id[i] = hex_char(key, (uint64_t)i);
        id[8] = 0;
        hl = snprintf(h, sizeof h, "POST /%s HTTP/1.1\r\nHost: %s.example\r\n"
                                   "Content-Length: 999999999\r\n\r\n", id, id);
    }
    overlay(p, n, off, 0, (const uint8_t *)h, (uint32_t)hl);
}

/* TLS (443 and the other TLS ports): application data records (type 23,
 * version 3.3) of a fixed size per side, the random bytes their sealed
 * contents: what encrypted traffic looks like after its handshake. */
static void tls_stream(uint8_t *p, uint32_t n, uint64_t off, uint64_t key)
{
    uint32_t body = 2048 + (uint32_t)(nd_rand(key, 0x715) % (16401 - 2048 + 1));
    uint64_t rec = 5 + (uint64_t)body;
    uint8_t h[5] = {23, 3, 3, (uint8_t)(body >> 8), (uint8_t)body};
    for (uint64_t s = (off / rec) * rec; s < off + n; s += rec)
        overlay(p, n, off, s, h, 5);
}

/* SSH (TCP 22): each side's stream opens with its version line, then
 * binary packets of one size per side, each an SSH_MSG_IGNORE whose string
 * is the random bytes (and 4 bytes of padding): a well-formed unencrypted
 * stream. Without a version line tshark takes the bytes for packets
 * encrypted with unknown keys and finds most of them malformed. */
static void ssh_stream(uint8_t *p, uint32_t n, uint64_t off, int dir, uint64_t key)
{
    static const char *const banner[2] = {"SSH-2.0-OpenSSH_9.6\r\n", "SSH-2.0-OpenSSH_9.2p1\r\n"};
    uint32_t bl = (uint32_t)strlen(banner[dir != 0]);
    overlay(p, n, off, 0, (const uint8_t *)banner[dir != 0], bl);
    /* packet_length counts padding_length, the message and the padding */
    uint32_t plen = 512 + (uint32_t)(nd_rand(key, 0x55a) % 1024);
    uint64_t rec = 4 + (uint64_t)plen;
    uint8_t h[10];
    nd_put32(h, plen);
    h[4] = 4;                 /* padding_length */
    h[5] = 2;                 /* SSH_MSG_IGNORE */
    nd_put32(h + 6, plen - 10); /* its string: the rest but the padding */
    uint64_t first = off > bl ? (off - bl) / rec : 0;
    for (uint64_t s = bl + first * rec; s < off + n; s += rec)
        overlay(p, n, off, s, h, sizeof h);
}

void nd_shape_tcp(uint8_t *p, uint32_t n, uint64_t off, const uint16_t port[2], int dir,
                  uint64_t key)
{
    uint16_t lo = port[0] < port[1] ? port[0] : port[1], hi = port[0] ^ port[1] ^ lo;
    for (int i = 0; i < 2; i++) {
        switch (i ? hi : lo) {
        case 22: ssh_stream(p, n, off, dir, key); return;
        case 80:
        case 8080: http_stream(p, n, off, dir, key); return;
        case 443:
        case 465:
        case 563:
        case 636:
        case 853:
        case 990:
        case 993:
        case 995:
        case 5061:
        case 5223:
        case 8443:
        case 8883: tls_stream(p, n, off, key); return;
        default: break;
        }
    }
}
