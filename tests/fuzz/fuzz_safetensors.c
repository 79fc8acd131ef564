/*
 * Fuzz target for the safetensors reader (core/safetensors.c). Any input must be refused or
 * accepted without a crash, leak or sanitizer report; an accepted model must write back and read
 * again to the same model, so the reader and the writer agree on everything the reader lets in.
 */
#include "tally/error.h"
#include "tally/model.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_round_trip(const tally_model *m)
{
	tally_model *again = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;

	if (tally_model_to_safetensors(m, &buf, &len) != 0 ||
	    tally_model_from_safetensors(&again, buf, len) != 0)
		abort();
	if (again->n_layers != m->n_layers || again->n_params != m->n_params ||
	    memcmp(again->dims, m->dims, sizeof(m->dims)) != 0 ||
	    memcmp(again->params, m->params, m->n_params * sizeof(float)) != 0 ||
	    again->round != m->round || strcmp(again->run_id, m->run_id) != 0)
		abort();
	free(buf);
	tally_model_destroy(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tally_model *m = NULL;
	int rc;

	tally_err_clear();
	rc = tally_model_from_safetensors(&m, data, size);
	if (rc == 0) {
		check_round_trip(m);
		tally_model_destroy(&m);
	} else if (m != NULL || (rc != TALLY_ENOMEM && tally_errmsg()[0] == '\0')) {
		abort();  /* a refusal sets no model and, short of memory, always says why */
	}
	return 0;
}
