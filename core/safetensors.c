/*
 * tally models as safetensors files (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header length N, N bytes of JSON naming each tensor's dtype, shape and byte range,
 * then the tensors' bytes. tally writes layers.0.weight, layers.0.bias, layers.1.weight, ... packed
 * in that order, which is exactly the layout of tally_model.params, so the data part is params as
 * they are; PyTorch's safetensors.torch.save_file of the same nn.Linear stack loads here, and tally's
 * files load in PyTorch.
 *
 * The reader takes hostile bytes: every length, offset and shape is checked before it is used, the
 * model is allocated only once the tensors are known to cover the data exactly (so an allocation is
 * never larger than the input), and every refusal names the file and the problem.
 */
#include "tally/model.h"
#include "tally/error.h"
#include "tally/fs.h"

#include <assert.h>
#include <float.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* The data part is params written as they are in memory, which safetensors defines as F32 LE. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors F32 is little-endian");
_Static_assert(sizeof(float) == 4 && FLT_MANT_DIG == 24, "float must be IEEE 754 binary32");

#define HEADER_MAX ((uint64_t)100 << 20)
/* 8 GiB of data (2^31 floats, the most tally_model_new allows) plus the largest header. */
#define FILE_MAX (((size_t)8 << 30) + (size_t)HEADER_MAX + 8)
#define WIDTH_MAX ((uint64_t)1 << 20)  /* as in model.c: a layer is 1..2^20 wide */
#define SHAPE_RANK_MAX 8
#define N_SLOTS (2 * TALLY_MODEL_MAX_LAYERS)

/* One tensor as the header describes it; slot 2L is layers.L.weight, 2L+1 layers.L.bias. */
typedef struct tensor_info {
	const char *name;   /* the JSON key, valid while the parsed header lives */
	bool present;
	int rank;
	uint64_t shape[2];
	uint64_t begin, end;
} tensor_info;

/* What the reader has learned so far about one file. */
typedef struct header {
	const char *src;    /* the file name, for messages */
	uint64_t data_len;  /* bytes after the header */
	json_t *meta;       /* __metadata__, borrowed from the parsed header, or NULL */
	tensor_info t[N_SLOTS];
	uint32_t n_layers;
	uint32_t dims[TALLY_MODEL_MAX_LAYERS + 1];
} header;

/* ---- writing ---- */

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Adds __metadata__: what a reader needs to rebuild and feed the network. */
static int metadata_add(json_t *root, const tally_model *m)
{
	char arch[256], round[24];
	json_t *rid;
	int rc = tally_model_arch_format(m, arch, sizeof(arch));

	if (rc)
		return rc;
	assert(memchr(m->run_id, '\0', sizeof(m->run_id)));
	rid = json_string(m->run_id);
	if (!rid)
		return tally_err(TALLY_EINVAL, "run id '%s' is not valid UTF-8", m->run_id);
	json_decref(rid);
	snprintf(round, sizeof(round), "%" PRIu64, m->round);
	if (json_object_set_new(root, "__metadata__",
				json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "format", "pt",
					  "tally.arch", arch, "tally.activation", "relu",
					  "tally.round", round, "tally.run_id", m->run_id,
					  "tally.input", "pixels scaled to [0,1]")))
		return TALLY_ENOMEM;
	return 0;
}

/* Adds layers.L.weight and layers.L.bias for every layer, packed in params order. */
static int tensors_add(json_t *root, const tally_model *m)
{
	json_int_t off = 0;

	for (uint32_t l = 0; l < m->n_layers; l++) {
		json_int_t out = m->dims[l + 1], in = m->dims[l];
		json_int_t w_end = off + 4 * out * in, b_end = w_end + 4 * out;
		char name[32];

		snprintf(name, sizeof(name), "layers.%u.weight", l);
		if (json_object_set_new(root, name,
					json_pack("{s:s, s:[I,I], s:[I,I]}", "dtype", "F32", "shape", out,
						  in, "data_offsets", off, w_end)))
			return TALLY_ENOMEM;
		snprintf(name, sizeof(name), "layers.%u.bias", l);
		if (json_object_set_new(root, name,
					json_pack("{s:s, s:[I], s:[I,I]}", "dtype", "F32", "shape", out,
						  "data_offsets", w_end, b_end)))
			return TALLY_ENOMEM;
		off = b_end;
	}
	return 0;
}

int tally_model_safetensors_header(const tally_model *m, uint8_t **hdr, size_t *len)
{
	json_t *root = json_object();
	char *text = NULL;
	uint8_t *h;
	size_t tlen, padded;
	int rc = root ? 0 : TALLY_ENOMEM;

	if (!rc)
		rc = metadata_add(root, m);
	if (!rc)
		rc = tensors_add(root, m);
	if (!rc && !(text = json_dumps(root, JSON_COMPACT)))
		rc = TALLY_ENOMEM;
	if (rc)
		goto out;
	tlen = strlen(text);
	padded = (tlen + 7) & ~(size_t)7;  /* 8 + padded is a multiple of 8, as the official writer does */
	h = malloc(8 + padded);
	if (!h) {
		rc = TALLY_ENOMEM;
		goto out;
	}
	put_le64(h, padded);
	memcpy(h + 8, text, tlen);
	memset(h + 8 + tlen, ' ', padded - tlen);
	*hdr = h;
	*len = 8 + padded;
out:
	free(text);
	json_decref(root);
	return rc;
}

int tally_model_to_safetensors(const tally_model *m, uint8_t **buf, size_t *len)
{
	uint8_t *hdr, *b;
	size_t hlen, dlen = m->n_params * sizeof(float);
	int rc = tally_model_safetensors_header(m, &hdr, &hlen);

	if (rc)
		return rc;
	b = realloc(hdr, hlen + dlen);
	if (!b) {
		free(hdr);
		return TALLY_ENOMEM;
	}
	memcpy(b + hlen, m->params, dlen);
	*buf = b;
	*len = hlen + dlen;
	return 0;
}

int tally_model_save(const tally_model *m, const char *path)
{
	uint8_t *hdr;
	size_t hlen;
	struct iovec iov[2];
	int rc = tally_model_safetensors_header(m, &hdr, &hlen);

	if (rc)
		return rc;
	iov[0] = (struct iovec){ .iov_base = hdr, .iov_len = hlen };
	iov[1] = (struct iovec){ .iov_base = m->params, .iov_len = m->n_params * sizeof(float) };
	rc = tally_file_write_atomic(path, iov, 2, 0644);
	free(hdr);
	return rc;
}

/* ---- reading ---- */

/* Records "<file>: <problem>" and returns code. */
__attribute__((format(printf, 3, 4)))
static int refuse(const header *h, int code, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return tally_err(code, "%s: %s", h->src, msg);
}

/* Maps "layers.L.weight" / "layers.L.bias" (L canonical decimal) to a slot; false otherwise. */
static bool slot_of(const char *name, int *slot)
{
	const char *p = name + 7;
	unsigned layer = 0;

	if (strncmp(name, "layers.", 7) != 0 || *p < '0' || *p > '9' || (p[0] == '0' && p[1] != '.'))
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		layer = layer * 10 + (unsigned)(*p - '0');
		if (layer >= TALLY_MODEL_MAX_LAYERS)
			return false;
	}
	if (strcmp(p, ".weight") == 0)
		*slot = (int)(2 * layer);
	else if (strcmp(p, ".bias") == 0)
		*slot = (int)(2 * layer + 1);
	else
		return false;
	return true;
}

/*
 * Reads a JSON array of non-negative integers into v[0..max); *n is its length. A longer array
 * fails with too_long (a shape of high rank is valid safetensors, just not a tally layer).
 */
static int read_uints(const header *h, const char *name, const char *field, json_t *a,
		      uint64_t *v, size_t max, size_t *n, int too_long)
{
	size_t i;
	json_t *e;

	if (!json_is_array(a))
		return refuse(h, TALLY_EFORMAT, "%s of tensor '%.80s' is not an array", field, name);
	if (json_array_size(a) > max)
		return refuse(h, too_long, "%s of tensor '%.80s' has %zu entries, more than %zu",
			      field, name, json_array_size(a), max);
	json_array_foreach(a, i, e) {
		if (!json_is_integer(e) || json_integer_value(e) < 0)
			return refuse(h, TALLY_EFORMAT, "%s of tensor '%.80s' holds something other than a non-negative integer",
				      field, name);
		v[i] = (uint64_t)json_integer_value(e);
	}
	*n = json_array_size(a);
	return 0;
}

/* Checks the shape's rank and widths; widths of at most 2^20 also keep every product far from overflow. */
static int read_shape(const header *h, const char *name, json_t *a, tensor_info *t, int rank)
{
	uint64_t shape[SHAPE_RANK_MAX];
	size_t n;
	int rc = read_uints(h, name, "shape", a, shape, SHAPE_RANK_MAX, &n, TALLY_ESHAPE);

	if (rc)
		return rc;
	if (n != (size_t)rank)
		return refuse(h, TALLY_ESHAPE, "tensor '%.80s' has %zu dimensions; expected %d", name, n, rank);
	for (size_t i = 0; i < n; i++) {
		if (shape[i] < 1 || shape[i] > WIDTH_MAX)
			return refuse(h, TALLY_ESHAPE, "tensor '%.80s' has a dimension of %" PRIu64
				      "; tally layers are 1..%" PRIu64 " wide", name, shape[i], WIDTH_MAX);
		t->shape[i] = shape[i];
	}
	t->rank = rank;
	return 0;
}

/* Validates one tensor entry of the header and records it in its slot. */
static int read_tensor(header *h, const char *name, json_t *v)
{
	json_t *dtype = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape");
	json_t *offs = json_object_get(v, "data_offsets");
	tensor_info *t;
	uint64_t o[2];
	size_t n;
	int slot, rc;

	if (!slot_of(name, &slot))
		return refuse(h, TALLY_ESHAPE, "unknown tensor '%.80s'; a tally model holds only "
			      "layers.L.weight and layers.L.bias", name);
	if (!json_is_object(v) || !dtype || !shape || !offs || json_object_size(v) != 3)
		return refuse(h, TALLY_EFORMAT, "tensor '%.80s' must be an object of exactly dtype, shape "
			      "and data_offsets", name);
	if (!json_is_string(dtype))
		return refuse(h, TALLY_EFORMAT, "dtype of tensor '%.80s' is not a string", name);
	if (strcmp(json_string_value(dtype), "F32") != 0)
		return refuse(h, TALLY_ESHAPE, "tensor '%.80s' has dtype %.16s; tally models are F32",
			      name, json_string_value(dtype));
	t = &h->t[slot];
	assert(!t->present);  /* keys are unique and slot_of accepts one spelling per slot */
	rc = read_shape(h, name, shape, t, slot % 2 ? 1 : 2);
	if (!rc)
		rc = read_uints(h, name, "data_offsets", offs, o, 2, &n, TALLY_EFORMAT);
	if (rc)
		return rc;
	if (n != 2)
		return refuse(h, TALLY_EFORMAT, "data_offsets of tensor '%.80s' must be [begin, end]", name);
	t->name = name;
	t->begin = o[0];
	t->end = o[1];
	t->present = true;
	return 0;
}

/* __metadata__ is optional; when present safetensors defines it as an object of strings. */
static int read_metadata_entry(header *h, json_t *v)
{
	const char *key;
	json_t *s;

	if (!json_is_object(v))
		return refuse(h, TALLY_EFORMAT, "__metadata__ is not an object");
	json_object_foreach(v, key, s)
		if (!json_is_string(s))
			return refuse(h, TALLY_EFORMAT, "__metadata__ entry '%.80s' is not a string", key);
	h->meta = v;
	return 0;
}

/* Checks the length prefix and parses the JSON header into *root. */
static int read_header(header *h, const uint8_t *buf, size_t len, json_t **root)
{
	uint64_t n = 0;
	json_error_t jerr;

	if (len < 8)
		return refuse(h, TALLY_EFORMAT, "%zu bytes is too short for a safetensors file", len);
	for (int i = 7; i >= 0; i--)
		n = n << 8 | buf[i];
	if (n > len - 8)
		return refuse(h, TALLY_EFORMAT, "header length %" PRIu64 " is longer than the %zu bytes "
			      "that follow it (truncated or not safetensors)", n, len - 8);
	if (n > HEADER_MAX)
		return refuse(h, TALLY_ETOOBIG, "header length %" PRIu64 " is over the limit of %" PRIu64,
			      n, HEADER_MAX);
	*root = json_loadb((const char *)buf + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
	if (!*root)
		return refuse(h, TALLY_EFORMAT, "header is not valid JSON: %s (byte %d)", jerr.text,
			      jerr.position);
	if (!json_is_object(*root))
		return refuse(h, TALLY_EFORMAT, "header is JSON but not an object");
	h->data_len = len - 8 - n;
	return 0;
}

/* Validates every entry of the header object. */
static int read_entries(header *h, json_t *root)
{
	const char *key;
	json_t *v;
	int rc;

	json_object_foreach(root, key, v) {
		if (strcmp(key, "__metadata__") == 0)
			rc = read_metadata_entry(h, v);
		else
			rc = read_tensor(h, key, v);
		if (rc)
			return rc;
	}
	return 0;
}

/* Every layer up to the last one named has a weight and a bias, and each layer feeds the next. */
static int check_layers(header *h)
{
	uint32_t n = 0;

	for (uint32_t s = 0; s < N_SLOTS; s++)
		if (h->t[s].present)
			n = s / 2 + 1;
	if (n == 0)
		return refuse(h, TALLY_ESHAPE, "no tensors; expected layers.0.weight, layers.0.bias, ...");
	for (uint32_t s = 0; s < 2 * n; s++)
		if (!h->t[s].present)
			return refuse(h, TALLY_ESHAPE, "tensor 'layers.%u.%s' is missing", s / 2,
				      s % 2 ? "bias" : "weight");
	h->dims[0] = (uint32_t)h->t[0].shape[1];
	for (uint32_t l = 0; l < n; l++) {
		const tensor_info *w = &h->t[2 * l], *b = &h->t[2 * l + 1];

		if (w->shape[1] != h->dims[l])
			return refuse(h, TALLY_ESHAPE, "'%s' takes %" PRIu64 " inputs but layer %u has %u outputs",
				      w->name, w->shape[1], l - 1, h->dims[l]);
		h->dims[l + 1] = (uint32_t)w->shape[0];
		if (b->shape[0] != w->shape[0])
			return refuse(h, TALLY_ESHAPE, "'%s' has %" PRIu64 " entries but '%s' has %" PRIu64 " outputs",
				      b->name, b->shape[0], w->name, w->shape[0]);
	}
	h->n_layers = n;
	return 0;
}

/* Each tensor's byte range lies in the data and matches its shape. */
static int check_range(const header *h, const tensor_info *t)
{
	uint64_t bytes = 4 * t->shape[0] * (t->rank == 2 ? t->shape[1] : 1);  /* < 2^43 */

	if (t->end < t->begin)
		return refuse(h, TALLY_EFORMAT, "data_offsets of '%s' end (%" PRIu64 ") before they begin (%"
			      PRIu64 ")", t->name, t->end, t->begin);
	if (t->end > h->data_len)
		return refuse(h, TALLY_EFORMAT, "data_offsets [%" PRIu64 ", %" PRIu64 "] of '%s' are outside the %"
			      PRIu64 " bytes of data (truncated?)", t->begin, t->end, t->name, h->data_len);
	if (t->end - t->begin != bytes)
		return refuse(h, TALLY_EFORMAT, "'%s' spans %" PRIu64 " bytes but its shape needs %" PRIu64,
			      t->name, t->end - t->begin, bytes);
	return 0;
}

/* The tensors tile the data exactly: no overlap, no hole, nothing after the last one. */
static int check_offsets(const header *h)
{
	const tensor_info *order[N_SLOTS];
	uint64_t pos = 0;
	uint32_t n = 2 * h->n_layers;
	int rc;

	for (uint32_t i = 0; i < n; i++) {
		const tensor_info *t = &h->t[i];
		uint32_t j = i;

		if ((rc = check_range(h, t)))
			return rc;
		for (; j > 0 && order[j - 1]->begin > t->begin; j--)  /* insertion sort by begin */
			order[j] = order[j - 1];
		order[j] = t;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (order[i]->begin < pos)
			return refuse(h, TALLY_EFORMAT, "'%s' overlaps '%s'", order[i]->name, order[i - 1]->name);
		if (order[i]->begin > pos)
			return refuse(h, TALLY_EFORMAT, "hole of %" PRIu64 " bytes before '%s'",
				      order[i]->begin - pos, order[i]->name);
		pos = order[i]->end;
	}
	if (pos != h->data_len)
		return refuse(h, TALLY_EFORMAT, "%" PRIu64 " bytes after the last tensor belong to none",
			      h->data_len - pos);
	return 0;
}

/* Copies one tensor into place and refuses NaN and infinities. */
static int copy_tensor(const header *h, const tensor_info *t, const uint8_t *data, float *dst)
{
	size_t n = (size_t)(t->end - t->begin) / sizeof(float);

	memcpy(dst, data + t->begin, n * sizeof(float));
	for (size_t i = 0; i < n; i++)
		if (!isfinite(dst[i]))
			return refuse(h, TALLY_ENONFINITE, "tensor '%s' holds %g at index %zu", t->name,
				      (double)dst[i], i);
	return 0;
}

/* A strict decimal u64: digits only, no sign, no overflow. */
static bool parse_u64(const char *s, uint64_t *v)
{
	uint64_t r = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || r > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return false;
		r = r * 10 + (uint64_t)(*s - '0');
	}
	*v = r;
	return true;
}

/* Metadata tally wrote: round and run id, and an architecture and activation that must agree. */
static int apply_metadata(const header *h, tally_model *m)
{
	const char *arch = json_string_value(json_object_get(h->meta, "tally.arch"));
	const char *act = json_string_value(json_object_get(h->meta, "tally.activation"));
	const char *round = json_string_value(json_object_get(h->meta, "tally.round"));
	const char *run_id = json_string_value(json_object_get(h->meta, "tally.run_id"));
	char own[256];

	if (tally_model_arch_format(m, own, sizeof(own)) == 0 && arch && strcmp(arch, own) != 0)
		return refuse(h, TALLY_ESHAPE, "metadata says architecture '%.200s' but the tensors make '%s'",
			      arch, own);
	if (act && strcmp(act, "relu") != 0)
		return refuse(h, TALLY_ESHAPE, "activation '%.40s' is not supported; tally uses relu", act);
	if (round && !parse_u64(round, &m->round))
		return refuse(h, TALLY_EFORMAT, "tally.round '%.40s' is not a decimal round number", round);
	if (run_id && strlen(run_id) >= sizeof(m->run_id))
		return refuse(h, TALLY_EFORMAT, "tally.run_id is longer than %zu bytes",
			      sizeof(m->run_id) - 1);
	if (run_id)
		memcpy(m->run_id, run_id, strlen(run_id) + 1);
	return 0;
}

/* Allocates the model the checked header describes and fills it. */
static int build_model(const header *h, const uint8_t *data, tally_model **out)
{
	tally_model *m = NULL;
	char why[512];
	int rc = tally_model_new(&m, h->dims, h->n_layers);

	if (rc) {
		snprintf(why, sizeof(why), "%s", tally_errmsg());
		return rc == TALLY_ENOMEM ? rc : refuse(h, rc, "%s", why);
	}
	for (uint32_t l = 0; l < h->n_layers && !rc; l++) {
		rc = copy_tensor(h, &h->t[2 * l], data, m->params + tally_model_weight_offset(m, l));
		if (!rc)
			rc = copy_tensor(h, &h->t[2 * l + 1], data, m->params + tally_model_bias_offset(m, l));
	}
	if (!rc && h->meta)
		rc = apply_metadata(h, m);
	if (rc)
		tally_model_destroy(&m);
	else
		*out = m;
	return rc;
}

/* The whole reader; src names the input in messages. */
static int parse(tally_model **out, const uint8_t *buf, size_t len, const char *src)
{
	header h = { .src = src };
	json_t *root = NULL;
	int rc = read_header(&h, buf, len, &root);

	if (!rc)
		rc = read_entries(&h, root);
	if (!rc)
		rc = check_layers(&h);
	if (!rc)
		rc = check_offsets(&h);
	if (!rc)
		rc = build_model(&h, buf + (len - h.data_len), out);
	json_decref(root);
	return rc;
}

int tally_model_from_safetensors(tally_model **out, const uint8_t *buf, size_t len)
{
	return parse(out, buf, len, "safetensors data");
}

int tally_model_load(tally_model **out, const char *path)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = tally_file_read(path, FILE_MAX, &buf, &len);

	if (rc)
		return rc;
	rc = parse(out, buf, len, path);
	free(buf);
	return rc;
}
