/*
 * Example-weighted FedAvg as chunks arrive: one float32 accumulator the size of the model, into
 * which each verified chunk of each update is added at once, scaled by that update's example
 * count. The coordinator so never holds more than one model-sized sum plus in-flight chunks,
 * whatever the number of workers.
 *
 * The global model moves by the weighted mean of the updates (updates are deltas from the global
 * model the round started from): global += sum_k(n_k * delta_k) / sum_k(n_k).
 */
#ifndef TALLY_AGG_H
#define TALLY_AGG_H

#include <stddef.h>
#include <stdint.h>

typedef struct tally_agg {
	float *sum;          /* n floats, 64-byte aligned */
	size_t n;
	double weight;       /* sum of the weights of committed updates */
	uint32_t updates;    /* committed updates */
} tally_agg;

/* Allocates a zeroed accumulator of n floats. Sets *out only on success. */
int tally_agg_new(tally_agg **out, size_t n);
void tally_agg_destroy(tally_agg **ap);

/* Zeroes the sum and the counters for a new round. */
void tally_agg_reset(tally_agg *a);

/*
 * sum[offset + i] += weight * x[i] for i < len (weight may be negative to take a chunk back out).
 * The caller has verified x (digest, finite). Errors: TALLY_ERANGE when the span is outside.
 */
int tally_agg_add(tally_agg *a, size_t offset, const float *x, size_t len, float weight);

/* Counts one whole update of the given weight as part of the sum. */
void tally_agg_commit(tally_agg *a, double weight);

/*
 * Applies the mean to the global parameters: global[i] += sum[i] / weight. Fails with
 * TALLY_EQUORUM when no update was committed, or TALLY_ENONFINITE (global untouched) when the
 * result would not be finite.
 */
int tally_agg_apply(const tally_agg *a, float *global);

/* The inner loop, exposed for the benchmark: acc[i] += w * x[i]. */
void tally_axpy(float *restrict acc, const float *restrict x, size_t n, float w);

#endif
