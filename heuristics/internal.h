/* heuristics/internal.h - helpers shared by the heuristics .c files only:
 * fast reads of row cells, the counter-based RNG, Internet checksums. */
#ifndef ND_HEURISTICS_INTERNAL_H
#define ND_HEURISTICS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "codec/codec.h"

/* ---- counter-based RNG: splitmix64's finaliser over (key, counter). No
 * state to carry, so any value can be recomputed independently: payload
 * word k of packet i is the same whatever was drawn before it. */
static inline uint64_t nd_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline uint64_t nd_rand(uint64_t key, uint64_t ctr)
{
    return nd_mix64(key ^ nd_mix64(ctr));
}
/* Uniform double in [0, 1). */
static inline double nd_rand01(uint64_t key, uint64_t ctr)
{
    return (double)(nd_rand(key, ctr) >> 11) * (1.0 / 9007199254740992.0);
}

/* Word w (8 bytes) of a payload stream keyed pkey: splitmix64's output for
 * counter w, one multiply-xorshift round per word (the payload is most of
 * the bytes repair writes). */
static inline uint64_t nd_stream_word(uint64_t pkey, uint64_t w)
{
    return nd_mix64(pkey + w * 0x9e3779b97f4a7c15ull);
}

/* ---- row cells, 8 at a time. A cell is 1, 0 or -1 (0xff): bit 0 of the
 * byte is 1 for both 1 and vacant, bit 1 only for vacant. */
static inline uint64_t nd_load8(const int8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
/* 8 cells -> one byte, first cell in the MSB; *vac gets a bit per vacant cell. */
static inline uint8_t nd_cells_byte(const int8_t *p, uint8_t *vac)
{
    uint64_t v = nd_load8(p);
    uint64_t vm = (v >> 1) & 0x0101010101010101ull;         /* vacant flags */
    uint64_t bm = v & 0x0101010101010101ull & ~vm;          /* 1 cells      */
    /* gather byte lsb's: cell 0 (lowest address) to bit 7 */
    *vac = (uint8_t)((vm * 0x8040201008040201ull) >> 56);
    return (uint8_t)((bm * 0x8040201008040201ull) >> 56);
}
/* A field of w <= 64 bits at p (MSB first); vacant cells read as 0.
 * *complete is cleared when any cell is vacant. */
static inline uint64_t nd_cells_get(const int8_t *p, int w, bool *complete)
{
    uint64_t v = 0;
    uint8_t vac = 0, vb;
    int i = 0;
    for (; i + 8 <= w; i += 8) {
        v = (v << 8) | nd_cells_byte(p + i, &vb);
        vac |= vb;
    }
    for (; i < w; i++) {
        v = (v << 1) | (uint64_t)(p[i] == 1);
        vac |= (uint8_t)(p[i] != 0 && p[i] != 1);
    }
    if (vac)
        *complete = false;
    return v;
}
/* Number of vacant cells among n (n multiple of 8). */
static inline int nd_cells_vacant(const int8_t *p, int n)
{
    int c = 0;
    for (int i = 0; i < n; i += 8)
        /* bytes are 0/1: a multiply sums them into the top byte (no popcnt
         * instruction needed on baseline x86-64) */
        c += (int)((((nd_load8(p + i) >> 1) & 0x0101010101010101ull) *
                    0x0101010101010101ull) >> 56);
    return c;
}
/* Leading whole bytes (of at most max) whose 8 cells are all non-vacant. */
static inline int nd_cells_lead_bytes(const int8_t *p, int max, uint8_t *out)
{
    int n = 0;
    for (; n < max; n++) {
        uint8_t vac;
        uint8_t b = nd_cells_byte(p + 8 * n, &vac);
        if (vac)
            break;
        out[n] = b;
    }
    return n;
}

/* ---- a row's header cells packed once (analyse.c), so that the many field
 * reads of a packet are a load and two shifts each rather than a pass
 * over cells: val has a 1 bit per 1 cell, vac one per vacant cell, both
 * MSB first from the row's column 0 (the fields' own bit order). Padding
 * after the last byte lets an 8-byte load start at any field. */
#define ND_PROW_BYTES (ND_HDR_BITS / 8 + 8)
typedef struct nd_prow {
    uint8_t val[ND_PROW_BYTES];
    uint8_t vac[ND_PROW_BYTES];
} nd_prow;

static inline uint64_t nd_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}
/* Bits [col, col + w) of a, MSB first; w 1..57 (every field but the
 * addresses and option areas, which nd_prow_lead_bytes reads). */
static inline uint64_t nd_bits_at(const uint8_t *a, int col, int w)
{
    return nd_be64(a + (col >> 3)) << (col & 7) >> (64 - w);
}
/* nd_cells_get on a packed row: the same value and completeness. */
static inline uint64_t nd_prow_get(const nd_prow *p, int col, int w, bool *complete)
{
    if (nd_bits_at(p->vac, col, w))
        *complete = false;
    return nd_bits_at(p->val, col, w);
}
/* Cell col is 1. */
static inline bool nd_prow_one(const nd_prow *p, int col)
{
    return (p->val[col >> 3] >> (7 - (col & 7))) & 1;
}
/* nd_cells_lead_bytes on a packed row (col a multiple of 8; the bytes
 * [col / 8, col / 8 + max) rounded up to 8 lie inside the row). */
static inline int nd_prow_lead_bytes(const nd_prow *p, int col, int max, uint8_t *out)
{
    const uint8_t *v = p->val + col / 8, *x = p->vac + col / 8;
    int n = 0;
    for (; n < max; n += 8) {
        uint64_t w;
        memcpy(&w, x + n, 8);
        if (w) { /* the first byte with a vacant cell */
            for (; n < max && !x[n]; n++)
                ;
            break;
        }
    }
    n = n < max ? n : max;
    memcpy(out, v, (size_t)n);
    return n;
}
/* Every cell of the bytes [col / 8, col / 8 + n) is vacant. */
static inline bool nd_prow_vacant(const nd_prow *p, int col, int n)
{
    const uint8_t *x = p->vac + col / 8;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, x + i, 8);
        if (w != ~0ull)
            return false;
    }
    for (; i < n; i++)
        if (x[i] != 0xff)
            return false;
    return true;
}

/* ---- Internet checksum (RFC 1071): 64-bit accumulation, folded at the end. */
static inline uint64_t nd_sum_add(uint64_t s, const uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        s += (w & 0xffffffffull) + (w >> 32);
        p += 8;
        n -= 8;
    }
    while (n >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        s += w;
        p += 2;
        n -= 2;
    }
    if (n) {
        uint16_t w = 0;
        memcpy(&w, p, 1); /* odd byte padded with a zero byte on the right */
        s += w;
    }
    return s;
}
/* words.c: the same as nd_sum_add, and words w.. w + n - 1 of a payload
 * stream stored little-endian at dst, four lanes at a time where avx2
 * (nd_words_avx2(): the CPU has it; ask once per flow). */
bool nd_words_avx2(void);
uint64_t nd_sum_add_fast(uint64_t s, const uint8_t *p, size_t n, bool avx2);
void nd_stream_words(uint64_t pkey, uint64_t w, uint8_t *dst, size_t n, bool avx2);
/* Folds and complements; the result is in memory (network) order already
 * because the sum was taken over memory-order words. */
static inline uint16_t nd_sum_fold(uint64_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}
static inline void nd_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void nd_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
/* v's bytes least significant first: a byte store each on big-endian
 * hosts, one 8-byte store where that is the memory order already. */
static inline void nd_put64le(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, &v, 8);
#else
    for (int b = 0; b < 8; b++)
        p[b] = (uint8_t)(v >> (8 * b));
#endif
}
/* Serial-number difference a - b (RFC 1982 style), for seq/ack/TS/IDs. */
static inline int32_t nd_sdiff32(uint32_t a, uint32_t b) { return (int32_t)(a - b); }

#endif
