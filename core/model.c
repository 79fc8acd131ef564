/*
 * The MLP's parameter layout, allocation, initialisation and architecture strings. Training lives
 * in ml.c, file I/O in safetensors.c.
 */
#include "tally/model.h"
#include "tally/error.h"
#include "tally/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WIDTH (1u << 20)
#define MAX_PARAMS ((size_t)1 << 31)

int tally_model_new(tally_model **out, const uint32_t *dims, uint32_t n_layers)
{
	tally_model *m;
	size_t n = 0;

	if (n_layers < 1 || n_layers > TALLY_MODEL_MAX_LAYERS)
		return tally_err(TALLY_ESHAPE, "a model needs 1 to %d layers, not %u",
				 TALLY_MODEL_MAX_LAYERS, n_layers);
	for (uint32_t l = 0; l <= n_layers; l++)
		if (dims[l] < 1 || dims[l] > MAX_WIDTH)
			return tally_err(TALLY_ESHAPE, "layer width %u is outside 1..%u", dims[l], MAX_WIDTH);
	for (uint32_t l = 0; l < n_layers; l++) {
		n += (size_t)dims[l + 1] * dims[l] + dims[l + 1];
		if (n > MAX_PARAMS)
			return tally_err(TALLY_ESHAPE, "model has more than 2^31 parameters");
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return TALLY_ENOMEM;
	m->params = aligned_alloc(64, (n * sizeof(float) + 63) & ~(size_t)63);
	if (!m->params) {
		free(m);
		return TALLY_ENOMEM;
	}
	memset(m->params, 0, n * sizeof(float));
	m->n_layers = n_layers;
	memcpy(m->dims, dims, (n_layers + 1) * sizeof(uint32_t));
	m->n_params = n;
	*out = m;
	return 0;
}

void tally_model_destroy(tally_model **mp)
{
	if (!mp || !*mp)
		return;
	free((*mp)->params);
	free(*mp);
	*mp = NULL;
}

int tally_model_clone(tally_model **out, const tally_model *m)
{
	tally_model *c;
	int rc = tally_model_new(&c, m->dims, m->n_layers);

	if (rc)
		return rc;
	memcpy(c->params, m->params, m->n_params * sizeof(float));
	c->round = m->round;
	memcpy(c->run_id, m->run_id, sizeof(c->run_id));
	*out = c;
	return 0;
}

size_t tally_model_weight_offset(const tally_model *m, uint32_t layer)
{
	size_t off = 0;

	for (uint32_t l = 0; l < layer; l++)
		off += (size_t)m->dims[l + 1] * m->dims[l] + m->dims[l + 1];
	return off;
}

size_t tally_model_bias_offset(const tally_model *m, uint32_t layer)
{
	return tally_model_weight_offset(m, layer) + (size_t)m->dims[layer + 1] * m->dims[layer];
}

void tally_model_init(tally_model *m, uint64_t seed)
{
	tally_rng rng;

	tally_rng_seed(&rng, seed, 0x1417);
	for (uint32_t l = 0; l < m->n_layers; l++) {
		float bound = 1.0f / sqrtf((float)m->dims[l]);
		float *p = m->params + tally_model_weight_offset(m, l);
		size_t n = (size_t)m->dims[l + 1] * m->dims[l] + m->dims[l + 1];

		for (size_t i = 0; i < n; i++)
			p[i] = (float)((2.0 * tally_rng_uniform(&rng) - 1.0) * bound);
	}
}

int tally_model_arch_format(const tally_model *m, char *buf, size_t size)
{
	size_t used = (size_t)snprintf(buf, size, "mlp:%u", m->dims[0]);

	for (uint32_t l = 1; l <= m->n_layers && used < size; l++)
		used += (size_t)snprintf(buf + used, size - used, "-%u", m->dims[l]);
	return used < size ? 0 : tally_err(TALLY_ERANGE, "architecture string too long");
}

int tally_model_arch_parse(const char *s, uint32_t *dims, uint32_t *n_layers)
{
	const char *p;
	uint32_t n = 0;

	if (strncmp(s, "mlp:", 4) != 0)
		return tally_err(TALLY_ECONFIG, "architecture '%s' does not start with 'mlp:'", s);
	p = s + 4;
	for (;;) {
		char *end;
		unsigned long v;

		if (*p < '0' || *p > '9')
			return tally_err(TALLY_ECONFIG, "architecture '%s': expected a layer width at '%s'", s, p);
		v = strtoul(p, &end, 10);
		if (v < 1 || v > MAX_WIDTH)
			return tally_err(TALLY_ECONFIG, "architecture '%s': width %lu outside 1..%u", s, v, MAX_WIDTH);
		if (n > TALLY_MODEL_MAX_LAYERS)
			return tally_err(TALLY_ECONFIG, "architecture '%s': more than %d layers", s, TALLY_MODEL_MAX_LAYERS);
		dims[n++] = (uint32_t)v;
		if (*end == '\0')
			break;
		if (*end != '-')
			return tally_err(TALLY_ECONFIG, "architecture '%s': unexpected '%c'", s, *end);
		p = end + 1;
	}
	if (n < 2)
		return tally_err(TALLY_ECONFIG, "architecture '%s' needs at least inputs and classes", s);
	*n_layers = n - 1;
	return 0;
}
