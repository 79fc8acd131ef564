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
 * Encodes x[0..n) with weight w into out[0..n] (n + 1 elements: the last is w), as u32 or u64
 * words per q->ring_bits (out points to uint32_t or uint64_t storage). rng draws the rounding.
 * Errors: TALLY_ENONFINITE for a NaN or infinite x, TALLY_EINVAL for w == 0 or bad parameters
 * (including a w for which w * (qrange + 1) alone does not fit the ring); on error neither out
 * nor rng has been touched. Any thread (with its own rng).
 */
int tally_quant_encode(const tally_quant *q, const float *x, size_t n, uint64_t w, tally_rng *rng, void *out);

/* As tally_quant_encode, but adds the encoding into out (wrapping): masks it in one pass. */
int tally_quant_encode_add(const tally_quant *q, const float *x, size_t n, uint64_t w, tally_rng *rng, void *out);

/*
 * Decodes a sum of encoded vectors (n + 1 elements, the last the total weight W) into the
 * weighted mean x[0..n): x = (s / W) / qrange * 2 clip - clip. Errors: TALLY_EINVAL when W == 0,
 * TALLY_ERANGE when an element exceeds W * qrange (a wrapped or corrupt sum).
 */
int tally_quant_decode(const tally_quant *q, const void *sum, size_t n, float *x, uint64_t *total_weight);

#endif
