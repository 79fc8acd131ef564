/*
 * Fixed-point encoding of float updates for secure aggregation (tally/quant.h).
 *
 * A value is clipped to [-clip, clip], mapped affinely onto [0, qrange] and rounded
 * stochastically, so that E[q] equals the unrounded level (to within 2^-(g+1), see quant.h): the
 * aggregate is an unbiased estimate of the mean, whatever qrange. The update's integer weight
 * multiplies q inside the ring, and the weight itself is the last element, so a plain wrapping sum
 * of encoded vectors carries both sum w_k q_k and W = sum w_k, and the weighted mean needs no
 * division by anyone but the party that decodes. Exactness rests on the sum never wrapping:
 * tally_quant_ring_bits picks a ring in which it cannot.
 *
 * The encoder runs on every masked round's hot path, where it is budgeted at a fraction of one
 * ChaCha20 keystream expansion of the same vector, so it is built for vector units. Rounding bits
 * come from eight xoshiro256** lanes stepped side by side (seeded from the caller's rng), and a
 * level comes out of one double addition: adding M + u / 2^g, M a power of two >= qrange, leaves
 * floor(y + u / 2^g) in the bits of the sum, with no float-to-integer conversion (which x86 lacks
 * for 64 bits below AVX-512, and which is undefined in C out of range). The kernels use GCC/clang
 * vector extensions and are picked at run time (AVX-512, AVX2, else portable scalar code); every
 * one computes the words of the algorithm quant.h spells out, bit for bit.
 */
#include "tally/quant.h"

#include "tally/error.h"

#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define QRANGE_MAX (UINT64_C(1) << 40)
#define LANES 8           /* xoshiro256** generators stepped together */
#define BLOCK (2 * LANES) /* elements per step of the lanes: one 64-bit output rounds two */
#define CHUNK 2048        /* encode_add checks, then adds, this many elements at a time (in L1) */

typedef unsigned __int128 u128;
typedef uint32_t v4su __attribute__((vector_size(16)));

enum op { OP_STORE, OP_ADD, OP_SUB };

/* One call's constants (quant.h names them): everything the kernels need. */
typedef struct plan {
	double clip, scale, qrange; /* clip, s = 0.5 * (qrange / clip), qrange */
	uint64_t mbits;             /* the bits of M = 2^(52 - g) >= qrange */
	uint64_t fmask;             /* 2^g - 1 */
	uint64_t bias;              /* mbits >> g: the level of z = M, subtracted from every level */
	uint64_t w;
	unsigned g;                 /* fraction bits of the rounding: min(32, 52 - b), 2^b >= qrange */
	unsigned ring;              /* 32 or 64 */
} plan;

/* The lanes' xoshiro256** states, word-major: one vector load takes one word of every lane. */
typedef struct lanes {
	uint64_t s[4][LANES];
} lanes;

/*
 * A hint to fetch the line ahead bytes past p. Prefetching never faults, so running past the end
 * of an array is harmless; the address is computed as an integer because pointer arithmetic past
 * an array is undefined. At a million elements (megabytes, out of L2) it takes about a sixth off
 * the encoder's time: the hardware prefetchers alone do not keep the line to be stored ready.
 */
#define PREFETCH(p, ahead) __builtin_prefetch((const void *)((uintptr_t)(p) + (ahead)))
#define AHEAD 4096

/* Full blocks of BLOCK elements in a vector unit, and the non-finite scan (or NULL: scalar). */
typedef struct kernels {
	void (*blocks)(const plan *p, lanes *st, const float *x, size_t nblocks, void *out, enum op op);
	bool (*any_nonfinite)(const float *x, size_t n);
} kernels;

/*
 * Weights multiply q exactly (w * q, not (w / max_weight) * x before rounding), so the 32-bit ring
 * holds n updates only when n * max_weight * (qrange + 1) < 2^32. Compare Flower's SecAgg+
 * defaults (qrange 2^22, modulus 2^32, max weight 1000, "exact for at most 1024 clients"): Flower
 * scales each update by w / max_weight in floating point before quantizing, so its per-client
 * level stays within [0, qrange] and only n * qrange must fit; that buys 32-bit rings at the
 * price of log2(max_weight / w) bits of precision for light clients. Even then 1024 * 2^22 = 2^32
 * wraps when every client sends +clip (Flower's levels include qrange itself), so 1023 is the
 * exact bound. tally's rule is stricter: with w = 1 it also gives 1023 clients in 32 bits (1024
 * needs 64), and with max weight 1000 only one client fits in 32 bits, so real cohorts go to the
 * 64-bit ring, where 2^64 / (1000 * (2^22 + 1)) is about 4.4e9 clients.
 */
uint32_t tally_quant_ring_bits(uint64_t n, uint64_t max_weight, uint64_t qrange)
{
	u128 nw = (u128)n * max_weight; /* two 64-bit factors: cannot overflow 128 bits */
	u128 levels = (u128)qrange + 1;
	u128 total;

	if (__builtin_mul_overflow(nw, levels, &total))
		return 0;
	if (total < ((u128)1 << 32))
		return 32;
	if (total < ((u128)1 << 64))
		return 64;
	return 0;
}

static int check_params(const tally_quant *q)
{
	if (q == NULL)
		return tally_err(TALLY_EINVAL, "quant: no parameters");
	if (!isfinite(q->clip) || q->clip <= 0)
		return tally_err(TALLY_EINVAL, "quant: clip must be finite and > 0, got %g", q->clip);
	if (q->qrange == 0 || q->qrange > QRANGE_MAX)
		return tally_err(TALLY_EINVAL, "quant: qrange must be 1..2^40, got %llu",
				 (unsigned long long)q->qrange);
	if (q->ring_bits != 32 && q->ring_bits != 64)
		return tally_err(TALLY_EINVAL, "quant: ring_bits must be 32 or 64, got %u", q->ring_bits);
	return 0;
}

/* M, g and the scale for qrange; check_params has passed. */
static void plan_init(plan *p, const tally_quant *q, uint64_t w)
{
	unsigned b = 0;
	double m;

	while ((UINT64_C(1) << b) < q->qrange)
		b++;
	p->g = 52 - b < 32 ? 52 - b : 32;
	m = ldexp(1.0, 52 - (int)p->g); /* doubles in [M, 2M) are the multiples of 2^-g */
	memcpy(&p->mbits, &m, sizeof p->mbits);
	p->fmask = (UINT64_C(1) << p->g) - 1;
	p->bias = p->mbits >> p->g;
	p->clip = q->clip;
	p->scale = 0.5 * ((double)q->qrange / q->clip);
	p->qrange = (double)q->qrange;
	p->w = w;
	p->ring = q->ring_bits;
}

/* Lane i is tally_rng_seed(lane, d_i, i) for the caller's next eight draws d_0..d_7. */
static void lanes_seed(lanes *st, tally_rng *rng)
{
	for (int i = 0; i < LANES; i++) {
		tally_rng t;

		tally_rng_seed(&t, tally_rng_u64(rng), (uint64_t)i);
		for (int k = 0; k < 4; k++)
			st->s[k][i] = t.s[k];
	}
}

/* ---- portable scalar code: the algorithm of quant.h one element at a time ---- */

/* One step of every lane: r[i] = tally_rng_u64(lane i). */
static void lanes_next(lanes *st, uint64_t r[LANES])
{
	for (int i = 0; i < LANES; i++) {
		tally_rng t = { { st->s[0][i], st->s[1][i], st->s[2][i], st->s[3][i] } };

		r[i] = tally_rng_u64(&t);
		for (int k = 0; k < 4; k++)
			st->s[k][i] = t.s[k];
	}
}

/*
 * The level of x with g-bit uniform u. y is never NaN (x is finite, s > 0), so the clamps could go
 * in either order and maxpd and minpd (which return the second operand unless the comparison
 * holds) can do them in the kernels. Here the lower clamp clears a negative y by its sign bit:
 * GCC compiles y > 0 ? y : 0 to a branch, which mispredicts on clipped values; -0 for 0 changes
 * nothing, as -0 + r = r. No product feeds an addition directly, so contraction to fused
 * multiply-add cannot change a bit. (Bit-exact where doubles are evaluated as doubles,
 * FLT_EVAL_METHOD 0: every 64-bit target; x87 code may differ in the last place of y.)
 */
static uint64_t level_of(const plan *p, float x, uint64_t u)
{
	uint64_t rbits = p->mbits | u, ybits, zbits;
	double y = ((double)x + p->clip) * p->scale, r, z;

	y = y < p->qrange ? y : p->qrange;
	memcpy(&ybits, &y, sizeof ybits);
	ybits &= (ybits >> 63) - 1; /* y > 0 ? y : 0 */
	memcpy(&y, &ybits, sizeof y);
	memcpy(&r, &rbits, sizeof r); /* M + u / 2^g, exactly */
	z = y + r;
	memcpy(&zbits, &z, sizeof zbits);
	return (zbits >> p->g) - p->bias;
}

/* Word i of a u32 or u64 vector. */
static void *word_at(const plan *p, void *out, size_t i)
{
	return (char *)out + i * (p->ring / 8);
}

static void put_word(const plan *p, void *out, size_t i, uint64_t v, enum op op)
{
	if (p->ring == 32) {
		uint32_t *o = out;

		o[i] = op == OP_STORE ? (uint32_t)v : op == OP_ADD ? o[i] + (uint32_t)v : o[i] - (uint32_t)v;
	} else {
		uint64_t *o = out;

		o[i] = op == OP_STORE ? v : op == OP_ADD ? o[i] + v : o[i] - v;
	}
}

/*
 * Encodes x[0..n) into out[0..n) with op, one block of 16 at a time (the last may be partial), the
 * lanes stepped once per block.
 */
static void encode_scalar(const plan *p, lanes *st, const float *x, size_t n, void *out, enum op op)
{
	const plan c = *p; /* copies: stores through out may alias p and st */
	lanes ls = *st;

	for (size_t at = 0; at < n; at += BLOCK) {
		size_t m = n - at < BLOCK ? n - at : BLOCK;
		uint64_t r[LANES], u[BLOCK], level[BLOCK];

		lanes_next(&ls, r);
		for (int j = 0; j < LANES; j++) {
			u[j] = r[j] >> (64 - c.g);
			u[j + LANES] = r[j] & c.fmask;
		}
		for (size_t j = 0; j < m; j++)
			level[j] = level_of(&c, x[at + j], u[j]);
		for (size_t j = 0; j < m; j++)
			put_word(&c, out, at + j, level[j] * c.w, op);
	}
	*st = ls;
}

/*
 * Defines bool name(const float *x, size_t n): whether x[0..n) holds a NaN or an infinity. Bit 31
 * of (bits & 0x7fffffff) + 2^23 is set exactly for an all-ones exponent, so an OR over vectors of
 * type V answers with no comparison. V is the target's native width: GCC keeps a wider vector
 * accumulator in memory.
 */
#define DEFINE_ANY_NONFINITE(name, attributes, V)                      \
	attributes static bool name(const float *x, size_t n)          \
	{                                                              \
		const size_t step = sizeof(V) / sizeof(float);         \
		V acc = { 0 };                                         \
		uint32_t all = 0, b;                                   \
		size_t i = 0;                                          \
                                                                       \
		for (; i + step <= n; i += step) {                     \
			V v;                                           \
                                                                       \
			PREFETCH(x + i, AHEAD);                        \
			memcpy(&v, x + i, sizeof v);                   \
			acc |= (v & 0x7fffffffu) + 0x00800000u;        \
		}                                                      \
		for (size_t k = 0; k < step; k++)                      \
			all |= acc[k];                                 \
		for (; i < n; i++) {                                   \
			memcpy(&b, x + i, sizeof b);                   \
			all |= (b & 0x7fffffffu) + 0x00800000u;        \
		}                                                      \
		return all >> 31;                                      \
	}

DEFINE_ANY_NONFINITE(any_nonfinite_scalar, , v4su)

static const kernels scalar_kernels = { NULL, any_nonfinite_scalar };

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
/*
 * ---- x86-64 kernels: the same words in vector registers ----
 *
 * Written with vector extensions, plus maxpd/minpd for the clamps (the generic compare and select
 * costs three instructions where these take one). x86 is little-endian: the low half of a 64-bit
 * lane is the even 32-bit element, which the ring-32 packing relies on. AVX-512 holds a block's
 * eight lanes in one register per state word and its two halves in two; AVX2 splits every vector
 * in two (lanes 0-3 and 4-7).
 */
#include <immintrin.h>

#define HAVE_X86_KERNELS 1
#define AVX512 __attribute__((target("avx512f,avx512dq")))
#define AVX2 __attribute__((target("avx2")))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

typedef double v8df __attribute__((vector_size(64)));
typedef uint32_t v16su __attribute__((vector_size(64)));
typedef uint64_t v8du __attribute__((vector_size(64)));
typedef double v4df __attribute__((vector_size(32)));
typedef float v8sf __attribute__((vector_size(32)));
typedef uint64_t v4du __attribute__((vector_size(32)));
typedef uint32_t v8su __attribute__((vector_size(32)));

#define ROTL(x, k) (((x) << (k)) | ((x) >> (64 - (k))))

/* tally_rng_u64 on every lane of the state vectors s0..s3 at once; r gets the outputs. */
#define XOSHIRO_NEXT(r, s0, s1, s2, s3)         \
	do {                                    \
		__typeof__(s1) t_ = (s1) << 17; \
		(r) = ROTL((s1) * 5, 7) * 9;    \
		(s2) ^= (s0);                   \
		(s3) ^= (s1);                   \
		(s1) ^= (s2);                   \
		(s0) ^= (s3);                   \
		(s2) ^= t_;                     \
		(s3) = ROTL(s3, 45);            \
	} while (0)

/* Stores vector v at o (op store), or adds it to or subtracts it from what is there. */
#define PUT(o, v, op)                                    \
	do {                                             \
		__typeof__(v) v_ = (v), o_ = v_;         \
		if ((op) != OP_STORE) {                  \
			memcpy(&o_, (o), sizeof o_);     \
			if ((op) == OP_ADD)              \
				o_ += v_;                \
			else                             \
				o_ -= v_;                \
		}                                        \
		memcpy((o), &o_, sizeof o_);             \
	} while (0)

/* One instance of a kernel per ring and op, so that neither is tested inside the loop. */
#define INSTANCES(kernel, p, st, x, nb, out, op)                     \
	do {                                                         \
		if ((p)->ring == 32 && (op) == OP_STORE)             \
			kernel(p, st, x, nb, out, 32, OP_STORE);     \
		else if ((p)->ring == 32 && (op) == OP_ADD)          \
			kernel(p, st, x, nb, out, 32, OP_ADD);       \
		else if ((p)->ring == 32)                            \
			kernel(p, st, x, nb, out, 32, OP_SUB);       \
		else if ((op) == OP_STORE)                           \
			kernel(p, st, x, nb, out, 64, OP_STORE);     \
		else if ((op) == OP_ADD)                             \
			kernel(p, st, x, nb, out, 64, OP_ADD);       \
		else                                                 \
			kernel(p, st, x, nb, out, 64, OP_SUB);       \
	} while (0)

/* The levels of eight elements y with uniforms u; c holds clip, scale, qrange, mbits and g. */
#define AVX512_LEVEL(c, y, u)                                                                                  \
	((v8du)(_mm512_max_pd(_mm512_min_pd(((y) + (c).clip) * (c).scale, (c).qr), (v8df){ 0 }) +              \
		(v8df)((u) | (c).mbits)) >>                                                                     \
	 (c).g)

ALWAYS_INLINE AVX512 void avx512_encode(const plan *p, lanes *st, const float *x, size_t nb, void *out,
					unsigned ring, enum op op)
{
	/* Locals, not p->: stores through out may alias the plan. */
	const struct {
		v8df clip, scale, qr;
		v8du mbits, fmask, bias, w;
		v16su bias32, w32;
		unsigned g, hi;
	} c = { (v8df){ 0 } + p->clip, (v8df){ 0 } + p->scale, (v8df){ 0 } + p->qrange, (v8du){ 0 } + p->mbits,
		(v8du){ 0 } + p->fmask, (v8du){ 0 } + p->bias, (v8du){ 0 } + p->w, (v16su){ 0 } + (uint32_t)p->bias,
		(v16su){ 0 } + (uint32_t)p->w, p->g, 64 - p->g };
	v8du s0, s1, s2, s3, r, la, lb;

	memcpy(&s0, st->s[0], sizeof s0);
	memcpy(&s1, st->s[1], sizeof s1);
	memcpy(&s2, st->s[2], sizeof s2);
	memcpy(&s3, st->s[3], sizeof s3);
	for (size_t b = 0; b < nb; b++, x += BLOCK) {
		PREFETCH(x, AHEAD);
		PREFETCH((char *)out + b * BLOCK * (ring / 8), AHEAD * (ring / 32)); /* the line to store to */
		XOSHIRO_NEXT(r, s0, s1, s2, s3);
		la = AVX512_LEVEL(c, ((v8df){ x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7] }), r >> c.hi);
		lb = AVX512_LEVEL(c, ((v8df){ x[8], x[9], x[10], x[11], x[12], x[13], x[14], x[15] }), r & c.fmask);
		if (ring == 32) {
			v16su l = __builtin_shufflevector((v16su)la, (v16su)lb, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18,
							  20, 22, 24, 26, 28, 30);

			PUT((uint32_t *)out + b * BLOCK, (l - c.bias32) * c.w32, op);
		} else {
			PUT((uint64_t *)out + b * BLOCK, (la - c.bias) * c.w, op);
			PUT((uint64_t *)out + b * BLOCK + LANES, (lb - c.bias) * c.w, op);
		}
	}
	memcpy(st->s[0], &s0, sizeof s0);
	memcpy(st->s[1], &s1, sizeof s1);
	memcpy(st->s[2], &s2, sizeof s2);
	memcpy(st->s[3], &s3, sizeof s3);
}

AVX512 static void avx512_blocks(const plan *p, lanes *st, const float *x, size_t nb, void *out, enum op op)
{
	INSTANCES(avx512_encode, p, st, x, nb, out, op);
}

DEFINE_ANY_NONFINITE(any_nonfinite_avx512, AVX512, v16su)

/* The levels of four elements from x with uniforms u; c holds clip, scale, qrange, mbits and g. */
#define AVX2_LEVEL(c, x, u)                                                                                   \
	((v4du)(_mm256_max_pd(_mm256_min_pd(((v4df){ (x)[0], (x)[1], (x)[2], (x)[3] } + (c).clip) * (c).scale, \
					    (c).qr),                                                            \
			      (v4df){ 0 }) +                                                                    \
		(v4df)((u) | (c).mbits)) >>                                                                     \
	 (c).g)

/* The low halves of a's and then b's 64-bit lanes, as eight 32-bit words. */
#define AVX2_PACK(a, b)                                                                                 \
	((v8su)__builtin_shufflevector(                                                                 \
		(v4df)__builtin_shufflevector((v8sf)(a), (v8sf)(b), 0, 2, 8, 10, 4, 6, 12, 14), (v4df){ 0 }, \
		0, 2, 1, 3))

ALWAYS_INLINE AVX2 void avx2_encode(const plan *p, lanes *st, const float *x, size_t nb, void *out, unsigned ring,
				    enum op op)
{
	const struct {
		v4df clip, scale, qr;
		v4du mbits, fmask, bias, w;
		v8su bias32, w32;
		unsigned g, hi;
	} c = { (v4df){ 0 } + p->clip, (v4df){ 0 } + p->scale, (v4df){ 0 } + p->qrange, (v4du){ 0 } + p->mbits,
		(v4du){ 0 } + p->fmask, (v4du){ 0 } + p->bias, (v4du){ 0 } + p->w, (v8su){ 0 } + (uint32_t)p->bias,
		(v8su){ 0 } + (uint32_t)p->w, p->g, 64 - p->g };
	v4du a0, a1, a2, a3, b0, b1, b2, b3, ra, rb, l0, l1, l2, l3; /* a: lanes 0-3, b: lanes 4-7 */

	memcpy(&a0, st->s[0], sizeof a0);
	memcpy(&a1, st->s[1], sizeof a1);
	memcpy(&a2, st->s[2], sizeof a2);
	memcpy(&a3, st->s[3], sizeof a3);
	memcpy(&b0, st->s[0] + 4, sizeof b0);
	memcpy(&b1, st->s[1] + 4, sizeof b1);
	memcpy(&b2, st->s[2] + 4, sizeof b2);
	memcpy(&b3, st->s[3] + 4, sizeof b3);
	for (size_t i = 0; i < nb; i++, x += BLOCK) {
		PREFETCH(x, AHEAD);
		PREFETCH((char *)out + i * BLOCK * (ring / 8), AHEAD * (ring / 32));
		XOSHIRO_NEXT(ra, a0, a1, a2, a3);
		XOSHIRO_NEXT(rb, b0, b1, b2, b3);
		l0 = AVX2_LEVEL(c, x, ra >> c.hi);
		l1 = AVX2_LEVEL(c, x + 4, rb >> c.hi);
		l2 = AVX2_LEVEL(c, x + 8, ra & c.fmask);
		l3 = AVX2_LEVEL(c, x + 12, rb & c.fmask);
		if (ring == 32) {
			PUT((uint32_t *)out + i * BLOCK, (AVX2_PACK(l0, l1) - c.bias32) * c.w32, op);
			PUT((uint32_t *)out + i * BLOCK + 8, (AVX2_PACK(l2, l3) - c.bias32) * c.w32, op);
		} else {
			PUT((uint64_t *)out + i * BLOCK, (l0 - c.bias) * c.w, op);
			PUT((uint64_t *)out + i * BLOCK + 4, (l1 - c.bias) * c.w, op);
			PUT((uint64_t *)out + i * BLOCK + 8, (l2 - c.bias) * c.w, op);
			PUT((uint64_t *)out + i * BLOCK + 12, (l3 - c.bias) * c.w, op);
		}
	}
	memcpy(st->s[0], &a0, sizeof a0);
	memcpy(st->s[1], &a1, sizeof a1);
	memcpy(st->s[2], &a2, sizeof a2);
	memcpy(st->s[3], &a3, sizeof a3);
	memcpy(st->s[0] + 4, &b0, sizeof b0);
	memcpy(st->s[1] + 4, &b1, sizeof b1);
	memcpy(st->s[2] + 4, &b2, sizeof b2);
	memcpy(st->s[3] + 4, &b3, sizeof b3);
}

AVX2 static void avx2_blocks(const plan *p, lanes *st, const float *x, size_t nb, void *out, enum op op)
{
	INSTANCES(avx2_encode, p, st, x, nb, out, op);
}

DEFINE_ANY_NONFINITE(any_nonfinite_avx2, AVX2, v8su)

static const kernels avx512_kernels = { avx512_blocks, any_nonfinite_avx512 };
static const kernels avx2_kernels = { avx2_blocks, any_nonfinite_avx2 };
#endif

/*
 * The fastest kernels this CPU has. TALLY_QUANT_KERNEL=avx2 or =scalar in the environment caps the
 * choice, so that tests can check every kernel against the algorithm and benchmarks can time each.
 */
static const kernels *pick_kernels(void)
{
	const char *cap = getenv("TALLY_QUANT_KERNEL");
	bool scalar = cap != NULL && strcmp(cap, "scalar") == 0;
	bool no512 = scalar || (cap != NULL && strcmp(cap, "avx2") == 0);

#ifdef HAVE_X86_KERNELS
	if (!no512 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))
		return &avx512_kernels;
	if (!scalar && __builtin_cpu_supports("avx2"))
		return &avx2_kernels;
#endif
	(void)scalar;
	(void)no512;
	return &scalar_kernels;
}

/* ---- the encoders ---- */

/* Everything that can be refused before the first draw, except the elements of x. */
static int encode_check(const tally_quant *q, const float *x, size_t n, uint64_t w, const tally_rng *rng,
			const void *out)
{
	int rc = check_params(q);
	uint32_t need;

	if (rc < 0)
		return rc;
	assert(rng != NULL && out != NULL && (x != NULL || n == 0));
	if (w == 0)
		return tally_err(TALLY_EINVAL, "quant: weight must be > 0");
	need = tally_quant_ring_bits(1, w, q->qrange);
	if (need == 0 || need > q->ring_bits)
		return tally_err(TALLY_EINVAL, "quant: weight %llu times %llu levels overflows the %u-bit ring",
				 (unsigned long long)w, (unsigned long long)q->qrange + 1, q->ring_bits);
	return 0;
}

/* The index of the first NaN or infinity in x[0..n), or n: the chunk in the kernel, then the element. */
static size_t first_nonfinite(const kernels *k, const float *x, size_t n)
{
	for (size_t at = 0; at < n; at += CHUNK) {
		size_t len = n - at < CHUNK ? n - at : CHUNK;

		if (k->any_nonfinite(x + at, len)) {
			while (isfinite(x[at]))
				at++;
			return at;
		}
	}
	return n;
}

static int nonfinite_error(size_t i)
{
	return tally_err(TALLY_ENONFINITE, "quant: element %zu is not finite", i);
}

/* x[0..n) into out[0..n) with op: whole blocks in the kernel, the rest (under 16) in scalar code. */
static void encode_run(const kernels *k, const plan *p, lanes *st, const float *x, size_t n, void *out, enum op op)
{
	size_t done = k->blocks != NULL ? n - n % BLOCK : 0;

	if (done > 0)
		k->blocks(p, st, x, done / BLOCK, out, op);
	encode_scalar(p, st, x + done, n - done, word_at(p, out, done), op);
}

int tally_quant_encode(const tally_quant *q, const float *x, size_t n, uint64_t w, tally_rng *rng, void *out)
{
	const kernels *k;
	size_t bad;
	lanes st;
	plan p;
	int rc = encode_check(q, x, n, w, rng, out);

	if (rc < 0)
		return rc;
	k = pick_kernels();
	/* Check all of x before writing or drawing: on failure out and rng are untouched. */
	if ((bad = first_nonfinite(k, x, n)) < n)
		return nonfinite_error(bad);
	plan_init(&p, q, w);
	lanes_seed(&st, rng);
	encode_run(k, &p, &st, x, n, out, OP_STORE);
	put_word(&p, out, n, w, OP_STORE);
	return 0;
}

/*
 * One pass over memory: each chunk of x is checked while it sits in L1, then added. A NaN or
 * infinity in a later chunk takes back the chunks already added (the same lanes again, from
 * their saved start, subtracting) and restores rng, so that on failure out and rng are as they
 * were, as for tally_quant_encode.
 */
int tally_quant_encode_add(const tally_quant *q, const float *x, size_t n, uint64_t w, tally_rng *rng, void *out)
{
	const kernels *k;
	tally_rng saved;
	lanes st, start;
	plan p;
	int rc = encode_check(q, x, n, w, rng, out);

	if (rc < 0)
		return rc;
	k = pick_kernels();
	plan_init(&p, q, w);
	saved = *rng;
	lanes_seed(&st, rng);
	start = st;
	for (size_t at = 0; at < n; at += CHUNK) {
		size_t len = n - at < CHUNK ? n - at : CHUNK, bad = first_nonfinite(k, x + at, len);

		if (bad < len) {
			encode_run(k, &p, &start, x, at, out, OP_SUB);
			*rng = saved;
			return nonfinite_error(at + bad);
		}
		encode_run(k, &p, &st, x + at, len, word_at(&p, out, at), OP_ADD);
	}
	put_word(&p, out, n, w, OP_ADD);
	return 0;
}

static uint64_t element_at(const tally_quant *q, const void *sum, size_t i)
{
	return q->ring_bits == 32 ? ((const uint32_t *)sum)[i] : ((const uint64_t *)sum)[i];
}

/* The mean level s / W, exact to double precision: integer quotient plus remainder / W. */
static double mean_level(uint64_t s, uint64_t total)
{
	return (double)(s / total) + (double)(s % total) / (double)total;
}

int tally_quant_decode(const tally_quant *q, const void *sum, size_t n, float *x, uint64_t *total_weight)
{
	int rc = check_params(q);
	uint64_t total;
	u128 bound;
	double scale, half;

	if (rc < 0)
		return rc;
	assert(sum != NULL && (x != NULL || n == 0));
	total = element_at(q, sum, n);
	if (total == 0)
		return tally_err(TALLY_EINVAL, "quant: total weight is zero (no updates, or a wrapped sum)");
	bound = (u128)total * q->qrange;
	for (size_t i = 0; i < n; i++)
		if ((u128)element_at(q, sum, i) > bound)
			return tally_err(TALLY_ERANGE, "quant: element %zu exceeds total weight %llu times qrange: "
					 "a wrapped or corrupt sum", i, (unsigned long long)total);
	scale = 2.0 * q->clip / (double)q->qrange;
	half = 0.5 * (double)q->qrange;
	/* (level - qrange / 2) * scale, not level * scale - clip: no product feeds a sum, so no target
	 * fuses them into a multiply-add (aarch64 does by default), and every target decodes the same
	 * floats; the middle level decodes to 0 exactly. */
	for (size_t i = 0; i < n; i++)
		x[i] = (float)((mean_level(element_at(q, sum, i), total) - half) * scale);
	if (total_weight != NULL)
		*total_weight = total;
	return 0;
}
