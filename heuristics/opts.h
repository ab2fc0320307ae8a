/* heuristics/opts.h - option list repair (internal to heuristics/). */
#ifndef ND_HEURISTICS_OPTS_H
#define ND_HEURISTICS_OPTS_H

#include <stdbool.h>
#include <stdint.h>

enum { ND_OPT_MSS = 1, ND_OPT_WS = 2, ND_OPT_SACKOK = 4, ND_OPT_TS = 8, ND_OPT_ALL = 15 };

typedef struct nd_tcp_opt_info {
    unsigned present;  /* ND_OPT_* kept */
    int ts_off;        /* offset of the timestamps option (kind byte) in out, or -1 */
} nd_tcp_opt_info;

/* in: n drawn option bytes. allow: ND_OPT_* that may be kept (a SYN-ACK may
 * only carry what the SYN offered). out: >= 44 bytes. Returns the length
 * written, a multiple of 4, <= 40. */
int nd_tcp_opts_repair(const uint8_t *in, int n, bool syn, bool ack, unsigned allow,
                       uint8_t *out, nd_tcp_opt_info *info);
/* IPv4: keeps NOP and Router Alert, drops the rest; multiple of 4, <= 40. */
int nd_ip4_opts_repair(const uint8_t *in, int n, uint8_t *out);

#endif
