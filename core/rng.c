/*
 * xoshiro256** (Blackman and Vigna) with splitmix64 seeding, plus the few distributions tally
 * needs. Every draw is deterministic given the seed, on every platform.
 */
#include "tally/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void tally_rng_seed(tally_rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL + 0x2545f4914f6cdd1dULL);

	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
}

uint64_t tally_rng_below(tally_rng *r, uint64_t bound)
{
	uint64_t threshold = (0 - bound) % bound;
	uint64_t x;

	do {
		x = tally_rng_u64(r);
	} while (x < threshold);
	return x % bound;
}

double tally_rng_uniform(tally_rng *r)
{
	return (double)(tally_rng_u64(r) >> 11) * 0x1.0p-53;
}

double tally_rng_normal(tally_rng *r)
{
	double u, v, s;

	do {
		u = 2.0 * tally_rng_uniform(r) - 1.0;
		v = 2.0 * tally_rng_uniform(r) - 1.0;
		s = u * u + v * v;
	} while (s >= 1.0 || s == 0.0);
	return u * sqrt(-2.0 * log(s) / s);
}

double tally_rng_gamma(tally_rng *r, double shape)
{
	double d, c, x, v, u;

	if (shape < 1.0) {
		/* Boost: Gamma(a) = Gamma(a + 1) * U^(1/a). */
		u = tally_rng_uniform(r);
		return tally_rng_gamma(r, shape + 1.0) * pow(u > 0 ? u : 0x1.0p-53, 1.0 / shape);
	}
	d = shape - 1.0 / 3.0;
	c = 1.0 / sqrt(9.0 * d);
	for (;;) {
		do {
			x = tally_rng_normal(r);
			v = 1.0 + c * x;
		} while (v <= 0.0);
		v = v * v * v;
		u = tally_rng_uniform(r);
		if (u < 1.0 - 0.0331 * x * x * x * x)
			return d * v;
		if (u > 0 && log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
			return d * v;
	}
}

void tally_rng_shuffle_u32(tally_rng *r, uint32_t *a, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)tally_rng_below(r, i);
		uint32_t t = a[i - 1];

		a[i - 1] = a[j];
		a[j] = t;
	}
}
