/*
 * Fixed-point encoding of float updates for secure aggregation (tally/quant.h).
 *
 * A value is clipped to [-clip, clip], mapped affinely onto [0, qrange] and rounded
 * stochastically, so that E[q] equals the unrounded level exactly: the aggregate is an unbiased
 * estimate of the mean, whatever qrange. The update's integer weight multiplies q inside the
 * ring, and the weight itself is the last element, so a plain wrapping sum of encoded vectors
 * carries both sum w_k q_k and W = sum w_k, and the weighted mean needs no division by anyone
 * but the party that decodes. Exactness rests on the sum never wrapping: tally_quant_ring_bits
 * picks a ring in which it cannot.
 */
#include "tally/quant.h"

#include "tally/error.h"

#include <assert.h>
#include <math.h>
#include <stdbool.h>

#define QRANGE_MAX (UINT64_C(1) << 40)

typedef unsigned __int128 u128;

/*
 * Weights multiply q exactly (w * q, not (w / max_weight) * x before rounding), so the 32-bit ring
 * holds n updates only when n * max_weight * (qrange + 1) < 2^32. Compare Flower's SecAgg+
 * defaults (qrange 2^22, modulus 2^32, max weight 1000, "exact for at most 1024 clients"): Flower
 * scales each update by w / max_weight in floating point before quantizing, so its per-client
 * level stays within [0, qrange] and only n * qrange must fit; that buys 32-bit rings at the
 * price of log2(max_weight / w) bits of precision for light clients. Even then 1024 * 2^22 = 2^32
 * wraps when every client sends +clip (Flower's levels include qrange itself), so 1023 is the
 * exact bound. tally's rule is stricter: with w = 1 it also gives 1023 clients in 32 bits (1024
 * needs 64), and with max weight 1000 only one client fits in 32 bits, so real cohorts go to the
 * 64-bit ring, where 2^64 / (1000 * (2^22 + 1)) is about 4.4e9 clients.
 */
uint32_t tally_quant_ring_bits(uint64_t n, uint64_t max_weight, uint64_t qrange)
{
	u128 nw = (u128)n * max_weight; /* two 64-bit factors: cannot overflow 128 bits */
	u128 levels = (u128)qrange + 1;
	u128 total;

	if (__builtin_mul_overflow(nw, levels, &total))
		return 0;
	if (total < ((u128)1 << 32))
		return 32;
	if (total < ((u128)1 << 64))
		return 64;
	return 0;
}

static int check_params(const tally_quant *q)
{
	if (q == NULL)
		return tally_err(TALLY_EINVAL, "quant: no parameters");
	if (!isfinite(q->clip) || q->clip <= 0)
		return tally_err(TALLY_EINVAL, "quant: clip must be finite and > 0, got %g", q->clip);
	if (q->qrange == 0 || q->qrange > QRANGE_MAX)
		return tally_err(TALLY_EINVAL, "quant: qrange must be 1..2^40, got %llu",
				 (unsigned long long)q->qrange);
	if (q->ring_bits != 32 && q->ring_bits != 64)
		return tally_err(TALLY_EINVAL, "quant: ring_bits must be 32 or 64, got %u", q->ring_bits);
	return 0;
}

/*
 * Stochastic rounding of the fractional level y = (clamp(x) + c) * qrange / (2c) in [0, qrange]:
 * floor(y) + 1 with probability y - floor(y), decided by one 32-bit uniform draw u (so the
 * probability is exact to 2^-32). y >= 0, so truncation is the floor.
 */
static inline uint64_t round_level(double x, double c, double scale, uint64_t qrange, uint32_t u)
{
	/* The level in 32.32 fixed point, (clamp(x) + c) * qrange / (2c) * 2^32, fits 64 bits while
	 * qrange <= 2^30 (the common case); larger ranges take the double path. */
	double v = x < -c ? -c : x > c ? c : x;

	if (qrange <= (UINT64_C(1) << 30)) {
		uint64_t fx = (uint64_t)(int64_t)((v + c) * scale);
		uint64_t level = (fx >> 32) + ((uint32_t)fx > u);

		return level > qrange ? qrange : level;
	} else {
		double y = (v + c) * (scale * 0x1p-32);
		uint64_t fl = (uint64_t)y, level = fl + ((double)u < (y - (double)fl) * 4294967296.0);

		return level > qrange ? qrange : level;
	}
}

/* o[i] = w * level (OP =) or o[i] += w * level (OP +=), two elements per 64-bit draw. */
#define ENCODE_LOOP(T, OP)                                                                      \
	for (size_t i = 0; i < n; i += 2) {                                                      \
		uint64_t r = tally_rng_u64(rng);                                                 \
		o[i] OP(T)(w * round_level(x[i], c, scale, q->qrange, (uint32_t)r));              \
		if (i + 1 < n)                                                                   \
			o[i + 1] OP(T)(w * round_level(x[i + 1], c, scale, q->qrange, (uint32_t)(r >> 32))); \
	}

static int encode(const tally_quant *q, const float *x, size_t n, uint64_t w, tally_rng *rng, void *out, bool add);

int tally_quant_encode(const tally_quant *q, const float *x, size_t n, uint64_t w, tally_rng *rng, void *out)
{
	return encode(q, x, n, w, rng, out, false);
}

int tally_quant_encode_add(const tally_quant *q, const float *x, size_t n, uint64_t w, tally_rng *rng, void *out)
{
	return encode(q, x, n, w, rng, out, true);
}

static int encode(const tally_quant *q, const float *x, size_t n, uint64_t w, tally_rng *rng, void *out, bool add)
{
	int rc = check_params(q);
	uint32_t need;

	if (rc < 0)
		return rc;
	assert(rng != NULL && out != NULL && (x != NULL || n == 0));
	if (w == 0)
		return tally_err(TALLY_EINVAL, "quant: weight must be > 0");
	need = tally_quant_ring_bits(1, w, q->qrange);
	if (need == 0 || need > q->ring_bits)
		return tally_err(TALLY_EINVAL, "quant: weight %llu times %llu levels overflows the %u-bit ring",
				 (unsigned long long)w, (unsigned long long)q->qrange + 1, q->ring_bits);
	/* Check everything before writing or drawing: on failure out and rng are untouched. */
	for (size_t i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return tally_err(TALLY_ENONFINITE, "quant: element %zu is not finite", i);
	double c = q->clip, scale = (double)q->qrange / (2.0 * c) * 0x1p32; /* levels in 32.32 fixed point */

	if (q->ring_bits == 32) {
		uint32_t *o = out;

		if (add) {
			ENCODE_LOOP(uint32_t, +=)
			o[n] += (uint32_t)w;
		} else {
			ENCODE_LOOP(uint32_t, =)
			o[n] = (uint32_t)w;
		}
	} else {
		uint64_t *o = out;

		if (add) {
			ENCODE_LOOP(uint64_t, +=)
			o[n] += w;
		} else {
			ENCODE_LOOP(uint64_t, =)
			o[n] = w;
		}
	}
	return 0;
}

static uint64_t element_at(const tally_quant *q, const void *sum, size_t i)
{
	return q->ring_bits == 32 ? ((const uint32_t *)sum)[i] : ((const uint64_t *)sum)[i];
}

/* The mean level s / W, exact to double precision: integer quotient plus remainder / W. */
static double mean_level(uint64_t s, uint64_t total)
{
	return (double)(s / total) + (double)(s % total) / (double)total;
}

int tally_quant_decode(const tally_quant *q, const void *sum, size_t n, float *x, uint64_t *total_weight)
{
	int rc = check_params(q);
	uint64_t total;
	u128 bound;
	double scale;

	if (rc < 0)
		return rc;
	assert(sum != NULL && (x != NULL || n == 0));
	total = element_at(q, sum, n);
	if (total == 0)
		return tally_err(TALLY_EINVAL, "quant: total weight is zero (no updates, or a wrapped sum)");
	bound = (u128)total * q->qrange;
	for (size_t i = 0; i < n; i++)
		if ((u128)element_at(q, sum, i) > bound)
			return tally_err(TALLY_ERANGE, "quant: element %zu exceeds total weight %llu times qrange: "
					 "a wrapped or corrupt sum", i, (unsigned long long)total);
	scale = 2.0 * q->clip / (double)q->qrange;
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(mean_level(element_at(q, sum, i), total) * scale - q->clip);
	if (total_weight != NULL)
		*total_weight = total;
	return 0;
}
