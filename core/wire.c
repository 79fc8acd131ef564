/*
 * Encoding and validating decoding of tally's control envelopes. The only file that includes the
 * protobuf-c generated code: everything else sees tally_msg.
 */
#include "tally/wire.h"
#include "tally/error.h"

#include "tally.pb-c.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[] = {
	"none", "hello", "welcome", "heartbeat", "round_start", "model_chunk", "update_ready",
	"chunk_request", "update_chunk", "round_end", "refusal", "bye", "advert", "key_list",
	"shares", "relay", "relay_ack", "unmask_request", "reveals",
};

/* Allocations of one encoding, freed together once it is packed. */
typedef struct arena {
	void *p[16];
	int n;
} arena;

static void *arena_alloc(arena *a, size_t count, size_t size)
{
	void *p;

	if (a->n == 16 || !(p = calloc(count ? count : 1, size)))
		return NULL;
	a->p[a->n++] = p;
	return p;
}

static void arena_free(arena *a)
{
	for (int i = 0; i < a->n; i++)
		free(a->p[i]);
	a->n = 0;
}

static int wire_encode_secagg(const tally_msg *m, Tally__Envelope *env, arena *a);
static int wire_encode_secagg_config(const tally_wire_secagg *w, Tally__RoundStart *rs, arena *a);
static int wire_decode_secagg(tally_msg *out, const Tally__Envelope *e);
static int wire_decode_secagg_config(tally_wire_secagg *out, const Tally__SecAggConfig *sc);
static void wire_clear_secagg(tally_msg *m);

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
	arena a = {0};
	int rc = 0;

	env.version = TALLY_PROTOCOL_VERSION;
	env.run_id = (char *)m->run_id;
	env.round = m->round;
	env.attempt = m->attempt;
	cr.index = m->u.chunk.index;
	cr.curve_only = m->type == TALLY_MSG_CHUNK_REQUEST && m->u.chunk.curve_only;
	if (m->type == TALLY_MSG_UPDATE_CHUNK && m->u.chunk.has_token) {
		cr.token.data = (uint8_t *)m->u.chunk.token;
		cr.token.len = TALLY_DATA_TOKEN;
	}
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
		welcome.data_port = m->u.welcome.data_port;
		if (m->u.welcome.data_port) {
			welcome.data_token.data = (uint8_t *)m->u.welcome.data_token;
			welcome.data_token.len = TALLY_DATA_TOKEN;
		}
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
		if (m->u.round_start.secure && (rc = wire_encode_secagg_config(&m->u.round_start.secagg, &rs, &a)))
			return rc;
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
		if ((rc = wire_encode_secagg(m, &env, &a))) {
			arena_free(&a);
			return rc;
		}
	}
	*len = tally__envelope__get_packed_size(&env);
	*buf = malloc(*len ? *len : 1);
	if (!*buf)
		rc = TALLY_ENOMEM;
	else
		tally__envelope__pack(&env, *buf);
	free(list);
	arena_free(&a);
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
	out->u.round_start.secure = rs->secagg != NULL;
	return rs->secagg ? wire_decode_secagg_config(&out->u.round_start.secagg, rs->secagg) : 0;
}

static int decode_update_ready(tally_msg *out, const Tally__UpdateReady *ur)
{
	size_t n = ur->n_chunk_digests;
	int rc;

	if (!ur->metrics)
		return tally_err(TALLY_EFORMAT, "update_ready has no metrics");
	if (ur->examples == 0 || ur->examples > TALLY_MAX_EXAMPLES)
		return tally_err(TALLY_EFORMAT, "update_ready: %llu examples is outside 1..2^32",
				 (unsigned long long)ur->examples);
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
		if (e->hello->examples > TALLY_MAX_EXAMPLES)
			return tally_err(TALLY_EFORMAT, "hello: %llu examples is over 2^32",
					 (unsigned long long)e->hello->examples);
		return copy_ident(out->u.hello.name, TALLY_NAME_MAX, e->hello->name, "hello.name", false);
	case TALLY__ENVELOPE__BODY_WELCOME:
		out->type = TALLY_MSG_WELCOME;
		out->u.welcome.heartbeat_ms = e->welcome->heartbeat_ms;
		out->u.welcome.patience_ms = e->welcome->patience_ms;
		if (e->welcome->heartbeat_ms == 0 || e->welcome->patience_ms < e->welcome->heartbeat_ms)
			return tally_err(TALLY_EFORMAT, "welcome: heartbeat %u ms and patience %u ms are inconsistent",
					 e->welcome->heartbeat_ms, e->welcome->patience_ms);
		if (e->welcome->data_port > 65535)
			return tally_err(TALLY_EFORMAT, "welcome: data port %u is not a TCP port", e->welcome->data_port);
		if (e->welcome->data_token.len != (e->welcome->data_port ? TALLY_DATA_TOKEN : 0))
			return tally_err(TALLY_EFORMAT, "welcome: data token of %zu bytes, expected %d",
					 e->welcome->data_token.len, e->welcome->data_port ? TALLY_DATA_TOKEN : 0);
		out->u.welcome.data_port = e->welcome->data_port;
		if (e->welcome->data_port)
			memcpy(out->u.welcome.data_token, e->welcome->data_token.data, TALLY_DATA_TOKEN);
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
		if (e->model_chunk->token.len || e->model_chunk->curve_only)
			return tally_err(TALLY_EFORMAT, "model_chunk: carries a data token or a path choice");
		break;
	case TALLY__ENVELOPE__BODY_CHUNK_REQUEST:
		out->type = TALLY_MSG_CHUNK_REQUEST;
		out->u.chunk.index = e->chunk_request->index;
		if (e->chunk_request->token.len)
			return tally_err(TALLY_EFORMAT, "chunk_request: carries a data token");
		out->u.chunk.curve_only = e->chunk_request->curve_only;
		break;
	case TALLY__ENVELOPE__BODY_UPDATE_CHUNK:
		out->type = TALLY_MSG_UPDATE_CHUNK;
		out->u.chunk.index = e->update_chunk->index;
		if (e->update_chunk->curve_only)
			return tally_err(TALLY_EFORMAT, "update_chunk: carries a path choice");
		if (e->update_chunk->token.len != 0 && e->update_chunk->token.len != TALLY_DATA_TOKEN)
			return tally_err(TALLY_EFORMAT, "update_chunk: data token of %zu bytes, expected %d",
					 e->update_chunk->token.len, TALLY_DATA_TOKEN);
		out->u.chunk.has_token = e->update_chunk->token.len == TALLY_DATA_TOKEN;
		if (out->u.chunk.has_token)
			memcpy(out->u.chunk.token, e->update_chunk->token.data, TALLY_DATA_TOKEN);
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
		return wire_decode_secagg(out, e);
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
	out->attempt = e->attempt;
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
	wire_clear_secagg(m);
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

/* ---- secure aggregation messages ---- */

static int wire_encode_secagg_config(const tally_wire_secagg *w, Tally__RoundStart *rs, arena *a)
{
	Tally__SecAggConfig *sc = arena_alloc(a, 1, sizeof(*sc));
	char **names = arena_alloc(a, w->n, sizeof(char *));

	if (!sc || !names)
		return TALLY_ENOMEM;
	tally__sec_agg_config__init(sc);
	sc->k = w->k;
	sc->t = w->t;
	sc->clip = w->clip;
	sc->qrange = w->qrange;
	sc->ring_bits = w->ring_bits;
	sc->max_weight = w->max_weight;
	for (uint32_t i = 0; i < w->n; i++)
		names[i] = w->participants[i];
	sc->n_participants = w->n;
	sc->participants = names;
	rs->secagg = sc;
	return 0;
}

static Tally__Advert **encode_adverts(const tally_sa_advert *list, size_t n, arena *a)
{
	Tally__Advert *av = arena_alloc(a, n, sizeof(*av));
	Tally__Advert **ptr = arena_alloc(a, n, sizeof(*ptr));

	for (size_t i = 0; av && ptr && i < n; i++) {
		tally__advert__init(&av[i]);
		av[i].index = list[i].index;
		av[i].c_pk = bin(list[i].c_pk, 32);
		av[i].s_pk = bin(list[i].s_pk, 32);
		av[i].sig = bin(list[i].sig, 64);
		ptr[i] = &av[i];
	}
	return av && ptr ? ptr : NULL;
}

static Tally__ShareBox **encode_boxes(const tally_sa_box *b, size_t n, arena *a)
{
	Tally__ShareBox *bx = arena_alloc(a, n, sizeof(*bx));
	Tally__ShareBox **ptr = arena_alloc(a, n, sizeof(*ptr));

	for (size_t i = 0; bx && ptr && i < n; i++) {
		tally__share_box__init(&bx[i]);
		bx[i].from = b[i].from;
		bx[i].to = b[i].to;
		bx[i].data = bin(b[i].data, TALLY_SA_BOX_BYTES);
		ptr[i] = &bx[i];
	}
	return bx && ptr ? ptr : NULL;
}

static Tally__Reveal **encode_reveals(const tally_sa_reveal *r, size_t n, arena *a)
{
	Tally__Reveal *rv = arena_alloc(a, n, sizeof(*rv));
	Tally__Reveal **ptr = arena_alloc(a, n, sizeof(*ptr));
	uint8_t *packed = arena_alloc(a, n, TALLY_SHAMIR_SHARE_BYTES);

	for (size_t i = 0; rv && ptr && packed && i < n; i++) {
		tally__reveal__init(&rv[i]);
		rv[i].owner = r[i].owner;
		rv[i].kind = r[i].kind;
		tally_shamir_pack(&r[i].share, packed + i * TALLY_SHAMIR_SHARE_BYTES);
		rv[i].share = bin(packed + i * TALLY_SHAMIR_SHARE_BYTES, TALLY_SHAMIR_SHARE_BYTES);
		ptr[i] = &rv[i];
	}
	return rv && ptr && packed ? ptr : NULL;
}

static int encode_ids_boxes(const tally_msg *m, Tally__Envelope *env, arena *a)
{
	Tally__Shares *sh;
	Tally__Relay *rl;
	Tally__ShareBox **boxes = encode_boxes(m->u.boxes.boxes, m->u.boxes.n_boxes, a);

	if (!boxes)
		return TALLY_ENOMEM;
	if (m->type == TALLY_MSG_SHARES) {
		if (!(sh = arena_alloc(a, 1, sizeof(*sh))))
			return TALLY_ENOMEM;
		tally__shares__init(sh);
		sh->n_boxes = m->u.boxes.n_boxes, sh->boxes = boxes;
		sh->n_rejected = m->u.boxes.n_ids, sh->rejected = m->u.boxes.ids;
		env->body_case = TALLY__ENVELOPE__BODY_SHARES, env->shares = sh;
		return 0;
	}
	if (!(rl = arena_alloc(a, 1, sizeof(*rl))))
		return TALLY_ENOMEM;
	tally__relay__init(rl);
	rl->n_boxes = m->u.boxes.n_boxes, rl->boxes = boxes;
	rl->n_u2 = m->u.boxes.n_ids, rl->u2 = m->u.boxes.ids;
	env->body_case = TALLY__ENVELOPE__BODY_RELAY, env->relay = rl;
	return 0;
}

static int wire_encode_secagg(const tally_msg *m, Tally__Envelope *env, arena *a)
{
	Tally__Advert **adv;
	Tally__KeyList *kl;
	Tally__RelayAck *ack;
	Tally__UnmaskRequest *ur;
	Tally__Reveals *rv;

	switch (m->type) {
	case TALLY_MSG_ADVERT:
		if (!(adv = encode_adverts(&m->u.advert, 1, a)))
			return TALLY_ENOMEM;
		env->body_case = TALLY__ENVELOPE__BODY_ADVERT, env->advert = adv[0];
		return 0;
	case TALLY_MSG_KEY_LIST:
		if (!(kl = arena_alloc(a, 1, sizeof(*kl))))
			return TALLY_ENOMEM;
		tally__key_list__init(kl);
		kl->n_adverts = m->u.key_list.n;
		if (!(kl->adverts = encode_adverts(m->u.key_list.list, m->u.key_list.n, a)))
			return TALLY_ENOMEM;
		env->body_case = TALLY__ENVELOPE__BODY_KEY_LIST, env->key_list = kl;
		return 0;
	case TALLY_MSG_SHARES:
	case TALLY_MSG_RELAY:
		return encode_ids_boxes(m, env, a);
	case TALLY_MSG_RELAY_ACK:
		if (!(ack = arena_alloc(a, 1, sizeof(*ack))))
			return TALLY_ENOMEM;
		tally__relay_ack__init(ack);
		ack->n_rejected = m->u.boxes.n_ids, ack->rejected = m->u.boxes.ids;
		env->body_case = TALLY__ENVELOPE__BODY_RELAY_ACK, env->relay_ack = ack;
		return 0;
	case TALLY_MSG_UNMASK_REQUEST:
		if (!(ur = arena_alloc(a, 1, sizeof(*ur))))
			return TALLY_ENOMEM;
		tally__unmask_request__init(ur);
		ur->n_dropped = m->u.unmask.n_dropped, ur->dropped = m->u.unmask.dropped;
		ur->n_survivors = m->u.unmask.n_survivors, ur->survivors = m->u.unmask.survivors;
		env->body_case = TALLY__ENVELOPE__BODY_UNMASK_REQUEST, env->unmask_request = ur;
		return 0;
	case TALLY_MSG_REVEALS:
		if (!(rv = arena_alloc(a, 1, sizeof(*rv))))
			return TALLY_ENOMEM;
		tally__reveals__init(rv);
		rv->n_reveals = m->u.reveals.n;
		if (!(rv->reveals = encode_reveals(m->u.reveals.r, m->u.reveals.n, a)))
			return TALLY_ENOMEM;
		env->body_case = TALLY__ENVELOPE__BODY_REVEALS, env->reveals = rv;
		return 0;
	default:
		return tally_err(TALLY_EINVAL, "cannot encode message type %d", (int)m->type);
	}
}

static int wire_decode_secagg_config(tally_wire_secagg *out, const Tally__SecAggConfig *sc)
{
	size_t n = sc->n_participants;

	if (n < 2 || n > TALLY_SA_MAX_N || sc->k < 1 || sc->k >= n || sc->t < 1 || sc->t > sc->k ||
	    (sc->ring_bits != 32 && sc->ring_bits != 64) || !(sc->clip > 0) || !isfinite(sc->clip) ||
	    sc->qrange < 1 || sc->qrange > (UINT64_C(1) << 40) || sc->max_weight < 1)
		return tally_err(TALLY_EFORMAT, "round_start: secure aggregation parameters out of range");
	out->participants = calloc(n, TALLY_NAME_MAX);
	if (!out->participants)
		return TALLY_ENOMEM;
	out->n = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		int rc = copy_ident(out->participants[i], TALLY_NAME_MAX, sc->participants[i], "secagg.participants", false);

		if (rc)
			return rc;
		if (i > 0 && strcmp(out->participants[i - 1], out->participants[i]) >= 0)
			return tally_err(TALLY_EFORMAT, "round_start: participants are not sorted and distinct");
	}
	out->k = sc->k, out->t = sc->t, out->ring_bits = sc->ring_bits;
	out->clip = sc->clip, out->qrange = sc->qrange, out->max_weight = sc->max_weight;
	return 0;
}

static int copy_bytes(uint8_t *dst, size_t len, ProtobufCBinaryData b, const char *field)
{
	if (b.len != len)
		return tally_err(TALLY_EFORMAT, "field %s is %zu bytes, not %zu", field, b.len, len);
	memcpy(dst, b.data, len);
	return 0;
}

static int decode_advert(tally_sa_advert *a, const Tally__Advert *in)
{
	int rc;

	if (!in || in->index >= TALLY_SA_MAX_N)
		return tally_err(TALLY_EFORMAT, "advert index out of range");
	a->index = in->index;
	if ((rc = copy_bytes(a->c_pk, 32, in->c_pk, "advert.c_pk")) || (rc = copy_bytes(a->s_pk, 32, in->s_pk, "advert.s_pk")))
		return rc;
	return copy_bytes(a->sig, 64, in->sig, "advert.sig");
}

static int decode_ids(uint32_t **out, size_t *n_out, const uint32_t *ids, size_t n, const char *field)
{
	if (n > TALLY_SA_MAX_N)
		return tally_err(TALLY_EFORMAT, "field %s lists %zu workers, over %d", field, n, TALLY_SA_MAX_N);
	for (size_t i = 0; i < n; i++)
		if (ids[i] >= TALLY_SA_MAX_N)
			return tally_err(TALLY_EFORMAT, "field %s holds index %u, out of range", field, ids[i]);
	*out = malloc((n ? n : 1) * sizeof(uint32_t));
	if (!*out)
		return TALLY_ENOMEM;
	if (n)
		memcpy(*out, ids, n * sizeof(uint32_t));
	*n_out = n;
	return 0;
}

static int decode_boxes(tally_msg *out, Tally__ShareBox **boxes, size_t n)
{
	if (n > TALLY_SA_MAX_N)
		return tally_err(TALLY_EFORMAT, "%zu share boxes, over %d", n, TALLY_SA_MAX_N);
	out->u.boxes.boxes = calloc(n ? n : 1, sizeof(tally_sa_box));
	if (!out->u.boxes.boxes)
		return TALLY_ENOMEM;
	out->u.boxes.n_boxes = n;
	for (size_t i = 0; i < n; i++) {
		tally_sa_box *b = &out->u.boxes.boxes[i];
		int rc;

		if (boxes[i]->from >= TALLY_SA_MAX_N || boxes[i]->to >= TALLY_SA_MAX_N)
			return tally_err(TALLY_EFORMAT, "share box index out of range");
		b->from = boxes[i]->from;
		b->to = boxes[i]->to;
		if ((rc = copy_bytes(b->data, TALLY_SA_BOX_BYTES, boxes[i]->data, "share_box.data")))
			return rc;
	}
	return 0;
}

static int decode_key_list(tally_msg *out, const Tally__KeyList *kl)
{
	size_t n = kl->n_adverts;

	if (n > TALLY_SA_MAX_N)
		return tally_err(TALLY_EFORMAT, "key list of %zu, over %d", n, TALLY_SA_MAX_N);
	out->u.key_list.list = calloc(n ? n : 1, sizeof(tally_sa_advert));
	if (!out->u.key_list.list)
		return TALLY_ENOMEM;
	out->u.key_list.n = n;
	for (size_t i = 0; i < n; i++) {
		int rc = decode_advert(&out->u.key_list.list[i], kl->adverts[i]);

		if (rc)
			return rc;
	}
	return 0;
}

static int decode_reveals(tally_msg *out, const Tally__Reveals *rv)
{
	size_t n = rv->n_reveals;

	if (n > TALLY_SA_MAX_N)
		return tally_err(TALLY_EFORMAT, "%zu reveals, over %d", n, TALLY_SA_MAX_N);
	out->u.reveals.r = calloc(n ? n : 1, sizeof(tally_sa_reveal));
	if (!out->u.reveals.r)
		return TALLY_ENOMEM;
	out->u.reveals.n = n;
	for (size_t i = 0; i < n; i++) {
		const Tally__Reveal *in = rv->reveals[i];
		tally_sa_reveal *r = &out->u.reveals.r[i];

		if (in->owner >= TALLY_SA_MAX_N || (in->kind != TALLY_SA_REVEAL_B && in->kind != TALLY_SA_REVEAL_S) ||
		    in->share.len != TALLY_SHAMIR_SHARE_BYTES || tally_shamir_unpack(&r->share, in->share.data))
			return tally_err(TALLY_EFORMAT, "reveal %zu is malformed", i);
		r->owner = in->owner;
		r->kind = (uint8_t)in->kind;
	}
	return 0;
}

static int wire_decode_secagg(tally_msg *out, const Tally__Envelope *e)
{
	int rc;

	switch (e->body_case) {
	case TALLY__ENVELOPE__BODY_ADVERT:
		out->type = TALLY_MSG_ADVERT;
		return decode_advert(&out->u.advert, e->advert);
	case TALLY__ENVELOPE__BODY_KEY_LIST:
		out->type = TALLY_MSG_KEY_LIST;
		return decode_key_list(out, e->key_list);
	case TALLY__ENVELOPE__BODY_SHARES:
		out->type = TALLY_MSG_SHARES;
		if ((rc = decode_boxes(out, e->shares->boxes, e->shares->n_boxes)))
			return rc;
		return decode_ids(&out->u.boxes.ids, &out->u.boxes.n_ids, e->shares->rejected, e->shares->n_rejected,
				  "shares.rejected");
	case TALLY__ENVELOPE__BODY_RELAY:
		out->type = TALLY_MSG_RELAY;
		if ((rc = decode_boxes(out, e->relay->boxes, e->relay->n_boxes)))
			return rc;
		return decode_ids(&out->u.boxes.ids, &out->u.boxes.n_ids, e->relay->u2, e->relay->n_u2, "relay.u2");
	case TALLY__ENVELOPE__BODY_RELAY_ACK:
		out->type = TALLY_MSG_RELAY_ACK;
		return decode_ids(&out->u.boxes.ids, &out->u.boxes.n_ids, e->relay_ack->rejected,
				  e->relay_ack->n_rejected, "relay_ack.rejected");
	case TALLY__ENVELOPE__BODY_UNMASK_REQUEST:
		out->type = TALLY_MSG_UNMASK_REQUEST;
		if ((rc = decode_ids(&out->u.unmask.dropped, &out->u.unmask.n_dropped, e->unmask_request->dropped,
				     e->unmask_request->n_dropped, "unmask_request.dropped")))
			return rc;
		return decode_ids(&out->u.unmask.survivors, &out->u.unmask.n_survivors, e->unmask_request->survivors,
				  e->unmask_request->n_survivors, "unmask_request.survivors");
	case TALLY__ENVELOPE__BODY_REVEALS:
		out->type = TALLY_MSG_REVEALS;
		return decode_reveals(out, e->reveals);
	default:
		return tally_err(TALLY_EFORMAT, "envelope has no known body");
	}
}

static void wire_clear_secagg(tally_msg *m)
{
	switch (m->type) {
	case TALLY_MSG_ROUND_START:
		free(m->u.round_start.secagg.participants);
		break;
	case TALLY_MSG_KEY_LIST:
		free(m->u.key_list.list);
		break;
	case TALLY_MSG_SHARES:
	case TALLY_MSG_RELAY:
	case TALLY_MSG_RELAY_ACK:
		free(m->u.boxes.boxes);
		free(m->u.boxes.ids);
		break;
	case TALLY_MSG_UNMASK_REQUEST:
		free(m->u.unmask.dropped);
		free(m->u.unmask.survivors);
		break;
	case TALLY_MSG_REVEALS:
		if (m->u.reveals.r)
			sodium_memzero(m->u.reveals.r, m->u.reveals.n * sizeof(tally_sa_reveal));
		free(m->u.reveals.r);
		break;
	default:
		break;
	}
}
