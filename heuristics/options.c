/* heuristics/options.c - drawn option bytes -> a well-formed option list.
 *
 * The model draws option areas as bit runs; real tools reject lengths that
 * overrun the header and kinds that are only legal on SYNs. We keep every
 * option that is well-formed and legal where it sits, in the order drawn,
 * drop the rest (from the first malformed byte on: once a length is wrong
 * nothing after it can be trusted), and pad to a 32-bit boundary with EOL. */
#include "heuristics/opts.h"

#include <string.h>

int nd_tcp_opts_repair(const uint8_t *in, int n, bool syn, bool ack, unsigned allow,
                       uint8_t *out, nd_tcp_opt_info *info)
{
    memset(info, 0, sizeof *info);
    info->ts_off = -1;
    int o = 0, i = 0;
    if (n > 40)
        n = 40;
    while (i < n) {
        uint8_t k = in[i];
        if (k == 0) /* EOL: the list ends here */
            break;
        if (k == 1) {
            out[o++] = 1;
            i++;
            continue;
        }
        if (i + 1 >= n)
            break;
        uint8_t len = in[i + 1];
        if (len < 2 || i + len > n)
            break;
        bool keep = false;
        switch (k) {
        case 2: /* MSS: SYN only */
            keep = len == 4 && syn && (allow & ND_OPT_MSS);
            if (keep)
                info->present |= ND_OPT_MSS;
            break;
        case 3: /* window scale: SYN only, shift <= 14 */
            keep = len == 3 && syn && (allow & ND_OPT_WS) && in[i + 2] <= 14;
            if (keep)
                info->present |= ND_OPT_WS;
            break;
        case 4: /* SACK permitted: SYN only */
            keep = len == 2 && syn && (allow & ND_OPT_SACKOK);
            if (keep)
                info->present |= ND_OPT_SACKOK;
            break;
        case 5: /* SACK blocks: 1..4 blocks, on ACKs after the handshake */
            keep = (len - 2) % 8 == 0 && len >= 10 && len <= 34 && ack && !syn;
            break;
        case 8: /* timestamps */
            keep = len == 10 && (allow & ND_OPT_TS) && !(info->present & ND_OPT_TS);
            if (keep) {
                info->present |= ND_OPT_TS;
                info->ts_off = o;
            }
            break;
        default: /* unknown kinds (MPTCP, TFO, ...) carry structure we do not model */
            break;
        }
        if (keep) {
            memcpy(out + o, in + i, len);
            o += len;
        }
        i += len;
    }
    while (o & 3)
        out[o++] = 0;
    return o;
}

int nd_ip4_opts_repair(const uint8_t *in, int n, uint8_t *out)
{
    int o = 0, i = 0;
    if (n > 40)
        n = 40;
    /* Only NOP and Router Alert are kept: the other IPv4 options (record
     * route, timestamps, source routes) carry pointers into themselves
     * that drawn bits get wrong, and routers treat source routes as attacks. */
    while (i < n) {
        uint8_t k = in[i];
        if (k == 0)
            break;
        if (k == 1) {
            out[o++] = 1;
            i++;
            continue;
        }
        if (k == 148 && i + 3 < n && in[i + 1] == 4) {
            out[o++] = 148;
            out[o++] = 4;
            out[o++] = 0;
            out[o++] = 0;
            i += 4;
            continue;
        }
        break;
    }
    /* A list of nothing but NOPs says nothing: drop it. */
    bool only_nop = true;
    for (int j = 0; j < o; j++)
        only_nop &= out[j] == 1;
    if (only_nop)
        o = 0;
    while (o & 3)
        out[o++] = 0;
    return o;
}
