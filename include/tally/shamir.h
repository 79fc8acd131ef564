/*
 * Shamir t-of-n secret sharing of 32-byte secrets over the prime field GF(p), p = 2^61 - 1.
 *
 * A secret is cut into TALLY_SHAMIR_ELEMS little-endian 52-bit limbs (5 x 52 = 260 >= 256 bits),
 * each shared with its own random polynomial of degree t-1; a share is the evaluation of all of
 * them at one point x (1 <= x < 2^31). Any t shares with distinct x reconstruct the secret by
 * Lagrange interpolation at 0; t-1 shares reveal nothing about it.
 */
#ifndef TALLY_SHAMIR_H
#define TALLY_SHAMIR_H

#include <stddef.h>
#include <stdint.h>

#define TALLY_SHAMIR_SECRET 32
#define TALLY_SHAMIR_ELEMS 5
#define TALLY_SHAMIR_PRIME ((UINT64_C(1) << 61) - 1)
#define TALLY_SHAMIR_SHARE_BYTES (4 + 8 * TALLY_SHAMIR_ELEMS) /* packed: x u32le, y[5] u64le */

typedef struct tally_share {
	uint32_t x;                        /* evaluation point, 1..2^31-1 */
	uint64_t y[TALLY_SHAMIR_ELEMS];    /* each < p */
} tally_share;

/*
 * Splits secret into n shares at points xs[0..n) (distinct, nonzero, < 2^31), threshold t
 * (1 <= t <= n). Coefficients come from libsodium's randombytes. Errors: TALLY_EINVAL with a
 * message. The caller wipes out[] (sodium_memzero) when done. Any thread.
 */
int tally_shamir_split(const uint8_t secret[TALLY_SHAMIR_SECRET], uint32_t t, uint32_t n,
		       const uint32_t *xs, tally_share *out);

/* As split, with coefficients from a ChaCha20 stream keyed by seed: for known-answer tests. */
int tally_shamir_split_seeded(const uint8_t secret[TALLY_SHAMIR_SECRET], uint32_t t, uint32_t n,
			      const uint32_t *xs, tally_share *out, const uint8_t seed[32]);

/*
 * Reconstructs the secret from count >= t shares (uses the first t). Errors: TALLY_EINVAL for
 * count < t, duplicate or zero x, or y out of range; TALLY_EFORMAT when the interpolated value is
 * not a valid secret (a limb over 52 bits or above 2^256: a wrong or tampered share).
 */
int tally_shamir_combine(const tally_share *shares, size_t count, uint32_t t,
			 uint8_t secret[TALLY_SHAMIR_SECRET]);

/* Fixed-size little-endian encoding; unpack refuses y >= p or x == 0 (TALLY_EFORMAT). */
void tally_shamir_pack(const tally_share *s, uint8_t out[TALLY_SHAMIR_SHARE_BYTES]);
int tally_shamir_unpack(tally_share *s, const uint8_t in[TALLY_SHAMIR_SHARE_BYTES]);

#endif
