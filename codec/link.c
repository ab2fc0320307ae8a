/* codec/link.c - find the IP header inside a captured frame. */
#include "codec/codec.h"
#include "codec/internal.h"

#include <string.h>

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* Follows an Ethernet-style protocol number from offset off; returns the IP
 * offset or -1. Handles any depth of VLAN tags, MPLS label stacks and PPPoE
 * sessions, the encapsulations found in real enterprise captures. */
static long ethertype_chain(const uint8_t *f, uint32_t len, uint32_t off, uint16_t type)
{
    for (int depth = 0; depth < 16; depth++) {
        switch (type) {
        case 0x0800:
        case 0x86DD:
            return off < len ? (long)off : -1;
        case 0x8100: case 0x88A8: case 0x9100: case 0x9200:  /* 802.1Q / QinQ */
            if (off + 4 > len)
                return -1;
            type = be16(f + off + 2);
            off += 4;
            break;
        case 0x8847: case 0x8848: {                           /* MPLS */
            for (;;) {
                if (off + 4 > len)
                    return -1;
                int bottom = f[off + 2] & 1;
                off += 4;
                if (bottom)
                    break;
            }
            if (off >= len)
                return -1;
            int v = f[off] >> 4;
            return (v == 4 || v == 6) ? (long)off : -1;
        }
        case 0x8864:                                          /* PPPoE session */
            if (off + 8 > len)
                return -1;
            {
                uint16_t ppp = be16(f + off + 6);
                off += 8;
                if (ppp == 0x0021)
                    type = 0x0800;
                else if (ppp == 0x0057)
                    type = 0x86DD;
                else
                    return -1;
            }
            break;
        default:
            return -1;
        }
    }
    return -1;
}

long nd_link_l3_offset(int linktype, const uint8_t *f, uint32_t len)
{
    switch (linktype) {
    case ND_DLT_EN10MB:
        if (len < 14)
            return -1;
        return ethertype_chain(f, len, 14, be16(f + 12));
    case ND_DLT_RAW_BSD: case ND_DLT_RAW_OPENBSD: case ND_LINKTYPE_RAW:
    case ND_DLT_IPV4: case ND_DLT_IPV6:
        if (len < 1)
            return -1;
        return ((f[0] >> 4) == 4 || (f[0] >> 4) == 6) ? 0 : -1;
    case ND_DLT_LINUX_SLL:
        if (len < 16)
            return -1;
        return ethertype_chain(f, len, 16, be16(f + 14));
    case ND_DLT_LINUX_SLL2:
        if (len < 20)
            return -1;
        return ethertype_chain(f, len, 20, be16(f));
    case ND_DLT_NULL: case ND_DLT_LOOP: {
        if (len < 5)
            return -1;
        /* The address family is in the capturing host's byte order (NULL)
         * or network order (LOOP); accept both: AF_INET 2, AF_INET6 is 10
         * (Linux), 24 / 28 / 30 (BSDs, macOS). */
        uint32_t le = (uint32_t)f[0] | (uint32_t)f[1] << 8 | (uint32_t)f[2] << 16 |
                      (uint32_t)f[3] << 24;
        uint32_t be = (uint32_t)f[3] | (uint32_t)f[2] << 8 | (uint32_t)f[1] << 16 |
                      (uint32_t)f[0] << 24;
        uint32_t af = le < 256 ? le : be;
        if (af == 2 || af == 10 || af == 24 || af == 28 || af == 30)
            return ((f[4] >> 4) == 4 || (f[4] >> 4) == 6) ? 4 : -1;
        return -1;
    }
    default:
        return -1;
    }
}
