/*
 * Unit tests for the chunked tensor digests: known answers for one chunk and for a whole tensor
 * (computed once with Python's hashlib.blake2b and hard-coded, and recomputed here with libsodium),
 * chunk counting at its edges, and sensitivity to a single changed float.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "tally/digest.h"
#include "tally/error.h"

/* python3: hashlib.blake2b(struct.pack('<4f',1,2,3,4), digest_size=32).hexdigest() */
#define KAT_CHUNK_1234 "7d628548c7b471afea136d1707587d15b0d7fd407595f7c40523ede198ddb48a"

/*
 * Ten floats 0.5, 1.0, ..., 5.0 in chunks of 3 (3+3+3+1):
 * chunk digests = blake2b(struct.pack('<%df' % len(c), *c)) and
 * tensor = blake2b(b"tally-tensor-v1" + struct.pack('<Q', 10) + b"".join(chunks)).
 */
static const char *const kat_chunks10[4] = {
	"1f4ddfe254038eccbbcfaa7c0be1ff7662c17750bbdf0049b7cc3580ed5d2235",
	"b42680702b2c0865521be6e1666cb56f7da595231182a618a02896bf6d7b18d1",
	"271672e938c6cdc2f0e86d99430844e6679a6fef48973f1c38c8c400c9176a0d",
	"9ccf0fd0afa0ce5cef0fc39fe14142420aa064a0d40654d5c229aa2e4f097012",
};
#define KAT_TENSOR10 "1566199b362eb133b3aa30501d5bed5736008bce4b95e9598f049587e43c2809"
/* blake2b(b"tally-tensor-v1" + struct.pack('<Q', 0)): the digest of an empty tensor. */
#define KAT_EMPTY "a13d6c96e24fd5427871ac97c50ab0b63ee9f830ef2500c3940f5dda92684540"

static void assert_hex(const uint8_t *d, const char *want)
{
	char hex[2 * TALLY_DIGEST_BYTES + 1];

	tally_digest_hex(d, TALLY_DIGEST_BYTES, hex);
	assert_string_equal(hex, want);
}

static void fill_ten(float *x)
{
	for (int i = 0; i < 10; i++)
		x[i] = 0.5f * (float)(i + 1);
}

static void test_chunk_known_answer(void **state)
{
	const float x[4] = {1, 2, 3, 4};
	const uint8_t le[16] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40, 0, 0, 0x80, 0x40};
	tally_digest got, want;

	tally_digest_chunk(x, 4, got);
	crypto_generichash(want, sizeof(want), le, sizeof(le), NULL, 0);
	assert_memory_equal(got, want, TALLY_DIGEST_BYTES);
	assert_hex(got, KAT_CHUNK_1234);
}

static void test_tensor_equals_list_of_chunks(void **state)
{
	float x[10];
	tally_digest chunks[4], direct[4], list, tensor, tensor2;

	fill_ten(x);
	memset(chunks, 0xaa, sizeof(chunks));
	assert_int_equal(tally_digest_tensor(x, 10, 3, tensor, chunks), 0);
	for (int c = 0; c < 4; c++) {
		size_t len = c < 3 ? 3 : 1;

		tally_digest_chunk(x + 3 * c, len, direct[c]);
		assert_memory_equal(chunks[c], direct[c], TALLY_DIGEST_BYTES);
		assert_hex(chunks[c], kat_chunks10[c]);
	}
	tally_digest_list(10, direct, 4, list);
	assert_memory_equal(tensor, list, TALLY_DIGEST_BYTES);
	assert_hex(tensor, KAT_TENSOR10);
	/* Without a chunk list the tensor digest is the same. */
	assert_int_equal(tally_digest_tensor(x, 10, 3, tensor2, NULL), 0);
	assert_memory_equal(tensor, tensor2, TALLY_DIGEST_BYTES);
}

/* The list digest recomputed from its definition with libsodium. */
static void test_list_definition(void **state)
{
	float x[10];
	tally_digest chunks[4], got, want;
	uint8_t msg[15 + 8 + 4 * TALLY_DIGEST_BYTES];

	fill_ten(x);
	assert_int_equal(tally_digest_tensor(x, 10, 3, got, chunks), 0);
	memcpy(msg, "tally-tensor-v1", 15);
	memcpy(msg + 15, "\x0a\0\0\0\0\0\0\0", 8);
	memcpy(msg + 23, chunks, sizeof(chunks));
	crypto_generichash(want, sizeof(want), msg, sizeof(msg), NULL, 0);
	assert_memory_equal(got, want, TALLY_DIGEST_BYTES);

	/* The length is part of the digest: same chunks, another n_floats, another digest. */
	tally_digest_list(11, chunks, 4, want);
	assert_memory_not_equal(got, want, TALLY_DIGEST_BYTES);
	/* and so is the chunk order. */
	memcpy(msg, chunks[0], TALLY_DIGEST_BYTES);
	memcpy(chunks[0], chunks[1], TALLY_DIGEST_BYTES);
	memcpy(chunks[1], msg, TALLY_DIGEST_BYTES);
	tally_digest_list(10, chunks, 4, want);
	assert_memory_not_equal(got, want, TALLY_DIGEST_BYTES);
}

static void test_chunk_count_edges(void **state)
{
	assert_int_equal(tally_chunk_count(0, 3), 0);
	assert_int_equal(tally_chunk_count(1, 3), 1);
	assert_int_equal(tally_chunk_count(3, 3), 1);
	assert_int_equal(tally_chunk_count(4, 3), 2);
	assert_int_equal(tally_chunk_count(10, 3), 4);
	assert_int_equal(tally_chunk_count(10, 1), 10);
	assert_int_equal(tally_chunk_count(10, 10), 1);
	assert_int_equal(tally_chunk_count(10, 11), 1);
	assert_int_equal(tally_chunk_count(TALLY_CHUNK_FLOATS, TALLY_CHUNK_FLOATS), 1);
	assert_int_equal(tally_chunk_count(TALLY_CHUNK_FLOATS + 1, TALLY_CHUNK_FLOATS), 2);
	assert_int_equal(tally_chunk_count(SIZE_MAX, 1), SIZE_MAX);
}

/* ceil(n / c) near the top of size_t must not wrap around to a small count. */
static void test_chunk_count_does_not_wrap(void **state)
{
	assert_int_equal(tally_chunk_count(SIZE_MAX, 2), SIZE_MAX / 2 + 1);
	assert_int_equal(tally_chunk_count(SIZE_MAX - 1, TALLY_CHUNK_FLOATS),
			 (SIZE_MAX - 1) / TALLY_CHUNK_FLOATS + 1);
}

/* A tensor that fits one chunk, one exactly filled, and an empty one. */
static void test_tensor_chunking_edges(void **state)
{
	float x[10];
	tally_digest one, chunks[2], list, tensor;

	fill_ten(x);
	/* chunk_floats >= n: one chunk of everything. */
	assert_int_equal(tally_digest_tensor(x, 10, 1000, tensor, chunks), 0);
	tally_digest_chunk(x, 10, one);
	assert_memory_equal(chunks[0], one, TALLY_DIGEST_BYTES);
	tally_digest_list(10, &one, 1, list);
	assert_memory_equal(tensor, list, TALLY_DIGEST_BYTES);
	/* exactly two full chunks */
	assert_int_equal(tally_digest_tensor(x, 10, 5, tensor, chunks), 0);
	tally_digest_chunk(x + 5, 5, one);
	assert_memory_equal(chunks[1], one, TALLY_DIGEST_BYTES);
	tally_digest_list(10, chunks, 2, list);
	assert_memory_equal(tensor, list, TALLY_DIGEST_BYTES);
	/* another chunking of the same floats is another digest */
	assert_int_equal(tally_digest_tensor(x, 10, 3, one, NULL), 0);
	assert_memory_not_equal(tensor, one, TALLY_DIGEST_BYTES);
	/* empty tensor: no chunks, the digest of the header alone */
	assert_int_equal(tally_digest_tensor(x, 0, 3, tensor, NULL), 0);
	assert_hex(tensor, KAT_EMPTY);
}

static void test_one_flipped_float_changes_digests(void **state)
{
	float x[10];
	tally_digest c0[4], c1[4], t0, t1;

	fill_ten(x);
	assert_int_equal(tally_digest_tensor(x, 10, 3, t0, c0), 0);
	for (int i = 0; i < 10; i++) {
		uint32_t bits;

		fill_ten(x);
		memcpy(&bits, &x[i], 4);
		bits ^= 1; /* the least significant mantissa bit */
		memcpy(&x[i], &bits, 4);
		assert_int_equal(tally_digest_tensor(x, 10, 3, t1, c1), 0);
		assert_memory_not_equal(t0, t1, TALLY_DIGEST_BYTES);
		for (int c = 0; c < 4; c++) {
			if (c == i / 3)
				assert_memory_not_equal(c0[c], c1[c], TALLY_DIGEST_BYTES);
			else
				assert_memory_equal(c0[c], c1[c], TALLY_DIGEST_BYTES);
		}
	}
	/* -0.0 and +0.0 compare equal as floats but are different bytes */
	x[0] = 0.0f;
	tally_digest_chunk(x, 1, t0);
	x[0] = -0.0f;
	tally_digest_chunk(x, 1, t1);
	assert_memory_not_equal(t0, t1, TALLY_DIGEST_BYTES);
}

static void test_hex(void **state)
{
	const uint8_t d[4] = {0x00, 0x0f, 0xa5, 0xff};
	char out[9];

	memset(out, 'x', sizeof(out));
	tally_digest_hex(d, 4, out);
	assert_string_equal(out, "000fa5ff");
	tally_digest_hex(d, 1, out);
	assert_string_equal(out, "00");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunk_known_answer),
		cmocka_unit_test(test_tensor_equals_list_of_chunks),
		cmocka_unit_test(test_list_definition),
		cmocka_unit_test(test_chunk_count_edges),
		cmocka_unit_test(test_chunk_count_does_not_wrap),
		cmocka_unit_test(test_tensor_chunking_edges),
		cmocka_unit_test(test_one_flipped_float_changes_digests),
		cmocka_unit_test(test_hex),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
