/*
 * Partitions over the Fashion-MNIST training labels: for every scheme and party count the parts
 * are sorted, disjoint and complete, agree with tally_partition_assign, are reproducible from the
 * seed and change with it, and have the shape the scheme promises (balanced for iid, label-skewed
 * for Dirichlet, at most S labels per party for aligned shards). Plus parse errors and edge cases.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tally/data.h"
#include "tally/error.h"

#define SEED 20240611ULL

static tally_dataset *train;

typedef struct part_stats {
	size_t min_size, max_size;
	double max_share;       /* the largest share one class has of one party */
	double mean_max_share;  /* the mean over parties of their largest class share */
	uint32_t max_labels;    /* the most distinct labels one party holds */
} part_stats;

static void party_stats(const uint8_t *y, const uint32_t *idx, size_t count, part_stats *st,
			uint32_t n)
{
	size_t hist[256] = { 0 }, top = 0;
	uint32_t labels = 0;

	for (size_t i = 0; i < count; i++)
		hist[y[idx[i]]]++;
	for (int c = 0; c < 256; c++) {
		labels += hist[c] > 0;
		top = hist[c] > top ? hist[c] : top;
	}
	st->min_size = count < st->min_size ? count : st->min_size;
	st->max_size = count > st->max_size ? count : st->max_size;
	st->max_labels = labels > st->max_labels ? labels : st->max_labels;
	if (count > 0) {
		double share = (double)top / (double)count;

		st->max_share = share > st->max_share ? share : st->max_share;
		st->mean_max_share += share / n;
	}
}

/*
 * Computes all n parts of scheme over y[0..m), checks each is sorted, in range, disjoint from the
 * others, equal to what tally_partition_assign says, and that together they cover all m.
 */
static void check_partition(const uint8_t *y, size_t m, uint32_t classes, const char *scheme,
			    uint32_t n, uint64_t seed, part_stats *st)
{
	uint32_t *owner = malloc((m ? m : 1) * sizeof(*owner));
	uint8_t *seen = calloc(m ? m : 1, 1);
	tally_part_scheme s;
	size_t total = 0;

	memset(st, 0, sizeof(*st));
	st->min_size = SIZE_MAX;
	assert_int_equal(tally_part_scheme_parse(scheme, &s), 0);
	assert_int_equal(tally_partition_assign(y, m, classes, &s, n, seed, owner), 0);
	for (uint32_t k = 0; k < n; k++) {
		uint32_t *idx = NULL;
		size_t count = 0;

		assert_int_equal(tally_partition(y, m, classes, &s, k, n, seed, &idx, &count), 0);
		assert_non_null(idx);
		for (size_t i = 0; i < count; i++) {
			assert_true(idx[i] < m);
			assert_true(i == 0 || idx[i - 1] < idx[i]);
			assert_false(seen[idx[i]]);
			assert_int_equal(owner[idx[i]], k);
			seen[idx[i]] = 1;
		}
		party_stats(y, idx, count, st, n);
		total += count;
		free(idx);
	}
	assert_int_equal(total, m);
	free(owner);
	free(seen);
}

/* Same seed, same assignment; another seed, another one (when there is a choice to make). */
static void check_determinism(const char *scheme, uint32_t n)
{
	size_t m = train->n;
	uint32_t *a = malloc(m * sizeof(*a)), *b = malloc(m * sizeof(*b));
	tally_part_scheme s;

	assert_int_equal(tally_part_scheme_parse(scheme, &s), 0);
	assert_int_equal(tally_partition_assign(train->y, m, 10, &s, n, SEED, a), 0);
	assert_int_equal(tally_partition_assign(train->y, m, 10, &s, n, SEED, b), 0);
	assert_memory_equal(a, b, m * sizeof(*a));
	/*
	 * shards:2 over 3 parties has only 90 distinct assignments, so one other seed may repeat
	 * this one; three in a row would be a 1 in 729000 coincidence.
	 */
	for (uint64_t other = SEED + 1; other <= SEED + 3; other++) {
		assert_int_equal(tally_partition_assign(train->y, m, 10, &s, n, other, b), 0);
		if (n == 1 || memcmp(a, b, m * sizeof(*a)) != 0)
			break;
	}
	if (n > 1)
		assert_memory_not_equal(a, b, m * sizeof(*a));
	else
		assert_memory_equal(a, b, m * sizeof(*a));
	free(a);
	free(b);
}

static const uint32_t party_counts[] = { 1, 3, 10, 100 };

static void test_iid(void **state)
{
	for (size_t i = 0; i < 4; i++) {
		uint32_t n = party_counts[i];
		part_stats st;

		check_partition(train->y, train->n, 10, "iid", n, SEED, &st);
		check_determinism("iid", n);
		assert_true(st.max_size - st.min_size <= 1);
		assert_int_equal(st.min_size, train->n / n);
		if (n == 10)
			assert_true(st.max_share < 0.15); /* ~0.1 each: no skew */
	}
}

static void check_dirichlet(const char *scheme, part_stats *at10)
{
	for (size_t i = 0; i < 4; i++) {
		uint32_t n = party_counts[i];
		size_t need = train->n / n / 2 < 10 ? train->n / n / 2 : 10;
		part_stats st;

		check_partition(train->y, train->n, 10, scheme, n, SEED, &st);
		check_determinism(scheme, n);
		assert_true(st.min_size >= need);
		if (n == 10)
			*at10 = st;
	}
}

/* Of 5 seeds, how many give 10 parties one whose largest class share is above share. */
static int count_seeds_skewed(const char *scheme, double share)
{
	uint32_t *owner = malloc(train->n * sizeof(*owner));
	tally_part_scheme s;
	int skewed = 0;

	assert_int_equal(tally_part_scheme_parse(scheme, &s), 0);
	for (uint64_t seed = SEED; seed < SEED + 5; seed++) {
		size_t hist[10][10] = { { 0 } };
		double most = 0;

		assert_int_equal(tally_partition_assign(train->y, train->n, 10, &s, 10, seed, owner), 0);
		for (size_t i = 0; i < train->n; i++)
			hist[owner[i]][train->y[i]]++;
		for (int p = 0; p < 10; p++) {
			size_t top = 0, size = 0;

			for (int k = 0; k < 10; k++) {
				top = hist[p][k] > top ? hist[p][k] : top;
				size += hist[p][k];
			}
			if (size > 0 && (double)top / (double)size > most)
				most = (double)top / (double)size;
		}
		skewed += most > share;
	}
	free(owner);
	return skewed;
}

static void test_dirichlet(void **state)
{
	part_stats half, tenth;

	check_dirichlet("dirichlet:0.5", &half);
	check_dirichlet("dirichlet:0.1", &tenth);
	print_message("largest class share at 10 parties: alpha 0.5 max %.3f mean %.3f; "
		      "alpha 0.1 max %.3f mean %.3f\n", half.max_share, half.mean_max_share,
		      tenth.max_share, tenth.mean_max_share);
	/* iid gives every party about 0.1 of each class (test_iid checks < 0.15). */
	assert_true(half.max_share > 0.3);
	assert_true(half.mean_max_share > 0.25);
	assert_true(tenth.mean_max_share > half.mean_max_share);
	assert_true(tenth.mean_max_share > 0.5);
	assert_true(count_seeds_skewed("dirichlet:0.5", 0.4) >= 3);
	/* Label skew makes sizes uneven too, unlike iid. */
	assert_true(half.max_size > half.min_size + 100);
}

static void test_shards(void **state)
{
	for (size_t i = 0; i < 4; i++) {
		uint32_t n = party_counts[i];
		part_stats st;

		check_partition(train->y, train->n, 10, "shards:2", n, SEED, &st);
		check_determinism("shards:2", n);
		/* 60000 / (2n) divides evenly for these n, so every party gets exactly 60000 / n. */
		assert_int_equal(st.min_size, train->n / n);
		assert_int_equal(st.max_size, train->n / n);
		if (n == 10 || n == 100) /* 6000-example classes split into whole shards */
			assert_true(st.max_labels <= 2);
		if (n == 1)
			assert_int_equal(st.max_labels, 10);
	}
}

/*
 * Known answers: the partitions must not change between builds or platforms, or parties on
 * different versions would train on overlapping data. Recorded once from this implementation
 * (3 parties, seed 42); the shards row was also checked by hand.
 */
static void test_known_answers(void **state)
{
	static const uint8_t y[12] = { 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2 };
	static const char *schemes[] = { "iid", "shards:2", "dirichlet:0.5" };
	static const uint32_t want[3][12] = {
		{ 2, 0, 2, 2, 2, 1, 1, 0, 1, 0, 0, 1 },
		{ 1, 0, 0, 1, 0, 0, 2, 1, 2, 2, 1, 2 }, /* shards {0,3} {7,10} to party 1, ... */
		{ 0, 2, 2, 2, 0, 2, 0, 1, 2, 1, 0, 2 },
	};
	tally_part_scheme s;
	uint32_t owner[12];

	for (int i = 0; i < 3; i++) {
		assert_int_equal(tally_part_scheme_parse(schemes[i], &s), 0);
		assert_int_equal(tally_partition_assign(y, 12, 3, &s, 3, 42, owner), 0);
		assert_memory_equal(owner, want[i], sizeof(owner));
	}
}

static void test_scheme_parse(void **state)
{
	static const char *bad[] = {
		"", "IID", "iid ", " iid", "random", "dirichlet", "dirichlet:", "dirichlet:0",
		"dirichlet:-1", "dirichlet:nan", "dirichlet:inf", "dirichlet:0.5x", "dirichlet: 0.5",
		"dirichlet:1e999", "shards", "shards:", "shards:0", "shards:-1", "shards:2.5",
		"shards:+2", "shards:100001", "shards:99999999999999999999",
	};
	tally_part_scheme s = { .kind = TALLY_PART_SHARDS, .shards = 77 };
	char buf[64];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tally_err_clear();
		if (tally_part_scheme_parse(bad[i], &s) != TALLY_ECONFIG)
			fail_msg("'%s' was accepted", bad[i]);
		assert_true(strlen(tally_errmsg()) > 0);
		assert_int_equal(s.shards, 77); /* untouched */
	}
	assert_int_equal(tally_part_scheme_parse(NULL, &s), TALLY_ECONFIG);
	assert_int_equal(tally_part_scheme_parse("iid", &s), 0);
	assert_int_equal(s.kind, TALLY_PART_IID);
	assert_int_equal(tally_part_scheme_parse("dirichlet:0.5", &s), 0);
	assert_int_equal(s.kind, TALLY_PART_DIRICHLET);
	assert_true(s.alpha == 0.5);
	tally_part_scheme_format(&s, buf, sizeof(buf));
	assert_string_equal(buf, "dirichlet:0.5");
	assert_int_equal(tally_part_scheme_parse("dirichlet:1e-3", &s), 0);
	assert_true(s.alpha == 1e-3);
	assert_int_equal(tally_part_scheme_parse("shards:2", &s), 0);
	assert_int_equal(s.kind, TALLY_PART_SHARDS);
	assert_int_equal(s.shards, 2);
	tally_part_scheme_format(&s, buf, sizeof(buf));
	assert_string_equal(buf, "shards:2");
	assert_int_equal(tally_part_scheme_parse("shards:100000", &s), 0);
}

static void test_spec_parse(void **state)
{
	static const char *bad[] = {
		"", "3", "/10", "3/", "10/10", "11/10", "3/0", "0/0", "-1/10", "3/-10", "+3/10",
		" 3/10", "3/10 ", "a/b", "3//10", "3/10/2", "3/100001", "100000/100001", "3.0/10",
	};
	uint32_t k = 5, n = 6;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tally_err_clear();
		if (tally_part_spec_parse(bad[i], &k, &n) != TALLY_ECONFIG)
			fail_msg("'%s' was accepted", bad[i]);
		assert_true(strlen(tally_errmsg()) > 0);
		assert_true(k == 5 && n == 6);
	}
	assert_int_equal(tally_part_spec_parse("3/10", &k, &n), 0);
	assert_true(k == 3 && n == 10);
	assert_int_equal(tally_part_spec_parse("0/1", &k, &n), 0);
	assert_true(k == 0 && n == 1);
	assert_int_equal(tally_part_spec_parse("99999/100000", &k, &n), 0);
	assert_true(k == 99999 && n == 100000);
}

static void test_bad_arguments(void **state)
{
	static const uint8_t y[6] = { 0, 1, 2, 0, 1, 3 };
	tally_part_scheme s = { .kind = TALLY_PART_IID };
	uint32_t *idx = (uint32_t *)&s;
	size_t count = 99;

	assert_int_equal(tally_partition(y, 6, 4, &s, 3, 3, 1, &idx, &count), TALLY_EINVAL);
	assert_int_equal(tally_partition(y, 6, 4, &s, 0, 0, 1, &idx, &count), TALLY_EINVAL);
	assert_int_equal(tally_partition(y, 6, 4, &s, 0, 100001, 1, &idx, &count), TALLY_EINVAL);
	assert_int_equal(tally_partition(y, 6, 3, &s, 0, 2, 1, &idx, &count), TALLY_ERANGE);
	assert_non_null(strstr(tally_errmsg(), "label 3 of example 5"));
	s = (tally_part_scheme){ .kind = TALLY_PART_SHARDS, .shards = 2 };
	assert_int_equal(tally_partition(y, 6, 4, &s, 0, 4, 1, &idx, &count), TALLY_ECONFIG);
	assert_non_null(strstr(tally_errmsg(), "needs 8 examples"));
	s = (tally_part_scheme){ .kind = TALLY_PART_DIRICHLET, .alpha = -1 };
	assert_int_equal(tally_partition(y, 6, 4, &s, 0, 2, 1, &idx, &count), TALLY_ECONFIG);
	s = (tally_part_scheme){ .kind = TALLY_PART_SHARDS, .shards = 0 };
	assert_int_equal(tally_partition(y, 6, 4, &s, 0, 2, 1, &idx, &count), TALLY_ECONFIG);
	s = (tally_part_scheme){ .kind = (tally_part_kind)7 };
	assert_int_equal(tally_partition(y, 6, 4, &s, 0, 2, 1, &idx, &count), TALLY_ECONFIG);
	assert_ptr_equal(idx, (uint32_t *)&s);
	assert_int_equal(count, 99);
}

/* Synthetic labels: 10 classes of uneven sizes. */
static uint8_t *synthetic(size_t m)
{
	uint8_t *y = malloc(m ? m : 1);

	for (size_t i = 0; i < m; i++)
		y[i] = (uint8_t)((i * i + 3 * i) % 10);
	return y;
}

static void test_edge_cases(void **state)
{
	static const char *schemes[] = { "iid", "dirichlet:0.5", "shards:1" };
	static const char *extreme[] = { "dirichlet:1e-300", "dirichlet:1e-3", "dirichlet:1e300" };
	uint8_t *y = synthetic(1000);
	part_stats st;

	for (int i = 0; i < 3; i++) {
		check_partition(y, 0, 10, schemes[i], 4, SEED, &st); /* nothing to share */
		assert_int_equal(st.max_size, 0);
		check_partition(y, 7, 10, schemes[i], 7, SEED, &st); /* one example each */
		check_partition(y, 1000, 10, extreme[i], 7, SEED, &st);
		check_partition(y, 30, 10, extreme[i], 10, SEED, &st);
	}
	check_partition(y, 5, 10, "iid", 10, SEED, &st); /* more parties than examples */
	assert_int_equal(st.min_size, 0);
	assert_int_equal(st.max_size, 1);
	check_partition(y, 1000, 10, "dirichlet:0.01", 1000, SEED, &st);
	check_partition(y, 999, 10, "shards:3", 333, SEED, &st);
	assert_int_equal(st.min_size, 3);
	assert_int_equal(st.max_size, 3);
	free(y);
}

static int setup(void **state)
{
	const char *dir = getenv("TALLY_FMNIST_DIR");

	if (tally_dataset_load_fmnist(&train, dir && *dir ? dir : "/usr/share/datasets/fashion-mnist",
				      true)) {
		fprintf(stderr, "cannot load Fashion-MNIST: %s\n", tally_errmsg());
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	tally_dataset_destroy(&train);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_iid),
		cmocka_unit_test(test_dirichlet),
		cmocka_unit_test(test_shards),
		cmocka_unit_test(test_known_answers),
		cmocka_unit_test(test_scheme_parse),
		cmocka_unit_test(test_spec_parse),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_edge_cases),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
