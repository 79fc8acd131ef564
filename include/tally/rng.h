/*
 * Deterministic pseudo-random numbers for data partitioning, shuffling, initialisation and
 * participant selection: xoshiro256** seeded through splitmix64. Not for secrets: masks and keys
 * come from libsodium. The state is plain data so that it can be checkpointed.
 */
#ifndef TALLY_RNG_H
#define TALLY_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct tally_rng {
	uint64_t s[4];
} tally_rng;

/* Seeds from a 64-bit seed and a stream number, so that (seed, stream) pairs are independent. */
void tally_rng_seed(tally_rng *r, uint64_t seed, uint64_t stream);

/* The next 64 random bits (inline: hot loops such as quantization draw once per element). */
static inline uint64_t tally_rng_u64(tally_rng *r)
{
	uint64_t *s = r->s;
	uint64_t x = s[1] * 5;
	uint64_t result = ((x << 7) | (x >> 57)) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = (s[3] << 45) | (s[3] >> 19);
	return result;
}
/* Uniform in [0, bound), without modulo bias; bound > 0. */
uint64_t tally_rng_below(tally_rng *r, uint64_t bound);
/* Uniform in [0, 1) with 53 random bits. */
double tally_rng_uniform(tally_rng *r);
/* Standard normal. */
double tally_rng_normal(tally_rng *r);
/* Gamma(shape, 1) for shape > 0 (Marsaglia and Tsang). */
double tally_rng_gamma(tally_rng *r, double shape);
/* Fisher-Yates shuffle of n 32-bit items. */
void tally_rng_shuffle_u32(tally_rng *r, uint32_t *a, size_t n);

#endif
