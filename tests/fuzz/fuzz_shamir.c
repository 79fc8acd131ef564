/*
 * Fuzz target for the Shamir share decoder and combine. The input is a threshold byte followed
 * by packed 44-byte shares (at most 64; a trailing partial share is ignored). Each share either
 * unpacks to x in 1..2^31-1 and y < p that pack back to the same bytes, or fails with
 * TALLY_EFORMAT. The unpacked shares are combined: the result is 0, TALLY_EINVAL (always when
 * there are fewer than t) or TALLY_EFORMAT. A recovered secret must not depend on the order of
 * the shares, and must survive a fresh split and combine at the same points. Any other outcome
 * aborts.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "tally/error.h"
#include "tally/shamir.h"

#define MAX_SHARES 64

static void unpack_all(const uint8_t *data, size_t size, tally_share *s, size_t *count)
{
	*count = 0;
	for (size_t off = 0; off + TALLY_SHAMIR_SHARE_BYTES <= size && off < MAX_SHARES * TALLY_SHAMIR_SHARE_BYTES;
	     off += TALLY_SHAMIR_SHARE_BYTES) {
		uint8_t back[TALLY_SHAMIR_SHARE_BYTES];
		tally_share *sh = &s[*count];
		int rc = tally_shamir_unpack(sh, data + off);

		if (rc == TALLY_EFORMAT)
			continue;
		if (rc != 0 || sh->x == 0 || sh->x >= UINT32_C(1) << 31)
			abort();
		for (int j = 0; j < TALLY_SHAMIR_ELEMS; j++)
			if (sh->y[j] >= TALLY_SHAMIR_PRIME)
				abort();
		tally_shamir_pack(sh, back);
		if (memcmp(back, data + off, sizeof(back)) != 0)
			abort();
		(*count)++;
	}
}

/* A recovered secret: same from the first t in reverse order, and from a fresh split. */
static void check_secret(const tally_share *s, uint32_t t, const uint8_t secret[32])
{
	tally_share rev[MAX_SHARES], fresh[MAX_SHARES];
	uint32_t xs[MAX_SHARES];
	uint8_t again[32], seed[32] = {0};

	for (uint32_t i = 0; i < t; i++) {
		rev[i] = s[t - 1 - i];
		xs[i] = s[i].x;
	}
	if (tally_shamir_combine(rev, t, t, again) != 0 || memcmp(again, secret, 32) != 0)
		abort();
	if (tally_shamir_split_seeded(secret, t, t, xs, fresh, seed) != 0)
		abort();
	memset(again, 0, sizeof(again));
	if (tally_shamir_combine(fresh, t, t, again) != 0 || memcmp(again, secret, 32) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tally_share s[MAX_SHARES];
	uint8_t secret[32];
	size_t count;
	uint32_t t;
	int rc;

	if (size < 1)
		return 0;
	if (sodium_init() < 0)
		abort();
	t = data[0];
	unpack_all(data + 1, size - 1, s, &count);
	rc = tally_shamir_combine(s, count, t, secret);
	if (rc != 0 && rc != TALLY_EINVAL && rc != TALLY_EFORMAT)
		abort();
	if ((t == 0 || count < t) && rc != TALLY_EINVAL)
		abort();
	if (rc == 0)
		check_secret(s, t, secret);
	sodium_memzero(s, sizeof(s));
	sodium_memzero(secret, sizeof(secret));
	return 0;
}
