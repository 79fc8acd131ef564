/*
 * Unit tests for the secure-aggregation masks: KDF known answers (Python's hashlib.blake2b),
 * X25519 agreement symmetry and low-order refusal, the mask generator against RFC 8439 and
 * against libsodium's keystream at arbitrary offsets (including the last block the 32-bit
 * counter reaches, and the abort past it), chunked masking equal to whole-vector masking,
 * add-then-subtract, and a chi-square uniformity check of one masked vector.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tally/error.h"
#include "tally/mask.h"
#include "tally/rng.h"

/*
 * /usr/bin/python3: secret = bytes(range(0x40, 0x60)), session = bytes(range(0xa0, 0xc0)),
 * hashlib.blake2b(b"tally-mask-v1" + bytes([purpose]) + session + struct.pack('<QQ', round,
 * length), key=secret, digest_size=32).hexdigest()
 */
static const struct {
	tally_mask_purpose purpose;
	uint64_t round, length;
	const char *hex;
} kat_kdf[] = {
	{TALLY_MASK_PAIR, 7, 1000000, "9eff51dcc9f62f44a2bfbf59d1f762054dc961d15a23dce0db0e3f64659dd7ca"},
	{TALLY_MASK_SELF, 0, 0, "76efd864b693b6d1ae31c073e5d4fec9398f7c30bb4a7b4c1882b10490208073"},
	{TALLY_MASK_SHARE_BOX, UINT64_MAX, 123456789,
	 "73c06a4c3a347ff6eb8d20005742c73a89b715c693586f10e6051c4d7693381e"},
};

/* RFC 8439 A.1 test vector #1 (key 0, nonce 0, counter 0): 76 b8 e0 ad a0 f1 3d 90 ... as u32le. */
static const uint32_t rfc_words[8] = {
	0xade0b876, 0x903df1a0, 0xe56a5d40, 0x28bd8653, 0xb819d2bd, 0x1aed8da0, 0xccef36a8, 0xc70d778b,
};
/* The same keystream's u32 words 1000..1003 (bytes 4000..4015, inside block 62; own ChaCha20 in Python). */
static const uint32_t rfc_words_1000[4] = {0xc6a79c0d, 0x26ff75a1, 0x73b882ed, 0xcbf43dd6};

static const uint8_t zero_nonce[crypto_stream_chacha20_ietf_NONCEBYTES];

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the tests compare words with keystream bytes");

static void fill_key(uint8_t key[32], uint8_t tag)
{
	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)(tag + 13 * i);
}

/* Keystream bytes [byte, byte + len) of key, straight from libsodium, block counter included. */
static uint8_t *ref_keystream(const uint8_t key[32], uint64_t byte, size_t len)
{
	size_t skip = byte % 64, total = skip + len;
	uint8_t *buf = calloc(total, 1);
	uint8_t *out = malloc(len ? len : 1);

	assert_non_null(buf);
	assert_non_null(out);
	assert_int_equal(crypto_stream_chacha20_ietf_xor_ic(buf, buf, total, zero_nonce,
							    (uint32_t)(byte / 64), key), 0);
	if (byte == 0) { /* the plain keystream call agrees where it can be used */
		assert_int_equal(crypto_stream_chacha20_ietf(out, len, zero_nonce, key), 0);
		assert_memory_equal(out, buf, len);
	}
	memcpy(out, buf + skip, len);
	free(buf);
	return out;
}

static void test_kdf_known_answer(void **state)
{
	uint8_t secret[32], session[32], key[TALLY_MASK_KEY];
	char hex[2 * TALLY_MASK_KEY + 1];

	for (int i = 0; i < 32; i++) {
		secret[i] = (uint8_t)(0x40 + i);
		session[i] = (uint8_t)(0xa0 + i);
	}
	for (size_t k = 0; k < sizeof(kat_kdf) / sizeof(kat_kdf[0]); k++) {
		tally_mask_kdf(key, secret, kat_kdf[k].purpose, session, kat_kdf[k].round, kat_kdf[k].length);
		sodium_bin2hex(hex, sizeof(hex), key, sizeof(key));
		assert_string_equal(hex, kat_kdf[k].hex);
	}
}

/* Every input of the KDF changes the key. */
static void test_kdf_inputs_matter(void **state)
{
	uint8_t secret[32] = {1}, session[32] = {2}, base[32], k[32];

	tally_mask_kdf(base, secret, TALLY_MASK_PAIR, session, 3, 4);
	tally_mask_kdf(k, secret, TALLY_MASK_PAIR, session, 3, 4);
	assert_memory_equal(k, base, 32);
	secret[31] ^= 1;
	tally_mask_kdf(k, secret, TALLY_MASK_PAIR, session, 3, 4);
	assert_memory_not_equal(k, base, 32);
	secret[31] ^= 1;
	session[31] ^= 1;
	tally_mask_kdf(k, secret, TALLY_MASK_PAIR, session, 3, 4);
	assert_memory_not_equal(k, base, 32);
	session[31] ^= 1;
	tally_mask_kdf(k, secret, TALLY_MASK_SELF, session, 3, 4);
	assert_memory_not_equal(k, base, 32);
	tally_mask_kdf(k, secret, TALLY_MASK_PAIR, session, 3 + (UINT64_C(1) << 63), 4);
	assert_memory_not_equal(k, base, 32);
	tally_mask_kdf(k, secret, TALLY_MASK_PAIR, session, 3, 4 + (UINT64_C(1) << 56));
	assert_memory_not_equal(k, base, 32);
}

static void test_agree_symmetric(void **state)
{
	uint8_t a_sk[32], a_pk[32], b_sk[32], b_pk[32], c_sk[32], c_pk[32], session[32] = {9};
	uint8_t ab[32], ba[32], ac[32], ab_self[32], shared[32], direct[32];

	crypto_box_keypair(a_pk, a_sk);
	crypto_box_keypair(b_pk, b_sk);
	crypto_box_keypair(c_pk, c_sk);
	assert_int_equal(tally_mask_agree(ab, a_sk, b_pk, TALLY_MASK_PAIR, session, 1, 100), 0);
	assert_int_equal(tally_mask_agree(ba, b_sk, a_pk, TALLY_MASK_PAIR, session, 1, 100), 0);
	assert_memory_equal(ab, ba, 32);
	assert_int_equal(tally_mask_agree(ac, a_sk, c_pk, TALLY_MASK_PAIR, session, 1, 100), 0);
	assert_memory_not_equal(ab, ac, 32);
	assert_int_equal(tally_mask_agree(ab_self, a_sk, b_pk, TALLY_MASK_SHARE_BOX, session, 1, 100), 0);
	assert_memory_not_equal(ab, ab_self, 32);
	/* It is the KDF of the raw X25519 point. */
	assert_int_equal(crypto_scalarmult(shared, a_sk, b_pk), 0);
	tally_mask_kdf(direct, shared, TALLY_MASK_PAIR, session, 1, 100);
	assert_memory_equal(ab, direct, 32);
}

static void test_agree_refuses_low_order(void **state)
{
	uint8_t sk[32], pk[32], key[32], zero[32] = {0}, one[32] = {1}, session[32] = {0};

	crypto_box_keypair(pk, sk);
	memset(key, 0x77, sizeof(key));
	assert_int_equal(tally_mask_agree(key, sk, zero, TALLY_MASK_PAIR, session, 0, 0), TALLY_ECRYPTO);
	assert_memory_equal(key, zero, 32); /* wiped, not left half-made */
	assert_true(strlen(tally_errmsg()) > 0);
	assert_int_equal(tally_mask_agree(key, sk, one, TALLY_MASK_PAIR, session, 0, 0), TALLY_ECRYPTO);
}

static void test_rfc8439_vector(void **state)
{
	uint8_t key[32] = {0};
	uint32_t v[1004] = {0};
	uint64_t w[4] = {0};

	tally_mask_add_u32(v, 1004, 0, key, +1);
	assert_memory_equal(v, rfc_words, sizeof(rfc_words));
	assert_memory_equal(v + 1000, rfc_words_1000, sizeof(rfc_words_1000));
	memset(v, 0, sizeof(v));
	tally_mask_add_u32(v, 4, 1000, key, +1); /* offset in elements, not bytes or blocks */
	assert_memory_equal(v, rfc_words_1000, sizeof(rfc_words_1000));
	memset(v, 0, sizeof(v));
	tally_mask_add_u32(v, 8, 0, key, -1);
	for (int i = 0; i < 8; i++)
		assert_int_equal(v[i], (uint32_t)-rfc_words[i]);
	tally_mask_add_u64(w, 4, 0, key, +1);
	for (int i = 0; i < 4; i++)
		assert_int_equal(w[i], (uint64_t)rfc_words[2 * i + 1] << 32 | rfc_words[2 * i]);
}

/* Element i of the mask is word offset + i of libsodium's keystream, at many offsets and lengths. */
static void test_matches_keystream(void **state)
{
	static const uint64_t offsets[] = {0, 1, 3, 15, 16, 17, 4095, 4096, 4097, 12345, 1u << 20};
	static const size_t lens[] = {0, 1, 5, 16, 17, 4096, 4111, 10000};
	uint8_t key[32];
	uint32_t *v = malloc(10001 * sizeof(*v));
	uint64_t *w = malloc(10000 * sizeof(*w));

	fill_key(key, 3);
	for (size_t o = 0; o < sizeof(offsets) / sizeof(offsets[0]); o++)
		for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
			size_t n = lens[l];
			uint8_t *ks32 = ref_keystream(key, 4 * offsets[o], 4 * n);
			uint8_t *ks64 = ref_keystream(key, 8 * offsets[o], 8 * n);

			memset(v, 0, 10001 * sizeof(*v));
			memset(w, 0, 10000 * sizeof(*w));
			tally_mask_add_u32(v, n, offsets[o], key, +1);
			tally_mask_add_u64(w, n, offsets[o], key, +1);
			for (size_t i = 0; i < n; i++) {
				uint32_t m32 = (uint32_t)ks32[4 * i] | (uint32_t)ks32[4 * i + 1] << 8 |
					       (uint32_t)ks32[4 * i + 2] << 16 | (uint32_t)ks32[4 * i + 3] << 24;
				uint64_t m64 = 0;

				for (int b = 7; b >= 0; b--)
					m64 = m64 << 8 | ks64[8 * i + (size_t)b];
				assert_int_equal(v[i], m32);
				assert_int_equal(w[i], m64);
			}
			assert_int_equal(v[n], 0); /* nothing past n */
			free(ks32);
			free(ks64);
		}
	free(v);
	free(w);
}

/* The last 16 u32 (8 u64) elements sit in block 2^32 - 1, the last the counter reaches. */
static void test_last_block(void **state)
{
	uint8_t key[32];
	uint32_t v[20] = {0};
	uint64_t w[8] = {0};
	uint64_t last32 = TALLY_MASK_MAX_BYTES / 4, last64 = TALLY_MASK_MAX_BYTES / 8;
	uint8_t *ks;

	fill_key(key, 5);
	ks = ref_keystream(key, TALLY_MASK_MAX_BYTES - 64, 64);
	tally_mask_add_u32(v, 16, last32 - 16, key, +1);
	assert_memory_equal(v, ks, 64); /* little-endian host */
	memset(v, 0, sizeof(v));
	tally_mask_add_u32(v, 3, last32 - 3, key, +1);
	assert_memory_equal(v, ks + 52, 12);
	tally_mask_add_u64(w, 8, last64 - 8, key, +1);
	assert_memory_equal(w, ks, 64);
	tally_mask_add_u32(v, 0, last32, key, +1); /* empty span at the very end is fine */
	free(ks);
}

/* Runs one mask_add in a child; returns the signal that ended it, or 0. */
static int child_signal(uint64_t offset, size_t n, int u64)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		uint8_t key[32] = {0};
		uint64_t buf[32] = {0};

		if (u64)
			tally_mask_add_u64(buf, n, offset, key, +1);
		else
			tally_mask_add_u32((uint32_t *)buf, n, offset, key, +1);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

/* Spans past the 32-bit block counter abort instead of wrapping into the nonce. */
static void test_span_guard(void **state)
{
	uint64_t max32 = TALLY_MASK_MAX_BYTES / 4, max64 = TALLY_MASK_MAX_BYTES / 8;

	assert_int_equal(child_signal(max32 - 16, 16, 0), 0);
	assert_int_equal(child_signal(max32 - 15, 16, 0), SIGABRT);
	assert_int_equal(child_signal(max32, 1, 0), SIGABRT); /* block 2^32 would truncate to 0 */
	assert_int_equal(child_signal(max32 + 1, 0, 0), SIGABRT);
	assert_int_equal(child_signal(UINT64_MAX / 2, 1, 0), SIGABRT); /* offset * 4 would wrap */
	assert_int_equal(child_signal(max64 - 8, 8, 1), 0);
	assert_int_equal(child_signal(max64 - 7, 8, 1), SIGABRT);
	assert_int_equal(child_signal(max64, 1, 1), SIGABRT);
}

/* Masking in pieces at arbitrary cut points equals masking the whole vector. */
static void test_pieces_equal_whole(void **state)
{
	enum { N = 40000 };
	static const size_t cuts[] = {0, 1, 3, 8, 15, 16, 17, 63, 64, 65, 100, 4095, 4096, 4097, 8191,
				      8200, 12289, 20000, 20001, 39999, N};
	uint32_t *whole = malloc(N * sizeof(*whole)), *pieces = malloc(N * sizeof(*pieces));
	uint64_t *whole64 = malloc(N * sizeof(*whole64)), *pieces64 = malloc(N * sizeof(*pieces64));
	uint8_t key[32];
	tally_rng r;

	fill_key(key, 11);
	tally_rng_seed(&r, 1, 2);
	for (size_t i = 0; i < N; i++) {
		whole64[i] = pieces64[i] = tally_rng_u64(&r);
		whole[i] = pieces[i] = (uint32_t)whole64[i];
	}
	tally_mask_add_u32(whole, N, 777, key, +1);
	tally_mask_add_u64(whole64, N, 777, key, -1);
	for (size_t c = 0; c + 1 < sizeof(cuts) / sizeof(cuts[0]); c++) {
		size_t a = cuts[c], b = cuts[c + 1];

		tally_mask_add_u32(pieces + a, b - a, 777 + a, key, +1);
		tally_mask_add_u64(pieces64 + a, b - a, 777 + a, key, -1);
	}
	assert_memory_equal(whole, pieces, N * sizeof(*whole));
	assert_memory_equal(whole64, pieces64, N * sizeof(*whole64));
	free(whole);
	free(pieces);
	free(whole64);
	free(pieces64);
}

/* Adding then subtracting the same mask (in different chunkings) restores the vector. */
static void test_add_then_subtract(void **state)
{
	enum { N = 100003 };
	uint32_t *v = malloc(N * sizeof(*v)), *orig = malloc(N * sizeof(*orig));
	uint64_t *w = malloc(N * sizeof(*w)), *orig64 = malloc(N * sizeof(*orig64));
	uint8_t key[32], key2[32];
	tally_rng r;

	fill_key(key, 21);
	fill_key(key2, 22);
	tally_rng_seed(&r, 3, 4);
	for (size_t i = 0; i < N; i++) {
		w[i] = orig64[i] = tally_rng_u64(&r);
		v[i] = orig[i] = (uint32_t)w[i];
	}
	tally_mask_add_u32(v, N, 5, key, +1);
	tally_mask_add_u32(v, N, 0, key2, +1);
	assert_memory_not_equal(v, orig, N * sizeof(*v));
	tally_mask_add_u32(v, 50001, 5, key, -1);
	tally_mask_add_u32(v + 50001, N - 50001, 5 + 50001, key, -1);
	tally_mask_add_u32(v, N, 0, key2, -1);
	assert_memory_equal(v, orig, N * sizeof(*v));

	tally_mask_add_u64(w, N, 5, key, +1);
	assert_memory_not_equal(w, orig64, N * sizeof(*w));
	tally_mask_add_u64(w, 7, 5, key, -1);
	tally_mask_add_u64(w + 7, N - 7, 12, key, -1);
	assert_memory_equal(w, orig64, N * sizeof(*w));
	free(v);
	free(orig);
	free(w);
	free(orig64);
}

/* Chi-square of the top byte over 256 buckets; 255 degrees of freedom, mean 255, sd ~22.6. */
static double chi_square_top_byte(const uint32_t *v, size_t n)
{
	double counts[256] = {0}, expect = (double)n / 256, chi = 0;

	for (size_t i = 0; i < n; i++)
		counts[v[i] >> 24]++;
	for (int b = 0; b < 256; b++)
		chi += (counts[b] - expect) * (counts[b] - expect) / expect;
	return chi;
}

/* One worker's masked vector looks uniform, whether the update is all zeros or small values. */
/*
 * tally_mask_sum equals the definition: the self keystream, then tally_mask_add of every key with
 * its sign (0: left out), for both rings, key counts around the groups of four it works in, and
 * lengths around its 4 KiB slices and its vector widths.
 */
static void test_sum_matches_adds(void **state)
{
	static const size_t lens[] = {0, 1, 15, 16, 17, 1023, 1024, 1025, 5000};
	static const size_t counts[] = {0, 1, 3, 4, 5, 8, 9, 17};
	uint8_t keys[17][32], self[32];
	int8_t signs[17];

	(void)state;
	fill_key(self, 200);
	for (int k = 0; k < 17; k++) {
		fill_key(keys[k], (uint8_t)(10 + k));
		signs[k] = (int8_t)(k % 5 == 2 ? 0 : k % 2 ? -1 : 1);
	}
	for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
		size_t n = lens[l];
		uint32_t *a = malloc((n + 1) * 4), *b = malloc((n + 1) * 4);
		uint64_t *c = malloc((n + 1) * 8), *d = malloc((n + 1) * 8);

		assert_true(a && b && c && d);
		for (size_t ci = 0; ci < sizeof(counts) / sizeof(counts[0]); ci++) {
			size_t count = counts[ci];

			memset(a, 0x5a, (n + 1) * 4); /* overwritten, whatever was there */
			memset(c, 0x5a, (n + 1) * 8);
			memset(b, 0, (n + 1) * 4);
			memset(d, 0, (n + 1) * 8);
			tally_mask_sum_u32(a, n, self, (const uint8_t(*)[32])keys, signs, count);
			tally_mask_sum_u64(c, n, self, (const uint8_t(*)[32])keys, signs, count);
			tally_mask_add_u32(b, n, 0, self, 1);
			tally_mask_add_u64(d, n, 0, self, 1);
			for (size_t k = 0; k < count; k++) {
				if (signs[k] == 0)
					continue;
				tally_mask_add_u32(b, n, 0, keys[k], signs[k]);
				tally_mask_add_u64(d, n, 0, keys[k], signs[k]);
			}
			if (n)
				assert_memory_equal(a, b, n * 4);
			if (n)
				assert_memory_equal(c, d, n * 8);
			assert_true(a[n] == 0x5a5a5a5au && c[n] == 0x5a5a5a5a5a5a5a5aull); /* not past n */
		}
		free(a);
		free(b);
		free(c);
		free(d);
	}
}

static void test_masked_vector_is_uniform(void **state)
{
	enum { N = 1000000 };
	uint32_t *v = calloc(N, sizeof(*v));
	uint8_t key[32];
	double chi;

	fill_key(key, 42);
	chi = chi_square_top_byte(v, N);
	assert_true(chi > 1e6); /* the check can fail: all zeros is far from uniform */
	tally_mask_add_u32(v, N, 0, key, +1);
	chi = chi_square_top_byte(v, N);
	print_message("chi-square of masked zeros: %.1f (255 dof)\n", chi);
	assert_true(chi > 150 && chi < 400); /* about +-5 sd */

	for (size_t i = 0; i < N; i++)
		v[i] = (uint32_t)(i % 1000); /* a quantized update: small, structured values */
	tally_mask_add_u32(v, N, 123, key, -1);
	chi = chi_square_top_byte(v, N);
	assert_true(chi > 150 && chi < 400);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kdf_known_answer),
		cmocka_unit_test(test_sum_matches_adds),
		cmocka_unit_test(test_kdf_inputs_matter),
		cmocka_unit_test(test_agree_symmetric),
		cmocka_unit_test(test_agree_refuses_low_order),
		cmocka_unit_test(test_rfc8439_vector),
		cmocka_unit_test(test_matches_keystream),
		cmocka_unit_test(test_last_block),
		cmocka_unit_test(test_span_guard),
		cmocka_unit_test(test_pieces_equal_whole),
		cmocka_unit_test(test_add_then_subtract),
		cmocka_unit_test(test_masked_vector_is_uniform),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
