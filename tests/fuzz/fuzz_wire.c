/*
 * Fuzz target for the wire codec (tally_msg_decode). Whatever the bytes, decode must return an
 * error with an all-zero message or a valid message; a decoded message must encode again, decode
 * to the same type, round and run id, and re-encode to exactly the same bytes (the codec is a
 * fixed point after one trip). Any other outcome aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tally/error.h"
#include "tally/wire.h"

static bool is_zero(const tally_msg *m)
{
	static const tally_msg zero;

	return memcmp(m, &zero, sizeof(*m)) == 0;
}

/* Fields a decoded message must satisfy whatever the input was. */
static void check_valid(const tally_msg *m)
{
	if (m->type <= TALLY_MSG_NONE || m->type > TALLY_MSG_REVEALS ||
	    strnlen(m->run_id, sizeof(m->run_id)) == sizeof(m->run_id))
		abort();
	if (m->type == TALLY_MSG_UPDATE_READY &&
	    (m->u.update_ready.n_chunks == 0 || m->u.update_ready.n_chunks > TALLY_MAX_CHUNKS ||
	     !m->u.update_ready.chunk_digests || m->u.update_ready.examples == 0 ||
	     !(m->u.update_ready.train_accuracy >= 0 && m->u.update_ready.train_accuracy <= 1)))
		abort();
	if (m->type == TALLY_MSG_ROUND_START) {
		uint64_t n = m->u.round_start.n_params, c = m->u.round_start.chunk_floats;

		if (c == 0 || c > TALLY_CHUNK_FLOATS || n == 0 || !(m->u.round_start.train.lr > 0))
			abort();
		if (n / c + (n % c != 0) > TALLY_MAX_CHUNKS) /* ceil(n / c) without overflow */
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tally_msg a, b;
	uint8_t *buf1 = NULL, *buf2 = NULL;
	size_t len1 = 0, len2 = 0;

	if (tally_msg_decode(&a, data, size) != 0) {
		if (!is_zero(&a))
			abort(); /* a refused message must be left empty */
		tally_msg_clear(&a);
		return 0;
	}
	check_valid(&a);
	if (tally_msg_encode(&a, &buf1, &len1) != 0)
		abort(); /* whatever decodes must encode */
	if (tally_msg_decode(&b, buf1, len1) != 0)
		abort();
	if (a.type != b.type || a.round != b.round || strcmp(a.run_id, b.run_id) != 0)
		abort();
	if (tally_msg_encode(&b, &buf2, &len2) != 0 || len1 != len2 || memcmp(buf1, buf2, len1) != 0)
		abort();
	free(buf1);
	free(buf2);
	tally_msg_clear(&a);
	tally_msg_clear(&b);
	if (!is_zero(&a))
		abort();
	return 0;
}
