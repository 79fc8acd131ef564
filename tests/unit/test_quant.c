/*
 * Unit tests for the secure-aggregation fixed-point encoding: round trips within one quantization
 * step, clipping, unbiasedness of stochastic rounding (checked against the unrounded input, so a
 * round-to-nearest encoder fails it, for small and for large qrange), weighted means summed in a
 * masked, wrapping ring, the ring size rule at its boundaries, refusals of bad input and bad sums,
 * and determinism by seed. The exact words are pinned by known answers and by a plain
 * reimplementation of the algorithm quant.h documents, under every kernel this CPU can run
 * (TALLY_QUANT_KERNEL), over lengths that end in each kind of vector tail; encode_add into zeros
 * must equal encode, and a NaN or infinity anywhere must leave out and rng as they were.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tally/error.h"
#include "tally/quant.h"
#include "tally/rng.h"

#define SEED 20240917ULL

/* Every kernel value of TALLY_QUANT_KERNEL; one the CPU lacks falls back to a lesser one. */
static const char *const kernels[] = { "scalar", "avx2", "avx512" };
#define NKERNELS (sizeof kernels / sizeof kernels[0])

static void use_kernel(const char *name)
{
	assert_int_equal(setenv("TALLY_QUANT_KERNEL", name, 1), 0);
}

static uint64_t bits_of(double d)
{
	uint64_t b;

	memcpy(&b, &d, sizeof b);
	return b;
}

static double double_of(uint64_t b)
{
	double d;

	memcpy(&d, &b, sizeof d);
	return d;
}

/*
 * The encoding as quant.h spells it out, one element at a time and nothing else: the reference
 * every kernel must match bit for bit. Writes n + 1 words as u64 (reduced to the ring).
 */
static void ref_encode(const tally_quant *q, const float *x, size_t n, uint64_t w, tally_rng *rng, uint64_t *out)
{
	const uint64_t ring_mask = q->ring_bits == 32 ? UINT32_MAX : UINT64_MAX;
	const double s = 0.5 * ((double)q->qrange / q->clip), qr = (double)q->qrange;
	unsigned b = 0, g;
	double m;
	tally_rng lane[8];
	uint64_t r[8] = { 0 };

	while ((UINT64_C(1) << b) < q->qrange)
		b++;
	g = 52 - b < 32 ? 52 - b : 32;
	m = ldexp(1.0, 52 - (int)g);
	for (int i = 0; i < 8; i++)
		tally_rng_seed(&lane[i], tally_rng_u64(rng), (uint64_t)i);
	for (size_t i = 0; i < n; i++) {
		size_t j = i % 16;
		uint64_t u, level;
		double y, z;

		if (j == 0)
			for (int k = 0; k < 8; k++)
				r[k] = tally_rng_u64(&lane[k]);
		u = j < 8 ? r[j] >> (64 - g) : r[j - 8] % (UINT64_C(1) << g);
		y = ((double)x[i] + q->clip) * s;
		y = y < 0 ? 0 : y > qr ? qr : y;
		z = y + double_of(bits_of(m) | u);
		level = (bits_of(z) - bits_of(m)) >> g;
		assert_true(level <= q->qrange);
		out[i] = level * w & ring_mask;
	}
	out[n] = w & ring_mask;
}

/* Word i of a u32 or u64 vector. */
static uint64_t word(const tally_quant *q, const void *v, size_t i)
{
	return q->ring_bits == 32 ? ((const uint32_t *)v)[i] : ((const uint64_t *)v)[i];
}

/*
 * Inputs from integers alone (so the same floats everywhere): mostly within +-1.3 clip, with
 * exact +-clip, zeros, tiny values and far-out values mixed in.
 */
static float kat_input(size_t i, double clip)
{
	uint64_t h = (i + 1) * 0x9e3779b97f4a7c15ULL;

	h = (h ^ (h >> 31)) * 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 29;
	switch (i % 11) {
	case 3:
		return (float)clip;
	case 5:
		return (float)-clip;
	case 7:
		return 0.0f;
	case 8:
		return (h & 1 ? 1 : -1) * 1e-30f;
	case 9:
		return (h & 1 ? 1 : -1) * 1e30f;
	default:
		return (float)((double)(int64_t)(h % 2000001) - 1000000.0) / 1e6f * 1.3f * (float)clip;
	}
}

/* FNV-1a over the words' little-endian bytes: a digest of an encoding that is the same everywhere. */
static uint64_t digest(const uint64_t *v, size_t words, unsigned ring_bits)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < words; i++)
		for (unsigned k = 0; k < ring_bits / 8; k++)
			h = (h ^ ((v[i] >> (8 * k)) & 0xff)) * 0x100000001b3ULL;
	return h;
}

/*
 * Known answers: the bench's setting (ring 32, qrange 2^22: g = 30), the large-qrange path (ring
 * 64, qrange 10^12: g = 12) and a small qrange (g = 32) with a weight past 2^32.
 */
static const struct kat {
	tally_quant q;
	uint64_t w;
} kats[] = {
	{ { .clip = 2.5, .qrange = UINT64_C(1) << 22, .ring_bits = 32 }, 3 },
	{ { .clip = 1.5, .qrange = UINT64_C(1000000000000), .ring_bits = 64 }, 1000003 },
	{ { .clip = 0.75, .qrange = 255, .ring_bits = 64 }, (UINT64_C(1) << 50) + 7 },
};
#define NKATS (sizeof kats / sizeof kats[0])

/* Every length ends a different way: no block, short blocks, whole blocks plus 1, 15 and 8. */
static const size_t kat_lengths[] = { 0, 1, 2, 3, 7, 8, 9, 31, 33, 1000 };
#define NLENGTHS (sizeof kat_lengths / sizeof kat_lengths[0])

/*
 * The digest of each kat's n + 1 words, per length, and all ten words for n = 9. Some words can be
 * read off: element 3 is +clip (w * qrange), 5 is -clip (0), 7 and 8 are 0 and a tiny value
 * (w * qrange / 2; for the odd qrange 255, w * 127 or w * 128 at random), and word 9 is w.
 */
static const uint64_t kat_digests[NKATS][NLENGTHS] = {
	{ 0xed202287f403d086ULL, 0xce7d0d928a6860f9ULL, 0x2a9ce187d69660cbULL, 0x87aa8a83181c3e4bULL,
	  0xb677e5b5f532be40ULL, 0x715b54ebe51a3210ULL, 0xe65fc5b516c11920ULL, 0xb7c9d47b6a84062aULL,
	  0x6a720b0f72ac9a5aULL, 0x35711729ef7f43b3ULL },
	{ 0x940086d0c76a4d07ULL, 0x82c2dba2ad13a42fULL, 0x1ee6f92c580f4f6bULL, 0x54628986f1bd578bULL,
	  0x70e323475d9e4670ULL, 0x7c436b045398a072ULL, 0x9cd036129c8615a8ULL, 0x323a7e77c7fdd777ULL,
	  0x6b65373bbd89a607ULL, 0x48b346b1b86c614bULL },
	{ 0x4be53b170757e806ULL, 0x71134cd64c7b01a5ULL, 0x7331ca4c611a25efULL, 0xaf4955e6ce67cb6fULL,
	  0x6021f080237dc1a3ULL, 0xd380f5c399ed2504ULL, 0xd0a5a6f5b8e96a9fULL, 0xb9f124937ce0be76ULL,
	  0x67d4fd7a6dcbd6c2ULL, 0x18dddcb80b38253fULL },
};
static const uint64_t kat_words9[NKATS][10] = {
	{ 0x86e368, 0x3cc7e3, 0, 0xc00000, 0x62a324,
	  0, 0x120189, 0x600000, 0x600000, 0x3 },
	{ 0x9bff145347cc56d, 0x464aca8d86d33f4, 0, 0xde0b96e25533000, 0x721296378fe8926,
	  0, 0x14d2dc10e8b08db, 0x6f05cb712a99800, 0x6f05cb712a99800, 0xf4243 },
	{ 0x2cc0000000004e5, 0x144000000000237, 0, 0x3fc0000000006f9, 0x20c000000000395,
	  0, 0x600000000000a8, 0x1fc000000000379, 0x1fc000000000379, 0x4000000000007 },
};

/*
 * Every kernel writes the reference's words, leaves rng where the reference leaves it (eight
 * draws on), and the reference itself matches the numbers pinned here.
 */
static void test_known_answers(void **state)
{
	enum { NMAX = 1000 };
	static float x[NMAX];
	static uint64_t want[NMAX + 1], out64[NMAX + 1];
	static uint32_t out32[NMAX + 1];

	(void)state;
	for (size_t c = 0; c < NKATS; c++) {
		const tally_quant *q = &kats[c].q;
		void *out = q->ring_bits == 32 ? (void *)out32 : (void *)out64;

		for (size_t i = 0; i < NMAX; i++)
			x[i] = kat_input(i, q->clip);
		for (size_t l = 0; l < NLENGTHS; l++) {
			size_t n = kat_lengths[l];
			tally_rng ref_rng, rng;

			tally_rng_seed(&ref_rng, SEED, 100 + c);
			ref_encode(q, x, n, kats[c].w, &ref_rng, want);
			assert_int_equal(digest(want, n + 1, q->ring_bits), kat_digests[c][l]);
			if (n == 9)
				assert_memory_equal(want, kat_words9[c], sizeof kat_words9[c]);
			for (size_t k = 0; k < NKERNELS; k++) {
				use_kernel(kernels[k]);
				tally_rng_seed(&rng, SEED, 100 + c);
				memset(out32, 0xa5, sizeof out32);
				memset(out64, 0xa5, sizeof out64);
				assert_int_equal(tally_quant_encode(q, x, n, kats[c].w, &rng, out), 0);
				for (size_t i = 0; i <= n; i++)
					assert_int_equal(word(q, out, i), want[i]);
				assert_memory_equal(&rng, &ref_rng, sizeof rng);
			}
		}
	}
	unsetenv("TALLY_QUANT_KERNEL");
}

/*
 * encode_add into zeros writes encode's words and draws the same from rng; into any vector it
 * adds them, wrapping. Lengths around blocks and encode_add's chunks of 2048.
 */
static void test_encode_add(void **state)
{
	static const size_t lengths[] = { 0, 1, 15, 16, 17, 100, 2047, 2048, 2049, 4096 + 17, 10007 };
	static const struct kat cases[] = {
		{ { .clip = 4.0, .qrange = UINT64_C(1) << 22, .ring_bits = 32 }, 7 },
		{ { .clip = 0.5, .qrange = UINT64_C(1) << 30, .ring_bits = 64 }, 12345 },
	};
	enum { NMAX = 10007 };
	uint64_t *a = calloc(NMAX + 1, sizeof *a), *b = calloc(NMAX + 1, sizeof *b);
	uint64_t *base = calloc(NMAX + 1, sizeof *base);
	float *x = calloc(NMAX, sizeof *x);
	tally_rng rng, rng_a, rng_b;

	(void)state;
	assert_true(a && b && base && x);
	tally_rng_seed(&rng, SEED, 9);
	for (size_t i = 0; i < NMAX; i++)
		x[i] = (float)((tally_rng_uniform(&rng) * 2 - 1) * 5.0);
	for (size_t c = 0; c < 2; c++) {
		const tally_quant *q = &cases[c].q;
		size_t bytes = (NMAX + 1) * q->ring_bits / 8;

		for (size_t k = 0; k < NKERNELS; k++) {
			use_kernel(kernels[k]);
			for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
				size_t n = lengths[l];

				tally_rng_seed(&rng_a, SEED, 10 + n);
				assert_int_equal(tally_quant_encode(q, x, n, cases[c].w, &rng_a, a), 0);
				memset(b, 0, bytes);
				tally_rng_seed(&rng_b, SEED, 10 + n);
				assert_int_equal(tally_quant_encode_add(q, x, n, cases[c].w, &rng_b, b), 0);
				assert_memory_equal(a, b, (n + 1) * q->ring_bits / 8);
				assert_memory_equal(&rng_a, &rng_b, sizeof rng_a);
				for (size_t i = 0; i < NMAX + 1; i++)
					base[i] = tally_rng_u64(&rng);
				memcpy(b, base, bytes);
				tally_rng_seed(&rng_b, SEED, 10 + n);
				assert_int_equal(tally_quant_encode_add(q, x, n, cases[c].w, &rng_b, b), 0);
				for (size_t i = 0; i <= n; i++)
					assert_int_equal(word(q, b, i), (word(q, base, i) + word(q, a, i)) &
									   (q->ring_bits == 32 ? UINT32_MAX : UINT64_MAX));
				assert_memory_equal((char *)b + (n + 1) * q->ring_bits / 8,
						    (char *)base + (n + 1) * q->ring_bits / 8, bytes - (n + 1) * q->ring_bits / 8);
			}
		}
	}
	unsetenv("TALLY_QUANT_KERNEL");
	free(a);
	free(b);
	free(base);
	free(x);
}

/*
 * A NaN or infinity anywhere, in the first chunk, a later one or the scalar tail, leaves out and
 * rng exactly as they were, for both functions and every kernel: encode_add takes back what it
 * had already added.
 */
static void test_nonfinite_anywhere(void **state)
{
	enum { N = 3 * 2048 + 37 };
	static const size_t where[] = { 0, 5, 2048 + 5, 2 * 2048, N - 1 };
	static const float bad[] = { NAN, INFINITY, -INFINITY };
	static float x[N];
	static uint64_t out[N + 1], before[N + 1];
	tally_rng rng, saved;
	char msg[64];

	(void)state;
	tally_rng_seed(&rng, SEED, 11);
	for (size_t i = 0; i < N; i++)
		x[i] = (float)((tally_rng_uniform(&rng) * 2 - 1) * 3.0);
	for (size_t i = 0; i <= N; i++)
		before[i] = tally_rng_u64(&rng);
	for (unsigned ring = 32; ring <= 64; ring += 32) {
		tally_quant q = { .clip = 2.0, .qrange = 1u << 20, .ring_bits = ring };

		for (size_t k = 0; k < NKERNELS; k++) {
			use_kernel(kernels[k]);
			for (size_t p = 0; p < sizeof where / sizeof where[0]; p++) {
				for (size_t v = 0; v < sizeof bad / sizeof bad[0]; v++) {
					float keep = x[where[p]];

					x[where[p]] = bad[v];
					snprintf(msg, sizeof msg, "element %zu ", where[p]);
					for (int add = 0; add <= 1; add++) {
						memcpy(out, before, sizeof out);
						saved = rng;
						assert_int_equal(add ? tally_quant_encode_add(&q, x, N, 3, &rng, out)
								     : tally_quant_encode(&q, x, N, 3, &rng, out),
								 TALLY_ENONFINITE);
						assert_non_null(strstr(tally_errmsg(), msg));
						assert_memory_equal(out, before, sizeof out);
						assert_memory_equal(&rng, &saved, sizeof rng);
					}
					x[where[p]] = keep;
				}
			}
		}
	}
	unsetenv("TALLY_QUANT_KERNEL");
}

/*
 * Unbiasedness where the rounding has fewer fraction bits: qrange 2^22 (g = 30) and 10^12, the
 * large-qrange path (g = 12). DRAWS copies of one value whose level has a fractional part
 * between 0.2 and 0.8: the mean level must come within 4 standard errors (plus the 2^-(g+1)
 * the documented rounding allows) of the exact level y, and each level must be floor(y) or
 * floor(y) + 1. Rounding to nearest misses by more than 0.2, over 40 standard errors.
 */
static void test_unbiased_large_qrange(void **state)
{
	enum { DRAWS = 200000 };
	static const tally_quant qs[] = {
		{ .clip = 1.0, .qrange = UINT64_C(1) << 22, .ring_bits = 32 },
		{ .clip = 1.0, .qrange = UINT64_C(1000000000000), .ring_bits = 64 },
	};
	static float x[DRAWS];
	static uint64_t enc[DRAWS + 1];
	tally_rng rng;

	(void)state;
	for (size_t c = 0; c < 2; c++) {
		const tally_quant *q = &qs[c];
		double s = 0.5 * ((double)q->qrange / q->clip), y = 0, f = 0, se, mean;
		float v = 0.1f;
		uint64_t sum = 0, fl;

		for (int k = 0; k < 1000; k++, v += 0.0137f) {
			y = ((double)v + q->clip) * s;
			f = y - floor(y);
			if (f > 0.2 && f < 0.8)
				break;
		}
		assert_true(f > 0.2 && f < 0.8);
		fl = (uint64_t)floor(y);
		for (size_t i = 0; i < DRAWS; i++)
			x[i] = v;
		tally_rng_seed(&rng, SEED, 12 + c);
		assert_int_equal(tally_quant_encode(q, x, DRAWS, 1, &rng, enc), 0);
		for (size_t i = 0; i < DRAWS; i++) {
			uint64_t level = word(q, enc, i);

			assert_true(level == fl || level == fl + 1);
			sum += level - fl;
		}
		mean = (double)fl + (double)sum / DRAWS;
		se = sqrt(f * (1 - f) / DRAWS);
		assert_true(fabs(mean - y) < 4 * se + 0x1p-13);
		assert_true(fabs(round(y) - y) > 40 * se);
	}
}

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
		cmocka_unit_test(test_known_answers),
		cmocka_unit_test(test_encode_add),
		cmocka_unit_test(test_nonfinite_anywhere),
		cmocka_unit_test(test_unbiased_large_qrange),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
