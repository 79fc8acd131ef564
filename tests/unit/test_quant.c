/*
 * Unit tests for the secure-aggregation fixed-point encoding: round trips within one quantization
 * step, clipping, unbiasedness of stochastic rounding (checked against the unrounded input, so a
 * round-to-nearest encoder fails it), weighted means summed in a masked, wrapping ring, the ring
 * size rule at its boundaries, refusals of bad input and bad sums, and determinism by seed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "tally/error.h"
#include "tally/quant.h"
#include "tally/rng.h"

#define SEED 20240917ULL

/* Round trip of one vector with weight 1: every value within one step 2c/qrange of its input. */
static void test_round_trip(void **state)
{
	enum { N = 1000 };
	tally_quant q = { .clip = 3.0, .qrange = 1u << 16, .ring_bits = 32 };
	float x[N], y[N];
	uint32_t enc[N + 1];
	uint64_t total = 0;
	tally_rng rng;
	double step = 2 * q.clip / (double)q.qrange;

	(void)state;
	tally_rng_seed(&rng, SEED, 1);
	for (int i = 0; i < N; i++)
		x[i] = (float)((tally_rng_uniform(&rng) * 2 - 1) * q.clip);
	assert_int_equal(tally_quant_encode(&q, x, N, 1, &rng, enc), 0);
	assert_int_equal(enc[N], 1);
	assert_int_equal(tally_quant_decode(&q, enc, N, y, &total), 0);
	assert_int_equal(total, 1);
	for (int i = 0; i < N; i++)
		assert_true(fabs((double)y[i] - x[i]) <= step + 1e-6);
}

/* Values beyond the clip land exactly on +-clip (their level is 0 or qrange, no randomness). */
static void test_clipping(void **state)
{
	tally_quant q = { .clip = 1.5, .qrange = 1u << 20, .ring_bits = 64 };
	float x[4] = { 100.0f, -100.0f, 1.5f, -1e30f }, y[4];
	uint64_t enc[5];
	tally_rng rng;

	(void)state;
	tally_rng_seed(&rng, SEED, 2);
	assert_int_equal(tally_quant_encode(&q, x, 4, 5, &rng, enc), 0);
	assert_int_equal(enc[0], 5 * q.qrange);
	assert_int_equal(enc[1], 0);
	assert_int_equal(enc[2], 5 * q.qrange);
	assert_int_equal(enc[3], 0);
	assert_int_equal(enc[4], 5);
	assert_int_equal(tally_quant_decode(&q, enc, 4, y, NULL), 0);
	assert_true(y[0] == 1.5f && y[1] == -1.5f && y[2] == 1.5f && y[3] == -1.5f);
}

/*
 * Unbiasedness: with qrange 2^8 the step is 2/256 and 0.123456789 sits 0.0015 from the nearest
 * level, about 200 standard errors of the mean of 200000 stochastic roundings; so the mean must
 * come within 4 standard errors of x itself, which a deterministic rounding cannot.
 */
static void test_unbiased(void **state)
{
	enum { DRAWS = 200000 };
	tally_quant q = { .clip = 1.0, .qrange = 1u << 8, .ring_bits = 0 };
	const float x = 0.123456789f;
	uint32_t enc[2], sum[2] = { 0, 0 };
	float mean;
	uint64_t total;
	tally_rng rng;
	double y, frac, step, se;

	(void)state;
	q.ring_bits = tally_quant_ring_bits(DRAWS, 1, q.qrange);
	assert_int_equal(q.ring_bits, 32);
	tally_rng_seed(&rng, SEED, 3);
	for (int i = 0; i < DRAWS; i++) {
		assert_int_equal(tally_quant_encode(&q, &x, 1, 1, &rng, enc), 0);
		sum[0] += enc[0];
		sum[1] += enc[1];
	}
	assert_int_equal(tally_quant_decode(&q, sum, 1, &mean, &total), 0);
	assert_int_equal(total, DRAWS);
	step = 2 * q.clip / (double)q.qrange;
	y = ((double)x + q.clip) / step;
	frac = y - floor(y);
	se = step * sqrt(frac * (1 - frac) / DRAWS);
	assert_true(fabs((double)mean - (double)x) < 4 * se);
	/* The test can fail: the nearest level is far outside that band. */
	assert_true(fabs(round(y) * step - q.clip - (double)x) > 40 * se);
}

/*
 * Three vectors of weights 1, 2, 7, each masked with a random u32 vector before summing in
 * Z_2^32 (so the sums really wrap), unmasked, and decoded: the weighted mean of the clipped
 * inputs within one step.
 */
static void test_weighted_mean(void **state)
{
	enum { N = 64, K = 3 };
	const uint64_t w[K] = { 1, 2, 7 };
	tally_quant q = { .clip = 2.0, .qrange = 1u << 22, .ring_bits = 0 };
	float x[K][N], mean[N];
	uint32_t enc[N + 1], sum[N + 1] = { 0 }, mask[N + 1] = { 0 };
	tally_rng rng;
	uint64_t total;

	(void)state;
	q.ring_bits = tally_quant_ring_bits(K, 7, q.qrange);
	assert_int_equal(q.ring_bits, 32);
	tally_rng_seed(&rng, SEED, 4);
	for (int k = 0; k < K; k++) {
		for (int i = 0; i < N; i++)
			x[k][i] = (float)((tally_rng_uniform(&rng) * 2 - 1) * 3.0); /* some beyond clip */
		assert_int_equal(tally_quant_encode(&q, x[k], N, w[k], &rng, enc), 0);
		for (int i = 0; i <= N; i++) {
			uint32_t m = (uint32_t)tally_rng_u64(&rng);

			sum[i] += enc[i] + m;
			mask[i] += m;
		}
	}
	for (int i = 0; i <= N; i++)
		sum[i] -= mask[i];
	assert_int_equal(tally_quant_decode(&q, sum, N, mean, &total), 0);
	assert_int_equal(total, 10);
	for (int i = 0; i < N; i++) {
		double want = 0;

		for (int k = 0; k < K; k++)
			want += (double)w[k] * fmax(-q.clip, fmin(q.clip, x[k][i]));
		want /= 10;
		assert_true(fabs((double)mean[i] - want) <= 2 * q.clip / (double)q.qrange + 1e-6);
	}
}

/*
 * Ring boundaries. Flower's defaults (qrange 2^22, modulus 2^32) are said to be exact for up to
 * 1024 clients, but 1024 clients at +clip sum to 1024 * 2^22 = 2^32, which wraps; tally's rule
 * n * w * (qrange + 1) < 2^32 keeps 1023 in 32 bits and sends 1024 to 64 (see quant.c). Flower
 * folds max weight 1000 into the values; tally multiplies exactly, so with w = 1000 only one
 * client fits in 32 bits.
 */
static void test_ring_bits(void **state)
{
	const uint64_t q22 = UINT64_C(1) << 22, u32max = UINT32_MAX;

	(void)state;
	assert_int_equal(tally_quant_ring_bits(1023, 1, q22), 32);
	assert_int_equal(tally_quant_ring_bits(1024, 1, q22), 64);
	assert_int_equal(tally_quant_ring_bits(1, 1000, q22), 32);
	assert_int_equal(tally_quant_ring_bits(2, 1000, q22), 64);
	/* Exactly 2^32 is not strictly below it. */
	assert_int_equal(tally_quant_ring_bits(1, 1, u32max - 1), 32);
	assert_int_equal(tally_quant_ring_bits(1, 1, u32max), 64);
	assert_int_equal(tally_quant_ring_bits(65536, 65536, 0), 64);
	assert_int_equal(tally_quant_ring_bits(65535, 65536, 0), 32);
	/* 2^32 * 1 * 2^32 = 2^64 does not fit; one level less does. */
	assert_int_equal(tally_quant_ring_bits(u32max + 1, 1, u32max), 0);
	assert_int_equal(tally_quant_ring_bits(u32max + 1, 1, u32max - 1), 64);
	/* Products past 128 bits are caught, not wrapped. */
	assert_int_equal(tally_quant_ring_bits(UINT64_MAX, UINT64_MAX, UINT64_MAX), 0);
	assert_int_equal(tally_quant_ring_bits(UINT64_MAX, UINT64_MAX, 1), 0);
}

/* NaN and infinity are refused before anything is written or drawn. */
static void test_nonfinite(void **state)
{
	tally_quant q = { .clip = 1.0, .qrange = 255, .ring_bits = 32 };
	float x[3] = { 0.5f, NAN, 0.25f };
	uint32_t enc[4] = { 7, 7, 7, 7 };
	tally_rng rng, before;

	(void)state;
	tally_rng_seed(&rng, SEED, 5);
	before = rng;
	assert_int_equal(tally_quant_encode(&q, x, 3, 1, &rng, enc), TALLY_ENONFINITE);
	assert_true(strstr(tally_errmsg(), "element 1") != NULL);
	x[1] = -INFINITY;
	assert_int_equal(tally_quant_encode(&q, x, 3, 1, &rng, enc), TALLY_ENONFINITE);
	assert_memory_equal(&rng, &before, sizeof(rng));
	for (int i = 0; i < 4; i++)
		assert_int_equal(enc[i], 7);
}

static void test_bad_parameters(void **state)
{
	tally_quant q = { .clip = 1.0, .qrange = 1u << 20, .ring_bits = 32 };
	float x[1] = { 0 };
	uint64_t enc[2];
	tally_rng rng;

	(void)state;
	tally_rng_seed(&rng, SEED, 6);
	assert_int_equal(tally_quant_encode(&q, x, 1, 0, &rng, enc), TALLY_EINVAL);
	/* 5000 * (2^20 + 1) > 2^32: one update of that weight cannot fit the 32-bit ring. */
	assert_int_equal(tally_quant_encode(&q, x, 1, 5000, &rng, enc), TALLY_EINVAL);
	q.ring_bits = 64;
	assert_int_equal(tally_quant_encode(&q, x, 1, 5000, &rng, enc), 0);
	q.ring_bits = 16;
	assert_int_equal(tally_quant_encode(&q, x, 1, 1, &rng, enc), TALLY_EINVAL);
	q.ring_bits = 64;
	q.qrange = 0;
	assert_int_equal(tally_quant_encode(&q, x, 1, 1, &rng, enc), TALLY_EINVAL);
	q.qrange = (UINT64_C(1) << 40) + 1;
	assert_int_equal(tally_quant_encode(&q, x, 1, 1, &rng, enc), TALLY_EINVAL);
	q.qrange = 255;
	q.clip = 0;
	assert_int_equal(tally_quant_encode(&q, x, 1, 1, &rng, enc), TALLY_EINVAL);
	q.clip = NAN;
	assert_int_equal(tally_quant_decode(&q, enc, 1, x, NULL), TALLY_EINVAL);
}

/* Decode refuses a zero total weight and any element above W * qrange (a wrapped sum). */
static void test_decode_refusals(void **state)
{
	tally_quant q = { .clip = 1.0, .qrange = 1000, .ring_bits = 32 };
	uint32_t sum[3] = { 0, 0, 0 };
	uint64_t sum64[2];
	float y[2];

	(void)state;
	assert_int_equal(tally_quant_decode(&q, sum, 2, y, NULL), TALLY_EINVAL);
	sum[2] = 3;
	sum[0] = 3000;
	sum[1] = 3001;
	assert_int_equal(tally_quant_decode(&q, sum, 2, y, NULL), TALLY_ERANGE);
	sum[1] = 1500;
	assert_int_equal(tally_quant_decode(&q, sum, 2, y, NULL), 0);
	assert_true(y[0] == 1.0f && y[1] == 0.0f);
	/* In the 64-bit ring W * qrange itself passes 2^64: compared in 128 bits, not wrapped. */
	q.ring_bits = 64;
	q.qrange = UINT64_C(1) << 40;
	sum64[1] = UINT64_C(1) << 30;
	sum64[0] = UINT64_MAX;
	assert_int_equal(tally_quant_decode(&q, sum64, 1, y, NULL), 0);
	sum64[1] = 1;
	assert_int_equal(tally_quant_decode(&q, sum64, 1, y, NULL), TALLY_ERANGE);
}

/*
 * The same seed gives the same encoding; another seed another one. 64-bit ring, large weight.
 * qrange is not a power of two: floats on a 2^40 grid would all sit exactly on a level.
 */
static void test_deterministic(void **state)
{
	enum { N = 256 };
	tally_quant q = { .clip = 1.0, .qrange = UINT64_C(1000000000000), .ring_bits = 64 };
	float x[N], y[N];
	uint64_t a[N + 1], b[N + 1];
	tally_rng rng;

	(void)state;
	for (int i = 0; i < N; i++)
		x[i] = (float)sin(i * 0.37);
	tally_rng_seed(&rng, SEED, 7);
	assert_int_equal(tally_quant_encode(&q, x, N, 1000000, &rng, a), 0);
	tally_rng_seed(&rng, SEED, 7);
	assert_int_equal(tally_quant_encode(&q, x, N, 1000000, &rng, b), 0);
	assert_memory_equal(a, b, sizeof(a));
	tally_rng_seed(&rng, SEED, 8);
	assert_int_equal(tally_quant_encode(&q, x, N, 1000000, &rng, b), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(tally_quant_decode(&q, a, N, y, NULL), 0);
	for (int i = 0; i < N; i++)
		assert_true(fabs((double)y[i] - x[i]) < 1e-6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_clipping),
		cmocka_unit_test(test_unbiased),
		cmocka_unit_test(test_weighted_mean),
		cmocka_unit_test(test_ring_bits),
		cmocka_unit_test(test_nonfinite),
		cmocka_unit_test(test_bad_parameters),
		cmocka_unit_test(test_decode_refusals),
		cmocka_unit_test(test_deterministic),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
