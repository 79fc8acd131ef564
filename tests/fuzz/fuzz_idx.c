/*
 * Fuzz target for the IDX reader (tally_dataset_from_idx_bytes). Input: a little-endian u32 L,
 * then the image file's bytes (L, cut to what is there), then the label file's bytes. Whatever
 * the bytes, the reader must return an error or a dataset that keeps its invariants, and free
 * everything; a broken invariant aborts so that the fuzzer reports it.
 */
#include <stdint.h>
#include <stdlib.h>

#include "tally/data.h"

static void check(const tally_dataset *d)
{
	uint32_t rows[2] = { 0, d->n - 1 };
	tally_dataset *s = NULL;

	if (d->n == 0 || d->dim == 0 || d->n_classes < 2 || d->n_classes > 256)
		abort();
	for (size_t i = 0; i < (size_t)d->n * d->dim; i++)
		if (!(d->x[i] >= 0.0f && d->x[i] <= 1.0f))
			abort();
	for (uint32_t i = 0; i < d->n; i++)
		if (d->y[i] >= d->n_classes)
			abort();
	if (tally_dataset_subset(&s, d, rows, 2) != 0 || s->n != 2 || s->y[1] != d->y[d->n - 1])
		abort();
	tally_dataset_destroy(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tally_dataset *d = NULL;
	size_t img_len;

	if (size < 4)
		return 0;
	img_len = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 | (size_t)data[3] << 24;
	data += 4;
	size -= 4;
	if (img_len > size)
		img_len = size;
	if (tally_dataset_from_idx_bytes(&d, data, img_len, data + img_len, size - img_len) == 0) {
		check(d);
		tally_dataset_destroy(&d);
	} else if (d) {
		abort(); /* *out is set only on success */
	}
	return 0;
}
