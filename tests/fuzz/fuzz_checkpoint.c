/*
 * Fuzz target for the checkpoint reader: any bytes go to tally_ckpt_parse, which must accept
 * only an intact file (magic, lengths, checksum) and never read outside the buffer.
 */
#include "tally/checkpoint.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *json = NULL;
	const uint8_t *payload = NULL;
	size_t len = 0;

	if (tally_ckpt_parse(data, size, &json, &payload, &len) == 0) {
		/* What was accepted lies inside the input and the header is a C string. */
		if (payload < data || payload + len > data + size || strlen(json) > size)
			abort();
		free(json);
	}
	return 0;
}
