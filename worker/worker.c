/*
 * tally-worker's event loop: connect (CURVE), say hello, keep heartbeats going both ways, receive
 * the global model chunk by chunk (checking its digest), train in a thread, offer the update and
 * send its chunks when the coordinator pulls them. A silent coordinator is reconnected with
 * exponential backoff and jitter.
 */
#include "worker.h"

#include "tally/error.h"
#include "tally/log.h"
#include "tally/signals.h"

#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

int64_t worker_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int worker_send(worker *w, tally_msg *m, const void *data, size_t len)
{
	int rc;

	if (!w->sock)
		return TALLY_EAGAIN;
	snprintf(m->run_id, sizeof(m->run_id), "%s", w->run_id);
	if (m->type != TALLY_MSG_HELLO && m->type != TALLY_MSG_HEARTBEAT && m->type != TALLY_MSG_BYE)
		m->attempt = w->attempt;
	rc = tally_send(w->sock, NULL, 0, m, data, len, NULL, NULL);
	if (rc == 0)
		w->last_sent_ms = worker_now_ms();
	return rc;
}

/* ---- connection ---- */

static void close_data(worker *w)
{
	if (w->data_sock)
		zmq_close(w->data_sock);
	w->data_sock = NULL;
	sodium_memzero(w->data_token, sizeof(w->data_token));
}

/*
 * Connects the open data path: a plain DEALER to the data port on the coordinator's host, used
 * only for masked chunks. ZMQ_IMMEDIATE makes a send fail at once while it has no connection,
 * and the chunk then goes over CURVE, so a data port behind a firewall costs nothing but speed.
 */
static void open_data(worker *w, const tally_msg *m)
{
	char host[256], ep[300];
	const char *start = strstr(w->cfg.coordinator, "://"), *colon;
	int one = 1;

	close_data(w);
	if (w->cfg.insecure || !w->cfg.data_path || m->u.welcome.data_port == 0 || !start)
		return;
	start += 3;
	colon = strrchr(start, ':');
	if (!colon || (size_t)(colon - start) >= sizeof(host))
		return;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - start), start);
	snprintf(ep, sizeof(ep), "tcp://%s:%u", host, m->u.welcome.data_port);
	w->data_sock = zmq_socket(w->ctx, ZMQ_DEALER);
	if (!w->data_sock || tally_sock_limits(w->data_sock) ||
	    zmq_setsockopt(w->data_sock, ZMQ_IMMEDIATE, &one, sizeof(one)) || zmq_connect(w->data_sock, ep) != 0) {
		tally_warn("open data path %s unusable (%s): masked updates go over CURVE", ep, zmq_strerror(zmq_errno()));
		close_data(w);
		return;
	}
	memcpy(w->data_token, m->u.welcome.data_token, TALLY_DATA_TOKEN);
	tally_info("open data path for masked updates: %s", ep);
}

static void close_socket(worker *w)
{
	close_data(w);
	if (w->sock)
		zmq_close(w->sock);
	if (w->monitor)
		zmq_close(w->monitor);
	w->sock = NULL;
	w->monitor = NULL;
}

/* Watches the DEALER's handshakes, so that a refused key is reported in words. */
static int open_monitor(worker *w)
{
	char ep[64];

	snprintf(ep, sizeof(ep), "inproc://monitor-%u", ++w->monitor_seq);
	if (zmq_socket_monitor(w->sock, ep, ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
				ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_DISCONNECTED) != 0)
		return tally_err(TALLY_ESYS, "socket monitor: %s", zmq_strerror(zmq_errno()));
	w->monitor = zmq_socket(w->ctx, ZMQ_PAIR);
	if (!w->monitor || zmq_connect(w->monitor, ep) != 0)
		return tally_err(TALLY_ESYS, "socket monitor: %s", zmq_strerror(zmq_errno()));
	return 0;
}

static void on_monitor_event(worker *w)
{
	zmq_msg_t ev, addr;
	uint16_t id = 0;

	zmq_msg_init(&ev);
	zmq_msg_init(&addr);
	if (zmq_msg_recv(&ev, w->monitor, ZMQ_DONTWAIT) < 0)
		goto out;
	if (zmq_msg_more(&ev))
		zmq_msg_recv(&addr, w->monitor, ZMQ_DONTWAIT);
	if (zmq_msg_size(&ev) >= 2)
		memcpy(&id, zmq_msg_data(&ev), sizeof(id));
	if (id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
		tally_info("%s handshake with %s succeeded", w->cfg.insecure ? "plain-text" : "CURVE", w->cfg.coordinator);
	else if (id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
		tally_error("the coordinator refused this worker's key; ask its operator to enroll %s.pub",
			    w->keys ? w->keys->name : "this worker's");
	else if (id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
		tally_error("handshake with %s failed: wrong coordinator key, or one side runs --insecure",
			    w->cfg.coordinator);
	else if (id == ZMQ_EVENT_DISCONNECTED)
		tally_debug("disconnected from %s", w->cfg.coordinator);
out:
	zmq_msg_close(&ev);
	zmq_msg_close(&addr);
}

static int open_socket(worker *w)
{
	tally_msg hello = {.type = TALLY_MSG_HELLO};

	w->sock = zmq_socket(w->ctx, ZMQ_DEALER);
	if (!w->sock || tally_sock_limits(w->sock))
		return tally_err(TALLY_EIO, "socket: %s", zmq_strerror(zmq_errno()));
	if (!w->cfg.insecure && tally_sock_curve_client(w->sock, w->keys, w->server_key))
		return TALLY_ECRYPTO;
	if (open_monitor(w))
		return TALLY_ESYS;
	if (zmq_connect(w->sock, w->cfg.coordinator) != 0)
		return tally_err(TALLY_ECONFIG, "cannot connect to %s: %s", w->cfg.coordinator, zmq_strerror(zmq_errno()));
	w->phase = WS_CONNECTING;
	w->run_id[0] = '\0';
	w->connect_started_ms = worker_now_ms();
	snprintf(hello.u.hello.name, sizeof(hello.u.hello.name), "%s", w->cfg.name);
	hello.u.hello.examples = w->data ? w->data->n : 1;
	return worker_send(w, &hello, NULL, 0);
}

/* Drops the round in progress (model download or upload); a running training job is discarded
 * when it finishes. */
static void drop_round(worker *w)
{
	free(w->incoming);
	w->incoming = NULL;
	free(w->incoming_digests);
	w->incoming_digests = NULL;
	worker_sa_end(w);
	if (w->phase != WS_TRAINING || !w->thread_running)
		w->phase = WS_IDLE;
}

/* Closes the connection and schedules the next attempt: half the backoff plus up to half again
 * of jitter, so that workers cut off together do not come back together. The loop keeps running
 * meanwhile (signals, the training thread). */
static void reconnect(worker *w, const char *why)
{
	int64_t delay = w->backoff_ms / 2 + (int64_t)randombytes_uniform((uint32_t)(w->backoff_ms / 2 + 1));

	tally_warn("%s; reconnecting in %lld ms", why, (long long)delay);
	close_socket(w);
	drop_round(w);
	worker_job_free(&w->upload);
	w->phase = WS_CONNECTING; /* a training job still running is discarded when it ends */
	w->reconnect_at_ms = worker_now_ms() + delay;
	w->backoff_ms = w->backoff_ms * 2 > w->cfg.reconnect_max_ms ? w->cfg.reconnect_max_ms : w->backoff_ms * 2;
}

int worker_init(worker *w)
{
	int rc;

	if (sodium_init() < 0)
		return tally_err(TALLY_ECRYPTO, "libsodium failed to initialise");
	w->signal_fd = tally_signals_open();
	if (w->signal_fd < 0)
		return tally_err(TALLY_ESYS, "signal set-up failed");
	if (w->cfg.insecure) {
		tally_warn("--insecure: plain TCP without encryption; the model and updates travel in the clear");
		/* The key file, when there is one, still gives the identity secure aggregation needs. */
		if (access(w->cfg.key, F_OK) == 0 && (rc = tally_keypair_load(&w->keys, w->cfg.key)))
			return rc;
	} else if ((rc = tally_keypair_load(&w->keys, w->cfg.key)) ||
		   (rc = tally_pubkey_load(w->cfg.coordinator_key, w->server_key, NULL))) {
		return rc;
	}
	if (w->keys && !w->cfg.name[0])
		snprintf(w->cfg.name, sizeof(w->cfg.name), "%s", w->keys->name);
	if (w->cfg.roster[0] && (rc = tally_roster_load(&w->roster, w->cfg.roster)))
		return rc;
	if (!w->cfg.name[0])
		snprintf(w->cfg.name, sizeof(w->cfg.name), "worker");
	rc = worker_load_data(w);
	if (rc)
		return rc;
	w->ctx = zmq_ctx_new();
	w->pipe_main = zmq_socket(w->ctx, ZMQ_PAIR);
	w->pipe_thread = zmq_socket(w->ctx, ZMQ_PAIR);
	if (zmq_bind(w->pipe_main, "inproc://train-done") || zmq_connect(w->pipe_thread, "inproc://train-done"))
		return tally_err(TALLY_ESYS, "inproc pipe: %s", zmq_strerror(zmq_errno()));
	w->heartbeat_ms = 1000;
	w->patience_ms = (uint32_t)w->cfg.hello_timeout_ms;
	w->backoff_ms = w->cfg.reconnect_min_ms;
	return open_socket(w);
}

void worker_fini(worker *w)
{
	worker_job *j = worker_train_join(w);

	worker_job_free(&j);
	worker_job_free(&w->upload);
	drop_round(w);
	close_socket(w);
	if (w->pipe_main)
		zmq_close(w->pipe_main);
	if (w->pipe_thread)
		zmq_close(w->pipe_thread);
	if (w->ctx)
		zmq_ctx_term(w->ctx);
	tally_keypair_destroy(&w->keys);
	tally_roster_destroy(&w->roster);
	tally_dataset_destroy(&w->data);
	if (w->signal_fd >= 0)
		close(w->signal_fd);
}

/* ---- the round ---- */

static void refuse(worker *w, const char *reason)
{
	tally_msg m = {.type = TALLY_MSG_REFUSAL, .round = w->round};

	tally_warn("refused a message from the coordinator: %s", reason);
	snprintf(m.u.text.reason, sizeof(m.u.text.reason), "%s", reason);
	worker_send(w, &m, NULL, 0);
}

/* Checks that the announced model fits this worker's data. */
static int check_arch(worker *w, const char *arch)
{
	if (tally_model_arch_parse(arch, w->dims, &w->n_layers))
		return tally_err(TALLY_ESHAPE, "round_start: %s", tally_errmsg());
	if (w->data && w->dims[0] != w->data->dim)
		return tally_err(TALLY_ESHAPE, "model %s takes %u inputs; the local data has %u features", arch,
				 w->dims[0], w->data->dim);
	if (w->data && w->dims[w->n_layers] < w->data->n_classes)
		return tally_err(TALLY_ESHAPE, "model %s has %u classes; the local data has %u", arch,
				 w->dims[w->n_layers], w->data->n_classes);
	return 0;
}

static void on_round_start(worker *w, const tally_msg *m)
{
	size_t nc;
	tally_model *probe = NULL;

	if (w->thread_running) { /* a newer round (or a new attempt) replaces the one in training */
		worker_job *old;

		w->job->cancel = 1;
		old = worker_train_join(w);
		worker_job_free(&old);
	}
	worker_job_free(&w->upload);
	drop_round(w);
	w->attempt = m->attempt;
	if (check_arch(w, m->u.round_start.arch) || tally_model_new(&probe, w->dims, w->n_layers)) {
		refuse(w, tally_errmsg());
		return;
	}
	if (probe->n_params != m->u.round_start.n_params || m->u.round_start.chunk_floats != TALLY_CHUNK_FLOATS) {
		tally_model_destroy(&probe);
		refuse(w, "round_start: parameter count or chunk size does not match the architecture");
		return;
	}
	tally_model_destroy(&probe);
	nc = tally_chunk_count(m->u.round_start.n_params, TALLY_CHUNK_FLOATS);
	w->incoming = malloc(m->u.round_start.n_params * sizeof(float));
	w->incoming_digests = malloc(nc * sizeof(tally_digest));
	if (!w->incoming || !w->incoming_digests) {
		drop_round(w);
		refuse(w, "worker out of memory for the model");
		return;
	}
	w->round = m->round;
	w->n_params = m->u.round_start.n_params;
	w->chunks_expected = nc;
	w->chunks_received = 0;
	w->opts = m->u.round_start.train;
	memcpy(w->model_digest, m->u.round_start.model_digest, TALLY_DIGEST_BYTES);
	w->phase = WS_RECEIVING;
	if (m->u.round_start.secure && worker_sa_start(w, m)) {
		char why[TALLY_TEXT_MAX];

		snprintf(why, sizeof(why), "cannot take part in secure aggregation: %s", tally_errmsg());
		tally_error("round %llu: %s", (unsigned long long)m->round, why);
		refuse(w, why);
		drop_round(w);
	}
}

static void on_model_chunk(worker *w, tally_inmsg *in)
{
	size_t i = in->msg.u.chunk.index, off = i * TALLY_CHUNK_FLOATS;
	size_t len = w->n_params - off < TALLY_CHUNK_FLOATS ? w->n_params - off : TALLY_CHUNK_FLOATS;
	tally_digest d;

	if (w->phase != WS_RECEIVING || in->msg.round != w->round || i != w->chunks_received)
		return refuse(w, "unexpected model chunk");
	if (!in->has_data || zmq_msg_size(&in->data) != len * sizeof(float)) {
		drop_round(w);
		return refuse(w, "model chunk has the wrong length");
	}
	memcpy(w->incoming + off, zmq_msg_data(&in->data), len * sizeof(float));
	tally_digest_chunk(w->incoming + off, len, w->incoming_digests[i]);
	if (++w->chunks_received < w->chunks_expected)
		return;
	tally_digest_list(w->n_params, w->incoming_digests, w->chunks_expected, d);
	if (memcmp(d, w->model_digest, TALLY_DIGEST_BYTES) != 0) {
		drop_round(w);
		return refuse(w, "global model does not match its digest");
	}
	if (worker_train_start(w)) {
		tally_error("cannot train: %s", tally_errmsg());
		drop_round(w);
		return;
	}
	w->phase = WS_TRAINING;
	tally_info("round %llu: training on %u examples", (unsigned long long)w->round, w->data ? w->data->n : 0);
}

/* Offers a finished update (masked first in a secure round); the loop then serves its chunks. */
static void offer(worker *w, worker_job *j)
{
	tally_msg m = {.type = TALLY_MSG_UPDATE_READY};

	if (j->secure && worker_sa_mask(w, j)) {
		tally_error("round %llu: masking failed: %s", (unsigned long long)j->round, tally_errmsg());
		worker_job_free(&j);
		w->phase = WS_IDLE;
		return;
	}
	m.round = j->round;
	m.u.update_ready = (typeof(m.u.update_ready)){
		.examples = j->stats.examples, .n_params = j->payload_words, .n_chunks = j->n_chunks,
		.chunk_digests = j->chunk_digests, .train_loss = j->stats.loss,
		.train_accuracy = j->stats.accuracy, .seconds = j->seconds,
	};
	memcpy(m.u.update_ready.digest, j->digest, TALLY_DIGEST_BYTES);
	worker_send(w, &m, NULL, 0);
	w->upload = j;
	w->phase = WS_UPLOADING;
}

static void on_train_done(worker *w)
{
	worker_job *j = worker_train_join(w);

	free(w->incoming);
	w->incoming = NULL;
	if (!j)
		return;
	if (w->phase != WS_TRAINING || j->round != w->round || j->attempt != w->attempt || (j->secure && !w->sa)) {
		worker_job_free(&j);
		return;
	}
	if (j->rc) {
		tally_error("round %llu: training failed: %s", (unsigned long long)j->round, j->err);
		refuse(w, j->err);
		worker_job_free(&j);
		w->phase = WS_IDLE;
		return;
	}
	tally_info("round %llu: trained in %.1f s, loss %.4f, accuracy %.4f", (unsigned long long)j->round,
		   j->seconds, j->stats.loss, j->stats.accuracy);
	if (j->secure && !worker_sa_ready_to_mask(w)) {
		w->pending = j; /* offered once the share relay has been received */
		return;
	}
	offer(w, j);
}

static void on_chunk_request(worker *w, const tally_msg *m)
{
	tally_msg r = {.type = TALLY_MSG_UPDATE_CHUNK, .round = m->round};
	size_t i = m->u.chunk.index, off, len;

	if (!w->upload || m->round != w->upload->round || m->attempt != w->upload->attempt || i >= w->upload->n_chunks)
		return refuse(w, "chunk request for an update this worker does not hold");
	off = i * TALLY_CHUNK_FLOATS;
	len = w->upload->payload_words - off < TALLY_CHUNK_FLOATS ? w->upload->payload_words - off : TALLY_CHUNK_FLOATS;
	r.u.chunk.index = i;
	if (w->upload->secure && w->data_sock && !m->u.chunk.curve_only) {
		/* Masked words need integrity, not secrecy: the digest list went over CURVE. */
		snprintf(r.run_id, sizeof(r.run_id), "%s", w->run_id);
		r.attempt = w->upload->attempt; /* the attempt the token is for (checked equal above) */
		r.u.chunk.has_token = true;
		tally_data_token(r.u.chunk.token, w->data_token, w->upload->round, w->upload->attempt);
		if (tally_send(w->data_sock, NULL, 0, &r, w->upload->payload + off, len * sizeof(uint32_t), NULL, NULL) == 0)
			return;
		r.u.chunk.has_token = false;
		sodium_memzero(r.u.chunk.token, sizeof(r.u.chunk.token));
	}
	worker_send(w, &r, w->upload->payload + off, len * sizeof(uint32_t));
}

/* Messages that belong to the round in progress (everything but RoundStart and session ones). */
static bool is_round_message(tally_msg_type t)
{
	return t == TALLY_MSG_MODEL_CHUNK || t == TALLY_MSG_CHUNK_REQUEST || t == TALLY_MSG_ROUND_END ||
	       t == TALLY_MSG_KEY_LIST || t == TALLY_MSG_RELAY || t == TALLY_MSG_UNMASK_REQUEST;
}

static void on_message(worker *w, tally_inmsg *in)
{
	const tally_msg *m = &in->msg;

	/* A goodbye from a coordinator that started another run must still send us back to hello. */
	if (w->run_id[0] && strcmp(m->run_id, w->run_id) != 0 && m->type != TALLY_MSG_WELCOME &&
	    m->type != TALLY_MSG_BYE)
		return refuse(w, "wrong run id");
	if (is_round_message(m->type) && (m->round != w->round || m->attempt != w->attempt)) {
		tally_debug("ignored a stale %s for round %llu", tally_msg_type_name(m->type), (unsigned long long)m->round);
		return;
	}
	switch (m->type) {
	case TALLY_MSG_WELCOME:
		snprintf(w->run_id, sizeof(w->run_id), "%s", m->run_id);
		w->heartbeat_ms = m->u.welcome.heartbeat_ms;
		w->patience_ms = m->u.welcome.patience_ms;
		w->backoff_ms = w->cfg.reconnect_min_ms;
		if (w->phase == WS_CONNECTING)
			w->phase = WS_IDLE;
		tally_info("joined run %s at %s", w->run_id, w->cfg.coordinator);
		open_data(w, m);
		break;
	case TALLY_MSG_HEARTBEAT:
	case TALLY_MSG_REFUSAL:
		if (m->type == TALLY_MSG_REFUSAL)
			tally_warn("the coordinator refused a message: %s", m->u.text.reason);
		break;
	case TALLY_MSG_ROUND_START: on_round_start(w, m); break;
	case TALLY_MSG_MODEL_CHUNK: on_model_chunk(w, in); break;
	case TALLY_MSG_CHUNK_REQUEST: on_chunk_request(w, m); break;
	case TALLY_MSG_ROUND_END:
		if (m->round == w->round)
			worker_sa_end(w);
		if (w->upload && m->round == w->upload->round) {
			if (m->u.round_end.accepted)
				tally_info("round %llu: update aggregated", (unsigned long long)m->round);
			else
				tally_warn("round %llu: update not used: %s", (unsigned long long)m->round,
					   m->u.round_end.reason);
			worker_job_free(&w->upload);
			w->phase = WS_IDLE;
		}
		break;
	case TALLY_MSG_KEY_LIST:
	case TALLY_MSG_RELAY:
	case TALLY_MSG_UNMASK_REQUEST:
		worker_sa_on_message(w, m);
		if (w->pending && worker_sa_ready_to_mask(w)) {
			worker_job *j = w->pending;

			w->pending = NULL;
			offer(w, j);
		}
		break;
	case TALLY_MSG_BYE:
		tally_info("the coordinator said goodbye: %s", m->u.text.reason);
		if (m->u.text.final)
			w->finished = true;
		else
			reconnect(w, "coordinator going away");
		break;
	default:
		refuse(w, "not a message a coordinator sends");
	}
}

static void drain_socket(worker *w)
{
	for (int budget = 0; budget < 64 && w->sock; budget++) {
		tally_inmsg in;
		int rc = tally_recv(w->sock, false, &in);

		if (rc == TALLY_EAGAIN) {
			tally_inmsg_clear(&in);
			return;
		}
		w->last_heard_ms = worker_now_ms();
		if (rc)
			refuse(w, tally_errmsg());
		else
			on_message(w, &in);
		tally_inmsg_clear(&in);
		if (w->finished)
			return;
	}
}

static void check_timers(worker *w)
{
	int64_t now = worker_now_ms();

	if (!w->sock) {
		if (now >= w->reconnect_at_ms && open_socket(w)) {
			tally_error("%s", tally_errmsg());
			reconnect(w, "cannot open a connection");
		}
		return;
	}
	if (w->phase == WS_CONNECTING) {
		if (now - w->connect_started_ms > w->cfg.hello_timeout_ms)
			reconnect(w, "no welcome from the coordinator");
		return;
	}
	if (now - w->last_heard_ms > w->patience_ms) {
		reconnect(w, "the coordinator is silent");
		return;
	}
	if (now - w->last_sent_ms >= w->heartbeat_ms) {
		tally_msg hb = {.type = TALLY_MSG_HEARTBEAT, .round = w->round};

		hb.u.heartbeat.seq = ++w->hb_seq;
		worker_send(w, &hb, NULL, 0);
	}
}

int worker_run(worker *w)
{
	w->last_heard_ms = worker_now_ms();
	while (!w->stopping && !w->finished) {
		/* Without a connection (waiting to reconnect) only the pipe and signals are polled. */
		zmq_pollitem_t items[4] = {
			{w->pipe_main, 0, ZMQ_POLLIN, 0},
			{NULL, w->signal_fd, ZMQ_POLLIN, 0},
			{w->sock, 0, ZMQ_POLLIN, 0},
			{w->monitor, 0, ZMQ_POLLIN, 0},
		};

		if (zmq_poll(items, w->sock ? 4 : 2, 100) < 0 && zmq_errno() != EINTR)
			return tally_err(TALLY_EIO, "poll: %s", zmq_strerror(zmq_errno()));
		if ((items[1].revents & ZMQ_POLLIN) || tally_signal_caught()) {
			tally_info("signal received: leaving");
			w->stopping = true;
		}
		if (items[0].revents & ZMQ_POLLIN) {
			zmq_recv(w->pipe_main, NULL, 0, ZMQ_DONTWAIT);
			on_train_done(w);
		}
		if (w->sock && (items[3].revents & ZMQ_POLLIN))
			on_monitor_event(w);
		if (w->sock && (items[2].revents & ZMQ_POLLIN))
			drain_socket(w);
		if (!w->finished && !w->stopping)
			check_timers(w);
	}
	if (w->stopping && w->sock && w->phase != WS_CONNECTING) {
		tally_msg bye = {.type = TALLY_MSG_BYE, .round = w->round};

		snprintf(bye.u.text.reason, sizeof(bye.u.text.reason), "worker stopped by a signal");
		worker_send(w, &bye, NULL, 0);
	}
	return 0;
}
