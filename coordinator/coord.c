/*
 * tally-coordinator's event loop: one thread, one zmq_poll over the ROUTER socket, the ZAP handler
 * and a signalfd. It keeps the worker registry (hello, heartbeats, loss) and hands round messages
 * to round.c.
 */
#include "coord.h"

#include "tally/error.h"
#include "tally/fs.h"
#include "tally/log.h"
#include "tally/signals.h"

#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

int64_t coord_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool zap_banned(void *ctx, const char *name)
{
	return coord_is_banned(ctx, name);
}

static int open_security(coord *c)
{
	int rc;

	if (c->cfg.insecure) {
		tally_warn("--insecure: plain TCP, no encryption and no enrolment; anyone who can reach %s "
			   "can join and read the model", c->cfg.bind);
		return 0;
	}
	rc = tally_keypair_load(&c->keys, c->cfg.secret_key);
	if (rc == 0)
		rc = tally_roster_load(&c->roster, c->cfg.enrolled);
	if (rc == 0)
		rc = tally_zap_new(&c->zap, c->ctx, c->roster);
	if (rc == 0)
		tally_zap_set_ban_check(c->zap, zap_banned, c);
	if (rc == 0)
		rc = tally_sock_curve_server(c->router, c->keys);
	if (rc == 0)
		tally_info("CURVE on; %zu worker key(s) enrolled from %s", tally_roster_size(c->roster),
			   c->cfg.enrolled);
	return rc;
}

static int open_data(coord *c);

static int open_socket(coord *c)
{
	int one = 1, hwm = 0;
	size_t len = sizeof(c->endpoint);

	c->ctx = zmq_ctx_new();
	c->router = c->ctx ? zmq_socket(c->ctx, ZMQ_ROUTER) : NULL;
	if (!c->router)
		return tally_err(TALLY_EIO, "zmq socket: %s", zmq_strerror(zmq_errno()));
	if (tally_sock_limits(c->router) ||
	    zmq_setsockopt(c->router, ZMQ_ROUTER_MANDATORY, &one, sizeof(one)) ||
	    zmq_setsockopt(c->router, ZMQ_SNDHWM, &hwm, sizeof(hwm)) ||
	    zmq_setsockopt(c->router, ZMQ_ROUTER_HANDOVER, &one, sizeof(one)))
		return tally_err(TALLY_EIO, "socket options: %s", zmq_strerror(zmq_errno()));
	if (open_security(c))
		return TALLY_ECONFIG;
	if (zmq_bind(c->router, c->cfg.bind) != 0)
		return tally_err(TALLY_EIO, "cannot listen on %s: %s", c->cfg.bind, zmq_strerror(zmq_errno()));
	zmq_getsockopt(c->router, ZMQ_LAST_ENDPOINT, c->endpoint, &len);
	tally_info("listening on %s", c->endpoint);
	if (open_data(c))
		return TALLY_ECONFIG;
	if (c->cfg.endpoint_file[0]) {
		char line[300];
		struct iovec iov = {line, (size_t)snprintf(line, sizeof(line), "%s\n", c->endpoint)};

		return tally_file_write_atomic(c->cfg.endpoint_file, &iov, 1, 0644);
	}
	return 0;
}

/* The data path's endpoint for data_bind "auto": bind's host, with bind's port + 1 (or *). */
static int auto_data_endpoint(const char *bind, char *out, size_t size)
{
	const char *colon = strrchr(bind, ':');
	char *end;
	long port;

	if (strncmp(bind, "tcp://", 6) != 0 || !colon)
		return -1;
	if (strcmp(colon + 1, "*") == 0) {
		snprintf(out, size, "%.*s:*", (int)(colon - bind), bind);
		return 0;
	}
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port >= 65535)
		return -1;
	snprintf(out, size, "%.*s:%ld", (int)(colon - bind), bind, port + 1);
	return 0;
}

/*
 * The open data path: a second ROUTER without CURVE on which workers send masked chunks (already
 * confidential; checked against the digest list they sent over CURVE, and tied to their session
 * by the token of their Welcome). Off in --insecure mode (everything is plain there anyway) and
 * with data_bind = "off". An "auto" endpoint that cannot be bound only costs speed: a warning,
 * and every chunk goes over CURVE.
 */
static int open_data(coord *c)
{
	char ep[256], last[256], *colon;
	size_t len = sizeof(last);
	bool automatic = strcmp(c->cfg.data_bind, "auto") == 0;
	int hwm = 64, one = 1; /* at most 64 frames (256 MiB) queued per connection */

	if (c->cfg.insecure || strcmp(c->cfg.data_bind, "off") == 0)
		return 0;
	if (automatic && auto_data_endpoint(c->endpoint, ep, sizeof(ep))) {
		tally_warn("no open data path: cannot derive one from %s; set coordinator.data_bind", c->endpoint);
		return 0;
	}
	if (!automatic)
		snprintf(ep, sizeof(ep), "%s", c->cfg.data_bind);
	c->data = zmq_socket(c->ctx, ZMQ_ROUTER);
	if (!c->data)
		return tally_err(TALLY_EIO, "zmq socket: %s", zmq_strerror(zmq_errno()));
	if (tally_sock_limits(c->data) || zmq_setsockopt(c->data, ZMQ_RCVHWM, &hwm, sizeof(hwm)) ||
	    zmq_setsockopt(c->data, ZMQ_ROUTER_HANDOVER, &one, sizeof(one)) || tally_sock_data_server(c->data))
		return tally_err(TALLY_EIO, "data path socket options: %s", zmq_strerror(zmq_errno()));
	if (zmq_bind(c->data, ep) != 0) {
		int e = zmq_errno();

		zmq_close(c->data);
		c->data = NULL;
		if (!automatic)
			return tally_err(TALLY_ECONFIG, "coordinator.data_bind: cannot listen on %s: %s", ep, zmq_strerror(e));
		tally_warn("no open data path: cannot listen on %s (%s); masked updates go over CURVE", ep, zmq_strerror(e));
		return 0;
	}
	zmq_getsockopt(c->data, ZMQ_LAST_ENDPOINT, last, &len);
	colon = strrchr(last, ':');
	c->data_port = colon ? (uint32_t)strtoul(colon + 1, NULL, 10) : 0;
	tally_info("open data path for masked updates on %s", last);
	return 0;
}

static int open_signals(coord *c)
{
	c->signal_fd = tally_signals_open();
	return c->signal_fd < 0 ? tally_err(TALLY_ESYS, "signal set-up failed") : 0;
}

static int open_state(coord *c)
{
	char path[1100];
	int rc = tally_mkdir_p(c->cfg.state_dir, 0755);

	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/metrics.jsonl", c->cfg.state_dir);
	c->metrics = fopen(path, "a");
	if (!c->metrics)
		return tally_err(TALLY_EIO, "cannot open %s for appending", path);
	if (c->cfg.eval_images[0]) {
		rc = tally_dataset_load_idx(&c->eval, c->cfg.eval_images, c->cfg.eval_labels);
		if (rc)
			return rc;
		tally_info("evaluating on %u held-out examples after every round", c->eval->n);
	}
	if ((rc = coord_round_load_model(c)) || (rc = coord_state_resume(c)))
		return rc;
	if (!c->cfg.run_id[0]) {
		uint8_t r[6];

		randombytes_buf(r, sizeof(r));
		snprintf(c->cfg.run_id, sizeof(c->cfg.run_id), "run-%02x%02x%02x%02x%02x%02x",
			 r[0], r[1], r[2], r[3], r[4], r[5]);
	}
	snprintf(c->global->run_id, sizeof(c->global->run_id), "%s", c->cfg.run_id);
	return 0;
}

int coord_init(coord *c)
{
	int rc;

	if (sodium_init() < 0)
		return tally_err(TALLY_ECRYPTO, "libsodium failed to initialise");
	c->signal_fd = -1;
	rc = open_signals(c);
	if (rc == 0)
		rc = open_state(c);
	if (rc == 0)
		rc = open_socket(c);
	if (rc == 0)
		tally_info("run %s: %lld rounds of %s", c->cfg.run_id, (long long)c->cfg.rounds, c->cfg.arch);
	return rc;
}

void coord_fini(coord *c)
{
	for (size_t i = 0; i < c->n_parts; i++)
		free(c->parts[i].chunk_digests);
	free(c->parts);
	free(c->workers);
	if (c->router)
		zmq_close(c->router);
	if (c->data)
		zmq_close(c->data);
	tally_zap_destroy(&c->zap);
	if (c->ctx)
		zmq_ctx_term(c->ctx);
	tally_roster_destroy(&c->roster);
	tally_keypair_destroy(&c->keys);
	tally_model_destroy(&c->global);
	tally_agg_destroy(&c->agg);
	tally_dataset_destroy(&c->eval);
	if (c->metrics)
		fclose(c->metrics);
	if (c->signal_fd >= 0)
		close(c->signal_fd);
}

/* ---- registry ---- */

int coord_send(coord *c, int w, tally_msg *m, const void *data, size_t len, zmq_free_fn *f, void *hint)
{
	coord_worker *wk = &c->workers[w];
	int rc;

	snprintf(m->run_id, sizeof(m->run_id), "%s", c->cfg.run_id);
	m->attempt = c->attempt;
	rc = tally_send(c->router, wk->rid, wk->rid_len, m, data, len, f, hint);
	if (rc)
		tally_debug("send to %s failed: %s", wk->name, tally_errmsg());
	else
		c->bytes_out += len;
	return rc;
}

void coord_refuse(coord *c, const uint8_t *rid, size_t rid_len, const char *reason)
{
	tally_msg m = {.type = TALLY_MSG_REFUSAL};

	snprintf(m.run_id, sizeof(m.run_id), "%s", c->cfg.run_id);
	snprintf(m.u.text.reason, sizeof(m.u.text.reason), "%s", reason);
	tally_send(c->router, rid, rid_len, &m, NULL, 0, NULL, NULL);
}

static int find_worker_by_rid(const coord *c, const uint8_t *rid, size_t len)
{
	for (size_t i = 0; i < c->n_workers; i++)
		if (c->workers[i].rid_len == len && memcmp(c->workers[i].rid, rid, len) == 0)
			return (int)i;
	return -1;
}

static int find_worker_by_name(const coord *c, const char *name)
{
	for (size_t i = 0; i < c->n_workers; i++)
		if (strcmp(c->workers[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int add_worker(coord *c, const char *name)
{
	if (c->n_workers == c->cap_workers) {
		size_t cap = c->cap_workers ? c->cap_workers * 2 : 16;
		coord_worker *nw = realloc(c->workers, cap * sizeof(*nw));

		if (!nw)
			return -1;
		c->workers = nw;
		c->cap_workers = cap;
	}
	memset(&c->workers[c->n_workers], 0, sizeof(coord_worker));
	snprintf(c->workers[c->n_workers].name, TALLY_NAME_MAX, "%s", name);
	return (int)c->n_workers++;
}

static void on_hello(coord *c, tally_inmsg *in)
{
	const char *name = c->cfg.insecure ? in->msg.u.hello.name : in->user_id;
	int w = find_worker_by_name(c, name);
	tally_msg m = {.type = TALLY_MSG_WELCOME, .round = c->round};

	if (w >= 0 && c->workers[w].state != W_LOST)
		coord_round_on_lost(c, w); /* it restarted: whatever it was doing is gone */
	if (w < 0 && (w = add_worker(c, name)) < 0)
		return;
	memcpy(c->workers[w].rid, in->rid, in->rid_len);
	c->workers[w].rid_len = in->rid_len;
	c->workers[w].examples = in->msg.u.hello.examples;
	c->workers[w].last_seen_ms = coord_now_ms();
	c->workers[w].state = W_IDLE;
	tally_info("worker '%s' joined with %llu examples (%zu known)", name,
		   (unsigned long long)in->msg.u.hello.examples, c->n_workers);
	m.u.welcome.heartbeat_ms = (uint32_t)c->cfg.heartbeat_ms;
	m.u.welcome.patience_ms = (uint32_t)c->cfg.patience_ms;
	if (c->data) {
		randombytes_buf(c->workers[w].data_token, TALLY_DATA_TOKEN);
		c->workers[w].has_attempt_token = false; /* derived and bound again under the new secret */
		c->workers[w].data_seen = false;
		c->workers[w].data_rid_len = 0;
		m.u.welcome.data_port = c->data_port;
		memcpy(m.u.welcome.data_token, c->workers[w].data_token, TALLY_DATA_TOKEN);
	}
	coord_send(c, w, &m, NULL, 0, NULL, NULL);
}

static void on_message(coord *c, tally_inmsg *in)
{
	int w = find_worker_by_rid(c, in->rid, in->rid_len);
	tally_msg_type t = in->msg.type;

	if (w >= 0 && c->workers[w].banned_until_ms > coord_now_ms())
		return; /* a banned flooder gets no answer at all */
	if (t == TALLY_MSG_HELLO) {
		if (!coord_is_banned(c, c->cfg.insecure ? in->msg.u.hello.name : in->user_id))
			on_hello(c, in);
		return;
	}
	if (w < 0 || c->workers[w].state == W_LOST) {
		/* A peer this coordinator does not know (it restarted, or marked the worker lost, while
		 * the connection stayed up): a non-final goodbye makes the worker start over with hello. */
		tally_msg bye = {.type = TALLY_MSG_BYE, .round = c->round};

		snprintf(bye.u.text.reason, sizeof(bye.u.text.reason), "unknown session: say hello again");
		snprintf(bye.run_id, sizeof(bye.run_id), "%s", c->cfg.run_id);
		tally_send(c->router, in->rid, in->rid_len, &bye, NULL, 0, NULL, NULL);
		return;
	}
	c->workers[w].last_seen_ms = coord_now_ms();
	if (in->msg.run_id[0] && strcmp(in->msg.run_id, c->cfg.run_id) != 0) {
		coord_note_refusal(c, w);
		tally_warn("refused %s from '%s': run id %s is not %s", tally_msg_type_name(t),
			   c->workers[w].name, in->msg.run_id, c->cfg.run_id);
		coord_refuse(c, in->rid, in->rid_len, "wrong run id");
		return;
	}
	if (t == TALLY_MSG_HEARTBEAT) {
		tally_msg m = {.type = TALLY_MSG_HEARTBEAT, .round = c->round};

		m.u.heartbeat.seq = in->msg.u.heartbeat.seq;
		coord_send(c, w, &m, NULL, 0, NULL, NULL);
	} else if (t == TALLY_MSG_BYE) {
		tally_info("worker '%s' left: %s", c->workers[w].name, in->msg.u.text.reason);
		coord_round_on_lost(c, w);
		c->workers[w].state = W_LOST;
	} else if (t == TALLY_MSG_REFUSAL) {
		tally_warn("worker '%s' refused a message: %s", c->workers[w].name, in->msg.u.text.reason);
		coord_round_on_withdrawal(c, w, &in->msg);
	} else {
		coord_round_on_message(c, w, in);
	}
}

static void drain_router(coord *c)
{
	for (int budget = 0; budget < 256; budget++) {
		tally_inmsg in;
		int rc = tally_recv(c->router, true, &in);

		c->bytes_in += in.wire_bytes;
		if (rc == TALLY_EAGAIN) {
			tally_inmsg_clear(&in);
			return;
		}
		if (rc) {
			int w = find_worker_by_rid(c, in.rid, in.rid_len);
			bool banned = w >= 0 && c->workers[w].banned_until_ms > coord_now_ms();

			if (!banned) {
				tally_warn("refused a message from %s: %s", w >= 0 ? c->workers[w].name : "an unknown peer",
					   tally_errmsg());
				coord_refuse(c, in.rid, in.rid_len, tally_errmsg());
			}
			if (w >= 0 && !banned)
				coord_note_refusal(c, w);
		} else {
			on_message(c, &in);
		}
		tally_inmsg_clear(&in);
	}
}

/*
 * The worker whose token for the current attempt this is (constant-time compare), or -1. Each
 * worker's token is derived again when the attempt changes, and its binding to a data-path
 * connection starts over: a token seen on the wire is worth nothing in the next attempt, and a
 * worker whose data connection was re-established binds its new one.
 */
static int find_worker_by_token(coord *c, const uint8_t token[TALLY_DATA_TOKEN])
{
	int found = -1;

	for (size_t i = 0; i < c->n_workers; i++) {
		coord_worker *wk = &c->workers[i];

		if (wk->state == W_LOST)
			continue;
		if (!wk->has_attempt_token || wk->token_round != c->round || wk->token_attempt != c->attempt) {
			tally_data_token(wk->attempt_token, wk->data_token, c->round, c->attempt);
			wk->token_round = c->round;
			wk->token_attempt = c->attempt;
			wk->has_attempt_token = true;
			wk->data_rid_len = 0;
		}
		if (sodium_memcmp(wk->attempt_token, token, TALLY_DATA_TOKEN) == 0)
			found = (int)i;
	}
	return found;
}

/* Drops one data-path message, with a warning for the first and then every 1000th. */
static void data_refuse(coord *c, const char *why)
{
	if (c->data_refused++ % 1000 == 0)
		tally_warn("data path: dropped a message (%s); %llu dropped so far", why,
			   (unsigned long long)c->data_refused);
}

/*
 * A data-path UpdateChunk under worker w's token for this attempt. The token is bound to the
 * first connection that presents it (the worker's own: the token has never been on the wire
 * before); the same token from another connection, or bytes that fail the committed digest, come
 * from someone who saw the token: dropped, and the worker's remaining chunks are pulled over
 * CURVE. (Banned workers are lost, so their tokens match nothing.) Liveness is not refreshed
 * here: only the CURVE session's heartbeats keep a worker alive.
 */
static void take_data_chunk(coord *c, int w, tally_inmsg *in)
{
	coord_worker *wk = &c->workers[w];

	if (wk->data_rid_len == 0) {
		memcpy(wk->data_rid, in->rid, in->rid_len);
		wk->data_rid_len = in->rid_len;
	} else if (wk->data_rid_len != in->rid_len || memcmp(wk->data_rid, in->rid, in->rid_len) != 0) {
		data_refuse(c, "session token presented on another connection");
		return coord_round_data_suspect(c, w);
	}
	if (!c->sa)
		return data_refuse(c, "no secure round in progress (plain updates travel over CURVE only)");
	if (strcmp(in->msg.run_id, c->cfg.run_id) != 0)
		return data_refuse(c, "wrong run id");
	if (!coord_round_data_chunk_ok(c, w, in)) {
		data_refuse(c, "chunk does not match its committed digest");
		return coord_round_data_suspect(c, w);
	}
	/* Answers (refusals) go to the worker's CURVE session. */
	memcpy(in->rid, wk->rid, wk->rid_len);
	in->rid_len = wk->rid_len;
	wk->data_seen = true;
	c->chunk_prechecked = true;
	coord_round_on_message(c, w, in);
	c->chunk_prechecked = false;
}

/*
 * Masked chunks from the open data path join the round as if they had come over CURVE, once
 * they match the digest their worker committed to over CURVE: round.c then checks round,
 * attempt and index. Only UpdateChunks of a secure round with a live session's token are taken;
 * bytes that fail the digest are dropped (whoever saw the token on the wire could have sent
 * them) and the worker's own chunk, still on its way, is taken when it comes. Nothing is ever
 * answered on this socket.
 */
static void drain_data(coord *c)
{
	for (int budget = 0; budget < 64; budget++) {
		tally_inmsg in;
		int rc = tally_recv(c->data, true, &in), w;

		c->bytes_in += in.wire_bytes;
		if (rc == TALLY_EAGAIN) {
			tally_inmsg_clear(&in);
			return;
		}
		if (rc)
			data_refuse(c, tally_errmsg());
		else if (in.msg.type != TALLY_MSG_UPDATE_CHUNK || !in.msg.u.chunk.has_token)
			data_refuse(c, "not a masked update chunk with a token");
		else if ((w = find_worker_by_token(c, in.msg.u.chunk.token)) < 0)
			data_refuse(c, "unknown token (not this attempt's token of a live session)");
		else
			take_data_chunk(c, w, &in);
		tally_inmsg_clear(&in);
	}
}

static void check_liveness(coord *c)
{
	int64_t now = coord_now_ms();

	for (size_t i = 0; i < c->n_workers; i++) {
		coord_worker *w = &c->workers[i];

		if (w->state != W_LOST && now - w->last_seen_ms > c->cfg.patience_ms) {
			tally_warn("worker '%s' silent for %lld ms: marked lost", w->name,
				   (long long)(now - w->last_seen_ms));
			coord_round_on_lost(c, (int)i);
			w->state = W_LOST;
		}
	}
}

static void say_goodbye(coord *c, const char *reason, bool final)
{
	for (size_t i = 0; i < c->n_workers; i++) {
		tally_msg m = {.type = TALLY_MSG_BYE, .round = c->round};

		if (c->workers[i].state == W_LOST)
			continue;
		snprintf(m.u.text.reason, sizeof(m.u.text.reason), "%s", reason);
		m.u.text.final = final;
		coord_send(c, (int)i, &m, NULL, 0, NULL, NULL);
	}
}

int coord_run(coord *c)
{
	zmq_pollitem_t items[4] = {
		{c->router, 0, ZMQ_POLLIN, 0},
		{NULL, c->signal_fd, ZMQ_POLLIN, 0},
		{c->zap ? tally_zap_socket(c->zap) : NULL, 0, ZMQ_POLLIN, 0},
		{c->data, 0, ZMQ_POLLIN, 0},
	};
	int n_items = c->zap ? (c->data ? 4 : 3) : 2;

	while (!c->stopping && !coord_round_is_finished(c)) {
		/* libzmq frees sent model chunks on its own thread without waking us: while the paced
		 * broadcast is on, come back every 2 ms to hand it the next ones. */
		if (zmq_poll(items, n_items, coord_round_is_busy(c) ? 2 : 100) < 0 && zmq_errno() != EINTR)
			return tally_err(TALLY_EIO, "poll: %s", zmq_strerror(zmq_errno()));
		if (n_items >= 3 && (items[2].revents & ZMQ_POLLIN))
			tally_zap_handle(c->zap);
		if (items[1].revents & ZMQ_POLLIN) {
			struct signalfd_siginfo si;

			if (read(c->signal_fd, &si, sizeof(si)) == sizeof(si))
				tally_info("signal %u: shutting down", si.ssi_signo);
			c->stopping = true;
		} else if (tally_signal_caught()) {
			tally_info("signal %d: shutting down", tally_signal_caught());
			c->stopping = true;
		}
		if (items[0].revents & ZMQ_POLLIN)
			drain_router(c);
		if (n_items == 4 && (items[3].revents & ZMQ_POLLIN))
			drain_data(c);
		check_liveness(c);
		coord_round_tick(c);
	}
	if (c->stopping)
		say_goodbye(c, "coordinator shutting down", false);
	else
		say_goodbye(c, "run complete", true);
	tally_info("stopped after round %llu; %llu bytes in, %llu tensor bytes out over the run",
		   (unsigned long long)c->round, (unsigned long long)(c->total_in + c->bytes_in),
		   (unsigned long long)(c->total_out + c->bytes_out));
	return 0;
}

/* ---- floods ---- */

#define FLOOD_WINDOW_MS 10000
#define BAN_MS 60000

void coord_note_refusal(coord *c, int w)
{
	coord_worker *wk = &c->workers[w];
	int64_t now = coord_now_ms();

	wk->refused++;
	if (now - wk->window_start_ms > FLOOD_WINDOW_MS) {
		wk->window_start_ms = now;
		wk->refused_window = 0;
	}
	if (++wk->refused_window <= (uint32_t)c->cfg.flood_limit || wk->banned_until_ms > now)
		return;
	wk->banned_until_ms = now + BAN_MS;
	tally_warn("worker '%s' sent %u refused messages within %d s: banned for %d s", wk->name, wk->refused_window,
		   FLOOD_WINDOW_MS / 1000, BAN_MS / 1000);
	coord_round_on_lost(c, w);
	wk->state = W_LOST;
}

bool coord_is_banned(const coord *c, const char *name)
{
	int64_t now = coord_now_ms();

	for (size_t i = 0; i < c->n_workers; i++)
		if (strcmp(c->workers[i].name, name) == 0)
			return c->workers[i].banned_until_ms > now;
	return false;
}
