/*
 * The worker's local data (loaded once, partitioned, kept) and its training thread. The thread
 * trains a copy of the global model, computes the update (trained minus global) and its digests,
 * and signals the main loop over an inproc PAIR socket.
 */
#include "worker.h"

#include "tally/secagg.h"

#include "tally/error.h"
#include "tally/log.h"
#include "tally/rng.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static int load_all(worker *w, tally_dataset **out)
{
	const worker_config *c = &w->cfg;

	if (strcmp(c->format, "fmnist") == 0)
		return tally_dataset_load_fmnist(out, c->data_dir, true);
	if (strcmp(c->format, "idx") == 0)
		return tally_dataset_load_idx(out, c->images, c->labels);
	if (strcmp(c->format, "csv") == 0)
		return tally_dataset_load_csv(out, c->csv, (uint32_t)c->csv_label_column, c->csv_header,
					      (float)c->csv_scale);
	return tally_err(TALLY_ECONFIG, "data.format '%s' is not fmnist, idx, csv or none", c->format);
}

int worker_load_data(worker *w)
{
	tally_dataset *all = NULL;
	tally_part_scheme scheme;
	uint32_t k, n, *idx = NULL;
	size_t count = 0;
	int rc;

	if (strcmp(w->cfg.format, "none") == 0) {
		if (!w->cfg.no_train)
			return tally_err(TALLY_ECONFIG, "data.format 'none' needs train.skip (--no-train)");
		return 0;
	}
	if ((rc = tally_part_spec_parse(w->cfg.partition, &k, &n)) ||
	    (rc = tally_part_scheme_parse(w->cfg.scheme, &scheme)) || (rc = load_all(w, &all)))
		return rc;
	rc = tally_partition(all->y, all->n, all->n_classes, &scheme, k, n, (uint64_t)w->cfg.data_seed, &idx, &count);
	if (rc == 0 && count == 0)
		rc = tally_err(TALLY_ECONFIG, "partition %s under %s holds no example", w->cfg.partition, w->cfg.scheme);
	if (rc == 0)
		rc = tally_dataset_subset(&w->data, all, idx, count);
	if (rc == 0)
		tally_info("data: %u examples (%s partition %s of %u), %u features, %u classes", w->data->n,
			   w->cfg.scheme, w->cfg.partition, all->n, w->data->dim, w->data->n_classes);
	free(idx);
	tally_dataset_destroy(&all);
	return rc;
}

void worker_job_free(worker_job **jp)
{
	worker_job *j;

	if (!jp || !*jp)
		return;
	j = *jp;
	tally_model_destroy(&j->model);
	free(j->global);
	free(j->update);
	tally_sa_vector_free(j->masked, j->masked ? j->payload_words : 0);
	free(j->chunk_digests);
	free(j);
	*jp = NULL;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A deterministic small update for --no-train, so that benchmarks measure coordination only. */
static void synthetic_update(worker_job *j)
{
	tally_rng rng;

	tally_rng_seed(&rng, j->opts.seed, j->round);
	for (size_t i = 0; i < j->model->n_params; i++)
		j->update[i] = (float)(tally_rng_uniform(&rng) - 0.5) * 1e-3f;
	j->stats.examples = 1;
}

static void *train_main(void *arg)
{
	worker *w = arg;
	worker_job *j = w->job;
	size_t n = j->model->n_params;
	double t0 = now_s();

	if (w->cfg.no_train) {
		synthetic_update(j);
	} else {
		j->rc = tally_train(j->model, w->data, NULL, w->data->n, &j->opts, j->global, &j->stats);
		if (j->rc)
			snprintf(j->err, sizeof(j->err), "%s", tally_errmsg());
		for (size_t i = 0; j->rc == 0 && i < n; i++)
			j->update[i] = j->model->params[i] - j->global[i];
	}
	j->payload = (const uint32_t *)j->update;
	j->payload_words = n;
	j->n_chunks = tally_chunk_count(n, TALLY_CHUNK_FLOATS);
	if (j->rc == 0 && !j->secure) /* a secure round digests its masked vector instead */
		j->rc = tally_digest_tensor(j->update, n, TALLY_CHUNK_FLOATS, j->digest, j->chunk_digests);
	j->seconds = now_s() - t0;
	zmq_send(w->pipe_thread, "", 0, 0);
	return NULL;
}

int worker_train_start(worker *w)
{
	worker_job *j = calloc(1, sizeof(*j));
	size_t n = w->n_params;
	int rc;

	if (!j)
		return TALLY_ENOMEM;
	j->round = w->round;
	j->attempt = w->attempt;
	j->secure = w->sa != NULL;
	j->opts = w->opts;
	j->opts.cancel = &j->cancel;
	/* Each partition shuffles in its own order: mix the partition into the round's seed (FNV-1a). */
	for (const char *p = w->cfg.partition; *p; p++)
		j->opts.seed = (j->opts.seed ^ (uint8_t)*p) * 0x100000001b3ULL;
	rc = tally_model_new(&j->model, w->dims, w->n_layers);
	j->global = malloc(n * sizeof(float));
	j->update = malloc(n * sizeof(float));
	j->chunk_digests = malloc(tally_chunk_count(n, TALLY_CHUNK_FLOATS) * sizeof(tally_digest));
	if (rc || !j->global || !j->update || !j->chunk_digests) {
		worker_job_free(&j);
		return rc ? rc : TALLY_ENOMEM;
	}
	memcpy(j->model->params, w->incoming, n * sizeof(float));
	memcpy(j->global, w->incoming, n * sizeof(float));
	w->job = j;
	if (pthread_create(&w->thread, NULL, train_main, w) != 0) {
		w->job = NULL;
		worker_job_free(&j);
		return tally_err(TALLY_ESYS, "cannot start the training thread");
	}
	w->thread_running = true;
	return 0;
}

worker_job *worker_train_join(worker *w)
{
	worker_job *j = w->job;

	if (!w->thread_running)
		return NULL;
	pthread_join(w->thread, NULL);
	w->thread_running = false;
	w->job = NULL;
	return j;
}
