/*
 * Durable rounds: after every applied round the coordinator writes a checkpoint (global model,
 * optimizer, round number, random-generator state, run configuration and worker roster) into
 * state_dir/checkpoints, atomically and checksummed, keeping the last few. Started again on the
 * same state folder it resumes from the newest checkpoint that reads back intact, saying in the
 * log which one it used and why it skipped any newer one.
 */
#include "coord.h"

#include "tally/checkpoint.h"
#include "tally/error.h"
#include "tally/fs.h"
#include "tally/log.h"

#include <dirent.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEEP_CHECKPOINTS 3
#define CKPT_PREFIX "round-"
#define CKPT_SUFFIX ".ckpt"

static void ckpt_path(const coord *c, uint64_t round, char *out, size_t size)
{
	snprintf(out, size, "%s/checkpoints/" CKPT_PREFIX "%020" PRIu64 CKPT_SUFFIX, c->cfg.state_dir, round);
}

/* The run configuration as JSON, field by field from the schema. */
static json_t *config_json(const coord *c)
{
	json_t *o = json_object();

	for (size_t i = 0; o && i < coord_schema_len; i++) {
		const tally_cfg_field *f = &coord_schema[i];
		const void *p = (const char *)&c->cfg + f->offset;
		json_t *v = f->type == TALLY_CFG_STRING ? json_string(p)
			    : f->type == TALLY_CFG_INT	  ? json_integer(*(const int64_t *)p)
			    : f->type == TALLY_CFG_DOUBLE ? json_real(*(const double *)p)
							  : json_boolean(*(const bool *)p);

		json_object_set_new(o, f->key, v);
	}
	return o;
}

static json_t *roster_json(const coord *c)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < c->n_workers; i++)
		json_array_append_new(a, json_pack("{s:s, s:I}", "name", c->workers[i].name, "examples",
						   (json_int_t)c->workers[i].examples));
	return a;
}

static json_t *rng_json(const tally_rng *r)
{
	json_t *a = json_array();
	char hex[17];

	for (int i = 0; a && i < 4; i++) {
		snprintf(hex, sizeof(hex), "%016" PRIx64, r->s[i]);
		json_array_append_new(a, json_string(hex));
	}
	return a;
}

/* Deletes checkpoints older than the newest KEEP_CHECKPOINTS. */
static void prune(const coord *c)
{
	char path[1200];

	if (c->round <= KEEP_CHECKPOINTS)
		return;
	for (uint64_t r = c->round - KEEP_CHECKPOINTS; r > 0; r--) {
		ckpt_path(c, r, path, sizeof(path));
		if (unlink(path) < 0)
			break; /* older ones went before */
	}
}

int coord_state_save(coord *c)
{
	char path[1200], arch[TALLY_ARCH_MAX], *text;
	json_t *o;
	int rc;

	snprintf(path, sizeof(path), "%s/checkpoints", c->cfg.state_dir);
	if ((rc = tally_mkdir_p(path, 0700)))
		return rc;
	tally_model_arch_format(c->global, arch, sizeof(arch));
	o = json_pack("{s:s, s:s, s:I, s:s, s:I, s:s, s:o, s:f, s:o, s:o}", "format", "tally-checkpoint-v1",
		      "run_id", c->cfg.run_id, "round", (json_int_t)c->round, "arch", arch, "n_params",
		      (json_int_t)c->global->n_params, "optimizer", "fedavg", "rng", rng_json(&c->select_rng),
		      "best_accuracy", c->best_accuracy, "config", config_json(c), "workers", roster_json(c));
	text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(o);
	if (!text)
		return TALLY_ENOMEM;
	ckpt_path(c, c->round, path, sizeof(path));
	rc = tally_ckpt_write(path, text, c->global->params, c->global->n_params * sizeof(float));
	free(text);
	if (rc == 0)
		prune(c);
	return rc;
}

static int cmp_desc(const void *a, const void *b)
{
	return strcmp(*(char *const *)b, *(char *const *)a);
}

/* Names of the checkpoint files, newest first. */
static int list_checkpoints(const coord *c, char ***names, size_t *n)
{
	char dir[1100];
	DIR *d;
	struct dirent *e;
	size_t cap = 0;

	*names = NULL;
	*n = 0;
	snprintf(dir, sizeof(dir), "%s/checkpoints", c->cfg.state_dir);
	d = opendir(dir);
	if (!d)
		return 0; /* a new run */
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);

		if (strncmp(e->d_name, CKPT_PREFIX, 6) != 0 || len < 12 || strcmp(e->d_name + len - 5, CKPT_SUFFIX) != 0)
			continue;
		if (*n == cap) {
			char **nn = realloc(*names, (cap = cap ? cap * 2 : 8) * sizeof(char *));

			if (!nn)
				break;
			*names = nn;
		}
		(*names)[(*n)++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(*names, *n, sizeof(char *), cmp_desc);
	return 0;
}

/* Checks a checkpoint's header against this coordinator's model and takes its state. */
static int adopt(coord *c, const char *json, const uint8_t *data, size_t len, const char *path)
{
	char arch[TALLY_ARCH_MAX];
	json_error_t jerr;
	json_t *o = json_loads(json, 0, &jerr), *rng;
	const char *run_id = NULL, *ck_arch = NULL;
	json_int_t round = -1, n_params = -1;
	double best = 0;
	int rc = 0;

	tally_model_arch_format(c->global, arch, sizeof(arch));
	if (!o || json_unpack(o, "{s:s, s:I, s:s, s:I, s:F, s:o}", "run_id", &run_id, "round", &round, "arch",
			      &ck_arch, "n_params", &n_params, "best_accuracy", &best, "rng", &rng) != 0)
		rc = tally_err(TALLY_EFORMAT, "%s: header is not a tally checkpoint", path);
	else if (strcmp(ck_arch, arch) != 0 || (size_t)n_params != c->global->n_params ||
		 len != c->global->n_params * sizeof(float))
		rc = tally_err(TALLY_ESHAPE, "%s holds a %s model; this coordinator is configured for %s", path,
			       ck_arch, arch);
	else if (round < 1 || strlen(run_id) >= sizeof(c->cfg.run_id) || json_array_size(rng) != 4)
		rc = tally_err(TALLY_EFORMAT, "%s: round, run id or generator state out of range", path);
	for (size_t i = 0; rc == 0 && i < 4; i++)
		c->select_rng.s[i] = strtoull(json_string_value(json_array_get(rng, i)) ?: "0", NULL, 16);
	if (rc == 0) {
		memcpy(c->global->params, data, len);
		c->round = (uint64_t)round;
		c->best_accuracy = best;
		if (c->cfg.run_id[0] && strcmp(c->cfg.run_id, run_id) != 0)
			tally_warn("configured run id %s differs from the checkpoint's; going on with %s", c->cfg.run_id, run_id);
		snprintf(c->cfg.run_id, sizeof(c->cfg.run_id), "%s", run_id);
	}
	json_decref(o);
	return rc;
}

int coord_state_resume(coord *c)
{
	char **names, path[1400], *json = NULL;
	const uint8_t *data;
	uint8_t *buf = NULL;
	size_t n, len, max = c->global->n_params * sizeof(float) + TALLY_CKPT_JSON_MAX + 4096;
	int rc = list_checkpoints(c, &names, &n), found = 0;

	for (size_t i = 0; rc == 0 && i < n && !found; i++) {
		snprintf(path, sizeof(path), "%s/checkpoints/%s", c->cfg.state_dir, names[i]);
		if (tally_ckpt_read(path, max, &buf, &json, &data, &len) == 0 && adopt(c, json, data, len, path) == 0) {
			found = 1;
			tally_info("resuming run %s after round %llu from %s", c->cfg.run_id, (unsigned long long)c->round, path);
		} else {
			tally_warn("checkpoint unusable: %s; trying the one before it", tally_errmsg());
		}
		free(buf);
		free(json);
		buf = NULL;
		json = NULL;
	}
	if (rc == 0 && n > 0 && !found)
		rc = tally_err(TALLY_EFORMAT, "no usable checkpoint among the %zu in %s/checkpoints; move that folder "
			       "away to start a new run", n, c->cfg.state_dir);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}
