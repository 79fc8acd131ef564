/*
 * Encoding and validating decoding of tally's control envelopes. The only file that includes the
 * protobuf-c generated code: everything else sees tally_msg.
 */
#include "tally/wire.h"
#include "tally/error.h"

#include "tally.pb-c.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[] = {
	"none", "hello", "welcome", "heartbeat", "round_start", "model_chunk", "update_ready",
	"chunk_request", "update_chunk", "round_end", "refusal", "bye",
};

const char *tally_msg_type_name(tally_msg_type t)
{
	if ((unsigned)t < sizeof(type_names) / sizeof(type_names[0]))
		return type_names[t];
	return "unknown";
}

/* ---- encoding ---- */

static ProtobufCBinaryData bin(const uint8_t *p, size_t n)
{
	ProtobufCBinaryData b = {n, (uint8_t *)p};
	return b;
}

static void encode_round_start(const tally_msg *m, Tally__RoundStart *rs, Tally__TrainConfig *tc)
{
	const tally_train_opts *t = &m->u.round_start.train;

	rs->arch = (char *)m->u.round_start.arch;
	rs->n_params = m->u.round_start.n_params;
	rs->model_digest = bin(m->u.round_start.model_digest, TALLY_DIGEST_BYTES);
	rs->chunk_floats = m->u.round_start.chunk_floats;
	rs->deadline_ms = m->u.round_start.deadline_ms;
	tc->epochs = t->epochs;
	tc->batch_size = t->batch_size;
	tc->lr = t->lr;
	tc->momentum = t->momentum;
	tc->weight_decay = t->weight_decay;
	tc->prox_mu = t->prox_mu;
	tc->seed = t->seed;
	rs->train = tc;
}

static int encode_update_ready(const tally_msg *m, Tally__UpdateReady *ur, Tally__Metrics *mt,
			       ProtobufCBinaryData **list)
{
	size_t n = m->u.update_ready.n_chunks;

	*list = calloc(n ? n : 1, sizeof(**list));
	if (!*list)
		return TALLY_ENOMEM;
	for (size_t i = 0; i < n; i++)
		(*list)[i] = bin(m->u.update_ready.chunk_digests[i], TALLY_DIGEST_BYTES);
	ur->examples = m->u.update_ready.examples;
	ur->n_params = m->u.update_ready.n_params;
	ur->digest = bin(m->u.update_ready.digest, TALLY_DIGEST_BYTES);
	ur->n_chunk_digests = n;
	ur->chunk_digests = *list;
	mt->train_loss = m->u.update_ready.train_loss;
	mt->train_accuracy = m->u.update_ready.train_accuracy;
	mt->seconds = m->u.update_ready.seconds;
	ur->metrics = mt;
	return 0;
}

static int self_check(uint8_t **buf, size_t len);

int tally_msg_encode(const tally_msg *m, uint8_t **buf, size_t *len)
{
	Tally__Envelope env = TALLY__ENVELOPE__INIT;
	Tally__Hello hello = TALLY__HELLO__INIT;
	Tally__Welcome welcome = TALLY__WELCOME__INIT;
	Tally__Heartbeat hb = TALLY__HEARTBEAT__INIT;
	Tally__RoundStart rs = TALLY__ROUND_START__INIT;
	Tally__TrainConfig tc = TALLY__TRAIN_CONFIG__INIT;
	Tally__ChunkRef cr = TALLY__CHUNK_REF__INIT;
	Tally__UpdateReady ur = TALLY__UPDATE_READY__INIT;
	Tally__Metrics mt = TALLY__METRICS__INIT;
	Tally__RoundEnd re = TALLY__ROUND_END__INIT;
	Tally__Refusal rf = TALLY__REFUSAL__INIT;
	Tally__Bye bye = TALLY__BYE__INIT;
	ProtobufCBinaryData *list = NULL;
	int rc = 0;

	env.version = TALLY_PROTOCOL_VERSION;
	env.run_id = (char *)m->run_id;
	env.round = m->round;
	cr.index = m->u.chunk.index;
	switch (m->type) {
	case TALLY_MSG_HELLO:
		hello.name = (char *)m->u.hello.name;
		hello.examples = m->u.hello.examples;
		env.body_case = TALLY__ENVELOPE__BODY_HELLO;
		env.hello = &hello;
		break;
	case TALLY_MSG_WELCOME:
		welcome.heartbeat_ms = m->u.welcome.heartbeat_ms;
		welcome.patience_ms = m->u.welcome.patience_ms;
		env.body_case = TALLY__ENVELOPE__BODY_WELCOME;
		env.welcome = &welcome;
		break;
	case TALLY_MSG_HEARTBEAT:
		hb.seq = m->u.heartbeat.seq;
		env.body_case = TALLY__ENVELOPE__BODY_HEARTBEAT;
		env.heartbeat = &hb;
		break;
	case TALLY_MSG_ROUND_START:
		encode_round_start(m, &rs, &tc);
		env.body_case = TALLY__ENVELOPE__BODY_ROUND_START;
		env.round_start = &rs;
		break;
	case TALLY_MSG_MODEL_CHUNK:
		env.body_case = TALLY__ENVELOPE__BODY_MODEL_CHUNK;
		env.model_chunk = &cr;
		break;
	case TALLY_MSG_CHUNK_REQUEST:
		env.body_case = TALLY__ENVELOPE__BODY_CHUNK_REQUEST;
		env.chunk_request = &cr;
		break;
	case TALLY_MSG_UPDATE_CHUNK:
		env.body_case = TALLY__ENVELOPE__BODY_UPDATE_CHUNK;
		env.update_chunk = &cr;
		break;
	case TALLY_MSG_UPDATE_READY:
		rc = encode_update_ready(m, &ur, &mt, &list);
		if (rc)
			return rc;
		env.body_case = TALLY__ENVELOPE__BODY_UPDATE_READY;
		env.update_ready = &ur;
		break;
	case TALLY_MSG_ROUND_END:
		re.accepted = m->u.round_end.accepted;
		re.reason = (char *)m->u.round_end.reason;
		env.body_case = TALLY__ENVELOPE__BODY_ROUND_END;
		env.round_end = &re;
		break;
	case TALLY_MSG_REFUSAL:
		rf.reason = (char *)m->u.text.reason;
		env.body_case = TALLY__ENVELOPE__BODY_REFUSAL;
		env.refusal = &rf;
		break;
	case TALLY_MSG_BYE:
		bye.reason = (char *)m->u.text.reason;
		bye.final = m->u.text.final;
		env.body_case = TALLY__ENVELOPE__BODY_BYE;
		env.bye = &bye;
		break;
	default:
		return tally_err(TALLY_EINVAL, "cannot encode message type %d", (int)m->type);
	}
	*len = tally__envelope__get_packed_size(&env);
	*buf = malloc(*len ? *len : 1);
	if (!*buf)
		rc = TALLY_ENOMEM;
	else
		tally__envelope__pack(&env, *buf);
	free(list);
	return rc ? rc : self_check(buf, *len);
}

/* ---- decoding ---- */

/* Copies an identifier (names, run ids): 1..max-1 characters from [A-Za-z0-9._:-]. */
static int copy_ident(char *dst, size_t max, const char *src, const char *field, bool may_be_empty)
{
	size_t n = src ? strlen(src) : 0;

	if (n == 0 && may_be_empty) {
		dst[0] = '\0';
		return 0;
	}
	if (n == 0 || n >= max)
		return tally_err(TALLY_EFORMAT, "field %s must have 1 to %zu characters", field, max - 1);
	for (size_t i = 0; i < n; i++) {
		char c = src[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-' || c == ':'))
			return tally_err(TALLY_EFORMAT, "field %s has a character outside [A-Za-z0-9._:-]", field);
	}
	memcpy(dst, src, n + 1);
	return 0;
}

/* Copies free text (reasons): printable ASCII and UTF-8 bytes, no control characters. */
static int copy_text(char *dst, size_t max, const char *src, const char *field)
{
	size_t n = src ? strlen(src) : 0;

	if (n >= max)
		return tally_err(TALLY_EFORMAT, "field %s is longer than %zu bytes", field, max - 1);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)src[i] < 0x20 || src[i] == 0x7f)
			return tally_err(TALLY_EFORMAT, "field %s holds a control character", field);
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
	return 0;
}

static int copy_digest(tally_digest dst, ProtobufCBinaryData b, const char *field)
{
	if (b.len != TALLY_DIGEST_BYTES)
		return tally_err(TALLY_EFORMAT, "field %s is %zu bytes, not %d", field, b.len, TALLY_DIGEST_BYTES);
	memcpy(dst, b.data, TALLY_DIGEST_BYTES);
	return 0;
}

static bool finite_nonneg(double x)
{
	return isfinite(x) && x >= 0;
}

static int decode_round_start(tally_msg *out, const Tally__RoundStart *rs)
{
	tally_train_opts *t = &out->u.round_start.train;
	int rc;

	if (!rs->train)
		return tally_err(TALLY_EFORMAT, "round_start has no train config");
	rc = copy_ident(out->u.round_start.arch, TALLY_ARCH_MAX, rs->arch, "round_start.arch", false);
	if (rc)
		return rc;
	rc = copy_digest(out->u.round_start.model_digest, rs->model_digest, "round_start.model_digest");
	if (rc)
		return rc;
	if (rs->n_params == 0 || rs->chunk_floats == 0 || rs->chunk_floats > TALLY_CHUNK_FLOATS ||
	    tally_chunk_count(rs->n_params, rs->chunk_floats) > TALLY_MAX_CHUNKS)
		return tally_err(TALLY_EFORMAT, "round_start: %llu parameters in chunks of %u floats is out of range",
				 (unsigned long long)rs->n_params, rs->chunk_floats);
	out->u.round_start.n_params = rs->n_params;
	out->u.round_start.chunk_floats = rs->chunk_floats;
	out->u.round_start.deadline_ms = rs->deadline_ms;
	t->epochs = rs->train->epochs;
	t->batch_size = rs->train->batch_size;
	t->lr = rs->train->lr;
	t->momentum = rs->train->momentum;
	t->weight_decay = rs->train->weight_decay;
	t->prox_mu = rs->train->prox_mu;
	t->seed = rs->train->seed;
	if (tally_train_opts_check(t))
		return tally_err(TALLY_EFORMAT, "round_start: %s", tally_errmsg());
	return 0;
}

static int decode_update_ready(tally_msg *out, const Tally__UpdateReady *ur)
{
	size_t n = ur->n_chunk_digests;
	int rc;

	if (!ur->metrics)
		return tally_err(TALLY_EFORMAT, "update_ready has no metrics");
	if (ur->examples == 0)
		return tally_err(TALLY_EFORMAT, "update_ready: an update must weigh at least one example");
	if (ur->n_params == 0 || n == 0 || n > TALLY_MAX_CHUNKS)
		return tally_err(TALLY_EFORMAT, "update_ready: %llu parameters in %zu chunks is out of range",
				 (unsigned long long)ur->n_params, n);
	if (!finite_nonneg(ur->metrics->train_loss) || !finite_nonneg(ur->metrics->train_accuracy) ||
	    ur->metrics->train_accuracy > 1 || !finite_nonneg(ur->metrics->seconds))
		return tally_err(TALLY_EFORMAT, "update_ready: metrics out of range or not finite");
	rc = copy_digest(out->u.update_ready.digest, ur->digest, "update_ready.digest");
	if (rc)
		return rc;
	out->u.update_ready.chunk_digests = malloc(n * sizeof(tally_digest));
	if (!out->u.update_ready.chunk_digests)
		return TALLY_ENOMEM;
	out->u.update_ready.n_chunks = n;
	for (size_t i = 0; i < n; i++) {
		rc = copy_digest(out->u.update_ready.chunk_digests[i], ur->chunk_digests[i],
				 "update_ready.chunk_digests");
		if (rc)
			return rc;
	}
	out->u.update_ready.examples = ur->examples;
	out->u.update_ready.n_params = ur->n_params;
	out->u.update_ready.train_loss = ur->metrics->train_loss;
	out->u.update_ready.train_accuracy = ur->metrics->train_accuracy;
	out->u.update_ready.seconds = ur->metrics->seconds;
	return 0;
}

static int decode_body(tally_msg *out, const Tally__Envelope *e)
{
	switch (e->body_case) {
	case TALLY__ENVELOPE__BODY_HELLO:
		out->type = TALLY_MSG_HELLO;
		out->u.hello.examples = e->hello->examples;
		return copy_ident(out->u.hello.name, TALLY_NAME_MAX, e->hello->name, "hello.name", false);
	case TALLY__ENVELOPE__BODY_WELCOME:
		out->type = TALLY_MSG_WELCOME;
		out->u.welcome.heartbeat_ms = e->welcome->heartbeat_ms;
		out->u.welcome.patience_ms = e->welcome->patience_ms;
		if (e->welcome->heartbeat_ms == 0 || e->welcome->patience_ms < e->welcome->heartbeat_ms)
			return tally_err(TALLY_EFORMAT, "welcome: heartbeat %u ms and patience %u ms are inconsistent",
					 e->welcome->heartbeat_ms, e->welcome->patience_ms);
		return 0;
	case TALLY__ENVELOPE__BODY_HEARTBEAT:
		out->type = TALLY_MSG_HEARTBEAT;
		out->u.heartbeat.seq = e->heartbeat->seq;
		return 0;
	case TALLY__ENVELOPE__BODY_ROUND_START:
		out->type = TALLY_MSG_ROUND_START;
		return decode_round_start(out, e->round_start);
	case TALLY__ENVELOPE__BODY_MODEL_CHUNK:
		out->type = TALLY_MSG_MODEL_CHUNK;
		out->u.chunk.index = e->model_chunk->index;
		break;
	case TALLY__ENVELOPE__BODY_CHUNK_REQUEST:
		out->type = TALLY_MSG_CHUNK_REQUEST;
		out->u.chunk.index = e->chunk_request->index;
		break;
	case TALLY__ENVELOPE__BODY_UPDATE_CHUNK:
		out->type = TALLY_MSG_UPDATE_CHUNK;
		out->u.chunk.index = e->update_chunk->index;
		break;
	case TALLY__ENVELOPE__BODY_UPDATE_READY:
		out->type = TALLY_MSG_UPDATE_READY;
		return decode_update_ready(out, e->update_ready);
	case TALLY__ENVELOPE__BODY_ROUND_END:
		out->type = TALLY_MSG_ROUND_END;
		out->u.round_end.accepted = e->round_end->accepted;
		return copy_text(out->u.round_end.reason, TALLY_TEXT_MAX, e->round_end->reason, "round_end.reason");
	case TALLY__ENVELOPE__BODY_REFUSAL:
		out->type = TALLY_MSG_REFUSAL;
		return copy_text(out->u.text.reason, TALLY_TEXT_MAX, e->refusal->reason, "refusal.reason");
	case TALLY__ENVELOPE__BODY_BYE:
		out->type = TALLY_MSG_BYE;
		out->u.text.final = e->bye->final;
		return copy_text(out->u.text.reason, TALLY_TEXT_MAX, e->bye->reason, "bye.reason");
	default:
		return tally_err(TALLY_EFORMAT, "envelope has no known body");
	}
	if (out->u.chunk.index >= TALLY_MAX_CHUNKS)
		return tally_err(TALLY_EFORMAT, "chunk index %llu is out of range",
				 (unsigned long long)out->u.chunk.index);
	return 0;
}

int tally_msg_decode(tally_msg *out, const uint8_t *buf, size_t len)
{
	Tally__Envelope *e;
	int rc;

	memset(out, 0, sizeof(*out));
	if (len > TALLY_ENVELOPE_MAX)
		return tally_err(TALLY_ETOOBIG, "envelope of %zu bytes is over the limit of %u", len,
				 TALLY_ENVELOPE_MAX);
	e = tally__envelope__unpack(NULL, len, buf);
	if (!e)
		return tally_err(TALLY_EFORMAT, "envelope of %zu bytes does not parse as protobuf", len);
	if (e->body_case == TALLY__ENVELOPE__BODY__NOT_SET) {
		rc = tally_err(TALLY_EFORMAT, "envelope of %zu bytes has no body", len);
		goto out;
	}
	if (e->version != TALLY_PROTOCOL_VERSION) {
		rc = tally_err(TALLY_EVERSION, "protocol version %u is not the supported version %d",
			       e->version, TALLY_PROTOCOL_VERSION);
		goto out;
	}
	out->round = e->round;
	rc = copy_ident(out->run_id, sizeof(out->run_id), e->run_id, "run_id", true);
	if (rc == 0)
		rc = decode_body(out, e);
out:
	tally__envelope__free_unpacked(e, NULL);
	if (rc)
		tally_msg_clear(out);
	return rc;
}

void tally_msg_clear(tally_msg *m)
{
	if (m->type == TALLY_MSG_UPDATE_READY)
		free(m->u.update_ready.chunk_digests);
	memset(m, 0, sizeof(*m));
}

/* What we send must be what a peer accepts: decode our own encoding before it leaves. */
static int self_check(uint8_t **buf, size_t len)
{
	tally_msg probe;
	int rc = tally_msg_decode(&probe, *buf, len);

	tally_msg_clear(&probe);
	if (rc == 0)
		return 0;
	free(*buf);
	*buf = NULL;
	return tally_err(TALLY_EINVAL, "refusing to send a message a peer would refuse: %s", tally_errmsg());
}
