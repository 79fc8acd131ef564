/*
 * The built-in trainer behind ml.h: forward and backward passes of the MLP on cblas_sgemm, a
 * numerically stable log-softmax cross-entropy, and a fused SGD step (weight decay, FedProx term,
 * heavy-ball momentum) with the semantics of torch.optim.SGD.
 *
 * Activations live row-major as [rows, width] matrices, so a layer is Z = A W^T + b (W is the
 * model's [out, in] weight), its weight gradient dW = dZ^T A and the gradient that flows back
 * dA = dZ W, each one sgemm call. Each batch's input rows are gathered into one contiguous block
 * first, which costs one copy of the inputs and lets every batch, shuffled or not, use the same
 * code.
 */
#include "tally/ml.h"
#include "tally/data.h"
#include "tally/error.h"
#include "tally/rng.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#define EVAL_BATCH 256u
#define SHUFFLE_STREAM 0x5348554646ULL /* "SHUFF": the rng stream of epoch orders */

/* One batch worth of activations and backward buffers. */
typedef struct scratch {
	uint32_t cap;                            /* rows it can hold */
	size_t w_off[TALLY_MODEL_MAX_LAYERS];    /* offsets of each layer's weight in params */
	size_t b_off[TALLY_MODEL_MAX_LAYERS];    /* ... and of its bias */
	float *act[TALLY_MODEL_MAX_LAYERS + 1];  /* act[0] inputs, act[l] layer l's output (ReLU'd) */
	float *dz, *da;                          /* [cap, widest non-input layer] each */
	uint8_t *y;                              /* the batch's labels */
} scratch;

/* Everything tally_train allocates, freed in one place. */
typedef struct trainer {
	scratch s;
	float *grad;       /* n_params */
	float *vel;        /* n_params momentum buffer, NULL without momentum */
	float *backup;     /* n_params: the model on entry, restored on a non-finite loss */
	uint32_t *order;   /* the rows, reshuffled every epoch */
} trainer;

/*
 * Four floats as one GCC/Clang vector: SSE width, the x86-64 baseline, so no -march is needed.
 * Loads and stores go through memcpy and need no alignment.
 */
typedef float vf4 __attribute__((vector_size(16)));
typedef int32_t vi4 __attribute__((vector_size(16)));

static inline vf4 load4(const float *p)
{
	vf4 v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline void store4(float *p, vf4 v)
{
	memcpy(p, &v, sizeof(v));
}

/*
 * x[i] = 0 where gate[i] <= 0: ReLU when gate == x, its derivative when gate is the ReLU's output.
 * A NaN gate keeps x, so a NaN is never hidden from the divergence check. Branch-free, since the
 * signs of activations are as good as random to a branch predictor.
 */
static void zero_where_nonpositive(float *x, const float *gate, size_t n)
{
	size_t i = 0;

	for (; i + 4 <= n; i += 4) {
		vi4 keep = ~(load4(gate + i) <= (vf4){0});

		store4(x + i, (vf4)((vi4)load4(x + i) & keep));
	}
	for (; i < n; i++)
		if (gate[i] <= 0)
			x[i] = 0;
}

/* ---- scratch ---------------------------------------------------------------------------- */

static void scratch_free(scratch *s)
{
	for (uint32_t l = 0; l <= TALLY_MODEL_MAX_LAYERS; l++)
		free(s->act[l]);
	free(s->dz);
	free(s->da);
	free(s->y);
	memset(s, 0, sizeof(*s));
}

static float *alloc_floats(size_t n)
{
	return aligned_alloc(64, (n * sizeof(float) + 63) & ~(size_t)63);
}

/* Sizes s for batches of up to cap rows of m. Errors: TALLY_ENOMEM (s then needs scratch_free). */
static int scratch_init(scratch *s, const tally_model *m, uint32_t cap)
{
	uint32_t widest = 0;

	memset(s, 0, sizeof(*s));
	s->cap = cap;
	for (uint32_t l = 0; l < m->n_layers; l++) {
		s->w_off[l] = tally_model_weight_offset(m, l);
		s->b_off[l] = tally_model_bias_offset(m, l);
	}
	for (uint32_t l = 0; l <= m->n_layers; l++) {
		s->act[l] = alloc_floats((size_t)cap * m->dims[l]);
		if (!s->act[l])
			return TALLY_ENOMEM;
		if (l > 0 && m->dims[l] > widest)
			widest = m->dims[l];
	}
	s->dz = alloc_floats((size_t)cap * widest);
	s->da = alloc_floats((size_t)cap * widest);
	s->y = malloc(cap);
	return s->dz && s->da && s->y ? 0 : TALLY_ENOMEM;
}

/*
 * Subnormal floats are flushed to zero for the duration of a call (and this thread's floating
 * point mode restored after it). They are not a curiosity here: the momentum of a weight whose
 * input pixel is almost always 0 decays through the subnormal range for about 150 steps after
 * each non-zero gradient, and each subnormal operation costs ~100 cycles; measured, this halved
 * throughput at batch 32 and cut it 13-fold at batch 16. The results stay deterministic.
 */
static unsigned fp_mode_enter(void)
{
#if defined(__SSE__)
	unsigned old = _mm_getcsr();

	_mm_setcsr(old | 0x8040);  /* FTZ (bit 15) and DAZ (bit 6) */
	return old;
#else
	return 0;
#endif
}

static void fp_mode_leave(unsigned old)
{
#if defined(__SSE__)
	_mm_setcsr(old);
#else
	(void)old;
#endif
}

/* ---- validation ------------------------------------------------------------------------- */

int tally_train_opts_check(const tally_train_opts *o)
{
	if (o->epochs < 1 || o->epochs > TALLY_TRAIN_MAX_EPOCHS)
		return tally_err(TALLY_EINVAL, "epochs must be 1..%u, not %u", TALLY_TRAIN_MAX_EPOCHS,
				 o->epochs);
	if (o->batch_size < 1 || o->batch_size > TALLY_TRAIN_MAX_BATCH)
		return tally_err(TALLY_EINVAL, "batch_size must be 1..%u, not %u", TALLY_TRAIN_MAX_BATCH,
				 o->batch_size);
	if (!(o->lr > 0) || !isfinite(o->lr))
		return tally_err(TALLY_EINVAL, "lr must be a finite number > 0, not %g", (double)o->lr);
	if (!(o->momentum >= 0 && o->momentum < 1))
		return tally_err(TALLY_EINVAL, "momentum must be in [0, 1), not %g", (double)o->momentum);
	if (!(o->weight_decay >= 0) || !isfinite(o->weight_decay))
		return tally_err(TALLY_EINVAL, "weight_decay must be a finite number >= 0, not %g",
				 (double)o->weight_decay);
	if (!(o->prox_mu >= 0) || !isfinite(o->prox_mu))
		return tally_err(TALLY_EINVAL, "prox_mu must be a finite number >= 0, not %g",
				 (double)o->prox_mu);
	return 0;
}

/* Checks that rows idx[0..n) of d exist and fit m: widths, indices and labels. */
static int check_rows(const tally_model *m, const struct tally_dataset *d, const uint32_t *idx,
		      size_t n)
{
	uint32_t classes = m->dims[m->n_layers];

	if (d->dim != m->dims[0])
		return tally_err(TALLY_ESHAPE, "dataset rows have %u features but the model takes %u inputs",
				 d->dim, m->dims[0]);
	if (n == 0)
		return tally_err(TALLY_EINVAL, "no rows to train or evaluate on");
	if (!idx && n != d->n)
		return tally_err(TALLY_EINVAL, "without an index, n (%zu) must be the dataset's %u rows",
				 n, d->n);
	for (size_t i = 0; i < n; i++) {
		size_t row = idx ? idx[i] : i;

		if (row >= d->n)
			return tally_err(TALLY_ERANGE, "row index %zu is past the dataset's %u rows", row, d->n);
		if (d->y[row] >= classes)
			return tally_err(TALLY_ESHAPE, "row %zu has label %u but the model has %u classes",
					 row, d->y[row], classes);
	}
	return 0;
}

/* ---- forward and backward --------------------------------------------------------------- */

/* Copies rows idx[start .. start+rows) (or start.. when idx is NULL) and their labels into s. */
static void gather(scratch *s, const struct tally_dataset *d, const uint32_t *idx, size_t start,
		   uint32_t rows)
{
	size_t dim = d->dim;

	for (uint32_t r = 0; r < rows; r++) {
		size_t row = idx ? idx[start + r] : start + r;

		memcpy(s->act[0] + r * dim, d->x + row * dim, dim * sizeof(float));
		s->y[r] = d->y[row];
	}
}

/* Fills act[1..L] for the first rows of act[0]; act[L] holds the logits. */
static void forward(const tally_model *m, scratch *s, uint32_t rows)
{
	for (uint32_t l = 0; l < m->n_layers; l++) {
		int in = (int)m->dims[l], out = (int)m->dims[l + 1];
		const float *w = m->params + s->w_off[l], *b = m->params + s->b_off[l];
		float *z = s->act[l + 1];

		for (uint32_t r = 0; r < rows; r++)
			memcpy(z + (size_t)r * out, b, (size_t)out * sizeof(float));
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, out, in, 1.0f,
			    s->act[l], in, w, in, 1.0f, z, out);
		if (l + 1 < m->n_layers)
			zero_where_nonpositive(z, z, (size_t)rows * out);
	}
}

/*
 * Softmax cross-entropy of logits z [rows, k] against labels y, through log-sum-exp shifted by
 * each row's maximum. Adds the summed loss to *loss and the correct argmaxes to *hits. When dz
 * is not NULL, writes scale * (softmax(z) - onehot(y)) there: the gradient of scale * loss.
 */
static void softmax_xent(const float *z, const uint8_t *y, uint32_t rows, uint32_t k, float *dz,
			 float scale, double *loss, uint64_t *hits)
{
	for (uint32_t r = 0; r < rows; r++) {
		const float *zr = z + (size_t)r * k;
		uint32_t best = 0;
		float sum = 0, lse;

		for (uint32_t j = 1; j < k; j++)
			if (zr[j] > zr[best])
				best = j;
		for (uint32_t j = 0; j < k; j++)
			sum += expf(zr[j] - zr[best]);
		lse = zr[best] + logf(sum);
		*loss += (double)lse - zr[y[r]];
		*hits += best == y[r];
		if (!dz)
			continue;
		for (uint32_t j = 0; j < k; j++)
			dz[(size_t)r * k + j] = scale * expf(zr[j] - lse);
		dz[(size_t)r * k + y[r]] -= scale;
	}
}

/* Column sums of dz [rows, out] into gb, added to gb when accumulate is set. */
static void bias_grad(const float *dz, uint32_t rows, uint32_t out, float *gb, bool accumulate)
{
	if (!accumulate)
		memset(gb, 0, out * sizeof(float));
	for (uint32_t r = 0; r < rows; r++)
		for (uint32_t j = 0; j < out; j++)
			gb[j] += dz[(size_t)r * out + j];
}

/*
 * Back-propagates s->dz (the gradient at the logits, [rows, classes]) through m, writing the
 * parameter gradient into grad, or adding it there when accumulate is set. Clobbers dz and da.
 */
static void backward(const tally_model *m, scratch *s, uint32_t rows, float *grad, bool accumulate)
{
	float *dz = s->dz, *da = s->da, *t;
	float beta = accumulate ? 1.0f : 0.0f;

	for (uint32_t l = m->n_layers; l-- > 0;) {
		int in = (int)m->dims[l], out = (int)m->dims[l + 1];
		const float *act = s->act[l];

		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, (int)rows, 1.0f, dz, out,
			    act, in, beta, grad + s->w_off[l], in);
		bias_grad(dz, rows, (uint32_t)out, grad + s->b_off[l], accumulate);
		if (l == 0)
			break;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, in, out, 1.0f, dz, out,
			    m->params + s->w_off[l], in, 0.0f, da, in);
		zero_where_nonpositive(da, act, (size_t)rows * in);  /* ReLU' */
		t = dz, dz = da, da = t;
	}
}

/*
 * One pass over rows idx[0..n) of d in batches of EVAL_BATCH: sums the loss and hits, and, when
 * grad is not NULL, the gradient of the mean loss.
 */
static int sweep(const tally_model *m, const struct tally_dataset *d, const uint32_t *idx,
		 size_t n, float *grad, double *loss, uint64_t *hits)
{
	scratch s;
	uint32_t classes = m->dims[m->n_layers];
	unsigned fp_mode = fp_mode_enter();
	int rc = scratch_init(&s, m, n < EVAL_BATCH ? (uint32_t)n : EVAL_BATCH);

	for (size_t start = 0; !rc && start < n; start += s.cap) {
		uint32_t rows = n - start < s.cap ? (uint32_t)(n - start) : s.cap;

		gather(&s, d, idx, start, rows);
		forward(m, &s, rows);
		softmax_xent(s.act[m->n_layers], s.y, rows, classes, grad ? s.dz : NULL,
			     1.0f / (float)n, loss, hits);
		if (grad)
			backward(m, &s, rows, grad, start > 0);
	}
	scratch_free(&s);
	fp_mode_leave(fp_mode);
	return rc;
}

int tally_evaluate(const tally_model *m, const struct tally_dataset *d, const uint32_t *idx,
		   size_t n, double *loss, double *accuracy)
{
	double sum = 0;
	uint64_t hits = 0;
	int rc = check_rows(m, d, idx, n);

	if (!rc)
		rc = sweep(m, d, idx, n, NULL, &sum, &hits);
	if (rc)
		return rc;
	if (loss)
		*loss = sum / (double)n;
	if (accuracy)
		*accuracy = (double)hits / (double)n;
	return 0;
}

int tally_loss_grad(const tally_model *m, const struct tally_dataset *d, const uint32_t *idx,
		    size_t n, float *grad, double *loss)
{
	double sum = 0;
	uint64_t hits = 0;
	int rc = check_rows(m, d, idx, n);

	if (!rc)
		rc = sweep(m, d, idx, n, grad, &sum, &hits);
	if (rc)
		return rc;
	if (loss)
		*loss = sum / (double)n;
	return 0;
}

/* ---- training --------------------------------------------------------------------------- */

/* The optimizer's constants, copied out of the options so that stores to p cannot alias them. */
typedef struct sgd_coef {
	float lr, mu, wd, prox;
} sgd_coef;

/*
 * The torch.optim.SGD step for parameters i..i+3: g' = g + wd p + prox (p - global);
 * v = mu v + g' (when there is a v); p -= lr * (v or g'). Written on vectors because gcc -O2
 * leaves the plain loop scalar, and this pass streams four or five arrays of n_params floats per
 * batch: at batch 32 it is still an eighth of the training time, the rest being mostly sgemm.
 */
static inline void sgd_block(float *p, const float *g, float *v, const float *global, size_t i,
			     sgd_coef c, bool has_vel, bool has_prox)
{
	vf4 pi = load4(p + i), gi = load4(g + i) + c.wd * pi;

	if (has_prox)
		gi += c.prox * (pi - load4(global + i));
	if (has_vel) {
		gi = c.mu * load4(v + i) + gi;
		store4(v + i, gi);
	}
	store4(p + i, pi - c.lr * gi);
}

/* The same step for one parameter, for the tail. */
static inline void sgd_one(float *p, const float *g, float *v, const float *global, size_t i,
			   sgd_coef c, bool has_vel, bool has_prox)
{
	float gi = g[i] + c.wd * p[i];

	if (has_prox)
		gi += c.prox * (p[i] - global[i]);
	if (has_vel) {
		gi = c.mu * v[i] + gi;
		v[i] = gi;
	}
	p[i] -= c.lr * gi;
}

/* One pass over all parameters; has_vel/has_prox are constants after inlining. */
static inline void sgd_kernel(float *p, const float *g, float *v, const float *global, size_t n,
			      sgd_coef c, bool has_vel, bool has_prox)
{
	size_t i = 0;

	for (; i + 4 <= n; i += 4)
		sgd_block(p, g, v, global, i, c, has_vel, has_prox);
	for (; i < n; i++)
		sgd_one(p, g, v, global, i, c, has_vel, has_prox);
}

static void sgd_step(float *p, const float *g, float *v, const float *global, size_t n,
		     const tally_train_opts *o)
{
	sgd_coef c = {o->lr, o->momentum, o->weight_decay, o->prox_mu};

	if (v && c.prox > 0)
		sgd_kernel(p, g, v, global, n, c, true, true);
	else if (v)
		sgd_kernel(p, g, v, NULL, n, c, true, false);
	else if (c.prox > 0)
		sgd_kernel(p, g, NULL, global, n, c, false, true);
	else
		sgd_kernel(p, g, NULL, NULL, n, c, false, false);
}

static void trainer_free(trainer *t)
{
	scratch_free(&t->s);
	free(t->grad);
	free(t->vel);
	free(t->backup);
	free(t->order);
}

/* Allocates t for training m on rows idx[0..n) and takes the backup of m. */
static int trainer_init(trainer *t, const tally_model *m, const uint32_t *idx, size_t n,
			const tally_train_opts *o)
{
	uint32_t cap = n < o->batch_size ? (uint32_t)n : o->batch_size;
	int rc = scratch_init(&t->s, m, cap);

	if (rc)
		return rc;
	t->grad = alloc_floats(m->n_params);
	t->backup = alloc_floats(m->n_params);
	t->vel = o->momentum > 0 ? calloc(m->n_params, sizeof(float)) : NULL;
	t->order = malloc(n * sizeof(uint32_t));
	if (!t->grad || !t->backup || (o->momentum > 0 && !t->vel) || !t->order)
		return TALLY_ENOMEM;
	memcpy(t->backup, m->params, m->n_params * sizeof(float));
	for (size_t i = 0; i < n; i++)
		t->order[i] = idx ? idx[i] : (uint32_t)i;
	return 0;
}

/* One epoch over t->order; sums the loss and hits of every batch before its step. */
static int train_epoch(tally_model *m, const struct tally_dataset *d, trainer *t, size_t n,
		       const tally_train_opts *o, const float *global, double *loss,
		       uint64_t *hits)
{
	uint32_t classes = m->dims[m->n_layers];

	for (size_t start = 0; start < n; start += t->s.cap) {
		uint32_t rows = n - start < t->s.cap ? (uint32_t)(n - start) : t->s.cap;
		double batch_loss = 0;

		if (o->cancel && *o->cancel)
			return tally_err(TALLY_ESTOPPED, "training cancelled");
		gather(&t->s, d, t->order, start, rows);
		forward(m, &t->s, rows);
		softmax_xent(t->s.act[m->n_layers], t->s.y, rows, classes, t->s.dz,
			     1.0f / (float)rows, &batch_loss, hits);
		if (!isfinite(batch_loss))
			return tally_err(TALLY_ENONFINITE, "training diverged: the loss became %g after "
					 "%zu examples (try a lower lr)", batch_loss, start);
		*loss += batch_loss;
		backward(m, &t->s, rows, t->grad, false);
		sgd_step(m->params, t->grad, t->vel, global, m->n_params, o);
	}
	return 0;
}

static bool all_finite(const float *p, size_t n)
{
	float acc = 0;

	for (size_t i = 0; i < n; i++)
		acc += p[i] * 0.0f;  /* stays 0 unless some p[i] is NaN or infinite */
	return acc == 0;
}

/* Checks everything tally_train takes before it allocates. */
static int check_train(const tally_model *m, const struct tally_dataset *d, const uint32_t *idx,
		       size_t n, const tally_train_opts *o, const float *global)
{
	int rc = tally_train_opts_check(o);

	if (rc)
		return rc;
	if (o->prox_mu > 0 && !global)
		return tally_err(TALLY_EINVAL, "prox_mu is %g but no global model was given",
				 (double)o->prox_mu);
	return check_rows(m, d, idx, n);
}

int tally_train(tally_model *m, const struct tally_dataset *d, const uint32_t *idx, size_t n,
		const tally_train_opts *o, const float *global, tally_train_stats *stats)
{
	trainer t = {0};
	tally_rng rng;
	double loss = 0;
	uint64_t hits = 0;
	unsigned fp_mode;
	int rc = check_train(m, d, idx, n, o, global);

	if (rc)
		return rc;
	fp_mode = fp_mode_enter();
	rc = trainer_init(&t, m, idx, n, o);
	tally_rng_seed(&rng, o->seed, SHUFFLE_STREAM);
	for (uint32_t e = 0; !rc && e < o->epochs; e++) {
		loss = 0;
		hits = 0;
		tally_rng_shuffle_u32(&rng, t.order, n);
		rc = train_epoch(m, d, &t, n, o, global, &loss, &hits);
	}
	if (!rc && !all_finite(m->params, m->n_params))
		rc = tally_err(TALLY_ENONFINITE, "training diverged: a parameter became non-finite "
			       "(try a lower lr)");
	if ((rc == TALLY_ENONFINITE || rc == TALLY_ESTOPPED) && t.backup)
		memcpy(m->params, t.backup, m->n_params * sizeof(float));
	if (!rc && stats) {
		stats->loss = loss / (double)n;
		stats->accuracy = (double)hits / (double)n;
		stats->examples = n;
	}
	trainer_free(&t);
	fp_mode_leave(fp_mode);
	return rc;
}
