/* model/noise.c - counter-based Gaussian noise: Philox4x32-10 (Salmon et al.,
 * "Parallel random numbers: as easy as 1, 2, 3", SC 2011) keyed by the 64-bit
 * seed, counter = (block index lo, block index hi, sample, stream), and
 * Box-Muller on each pair of 32-bit words: one block gives 4 normals.
 * Computed in double on the host, rounded to float: no state, no order. */
#include <math.h>

#include "model/sd.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void nd_philox4x32_10(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[4]);

void nd_philox4x32_10(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[4])
{
    uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
    uint32_t k0 = key_in[0], k1 = key_in[1];
    for (int r = 0; r < 10; r++) {
        if (r) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static void block(uint64_t seed, uint32_t sample, uint32_t stream, uint64_t blk, float z[4])
{
    const uint32_t ctr[4] = {(uint32_t)blk, (uint32_t)(blk >> 32), sample, stream};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t u[4];
    nd_philox4x32_10(ctr, key, u);
    for (int p = 0; p < 2; p++) {
        double u1 = ((double)u[2 * p] + 0.5) * (1.0 / 4294967296.0); /* (0, 1) */
        double u2 = ((double)u[2 * p + 1] + 0.5) * (1.0 / 4294967296.0);
        double r = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
        z[2 * p] = (float)(r * cos(th));
        z[2 * p + 1] = (float)(r * sin(th));
    }
}

float sd_noise_at(uint64_t seed, uint32_t sample, uint32_t stream, uint64_t index)
{
    float z[4];
    block(seed, sample, stream, index / 4, z);
    return z[index % 4];
}

void sd_noise_fill(uint64_t seed, uint32_t sample, uint32_t stream, uint64_t first, float *out,
                   size_t n)
{
    size_t j = 0;
    while (j < n) {
        uint64_t idx = first + j;
        float z[4];
        block(seed, sample, stream, idx / 4, z);
        for (unsigned l = (unsigned)(idx % 4); l < 4 && j < n; l++)
            out[j++] = z[l];
    }
}

void sd_noise_source_fn(void *ctx, int step, float *z, size_t n)
{
    const sd_noise_source *src = ctx;
    size_t batch = src->batch ? src->batch : 1, per = n / batch;
    for (size_t b = 0; b < batch; b++)
        sd_noise_fill(src->seed, src->first_sample + (uint32_t)b, SD_NOISE_STEP(step), 0,
                      z + b * per, b + 1 == batch ? n - b * per : per);
}
