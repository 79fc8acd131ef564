/*
 * Secure aggregation inside a coordinator round: sets up the SecAgg+ server state, moves the
 * stage messages between it and the workers, keeps each stage's deadline, adds masked chunks into
 * the ring sum, and at the end applies the unmasked weighted mean to the global model.
 *
 * Participants are indexed by their position in c->parts, which start_round sorts by name, as
 * the workers see them in RoundStart.
 */
#include "coord.h"

#include "tally/error.h"
#include "tally/graph.h"
#include "tally/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint32_t coord_part_index(const coord *c, const coord_participant *p)
{
	return (uint32_t)(p - c->parts);
}

static bool part_alive(const coord_participant *p)
{
	return p->state != P_FAILED && !p->lost;
}

static void stage_deadline(coord *c)
{
	c->stage_deadline_ms = coord_now_ms() + (int64_t)(c->cfg.sa_stage_s * 1000);
}

/* Fills the round's parameters: graph degree and threshold, ring, participants' names. */
static int make_params(coord *c, tally_wire_secagg *w)
{
	tally_sa_params *p = &c->sa_params;
	uint64_t max_weight = 1;
	int rc;

	memset(p, 0, sizeof(*p));
	snprintf(p->run_id, sizeof(p->run_id), "%s", c->cfg.run_id);
	p->round = c->round;
	p->n = (uint32_t)c->n_parts;
	p->length = c->global->n_params;
	rc = tally_graph_params(p->n, c->cfg.sa_gamma, c->cfg.sa_delta, c->cfg.semi_malicious, &p->k, &p->t);
	if (rc)
		return rc;
	for (size_t i = 0; i < c->n_parts; i++)
		if (c->workers[c->parts[i].worker].examples > max_weight)
			max_weight = c->workers[c->parts[i].worker].examples;
	p->quant = (tally_quant){.clip = c->cfg.sa_clip, .qrange = (uint64_t)c->cfg.sa_qrange};
	/* The largest weight whose n-fold sum still fits a 64-bit ring: a worker claiming more
	 * examples is counted with this many. */
	if (max_weight > UINT64_MAX / ((uint64_t)p->n * (p->quant.qrange + 1)))
		max_weight = UINT64_MAX / ((uint64_t)p->n * (p->quant.qrange + 1));
	p->quant.ring_bits = tally_quant_ring_bits(p->n, max_weight, p->quant.qrange);
	if (p->quant.ring_bits == 0)
		return tally_err(TALLY_ERANGE, "%u updates of weight %llu would overflow even a 64-bit ring", p->n,
				 (unsigned long long)max_weight);
	*w = (tally_wire_secagg){.k = p->k, .t = p->t, .ring_bits = p->quant.ring_bits, .clip = p->quant.clip,
				 .qrange = p->quant.qrange, .max_weight = max_weight, .n = p->n};
	return 0;
}

int coord_sa_start(coord *c, tally_msg *rs)
{
	tally_wire_secagg *w = &rs->u.round_start.secagg;
	const char **names = calloc(c->n_parts, sizeof(char *));
	int rc;

	c->sa_names = calloc(c->n_parts, TALLY_NAME_MAX);
	rc = names && c->sa_names ? make_params(c, w) : TALLY_ENOMEM;
	for (size_t i = 0; rc == 0 && i < c->n_parts; i++) {
		snprintf(c->sa_names[i], TALLY_NAME_MAX, "%s", c->workers[c->parts[i].worker].name);
		names[i] = c->sa_names[i];
	}
	if (rc == 0)
		rc = tally_sa_server_new(&c->sa, &c->sa_params, names, c->roster);
	free(names);
	if (rc == 0) {
		c->ring_words = tally_sa_vector_words(&c->sa_params);
		c->ring = aligned_alloc(64, (c->ring_words * 4 + 63) & ~(size_t)63);
		rc = c->ring ? 0 : TALLY_ENOMEM;
	}
	if (rc == 0) {
		memset(c->ring, 0, c->ring_words * 4);
		w->participants = c->sa_names; /* borrowed for the sends of RoundStart */
		rs->u.round_start.secure = true;
		stage_deadline(c);
		tally_info("round %llu: secure aggregation over %u workers, degree %u, threshold %u, %u-bit ring",
			   (unsigned long long)c->round, c->sa_params.n, c->sa_params.k, c->sa_params.t,
			   c->sa_params.quant.ring_bits);
	}
	return rc;
}

void coord_sa_end(coord *c)
{
	tally_sa_server_destroy(&c->sa);
	free(c->ring);
	c->ring = NULL;
	free(c->sa_names);
	c->sa_names = NULL;
	c->abort_reason[0] = '\0';
}

void coord_sa_abort(coord *c, const char *reason)
{
	if (!c->sa || tally_sa_server_stage(c->sa) == TALLY_SA_ABORTED)
		return;
	tally_sa_server_abort(c->sa, reason);
	tally_warn("round %llu: secure aggregation aborted: %s", (unsigned long long)c->round, reason);
}

/* ---- messages ---- */

static void send_to_part(coord *c, coord_participant *p, tally_msg *m)
{
	m->round = c->round;
	coord_send(c, p->worker, m, NULL, 0, NULL, NULL);
}

static void refuse_part(coord *c, coord_participant *p, const char *what)
{
	coord_note_refusal(c, p->worker);
	tally_warn("round %llu: refused %s from '%s': %s", (unsigned long long)c->round, what,
		   c->workers[p->worker].name, tally_errmsg());
}

void coord_sa_on_message(coord *c, coord_participant *p, tally_inmsg *in)
{
	uint32_t i = coord_part_index(c, p);
	const tally_msg *m = &in->msg;
	int rc;

	switch (m->type) {
	case TALLY_MSG_ADVERT:
		rc = tally_sa_server_on_advert(c->sa, i, &m->u.advert);
		break;
	case TALLY_MSG_SHARES:
		rc = tally_sa_server_on_shares(c->sa, i, m->u.boxes.boxes, m->u.boxes.n_boxes, m->u.boxes.ids,
					       m->u.boxes.n_ids);
		break;
	case TALLY_MSG_RELAY_ACK:
		rc = tally_sa_server_on_ack(c->sa, i, m->u.boxes.ids, m->u.boxes.n_ids);
		break;
	case TALLY_MSG_REVEALS:
		rc = tally_sa_server_on_reveal(c->sa, i, m->u.reveals.r, m->u.reveals.n);
		break;
	default:
		rc = tally_err(TALLY_EPROTO, "not a secure-aggregation message");
	}
	if (rc)
		refuse_part(c, p, tally_msg_type_name(m->type));
	else if ((m->type == TALLY_MSG_SHARES || m->type == TALLY_MSG_RELAY_ACK) && m->u.boxes.n_ids)
		tally_warn("round %llu: '%s' accuses %zu peer(s) of %s it could not use", (unsigned long long)c->round,
			   c->workers[p->worker].name, m->u.boxes.n_ids,
			   m->type == TALLY_MSG_SHARES ? "signed keys" : "share boxes");
}

/* ---- stage transitions ---- */

/* Whether every live participant the current stage waits for has answered. */
static bool stage_complete(const coord *c)
{
	for (size_t i = 0; i < c->n_parts; i++)
		if (part_alive(&c->parts[i]) && tally_sa_server_expects(c->sa, (uint32_t)i))
			return false;
	return true;
}

static void stage_failed(coord *c)
{
	tally_warn("round %llu: %s", (unsigned long long)c->round, tally_errmsg());
}

static void send_key_lists(coord *c)
{
	const tally_sa_advert *list;
	size_t n;

	if (tally_sa_server_close_advertise(c->sa, &list, &n))
		return stage_failed(c);
	for (size_t i = 0; i < n; i++) {
		tally_msg m = {.type = TALLY_MSG_KEY_LIST};

		m.u.key_list.list = (tally_sa_advert *)list;
		m.u.key_list.n = n;
		send_to_part(c, &c->parts[list[i].index], &m);
	}
}

static void send_relays(coord *c)
{
	const uint32_t *u2;
	size_t n;

	if (tally_sa_server_close_share(c->sa, &u2, &n))
		return stage_failed(c);
	for (size_t i = 0; i < n; i++) {
		tally_msg m = {.type = TALLY_MSG_RELAY};
		const tally_sa_box *boxes;
		size_t nb;

		if (tally_sa_server_boxes_for(c->sa, u2[i], &boxes, &nb))
			continue;
		m.u.boxes.boxes = (tally_sa_box *)boxes;
		m.u.boxes.n_boxes = nb;
		m.u.boxes.ids = (uint32_t *)u2;
		m.u.boxes.n_ids = n;
		send_to_part(c, &c->parts[u2[i]], &m);
	}
}

static void open_input(coord *c)
{
	const uint32_t *accept;
	size_t n;

	if (tally_sa_server_close_relay(c->sa, &accept, &n))
		return stage_failed(c);
	for (size_t i = 0; i < c->n_parts; i++)
		if (c->parts[i].state == P_TRAINING || c->parts[i].state == P_READY)
			if (!c->sa || !tally_sa_server_expects(c->sa, (uint32_t)i))
				c->parts[i].state = P_FAILED; /* left out of the masked sum */
	tally_debug("round %llu: masked inputs accepted from %zu workers", (unsigned long long)c->round, n);
}

static void send_unmask(coord *c)
{
	const uint32_t *dropped, *surv;
	size_t nd, ns;

	if (tally_sa_server_close_input(c->sa, &dropped, &nd, &surv, &ns))
		return stage_failed(c);
	tally_info("round %llu: unmasking %zu inputs (%zu dropped)", (unsigned long long)c->round, ns, nd);
	for (size_t i = 0; i < ns; i++) {
		tally_msg m = {.type = TALLY_MSG_UNMASK_REQUEST};

		m.u.unmask.dropped = (uint32_t *)dropped;
		m.u.unmask.n_dropped = nd;
		m.u.unmask.survivors = (uint32_t *)surv;
		m.u.unmask.n_survivors = ns;
		send_to_part(c, &c->parts[surv[i]], &m);
	}
}

/* Whether every accepted participant's masked input is in, or can no longer come. */
static bool inputs_settled(const coord *c)
{
	for (size_t i = 0; i < c->n_parts; i++) {
		part_state st = c->parts[i].state;

		if (st != P_DONE && st != P_FAILED)
			return false;
	}
	return true;
}

void coord_sa_tick(coord *c)
{
	int64_t now = coord_now_ms();
	bool stage_over = now >= c->stage_deadline_ms;
	tally_sa_stage st = tally_sa_server_stage(c->sa);

	if (st == TALLY_SA_INPUT) {
		if (inputs_settled(c)) { /* round.c fails the late ones at the round's deadline */
			send_unmask(c);
			stage_deadline(c);
		}
		return;
	}
	if (st >= TALLY_SA_DONE || (!stage_over && !stage_complete(c)))
		return;
	if (st == TALLY_SA_ADVERTISE)
		send_key_lists(c);
	else if (st == TALLY_SA_SHARE)
		send_relays(c);
	else if (st == TALLY_SA_RELAY)
		open_input(c);
	if (st == TALLY_SA_UNMASK)
		return; /* finishing happens in coord_sa_apply, when the round closes */
	stage_deadline(c);
}

bool coord_sa_accepts_input(const coord *c, const coord_participant *p)
{
	return tally_sa_server_stage(c->sa) == TALLY_SA_INPUT &&
	       tally_sa_server_expects(c->sa, coord_part_index(c, p));
}

void coord_sa_add(coord *c, size_t word_offset, const uint32_t *x, size_t words, bool subtract)
{
	if (c->sa_params.quant.ring_bits == 32) {
		uint32_t *acc = c->ring + word_offset;

		for (size_t i = 0; i < words; i++)
			acc[i] = subtract ? acc[i] - x[i] : acc[i] + x[i];
	} else {
		uint64_t *acc = (uint64_t *)(c->ring + word_offset);
		uint64_t v;

		for (size_t i = 0; i < words / 2; i++) {
			memcpy(&v, x + 2 * i, 8);
			acc[i] = subtract ? acc[i] - v : acc[i] + v;
		}
	}
}

void coord_sa_input_done(coord *c, coord_participant *p)
{
	tally_sa_server_on_input(c->sa, coord_part_index(c, p));
}

/* The round can close once unmasking is over (done, aborted, or its deadline passed). */
bool coord_sa_settled(const coord *c)
{
	tally_sa_stage st = tally_sa_server_stage(c->sa);

	if (st == TALLY_SA_ABORTED || st == TALLY_SA_DONE)
		return true;
	return st == TALLY_SA_UNMASK && (stage_complete(c) || coord_now_ms() >= c->stage_deadline_ms);
}

int coord_sa_apply(coord *c)
{
	uint64_t weight = 0;
	int rc;

	if (tally_sa_server_stage(c->sa) == TALLY_SA_ABORTED)
		return tally_err(TALLY_EQUORUM, "secure aggregation aborted: %s", tally_sa_server_reason(c->sa));
	/* The float accumulator is idle in a secure round: it receives the decoded mean. */
	rc = tally_sa_server_finish(c->sa, c->ring, c->agg->sum, &weight);
	if (rc)
		return rc;
	for (size_t i = 0; i < c->global->n_params; i++)
		if (!isfinite(c->global->params[i] + c->agg->sum[i]))
			return tally_err(TALLY_ENONFINITE, "the aggregate is not finite at parameter %zu", i);
	tally_axpy(c->global->params, c->agg->sum, c->global->n_params, 1.0f);
	c->agg->weight = (double)weight;
	return 0;
}
