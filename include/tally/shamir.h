/*
 * Shamir t-of-n secret sharing of 32-byte secrets over the prime field GF(p), p = 2^61 - 1.
 *
 * A secret is cut into TALLY_SHAMIR_ELEMS little-endian 52-bit limbs (5 x 52 = 260 >= 256 bits),
 * each shared with its own random polynomial of degree t-1; a share is the evaluation of all of
 * them at one point x (1 <= x < 2^31). Any t shares with distinct x reconstruct the secret by
 * Lagrange interpolation at 0; t-1 shares reveal nothing about it.
 *
 * Limb j holds bits [52j, 52j + 52) of the secret read as a 256-bit little-endian integer; the top
 * limb holds the last 48 bits. Random coefficients are uniform in [0, p): the low 61 bits of a
 * 64-bit little-endian word, the one value p itself rejected and redrawn.
 *
 * Shares are not authenticated here, and the range check in combine is no MAC: a share changed at
 * random is noticed only when an interpolated limb falls out of range, which is likely but not
 * certain (a randomly changed limb passes with probability about 2^-9, 2^-13 for the top one), and
 * whoever knows the points can choose a change that always passes and shifts the secret at will.
 * A changed share among the first t never yields the original secret, though. The protocol
 * authenticates each share with AEAD before it reaches combine. Call sodium_init() first.
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
 * message (t out of range, a point zero, >= 2^31 or given twice); out[] is then unspecified but
 * holds nothing secret. Takes O(n t) field operations and no memory beyond out[]. The caller wipes
 * out[] (sodium_memzero) when done. Any thread.
 */
int tally_shamir_split(const uint8_t secret[TALLY_SHAMIR_SECRET], uint32_t t, uint32_t n,
		       const uint32_t *xs, tally_share *out);

/*
 * As split, with coefficients from the ChaCha20 IETF keystream keyed by seed (zero nonce, block 0
 * onwards) read as u64le words: for known-answer tests. Draw order: limb 0 first; within a limb,
 * the coefficient of degree t-1 first, down to degree 1 (Horner's order).
 */
int tally_shamir_split_seeded(const uint8_t secret[TALLY_SHAMIR_SECRET], uint32_t t, uint32_t n,
			      const uint32_t *xs, tally_share *out, const uint8_t seed[32]);

/*
 * Reconstructs the secret from count >= t shares (uses the first t; the rest are not examined).
 * Errors: TALLY_EINVAL for t == 0, count < t, or among the first t a duplicate x, an x of 0 or
 * >= 2^31, or a y >= p; TALLY_EFORMAT when the interpolated value is not a valid secret (a limb of
 * 52 bits or more, or a top limb of 48 bits or more: a wrong or tampered share, detected with the
 * probability given above). secret is written only on success. O(t^2) field operations. Any
 * thread.
 */
int tally_shamir_combine(const tally_share *shares, size_t count, uint32_t t,
			 uint8_t secret[TALLY_SHAMIR_SECRET]);

/*
 * Fixed-size little-endian encoding; unpack refuses y >= p, x == 0 or x >= 2^31 (TALLY_EFORMAT,
 * with a message) and then leaves *s untouched. Any thread.
 */
void tally_shamir_pack(const tally_share *s, uint8_t out[TALLY_SHAMIR_SHARE_BYTES]);
int tally_shamir_unpack(tally_share *s, const uint8_t in[TALLY_SHAMIR_SHARE_BYTES]);

#endif
