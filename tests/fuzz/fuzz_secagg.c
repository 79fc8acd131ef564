/*
 * Fuzz target for the secure-aggregation state machines (tally/secagg.h). The input is a script:
 * one header byte (ring, roster at the coordinator, degree k, threshold t), then 8-byte records
 * (op, who, a, b, seed u32le), each one message or stage change of a round of 5 workers over 8
 * parameters, played against one coordinator and five real workers (real identities, made once).
 * Messages are either the workers' own (advert, boxes, acknowledgement, masked input, reveals),
 * possibly tampered in transit, or built from the record's bytes, and any of them may come out of
 * place. Every call must return 0 or a negative code and never crash or leak; a closing stage that
 * fails leaves the round aborted with a reason; the stage never moves back. When the sum was made
 * only of honest masked inputs and honest reveals, finish must either fail for want of shares
 * (or out of place) or give back exactly the sum of those inputs' encodings. Everything is
 * destroyed at the end of each input.
 */
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "tally/error.h"
#include "tally/keys.h"
#include "tally/mask.h"
#include "tally/quant.h"
#include "tally/rng.h"
#include "tally/secagg.h"

#define N 5
#define D 8
#define MAX_RECORDS 256
#define REC 8

/* ---- identities, made once per process ---- */

static char names_buf[N][8];
static const char *names[N];
static tally_keypair ids[N];
static tally_roster *roster;

static void check(bool ok)
{
	if (!ok)
		abort();
}

static void make_identities(void)
{
	char path[] = "/tmp/tally-fuzz-secagg.XXXXXX";
	int fd;
	FILE *f;

	check(sodium_init() >= 0);
	fd = mkstemp(path);
	check(fd >= 0);
	f = fdopen(fd, "w");
	check(f != NULL);
	for (int i = 0; i < N; i++) {
		char pub[41], sec[41], sign[41];

		snprintf(names_buf[i], sizeof(names_buf[i]), "w%03d", i);
		names[i] = names_buf[i];
		snprintf(ids[i].name, sizeof(ids[i].name), "%s", names[i]);
		check(zmq_curve_keypair(pub, sec) == 0);
		memcpy(ids[i].public_z85, pub, sizeof(pub));
		ids[i].secret_z85 = sodium_malloc(sizeof(sec));
		check(ids[i].secret_z85 != NULL);
		memcpy(ids[i].secret_z85, sec, sizeof(sec));
		ids[i].has_sign = true;
		ids[i].sign_secret = sodium_malloc(crypto_sign_SECRETKEYBYTES);
		check(ids[i].sign_secret != NULL);
		crypto_sign_keypair(ids[i].sign_public, ids[i].sign_secret);
		check(zmq_z85_encode(sign, ids[i].sign_public, 32) != NULL);
		fprintf(f, "%s = \"%s %s\"\n", names[i], pub, sign);
	}
	check(fclose(f) == 0);
	check(tally_roster_load(&roster, path) == 0);
	unlink(path);
}

/* ---- one round ---- */

typedef struct run {
	tally_sa_params p;
	tally_sa_server *srv;
	tally_sa_client *cl[N];
	bool advertised[N];        /* the worker made its advert */
	tally_sa_advert adv[N];
	tally_sa_box *boxes[N];    /* what each worker sealed, for resending */
	size_t n_boxes[N];
	bool received[N];          /* the worker took its relay */
	bool suspect[N];           /* lied to, or refused a message midway (see taint_suspects) */
	const tally_sa_advert *list;
	size_t n_list;
	const uint32_t *u2, *accept, *dropped, *survivors;
	size_t n_u2, n_accept, n_dropped, n_survivors;
	uint32_t *sum;             /* tally_sa_vector_words, 64-byte aligned */
	bool added[N];             /* an honest masked input of this worker is in sum */
	uint32_t input_seed[N];
	uint64_t input_w[N];
	bool tainted;              /* sum or shares hold bytes no honest worker made */
	tally_sa_stage stage;
	uint32_t rng;              /* for bytes built from records */
} run;

static uint32_t next(run *r)
{
	uint32_t z = (r->rng += 0x9e3779b9u);

	z = (z ^ (z >> 16)) * 0x85ebca6bu;
	z = (z ^ (z >> 13)) * 0xc2b2ae35u;
	return z ^ (z >> 16);
}

static void fill(run *r, void *buf, size_t n)
{
	uint8_t *b = buf;

	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)next(r);
}

static void check_rc(const run *r, int rc)
{
	check(rc <= 0);
}

/* The stage never moves back; an abort always carries a reason. */
static void check_stage(run *r)
{
	tally_sa_stage st = tally_sa_server_stage(r->srv);

	check(st >= r->stage);
	check((st == TALLY_SA_ABORTED) == (tally_sa_server_reason(r->srv)[0] != '\0'));
	r->stage = st;
}

static void input_of(const run *r, uint32_t seed, float *x)
{
	tally_rng rng;

	tally_rng_seed(&rng, seed, 1);
	for (int i = 0; i < D; i++)
		x[i] = (float)((2 * tally_rng_uniform(&rng) - 1) * r->p.quant.clip * 1.5); /* some clipped */
}

static void add_into(const run *r, const uint32_t *v)
{
	if (r->p.quant.ring_bits == 32) {
		for (int i = 0; i <= D; i++)
			r->sum[i] += v[i];
	} else {
		uint64_t *s = (uint64_t *)r->sum;
		const uint64_t *w = (const uint64_t *)v;

		for (int i = 0; i <= D; i++)
			s[i] += w[i];
	}
}

static uint32_t *vec_new(const run *r)
{
	uint32_t *v = aligned_alloc(64, 192); /* (D + 1) u64 = 72 bytes, rounded up */

	check(v != NULL);
	memset(v, 0, 192);
	return v;
}

static void run_new(run *r, uint8_t hdr)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->p.run_id, sizeof(r->p.run_id), "fuzz");
	r->p.round = 3;
	r->p.n = N;
	r->p.k = hdr & 4 ? 2 : 4;
	r->p.t = 1 + (hdr >> 3) % r->p.k;
	r->p.quant.clip = 0.5;
	r->p.quant.qrange = 1000;
	r->p.quant.ring_bits = hdr & 1 ? 64 : 32;
	r->p.length = D;
	check(tally_sa_vector_words(&r->p) * 4 <= 192);
	check(tally_sa_server_new(&r->srv, &r->p, names, hdr & 2 ? roster : NULL) == 0);
	for (int i = 0; i < N; i++)
		check(tally_sa_client_new(&r->cl[i], &r->p, names, roster, &ids[i]) == 0);
	r->sum = vec_new(r);
	r->stage = TALLY_SA_ADVERTISE;
}

static void run_free(run *r)
{
	tally_sa_server_destroy(&r->srv);
	check(r->srv == NULL);
	for (int i = 0; i < N; i++) {
		tally_sa_client_destroy(&r->cl[i]);
		free(r->boxes[i]);
	}
	free(r->sum);
}

/* ---- the ops ---- */

static void op_advert(run *r, uint32_t who, uint8_t a, uint8_t b)
{
	tally_sa_advert adv;
	uint32_t from = a & 1 ? b % (N + 1) : who;

	if (!r->advertised[who]) {
		check_rc(r, tally_sa_client_advertise(r->cl[who], &r->adv[who]));
		r->advertised[who] = true;
	} else {
		check(tally_sa_client_advertise(r->cl[who], &adv) == TALLY_EPROTO);
	}
	adv = r->adv[who];
	if (a & 2) /* tampered in transit */
		((uint8_t *)&adv)[b % sizeof(adv)] ^= (uint8_t)(1 << (a >> 5));
	check_rc(r, tally_sa_server_on_advert(r->srv, from, &adv));
}

static void op_advert_raw(run *r, uint32_t who, uint8_t a)
{
	tally_sa_advert adv;

	fill(r, &adv, sizeof(adv));
	adv.index = a & 1 ? who : adv.index % (N + 2);
	check_rc(r, tally_sa_server_on_advert(r->srv, who, &adv));
}

static void op_close_advertise(run *r)
{
	const tally_sa_advert *list = NULL;
	size_t n = 0;
	int rc = tally_sa_server_close_advertise(r->srv, &list, &n);

	check_rc(r, rc);
	if (rc == 0) {
		check(list != NULL && n >= 1 && n <= N);
		r->list = list;
		r->n_list = n;
	} else if (rc == TALLY_EQUORUM) {
		check(tally_sa_server_stage(r->srv) == TALLY_SA_ABORTED);
	}
}

static void op_share(run *r, uint32_t who, uint8_t a, uint8_t b)
{
	tally_sa_advert list[N + 1];
	uint32_t *rej = NULL;
	size_t n_list = r->n_list, nr = 0;
	int rc;

	if (!r->boxes[who] && r->list) {
		bool lie = false;

		memcpy(list, r->list, n_list * sizeof(*list));
		if (a & 1) { /* tampered key list */
			((uint8_t *)list)[b % (n_list * sizeof(*list))] ^= (uint8_t)(1 << (a >> 5));
			lie = true;
		}
		if (a & 2 && n_list > 1) {
			n_list--; /* the last entry withheld */
			lie = true;
		}
		rc = tally_sa_client_share(r->cl[who], list, n_list, &r->boxes[who], &r->n_boxes[who], &rej, &nr);
		check_rc(r, rc);
		/* a refusal after the worker advertised may have left part of the list behind */
		r->suspect[who] |= lie || (rc != 0 && r->advertised[who]);
		if (rc) {
			check(r->boxes[who] == NULL);
			free(rej);
			return;
		}
	}
	rc = tally_sa_server_on_shares(r->srv, a & 4 ? b % (N + 1) : who, r->boxes[who], r->n_boxes[who], rej, nr);
	check_rc(r, rc);
	free(rej);
}

static void op_share_raw(run *r, uint32_t who, uint8_t a, uint8_t b)
{
	tally_sa_box boxes[6];
	uint32_t rej[4];
	size_t n = a % 6, nr = b % 4;

	fill(r, boxes, sizeof(boxes));
	for (size_t i = 0; i < n; i++) {
		if (!(b & 0x10))
			boxes[i].from = who;
		if (!(b & 0x20))
			boxes[i].to %= N + 1;
	}
	for (size_t i = 0; i < nr; i++)
		rej[i] = next(r) % (N + 2);
	check_rc(r, tally_sa_server_on_shares(r->srv, who, boxes, n, rej, nr));
}

static void op_close_share(run *r)
{
	int rc = tally_sa_server_close_share(r->srv, &r->u2, &r->n_u2);

	check_rc(r, rc);
	if (rc == 0)
		check(r->n_u2 >= 1 && r->n_u2 <= N);
	else if (rc == TALLY_EQUORUM)
		check(tally_sa_server_stage(r->srv) == TALLY_SA_ABORTED);
}

static void op_receive(run *r, uint32_t who, uint8_t a, uint8_t b)
{
	const tally_sa_box *in = NULL;
	tally_sa_box boxes[N * N]; /* raw shares may stack several boxes of one sender on one recipient */
	uint32_t u2[N], *rej = NULL;
	size_t n = 0, n_u2 = 0, nr = 0;
	int rc = tally_sa_server_boxes_for(r->srv, who, &in, &n);

	check_rc(r, rc);
	if (rc || !r->u2)
		return;
	check(n <= (N - 1) * r->p.k);
	if (n > 0) /* in may be NULL when there is none */
		memcpy(boxes, in, n * sizeof(*boxes));
	if (a & 1 && n > 0) /* tampered relay: any byte, from and to included */
		((uint8_t *)boxes)[b % (n * sizeof(*boxes))] ^= (uint8_t)(1 << (a >> 5));
	n_u2 = r->n_u2;
	memcpy(u2, r->u2, n_u2 * sizeof(*u2));
	if (a & 2) { /* a made-up U2 */
		n_u2 = next(r) % (N + 1);
		for (size_t i = 0; i < n_u2; i++)
			u2[i] = next(r) % (N + 1);
	}
	rc = tally_sa_client_receive(r->cl[who], u2, n_u2, boxes, n, &rej, &nr);
	check_rc(r, rc);
	if (r->boxes[who] && !r->received[who]) /* in the stage that takes a relay */
		r->suspect[who] |= (a & 2) || rc != 0;
	r->received[who] |= rc == 0;
	if (!(a & 4))
		check_rc(r, tally_sa_server_on_ack(r->srv, who, rej, nr));
	free(rej);
}

static void op_ack_raw(run *r, uint32_t who, uint8_t a)
{
	uint32_t rej[4];
	size_t nr = a % 5;

	for (size_t i = 0; i < nr; i++)
		rej[i] = next(r) % (N + 2);
	check_rc(r, tally_sa_server_on_ack(r->srv, who, rej, nr));
}

static void op_close_relay(run *r)
{
	int rc = tally_sa_server_close_relay(r->srv, &r->accept, &r->n_accept);

	check_rc(r, rc);
	if (rc == TALLY_EQUORUM)
		check(tally_sa_server_stage(r->srv) == TALLY_SA_ABORTED);
}

static void op_input(run *r, uint32_t who, uint8_t a, uint32_t seed)
{
	float x[D];
	uint32_t *v = NULL;
	uint64_t w = 1 + a % 50;
	tally_rng rng;
	int rc;

	input_of(r, seed, x);
	tally_rng_seed(&rng, seed, 2);
	rc = tally_sa_client_mask(r->cl[who], x, w, &rng, &v);
	check_rc(r, rc);
	if (rc) {
		check(v == NULL);
		return;
	}
	/* a coordinator adds a masked input only when it waits for that one */
	if (tally_sa_server_stage(r->srv) == TALLY_SA_INPUT && tally_sa_server_expects(r->srv, who)) {
		add_into(r, v);
		check(tally_sa_server_on_input(r->srv, who) == 0);
		r->added[who] = true;
		r->input_seed[who] = seed;
		r->input_w[who] = w;
	} else {
		check(tally_sa_server_on_input(r->srv, who) < 0);
	}
	free(v);
}

static void op_input_raw(run *r, uint32_t who)
{
	uint32_t *v = vec_new(r);

	fill(r, v, tally_sa_vector_words(&r->p) * 4);
	if (tally_sa_server_on_input(r->srv, who) == 0) {
		add_into(r, v);
		r->tainted = true;
	}
	free(v);
}

static void op_close_input(run *r)
{
	int rc = tally_sa_server_close_input(r->srv, &r->dropped, &r->n_dropped, &r->survivors, &r->n_survivors);

	check_rc(r, rc);
	if (rc == 0) {
		check(r->n_dropped + r->n_survivors == r->n_u2);
		for (size_t i = 0; i < r->n_survivors; i++)
			check(r->added[r->survivors[i]] || r->tainted);
	} else if (rc == TALLY_EQUORUM) {
		check(tally_sa_server_stage(r->srv) == TALLY_SA_ABORTED);
	}
}

static void op_reveal(run *r, uint32_t who, uint8_t a, uint8_t b)
{
	uint32_t dropped[N], surv[N];
	size_t nd = r->n_dropped, ns = r->n_survivors, n = 0;
	tally_sa_reveal *rv = NULL;
	int rc;

	if (ns > 0)
		memcpy(surv, r->survivors, ns * sizeof(*surv));
	if (nd > 0)
		memcpy(dropped, r->dropped, nd * sizeof(*dropped));
	if (a & 1) { /* a made-up request */
		nd = next(r) % 3;
		ns = next(r) % (N + 1);
		for (size_t i = 0; i < nd; i++)
			dropped[i] = next(r) % (N + 1);
		for (size_t i = 0; i < ns; i++)
			surv[i] = i == 0 ? next(r) % 2 : surv[i - 1] + 1 + next(r) % 2;
	}
	rc = tally_sa_client_unmask(r->cl[who], dropped, nd, surv, ns, &rv, &n);
	check_rc(r, rc);
	if (rc) {
		check(rv == NULL && n == 0);
		return;
	}
	check(n <= r->p.k);
	if (a & 2 && n > 0) { /* a share changed in transit */
		((uint8_t *)&rv[b % n].share)[8 + b % 40] ^= (uint8_t)(1 << (a >> 5));
		r->tainted = true;
	}
	check_rc(r, tally_sa_server_on_reveal(r->srv, a & 4 ? b % (N + 1) : who, rv, n));
	tally_sa_reveals_free(rv);
}

static void op_reveal_raw(run *r, uint32_t who, uint8_t a, uint8_t b)
{
	tally_sa_reveal rv[6];
	size_t n = a % 6;

	fill(r, rv, sizeof(rv));
	for (size_t i = 0; i < n; i++) {
		rv[i].owner %= N + 1;
		if (!(b & 1))
			rv[i].kind = 1 + rv[i].kind % 2;
		if (!(b & 2))
			rv[i].share.x = who + 1;
		if (!(b & 4))
			for (int l = 0; l < 5; l++)
				rv[i].share.y[l] &= ((uint64_t)1 << 60) - 1;
	}
	if (tally_sa_server_on_reveal(r->srv, who, rv, n) == 0 && n > 0)
		r->tainted = true;
}

/* With honest inputs and honest shares only, finish gives the exact sum or wants for shares. */
static void op_finish(run *r)
{
	float mean[D];
	uint64_t total = 0, want_w = 0;
	uint32_t *want = NULL, *enc = NULL;
	int rc = tally_sa_server_finish(r->srv, r->sum, mean, &total);

	check_rc(r, rc);
	if (r->tainted)
		return;
	if (rc) {
		check(rc == TALLY_EQUORUM || rc == TALLY_EPROTO);
		return;
	}
	want = vec_new(r);
	enc = vec_new(r);
	for (int i = 0; i < N; i++) {
		float x[D];
		tally_rng rng;

		if (!r->added[i])
			continue;
		input_of(r, r->input_seed[i], x);
		tally_rng_seed(&rng, r->input_seed[i], 2);
		check(tally_quant_encode(&r->p.quant, x, D, r->input_w[i], &rng, enc) == 0);
		if (r->p.quant.ring_bits == 32) {
			for (int e = 0; e <= D; e++)
				want[e] += enc[e];
		} else {
			for (int e = 0; e <= D; e++)
				((uint64_t *)want)[e] += ((uint64_t *)enc)[e];
		}
		want_w += r->input_w[i];
	}
	check(memcmp(want, r->sum, tally_sa_vector_words(&r->p) * 4) == 0);
	check(total == want_w);
	free(want);
	free(enc);
}

static void op_misc(run *r, uint32_t who, uint8_t a)
{
	const tally_sa_box *boxes;
	size_t n;

	switch (a % 4) {
	case 0:
		tally_sa_server_abort(r->srv, "fuzz: the coordinator stops");
		check(tally_sa_server_stage(r->srv) == TALLY_SA_ABORTED);
		break;
	case 1:
		for (uint32_t i = 0; i <= N + 1; i++)
			(void)tally_sa_server_expects(r->srv, i);
		break;
	case 2:
		check_rc(r, tally_sa_server_boxes_for(r->srv, who, &boxes, &n));
		break;
	default:
		check(tally_sa_server_reason(r->srv) != NULL);
		break;
	}
}

/*
 * An honest sum is promised only for workers that saw what everyone saw: a worker given its own
 * key list or U2 (a lying coordinator) masks against another session or set. And a worker call
 * refused midway and retried can keep state from the refused message (secagg_client.c keeps what
 * it read before the refusal; see test_share_retry_is_fresh and test_receive_retry_is_fresh in
 * tests/unit/test_secagg.c): until that is fixed, such a worker is suspect too.
 */
static void taint_suspects(run *r)
{
	for (int i = 0; i < N; i++)
		if (r->suspect[i] && r->added[i])
			r->tainted = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run r;
	size_t records;

	if (!roster)
		make_identities();
	if (size < 1)
		return 0;
	run_new(&r, data[0]);
	records = (size - 1) / REC;
	if (records > MAX_RECORDS)
		records = MAX_RECORDS;
	for (size_t i = 0; i < records; i++) {
		const uint8_t *rec = data + 1 + i * REC;
		uint32_t who = rec[1] % N, seed = (uint32_t)rec[4] | (uint32_t)rec[5] << 8 |
						 (uint32_t)rec[6] << 16 | (uint32_t)rec[7] << 24;
		uint8_t a = rec[2], b = rec[3];

		r.rng = seed ^ (uint32_t)i;
		switch (rec[0] % 16) {
		case 0: op_advert(&r, who, a, b); break;
		case 1: op_advert_raw(&r, rec[1] % (N + 1), a); break;
		case 2: op_close_advertise(&r); break;
		case 3: op_share(&r, who, a, b); break;
		case 4: op_share_raw(&r, rec[1] % (N + 1), a, b); break;
		case 5: op_close_share(&r); break;
		case 6: op_receive(&r, who, a, b); break;
		case 7: op_ack_raw(&r, rec[1] % (N + 1), a); break;
		case 8: op_close_relay(&r); break;
		case 9: op_input(&r, who, a, seed); break;
		case 10: op_input_raw(&r, rec[1] % (N + 1)); break;
		case 11: op_close_input(&r); break;
		case 12: op_reveal(&r, who, a, b); break;
		case 13: op_reveal_raw(&r, rec[1] % (N + 1), a, b); break;
		case 14: taint_suspects(&r); op_finish(&r); break;
		default: op_misc(&r, rec[1] % (N + 2), a); break;
		}
		check_stage(&r);
	}
	run_free(&r);
	return 0;
}
