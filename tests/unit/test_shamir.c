/*
 * Unit tests for Shamir sharing over GF(2^61 - 1): known answers computed once with an
 * independent stdlib-only Python implementation (its own ChaCha20, checked against RFC 8439, for
 * split_seeded; polynomials with chosen coefficients evaluated with pow() for combine), the limb
 * layout, round trips over many (t, n), every t-subset, too few shares, tampered and duplicate
 * shares, and the packed encoding.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tally/error.h"
#include "tally/rng.h"
#include "tally/shamir.h"

#define P TALLY_SHAMIR_PRIME
#define XMAX ((UINT32_C(1) << 31) - 1)

/*
 * split_seeded KAT. Python: secret = bytes((i*37 + 11) & 0xff for i in range(32)), seed =
 * bytes(range(32)), t = 3, xs 1..5; coefficients from the RFC 8439 ChaCha20 keystream of seed
 * (zero nonce, counter 0) as u64le words masked to 61 bits, per limb degree 2 then degree 1;
 * shares = struct.pack('<I5Q', x, *[poly_j(x) % p]).
 */
static const char *const kat_seeded[5] = {
	"01000000d1ea846e31676e132a33d991bc439c1e5643f1ac5dcead0fe3f8286e30dbef19f80bb7cebdb0f518",
	"020000000aa00c5d7695061b7ca0df2dcaca011617bb44ce80b8971516a72bcd8e1d1d0f5595dbc374a83815",
	"03000000b64fec456e4fd216e37896a9500f3d062f7930bfe963c81193599900514f921fe38e851b866dc914",
	"04000000d5f923291995d1065ebcfd0450114e0f9e7db47f98d03f045c10720877704f0ba2f8b4d5f1ffa717",
	"05000000669eb3067766040bee6a1540c8d0341163c8d00f8dfefd0c6fcbb5e40081541292d269f2b75fd41d",
};
#define KAT_SEEDED_SECRET "0b30557a9fc4e90e33587da2c7ec11365b80a5caef14395e83a8cdf2173c6186"

/*
 * combine KAT, t = 3: secret ff..ff (every limb at its maximum), limb j of the polynomial is
 * S_j + (p-1-j) x + (2^60 + 12345 j) x^2, at x = 7, 1000, 2^31-1, 3, 65536.
 */
static const char *const kat_ff[5] = {
	"070000001000000000001010f23a090000001010d475120000001010b6b01b000000101098eb240000000110",
	"e8030000379d0700000010008f59d9df02001000e715abbf050010003fd27c9f08001000978e4e7f0b000100",
	"ffffff7f01000000ffff0f10ad900080c5cf0f10592101008c9f0f1005b20180526f0f10b1420200193f0010",
	"030000000000000000001010feb1010000001010fc63030000001010fa15050000001010f8c7060000000110",
	"00000100fffffe7f00001000fffffd7f39301000fffffc7f72601000fffffb7fab901000fffffa7fe4c00100",
};

/*
 * combine KAT, t = 5: secret 0123456789abcdef x 4, coefficient of degree k (1..4) of limb j is
 * 0x1234567 (k) (j + 3) mod p, at x = 11, 22, ..., 66.
 */
static const char *const kat_t5[6] = {
	"0b000000a30ebbdeceae0d00d40378f1d09a0800b9ab09c9964a0700da8fc6eba9360200bf3747c26ff70000",
	"160000009f6e262d0ede0d0024d9b104d0d908005df611a155990700d24f9d88289502000b6dec23ae650100",
	"21000000d387487b55a80e001450df6c84e7090009cb4a2377ea08003a82e124b72904002ffd3bdaa93d0300",
	"2c000000fd4ca16ce7c510004cac55599cb90c004fbede0a15710c008e0c9307db640800911e0bb8532d0800",
	"37000000bb5e6f1f3b381500f4c3bd4761a71200e1dbe0344bda13000a302f6d82491100f74741596c8d1200",
	"420000008b0bb02cfc491d00b4ff1304b8691d0091a64ca0374d2100aa89b087046d21008730d82284612500",
};

static void from_hex(uint8_t *out, size_t n, const char *hex)
{
	size_t len;

	assert_int_equal(strlen(hex), 2 * n);
	assert_int_equal(sodium_hex2bin(out, n, hex, strlen(hex), NULL, &len, NULL), 0);
	assert_int_equal(len, n);
}

static void unpack_hex(tally_share *s, const char *hex)
{
	uint8_t b[TALLY_SHAMIR_SHARE_BYTES];

	from_hex(b, sizeof(b), hex);
	assert_int_equal(tally_shamir_unpack(s, b), 0);
}

static void assert_share_hex(const tally_share *s, const char *want)
{
	uint8_t b[TALLY_SHAMIR_SHARE_BYTES];
	char hex[2 * TALLY_SHAMIR_SHARE_BYTES + 1];

	tally_shamir_pack(s, b);
	sodium_bin2hex(hex, sizeof(hex), b, sizeof(b));
	assert_string_equal(hex, want);
}

/* Field by field: tally_share has padding after x. */
static void assert_shares_equal(const tally_share *a, const tally_share *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(a[i].x, b[i].x);
		assert_memory_equal(a[i].y, b[i].y, sizeof(a[i].y));
	}
}

static void fill(tally_rng *r, uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)tally_rng_u64(r);
}

static void test_split_seeded_known_answer(void **state)
{
	uint8_t secret[32], seed[32], other_seed[32], got[32];
	const uint32_t xs[5] = {1, 2, 3, 4, 5};
	tally_share s[5], again[5];

	from_hex(secret, 32, KAT_SEEDED_SECRET);
	for (int i = 0; i < 32; i++)
		seed[i] = (uint8_t)i;
	assert_int_equal(tally_shamir_split_seeded(secret, 3, 5, xs, s, seed), 0);
	for (int i = 0; i < 5; i++)
		assert_share_hex(&s[i], kat_seeded[i]);
	assert_int_equal(tally_shamir_combine(s + 2, 3, 3, got), 0);
	assert_memory_equal(got, secret, 32);

	/* Deterministic in the seed, and the seed matters. */
	assert_int_equal(tally_shamir_split_seeded(secret, 3, 5, xs, again, seed), 0);
	assert_shares_equal(again, s, 5);
	memcpy(other_seed, seed, 32);
	other_seed[31] ^= 1;
	assert_int_equal(tally_shamir_split_seeded(secret, 3, 5, xs, again, other_seed), 0);
	for (int i = 0; i < 5; i++)
		assert_memory_not_equal(again[i].y, s[i].y, sizeof(s[i].y));
}

/* With t = 1 every share is the limb vector itself, so the limb layout is visible. */
static void test_limb_layout(void **state)
{
	const uint32_t xs[2] = {1, XMAX};
	uint8_t secret[32] = {0}, got[32];
	tally_share s[2];

	for (unsigned bit = 0; bit < 256; bit++) {
		memset(secret, 0, sizeof(secret));
		secret[bit / 8] = (uint8_t)(1u << (bit % 8));
		assert_int_equal(tally_shamir_split(secret, 1, 2, xs, s), 0);
		for (int j = 0; j < TALLY_SHAMIR_ELEMS; j++) {
			uint64_t want = (unsigned)j == bit / 52 ? UINT64_C(1) << (bit % 52) : 0;

			assert_int_equal(s[0].y[j], want);
			assert_int_equal(s[1].y[j], want);
		}
		assert_int_equal(tally_shamir_combine(s + 1, 1, 1, got), 0);
		assert_memory_equal(got, secret, 32);
	}
	memset(secret, 0xff, sizeof(secret));
	assert_int_equal(tally_shamir_split(secret, 1, 2, xs, s), 0);
	for (int j = 0; j < 4; j++)
		assert_int_equal(s[0].y[j], (UINT64_C(1) << 52) - 1);
	assert_int_equal(s[0].y[4], (UINT64_C(1) << 48) - 1);
}

/* The range check's edges: limbs 0..3 below 2^52, the top limb below 2^48 (t = 1: y is the value). */
static void test_combine_range_edges(void **state)
{
	tally_share s = {.x = 5};
	uint8_t got[32], ff[32];

	memset(ff, 0xff, sizeof(ff));
	for (int j = 0; j < TALLY_SHAMIR_ELEMS; j++)
		s.y[j] = (UINT64_C(1) << (j == 4 ? 48 : 52)) - 1;
	assert_int_equal(tally_shamir_combine(&s, 1, 1, got), 0);
	assert_memory_equal(got, ff, 32);
	for (int j = 0; j < TALLY_SHAMIR_ELEMS; j++) {
		uint64_t keep = s.y[j];

		s.y[j] = keep + 1;
		memset(got, 0, sizeof(got));
		assert_int_equal(tally_shamir_combine(&s, 1, 1, got), TALLY_EFORMAT);
		assert_true(strlen(tally_errmsg()) > 0);
		s.y[j] = TALLY_SHAMIR_PRIME - 1;
		assert_int_equal(tally_shamir_combine(&s, 1, 1, got), TALLY_EFORMAT);
		for (int i = 0; i < 32; i++)
			assert_int_equal(got[i], 0); /* not written on failure */
		s.y[j] = keep;
	}
}

static void test_combine_known_answer(void **state)
{
	uint8_t want[32], got[32];
	tally_share s[6], pick[5];

	memset(want, 0xff, 32);
	for (int i = 0; i < 5; i++)
		unpack_hex(&s[i], kat_ff[i]);
	/* Every 3-subset of the 5, in two orders; then all 5 with t = 3 (uses the first 3). */
	for (int a = 0; a < 5; a++)
		for (int b = a + 1; b < 5; b++)
			for (int c = b + 1; c < 5; c++) {
				pick[0] = s[a], pick[1] = s[b], pick[2] = s[c];
				memset(got, 0, 32);
				assert_int_equal(tally_shamir_combine(pick, 3, 3, got), 0);
				assert_memory_equal(got, want, 32);
				pick[0] = s[c], pick[2] = s[a];
				memset(got, 0, 32);
				assert_int_equal(tally_shamir_combine(pick, 3, 3, got), 0);
				assert_memory_equal(got, want, 32);
			}
	assert_int_equal(tally_shamir_combine(s, 5, 3, got), 0);
	assert_memory_equal(got, want, 32);

	from_hex(want, 32, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	for (int i = 0; i < 6; i++)
		unpack_hex(&s[i], kat_t5[i]);
	for (int skip = 0; skip < 6; skip++) {
		for (int i = 0, k = 0; i < 6; i++)
			if (i != skip)
				pick[k++] = s[i];
		memset(got, 0, 32);
		assert_int_equal(tally_shamir_combine(pick, 5, 5, got), 0);
		assert_memory_equal(got, want, 32);
	}
}

/* n distinct points in 1..2^31-1, including both ends when n allows. */
static void distinct_points(tally_rng *r, uint32_t *xs, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		bool dup;

		do {
			xs[i] = i == 0 ? 1 : i == 1 ? XMAX : 1 + (uint32_t)tally_rng_below(r, XMAX);
			dup = false;
			for (uint32_t k = 0; k < i; k++)
				dup |= xs[k] == xs[i];
		} while (dup);
	}
	tally_rng_shuffle_u32(r, xs, n);
}

/* Combines t shares picked at random (in random order) from s[0..n). */
static int combine_random_subset(tally_rng *r, const tally_share *s, uint32_t n, uint32_t t, uint8_t out[32])
{
	uint32_t idx[100];
	tally_share pick[100];

	for (uint32_t i = 0; i < n; i++)
		idx[i] = i;
	tally_rng_shuffle_u32(r, idx, n);
	for (uint32_t i = 0; i < t; i++)
		pick[i] = s[idx[i]];
	return tally_shamir_combine(pick, t, t, out);
}

static void test_round_trips(void **state)
{
	static const uint32_t tn[][2] = {
		{1, 1}, {1, 2}, {1, 100}, {2, 2}, {2, 3}, {3, 5}, {5, 5}, {7, 10},
		{10, 10}, {16, 31}, {33, 100}, {50, 100}, {99, 100}, {100, 100},
	};
	tally_rng r;
	uint32_t xs[100];
	tally_share s[100];
	uint8_t secret[32], seed[32], got[32];

	tally_rng_seed(&r, 20240611, 1);
	for (size_t c = 0; c < sizeof(tn) / sizeof(tn[0]); c++) {
		uint32_t t = tn[c][0], n = tn[c][1];

		for (int rep = 0; rep < 6; rep++) {
			fill(&r, secret, 32);
			if (rep == 0)
				memset(secret, 0xff, 32);
			distinct_points(&r, xs, n);
			if (rep % 2) {
				fill(&r, seed, 32);
				assert_int_equal(tally_shamir_split_seeded(secret, t, n, xs, s, seed), 0);
			} else {
				assert_int_equal(tally_shamir_split(secret, t, n, xs, s), 0);
			}
			for (uint32_t i = 0; i < n; i++) {
				assert_int_equal(s[i].x, xs[i]);
				for (int j = 0; j < TALLY_SHAMIR_ELEMS; j++)
					assert_true(s[i].y[j] < P);
			}
			memset(got, 0, 32);
			assert_int_equal(tally_shamir_combine(s, n, t, got), 0);
			assert_memory_equal(got, secret, 32);
			memset(got, 0, 32);
			assert_int_equal(combine_random_subset(&r, s, n, t, got), 0);
			assert_memory_equal(got, secret, 32);
		}
	}
}

/* Every t-subset of n shares gives the secret (t = 3 of 6 and t = 4 of 7: 20 and 35 subsets). */
static void test_every_subset(void **state)
{
	uint8_t secret[32], got[32];
	tally_share s[7], pick[7];
	const uint32_t xs[7] = {9, 1, 2000000000, 5, 77, 3, 12};
	tally_rng r;

	tally_rng_seed(&r, 7, 7);
	for (uint32_t t = 3, n = 6; t <= 4; t++, n++) {
		int subsets = 0;

		fill(&r, secret, 32);
		assert_int_equal(tally_shamir_split(secret, t, n, xs, s), 0);
		for (uint32_t mask = 0; mask < (1u << n); mask++) {
			uint32_t k = 0;

			if ((uint32_t)__builtin_popcount(mask) != t)
				continue;
			for (uint32_t i = 0; i < n; i++)
				if (mask & (1u << i))
					pick[k++] = s[i];
			memset(got, 0, 32);
			assert_int_equal(tally_shamir_combine(pick, t, t, got), 0);
			assert_memory_equal(got, secret, 32);
			subsets++;
		}
		assert_int_equal(subsets, t == 3 ? 20 : 35);
	}
}

/* t-1 shares: refused as threshold t; interpolated as threshold t-1 they miss the secret. */
static void test_too_few_shares(void **state)
{
	tally_rng r;
	uint32_t xs[20];
	tally_share s[20];
	uint8_t secret[32], got[32];
	int eformat = 0, trials = 0;

	tally_rng_seed(&r, 99, 3);
	for (uint32_t t = 2; t <= 20; t++) {
		for (int rep = 0; rep < 20; rep++) {
			fill(&r, secret, 32);
			distinct_points(&r, xs, t);
			assert_int_equal(tally_shamir_split(secret, t, t, xs, s), 0);
			memset(got, 0xa5, 32);
			assert_int_equal(tally_shamir_combine(s, t - 1, t, got), TALLY_EINVAL);
			for (int i = 0; i < 32; i++)
				assert_int_equal(got[i], 0xa5); /* untouched on failure */
			int rc = tally_shamir_combine(s, t - 1, t - 1, got);

			assert_true(rc == TALLY_EFORMAT || rc == 0);
			if (rc == 0)
				assert_memory_not_equal(got, secret, 32);
			eformat += rc == TALLY_EFORMAT;
			trials++;
		}
	}
	/* A random interpolant passes the range check with probability 2^-49. */
	assert_int_equal(eformat, trials);
}

/* A changed y limb in any of the first t shares never gives the original secret. */
static void test_tampered_share(void **state)
{
	const uint32_t xs[5] = {4, 8, 15, 16, 23};
	uint64_t deltas[] = {1, 2, P - 1, UINT64_C(1) << 52, 123456789};
	tally_share s[5], bad[5];
	uint8_t secret[32], got[32];
	int noticed = 0, trials = 0;
	tally_rng r;

	tally_rng_seed(&r, 5, 5);
	fill(&r, secret, 32);
	assert_int_equal(tally_shamir_split(secret, 3, 5, xs, s), 0);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < TALLY_SHAMIR_ELEMS; j++)
			for (size_t d = 0; d < sizeof(deltas) / sizeof(deltas[0]); d++) {
				memcpy(bad, s, sizeof(s));
				bad[i].y[j] = (bad[i].y[j] + deltas[d]) % P;
				memset(got, 0, 32);
				int rc = tally_shamir_combine(bad, 5, 3, got);

				assert_true(rc == 0 || rc == TALLY_EFORMAT);
				if (rc == 0)
					assert_memory_not_equal(got, secret, 32);
				noticed += rc == TALLY_EFORMAT;
				trials++;
			}
	/* Random-looking changes are mostly caught (each escapes with probability ~2^-9). */
	assert_true(noticed >= trials - 3);
	/* A share beyond the first t is not examined. */
	memcpy(bad, s, sizeof(s));
	bad[4].y[0] = (bad[4].y[0] + 1) % P;
	assert_int_equal(tally_shamir_combine(bad, 5, 3, got), 0);
	assert_memory_equal(got, secret, 32);
}

/*
 * The range check is no MAC: at x = 1, 2, 3 the Lagrange weight of the third share is 1, so adding
 * 1 to its limb 0 adds 1 to the secret and passes. (The protocol authenticates shares with AEAD.)
 */
static void test_chosen_tamper_passes_range_check(void **state)
{
	const uint32_t xs[3] = {1, 2, 3};
	tally_share s[3];
	uint8_t secret[32] = {0x10}, got[32];

	assert_int_equal(tally_shamir_split(secret, 3, 3, xs, s), 0);
	s[2].y[0] = (s[2].y[0] + 1) % P;
	assert_int_equal(tally_shamir_combine(s, 3, 3, got), 0);
	secret[0] = 0x11;
	assert_memory_equal(got, secret, 32);
}

static void test_bad_arguments(void **state)
{
	uint8_t secret[32] = {1}, got[32];
	const uint32_t ok[4] = {1, 2, 3, 4}, dup[4] = {7, 3, 9, 3}, zero[3] = {1, 0, 2};
	const uint32_t big[3] = {1, UINT32_C(1) << 31, 2}, huge[2] = {UINT32_MAX, 5};
	tally_share s[4], bad[4];
	uint8_t seed[32] = {0};

	assert_int_equal(tally_shamir_split(secret, 2, 4, dup, s), TALLY_EINVAL);
	assert_int_equal(tally_shamir_split_seeded(secret, 2, 4, dup, s, seed), TALLY_EINVAL);
	assert_int_equal(tally_shamir_split(secret, 2, 3, zero, s), TALLY_EINVAL);
	assert_int_equal(tally_shamir_split(secret, 2, 3, big, s), TALLY_EINVAL);
	assert_int_equal(tally_shamir_split(secret, 1, 2, huge, s), TALLY_EINVAL);
	assert_int_equal(tally_shamir_split(secret, 0, 4, ok, s), TALLY_EINVAL);
	assert_int_equal(tally_shamir_split(secret, 5, 4, ok, s), TALLY_EINVAL);
	assert_true(strlen(tally_errmsg()) > 0);

	assert_int_equal(tally_shamir_split(secret, 3, 4, ok, s), 0);
	assert_int_equal(tally_shamir_combine(s, 4, 0, got), TALLY_EINVAL);
	assert_int_equal(tally_shamir_combine(s, 0, 1, got), TALLY_EINVAL);
	assert_int_equal(tally_shamir_combine(NULL, 0, 1, got), TALLY_EINVAL);
	/* Duplicate x among the first t: refused, whether the y agree or not. */
	memcpy(bad, s, sizeof(s));
	bad[2] = bad[0];
	assert_int_equal(tally_shamir_combine(bad, 4, 3, got), TALLY_EINVAL);
	bad[2].y[1] ^= 1;
	assert_int_equal(tally_shamir_combine(bad, 4, 3, got), TALLY_EINVAL);
	/* Out-of-range x or y. */
	memcpy(bad, s, sizeof(s));
	bad[1].x = 0;
	assert_int_equal(tally_shamir_combine(bad, 4, 3, got), TALLY_EINVAL);
	bad[1].x = UINT32_C(1) << 31;
	assert_int_equal(tally_shamir_combine(bad, 4, 3, got), TALLY_EINVAL);
	memcpy(bad, s, sizeof(s));
	bad[2].y[4] = P;
	assert_int_equal(tally_shamir_combine(bad, 4, 3, got), TALLY_EINVAL);
	bad[2].y[4] = UINT64_MAX;
	assert_int_equal(tally_shamir_combine(bad, 4, 3, got), TALLY_EINVAL);
	/* Still fine without the bad ones. */
	assert_int_equal(tally_shamir_combine(s + 1, 3, 3, got), 0);
	assert_memory_equal(got, secret, 32);
}

static void test_pack_unpack(void **state)
{
	tally_share s = {.x = 0x01020304, .y = {0, 1, P - 1, UINT64_C(0x0123456789abcdef), 42}}, u;
	uint8_t b[TALLY_SHAMIR_SHARE_BYTES], keep[sizeof(tally_share)];

	assert_int_equal(TALLY_SHAMIR_SHARE_BYTES, 44);
	assert_share_hex(&s, "04030201" "0000000000000000" "0100000000000000" "feffffffffffff1f"
			     "efcdab8967452301" "2a00000000000000");
	tally_shamir_pack(&s, b);
	memset(&u, 0, sizeof(u));
	assert_int_equal(tally_shamir_unpack(&u, b), 0);
	assert_int_equal(u.x, s.x);
	assert_memory_equal(u.y, s.y, sizeof(s.y));

	memset(&u, 0x5a, sizeof(u));
	memcpy(keep, &u, sizeof(u));
	for (int j = 0; j < TALLY_SHAMIR_ELEMS; j++) {
		uint8_t bad[TALLY_SHAMIR_SHARE_BYTES];

		memcpy(bad, b, sizeof(bad));
		memcpy(bad + 4 + 8 * j, "\xff\xff\xff\xff\xff\xff\xff\x1f", 8); /* y = p */
		assert_int_equal(tally_shamir_unpack(&u, bad), TALLY_EFORMAT);
		memcpy(bad + 4 + 8 * j, "\x00\x00\x00\x00\x00\x00\x00\x20", 8); /* y = 2^61 */
		assert_int_equal(tally_shamir_unpack(&u, bad), TALLY_EFORMAT);
		memcpy(bad + 4 + 8 * j, "\xfe\xff\xff\xff\xff\xff\xff\x1f", 8); /* y = p - 1 */
		assert_int_equal(tally_shamir_unpack(&u, bad), 0);
		memcpy(&u, keep, sizeof(u));
	}
	memcpy(b, "\0\0\0\0", 4);
	assert_int_equal(tally_shamir_unpack(&u, b), TALLY_EFORMAT);
	memcpy(b, "\0\0\0\x80", 4);
	assert_int_equal(tally_shamir_unpack(&u, b), TALLY_EFORMAT);
	assert_memory_equal(&u, keep, sizeof(u)); /* untouched on failure */
	memcpy(b, "\xff\xff\xff\x7f", 4);
	assert_int_equal(tally_shamir_unpack(&u, b), 0);
	assert_int_equal(u.x, XMAX);
}

/* The randombytes split draws fresh coefficients: two splits differ unless t = 1. */
static void test_split_is_randomised(void **state)
{
	const uint32_t xs[3] = {1, 2, 3};
	uint8_t secret[32] = {0};
	tally_share a[3], b[3];

	assert_int_equal(tally_shamir_split(secret, 2, 3, xs, a), 0);
	assert_int_equal(tally_shamir_split(secret, 2, 3, xs, b), 0);
	for (int i = 0; i < 3; i++)
		assert_memory_not_equal(a[i].y, b[i].y, sizeof(a[i].y));
	assert_int_equal(tally_shamir_split(secret, 1, 3, xs, a), 0);
	assert_int_equal(tally_shamir_split(secret, 1, 3, xs, b), 0);
	assert_shares_equal(a, b, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_seeded_known_answer),
		cmocka_unit_test(test_limb_layout),
		cmocka_unit_test(test_combine_range_edges),
		cmocka_unit_test(test_combine_known_answer),
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_every_subset),
		cmocka_unit_test(test_too_few_shares),
		cmocka_unit_test(test_tampered_share),
		cmocka_unit_test(test_chosen_tamper_passes_range_check),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_pack_unpack),
		cmocka_unit_test(test_split_is_randomised),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
