/*
 * Fuzz target for the CSV reader (tally_dataset_from_csv_bytes) and, on what it accepts, the
 * partitions. Input: one option byte (bits 0-2 label column, bit 3 header, bits 4-5 scale, bits
 * 6-7 partition scheme), then the table. The reader must return an error or a dataset of finite
 * features and in-range labels; every accepted label set must partition completely.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "tally/data.h"

static const float scales[4] = { 1.0f, 1.0f / 255.0f, 1e30f, -2.0f };
static const char *schemes[4] = { "iid", "dirichlet:0.5", "shards:1", "dirichlet:0.01" };

static void check_partition(const tally_dataset *d, uint8_t opt)
{
	uint32_t n = d->n < 4 ? d->n : 4, *owner = malloc(d->n * sizeof(*owner)), *idx = NULL;
	size_t count = 0, total = 0;
	tally_part_scheme s;

	if (!owner || tally_part_scheme_parse(schemes[opt >> 6], &s) != 0 ||
	    tally_partition_assign(d->y, d->n, d->n_classes, &s, n, opt, owner) != 0)
		abort();
	for (uint32_t i = 0; i < d->n; i++)
		if (owner[i] >= n)
			abort();
	for (uint32_t k = 0; k < n; k++) {
		if (tally_partition(d->y, d->n, d->n_classes, &s, k, n, opt, &idx, &count) != 0)
			abort();
		for (size_t i = 0; i < count; i++)
			if (owner[idx[i]] != k || (i > 0 && idx[i - 1] >= idx[i]))
				abort();
		total += count;
		free(idx);
	}
	if (total != d->n)
		abort();
	free(owner);
}

static void check(const tally_dataset *d, uint8_t opt)
{
	if (d->n == 0 || d->dim == 0 || d->n_classes < 2 || d->n_classes > 256)
		abort();
	for (size_t i = 0; i < (size_t)d->n * d->dim; i++)
		if (!isfinite(d->x[i]))
			abort();
	for (uint32_t i = 0; i < d->n; i++)
		if (d->y[i] >= d->n_classes)
			abort();
	check_partition(d, opt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tally_dataset *d = NULL;
	uint8_t opt;

	if (size < 1)
		return 0;
	opt = data[0];
	if (tally_dataset_from_csv_bytes(&d, data + 1, size - 1, opt & 7, opt & 8,
					 scales[(opt >> 4) & 3]) == 0) {
		check(d, opt);
		tally_dataset_destroy(&d);
	} else if (d) {
		abort(); /* *out is set only on success */
	}
	return 0;
}
