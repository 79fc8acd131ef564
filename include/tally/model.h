/*
 * The model tally trains: a multilayer perceptron of Linear layers with ReLU between them
 * (softmax regression when there is no hidden layer), holding every parameter in one contiguous
 * float32 vector so that it can be sent, aggregated and masked as a flat array.
 *
 * Layout of params, for l = 0 .. n_layers-1 in order: the weight of layer l as a row-major
 * [dims[l+1], dims[l]] matrix (PyTorch nn.Linear's [out, in]), then its bias [dims[l+1]].
 * Tensor names in files are "layers.L.weight" and "layers.L.bias".
 */
#ifndef TALLY_MODEL_H
#define TALLY_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define TALLY_MODEL_MAX_LAYERS 16
#define TALLY_RUN_ID_MAX 64

typedef struct tally_model {
	uint32_t n_layers;                          /* Linear layers, >= 1 */
	uint32_t dims[TALLY_MODEL_MAX_LAYERS + 1];  /* dims[0] inputs .. dims[n_layers] classes */
	size_t n_params;
	float *params;                              /* n_params floats, 64-byte aligned, owned */
	uint64_t round;                             /* the round that produced it; 0 = initial */
	char run_id[TALLY_RUN_ID_MAX];              /* NUL-terminated, may be empty */
} tally_model;

/*
 * Allocates a zeroed model with the given layer widths (n_layers + 1 entries, each 1..2^20, total
 * parameters at most 2^31). Sets *out only on success. Errors: TALLY_ESHAPE, TALLY_ENOMEM.
 */
int tally_model_new(tally_model **out, const uint32_t *dims, uint32_t n_layers);

/* Frees *mp and sets it to NULL; accepts NULL and *mp == NULL. */
void tally_model_destroy(tally_model **mp);

/* A deep copy. */
int tally_model_clone(tally_model **out, const tally_model *m);

/* Offsets (in floats) of layer l's weight and bias in params. */
size_t tally_model_weight_offset(const tally_model *m, uint32_t layer);
size_t tally_model_bias_offset(const tally_model *m, uint32_t layer);

/*
 * PyTorch's nn.Linear default initialisation, deterministic by seed: weight and bias uniform in
 * [-1/sqrt(in), 1/sqrt(in)].
 */
void tally_model_init(tally_model *m, uint64_t seed);

/*
 * Architecture strings: "mlp:784-256-128-10" (widths from input to classes; "mlp:784-10" is
 * softmax regression). parse fills dims/n_layers or fails with TALLY_ECONFIG and a message.
 */
int tally_model_arch_format(const tally_model *m, char *buf, size_t size);
int tally_model_arch_parse(const char *s, uint32_t *dims, uint32_t *n_layers);

/*
 * safetensors files (core/safetensors.c). save writes atomically (temporary file, fsync, rename,
 * fsync of the folder) with __metadata__ naming the architecture, round and run id. load refuses
 * malformed headers, wrong dtypes, shapes or offsets, and non-finite values, with a message.
 */
int tally_model_save(const tally_model *m, const char *path);
int tally_model_load(tally_model **out, const char *path);
/* Parses a whole safetensors file held in memory (the fuzz target's entry point). */
int tally_model_from_safetensors(tally_model **out, const uint8_t *buf, size_t len);

/*
 * The safetensors header tally_model_save writes before the params: the 8-byte little-endian
 * length, then compact JSON (__metadata__, then layers.0.weight, layers.0.bias, ...) padded with
 * spaces so that the data starts at a multiple of 8. *hdr is malloc'd, owned by the caller; sets
 * *hdr and *len only on success. Errors: TALLY_EINVAL (run id not UTF-8), TALLY_ENOMEM. Any thread.
 */
int tally_model_safetensors_header(const tally_model *m, uint8_t **hdr, size_t *len);
/* The whole safetensors file of m (header, then params) in one malloc'd buffer; as above. */
int tally_model_to_safetensors(const tally_model *m, uint8_t **buf, size_t *len);

#endif
