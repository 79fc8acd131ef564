/*
 * The wire codec: plain C structs for tally's control messages, encoded to and decoded from the
 * protobuf Envelope of proto/tally.proto. This is the only module that touches protobuf-c.
 *
 * A decoded message has been validated as far as a message alone can be: protocol version,
 * string lengths and characters, digest lengths, numeric ranges and the presence of exactly one
 * body. Whether it fits the receiver's state is the receiver's business.
 */
#ifndef TALLY_WIRE_H
#define TALLY_WIRE_H

#include "tally/digest.h"
#include "tally/ml.h"
#include "tally/secagg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TALLY_PROTOCOL_VERSION 1
#define TALLY_ENVELOPE_MAX (2u << 20)                       /* largest control frame */
#define TALLY_FRAME_MAX (TALLY_CHUNK_FLOATS * 4u + 4096u)  /* ZMQ_MAXMSGSIZE on every socket */
#define TALLY_NAME_MAX 64
#define TALLY_TEXT_MAX 256
#define TALLY_ARCH_MAX 256
#define TALLY_MAX_CHUNKS 4096 /* 16 GiB of float32 per tensor */
#define TALLY_DATA_TOKEN 16   /* bytes of a session's open-data-path token */
#define TALLY_MAX_EXAMPLES (UINT64_C(1) << 32) /* the weight of one update */

typedef enum {
	TALLY_MSG_NONE = 0,
	TALLY_MSG_HELLO,
	TALLY_MSG_WELCOME,
	TALLY_MSG_HEARTBEAT,
	TALLY_MSG_ROUND_START,
	TALLY_MSG_MODEL_CHUNK,
	TALLY_MSG_UPDATE_READY,
	TALLY_MSG_CHUNK_REQUEST,
	TALLY_MSG_UPDATE_CHUNK,
	TALLY_MSG_ROUND_END,
	TALLY_MSG_REFUSAL,
	TALLY_MSG_BYE,
	TALLY_MSG_ADVERT,
	TALLY_MSG_KEY_LIST,
	TALLY_MSG_SHARES,
	TALLY_MSG_RELAY,
	TALLY_MSG_RELAY_ACK,
	TALLY_MSG_UNMASK_REQUEST,
	TALLY_MSG_REVEALS,
} tally_msg_type;

/* Secure-aggregation parameters carried by RoundStart. */
typedef struct tally_wire_secagg {
	uint32_t k, t, ring_bits;
	double clip;
	uint64_t qrange, max_weight;
	uint32_t n;                  /* participants */
	char (*participants)[TALLY_NAME_MAX]; /* owned; sorted */
} tally_wire_secagg;

typedef struct tally_msg {
	tally_msg_type type;
	char run_id[TALLY_NAME_MAX];
	uint64_t round;
	uint64_t attempt;
	union {
		struct { char name[TALLY_NAME_MAX]; uint64_t examples; } hello;
		struct {
			uint32_t heartbeat_ms, patience_ms;
			uint32_t data_port;                 /* 0: no open data path */
			uint8_t data_token[TALLY_DATA_TOKEN]; /* when data_port != 0 */
		} welcome;
		struct { uint64_t seq; } heartbeat;
		struct {
			char arch[TALLY_ARCH_MAX];
			uint64_t n_params;
			tally_digest model_digest;
			uint32_t chunk_floats;
			tally_train_opts train;
			uint32_t deadline_ms;
			bool secure;
			tally_wire_secagg secagg; /* when secure */
		} round_start;
		struct {
			uint64_t index;
			bool has_token;                     /* UPDATE_CHUNK on the open data path */
			uint8_t token[TALLY_DATA_TOKEN];
			bool curve_only;                    /* CHUNK_REQUEST: answer over CURVE */
		} chunk; /* MODEL_CHUNK, CHUNK_REQUEST, UPDATE_CHUNK */
		struct {
			uint64_t examples;
			uint64_t n_params;
			tally_digest digest;
			size_t n_chunks;
			tally_digest *chunk_digests; /* owned; freed by tally_msg_clear */
			double train_loss, train_accuracy, seconds;
		} update_ready;
		struct { bool accepted; char reason[TALLY_TEXT_MAX]; } round_end;
		struct { char reason[TALLY_TEXT_MAX]; bool final; } text; /* REFUSAL, BYE (final: Bye only) */
		tally_sa_advert advert;
		struct { tally_sa_advert *list; size_t n; } key_list;
		/* SHARES (ids: rejected), RELAY (ids: U2), RELAY_ACK (ids: rejected, no boxes) */
		struct { tally_sa_box *boxes; size_t n_boxes; uint32_t *ids; size_t n_ids; } boxes;
		struct { uint32_t *dropped; size_t n_dropped; uint32_t *survivors; size_t n_survivors; } unmask;
		struct { tally_sa_reveal *r; size_t n; } reveals;
	} u;
} tally_msg;

/* Name of a message type for logs ("hello", "round_start", ...). */
const char *tally_msg_type_name(tally_msg_type t);

/*
 * Encodes m into a new malloc'd buffer. Errors: TALLY_EINVAL for a message that would not decode
 * (programming error in the caller's fields), TALLY_ENOMEM.
 */
int tally_msg_encode(const tally_msg *m, uint8_t **buf, size_t *len);

/*
 * Decodes and validates one envelope. On success *out is filled (free with tally_msg_clear); on
 * failure *out is empty and the code is TALLY_EFORMAT (does not parse, no body, bad field),
 * TALLY_EVERSION (other protocol version) or TALLY_ETOOBIG, with a message. Any thread.
 */
int tally_msg_decode(tally_msg *out, const uint8_t *buf, size_t len);

/* Frees what a message owns (decoded, or filled by its sender with malloc'd arrays) and zeroes
 * it; accepts an already cleared message. Reveal arrays are wiped. */
void tally_msg_clear(tally_msg *m);

#endif
