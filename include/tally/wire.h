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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TALLY_PROTOCOL_VERSION 1
#define TALLY_ENVELOPE_MAX (256u * 1024)                    /* largest control frame */
#define TALLY_FRAME_MAX (TALLY_CHUNK_FLOATS * 4u + 4096u)  /* ZMQ_MAXMSGSIZE on every socket */
#define TALLY_NAME_MAX 64
#define TALLY_TEXT_MAX 256
#define TALLY_ARCH_MAX 256
#define TALLY_MAX_CHUNKS 4096 /* 16 GiB of float32 per tensor */

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
} tally_msg_type;

typedef struct tally_msg {
	tally_msg_type type;
	char run_id[TALLY_NAME_MAX];
	uint64_t round;
	union {
		struct { char name[TALLY_NAME_MAX]; uint64_t examples; } hello;
		struct { uint32_t heartbeat_ms, patience_ms; } welcome;
		struct { uint64_t seq; } heartbeat;
		struct {
			char arch[TALLY_ARCH_MAX];
			uint64_t n_params;
			tally_digest model_digest;
			uint32_t chunk_floats;
			tally_train_opts train;
			uint32_t deadline_ms;
		} round_start;
		struct { uint64_t index; } chunk; /* MODEL_CHUNK, CHUNK_REQUEST, UPDATE_CHUNK */
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

/* Frees what a decoded message owns and zeroes it; accepts an already cleared message. */
void tally_msg_clear(tally_msg *m);

#endif
