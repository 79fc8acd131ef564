/*
 * secagg: what secure aggregation costs a worker and the coordinator, in seconds, in bytes and as
 * a multiple of one ChaCha20 keystream expansion measured in the same run.
 *
 * Each cell of the grid (cohort n x model length d x dropout) runs one whole SecAgg+ round in
 * this process: n tally_sa_client state machines and one tally_sa_server, driven through the
 * stages of tally/secagg.h exactly as tally-coordinator and tally-worker drive them (advertise,
 * share keys, relay, masked input into a ring sum, unmask, finish), with real Ed25519 identities
 * enrolled through a roster file. Parameters are the coordinator's: (k, t) from
 * tally_graph_params(n, 0.05, 0.1), clip 8, quantization range 2^22, weight 1, so the ring has 32
 * bits. With dropout, 10% of the workers (drawn with a fixed seed) vanish after sharing their
 * keys and before their masked input, so the coordinator must rebuild their mask keys from shares
 * and strip the pairwise masks their neighbours made with them: the expensive case.
 *
 * Figures per cell:
 *  - per worker (mean over the survivors, all of them timed): tally_sa_client_share, _receive,
 *    _mask (quantization, k X25519 agreements, k + 1 masks) and _unmask;
 *  - coordinator: tally_sa_server_finish alone (the unmasking), and all tally_sa_server_* calls of
 *    the round together; the ring sum of the masked inputs is shown apart;
 *  - bytes a worker sends (the protobuf envelopes ADVERT, SHARES, RELAY_ACK and REVEALS as
 *    tally_msg_encode makes them, plus the masked vector's raw 4 * words) and receives (KEY_LIST,
 *    RELAY, UNMASK_REQUEST), mean over the survivors;
 *  - baselines, measured per cell: one keystream expansion (tally_mask_add_u32/_u64 over d + 1
 *    elements, the cost of one mask; best of 5), one quantization (tally_quant_encode of d floats,
 *    best of 3) and one key agreement (tally_mask_agree, best of 64 means of 8 calls).
 * Every time is also printed as a multiple of the keystream baseline ("x ks"). The unmasked mean
 * is checked against the mean of the survivors' inputs: a wrong result exits 1. Nothing passes
 * or fails on timing: the claim lines say "ok" or "NOT MET".
 *
 * Claims: the coordinator unmasks n = 500, d = 1e5 with 10% dropout in under 1 s on one core; a
 * worker's masking stage costs at most k + 2 keystream expansions (k + 1 masks, and one more for
 * quantizing and deriving the keys).
 *
 * usage: secagg [--quick] [--seed N]
 *   --quick   n in {10, 100}, d = 1e5 only
 *   --seed N  seed of the inputs, the rounding and the choice of dropped workers (default 1)
 */
#include "tally/error.h"
#include "tally/graph.h"
#include "tally/keys.h"
#include "tally/mask.h"
#include "tally/quant.h"
#include "tally/rng.h"
#include "tally/secagg.h"
#include "tally/wire.h"

#include <math.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define GAMMA 0.05
#define DELTA 0.10
#define CLIP 8.0
#define QRANGE (UINT64_C(1) << 22)
#define DROP_PERCENT 10
#define CLAIM_UNMASK_S 1.0
#define MAX_COHORT 500

/* ---- small helpers ---- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "secagg: %s: %s (%s)\n", what, tally_errmsg(), tally_strerror(rc));
	exit(1);
}

static void check(int rc, const char *what)
{
	if (rc)
		die(what, rc);
}

static void *xmalloc(size_t n)
{
	void *p = aligned_alloc(64, (n + 63) & ~(size_t)63);

	if (!p) {
		fprintf(stderr, "secagg: out of memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

/* "1e5" for powers of ten, else the number. */
static const char *fmt_d(uint64_t d, char buf[32])
{
	int e = 0;
	uint64_t x = d;

	while (x >= 10 && x % 10 == 0)
		x /= 10, e++;
	if (x == 1 && e > 0)
		snprintf(buf, 32, "1e%d", e);
	else
		snprintf(buf, 32, "%llu", (unsigned long long)d);
	return buf;
}

/* ---- identities: a cohort of n enrolled workers, w0000.., and the roster that enrols them ---- */

typedef struct cohort {
	uint32_t n;
	char (*name)[16];
	const char **names;
	tally_keypair *kp;
	tally_roster *roster;
} cohort;

/* One identity: a CURVE pair (the roster needs distinct transport keys) and an Ed25519 pair. */
static void make_identity(tally_keypair *kp, const char *name, FILE *roster)
{
	char curve_sec[TALLY_Z85_KEY_LEN + 1], sign_z85[TALLY_Z85_KEY_LEN + 1];

	snprintf(kp->name, sizeof(kp->name), "%s", name);
	kp->secret_z85 = sodium_malloc(TALLY_Z85_KEY_LEN + 1);
	kp->sign_secret = sodium_malloc(crypto_sign_SECRETKEYBYTES);
	if (!kp->secret_z85 || !kp->sign_secret || zmq_curve_keypair(kp->public_z85, curve_sec) != 0) {
		fprintf(stderr, "secagg: cannot make key pairs\n");
		exit(1);
	}
	memcpy(kp->secret_z85, curve_sec, sizeof(curve_sec));
	sodium_memzero(curve_sec, sizeof(curve_sec));
	kp->has_sign = true;
	crypto_sign_keypair(kp->sign_public, kp->sign_secret);
	zmq_z85_encode(sign_z85, kp->sign_public, 32);
	fprintf(roster, "%s = \"%s %s\"\n", name, kp->public_z85, sign_z85);
}

static cohort *cohort_new(uint32_t n)
{
	char path[] = "/tmp/tally-bench-secagg-roster.XXXXXX";
	cohort *c = calloc(1, sizeof(*c));
	int fd = mkstemp(path);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;

	if (!c || !f || !(c->name = calloc(n, 16)) || !(c->names = calloc(n, sizeof(char *))) ||
	    !(c->kp = calloc(n, sizeof(tally_keypair)))) {
		fprintf(stderr, "secagg: cannot set up a cohort of %u\n", n);
		exit(1);
	}
	c->n = n;
	for (uint32_t i = 0; i < n; i++) {
		snprintf(c->name[i], 16, "w%04u", i);
		c->names[i] = c->name[i];
		make_identity(&c->kp[i], c->name[i], f);
	}
	if (fclose(f) != 0) {
		fprintf(stderr, "secagg: cannot write %s\n", path);
		exit(1);
	}
	check(tally_roster_load(&c->roster, path), "roster");
	unlink(path);
	return c;
}

static void cohort_free(cohort *c)
{
	if (!c)
		return;
	for (uint32_t i = 0; i < c->n; i++) {
		sodium_free(c->kp[i].secret_z85);
		sodium_free(c->kp[i].sign_secret);
	}
	tally_roster_destroy(&c->roster);
	free(c->kp);
	free(c->names);
	free(c->name);
	free(c);
}

/* ---- baselines ---- */

/* One mask: a keystream expansion added over d + 1 ring elements. Best of 5. */
static double keystream_baseline(const tally_sa_params *p)
{
	size_t elems = (size_t)p->length + 1;
	uint32_t *v = xmalloc(tally_sa_vector_words(p) * 4);
	uint8_t key[TALLY_MASK_KEY];
	double best = INFINITY;

	memset(v, 0, tally_sa_vector_words(p) * 4);
	randombytes_buf(key, sizeof(key));
	for (int r = 0; r < 6; r++) { /* the first run only warms up */
		double t0 = now_s();

		if (p->quant.ring_bits == 32)
			tally_mask_add_u32(v, elems, 0, key, +1);
		else
			tally_mask_add_u64((uint64_t *)v, elems, 0, key, +1);
		if (r > 0 && now_s() - t0 < best)
			best = now_s() - t0;
	}
	free(v);
	return best;
}

/* Quantizing d floats into the ring (part of every worker's mask stage). Best of 3. */
static double quant_baseline(const tally_sa_params *p, const float *x)
{
	uint32_t *v = xmalloc(tally_sa_vector_words(p) * 4);
	tally_rng rng;
	double best = INFINITY;

	tally_rng_seed(&rng, 7, 7);
	for (int r = 0; r < 4; r++) {
		double t0 = now_s(), dt;

		check(tally_quant_encode(&p->quant, x, (size_t)p->length, 1, &rng, v), "quantize");
		dt = now_s() - t0;
		if (r > 0 && dt < best)
			best = dt;
	}
	free(v);
	return best;
}

/* One X25519 agreement plus the key derivation (k of them per masked input). */
static double agree_baseline(void)
{
	uint8_t sk[32], pk[32], peer_sk[32], session[32] = {0}, key[TALLY_MASK_KEY];
	double best = INFINITY;

	crypto_box_keypair(pk, peer_sk);
	crypto_box_keypair(pk, sk);
	for (int r = 0; r < 64; r++) {
		double t0 = now_s(), dt;

		for (int i = 0; i < 8; i++)
			check(tally_mask_agree(key, sk, pk, TALLY_MASK_PAIR, session, 1, 100), "agree");
		dt = (now_s() - t0) / 8;
		best = dt < best ? dt : best;
	}
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(peer_sk, sizeof(peer_sk));
	return best;
}

/* ---- one round ---- */

typedef struct cell {
	uint32_t n, k, t, ring, n_drop, n_surv;
	uint64_t d;
	bool dropout;
	double ks, quant, agree;                       /* baselines, s */
	double w_share, w_recv, w_mask, w_unmask;      /* per survivor, mean s */
	double w_mask_max;
	double c_finish, c_calls, c_ring;              /* coordinator, s */
	double sent, recvd;                            /* per survivor, mean bytes */
	double sent_masked;                            /* of which the masked vector */
	double max_err;                                /* of the unmasked mean */
} cell;

typedef struct sim {
	cell *r;
	cohort *co;
	tally_sa_params p;
	tally_sa_server *srv;
	tally_sa_client **cl;
	bool *drops;             /* vanishes after share keys */
	double *offset;          /* worker i's update is base + offset[i] */
	float *base, *update;
	uint32_t *ring;
	double *bytes_sent, *bytes_recv;
	uint64_t seed;
} sim;

/* Encodes m as the daemons would and returns the envelope's size. */
static size_t envelope_bytes(tally_msg *m, uint64_t round_no)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	snprintf(m->run_id, sizeof(m->run_id), "secagg-bench");
	m->round = round_no;
	check(tally_msg_encode(m, &buf, &len), tally_msg_type_name(m->type));
	free(buf);
	return len;
}

/* Times one server call into the coordinator's total. */
#define COORD(R, CALL, WHAT)                               \
	do {                                               \
		double t0_ = now_s();                      \
		int rc_ = (CALL);                          \
		(R)->r->c_calls += now_s() - t0_;          \
		check(rc_, WHAT);                          \
	} while (0)

static void stage_advertise(sim *R)
{
	const tally_sa_advert *list;
	size_t n_list;

	for (uint32_t i = 0; i < R->p.n; i++) {
		tally_msg m = {.type = TALLY_MSG_ADVERT};

		check(tally_sa_client_new(&R->cl[i], &R->p, R->co->names, R->co->roster, &R->co->kp[i]), "client");
		check(tally_sa_client_advertise(R->cl[i], &m.u.advert), "advertise");
		R->bytes_sent[i] += (double)envelope_bytes(&m, R->p.round);
		COORD(R, tally_sa_server_on_advert(R->srv, i, &m.u.advert), "on_advert");
	}
	COORD(R, tally_sa_server_close_advertise(R->srv, &list, &n_list), "close_advertise");
	{
		tally_msg m = {.type = TALLY_MSG_KEY_LIST};
		double bytes;

		m.u.key_list.list = (tally_sa_advert *)list;
		m.u.key_list.n = n_list;
		bytes = (double)envelope_bytes(&m, R->p.round);
		for (uint32_t i = 0; i < R->p.n; i++)
			R->bytes_recv[i] += bytes;
	}
	for (uint32_t i = 0; i < R->p.n; i++) { /* the key list is the server's until the next call */
		tally_msg m = {.type = TALLY_MSG_SHARES};
		double t0 = now_s();

		check(tally_sa_client_share(R->cl[i], list, n_list, &m.u.boxes.boxes, &m.u.boxes.n_boxes, &m.u.boxes.ids,
					    &m.u.boxes.n_ids), "share");
		if (!R->drops[i])
			R->r->w_share += now_s() - t0;
		R->bytes_sent[i] += (double)envelope_bytes(&m, R->p.round);
		COORD(R, tally_sa_server_on_shares(R->srv, i, m.u.boxes.boxes, m.u.boxes.n_boxes, m.u.boxes.ids,
						   m.u.boxes.n_ids), "on_shares");
		free(m.u.boxes.boxes);
		free(m.u.boxes.ids);
	}
}

/* Stage 2: the relay to every survivor (the dropped are gone before it reaches them). */
static void stage_relay(sim *R)
{
	const uint32_t *u2, *accept;
	size_t n_u2, n_accept;

	COORD(R, tally_sa_server_close_share(R->srv, &u2, &n_u2), "close_share");
	for (size_t x = 0; x < n_u2; x++) {
		uint32_t i = u2[x];
		tally_msg relay = {.type = TALLY_MSG_RELAY}, ack = {.type = TALLY_MSG_RELAY_ACK};
		const tally_sa_box *boxes;
		size_t nb;
		double t0;

		if (R->drops[i])
			continue;
		COORD(R, tally_sa_server_boxes_for(R->srv, i, &boxes, &nb), "boxes_for");
		relay.u.boxes.boxes = (tally_sa_box *)boxes;
		relay.u.boxes.n_boxes = nb;
		relay.u.boxes.ids = (uint32_t *)u2;
		relay.u.boxes.n_ids = n_u2;
		R->bytes_recv[i] += (double)envelope_bytes(&relay, R->p.round);
		t0 = now_s();
		check(tally_sa_client_receive(R->cl[i], u2, n_u2, boxes, nb, &ack.u.boxes.ids, &ack.u.boxes.n_ids),
		      "receive");
		R->r->w_recv += now_s() - t0;
		R->bytes_sent[i] += (double)envelope_bytes(&ack, R->p.round);
		COORD(R, tally_sa_server_on_ack(R->srv, i, ack.u.boxes.ids, ack.u.boxes.n_ids), "on_ack");
		free(ack.u.boxes.ids);
	}
	COORD(R, tally_sa_server_close_relay(R->srv, &accept, &n_accept), "close_relay");
}

/* The coordinator's ring sum: a wrapping add of one masked vector (coord_sa_add's loop). */
static void ring_add(sim *R, const uint32_t *x)
{
	size_t words = tally_sa_vector_words(&R->p);
	double t0 = now_s();

	if (R->p.quant.ring_bits == 32) {
		for (size_t i = 0; i < words; i++)
			R->ring[i] += x[i];
	} else {
		uint64_t *acc = (uint64_t *)(void *)R->ring, v;

		for (size_t i = 0; i < words / 2; i++) {
			memcpy(&v, x + 2 * i, 8);
			acc[i] += v;
		}
	}
	R->r->c_ring += now_s() - t0;
}

/* Stage 3: every survivor quantizes and masks its update; the coordinator adds it in. */
static void stage_input(sim *R)
{
	for (uint32_t i = 0; i < R->p.n; i++) {
		uint32_t *masked;
		tally_rng rng;
		double t0, dt;

		if (R->drops[i])
			continue;
		for (uint64_t j = 0; j < R->p.length; j++)
			R->update[j] = R->base[j] + (float)R->offset[i];
		tally_rng_seed(&rng, R->seed, 1000 + i);
		t0 = now_s();
		check(tally_sa_client_mask(R->cl[i], R->update, 1, &rng, &masked), "mask");
		dt = now_s() - t0;
		R->r->w_mask += dt;
		R->r->w_mask_max = dt > R->r->w_mask_max ? dt : R->r->w_mask_max;
		R->bytes_sent[i] += 4.0 * (double)tally_sa_client_words(R->cl[i]);
		ring_add(R, masked);
		free(masked);
		COORD(R, tally_sa_server_on_input(R->srv, i), "on_input");
	}
}

/* Stage 4: the unmask request, the survivors' reveals, and the coordinator's unmasking. */
static void stage_unmask(sim *R, float *mean, uint64_t *total_weight)
{
	const uint32_t *dropped, *surv;
	size_t nd, ns;
	tally_msg req = {.type = TALLY_MSG_UNMASK_REQUEST};
	double req_bytes, t0;

	COORD(R, tally_sa_server_close_input(R->srv, &dropped, &nd, &surv, &ns), "close_input");
	req.u.unmask.dropped = (uint32_t *)dropped, req.u.unmask.n_dropped = nd;
	req.u.unmask.survivors = (uint32_t *)surv, req.u.unmask.n_survivors = ns;
	req_bytes = (double)envelope_bytes(&req, R->p.round);
	for (size_t x = 0; x < ns; x++) {
		uint32_t i = surv[x];
		tally_msg out = {.type = TALLY_MSG_REVEALS};

		R->bytes_recv[i] += req_bytes;
		t0 = now_s();
		check(tally_sa_client_unmask(R->cl[i], dropped, nd, surv, ns, &out.u.reveals.r, &out.u.reveals.n),
		      "unmask");
		R->r->w_unmask += now_s() - t0;
		R->bytes_sent[i] += (double)envelope_bytes(&out, R->p.round);
		COORD(R, tally_sa_server_on_reveal(R->srv, i, out.u.reveals.r, out.u.reveals.n), "on_reveal");
		tally_sa_reveals_free(out.u.reveals.r);
	}
	t0 = now_s();
	check(tally_sa_server_finish(R->srv, R->ring, mean, total_weight), "finish");
	R->r->c_finish = now_s() - t0;
	R->r->c_calls += R->r->c_finish;
}

/* Draws the dropped workers (a fixed-seed choice of n / 10) and every worker's input offset. */
static void draw_cohort(sim *R)
{
	uint32_t *perm = calloc(R->p.n, sizeof(uint32_t));
	tally_rng rng;

	if (!perm)
		exit(1);
	tally_rng_seed(&rng, R->seed, R->p.n);
	for (uint32_t i = 0; i < R->p.n; i++) {
		perm[i] = i;
		R->offset[i] = (double)((int64_t)tally_rng_below(&rng, 2001) - 1000) * 1e-3; /* in [-1, 1] */
	}
	tally_rng_shuffle_u32(&rng, perm, R->p.n);
	R->r->n_drop = R->r->dropout ? (R->p.n * DROP_PERCENT + 99) / 100 : 0;
	for (uint32_t i = 0; i < R->r->n_drop; i++)
		R->drops[perm[i]] = true;
	R->r->n_surv = R->p.n - R->r->n_drop;
	free(perm);
}

/* Checks the unmasked mean against the survivors' mean input; exits on a wrong result. */
static void check_mean(sim *R, const float *mean, uint64_t total_weight)
{
	double off = 0, step = 2.0 * CLIP / (double)QRANGE, worst = 0;

	for (uint32_t i = 0; i < R->p.n; i++)
		if (!R->drops[i])
			off += R->offset[i];
	off /= R->r->n_surv;
	for (uint64_t j = 0; j < R->p.length; j++) {
		double e = fabs((double)mean[j] - ((double)R->base[j] + off));

		worst = e > worst ? e : worst;
	}
	R->r->max_err = worst;
	if (total_weight != R->r->n_surv || !(worst <= 2 * step + 1e-6)) {
		fprintf(stderr, "secagg: n=%u d=%llu: wrong aggregate (weight %llu of %u, max error %g)\n", R->p.n,
			(unsigned long long)R->p.length, (unsigned long long)total_weight, R->r->n_surv, worst);
		exit(1);
	}
}

static void round_setup(sim *R, cell *r, cohort *co, uint64_t seed, uint64_t round_no)
{
	memset(R, 0, sizeof(*R));
	R->r = r;
	R->co = co;
	R->seed = seed;
	snprintf(R->p.run_id, sizeof(R->p.run_id), "secagg-bench");
	R->p.round = round_no;
	R->p.n = r->n;
	R->p.length = r->d;
	check(tally_graph_params(r->n, GAMMA, DELTA, false, &R->p.k, &R->p.t), "graph parameters");
	R->p.quant = (tally_quant){.clip = CLIP, .qrange = QRANGE, .ring_bits = tally_quant_ring_bits(r->n, 1, QRANGE)};
	check(tally_sa_params_check(&R->p), "parameters");
	r->k = R->p.k, r->t = R->p.t, r->ring = R->p.quant.ring_bits;
	R->cl = calloc(r->n, sizeof(*R->cl));
	R->drops = calloc(r->n, sizeof(bool));
	R->offset = calloc(r->n, sizeof(double));
	R->bytes_sent = calloc(r->n, sizeof(double));
	R->bytes_recv = calloc(r->n, sizeof(double));
	R->base = xmalloc(r->d * sizeof(float));
	R->update = xmalloc(r->d * sizeof(float));
	R->ring = xmalloc(tally_sa_vector_words(&R->p) * 4);
	if (!R->cl || !R->drops || !R->offset || !R->bytes_sent || !R->bytes_recv)
		exit(1);
	memset(R->ring, 0, tally_sa_vector_words(&R->p) * 4);
	for (uint64_t j = 0; j < r->d; j++)
		R->base[j] = 4.0f * sinf((float)j * 0.001f); /* |base + offset| < 5, inside the clip */
	draw_cohort(R);
}

static void round_free(sim *R)
{
	for (uint32_t i = 0; i < R->p.n; i++)
		tally_sa_client_destroy(&R->cl[i]);
	tally_sa_server_destroy(&R->srv);
	free(R->cl), free(R->drops), free(R->offset), free(R->bytes_sent), free(R->bytes_recv);
	free(R->base), free(R->update), free(R->ring);
}

/* Per-survivor means of the sums collected over the round. */
static void round_summarize(sim *R)
{
	cell *r = R->r;
	double s = r->n_surv;

	for (uint32_t i = 0; i < R->p.n; i++) {
		if (R->drops[i])
			continue;
		r->sent += R->bytes_sent[i] / s;
		r->recvd += R->bytes_recv[i] / s;
	}
	r->sent_masked = 4.0 * (double)tally_sa_vector_words(&R->p);
	r->w_share /= s, r->w_recv /= s, r->w_mask /= s, r->w_unmask /= s;
}

static void run_cell(cell *r, cohort *co, uint64_t seed, uint64_t round_no)
{
	sim R;
	float *mean;
	uint64_t total_weight = 0;

	round_setup(&R, r, co, seed, round_no);
	r->ks = keystream_baseline(&R.p);
	r->quant = quant_baseline(&R.p, R.base);
	r->agree = agree_baseline();
	mean = xmalloc(r->d * sizeof(float));
	check(tally_sa_server_new(&R.srv, &R.p, co->names, co->roster), "server");
	stage_advertise(&R);
	stage_relay(&R);
	stage_input(&R);
	stage_unmask(&R, mean, &total_weight);
	check_mean(&R, mean, total_weight);
	round_summarize(&R);
	free(mean);
	round_free(&R);
}

/* ---- report ---- */

static double ms(double s)
{
	return s * 1e3;
}

static void print_header(void)
{
	printf("%-4s %-4s %-5s %3s %3s %5s | %8s %8s %8s %8s %9s %7s %7s | %9s %7s %9s %8s | %9s %7s\n", "n",
	       "d", "drop", "k", "t", "D", "share", "receive", "mask", "unmask", "worker", "mask", "worker",
	       "finish", "finish", "all calls", "ring sum", "sent", "recv");
	printf("%-4s %-4s %-5s %3s %3s %5s | %8s %8s %8s %8s %9s %7s %7s | %9s %7s %9s %8s | %9s %7s\n", "", "",
	       "", "", "", "", "ms", "ms", "ms", "ms", "total ms", "x ks", "x ks", "s", "x ks", "s", "s", "bytes",
	       "bytes");
}

static void print_row(const cell *r)
{
	char d[32];
	double worker = r->w_share + r->w_recv + r->w_mask + r->w_unmask;

	printf("%-4u %-4s %3u%%  %3u %3u %5u | %8.2f %8.2f %8.2f %8.3f %9.2f %7.1f %7.1f | %9.4f %7.1f %9.4f "
	       "%8.4f | %9.0f %7.0f\n",
	       r->n, fmt_d(r->d, d), r->dropout ? DROP_PERCENT : 0, r->k, r->t, r->n_drop, ms(r->w_share),
	       ms(r->w_recv), ms(r->w_mask), ms(r->w_unmask), ms(worker), r->w_mask / r->ks, worker / r->ks,
	       r->c_finish, r->c_finish / r->ks, r->c_calls, r->c_ring, r->sent, r->recvd);
}

static void print_baselines(const cell *r)
{
	char d[32];
	double model = r->quant + r->k * r->agree + (r->k + 1) * r->ks;

	printf("%-4u %-4s %3u%%  | keystream %7.3f ms (%5.2f GB/s)  quantize %7.3f ms (%5.2f ks)  X25519+kdf "
	       "%6.1f us (%5.2f ks)  mask model q+k*agree+(k+1)*ks = %6.1f ks, measured %6.1f ks (max %6.1f)"
	       "  |mean err| %.2g\n",
	       r->n, fmt_d(r->d, d), r->dropout ? DROP_PERCENT : 0, ms(r->ks),
	       (double)(r->d + 1) * (r->ring / 8) / r->ks * 1e-9, ms(r->quant), r->quant / r->ks, r->agree * 1e6,
	       r->agree / r->ks, model / r->ks, r->w_mask / r->ks, r->w_mask_max / r->ks, r->max_err);
}

static void print_claims(const cell *cells, size_t n_cells)
{
	char d[32];

	for (size_t i = 0; i < n_cells; i++) {
		const cell *r = &cells[i];

		if (r->n == 500 && r->d == 100000 && r->dropout)
			printf("claim: coordinator unmask n=%u d=%s dropout %u%%: %.3f s on one core (need < %.0f s): %s\n",
			       r->n, fmt_d(r->d, d), DROP_PERCENT, r->c_finish, CLAIM_UNMASK_S,
			       r->c_finish < CLAIM_UNMASK_S ? "ok" : "NOT MET");
	}
	for (size_t i = 0; i < n_cells; i++) {
		const cell *r = &cells[i];
		double x = r->w_mask / r->ks;
		double whole = (r->w_share + r->w_recv + r->w_mask + r->w_unmask) / r->ks;

		printf("claim: per-worker masking cost n=%u d=%s dropout %u%%: %.1f keystream expansions, k=%u "
		       "(need <= k+2 = %u): %s  [whole per-worker time: %.1f keystream expansions]\n",
		       r->n, fmt_d(r->d, d), r->dropout ? DROP_PERCENT : 0, x, r->k, r->k + 2,
		       x <= r->k + 2 ? "ok" : "NOT MET", whole);
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: secagg [--quick] [--seed N]\n"
		   "  --quick   n in {10, 100}, d = 1e5 only\n"
		   "  --seed N  seed of inputs, rounding and dropped workers (default 1)\n");
}

int main(int argc, char **argv)
{
	static const uint32_t all_n[] = {10, 100, MAX_COHORT};
	static const uint64_t all_d[] = {100000, 1000000};
	cell cells[16];
	size_t n_cells = 0, n_n = 3, n_d = 2;
	uint64_t seed = 1;
	double t_start = now_s();

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			n_n = 2, n_d = 1;
		} else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
			seed = strtoull(argv[++i], NULL, 10);
		} else {
			usage(strcmp(argv[i], "--help") == 0 ? stdout : stderr);
			return strcmp(argv[i], "--help") == 0 ? 0 : 2;
		}
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "secagg: libsodium failed to initialise\n");
		return 1;
	}
	printf("secure aggregation, in-process rounds: gamma %.2f, delta %.2f, clip %g, qrange 2^22, weight 1; "
	       "dropout: %d%% vanish after share keys\n",
	       GAMMA, DELTA, CLIP, DROP_PERCENT);
	printf("worker columns: mean over the survivors (all timed); ks = one keystream expansion of d+1 "
	       "elements, best of 5, this cell\n\n");
	print_header();
	for (size_t a = 0; a < n_n; a++) {
		cohort *co = cohort_new(all_n[a]);

		for (size_t b = 0; b < n_d; b++)
			for (int drop = 0; drop < 2; drop++) {
				cell *r = &cells[n_cells++];

				memset(r, 0, sizeof(*r));
				r->n = all_n[a], r->d = all_d[b], r->dropout = drop;
				run_cell(r, co, seed, n_cells);
				print_row(r);
				fflush(stdout);
			}
		cohort_free(co);
	}
	printf("\nbaselines and the mask stage's parts (per cell):\n");
	for (size_t i = 0; i < n_cells; i++)
		print_baselines(&cells[i]);
	printf("\n");
	print_claims(cells, n_cells);
	printf("\n(total run time %.0f s)\n", now_s() - t_start);
	return 0;
}
