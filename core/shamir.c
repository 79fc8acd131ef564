/*
 * Shamir secret sharing of 32-byte secrets over GF(2^61 - 1), used by secure aggregation to let
 * the survivors of a round rebuild a dropped peer's mask secret.
 *
 * The Mersenne prime makes reduction two shifts and an add on a 128-bit product. A secret is five
 * limbs of 52 bits (the top one 48), each shared with its own polynomial; split evaluates them by
 * Horner's rule straight into the output shares, so it needs no memory beyond the caller's, and
 * combine interpolates at 0 with Lagrange weights. Constant time is not a goal here (shares of a
 * dropped peer are released to the coordinator anyway), but every temporary that holds secret
 * limbs or coefficients is wiped.
 */
#include "tally/shamir.h"
#include "tally/error.h"

#include <assert.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define P TALLY_SHAMIR_PRIME
#define LIMB_BITS 52
#define TOP_BITS (256 - (TALLY_SHAMIR_ELEMS - 1) * LIMB_BITS) /* 48 */
#define X_LIMIT (UINT32_C(1) << 31)

_Static_assert(TOP_BITS == 48, "5 limbs of 52 bits cover 256 bits with 48 in the top one");

/* ---- GF(p) ------------------------------------------------------------------------------- */

/* x mod p for x < 2^122 (a product of two reduced values). */
static uint64_t reduce128(unsigned __int128 x)
{
	uint64_t s = ((uint64_t)x & P) + (uint64_t)(x >> 61); /* < 2^62 */
	uint64_t r = (s & P) + (s >> 61);                     /* <= p + 1 */

	return r >= P ? r - P : r;
}

static uint64_t fmul(uint64_t a, uint64_t b)
{
	return reduce128((unsigned __int128)a * b);
}

static uint64_t fadd(uint64_t a, uint64_t b)
{
	uint64_t s = a + b; /* < 2^62: no wrap */

	return s >= P ? s - P : s;
}

static uint64_t fsub(uint64_t a, uint64_t b)
{
	return a >= b ? a - b : a + P - b;
}

/* a^(p-2) = a^-1 for a != 0 (Fermat). */
static uint64_t finv(uint64_t a)
{
	uint64_t e = P - 2, r = 1;

	assert(a != 0 && a < P);
	while (e) {
		if (e & 1)
			r = fmul(r, a);
		a = fmul(a, a);
		e >>= 1;
	}
	return r;
}

/* ---- secret <-> limbs -------------------------------------------------------------------- */

static uint64_t load64le(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void store64le(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Limb j holds bits [52j, 52j + 52) of the little-endian 256-bit secret (the top one 48 bits). */
static void secret_to_limbs(const uint8_t secret[TALLY_SHAMIR_SECRET], uint64_t limbs[TALLY_SHAMIR_ELEMS])
{
	uint64_t w[4];

	for (int i = 0; i < 4; i++)
		w[i] = load64le(secret + 8 * i);
	for (int j = 0; j < TALLY_SHAMIR_ELEMS; j++) {
		unsigned pos = (unsigned)j * LIMB_BITS, word = pos / 64, sh = pos % 64;
		uint64_t v = w[word] >> sh;

		if (sh + LIMB_BITS > 64 && word + 1 < 4)
			v |= w[word + 1] << (64 - sh);
		limbs[j] = v & ((UINT64_C(1) << LIMB_BITS) - 1);
	}
	sodium_memzero(w, sizeof(w));
}

/* Inverse of secret_to_limbs; the limbs must already be in range. */
static void limbs_to_secret(const uint64_t limbs[TALLY_SHAMIR_ELEMS], uint8_t secret[TALLY_SHAMIR_SECRET])
{
	uint64_t w[4] = {0, 0, 0, 0};

	for (int j = 0; j < TALLY_SHAMIR_ELEMS; j++) {
		unsigned pos = (unsigned)j * LIMB_BITS, word = pos / 64, sh = pos % 64;

		w[word] |= limbs[j] << sh;
		if (sh + LIMB_BITS > 64 && word + 1 < 4)
			w[word + 1] |= limbs[j] >> (64 - sh);
	}
	for (int i = 0; i < 4; i++)
		store64le(secret + 8 * i, w[i]);
	sodium_memzero(w, sizeof(w));
}

/* ---- coefficient source ------------------------------------------------------------------ */

/*
 * Uniform field elements from 64-bit little-endian words: the low 61 bits of each word, the one
 * value 2^61 - 1 (= p) rejected. Words come from randombytes_buf or, seeded, from the ChaCha20
 * IETF keystream of the seed under a zero nonce, block 0 onwards.
 */
typedef struct coef_source {
	const uint8_t *seed; /* NULL: randombytes */
	uint32_t block;      /* next keystream block (seeded) */
	size_t pos;          /* next unread byte of buf */
	uint8_t buf[512];
} coef_source;

static void source_refill(coef_source *src)
{
	static const uint8_t zero_nonce[crypto_stream_chacha20_ietf_NONCEBYTES];

	if (src->seed) {
		/* 2^32 blocks hold 2^35 words; split draws at most 5 * 2^32 plus rare rejections. */
		if (src->block > UINT32_MAX - sizeof(src->buf) / 64)
			abort();
		memset(src->buf, 0, sizeof(src->buf));
		crypto_stream_chacha20_ietf_xor_ic(src->buf, src->buf, sizeof(src->buf), zero_nonce,
						   src->block, src->seed);
		src->block += sizeof(src->buf) / 64;
	} else {
		randombytes_buf(src->buf, sizeof(src->buf));
	}
	src->pos = 0;
}

static uint64_t source_draw(coef_source *src)
{
	for (;;) {
		uint64_t v;

		if (src->pos == sizeof(src->buf))
			source_refill(src);
		v = load64le(src->buf + src->pos) & P;
		src->pos += 8;
		if (v != P)
			return v;
	}
}

/* ---- split ------------------------------------------------------------------------------- */

static int cmp_share_x(const void *a, const void *b)
{
	uint32_t x = ((const tally_share *)a)->x, y = ((const tally_share *)b)->x;

	return (x > y) - (x < y);
}

/*
 * Checks the points: nonzero, below 2^31, distinct. Uses out[] as scratch for an O(n log n)
 * duplicate check (sorted copies of the x), so nothing is allocated.
 */
static int check_points(uint32_t t, uint32_t n, const uint32_t *xs, tally_share *out)
{
	if (t < 1 || t > n)
		return tally_err(TALLY_EINVAL, "shamir: threshold %u outside 1..%u", t, n);
	for (uint32_t i = 0; i < n; i++) {
		if (xs[i] == 0 || xs[i] >= X_LIMIT)
			return tally_err(TALLY_EINVAL, "shamir: point x[%u] = %u outside 1..2^31-1", i, xs[i]);
		out[i].x = xs[i];
	}
	qsort(out, n, sizeof(*out), cmp_share_x);
	for (uint32_t i = 1; i < n; i++) {
		if (out[i].x == out[i - 1].x)
			return tally_err(TALLY_EINVAL, "shamir: point x = %u given twice", out[i].x);
	}
	return 0;
}

static int split(const uint8_t secret[TALLY_SHAMIR_SECRET], uint32_t t, uint32_t n, const uint32_t *xs,
		 tally_share *out, coef_source *src)
{
	uint64_t limbs[TALLY_SHAMIR_ELEMS];
	int rc;

	assert(secret && xs && out);
	rc = check_points(t, n, xs, out);
	if (rc < 0)
		return rc;
	for (uint32_t i = 0; i < n; i++) {
		out[i].x = xs[i];
		memset(out[i].y, 0, sizeof(out[i].y));
	}
	secret_to_limbs(secret, limbs);
	/* Per limb, coefficients of degree t-1 down to 1 in draw order, then the secret: Horner. */
	for (int j = 0; j < TALLY_SHAMIR_ELEMS; j++) {
		for (uint32_t k = t - 1; k >= 1; k--) {
			uint64_t c = source_draw(src);

			for (uint32_t i = 0; i < n; i++)
				out[i].y[j] = fadd(fmul(out[i].y[j], xs[i]), c);
		}
		for (uint32_t i = 0; i < n; i++)
			out[i].y[j] = fadd(fmul(out[i].y[j], xs[i]), limbs[j]);
	}
	sodium_memzero(limbs, sizeof(limbs));
	sodium_memzero(src->buf, sizeof(src->buf));
	return 0;
}

int tally_shamir_split(const uint8_t secret[TALLY_SHAMIR_SECRET], uint32_t t, uint32_t n,
		       const uint32_t *xs, tally_share *out)
{
	coef_source src = {.seed = NULL, .pos = sizeof(src.buf)};

	return split(secret, t, n, xs, out, &src);
}

int tally_shamir_split_seeded(const uint8_t secret[TALLY_SHAMIR_SECRET], uint32_t t, uint32_t n,
			      const uint32_t *xs, tally_share *out, const uint8_t seed[32])
{
	coef_source src = {.seed = seed, .block = 0, .pos = sizeof(src.buf)};

	assert(seed);
	return split(secret, t, n, xs, out, &src);
}

/* ---- combine ----------------------------------------------------------------------------- */

static int check_share(const tally_share *s, size_t i)
{
	if (s->x == 0 || s->x >= X_LIMIT)
		return tally_err(TALLY_EINVAL, "shamir: share %zu has point x = %u outside 1..2^31-1", i, s->x);
	for (int j = 0; j < TALLY_SHAMIR_ELEMS; j++) {
		if (s->y[j] >= P)
			return tally_err(TALLY_EINVAL, "shamir: share %zu (x = %u) has a value outside the field",
					 i, s->x);
	}
	return 0;
}

/*
 * Lagrange weight of share i at 0 among the first t: prod_{m != i} x_m / (x_m - x_i).
 * Returns 0 (never a valid weight) when another share has the same x.
 */
static uint64_t lagrange_at_zero(const tally_share *s, uint32_t t, uint32_t i)
{
	uint64_t num = 1, den = 1;

	for (uint32_t m = 0; m < t; m++) {
		if (m == i)
			continue;
		if (s[m].x == s[i].x)
			return 0;
		num = fmul(num, s[m].x);
		den = fmul(den, fsub(s[m].x, s[i].x));
	}
	return fmul(num, finv(den));
}

int tally_shamir_combine(const tally_share *shares, size_t count, uint32_t t,
			 uint8_t secret[TALLY_SHAMIR_SECRET])
{
	uint64_t acc[TALLY_SHAMIR_ELEMS] = {0};
	int rc = 0;

	assert(secret && (shares || count == 0));
	if (t < 1 || count < t)
		return tally_err(TALLY_EINVAL, "shamir: %zu shares for threshold %u", count, t);
	for (uint32_t i = 0; i < t; i++) {
		rc = check_share(&shares[i], i);
		if (rc < 0)
			return rc;
	}
	for (uint32_t i = 0; i < t; i++) {
		uint64_t w = lagrange_at_zero(shares, t, i);

		if (w == 0) {
			rc = tally_err(TALLY_EINVAL, "shamir: point x = %u given twice", shares[i].x);
			goto out;
		}
		for (int j = 0; j < TALLY_SHAMIR_ELEMS; j++)
			acc[j] = fadd(acc[j], fmul(shares[i].y[j], w));
	}
	for (int j = 0; j < TALLY_SHAMIR_ELEMS; j++) {
		unsigned bits = j == TALLY_SHAMIR_ELEMS - 1 ? TOP_BITS : LIMB_BITS;

		if (acc[j] >> bits) {
			rc = tally_err(TALLY_EFORMAT, "shamir: shares do not interpolate to a valid secret "
				       "(limb %d out of range): a wrong or tampered share", j);
			goto out;
		}
	}
	limbs_to_secret(acc, secret);
out:
	sodium_memzero(acc, sizeof(acc));
	return rc;
}

/* ---- encoding ---------------------------------------------------------------------------- */

void tally_shamir_pack(const tally_share *s, uint8_t out[TALLY_SHAMIR_SHARE_BYTES])
{
	for (int i = 0; i < 4; i++)
		out[i] = (uint8_t)(s->x >> (8 * i));
	for (int j = 0; j < TALLY_SHAMIR_ELEMS; j++)
		store64le(out + 4 + 8 * j, s->y[j]);
}

int tally_shamir_unpack(tally_share *s, const uint8_t in[TALLY_SHAMIR_SHARE_BYTES])
{
	tally_share tmp;

	tmp.x = (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 24;
	if (tmp.x == 0 || tmp.x >= X_LIMIT)
		return tally_err(TALLY_EFORMAT, "shamir: share point x = %u outside 1..2^31-1", tmp.x);
	for (int j = 0; j < TALLY_SHAMIR_ELEMS; j++) {
		tmp.y[j] = load64le(in + 4 + 8 * j);
		if (tmp.y[j] >= P) {
			int rc = tally_err(TALLY_EFORMAT, "shamir: share (x = %u) value %d not below 2^61-1",
					   tmp.x, j);

			sodium_memzero(&tmp, sizeof(tmp));
			return rc;
		}
	}
	*s = tmp;
	sodium_memzero(&tmp, sizeof(tmp));
	return 0;
}
