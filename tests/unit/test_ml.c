/*
 * Tests of the built-in trainer (core/ml.c): analytic gradients against central finite differences
 * of a naive double-precision reference, a hand-computed known answer, the torch.optim.SGD step
 * with momentum and weight decay, FedProx, determinism, error codes, and learning on the real
 * Fashion-MNIST (TALLY_FMNIST_DIR, default /usr/share/datasets/fashion-mnist; skipped if absent).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tally/data.h"
#include "tally/error.h"
#include "tally/ml.h"
#include "tally/model.h"
#include "tally/rng.h"

/* ---- helpers ---------------------------------------------------------------------------- */

/* A hand-built dataset of n rows: uniform features in [0,1), uniform labels below classes. */
static tally_dataset *random_dataset(uint32_t n, uint32_t dim, uint32_t classes, uint64_t seed)
{
	tally_dataset *d = calloc(1, sizeof(*d));
	tally_rng rng;

	assert_non_null(d);
	d->n = n;
	d->dim = dim;
	d->n_classes = classes;
	d->x = malloc((size_t)n * dim * sizeof(float));
	d->y = malloc(n);
	assert_true(d->x && d->y);
	tally_rng_seed(&rng, seed, 1);
	for (size_t i = 0; i < (size_t)n * dim; i++)
		d->x[i] = (float)tally_rng_uniform(&rng);
	for (uint32_t i = 0; i < n; i++)
		d->y[i] = (uint8_t)tally_rng_below(&rng, classes);
	return d;
}

static void free_dataset(tally_dataset *d)
{
	free(d->x);
	free(d->y);
	free(d);
}

static tally_model *new_model(const uint32_t *dims, uint32_t n_layers, uint64_t seed)
{
	tally_model *m = NULL;

	assert_int_equal(tally_model_new(&m, dims, n_layers), 0);
	tally_model_init(m, seed);
	return m;
}

static tally_train_opts default_opts(void)
{
	tally_train_opts o = {.epochs = 1, .batch_size = 8, .lr = 0.1f, .momentum = 0.9f,
			      .weight_decay = 0, .prox_mu = 0, .seed = 7};
	return o;
}

static double distance(const float *a, const float *b, size_t n)
{
	double s = 0;

	for (size_t i = 0; i < n; i++)
		s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
	return sqrt(s);
}

/*
 * The mean cross-entropy of the MLP with parameters p (m's layout, in double) over rows
 * idx[0..n) of d, written as plainly as possible, independently of ml.c.
 */
static double ref_loss(const tally_model *m, const double *p, const tally_dataset *d,
		       const uint32_t *idx, size_t n)
{
	double a[64], z[64], total = 0;

	for (size_t i = 0; i < n; i++) {
		uint32_t row = idx ? idx[i] : (uint32_t)i;
		double mx = -INFINITY, sum = 0;
		uint32_t k = m->dims[m->n_layers];

		for (uint32_t j = 0; j < d->dim; j++)
			a[j] = d->x[(size_t)row * d->dim + j];
		for (uint32_t l = 0; l < m->n_layers; l++) {
			const double *w = p + tally_model_weight_offset(m, l);
			const double *b = p + tally_model_bias_offset(m, l);

			for (uint32_t o = 0; o < m->dims[l + 1]; o++) {
				z[o] = b[o];
				for (uint32_t j = 0; j < m->dims[l]; j++)
					z[o] += w[(size_t)o * m->dims[l] + j] * a[j];
			}
			for (uint32_t o = 0; o < m->dims[l + 1]; o++)
				a[o] = (l + 1 < m->n_layers && z[o] < 0) ? 0 : z[o];
		}
		for (uint32_t o = 0; o < k; o++)
			mx = a[o] > mx ? a[o] : mx;
		for (uint32_t o = 0; o < k; o++)
			sum += exp(a[o] - mx);
		total += mx + log(sum) - a[d->y[row]];
	}
	return total / (double)n;
}

/* Compares tally_loss_grad with central differences of ref_loss, parameter by parameter. */
static void check_gradient(const uint32_t *dims, uint32_t n_layers, uint32_t rows,
			   const uint32_t *idx, size_t n)
{
	tally_model *m = new_model(dims, n_layers, 11);
	tally_dataset *d = random_dataset(rows, dims[0], dims[n_layers], 5);
	float *grad = malloc(m->n_params * sizeof(float));
	double *p = malloc(m->n_params * sizeof(double));
	double loss = 0, worst = 0, h = 1e-5;

	assert_true(grad && p);
	for (size_t i = 0; i < m->n_params; i++)
		p[i] = m->params[i];
	assert_int_equal(tally_loss_grad(m, d, idx, n, grad, &loss), 0);
	assert_true(fabs(loss - ref_loss(m, p, d, idx, n)) < 1e-5);
	for (size_t i = 0; i < m->n_params; i++) {
		double up, down, fd, err;

		p[i] = m->params[i] + h;
		up = ref_loss(m, p, d, idx, n);
		p[i] = m->params[i] - h;
		down = ref_loss(m, p, d, idx, n);
		p[i] = m->params[i];
		fd = (up - down) / (2 * h);
		/* float32 sums over a few hundred rows: relative 1e-3, absolute 1e-5 floor */
		err = fabs(grad[i] - fd) / (fabs(fd) + 1e-2);
		worst = err > worst ? err : worst;
		if (fabs(grad[i] - fd) > 1e-5 + 1e-3 * fabs(fd))
			fail_msg("param %zu: analytic %.8g vs finite difference %.8g", i, grad[i], fd);
	}
	print_message("%zu params, worst scaled error %.2e\n", m->n_params, worst);
	free(p);
	free(grad);
	free_dataset(d);
	tally_model_destroy(&m);
}

/* ---- gradients -------------------------------------------------------------------------- */

/* Softmax regression 5-3 over 300 rows: more than one 256-row chunk, so gradients accumulate. */
static void test_grad_softmax_regression(void **state)
{
	const uint32_t dims[] = {5, 3};

	check_gradient(dims, 1, 300, NULL, 300);
}

/* MLP 5-4-3-3 (two hidden ReLU layers) over 300 rows chosen (with repeats) through idx. */
static void test_grad_mlp(void **state)
{
	const uint32_t dims[] = {5, 4, 3, 3};
	uint32_t idx[300];
	tally_rng rng;

	tally_rng_seed(&rng, 3, 0);
	for (size_t i = 0; i < 300; i++)
		idx[i] = (uint32_t)tally_rng_below(&rng, 120);
	check_gradient(dims, 3, 120, idx, 300);
}

/*
 * Known answer, softmax regression 2-2: W = [[1, 0], [0, 0]], b = [0, 0];
 * x1 = [1, 0], y1 = 0 -> z1 = [1, 0], softmax = [c, a] with c = sigma(1) = 0.7310585786,
 *                        a = 1 - c = 0.2689414214; loss1 = -ln c = 0.3132616875; dz1 = [-a, a]
 * x2 = [-1, 1], y2 = 0 -> z2 = [-1, 0], softmax = [a, c]; loss2 = -ln a = 1.3132616875;
 *                        dz2 = [a - 1, c] = [-c, c]
 * mean loss = 0.8132616875; accuracy 1/2 (x2 is predicted as class 1).
 * dW = (dz1 x1^T + dz2 x2^T) / 2 = ([[-a, 0], [a, 0]] + [[c, -c], [-c, c]]) / 2
 *    = [[(c - a)/2, -c/2], [(a - c)/2, c/2]] = [[0.2310585786, -0.3655292893],
 *                                               [-0.2310585786, 0.3655292893]]
 * db = (dz1 + dz2) / 2 = [-(a + c)/2, (a + c)/2] = [-0.5, 0.5]
 */
static void test_known_answer(void **state)
{
	const uint32_t dims[] = {2, 2};
	float x[] = {1, 0, -1, 1};
	uint8_t y[] = {0, 0};
	tally_dataset d = {.n = 2, .dim = 2, .n_classes = 2, .x = x, .y = y};
	const float expect[] = {0.2310585786f, -0.3655292893f, -0.2310585786f, 0.3655292893f,
				-0.5f, 0.5f};
	tally_model *m = new_model(dims, 1, 0);
	float grad[6];
	double loss = 0, acc = 0;

	memcpy(m->params, (float[]){1, 0, 0, 0, 0, 0}, sizeof(grad));
	assert_int_equal(tally_loss_grad(m, &d, NULL, 2, grad, &loss), 0);
	assert_float_equal(loss, 0.8132616875, 1e-6);
	for (int i = 0; i < 6; i++)
		assert_float_equal(grad[i], expect[i], 1e-6);
	assert_int_equal(tally_evaluate(m, &d, NULL, 2, &loss, &acc), 0);
	assert_float_equal(loss, 0.8132616875, 1e-6);
	assert_float_equal(acc, 0.5, 0);
	tally_model_destroy(&m);
}

/*
 * Log-softmax must not overflow: softmax regression 1-2 with W = [1000, 0], b = [0, 0] on x = [1],
 * y = 1 has logits [1000, 0]; loss = 1000 + ln(1 + e^-1000) = 1000 (exp(1000) alone overflows),
 * softmax = [1, e^-1000] = [1, 0], so dz = [1, -1] and dW = dz x = [1, -1], db = [1, -1].
 */
static void test_stable_log_softmax(void **state)
{
	const uint32_t dims[] = {1, 2};
	float x[] = {1};
	uint8_t y[] = {1};
	tally_dataset d = {.n = 1, .dim = 1, .n_classes = 2, .x = x, .y = y};
	const float expect[] = {1, -1, 1, -1};
	tally_model *m = new_model(dims, 1, 0);
	float grad[4];
	double loss = 0;

	memcpy(m->params, (float[]){1000, 0, 0, 0}, sizeof(grad));
	assert_int_equal(tally_loss_grad(m, &d, NULL, 1, grad, &loss), 0);
	assert_float_equal(loss, 1000.0, 1e-9);
	for (int i = 0; i < 4; i++)
		assert_float_equal(grad[i], expect[i], 0);
	tally_model_destroy(&m);
}

/* ---- the optimizer ---------------------------------------------------------------------- */

/*
 * Two torch.optim.SGD steps (lr 0.1, momentum 0.9, weight_decay 0.01) of softmax regression 1-2
 * on the single example x = [2], y = 0 (batch 1, two epochs), params [w0, w1, b0, b1] starting at
 * [0.1, -0.2, 0.05, 0]. Gradient of the loss: dz = softmax(z) - onehot, dW = 2 dz, db = dz.
 * Step 1: z = [0.25, -0.4], softmax = [0.65701046, 0.34298954],
 *   g = [-0.68597907, 0.68597907, -0.34298954, 0.34298954]; d_p = g + 0.01 p
 *     = [-0.68497907, 0.68397907, -0.34248954, 0.34298954] = v (torch's first buffer);
 *   p = p - 0.1 v = [0.16849791, -0.26839791, 0.08424895, -0.03429895].
 * Step 2: z = [0.42124477, -0.57109477], softmax = [0.72954978, 0.27045022],
 *   g = [-0.54090045, 0.54090045, -0.27045022, 0.27045022];
 *   d_p = [-0.53921547, 0.53821647, -0.26960773, 0.27010723];
 *   v = 0.9 v + d_p = [-1.15569663, 1.15379763, -0.57784832, 0.57879782];
 *   p = p - 0.1 v = [0.28406757, -0.38377767, 0.14203379, -0.09217874].
 */
static void test_sgd_momentum_weight_decay(void **state)
{
	const uint32_t dims[] = {1, 2};
	float x[] = {2};
	uint8_t y[] = {0};
	tally_dataset d = {.n = 1, .dim = 1, .n_classes = 2, .x = x, .y = y};
	const float expect[] = {0.28406757f, -0.38377767f, 0.14203379f, -0.09217874f};
	tally_train_opts o = {.epochs = 2, .batch_size = 1, .lr = 0.1f, .momentum = 0.9f,
			      .weight_decay = 0.01f, .seed = 1};
	tally_model *m = new_model(dims, 1, 0);
	tally_train_stats st;

	memcpy(m->params, (float[]){0.1f, -0.2f, 0.05f, 0}, 4 * sizeof(float));
	assert_int_equal(tally_train(m, &d, NULL, 1, &o, NULL, &st), 0);
	for (int i = 0; i < 4; i++)
		assert_float_equal(m->params[i], expect[i], 1e-6);
	/* the stats of the last epoch are measured before its step: -ln 0.72954978 = 0.31532767 */
	assert_float_equal(st.loss, 0.31532767, 1e-6);
	assert_float_equal(st.accuracy, 1.0, 0);
	assert_int_equal(st.examples, 1);
	tally_model_destroy(&m);
}

/* Plain SGD without momentum on the same example: one step p -= lr * g. */
static void test_sgd_plain(void **state)
{
	const uint32_t dims[] = {1, 2};
	float x[] = {2};
	uint8_t y[] = {0};
	tally_dataset d = {.n = 1, .dim = 1, .n_classes = 2, .x = x, .y = y};
	const float expect[] = {0.1f + 0.068597907f, -0.2f - 0.068597907f, 0.05f + 0.034298954f,
				-0.034298954f};
	tally_train_opts o = {.epochs = 1, .batch_size = 4, .lr = 0.1f, .seed = 1};
	tally_model *m = new_model(dims, 1, 0);

	memcpy(m->params, (float[]){0.1f, -0.2f, 0.05f, 0}, 4 * sizeof(float));
	assert_int_equal(tally_train(m, &d, NULL, 1, &o, NULL, NULL), 0);
	for (int i = 0; i < 4; i++)
		assert_float_equal(m->params[i], expect[i], 1e-6);
	tally_model_destroy(&m);
}

/* ---- FedProx and determinism ------------------------------------------------------------ */

/* Trains a copy of m with prox_mu against global and returns how far it moved from global. */
static double prox_drift(const tally_model *m, const tally_dataset *d, float prox_mu)
{
	tally_model *c = NULL;
	tally_train_opts o = default_opts();
	double dist;

	o.epochs = 5;
	o.momentum = 0;
	o.prox_mu = prox_mu;
	assert_int_equal(tally_model_clone(&c, m), 0);
	assert_int_equal(tally_train(c, d, NULL, d->n, &o, m->params, NULL), 0);
	dist = distance(c->params, m->params, m->n_params);
	tally_model_destroy(&c);
	return dist;
}

/*
 * With lr * prox_mu = 1 every step lands at global - lr * g, so the model cannot wander off;
 * without the term it drifts over all 40 steps.
 */
static void test_fedprox_stays_near_global(void **state)
{
	const uint32_t dims[] = {6, 8, 4};
	tally_model *m = new_model(dims, 2, 2);
	tally_dataset *d = random_dataset(64, 6, 4, 9);
	double free_drift = prox_drift(m, d, 0), prox = prox_drift(m, d, 10.0f);

	print_message("drift without prox %.4f, with prox_mu 10: %.4f\n", free_drift, prox);
	assert_true(free_drift > 0.25);
	assert_true(prox < 0.2 * free_drift);
	free_dataset(d);
	tally_model_destroy(&m);
}

/* With prox_mu = 0 the global model is never read: NULL and garbage give the same bits. */
static void test_fedprox_zero_ignores_global(void **state)
{
	const uint32_t dims[] = {6, 8, 4};
	tally_model *a = new_model(dims, 2, 2), *b = NULL;
	tally_dataset *d = random_dataset(64, 6, 4, 9);
	tally_train_opts o = default_opts();
	float *junk = malloc(a->n_params * sizeof(float));

	for (size_t i = 0; i < a->n_params; i++)
		junk[i] = 1e6f * (float)i;
	assert_int_equal(tally_model_clone(&b, a), 0);
	assert_int_equal(tally_train(a, d, NULL, d->n, &o, NULL, NULL), 0);
	assert_int_equal(tally_train(b, d, NULL, d->n, &o, junk, NULL), 0);
	assert_memory_equal(a->params, b->params, a->n_params * sizeof(float));
	free(junk);
	free_dataset(d);
	tally_model_destroy(&a);
	tally_model_destroy(&b);
}

/* The same seed gives the same bits; another seed another shuffle, hence other parameters. */
static void test_determinism(void **state)
{
	const uint32_t dims[] = {6, 8, 4};
	tally_model *a = new_model(dims, 2, 3), *b = NULL, *c = NULL;
	tally_dataset *d = random_dataset(100, 6, 4, 4);
	tally_train_opts o = default_opts();
	tally_train_stats sa, sb;

	o.epochs = 3;
	o.weight_decay = 1e-3f;
	assert_int_equal(tally_model_clone(&b, a), 0);
	assert_int_equal(tally_model_clone(&c, a), 0);
	assert_int_equal(tally_train(a, d, NULL, d->n, &o, NULL, &sa), 0);
	assert_int_equal(tally_train(b, d, NULL, d->n, &o, NULL, &sb), 0);
	assert_memory_equal(a->params, b->params, a->n_params * sizeof(float));
	assert_memory_equal(&sa, &sb, sizeof(sa));
	o.seed++;
	assert_int_equal(tally_train(c, d, NULL, d->n, &o, NULL, NULL), 0);
	assert_memory_not_equal(a->params, c->params, a->n_params * sizeof(float));
	free_dataset(d);
	tally_model_destroy(&a);
	tally_model_destroy(&b);
	tally_model_destroy(&c);
}

/* Training on a subset via idx uses only those rows: the same as training on a copy of them. */
static void test_idx_matches_subset(void **state)
{
	const uint32_t dims[] = {6, 5, 3};
	const uint32_t idx[] = {9, 2, 2, 40, 17, 33, 8, 0, 21, 5};
	tally_model *a = new_model(dims, 2, 3), *b = NULL;
	tally_dataset *d = random_dataset(50, 6, 3, 4), *sub = NULL;
	tally_train_opts o = default_opts();

	o.batch_size = 3;
	assert_int_equal(tally_dataset_subset(&sub, d, idx, 10), 0);
	assert_int_equal(tally_model_clone(&b, a), 0);
	assert_int_equal(tally_train(a, d, idx, 10, &o, NULL, NULL), 0);
	assert_int_equal(tally_train(b, sub, NULL, 10, &o, NULL, NULL), 0);
	assert_memory_equal(a->params, b->params, a->n_params * sizeof(float));
	tally_dataset_destroy(&sub);
	free_dataset(d);
	tally_model_destroy(&a);
	tally_model_destroy(&b);
}

/* ---- errors ----------------------------------------------------------------------------- */

/* Each bad field of the options is refused with TALLY_EINVAL and a message naming it. */
static void test_bad_opts(void **state)
{
	static const struct {
		const char *field;
		tally_train_opts o;
	} cases[] = {
		{"epochs", {.epochs = 0, .batch_size = 1, .lr = 0.1f}},
		{"batch_size", {.epochs = 1, .batch_size = 0, .lr = 0.1f}},
		{"batch_size", {.epochs = 1, .batch_size = TALLY_TRAIN_MAX_BATCH + 1, .lr = 0.1f}},
		{"lr", {.epochs = 1, .batch_size = 1, .lr = 0}},
		{"lr", {.epochs = 1, .batch_size = 1, .lr = NAN}},
		{"momentum", {.epochs = 1, .batch_size = 1, .lr = 0.1f, .momentum = 1.0f}},
		{"momentum", {.epochs = 1, .batch_size = 1, .lr = 0.1f, .momentum = -0.1f}},
		{"weight_decay", {.epochs = 1, .batch_size = 1, .lr = 0.1f, .weight_decay = -1}},
		{"prox_mu", {.epochs = 1, .batch_size = 1, .lr = 0.1f, .prox_mu = INFINITY}},
	};
	tally_train_opts good = default_opts();

	assert_int_equal(tally_train_opts_check(&good), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(tally_train_opts_check(&cases[i].o), TALLY_EINVAL);
		assert_non_null(strstr(tally_errmsg(), cases[i].field));
	}
}

/* Bad rows or models give the documented code and leave the model untouched. */
static void test_bad_input(void **state)
{
	const uint32_t dims[] = {6, 5, 3}, wide[] = {7, 5, 3};
	const uint32_t far[] = {1, 50};
	tally_model *m = new_model(dims, 2, 3), *w = new_model(wide, 2, 3), *orig = NULL;
	tally_dataset *d = random_dataset(50, 6, 3, 4);
	tally_train_opts o = default_opts();
	float *grad = malloc(m->n_params * sizeof(float) + 64);
	double loss;

	assert_int_equal(tally_model_clone(&orig, m), 0);
	assert_int_equal(tally_train(w, d, NULL, 50, &o, NULL, NULL), TALLY_ESHAPE);
	assert_int_equal(tally_evaluate(w, d, NULL, 50, &loss, NULL), TALLY_ESHAPE);
	assert_int_equal(tally_loss_grad(w, d, NULL, 50, grad, &loss), TALLY_ESHAPE);
	assert_int_equal(tally_train(m, d, far, 2, &o, NULL, NULL), TALLY_ERANGE);
	assert_int_equal(tally_train(m, d, NULL, 49, &o, NULL, NULL), TALLY_EINVAL);
	assert_int_equal(tally_train(m, d, NULL, 0, &o, NULL, NULL), TALLY_EINVAL);
	d->y[17] = 3;
	assert_int_equal(tally_train(m, d, NULL, 50, &o, NULL, NULL), TALLY_ESHAPE);
	assert_non_null(strstr(tally_errmsg(), "label 3"));
	assert_int_equal(tally_evaluate(m, d, NULL, 50, &loss, NULL), TALLY_ESHAPE);
	d->y[17] = 2;
	o.prox_mu = 0.5f;
	assert_int_equal(tally_train(m, d, NULL, 50, &o, NULL, NULL), TALLY_EINVAL);
	o.prox_mu = 0;
	o.lr = -1;
	assert_int_equal(tally_train(m, d, NULL, 50, &o, NULL, NULL), TALLY_EINVAL);
	assert_memory_equal(m->params, orig->params, m->n_params * sizeof(float));
	free(grad);
	free_dataset(d);
	tally_model_destroy(&m);
	tally_model_destroy(&w);
	tally_model_destroy(&orig);
}

/* A learning rate that blows the model up gives TALLY_ENONFINITE and the model as it was. */
static void test_divergence_restores(void **state)
{
	const uint32_t dims[] = {6, 16, 3};
	tally_model *m = new_model(dims, 2, 3), *orig = NULL;
	tally_dataset *d = random_dataset(50, 6, 3, 4);
	tally_train_opts o = default_opts();

	o.lr = 1e30f;
	o.epochs = 5;
	assert_int_equal(tally_model_clone(&orig, m), 0);
	assert_int_equal(tally_train(m, d, NULL, 50, &o, NULL, NULL), TALLY_ENONFINITE);
	assert_memory_equal(m->params, orig->params, m->n_params * sizeof(float));
	free_dataset(d);
	tally_model_destroy(&m);
	tally_model_destroy(&orig);
}

/* ---- learning on Fashion-MNIST ---------------------------------------------------------- */

static tally_dataset *fmnist_train, *fmnist_test;

static int load_fmnist(void **state)
{
	const char *dir = getenv("TALLY_FMNIST_DIR");

	if (!dir || !*dir)
		dir = "/usr/share/datasets/fashion-mnist";
	if (tally_dataset_load_fmnist(&fmnist_train, dir, true) ||
	    tally_dataset_load_fmnist(&fmnist_test, dir, false))
		print_message("Fashion-MNIST not loaded from %s: %s\n", dir, tally_errmsg());
	return 0;
}

static int free_fmnist(void **state)
{
	tally_dataset_destroy(&fmnist_train);
	tally_dataset_destroy(&fmnist_test);
	return 0;
}

/*
 * Trains dims with SGD (batch 32, momentum 0.9) on the first n training rows and returns the test
 * accuracy.
 */
static double fmnist_accuracy(const uint32_t *dims, uint32_t n_layers, size_t n, uint32_t epochs,
			      float lr)
{
	tally_model *m = new_model(dims, n_layers, 1);
	tally_train_opts o = {.epochs = epochs, .batch_size = 32, .lr = lr, .momentum = 0.9f,
			      .seed = 1};
	uint32_t *idx = malloc(n * sizeof(uint32_t));
	tally_train_stats st;
	double acc = 0, loss = 0;

	for (size_t i = 0; i < n; i++)
		idx[i] = (uint32_t)i;
	assert_int_equal(tally_train(m, fmnist_train, idx, n, &o, NULL, &st), 0);
	assert_int_equal(tally_evaluate(m, fmnist_test, NULL, fmnist_test->n, &loss, &acc), 0);
	print_message("train loss %.4f acc %.4f, test loss %.4f acc %.4f\n", st.loss, st.accuracy,
		      loss, acc);
	assert_int_equal(st.examples, n);
	free(idx);
	tally_model_destroy(&m);
	return acc;
}

static void test_fmnist_softmax_regression(void **state)
{
	const uint32_t dims[] = {784, 10};

	if (!fmnist_train || !fmnist_test)
		skip();
	assert_true(fmnist_accuracy(dims, 1, fmnist_train->n, 1, 0.05f) > 0.75);
}

static void test_fmnist_mlp(void **state)
{
	const uint32_t dims[] = {784, 128, 10};

	if (!fmnist_train || !fmnist_test)
		skip();
	/* 83.7% here, 82.9-83.6% with other shuffling seeds; lr 0.05 ends noisier (78-83%) */
	assert_true(fmnist_accuracy(dims, 2, 20000, 2, 0.015f) > 0.82);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grad_softmax_regression),
		cmocka_unit_test(test_grad_mlp),
		cmocka_unit_test(test_known_answer),
		cmocka_unit_test(test_stable_log_softmax),
		cmocka_unit_test(test_sgd_momentum_weight_decay),
		cmocka_unit_test(test_sgd_plain),
		cmocka_unit_test(test_fedprox_stays_near_global),
		cmocka_unit_test(test_fedprox_zero_ignores_global),
		cmocka_unit_test(test_determinism),
		cmocka_unit_test(test_idx_matches_subset),
		cmocka_unit_test(test_bad_opts),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_divergence_restores),
		cmocka_unit_test(test_fmnist_softmax_regression),
		cmocka_unit_test(test_fmnist_mlp),
	};

	return cmocka_run_group_tests(tests, load_fmnist, free_fmnist);
}
