/*
 * tally-data-hostile: bad input on the coordinator's open data path, for
 * tests/integration/data_path.sh.
 *
 * The data path is a plain ROUTER (no CURVE) that takes only masked UpdateChunks carrying this
 * attempt's token of a live session, from the connection that token is bound to, and answers
 * nothing. This program connects to it as anyone on a worker's address could, and sends, over
 * one plain DEALER and in a fixed order, COUNT copies of each bad message of the list (--list):
 * garbage, empty and oversize envelopes, other message types, missing, short and unknown tokens,
 * too many frames, an out-of-range index; given a token seen on the wire during the attempt in
 * progress (--token), chunks with it for another run or for a round that is not open (this
 * connection is not the one the token is bound to, so both are refused for that before anything
 * else); given a token seen in an attempt that is over (--old-token), a chunk with it for its
 * own round and attempt (a replay, refused as an unknown token). The coordinator drops each and
 * logs the first and every 1000th drop with a running count, so with COUNT 1000 the test can
 * check every case's reason and that each message was counted once. Then, on connections of
 * their own: one frame over ZMQ_MAXMSGSIZE (libzmq must cut that connection), and, with --from, a
 * connection from a loopback address no worker came from (ZAP must refuse it). Last, COUNT more
 * garbage frames on the first connection, whose final drop number closes the count.
 *
 * Tokens are given as the test's relay writes them: ROUND:ATTEMPT:HEX.
 * Output, one line each: "case NAME: sent N", "oversize: ...", "unknown-address: ...",
 * "marker: sent N", "answers received: N" (anything the data socket sent back: must be 0).
 * Exit status 0 once everything was sent, 1 when a send or a socket failed, 2 for a usage error.
 */
#include "tally/net.h"
#include "tally/wire.h"

#include "tally.pb-c.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define BIG_ENVELOPE (3u << 20) /* under ZMQ_MAXMSGSIZE, over TALLY_ENVELOPE_MAX */
#define STALE_ROUND (UINT64_C(1) << 30)

/* A data token as seen on the wire, with the round and attempt of the chunk that carried it. */
typedef struct seen_token {
	uint64_t round, attempt;
	uint8_t token[TALLY_DATA_TOKEN];
	bool given;
} seen_token;

typedef struct dh {
	void *ctx;
	void *sock;            /* the connection every counted case goes over */
	char endpoint[256];    /* the data path: tcp://HOST:PORT */
	char run_id[TALLY_NAME_MAX];
	seen_token live;       /* seen during the attempt in progress */
	seen_token old;        /* seen during an attempt that is over */
	const char *from;      /* a loopback address no worker came from */
	int count;
	uint64_t answers;
} dh;

typedef enum {
	C_GARBAGE, C_EMPTY, C_VERSION2, C_HELLO, C_HEARTBEAT, C_CHUNK_NO_TOKEN, C_REQUEST_TOKEN, C_TOKEN_SHORT,
	C_TOKEN_WRONG, C_FRAMES, C_INDEX_HUGE, C_STOLEN_RUN_ID, C_STOLEN_STALE, C_STOLEN_EXPIRED, C_BIG,
} dcase;

enum { NEEDS_NOTHING, NEEDS_LIVE, NEEDS_OLD }; /* which seen token a case sends */

static const struct {
	const char *name;
	dcase c;
	int needs;
	const char *what;
} cases[] = {
	{"garbage", C_GARBAGE, NEEDS_NOTHING, "a frame of 64 0xff bytes (not protobuf)"},
	{"empty", C_EMPTY, NEEDS_NOTHING, "an empty frame"},
	{"version-2", C_VERSION2, NEEDS_NOTHING, "an update_chunk of protocol version 2"},
	{"hello", C_HELLO, NEEDS_NOTHING, "a hello"},
	{"heartbeat", C_HEARTBEAT, NEEDS_NOTHING, "a heartbeat"},
	{"chunk-no-token", C_CHUNK_NO_TOKEN, NEEDS_NOTHING, "an update_chunk without a token (as sent over CURVE)"},
	{"request-token", C_REQUEST_TOKEN, NEEDS_NOTHING, "a chunk_request carrying a token"},
	{"token-5-bytes", C_TOKEN_SHORT, NEEDS_NOTHING, "an update_chunk with a 5-byte token"},
	{"token-wrong", C_TOKEN_WRONG, NEEDS_NOTHING, "a well-formed update_chunk with a random 16-byte token"},
	{"too-many-frames", C_FRAMES, NEEDS_NOTHING, "an update_chunk with a random token and 5 tensor frames"},
	{"index-huge", C_INDEX_HUGE, NEEDS_NOTHING, "an update_chunk for chunk 2^40"},
	{"stolen-run-id", C_STOLEN_RUN_ID, NEEDS_LIVE, "an update_chunk with --token and another run id"},
	{"stolen-stale-round", C_STOLEN_STALE, NEEDS_LIVE, "an update_chunk with --token for round 2^30"},
	{"stolen-expired", C_STOLEN_EXPIRED, NEEDS_OLD, "an update_chunk with --old-token for its own round and attempt"},
	{"envelope-3mib", C_BIG, NEEDS_NOTHING, "a 3 MiB envelope (one message, not COUNT)"},
};
#define N_CASES (sizeof(cases) / sizeof(cases[0]))

static const uint8_t garbage[64] = {
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
};
static const uint8_t tensor[64]; /* the "masked words" of every chunk sent here */

static int fail(const char *what)
{
	fprintf(stderr, "tally-data-hostile: %s: %s\n", what, zmq_strerror(zmq_errno()));
	return 1;
}

/* ---- sockets ---- */

/* A plain DEALER to endpoint with a monitor on inproc://NAME for events; *mon may be NULL. */
static void *open_dealer(dh *d, const char *endpoint, const char *mon_name, int events, void **mon)
{
	void *s = zmq_socket(d->ctx, ZMQ_DEALER);
	int hwm = 0, timeo = 10000, linger = 0;
	char ep[64];

	if (!s || tally_sock_limits(s) || zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm)) ||
	    zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeo, sizeof(timeo)) ||
	    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger)))
		goto fail;
	if (mon) {
		snprintf(ep, sizeof(ep), "inproc://%s", mon_name);
		if (zmq_socket_monitor(s, ep, events) || !(*mon = zmq_socket(d->ctx, ZMQ_PAIR)) ||
		    zmq_connect(*mon, ep))
			goto fail;
	}
	if (zmq_connect(s, endpoint) == 0)
		return s;
fail:
	fail(endpoint);
	if (s)
		zmq_close(s);
	return NULL;
}

/* Waits up to ms for one of the monitor events in want; returns the event or 0. */
static int await_event(void *mon, int want, int ms)
{
	zmq_pollitem_t it = {mon, 0, ZMQ_POLLIN, 0};

	while (zmq_poll(&it, 1, ms) > 0) {
		zmq_msg_t ev;
		uint16_t id = 0;

		zmq_msg_init(&ev);
		if (zmq_msg_recv(&ev, mon, 0) >= 0 && zmq_msg_size(&ev) >= 2)
			memcpy(&id, zmq_msg_data(&ev), sizeof(id));
		while (zmq_msg_more(&ev) && zmq_msg_recv(&ev, mon, 0) >= 0)
			;
		zmq_msg_close(&ev);
		if (id & want)
			return id;
	}
	return 0;
}

/* Counts (and discards) whatever s received: the data path must never answer. */
static void collect(dh *d, void *s, int ms)
{
	zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};

	while (zmq_poll(&it, 1, ms) > 0) {
		zmq_msg_t m;

		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, s, 0) >= 0 && !zmq_msg_more(&m))
			d->answers++;
		zmq_msg_close(&m);
		ms = 0;
	}
}

static int send_frames(void *s, int n, const void *const *parts, const size_t *lens)
{
	for (int i = 0; i < n; i++)
		if (zmq_send(s, parts[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
			return fail("send");
	return 0;
}

/* ---- messages ---- */

/* Packs e and sends it with n_tensor copies of the chunk bytes after it. */
static int send_env(void *s, const Tally__Envelope *e, int n_tensor)
{
	const void *parts[8];
	size_t lens[8], n = tally__envelope__get_packed_size(e);
	uint8_t *buf = malloc(n ? n : 1);
	int rc;

	if (!buf)
		return 1;
	tally__envelope__pack(e, buf);
	parts[0] = buf, lens[0] = n;
	for (int i = 1; i <= n_tensor && i < 8; i++)
		parts[i] = tensor, lens[i] = sizeof(tensor);
	rc = send_frames(s, 1 + (n_tensor < 8 ? n_tensor : 7), parts, lens);
	free(buf);
	return rc;
}

/* One message of case c: a chunk of round 1 of this run unless the case says otherwise. */
static int send_case(dh *d, dcase c)
{
	Tally__Envelope e = TALLY__ENVELOPE__INIT;
	Tally__ChunkRef cr = TALLY__CHUNK_REF__INIT;
	Tally__Hello hello = TALLY__HELLO__INIT;
	Tally__Heartbeat hb = TALLY__HEARTBEAT__INIT;
	uint8_t tok[TALLY_DATA_TOKEN];
	int frames = 1;

	if (c == C_GARBAGE || c == C_EMPTY) {
		const void *p = garbage;
		size_t len = c == C_GARBAGE ? sizeof(garbage) : 0;

		return send_frames(d->sock, 1, &p, &len);
	}
	e.version = c == C_VERSION2 ? 2 : TALLY_PROTOCOL_VERSION;
	e.run_id = c == C_STOLEN_RUN_ID ? "another-run" : d->run_id;
	e.round = 1, e.attempt = 1;
	randombytes_buf(tok, sizeof(tok));
	cr.token = (ProtobufCBinaryData){sizeof(tok), tok};
	e.body_case = TALLY__ENVELOPE__BODY_UPDATE_CHUNK, e.update_chunk = &cr;
	switch (c) {
	case C_HELLO: e.body_case = TALLY__ENVELOPE__BODY_HELLO, e.hello = &hello, hello.name = "w0", frames = 0; break;
	case C_HEARTBEAT: e.body_case = TALLY__ENVELOPE__BODY_HEARTBEAT, e.heartbeat = &hb, frames = 0; break;
	case C_CHUNK_NO_TOKEN: cr.token.len = 0; break;
	case C_REQUEST_TOKEN: e.body_case = TALLY__ENVELOPE__BODY_CHUNK_REQUEST, e.chunk_request = &cr, frames = 0; break;
	case C_TOKEN_SHORT: cr.token.len = 5; break;
	case C_FRAMES: frames = 5; break;
	case C_INDEX_HUGE: cr.index = UINT64_C(1) << 40; break;
	case C_STOLEN_RUN_ID: e.round = d->live.round, e.attempt = d->live.attempt, cr.token.data = d->live.token; break;
	case C_STOLEN_STALE: e.round = STALE_ROUND, e.attempt = d->live.attempt, cr.token.data = d->live.token; break;
	case C_STOLEN_EXPIRED: e.round = d->old.round, e.attempt = d->old.attempt, cr.token.data = d->old.token; break;
	default: break;
	}
	return send_env(d->sock, &e, frames);
}

/* One envelope of BIG_ENVELOPE bytes: refused by its size before it is parsed. */
static int send_big(dh *d)
{
	uint8_t *big = malloc(BIG_ENVELOPE);
	const void *p = big;
	size_t len = BIG_ENVELOPE;
	int rc;

	if (!big)
		return 1;
	memset(big, 'a', len);
	rc = send_frames(d->sock, 1, &p, &len);
	free(big);
	return rc;
}

/* ---- connections of their own ---- */

/* One frame over ZMQ_MAXMSGSIZE: libzmq on the coordinator must close this connection. */
static int oversize(dh *d)
{
	size_t len = TALLY_FRAME_MAX + 1;
	uint8_t *big = malloc(len);
	void *mon = NULL, *s = open_dealer(d, d->endpoint, "dh-oversize", ZMQ_EVENT_DISCONNECTED, &mon);
	const void *p = big;
	int rc = 1;

	if (big && s) {
		memset(big, 0xab, len);
		rc = send_frames(s, 1, &p, &len);
	}
	if (rc == 0) {
		bool cut = await_event(mon, ZMQ_EVENT_DISCONNECTED, 10000) != 0;

		printf("oversize: sent a frame of %zu bytes; connection closed by the coordinator: %s\n", len,
		       cut ? "yes" : "no");
		collect(d, s, 0);
	}
	free(big);
	if (s)
		zmq_close(s);
	if (mon)
		zmq_close(mon);
	return rc;
}

/* A connection from an address no enrolled worker was admitted from: ZAP must refuse it. */
static int unknown_address(dh *d)
{
	const char *host = strstr(d->endpoint, "://");
	char ep[300];
	void *mon = NULL, *s;
	int ev;

	snprintf(ep, sizeof(ep), "tcp://%s:0;%s", d->from, host ? host + 3 : d->endpoint);
	s = open_dealer(d, ep, "dh-unknown", ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED, &mon);
	if (!s)
		return 1;
	ev = await_event(mon, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED, 10000);
	printf("unknown-address: connection from %s refused at the handshake: %s\n", d->from,
	       ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ? "yes" : ev ? "no (admitted)" : "no (no answer)");
	collect(d, s, 0);
	zmq_close(s);
	zmq_close(mon);
	return 0;
}

/* ---- main ---- */

static int run(dh *d)
{
	for (size_t i = 0; i < N_CASES; i++) {
		if (cases[i].c == C_BIG || (cases[i].needs == NEEDS_LIVE && !d->live.given) ||
		    (cases[i].needs == NEEDS_OLD && !d->old.given))
			continue;
		for (int k = 0; k < d->count; k++)
			if (send_case(d, cases[i].c))
				return 1;
		printf("case %s: sent %d\n", cases[i].name, d->count);
	}
	if (send_big(d))
		return 1;
	printf("case envelope-3mib: sent 1\n");
	if (oversize(d) || (d->from && unknown_address(d)))
		return 1;
	for (int k = 0; k < d->count; k++)
		if (send_case(d, C_GARBAGE))
			return 1;
	printf("marker: sent %d\n", d->count);
	collect(d, d->sock, 1000);
	printf("answers received: %llu\n", (unsigned long long)d->answers);
	return 0;
}

/* Parses ROUND:ATTEMPT:HEX (a token and the round and attempt of the chunk it was seen on). */
static bool parse_token(const char *s, seen_token *t)
{
	char *end;

	t->round = strtoull(s, &end, 10);
	if (end == s || *end != ':')
		return false;
	s = end + 1;
	t->attempt = strtoull(s, &end, 10);
	if (end == s || *end != ':')
		return false;
	s = end + 1;
	t->given = strlen(s) == 2 * TALLY_DATA_TOKEN &&
		   sodium_hex2bin(t->token, sizeof(t->token), s, strlen(s), NULL, NULL, NULL) == 0;
	return t->given;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: tally-data-hostile --data tcp://HOST:PORT --run-id ID [--token ROUND:ATTEMPT:HEX]\n"
		     "                          [--old-token ROUND:ATTEMPT:HEX] [--from ADDR] [--count N]\n"
		     "       tally-data-hostile --list\n");
}

int main(int argc, char **argv)
{
	dh d = {.count = 1000};
	const char *live = NULL, *old = NULL;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--list") == 0) {
			for (size_t k = 0; k < N_CASES; k++)
				printf("%s\t%s\n", cases[k].name, cases[k].what);
			return 0;
		} else if (!v) {
			usage(stderr);
			return 2;
		} else if (strcmp(a, "--data") == 0) {
			snprintf(d.endpoint, sizeof(d.endpoint), "%s", v);
		} else if (strcmp(a, "--run-id") == 0) {
			snprintf(d.run_id, sizeof(d.run_id), "%s", v);
		} else if (strcmp(a, "--token") == 0) {
			live = v;
		} else if (strcmp(a, "--old-token") == 0) {
			old = v;
		} else if (strcmp(a, "--from") == 0) {
			d.from = v;
		} else if (strcmp(a, "--count") == 0) {
			d.count = atoi(v);
		} else {
			usage(stderr);
			return 2;
		}
		i++;
	}
	if (!d.endpoint[0] || !d.run_id[0] || d.count < 1 || (live && !parse_token(live, &d.live)) ||
	    (old && !parse_token(old, &d.old))) {
		usage(stderr);
		return 2;
	}
	if (sodium_init() < 0)
		return 1;
	d.ctx = zmq_ctx_new();
	d.sock = open_dealer(&d, d.endpoint, NULL, 0, NULL);
	rc = d.sock ? run(&d) : 1;
	if (d.sock)
		zmq_close(d.sock);
	zmq_ctx_term(d.ctx);
	return rc;
}
