/*
 * tally-hostile: one misbehaving worker, for tests/integration/hostile.sh.
 *
 * It connects to a coordinator as an enrolled worker would (CURVE client, DEALER socket), commits
 * one named misbehaviour and prints what came back, so that the test can check that the
 * coordinator refused the input, said why in its log, lost nothing and served on. Misbehaviours
 * that only make sense inside a round are committed from inside one: the program first takes part
 * like an honest worker with an update of zeros (masked under secure aggregation), then corrupts
 * the named part. Envelopes with invalid fields are packed with the generated protobuf-c code
 * directly, past the checks of tally_msg_encode, so that they reach the coordinator as written.
 *
 * Output, one event a line on stdout: "joined RUN round R", "round R secure|plain ...",
 * "sent WHAT", "reply KIND: TEXT" (refusal, bye, round_end), "event WHAT" (socket monitor),
 * "moved R chunk C: CHANGED/TOTAL" (parameters of the global model that round R changed, for the
 * cases that watch whether taking their update back out lost the honest ones), "result ...".
 * Exit status 0 once the misbehaviour was committed and its answers collected, 1 when it could
 * not be (no welcome, no round), 2 for a usage error.
 */
#include "tally/digest.h"
#include "tally/error.h"
#include "tally/keys.h"
#include "tally/net.h"
#include "tally/rng.h"
#include "tally/secagg.h"
#include "tally/wire.h"

#include "tally.pb-c.h"

#include <math.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define EXAMPLES 2000          /* what this worker claims to train on */
#define HUGE_VALUE 1e30f       /* finite, but far beyond any honest update */

typedef enum {
	/* session: no round needed */
	F_GARBAGE, F_EMPTY, F_TRUNCATED, F_VERSION2, F_VERSION0, F_RUNID_WRONG, F_RUNID_CHARS, F_RUNID_LONG,
	F_HELLO_LONG, F_HELLO_CTRL, F_REFUSAL_CTRL, F_BYE_LONG, F_THREE_FRAMES, F_ENVELOPE_BIG, F_CHUNK_INDEX_HUGE,
	F_SEND_ROUND_START, F_SEND_WELCOME, F_SEND_MODEL_CHUNK, F_SEND_CHUNK_REQUEST, F_SEND_ROUND_END,
	F_SEND_KEY_LIST, F_UR_NOT_IN_ROUND, F_UR_ZERO_EXAMPLES, F_UR_SHORT_DIGEST, F_UR_NAN_METRICS,
	F_BEFORE_HELLO, F_BYE_THEN, F_OVERSIZE, F_UNKNOWN_KEY, F_SA_HUGE_EXAMPLES,
	/* plain rounds */
	F_UR_NPARAMS, F_UR_NCHUNKS, F_UR_DIGEST, F_UR_TWICE, F_UR_WEIGHT, F_UR_OTHER_ROUND, F_UR_ATTEMPT,
	F_CH_STRAY, F_CH_SHORT, F_CH_NODATA, F_CH_MISMATCH, F_CH_NAN, F_CH_INF, F_CH_NAN_SECOND, F_CH_INDEX,
	F_CH_TWICE, F_CH_SILENT, F_CH_UNDO_CHANGED, F_CH_HUGE, F_CH_HUGE_THEN_NAN, F_HB_FLOOD, F_GARBAGE_FLOOD,
	/* secure rounds */
	F_SA_ADV_SIG, F_SA_ADV_INDEX, F_SA_ADV_TWICE, F_SA_SH_NONNBR, F_SA_SH_FROM, F_SA_SH_TWICE,
	F_SA_SH_ACCUSE, F_SA_ACK_EARLY, F_SA_ACK_TWICE, F_SA_ACK_ACCUSE, F_SA_RV_EARLY, F_SA_RV_TWICE,
	F_SA_RV_NOT_HELD, F_SA_INPUT_DIGEST, F_SA_PLAIN_UPDATE,
} fault;

typedef enum { K_SESSION, K_PLAIN, K_SECURE } case_kind;

typedef struct hcase {
	const char *name;
	case_kind kind;
	fault f;
	const char *what;
} hcase;

static const hcase cases[] = {
	{"garbage", K_SESSION, F_GARBAGE, "a frame of 64 0xff bytes (not protobuf)"},
	{"empty", K_SESSION, F_EMPTY, "an empty frame"},
	{"truncated", K_SESSION, F_TRUNCATED, "an update_ready envelope cut in half"},
	{"version-2", K_SESSION, F_VERSION2, "a heartbeat of protocol version 2"},
	{"version-0", K_SESSION, F_VERSION0, "a heartbeat without a protocol version"},
	{"run-id-wrong", K_SESSION, F_RUNID_WRONG, "a heartbeat for another run id"},
	{"run-id-chars", K_SESSION, F_RUNID_CHARS, "a run id with '/' and a space"},
	{"run-id-long", K_SESSION, F_RUNID_LONG, "a run id of 100 characters"},
	{"hello-long-name", K_SESSION, F_HELLO_LONG, "a hello with a 200-character name"},
	{"hello-control-chars", K_SESSION, F_HELLO_CTRL, "a hello whose name holds newline and ESC"},
	{"refusal-control-chars", K_SESSION, F_REFUSAL_CTRL, "a refusal whose reason holds terminal escapes"},
	{"bye-long-reason", K_SESSION, F_BYE_LONG, "a bye with a 1000-byte reason"},
	{"three-frames", K_SESSION, F_THREE_FRAMES, "an update_chunk with two tensor frames"},
	{"envelope-3mib", K_SESSION, F_ENVELOPE_BIG, "a 3 MiB envelope (limit 2 MiB)"},
	{"chunk-index-huge", K_SESSION, F_CHUNK_INDEX_HUGE, "an update_chunk with index 2^40"},
	{"send-round-start", K_SESSION, F_SEND_ROUND_START, "a round_start sent by a worker"},
	{"send-welcome", K_SESSION, F_SEND_WELCOME, "a welcome sent by a worker"},
	{"send-model-chunk", K_SESSION, F_SEND_MODEL_CHUNK, "a model_chunk sent by a worker"},
	{"send-chunk-request", K_SESSION, F_SEND_CHUNK_REQUEST, "a chunk_request sent by a worker"},
	{"send-round-end", K_SESSION, F_SEND_ROUND_END, "a round_end sent by a worker"},
	{"send-key-list", K_SESSION, F_SEND_KEY_LIST, "a key_list sent by a worker"},
	{"update-not-in-round", K_SESSION, F_UR_NOT_IN_ROUND, "an update_ready for a round it is not in"},
	{"update-zero-examples", K_SESSION, F_UR_ZERO_EXAMPLES, "an update_ready weighing 0 examples"},
	{"update-short-digest", K_SESSION, F_UR_SHORT_DIGEST, "an update_ready with a 31-byte chunk digest"},
	{"update-nan-metrics", K_SESSION, F_UR_NAN_METRICS, "an update_ready with a NaN training loss"},
	{"before-hello", K_SESSION, F_BEFORE_HELLO, "a heartbeat before any hello"},
	{"bye-then-messages", K_SESSION, F_BYE_THEN, "a bye, then a heartbeat and an update_ready"},
	{"oversize-frame", K_SESSION, F_OVERSIZE, "a 5 MiB frame (over ZMQ_MAXMSGSIZE)"},
	{"unknown-key", K_SESSION, F_UNKNOWN_KEY, "a hello from a key that is not enrolled"},
	{"update-wrong-nparams", K_PLAIN, F_UR_NPARAMS, "an update_ready one parameter too long"},
	{"update-wrong-nchunks", K_PLAIN, F_UR_NCHUNKS, "an update_ready with one chunk digest too many"},
	{"update-bad-digest", K_PLAIN, F_UR_DIGEST, "an update_ready whose digest is not that of its list"},
	{"update-twice", K_PLAIN, F_UR_TWICE, "the same update_ready twice (replay)"},
	{"update-huge-weight", K_PLAIN, F_UR_WEIGHT, "an update_ready weighing 2^32 examples (more than it announced)"},
	{"update-other-round", K_PLAIN, F_UR_OTHER_ROUND, "inside a round, an update_ready for the next round"},
	{"update-wrong-attempt", K_PLAIN, F_UR_ATTEMPT, "inside a round, an update_ready for another attempt"},
	{"chunk-unrequested", K_PLAIN, F_CH_STRAY, "an update_chunk of 1000s before any request"},
	{"chunk-short", K_PLAIN, F_CH_SHORT, "a chunk one float short"},
	{"chunk-no-data", K_PLAIN, F_CH_NODATA, "an update_chunk without its tensor frame"},
	{"chunk-mismatch", K_PLAIN, F_CH_MISMATCH, "a chunk whose bytes are not the committed ones"},
	{"chunk-nan", K_PLAIN, F_CH_NAN, "a chunk holding NaN (committed)"},
	{"chunk-inf", K_PLAIN, F_CH_INF, "a chunk holding +Inf (committed)"},
	{"chunk-nan-second", K_PLAIN, F_CH_NAN_SECOND, "a good first chunk, NaN in the second"},
	{"chunk-wrong-index", K_PLAIN, F_CH_INDEX, "an answer to request 0 labelled index 7"},
	{"chunk-twice", K_PLAIN, F_CH_TWICE, "every chunk sent twice (replay)"},
	{"chunk-silent", K_PLAIN, F_CH_SILENT, "an update offered, then chunk requests ignored"},
	{"undo-changed", K_PLAIN, F_CH_UNDO_CHANGED, "NaN in chunk 1, other bytes for chunk 0 when re-pulled"},
	{"huge-finite", K_PLAIN, F_CH_HUGE, "an update of 1e30 everywhere (finite), three rounds"},
	{"huge-then-nan", K_PLAIN, F_CH_HUGE_THEN_NAN, "chunk 0 of 1e30, NaN in chunk 1, three rounds"},
	{"heartbeat-flood", K_PLAIN, F_HB_FLOOD, "10000 heartbeats inside a round"},
	{"garbage-flood", K_PLAIN, F_GARBAGE_FLOOD, "2000 garbage frames inside a round"},
	{"sa-hello-huge-examples", K_SESSION, F_SA_HUGE_EXAMPLES, "a hello claiming 2^32 examples"},
	{"sa-advert-bad-signature", K_SECURE, F_SA_ADV_SIG, "an advert whose signature is off by one bit"},
	{"sa-advert-wrong-index", K_SECURE, F_SA_ADV_INDEX, "an advert under another participant's index"},
	{"sa-advert-twice", K_SECURE, F_SA_ADV_TWICE, "the same advert twice (replay)"},
	{"sa-shares-non-neighbour", K_SECURE, F_SA_SH_NONNBR, "a share box addressed to itself"},
	{"sa-shares-forged-sender", K_SECURE, F_SA_SH_FROM, "a share box claiming another sender"},
	{"sa-shares-twice", K_SECURE, F_SA_SH_TWICE, "the same shares twice (replay)"},
	{"sa-shares-accuse-all", K_SECURE, F_SA_SH_ACCUSE, "shares naming every peer's verified advert as forged"},
	{"sa-ack-early", K_SECURE, F_SA_ACK_EARLY, "a relay_ack before any relay"},
	{"sa-ack-twice", K_SECURE, F_SA_ACK_TWICE, "the same relay_ack twice (replay)"},
	{"sa-ack-accuse-all", K_SECURE, F_SA_ACK_ACCUSE, "a relay_ack naming every peer's box as forged"},
	{"sa-reveal-early", K_SECURE, F_SA_RV_EARLY, "reveals before the unmask request"},
	{"sa-reveal-twice", K_SECURE, F_SA_RV_TWICE, "the same reveals twice (replay)"},
	{"sa-reveal-not-held", K_SECURE, F_SA_RV_NOT_HELD, "reveals naming its own seed as a share it holds"},
	{"sa-masked-mismatch", K_SECURE, F_SA_INPUT_DIGEST, "a masked chunk that is not the committed one"},
	{"sa-plain-update", K_SECURE, F_SA_PLAIN_UPDATE, "a float-sized update_ready in a secure round"},
};

typedef struct hostile {
	const hcase *c;
	void *ctx, *sock, *mon;
	int monitor_seq;
	tally_keypair *kp;
	tally_roster *roster;
	char endpoint[256], server_key[TALLY_Z85_KEY_LEN + 1];
	int wait_ms;
	/* the session */
	char run_id[TALLY_NAME_MAX];
	uint64_t welcome_round;
	uint32_t hb_ms;
	int64_t last_hb_ms;
	uint64_t hb_seq, hb_replies, refusals;
	int64_t disconnected_ms;  /* when the connection dropped and has not come back; 0: up */
	bool joined, left, bye_received, auth_refused;
	/* the round it takes part in */
	uint64_t round, attempt;
	bool secure, round_over, accepted;
	size_t n_params, model_chunks;
	float *model, *prev_model;
	uint64_t prev_round;
	tally_sa_client *sa;
	uint32_t sa_n, me;
	uint64_t max_weight;
	/* the update it offers */
	uint32_t *payload;
	size_t words, n_chunks;
	tally_digest *digests;
	tally_digest digest;
	unsigned requests[8];   /* chunk requests seen, by index */
} hostile;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Says why the case could not be carried out; returns 1 (the exit status). */
static int fail(const char *fmt, ...)
{
	va_list ap;

	printf("result cannot carry out the case: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	return 1;
}

/* ---- the connection ---- */

static void on_monitor(hostile *h)
{
	zmq_msg_t ev, addr;
	uint16_t id = 0;

	zmq_msg_init(&ev);
	zmq_msg_init(&addr);
	if (zmq_msg_recv(&ev, h->mon, ZMQ_DONTWAIT) >= 0) {
		if (zmq_msg_more(&ev))
			zmq_msg_recv(&addr, h->mon, ZMQ_DONTWAIT);
		if (zmq_msg_size(&ev) >= 2)
			memcpy(&id, zmq_msg_data(&ev), sizeof(id));
		if (id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
			printf("event handshake-ok\n"), h->disconnected_ms = 0;
		else if (id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
			printf("event auth-refused\n"), h->auth_refused = true;
		else if (id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || id == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
			printf("event handshake-failed\n");
		else if (id == ZMQ_EVENT_DISCONNECTED)
			printf("event disconnected\n"), h->disconnected_ms = now_ms();
	}
	zmq_msg_close(&ev);
	zmq_msg_close(&addr);
}

static void close_conn(hostile *h)
{
	if (h->sock)
		zmq_close(h->sock);
	if (h->mon)
		zmq_close(h->mon);
	h->sock = h->mon = NULL;
	h->joined = false;
}

static int open_conn(hostile *h)
{
	int hwm = 0, timeo = 5000;
	char ep[64];

	h->sock = zmq_socket(h->ctx, ZMQ_DEALER);
	if (!h->sock || tally_sock_limits(h->sock) ||
	    zmq_setsockopt(h->sock, ZMQ_SNDHWM, &hwm, sizeof(hwm)) ||
	    zmq_setsockopt(h->sock, ZMQ_RCVHWM, &hwm, sizeof(hwm)) ||
	    zmq_setsockopt(h->sock, ZMQ_SNDTIMEO, &timeo, sizeof(timeo)) ||
	    tally_sock_curve_client(h->sock, h->kp, h->server_key))
		return fail("socket set-up: %s", zmq_strerror(zmq_errno()));
	snprintf(ep, sizeof(ep), "inproc://hostile-monitor-%d", ++h->monitor_seq);
	if (zmq_socket_monitor(h->sock, ep, ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
			       ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
			       ZMQ_EVENT_DISCONNECTED) ||
	    !(h->mon = zmq_socket(h->ctx, ZMQ_PAIR)) || zmq_connect(h->mon, ep))
		return fail("socket monitor: %s", zmq_strerror(zmq_errno()));
	if (zmq_connect(h->sock, h->endpoint))
		return fail("cannot connect: %s", zmq_strerror(zmq_errno()));
	return 0;
}

/* ---- sending ---- */

static int send_frames(hostile *h, int n, const void *const *parts, const size_t *lens)
{
	for (int i = 0; i < n; i++)
		if (zmq_send(h->sock, parts[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
			return fail("send: %s", zmq_strerror(zmq_errno()));
	return 0;
}

static int send_bytes(hostile *h, const void *p, size_t len)
{
	return send_frames(h, 1, &p, &len);
}

/* Sends a message as a well-behaved worker would encode it (run id and attempt of its session). */
static int send_msg(hostile *h, tally_msg *m, const void *data, size_t len)
{
	uint8_t *buf = NULL;
	size_t blen = 0;
	int rc;

	snprintf(m->run_id, sizeof(m->run_id), "%s", h->run_id);
	if (m->type != TALLY_MSG_HELLO && m->type != TALLY_MSG_HEARTBEAT && m->type != TALLY_MSG_BYE)
		m->attempt = m->attempt ? m->attempt : h->attempt;
	if ((rc = tally_msg_encode(m, &buf, &blen)))
		return fail("encode: %s", tally_errmsg());
	{
		const void *parts[2] = {buf, data};
		size_t lens[2] = {blen, len};

		rc = send_frames(h, data ? 2 : 1, parts, lens);
	}
	free(buf);
	return rc;
}

/* An envelope of this session, to be given a body and packed as it is (no validation). */
static void env_init(hostile *h, Tally__Envelope *e)
{
	tally__envelope__init(e);
	e->version = TALLY_PROTOCOL_VERSION;
	e->run_id = h->run_id;
	e->round = h->round;
	e->attempt = h->attempt;
}

static int send_env(hostile *h, const Tally__Envelope *e, const void *data, size_t len)
{
	size_t n = tally__envelope__get_packed_size(e);
	uint8_t *buf = malloc(n ? n : 1);
	int rc;

	if (!buf)
		return fail("%s", "out of memory");
	tally__envelope__pack(e, buf);
	{
		const void *parts[2] = {buf, data};
		size_t lens[2] = {n, len};

		rc = send_frames(h, data ? 2 : 1, parts, lens);
	}
	free(buf);
	return rc;
}

static int send_heartbeat(hostile *h)
{
	tally_msg m = {.type = TALLY_MSG_HEARTBEAT, .round = h->round};

	m.u.heartbeat.seq = ++h->hb_seq;
	h->last_hb_ms = now_ms();
	return send_msg(h, &m, NULL, 0);
}

static int send_bye(hostile *h, const char *reason)
{
	tally_msg m = {.type = TALLY_MSG_BYE, .round = h->round};

	snprintf(m.u.text.reason, sizeof(m.u.text.reason), "%s", reason);
	h->left = true;
	return send_msg(h, &m, NULL, 0);
}

/* ---- receiving ---- */

/* Prints what a reply says; notes the end of this worker's round and goodbyes. */
static void note(hostile *h, const tally_msg *m)
{
	switch (m->type) {
	case TALLY_MSG_REFUSAL:
		h->refusals++;
		printf("reply refusal: %s\n", m->u.text.reason);
		break;
	case TALLY_MSG_BYE:
		h->bye_received = true;
		printf("reply bye: %s\n", m->u.text.reason);
		break;
	case TALLY_MSG_ROUND_END:
		printf("reply round_end %llu accepted=%d: %s\n", (unsigned long long)m->round, m->u.round_end.accepted,
		       m->u.round_end.reason);
		if (m->round == h->round) {
			h->round_over = true;
			h->accepted = m->u.round_end.accepted;
		}
		break;
	case TALLY_MSG_MODEL_CHUNK:
	case TALLY_MSG_CHUNK_REQUEST:
		break;
	default:
		printf("reply %s round %llu\n", tally_msg_type_name(m->type), (unsigned long long)m->round);
	}
}

/*
 * Waits up to timeout_ms for one message other than a heartbeat, sending heartbeats on time
 * meanwhile once joined. Returns 0 with *in to clear, or TALLY_EAGAIN when time ran out.
 */
static int next_msg(hostile *h, tally_inmsg *in, int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;

	for (;;) {
		zmq_pollitem_t it[2] = {{h->sock, 0, ZMQ_POLLIN, 0}, {h->mon, 0, ZMQ_POLLIN, 0}};
		int64_t left = end - now_ms();
		int rc;

		if (left <= 0)
			return TALLY_EAGAIN;
		if (h->joined && !h->left && h->hb_ms && now_ms() - h->last_hb_ms >= h->hb_ms)
			send_heartbeat(h);
		zmq_poll(it, 2, left < 50 ? (long)left : 50);
		if (it[1].revents & ZMQ_POLLIN)
			on_monitor(h);
		if (!(it[0].revents & ZMQ_POLLIN))
			continue;
		rc = tally_recv(h->sock, false, in);
		if (rc == 0 && in->msg.type == TALLY_MSG_HEARTBEAT)
			h->hb_replies++;
		else if (rc == 0) {
			note(h, &in->msg);
			return 0;
		} else if (rc != TALLY_EAGAIN)
			printf("reply undecodable: %s\n", tally_errmsg());
		tally_inmsg_clear(in);
	}
}

/* Collects (and prints) replies for ms milliseconds. */
static void collect(hostile *h, int ms)
{
	int64_t end = now_ms() + ms;
	tally_inmsg in;

	while (now_ms() < end && next_msg(h, &in, (int)(end - now_ms())) == 0)
		tally_inmsg_clear(&in);
}

static int join(hostile *h, uint64_t examples)
{
	tally_msg m = {.type = TALLY_MSG_HELLO};
	int64_t end = now_ms() + 10000;
	tally_inmsg in;

	snprintf(m.u.hello.name, sizeof(m.u.hello.name), "%s", h->kp->name);
	m.u.hello.examples = examples;
	if (send_msg(h, &m, NULL, 0))
		return 1;
	while (now_ms() < end && next_msg(h, &in, (int)(end - now_ms())) == 0) {
		if (in.msg.type == TALLY_MSG_WELCOME) {
			snprintf(h->run_id, sizeof(h->run_id), "%s", in.msg.run_id);
			h->hb_ms = in.msg.u.welcome.heartbeat_ms;
			h->welcome_round = in.msg.round;
			h->joined = true;
			h->last_hb_ms = now_ms();
			printf("joined %s round %llu\n", h->run_id, (unsigned long long)in.msg.round);
			tally_inmsg_clear(&in);
			return 0;
		}
		tally_inmsg_clear(&in);
	}
	printf("result no welcome\n");
	return 1;
}

/* ---- taking part in a round ---- */

static int sa_start(hostile *h, const tally_msg *m)
{
	const tally_wire_secagg *s = &m->u.round_start.secagg;
	tally_sa_params p = {0};
	const char **names = calloc(s->n, sizeof(char *));
	int rc;

	if (!names)
		return TALLY_ENOMEM;
	snprintf(p.run_id, sizeof(p.run_id), "%s", m->run_id);
	p.round = m->round;
	p.n = s->n, p.k = s->k, p.t = s->t, p.length = m->u.round_start.n_params;
	p.quant = (tally_quant){.clip = s->clip, .qrange = s->qrange, .ring_bits = s->ring_bits};
	for (uint32_t i = 0; i < s->n; i++)
		names[i] = s->participants[i];
	tally_sa_client_destroy(&h->sa);
	rc = tally_sa_client_new(&h->sa, &p, names, h->roster, h->kp);
	free(names);
	if (rc == 0) {
		h->sa_n = s->n;
		h->me = tally_sa_client_index(h->sa);
		h->max_weight = s->max_weight;
		printf("secure: %u participants, degree %u, threshold %u, this worker is %u\n", s->n, s->k, s->t, h->me);
	}
	return rc;
}

/* Waits for a RoundStart and the whole model; keeps the previous round's model for comparison. */
static int await_round(hostile *h)
{
	int64_t end = now_ms() + h->wait_ms;
	size_t got = 0;
	tally_inmsg in;

	h->round_over = h->accepted = false;
	memset(h->requests, 0, sizeof(h->requests));
	while (now_ms() < end && !h->bye_received && next_msg(h, &in, (int)(end - now_ms())) == 0) {
		const tally_msg *m = &in.msg;

		if (m->type == TALLY_MSG_ROUND_START) {
			free(h->prev_model);
			h->prev_model = h->model;
			h->prev_round = h->round;
			h->round = m->round;
			h->attempt = m->attempt;
			h->secure = m->u.round_start.secure;
			h->n_params = m->u.round_start.n_params;
			h->model_chunks = tally_chunk_count(h->n_params, TALLY_CHUNK_FLOATS);
			h->model = calloc(h->n_params, sizeof(float));
			got = 0;
			if (!h->model || (h->secure && (!h->roster || sa_start(h, m)))) {
				tally_inmsg_clear(&in);
				return fail("cannot take part in round: %s", h->roster ? tally_errmsg() : "no --roster");
			}
		} else if (m->type == TALLY_MSG_MODEL_CHUNK && h->model && m->round == h->round && in.has_data &&
			   m->u.chunk.index < h->model_chunks &&
			   zmq_msg_size(&in.data) <= (h->n_params - m->u.chunk.index * TALLY_CHUNK_FLOATS) * 4) {
			memcpy(h->model + m->u.chunk.index * TALLY_CHUNK_FLOATS, zmq_msg_data(&in.data),
			       zmq_msg_size(&in.data));
			if (++got == h->model_chunks) {
				printf("round %llu %s, %zu parameters in %zu chunk(s)\n", (unsigned long long)h->round,
				       h->secure ? "secure" : "plain", h->n_params, h->model_chunks);
				tally_inmsg_clear(&in);
				return 0;
			}
		}
		tally_inmsg_clear(&in);
	}
	printf("result no round start within %d s\n", h->wait_ms / 1000);
	return 1;
}

/* Counts, chunk by chunk, the parameters that moved between the last two global models. */
static void report_moved(hostile *h)
{
	if (!h->prev_model || !h->model)
		return;
	if (h->round == h->prev_round) { /* the attempt it saw was not applied: nothing to compare */
		printf("retried %llu\n", (unsigned long long)h->round);
		return;
	}
	for (size_t c = 0; c < h->model_chunks; c++) {
		size_t off = c * TALLY_CHUNK_FLOATS, len = h->n_params - off < TALLY_CHUNK_FLOATS ? h->n_params - off
												   : TALLY_CHUNK_FLOATS;
		size_t changed = 0;

		for (size_t i = 0; i < len; i++)
			changed += h->model[off + i] != h->prev_model[off + i];
		printf("moved %llu chunk %zu: %zu/%zu\n", (unsigned long long)h->prev_round, c, changed, len);
	}
}

static int set_digests(hostile *h)
{
	h->n_chunks = tally_chunk_count(h->words, TALLY_CHUNK_FLOATS);
	free(h->digests);
	h->digests = malloc(h->n_chunks * sizeof(tally_digest));
	if (!h->digests)
		return TALLY_ENOMEM;
	return tally_digest_tensor((const float *)h->payload, h->words, TALLY_CHUNK_FLOATS, h->digest, h->digests);
}

/* A plain update of zeros, poisoned as the fault says before (or after) its digests are taken. */
static int make_plain_update(hostile *h, fault f)
{
	float *x;

	free(h->payload);
	h->words = h->n_params;
	h->payload = calloc(h->words, sizeof(uint32_t));
	if (!h->payload)
		return TALLY_ENOMEM;
	x = (float *)h->payload;
	if (f == F_CH_NAN)
		x[h->words / 2] = NAN;
	else if (f == F_CH_INF)
		x[0] = INFINITY;
	else if (f == F_CH_NAN_SECOND || f == F_CH_UNDO_CHANGED)
		x[h->words - 1] = NAN;
	else if (f == F_CH_HUGE)
		for (size_t i = 0; i < h->words; i++)
			x[i] = HUGE_VALUE;
	else if (f == F_CH_HUGE_THEN_NAN) {
		for (size_t i = 0; i < TALLY_CHUNK_FLOATS && i < h->words; i++)
			x[i] = HUGE_VALUE;
		x[h->words - 1] = NAN;
	}
	if (set_digests(h))
		return TALLY_ENOMEM;
	if (f == F_CH_MISMATCH)
		x[1] = 1.0f; /* after the digests: the bytes sent are not the ones committed */
	return 0;
}

static int make_masked_update(hostile *h, fault f)
{
	float *zero = calloc(h->n_params, sizeof(float));
	uint64_t w = EXAMPLES < h->max_weight ? EXAMPLES : h->max_weight;
	tally_rng rng;
	int rc;

	if (!zero)
		return TALLY_ENOMEM;
	tally_rng_seed(&rng, h->round, 0x4057);
	free(h->payload);
	h->payload = NULL;
	rc = tally_sa_client_mask(h->sa, zero, w ? w : 1, &rng, &h->payload);
	free(zero);
	if (rc)
		return rc;
	h->words = tally_sa_client_words(h->sa);
	if ((rc = set_digests(h)))
		return rc;
	if (f == F_SA_INPUT_DIGEST)
		h->payload[0] ^= 1;
	return 0;
}

static int offer(hostile *h, fault f)
{
	tally_msg m = {.type = TALLY_MSG_UPDATE_READY, .round = h->round};
	tally_digest *list = h->digests;
	size_t n = h->n_chunks;
	int rc;

	m.u.update_ready.examples = f == F_UR_WEIGHT ? TALLY_MAX_EXAMPLES : EXAMPLES;
	m.u.update_ready.n_params = h->words + (f == F_UR_NPARAMS);
	m.u.update_ready.train_loss = 0.5;
	m.u.update_ready.train_accuracy = 0.5;
	m.u.update_ready.seconds = 0.1;
	if (f == F_UR_NCHUNKS) {
		list = calloc(n + 1, sizeof(tally_digest));
		if (!list)
			return 1;
		memcpy(list, h->digests, n * sizeof(tally_digest));
		n++;
	} else if (f == F_SA_PLAIN_UPDATE) {
		m.u.update_ready.n_params = h->n_params;
		n = tally_chunk_count(h->n_params, TALLY_CHUNK_FLOATS);
	}
	m.u.update_ready.chunk_digests = list;
	m.u.update_ready.n_chunks = n;
	tally_digest_list(m.u.update_ready.n_params, list, n, m.u.update_ready.digest);
	if (f == F_UR_DIGEST)
		m.u.update_ready.digest[0] ^= 1;
	if (f == F_UR_OTHER_ROUND || f == F_UR_ATTEMPT) {
		tally_msg stray = m;

		stray.round += f == F_UR_OTHER_ROUND;
		stray.attempt = f == F_UR_ATTEMPT ? h->attempt ^ 0x5a5a : h->attempt;
		if (send_msg(h, &stray, NULL, 0))
			return 1;
		printf("sent update_ready for round %llu attempt %llx\n", (unsigned long long)stray.round,
		       (unsigned long long)stray.attempt);
	}
	rc = send_msg(h, &m, NULL, 0);
	printf("sent update_ready: %llu words in %zu chunk(s)\n", (unsigned long long)m.u.update_ready.n_params, n);
	if (rc == 0 && (f == F_UR_TWICE)) {
		rc = send_msg(h, &m, NULL, 0);
		printf("sent the same update_ready again\n");
	}
	if (list != h->digests)
		free(list);
	return rc;
}

static int send_chunk(hostile *h, uint64_t index, const void *data, size_t len)
{
	tally_msg m = {.type = TALLY_MSG_UPDATE_CHUNK, .round = h->round};

	m.u.chunk.index = index;
	return send_msg(h, &m, data, len);
}

static void answer_request(hostile *h, fault f, uint64_t i)
{
	size_t off = i * TALLY_CHUNK_FLOATS, len;
	unsigned seen;

	if (i >= h->n_chunks)
		return;
	seen = i < 8 ? ++h->requests[i] : 1;
	len = (h->words - off < TALLY_CHUNK_FLOATS ? h->words - off : TALLY_CHUNK_FLOATS) * 4;
	if (f == F_CH_SILENT) {
		printf("ignored a request for chunk %llu\n", (unsigned long long)i);
		return;
	}
	if (f == F_CH_SHORT && i == 0) {
		send_chunk(h, i, h->payload + off, len - 4);
		printf("sent chunk 0 one float short\n");
		return;
	}
	if (f == F_CH_NODATA && i == 0) {
		send_chunk(h, i, NULL, 0);
		printf("sent chunk 0 without a tensor frame\n");
		return;
	}
	if (f == F_CH_INDEX && seen == 1) {
		send_chunk(h, i + 7, h->payload + off, len);
		printf("sent chunk %llu labelled %llu\n", (unsigned long long)i, (unsigned long long)i + 7);
	}
	if (f == F_CH_UNDO_CHANGED && i == 0 && seen > 1) {
		uint32_t *other = malloc(len);

		for (size_t k = 0; other && k < len / 4; k++)
			other[k] = 0x3f800000; /* 1.0f */
		if (other)
			send_chunk(h, i, other, len);
		free(other);
		printf("sent other bytes for chunk 0 when it was pulled again\n");
		return;
	}
	send_chunk(h, i, h->payload + off, len);
	if (f == F_CH_TWICE) {
		send_chunk(h, i, h->payload + off, len);
		printf("sent chunk %llu twice\n", (unsigned long long)i);
	}
}

/* ---- secure aggregation stages ---- */

static void sa_advertise(hostile *h, fault f)
{
	tally_msg m = {.type = TALLY_MSG_ADVERT, .round = h->round};

	if (tally_sa_client_advertise(h->sa, &m.u.advert)) {
		printf("result cannot advertise: %s\n", tally_errmsg());
		return;
	}
	if (f == F_SA_ADV_SIG)
		m.u.advert.sig[10] ^= 0x01;
	if (f == F_SA_ADV_INDEX)
		m.u.advert.index = (h->me + 1) % h->sa_n;
	send_msg(h, &m, NULL, 0);
	printf("sent advert (index %u)\n", m.u.advert.index);
	if (f == F_SA_ADV_TWICE) {
		send_msg(h, &m, NULL, 0);
		printf("sent the same advert again\n");
	}
	if (f == F_SA_ACK_EARLY) {
		tally_msg ack = {.type = TALLY_MSG_RELAY_ACK, .round = h->round};

		send_msg(h, &ack, NULL, 0);
		printf("sent relay_ack before any relay\n");
	}
}

static void sa_share(hostile *h, fault f, const tally_msg *kl)
{
	tally_msg m = {.type = TALLY_MSG_SHARES, .round = h->round};
	uint32_t accused[TALLY_SA_MAX_N];
	size_t n_accused = 0;

	if (tally_sa_client_share(h->sa, kl->u.key_list.list, kl->u.key_list.n, &m.u.boxes.boxes, &m.u.boxes.n_boxes,
				  &m.u.boxes.ids, &m.u.boxes.n_ids)) {
		printf("result cannot share keys: %s\n", tally_errmsg());
		return;
	}
	if (f == F_SA_SH_NONNBR && m.u.boxes.n_boxes)
		m.u.boxes.boxes[0].to = h->me;
	if (f == F_SA_SH_FROM && m.u.boxes.n_boxes)
		m.u.boxes.boxes[0].from = (h->me + 1) % h->sa_n;
	if (f == F_SA_SH_ACCUSE) {
		for (uint32_t i = 0; i < h->sa_n; i++)
			if (i != h->me)
				accused[n_accused++] = i;
		free(m.u.boxes.ids);
		m.u.boxes.ids = accused;
		m.u.boxes.n_ids = n_accused;
	}
	send_msg(h, &m, NULL, 0);
	printf("sent shares: %zu box(es), %zu accused\n", m.u.boxes.n_boxes, m.u.boxes.n_ids);
	if (f == F_SA_SH_TWICE) {
		send_msg(h, &m, NULL, 0);
		printf("sent the same shares again\n");
	}
	free(m.u.boxes.boxes);
	if (m.u.boxes.ids != accused)
		free(m.u.boxes.ids);
}

static void sa_reveal_fake(hostile *h, uint32_t owner)
{
	tally_msg m = {.type = TALLY_MSG_REVEALS, .round = h->round};
	tally_sa_reveal r = {.owner = owner, .kind = TALLY_SA_REVEAL_B, .share = {.x = h->me + 1, .y = {1, 2, 3, 4, 5}}};

	m.u.reveals.r = &r;
	m.u.reveals.n = 1;
	send_msg(h, &m, NULL, 0);
	printf("sent reveals (a made-up share of %u) before any unmask request\n", owner);
}

/* The relay: acknowledge (as the fault says), then mask and offer the update. */
static void sa_ack(hostile *h, fault f, const tally_msg *rl)
{
	tally_msg m = {.type = TALLY_MSG_RELAY_ACK, .round = h->round};
	uint32_t accused[TALLY_SA_MAX_N];
	size_t n_accused = 0;

	if (tally_sa_client_receive(h->sa, rl->u.boxes.ids, rl->u.boxes.n_ids, rl->u.boxes.boxes, rl->u.boxes.n_boxes,
				    &m.u.boxes.ids, &m.u.boxes.n_ids)) {
		printf("result cannot open the relay: %s\n", tally_errmsg());
		return;
	}
	if (f == F_SA_ACK_ACCUSE) {
		for (size_t i = 0; i < rl->u.boxes.n_ids; i++)
			if (rl->u.boxes.ids[i] != h->me)
				accused[n_accused++] = rl->u.boxes.ids[i];
		free(m.u.boxes.ids);
		m.u.boxes.ids = accused;
		m.u.boxes.n_ids = n_accused;
	}
	send_msg(h, &m, NULL, 0);
	printf("sent relay_ack, %zu accused\n", m.u.boxes.n_ids);
	if (f == F_SA_ACK_TWICE) {
		send_msg(h, &m, NULL, 0);
		printf("sent the same relay_ack again\n");
	}
	if (m.u.boxes.ids != accused)
		free(m.u.boxes.ids);
	if (f == F_SA_RV_EARLY)
		sa_reveal_fake(h, (h->me + 1) % h->sa_n);
	if (make_masked_update(h, f)) {
		printf("result cannot mask: %s\n", tally_errmsg());
		return;
	}
	offer(h, f);
}

static void sa_reveal(hostile *h, fault f, const tally_msg *ur)
{
	tally_msg m = {.type = TALLY_MSG_REVEALS, .round = h->round};
	tally_sa_reveal *r = NULL, *more = NULL;
	size_t n = 0;

	if (tally_sa_client_unmask(h->sa, ur->u.unmask.dropped, ur->u.unmask.n_dropped, ur->u.unmask.survivors,
				   ur->u.unmask.n_survivors, &r, &n)) {
		printf("result cannot unmask: %s\n", tally_errmsg());
		return;
	}
	m.u.reveals.r = r;
	m.u.reveals.n = n;
	if (f == F_SA_RV_NOT_HELD && n && (more = calloc(n, sizeof(*more)))) {
		/* the last share swapped for one of its own self-mask seed: no worker holds that */
		memcpy(more, r, n * sizeof(*r));
		more[n - 1].owner = h->me;
		more[n - 1].kind = TALLY_SA_REVEAL_B;
		m.u.reveals.r = more;
	}
	send_msg(h, &m, NULL, 0);
	printf("sent reveals: %zu share(s)%s\n", m.u.reveals.n, more ? ", the last of its own secret" : "");
	if (f == F_SA_RV_TWICE) {
		send_msg(h, &m, NULL, 0);
		printf("sent the same reveals again\n");
	}
	if (more) {
		sodium_memzero(more, n * sizeof(*more));
		free(more);
	}
	tally_sa_reveals_free(r);
}

/* ---- floods ---- */

static const uint8_t garbage[64] = {
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
};

static int heartbeat_flood(hostile *h)
{
	for (int i = 0; i < 10000; i++)
		if (send_heartbeat(h))
			return 1;
	printf("sent 10000 heartbeats\n");
	return 0;
}

/* Floods garbage, then checks whether the coordinator still answers, on this connection and on a
 * new one. */
static int garbage_flood(hostile *h)
{
	tally_inmsg in;
	uint64_t before;
	int64_t end;

	for (int i = 0; i < 2000; i++)
		if (send_bytes(h, garbage, sizeof(garbage)))
			return 1;
	printf("sent 2000 garbage frames\n");
	h->left = true; /* no automatic heartbeats from here on */
	collect(h, 2000);
	printf("refusals received: %llu\n", (unsigned long long)h->refusals);
	before = h->hb_replies;
	send_heartbeat(h);
	collect(h, 1500);
	printf("after flood: heartbeat answered: %s\n", h->hb_replies > before ? "yes" : "no");
	close_conn(h);
	if (open_conn(h))
		return 1;
	h->left = false;
	h->bye_received = false;
	{
		tally_msg m = {.type = TALLY_MSG_HELLO};

		snprintf(m.u.hello.name, sizeof(m.u.hello.name), "%s", h->kp->name);
		m.u.hello.examples = EXAMPLES;
		send_msg(h, &m, NULL, 0);
	}
	end = now_ms() + 3000;
	while (now_ms() < end && next_msg(h, &in, (int)(end - now_ms())) == 0) {
		bool welcome = in.msg.type == TALLY_MSG_WELCOME;

		tally_inmsg_clear(&in);
		if (welcome) {
			printf("after flood: rejoined: yes\n");
			h->joined = true;
			return 0;
		}
	}
	printf("after flood: rejoined: no\n");
	h->left = true;
	return 0;
}

/* ---- cases inside a round ---- */

static int one_round(hostile *h, fault f)
{
	int64_t end;
	tally_inmsg in;

	if (f == F_HB_FLOOD && heartbeat_flood(h))
		return 1;
	if (f == F_GARBAGE_FLOOD)
		return garbage_flood(h);
	if (h->secure) {
		sa_advertise(h, f);
	} else {
		if ((f == F_CH_NAN_SECOND || f == F_CH_UNDO_CHANGED || f == F_CH_HUGE_THEN_NAN) && h->model_chunks < 2)
			return fail("%s needs a model of at least two chunks (over 2^20 parameters)", h->c->name);
		if (make_plain_update(h, f))
			return fail("%s", "out of memory");
		if (f == F_CH_STRAY) {
			float *thousands = malloc(TALLY_CHUNK_FLOATS * 4);

			for (size_t i = 0; thousands && i < TALLY_CHUNK_FLOATS; i++)
				thousands[i] = 1000.0f;
			if (thousands)
				send_chunk(h, 0, thousands, (h->words < TALLY_CHUNK_FLOATS ? h->words : TALLY_CHUNK_FLOATS) * 4);
			free(thousands);
			printf("sent chunk 0 (all 1000) before offering any update\n");
		}
		if (offer(h, f))
			return 1;
	}
	end = now_ms() + h->wait_ms;
	while (!h->round_over && !h->bye_received && now_ms() < end) {
		const tally_msg *m;

		if (h->disconnected_ms && now_ms() - h->disconnected_ms > 3000) {
			printf("result connection lost for good\n");
			break;
		}
		if (next_msg(h, &in, (int)(end - now_ms()) < 500 ? (int)(end - now_ms()) : 500))
			continue;
		m = &in.msg;
		if (m->round == h->round && m->type == TALLY_MSG_CHUNK_REQUEST)
			answer_request(h, f, m->u.chunk.index);
		else if (m->round == h->round && m->type == TALLY_MSG_KEY_LIST && h->sa)
			sa_share(h, f, m);
		else if (m->round == h->round && m->type == TALLY_MSG_RELAY && h->sa)
			sa_ack(h, f, m);
		else if (m->round == h->round && m->type == TALLY_MSG_UNMASK_REQUEST && h->sa)
			sa_reveal(h, f, m);
		tally_inmsg_clear(&in);
	}
	if (f == F_HB_FLOOD)
		printf("heartbeat replies: %llu\n", (unsigned long long)h->hb_replies);
	if (!h->round_over)
		printf("result no round_end for round %llu within %d s\n", (unsigned long long)h->round, h->wait_ms / 1000);
	else
		printf("result round %llu %s\n", (unsigned long long)h->round, h->accepted ? "accepted" : "not accepted");
	return 0;
}

static int round_case(hostile *h)
{
	fault f = h->c->f;
	int reps = f == F_CH_HUGE || f == F_CH_HUGE_THEN_NAN ? 3 : 1;

	if (join(h, EXAMPLES))
		return 1;
	for (int r = 0; r < reps; r++) {
		if (await_round(h))
			return 1;
		report_moved(h);
		if (h->secure != (h->c->kind == K_SECURE))
			return fail("expected a %s round", h->c->kind == K_SECURE ? "secure" : "plain");
		if (one_round(h, f))
			return 1;
		if (h->bye_received || h->left)
			return 0;
	}
	if (reps > 1) { /* the model the last misbehaving round left */
		if (await_round(h))
			return 1;
		report_moved(h);
	}
	return 0;
}

/* ---- cases outside rounds ---- */

static int raw_case(hostile *h, fault f)
{
	Tally__Envelope e;
	Tally__Heartbeat hb = TALLY__HEARTBEAT__INIT;
	Tally__Hello hello = TALLY__HELLO__INIT;
	Tally__Refusal rf = TALLY__REFUSAL__INIT;
	Tally__Bye bye = TALLY__BYE__INIT;
	Tally__ChunkRef cr = TALLY__CHUNK_REF__INIT;
	Tally__UpdateReady ur = TALLY__UPDATE_READY__INIT;
	Tally__Metrics mt = TALLY__METRICS__INIT;
	ProtobufCBinaryData dl[1];
	uint8_t d32[32] = {0};
	char text[4096];
	char *big = NULL;
	int rc;

	env_init(h, &e);
	e.body_case = TALLY__ENVELOPE__BODY_HEARTBEAT;
	e.heartbeat = &hb;
	memset(text, 0, sizeof(text));
	switch (f) {
	case F_VERSION2: e.version = 2; break;
	case F_VERSION0: e.version = 0; break;
	case F_RUNID_WRONG: e.run_id = "not-this-run"; break;
	case F_RUNID_CHARS: e.run_id = "../run id"; break;
	case F_RUNID_LONG: memset(text, 'r', 100); e.run_id = text; break;
	case F_HELLO_LONG:
		memset(text, 'n', 200);
		hello.name = text;
		e.body_case = TALLY__ENVELOPE__BODY_HELLO, e.hello = &hello;
		break;
	case F_HELLO_CTRL:
		hello.name = "evil\n\x1b[31mroot";
		e.body_case = TALLY__ENVELOPE__BODY_HELLO, e.hello = &hello;
		break;
	case F_REFUSAL_CTRL:
		rf.reason = "\x1b[2J\x1b[Hcoordinator compromised\r\n";
		e.body_case = TALLY__ENVELOPE__BODY_REFUSAL, e.refusal = &rf;
		break;
	case F_BYE_LONG:
		memset(text, 'b', 1000);
		bye.reason = text;
		e.body_case = TALLY__ENVELOPE__BODY_BYE, e.bye = &bye;
		break;
	case F_ENVELOPE_BIG:
		big = malloc(3u << 20 | 1);
		if (!big)
			return 1;
		memset(big, 'a', 3u << 20);
		big[3u << 20] = '\0';
		bye.reason = big;
		e.body_case = TALLY__ENVELOPE__BODY_BYE, e.bye = &bye;
		break;
	case F_CHUNK_INDEX_HUGE:
		cr.index = UINT64_C(1) << 40;
		e.body_case = TALLY__ENVELOPE__BODY_UPDATE_CHUNK, e.update_chunk = &cr;
		break;
	case F_UR_ZERO_EXAMPLES:
	case F_UR_SHORT_DIGEST:
	case F_UR_NAN_METRICS:
		ur.examples = f == F_UR_ZERO_EXAMPLES ? 0 : EXAMPLES;
		ur.n_params = 100;
		ur.digest = (ProtobufCBinaryData){32, d32};
		dl[0] = (ProtobufCBinaryData){f == F_UR_SHORT_DIGEST ? 31 : 32, d32};
		ur.n_chunk_digests = 1, ur.chunk_digests = dl;
		mt.train_loss = f == F_UR_NAN_METRICS ? NAN : 0.5;
		ur.metrics = &mt;
		e.body_case = TALLY__ENVELOPE__BODY_UPDATE_READY, e.update_ready = &ur;
		break;
	default:
		break;
	}
	rc = send_env(h, &e, f == F_CHUNK_INDEX_HUGE ? d32 : NULL, sizeof(d32));
	free(big);
	if (rc == 0)
		printf("sent %s\n", h->c->what);
	return rc;
}

static int frames_case(hostile *h, fault f)
{
	tally_msg m = {.type = TALLY_MSG_UPDATE_CHUNK, .round = h->welcome_round};
	uint8_t *buf = NULL;
	size_t len = 0;
	float data[16] = {0};
	int rc = 0;

	if (f == F_GARBAGE)
		rc = send_bytes(h, garbage, sizeof(garbage));
	else if (f == F_EMPTY)
		rc = send_bytes(h, "", 0);
	else if (f == F_TRUNCATED || f == F_THREE_FRAMES) {
		tally_digest one = {0};

		if (f == F_TRUNCATED) {
			m.type = TALLY_MSG_UPDATE_READY;
			m.u.update_ready = (typeof(m.u.update_ready)){.examples = EXAMPLES, .n_params = 100,
								      .n_chunks = 1, .chunk_digests = &one};
		}
		snprintf(m.run_id, sizeof(m.run_id), "%s", h->run_id);
		if (tally_msg_encode(&m, &buf, &len))
			return fail("encode: %s", tally_errmsg());
		if (f == F_TRUNCATED) {
			rc = send_bytes(h, buf, len / 2);
		} else {
			const void *parts[3] = {buf, data, data};
			size_t lens[3] = {len, sizeof(data), sizeof(data)};

			rc = send_frames(h, 3, parts, lens);
		}
		free(buf);
	}
	if (rc == 0)
		printf("sent %s\n", h->c->what);
	return rc;
}

/* Messages only a coordinator sends, well formed, sent by this worker. */
static int coordinator_msg_case(hostile *h, fault f)
{
	tally_msg m = {.round = h->welcome_round};
	tally_sa_advert adv = {.index = 0};
	float data[16] = {0};
	bool with_data = false;

	switch (f) {
	case F_SEND_ROUND_START:
		m.type = TALLY_MSG_ROUND_START;
		snprintf(m.u.round_start.arch, sizeof(m.u.round_start.arch), "mlp:4-4");
		m.u.round_start.n_params = 20;
		m.u.round_start.chunk_floats = TALLY_CHUNK_FLOATS;
		m.u.round_start.train = (tally_train_opts){.epochs = 1, .batch_size = 32, .lr = 0.05f, .momentum = 0.9f};
		break;
	case F_SEND_WELCOME:
		m.type = TALLY_MSG_WELCOME;
		m.u.welcome.heartbeat_ms = 1000, m.u.welcome.patience_ms = 5000;
		break;
	case F_SEND_MODEL_CHUNK: m.type = TALLY_MSG_MODEL_CHUNK, with_data = true; break;
	case F_SEND_CHUNK_REQUEST: m.type = TALLY_MSG_CHUNK_REQUEST; break;
	case F_SEND_ROUND_END:
		m.type = TALLY_MSG_ROUND_END;
		m.u.round_end.accepted = true;
		snprintf(m.u.round_end.reason, sizeof(m.u.round_end.reason), "all done");
		break;
	default:
		m.type = TALLY_MSG_KEY_LIST;
		randombytes_buf(adv.c_pk, sizeof(adv.c_pk));
		randombytes_buf(adv.s_pk, sizeof(adv.s_pk));
		randombytes_buf(adv.sig, sizeof(adv.sig));
		m.u.key_list.list = &adv;
		m.u.key_list.n = 1;
	}
	if (send_msg(h, &m, with_data ? data : NULL, sizeof(data)))
		return 1;
	printf("sent %s\n", h->c->what);
	return 0;
}

static int update_not_in_round(hostile *h)
{
	tally_msg m = {.type = TALLY_MSG_UPDATE_READY, .round = h->welcome_round};
	tally_digest one = {0};

	m.u.update_ready = (typeof(m.u.update_ready)){.examples = EXAMPLES, .n_params = 100, .n_chunks = 1,
						      .chunk_digests = &one, .train_loss = 0.5};
	tally_digest_list(100, &one, 1, m.u.update_ready.digest);
	if (send_msg(h, &m, NULL, 0))
		return 1;
	printf("sent update_ready for round %llu\n", (unsigned long long)m.round);
	return 0;
}

static int oversize_case(hostile *h)
{
	size_t len = 5u << 20;
	uint8_t *big = malloc(len);
	tally_inmsg in;
	int rc;

	if (!big)
		return 1;
	memset(big, 0xab, len);
	rc = send_bytes(h, big, len);
	free(big);
	if (rc)
		return rc;
	printf("sent a frame of %zu bytes\n", len);
	h->left = true; /* the coordinator should drop this session: no heartbeats to keep it */
	collect(h, 1500);
	send_heartbeat(h); /* on whatever connection libzmq has made since */
	if (next_msg(h, &in, 2000) == 0)
		tally_inmsg_clear(&in);
	return 0;
}

static int session_case(hostile *h)
{
	fault f = h->c->f;
	int rc;

	if (f == F_BEFORE_HELLO) {
		snprintf(h->run_id, sizeof(h->run_id), "run-unknown");
		if (send_heartbeat(h))
			return 1;
		printf("sent a heartbeat without hello\n");
		collect(h, 2000);
		return 0;
	}
	if (f == F_UNKNOWN_KEY) {
		tally_msg m = {.type = TALLY_MSG_HELLO};

		snprintf(m.u.hello.name, sizeof(m.u.hello.name), "%s", h->kp->name);
		m.u.hello.examples = EXAMPLES;
		send_msg(h, &m, NULL, 0);
		printf("sent hello with key %s\n", h->kp->name);
		collect(h, 3000);
		printf("result %s\n", h->auth_refused ? "refused at the handshake" : "not refused at the handshake");
		return 0;
	}
	if (join(h, f == F_SA_HUGE_EXAMPLES ? TALLY_MAX_EXAMPLES : EXAMPLES))
		return 1;
	switch (f) {
	case F_GARBAGE: case F_EMPTY: case F_TRUNCATED: case F_THREE_FRAMES:
		rc = frames_case(h, f);
		break;
	case F_SEND_ROUND_START: case F_SEND_WELCOME: case F_SEND_MODEL_CHUNK: case F_SEND_CHUNK_REQUEST:
	case F_SEND_ROUND_END: case F_SEND_KEY_LIST:
		rc = coordinator_msg_case(h, f);
		break;
	case F_UR_NOT_IN_ROUND:
		rc = update_not_in_round(h);
		break;
	case F_OVERSIZE:
		return oversize_case(h);
	case F_BYE_THEN:
		send_bye(h, "leaving, or so it says");
		printf("sent bye\n");
		h->left = false;
		send_heartbeat(h);
		rc = update_not_in_round(h);
		printf("sent a heartbeat and an update_ready after its bye\n");
		collect(h, 1500);
		return rc;
	case F_SA_HUGE_EXAMPLES:
		printf("sent hello claiming %llu examples; staying %d s\n", (unsigned long long)TALLY_MAX_EXAMPLES,
		       h->wait_ms / 1000);
		collect(h, h->wait_ms);
		rc = 0;
		break;
	default:
		rc = raw_case(h, f);
	}
	if (rc)
		return rc;
	collect(h, 600);
	return 0;
}

/* ---- main ---- */

static void usage(FILE *out)
{
	fprintf(out, "usage: tally-hostile --coordinator EP --key K.key --coordinator-key C.pub [--roster DIR]\n"
		     "                     [--wait-s S] --case NAME\n"
		     "       tally-hostile --list\n");
}

static const hcase *find_case(const char *name)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (strcmp(cases[i].name, name) == 0)
			return &cases[i];
	return NULL;
}

int main(int argc, char **argv)
{
	const char *key = NULL, *ckey = NULL, *roster = NULL, *name = NULL;
	hostile h = {.wait_ms = 30000};
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--list") == 0) {
			for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
				printf("%-26s %-7s %s\n", cases[k].name,
				       cases[k].kind == K_SECURE ? "secure" : cases[k].kind == K_PLAIN ? "plain" : "session",
				       cases[k].what);
			return 0;
		} else if (strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (!v) {
			usage(stderr);
			return 2;
		} else if (strcmp(a, "--coordinator") == 0) {
			snprintf(h.endpoint, sizeof(h.endpoint), "%s", v);
		} else if (strcmp(a, "--key") == 0) {
			key = v;
		} else if (strcmp(a, "--coordinator-key") == 0) {
			ckey = v;
		} else if (strcmp(a, "--roster") == 0) {
			roster = v;
		} else if (strcmp(a, "--case") == 0) {
			name = v;
		} else if (strcmp(a, "--wait-s") == 0) {
			h.wait_ms = atoi(v) * 1000;
		} else {
			usage(stderr);
			return 2;
		}
		i++;
	}
	if (!h.endpoint[0] || !key || !ckey || !name || !(h.c = find_case(name)) || h.wait_ms <= 0) {
		if (name && !find_case(name))
			fprintf(stderr, "tally-hostile: no case '%s' (see --list)\n", name);
		usage(stderr);
		return 2;
	}
	if (sodium_init() < 0 || tally_keypair_load(&h.kp, key) || tally_pubkey_load(ckey, h.server_key, NULL) ||
	    (roster && tally_roster_load(&h.roster, roster))) {
		fprintf(stderr, "tally-hostile: %s\n", tally_errmsg());
		return 2;
	}
	h.ctx = zmq_ctx_new();
	printf("case %s: %s\n", h.c->name, h.c->what);
	rc = open_conn(&h);
	if (rc == 0)
		rc = h.c->kind == K_SESSION ? session_case(&h) : round_case(&h);
	if (rc == 0 && h.joined && !h.left && !h.bye_received) {
		send_bye(&h, "hostile case over");
		collect(&h, 200);
	}
	printf("done %s\n", rc == 0 ? "ok" : "failed");
	close_conn(&h);
	zmq_ctx_term(h.ctx);
	tally_sa_client_destroy(&h.sa);
	free(h.model);
	free(h.prev_model);
	free(h.payload);
	free(h.digests);
	tally_roster_destroy(&h.roster);
	tally_keypair_destroy(&h.kp);
	return rc ? 1 : 0;
}
