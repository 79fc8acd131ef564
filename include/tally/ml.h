/*
 * The built-in trainer: minibatch SGD (heavy-ball momentum, weight decay, FedProx proximal term)
 * for the MLP of model.h, with softmax + cross-entropy at the end, on OpenBLAS sgemm.
 *
 * Every function here is reentrant and may be called from any thread; each call allocates its own
 * scratch (one batch of activations, the gradient, the momentum buffer, a backup of the model) and
 * frees it before returning, so memory is O(params + batch * sum of widths). The library never
 * changes BLAS thread counts: a caller running several trainers on few cores sets
 * OPENBLAS_NUM_THREADS=1 (or openblas_set_num_threads) itself. During a call the calling thread
 * flushes subnormal floats to zero (x86 FTZ/DAZ), and restores its floating-point mode on return:
 * decaying momentum otherwise spends most of its time in subnormals.
 *
 * Rows of a dataset are chosen by an index array idx[0..n) (row numbers into d), or idx == NULL
 * for all of d's rows, in which case n must equal d->n.
 */
#ifndef TALLY_ML_H
#define TALLY_ML_H

#include <stddef.h>
#include <stdint.h>

#include "tally/model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct tally_dataset;

/* Hard limits that keep scratch memory bounded whatever a configuration file says. */
#define TALLY_TRAIN_MAX_EPOCHS 100000u
#define TALLY_TRAIN_MAX_BATCH 65536u

typedef struct tally_train_opts {
	uint32_t epochs;      /* local epochs, 1..TALLY_TRAIN_MAX_EPOCHS */
	uint32_t batch_size;  /* 1..TALLY_TRAIN_MAX_BATCH; the last batch of an epoch may be short */
	float lr;             /* > 0 */
	float momentum;       /* [0, 1); heavy ball as torch.optim.SGD: v = mu*v + g; p -= lr*v */
	float weight_decay;   /* >= 0; wd*p is added to the gradient of every parameter (torch) */
	float prox_mu;        /* >= 0; FedProx: mu*(p - global) is added to the gradient */
	uint64_t seed;        /* drives the shuffling order of every epoch */
	/* When not NULL and set (by another thread), training stops at the next batch with
	 * TALLY_ESTOPPED and the model is restored. Not part of the wire format. */
	const volatile int *cancel;
} tally_train_opts;

typedef struct tally_train_stats {
	double loss;        /* mean training cross-entropy over the last epoch, measured on the fly */
	double accuracy;    /* fraction of the last epoch's examples classified right, on the fly */
	uint64_t examples;  /* rows trained on (n): the weight of this update under FedAvg */
} tally_train_stats;

/*
 * Checks every field of o against the ranges above. Errors: TALLY_EINVAL, with a message naming
 * the field.
 */
int tally_train_opts_check(const tally_train_opts *o);

/*
 * Trains m in place for o->epochs epochs over rows idx[0..n) of d, shuffled anew each epoch from
 * o->seed. global holds m->n_params floats, the global model this round started from; it is read
 * only when o->prox_mu > 0, and may be NULL otherwise. stats may be NULL.
 * The result is a deterministic function of (m, d, idx, o, global) for a given BLAS build.
 * Errors: TALLY_EINVAL (bad options, n == 0, idx == NULL with n != d->n, prox_mu > 0 without
 * global), TALLY_ESHAPE (d->dim != m->dims[0], or a label >= the model's classes), TALLY_ERANGE
 * (an index >= d->n), TALLY_ENONFINITE (the loss or a parameter became NaN or infinite; m is
 * then restored to what it was on entry), TALLY_ENOMEM. On any error m is unchanged.
 */
int tally_train(tally_model *m, const struct tally_dataset *d, const uint32_t *idx, size_t n,
		const tally_train_opts *o, const float *global, tally_train_stats *stats);

/*
 * Mean cross-entropy and accuracy of m over rows idx[0..n) of d, forward passes in batches of 256.
 * loss and accuracy may each be NULL; ties in the argmax go to the lower class. Errors:
 * TALLY_EINVAL (n == 0, idx == NULL with n != d->n), TALLY_ESHAPE, TALLY_ERANGE as tally_train,
 * TALLY_ENOMEM. A non-finite model is not an error here: it yields a NaN or infinite loss.
 */
int tally_evaluate(const tally_model *m, const struct tally_dataset *d, const uint32_t *idx,
		   size_t n, double *loss, double *accuracy);

/*
 * The gradient of the mean cross-entropy over rows idx[0..n) of d with respect to every parameter,
 * without weight decay or proximal terms, written to grad (m->n_params floats, caller-owned), in
 * the layout of m->params. *loss (may be NULL) receives the mean cross-entropy.
 * Errors as tally_evaluate.
 */
int tally_loss_grad(const tally_model *m, const struct tally_dataset *d, const uint32_t *idx,
		    size_t n, float *grad, double *loss);

#ifdef __cplusplus
}
#endif
#endif
