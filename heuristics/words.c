/* heuristics/words.c - the two loops over every payload byte the repair
 * writes: the seeded payload words and the transport checksum. Four
 * 64-bit lanes at a time with AVX2 where the CPU has it (a flow's packets
 * are mostly payload: these loops were a third of the repair), the plain
 * loops otherwise; both give the same bytes and sums (integer arithmetic,
 * only regrouped). */
#include "heuristics/internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ND_WORDS_AVX2 1

bool nd_words_avx2(void) { return __builtin_cpu_supports("avx2"); }

/* z * k mod 2^64 per lane, from 32-bit products (AVX2 has no 64-bit one). */
__attribute__((target("avx2"))) static inline __m256i mul64(__m256i z, uint64_t k)
{
    const __m256i klo = _mm256_set1_epi64x((long long)(k & 0xffffffffu));
    const __m256i khi = _mm256_set1_epi64x((long long)(k >> 32));
    __m256i lo = _mm256_mul_epu32(z, klo);
    __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(z, 32), klo),
                                     _mm256_mul_epu32(z, khi));
    return _mm256_add_epi64(lo, _mm256_slli_epi64(cross, 32));
}
__attribute__((target("avx2"))) static inline __m256i xorshift(__m256i z, int s)
{
    return _mm256_xor_si256(z, _mm256_srli_epi64(z, s));
}

__attribute__((target("avx2"))) static size_t words_avx2(uint64_t pkey, uint64_t w, uint8_t *dst,
                                                         size_t n)
{
    const uint64_t g = 0x9e3779b97f4a7c15ull;
    /* nd_mix64's input for word w is pkey + w * g + g */
    __m256i z = _mm256_add_epi64(_mm256_set1_epi64x((long long)(pkey + w * g + g)),
                                 _mm256_setr_epi64x(0, (long long)g, (long long)(2 * g),
                                                    (long long)(3 * g)));
    const __m256i step = _mm256_set1_epi64x((long long)(4 * g));
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256i v = mul64(xorshift(z, 30), 0xbf58476d1ce4e5b9ull);
        v = xorshift(mul64(xorshift(v, 27), 0x94d049bb133111ebull), 31);
        _mm256_storeu_si256((__m256i *)(dst + 8 * i), v); /* lanes little-endian: LE bytes */
        z = _mm256_add_epi64(z, step);
    }
    return i;
}

__attribute__((target("avx2"))) static uint64_t sum_avx2(uint64_t s, const uint8_t *p, size_t n,
                                                         size_t *done)
{
    const __m256i lo32 = _mm256_set1_epi64x(0xffffffff);
    __m256i a = _mm256_setzero_si256(), b = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(p + i));
        a = _mm256_add_epi64(a, _mm256_and_si256(v, lo32));
        b = _mm256_add_epi64(b, _mm256_srli_epi64(v, 32));
    }
    uint64_t t[4];
    _mm256_storeu_si256((__m256i *)t, _mm256_add_epi64(a, b));
    *done = i;
    return s + t[0] + t[1] + t[2] + t[3];
}
#else
bool nd_words_avx2(void) { return false; }
#endif

void nd_stream_words(uint64_t pkey, uint64_t w, uint8_t *dst, size_t n, bool avx2)
{
    size_t i = 0;
#ifdef ND_WORDS_AVX2
    if (avx2)
        i = words_avx2(pkey, w, dst, n);
#endif
    (void)avx2;
    for (; i < n; i++)
        nd_put64le(dst + 8 * i, nd_stream_word(pkey, w + i));
}

uint64_t nd_sum_add_fast(uint64_t s, const uint8_t *p, size_t n, bool avx2)
{
    size_t i = 0;
#ifdef ND_WORDS_AVX2
    if (avx2)
        s = sum_avx2(s, p, n, &i);
#endif
    (void)avx2;
    return nd_sum_add(s, p + i, n - i);
}
