/* heuristics/options.c - drawn option bytes -> a well-formed option list.
 *
 * The model draws option areas as bit runs; real tools reject lengths that
 * overrun the header and kinds that are only legal on SYNs. We keep every
 * option that is well-formed and legal where it sits, in the order drawn,
 * drop the rest (from the first malformed byte on: once a length is wrong
 * nothing after it can be trusted), and pad to a 32-bit boundary with EOL.
 *
 * Before that, a drawn list that does not parse is snapped to the nearest
 * of the layouts real stacks send, when it is only a few bits from one: the
 * model draws "1 1 8 8 ..." or "3 1 8 10 ..." where the flow had NOP NOP
 * TS, and without the snap every such packet lost its timestamps (session
 * 10: 64 of 64 packets of a drawn flow had their option area rewritten, and
 * the synthetic header lengths were mostly 20 and 24 bytes against the real
 * flows' 32). Only the kind and length bytes are snapped; the values inside
 * (MSS, shift, timestamps, SACK edges) stay as drawn and are checked below
 * and by the repair as for any list. */
#include "heuristics/opts.h"

#include <string.h>

/* The option layouts of common stacks: kind and length bytes as they are,
 * D for a value byte. syn: 1 on SYNs only, 0 off SYNs only, -1 either. */
#define D (-1)
static const struct {
    int n, syn;
    int16_t b[24];
} layouts[] = {
    {12, -1, {1, 1, 8, 10, D, D, D, D, D, D, D, D}},                    /* NOP NOP TS */
    {12, 0, {1, 1, 5, 10, D, D, D, D, D, D, D, D}},                     /* NOP NOP SACK(1) */
    {20, 0, {1, 1, 5, 18, D, D, D, D, D, D, D, D, D, D, D, D, D, D, D, D}}, /* SACK(2) */
    {24, 0, {1, 1, 8, 10, D, D, D, D, D, D, D, D, 1, 1, 5, 10, D, D, D, D, D, D, D, D}},
    {4, 1, {2, 4, D, D}},                                               /* MSS */
    {8, 1, {2, 4, D, D, 1, 1, 4, 2}},                                   /* MSS SACKOK */
    {8, 1, {2, 4, D, D, 1, 3, 3, D}},                                   /* MSS WS */
    {12, 1, {2, 4, D, D, 1, 3, 3, D, 1, 1, 4, 2}},                      /* Windows */
    {12, 1, {2, 4, D, D, 1, 1, 4, 2, 1, 3, 3, D}},                      /* Linux, no TS */
    {20, 1, {2, 4, D, D, 4, 2, 8, 10, D, D, D, D, D, D, D, D, 1, 3, 3, D}}, /* Linux */
    {24, 1, {2, 4, D, D, 1, 3, 3, D, 1, 1, 8, 10, D, D, D, D, D, D, D, D, 4, 2, 0, 0}}, /* macOS */
};
#undef D

/* The list parses as kinds and lengths to its end (after an EOL only
 * zeros). */
static bool well_formed(const uint8_t *in, int n)
{
    int i = 0;
    while (i < n) {
        if (in[i] == 0) {
            for (i++; i < n; i++)
                if (in[i])
                    return false;
            return true;
        }
        if (in[i] == 1) {
            i++;
            continue;
        }
        if (i + 1 >= n || in[i + 1] < 2 || i + in[i + 1] > n)
            return false;
        i += in[i + 1];
    }
    return true;
}

/* A list that does not parse gets the kind and length bytes of the nearest
 * layout (fewest differing bits) of its length, or up to 3 bytes longer (a
 * last byte drawn vacant; value bytes it lacks are 0): on a SYN always,
 * since every stack's SYN carries one of them and the timestamps of the
 * whole flow depend on the handshake's; elsewhere only within one flipped
 * bit per kind or length byte. Returns the list's length. */
static int snap_layout(uint8_t *in, int n, bool syn)
{
    if (well_formed(in, n))
        return n;
    int best = -1, best_d = 0;
    for (int l = 0; l < (int)(sizeof layouts / sizeof layouts[0]); l++) {
        if (layouts[l].n < n || layouts[l].n > n + 3 || (layouts[l].syn >= 0 && layouts[l].syn != syn))
            continue;
        int d = 0, fixed = 0;
        for (int i = 0; i < layouts[l].n; i++) {
            if (layouts[l].b[i] < 0)
                continue;
            fixed++;
            d += __builtin_popcount((unsigned)((i < n ? in[i] : 0) ^ layouts[l].b[i]));
        }
        if ((syn || d <= fixed) && (best < 0 || d < best_d))
            best = l, best_d = d;
    }
    if (best < 0)
        return n;
    for (int i = 0; i < layouts[best].n; i++)
        if (layouts[best].b[i] >= 0)
            in[i] = (uint8_t)layouts[best].b[i];
        else if (i >= n)
            in[i] = 0;
    return layouts[best].n;
}

int nd_tcp_opts_repair(const uint8_t *in, int n, bool syn, bool ack, unsigned allow,
                       uint8_t *out, nd_tcp_opt_info *info)
{
    memset(info, 0, sizeof *info);
    info->ts_off = -1;
    int o = 0, i = 0;
    if (n > 40)
        n = 40;
    uint8_t snapped[40];
    memcpy(snapped, in, (size_t)n);
    n = snap_layout(snapped, n, syn);
    in = snapped;
    bool dropped = false;
    while (i < n) {
        uint8_t k = in[i];
        if (k == 0) { /* EOL: the list ends here (zeros after it) */
            while (++i < n)
                dropped |= in[i] != 0;
            break;
        }
        if (k == 1) {
            out[o++] = 1;
            i++;
            continue;
        }
        if (i + 1 >= n) {
            dropped = true;
            break;
        }
        uint8_t len = in[i + 1];
        if (len < 2 || i + len > n) {
            dropped = true;
            break;
        }
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
        dropped |= !keep;
        i += len;
    }
    /* NOPs that aligned an option left out now align nothing: real stacks
     * send no such tail (one the list had as drawn stays) */
    while (dropped && o > 0 && out[o - 1] == 1)
        o--;
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
