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
uint64_t tally_rng_u64(tally_rng *r);
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
