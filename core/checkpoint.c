/*
 * Checksummed checkpoint files (see checkpoint.h).
 */
#include "tally/checkpoint.h"
#include "tally/error.h"
#include "tally/fs.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC "TALLYCK1"

static void put_u64(uint8_t b[8], uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t b[8])
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

int tally_ckpt_write(const char *path, const char *json, const void *data, size_t len)
{
	uint8_t jlen[8], dlen[8], sum[32];
	crypto_generichash_state st;
	size_t json_len = strlen(json);
	struct iovec iov[6] = {
		{(void *)MAGIC, 8}, {jlen, 8}, {(void *)json, json_len}, {dlen, 8}, {(void *)data, len}, {sum, 32},
	};

	if (json_len > TALLY_CKPT_JSON_MAX)
		return tally_err(TALLY_ETOOBIG, "checkpoint header of %zu bytes is over the limit", json_len);
	put_u64(jlen, json_len);
	put_u64(dlen, len);
	crypto_generichash_init(&st, NULL, 0, sizeof(sum));
	for (int i = 0; i < 5; i++)
		crypto_generichash_update(&st, iov[i].iov_base, iov[i].iov_len);
	crypto_generichash_final(&st, sum, sizeof(sum));
	return tally_file_write_atomic(path, iov, 6, 0600);
}

int tally_ckpt_parse(const uint8_t *buf, size_t size, char **json, const uint8_t **data, size_t *len)
{
	uint8_t sum[32];
	uint64_t jl, dl;

	if (size < 8 + 8 + 8 + 32 || memcmp(buf, MAGIC, 8) != 0)
		return tally_err(TALLY_EFORMAT, "not a tally checkpoint (bad magic or too short)");
	jl = get_u64(buf + 8);
	if (jl > TALLY_CKPT_JSON_MAX || jl > size - 56)
		return tally_err(TALLY_EFORMAT, "checkpoint header length %llu does not fit in %zu bytes",
				 (unsigned long long)jl, size);
	dl = get_u64(buf + 16 + jl);
	if (dl != size - 56 - jl)
		return tally_err(TALLY_EFORMAT, "checkpoint data length %llu does not match the file (%zu bytes): truncated?",
				 (unsigned long long)dl, size);
	crypto_generichash(sum, sizeof(sum), buf, size - 32, NULL, 0);
	if (sodium_memcmp(sum, buf + size - 32, 32) != 0)
		return tally_err(TALLY_EDIGEST, "checkpoint checksum does not match: the file is corrupt");
	*json = malloc(jl + 1);
	if (!*json)
		return TALLY_ENOMEM;
	memcpy(*json, buf + 16, jl);
	(*json)[jl] = '\0';
	if (strlen(*json) != jl) {
		free(*json);
		*json = NULL;
		return tally_err(TALLY_EFORMAT, "checkpoint header holds a NUL byte");
	}
	*data = buf + 24 + jl;
	*len = dl;
	return 0;
}

int tally_ckpt_read(const char *path, size_t max, uint8_t **buf, char **json, const uint8_t **data, size_t *len)
{
	size_t size;
	int rc = tally_file_read(path, max, buf, &size);

	if (rc)
		return rc;
	rc = tally_ckpt_parse(*buf, size, json, data, len);
	if (rc) {
		rc = tally_err(rc, "%s: %s", path, tally_errmsg());
		free(*buf);
		*buf = NULL;
	}
	return rc;
}
