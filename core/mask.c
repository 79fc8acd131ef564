/*
 * Secure-aggregation masks: the key schedule (X25519, then keyed BLAKE2b) and the mask generator
 * (ChaCha20 IETF keystream added to a vector as little-endian words, wrapping).
 *
 * The generator is on the hot path of every masked round (each worker adds one mask per
 * neighbour plus its self mask; the coordinator regenerates the masks of dropped peers), so it
 * works in 16 KiB slices: libsodium fills a stack buffer with keystream, then a branch-free loop
 * that compilers vectorise adds (or subtracts) it to the vector while it is still in L1. Any span
 * of elements starts at the keystream block holding its first byte, so masking chunk by chunk
 * gives the same result as masking the whole vector.
 */
#include "tally/mask.h"
#include "tally/error.h"

#include <assert.h>
#include <endian.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLICE 16384 /* keystream bytes generated per call into libsodium; a multiple of 64 */
#define BLOCK 64    /* ChaCha20 block */

_Static_assert(SLICE % BLOCK == 0, "slices hold whole keystream blocks");
_Static_assert(TALLY_MASK_MAX_BYTES == (UINT64_C(1) << 32) * BLOCK, "32-bit IETF block counter");

static const char kdf_label[13] = "tally-mask-v1"; /* no terminator: 13 bytes on the wire */

void tally_mask_kdf(uint8_t key[TALLY_MASK_KEY], const uint8_t secret[32], tally_mask_purpose purpose,
		    const uint8_t session[32], uint64_t round, uint64_t length)
{
	uint8_t msg[sizeof(kdf_label) + 1 + 32 + 8 + 8];
	uint8_t *p = msg;

	assert(purpose == TALLY_MASK_PAIR || purpose == TALLY_MASK_SELF || purpose == TALLY_MASK_SHARE_BOX);
	memcpy(p, kdf_label, sizeof(kdf_label));
	p += sizeof(kdf_label);
	*p++ = (uint8_t)purpose;
	memcpy(p, session, 32);
	p += 32;
	for (int i = 0; i < 8; i++)
		*p++ = (uint8_t)(round >> (8 * i));
	for (int i = 0; i < 8; i++)
		*p++ = (uint8_t)(length >> (8 * i));
	assert(p == msg + sizeof(msg));
	crypto_generichash(key, TALLY_MASK_KEY, msg, sizeof(msg), secret, 32);
}

int tally_mask_agree(uint8_t key[TALLY_MASK_KEY], const uint8_t my_secret[32], const uint8_t peer_public[32],
		     tally_mask_purpose purpose, const uint8_t session[32], uint64_t round, uint64_t length)
{
	uint8_t shared[crypto_scalarmult_BYTES];
	int rc = 0;

	if (crypto_scalarmult(shared, my_secret, peer_public) != 0) {
		sodium_memzero(key, TALLY_MASK_KEY);
		rc = tally_err(TALLY_ECRYPTO, "mask: peer public key is a low-order point");
		goto out;
	}
	tally_mask_kdf(key, shared, purpose, session, round, length);
out:
	sodium_memzero(shared, sizeof(shared));
	return rc;
}

/*
 * Aborts unless elements [offset, offset + n) of size esize lie within the keystream that the
 * 32-bit block counter reaches (256 GiB). Past it libsodium would carry the counter into the
 * nonce, which is no longer the keystream the contract names. Always on, unlike assert().
 */
static void check_span(uint64_t offset, size_t n, size_t esize)
{
	uint64_t max = TALLY_MASK_MAX_BYTES / esize;

	if (offset > max || (uint64_t)n > max - offset) {
		fprintf(stderr, "tally_mask_add: elements [%llu, +%zu) exceed the %llu-element keystream\n",
			(unsigned long long)offset, n, (unsigned long long)max);
		abort();
	}
}

/* SLICE zero bytes: the plaintext whose ChaCha20 encryption is the keystream. */
static const uint8_t zeros[SLICE];

/* Fills buf[0, len) (len a multiple of 64, at most SLICE) with keystream starting at block `block`. */
static void keystream(uint8_t *buf, size_t len, uint64_t block, const uint8_t key[TALLY_MASK_KEY])
{
	static const uint8_t zero_nonce[crypto_stream_chacha20_ietf_NONCEBYTES];

	assert(len <= sizeof(zeros));
	crypto_stream_chacha20_ietf_xor_ic(buf, zeros, len, zero_nonce, (uint32_t)block, key);
}

/*
 * v[i] += m[i] or -= m[i], branch-free: (m ^ neg) - neg is m when neg = 0 and -m when neg = ~0.
 * The bulk goes through 16-byte vectors (GCC/clang vector extensions; SSE2 on x86-64, NEON on
 * arm64): GCC -O2 leaves the plain loops scalar. Keystream words are little-endian, so a
 * big-endian host takes the scalar loop, which swaps bytes.
 */
typedef uint32_t u32x4 __attribute__((vector_size(16)));
typedef uint64_t u64x2 __attribute__((vector_size(16)));

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define LE_VECTORS 1
#else
#define LE_VECTORS 0
#endif

static void add_u32(uint32_t *restrict v, const uint8_t *restrict ks, size_t n, uint32_t neg)
{
	size_t i = 0;

	for (; LE_VECTORS && i + 4 <= n; i += 4) {
		u32x4 a, m;

		memcpy(&a, v + i, sizeof(a));
		memcpy(&m, ks + 4 * i, sizeof(m));
		a += (m ^ neg) - neg;
		memcpy(v + i, &a, sizeof(a));
	}
	for (; i < n; i++) {
		uint32_t m;

		memcpy(&m, ks + 4 * i, 4);
		v[i] += (le32toh(m) ^ neg) - neg;
	}
}

static void add_u64(uint64_t *restrict v, const uint8_t *restrict ks, size_t n, uint64_t neg)
{
	size_t i = 0;

	for (; LE_VECTORS && i + 2 <= n; i += 2) {
		u64x2 a, m;

		memcpy(&a, v + i, sizeof(a));
		memcpy(&m, ks + 8 * i, sizeof(m));
		a += (m ^ neg) - neg;
		memcpy(v + i, &a, sizeof(a));
	}
	for (; i < n; i++) {
		uint64_t m;

		memcpy(&m, ks + 8 * i, 8);
		v[i] += (le64toh(m) ^ neg) - neg;
	}
}

/*
 * The shared slice loop: each slice starts at the block holding element `offset`, skips the
 * bytes before it (only the first slice can be unaligned, since esize divides 64), and covers
 * as many elements as fit. vp advances by esize bytes per element.
 */
static void mask_add(void *vp, size_t n, uint64_t offset, const uint8_t key[TALLY_MASK_KEY], int sign,
		     size_t esize)
{
	_Alignas(64) uint8_t buf[SLICE];
	uint8_t *v = vp;
	size_t used = 0;

	assert(sign == 1 || sign == -1);
	assert(key && (v || n == 0));
	check_span(offset, n, esize);
	while (n > 0) {
		uint64_t byte = offset * esize;
		size_t skip = (size_t)(byte % BLOCK);
		size_t take = (SLICE - skip) / esize;
		size_t len;

		if (take > n)
			take = n;
		len = (skip + take * esize + BLOCK - 1) / BLOCK * BLOCK;
		keystream(buf, len, byte / BLOCK, key);
		if (esize == 4)
			add_u32((uint32_t *)(void *)v, buf + skip, take, sign < 0 ? UINT32_MAX : 0);
		else
			add_u64((uint64_t *)(void *)v, buf + skip, take, sign < 0 ? UINT64_MAX : 0);
		used = len > used ? len : used;
		v += take * esize;
		offset += take;
		n -= take;
	}
	sodium_memzero(buf, used);
}

/*
 * The sum of one self mask and `count` signed pair masks, written over v[0, n): slice by slice, so
 * that each slice of v stays in L1 while every key's keystream is added to it (one pass over v
 * in memory however many keys). The self mask is written as keystream directly (XOR over
 * zeros); pair masks are generated four at a time into four buffers and added to the slice in
 * one pass, so the slice is read and written once per four keys. The add loops use the widest
 * vectors the CPU has (AVX-512 or AVX2 on x86-64, chosen at run time; 16-byte vectors elsewhere):
 * with ChaCha20 at about a byte per cycle, the adds are the only part left to trim.
 */
#define SUM_SLICE 4096 /* bytes of v per step: the slice and four keystream buffers share L1 */
#define GROUP 4

typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef uint64_t u64x8 __attribute__((vector_size(64)));
typedef uint32_t u32x8 __attribute__((vector_size(32)));
typedef uint64_t u64x4 __attribute__((vector_size(32)));

/* v[i] += sum_g (b_g[i] ^ neg_g) - neg_g over g < GROUP, for elements of type ET in vectors VT. */
#define DEFINE_ADD_GROUP(name, ET, VT, LOAD_LE, attr)                                               \
	attr static void name(ET *restrict v, const uint8_t *const restrict b[GROUP], const ET neg[GROUP], \
			      size_t n)                                                             \
	{                                                                                           \
		const size_t lanes = sizeof(VT) / sizeof(ET);                                       \
		size_t i = 0;                                                                       \
                                                                                                    \
		for (; LE_VECTORS && i + lanes <= n; i += lanes) {                                  \
			VT x, m, sum = {0};                                                         \
                                                                                                    \
			for (int g = 0; g < GROUP; g++) {                                           \
				memcpy(&m, b[g] + i * sizeof(ET), sizeof(m));                       \
				sum += (m ^ neg[g]) - neg[g];                                       \
			}                                                                           \
			memcpy(&x, v + i, sizeof(x));                                               \
			x += sum;                                                                   \
			memcpy(v + i, &x, sizeof(x));                                               \
		}                                                                                   \
		for (; i < n; i++)                                                                  \
			for (int g = 0; g < GROUP; g++) {                                           \
				ET m;                                                               \
                                                                                                    \
				memcpy(&m, b[g] + i * sizeof(ET), sizeof(m));                       \
				v[i] += (LOAD_LE(m) ^ neg[g]) - neg[g];                             \
			}                                                                           \
	}

DEFINE_ADD_GROUP(add_group_u32, uint32_t, u32x4, le32toh, )
DEFINE_ADD_GROUP(add_group_u64, uint64_t, u64x2, le64toh, )
#if defined(__x86_64__) && defined(__GNUC__)
#define X86_KERNELS 1
DEFINE_ADD_GROUP(add_group_u32_avx2, uint32_t, u32x8, le32toh, __attribute__((target("avx2"))))
DEFINE_ADD_GROUP(add_group_u64_avx2, uint64_t, u64x4, le64toh, __attribute__((target("avx2"))))
DEFINE_ADD_GROUP(add_group_u32_avx512, uint32_t, u32x16, le32toh, __attribute__((target("avx512f"))))
DEFINE_ADD_GROUP(add_group_u64_avx512, uint64_t, u64x8, le64toh, __attribute__((target("avx512f"))))
#else
#define X86_KERNELS 0
#endif

typedef void add_group_u32_fn(uint32_t *restrict, const uint8_t *const restrict[GROUP], const uint32_t[GROUP], size_t);
typedef void add_group_u64_fn(uint64_t *restrict, const uint8_t *const restrict[GROUP], const uint64_t[GROUP], size_t);

static void pick_add_group(add_group_u32_fn **f32, add_group_u64_fn **f64)
{
	*f32 = add_group_u32;
	*f64 = add_group_u64;
#if X86_KERNELS
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f")) {
		*f32 = add_group_u32_avx512;
		*f64 = add_group_u64_avx512;
	} else if (__builtin_cpu_supports("avx2")) {
		*f32 = add_group_u32_avx2;
		*f64 = add_group_u64_avx2;
	}
#endif
}

static void mask_sum(void *vp, size_t n, size_t esize, const uint8_t self_key[TALLY_MASK_KEY],
		     const uint8_t (*keys)[TALLY_MASK_KEY], const int8_t *signs, size_t count)
{
	static const uint8_t zero_nonce[crypto_stream_chacha20_ietf_NONCEBYTES];
	_Alignas(64) uint8_t buf[GROUP][SUM_SLICE];
	const uint8_t *const bp[GROUP] = {buf[0], buf[1], buf[2], buf[3]};
	add_group_u32_fn *add32;
	add_group_u64_fn *add64;
	uint8_t *v = vp;
	size_t done = 0; /* elements */

	_Static_assert(SUM_SLICE % BLOCK == 0 && SUM_SLICE <= SLICE, "slices hold whole keystream blocks");
	_Static_assert(GROUP == 4, "bp lists four buffers");
	assert(self_key && (v || n == 0) && (keys || count == 0));
	check_span(0, n, esize);
	pick_add_group(&add32, &add64);
	while (done < n) {
		size_t take = SUM_SLICE / esize, bytes, len, g = 0;
		uint64_t block = (uint64_t)done * esize / BLOCK;
		uint32_t neg32[GROUP];
		uint64_t neg64[GROUP];

		if (take > n - done)
			take = n - done;
		bytes = take * esize;
		len = (bytes + BLOCK - 1) / BLOCK * BLOCK;
		crypto_stream_chacha20_ietf_xor_ic(v, zeros, bytes, zero_nonce, (uint32_t)block, self_key);
		for (size_t key = 0; key <= count; key++) {
			bool last = key == count;

			assert(last || (signs[key] >= -1 && signs[key] <= 1));
			if (!last && signs[key] == 0)
				continue;
			if (!last) {
				keystream(buf[g], len, block, keys[key]);
				neg32[g] = signs[key] < 0 ? UINT32_MAX : 0;
				neg64[g] = signs[key] < 0 ? UINT64_MAX : 0;
				g++;
			} else if (g > 0) { /* pad the last group with zero buffers */
				for (; g < GROUP; g++) {
					memset(buf[g], 0, len);
					neg32[g] = 0;
					neg64[g] = 0;
				}
			}
			if (g < GROUP)
				continue;
			if (esize == 4)
				add32((uint32_t *)(void *)v, bp, neg32, take);
			else
				add64((uint64_t *)(void *)v, bp, neg64, take);
			g = 0;
		}
		v += bytes;
		done += take;
	}
	sodium_memzero(buf, sizeof(buf));
}

void tally_mask_sum_u32(uint32_t *v, size_t n, const uint8_t self_key[TALLY_MASK_KEY],
			const uint8_t (*keys)[TALLY_MASK_KEY], const int8_t *signs, size_t count)
{
	mask_sum(v, n, sizeof(*v), self_key, keys, signs, count);
}

void tally_mask_sum_u64(uint64_t *v, size_t n, const uint8_t self_key[TALLY_MASK_KEY],
			const uint8_t (*keys)[TALLY_MASK_KEY], const int8_t *signs, size_t count)
{
	mask_sum(v, n, sizeof(*v), self_key, keys, signs, count);
}

void tally_mask_add_u32(uint32_t *v, size_t n, uint64_t offset, const uint8_t key[TALLY_MASK_KEY], int sign)
{
	mask_add(v, n, offset, key, sign, sizeof(*v));
}

void tally_mask_add_u64(uint64_t *v, size_t n, uint64_t offset, const uint8_t key[TALLY_MASK_KEY], int sign)
{
	mask_add(v, n, offset, key, sign, sizeof(*v));
}
