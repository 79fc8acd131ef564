/*
 * Protocol tests for secure aggregation (tally/secagg.h). One coordinator state machine and n
 * worker state machines run in memory and are driven through every stage exactly as the daemons
 * would drive them: advertise, share keys, relay, masked input, unmask, finish. Identities are
 * real (Ed25519 keys, a roster file read back with tally_roster_load). Each round checks the
 * coordinator's U2, accepted, survivor and dropped lists against what the injected faults imply,
 * every revealed share against the rules (b for survivors, s for the dropped, never both, only
 * for neighbours whose box opened), and the unmasked sum bit for bit against the wrapping sum of
 * the survivors' own quantized encodings (each worker's rounding rng re-seeded identically), and
 * the mean against the weighted mean of the inputs.
 *
 * Faults: dropouts at every stage and in combination, too few workers at every stage, t - 1
 * revealed shares, a tampered share box, forged and substituted keys, a tampered s-share that
 * passes Shamir's range check, out-of-place messages, and the unmask request rules. Properties:
 * a masked vector is uniform (chi-square on its top byte) and is exactly the encoding plus one
 * self mask and one pairwise mask per neighbour (k + 1 keys; rebuilt from revealed shares).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "secagg_internal.h" /* sa_advert_digest, sa_session_id: to sign crafted adverts, rebuild masks */
#include "tally/error.h"
#include "tally/graph.h"
#include "tally/keys.h"
#include "tally/mask.h"
#include "tally/quant.h"
#include "tally/rng.h"
#include "tally/secagg.h"
#include "tally/shamir.h"

#define MAXN 100
#define CLIP 1.0
#define QRANGE32 (UINT64_C(1) << 16)
#define QRANGE64 (UINT64_C(1) << 30)
#define MAXW 50
#define ANY_RC 1 /* an expected return code meaning "success or any error" */

/* ---- identities: n workers with Ed25519 identities, and a roster file that enrols them ---- */

typedef struct world {
	uint32_t n;
	char name[MAXN][64];
	const char *names[MAXN];
	tally_keypair kp[MAXN];
	tally_roster *roster;
} world;

/* What a test still holds when an assertion fails: freed by the teardown, so LSan stays quiet. */
#define HELD_MAX 4
typedef struct sim sim;
static world *live_worlds[HELD_MAX];
static sim *live_sims[HELD_MAX];

static void hold(void **slots, void *x)
{
	for (size_t i = 0; i < HELD_MAX; i++)
		if (!slots[i]) {
			slots[i] = x;
			return;
		}
	fail_msg("too many live objects");
}

static void release(void **slots, void *x)
{
	for (size_t i = 0; i < HELD_MAX; i++)
		if (slots[i] == x)
			slots[i] = NULL;
}

static world *world_new(uint32_t n)
{
	char path[] = "/tmp/tally-test-secagg-roster.XXXXXX";
	world *w = calloc(1, sizeof(*w));
	FILE *f;
	int fd;

	assert_non_null(w);
	assert_true(n <= MAXN);
	w->n = n;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	for (uint32_t i = 0; i < n; i++) {
		tally_keypair *kp = &w->kp[i];
		char curve_pub[TALLY_Z85_KEY_LEN + 1], curve_sec[TALLY_Z85_KEY_LEN + 1], sign_z85[TALLY_Z85_KEY_LEN + 1];

		snprintf(w->name[i], sizeof(w->name[i]), "w%03u", i);
		w->names[i] = w->name[i];
		snprintf(kp->name, sizeof(kp->name), "%s", w->name[i]);
		assert_int_equal(zmq_curve_keypair(curve_pub, curve_sec), 0);
		memcpy(kp->public_z85, curve_pub, sizeof(curve_pub));
		kp->secret_z85 = sodium_malloc(TALLY_Z85_KEY_LEN + 1);
		assert_non_null(kp->secret_z85);
		memcpy(kp->secret_z85, curve_sec, sizeof(curve_sec));
		sodium_memzero(curve_sec, sizeof(curve_sec));
		kp->has_sign = true;
		kp->sign_secret = sodium_malloc(crypto_sign_SECRETKEYBYTES);
		assert_non_null(kp->sign_secret);
		assert_int_equal(crypto_sign_keypair(kp->sign_public, kp->sign_secret), 0);
		assert_non_null(zmq_z85_encode(sign_z85, kp->sign_public, 32));
		fprintf(f, "%s = \"%s %s\"\n", w->name[i], curve_pub, sign_z85);
	}
	assert_int_equal(fclose(f), 0);
	assert_int_equal(tally_roster_load(&w->roster, path), 0);
	unlink(path);
	assert_int_equal(tally_roster_size(w->roster), n);
	for (uint32_t i = 0; i < n; i++)
		assert_memory_equal(tally_roster_sign_key(w->roster, w->name[i]), w->kp[i].sign_public, 32);
	hold((void **)live_worlds, w);
	return w;
}

static void world_free(world *w)
{
	if (!w)
		return;
	release((void **)live_worlds, w);
	for (uint32_t i = 0; i < w->n; i++) {
		sodium_free(w->kp[i].secret_z85);
		sodium_free(w->kp[i].sign_secret);
	}
	tally_roster_destroy(&w->roster);
	free(w);
}

/* ---- one simulated round ---- */

/* Where a worker stops: it never advertises, never shares, never opens its relay, ... */
enum fate { LIVE, NO_ADVERT, NO_SHARE, NO_RELAY, NO_ACK, NO_INPUT, NO_REVEAL };

struct sim {
	world *w;
	tally_sa_params p;
	tally_sa_server *srv;
	tally_sa_client *cl[MAXN];
	uint8_t fate[MAXN];
	bool excl_u2[MAXN], excl_accept[MAXN]; /* to be left out by the protocol (forgery, tampering) */
	int advert_rc[MAXN], share_rc[MAXN];   /* what on_advert and client_share must return */
	uint64_t weight[MAXN];
	float *x[MAXN];
	tally_sa_advert adv[MAXN];             /* as each worker made it */
	bool advertised[MAXN], shared[MAXN], received[MAXN], added[MAXN], revealed[MAXN];
	bool rej_share[MAXN][MAXN], rej_ack[MAXN][MAXN];
	bool keep_masked;
	uint32_t *masked[MAXN];
	const tally_sa_advert *list;
	size_t n_list;
	uint8_t session[32];
	const uint32_t *u2, *accept, *dropped, *survivors;
	size_t n_u2, n_accept, n_dropped, n_survivors;
	uint32_t *sum;
	float *mean;
	uint64_t total_w;
	uint32_t *want, *enc;                  /* scratch, held here so that a failed assertion leaks nothing */
	tally_sa_advert *list_copy;
	double *num;
	uint32_t target, target2; /* parameters for the hooks below */
	void (*advert_hook)(sim *s, uint32_t i, tally_sa_advert *a);
	void (*list_hook)(sim *s, uint32_t i, tally_sa_advert *list, size_t n);
	void (*relay_hook)(sim *s, uint32_t to, tally_sa_box *boxes, size_t n);
	void (*reveal_hook)(sim *s, uint32_t from, tally_sa_reveal *r, size_t n);
};

static uint32_t *vec_alloc(const tally_sa_params *p)
{
	size_t bytes = (tally_sa_vector_words(p) * 4 + 63) & ~(size_t)63;
	uint32_t *v = aligned_alloc(64, bytes);

	assert_non_null(v);
	memset(v, 0, bytes);
	return v;
}

/* The rng a worker draws its rounding from: the same seed in client_mask and in the expectation. */
static void update_rng(tally_rng *rng, uint32_t i)
{
	tally_rng_seed(rng, 1000 + i, 77);
}

static sim *sim_new(world *w, uint32_t k, uint32_t t, uint32_t ring, uint64_t d, bool server_roster)
{
	sim *s = calloc(1, sizeof(*s));
	uint32_t n = w->n;

	assert_non_null(s);
	s->w = w;
	snprintf(s->p.run_id, sizeof(s->p.run_id), "secagg-test-%u-%u", n, ring);
	s->p.round = 7;
	s->p.n = n;
	s->p.k = k;
	s->p.t = t;
	s->p.quant.clip = CLIP;
	s->p.quant.qrange = ring == 32 ? QRANGE32 : QRANGE64;
	s->p.quant.ring_bits = ring;
	s->p.length = d;
	/* the sum of n updates of weight <= MAXW must not wrap, or nothing below can be exact */
	assert_true(tally_quant_ring_bits(n, MAXW, s->p.quant.qrange) != 0);
	assert_true(tally_quant_ring_bits(n, MAXW, s->p.quant.qrange) <= ring);
	assert_int_equal(tally_sa_params_check(&s->p), 0);
	assert_int_equal(tally_sa_server_new(&s->srv, &s->p, w->names, server_roster ? w->roster : NULL), 0);
	assert_int_equal(tally_sa_server_stage(s->srv), TALLY_SA_ADVERTISE);
	for (uint32_t i = 0; i < n; i++) {
		tally_rng rng;

		assert_int_equal(tally_sa_client_new(&s->cl[i], &s->p, w->names, w->roster, &w->kp[i]), 0);
		assert_int_equal(tally_sa_client_index(s->cl[i]), i);
		s->weight[i] = 1 + (i * 37 + 11) % MAXW;
		s->x[i] = malloc(d * sizeof(float));
		assert_non_null(s->x[i]);
		tally_rng_seed(&rng, i, 5);
		for (uint64_t e = 0; e < d; e++)
			s->x[i][e] = (float)((2 * tally_rng_uniform(&rng) - 1) * CLIP);
	}
	s->sum = vec_alloc(&s->p);
	s->mean = calloc(d, sizeof(float));
	assert_non_null(s->mean);
	hold((void **)live_sims, s);
	return s;
}

static void sim_free(sim *s)
{
	if (!s)
		return;
	release((void **)live_sims, s);
	tally_sa_server_destroy(&s->srv);
	assert_null(s->srv);
	for (uint32_t i = 0; i < s->p.n; i++) {
		tally_sa_client_destroy(&s->cl[i]);
		assert_null(s->cl[i]);
		free(s->x[i]);
		free(s->masked[i]);
	}
	free(s->sum);
	free(s->mean);
	free(s->want);
	free(s->enc);
	free(s->num);
	free(s->list_copy);
	free(s);
}

static int teardown(void **state)
{
	for (size_t i = 0; i < HELD_MAX; i++)
		sim_free(live_sims[i]);
	for (size_t i = 0; i < HELD_MAX; i++)
		world_free(live_worlds[i]);
	return 0;
}

static void nbrs_of(const sim *s, uint32_t i, uint32_t *out)
{
	assert_int_equal(tally_graph_neighbours(s->session, s->p.n, s->p.k, i, out), 0);
}

static bool is_nbr(const sim *s, uint32_t i, uint32_t j)
{
	uint32_t nbr[MAXN];

	nbrs_of(s, i, nbr);
	return sa_contains(nbr, s->p.k, j);
}

static void check_rc(int rc, int want)
{
	if (want == ANY_RC)
		assert_true(rc <= 0);
	else
		assert_int_equal(rc, want);
}

/* ---- stage 0 ---- */

static void send_adverts(sim *s)
{
	for (uint32_t i = 0; i < s->p.n; i++) {
		tally_sa_advert a;
		int rc;

		if (s->fate[i] == NO_ADVERT)
			continue;
		assert_int_equal(tally_sa_client_advertise(s->cl[i], &a), 0);
		assert_int_equal(a.index, i);
		s->adv[i] = a;
		if (s->advert_hook)
			s->advert_hook(s, i, &a);
		assert_true(tally_sa_server_expects(s->srv, i));
		rc = tally_sa_server_on_advert(s->srv, i, &a);
		check_rc(rc, s->advert_rc[i]);
		s->advertised[i] = rc == 0;
		assert_int_equal(tally_sa_server_expects(s->srv, i), rc != 0);
	}
}

static int close_advertise(sim *s)
{
	int rc = tally_sa_server_close_advertise(s->srv, &s->list, &s->n_list);
	size_t m = 0;

	if (rc)
		return rc;
	assert_int_equal(tally_sa_server_stage(s->srv), TALLY_SA_SHARE);
	for (uint32_t i = 0; i < s->p.n; i++) {
		if (!s->advertised[i])
			continue;
		assert_true(m < s->n_list);
		assert_int_equal(s->list[m].index, i);
		m++;
	}
	assert_int_equal(m, s->n_list);
	sa_session_id(&s->p, s->w->name, s->list, s->n_list, s->session);
	return 0;
}

static int stage_advertise(sim *s)
{
	send_adverts(s);
	return close_advertise(s);
}

/* ---- stage 1 ---- */

static void send_shares(sim *s)
{
	tally_sa_advert *copy = s->list_copy = malloc((s->n_list ? s->n_list : 1) * sizeof(*copy));

	assert_non_null(copy);
	for (uint32_t i = 0; i < s->p.n; i++) {
		tally_sa_box *boxes;
		uint32_t *rej;
		size_t nb, nr;
		int rc, want = s->advertised[i] ? s->share_rc[i] : TALLY_ECRYPTO;

		if (s->fate[i] == NO_ADVERT || s->fate[i] == NO_SHARE || s->shared[i])
			continue; /* absent, or already done by hand */
		memcpy(copy, s->list, s->n_list * sizeof(*copy));
		if (s->list_hook)
			s->list_hook(s, i, copy, s->n_list);
		rc = tally_sa_client_share(s->cl[i], copy, s->n_list, &boxes, &nb, &rej, &nr);
		check_rc(rc, want);
		if (rc) {
			assert_null(boxes);
			free(rej); /* whatever the contract on errors, do not leak here */
			continue;
		}
		assert_true(nb >= s->p.t && nb <= s->p.k);
		for (size_t b = 0; b < nb; b++) {
			assert_int_equal(boxes[b].from, i);
			assert_true(is_nbr(s, i, boxes[b].to));
		}
		for (size_t r = 0; r < nr; r++) {
			assert_true(rej[r] < s->p.n);
			s->rej_share[i][rej[r]] = true;
		}
		assert_true(tally_sa_server_expects(s->srv, i));
		assert_int_equal(tally_sa_server_on_shares(s->srv, i, boxes, nb, rej, nr), 0);
		assert_false(tally_sa_server_expects(s->srv, i));
		s->shared[i] = true;
		free(boxes);
		free(rej);
		/* Odd workers sum their masks now, as tally-worker does while the model downloads;
		 * even ones at the relay. Peers the relay leaves out are taken back out of the early
		 * sums, so every bit-exact check below covers both paths. */
		if (i % 2 == 1)
			assert_int_equal(tally_sa_client_prepare(s->cl[i]), 0);
	}
	free(copy);
	s->list_copy = NULL;
}

static int close_share(sim *s)
{
	int rc = tally_sa_server_close_share(s->srv, &s->u2, &s->n_u2);
	size_t m = 0;

	if (rc)
		return rc;
	assert_int_equal(tally_sa_server_stage(s->srv), TALLY_SA_RELAY);
	for (uint32_t i = 0; i < s->p.n; i++) {
		if (!s->shared[i] || s->excl_u2[i])
			continue;
		assert_true(m < s->n_u2);
		assert_int_equal(s->u2[m], i);
		m++;
	}
	assert_int_equal(m, s->n_u2);
	return 0;
}

static int stage_share(sim *s)
{
	send_shares(s);
	return close_share(s);
}

/* ---- stage 2 ---- */

static void send_acks(sim *s)
{
	for (size_t u = 0; u < s->n_u2; u++) {
		uint32_t j = s->u2[u], *rej;
		const tally_sa_box *boxes;
		tally_sa_box *copy;
		size_t nb, nr;

		if (s->fate[j] == NO_RELAY || s->received[j])
			continue;
		assert_int_equal(tally_sa_server_boxes_for(s->srv, j, &boxes, &nb), 0);
		assert_true(nb <= s->p.k);
		copy = malloc((nb ? nb : 1) * sizeof(*copy));
		assert_non_null(copy);
		for (size_t b = 0; b < nb; b++) {
			assert_int_equal(boxes[b].to, j);
			assert_true(sa_contains(s->u2, s->n_u2, boxes[b].from));
			copy[b] = boxes[b];
		}
		if (s->relay_hook)
			s->relay_hook(s, j, copy, nb);
		assert_int_equal(tally_sa_client_receive(s->cl[j], s->u2, s->n_u2, copy, nb, &rej, &nr), 0);
		s->received[j] = true;
		for (size_t r = 0; r < nr; r++) {
			assert_true(rej[r] < s->p.n);
			s->rej_ack[j][rej[r]] = true;
		}
		if (s->fate[j] != NO_ACK) {
			assert_true(tally_sa_server_expects(s->srv, j));
			assert_int_equal(tally_sa_server_on_ack(s->srv, j, rej, nr), 0);
			assert_false(tally_sa_server_expects(s->srv, j));
		}
		free(rej);
		free(copy);
	}
}

static int close_relay(sim *s)
{
	int rc = tally_sa_server_close_relay(s->srv, &s->accept, &s->n_accept);
	size_t m = 0;

	if (rc)
		return rc;
	assert_int_equal(tally_sa_server_stage(s->srv), TALLY_SA_INPUT);
	for (size_t u = 0; u < s->n_u2; u++) {
		if (s->excl_accept[s->u2[u]])
			continue;
		assert_true(m < s->n_accept);
		assert_int_equal(s->accept[m], s->u2[u]);
		m++;
	}
	assert_int_equal(m, s->n_accept);
	return 0;
}

static int stage_relay(sim *s)
{
	send_acks(s);
	return close_relay(s);
}

/* ---- stage 3 ---- */

static void add_into(const tally_sa_params *p, uint32_t *sum, const uint32_t *v)
{
	size_t elems = (size_t)p->length + 1;

	if (p->quant.ring_bits == 32) {
		for (size_t e = 0; e < elems; e++)
			sum[e] += v[e];
	} else {
		uint64_t *s64 = (uint64_t *)sum;
		const uint64_t *v64 = (const uint64_t *)v;

		for (size_t e = 0; e < elems; e++)
			s64[e] += v64[e];
	}
}

static void send_inputs(sim *s)
{
	for (size_t u = 0; u < s->n_u2; u++) {
		uint32_t j = s->u2[u], *v;
		bool accepted = sa_contains(s->accept, s->n_accept, j);
		tally_rng rng;

		if (!s->received[j] || s->fate[j] == NO_INPUT || s->added[j])
			continue;
		update_rng(&rng, j);
		assert_int_equal(tally_sa_client_mask(s->cl[j], s->x[j], s->weight[j], &rng, &v), 0);
		assert_non_null(v);
		assert_int_equal(tally_sa_server_expects(s->srv, j), accepted);
		if (accepted) {
			add_into(&s->p, s->sum, v);
			assert_int_equal(tally_sa_server_on_input(s->srv, j), 0);
			s->added[j] = true;
			assert_false(tally_sa_server_expects(s->srv, j));
		} else {
			assert_int_equal(tally_sa_server_on_input(s->srv, j), TALLY_EPROTO);
		}
		if (s->keep_masked)
			s->masked[j] = v;
		else
			free(v);
	}
}

static bool expect_survivor(const sim *s, uint32_t i)
{
	return (s->fate[i] == LIVE || s->fate[i] == NO_ACK || s->fate[i] == NO_REVEAL) && s->advertised[i] &&
	       s->shared[i] && !s->excl_u2[i] && !s->excl_accept[i];
}

static int close_input(sim *s)
{
	int rc = tally_sa_server_close_input(s->srv, &s->dropped, &s->n_dropped, &s->survivors, &s->n_survivors);
	size_t ms = 0, md = 0;

	if (rc)
		return rc;
	assert_int_equal(tally_sa_server_stage(s->srv), TALLY_SA_UNMASK);
	for (size_t u = 0; u < s->n_u2; u++) {
		uint32_t j = s->u2[u];

		assert_int_equal(s->added[j], expect_survivor(s, j));
		if (s->added[j]) {
			assert_true(ms < s->n_survivors);
			assert_int_equal(s->survivors[ms++], j);
		} else {
			assert_true(md < s->n_dropped);
			assert_int_equal(s->dropped[md++], j);
		}
	}
	assert_int_equal(ms, s->n_survivors);
	assert_int_equal(md, s->n_dropped);
	for (uint32_t i = 0; i < s->p.n; i++)
		if (expect_survivor(s, i))
			assert_true(sa_contains(s->survivors, s->n_survivors, i));
	return 0;
}

static int stage_input(sim *s)
{
	send_inputs(s);
	return close_input(s);
}

/* ---- stage 4 ---- */

/*
 * Worker j's reveals: exactly one share for each neighbour in U2 whose box it opened, of b for a
 * survivor and of s for a dropped one, at j's point; nothing else.
 */
static void check_reveals(const sim *s, uint32_t j, const tally_sa_reveal *r, size_t n)
{
	uint32_t nbr[MAXN];
	bool seen[MAXN] = {false};
	size_t want = 0;

	nbrs_of(s, j, nbr);
	for (size_t i = 0; i < n; i++) {
		uint32_t o = r[i].owner;

		assert_true(o < s->p.n);
		assert_false(seen[o]); /* never two shares (b and s) for one peer */
		seen[o] = true;
		assert_true(sa_contains(nbr, s->p.k, o));
		assert_int_equal(r[i].share.x, j + 1);
		if (sa_contains(s->survivors, s->n_survivors, o))
			assert_int_equal(r[i].kind, TALLY_SA_REVEAL_B);
		else if (sa_contains(s->dropped, s->n_dropped, o))
			assert_int_equal(r[i].kind, TALLY_SA_REVEAL_S);
		else
			fail_msg("worker %u revealed a share of %u, neither survivor nor dropped", j, o);
	}
	for (uint32_t i = 0; i < s->p.k; i++) {
		uint32_t o = nbr[i];
		bool due = sa_contains(s->u2, s->n_u2, o) && !s->rej_ack[j][o];

		assert_int_equal(seen[o], due);
		want += due;
	}
	assert_int_equal(n, want);
}

static void send_reveals(sim *s)
{
	for (size_t v = 0; v < s->n_survivors; v++) {
		uint32_t j = s->survivors[v];
		tally_sa_reveal *r;
		size_t n;

		if (s->fate[j] == NO_REVEAL || s->revealed[j])
			continue;
		assert_true(tally_sa_server_expects(s->srv, j));
		assert_int_equal(tally_sa_client_unmask(s->cl[j], s->dropped, s->n_dropped, s->survivors,
							s->n_survivors, &r, &n), 0);
		check_reveals(s, j, r, n);
		if (s->reveal_hook)
			s->reveal_hook(s, j, r, n);
		assert_int_equal(tally_sa_server_on_reveal(s->srv, j, r, n), 0);
		assert_false(tally_sa_server_expects(s->srv, j));
		s->revealed[j] = true;
		tally_sa_reveals_free(r);
	}
}

static int finish(sim *s)
{
	return tally_sa_server_finish(s->srv, s->sum, s->mean, &s->total_w);
}

/* The sum must be the wrapping sum of the survivors' encodings, bit for bit; the mean close. */
static void check_result(sim *s)
{
	uint64_t d = s->p.length, total = 0;
	double step = 2 * CLIP / (double)s->p.quant.qrange, worst = 0;
	uint32_t *want, *enc;
	double *num;

	want = s->want = vec_alloc(&s->p);
	enc = s->enc = vec_alloc(&s->p);
	num = s->num = calloc(d, sizeof(double));
	assert_non_null(num);
	assert_int_equal(tally_sa_server_stage(s->srv), TALLY_SA_DONE);
	assert_string_equal(tally_sa_server_reason(s->srv), "");
	for (size_t v = 0; v < s->n_survivors; v++) {
		uint32_t i = s->survivors[v];
		tally_rng rng;

		update_rng(&rng, i);
		assert_int_equal(tally_quant_encode(&s->p.quant, s->x[i], d, s->weight[i], &rng, enc), 0);
		add_into(&s->p, want, enc);
		total += s->weight[i];
		for (uint64_t e = 0; e < d; e++)
			num[e] += (double)s->weight[i] * s->x[i][e];
	}
	assert_memory_equal(s->sum, want, tally_sa_vector_words(&s->p) * 4);
	assert_int_equal(s->total_w, total);
	for (uint64_t e = 0; e < d; e++) {
		double err = fabs(s->mean[e] - num[e] / (double)total);

		worst = err > worst ? err : worst;
	}
	if (worst > step + 1e-6)
		fail_msg("mean off by %g (quantization step %g)", worst, step);
	free(num);
	free(want);
	free(enc);
	s->num = NULL, s->want = s->enc = NULL;
}

static void run_round(sim *s)
{
	assert_int_equal(stage_advertise(s), 0);
	assert_int_equal(stage_share(s), 0);
	assert_int_equal(stage_relay(s), 0);
	assert_int_equal(stage_input(s), 0);
	send_reveals(s);
	assert_int_equal(finish(s), 0);
	check_result(s);
}

static void graph_kt(uint32_t n, uint32_t *k, uint32_t *t)
{
	assert_int_equal(tally_graph_params(n, 0.05, 0.1, false, k, t), 0);
}

static void assert_aborted(const sim *s)
{
	assert_int_equal(tally_sa_server_stage(s->srv), TALLY_SA_ABORTED);
	assert_true(strlen(tally_sa_server_reason(s->srv)) > 0);
}

/* ---- no dropout ---- */

static void clean_round(uint32_t n, uint32_t ring, uint64_t d)
{
	world *w = world_new(n);
	uint32_t k, t;
	sim *s;

	graph_kt(n, &k, &t);
	s = sim_new(w, k, t, ring, d, true);
	run_round(s);
	assert_int_equal(s->n_survivors, n);
	assert_int_equal(s->n_dropped, 0);
	sim_free(s);
	world_free(w);
}

static void test_n3_ring32(void **state) { clean_round(3, 32, 1000); }
static void test_n3_ring64(void **state) { clean_round(3, 64, 1000); }
static void test_n10_ring32(void **state) { clean_round(10, 32, 1000); }
static void test_n10_ring64(void **state) { clean_round(10, 64, 1000); }
static void test_n100_ring32(void **state) { clean_round(100, 32, 200); }
static void test_n100_ring64(void **state) { clean_round(100, 64, 200); }

/* ---- dropouts ---- */

/* n = 10 with k, t from the graph parameters; fates as given (index, fate) pairs, -1 ends. */
static sim *dropout_round(world *w, uint32_t ring, const int *pairs)
{
	uint32_t k, t;
	sim *s;

	graph_kt(w->n, &k, &t);
	s = sim_new(w, k, t, ring, 1000, true);
	for (size_t i = 0; pairs[i] >= 0; i += 2)
		s->fate[pairs[i]] = (uint8_t)pairs[i + 1];
	run_round(s);
	return s;
}

static void single_dropout(int who, enum fate f, size_t want_survivors, size_t want_dropped)
{
	world *w = world_new(10);
	int pairs[] = {who, f, -1};
	sim *s = dropout_round(w, 32, pairs);

	assert_int_equal(s->n_survivors, want_survivors);
	assert_int_equal(s->n_dropped, want_dropped);
	if (f == NO_ADVERT || f == NO_SHARE)
		assert_false(sa_contains(s->u2, s->n_u2, (uint32_t)who));
	if (f == NO_RELAY || f == NO_INPUT)
		assert_true(sa_contains(s->dropped, s->n_dropped, (uint32_t)who));
	if (f == NO_ACK || f == NO_REVEAL)
		assert_true(sa_contains(s->survivors, s->n_survivors, (uint32_t)who));
	sim_free(s);
	world_free(w);
}

static void test_drop_no_advert(void **state) { single_dropout(3, NO_ADVERT, 9, 0); }
static void test_drop_no_share(void **state) { single_dropout(4, NO_SHARE, 9, 0); }
/* shares, never opens its relay nor sends anything after: its pairwise masks come off via s */
static void test_drop_no_relay(void **state) { single_dropout(0, NO_RELAY, 9, 1); }
/* its acknowledgement is lost, but its masked input counts */
static void test_drop_no_ack(void **state) { single_dropout(5, NO_ACK, 10, 0); }
/* after share keys, before masked input: pairwise masks removed via its reconstructed key */
static void test_drop_no_input(void **state) { single_dropout(6, NO_INPUT, 9, 1); }
/* masked input in, never reveals: its self mask still removed from others' shares */
static void test_drop_no_reveal(void **state) { single_dropout(9, NO_REVEAL, 10, 0); }

static void test_drop_combined_n10(void **state)
{
	world *w = world_new(10);
	int pairs[] = {1, NO_ADVERT, 2, NO_SHARE, 3, NO_RELAY, 4, NO_ACK, 5, NO_INPUT, 8, NO_REVEAL, -1};
	sim *s = dropout_round(w, 64, pairs);

	assert_int_equal(s->n_u2, 8);
	assert_int_equal(s->n_survivors, 6);
	assert_int_equal(s->n_dropped, 2);
	sim_free(s);
	world_free(w);
}

static void test_drop_combined_n10_many(void **state)
{
	world *w = world_new(10);
	int pairs[] = {0, NO_INPUT, 2, NO_REVEAL, 4, NO_INPUT, 6, NO_REVEAL, 7, NO_ACK, 9, NO_RELAY, -1};
	sim *s = dropout_round(w, 32, pairs);

	assert_int_equal(s->n_survivors, 7);
	assert_int_equal(s->n_dropped, 3);
	sim_free(s);
	world_free(w);
}

static void combined_n100(uint32_t ring)
{
	world *w = world_new(100);
	uint32_t k, t;
	sim *s;

	graph_kt(100, &k, &t);
	assert_true(k < 99); /* a sparse graph: masks only with neighbours */
	s = sim_new(w, k, t, ring, 200, true);
	for (uint32_t i = 5; i < 100; i += 10)
		s->fate[i] = NO_INPUT; /* 10% at the input stage */
	s->fate[0] = NO_ADVERT;
	s->fate[50] = NO_REVEAL;
	if (ring == 64) {
		s->fate[11] = NO_SHARE;
		s->fate[22] = NO_ACK;
		s->fate[33] = NO_RELAY;
	}
	run_round(s);
	assert_int_equal(s->n_survivors, ring == 64 ? 87 : 89);
	assert_int_equal(s->n_dropped, ring == 64 ? 11 : 10);
	sim_free(s);
	world_free(w);
}

static void test_drop_combined_n100_ring32(void **state) { combined_n100(32); }
static void test_drop_combined_n100_ring64(void **state) { combined_n100(64); }

/* ---- too few workers ---- */

static sim *quorum_sim(world *w, enum fate f, uint32_t from)
{
	sim *s = sim_new(w, 9, 5, 32, 100, true);

	for (uint32_t i = from; i < 10; i++)
		s->fate[i] = (uint8_t)f;
	return s;
}

static void test_quorum_advertise(void **state)
{
	world *w = world_new(10);
	sim *s = quorum_sim(w, NO_ADVERT, 4);
	const tally_sa_advert *list = NULL;
	size_t n = 0;

	assert_int_equal(stage_advertise(s), TALLY_EQUORUM);
	assert_aborted(s);
	assert_int_equal(tally_sa_server_close_advertise(s->srv, &list, &n), TALLY_EPROTO);
	assert_null(list);
	assert_int_equal(tally_sa_server_on_advert(s->srv, 0, &s->adv[0]), TALLY_EPROTO);
	assert_int_equal(tally_sa_server_on_shares(s->srv, 0, NULL, 0, NULL, 0), TALLY_EPROTO);
	for (uint32_t i = 0; i < 10; i++)
		assert_false(tally_sa_server_expects(s->srv, i));
	sim_free(s);
	world_free(w);
}

static void test_quorum_share(void **state)
{
	world *w = world_new(10);
	sim *s = quorum_sim(w, NO_SHARE, 4);

	assert_int_equal(stage_advertise(s), 0);
	assert_int_equal(stage_share(s), TALLY_EQUORUM);
	assert_aborted(s);
	assert_int_equal(tally_sa_server_on_ack(s->srv, 0, NULL, 0), TALLY_EPROTO);
	assert_int_equal(tally_sa_server_close_share(s->srv, &s->u2, &s->n_u2), TALLY_EPROTO);
	sim_free(s);
	world_free(w);
}

/* Boxes from workers 4..9 are all corrupted in the relay: only 4 hold valid shares. */
static void corrupt_from_target(sim *s, uint32_t to, tally_sa_box *boxes, size_t n)
{
	for (size_t b = 0; b < n; b++)
		if (boxes[b].from >= s->target)
			boxes[b].data[3] ^= 0x40;
}

static void test_quorum_relay(void **state)
{
	world *w = world_new(10);
	sim *s = sim_new(w, 9, 5, 32, 100, true);

	s->target = 4;
	s->relay_hook = corrupt_from_target;
	for (uint32_t i = 4; i < 10; i++)
		s->excl_accept[i] = true;
	assert_int_equal(stage_advertise(s), 0);
	assert_int_equal(stage_share(s), 0);
	assert_int_equal(stage_relay(s), TALLY_EQUORUM);
	assert_aborted(s);
	assert_int_equal(tally_sa_server_on_input(s->srv, 0), TALLY_EPROTO);
	sim_free(s);
	world_free(w);
}

static void test_quorum_input(void **state)
{
	world *w = world_new(10);
	sim *s = quorum_sim(w, NO_INPUT, 4);
	tally_sa_reveal r;

	assert_int_equal(stage_advertise(s), 0);
	assert_int_equal(stage_share(s), 0);
	assert_int_equal(stage_relay(s), 0);
	send_inputs(s);
	assert_int_equal(tally_sa_server_close_input(s->srv, &s->dropped, &s->n_dropped, &s->survivors,
						    &s->n_survivors), TALLY_EQUORUM);
	assert_aborted(s);
	memset(&r, 0, sizeof(r));
	r.owner = 1;
	r.kind = TALLY_SA_REVEAL_B;
	r.share.x = 1;
	assert_int_equal(tally_sa_server_on_reveal(s->srv, 0, &r, 1), TALLY_EPROTO);
	assert_int_equal(finish(s), TALLY_EPROTO);
	sim_free(s);
	world_free(w);

	/* the graph's own threshold (t = 2 for 10 workers): one survivor is too few */
	w = world_new(10);
	{
		uint32_t k, t;

		graph_kt(10, &k, &t);
		assert_int_equal(t, 2);
		s = sim_new(w, k, t, 64, 100, true);
	}
	for (uint32_t i = 1; i < 10; i++)
		s->fate[i] = NO_INPUT;
	assert_int_equal(stage_advertise(s), 0);
	assert_int_equal(stage_share(s), 0);
	assert_int_equal(stage_relay(s), 0);
	assert_int_equal(stage_input(s), TALLY_EQUORUM);
	assert_aborted(s);
	sim_free(s);
	world_free(w);
}

static void test_abort(void **state)
{
	world *w = world_new(3);
	sim *s = sim_new(w, 2, 2, 32, 10, true);

	assert_int_equal(stage_advertise(s), 0);
	tally_sa_server_abort(s->srv, "the coordinator is stopping");
	assert_int_equal(tally_sa_server_stage(s->srv), TALLY_SA_ABORTED);
	assert_string_equal(tally_sa_server_reason(s->srv), "the coordinator is stopping");
	assert_int_equal(tally_sa_server_on_shares(s->srv, 0, NULL, 0, NULL, 0), TALLY_EPROTO);
	assert_int_equal(tally_sa_server_close_share(s->srv, &s->u2, &s->n_u2), TALLY_EPROTO);
	assert_int_equal(finish(s), TALLY_EPROTO);
	sim_free(s);
	world_free(w);
}

/* ---- t - 1 shares ---- */

static void reveal_limit(uint32_t revealers, int want)
{
	world *w = world_new(10);
	sim *s = sim_new(w, 9, 5, 32, 100, true);

	for (uint32_t i = revealers; i < 10; i++)
		s->fate[i] = NO_REVEAL;
	assert_int_equal(stage_advertise(s), 0);
	assert_int_equal(stage_share(s), 0);
	assert_int_equal(stage_relay(s), 0);
	assert_int_equal(stage_input(s), 0);
	send_reveals(s);
	assert_int_equal(finish(s), want);
	if (want == 0) {
		check_result(s);
	} else {
		assert_aborted(s);
		assert_int_equal(finish(s), TALLY_EPROTO); /* the sum is never accepted */
	}
	sim_free(s);
	world_free(w);
}

/*
 * t = 5 and 5 revealers 0..4: each revealer's own b has only the other 4 = t - 1 shares (the
 * non-revealers' b has 5). With a sixth revealer every b has at least t: the control.
 */
static void test_t_minus_1_shares(void **state)
{
	reveal_limit(5, TALLY_EQUORUM);
	reveal_limit(6, 0);
}

/* ---- a tampered share box ---- */

static void flip_target_box(sim *s, uint32_t to, tally_sa_box *boxes, size_t n)
{
	if (to != s->target2)
		return;
	for (size_t b = 0; b < n; b++)
		if (boxes[b].from == s->target)
			boxes[b].data[TALLY_SA_BOX_BYTES / 2] ^= 0x01;
}

static void test_tampered_box(void **state)
{
	world *w = world_new(10);
	uint32_t k, t;
	sim *s;

	graph_kt(10, &k, &t);
	s = sim_new(w, k, t, 32, 1000, true);
	s->target = 3;  /* sender */
	s->target2 = 7; /* recipient */
	s->relay_hook = flip_target_box;
	s->excl_accept[3] = true;
	run_round(s);
	for (uint32_t i = 0; i < 10; i++)
		for (uint32_t j = 0; j < 10; j++)
			assert_int_equal(s->rej_ack[i][j], i == 7 && j == 3);
	assert_true(sa_contains(s->u2, s->n_u2, 3));
	assert_false(sa_contains(s->accept, s->n_accept, 3));
	assert_int_equal(s->n_dropped, 1);
	assert_int_equal(s->dropped[0], 3);
	assert_int_equal(s->n_survivors, 9);
	sim_free(s);
	world_free(w);
}

/* ---- forged and substituted keys ---- */

static void forge_sig(sim *s, uint32_t i, tally_sa_advert *a)
{
	if (i == s->target)
		a->sig[5] ^= 0x20;
}

static void forge_s_pk(sim *s, uint32_t i, tally_sa_advert *a)
{
	if (i == s->target)
		a->s_pk[0] ^= 0x01;
}

/* A coordinator without a roster passes a forged advert on; every worker rejects it. */
static void forged_round(void (*hook)(sim *, uint32_t, tally_sa_advert *), bool own_keys_altered)
{
	world *w = world_new(10);
	uint32_t k, t, *rej;
	size_t nr;
	sim *s;

	graph_kt(10, &k, &t);
	s = sim_new(w, k, t, 32, 500, false);
	s->target = 4;
	s->advert_hook = hook;
	s->excl_u2[4] = true;
	if (own_keys_altered)
		s->share_rc[4] = TALLY_ECRYPTO; /* its own entry changed: the list is a lie */
	assert_int_equal(stage_advertise(s), 0);
	assert_int_equal(s->n_list, 10);
	assert_int_equal(stage_share(s), 0);
	for (uint32_t i = 0; i < 10; i++)
		for (uint32_t j = 0; j < 10; j++)
			assert_int_equal(s->rej_share[i][j], i != 4 && j == 4);
	assert_false(sa_contains(s->u2, s->n_u2, 4));
	if (!own_keys_altered) /* it shared; now it learns it was dropped */
		assert_int_equal(tally_sa_client_receive(s->cl[4], s->u2, s->n_u2, NULL, 0, &rej, &nr), TALLY_EPROTO);
	assert_int_equal(stage_relay(s), 0);
	assert_int_equal(stage_input(s), 0);
	send_reveals(s);
	assert_int_equal(finish(s), 0);
	check_result(s);
	assert_int_equal(s->n_survivors, 9);
	assert_int_equal(s->n_dropped, 0);
	sim_free(s);
	world_free(w);
}

static void test_forged_signature(void **state) { forged_round(forge_sig, false); }
static void test_forged_key(void **state) { forged_round(forge_s_pk, true); }

/* A coordinator with the roster refuses what is not signed by the enrolled identity. */
static void test_server_refuses_forged_advert(void **state)
{
	world *w = world_new(10);
	uint32_t k, t;
	tally_sa_advert a, b;
	uint8_t d[32];
	sim *s;

	graph_kt(10, &k, &t);
	s = sim_new(w, k, t, 32, 100, true);
	assert_int_equal(tally_sa_client_advertise(s->cl[2], &a), 0);
	b = a;
	b.sig[0] ^= 1;
	assert_int_equal(tally_sa_server_on_advert(s->srv, 2, &b), TALLY_ECRYPTO);
	b = a;
	b.c_pk[31] ^= 0x80;
	assert_int_equal(tally_sa_server_on_advert(s->srv, 2, &b), TALLY_ECRYPTO);
	/* correctly signed, but by worker 3's identity */
	b = a;
	sa_advert_digest(&s->p, w->name[2], &b, d);
	crypto_sign_detached(b.sig, NULL, d, sizeof(d), w->kp[3].sign_secret);
	assert_int_equal(tally_sa_server_on_advert(s->srv, 2, &b), TALLY_ECRYPTO);
	/* worker 3's index and name, worker 2's keys */
	b = a;
	b.index = 3;
	assert_int_equal(tally_sa_server_on_advert(s->srv, 3, &b), TALLY_ECRYPTO);
	assert_int_equal(tally_sa_server_on_advert(s->srv, 3, &a), TALLY_EPROTO); /* index 2 from 3 */
	assert_int_equal(tally_sa_server_on_advert(s->srv, 10, &a), TALLY_EPROTO);
	assert_true(tally_sa_server_expects(s->srv, 2)); /* refusals left no trace */
	assert_true(tally_sa_server_expects(s->srv, 3));
	assert_int_equal(tally_sa_server_on_advert(s->srv, 2, &a), 0);
	assert_int_equal(tally_sa_server_on_advert(s->srv, 2, &a), TALLY_EPROTO); /* duplicate */
	sim_free(s);
	world_free(w);

	/* a forged advert refused in stage 0: the round goes on without that worker */
	w = world_new(10);
	s = sim_new(w, k, t, 32, 300, true);
	s->target = 6;
	s->advert_hook = forge_sig;
	s->advert_rc[6] = TALLY_ECRYPTO;
	run_round(s);
	assert_int_equal(s->n_list, 9);
	assert_int_equal(s->n_survivors, 9);
	sim_free(s);
	world_free(w);
}

static void substitute_own(sim *s, uint32_t i, tally_sa_advert *list, size_t n)
{
	if (i != s->target)
		return;
	for (size_t m = 0; m < n; m++)
		if (list[m].index == i)
			list[m].c_pk[7] ^= 0x10;
}

static void test_own_keys_substituted(void **state)
{
	world *w = world_new(10);
	tally_sa_advert *list;
	tally_sa_box *boxes;
	uint32_t k, t, *rej;
	size_t nb, nr;
	sim *s;

	graph_kt(10, &k, &t);
	s = sim_new(w, k, t, 32, 100, true);
	assert_int_equal(stage_advertise(s), 0);
	list = malloc(s->n_list * sizeof(*list));
	assert_non_null(list);
	/* its s key replaced */
	memcpy(list, s->list, s->n_list * sizeof(*list));
	list[2].s_pk[0] ^= 1;
	assert_int_equal(tally_sa_client_share(s->cl[2], list, s->n_list, &boxes, &nb, &rej, &nr), TALLY_ECRYPTO);
	assert_null(boxes);
	free(rej);
	/* its c key replaced by another worker's, signature and all */
	memcpy(list, s->list, s->n_list * sizeof(*list));
	memcpy(list[2].c_pk, list[3].c_pk, 32);
	assert_int_equal(tally_sa_client_share(s->cl[2], list, s->n_list, &boxes, &nb, &rej, &nr), TALLY_ECRYPTO);
	assert_null(boxes);
	free(rej);
	/* left out of the list */
	memcpy(list, s->list, 2 * sizeof(*list));
	memcpy(list + 2, s->list + 3, (s->n_list - 3) * sizeof(*list));
	assert_int_equal(tally_sa_client_share(s->cl[2], list, s->n_list - 1, &boxes, &nb, &rej, &nr),
			 TALLY_ECRYPTO);
	assert_null(boxes);
	free(rej);
	free(list);
	sim_free(s);
	world_free(w);

	/* in a whole round: the worker whose keys were substituted stays out, the rest completes */
	w = world_new(10);
	s = sim_new(w, k, t, 32, 200, true);
	s->target = 8;
	s->list_hook = substitute_own;
	s->share_rc[8] = TALLY_ECRYPTO;
	run_round(s);
	assert_false(sa_contains(s->u2, s->n_u2, 8));
	assert_int_equal(s->n_survivors, 9);
	sim_free(s);
	world_free(w);
}

/* ---- unmask rules ---- */

static void test_unmask_rules(void **state)
{
	world *w = world_new(10);
	uint32_t k, t, both[10], fewer[10];
	tally_sa_reveal *r;
	size_t n, m = 0;
	sim *s;

	graph_kt(10, &k, &t);
	s = sim_new(w, k, t, 32, 300, true);
	s->fate[9] = NO_INPUT;
	assert_int_equal(stage_advertise(s), 0);
	assert_int_equal(stage_share(s), 0);
	assert_int_equal(stage_relay(s), 0);
	assert_int_equal(stage_input(s), 0);
	assert_int_equal(s->n_dropped, 1);
	assert_int_equal(s->dropped[0], 9);

	/* the dropped worker never masked: it reveals nothing */
	assert_int_equal(tally_sa_client_unmask(s->cl[9], s->dropped, s->n_dropped, s->survivors, s->n_survivors,
						&r, &n), TALLY_EPROTO);
	assert_null(r);
	/* a peer both dropped and survivor */
	for (uint32_t i = 0; i < 10; i++)
		both[i] = i;
	assert_int_equal(tally_sa_client_unmask(s->cl[0], s->dropped, s->n_dropped, both, 10, &r, &n), TALLY_EPROTO);
	assert_null(r);
	assert_int_equal(n, 0);
	/* the worker itself left out of the survivors */
	for (uint32_t i = 1; i < 9; i++)
		fewer[m++] = i;
	assert_int_equal(tally_sa_client_unmask(s->cl[0], s->dropped, s->n_dropped, fewer, m, &r, &n), TALLY_EPROTO);
	assert_null(r);
	/* malformed lists: unsorted, repeated, out of range */
	both[0] = 1, both[1] = 0;
	assert_int_equal(tally_sa_client_unmask(s->cl[0], s->dropped, s->n_dropped, both, 9, &r, &n), TALLY_EPROTO);
	both[0] = 0, both[1] = 0;
	assert_int_equal(tally_sa_client_unmask(s->cl[0], s->dropped, s->n_dropped, both, 9, &r, &n), TALLY_EPROTO);
	both[0] = 0, both[1] = 1, both[8] = 10;
	assert_int_equal(tally_sa_client_unmask(s->cl[0], s->dropped, s->n_dropped, both, 9, &r, &n), TALLY_EPROTO);
	assert_int_equal(tally_sa_client_unmask(s->cl[0], both + 8, 1, s->survivors, s->n_survivors, &r, &n),
			 TALLY_EPROTO);
	/* refusals did not use up the one answer: the proper request is answered, b and s apart */
	assert_int_equal(tally_sa_client_unmask(s->cl[0], s->dropped, s->n_dropped, s->survivors, s->n_survivors,
						&r, &n), 0);
	check_reveals(s, 0, r, n);
	assert_int_equal(n, 9);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(r[i].kind, r[i].owner == 9 ? TALLY_SA_REVEAL_S : TALLY_SA_REVEAL_B);
	assert_int_equal(tally_sa_server_on_reveal(s->srv, 0, r, n), 0);
	s->revealed[0] = true;
	tally_sa_reveals_free(r);
	/* a second request, even a different one, is refused */
	assert_int_equal(tally_sa_client_unmask(s->cl[0], s->dropped, s->n_dropped, s->survivors, s->n_survivors,
						&r, &n), TALLY_EPROTO);
	assert_null(r);
	assert_int_equal(tally_sa_client_unmask(s->cl[0], NULL, 0, both, 9, &r, &n), TALLY_EPROTO);
	assert_null(r);
	/* the others reveal; the round completes */
	send_reveals(s);
	assert_int_equal(finish(s), 0);
	check_result(s);
	sim_free(s);
	world_free(w);
}

/* ---- a masked vector is uniform ---- */

static void test_masked_uniform(void **state)
{
	world *w = world_new(3);
	uint64_t d = 100000, counts[256] = {0}, differ = 0;
	uint32_t *enc;
	double expect = (double)d / 256, chi2 = 0;
	tally_rng rng;
	sim *s = sim_new(w, 2, 2, 32, d, true);

	memset(s->x[0], 0, d * sizeof(float));
	s->keep_masked = true;
	run_round(s);
	assert_non_null(s->masked[0]);
	for (uint64_t e = 0; e < d; e++)
		counts[s->masked[0][e] >> 24]++;
	for (int b = 0; b < 256; b++)
		chi2 += ((double)counts[b] - expect) * ((double)counts[b] - expect) / expect;
	/* 255 degrees of freedom: mean 255, sd 22.6; 450 is over 8 sd */
	if (chi2 > 450)
		fail_msg("top byte of a masked vector is not uniform: chi-square %g over 255 dof", chi2);
	enc = vec_alloc(&s->p);
	update_rng(&rng, 0);
	assert_int_equal(tally_quant_encode(&s->p.quant, s->x[0], d, s->weight[0], &rng, enc), 0);
	for (uint64_t e = 0; e < d; e++)
		differ += enc[e] != s->masked[0][e];
	assert_true(differ > d * 99 / 100);
	/* zeros encode to one level: every position equal before masking */
	for (uint64_t e = 1; e < d; e++)
		assert_int_equal(enc[e], enc[0]);
	free(enc);
	sim_free(s);
	world_free(w);
}

/* ---- cost: a masked vector holds exactly k + 1 masks ---- */

static void add_mask(const tally_sa_params *p, uint32_t *v, const uint8_t key[TALLY_MASK_KEY], int sign)
{
	if (p->quant.ring_bits == 32)
		tally_mask_add_u32(v, (size_t)p->length + 1, 0, key, sign);
	else
		tally_mask_add_u64((uint64_t *)v, (size_t)p->length + 1, 0, key, sign);
}

/* Asks neighbour j to unmask, and keeps its share of owner's secret of the given kind. */
static void share_of(sim *s, uint32_t j, uint32_t owner, bool as_dropped, tally_share *out)
{
	uint32_t surv[MAXN], dropped[1] = {owner};
	size_t ns = 0, n;
	tally_sa_reveal *r;
	bool found = false;

	for (size_t u = 0; u < s->n_u2; u++)
		if (!as_dropped || s->u2[u] != owner)
			surv[ns++] = s->u2[u];
	assert_int_equal(tally_sa_client_unmask(s->cl[j], dropped, as_dropped, surv, ns, &r, &n), 0);
	for (size_t i = 0; i < n; i++) {
		if (r[i].owner != owner)
			continue;
		assert_int_equal(r[i].kind, as_dropped ? TALLY_SA_REVEAL_S : TALLY_SA_REVEAL_B);
		*out = r[i].share;
		found = true;
	}
	assert_true(found);
	tally_sa_reveals_free(r);
}

/*
 * Counting key derivations would need a hook inside libtally (the calls stay within one object
 * of a static library). Instead the masked vector of worker 0 is rebuilt from outside: its b and
 * s secret keys are reconstructed from t neighbours each (two disjoint sets of t, possible as
 * 2t <= k; the semi-honest model lets a server do this, which is why t must exceed k/2 against a
 * semi-malicious one), and the vector must equal, bit for bit, its encoding plus PRG(b) plus
 * +-PRG(s_0j) for the k neighbours j: k + 1 masks, none for any of the n - 1 - k others.
 */
static void test_mask_composition(void **state)
{
	world *w = world_new(100);
	tally_share bs[MAXN], ss[MAXN];
	uint8_t b[32], sk[32], pk[32], key[TALLY_MASK_KEY];
	uint32_t k, t, nbr[MAXN], *v;
	unsigned keys = 0;
	tally_rng rng;
	sim *s;

	graph_kt(100, &k, &t);
	assert_true(k < 99 && 2 * t <= k);
	s = sim_new(w, k, t, 32, 200, true);
	s->keep_masked = true;
	assert_int_equal(stage_advertise(s), 0);
	assert_int_equal(stage_share(s), 0);
	assert_int_equal(stage_relay(s), 0);
	assert_int_equal(stage_input(s), 0);
	nbrs_of(s, 0, nbr);
	for (uint32_t i = 0; i < t; i++) {
		share_of(s, nbr[i], 0, false, &bs[i]);
		share_of(s, nbr[t + i], 0, true, &ss[i]);
	}
	assert_int_equal(tally_shamir_combine(bs, t, t, b), 0);
	assert_int_equal(tally_shamir_combine(ss, t, t, sk), 0);
	assert_int_equal(crypto_scalarmult_base(pk, sk), 0);
	assert_memory_equal(pk, s->adv[0].s_pk, 32);

	v = vec_alloc(&s->p);
	update_rng(&rng, 0);
	assert_int_equal(tally_quant_encode(&s->p.quant, s->x[0], s->p.length, s->weight[0], &rng, v), 0);
	tally_mask_kdf(key, b, TALLY_MASK_SELF, s->session, s->p.round, s->p.length + 1);
	add_mask(&s->p, v, key, +1);
	keys++;
	for (uint32_t i = 0; i < k; i++) {
		assert_int_equal(tally_mask_agree(key, sk, s->adv[nbr[i]].s_pk, TALLY_MASK_PAIR, s->session, s->p.round,
						  s->p.length + 1), 0);
		add_mask(&s->p, v, key, +1); /* worker 0 is below every neighbour */
		keys++;
	}
	assert_int_equal(keys, k + 1);
	assert_memory_equal(v, s->masked[0], tally_sa_vector_words(&s->p) * 4);
	/* the check can fail: without the last neighbour's mask the vectors differ */
	add_mask(&s->p, v, key, -1);
	assert_memory_not_equal(v, s->masked[0], tally_sa_vector_words(&s->p) * 4);
	sodium_memzero(b, sizeof(b));
	sodium_memzero(sk, sizeof(sk));
	free(v);
	sim_free(s);
	world_free(w);
}

/* ---- a tampered s-share that passes the range check ---- */

#define P TALLY_SHAMIR_PRIME

static uint64_t gf_mul(uint64_t a, uint64_t b)
{
	return (uint64_t)((unsigned __int128)a * b % P);
}

static uint64_t gf_inv(uint64_t a)
{
	uint64_t r = 1, e = P - 2;

	while (e) {
		if (e & 1)
			r = gf_mul(r, a);
		a = gf_mul(a, a);
		e >>= 1;
	}
	return r;
}

/*
 * Revealer 0's s-share of `target` shifted so that the secret rebuilt from the first two shares
 * (points 1 and 2, t = 2) has limb 0 higher by 8: y0 += 8 (x1 - x0) / x1. Every limb stays in
 * range, so only the check against the advertised public key can notice. (Not by 1: X25519
 * clamps the low three bits away, and a key that differs only there is the same key.)
 */
static void shift_s_share(sim *s, uint32_t from, tally_sa_reveal *r, size_t n)
{
	if (from != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (r[i].owner != s->target || r[i].kind != TALLY_SA_REVEAL_S)
			continue;
		assert_int_equal(r[i].share.x, 1);
		r[i].share.y[0] = (r[i].share.y[0] + gf_mul(8 * (2 - 1), gf_inv(2))) % P;
	}
}

static void test_tampered_s_share(void **state)
{
	world *w = world_new(10);
	uint32_t k, t;
	sim *s;

	graph_kt(10, &k, &t);
	assert_int_equal(t, 2);
	s = sim_new(w, k, t, 32, 100, true);
	s->fate[9] = NO_INPUT;
	s->target = 9;
	s->reveal_hook = shift_s_share;
	assert_int_equal(stage_advertise(s), 0);
	assert_int_equal(stage_share(s), 0);
	assert_int_equal(stage_relay(s), 0);
	assert_int_equal(stage_input(s), 0);
	send_reveals(s);
	assert_int_equal(finish(s), TALLY_ECRYPTO);
	assert_aborted(s);
	sim_free(s);
	world_free(w);
}

/* ---- out-of-place messages at the coordinator ---- */

static void test_server_out_of_place(void **state)
{
	world *w = world_new(10);
	sim *s = sim_new(w, 4, 2, 32, 50, true); /* a sparse graph: k = 4 of 9 */
	tally_sa_box box, five[5], *boxes;
	tally_sa_reveal rv[8], *r;
	const tally_sa_box *cb;
	uint32_t nbr[MAXN], far = 0, *rej;
	size_t nb, nr, n;

	memset(&box, 0, sizeof(box));
	memset(rv, 0, sizeof(rv));
	assert_int_equal(tally_sa_server_on_shares(s->srv, 0, &box, 1, NULL, 0), TALLY_EPROTO);
	assert_int_equal(tally_sa_server_on_ack(s->srv, 0, NULL, 0), TALLY_EPROTO);
	assert_int_equal(tally_sa_server_on_input(s->srv, 0), TALLY_EPROTO);
	assert_int_equal(tally_sa_server_on_reveal(s->srv, 0, rv, 1), TALLY_EPROTO);
	assert_int_equal(tally_sa_server_boxes_for(s->srv, 0, &cb, &nb), TALLY_EPROTO);
	assert_int_equal(tally_sa_server_close_share(s->srv, &s->u2, &s->n_u2), TALLY_EPROTO);
	assert_int_equal(tally_sa_server_close_relay(s->srv, &s->accept, &s->n_accept), TALLY_EPROTO);
	assert_int_equal(tally_sa_server_close_input(s->srv, &s->dropped, &s->n_dropped, &s->survivors,
						    &s->n_survivors), TALLY_EPROTO);
	assert_int_equal(finish(s), TALLY_EPROTO);
	assert_false(tally_sa_server_expects(s->srv, 10));

	s->fate[9] = NO_SHARE;
	s->fate[8] = NO_INPUT;
	assert_int_equal(stage_advertise(s), 0);
	assert_int_equal(tally_sa_server_on_advert(s->srv, 1, &s->adv[1]), TALLY_EPROTO);

	/* worker 0's shares, disarranged first */
	assert_int_equal(tally_sa_client_share(s->cl[0], s->list, s->n_list, &boxes, &nb, &rej, &nr), 0);
	assert_int_equal(nb, 4);
	nbrs_of(s, 0, nbr);
	while (far == 0 || sa_contains(nbr, 4, far))
		far++;
	box = boxes[0];
	boxes[0].to = far;
	assert_int_equal(tally_sa_server_on_shares(s->srv, 0, boxes, nb, rej, nr), TALLY_EPROTO);
	boxes[0].to = 10;
	assert_int_equal(tally_sa_server_on_shares(s->srv, 0, boxes, nb, rej, nr), TALLY_EPROTO);
	boxes[0] = box;
	boxes[0].from = 1;
	assert_int_equal(tally_sa_server_on_shares(s->srv, 0, boxes, nb, rej, nr), TALLY_EPROTO);
	boxes[0] = box;
	memcpy(five, boxes, nb * sizeof(*boxes));
	five[4] = box;
	assert_int_equal(tally_sa_server_on_shares(s->srv, 0, five, 5, rej, nr), TALLY_EPROTO); /* > k */
	assert_int_equal(tally_sa_server_on_shares(s->srv, 10, boxes, nb, rej, nr), TALLY_EPROTO);
	assert_true(tally_sa_server_expects(s->srv, 0));
	assert_int_equal(tally_sa_server_on_shares(s->srv, 0, boxes, nb, rej, nr), 0);
	assert_int_equal(tally_sa_server_on_shares(s->srv, 0, boxes, nb, rej, nr), TALLY_EPROTO);
	free(boxes);
	free(rej);
	s->shared[0] = true; /* done by hand */
	send_shares(s);
	assert_int_equal(close_share(s), 0);
	assert_int_equal(tally_sa_server_on_shares(s->srv, 1, NULL, 0, NULL, 0), TALLY_EPROTO);

	assert_int_equal(tally_sa_server_on_ack(s->srv, 9, NULL, 0), TALLY_EPROTO); /* not in U2 */
	assert_int_equal(tally_sa_server_boxes_for(s->srv, 10, &cb, &nb), TALLY_EPROTO);
	send_acks(s);
	assert_int_equal(tally_sa_server_on_ack(s->srv, 0, NULL, 0), TALLY_EPROTO); /* twice */
	assert_int_equal(close_relay(s), 0);

	assert_int_equal(tally_sa_server_on_input(s->srv, 9), TALLY_EPROTO);
	assert_int_equal(tally_sa_server_on_input(s->srv, 10), TALLY_EPROTO);
	send_inputs(s);
	assert_int_equal(tally_sa_server_on_input(s->srv, 0), TALLY_EPROTO); /* twice */
	assert_int_equal(close_input(s), 0);
	assert_int_equal(tally_sa_server_close_input(s->srv, &s->dropped, &s->n_dropped, &s->survivors,
						    &s->n_survivors), TALLY_EPROTO);

	/* worker 1's reveals, disarranged first */
	assert_int_equal(tally_sa_client_unmask(s->cl[1], s->dropped, s->n_dropped, s->survivors, s->n_survivors,
						&r, &n), 0);
	assert_true(n >= 1 && n <= 4);
	memcpy(rv, r, n * sizeof(*r));
	rv[0].share.x = 3;
	assert_int_equal(tally_sa_server_on_reveal(s->srv, 1, rv, n), TALLY_EPROTO);
	rv[0] = r[0];
	rv[0].kind = rv[0].kind == TALLY_SA_REVEAL_B ? TALLY_SA_REVEAL_S : TALLY_SA_REVEAL_B;
	assert_int_equal(tally_sa_server_on_reveal(s->srv, 1, rv, n), TALLY_EPROTO);
	rv[0].kind = 7;
	assert_int_equal(tally_sa_server_on_reveal(s->srv, 1, rv, n), TALLY_EPROTO);
	rv[0] = r[0];
	nbrs_of(s, 1, nbr);
	far = 0;
	while (far == 1 || sa_contains(nbr, 4, far))
		far++;
	rv[0].owner = far;
	assert_int_equal(tally_sa_server_on_reveal(s->srv, 1, rv, n), TALLY_EPROTO);
	rv[0].owner = 10;
	assert_int_equal(tally_sa_server_on_reveal(s->srv, 1, rv, n), TALLY_EPROTO);
	memcpy(rv, r, n * sizeof(*r));
	assert_int_equal(tally_sa_server_on_reveal(s->srv, 1, rv, 5), TALLY_EPROTO); /* > k */
	assert_int_equal(tally_sa_server_on_reveal(s->srv, 8, r, n), TALLY_EPROTO); /* dropped */
	assert_int_equal(tally_sa_server_on_reveal(s->srv, 9, r, n), TALLY_EPROTO); /* never in U2 */
	assert_true(tally_sa_server_expects(s->srv, 1));
	assert_int_equal(tally_sa_server_on_reveal(s->srv, 1, r, n), 0);
	assert_int_equal(tally_sa_server_on_reveal(s->srv, 1, r, n), TALLY_EPROTO);
	tally_sa_reveals_free(r);
	s->revealed[1] = true; /* done by hand */
	send_reveals(s);
	assert_int_equal(finish(s), 0);
	check_result(s);
	assert_int_equal(finish(s), TALLY_EPROTO);
	sim_free(s);
	world_free(w);
}

/* ---- parameters and worker-side refusals ---- */

static void test_params_and_client_refusals(void **state)
{
	world *w = world_new(4);
	tally_sa_params p, q;
	tally_sa_client *c = NULL;
	tally_sa_server *sv = NULL;
	tally_keypair anon;
	const char *unsorted[4] = {"w001", "w000", "w002", "w003"};
	tally_sa_advert a, *list;
	tally_sa_box *boxes;
	uint32_t *rej, *v, u2[4] = {0, 1, 2, 3};
	float bad[8] = {0, 0, NAN, 0, 0, 0, 0, 0};
	size_t nb, nr;
	tally_rng rng;
	sim *s;

	memset(&p, 0, sizeof(p));
	snprintf(p.run_id, sizeof(p.run_id), "r");
	p.n = 4, p.k = 3, p.t = 2, p.quant.clip = 1, p.quant.qrange = 1000, p.quant.ring_bits = 32, p.length = 8;
	assert_int_equal(tally_sa_params_check(&p), 0);
	assert_int_equal(tally_sa_vector_words(&p), 9);
	q = p, q.quant.ring_bits = 64;
	assert_int_equal(tally_sa_vector_words(&q), 18);
#define BAD(field, value) \
	do { q = p; q.field = value; assert_int_equal(tally_sa_params_check(&q), TALLY_EINVAL); } while (0)
	BAD(n, 1);
	BAD(n, TALLY_SA_MAX_N + 1);
	BAD(k, 0);
	BAD(k, 4);
	q = p, q.n = 10, q.k = 3;
	assert_int_equal(tally_sa_params_check(&q), TALLY_EINVAL); /* odd and not n - 1 */
	BAD(t, 0);
	BAD(t, 4);
	BAD(quant.ring_bits, 48);
	BAD(quant.clip, 0);
	BAD(quant.clip, NAN);
	BAD(quant.qrange, 0);
	BAD(quant.qrange, (UINT64_C(1) << 40) + 1);
	BAD(length, 0);
	BAD(length, (UINT64_C(1) << 31) + 1);
#undef BAD
	q = p, q.k = 4;
	assert_int_equal(tally_sa_server_new(&sv, &q, w->names, w->roster), TALLY_EINVAL);
	assert_null(sv);
	assert_int_equal(tally_sa_client_new(&c, &q, w->names, w->roster, &w->kp[0]), TALLY_EINVAL);
	assert_null(c);
	assert_int_equal(tally_sa_client_new(&c, &p, unsorted, w->roster, &w->kp[0]), TALLY_EINVAL);
	assert_int_equal(tally_sa_server_new(&sv, &p, unsorted, NULL), TALLY_EINVAL);
	assert_null(c);
	assert_null(sv);
	anon = w->kp[0];
	snprintf(anon.name, sizeof(anon.name), "stranger");
	assert_int_equal(tally_sa_client_new(&c, &p, w->names, w->roster, &anon), TALLY_EINVAL);
	anon = w->kp[0];
	anon.has_sign = false;
	assert_int_equal(tally_sa_client_new(&c, &p, w->names, w->roster, &anon), TALLY_ECRYPTO);
	assert_null(c);
	tally_sa_client_destroy(NULL);
	tally_sa_client_destroy(&c);
	tally_sa_server_destroy(NULL);
	tally_sa_server_destroy(&sv);
	tally_sa_reveals_free(NULL);

	s = sim_new(w, 3, 2, 32, 8, true);
	c = s->cl[0];
	assert_int_equal(tally_sa_client_share(c, s->adv, 0, &boxes, &nb, &rej, &nr), TALLY_EPROTO);
	assert_int_equal(tally_sa_client_receive(c, u2, 4, NULL, 0, &rej, &nr), TALLY_EPROTO);
	update_rng(&rng, 0);
	assert_int_equal(tally_sa_client_mask(c, s->x[0], 1, &rng, &v), TALLY_EPROTO);
	assert_null(v);
	send_adverts(s);
	assert_int_equal(tally_sa_client_advertise(c, &a), TALLY_EPROTO);
	assert_int_equal(close_advertise(s), 0);
	list = malloc(4 * sizeof(*list));
	assert_non_null(list);
	memcpy(list, s->list, 4 * sizeof(*list));
	list[2] = s->list[3], list[3] = s->list[2];
	assert_int_equal(tally_sa_client_share(c, list, 4, &boxes, &nb, &rej, &nr), TALLY_EFORMAT);
	free(rej);
	list[2] = s->list[2], list[3] = s->list[3];
	list[3].index = 4;
	assert_int_equal(tally_sa_client_share(c, list, 4, &boxes, &nb, &rej, &nr), TALLY_EFORMAT);
	free(rej);
	free(list);
	send_shares(s);
	assert_int_equal(tally_sa_client_share(c, s->list, s->n_list, &boxes, &nb, &rej, &nr), TALLY_EPROTO);
	assert_int_equal(close_share(s), 0);
	send_acks(s);
	assert_int_equal(tally_sa_client_receive(c, s->u2, s->n_u2, NULL, 0, &rej, &nr), TALLY_EPROTO);
	assert_int_equal(close_relay(s), 0);
	update_rng(&rng, 0);
	assert_int_equal(tally_sa_client_mask(c, bad, 1, &rng, &v), TALLY_ENONFINITE);
	assert_null(v);
	assert_int_equal(tally_sa_client_mask(c, s->x[0], 0, &rng, &v), TALLY_EINVAL);
	assert_null(v);
	send_inputs(s); /* the refusals left worker 0 able to mask */
	assert_int_equal(close_input(s), 0);
	assert_int_equal(tally_sa_client_mask(c, s->x[0], 1, &rng, &v), TALLY_EPROTO);
	send_reveals(s);
	assert_int_equal(finish(s), 0);
	check_result(s);
	sim_free(s);
	world_free(w);
}

/*
 * ---- robustness: a worker must not be derailed by a peer or by a retried message ----
 * These assert the behaviour the contract implies; see the report for the bugs they show.
 */

/*
 * One survivor's reveal carries its first share twice (in place of its last): the round must
 * still complete, the coordinator either refusing the message (then taking the proper one) or
 * using distinct shares only.
 */
static void test_duplicate_reveal(void **state)
{
	world *w = world_new(10);
	uint32_t k, t;
	tally_sa_reveal *r, dup[9];
	size_t n;
	int rc;
	sim *s;

	graph_kt(10, &k, &t);
	s = sim_new(w, k, t, 32, 100, true);
	assert_int_equal(stage_advertise(s), 0);
	assert_int_equal(stage_share(s), 0);
	assert_int_equal(stage_relay(s), 0);
	assert_int_equal(stage_input(s), 0);
	assert_int_equal(tally_sa_client_unmask(s->cl[0], s->dropped, s->n_dropped, s->survivors, s->n_survivors,
						&r, &n), 0);
	assert_int_equal(n, 9);
	dup[0] = r[0];
	memcpy(dup + 1, r, (n - 1) * sizeof(*r));
	rc = tally_sa_server_on_reveal(s->srv, 0, dup, n);
	if (rc != 0) {
		assert_int_equal(rc, TALLY_EPROTO);
		assert_int_equal(tally_sa_server_on_reveal(s->srv, 0, r, n), 0);
	}
	sodium_memzero(dup, sizeof(dup));
	tally_sa_reveals_free(r);
	s->revealed[0] = true; /* done by hand */
	send_reveals(s);
	assert_int_equal(finish(s), 0);
	check_result(s);
	sim_free(s);
	world_free(w);
}

/*
 * An enrolled worker advertises, correctly signed, a low-order share key (all zeros). Its peers
 * cannot seal a box to it; they must leave it out, as for a bad signature, not give up
 * themselves. (Or the coordinator refuses the advert in stage 0.) The round completes without it.
 */
static void low_order_c_pk(sim *s, uint32_t i, tally_sa_advert *a)
{
	uint8_t d[32];

	if (i != s->target)
		return;
	memset(a->c_pk, 0, 32);
	sa_advert_digest(&s->p, s->w->name[i], a, d);
	crypto_sign_detached(a->sig, NULL, d, sizeof(d), s->w->kp[i].sign_secret);
}

static void test_low_order_peer_key(void **state)
{
	world *w = world_new(10);
	uint32_t k, t;
	sim *s;

	graph_kt(10, &k, &t);
	s = sim_new(w, k, t, 32, 100, true);
	s->target = 5;
	s->advert_hook = low_order_c_pk;
	s->advert_rc[5] = ANY_RC;
	s->share_rc[5] = TALLY_ECRYPTO; /* the worker itself sees other keys under its name */
	s->excl_u2[5] = true;
	run_round(s);
	assert_int_equal(s->n_survivors, 9);
	sim_free(s);
	world_free(w);
}

/*
 * client_share fails on a malformed list after it has read some entries; a retry with a list
 * that lacks one of them must not seal a box for it from the first list's keys.
 */
static void test_share_retry_is_fresh(void **state)
{
	world *w = world_new(4);
	tally_sa_advert list[4];
	tally_sa_box *boxes;
	uint32_t *rej;
	size_t nb, nr;
	bool stale = false;
	int rc;
	sim *s = sim_new(w, 3, 1, 32, 8, true);

	assert_int_equal(stage_advertise(s), 0);
	list[0] = s->list[1], list[1] = s->list[0]; /* descending: refused at the second entry */
	assert_int_equal(tally_sa_client_share(s->cl[3], list, 2, &boxes, &nb, &rej, &nr), TALLY_EFORMAT);
	free(rej);
	list[0] = s->list[0], list[1] = s->list[2], list[2] = s->list[3]; /* worker 1 missing */
	rc = tally_sa_client_share(s->cl[3], list, 3, &boxes, &nb, &rej, &nr);
	for (size_t b = 0; rc == 0 && b < nb; b++)
		stale |= boxes[b].to == 1;
	free(boxes);
	free(rej);
	if (stale)
		fail_msg("worker 3 sealed a box for worker 1, who is not in the key list, with keys from a refused list");
	sim_free(s);
	world_free(w);
}

/*
 * client_receive fails on a malformed U2 after it has read part of it; a retry with the right U2
 * must not leave the worker masking against a peer from the first one (a mask nobody removes).
 */
static void test_receive_retry_is_fresh(void **state)
{
	world *w = world_new(4);
	uint32_t bad_u2[3] = {0, 3, 1}, *rej;
	const tally_sa_box *boxes;
	size_t nb, nr;
	int rc;
	sim *s = sim_new(w, 3, 1, 32, 64, true);

	s->fate[3] = NO_SHARE;
	assert_int_equal(stage_advertise(s), 0);
	assert_int_equal(stage_share(s), 0);
	assert_int_equal(s->n_u2, 3); /* 0, 1, 2 */
	assert_int_equal(tally_sa_server_boxes_for(s->srv, 0, &boxes, &nb), 0);
	assert_int_equal(tally_sa_client_receive(s->cl[0], bad_u2, 3, boxes, nb, &rej, &nr), TALLY_EFORMAT);
	free(rej);
	rc = tally_sa_client_receive(s->cl[0], s->u2, s->n_u2, boxes, nb, &rej, &nr);
	free(rej);
	if (rc != 0) {
		s->fate[0] = NO_RELAY; /* a refusal is fine: then it is simply dropped */
	} else {
		s->received[0] = true; /* done by hand */
		assert_int_equal(tally_sa_server_on_ack(s->srv, 0, NULL, 0), 0);
	}
	send_acks(s);
	assert_int_equal(close_relay(s), 0);
	assert_int_equal(stage_input(s), 0);
	send_reveals(s);
	assert_int_equal(finish(s), 0);
	check_result(s);
	sim_free(s);
	world_free(w);
}

/* A failed client_share hands back nothing to free, like every other tally call that fails. */
static void test_share_error_outputs(void **state)
{
	world *w = world_new(10);
	tally_sa_advert list[4];
	tally_sa_box *boxes;
	uint32_t *rej;
	size_t nb, nr;
	sim *s = sim_new(w, 9, 5, 32, 8, true);
	int rc;
	bool rej_null, nr_zero;

	assert_int_equal(stage_advertise(s), 0);
	/* itself, two valid peers and one forged: too few valid neighbours for t = 5 */
	list[0] = s->list[0], list[1] = s->list[1], list[2] = s->list[2], list[3] = s->list[3];
	list[3].sig[0] ^= 1;
	rc = tally_sa_client_share(s->cl[0], list, 4, &boxes, &nb, &rej, &nr);
	rej_null = rej == NULL;
	nr_zero = nr == 0;
	free(rej); /* so that a failure below is not also a leak report */
	assert_int_equal(rc, TALLY_EQUORUM);
	assert_null(boxes);
	assert_int_equal(nb, 0);
	assert_true(rej_null);
	assert_true(nr_zero);
	sim_free(s);
	world_free(w);
}

#define T(f) cmocka_unit_test_teardown(f, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_n3_ring32),
		T(test_n3_ring64),
		T(test_n10_ring32),
		T(test_n10_ring64),
		T(test_n100_ring32),
		T(test_n100_ring64),
		T(test_drop_no_advert),
		T(test_drop_no_share),
		T(test_drop_no_relay),
		T(test_drop_no_ack),
		T(test_drop_no_input),
		T(test_drop_no_reveal),
		T(test_drop_combined_n10),
		T(test_drop_combined_n10_many),
		T(test_drop_combined_n100_ring32),
		T(test_drop_combined_n100_ring64),
		T(test_quorum_advertise),
		T(test_quorum_share),
		T(test_quorum_relay),
		T(test_quorum_input),
		T(test_abort),
		T(test_t_minus_1_shares),
		T(test_tampered_box),
		T(test_forged_signature),
		T(test_forged_key),
		T(test_server_refuses_forged_advert),
		T(test_own_keys_substituted),
		T(test_unmask_rules),
		T(test_masked_uniform),
		T(test_mask_composition),
		T(test_tampered_s_share),
		T(test_server_out_of_place),
		T(test_params_and_client_refusals),
		T(test_duplicate_reveal),
		T(test_low_order_peer_key),
		T(test_share_retry_is_fresh),
		T(test_receive_retry_is_fresh),
		T(test_share_error_outputs),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
