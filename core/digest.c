/*
 * Chunked BLAKE2b digests of tensors (libsodium's crypto_generichash).
 */
#include "tally/digest.h"
#include "tally/error.h"

#include <sodium.h>
#include <stdlib.h>

size_t tally_chunk_count(size_t n, uint32_t chunk_floats)
{
	return n / chunk_floats + (n % chunk_floats != 0);
}

void tally_digest_chunk(const float *p, size_t n, tally_digest out)
{
	crypto_generichash(out, TALLY_DIGEST_BYTES, (const unsigned char *)p, n * sizeof(float), NULL, 0);
}

void tally_digest_list(uint64_t n_floats, const tally_digest *chunks, size_t n_chunks, tally_digest out)
{
	crypto_generichash_state st;
	uint8_t len[8];

	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)(n_floats >> (8 * i));
	crypto_generichash_init(&st, NULL, 0, TALLY_DIGEST_BYTES);
	crypto_generichash_update(&st, (const unsigned char *)"tally-tensor-v1", 15);
	crypto_generichash_update(&st, len, sizeof(len));
	crypto_generichash_update(&st, (const unsigned char *)chunks, n_chunks * TALLY_DIGEST_BYTES);
	crypto_generichash_final(&st, out, TALLY_DIGEST_BYTES);
}

int tally_digest_tensor(const float *p, size_t n, uint32_t chunk_floats, tally_digest out,
			tally_digest *chunks)
{
	size_t nc = tally_chunk_count(n, chunk_floats);
	tally_digest *list = chunks ? chunks : malloc((nc ? nc : 1) * sizeof(*list));

	if (!list)
		return TALLY_ENOMEM;
	for (size_t c = 0; c < nc; c++) {
		size_t off = c * chunk_floats;
		size_t len = n - off < chunk_floats ? n - off : chunk_floats;

		tally_digest_chunk(p + off, len, list[c]);
	}
	tally_digest_list(n, list, nc, out);
	if (!chunks)
		free(list);
	return 0;
}

void tally_digest_hex(const uint8_t *d, size_t n, char *out)
{
	sodium_bin2hex(out, 2 * n + 1, d, n);
}
