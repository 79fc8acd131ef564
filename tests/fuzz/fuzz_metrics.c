/*
 * Fuzz target for the metrics.jsonl reader (tally_metrics_parse). Input: the file's bytes. The
 * reader must return an error, leaving its outputs alone, or rows in strictly increasing round
 * order with accuracies that are NaN or fractions and has_test set exactly when accuracy is.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "tally/plot.h"

static void check(const tally_metrics_row *rows, size_t n)
{
	if (n > TALLY_METRICS_MAX_ROWS || (n == 0) != (rows == NULL))
		abort();
	for (size_t i = 0; i < n; i++) {
		const tally_metrics_row *r = &rows[i];

		if (i > 0 && rows[i - 1].round >= r->round)
			abort();
		if (r->has_test == isnan(r->accuracy))
			abort();
		if (!isnan(r->accuracy) && !(r->accuracy >= 0 && r->accuracy <= 1))
			abort();
		if (!isnan(r->train_accuracy) && !(r->train_accuracy >= 0 && r->train_accuracy <= 1))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tally_metrics_row *rows = (tally_metrics_row *)&rows, *sentinel = rows;
	size_t n = (size_t)-1;

	if (tally_metrics_parse((const char *)data, size, &rows, &n) == 0) {
		check(rows, n);
		free(rows);
	} else if (rows != sentinel || n != (size_t)-1) {
		abort(); /* outputs are set only on success */
	}
	return 0;
}
