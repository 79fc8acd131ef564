/*
 * Tests of core/safetensors.c: exact bytes of a tiny model against a committed known answer,
 * bit-identical round trips, files laid out the way PyTorch writes them, a refusal with its own
 * code for each way a hostile file can be wrong, atomic replacement on save, and agreement between
 * tally's own evaluation and tests/python/safetensors_check.py (numpy) on the Fashion-MNIST test set.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tally/data.h"
#include "tally/error.h"
#include "tally/fs.h"
#include "tally/ml.h"
#include "tally/model.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define TINY_FLOATS 17  /* 2-3-2: 6 + 3 + 6 + 2 */

/* ---- helpers ---- */

static tally_model *model_make(const char *arch, uint64_t seed, uint64_t round, const char *run_id)
{
	uint32_t dims[TALLY_MODEL_MAX_LAYERS + 1], n;
	tally_model *m = NULL;

	assert_int_equal(tally_model_arch_parse(arch, dims, &n), 0);
	assert_int_equal(tally_model_new(&m, dims, n), 0);
	tally_model_init(m, seed);
	m->round = round;
	snprintf(m->run_id, sizeof(m->run_id), "%s", run_id);
	return m;
}

/* The 2-3-2 model of the known answer: params[i] = (i - 8) / 4, all exact in binary. */
static tally_model *tiny_model(uint64_t round, const char *run_id)
{
	tally_model *m = model_make("mlp:2-3-2", 1, round, run_id);

	for (size_t i = 0; i < m->n_params; i++)
		m->params[i] = (float)((int)i - 8) * 0.25f;
	return m;
}

static void assert_models_equal(const tally_model *a, const tally_model *b)
{
	assert_int_equal(a->n_layers, b->n_layers);
	assert_memory_equal(a->dims, b->dims, (a->n_layers + 1) * sizeof(uint32_t));
	assert_int_equal(a->n_params, b->n_params);
	assert_memory_equal(a->params, b->params, a->n_params * sizeof(float));
	assert_int_equal(a->round, b->round);
	assert_string_equal(a->run_id, b->run_id);
}

/*
 * A safetensors file from header JSON in which ' stands for " (to keep the cases readable) and
 * n_floats data floats 0, 1, 2, ...
 */
static uint8_t *make_file(const char *json, size_t n_floats, size_t *len)
{
	size_t jlen = strlen(json);
	uint8_t *b = malloc(8 + jlen + n_floats * sizeof(float) + 1);

	assert_non_null(b);
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)jlen >> (8 * i));
	for (size_t i = 0; i < jlen; i++)
		b[8 + i] = json[i] == '\'' ? '"' : (uint8_t)json[i];
	for (size_t i = 0; i < n_floats; i++) {
		float f = (float)i;

		memcpy(b + 8 + jlen + i * sizeof(float), &f, sizeof(f));
	}
	*len = 8 + jlen + n_floats * sizeof(float);
	return b;
}

static char *temp_dir(void)
{
	char tmpl[] = "/tmp/tally-test-safetensors-XXXXXX";

	assert_non_null(mkdtemp(tmpl));
	return strdup(tmpl);
}

/* Names in dir other than . and .., joined by '/', into buf. */
static void list_dir(const char *dir, char *buf, size_t size)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t used = 0;

	assert_non_null(d);
	buf[0] = '\0';
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			used += (size_t)snprintf(buf + used, size - used, "/%s", e->d_name);
	closedir(d);
}

static void remove_dir(char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[4096];

	while (d && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			unlink(path);
		}
	if (d)
		closedir(d);
	rmdir(dir);
	free(dir);
}

static void write_bytes(const char *path, const uint8_t *b, size_t len)
{
	struct iovec iov = { .iov_base = (void *)b, .iov_len = len };

	assert_int_equal(tally_file_write_atomic(path, &iov, 1, 0644), 0);
}

/* ---- known answer ---- */

static const char KAT_HEADER[] =
	"{\"__metadata__\":{\"format\":\"pt\",\"tally.arch\":\"mlp:2-3-2\",\"tally.activation\":\"relu\","
	"\"tally.round\":\"7\",\"tally.run_id\":\"kat\",\"tally.input\":\"pixels scaled to [0,1]\"},"
	"\"layers.0.weight\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]},"
	"\"layers.0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[24,36]},"
	"\"layers.1.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[36,60]},"
	"\"layers.1.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[60,68]}}"
	"    ";  /* 436 bytes of JSON padded to 440, so the data starts at 448 = 56 * 8 */

static const uint8_t KAT_PREFIX[8] = { 0xb8, 0x01, 0, 0, 0, 0, 0, 0 };  /* 440 */

/* (i - 8) / 4 for i = 0..16 as little-endian float32, computed outside tally. */
static const uint8_t KAT_DATA[TINY_FLOATS * 4] = {
	0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0xe0, 0xbf, 0x00, 0x00, 0xc0, 0xbf, 0x00, 0x00, 0xa0, 0xbf,
	0x00, 0x00, 0x80, 0xbf, 0x00, 0x00, 0x40, 0xbf, 0x00, 0x00, 0x00, 0xbf, 0x00, 0x00, 0x80, 0xbe,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x3e, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x40, 0x3f,
	0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0xa0, 0x3f, 0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0xe0, 0x3f,
	0x00, 0x00, 0x00, 0x40,
};

static void assert_kat_bytes(const uint8_t *b, size_t len)
{
	size_t hlen = sizeof(KAT_HEADER) - 1;

	assert_int_equal(len, 8 + hlen + sizeof(KAT_DATA));
	assert_memory_equal(b, KAT_PREFIX, 8);
	assert_memory_equal(b + 8, KAT_HEADER, hlen);
	assert_memory_equal(b + 8 + hlen, KAT_DATA, sizeof(KAT_DATA));
}

static void test_known_answer_bytes(void **state)
{
	tally_model *m = tiny_model(7, "kat");
	uint8_t *b = NULL, *h = NULL;
	size_t len = 0, hlen = 0;

	assert_int_equal(tally_model_to_safetensors(m, &b, &len), 0);
	assert_kat_bytes(b, len);
	assert_int_equal(tally_model_safetensors_header(m, &h, &hlen), 0);
	assert_int_equal(hlen, 8 + sizeof(KAT_HEADER) - 1);
	assert_memory_equal(h, b, hlen);
	free(h);
	free(b);
	tally_model_destroy(&m);
}

static void test_save_writes_known_bytes(void **state)
{
	char *dir = temp_dir(), path[4096];
	tally_model *m = tiny_model(7, "kat"), *back = NULL;
	uint8_t *b = NULL;
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/tiny.safetensors", dir);
	assert_int_equal(tally_model_save(m, path), 0);
	assert_int_equal(tally_file_read(path, 1 << 20, &b, &len), 0);
	assert_kat_bytes(b, len);
	assert_int_equal(tally_model_load(&back, path), 0);
	assert_models_equal(m, back);
	free(b);
	tally_model_destroy(&back);
	tally_model_destroy(&m);
	remove_dir(dir);
}

/* ---- round trips and other writers' layouts ---- */

static void round_trip(const char *arch, uint64_t seed)
{
	char *dir = temp_dir(), path[4096];
	tally_model *m = model_make(arch, seed, 123456789012ull, "run-2024-06-01T12:00:00Z"), *back = NULL;

	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	m->params[m->n_params - 1] = -0.0f;  /* the sign of zero must survive too */
	assert_int_equal(tally_model_save(m, path), 0);
	assert_int_equal(tally_model_load(&back, path), 0);
	assert_models_equal(m, back);
	tally_model_destroy(&back);
	tally_model_destroy(&m);
	remove_dir(dir);
}

static void test_round_trip_mlp(void **state)
{
	round_trip("mlp:784-256-128-10", 42);
}

static void test_round_trip_softmax(void **state)
{
	round_trip("mlp:784-10", 7);
}

/*
 * safetensors.torch.save_file sorts the data by name (layers.0.bias before layers.0.weight) and,
 * without a metadata argument, writes no __metadata__; JSON order is free.
 */
static void test_torch_layout_loads(void **state)
{
	static const char json[] = "{'layers.1.weight':{'dtype':'F32','shape':[2,3],'data_offsets':[44,68]},"
		"'layers.1.bias':{'dtype':'F32','shape':[2],'data_offsets':[36,44]},"
		"'layers.0.bias':{'dtype':'F32','shape':[3],'data_offsets':[0,12]},"
		"'layers.0.weight':{'dtype':'F32','shape':[3,2],'data_offsets':[12,36]}}";
	static const float want[TINY_FLOATS] = { 3, 4, 5, 6, 7, 8, 0, 1, 2, 11, 12, 13, 14, 15, 16, 9, 10 };
	size_t len;
	uint8_t *b = make_file(json, TINY_FLOATS, &len);
	tally_model *m = NULL;

	assert_int_equal(tally_model_from_safetensors(&m, b, len), 0);
	assert_int_equal(m->n_layers, 2);
	assert_int_equal(m->dims[0], 2);
	assert_int_equal(m->dims[1], 3);
	assert_int_equal(m->dims[2], 2);
	assert_memory_equal(m->params, want, sizeof(want));
	assert_int_equal(m->round, 0);
	assert_string_equal(m->run_id, "");
	tally_model_destroy(&m);
	free(b);
}

#define W0 "'layers.0.weight':{'dtype':'F32','shape':[3,2],'data_offsets':[0,24]}"
#define B0 "'layers.0.bias':{'dtype':'F32','shape':[3],'data_offsets':[24,36]}"
#define W1 "'layers.1.weight':{'dtype':'F32','shape':[2,3],'data_offsets':[36,60]}"
#define B1 "'layers.1.bias':{'dtype':'F32','shape':[2],'data_offsets':[60,68]}"
#define TINY W0 "," B0 "," W1 "," B1

/* Metadata from another writer, and an unaligned header with trailing spaces, are fine. */
static void test_foreign_metadata_loads(void **state)
{
	size_t len;
	uint8_t *b = make_file("{'__metadata__':{'format':'pt','tally.round':'18446744073709551615',"
			       "'tally.run_id':'x'}," TINY "}  ", TINY_FLOATS, &len);
	tally_model *m = NULL;

	assert_int_equal(tally_model_from_safetensors(&m, b, len), 0);
	assert_int_equal(m->round, UINT64_MAX);
	assert_string_equal(m->run_id, "x");
	assert_true(m->params[16] == 16.0f);
	tally_model_destroy(&m);
	free(b);
}

/* ---- refusals ---- */

typedef struct bad_case {
	const char *name;
	const char *json;     /* ' stands for " */
	size_t n_floats;      /* data floats; 0 means TINY_FLOATS */
	int poison;           /* 1 + index of a float to replace with value, 0 for none */
	float value;
	int expect;
	const char *mention;  /* the message must contain this, or NULL */
} bad_case;

#define BIG_ID "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"  /* 64 */

static const bad_case bad_cases[] = {
	{ "header is not JSON", "{'layers.0.weight': nope}", 0, 0, 0, TALLY_EFORMAT, "not valid JSON" },
	{ "header is text", "hello", 0, 0, 0, TALLY_EFORMAT, "not valid JSON" },
	{ "header is empty", "", 0, 0, 0, TALLY_EFORMAT, "not valid JSON" },
	{ "header is a JSON array", "[1,2,3]", 0, 0, 0, TALLY_EFORMAT, "not an object" },
	{ "header is a JSON string", "'x'", 0, 0, 0, TALLY_EFORMAT, NULL },
	{ "header is not UTF-8", "{'\xff':1}", 0, 0, 0, TALLY_EFORMAT, NULL },
	{ "NUL in a key", "{'layers.0.weight\\u0000':1," TINY "}", 0, 0, 0, TALLY_EFORMAT, NULL },
	{ "duplicate key", "{" W0 "," TINY "}", 0, 0, 0, TALLY_EFORMAT, "duplicate" },
	{ "no tensors", "{}", 0, 0, 0, TALLY_ESHAPE, "no tensors" },
	{ "only metadata", "{'__metadata__':{'format':'pt'}}", 0, 0, 0, TALLY_ESHAPE, "no tensors" },
	{ "missing tensor", "{" W0 "," B0 "," W1 "}", 15, 0, 0, TALLY_ESHAPE, "'layers.1.bias' is missing" },
	{ "missing first layer", "{" W1 "," B1 "}", 0, 0, 0, TALLY_ESHAPE, "layers.0.weight" },
	{ "unknown tensor", "{" TINY ",'head.weight':{'dtype':'F32','shape':[1],'data_offsets':[68,72]}}",
	  18, 0, 0, TALLY_ESHAPE, "'head.weight'" },
	{ "unknown suffix", "{" TINY ",'layers.0.gamma':{'dtype':'F32','shape':[1],'data_offsets':[68,72]}}",
	  18, 0, 0, TALLY_ESHAPE, "'layers.0.gamma'" },
	{ "leading zero", "{" TINY ",'layers.01.bias':{'dtype':'F32','shape':[1],'data_offsets':[68,72]}}",
	  18, 0, 0, TALLY_ESHAPE, "'layers.01.bias'" },
	{ "layer beyond the maximum",
	  "{" TINY ",'layers.16.bias':{'dtype':'F32','shape':[1],'data_offsets':[68,72]}}",
	  18, 0, 0, TALLY_ESHAPE, "'layers.16.bias'" },
	{ "dtype F16", "{" W0 "," B0 "," W1 ",'layers.1.bias':{'dtype':'F16','shape':[2],'data_offsets':[60,64]}}",
	  16, 0, 0, TALLY_ESHAPE, "tensor 'layers.1.bias' has dtype F16; tally models are F32" },
	{ "dtype not a string", "{'layers.0.weight':{'dtype':32,'shape':[3,2],'data_offsets':[0,24]},"
	  B0 "," W1 "," B1 "}", 0, 0, 0, TALLY_EFORMAT, "dtype" },
	{ "tensor not an object", "{'layers.0.weight':5}", 0, 0, 0, TALLY_EFORMAT, "layers.0.weight" },
	{ "extra field", "{'layers.0.weight':{'dtype':'F32','shape':[3,2],'data_offsets':[0,24],'x':1},"
	  B0 "," W1 "," B1 "}", 0, 0, 0, TALLY_EFORMAT, "exactly" },
	{ "missing field", "{'layers.0.weight':{'shape':[3,2],'data_offsets':[0,24]},"
	  B0 "," W1 "," B1 "}", 0, 0, 0, TALLY_EFORMAT, "exactly" },
	{ "wrong bias shape", "{" W0 ",'layers.0.bias':{'dtype':'F32','shape':[4],'data_offsets':[24,40]},"
	  "'layers.1.weight':{'dtype':'F32','shape':[2,3],'data_offsets':[40,64]},"
	  "'layers.1.bias':{'dtype':'F32','shape':[2],'data_offsets':[64,72]}}", 18, 0, 0, TALLY_ESHAPE,
	  "'layers.0.bias' has 4 entries" },
	{ "bias of rank 2", "{" W0 ",'layers.0.bias':{'dtype':'F32','shape':[3,1],'data_offsets':[24,36]},"
	  W1 "," B1 "}", 0, 0, 0, TALLY_ESHAPE, "dimensions" },
	{ "weight of rank 9", "{'layers.0.weight':{'dtype':'F32','shape':[3,2,1,1,1,1,1,1,1],"
	  "'data_offsets':[0,24]}," B0 "," W1 "," B1 "}", 0, 0, 0, TALLY_ESHAPE, NULL },
	{ "inconsistent layer chain", "{" W0 "," B0 ","
	  "'layers.1.weight':{'dtype':'F32','shape':[2,4],'data_offsets':[36,68]},"
	  "'layers.1.bias':{'dtype':'F32','shape':[2],'data_offsets':[68,76]}}", 19, 0, 0, TALLY_ESHAPE,
	  "'layers.1.weight' takes 4 inputs but layer 0 has 3 outputs" },
	{ "negative shape", "{'layers.0.weight':{'dtype':'F32','shape':[-3,2],'data_offsets':[0,24]},"
	  B0 "," W1 "," B1 "}", 0, 0, 0, TALLY_EFORMAT, "non-negative" },
	{ "zero in shape", "{'layers.0.weight':{'dtype':'F32','shape':[0,2],'data_offsets':[0,0]},"
	  B0 "," W1 "," B1 "}", 0, 0, 0, TALLY_ESHAPE, "dimension of 0" },
	{ "huge shape", "{'layers.0.weight':{'dtype':'F32','shape':[4611686018427387904,4],"
	  "'data_offsets':[0,24]}," B0 "," W1 "," B1 "}", 0, 0, 0, TALLY_ESHAPE, "dimension" },
	{ "shape beyond JSON integers", "{'layers.0.weight':{'dtype':'F32','shape':[99999999999999999999999,2],"
	  "'data_offsets':[0,24]}," B0 "," W1 "," B1 "}", 0, 0, 0, TALLY_EFORMAT, "JSON" },
	{ "shape of reals", "{'layers.0.weight':{'dtype':'F32','shape':[3.0,2],'data_offsets':[0,24]},"
	  B0 "," W1 "," B1 "}", 0, 0, 0, TALLY_EFORMAT, NULL },
	{ "offsets out of bounds", "{" W0 "," B0 "," W1 ",'layers.1.bias':{'dtype':'F32','shape':[2],"
	  "'data_offsets':[64,72]}}", 0, 0, 0, TALLY_EFORMAT, "outside" },
	{ "offsets near 2^63", "{" W0 "," B0 "," W1 ",'layers.1.bias':{'dtype':'F32','shape':[2],"
	  "'data_offsets':[9223372036854775799,9223372036854775807]}}", 0, 0, 0, TALLY_EFORMAT, "outside" },
	{ "offsets end before begin", "{" W0 "," B0 "," W1 ",'layers.1.bias':{'dtype':'F32','shape':[2],"
	  "'data_offsets':[68,60]}}", 0, 0, 0, TALLY_EFORMAT, "before" },
	{ "three offsets", "{" W0 "," B0 "," W1 ",'layers.1.bias':{'dtype':'F32','shape':[2],"
	  "'data_offsets':[60,64,68]}}", 0, 0, 0, TALLY_EFORMAT, NULL },
	{ "offsets disagree with shape", "{'layers.0.weight':{'dtype':'F32','shape':[3,2],'data_offsets':[0,20]},"
	  "'layers.0.bias':{'dtype':'F32','shape':[3],'data_offsets':[20,36]}," W1 "," B1 "}", 0, 0, 0,
	  TALLY_EFORMAT, "shape needs" },
	{ "overlapping offsets", "{" W0 ",'layers.0.bias':{'dtype':'F32','shape':[3],'data_offsets':[20,32]},"
	  "'layers.1.weight':{'dtype':'F32','shape':[2,3],'data_offsets':[32,56]},"
	  "'layers.1.bias':{'dtype':'F32','shape':[2],'data_offsets':[56,64]}}", 16, 0, 0, TALLY_EFORMAT,
	  "overlaps" },
	{ "hole in buffer", "{" W0 ",'layers.0.bias':{'dtype':'F32','shape':[3],'data_offsets':[28,40]},"
	  "'layers.1.weight':{'dtype':'F32','shape':[2,3],'data_offsets':[40,64]},"
	  "'layers.1.bias':{'dtype':'F32','shape':[2],'data_offsets':[64,72]}}", 18, 0, 0, TALLY_EFORMAT,
	  "hole of 4 bytes before 'layers.0.bias'" },
	{ "bytes after the last tensor", "{" TINY "}", 18, 0, 0, TALLY_EFORMAT, "belong to none" },
	{ "truncated data", "{" TINY "}", 16, 0, 0, TALLY_EFORMAT, "truncated" },
	{ "NaN value", "{" TINY "}", 0, 10, NAN, TALLY_ENONFINITE, "'layers.1.weight'" },
	{ "infinite value", "{" TINY "}", 0, 17, -INFINITY, TALLY_ENONFINITE, "'layers.1.bias'" },
	{ "metadata not an object", "{'__metadata__':[]," TINY "}", 0, 0, 0, TALLY_EFORMAT, "__metadata__" },
	{ "metadata value not a string", "{'__metadata__':{'tally.round':3}," TINY "}", 0, 0, 0,
	  TALLY_EFORMAT, "tally.round" },
	{ "negative round", "{'__metadata__':{'tally.round':'-1'}," TINY "}", 0, 0, 0, TALLY_EFORMAT,
	  "tally.round" },
	{ "round over 2^64", "{'__metadata__':{'tally.round':'18446744073709551616'}," TINY "}", 0, 0, 0,
	  TALLY_EFORMAT, "tally.round" },
	{ "run id too long", "{'__metadata__':{'tally.run_id':'" BIG_ID "'}," TINY "}", 0, 0, 0,
	  TALLY_EFORMAT, "tally.run_id" },
	{ "architecture disagrees", "{'__metadata__':{'tally.arch':'mlp:2-4-2'}," TINY "}", 0, 0, 0,
	  TALLY_ESHAPE, "mlp:2-3-2" },
	{ "other activation", "{'__metadata__':{'tally.activation':'tanh'}," TINY "}", 0, 0, 0,
	  TALLY_ESHAPE, "tanh" },
};

static void test_bad_case(void **state)
{
	const bad_case *c = *state;
	size_t len, n = c->n_floats ? c->n_floats : TINY_FLOATS;
	uint8_t *b = make_file(c->json, n, &len);
	tally_model *sentinel = (tally_model *)&len, *m = sentinel;
	size_t data = len - n * sizeof(float);

	if (c->poison)
		memcpy(b + data + (size_t)(c->poison - 1) * sizeof(float), &c->value, sizeof(float));
	tally_err_clear();
	assert_int_equal(tally_model_from_safetensors(&m, b, len), c->expect);
	assert_ptr_equal(m, sentinel);  /* *out is set only on success */
	assert_true(strncmp(tally_errmsg(), "safetensors data: ", 18) == 0);
	if (c->mention && !strstr(tally_errmsg(), c->mention))
		fail_msg("message '%s' does not mention '%s'", tally_errmsg(), c->mention);
	free(b);
}

static void expect_refusal(const uint8_t *b, size_t len, int code, const char *mention)
{
	tally_model *m = NULL;

	tally_err_clear();
	assert_int_equal(tally_model_from_safetensors(&m, b, len), code);
	assert_null(m);
	if (!strstr(tally_errmsg(), mention))
		fail_msg("message '%s' does not mention '%s'", tally_errmsg(), mention);
}

static void test_refuses_short_files(void **state)
{
	static const uint8_t seven[7] = { 2, 0, 0, 0, 0, 0, 0 };

	expect_refusal((const uint8_t *)"", 0, TALLY_EFORMAT, "too short");
	expect_refusal(seven, sizeof(seven), TALLY_EFORMAT, "too short");
}

static void test_refuses_header_longer_than_file(void **state)
{
	size_t len;
	uint8_t *b = make_file("{" TINY "}", TINY_FLOATS, &len);

	b[0] = 0xff;  /* header length 0x1..ff > what follows */
	b[1] = 0xff;
	expect_refusal(b, len, TALLY_EFORMAT, "longer than");
	b[7] = 0x80;  /* 2^63 + ...: no overflow in the comparison */
	expect_refusal(b, len, TALLY_EFORMAT, "longer than");
	free(b);
}

static void test_refuses_header_over_limit(void **state)
{
	size_t hlen = ((size_t)100 << 20) + 8, len = 8 + hlen + 8;
	uint8_t *b = calloc(1, len);

	assert_non_null(b);
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(hlen >> (8 * i));
	expect_refusal(b, len, TALLY_ETOOBIG, "over the limit");
	free(b);
}

/* ---- files ---- */

static void test_load_names_the_file(void **state)
{
	char *dir = temp_dir(), path[4096];
	size_t len;
	uint8_t *b = make_file("{" W0 "," B0 "," W1 "}", 15, &len);
	tally_model *m = NULL;

	snprintf(path, sizeof(path), "%s/broken.safetensors", dir);
	write_bytes(path, b, len);
	assert_int_equal(tally_model_load(&m, path), TALLY_ESHAPE);
	assert_null(m);
	assert_true(strncmp(tally_errmsg(), path, strlen(path)) == 0);
	assert_non_null(strstr(tally_errmsg(), "layers.1.bias"));
	snprintf(path, sizeof(path), "%s/absent.safetensors", dir);
	assert_int_equal(tally_model_load(&m, path), TALLY_ENOENT);
	assert_non_null(strstr(tally_errmsg(), path));
	free(b);
	remove_dir(dir);
}

static void test_save_replaces_atomically(void **state)
{
	char *dir = temp_dir(), path[4096], names[1024];
	tally_model *a = model_make("mlp:784-32-10", 1, 1, "a"), *b = model_make("mlp:784-10", 2, 2, "b");
	tally_model *back = NULL;
	struct stat st;
	mode_t old_mask = umask(077);  /* the mode must not depend on the caller's umask */

	snprintf(path, sizeof(path), "%s/global.safetensors", dir);
	assert_int_equal(tally_model_save(a, path), 0);
	assert_int_equal(tally_model_save(b, path), 0);
	umask(old_mask);
	list_dir(dir, names, sizeof(names));
	assert_string_equal(names, "/global.safetensors");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(tally_model_load(&back, path), 0);
	assert_models_equal(b, back);
	tally_model_destroy(&back);

	b->run_id[0] = (char)0xff;  /* not UTF-8: refused before anything is written */
	b->run_id[1] = '\0';
	assert_int_equal(tally_model_save(b, path), TALLY_EINVAL);
	list_dir(dir, names, sizeof(names));
	assert_string_equal(names, "/global.safetensors");
	assert_int_equal(tally_model_load(&back, path), 0);
	assert_string_equal(back->run_id, "b");
	tally_model_destroy(&back);
	tally_model_destroy(&a);
	tally_model_destroy(&b);
	remove_dir(dir);
}

/* ---- agreement with tests/python/safetensors_check.py ---- */

typedef struct py_env {
	char script[4096], images[4096], labels[4096];
	tally_dataset *test;
} py_env;

/* Skips unless python3 with numpy, the script and the Fashion-MNIST test set are all here. */
static void py_env_open(py_env *e)
{
	const char *src = getenv("TALLY_SOURCE_DIR"), *data = getenv("TALLY_FMNIST_DIR");

	if (!src || !data || access("/usr/bin/python3", X_OK) != 0 ||
	    system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0)
		skip();
	snprintf(e->script, sizeof(e->script), "%s/tests/python/safetensors_check.py", src);
	snprintf(e->images, sizeof(e->images), "%s/t10k-images-idx3-ubyte.gz", data);
	snprintf(e->labels, sizeof(e->labels), "%s/t10k-labels-idx1-ubyte.gz", data);
	if (access(e->images, R_OK) != 0 || access(e->labels, R_OK) != 0)
		skip();
	assert_int_equal(access(e->script, R_OK), 0);
	assert_int_equal(tally_dataset_load_idx(&e->test, e->images, e->labels), 0);
	assert_int_equal(e->test->n, 10000);
}

/* Runs the script on model_path; returns its exit status and its output (stdout and stderr) in out. */
static int py_check(const py_env *e, const char *model_path, char *out, size_t size)
{
	char cmd[16384];
	FILE *p;
	size_t got;
	int status, n;

	n = snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' '%s' '%s' '%s' 2>&1", e->script, model_path,
		     e->images, e->labels);
	assert_true(n > 0 && (size_t)n < sizeof(cmd));
	p = popen(cmd, "r");
	assert_non_null(p);
	got = fread(out, 1, size - 1, p);
	out[got] = '\0';
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static double json_number(const char *line, const char *key)
{
	const char *p = strstr(line, key);

	if (!p)
		fail_msg("no %s in '%s'", key, line);
	return strtod(p + strlen(key), NULL);
}

static void expect_python_agrees(const py_env *e, const tally_model *m)
{
	char *dir = temp_dir(), path[4096], out[4096];
	double loss, acc, py_loss, py_acc;

	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	assert_int_equal(tally_model_save(m, path), 0);
	assert_int_equal(tally_evaluate(m, e->test, NULL, e->test->n, &loss, &acc), 0);
	assert_int_equal(py_check(e, path, out, sizeof(out)), 0);
	py_acc = json_number(out, "\"accuracy\":");
	py_loss = json_number(out, "\"loss\":");
	print_message("tally: accuracy %.4f loss %.5f; numpy: %s", acc, loss, out);
	assert_true(fabs(acc - py_acc) <= 0.002);
	/* float32 sums in a different order differ by ~1e-6; a pixel scale of 1/256 moves it by 2e-3 */
	assert_true(fabs(loss - py_loss) <= 1e-4 * (1 + fabs(loss)));
	remove_dir(dir);
}

/*
 * Softmax regression as a nearest-centroid classifier: W[c] = s*mean_c, b[c] = -s*|mean_c|^2/2,
 * so argmax is the nearest class mean; far better than chance, so the comparison means something.
 */
static void test_python_agrees_softmax(void **state)
{
	py_env e = { .test = NULL };
	tally_model *m;
	const float s = 0.05f;

	py_env_open(&e);  /* first: a skip must leak nothing */
	m = model_make("mlp:784-10", 0, 5, "centroids");
	memset(m->params, 0, m->n_params * sizeof(float));
	for (uint32_t c = 0; c < 10; c++) {
		double sum[784] = { 0 }, sq = 0;
		uint32_t count = 0;

		for (uint32_t i = 0; i < e.test->n; i++) {
			if (e.test->y[i] != c)
				continue;
			count++;
			for (uint32_t j = 0; j < 784; j++)
				sum[j] += e.test->x[(size_t)i * 784 + j];
		}
		assert_true(count > 0);
		for (uint32_t j = 0; j < 784; j++) {
			m->params[c * 784 + j] = (float)(s * sum[j] / count);
			sq += (sum[j] / count) * (sum[j] / count);
		}
		m->params[tally_model_bias_offset(m, 0) + c] = (float)(-s * sq / 2);
	}
	expect_python_agrees(&e, m);
	tally_model_destroy(&m);
	tally_dataset_destroy(&e.test);
}

/* A random two-layer MLP exercises ReLU and the [out, in] orientation of every weight. */
static void test_python_agrees_mlp(void **state)
{
	py_env e = { .test = NULL };
	tally_model *m;

	py_env_open(&e);
	m = model_make("mlp:784-64-32-10", 99, 1, "random");
	for (size_t i = 0; i < m->n_params; i++)
		m->params[i] *= 4.0f;  /* larger logits: predictions far from ties */
	expect_python_agrees(&e, m);
	tally_model_destroy(&m);
	tally_dataset_destroy(&e.test);
}

/* Writes a tiny model's file with one defect and expects the script to fail naming it. */
static void expect_python_refuses(const py_env *e, const char *dir, int defect, const char *mention)
{
	tally_model *m = tiny_model(7, "kat");
	char path[4096], out[4096];
	uint8_t *b = NULL;
	size_t len = 0;
	float nan = NAN;

	assert_int_equal(tally_model_to_safetensors(m, &b, &len), 0);
	assert_non_null(b = realloc(b, len + 4));
	switch (defect) {
	case 0:  /* truncated */
		len -= 4;
		break;
	case 1:  /* bytes after the last tensor */
		memset(b + len, 0, 4);
		len += 4;
		break;
	case 2:  /* NaN */
		memcpy(b + len - 4, &nan, 4);
		break;
	default:  /* the 436-byte JSON without its padding: data no longer 8-aligned */
		b[0] = 0xb4;
		memmove(b + 8 + 436, b + 448, len - 448);
		len -= 4;
	}
	snprintf(path, sizeof(path), "%s/broken.safetensors", dir);
	write_bytes(path, b, len);
	assert_int_not_equal(py_check(e, path, out, sizeof(out)), 0);
	if (!strstr(out, mention))
		fail_msg("script said '%s', not '%s'", out, mention);
	free(b);
	tally_model_destroy(&m);
}

static void test_python_refuses_malformed(void **state)
{
	py_env e = { .test = NULL };
	char *dir;

	py_env_open(&e);
	dir = temp_dir();
	expect_python_refuses(&e, dir, 0, "outside");
	expect_python_refuses(&e, dir, 1, "belong to no tensor");
	expect_python_refuses(&e, dir, 2, "non-finite");
	expect_python_refuses(&e, dir, 3, "multiple of 8");
	remove_dir(dir);
	tally_dataset_destroy(&e.test);
}

int main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_known_answer_bytes),
		cmocka_unit_test(test_save_writes_known_bytes),
		cmocka_unit_test(test_round_trip_mlp),
		cmocka_unit_test(test_round_trip_softmax),
		cmocka_unit_test(test_torch_layout_loads),
		cmocka_unit_test(test_foreign_metadata_loads),
		cmocka_unit_test(test_refuses_short_files),
		cmocka_unit_test(test_refuses_header_longer_than_file),
		cmocka_unit_test(test_refuses_header_over_limit),
		cmocka_unit_test(test_load_names_the_file),
		cmocka_unit_test(test_save_replaces_atomically),
		cmocka_unit_test(test_python_agrees_softmax),
		cmocka_unit_test(test_python_agrees_mlp),
		cmocka_unit_test(test_python_refuses_malformed),
	};
	struct CMUnitTest tests[ARRAY_LEN(fixed) + ARRAY_LEN(bad_cases)];

	memcpy(tests, fixed, sizeof(fixed));
	for (size_t i = 0; i < ARRAY_LEN(bad_cases); i++)
		tests[ARRAY_LEN(fixed) + i] = (struct CMUnitTest){ .name = bad_cases[i].name,
			.test_func = test_bad_case, .initial_state = (void *)&bad_cases[i] };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
