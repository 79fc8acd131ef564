/*
 * The SecAgg+ neighbour graph (tally/graph.h): choosing its degree k and Shamir threshold t, and
 * drawing it from the session id.
 *
 * Parameters follow the analysis of Bell et al. 2020 ("Secure single-server aggregation with
 * (poly)logarithmic overhead", the Harary-graph construction) as Google's federated-compute
 * parameter finder applies it, so that tally reproduces that finder's published figures: for each
 * even k = 2, 4, ... below n - 1, with A = floor(gamma n) adversarial and D = floor(delta n)
 * dropped workers placed uniformly at random on the Harary ring,
 *  1. the honest survivors stay connected: a Harary graph H(k, n) falls apart only if two disjoint
 *     runs of k/2 consecutive positions are all bad, so by a union bound over n (n - k - 1) / 2
 *     pairs of runs, P[disconnected] <= pairs * (A + D)_k / (n)_k (falling factorials) must be
 *     below 2^-41;
 *  2. some t is both safe and live: a worker's k neighbours are a uniform k-subset of the others
 *     (hypergeometric), so with t1 the least t with P[more than t adversarial neighbours] < 2^-41/n
 *     and t2 the least z with P[at most z surviving neighbours] >= 2^-20/n, any t in (t1, t2]
 *     keeps every secret from the adversary (union over n workers) and lets the server rebuild it.
 *     A semi-malicious server may ask two disjoint sets of neighbours for the two secrets of one
 *     worker, so there t must also exceed (k + t1) / 2.
 * The least such k wins, with t = t1 + 1 (at least 2): the smallest safe threshold tolerates the
 * most dropouts. The 2^-41 per bad event splits the 2^-40 leak budget evenly between them.
 * Shares count only the k neighbours (a worker's own share, if the protocol keeps one, is extra
 * margin), which is also what the published figures assume.
 *
 * The tails are summed outward from the mode in long double, scaled by the mode's log-probability,
 * so each candidate k costs O(sqrt k) steps plus a few lgammal_r calls: n = 10^6 takes milliseconds.
 */
#include "tally/graph.h"

#include "tally/error.h"
#include "tally/rng.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Cohorts this small get the complete graph: the figures assume a fraction, not a handful. */
#define SPARSE_MIN_N 65
#define LEAK_BITS 41.0L    /* per bad event: disconnection, too many adversarial neighbours */
#define FAIL_BITS 20.0L    /* a worker's secret cannot be rebuilt */
#define SMALL 1e-14        /* keeps floor(rate * n) from rounding down in an unsafe direction */
#define TAIL_MARGIN 45.0L  /* terms e^45 below the target probability are dropped */

typedef struct cohort {
	uint32_t n;
	uint32_t bad_adv;      /* A: adversarial workers assumed */
	uint32_t bad_drop;     /* D: dropouts assumed */
	uint32_t surviving;    /* n - D, rounded as the reference rounds it */
	bool semi_malicious;
} cohort;

/* log Gamma(x) for x > 0; the _r form leaves the global signgam alone, so threads may call it. */
static long double log_gamma(long double x)
{
	int sign;

	return lgammal_r(x, &sign);
}

/* log C(a, b) for 0 <= b <= a. */
static long double log_choose(long double a, long double b)
{
	return log_gamma(a + 1) - log_gamma(b + 1) - log_gamma(a - b + 1);
}

/* log P[X = x] for X hypergeometric: x marked among k drawn from N holding K marked. */
static long double hg_log_pmf(uint32_t N, uint32_t K, uint32_t k, uint32_t x)
{
	return log_choose(K, x) + log_choose(N - K, k - x) - log_choose(N, k);
}

/* P[X = x + 1] / P[X = x]. */
static long double hg_ratio_up(uint32_t N, uint32_t K, uint32_t k, uint32_t x)
{
	return ((long double)(K - x) * (k - x)) / ((long double)(x + 1) * ((long double)N - K - k + x + 1));
}

/*
 * The least t with P[X > t] < q, X hypergeometric (N, K, k), 0 < q < 1 / (k + 1). Walks up from
 * the mode until terms are negligible against q, then sums the upper tail back down; the mode
 * itself carries at least 1 / (k + 1) > q, so the answer is at least the mode.
 */
static uint32_t hg_upper_quantile(uint32_t N, uint32_t K, uint32_t k, long double q)
{
	uint32_t lo = k > N - K ? k - (N - K) : 0, hi = k < K ? k : K;
	uint32_t mode = (uint32_t)(((uint64_t)k + 1) * ((uint64_t)K + 1) / ((uint64_t)N + 2));
	long double pmode, rel = 1, floor_rel, tail = 0;
	uint32_t x;

	mode = mode < lo ? lo : mode > hi ? hi : mode;
	pmode = expl(hg_log_pmf(N, K, k, mode));
	floor_rel = q * expl(-TAIL_MARGIN) / pmode;
	for (x = mode; x < hi && rel >= floor_rel; x++)
		rel *= hg_ratio_up(N, K, k, x);
	/* Now rel = P[X = x] / P[X = mode]; tail accumulates P[X > t] for t = x - 1 down to mode. */
	for (; x > mode; x--) {
		tail += rel * pmode;
		if (tail >= q)
			return x;
		rel /= hg_ratio_up(N, K, k, x - 1);
	}
	return mode;
}

/* Bound 1 above: is the Harary graph of degree k disconnected with probability < 2^-41? */
static bool stays_connected(const cohort *c, uint32_t k)
{
	uint32_t bad = c->bad_adv + c->bad_drop;
	long double log_pairs, log_p;

	if (k > bad)
		return true;
	log_pairs = logl(c->n) + logl((long double)c->n - k - 1) - logl(2);
	/* (A + D)_k / (n)_k: all k/2 + k/2 positions of a pair of runs are bad. */
	log_p = log_pairs + log_gamma((long double)bad + 1) - log_gamma((long double)bad - k + 1) +
		log_gamma((long double)c->n - k + 1) - log_gamma((long double)c->n + 1);
	return log_p < -LEAK_BITS * logl(2);
}

/* The least safe threshold for t1 adversarial neighbours out of k. */
static uint32_t safe_threshold(const cohort *c, uint32_t k, uint32_t t1)
{
	uint32_t t = c->semi_malicious ? (k + t1) / 2 + 1 : t1 + 1;
	uint32_t least = k >= 2 ? 2 : 1;

	return t > least ? t : least;
}

/* Bound 2 above: the threshold for degree k, or 0 when no threshold is both safe and live. */
static uint32_t threshold_for(const cohort *c, uint32_t k)
{
	long double q_leak = powl(2, -LEAK_BITS) / c->n, q_fail = powl(2, -FAIL_BITS) / c->n;
	uint32_t t1, t2, t;

	/* Adversarial neighbours: more than t1 of them with probability < q_leak. */
	t1 = hg_upper_quantile(c->n, c->bad_adv, k, q_leak);
	/* Dropped neighbours: more than u of them with probability < q_fail, so t2 = k - u. */
	t2 = k - hg_upper_quantile(c->n, c->n - c->surviving, k, q_fail);
	t = safe_threshold(c, k, t1);
	return t <= t2 ? t : 0;
}

/*
 * The complete graph: every count is certain, so t must exceed the A adversarial neighbours
 * (semi-malicious: (k + A) / 2) and fit within the n - 1 - D neighbours that survive.
 */
static int complete_params(const cohort *c, uint32_t *k, uint32_t *t)
{
	uint32_t deg = c->n - 1, adv = c->bad_adv < deg ? c->bad_adv : deg;
	uint32_t thr = safe_threshold(c, deg, adv);
	uint32_t live = c->bad_drop < deg ? deg - c->bad_drop : 0;

	if (thr > live)
		return tally_err(TALLY_EINVAL, "graph: %u workers cannot tolerate %u adversarial and %u dropped "
				 "(a threshold of %u exceeds the %u surviving neighbours)",
				 c->n, c->bad_adv, c->bad_drop, thr, live);
	*k = deg;
	*t = thr;
	return 0;
}

static int check_rates(uint32_t n, double gamma, double delta, bool semi_malicious)
{
	if (n < 2)
		return tally_err(TALLY_EINVAL, "graph: need at least 2 workers, got %u", n);
	if (!(gamma >= 0 && gamma < 1) || !(delta >= 0 && delta < 1))
		return tally_err(TALLY_EINVAL, "graph: adversarial rate %g and dropout rate %g must be in [0, 1)",
				 gamma, delta);
	if (!semi_malicious && gamma + delta > 0.9)
		return tally_err(TALLY_EINVAL, "graph: adversarial rate %g + dropout rate %g exceeds 0.9",
				 gamma, delta);
	if (semi_malicious && gamma + 2 * delta > 0.9)
		return tally_err(TALLY_EINVAL, "graph: against a semi-malicious server, adversarial rate %g + "
				 "2 x dropout rate %g exceeds 0.9", gamma, delta);
	return 0;
}

int tally_graph_params(uint32_t n, double gamma, double delta, bool semi_malicious, uint32_t *k, uint32_t *t)
{
	int rc = check_rates(n, gamma, delta, semi_malicious);
	cohort c;

	if (rc < 0)
		return rc;
	assert(k != NULL && t != NULL);
	c.n = n;
	c.bad_adv = (uint32_t)floor((gamma + SMALL) * n);
	c.bad_drop = (uint32_t)floor((delta + SMALL) * n);
	c.surviving = (uint32_t)ceil((1 - delta - SMALL) * n);
	c.semi_malicious = semi_malicious;
	if (n >= SPARSE_MIN_N) {
		for (uint32_t deg = 2; deg < n - 1; deg += 2) {
			uint32_t thr;

			if (!stays_connected(&c, deg) || (thr = threshold_for(&c, deg)) == 0)
				continue;
			*k = deg;
			*t = thr;
			return 0;
		}
	}
	return complete_params(&c, k, t);
}

int tally_graph_ring(const uint8_t session[32], uint32_t n, uint32_t *ring, uint32_t *pos)
{
	tally_rng rng;
	uint64_t seed = 0, stream = 0;

	assert(session != NULL && ring != NULL && pos != NULL);
	if (n == 0)
		return tally_err(TALLY_EINVAL, "graph: empty cohort");
	for (int i = 7; i >= 0; i--) {
		seed = seed << 8 | session[i];
		stream = stream << 8 | session[8 + i];
	}
	tally_rng_seed(&rng, seed, stream);
	for (uint32_t i = 0; i < n; i++)
		ring[i] = i;
	tally_rng_shuffle_u32(&rng, ring, n);
	for (uint32_t p = 0; p < n; p++)
		pos[ring[p]] = p;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static int check_degree(uint32_t n, uint32_t k, uint32_t self)
{
	if (self >= n)
		return tally_err(TALLY_EINVAL, "graph: worker %u is not among %u", self, n);
	if (k == 0 || k >= n)
		return tally_err(TALLY_EINVAL, "graph: degree %u must be in 1..%u", k, n - 1);
	if (k % 2 != 0 && k != n - 1)
		return tally_err(TALLY_EINVAL, "graph: degree %u must be even (or %u, the complete graph)", k, n - 1);
	return 0;
}

int tally_graph_ring_neighbours(const uint32_t *ring, const uint32_t *pos, uint32_t n, uint32_t k,
				uint32_t self, uint32_t *out)
{
	int rc = check_degree(n, k, self);
	uint32_t p;

	if (rc < 0)
		return rc;
	assert(out != NULL);
	if (k == n - 1) {
		for (uint32_t i = 0, j = 0; i < n; i++)
			if (i != self)
				out[j++] = i;
		return 0;
	}
	assert(ring != NULL && pos != NULL);
	p = pos[self];
	for (uint32_t d = 1; d <= k / 2; d++) {
		out[2 * (d - 1)] = ring[((uint64_t)p + d) % n];
		out[2 * (d - 1) + 1] = ring[((uint64_t)p + n - d) % n];
	}
	qsort(out, k, sizeof(*out), cmp_u32);
	return 0;
}

int tally_graph_neighbours(const uint8_t session[32], uint32_t n, uint32_t k, uint32_t self, uint32_t *out)
{
	int rc = check_degree(n, k, self);
	uint32_t *ring = NULL, *pos = NULL;

	if (rc < 0)
		return rc;
	if (k == n - 1)
		return tally_graph_ring_neighbours(NULL, NULL, n, k, self, out);
	ring = malloc((size_t)n * sizeof(*ring));
	pos = malloc((size_t)n * sizeof(*pos));
	if (ring == NULL || pos == NULL) {
		rc = tally_err(TALLY_ENOMEM, "graph: no memory for a ring of %u workers", n);
		goto out;
	}
	rc = tally_graph_ring(session, n, ring, pos);
	if (rc == 0)
		rc = tally_graph_ring_neighbours(ring, pos, n, k, self, out);
out:
	free(ring);
	free(pos);
	return rc;
}
