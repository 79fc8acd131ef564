/*
 * The coordinator's round state machine.
 *
 * A round: select participants among idle workers (seeded), send each RoundStart and the global
 * model as zero-copy chunks, wait for UpdateReady, pull each update's chunks in order (at most
 * max_inflight_chunks at once over all participants, which bounds memory), verify every chunk
 * against the digest list the worker committed to, check it is finite, and add it into the one
 * accumulator at once. A chunk that fails takes its update back out: the chunks already added are
 * pulled again (verified against the same digests, so they are the same bytes) and subtracted.
 * The round closes when every participant is done or failed, or at the deadline; with at least
 * `quorum` updates the global model moves, is evaluated, saved atomically and logged.
 *
 * Participant states: TRAINING -> READY -> PULLING -> DONE, or -> UNDOING -> FAILED, or FAILED.
 */
#include "coord.h"

#include "tally/error.h"
#include "tally/fs.h"
#include "tally/log.h"

#include <jansson.h>
#include <sodium.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the shared model buffer ---- */

/* Drops a reference to the model buffer (the coordinator's, or a sent chunk's). Any thread. */
static void blob_unref(void *data, void *hint)
{
	coord_blob *b = hint;

	(void)data;
	if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		free(b->data);
		free(b);
	}
}

static coord_blob *blob_ref(coord_blob *b)
{
	__atomic_add_fetch(&b->refs, 1, __ATOMIC_ACQ_REL);
	return b;
}

/* Makes c->blob exclusively ours before the global model changes (copy-on-write). */
static int blob_own(coord *c)
{
	coord_blob *b;

	if (__atomic_load_n(&c->blob->refs, __ATOMIC_ACQUIRE) == 1)
		return 0;
	b = calloc(1, sizeof(*b));
	if (!b || !(b->data = aligned_alloc(64, (c->blob->n * sizeof(float) + 63) & ~(size_t)63))) {
		free(b);
		return TALLY_ENOMEM;
	}
	memcpy(b->data, c->blob->data, c->blob->n * sizeof(float));
	b->n = c->blob->n;
	b->refs = 1;
	blob_unref(NULL, c->blob);
	c->blob = b;
	c->global->params = b->data;
	return 0;
}

static void blob_release_model(coord *c)
{
	if (!c->blob)
		return;
	if (c->global)
		c->global->params = NULL;
	blob_unref(NULL, c->blob);
	c->blob = NULL;
}

/* ---- set-up ---- */

int coord_round_load_model(coord *c)
{
	uint32_t dims[TALLY_MODEL_MAX_LAYERS + 1], n_layers;
	int rc;

	if (c->cfg.init_model[0]) {
		rc = tally_model_load(&c->global, c->cfg.init_model);
		if (rc)
			return rc;
		tally_info("starting from %s", c->cfg.init_model);
	} else {
		rc = tally_model_arch_parse(c->cfg.arch, dims, &n_layers);
		if (rc == 0)
			rc = tally_model_new(&c->global, dims, n_layers);
		if (rc)
			return tally_err(TALLY_ECONFIG, "model.arch: %s", tally_errmsg());
		tally_model_init(c->global, (uint64_t)c->cfg.model_seed);
	}
	tally_model_arch_format(c->global, c->cfg.arch, sizeof(c->cfg.arch));
	if (c->eval && c->eval->dim != c->global->dims[0])
		return tally_err(TALLY_ECONFIG, "eval set has %u features but the model takes %u",
				 c->eval->dim, c->global->dims[0]);
	snprintf(c->global->run_id, sizeof(c->global->run_id), "%s", c->cfg.run_id);
	c->blob = calloc(1, sizeof(*c->blob));
	if (!c->blob)
		return TALLY_ENOMEM;
	c->blob->data = c->global->params;
	c->blob->n = c->global->n_params;
	c->blob->refs = 1;
	tally_rng_seed(&c->select_rng, (uint64_t)c->cfg.round_seed, 0x5e1ec7);
	tally_info("model %s: %zu parameters", c->cfg.arch, c->global->n_params);
	return tally_agg_new(&c->agg, c->global->n_params);
}

/* ---- selection and start ---- */

static int cmp_by_name(const void *a, const void *b, void *arg)
{
	const coord *c = arg;

	return strcmp(c->workers[*(const int *)a].name, c->workers[*(const int *)b].name);
}

/* How many to select: the planned number, plus the over-selection, within the live ones. Sets
 * c->target_updates to the planned number when over-selecting (the round closes once it is in). */
static size_t pick_count(coord *c, size_t live)
{
	size_t k = (size_t)ceil(c->cfg.fraction * (double)live), over;

	if (k < (size_t)c->cfg.min_participants)
		k = (size_t)c->cfg.min_participants;
	if (c->cfg.max_participants && k > (size_t)c->cfg.max_participants)
		k = (size_t)c->cfg.max_participants;
	if (k > live)
		k = live;
	over = k + (size_t)ceil(c->cfg.over_selection * (double)k);
	c->target_updates = over > k && live > k ? k : 0;
	return over < live ? over : live;
}

/* Chooses participants among idle workers; returns how many, 0 when too few are live. */
static size_t select_participants(coord *c, int *chosen)
{
	size_t live = 0, k;
	tally_rng rng;

	for (size_t i = 0; i < c->n_workers; i++)
		if (c->workers[i].state == W_IDLE)
			chosen[live++] = (int)i;
	/* The cohort assembles once: later rounds go on with whoever is live. */
	if ((c->round == 0 && live < (size_t)c->cfg.min_workers) || live < (size_t)c->cfg.min_participants)
		return 0;
	qsort_r(chosen, live, sizeof(int), cmp_by_name, c);
	tally_rng_seed(&rng, (uint64_t)c->cfg.round_seed, c->round + 1);
	k = pick_count(c, live);
	for (size_t i = 0; i < k; i++) {
		size_t j = i + (size_t)tally_rng_below(&rng, live - i);
		int t = chosen[i];

		chosen[i] = chosen[j];
		chosen[j] = t;
	}
	return k;
}

/* The RoundStart every participant gets (secure-aggregation fields are added by secround.c). */
static void round_start_msg(coord *c, tally_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->type = TALLY_MSG_ROUND_START;
	m->round = c->round;
	tally_model_arch_format(c->global, m->u.round_start.arch, sizeof(m->u.round_start.arch));
	m->u.round_start.n_params = c->global->n_params;
	memcpy(m->u.round_start.model_digest, c->global_digest, TALLY_DIGEST_BYTES);
	m->u.round_start.chunk_floats = TALLY_CHUNK_FLOATS;
	m->u.round_start.train = (tally_train_opts){
		.epochs = (uint32_t)c->cfg.epochs, .batch_size = (uint32_t)c->cfg.batch_size,
		.lr = (float)c->cfg.lr, .momentum = (float)c->cfg.momentum,
		.weight_decay = (float)c->cfg.weight_decay, .prox_mu = (float)c->cfg.prox_mu,
		.seed = (uint64_t)c->cfg.round_seed * 1000003u + c->round,
	};
}

static void send_round_start(coord *c, int w, tally_msg *m)
{
	m->u.round_start.deadline_ms = (uint32_t)(c->round_deadline_ms - coord_now_ms());
	coord_send(c, w, m, NULL, 0, NULL, NULL);
}

#define CHUNKS_PER_PART 2 /* a worker that stops reading holds at most this much of the window */

static void bcast_unref(coord_bcast *b)
{
	if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(b);
}

typedef struct chunk_ref {
	coord_blob *blob;
	coord_bcast *bcast;
	size_t part;
} chunk_ref;

/* libzmq's free function for a sent model chunk; runs on its I/O thread. */
static void chunk_sent(void *data, void *hint)
{
	chunk_ref *r = hint;

	__atomic_sub_fetch(&r->bcast->per_part[r->part], 1, __ATOMIC_ACQ_REL);
	__atomic_sub_fetch(&r->bcast->total, 1, __ATOMIC_ACQ_REL);
	bcast_unref(r->bcast);
	blob_unref(data, r->blob);
	free(r);
}

/* Hands chunk p->model_next to libzmq, zero-copy; false when the worker is unreachable. */
static bool send_chunk(coord *c, coord_participant *p, size_t i)
{
	size_t n = c->global->n_params, off = p->model_next * TALLY_CHUNK_FLOATS;
	size_t len = n - off < TALLY_CHUNK_FLOATS ? n - off : TALLY_CHUNK_FLOATS;
	tally_msg cm = {.type = TALLY_MSG_MODEL_CHUNK, .round = c->round};
	chunk_ref *r = malloc(sizeof(*r));

	if (!r)
		return false;
	*r = (chunk_ref){.blob = blob_ref(c->blob), .bcast = c->bcast, .part = i};
	__atomic_add_fetch(&c->bcast->refs, 1, __ATOMIC_ACQ_REL);
	__atomic_add_fetch(&c->bcast->total, 1, __ATOMIC_ACQ_REL);
	__atomic_add_fetch(&c->bcast->per_part[i], 1, __ATOMIC_ACQ_REL);
	cm.u.chunk.index = p->model_next++;
	return coord_send(c, p->worker, &cm, c->blob->data + off, len * sizeof(float), chunk_sent, r) == 0;
}

/*
 * The paced broadcast: model chunks go out zero-copy from the one shared buffer, at most
 * max_inflight_chunks at a time over all connections (each connection encrypts its chunk into a
 * buffer of its own, so sending to everyone at once would cost a chunk per worker), and to one
 * participant after another, so that the first can start training early; no participant holds
 * more than CHUNKS_PER_PART of the window, so one that stops reading cannot stall the others.
 */
static void schedule_broadcast(coord *c)
{
	size_t nc = tally_chunk_count(c->global->n_params, TALLY_CHUNK_FLOATS);

	for (size_t i = 0; c->bcast && i < c->n_parts; i++) {
		coord_participant *p = &c->parts[i];

		while (p->model_next < nc && p->state == P_TRAINING && !p->lost &&
		       __atomic_load_n(&c->bcast->total, __ATOMIC_ACQUIRE) < c->cfg.max_inflight_chunks &&
		       __atomic_load_n(&c->bcast->per_part[i], __ATOMIC_ACQUIRE) < CHUNKS_PER_PART) {
			if (!send_chunk(c, p, i)) {
				p->model_next = nc; /* unreachable: its loss shows in its silence */
				break;
			}
		}
		if (__atomic_load_n(&c->bcast->total, __ATOMIC_ACQUIRE) >= c->cfg.max_inflight_chunks)
			return;
	}
}

bool coord_round_is_busy(const coord *c)
{
	size_t nc = c->global ? tally_chunk_count(c->global->n_params, TALLY_CHUNK_FLOATS) : 0;

	for (size_t i = 0; c->round_open && i < c->n_parts; i++)
		if (c->parts[i].model_next < nc && c->parts[i].state == P_TRAINING)
			return true;
	return false;
}

static void start_round(coord *c)
{
	int *chosen = malloc((c->n_workers ? c->n_workers : 1) * sizeof(int));
	tally_msg rs;
	size_t k;

	if (!chosen)
		return;
	k = select_participants(c, chosen);
	if (k == 0) {
		free(chosen);
		return;
	}
	c->parts = calloc(k, sizeof(*c->parts));
	if (!c->parts) {
		free(chosen);
		return;
	}
	c->round++;
	c->attempts++;
	randombytes_buf(&c->attempt, sizeof(c->attempt));
	c->n_parts = k;
	c->round_open = true;
	c->round_started_ms = coord_now_ms();
	c->round_deadline_ms = c->round_started_ms + (int64_t)(c->cfg.deadline_s * 1000);
	c->bytes_in = c->bytes_out = 0;
	c->data_chunks = 0;
	tally_agg_reset(c->agg);
	tally_digest_tensor(c->global->params, c->global->n_params, TALLY_CHUNK_FLOATS, c->global_digest, NULL);
	if (c->cfg.secure_agg) /* participants' indices are their positions by name */
		qsort_r(chosen, k, sizeof(int), cmp_by_name, c);
	for (size_t i = 0; i < k; i++) {
		c->parts[i].worker = chosen[i];
		c->parts[i].state = P_TRAINING;
		c->workers[chosen[i]].state = W_BUSY;
	}
	round_start_msg(c, &rs);
	if (c->cfg.secure_agg && coord_sa_start(c, &rs)) {
		snprintf(c->abort_reason, sizeof(c->abort_reason), "secure aggregation cannot start: %s", tally_errmsg());
		tally_error("round %llu: %s", (unsigned long long)c->round, c->abort_reason);
		for (size_t i = 0; i < k; i++)
			c->parts[i].state = P_FAILED;
		free(chosen);
		return;
	}
	c->bcast = calloc(1, sizeof(*c->bcast) + k * sizeof(int));
	if (c->bcast)
		c->bcast->refs = 1;
	for (size_t i = 0; i < k; i++)
		send_round_start(c, chosen[i], &rs);
	schedule_broadcast(c);
	tally_info("round %llu: %zu participant(s), deadline %.0f s", (unsigned long long)c->round, k,
		   c->cfg.deadline_s);
	free(chosen);
}

/* ---- participants ---- */

static coord_participant *find_part(coord *c, int worker)
{
	for (size_t i = 0; i < c->n_parts; i++)
		if (c->parts[i].worker == worker)
			return &c->parts[i];
	return NULL;
}

/* 32-bit words of one update: floats in a plain round, the masked ring vector in a secure one. */
static size_t update_words(const coord *c)
{
	return c->sa ? c->ring_words : c->global->n_params;
}

static size_t chunk_len(const coord *c, size_t index)
{
	size_t off = index * TALLY_CHUNK_FLOATS, n = update_words(c);

	return n - off < TALLY_CHUNK_FLOATS ? n - off : TALLY_CHUNK_FLOATS;
}

/* Ends a participant's part in the round and tells its worker. */
static void finish_part(coord *c, coord_participant *p, part_state st, const char *reason)
{
	tally_msg m = {.type = TALLY_MSG_ROUND_END, .round = c->round};

	c->inflight -= p->outstanding;
	p->outstanding = 0;
	p->state = st;
	free(p->chunk_digests);
	p->chunk_digests = NULL;
	if (c->sa && st == P_DONE)
		return; /* still needed to unmask: released when the round closes */
	if (c->workers[p->worker].state == W_BUSY) {
		c->workers[p->worker].state = W_IDLE;
		m.u.round_end.accepted = st == P_DONE;
		snprintf(m.u.round_end.reason, sizeof(m.u.round_end.reason), "%s", reason);
		coord_send(c, p->worker, &m, NULL, 0, NULL, NULL);
	}
	if (st == P_FAILED)
		tally_warn("round %llu: update of '%s' not used: %s", (unsigned long long)c->round,
			   c->workers[p->worker].name, reason);
}

/* Aborts the whole round's aggregate: the sum holds part of an update we can no longer remove. */
static void poison_round(coord *c, const char *why)
{
	tally_warn("round %llu: aggregate discarded: %s", (unsigned long long)c->round, why);
	for (size_t i = 0; i < c->n_parts; i++)
		if (c->parts[i].state != P_DONE && c->parts[i].state != P_FAILED)
			finish_part(c, &c->parts[i], P_FAILED, "round aborted");
	c->agg->updates = 0;
	c->agg->weight = 0;
	if (c->sa)
		coord_sa_abort(c, why);
}

static void on_update_ready(coord *c, coord_participant *p, const tally_msg *m)
{
	const char *name = c->workers[p->worker].name;
	size_t nc = tally_chunk_count(update_words(c), TALLY_CHUNK_FLOATS);
	tally_digest d;

	if (p->state != P_TRAINING) {
		c->replays_ignored++; /* a duplicate or replayed offer: the first one stands */
		tally_info("round %llu: ignored a repeated update_ready from '%s'", (unsigned long long)c->round, name);
		return;
	}
	if (m->u.update_ready.n_params != update_words(c) || m->u.update_ready.n_chunks != nc) {
		tally_warn("'%s' sent an update of %llu words in %zu chunks; expected %zu in %zu", name,
			   (unsigned long long)m->u.update_ready.n_params, m->u.update_ready.n_chunks,
			   update_words(c), nc);
		finish_part(c, p, P_FAILED, "update has the wrong shape");
		return;
	}
	tally_digest_list(m->u.update_ready.n_params, m->u.update_ready.chunk_digests, nc, d);
	if (memcmp(d, m->u.update_ready.digest, TALLY_DIGEST_BYTES) != 0) {
		finish_part(c, p, P_FAILED, "update digest does not match its chunk digests");
		return;
	}
	if (m->u.update_ready.examples > c->workers[p->worker].examples) {
		tally_warn("'%s' claims %llu examples for its update; it announced %llu", name,
			   (unsigned long long)m->u.update_ready.examples,
			   (unsigned long long)c->workers[p->worker].examples);
		finish_part(c, p, P_FAILED, "update claims more examples than the worker announced");
		return;
	}
	p->chunk_digests = malloc(nc * sizeof(tally_digest));
	if (!p->chunk_digests) {
		finish_part(c, p, P_FAILED, "coordinator out of memory");
		return;
	}
	memcpy(p->chunk_digests, m->u.update_ready.chunk_digests, nc * sizeof(tally_digest));
	p->n_chunks = nc;
	p->examples = m->u.update_ready.examples;
	p->train_loss = m->u.update_ready.train_loss;
	p->train_accuracy = m->u.update_ready.train_accuracy;
	p->state = P_READY;
}

/* Checks one received chunk against its committed digest and for finiteness, and sums the
 * squares of a plain update (its L2 norm is bounded when the round finishes). */
static const char *check_chunk(const coord *c, coord_participant *p, size_t index, const tally_inmsg *in)
{
	size_t len = chunk_len(c, index);
	const float *x;
	double norm2 = 0, limit = c->cfg.max_update_value;
	tally_digest d;

	if (!in->has_data || zmq_msg_size((zmq_msg_t *)&in->data) != len * sizeof(float))
		return "chunk has the wrong length";
	x = zmq_msg_data((zmq_msg_t *)&in->data);
	if (!c->chunk_prechecked) {
		tally_digest_chunk(x, len, d);
		if (memcmp(d, p->chunk_digests[index], TALLY_DIGEST_BYTES) != 0)
			return "chunk does not match its digest";
	}
	if (c->sa || p->state == P_UNDOING)
		return NULL; /* masked ring words are not floats; taken-back chunks passed before */
	/* Everything is checked before anything is added: a float sum cannot take a huge value
	 * back out exactly, so such values never go in. */
	for (size_t i = 0; i < len; i++) {
		if (!isfinite(x[i]))
			return "update holds NaN or infinity";
		if (fabsf(x[i]) > limit)
			return "update holds a value beyond rounds.max_update_value";
		norm2 += (double)x[i] * x[i];
	}
	if (c->cfg.max_update_norm > 0 && sqrt(p->norm2 + norm2) > c->cfg.max_update_norm)
		return "update norm exceeds rounds.max_update_norm";
	p->norm2 += norm2;
	return NULL;
}

static void start_undo(coord *c, coord_participant *p, const char *why)
{
	tally_warn("round %llu: '%s': %s at chunk %zu; taking its update back out",
		   (unsigned long long)c->round, c->workers[p->worker].name, why, p->received);
	if (p->received == 0) {
		finish_part(c, p, P_FAILED, why);
		return;
	}
	p->state = P_UNDOING;
	p->n_chunks = p->received;  /* take back exactly what went in */
	p->next_request = 0;
	p->received = 0;
	c->inflight -= p->outstanding;
	p->outstanding = 0;
	/* Requests already in flight will still answer: they are skipped by index below. */
}

static void on_update_chunk(coord *c, coord_participant *p, tally_inmsg *in)
{
	size_t index = in->msg.u.chunk.index;
	const char *bad;
	float w;

	if ((p->state != P_PULLING && p->state != P_UNDOING) || index >= p->next_request ||
	    index != p->received)
		return; /* unrequested or stale (answers to requests made before an undo) */
	p->outstanding--;
	c->inflight--;
	p->progress_ms = coord_now_ms();
	bad = check_chunk(c, p, index, in);
	if (bad && p->state == P_UNDOING) {
		poison_round(c, "a worker changed its update while it was being taken back out");
		return;
	}
	if (bad) {
		start_undo(c, p, bad);
		return;
	}
	w = p->state == P_UNDOING ? -(float)p->examples : (float)p->examples;
	if (c->chunk_prechecked)
		c->data_chunks++; /* taken from the open data path */
	if (c->sa)
		coord_sa_add(c, index * TALLY_CHUNK_FLOATS, zmq_msg_data(&in->data), chunk_len(c, index),
			     p->state == P_UNDOING);
	else
		tally_agg_add(c->agg, index * TALLY_CHUNK_FLOATS, zmq_msg_data(&in->data), chunk_len(c, index), w);
	if (++p->received < p->n_chunks)
		return;
	if (p->state == P_UNDOING) {
		finish_part(c, p, P_FAILED, "update refused");
		return;
	}
	tally_agg_commit(c->agg, (double)p->examples);
	if (c->sa)
		coord_sa_input_done(c, p);
	finish_part(c, p, P_DONE, "update aggregated");
}

/* Asks p's worker for chunk `index` of its update (over CURVE only once p is curve_only). */
static int request_chunk(coord *c, coord_participant *p, size_t index)
{
	tally_msg m = {.type = TALLY_MSG_CHUNK_REQUEST, .round = c->round};

	m.u.chunk.index = index;
	m.u.chunk.curve_only = p->curve_only;
	return coord_send(c, p->worker, &m, NULL, 0, NULL, NULL);
}

/*
 * Issues chunk requests while the global window has room, one participant at a time, in
 * participant order. A plain round adds floats, whose sum depends on the order of the terms, so
 * it also waits for each participant in turn: the sum is then the same bits on every run.
 * A secure round adds in an integer ring, where order does not matter.
 */
static void schedule_pulls(coord *c)
{
	if (c->sa && tally_sa_server_stage(c->sa) != TALLY_SA_INPUT)
		return; /* masked inputs are pulled only once the relay stage has settled who may send */
	for (size_t i = 0; i < c->n_parts && c->inflight < (size_t)c->cfg.max_inflight_chunks; i++) {
		coord_participant *p = &c->parts[i];

		if (p->state == P_READY && c->sa && !coord_sa_accepts_input(c, p)) {
			finish_part(c, p, P_FAILED, "not among the workers whose shares were kept");
			continue;
		}
		if (p->state == P_READY)
			p->state = P_PULLING;
		if (p->state == P_TRAINING && !c->sa)
			return; /* keep the order: the next update to add is this one */
		if (p->state != P_PULLING && p->state != P_UNDOING)
			continue;
		while (p->next_request < p->n_chunks && c->inflight < (size_t)c->cfg.max_inflight_chunks) {
			if (request_chunk(c, p, p->next_request))
				break;
			if (p->outstanding == 0)
				p->progress_ms = coord_now_ms(); /* waiting starts now */
			p->next_request++;
			p->outstanding++;
			c->inflight++;
		}
		if (p->next_request < p->n_chunks)
			return; /* keep the window on this one until it is fully requested */
	}
}

bool coord_round_data_chunk_ok(coord *c, int worker, const tally_inmsg *in)
{
	coord_participant *p = c->round_open && in->msg.round == c->round && in->msg.attempt == c->attempt
				       ? find_part(c, worker) : NULL;
	size_t index = in->msg.u.chunk.index, len;
	tally_digest d;

	if (!p || !p->chunk_digests || index >= p->n_chunks)
		return true; /* not expected: the round code ignores it as stale, and no chunk is lost */
	len = chunk_len(c, index);
	if (!in->has_data || zmq_msg_size((zmq_msg_t *)&in->data) != len * sizeof(float))
		return false;
	tally_digest_chunk(zmq_msg_data((zmq_msg_t *)&in->data), len, d);
	return memcmp(d, p->chunk_digests[index], TALLY_DIGEST_BYTES) == 0;
}

/* Pulls the rest of p's update over CURVE, asking again for the chunks already requested. */
static void pull_over_curve(coord *c, coord_participant *p, const char *why, const char *what)
{
	if (p->curve_only || (p->state != P_PULLING && p->state != P_UNDOING))
		return;
	p->curve_only = true;
	tally_warn("round %llu: %s '%s''s %s: the rest of its update comes over CURVE", (unsigned long long)c->round,
		   why, c->workers[p->worker].name, what);
	for (size_t i = p->received; i < p->next_request; i++)
		request_chunk(c, p, i); /* the answer that comes first is taken; the other is stale */
	p->progress_ms = coord_now_ms();
}

void coord_round_data_suspect(coord *c, int worker)
{
	coord_participant *p = c->round_open ? find_part(c, worker) : NULL;

	if (p)
		pull_over_curve(c, p, "bad bytes on the data path under", "token");
}

/*
 * A data-path chunk can be lost with its connection (libzmq reconnects, but what was in flight
 * is gone). A participant on the data path (its session has sent chunks there) whose requested
 * chunks have not come for a heartbeat patience is asked again over CURVE, rather than holding
 * the round to its deadline. Workers that send over CURVE are left alone: a slow link is not a
 * lost chunk.
 */
static void check_data_stalls(coord *c)
{
	int64_t now = coord_now_ms();

	if (!c->sa || !c->data)
		return;
	for (size_t i = 0; i < c->n_parts; i++) {
		coord_participant *p = &c->parts[i];

		if (p->outstanding > 0 && !p->curve_only && c->workers[p->worker].data_seen &&
		    now - p->progress_ms > c->cfg.patience_ms)
			pull_over_curve(c, p, "for a patience, no chunk on the data path of", "requests");
	}
}

void coord_round_on_message(coord *c, int worker, tally_inmsg *in)
{
	coord_participant *p = c->round_open && in->msg.round == c->round && in->msg.attempt == c->attempt
				       ? find_part(c, worker) : NULL;
	tally_msg_type t = in->msg.type;

	if (t == TALLY_MSG_ADVERT || t == TALLY_MSG_SHARES || t == TALLY_MSG_RELAY_ACK || t == TALLY_MSG_REVEALS) {
		if (c->sa && p && p->state != P_FAILED)
			coord_sa_on_message(c, p, in);
		else /* the round (or this worker's part in it) is over: a late stage message */
			tally_info("discarded a late %s from '%s' for round %llu", tally_msg_type_name(t),
				   c->workers[worker].name, (unsigned long long)in->msg.round);
		return;
	}
	if (t != TALLY_MSG_UPDATE_READY && t != TALLY_MSG_UPDATE_CHUNK) {
		coord_note_refusal(c, worker);
		tally_warn("refused %s from '%s': not a message a worker sends", tally_msg_type_name(t),
			   c->workers[worker].name);
		coord_refuse(c, in->rid, in->rid_len, "unexpected message type");
		return;
	}
	if (!p || p->state == P_DONE || p->state == P_FAILED) {
		if (t == TALLY_MSG_UPDATE_READY) {
			c->late_discarded++;
			tally_info("discarded a late update from '%s' for round %llu", c->workers[worker].name,
				   (unsigned long long)in->msg.round);
		}
		return;
	}
	if (t == TALLY_MSG_UPDATE_READY)
		on_update_ready(c, p, &in->msg);
	else
		on_update_chunk(c, p, in);
}

void coord_round_on_lost(coord *c, int worker)
{
	coord_participant *p = c->round_open ? find_part(c, worker) : NULL;

	if (p)
		p->lost = true;
	if (!p || p->state == P_DONE || p->state == P_FAILED)
		return;
	if ((p->state == P_PULLING && p->received > 0) || p->state == P_UNDOING) {
		c->workers[worker].state = W_LOST;
		poison_round(c, "a worker was lost while its update was being added");
		return;
	}
	c->workers[worker].state = W_LOST;
	finish_part(c, p, P_FAILED, "worker lost");
}

/* ---- closing a round ---- */

/* A JSON number, or null when there is none (or it is not finite: JSON has no NaN). */
static json_t *number_or_null(bool have, double x)
{
	return have && isfinite(x) ? json_real(x) : json_null();
}

static void write_metrics(coord *c, bool applied, double acc, double loss, double secs)
{
	double w = 0, tl = 0, ta = 0;
	size_t done = 0;
	json_t *o;
	char *line;

	for (size_t i = 0; i < c->n_parts; i++) {
		const coord_participant *p = &c->parts[i];

		if (p->state != P_DONE)
			continue;
		done++;
		w += (double)p->examples;
		tl += (double)p->examples * p->train_loss;
		ta += (double)p->examples * p->train_accuracy;
	}
	o = json_pack("{s:I, s:I, s:s, s:b, s:b, s:o, s:o, s:I, s:I, s:I, s:o, s:o, s:f, s:I, s:I, s:I, s:I, s:I}",
		      "round", (json_int_t)c->round, "attempt", (json_int_t)c->attempts, "run_id", c->cfg.run_id,
		      "applied", applied,
		      "secure_agg", c->sa != NULL,
		      "accuracy", number_or_null(c->eval && applied, acc),
		      "loss", number_or_null(c->eval && applied, loss),
		      "participants", (json_int_t)c->n_parts, "updates", (json_int_t)done,
		      "examples", (json_int_t)w,
		      "train_loss", number_or_null(w > 0, tl / w),
		      "train_accuracy", number_or_null(w > 0, ta / w),
		      "seconds", secs, "bytes_in", (json_int_t)c->bytes_in, "bytes_out", (json_int_t)c->bytes_out,
		      "late_discarded", (json_int_t)c->late_discarded, "replays_ignored", (json_int_t)c->replays_ignored,
		      "data_path_chunks", (json_int_t)c->data_chunks);
	line = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
	if (line) {
		fprintf(c->metrics, "%s\n", line);
		fflush(c->metrics);
		fsync(fileno(c->metrics));
	}
	free(line);
	json_decref(o);
}

static int save_model(coord *c)
{
	char path[1100];

	snprintf(path, sizeof(path), "%s/model.safetensors", c->cfg.state_dir);
	c->global->round = c->round;
	return tally_model_save(c->global, path);
}

/* Lets every participant still held go, telling it whether its update counted. */
static void release_parts(coord *c, bool applied)
{
	for (size_t i = 0; i < c->n_parts; i++) {
		coord_participant *p = &c->parts[i];
		tally_msg m = {.type = TALLY_MSG_ROUND_END, .round = c->round};

		if (c->workers[p->worker].state != W_BUSY)
			continue;
		c->workers[p->worker].state = W_IDLE;
		m.u.round_end.accepted = applied && p->state == P_DONE;
		snprintf(m.u.round_end.reason, sizeof(m.u.round_end.reason), "%s",
			 m.u.round_end.accepted ? "update aggregated" : "round closed without this update");
		coord_send(c, p->worker, &m, NULL, 0, NULL, NULL);
	}
}

/* Moves the global model: the plain FedAvg sum, or the unmasked secure sum. */
static int apply_round(coord *c)
{
	int rc = blob_own(c);

	if (rc == 0)
		rc = c->sa ? coord_sa_apply(c) : tally_agg_apply(c->agg, c->global->params);
	return rc;
}

static void close_round(coord *c)
{
	double secs = (double)(coord_now_ms() - c->round_started_ms) / 1000.0, acc = 0, loss = 0;
	bool applied = false;
	int rc = 0;

	if (c->abort_reason[0]) {
		tally_warn("round %llu: %s: global model unchanged", (unsigned long long)c->round, c->abort_reason);
	} else if (c->agg->updates < (uint32_t)c->cfg.quorum) {
		tally_warn("round %llu: %u update(s), quorum is %lld: global model unchanged",
			   (unsigned long long)c->round, c->agg->updates, (long long)c->cfg.quorum);
	} else if ((rc = apply_round(c)) == 0) {
		applied = true;
		if (c->eval && tally_evaluate(c->global, c->eval, NULL, c->eval->n, &loss, &acc))
			tally_error("round %llu: evaluation failed: %s", (unsigned long long)c->round, tally_errmsg());
		if (save_model(c))
			tally_error("round %llu: model not saved: %s", (unsigned long long)c->round, tally_errmsg());
		if (coord_state_save(c))
			tally_error("round %llu: checkpoint not written: %s", (unsigned long long)c->round, tally_errmsg());
		if (acc > c->best_accuracy)
			c->best_accuracy = acc;
	} else {
		tally_error("round %llu: %s: global model unchanged", (unsigned long long)c->round, tally_errmsg());
	}
	write_metrics(c, applied, acc, loss, secs);
	c->total_in += c->bytes_in;
	c->total_out += c->bytes_out;
	if (applied && c->eval)
		tally_info("round %llu: accuracy %.4f loss %.4f, %u update(s), %.1f s", (unsigned long long)c->round,
			   acc, loss, c->agg->updates, secs);
	else if (applied)
		tally_info("round %llu: %u update(s), %.1f s", (unsigned long long)c->round, c->agg->updates, secs);
	release_parts(c, applied);
	coord_sa_end(c);
	bcast_unref(c->bcast);
	c->bcast = NULL;
	if (applied || !c->cfg.retry_failed) {
		c->attempts = 0;
	} else {
		/* The same round number again: the same seeds, so a run with a retried round ends
		 * with the model of a run without one. */
		tally_info("round %llu will be tried again", (unsigned long long)c->round);
		c->round--;
		c->next_round_at_ms = coord_now_ms() + 1000;
	}
	for (size_t i = 0; i < c->n_parts; i++)
		free(c->parts[i].chunk_digests);
	free(c->parts);
	c->parts = NULL;
	c->n_parts = 0;
	c->inflight = 0;
	c->round_open = false;
}

static bool all_settled(const coord *c)
{
	for (size_t i = 0; i < c->n_parts; i++) {
		part_state st = c->parts[i].state;

		if (st == P_PULLING || st == P_UNDOING || (!c->sa && st != P_DONE && st != P_FAILED))
			return false;
	}
	return !c->sa || coord_sa_settled(c);
}

/* Ends a round that can no longer reach its quorum instead of waiting for its deadlines. */
static void enforce_quorum(coord *c)
{
	size_t alive = 0;

	for (size_t i = 0; i < c->n_parts; i++)
		alive += c->parts[i].state == P_DONE || (c->parts[i].state != P_FAILED && !c->parts[i].lost);
	if (alive >= (size_t)c->cfg.quorum)
		return;
	for (size_t i = 0; i < c->n_parts; i++)
		if (c->parts[i].state == P_TRAINING || c->parts[i].state == P_READY)
			finish_part(c, &c->parts[i], P_FAILED, "the round cannot reach its quorum");
	if (c->sa)
		coord_sa_abort(c, "fewer live participants than the quorum");
}

/* Over-selection: once the planned number of updates is in, the others are not needed. */
static void enforce_target(coord *c)
{
	if (!c->target_updates || c->agg->updates < c->target_updates)
		return;
	for (size_t i = 0; i < c->n_parts; i++)
		if (c->parts[i].state == P_TRAINING || c->parts[i].state == P_READY)
			finish_part(c, &c->parts[i], P_FAILED, "enough updates this round");
}

static void enforce_deadline(coord *c)
{
	bool grace_over = coord_now_ms() >= c->round_deadline_ms + c->cfg.patience_ms;

	for (size_t i = 0; i < c->n_parts; i++) {
		coord_participant *p = &c->parts[i];

		/* Updates being transferred may finish, within the patience; ones not yet offered are
		 * late. A transfer stalled past both leaves part of an update in the sum. */
		if (p->state == P_TRAINING || p->state == P_READY || (p->state == P_PULLING && p->received == 0))
			finish_part(c, p, P_FAILED, "deadline passed");
		else if ((p->state == P_PULLING || p->state == P_UNDOING) && grace_over)
			poison_round(c, "an update stalled in transfer past the deadline");
	}
}

void coord_round_tick(coord *c)
{
	if (!c->round_open) {
		if ((int64_t)c->round < c->cfg.rounds && !c->stopping && coord_now_ms() >= c->next_round_at_ms)
			start_round(c);
		return;
	}
	schedule_broadcast(c);
	if (coord_now_ms() >= c->round_deadline_ms)
		enforce_deadline(c);
	enforce_target(c);
	enforce_quorum(c);
	if (c->sa)
		coord_sa_tick(c);
	schedule_pulls(c);
	check_data_stalls(c);
	if (all_settled(c)) {
		close_round(c);
		if ((int64_t)c->round < c->cfg.rounds && !c->stopping && coord_now_ms() >= c->next_round_at_ms)
			start_round(c); /* the next round at once, not at the next poll timeout */
	}
}

bool coord_round_is_finished(const coord *c)
{
	if (c->round_open)
		return false;
	if ((int64_t)c->round >= c->cfg.rounds)
		return true;
	if (c->cfg.target_accuracy > 0 && c->eval && c->best_accuracy >= c->cfg.target_accuracy) {
		tally_info("target accuracy %.4f reached", c->cfg.target_accuracy);
		return true;
	}
	return false;
}

void coord_round_fini(coord *c)
{
	bcast_unref(c->bcast); /* chunks libzmq still holds keep it alive until they are freed */
	c->bcast = NULL;
	blob_release_model(c);
}

void coord_round_on_withdrawal(coord *c, int worker, const tally_msg *m)
{
	coord_participant *p = c->round_open && m->round == c->round && m->attempt == c->attempt
				       ? find_part(c, worker) : NULL;
	char why[TALLY_TEXT_MAX + 16];

	if (!p || p->state == P_DONE || p->state == P_FAILED)
		return;
	snprintf(why, sizeof(why), "withdrew: %s", m->u.text.reason);
	if (p->state == P_PULLING || p->state == P_UNDOING)
		poison_round(c, "a worker withdrew while its update was being added");
	else
		finish_part(c, p, P_FAILED, why);
}
