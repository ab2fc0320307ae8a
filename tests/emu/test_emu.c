/* tests/emu/test_emu.c - the SIMT emulation runtime (kernels/emu/) on its own:
 * barriers, shuffles and votes, shared memory, the tensor-core wrapper, launch
 * checks. The kernels are in tests/emu/emu_selftest.cu; the races they can be
 * built with (a __syncthreads left out) must give wrong answers here, or the
 * emulator would be hiding the bugs it exists to find. */
#include "kernels/ops.h"
#include "tests/harness.h"

int emu_test_block_sum(const float *x, float *out, int n, int sync);
int emu_test_transpose(const float *x, float *y, int M, int N, int sync);
int emu_test_shuffles(int *out);
int emu_test_mma(const uint16_t *A, const uint16_t *Bt, const float *C, float *D);
int emu_test_early_exit(int *out, int n, int block);
int emu_test_big_smem(float *out, int optin);
int emu_test_bad_config(void);

static uint64_t rng;
static float urand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static void test_block_sum(void)
{
    rng = nd_test_seed();
    enum { N = 1000, B = (N + 255) / 256 };
    static float x[N], out[B];
    double want[B] = {0};
    for (int i = 0; i < N; i++) {
        x[i] = urand();
        want[i / 256] += x[i];
    }
    CHECK_EQ_INT(emu_test_block_sum(x, out, N, 1), 0);
    for (int b = 0; b < B; b++)
        CHECKF(fabs(out[b] - want[b]) < 1e-4, "block %d: %g want %g", b, out[b], want[b]);
    /* without the __syncthreads thread 0 reads partial sums not written yet */
    CHECK_EQ_INT(emu_test_block_sum(x, out, N, 0), 0);
    int wrong = 0;
    for (int b = 0; b < B; b++)
        wrong += !(fabs(out[b] - want[b]) < 1e-4);
    CHECKF(wrong == B, "the race without __syncthreads went unnoticed in %d of %d blocks",
           B - wrong, B);
}

static void test_transpose(void)
{
    enum { M = 45, N = 70 };
    static float x[M * N], y[M * N];
    for (int i = 0; i < M * N; i++)
        x[i] = (float)i;
    for (int sync = 1; sync >= 0; sync--) {
        for (int i = 0; i < M * N; i++)
            y[i] = NAN;
        CHECK_EQ_INT(emu_test_transpose(x, y, M, N, sync), 0);
        int bad = 0;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++)
                bad += y[n * M + m] != x[m * N + n];
        if (sync)
            CHECKF(bad == 0, "%d elements wrong", bad);
        else
            CHECKF(bad > 0, "transpose without __syncthreads came out right");
    }
}

static void test_shuffles(void)
{
    static int o[40 * 8];
    CHECK_EQ_INT(emu_test_shuffles(o), 0);
    unsigned ballot = 0;
    for (int l = 0; l < 32; l += 3)
        ballot |= 1u << l;
    for (int l = 0; l < 32; l++) {
        int *r = o + l * 8;
        CHECK_EQ_INT(r[0], ((l + 3) % 32) * 10);
        CHECK_EQ_INT(r[1], (l ^ 5) * 10);
        CHECK_EQ_INT(r[2], (l + 4 < 32 ? l + 4 : l) * 10);
        CHECK_EQ_INT(r[3], (l % 8 >= 2 ? l - 2 : l) * 10);
        CHECK_EQ_INT((unsigned)r[4], ballot);
        CHECK_EQ_INT(r[5], 1);
        CHECK_EQ_INT(r[6], 0);
        CHECK_EQ_INT(r[7], ((l & ~15) + 1) * 10);
    }
    for (int t = 32; t < 40; t++) {
        CHECK_EQ_INT(o[t * 8 + 0], (t % 32) ^ 1);
        CHECK_EQ_INT(o[t * 8 + 1], 0xff);
    }
}

static void test_mma(void)
{
    static uint16_t A[16 * 16], Bt[8 * 16];
    static float C[16 * 8], D[16 * 8];
    for (int i = 0; i < 256; i++)
        A[i] = nd_f32_to_f16(urand());
    for (int i = 0; i < 128; i++) {
        Bt[i] = nd_f32_to_f16(urand());
        C[i] = urand();
        D[i] = NAN;
    }
    CHECK_EQ_INT(emu_test_mma(A, Bt, C, D), 0);
    double md = 0;
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 8; c++) {
            double acc = C[r * 8 + c];
            for (int k = 0; k < 16; k++)
                acc += (double)nd_f16_to_f32(A[r * 16 + k]) * nd_f16_to_f32(Bt[c * 16 + k]);
            double d = fabs(D[r * 8 + c] - acc);
            md = isnan(d) ? INFINITY : fmax(md, d);
        }
    CHECKF(md < 1e-5, "mma max error %g", md);
}

static void test_early_exit(void)
{
    static int o[64];
    for (int i = 0; i < 64; i++)
        o[i] = -1;
    CHECK_EQ_INT(emu_test_early_exit(o, 37, 64), 0);
    for (int t = 0; t < 64; t++)
        CHECK_EQ_INT(o[t], t < 37 ? (36 - t) * (36 - t) : -1);
}

static void test_launch_checks(void)
{
    float out = 0;
    CHECK(emu_test_big_smem(&out, 0) != 0); /* 64 KiB without the opt-in */
    CHECK_EQ_INT(emu_test_big_smem(&out, 1), 0);
    CHECK(out == 3.0f);
    CHECK(emu_test_bad_config() != 0); /* 2048 threads per block */
}

ND_TEST_MAIN(ND_TEST(test_block_sum), ND_TEST(test_transpose), ND_TEST(test_shuffles),
             ND_TEST(test_mma), ND_TEST(test_early_exit), ND_TEST(test_launch_checks))
