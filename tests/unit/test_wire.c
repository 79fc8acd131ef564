/*
 * Unit tests for the wire codec: every message type survives encode -> decode with all its fields,
 * and every class of malformed envelope is refused with its code and a message naming the field.
 * Malformed envelopes are built with the generated protobuf-c API (the codec's encoder would not
 * be the right tool for bytes it should never produce). After a refused decode the tally_msg must
 * be all zero, and under ASan nothing may leak.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tally.pb-c.h"
#include "tally/error.h"
#include "tally/net.h"
#include "tally/wire.h"

/* ---- round trips ---- */

static void fill_digest(tally_digest d, uint8_t seed)
{
	for (int i = 0; i < TALLY_DIGEST_BYTES; i++)
		d[i] = (uint8_t)(seed + 7 * i);
}

/* Encodes m, decodes it into out (which must succeed) and checks the common fields. */
static void round_trip(const tally_msg *m, tally_msg *out)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc;

	assert_int_equal(tally_msg_encode(m, &buf, &len), 0);
	assert_non_null(buf);
	assert_true(len <= TALLY_ENVELOPE_MAX);
	memset(out, 0xa5, sizeof(*out));
	rc = tally_msg_decode(out, buf, len);
	free(buf);
	if (rc)
		fail_msg("decode of an encoded %s failed: %d %s", tally_msg_type_name(m->type), rc, tally_errmsg());
	assert_int_equal(out->type, m->type);
	assert_string_equal(out->run_id, m->run_id);
	assert_true(out->round == m->round);
}

static void test_round_trip_simple_types(void **state)
{
	tally_msg out, m1 = {.type = TALLY_MSG_HELLO, .u.hello = {"worker-07.eu:a_b", 60000}};
	tally_msg m2 = {.type = TALLY_MSG_WELCOME, .run_id = "run-2024.01", .u.welcome = {1000, 1000}};
	tally_msg m3 = {.type = TALLY_MSG_HEARTBEAT, .run_id = "r", .round = UINT64_MAX,
			.u.heartbeat.seq = 0x0123456789abcdefull};
	tally_msg m4 = {.type = TALLY_MSG_ROUND_END, .run_id = "r1", .round = 9,
			.u.round_end = {true, "accepted: 3 of 4, caf\xc3\xa9 \"ok\""}};
	tally_msg m5 = {.type = TALLY_MSG_REFUSAL, .run_id = "r1"};
	tally_msg m6 = {.type = TALLY_MSG_BYE, .run_id = "r1", .u.text = {"run complete", true}};

	round_trip(&m1, &out); /* run_id may be empty in Hello */
	assert_string_equal(out.u.hello.name, "worker-07.eu:a_b");
	assert_true(out.u.hello.examples == 60000);
	round_trip(&m2, &out);
	assert_int_equal(out.u.welcome.heartbeat_ms, 1000);
	assert_int_equal(out.u.welcome.patience_ms, 1000);
	round_trip(&m3, &out);
	assert_true(out.u.heartbeat.seq == 0x0123456789abcdefull);
	round_trip(&m4, &out);
	assert_true(out.u.round_end.accepted);
	assert_string_equal(out.u.round_end.reason, m4.u.round_end.reason);
	memset(m5.u.text.reason, 'x', TALLY_TEXT_MAX - 1); /* the longest reason */
	round_trip(&m5, &out);
	assert_string_equal(out.u.text.reason, m5.u.text.reason);
	assert_false(out.u.text.final);
	round_trip(&m6, &out);
	assert_string_equal(out.u.text.reason, "run complete");
	assert_true(out.u.text.final);
	tally_msg_clear(&out);
}

static void test_round_trip_chunk_refs(void **state)
{
	static const tally_msg_type types[3] = {TALLY_MSG_MODEL_CHUNK, TALLY_MSG_CHUNK_REQUEST,
						TALLY_MSG_UPDATE_CHUNK};
	static const uint64_t indices[3] = {0, 17, TALLY_MAX_CHUNKS - 1};

	for (int t = 0; t < 3; t++) {
		for (int i = 0; i < 3; i++) {
			tally_msg out, m = {.type = types[t], .run_id = "run-9", .round = 3,
					    .u.chunk.index = indices[i]};

			round_trip(&m, &out);
			assert_true(out.u.chunk.index == indices[i]);
		}
	}
}

/* The open data path's fields: Welcome's port and token, UpdateChunk's token. */
static void test_round_trip_data_path(void **state)
{
	tally_msg out, w = {.type = TALLY_MSG_WELCOME, .run_id = "run-3", .u.welcome = {1000, 5000, 65535, {0}}};
	tally_msg c = {.type = TALLY_MSG_UPDATE_CHUNK, .run_id = "run-3", .round = 2, .u.chunk = {.index = 7}};

	for (int i = 0; i < TALLY_DATA_TOKEN; i++)
		w.u.welcome.data_token[i] = (uint8_t)(0xf0 ^ i);
	round_trip(&w, &out);
	assert_int_equal(out.u.welcome.data_port, 65535);
	assert_memory_equal(out.u.welcome.data_token, w.u.welcome.data_token, TALLY_DATA_TOKEN);
	w.u.welcome.data_port = 0; /* no data path: no token travels */
	round_trip(&w, &out);
	assert_int_equal(out.u.welcome.data_port, 0);
	round_trip(&c, &out);
	assert_false(out.u.chunk.has_token);
	c.u.chunk.has_token = true;
	memcpy(c.u.chunk.token, w.u.welcome.data_token, TALLY_DATA_TOKEN);
	round_trip(&c, &out);
	assert_true(out.u.chunk.has_token);
	assert_true(out.u.chunk.index == 7);
	assert_memory_equal(out.u.chunk.token, w.u.welcome.data_token, TALLY_DATA_TOKEN);
	c = (tally_msg){.type = TALLY_MSG_CHUNK_REQUEST, .run_id = "run-3", .u.chunk = {.index = 1, .curve_only = true}};
	round_trip(&c, &out);
	assert_true(out.u.chunk.curve_only);
}

/*
 * The per-attempt data-path token: BLAKE2b-128 keyed by the session secret over "tally-data-v1",
 * round, attempt (u64le). Known answer from Python's hashlib.blake2b(msg, key=bytes(range(16)),
 * digest_size=16) with round 7, attempt 0x0123456789abcdef; each input changes it.
 */
static void test_data_token(void **state)
{
	static const uint8_t want[TALLY_DATA_TOKEN] = {0x57, 0x19, 0x31, 0xa8, 0x1e, 0xa8, 0x15, 0x68,
							0x15, 0x7e, 0xd6, 0x9f, 0x5c, 0x54, 0x0d, 0x63};
	uint8_t key[TALLY_DATA_TOKEN], t[TALLY_DATA_TOKEN], u[TALLY_DATA_TOKEN];

	(void)state;
	for (int i = 0; i < TALLY_DATA_TOKEN; i++)
		key[i] = (uint8_t)i;
	tally_data_token(t, key, 7, 0x0123456789abcdefull);
	assert_memory_equal(t, want, TALLY_DATA_TOKEN);
	tally_data_token(u, key, 8, 0x0123456789abcdefull);
	assert_memory_not_equal(t, u, TALLY_DATA_TOKEN);
	tally_data_token(u, key, 7, 0x0123456789abcdeeull);
	assert_memory_not_equal(t, u, TALLY_DATA_TOKEN);
	key[15] ^= 1;
	tally_data_token(u, key, 7, 0x0123456789abcdefull);
	assert_memory_not_equal(t, u, TALLY_DATA_TOKEN);
}

static void test_round_trip_round_start(void **state)
{
	tally_msg out, m = {.type = TALLY_MSG_ROUND_START, .run_id = "run-1", .round = 12,
		.u.round_start = {.arch = "mlp:784-256-128-10", .n_params = 235146, .chunk_floats = 65536,
			.deadline_ms = 30000, .train = {.epochs = 2, .batch_size = 32, .lr = 0.05f,
			.momentum = 0.9f, .weight_decay = 1e-4f, .prox_mu = 0.01f, .seed = 0xfeedfacecafebeefull}}};
	const tally_train_opts *t = &out.u.round_start.train;

	fill_digest(m.u.round_start.model_digest, 3);
	round_trip(&m, &out);
	assert_string_equal(out.u.round_start.arch, "mlp:784-256-128-10");
	assert_true(out.u.round_start.n_params == 235146);
	assert_memory_equal(out.u.round_start.model_digest, m.u.round_start.model_digest, TALLY_DIGEST_BYTES);
	assert_int_equal(out.u.round_start.chunk_floats, 65536);
	assert_int_equal(out.u.round_start.deadline_ms, 30000);
	assert_int_equal(t->epochs, 2);
	assert_int_equal(t->batch_size, 32);
	assert_true(t->lr == 0.05f && t->momentum == 0.9f && t->weight_decay == 1e-4f && t->prox_mu == 0.01f);
	assert_true(t->seed == 0xfeedfacecafebeefull);

	/* the largest model the limits allow: exactly TALLY_MAX_CHUNKS chunks of the largest size */
	m.u.round_start.chunk_floats = TALLY_CHUNK_FLOATS;
	m.u.round_start.n_params = (uint64_t)TALLY_MAX_CHUNKS * TALLY_CHUNK_FLOATS;
	round_trip(&m, &out);
	assert_true(out.u.round_start.n_params == (uint64_t)TALLY_MAX_CHUNKS * TALLY_CHUNK_FLOATS);
}

static void test_round_trip_update_ready(void **state)
{
	tally_digest chunks[5];
	tally_msg out, m = {.type = TALLY_MSG_UPDATE_READY, .run_id = "run-1", .round = 4,
		.u.update_ready = {.examples = 12000, .n_params = 4999, .n_chunks = 5, .chunk_digests = chunks,
			.train_loss = 0.3125, .train_accuracy = 1.0, .seconds = 12.75}};

	for (int i = 0; i < 5; i++)
		fill_digest(chunks[i], (uint8_t)(40 + i));
	fill_digest(m.u.update_ready.digest, 200);
	round_trip(&m, &out);
	assert_true(out.u.update_ready.examples == 12000);
	assert_true(out.u.update_ready.n_params == 4999);
	assert_memory_equal(out.u.update_ready.digest, m.u.update_ready.digest, TALLY_DIGEST_BYTES);
	assert_int_equal(out.u.update_ready.n_chunks, 5);
	assert_non_null(out.u.update_ready.chunk_digests);
	assert_ptr_not_equal(out.u.update_ready.chunk_digests, chunks);
	assert_memory_equal(out.u.update_ready.chunk_digests, chunks, sizeof(chunks));
	assert_true(out.u.update_ready.train_loss == 0.3125);
	assert_true(out.u.update_ready.train_accuracy == 1.0);
	assert_true(out.u.update_ready.seconds == 12.75);
	tally_msg_clear(&out);
	assert_int_equal(out.type, TALLY_MSG_NONE);
	assert_null(out.u.update_ready.chunk_digests);
	tally_msg_clear(&out); /* clearing twice is fine */
}

static void test_type_names_and_bad_type(void **state)
{
	tally_msg m;
	uint8_t *buf = NULL;
	size_t len = 0;

	assert_string_equal(tally_msg_type_name(TALLY_MSG_HELLO), "hello");
	assert_string_equal(tally_msg_type_name(TALLY_MSG_UPDATE_READY), "update_ready");
	assert_string_equal(tally_msg_type_name(TALLY_MSG_BYE), "bye");
	assert_string_equal(tally_msg_type_name((tally_msg_type)99), "unknown");
	memset(&m, 0, sizeof(m));
	assert_int_equal(tally_msg_encode(&m, &buf, &len), TALLY_EINVAL);
	m.type = (tally_msg_type)99;
	assert_int_equal(tally_msg_encode(&m, &buf, &len), TALLY_EINVAL);
	assert_null(buf);
}

/* The header promises TALLY_EINVAL for a message that would not decode. */
static void test_encode_refuses_what_would_not_decode(void **state)
{
	const tally_msg bad[2] = {{.type = TALLY_MSG_HELLO, .u.hello = {"bad name", 1}},
				  {.type = TALLY_MSG_WELCOME} /* heartbeat 0 */};

	for (int i = 0; i < 2; i++) {
		uint8_t *buf = NULL;
		size_t len = 0;
		int rc = tally_msg_encode(&bad[i], &buf, &len);

		free(buf);
		if (rc != TALLY_EINVAL)
			fail_msg("encoding a %s that cannot decode gave %d", tally_msg_type_name(bad[i].type), rc);
	}
}

/* ---- malformed envelopes ---- */

/* A valid envelope of any type, built directly with protobuf-c, for tests to break. */
typedef struct raw {
	Tally__Envelope env;
	Tally__Hello hello;
	Tally__Welcome welcome;
	Tally__Heartbeat hb;
	Tally__RoundStart rs;
	Tally__TrainConfig tc;
	Tally__ChunkRef cr;
	Tally__UpdateReady ur;
	Tally__Metrics mt;
	Tally__RoundEnd re;
	Tally__Refusal rf;
	Tally__Bye bye;
	uint8_t digest[40];
	ProtobufCBinaryData chunk_list[3];
	char text[2 * TALLY_ARCH_MAX];
} raw;

static void raw_init(raw *r, Tally__Envelope__BodyCase body)
{
	memset(r, 0, sizeof(*r));
	r->env = (Tally__Envelope)TALLY__ENVELOPE__INIT;
	r->hello = (Tally__Hello)TALLY__HELLO__INIT;
	r->welcome = (Tally__Welcome)TALLY__WELCOME__INIT;
	r->hb = (Tally__Heartbeat)TALLY__HEARTBEAT__INIT;
	r->rs = (Tally__RoundStart)TALLY__ROUND_START__INIT;
	r->tc = (Tally__TrainConfig)TALLY__TRAIN_CONFIG__INIT;
	r->cr = (Tally__ChunkRef)TALLY__CHUNK_REF__INIT;
	r->ur = (Tally__UpdateReady)TALLY__UPDATE_READY__INIT;
	r->mt = (Tally__Metrics)TALLY__METRICS__INIT;
	r->re = (Tally__RoundEnd)TALLY__ROUND_END__INIT;
	r->rf = (Tally__Refusal)TALLY__REFUSAL__INIT;
	r->bye = (Tally__Bye)TALLY__BYE__INIT;
	memset(r->digest, 0x11, sizeof(r->digest));
	strcpy(r->text, "ok");
	r->env.version = TALLY_PROTOCOL_VERSION, r->env.run_id = "run-1", r->env.round = 5;
	r->hello.name = "w1", r->hello.examples = 10;
	r->welcome.heartbeat_ms = 500, r->welcome.patience_ms = 3000;
	r->hb.seq = 77;
	r->rs.arch = "mlp:4-2", r->rs.n_params = 10, r->rs.chunk_floats = 4, r->rs.train = &r->tc;
	r->rs.model_digest = (ProtobufCBinaryData){32, r->digest};
	r->tc.epochs = 1, r->tc.batch_size = 8, r->tc.lr = 0.1f;
	r->ur.examples = 10, r->ur.n_params = 10, r->ur.metrics = &r->mt;
	r->ur.digest = (ProtobufCBinaryData){32, r->digest};
	for (int i = 0; i < 3; i++)
		r->chunk_list[i] = (ProtobufCBinaryData){32, r->digest};
	r->ur.n_chunk_digests = 3, r->ur.chunk_digests = r->chunk_list;
	r->mt.train_loss = 0.5, r->mt.train_accuracy = 0.75, r->mt.seconds = 1;
	r->re.reason = r->rf.reason = r->bye.reason = r->text;
	r->env.body_case = body;
	switch (body) {
	case TALLY__ENVELOPE__BODY_HELLO: r->env.hello = &r->hello; break;
	case TALLY__ENVELOPE__BODY_WELCOME: r->env.welcome = &r->welcome; break;
	case TALLY__ENVELOPE__BODY_HEARTBEAT: r->env.heartbeat = &r->hb; break;
	case TALLY__ENVELOPE__BODY_ROUND_START: r->env.round_start = &r->rs; break;
	case TALLY__ENVELOPE__BODY_MODEL_CHUNK: r->env.model_chunk = &r->cr; break;
	case TALLY__ENVELOPE__BODY_CHUNK_REQUEST: r->env.chunk_request = &r->cr; break;
	case TALLY__ENVELOPE__BODY_UPDATE_CHUNK: r->env.update_chunk = &r->cr; break;
	case TALLY__ENVELOPE__BODY_UPDATE_READY: r->env.update_ready = &r->ur; break;
	case TALLY__ENVELOPE__BODY_ROUND_END: r->env.round_end = &r->re; break;
	case TALLY__ENVELOPE__BODY_REFUSAL: r->env.refusal = &r->rf; break;
	case TALLY__ENVELOPE__BODY_BYE: r->env.bye = &r->bye; break;
	default: break;
	}
}

/* Decodes buf; it must fail with code, a message containing needle, and leave *out zeroed. */
static void expect_refused_bytes(const uint8_t *buf, size_t len, int code, const char *needle)
{
	static const tally_msg zero;
	tally_msg out;
	int rc;

	memset(&out, 0xa5, sizeof(out));
	tally_err_clear();
	rc = tally_msg_decode(&out, buf, len);
	if (rc != code || (needle && !strstr(tally_errmsg(), needle)))
		fail_msg("decode of %zu bytes: got %d (%s) '%s'; wanted %d naming '%s'", len, rc,
			 tally_strerror(rc), tally_errmsg(), code, needle ? needle : "");
	assert_memory_equal(&out, &zero, sizeof(out));
}

/* Packs r and decodes it: ok or refused with code and needle. */
static void decode_raw(const raw *r, int code, const char *needle)
{
	uint8_t buf[4096]; /* on the stack, so that a failed assertion leaks nothing */
	size_t len = tally__envelope__get_packed_size(&r->env);
	tally_msg out;
	int rc;

	assert_true(len <= sizeof(buf));
	tally__envelope__pack(&r->env, buf);
	if (code) {
		expect_refused_bytes(buf, len, code, needle);
		return;
	}
	rc = tally_msg_decode(&out, buf, len);
	if (rc)
		fail_msg("valid envelope refused: %d %s", rc, tally_errmsg());
	tally_msg_clear(&out);
}

/* A valid envelope with body B (RS, UR, ...), changed by the statement, must decode to code. */
#define CHECK(B, stmt, code, needle)                                                              \
	do {                                                                                        \
		raw r_, *r = &r_;                                                                   \
		raw_init(r, TALLY__ENVELOPE__BODY_##B);                                             \
		stmt;                                                                               \
		decode_raw(r, code, needle);                                                        \
	} while (0)
#define REFUSE(B, stmt, needle) CHECK(B, stmt, TALLY_EFORMAT, needle)
#define ACCEPT(B, stmt) CHECK(B, stmt, 0, NULL)

static void test_every_valid_raw_body_decodes(void **state)
{
	raw r;

	for (int b = TALLY__ENVELOPE__BODY_HELLO; b <= TALLY__ENVELOPE__BODY_BYE; b++) {
		raw_init(&r, (Tally__Envelope__BodyCase)b);
		decode_raw(&r, 0, NULL);
	}
}

static void test_garbage(void **state)
{
	static const uint8_t ff[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				       0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	static const uint8_t bad_wire_type[2] = {0x0f, 0x00}; /* field 1, wire type 7 */
	uint64_t s = 12345;
	uint8_t buf[97];
	raw r;

	expect_refused_bytes(ff, sizeof(ff), TALLY_EFORMAT, "parse");
	expect_refused_bytes(bad_wire_type, sizeof(bad_wire_type), TALLY_EFORMAT, "parse");
	for (int round = 0; round < 200; round++) {
		static const tally_msg zero;
		tally_msg out;
		int rc;

		for (size_t i = 0; i < sizeof(buf); i++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			buf[i] = (uint8_t)(s >> 56);
		}
		memset(&out, 0xa5, sizeof(out));
		rc = tally_msg_decode(&out, buf, 1 + (size_t)round % sizeof(buf));
		if (rc == 0) {
			tally_msg_clear(&out);
			continue;
		}
		assert_true(rc == TALLY_EFORMAT || rc == TALLY_EVERSION);
		assert_true(tally_errmsg()[0] != '\0');
		assert_memory_equal(&out, &zero, sizeof(out));
	}
	/* Version 1 and no body */
	raw_init(&r, TALLY__ENVELOPE__BODY__NOT_SET);
	decode_raw(&r, TALLY_EFORMAT, "body");
}

/* An empty frame parses as an envelope with nothing in it: no version field, no body. It is
 * malformed, not a message from another version of the protocol. */
static void test_empty_buffer(void **state)
{
	expect_refused_bytes((const uint8_t *)"", 0, TALLY_EFORMAT, NULL);
}

static void test_truncated(void **state)
{
	tally_digest chunks[3];
	tally_msg m;
	uint8_t *buf = NULL;
	size_t len = 0;

	memset(&m, 0, sizeof(m));
	m.type = TALLY_MSG_UPDATE_READY;
	strcpy(m.run_id, "run-1");
	m.round = 300;
	m.u.update_ready.examples = 5;
	m.u.update_ready.n_params = 9;
	m.u.update_ready.n_chunks = 3;
	m.u.update_ready.chunk_digests = chunks;
	m.u.update_ready.train_loss = 1;
	memset(chunks, 0x42, sizeof(chunks));
	assert_int_equal(tally_msg_encode(&m, &buf, &len), 0);
	assert_true(len > 100);
	/* Every proper prefix (past the version field) is refused as malformed */
	for (size_t cut = 1; cut < len; cut++)
		expect_refused_bytes(buf, cut, TALLY_EFORMAT, NULL);
	free(buf);
}

static void test_wrong_version(void **state)
{
	CHECK(HELLO, r->env.version = TALLY_PROTOCOL_VERSION + 1, TALLY_EVERSION, "version");
	CHECK(UPDATE_READY, r->env.version = UINT32_MAX, TALLY_EVERSION, "version");
}

/* Appends an unknown length-delimited field 100 to pad an encoded hello to total bytes. */
static uint8_t *padded_hello(size_t total)
{
	raw r;
	size_t base, pad;
	uint8_t *buf;

	raw_init(&r, TALLY__ENVELOPE__BODY_HELLO);
	base = tally__envelope__get_packed_size(&r.env);
	buf = malloc(total);
	assert_non_null(buf);
	tally__envelope__pack(&r.env, buf);
	/* tag (100 << 3 | 2) = 0x322 as a varint: a2 06; then a 3-byte varint length */
	pad = total - base - 5;
	buf[base] = 0xa2, buf[base + 1] = 0x06;
	buf[base + 2] = (uint8_t)(0x80 | (pad & 0x7f));
	buf[base + 3] = (uint8_t)(0x80 | ((pad >> 7) & 0x7f));
	buf[base + 4] = (uint8_t)(pad >> 14);
	memset(buf + base + 5, 'p', pad);
	return buf;
}

static void test_oversized(void **state)
{
	uint8_t *buf = padded_hello(TALLY_ENVELOPE_MAX);
	uint8_t *big = calloc(1, TALLY_ENVELOPE_MAX + 1);
	tally_msg out;

	/* exactly at the limit: fine */
	assert_int_equal(tally_msg_decode(&out, buf, TALLY_ENVELOPE_MAX), 0);
	assert_string_equal(out.u.hello.name, "w1");
	tally_msg_clear(&out);
	free(buf);
	buf = padded_hello(TALLY_ENVELOPE_MAX + 1);
	expect_refused_bytes(buf, TALLY_ENVELOPE_MAX + 1, TALLY_ETOOBIG, "limit");
	assert_non_null(big);
	expect_refused_bytes(big, TALLY_ENVELOPE_MAX + 1, TALLY_ETOOBIG, NULL);
	expect_refused_bytes(big, SIZE_MAX, TALLY_ETOOBIG, NULL); /* size checked before reading */
	free(big);
	free(buf);
}

static void test_bad_identifiers(void **state)
{
	static const char *const bad[] = {"bad name", "a/b", "caf\xc3\xa9", "semi;colon", "tab\there",
					  "quote\"", "%s", "\x7f"};
	char name63[TALLY_NAME_MAX], name64[TALLY_NAME_MAX + 1], arch[TALLY_ARCH_MAX + 1];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		REFUSE(HELLO, r->hello.name = (char *)bad[i], "hello.name");
		REFUSE(HEARTBEAT, r->env.run_id = (char *)bad[i], "run_id");
		REFUSE(ROUND_START, r->rs.arch = (char *)bad[i], "round_start.arch");
	}
	REFUSE(HELLO, r->hello.name = "", "hello.name");
	REFUSE(ROUND_START, r->rs.arch = "", "round_start.arch");
	ACCEPT(HELLO, r->env.run_id = ""); /* Hello comes before the run is known */
	memset(name63, 'n', sizeof(name63));
	name63[TALLY_NAME_MAX - 1] = '\0';
	memset(name64, 'n', sizeof(name64));
	name64[TALLY_NAME_MAX] = '\0';
	ACCEPT(HELLO, (r->hello.name = name63, r->env.run_id = name63)); /* the longest */
	REFUSE(HELLO, r->env.run_id = name64, "run_id");
	REFUSE(HELLO, r->hello.name = name64, "hello.name");
	memset(arch, 'a', sizeof(arch));
	arch[TALLY_ARCH_MAX] = '\0';
	REFUSE(ROUND_START, r->rs.arch = arch, "round_start.arch");
	arch[TALLY_ARCH_MAX - 1] = '\0';
	ACCEPT(ROUND_START, r->rs.arch = arch);
}

static void test_bad_digests(void **state)
{
	REFUSE(ROUND_START, r->rs.model_digest.len = 31, "round_start.model_digest");
	REFUSE(ROUND_START, r->rs.model_digest.len = 33, "round_start.model_digest");
	REFUSE(ROUND_START, r->rs.model_digest.len = 0, "round_start.model_digest");
	REFUSE(UPDATE_READY, r->ur.digest.len = 31, "update_ready.digest");
	/* after the chunk list was allocated: it must not leak */
	REFUSE(UPDATE_READY, r->chunk_list[2].len = 31, "update_ready.chunk_digests");
	REFUSE(UPDATE_READY, r->chunk_list[0].len = 40, "update_ready.chunk_digests");
}

static void test_bad_update_ready(void **state)
{
	static const double metrics[][3] = { /* loss, accuracy, seconds */
		{NAN, 0.5, 1}, {INFINITY, 0.5, 1}, {-0.5, 0.5, 1}, {0.5, 1.0000001, 1}, {0.5, NAN, 1},
		{0.5, -0.1, 1}, {0.5, 0.5, -1}, {0.5, 0.5, NAN}, {0.5, 0.5, INFINITY},
	};

	REFUSE(UPDATE_READY, r->ur.examples = 0, "example");
	REFUSE(UPDATE_READY, r->ur.n_params = 0, "parameters");
	REFUSE(UPDATE_READY, r->ur.n_chunk_digests = 0, "chunks");
	REFUSE(UPDATE_READY, r->ur.metrics = NULL, "metrics");
	for (size_t i = 0; i < sizeof(metrics) / sizeof(metrics[0]); i++)
		REFUSE(UPDATE_READY, (r->mt.train_loss = metrics[i][0], r->mt.train_accuracy = metrics[i][1],
				      r->mt.seconds = metrics[i][2]), "metrics");
	/* the edges are fine */
	ACCEPT(UPDATE_READY, (r->mt.train_loss = 0, r->mt.train_accuracy = 1, r->mt.seconds = 0));
	ACCEPT(UPDATE_READY, r->mt.train_accuracy = 0);
}

static void test_bad_data_path_fields(void **state)
{
	static uint8_t tok[TALLY_DATA_TOKEN + 1];

	ACCEPT(WELCOME, (r->welcome.data_port = 7071, r->welcome.data_token = (ProtobufCBinaryData){16, tok}));
	REFUSE(WELCOME, (r->welcome.data_port = 65536, r->welcome.data_token = (ProtobufCBinaryData){16, tok}),
	       "data port 65536");
	REFUSE(WELCOME, r->welcome.data_port = 7071, "data token of 0 bytes");
	REFUSE(WELCOME, r->welcome.data_token = ((ProtobufCBinaryData){16, tok}), "data token of 16 bytes, expected 0");
	REFUSE(WELCOME, (r->welcome.data_port = 7071, r->welcome.data_token = (ProtobufCBinaryData){17, tok}),
	       "data token of 17 bytes");
	ACCEPT(UPDATE_CHUNK, r->cr.token = ((ProtobufCBinaryData){16, tok}));
	REFUSE(UPDATE_CHUNK, r->cr.token = ((ProtobufCBinaryData){5, tok}), "data token of 5 bytes");
	REFUSE(MODEL_CHUNK, r->cr.token = ((ProtobufCBinaryData){16, tok}), "model_chunk: carries a data token");
	REFUSE(MODEL_CHUNK, r->cr.curve_only = true, "model_chunk: carries a data token or a path choice");
	REFUSE(UPDATE_CHUNK, r->cr.curve_only = true, "update_chunk: carries a path choice");
	ACCEPT(CHUNK_REQUEST, r->cr.curve_only = true);
	REFUSE(CHUNK_REQUEST, r->cr.token = ((ProtobufCBinaryData){16, tok}), "chunk_request: carries a data token");
}

static void test_chunk_index_range(void **state)
{
	ACCEPT(MODEL_CHUNK, r->cr.index = TALLY_MAX_CHUNKS - 1);
	ACCEPT(CHUNK_REQUEST, r->cr.index = TALLY_MAX_CHUNKS - 1);
	ACCEPT(UPDATE_CHUNK, r->cr.index = TALLY_MAX_CHUNKS - 1);
	REFUSE(MODEL_CHUNK, r->cr.index = TALLY_MAX_CHUNKS, "chunk index");
	REFUSE(CHUNK_REQUEST, r->cr.index = TALLY_MAX_CHUNKS, "chunk index");
	REFUSE(UPDATE_CHUNK, r->cr.index = TALLY_MAX_CHUNKS, "chunk index");
	REFUSE(MODEL_CHUNK, r->cr.index = UINT64_MAX, "chunk index");
	REFUSE(UPDATE_CHUNK, r->cr.index = UINT64_MAX, "chunk index");
}

static void test_bad_round_start_sizes(void **state)
{
	REFUSE(ROUND_START, r->rs.chunk_floats = 0, "chunks");
	REFUSE(ROUND_START, r->rs.n_params = 0, "parameters");
	REFUSE(ROUND_START, r->rs.chunk_floats = TALLY_CHUNK_FLOATS + 1, "chunks");
	/* one chunk too many, and just enough */
	REFUSE(ROUND_START, (r->rs.chunk_floats = 1, r->rs.n_params = TALLY_MAX_CHUNKS + 1), "parameters");
	ACCEPT(ROUND_START, (r->rs.chunk_floats = 1, r->rs.n_params = TALLY_MAX_CHUNKS));
	REFUSE(ROUND_START, (r->rs.chunk_floats = 1, r->rs.n_params = UINT64_MAX), "parameters");
	REFUSE(ROUND_START, r->rs.train = NULL, "train");
}

/* A parameter count near 2^64 must not wrap the chunk count back into range. */
static void test_round_start_huge_n_params(void **state)
{
	REFUSE(ROUND_START, (r->rs.chunk_floats = 2, r->rs.n_params = UINT64_MAX), "parameters");
	REFUSE(ROUND_START, (r->rs.chunk_floats = TALLY_CHUNK_FLOATS, r->rs.n_params = UINT64_MAX - 5),
	       "parameters");
}

/* Invalid train options, each with the name its message must carry. */
static const struct bad_train {
	const char *field;
	uint32_t epochs, batch_size;
	float lr, momentum, weight_decay, prox_mu;
} bad_train[] = {
	{"lr", 1, 8, 0, 0, 0, 0},
	{"lr", 1, 8, -0.1f, 0, 0, 0},
	{"lr", 1, 8, NAN, 0, 0, 0},
	{"batch_size", 1, 0, 0.1f, 0, 0, 0},
	{"batch_size", 1, TALLY_TRAIN_MAX_BATCH + 1, 0.1f, 0, 0, 0},
	{"epochs", 0, 8, 0.1f, 0, 0, 0},
	{"momentum", 1, 8, 0.1f, 1, 0, 0},
	{"weight_decay", 1, 8, 0.1f, 0, -1, 0},
	{"prox_mu", 1, 8, 0.1f, 0, 0, INFINITY},
};

static void set_train(raw *r, const struct bad_train *b)
{
	r->tc.epochs = b->epochs, r->tc.batch_size = b->batch_size, r->tc.lr = b->lr;
	r->tc.momentum = b->momentum, r->tc.weight_decay = b->weight_decay, r->tc.prox_mu = b->prox_mu;
}

static void test_bad_train_options_refused(void **state)
{
	for (size_t i = 0; i < sizeof(bad_train) / sizeof(bad_train[0]); i++)
		REFUSE(ROUND_START, set_train(r, &bad_train[i]), "round_start");
	ACCEPT(ROUND_START, (r->tc.momentum = 0.99f, r->tc.prox_mu = 1, r->tc.weight_decay = 1));
}

/* The message of a refused train option names the option. */
static void test_bad_train_options_name_field(void **state)
{
	for (size_t i = 0; i < sizeof(bad_train) / sizeof(bad_train[0]); i++)
		REFUSE(ROUND_START, set_train(r, &bad_train[i]), bad_train[i].field);
}

static void test_bad_welcome(void **state)
{
	REFUSE(WELCOME, (r->welcome.heartbeat_ms = 1000, r->welcome.patience_ms = 999), "patience");
	REFUSE(WELCOME, (r->welcome.heartbeat_ms = 0, r->welcome.patience_ms = 0), "heartbeat");
	REFUSE(WELCOME, r->welcome.heartbeat_ms = 0, "heartbeat");
	ACCEPT(WELCOME, (r->welcome.heartbeat_ms = 1000, r->welcome.patience_ms = 1000));
}

static void test_bad_reasons(void **state)
{
	static const char *const bad[] = {"line\nbreak", "\x1b[31mred", "del\x7f", "tab\t", "cr\r", "\x01"};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		REFUSE(ROUND_END, strcpy(r->text, bad[i]), "round_end.reason");
		REFUSE(REFUSAL, strcpy(r->text, bad[i]), "refusal.reason");
		REFUSE(BYE, strcpy(r->text, bad[i]), "bye.reason");
	}
	/* TALLY_TEXT_MAX bytes is one too many; one less and none are fine */
	REFUSE(ROUND_END, memset(r->text, 'r', TALLY_TEXT_MAX), "round_end.reason");
	REFUSE(REFUSAL, memset(r->text, 'r', TALLY_TEXT_MAX), "refusal.reason");
	REFUSE(BYE, memset(r->text, 'r', TALLY_TEXT_MAX), "bye.reason");
	ACCEPT(BYE, memset(r->text, 'r', TALLY_TEXT_MAX - 1));
	ACCEPT(REFUSAL, r->text[0] = '\0');
	ACCEPT(ROUND_END, strcpy(r->text, "caf\xc3\xa9 ok"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_simple_types),
		cmocka_unit_test(test_round_trip_chunk_refs),
		cmocka_unit_test(test_round_trip_data_path),
		cmocka_unit_test(test_data_token),
		cmocka_unit_test(test_bad_data_path_fields),
		cmocka_unit_test(test_round_trip_round_start),
		cmocka_unit_test(test_round_trip_update_ready),
		cmocka_unit_test(test_type_names_and_bad_type),
		cmocka_unit_test(test_encode_refuses_what_would_not_decode),
		cmocka_unit_test(test_every_valid_raw_body_decodes),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_empty_buffer),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_wrong_version),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_bad_identifiers),
		cmocka_unit_test(test_bad_digests),
		cmocka_unit_test(test_bad_update_ready),
		cmocka_unit_test(test_chunk_index_range),
		cmocka_unit_test(test_bad_round_start_sizes),
		cmocka_unit_test(test_round_start_huge_n_params),
		cmocka_unit_test(test_bad_train_options_refused),
		cmocka_unit_test(test_bad_train_options_name_field),
		cmocka_unit_test(test_bad_welcome),
		cmocka_unit_test(test_bad_reasons),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
