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
 *  - per worker (mean over the survivors, all of them timed): tally_sa_client_share, _receive
 *    (opening the share boxes and the k X25519 mask-key agreements), _mask (the k + 1 masks summed
 *    slice by slice, then the update quantized into them) and _unmask;
 *  - coordinator: tally_sa_server_finish alone (the unmasking), and all tally_sa_server_* calls of
 *    the round together; the ring sum of the masked inputs is shown apart;
 *  - bytes a worker sends (the protobuf envelopes ADVERT, SHARES, RELAY_ACK and REVEALS as
 *    tally_msg_encode makes them, plus the masked vector's raw 4 * words) and receives (KEY_LIST,
 *    RELAY, UNMASK_REQUEST), mean over the survivors;
 *  - baselines, measured per cell: one keystream expansion (tally_mask_add_u32/_u64 over d + 1
 *    elements, the cost of one mask; best of 5), one quantization (tally_quant_encode of d floats,
 *    best of 3) and one key agreement (tally_mask_agree, best of 64 means of 8 calls).
 * Every time is also printed as a multiple of the keystream baseline ("x ks"), and the mask
 * stage and the unmasking are set against their cost models (quantize + (k + 1) masks; one mask
 * per survivor and per survivor-dropped edge, plus an agreement per edge). Times
 * are CLOCK_MONOTONIC; the thread's CPU time (CLOCK_THREAD_CPUTIME_ID) is printed beside them,
 * since other processes on the same two cores inflate wall time but not CPU time. The unmasked
 * mean is checked against the mean of the survivors' inputs: a wrong result exits 1. Nothing
 * passes or fails on timing: the claim lines say "ok" or "NOT MET".
 *
 * Claims: the coordinator unmasks n = 500, d = 1e5 with 10% dropout in under 1 s on one core; a
 * worker's masking stage costs at most k + 2 keystream expansions (k + 1 masks, and one more for
 * quantizing), judged on the median worker of the cell (the mean is printed beside it). Workers
 * mask into a vector recycled from their previous round (tally_sa_vector_free), as they do in a
 * run, so the pool is given one faulted-in vector before the stage.
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

#include <cblas.h>
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

/* Time this thread ran on a CPU: what a section cost when other processes share the cores. */
static double cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A timed section: wall time (CLOCK_MONOTONIC, what the figures report) and thread CPU time. */
typedef struct span {
	double wall, cpu;
} span;

static span span_start(void)
{
	return (span){now_s(), cpu_s()};
}

/* Adds the time since t0 to *acc and returns the wall time of the section. */
static double span_add(span *acc, span t0)
{
	double wall = now_s() - t0.wall;

	acc->wall += wall;
	acc->cpu += cpu_s() - t0.cpu;
	return wall;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
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
		double t0 = now_s(), dt;

		if (p->quant.ring_bits == 32)
			tally_mask_add_u32(v, elems, 0, key, +1);
		else
			tally_mask_add_u64((uint64_t *)v, elems, 0, key, +1);
		dt = now_s() - t0;
		if (r > 0 && dt < best)
			best = dt;
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
	uint8_t sk[32], pk[32], peer_pk[32], peer_sk[32], session[32] = {0}, key[TALLY_MASK_KEY];
	double best = INFINITY;

	crypto_box_keypair(peer_pk, peer_sk);
	crypto_box_keypair(pk, sk);
	for (int r = 0; r < 64; r++) {
		double t0 = now_s(), dt;

		for (int i = 0; i < 8; i++)
			check(tally_mask_agree(key, sk, peer_pk, TALLY_MASK_PAIR, session, 1, 100), "agree");
		dt = (now_s() - t0) / 8;
		best = dt < best ? dt : best;
	}
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(peer_sk, sizeof(peer_sk));
	sodium_memzero(key, sizeof(key));
	return best;
}

/* ---- one round ---- */

/* Bytes one worker sends (ADVERT, SHARES, RELAY_ACK, the masked vector, REVEALS) and receives. */
enum { B_ADVERT, B_SHARES, B_ACK, B_MASKED, B_REVEALS, B_KEY_LIST, B_RELAY, B_UNMASK, B_KINDS };
#define B_SENT_END B_KEY_LIST

typedef struct cell {
	uint32_t n, k, t, ring, n_drop, n_surv;
	uint64_t d;
	bool dropout;
	double ks, quant, agree;                      /* baselines, s */
	span w_share, w_recv, w_mask, w_unmask;       /* per survivor, mean */
	double mask_median, mask_max;                 /* wall, over the survivors */
	span c_finish, c_calls;                       /* coordinator */
	uint32_t c_pairs;                             /* pairwise masks it strips: survivor-dropped edges */
	double c_ring;                                /* the ring sum of the masked inputs, wall */
	double bytes[B_KINDS];                        /* per survivor, mean */
	double max_err;                               /* of the unmasked mean */
} cell;

typedef struct sim {
	cell *r;
	cohort *co;
	tally_sa_params p;
	tally_sa_server *srv;
	tally_sa_client **cl;
	bool *drops;             /* vanishes after share keys */
	double *offset;          /* worker i's update is base + offset[i] */
	double *mask_wall;       /* per survivor, in order */
	size_t n_mask_wall;
	float *base, *update;
	uint32_t *ring;
	double (*bytes)[B_KINDS];
	uint64_t seed;
} sim;

/* Encodes m as the daemons would and returns the envelope's size. */
static double envelope_bytes(tally_msg *m, uint64_t round_no)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	snprintf(m->run_id, sizeof(m->run_id), "secagg-bench");
	m->round = round_no;
	check(tally_msg_encode(m, &buf, &len), tally_msg_type_name(m->type));
	free(buf);
	return (double)len;
}

/* Runs one tally_sa_server call, adding its time to the coordinator's total. */
#define COORD(R, CALL, WHAT)                               \
	do {                                               \
		span t0_ = span_start();                   \
		int rc_ = (CALL);                          \
		span_add(&(R)->r->c_calls, t0_);           \
		check(rc_, WHAT);                          \
	} while (0)

/* Stage 0: every worker makes and signs its round keys; the coordinator sends the key list. */
static void stage_advertise(sim *R, const tally_sa_advert **list, size_t *n_list)
{
	tally_msg kl = {.type = TALLY_MSG_KEY_LIST};
	double bytes;

	for (uint32_t i = 0; i < R->p.n; i++) {
		tally_msg m = {.type = TALLY_MSG_ADVERT};

		check(tally_sa_client_new(&R->cl[i], &R->p, R->co->names, R->co->roster, &R->co->kp[i]), "client");
		check(tally_sa_client_advertise(R->cl[i], &m.u.advert), "advertise");
		R->bytes[i][B_ADVERT] = envelope_bytes(&m, R->p.round);
		COORD(R, tally_sa_server_on_advert(R->srv, i, &m.u.advert), "on_advert");
	}
	COORD(R, tally_sa_server_close_advertise(R->srv, list, n_list), "close_advertise");
	kl.u.key_list.list = (tally_sa_advert *)*list;
	kl.u.key_list.n = *n_list;
	bytes = envelope_bytes(&kl, R->p.round);
	for (uint32_t i = 0; i < R->p.n; i++)
		R->bytes[i][B_KEY_LIST] = bytes;
}

/* Stage 1: every worker checks the key list and seals its shares; the coordinator takes them. */
static void stage_share(sim *R, const tally_sa_advert *list, size_t n_list)
{
	for (uint32_t i = 0; i < R->p.n; i++) {
		tally_msg m = {.type = TALLY_MSG_SHARES};
		span t0 = span_start(), t = {0};

		check(tally_sa_client_share(R->cl[i], list, n_list, &m.u.boxes.boxes, &m.u.boxes.n_boxes, &m.u.boxes.ids,
					    &m.u.boxes.n_ids), "share");
		span_add(R->drops[i] ? &t : &R->r->w_share, t0);
		R->bytes[i][B_SHARES] = envelope_bytes(&m, R->p.round);
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
		span t0;

		if (R->drops[i])
			continue;
		COORD(R, tally_sa_server_boxes_for(R->srv, i, &boxes, &nb), "boxes_for");
		relay.u.boxes.boxes = (tally_sa_box *)boxes;
		relay.u.boxes.n_boxes = nb;
		relay.u.boxes.ids = (uint32_t *)u2;
		relay.u.boxes.n_ids = n_u2;
		R->bytes[i][B_RELAY] = envelope_bytes(&relay, R->p.round);
		t0 = span_start();
		check(tally_sa_client_receive(R->cl[i], u2, n_u2, boxes, nb, &ack.u.boxes.ids, &ack.u.boxes.n_ids),
		      "receive");
		span_add(&R->r->w_recv, t0);
		R->bytes[i][B_ACK] = envelope_bytes(&ack, R->p.round);
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
	size_t words = tally_sa_vector_words(&R->p);
	uint32_t *prev = aligned_alloc(64, (words * 4 + 63) & ~(size_t)63);

	/* Steady state: a worker masks into the vector recycled from its previous round, so the pool
	 * starts with one that is already faulted in (only a worker's very first round pays for
	 * fresh pages). */
	if (!prev)
		exit(1);
	memset(prev, 0, words * 4);
	tally_sa_vector_free(prev, words);
	for (uint32_t i = 0; i < R->p.n; i++) {
		uint32_t *masked;
		tally_rng rng;
		span t0;

		if (R->drops[i])
			continue;
		for (uint64_t j = 0; j < R->p.length; j++)
			R->update[j] = R->base[j] + (float)R->offset[i];
		tally_rng_seed(&rng, R->seed, 1000 + i);
		t0 = span_start();
		check(tally_sa_client_mask(R->cl[i], R->update, 1, &rng, &masked), "mask");
		R->mask_wall[R->n_mask_wall++] = span_add(&R->r->w_mask, t0);
		R->bytes[i][B_MASKED] = 4.0 * (double)tally_sa_client_words(R->cl[i]);
		ring_add(R, masked);
		tally_sa_vector_free(masked, tally_sa_client_words(R->cl[i]));
		COORD(R, tally_sa_server_on_input(R->srv, i), "on_input");
	}
}

/* Stage 4: the unmask request, the survivors' reveals, and the coordinator's unmasking. */
static void stage_unmask(sim *R, float *mean, uint64_t *total_weight)
{
	const uint32_t *dropped, *surv;
	size_t nd, ns;
	tally_msg req = {.type = TALLY_MSG_UNMASK_REQUEST};
	double req_bytes;
	span t0;

	COORD(R, tally_sa_server_close_input(R->srv, &dropped, &nd, &surv, &ns), "close_input");
	req.u.unmask.dropped = (uint32_t *)dropped, req.u.unmask.n_dropped = nd;
	req.u.unmask.survivors = (uint32_t *)surv, req.u.unmask.n_survivors = ns;
	req_bytes = envelope_bytes(&req, R->p.round);
	for (size_t x = 0; x < ns; x++) {
		uint32_t i = surv[x];
		tally_msg out = {.type = TALLY_MSG_REVEALS};

		R->bytes[i][B_UNMASK] = req_bytes;
		t0 = span_start();
		check(tally_sa_client_unmask(R->cl[i], dropped, nd, surv, ns, &out.u.reveals.r, &out.u.reveals.n),
		      "unmask");
		span_add(&R->r->w_unmask, t0);
		for (size_t j = 0; j < out.u.reveals.n; j++) /* one s share per dropped neighbour */
			R->r->c_pairs += out.u.reveals.r[j].kind == TALLY_SA_REVEAL_S;
		R->bytes[i][B_REVEALS] = envelope_bytes(&out, R->p.round);
		COORD(R, tally_sa_server_on_reveal(R->srv, i, out.u.reveals.r, out.u.reveals.n), "on_reveal");
		tally_sa_reveals_free(out.u.reveals.r);
	}
	t0 = span_start();
	check(tally_sa_server_finish(R->srv, R->ring, mean, total_weight), "finish");
	span_add(&R->r->c_finish, t0);
	R->r->c_calls.wall += R->r->c_finish.wall;
	R->r->c_calls.cpu += R->r->c_finish.cpu;
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

static void sim_setup(sim *R, cell *r, cohort *co, uint64_t seed, uint64_t round_no)
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
	R->mask_wall = calloc(r->n, sizeof(double));
	R->bytes = calloc(r->n, sizeof(*R->bytes));
	R->base = xmalloc(r->d * sizeof(float));
	R->update = xmalloc(r->d * sizeof(float));
	R->ring = xmalloc(tally_sa_vector_words(&R->p) * 4);
	if (!R->cl || !R->drops || !R->offset || !R->mask_wall || !R->bytes)
		exit(1);
	memset(R->ring, 0, tally_sa_vector_words(&R->p) * 4);
	for (uint64_t j = 0; j < r->d; j++)
		R->base[j] = 4.0f * sinf((float)j * 0.001f); /* |base + offset| <= 5, inside the clip */
	draw_cohort(R);
}

static void sim_free(sim *R)
{
	for (uint32_t i = 0; i < R->p.n; i++)
		tally_sa_client_destroy(&R->cl[i]);
	tally_sa_server_destroy(&R->srv);
	free(R->cl), free(R->drops), free(R->offset), free(R->mask_wall), free(R->bytes);
	free(R->base), free(R->update), free(R->ring);
}

static void span_div(span *s, double by)
{
	s->wall /= by;
	s->cpu /= by;
}

/* Per-survivor means of what was collected over the round. */
static void sim_summarize(sim *R)
{
	cell *r = R->r;
	double s = r->n_surv;

	for (uint32_t i = 0; i < R->p.n; i++)
		for (int b = 0; b < B_KINDS && !R->drops[i]; b++)
			r->bytes[b] += R->bytes[i][b] / s;
	span_div(&r->w_share, s), span_div(&r->w_recv, s), span_div(&r->w_mask, s), span_div(&r->w_unmask, s);
	qsort(R->mask_wall, R->n_mask_wall, sizeof(double), cmp_double);
	r->mask_median = R->mask_wall[R->n_mask_wall / 2];
	r->mask_max = R->mask_wall[R->n_mask_wall - 1];
}

static void run_cell(cell *r, cohort *co, uint64_t seed, uint64_t round_no)
{
	sim R;
	float *mean;
	uint64_t total_weight = 0;
	const tally_sa_advert *list;
	size_t n_list;

	sim_setup(&R, r, co, seed, round_no);
	r->ks = keystream_baseline(&R.p);
	r->quant = quant_baseline(&R.p, R.base);
	r->agree = agree_baseline();
	mean = xmalloc(r->d * sizeof(float));
	check(tally_sa_server_new(&R.srv, &R.p, co->names, co->roster), "server");
	stage_advertise(&R, &list, &n_list);
	stage_share(&R, list, n_list);
	stage_relay(&R);
	stage_input(&R);
	stage_unmask(&R, mean, &total_weight);
	check_mean(&R, mean, total_weight);
	sim_summarize(&R);
	free(mean);
	sim_free(&R);
}

/* ---- report ---- */

static double ms(double s)
{
	return s * 1e3;
}

static double worker_wall(const cell *r)
{
	return r->w_share.wall + r->w_recv.wall + r->w_mask.wall + r->w_unmask.wall;
}

static const char *cell_name(const cell *r, char buf[64])
{
	char d[32];

	snprintf(buf, 64, "%-4u %-4s %3u%%", r->n, fmt_d(r->d, d), r->dropout ? DROP_PERCENT : 0);
	return buf;
}

static void print_times_header(void)
{
	printf("times (CLOCK_MONOTONIC); worker columns: mean over the survivors, all of them timed; D = dropped\n");
	printf("%-14s %3s %3s %3s | %7s %7s %7s %7s %8s | %8s %8s %8s\n", "n    d    drop", "k", "t", "D", "share",
	       "receive", "mask", "unmask", "worker", "finish", "coord", "ring sum");
	printf("%-14s %3s %3s %3s | %7s %7s %7s %7s %8s | %8s %8s %8s\n", "", "", "", "", "ms", "ms", "ms",
	       "ms", "total ms", "s", "calls s", "s");
}

static void print_times(const cell *r)
{
	char name[64];

	printf("%-14s %3u %3u %3u | %7.2f %7.2f %7.2f %7.3f %8.2f | %8.4f %8.4f %8.4f\n", cell_name(r, name), r->k,
	       r->t, r->n_drop, ms(r->w_share.wall), ms(r->w_recv.wall), ms(r->w_mask.wall), ms(r->w_unmask.wall),
	       ms(worker_wall(r)), r->c_finish.wall, r->c_calls.wall, r->c_ring);
}

/* The same times as multiples of this cell's keystream baseline. */
static void print_ks_header(void)
{
	printf("the same times as multiples of one keystream expansion of d+1 elements (x ks; ks measured in each "
	       "cell, best of 5)\n");
	printf("%-14s | %7s %7s %7s %7s %8s | %8s %8s %8s | %7s\n", "n    d    drop", "share", "receive", "mask",
	       "unmask", "worker", "finish", "coord", "ring sum", "ks ms");
}

static void print_ks(const cell *r)
{
	char name[64];

	printf("%-14s | %7.1f %7.1f %7.1f %7.2f %8.1f | %8.1f %8.1f %8.1f | %7.3f\n", cell_name(r, name),
	       r->w_share.wall / r->ks, r->w_recv.wall / r->ks, r->w_mask.wall / r->ks, r->w_unmask.wall / r->ks,
	       worker_wall(r) / r->ks, r->c_finish.wall / r->ks, r->c_calls.wall / r->ks, r->c_ring / r->ks, ms(r->ks));
}

static void print_bytes_header(void)
{
	printf("bytes per worker (protobuf envelopes from tally_msg_encode; masked vector raw), mean over the "
	       "survivors\n");
	printf("%-14s | %6s %7s %5s %9s %7s %9s | %8s %7s %7s %7s | %6s\n", "n    d    drop", "advert", "shares",
	       "ack", "masked", "reveals", "SENT", "key_list", "relay", "unmask", "RECV", "sent/d");
}

static void print_bytes(const cell *r)
{
	char name[64];
	double sent = 0, recv = 0;

	for (int b = 0; b < B_KINDS; b++)
		*(b < B_SENT_END ? &sent : &recv) += r->bytes[b];
	printf("%-14s | %6.0f %7.0f %5.0f %9.0f %7.0f %9.0f | %8.0f %7.0f %7.0f %7.0f | %6.3f\n", cell_name(r, name),
	       r->bytes[B_ADVERT], r->bytes[B_SHARES], r->bytes[B_ACK], r->bytes[B_MASKED], r->bytes[B_REVEALS], sent,
	       r->bytes[B_KEY_LIST], r->bytes[B_RELAY], r->bytes[B_UNMASK], recv, sent / (4.0 * (double)r->d));
}

static void print_parts_header(void)
{
	printf("baselines (this cell); the worker's mask stage against its model quant + (k+1) ks,\n"
	       "and the coordinator's finish against masks x ks + edges x agreement (masks = survivors + "
	       "survivor-dropped edges); cpu = CLOCK_THREAD_CPUTIME_ID\n");
	printf("%-14s | %7s %5s | %6s %5s %6s %5s | %6s %6s %6s %6s %6s | %5s %6s %6s %6s | %7s\n",
	       "n    d    drop", "ks", "GB/s", "quant", "", "X25519", "", "model", "mask", "median", "max", "cpu", "masks",
	       "model", "finish", "finish", "|err|");
	printf("%-14s | %7s %5s | %6s %5s %6s %5s | %6s %6s %6s %6s %6s | %5s %6s %6s %6s | %7s\n", "", "ms", "",
	       "ms", "x ks", "us", "x ks", "x ks", "x ks", "x ks", "x ks", "x ks", "", "s", "cpu s", "x model", "");
}

/* The mask stage's cost model: one quantization, k agreements, k + 1 keystream expansions. */
static double mask_model(const cell *r)
{
	return r->quant + (r->k + 1) * r->ks; /* the k agreements happen in _receive, at the relay */
}

/* Masks the coordinator regenerates in finish: one self mask per survivor, one per survivor-dropped
 * edge; and as many key agreements as edges. */
static uint32_t finish_masks(const cell *r)
{
	return r->n_surv + r->c_pairs;
}

static double finish_model(const cell *r)
{
	return finish_masks(r) * r->ks + r->c_pairs * r->agree;
}

static void print_parts(const cell *r)
{
	char name[64];

	printf("%-14s | %7.3f %5.2f | %6.3f %5.2f %6.1f %5.2f | %6.1f %6.1f %6.1f %6.1f %6.1f | %5u %6.3f %6.3f %6.2f "
	       "| %7.1e\n",
	       cell_name(r, name), ms(r->ks), (double)(r->d + 1) * (r->ring / 8) / r->ks * 1e-9, ms(r->quant),
	       r->quant / r->ks, r->agree * 1e6, r->agree / r->ks, mask_model(r) / r->ks, r->w_mask.wall / r->ks,
	       r->mask_median / r->ks, r->mask_max / r->ks, r->w_mask.cpu / r->ks, finish_masks(r), finish_model(r),
	       r->c_finish.cpu, r->c_finish.cpu / finish_model(r), r->max_err);
}

static void print_claims(const cell *cells, size_t n_cells)
{
	char d[32];

	for (size_t i = 0; i < n_cells; i++) {
		const cell *r = &cells[i];

		if (r->n == MAX_COHORT && r->d == 100000 && r->dropout)
			printf("claim: coordinator unmask n=%u d=%s dropout %u%%: %.3f s on one core (need < %.0f s): %s"
			       "  [cpu %.3f s; all coordinator calls %.3f s]\n",
			       r->n, fmt_d(r->d, d), DROP_PERCENT, r->c_finish.wall, CLAIM_UNMASK_S,
			       r->c_finish.wall < CLAIM_UNMASK_S ? "ok" : "NOT MET", r->c_finish.cpu, r->c_calls.wall);
	}
	for (size_t i = 0; i < n_cells; i++) {
		const cell *r = &cells[i];
		double x = r->mask_median / r->ks;

		printf("claim: per-worker masking cost n=%u d=%s dropout %u%%: %.1f keystream expansions (median "
		       "worker), k=%u (need <= k+2 = %u): %s  [mean %.1f, cpu mean %.1f; whole per-worker time %.1f]\n",
		       r->n, fmt_d(r->d, d), r->dropout ? DROP_PERCENT : 0, x, r->k, r->k + 2,
		       x <= r->k + 2 ? "ok" : "NOT MET", r->w_mask.wall / r->ks, r->w_mask.cpu / r->ks,
		       worker_wall(r) / r->ks);
	}
}

static void print_load(const char *when)
{
	FILE *f = fopen("/proc/loadavg", "r");
	char buf[128] = "?";

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			snprintf(buf, sizeof(buf), "?\n");
		fclose(f);
	}
	printf("load average %s (/proc/loadavg, 2 cores here): %s", when, buf);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: secagg [--quick] [--seed N]\n"
		   "  --quick   n in {10, 100}, d = 1e5 only\n"
		   "  --seed N  seed of inputs, rounding and dropped workers (default 1)\n");
}

static void run_grid(cell *cells, size_t *n_cells, size_t n_n, size_t n_d, uint64_t seed)
{
	static const uint32_t all_n[] = {10, 100, MAX_COHORT};
	static const uint64_t all_d[] = {100000, 1000000};

	print_times_header();
	for (size_t a = 0; a < n_n; a++) {
		cohort *co = cohort_new(all_n[a]);

		for (size_t b = 0; b < n_d; b++)
			for (int drop = 0; drop < 2; drop++) {
				cell *r = &cells[(*n_cells)++];

				memset(r, 0, sizeof(*r));
				r->n = all_n[a], r->d = all_d[b], r->dropout = drop;
				run_cell(r, co, seed, *n_cells);
				print_times(r);
				fflush(stdout);
			}
		cohort_free(co);
	}
}

int main(int argc, char **argv)
{
	cell cells[12];
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
	openblas_set_num_threads(1); /* libtally links OpenBLAS: keep its idle pool off the measured cores */
	printf("secure aggregation, in-process rounds: (k, t) = tally_graph_params(n, %.2f, %.2f), clip %g, qrange "
	       "2^22, weight 1; dropout: %d%% of the workers vanish after share keys, before their masked input\n",
	       GAMMA, DELTA, CLIP, DROP_PERCENT);
	print_load("before");
	printf("\n");
	run_grid(cells, &n_cells, n_n, n_d, seed);
	printf("\n");
	print_ks_header();
	for (size_t i = 0; i < n_cells; i++)
		print_ks(&cells[i]);
	printf("\n");
	print_bytes_header();
	for (size_t i = 0; i < n_cells; i++)
		print_bytes(&cells[i]);
	printf("\n");
	print_parts_header();
	for (size_t i = 0; i < n_cells; i++)
		print_parts(&cells[i]);
	printf("\n");
	print_claims(cells, n_cells);
	printf("\n");
	print_load("after");
	printf("total run time %.0f s\n", now_s() - t_start);
	return 0;
}
