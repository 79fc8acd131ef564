/*
 * Unit tests for the SecAgg+ neighbour graph: every row of anchors/secagg-graph-parameters.md
 * (Google federated-compute's parameter-finder figures: degree exactly, threshold at most),
 * refusal of infeasible rates, the complete-graph fallback for small cohorts, and the drawn
 * graph itself: k-regular, symmetric, loop-free, one ring (connected), reproducible from the
 * session id through the documented seeding, and different for another session.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tally/error.h"
#include "tally/graph.h"
#include "tally/rng.h"

typedef struct anchor {
	uint32_t n;
	double gamma, delta;
	bool semi_malicious;
	uint32_t k, t_max;
} anchor;

/* anchors/secagg-graph-parameters.md, in its order. */
static const anchor anchors[] = {
	{ 100, 0.05, 0.05, false, 12, 6 },
	{ 1000, 0.05, 0.05, false, 30, 17 },
	{ 10000, 0.05, 0.05, false, 34, 20 },
	{ 100000, 0.05, 0.05, false, 36, 21 },
	{ 1000000, 0.05, 0.05, false, 38, 22 },
	{ 1000, 0.05, 0.05, true, 52, 37 },
	{ 10000, 0.05, 0.05, true, 62, 44 },
	{ 1000, 0.05, 0.33, false, 72, 24 },
	{ 1000, 0.33, 0.05, false, 78, 60 },
	{ 1000, 0.33, 0.33, false, 286, 150 },
	{ 1000, 0.45, 0.45, false, 822, 417 },
	{ 1000, 0.30, 0.30, true, 872, 584 },
	{ 1000000, 0.33, 0.33, false, 518, 270 },
};

static void test_anchor_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(anchors) / sizeof(anchors[0]); i++) {
		const anchor *a = &anchors[i];
		uint32_t k = 0, t = 0;

		assert_int_equal(tally_graph_params(a->n, a->gamma, a->delta, a->semi_malicious, &k, &t), 0);
		if (k != a->k || t > a->t_max || t < 2)
			fail_msg("n=%u gamma=%.2f delta=%.2f %s: k=%u t=%u, anchor k=%u t<=%u", a->n, a->gamma,
				 a->delta, a->semi_malicious ? "semi-malicious" : "curious", k, t, a->k, a->t_max);
	}
}

static void test_infeasible(void **state)
{
	uint32_t k = 77, t = 77;

	(void)state;
	assert_int_equal(tally_graph_params(1000, 0.5, 0.5, false, &k, &t), TALLY_EINVAL);
	assert_int_equal(tally_graph_params(1000, 0.5, 0.5, true, &k, &t), TALLY_EINVAL);
	assert_int_equal(tally_graph_params(1000, 0.33, 0.33, true, &k, &t), TALLY_EINVAL);
	assert_int_equal(tally_graph_params(1000, 0.1, 0.81, false, &k, &t), TALLY_EINVAL);
	assert_int_equal(tally_graph_params(1000, 0.1, 1.0, false, &k, &t), TALLY_EINVAL);
	assert_int_equal(tally_graph_params(1000, 0.1, -0.1, false, &k, &t), TALLY_EINVAL);
	assert_int_equal(tally_graph_params(1000, NAN, 0.1, false, &k, &t), TALLY_EINVAL);
	assert_int_equal(tally_graph_params(1, 0.05, 0.05, false, &k, &t), TALLY_EINVAL);
	assert_int_equal(tally_graph_params(0, 0.05, 0.05, false, &k, &t), TALLY_EINVAL);
	assert_int_equal(k, 77);
	assert_int_equal(t, 77);
	/* The boundary itself is feasible. */
	assert_int_equal(tally_graph_params(1000, 0.45, 0.45, false, &k, &t), 0);
	assert_int_equal(tally_graph_params(1000, 0.3, 0.3, true, &k, &t), 0);
}

/*
 * Below 65 workers the graph is complete and t is certain: above the A = floor(gamma n)
 * adversarial neighbours (semi-malicious: above (n - 1 + A) / 2) and within the n - 1 - D
 * survivors. The reference finder would give n = 50 a sparse graph; tally does not.
 */
static void test_small_cohorts(void **state)
{
	const uint32_t ns[] = { 10, 50, 64 };
	uint32_t k, t;

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		uint32_t n = ns[i], adv = (uint32_t)floor(0.05 * n + 1e-9), drop = adv;

		assert_int_equal(tally_graph_params(n, 0.05, 0.05, false, &k, &t), 0);
		assert_int_equal(k, n - 1);
		assert_int_equal(t, adv + 1 > 2 ? adv + 1 : 2);
		assert_int_equal(tally_graph_params(n, 0.05, 0.05, true, &k, &t), 0);
		assert_int_equal(k, n - 1);
		assert_true(2 * t > k + adv && t <= n - 1 - drop);
	}
	assert_int_equal(tally_graph_params(10, 0.33, 0.33, false, &k, &t), 0);
	assert_int_equal(k, 9);
	assert_int_equal(t, 4);
	assert_int_equal(tally_graph_params(2, 0.0, 0.0, false, &k, &t), 0);
	assert_int_equal(k, 1);
	/* Too few: a threshold above 2 adversaries cannot fit the 2 survivors of 4 neighbours... */
	assert_int_equal(tally_graph_params(5, 0.45, 0.45, false, &k, &t), TALLY_EINVAL);
	/* ...and from 65 on the sparse graph takes over. */
	assert_int_equal(tally_graph_params(65, 0.05, 0.05, false, &k, &t), 0);
	assert_true(k < 64 && k % 2 == 0);
}

/* The reference finder's largest published case at a million workers: fast enough for a test. */
static void test_million_semi_malicious(void **state)
{
	uint32_t k, t;

	(void)state;
	assert_int_equal(tally_graph_params(1000000, 0.3, 0.3, true, &k, &t), 0);
	assert_int_equal(k, 11136);
	assert_true(t <= 7454);
}

static void session_of(uint8_t session[32], uint8_t salt)
{
	for (int i = 0; i < 32; i++)
		session[i] = (uint8_t)(i * 37 + salt);
}

/* All n neighbour lists of one graph, n * k entries. */
static uint32_t *graph_of(const uint8_t session[32], uint32_t n, uint32_t k)
{
	uint32_t *adj = malloc((size_t)n * k * sizeof(*adj));

	assert_non_null(adj);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(tally_graph_neighbours(session, n, k, i, adj + (size_t)i * k), 0);
	return adj;
}

static bool has(const uint32_t *list, uint32_t k, uint32_t v)
{
	for (uint32_t j = 0; j < k; j++)
		if (list[j] == v)
			return true;
	return false;
}

/* k-regular, sorted without repeats, no self loops, symmetric. */
static void check_graph(const uint32_t *adj, uint32_t n, uint32_t k)
{
	for (uint32_t i = 0; i < n; i++) {
		const uint32_t *l = adj + (size_t)i * k;

		for (uint32_t j = 0; j < k; j++) {
			assert_true(l[j] < n && l[j] != i);
			if (j > 0)
				assert_true(l[j - 1] < l[j]);
			assert_true(has(adj + (size_t)l[j] * k, k, i));
		}
	}
}

static void test_harary_shape(void **state)
{
	const uint32_t cases[][2] = { { 101, 12 }, { 100, 2 }, { 100, 98 }, { 7, 4 }, { 1000, 30 } };
	uint8_t session[32];

	(void)state;
	session_of(session, 1);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		uint32_t *adj = graph_of(session, cases[c][0], cases[c][1]);

		check_graph(adj, cases[c][0], cases[c][1]);
		free(adj);
	}
}

/* With k = 2 the graph is the ring itself: walking it from 0 visits all n before returning. */
static void test_one_ring(void **state)
{
	const uint32_t n = 257;
	uint8_t session[32];
	uint32_t *adj, prev = 0, cur, steps = 1;

	(void)state;
	session_of(session, 2);
	adj = graph_of(session, n, 2);
	cur = adj[0];
	while (cur != 0) {
		uint32_t next = adj[2 * cur] == prev ? adj[2 * cur + 1] : adj[2 * cur];

		prev = cur;
		cur = next;
		steps++;
		assert_true(steps <= n);
	}
	assert_int_equal(steps, n);
	free(adj);
}

/*
 * The same session gives the same graph; another session another graph; and the ring is the
 * documented one: Fisher-Yates (tally_rng_shuffle_u32) of 0..n-1 with the rng seeded from
 * session bytes 0..7 and 8..15 read little-endian, so any implementation can agree with it.
 */
static void test_session(void **state)
{
	const uint32_t n = 500, k = 20;
	uint8_t s1[32], s2[32];
	uint32_t *a, *b, *c, ring[500], pos[500], want[500], out[20];
	uint64_t seed = 0, stream = 0;
	tally_rng rng;

	(void)state;
	session_of(s1, 3);
	memcpy(s2, s1, 32);
	s2[15] ^= 1;
	a = graph_of(s1, n, k);
	b = graph_of(s1, n, k);
	c = graph_of(s2, n, k);
	assert_memory_equal(a, b, (size_t)n * k * sizeof(*a));
	assert_memory_not_equal(a, c, (size_t)n * k * sizeof(*a));
	for (int i = 7; i >= 0; i--) {
		seed = seed << 8 | s1[i];
		stream = stream << 8 | s1[8 + i];
	}
	tally_rng_seed(&rng, seed, stream);
	for (uint32_t i = 0; i < n; i++)
		want[i] = i;
	tally_rng_shuffle_u32(&rng, want, n);
	assert_int_equal(tally_graph_ring(s1, n, ring, pos), 0);
	assert_memory_equal(ring, want, sizeof(want));
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(pos[ring[i]], i);
		assert_int_equal(tally_graph_ring_neighbours(ring, pos, n, k, i, out), 0);
		assert_memory_equal(out, a + (size_t)i * k, sizeof(out));
	}
	free(a);
	free(b);
	free(c);
}

/* The complete graph: n = 5, k = 4, everyone but self, ascending, whatever the session. */
static void test_complete(void **state)
{
	uint8_t session[32];
	uint32_t out[4], *adj;

	(void)state;
	session_of(session, 4);
	assert_int_equal(tally_graph_neighbours(session, 5, 4, 2, out), 0);
	assert_int_equal(out[0], 0);
	assert_int_equal(out[1], 1);
	assert_int_equal(out[2], 3);
	assert_int_equal(out[3], 4);
	adj = graph_of(session, 10, 9); /* odd degree is fine when it is n - 1 */
	check_graph(adj, 10, 9);
	free(adj);
}

static void test_neighbour_refusals(void **state)
{
	uint8_t session[32];
	uint32_t out[16];

	(void)state;
	session_of(session, 5);
	assert_int_equal(tally_graph_neighbours(session, 10, 3, 0, out), TALLY_EINVAL);
	assert_int_equal(tally_graph_neighbours(session, 10, 10, 0, out), TALLY_EINVAL);
	assert_int_equal(tally_graph_neighbours(session, 10, 12, 0, out), TALLY_EINVAL);
	assert_int_equal(tally_graph_neighbours(session, 10, 4, 10, out), TALLY_EINVAL);
	assert_int_equal(tally_graph_neighbours(session, 10, 0, 0, out), TALLY_EINVAL);
	assert_int_equal(tally_graph_neighbours(session, 10, 4, 9, out), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_anchor_table),
		cmocka_unit_test(test_infeasible),
		cmocka_unit_test(test_small_cohorts),
		cmocka_unit_test(test_million_semi_malicious),
		cmocka_unit_test(test_harary_shape),
		cmocka_unit_test(test_one_ring),
		cmocka_unit_test(test_session),
		cmocka_unit_test(test_complete),
		cmocka_unit_test(test_neighbour_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
