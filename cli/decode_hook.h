/* cli/decode_hook.h - where `netdiff decode` calls the repair step.
 *
 * heuristics/ provides nd_decode_repair (a strong definition in a cli/ file
 * that calls heuristics/repair.h); until then the weak symbol is NULL and
 * decode writes the raw inverse. The function writes one flow's packets to
 * w, advancing *t_us (the running clock, microseconds) and *packets. */
#ifndef ND_CLI_DECODE_HOOK_H
#define ND_CLI_DECODE_HOOK_H

#include "codec/codec.h"

/* conf: per image pixel of `layout` (both NULL for CSV input). The packets
 * carry the pcapml comment "FLOWID,LABEL" (shown in pcapng output). */
extern nd_status nd_decode_repair(nd_capwriter *w, const nd_rows *rows, const nd_layout *layout,
                                  const nd_conf *conf, const char *label, uint64_t seed,
                                  uint64_t flow_id, int64_t *t_us, uint64_t *packets,
                                  nd_err *err) __attribute__((weak));
/* Link type of repaired output (ND_LINKTYPE_ETHERNET or ND_LINKTYPE_RAW). */
extern const int nd_decode_linktype __attribute__((weak));

#endif
