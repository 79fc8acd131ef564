/*
 * Dataset readers. IDX files (the MNIST family) arrive gzip-compressed or plain; they are read
 * whole with a size ceiling, inflated in memory and checked against their header before a float is
 * written, so a hostile or damaged file costs at most its own size. CSV tables are scanned once
 * for their shape and parsed a second time into a buffer of exactly that size. Partitions live in
 * partition.c.
 */
#include "tally/data.h"
#include "tally/error.h"
#include "tally/fs.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_IMAGES_HEADER 16
#define IDX_LABELS_HEADER 8
#define DEFLATE_MAX_RATIO 1032 /* deflate never expands by more than this */

static int dataset_alloc(tally_dataset **out, uint32_t n, uint32_t dim)
{
	tally_dataset *d = calloc(1, sizeof(*d));
	size_t cells = (size_t)n * dim;

	if (!d)
		return TALLY_ENOMEM;
	d->x = malloc((cells ? cells : 1) * sizeof(float));
	d->y = malloc(n ? n : 1);
	if (!d->x || !d->y) {
		tally_dataset_destroy(&d);
		return TALLY_ENOMEM;
	}
	d->n = n;
	d->dim = dim;
	d->n_classes = 2;
	*out = d;
	return 0;
}

void tally_dataset_destroy(tally_dataset **dp)
{
	if (!dp || !*dp)
		return;
	free((*dp)->x);
	free((*dp)->y);
	free(*dp);
	*dp = NULL;
}

/* The largest label + 1, but at least 2: a one-class dataset still trains a binary output. */
static uint32_t classes_of(const uint8_t *y, size_t n)
{
	uint32_t classes = 2;

	for (size_t i = 0; i < n; i++)
		if (y[i] >= classes)
			classes = (uint32_t)y[i] + 1;
	return classes;
}

int tally_dataset_subset(tally_dataset **out, const tally_dataset *d, const uint32_t *idx, size_t n)
{
	tally_dataset *s;
	int rc;

	if (n > TALLY_DATA_MAX_EXAMPLES)
		return tally_err(TALLY_ETOOBIG, "a subset of %zu examples is over the limit of %u", n,
				 TALLY_DATA_MAX_EXAMPLES);
	for (size_t i = 0; i < n; i++)
		if (idx[i] >= d->n)
			return tally_err(TALLY_ERANGE, "subset index %u is outside a dataset of %u examples",
					 idx[i], d->n);
	rc = dataset_alloc(&s, (uint32_t)n, d->dim);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		memcpy(s->x + i * d->dim, d->x + (size_t)idx[i] * d->dim, d->dim * sizeof(float));
		s->y[i] = d->y[idx[i]];
	}
	s->n_classes = d->n_classes;
	*out = s;
	return 0;
}

/* IDX: a big-endian magic 0x0000TTRR (T element type, R rank), R big-endian sizes, then data. */

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Checks the magic of an unsigned-byte IDX file of the given rank and reads its sizes. */
static int idx_header(const uint8_t *b, size_t len, const char *name, uint8_t rank, uint32_t *dims)
{
	size_t hdr = 4 + 4 * (size_t)rank;

	if (len < 4)
		return tally_err(TALLY_EFORMAT, "%s: %zu bytes is too short for an IDX file", name, len);
	if (b[0] != 0 || b[1] != 0)
		return tally_err(TALLY_EFORMAT, "%s: not an IDX file (magic 0x%08x)", name, be32(b));
	if (b[2] != 0x08)
		return tally_err(TALLY_EFORMAT, "%s: IDX element type 0x%02x is not unsigned bytes (0x08)",
				 name, b[2]);
	if (b[3] != rank)
		return tally_err(TALLY_EFORMAT, "%s: IDX magic 0x%08x says %u dimensions, expected %u",
				 name, be32(b), b[3], rank);
	if (len < hdr)
		return tally_err(TALLY_EFORMAT, "%s: truncated IDX header (%zu of %zu bytes)", name, len, hdr);
	for (uint8_t i = 0; i < rank; i++) {
		dims[i] = be32(b + 4 + 4 * (size_t)i);
		if (dims[i] == 0)
			return tally_err(TALLY_ESHAPE, "%s: IDX dimension %u is zero", name, i);
	}
	return 0;
}

/* Checks that exactly want data bytes follow the header. */
static int idx_payload(size_t len, size_t hdr, uint64_t want, const char *name)
{
	uint64_t have = len - hdr;

	if (have < want)
		return tally_err(TALLY_EFORMAT, "%s: truncated: the header promises %llu data bytes, "
				 "the file has %llu", name, (unsigned long long)want, (unsigned long long)have);
	if (have > want)
		return tally_err(TALLY_EFORMAT, "%s: %llu trailing bytes after the data the header "
				 "describes", name, (unsigned long long)(have - want));
	return 0;
}

static int idx_images(const uint8_t *b, size_t len, const char *name, uint32_t *n, uint32_t *dim)
{
	uint32_t d[3];
	int rc = idx_header(b, len, name, 3, d);

	if (rc)
		return rc;
	if (d[0] > TALLY_DATA_MAX_EXAMPLES)
		return tally_err(TALLY_ETOOBIG, "%s: %u images is over the limit of %u", name, d[0],
				 TALLY_DATA_MAX_EXAMPLES);
	if (d[1] > TALLY_DATA_MAX_SIDE || d[2] > TALLY_DATA_MAX_SIDE)
		return tally_err(TALLY_ETOOBIG, "%s: %ux%u images are over the limit of %u per side",
				 name, d[1], d[2], TALLY_DATA_MAX_SIDE);
	if ((uint64_t)d[1] * d[2] > TALLY_DATA_MAX_DIM)
		return tally_err(TALLY_ETOOBIG, "%s: %ux%u images are over the limit of %u pixels",
				 name, d[1], d[2], TALLY_DATA_MAX_DIM);
	rc = idx_payload(len, IDX_IMAGES_HEADER, (uint64_t)d[0] * d[1] * d[2], name);
	*n = d[0];
	*dim = d[1] * d[2];
	return rc;
}

static int idx_labels(const uint8_t *b, size_t len, const char *name, uint32_t *n)
{
	uint32_t d[1] = {0};
	int rc = idx_header(b, len, name, 1, d);

	if (rc)
		return rc;
	if (d[0] > TALLY_DATA_MAX_EXAMPLES)
		return tally_err(TALLY_ETOOBIG, "%s: %u labels is over the limit of %u", name, d[0],
				 TALLY_DATA_MAX_EXAMPLES);
	*n = d[0];
	return idx_payload(len, IDX_LABELS_HEADER, d[0], name);
}

static int dataset_from_idx(tally_dataset **out, const uint8_t *img, size_t img_len,
			    const char *img_name, const uint8_t *lab, size_t lab_len, const char *lab_name)
{
	uint32_t n = 0, n_labels = 0, dim = 0;
	float scale[256];
	tally_dataset *d;
	int rc;

	if ((rc = idx_images(img, img_len, img_name, &n, &dim)) ||
	    (rc = idx_labels(lab, lab_len, lab_name, &n_labels)))
		return rc;
	if (n != n_labels)
		return tally_err(TALLY_ESHAPE, "%s has %u images but %s has %u labels", img_name, n,
				 lab_name, n_labels);
	if ((rc = dataset_alloc(&d, n, dim)))
		return rc;
	for (int v = 0; v < 256; v++)
		scale[v] = (float)v / 255.0f;
	img += IDX_IMAGES_HEADER;
	for (size_t i = 0; i < (size_t)n * dim; i++)
		d->x[i] = scale[img[i]];
	memcpy(d->y, lab + IDX_LABELS_HEADER, n);
	d->n_classes = classes_of(d->y, n);
	*out = d;
	return 0;
}

int tally_dataset_from_idx_bytes(tally_dataset **out, const uint8_t *img, size_t img_len,
				 const uint8_t *lab, size_t lab_len)
{
	return dataset_from_idx(out, img, img_len, "images", lab, lab_len, "labels");
}

/* gzip in memory. */

static bool is_gzip(const uint8_t *b, size_t len)
{
	return len >= 2 && b[0] == 0x1f && b[1] == 0x8b;
}

/* A first output buffer size: the trailer's ISIZE, bounded by what deflate could produce. */
static size_t gunzip_guess(const uint8_t *in, size_t len)
{
	uint64_t isize = len >= 4 ? (uint64_t)in[len - 4] | (uint64_t)in[len - 3] << 8 |
				    (uint64_t)in[len - 2] << 16 | (uint64_t)in[len - 1] << 24 : 0;
	uint64_t most = (uint64_t)len * DEFLATE_MAX_RATIO;

	if (isize > most)
		isize = most;
	if (isize > TALLY_DATA_MAX_FILE)
		isize = TALLY_DATA_MAX_FILE;
	return (size_t)isize + 1; /* room for inflate to see the end without a second call */
}

/* Makes room for more output, up to one byte over the limit so that an oversized file shows. */
static int gunzip_grow(uint8_t **buf, size_t *cap, const char *name)
{
	size_t want = *cap <= TALLY_DATA_MAX_FILE / 2 ? *cap * 2 : TALLY_DATA_MAX_FILE + 1;
	uint8_t *nb;

	if (*cap > TALLY_DATA_MAX_FILE)
		return tally_err(TALLY_ETOOBIG, "%s: decompresses to over %zu bytes", name,
				 TALLY_DATA_MAX_FILE);
	nb = realloc(*buf, want);
	if (!nb)
		return TALLY_ENOMEM;
	*buf = nb;
	*cap = want;
	return 0;
}

/* Interprets one inflate() result; returns 1 when the input is done, 0 to go on, or an error. */
static int gunzip_status(z_stream *zs, int zrc, const char *name)
{
	if (zrc == Z_STREAM_END) {
		if (zs->avail_in == 0)
			return 1;
		if (!is_gzip(zs->next_in, zs->avail_in))
			return tally_err(TALLY_EFORMAT, "%s: %u bytes of trailing garbage after the gzip data",
					 name, zs->avail_in);
		return inflateReset(zs) == Z_OK ? 0 : TALLY_EFORMAT; /* another gzip member */
	}
	if (zrc == Z_OK)
		return 0;
	if (zrc == Z_BUF_ERROR && zs->avail_in == 0)
		return tally_err(TALLY_EFORMAT, "%s: truncated gzip data", name);
	if (zrc == Z_MEM_ERROR)
		return TALLY_ENOMEM;
	return tally_err(TALLY_EFORMAT, "%s: corrupt gzip data (%s)", name,
			 zs->msg ? zs->msg : zError(zrc));
}

/* Inflates the gzip stream in[0..len) (len <= TALLY_DATA_MAX_FILE) into a new buffer. */
static int gunzip(const char *name, const uint8_t *in, size_t len, uint8_t **out, size_t *out_len)
{
	z_stream zs = { 0 };
	size_t cap = gunzip_guess(in, len), done = 0;
	uint8_t *buf = malloc(cap);
	int rc = 0;

	if (!buf || inflateInit2(&zs, 15 + 16) != Z_OK) {
		free(buf);
		return TALLY_ENOMEM;
	}
	zs.next_in = (Bytef *)in;
	zs.avail_in = (uInt)len;
	while (rc == 0) {
		uInt room;

		if (done == cap && (rc = gunzip_grow(&buf, &cap, name)))
			break;
		room = (uInt)(cap - done < UINT_MAX ? cap - done : UINT_MAX);
		zs.next_out = buf + done;
		zs.avail_out = room;
		rc = gunzip_status(&zs, inflate(&zs, Z_NO_FLUSH), name);
		done += room - zs.avail_out;
	}
	inflateEnd(&zs);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*out = buf;
	*out_len = done;
	return 0;
}

/* Reads path whole, inflating it if it is gzip. */
static int read_maybe_gzip(const char *path, uint8_t **out, size_t *out_len)
{
	uint8_t *raw = NULL;
	size_t len = 0;
	int rc = tally_file_read(path, TALLY_DATA_MAX_FILE, &raw, &len);

	if (rc)
		return rc;
	if (!is_gzip(raw, len)) {
		*out = raw;
		*out_len = len;
		return 0;
	}
	rc = gunzip(path, raw, len, out, out_len);
	free(raw);
	return rc;
}

int tally_dataset_load_idx(tally_dataset **out, const char *images_path, const char *labels_path)
{
	uint8_t *img = NULL, *lab = NULL;
	size_t img_len = 0, lab_len = 0;
	int rc;

	rc = read_maybe_gzip(images_path, &img, &img_len);
	if (rc)
		goto out;
	rc = read_maybe_gzip(labels_path, &lab, &lab_len);
	if (rc)
		goto out;
	rc = dataset_from_idx(out, img, img_len, images_path, lab, lab_len, labels_path);
out:
	free(img);
	free(lab);
	return rc;
}

/* dir/base.gz if it exists or base does not, else dir/base. */
static int fmnist_path(char *buf, size_t size, const char *dir, const char *base)
{
	struct stat st;

	if (snprintf(buf, size, "%s/%s", dir, base) >= (int)size - 3)
		return tally_err(TALLY_EINVAL, "folder name too long: %s", dir);
	if (stat(buf, &st) == 0) {
		char gz[4096];

		snprintf(gz, sizeof(gz), "%s.gz", buf);
		if (stat(gz, &st) == 0)
			strcat(buf, ".gz");
		return 0;
	}
	strcat(buf, ".gz");
	return 0;
}

int tally_dataset_load_fmnist(tally_dataset **out, const char *dir, bool train)
{
	char img[4096], lab[4096];
	const char *set = train ? "train" : "t10k";
	char base[64];
	int rc;

	snprintf(base, sizeof(base), "%s-images-idx3-ubyte", set);
	if ((rc = fmnist_path(img, sizeof(img), dir, base)))
		return rc;
	snprintf(base, sizeof(base), "%s-labels-idx1-ubyte", set);
	if ((rc = fmnist_path(lab, sizeof(lab), dir, base)))
		return rc;
	return tally_dataset_load_idx(out, img, lab);
}

/*
 * CSV. Numbers are read with strtod, so in the C locale the tally programs run in; a field is at
 * most CSV_FIELD_MAX characters, which is far more than any float needs.
 */

#define CSV_FIELD_MAX 127

typedef struct csv_reader {
	const char *name;
	const uint8_t *p, *end;  /* unread input */
	size_t line;             /* number of the line last returned, from 1 */
	uint32_t label_column;
	size_t width;            /* fields per row */
	float scale;
} csv_reader;

/* The next line [*ls, *le) without its line end; false at the end of the input. */
static bool csv_next_line(csv_reader *r, const uint8_t **ls, const uint8_t **le)
{
	const uint8_t *nl;

	if (r->p >= r->end)
		return false;
	nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
	*ls = r->p;
	*le = nl ? nl : r->end;
	r->p = nl ? nl + 1 : r->end;
	if (*le > *ls && (*le)[-1] == '\r')
		(*le)--;
	r->line++;
	return true;
}

static bool is_space(uint8_t c)
{
	return c == ' ' || c == '\t';
}

static bool is_blank(const uint8_t *s, const uint8_t *e)
{
	while (s < e && is_space(*s))
		s++;
	return s == e;
}

/* The next non-blank line, or false at the end of the input. */
static bool csv_next_row(csv_reader *r, const uint8_t **ls, const uint8_t **le)
{
	while (csv_next_line(r, ls, le))
		if (!is_blank(*ls, *le))
			return true;
	return false;
}

/*
 * Comma-separated fields in [s, e). In a header, commas inside double quotes do not count; data
 * rows are numbers, so there every comma splits (as csv_row does).
 */
static size_t count_fields(const uint8_t *s, const uint8_t *e, bool header)
{
	size_t n = 1;
	bool quoted = false;

	for (; s < e; s++) {
		if (*s == '"' && header)
			quoted = !quoted;
		else if (*s == ',' && !quoted)
			n++;
	}
	return n;
}

/* Finds the row width and an upper bound of the row count; leaves r at the first data row. */
static int csv_scan(csv_reader *r, bool has_header, size_t *rows)
{
	const uint8_t *ls, *le;
	csv_reader peek;

	if (r->end - r->p >= 3 && memcmp(r->p, "\xef\xbb\xbf", 3) == 0)
		r->p += 3; /* UTF-8 byte order mark */
	if (has_header && csv_next_row(r, &ls, &le))
		r->width = count_fields(ls, le, true);
	peek = *r;
	*rows = 0;
	while (csv_next_row(&peek, &ls, &le)) {
		if (*rows == 0 && !has_header)
			r->width = count_fields(ls, le, false);
		if (++*rows > TALLY_DATA_MAX_EXAMPLES)
			return tally_err(TALLY_ETOOBIG, "%s: over %u rows", r->name, TALLY_DATA_MAX_EXAMPLES);
	}
	if (*rows == 0)
		return tally_err(TALLY_EFORMAT, "%s: no data rows", r->name);
	if (r->label_column >= r->width)
		return tally_err(TALLY_ESHAPE, "%s: label column %u is beyond rows of %zu fields "
				 "(columns count from 0)", r->name, r->label_column, r->width);
	if (r->width < 2)
		return tally_err(TALLY_ESHAPE, "%s: rows need a label and at least one feature", r->name);
	if (r->width - 1 > TALLY_DATA_MAX_DIM)
		return tally_err(TALLY_ETOOBIG, "%s: %zu features is over the limit of %u", r->name,
				 r->width - 1, TALLY_DATA_MAX_DIM);
	return 0;
}

/* Copies field [s, e) into tmp for a message, printable characters only. */
static const char *csv_show(char *tmp, size_t size, const uint8_t *s, const uint8_t *e)
{
	size_t n = (size_t)(e - s) < size - 1 ? (size_t)(e - s) : size - 1;

	for (size_t i = 0; i < n; i++)
		tmp[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
	tmp[n] = '\0';
	return tmp;
}

/* Parses field [s, e) of column col (from 0) as a finite double. */
static int csv_number(const csv_reader *r, size_t col, const uint8_t *s, const uint8_t *e, double *v)
{
	char tmp[CSV_FIELD_MAX + 1], *endp;

	while (s < e && is_space(*s))
		s++;
	while (e > s && is_space(e[-1]))
		e--;
	if (s == e)
		return tally_err(TALLY_EFORMAT, "%s: line %zu, column %zu: empty field", r->name, r->line, col);
	if ((size_t)(e - s) > CSV_FIELD_MAX)
		return tally_err(TALLY_EFORMAT, "%s: line %zu, column %zu: '%s...' is not a number",
				 r->name, r->line, col, csv_show(tmp, 16, s, e));
	memcpy(tmp, s, (size_t)(e - s));
	tmp[e - s] = '\0';
	*v = strtod(tmp, &endp);
	if (endp != tmp + (e - s))
		return tally_err(TALLY_EFORMAT, "%s: line %zu, column %zu: '%s' is not a number",
				 r->name, r->line, col, csv_show(tmp, sizeof(tmp), s, e));
	if (!isfinite(*v))
		return tally_err(TALLY_ENONFINITE, "%s: line %zu, column %zu: '%s' is not finite",
				 r->name, r->line, col, csv_show(tmp, sizeof(tmp), s, e));
	return 0;
}

static int csv_label(const csv_reader *r, size_t col, const uint8_t *s, const uint8_t *e, uint8_t *y)
{
	double v;
	int rc = csv_number(r, col, s, e, &v);

	if (rc)
		return rc;
	if (v != floor(v))
		return tally_err(TALLY_EFORMAT, "%s: line %zu, column %zu: label %g is not an integer",
				 r->name, r->line, col, v);
	if (v < 0 || v > 255)
		return tally_err(TALLY_ERANGE, "%s: line %zu, column %zu: label %g is outside 0..255",
				 r->name, r->line, col, v);
	*y = (uint8_t)v;
	return 0;
}

static int csv_feature(const csv_reader *r, size_t col, const uint8_t *s, const uint8_t *e, float *x)
{
	double v;
	int rc = csv_number(r, col, s, e, &v);

	if (rc)
		return rc;
	*x = (float)(v * r->scale);
	if (!isfinite(*x))
		return tally_err(TALLY_ENONFINITE, "%s: line %zu, column %zu: %g times scale %g is not a "
				 "finite float", r->name, r->line, col, v, (double)r->scale);
	return 0;
}

/* Parses the row [ls, le) into x (width - 1 features) and *y. */
static int csv_row(const csv_reader *r, const uint8_t *ls, const uint8_t *le, float *x, uint8_t *y)
{
	size_t fields = count_fields(ls, le, false);
	const uint8_t *s = ls;
	int rc = 0;

	if (fields != r->width)
		return tally_err(TALLY_EFORMAT, "%s: line %zu has %zu fields where earlier lines have %zu",
				 r->name, r->line, fields, r->width);
	for (size_t col = 0; col < r->width && rc == 0; col++) {
		const uint8_t *e = memchr(s, ',', (size_t)(le - s));

		if (!e)
			e = le;
		if (col == r->label_column)
			rc = csv_label(r, col, s, e, y);
		else
			rc = csv_feature(r, col, s, e, x++);
		s = e + 1;
	}
	return rc;
}

static int dataset_from_csv(tally_dataset **out, const char *name, const uint8_t *buf, size_t len,
			    uint32_t label_column, bool has_header, float scale)
{
	static const uint8_t empty[1];
	csv_reader r = { .name = name, .p = buf ? buf : empty, .end = buf ? buf + len : empty,
			 .label_column = label_column, .scale = scale };
	const uint8_t *ls, *le;
	tally_dataset *d = NULL;
	size_t rows, i = 0;
	int rc;

	if (!isfinite(scale))
		return tally_err(TALLY_EINVAL, "%s: scale %g is not finite", name, (double)scale);
	if ((rc = csv_scan(&r, has_header, &rows)) ||
	    (rc = dataset_alloc(&d, (uint32_t)rows, (uint32_t)(r.width - 1))))
		return rc;
	while (rc == 0 && csv_next_row(&r, &ls, &le)) {
		rc = csv_row(&r, ls, le, d->x + i * d->dim, d->y + i);
		i++;
	}
	if (rc) {
		tally_dataset_destroy(&d);
		return rc;
	}
	d->n_classes = classes_of(d->y, d->n);
	*out = d;
	return 0;
}

int tally_dataset_from_csv_bytes(tally_dataset **out, const uint8_t *buf, size_t len,
				 uint32_t label_column, bool has_header, float scale)
{
	return dataset_from_csv(out, "csv", buf, len, label_column, has_header, scale);
}

int tally_dataset_load_csv(tally_dataset **out, const char *path, uint32_t label_column,
			   bool has_header, float scale)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = tally_file_read(path, TALLY_DATA_MAX_FILE, &buf, &len);

	if (rc)
		return rc;
	rc = dataset_from_csv(out, path, buf, len, label_column, has_header, scale);
	free(buf);
	return rc;
}
