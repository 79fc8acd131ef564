/*
 * Unit tests for the FedAvg accumulator: the weighted mean of five updates added chunk by chunk
 * (in several chunk sizes and in shuffled order) against the same mean computed directly in
 * double, taking a chunk back out with a negative weight, span checks, and the two refusals of
 * apply (no committed update; a non-finite result, which must leave the global model untouched).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tally/agg.h"
#include "tally/error.h"

#define N 1000
#define K 5

static const double weights[K] = {10, 250, 1000, 37, 5000};

/* xorshift64*: a fixed stream of floats in [-1, 1). */
static float next_float(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return (float)((double)((*s * 2685821657736338717ull) >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

typedef struct fixture {
	float global[N];
	float update[K][N];
	double want[N];
} fixture;

static int setup(void **state)
{
	fixture *fx = calloc(1, sizeof(*fx));
	uint64_t s = 0x9e3779b97f4a7c15ull;
	double wsum = 0;

	if (!fx)
		return -1;
	for (size_t i = 0; i < N; i++)
		fx->global[i] = next_float(&s);
	for (int k = 0; k < K; k++) {
		for (size_t i = 0; i < N; i++)
			fx->update[k][i] = next_float(&s) * (float)(k + 1);
		wsum += weights[k];
	}
	for (size_t i = 0; i < N; i++) {
		double acc = 0;

		for (int k = 0; k < K; k++)
			acc += weights[k] * (double)fx->update[k][i];
		fx->want[i] = (double)fx->global[i] + acc / wsum;
	}
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	free(*state);
	return 0;
}

/* got matches want within 1e-5 relative (absolute below magnitude 1, where values cross zero). */
static void assert_close(const float *got, const double *want, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		double tol = 1e-5 * fmax(fabs(want[i]), 1.0);

		if (!(fabs((double)got[i] - want[i]) <= tol))
			fail_msg("parameter %zu: got %.9g, want %.9g", i, (double)got[i], want[i]);
	}
}

/* Adds update k in chunks of chunk floats (the last may be shorter), in order. */
static void add_in_chunks(tally_agg *a, const float *u, size_t chunk, float w)
{
	for (size_t off = 0; off < N; off += chunk) {
		size_t len = N - off < chunk ? N - off : chunk;

		assert_int_equal(tally_agg_add(a, off, u + off, len, w), 0);
	}
}

static void test_fedavg_matches_direct(void **state)
{
	fixture *fx = *state;
	static const size_t chunk_sizes[K] = {1000, 1, 7, 128, 999};
	float global[N];
	tally_agg *a = NULL;

	assert_int_equal(tally_agg_new(&a, N), 0);
	assert_non_null(a);
	assert_int_equal(a->n, N);
	assert_int_equal(((uintptr_t)a->sum) % 64, 0);
	for (size_t i = 0; i < N; i++)
		assert_true(a->sum[i] == 0.0f);
	for (int k = 0; k < K; k++) {
		add_in_chunks(a, fx->update[k], chunk_sizes[k], (float)weights[k]);
		tally_agg_commit(a, weights[k]);
	}
	assert_int_equal(a->updates, K);
	assert_true(a->weight == 6297.0);
	memcpy(global, fx->global, sizeof(global));
	assert_int_equal(tally_agg_apply(a, global), 0);
	assert_close(global, fx->want, N);
	tally_agg_destroy(&a);
	assert_null(a);
	tally_agg_destroy(&a); /* accepts NULL */
	tally_agg_destroy(NULL);
}

/* Sub-ranges of every update, of irregular sizes, interleaved across updates in shuffled order. */
static void test_fedavg_shuffled_subranges(void **state)
{
	fixture *fx = *state;
	struct span { int k; size_t off, len; } spans[K * 64];
	size_t n_spans = 0;
	uint64_t s = 42;
	float global[N];
	tally_agg *a = NULL;

	for (int k = 0; k < K; k++) {
		size_t off = 0;

		while (off < N) {
			size_t len = 1 + (size_t)((next_float(&s) + 1.0f) * 40.0f);

			if (len > N - off)
				len = N - off;
			assert_true(n_spans < sizeof(spans) / sizeof(spans[0]));
			spans[n_spans++] = (struct span){k, off, len};
			off += len;
		}
	}
	for (size_t i = n_spans - 1; i > 0; i--) {
		size_t j = (size_t)((next_float(&s) + 1.0f) * 0.5f * (float)(i + 1)) % (i + 1);
		struct span t = spans[i];

		spans[i] = spans[j];
		spans[j] = t;
	}
	assert_int_equal(tally_agg_new(&a, N), 0);
	for (size_t i = 0; i < n_spans; i++)
		assert_int_equal(tally_agg_add(a, spans[i].off, fx->update[spans[i].k] + spans[i].off,
					       spans[i].len, (float)weights[spans[i].k]), 0);
	for (int k = 0; k < K; k++)
		tally_agg_commit(a, weights[k]);
	memcpy(global, fx->global, sizeof(global));
	assert_int_equal(tally_agg_apply(a, global), 0);
	assert_close(global, fx->want, N);

	/* reset makes the accumulator as new: one update of weight 3 moves global by exactly it */
	tally_agg_reset(a);
	assert_int_equal(a->updates, 0);
	assert_true(a->weight == 0);
	add_in_chunks(a, fx->update[0], 100, 3.0f);
	tally_agg_commit(a, 3.0);
	memcpy(global, fx->global, sizeof(global));
	assert_int_equal(tally_agg_apply(a, global), 0);
	for (size_t i = 0; i < N; i++) {
		double want = (double)fx->global[i] + (double)fx->update[0][i];

		assert_true(fabs((double)global[i] - want) <= 1e-5 * fmax(fabs(want), 1.0));
	}
	tally_agg_destroy(&a);
}

static void test_negative_weight_undoes_a_chunk(void **state)
{
	fixture *fx = *state;
	float before[N];
	tally_agg *a = NULL;

	assert_int_equal(tally_agg_new(&a, N), 0);
	/* From zero, w*x - w*x is exactly zero. */
	assert_int_equal(tally_agg_add(a, 100, fx->update[1] + 100, 200, 250.0f), 0);
	assert_true(a->sum[150] != 0.0f);
	assert_int_equal(tally_agg_add(a, 100, fx->update[1] + 100, 200, -250.0f), 0);
	for (size_t i = 0; i < N; i++)
		assert_true(a->sum[i] == 0.0f);
	/* Over existing content it comes back to within rounding: the sum peaks near 3000, where a
	 * float step is 2.4e-4. */
	add_in_chunks(a, fx->update[0], 64, 10.0f);
	memcpy(before, a->sum, sizeof(before));
	assert_int_equal(tally_agg_add(a, 500, fx->update[2] + 500, 300, 1000.0f), 0);
	assert_true(memcmp(before, a->sum, sizeof(before)) != 0);
	assert_int_equal(tally_agg_add(a, 500, fx->update[2] + 500, 300, -1000.0f), 0);
	for (size_t i = 0; i < N; i++)
		if (!(fabsf(a->sum[i] - before[i]) <= 1e-3f))
			fail_msg("sum[%zu] = %g after undo, %g before", i, (double)a->sum[i], (double)before[i]);
	/* untouched parameters are bit-identical */
	assert_memory_equal(a->sum, before, 500 * sizeof(float));
	assert_memory_equal(a->sum + 800, before + 800, 200 * sizeof(float));
	tally_agg_destroy(&a);
}

static void test_span_outside_is_refused(void **state)
{
	fixture *fx = *state;
	tally_agg *a = NULL;

	assert_int_equal(tally_agg_new(&a, N), 0);
	assert_int_equal(tally_agg_add(a, 0, fx->update[0], N + 1, 1.0f), TALLY_ERANGE);
	assert_non_null(strstr(tally_errmsg(), "outside"));
	assert_int_equal(tally_agg_add(a, N - 10, fx->update[0], 11, 1.0f), TALLY_ERANGE);
	assert_int_equal(tally_agg_add(a, N + 1, fx->update[0], 0, 1.0f), TALLY_ERANGE);
	/* offset + len overflowing size_t must not wrap into range */
	assert_int_equal(tally_agg_add(a, 10, fx->update[0], SIZE_MAX - 5, 1.0f), TALLY_ERANGE);
	assert_int_equal(tally_agg_add(a, SIZE_MAX, fx->update[0], 2, 1.0f), TALLY_ERANGE);
	/* refusals leave the sum alone */
	for (size_t i = 0; i < N; i++)
		assert_true(a->sum[i] == 0.0f);
	/* the edges themselves are in range */
	assert_int_equal(tally_agg_add(a, N - 10, fx->update[0], 10, 2.0f), 0);
	assert_true(a->sum[N - 1] == 2.0f * fx->update[0][9]);
	assert_int_equal(tally_agg_add(a, N, fx->update[0], 0, 1.0f), 0);
	assert_int_equal(tally_agg_add(a, 0, fx->update[0], N, 1.0f), 0);
	tally_agg_destroy(&a);
}

static void test_apply_without_commit(void **state)
{
	fixture *fx = *state;
	float global[N];
	tally_agg *a = NULL;

	assert_int_equal(tally_agg_new(&a, N), 0);
	memcpy(global, fx->global, sizeof(global));
	assert_int_equal(tally_agg_apply(a, global), TALLY_EQUORUM);
	/* chunks added but never committed are no update either */
	add_in_chunks(a, fx->update[0], 100, 5.0f);
	assert_int_equal(tally_agg_apply(a, global), TALLY_EQUORUM);
	assert_memory_equal(global, fx->global, sizeof(global));
	/* a commit of weight zero gives no mean */
	tally_agg_commit(a, 0.0);
	assert_int_equal(tally_agg_apply(a, global), TALLY_EQUORUM);
	assert_memory_equal(global, fx->global, sizeof(global));
	tally_agg_destroy(&a);
}

static void test_apply_nonfinite_leaves_global(void **state)
{
	fixture *fx = *state;
	float global[N], huge[N];
	tally_agg *a = NULL;

	for (size_t i = 0; i < N; i++)
		huge[i] = 0.0f;
	huge[N - 1] = FLT_MAX; /* only the very last parameter goes wrong */
	assert_int_equal(tally_agg_new(&a, N), 0);
	assert_int_equal(tally_agg_add(a, 0, huge, N, 1.0f), 0);
	tally_agg_commit(a, 1.0);
	memcpy(global, fx->global, sizeof(global));
	global[N - 1] = FLT_MAX;
	assert_int_equal(tally_agg_apply(a, global), TALLY_ENONFINITE);
	assert_non_null(strstr(tally_errmsg(), "999"));
	assert_memory_equal(global, fx->global, (N - 1) * sizeof(float));
	assert_true(global[N - 1] == FLT_MAX);

	/* a NaN in the sum is refused the same way */
	tally_agg_reset(a);
	huge[N - 1] = 0.0f;
	huge[3] = NAN;
	assert_int_equal(tally_agg_add(a, 0, huge, N, 1.0f), 0);
	tally_agg_commit(a, 2.0);
	memcpy(global, fx->global, sizeof(global));
	assert_int_equal(tally_agg_apply(a, global), TALLY_ENONFINITE);
	assert_memory_equal(global, fx->global, sizeof(global));
	tally_agg_destroy(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fedavg_matches_direct),
		cmocka_unit_test(test_fedavg_shuffled_subranges),
		cmocka_unit_test(test_negative_weight_undoes_a_chunk),
		cmocka_unit_test(test_span_outside_is_refused),
		cmocka_unit_test(test_apply_without_commit),
		cmocka_unit_test(test_apply_nonfinite_leaves_global),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
