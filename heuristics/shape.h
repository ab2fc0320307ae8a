/* heuristics/shape.h - payload shaping (internal to heuristics/): the
 * seeded random payload bytes of a packet made into a well-formed message
 * of the protocol a dissector expects on the flow's port, same length. */
#ifndef ND_HEURISTICS_SHAPE_H
#define ND_HEURISTICS_SHAPE_H

#include <stdint.h>

/* port[0]: the initiator's port, port[1]: the responder's; dir: 0 sent by
 * the initiator, 1 by the responder. p holds n random bytes already. */
void nd_shape_udp(uint8_t *p, uint32_t n, const uint16_t port[2], int dir, uint64_t key);
/* TCP shapes a byte stream, not packets: off is p[0]'s offset in the
 * side's data stream (0 = its first data byte), so that a retransmission
 * carries the same bytes. key is per flow and side. */
void nd_shape_tcp(uint8_t *p, uint32_t n, uint64_t off, const uint16_t port[2], int dir,
                  uint64_t key);

#endif
