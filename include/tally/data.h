/*
 * Training data: a dense table of float features with one small-integer label per example, read
 * from IDX files (MNIST, Fashion-MNIST; gzip or plain) or numeric CSV, plus the partitions that
 * give each federated party its share of the examples.
 *
 * Partitions are computed, never exchanged: every party runs tally_partition() over the same
 * labels with the same scheme, party count and seed, derives the whole assignment and keeps its
 * own part, so all parties agree without talking. Readers refuse malformed input with a message
 * naming the file (or "images"/"labels"/"csv" for in-memory bytes) and the problem.
 *
 * All functions are pure apart from file reads and allocation and may be called from any thread.
 */
#ifndef TALLY_DATA_H
#define TALLY_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TALLY_DATA_MAX_EXAMPLES (1u << 24)   /* examples in one dataset */
#define TALLY_DATA_MAX_SIDE (1u << 16)       /* rows or columns of an IDX image */
#define TALLY_DATA_MAX_DIM (1u << 24)        /* features per example */
#define TALLY_DATA_MAX_FILE ((size_t)1 << 30) /* bytes of a (decompressed) data file */
#define TALLY_PART_MAX_PARTIES 100000u
#define TALLY_PART_MAX_SHARDS 100000u

typedef struct tally_dataset {
	uint32_t n;          /* examples */
	uint32_t dim;        /* features per example */
	uint32_t n_classes;  /* labels are 0..n_classes-1; at least 2 */
	float *x;            /* n*dim, row-major; IDX pixels scaled to [0,1] (byte/255); owned */
	uint8_t *y;          /* n labels; owned */
} tally_dataset;

/*
 * Reads an IDX image file (magic 0x00000803: unsigned bytes, 3 dimensions) and its IDX label file
 * (magic 0x00000801), each gzip-compressed (possibly multi-member) or plain. n_classes is the
 * largest label + 1, at least 2. Sets *out only on success.
 * Errors, each with a message naming the file:
 *   TALLY_ENOENT, TALLY_EACCES, TALLY_EIO  the file cannot be read;
 *   TALLY_EFORMAT  bad magic, wrong element type or rank, corrupt or truncated gzip, data shorter
 *                  than the header promises, trailing bytes;
 *   TALLY_ESHAPE   a zero dimension, or image and label counts that differ;
 *   TALLY_ETOOBIG  over TALLY_DATA_MAX_* limits;
 *   TALLY_ENOMEM.
 */
int tally_dataset_load_idx(tally_dataset **out, const char *images_path, const char *labels_path);

/* As tally_dataset_load_idx on already decompressed bytes (messages say "images"/"labels"). */
int tally_dataset_from_idx_bytes(tally_dataset **out, const uint8_t *img, size_t img_len,
				 const uint8_t *lab, size_t lab_len);

/*
 * Fashion-MNIST (or MNIST) from dir: train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz
 * when train, t10k-* otherwise; the uncompressed names (without .gz) are tried when the .gz file
 * does not exist. Errors as tally_dataset_load_idx, plus TALLY_EINVAL for a too-long dir.
 */
int tally_dataset_load_fmnist(tally_dataset **out, const char *dir, bool train);

/*
 * A numeric CSV table of at most TALLY_DATA_MAX_FILE bytes: comma-separated, \n or \r\n line
 * ends, spaces around fields and blank lines ignored, an optional header line (its field count
 * must match, quoted names allowed). Column label_column holds an integer label 0..255; every
 * other column is a feature, multiplied by scale. Sets *out only on success.
 * Errors, each with a message naming the file and line:
 *   TALLY_EFORMAT     empty table, ragged rows, a field that is not a number, a non-integer label;
 *   TALLY_ENONFINITE  NaN or infinity (also after scaling);
 *   TALLY_ERANGE      a label outside 0..255;
 *   TALLY_ESHAPE      label_column beyond the row width, or no feature columns;
 *   TALLY_ETOOBIG, TALLY_ENOMEM, and the file errors of tally_file_read.
 */
int tally_dataset_load_csv(tally_dataset **out, const char *path, uint32_t label_column,
			   bool has_header, float scale);

/* As tally_dataset_load_csv on a buffer of len bytes (need not be NUL-terminated). */
int tally_dataset_from_csv_bytes(tally_dataset **out, const uint8_t *buf, size_t len,
				 uint32_t label_column, bool has_header, float scale);

/*
 * A new dataset holding copies of rows idx[0..n) of d in that order (n may be 0), with d's dim and
 * n_classes. Sets *out only on success. Errors: TALLY_ERANGE for an index >= d->n, TALLY_ENOMEM.
 */
int tally_dataset_subset(tally_dataset **out, const tally_dataset *d, const uint32_t *idx, size_t n);

/* Frees *dp and sets it to NULL; accepts NULL and *dp == NULL. */
void tally_dataset_destroy(tally_dataset **dp);

/* Partitions (core/partition.c). */

typedef enum { TALLY_PART_IID, TALLY_PART_DIRICHLET, TALLY_PART_SHARDS } tally_part_kind;

typedef struct tally_part_scheme {
	tally_part_kind kind;
	double alpha;     /* DIRICHLET: concentration, > 0 and finite; smaller is more skewed */
	uint32_t shards;  /* SHARDS: shards per party, 1..TALLY_PART_MAX_SHARDS */
} tally_part_scheme;

/*
 * Parses "iid", "dirichlet:ALPHA" (ALPHA > 0, finite) or "shards:S" (1 <= S <= 100000) into *out.
 * Errors: TALLY_ECONFIG with a message; *out is untouched then.
 */
int tally_part_scheme_parse(const char *s, tally_part_scheme *out);

/* Writes the parse form of s ("dirichlet:0.5") into buf; returns snprintf's count. */
int tally_part_scheme_format(const tally_part_scheme *s, char *buf, size_t size);

/* Parses "K/N" (0 <= K < N <= 100000, decimal digits only). Errors: TALLY_ECONFIG with a message. */
int tally_part_spec_parse(const char *s, uint32_t *k, uint32_t *n);

/*
 * The party (0..n-1) of every example: owner[i] for i < n_examples, deterministic by
 * (labels, scheme, n, seed) on every platform.
 *   iid          shuffle, then n contiguous blocks whose sizes differ by at most 1;
 *   dirichlet:a  per class, proportions p ~ Dir(a) over the parties (parties already holding
 *                n_examples/n get none, as in Hsu et al./FedLab/Flower) split the shuffled class;
 *                redrawn (up to 100 times, fewer when n * n_classes is in the millions)
 *                until every party holds at least min(10, n_examples/n/2) examples, else the
 *                draw with the largest minimum;
 *   shards:S     sort by label, cut into n*S equal shards, shuffle them, S per party (McMahan et
 *                al.); needs n*S <= n_examples.
 * Errors: TALLY_EINVAL (n outside 1..100000, n_examples over TALLY_DATA_MAX_EXAMPLES),
 * TALLY_ERANGE (a label >= n_classes), TALLY_ECONFIG (bad scheme, too many shards), TALLY_ENOMEM;
 * each with a message.
 */
int tally_partition_assign(const uint8_t *labels, size_t n_examples, uint32_t n_classes,
			   const tally_part_scheme *scheme, uint32_t n, uint64_t seed, uint32_t *owner);

/*
 * The indices of the examples of partition k of n under tally_partition_assign: sets *idx (malloc'd,
 * sorted ascending, never NULL on success; the caller frees it) and *count, only on success. The n
 * partitions are disjoint and together cover every example once. Errors as
 * tally_partition_assign, plus TALLY_EINVAL for k >= n.
 */
int tally_partition(const uint8_t *labels, size_t n_examples, uint32_t n_classes,
		    const tally_part_scheme *scheme, uint32_t k, uint32_t n, uint64_t seed,
		    uint32_t **idx, size_t *count);

#ifdef __cplusplus
}
#endif
#endif
