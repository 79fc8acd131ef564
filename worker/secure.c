/*
 * The worker's part in secure aggregation: drives its tally_sa_client through the stages as the
 * coordinator's messages arrive, and masks the trained update before it is offered. The peers'
 * identity keys come from this worker's own roster (worker.roster), never from the coordinator.
 */
#include "worker.h"

#include "tally/error.h"
#include "tally/log.h"
#include "tally/rng.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

/*
 * Test-only fault injection: with TALLY_WORKER_FAULT=NAME in the environment, the worker kills
 * itself (SIGKILL, as a crash would) at the named point of its first secure round, so that tests
 * can drop workers at exact protocol stages. Points: after-advert, before-input, before-reveal.
 */
static void fault_point(const char *name)
{
	const char *f = getenv("TALLY_WORKER_FAULT");

	if (f && strcmp(f, name) == 0) {
		tally_warn("TALLY_WORKER_FAULT=%s: killing this worker", name);
		raise(SIGKILL);
	}
}

int worker_sa_start(worker *w, const tally_msg *m)
{
	const tally_wire_secagg *s = &m->u.round_start.secagg;
	const char **names;
	tally_sa_params p = {0};
	tally_sa_advert adv;
	tally_msg out = {.type = TALLY_MSG_ADVERT, .round = m->round};
	int rc;

	if (!w->keys || !w->keys->has_sign)
		return tally_err(TALLY_ECRYPTO, "secure aggregation needs this worker's identity key (worker.key)");
	if (!w->roster)
		return tally_err(TALLY_ECONFIG, "secure aggregation needs the peers' public keys (worker.roster)");
	snprintf(p.run_id, sizeof(p.run_id), "%s", m->run_id);
	p.round = m->round;
	p.n = s->n, p.k = s->k, p.t = s->t, p.length = m->u.round_start.n_params;
	p.quant = (tally_quant){.clip = s->clip, .qrange = s->qrange, .ring_bits = s->ring_bits};
	names = calloc(s->n, sizeof(char *));
	if (!names)
		return TALLY_ENOMEM;
	for (uint32_t i = 0; i < s->n; i++)
		names[i] = s->participants[i];
	rc = tally_sa_client_new(&w->sa, &p, names, w->roster, w->keys);
	free(names);
	if (rc == 0)
		rc = tally_sa_client_advertise(w->sa, &adv);
	if (rc == 0) {
		w->max_weight = s->max_weight;
		out.u.advert = adv;
		rc = worker_send(w, &out, NULL, 0);
		fault_point("after-advert");
	}
	if (rc)
		worker_sa_end(w);
	return rc;
}

/* Leaves this round's secure aggregation, telling the coordinator why so it need not wait. */
static void leave(worker *w, uint64_t round)
{
	tally_msg m = {.type = TALLY_MSG_REFUSAL, .round = round};

	tally_error("round %llu: leaving secure aggregation: %s", (unsigned long long)round, tally_errmsg());
	snprintf(m.u.text.reason, sizeof(m.u.text.reason), "%s", tally_errmsg());
	worker_send(w, &m, NULL, 0);
	worker_sa_end(w);
}

void worker_sa_end(worker *w)
{
	tally_sa_client_destroy(&w->sa);
	worker_job_free(&w->pending);
}

static void on_key_list(worker *w, const tally_msg *m)
{
	tally_msg out = {.type = TALLY_MSG_SHARES, .round = m->round};
	int rc = tally_sa_client_share(w->sa, m->u.key_list.list, m->u.key_list.n, &out.u.boxes.boxes,
				       &out.u.boxes.n_boxes, &out.u.boxes.ids, &out.u.boxes.n_ids);

	if (rc == 0) {
		if (out.u.boxes.n_ids)
			tally_warn("round %llu: %zu peer(s) advertised keys their identity did not sign",
				   (unsigned long long)m->round, out.u.boxes.n_ids);
		worker_send(w, &out, NULL, 0);
		/* The masks need only the peers' keys: sum them now, while the model downloads; the
		 * relay then only takes out the peers the coordinator did not keep. */
		if (tally_sa_client_prepare(w->sa))
			tally_debug("round %llu: masks not prepared at share keys: %s", (unsigned long long)m->round,
				    tally_errmsg());
	} else {
		leave(w, m->round);
	}
	free(out.u.boxes.boxes);
	free(out.u.boxes.ids);
}

static void on_relay(worker *w, const tally_msg *m)
{
	tally_msg out = {.type = TALLY_MSG_RELAY_ACK, .round = m->round};
	int rc = tally_sa_client_receive(w->sa, m->u.boxes.ids, m->u.boxes.n_ids, m->u.boxes.boxes, m->u.boxes.n_boxes,
					 &out.u.boxes.ids, &out.u.boxes.n_ids);

	if (rc) {
		leave(w, m->round);
		return;
	}
	if (out.u.boxes.n_ids)
		tally_warn("round %llu: share boxes of %zu peer(s) missing or forged", (unsigned long long)m->round,
			   out.u.boxes.n_ids);
	worker_send(w, &out, NULL, 0);
	free(out.u.boxes.ids);
	/* The masks do not depend on the update: settle them now (peers left out of the relay come
	 * out of the sum), while training goes on. */
	if (tally_sa_client_prepare(w->sa))
		tally_warn("round %llu: masks not prepared ahead: %s", (unsigned long long)m->round, tally_errmsg());
	fault_point("before-input");
}

static void on_unmask(worker *w, const tally_msg *m)
{
	tally_msg out = {.type = TALLY_MSG_REVEALS, .round = m->round};
	int rc;

	fault_point("before-reveal");
	rc = tally_sa_client_unmask(w->sa, m->u.unmask.dropped, m->u.unmask.n_dropped, m->u.unmask.survivors,
					m->u.unmask.n_survivors, &out.u.reveals.r, &out.u.reveals.n);

	if (rc == 0) {
		worker_send(w, &out, NULL, 0);
		tally_info("round %llu: revealed %zu share(s) for unmasking (%zu dropped)", (unsigned long long)m->round,
			   out.u.reveals.n, m->u.unmask.n_dropped);
	} else {
		tally_warn("round %llu: unmask request refused: %s", (unsigned long long)m->round, tally_errmsg());
	}
	tally_sa_reveals_free(out.u.reveals.r);
}

void worker_sa_on_message(worker *w, const tally_msg *m)
{
	if (!w->sa || m->round != w->round)
		return;
	switch (m->type) {
	case TALLY_MSG_KEY_LIST: on_key_list(w, m); break;
	case TALLY_MSG_RELAY: on_relay(w, m); break;
	case TALLY_MSG_UNMASK_REQUEST: on_unmask(w, m); break;
	default: break;
	}
}

bool worker_sa_ready_to_mask(const worker *w)
{
	return w->sa && tally_sa_client_can_mask(w->sa);
}

int worker_sa_mask(worker *w, worker_job *j)
{
	uint64_t weight = j->stats.examples < w->max_weight ? j->stats.examples : w->max_weight;
	tally_rng rng;
	int rc;

	tally_rng_seed(&rng, j->opts.seed, 0x9a47);
	rc = tally_sa_client_mask(w->sa, j->update, weight ? weight : 1, &rng, &j->masked);
	if (rc)
		return rc;
	j->payload = j->masked;
	j->payload_words = tally_sa_client_words(w->sa);
	j->n_chunks = tally_chunk_count(j->payload_words, TALLY_CHUNK_FLOATS);
	free(j->chunk_digests);
	j->chunk_digests = malloc(j->n_chunks * sizeof(tally_digest));
	if (!j->chunk_digests)
		return TALLY_ENOMEM;
	return tally_digest_tensor((const float *)j->payload, j->payload_words, TALLY_CHUNK_FLOATS, j->digest,
				   j->chunk_digests);
}
