/*
 * Fixed-point encoding for secure aggregation. A float x is clipped to [-clip, clip], mapped to
 * [0, qrange] and rounded stochastically (up with probability equal to the fractional part, so
 * the encoding is unbiased), then multiplied by the update's integer weight (its example count),
 * in the ring Z_2^32 or Z_2^64. The weight itself travels as one more element, so that the sum of
 * n encoded vectors carries sum_k w_k q_k and sum_k w_k, and decodes to the weighted mean.
 */
#ifndef TALLY_QUANT_H
#define TALLY_QUANT_H

#include "tally/rng.h"

#include <stddef.h>
#include <stdint.h>

typedef struct tally_quant {
	double clip;        /* > 0 */
	uint64_t qrange;    /* quantization levels - 1, 1..2^40 */
	uint32_t ring_bits; /* 32 or 64 */
} tally_quant;

/*
 * The ring that holds a sum of n updates each of weight at most max_weight without wrapping:
 * 32 when n * max_weight * qrange + n * max_weight < 2^32, else 64; 0 when even 2^64 would wrap.
 */
uint32_t tally_quant_ring_bits(uint64_t n, uint64_t max_weight, uint64_t qrange);

/*
 * The encoding, exactly: every build on every CPU writes these words (the vector kernels and the
 * portable code agree bit for bit, and tests/unit/test_quant.c recomputes them in plain C). Let b
 * be the least integer with 2^b >= qrange, g = min(32, 52 - b) the fraction bits of the rounding
 * (32 up to qrange 2^20, 30 at 2^22, 22 at 2^30, 12 at 2^40), M = 2^(52 - g) and
 * s = 0.5 * (qrange / clip), all in IEEE double arithmetic.
 *  - rng gives exactly eight draws d_0..d_7 per call that succeeds, whatever n. Lane i (0..7) is
 *    a tally_rng seeded by tally_rng_seed(&lane_i, d_i, i).
 *  - x goes in blocks of 16 elements (the last may be short). For each block every lane steps
 *    once, r_i = tally_rng_u64(&lane_i), and element j of the block takes the g-bit uniform
 *    u = r_j >> (64 - g) for j < 8, u = r_(j-8) mod 2^g for j >= 8.
 *  - y = ((double)x + clip) * s, clamped to [0, qrange]. z = y + R, where R is the double whose
 *    bits are bits(M) | u, that is M + u / 2^g exactly. level = (bits(z) - bits(M)) >> g, where
 *    bits() is the IEEE-754 pattern read as a u64.
 *  - The word is level * w mod 2^ring_bits; word n is w.
 * So level = floor(y + u / 2^g), the sum rounded to a multiple of 2^-g: it is floor(y') + 1 with
 * probability exactly frac(y'), where y' is y rounded to the nearest multiple of 2^-g (halves
 * up), and floor(y') otherwise. E[level] = y' is y to within 2^-(g+1) of a level, and the
 * rounding probability has a resolution of 2^-g: about as fine as the double y itself, whose
 * spacing at the top of a range of 2^22 is already 2^-31. Values at or beyond +-clip land on 0
 * or qrange with no randomness (up to the rounding of y).
 *
 * The kernel is chosen at run time: AVX-512 (about a quarter of a ChaCha20 keystream expansion of
 * the same length, a third at a million elements), AVX2 (about 0.4) or portable scalar code
 * (about 1.4). TALLY_QUANT_KERNEL=avx2 or =scalar in the environment caps the choice, for tests
 * and benchmarks.
 */

/*
 * Encodes x[0..n) with weight w into out[0..n] (n + 1 elements: the last is w), as u32 or u64
 * words per q->ring_bits (out points to uint32_t or uint64_t storage). rng draws the rounding
 * lanes (eight draws). Errors: TALLY_ENONFINITE for a NaN or infinite x, TALLY_EINVAL for w == 0
 * or bad parameters (including a w for which w * (qrange + 1) alone does not fit the ring); on
 * error neither out nor rng has been touched. Any thread (with its own rng).
 */
int tally_quant_encode(const tally_quant *q, const float *x, size_t n, uint64_t w, tally_rng *rng, void *out);

/*
 * As tally_quant_encode, with the same draws from rng, but adds the encoding into out (wrapping):
 * masks it in one pass, so into zeros it writes exactly what tally_quant_encode writes. A NaN or
 * infinity is found as the pass reaches it; what was added before it is subtracted again, so on
 * error out and rng are as they were here too.
 */
int tally_quant_encode_add(const tally_quant *q, const float *x, size_t n, uint64_t w, tally_rng *rng, void *out);

/*
 * Decodes a sum of encoded vectors (n + 1 elements, the last the total weight W) into the
 * weighted mean x[0..n): x = (s / W) / qrange * 2 clip - clip. Errors: TALLY_EINVAL when W == 0,
 * TALLY_ERANGE when an element exceeds W * qrange (a wrapped or corrupt sum).
 */
int tally_quant_decode(const tally_quant *q, const void *sum, size_t n, float *x, uint64_t *total_weight);

#endif
