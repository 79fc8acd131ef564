/*
 * Dataset readers: IDX against the Fashion-MNIST files shipped by Debian (their published
 * sizes, headers and first labels), malformed IDX and gzip refused with the right code and a
 * message naming the file, CSV tables of every shape, and row subsets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "tally/data.h"
#include "tally/error.h"

/*
 * Regression figures for the decompressed payloads (after the IDX header), obtained once with
 *   /usr/bin/python3 -c 'import gzip,hashlib; b=gzip.open(F).read()[H:];
 *                        print(sum(b), hashlib.sha256(b).hexdigest())'
 * for each file F of /usr/share/datasets/fashion-mnist with H = 16 (images) or 8 (labels).
 */
#define TRAIN_PIXEL_SUM 3431114169ULL
#define TRAIN_LABEL_SUM 270000ULL
#define TRAIN_PIXEL_SHA256 "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012"
#define TRAIN_LABEL_SHA256 "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7"
#define TEST_PIXEL_SUM 573469082ULL
#define TEST_LABEL_SUM 45000ULL
#define TEST_PIXEL_SHA256 "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a"
#define TEST_LABEL_SHA256 "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9"

static char tmpdir[256];

static const char *fmnist_dir(void)
{
	const char *d = getenv("TALLY_FMNIST_DIR");

	return d && *d ? d : "/usr/share/datasets/fashion-mnist";
}

static void path_in(char *buf, size_t size, const char *dir, const char *name)
{
	snprintf(buf, size, "%s/%s", dir, name);
}

/* Whole decompressed file through zlib's own gzread, independent of the reader under test. */
static uint8_t *gz_slurp(const char *path, size_t *len)
{
	gzFile f = gzopen(path, "rb");
	size_t cap = 1 << 20, n = 0;
	uint8_t *b = malloc(cap);
	int r;

	assert_non_null(f);
	while ((r = gzread(f, b + n, (unsigned)(cap - n))) > 0) {
		n += (size_t)r;
		if (n == cap)
			assert_non_null(b = realloc(b, cap *= 2));
	}
	assert_int_equal(r, 0);
	gzclose(f);
	*len = n;
	return b;
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void write_gz(const char *path, const void *data, size_t len)
{
	gzFile f = gzopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(gzwrite(f, data, (unsigned)len), (int)len);
	assert_int_equal(gzclose(f), Z_OK);
}

static void sha256_hex(char hex[65], const uint8_t *b, size_t len)
{
	uint8_t h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, b, len);
	sodium_bin2hex(hex, 65, h, sizeof(h));
}

/* Checks the decompressed file size and IDX header words against the anchor table. */
static void check_anchor_file(const char *name, size_t want_len, const uint32_t *words, int n_words)
{
	char path[512];
	size_t len;
	uint8_t *b;

	path_in(path, sizeof(path), fmnist_dir(), name);
	b = gz_slurp(path, &len);
	assert_int_equal(len, want_len);
	for (int i = 0; i < n_words; i++) {
		uint32_t w = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 |
			     (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];

		assert_int_equal(w, words[i]);
	}
	free(b);
}

static void test_anchor_files(void **state)
{
	static const uint32_t train_img[] = { 0x803, 0xea60, 0x1c, 0x1c };
	static const uint32_t train_lab[] = { 0x801, 0xea60 };
	static const uint32_t test_img[] = { 0x803, 0x2710, 0x1c, 0x1c };
	static const uint32_t test_lab[] = { 0x801, 0x2710 };

	check_anchor_file("train-images-idx3-ubyte.gz", 47040016, train_img, 4);
	check_anchor_file("train-labels-idx1-ubyte.gz", 60008, train_lab, 2);
	check_anchor_file("t10k-images-idx3-ubyte.gz", 7840016, test_img, 4);
	check_anchor_file("t10k-labels-idx1-ubyte.gz", 10008, test_lab, 2);
}

/* Every pixel in [0,1] and an exact multiple of 1/255; returns the bytes they came from. */
static uint8_t *pixels_back(const tally_dataset *d)
{
	size_t cells = (size_t)d->n * d->dim;
	uint8_t *b = malloc(cells);

	assert_non_null(b);
	for (size_t i = 0; i < cells; i++) {
		long v = lrintf(d->x[i] * 255.0f);

		assert_true(d->x[i] >= 0.0f && d->x[i] <= 1.0f);
		assert_true(v >= 0 && v <= 255);
		assert_true(d->x[i] == (float)v / 255.0f);
		b[i] = (uint8_t)v;
	}
	return b;
}

static void check_fmnist(bool train, uint32_t n, const uint8_t first[4], uint64_t pixel_sum,
			 uint64_t label_sum, const char *pixel_sha, const char *label_sha)
{
	tally_dataset *d = NULL;
	uint64_t psum = 0, lsum = 0;
	char hex[65], path[512];
	size_t raw_len;
	uint8_t *px, *raw;

	assert_int_equal(tally_dataset_load_fmnist(&d, fmnist_dir(), train), 0);
	assert_int_equal(d->n, n);
	assert_int_equal(d->dim, 784);
	assert_int_equal(d->n_classes, 10);
	assert_memory_equal(d->y, first, 4);
	px = pixels_back(d);
	for (size_t i = 0; i < (size_t)n * 784; i++)
		psum += px[i];
	for (uint32_t i = 0; i < n; i++)
		lsum += d->y[i];
	assert_int_equal(psum, pixel_sum);
	assert_int_equal(lsum, label_sum);
	sha256_hex(hex, px, (size_t)n * 784);
	assert_string_equal(hex, pixel_sha);
	sha256_hex(hex, d->y, n);
	assert_string_equal(hex, label_sha);
	/* The first image, value by value, against zlib's own decompression. */
	path_in(path, sizeof(path), fmnist_dir(), train ? "train-images-idx3-ubyte.gz" :
		"t10k-images-idx3-ubyte.gz");
	raw = gz_slurp(path, &raw_len);
	for (int i = 0; i < 784; i++)
		assert_true(d->x[i] == (float)raw[16 + i] / 255.0f);
	free(raw);
	free(px);
	tally_dataset_destroy(&d);
	assert_null(d);
}

static void test_fmnist_train(void **state)
{
	static const uint8_t first[4] = { 9, 0, 0, 3 };
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	check_fmnist(true, 60000, first, TRAIN_PIXEL_SUM, TRAIN_LABEL_SUM, TRAIN_PIXEL_SHA256,
		     TRAIN_LABEL_SHA256);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message("train set checked in %.2f s\n",
		      (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
}

static void test_fmnist_test(void **state)
{
	static const uint8_t first[4] = { 9, 2, 1, 1 };

	check_fmnist(false, 10000, first, TEST_PIXEL_SUM, TEST_LABEL_SUM, TEST_PIXEL_SHA256,
		     TEST_LABEL_SHA256);
}

static void test_fmnist_missing(void **state)
{
	tally_dataset *d = (tally_dataset *)&d; /* must stay untouched */

	assert_int_equal(tally_dataset_load_fmnist(&d, "/nonexistent/fmnist", true), TALLY_ENOENT);
	assert_ptr_equal(d, (tally_dataset *)&d);
	assert_non_null(strstr(tally_errmsg(), "/nonexistent/fmnist/train-images-idx3-ubyte.gz"));
}

/* A small valid IDX pair: n images of rows x cols with pixel i*7+j and label i % 3. */
typedef struct idx_pair {
	uint8_t img[4096];
	size_t img_len;
	uint8_t lab[512];
	size_t lab_len;
} idx_pair;

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void make_idx(idx_pair *p, uint32_t n, uint32_t rows, uint32_t cols)
{
	put32(p->img, 0x803);
	put32(p->img + 4, n);
	put32(p->img + 8, rows);
	put32(p->img + 12, cols);
	p->img_len = 16 + (size_t)n * rows * cols;
	for (size_t i = 16; i < p->img_len; i++)
		p->img[i] = (uint8_t)(i * 7);
	put32(p->lab, 0x801);
	put32(p->lab + 4, n);
	p->lab_len = 8 + n;
	for (uint32_t i = 0; i < n; i++)
		p->lab[8 + i] = (uint8_t)(i % 3);
}

static int load_pair(const idx_pair *p, tally_dataset **d)
{
	return tally_dataset_from_idx_bytes(d, p->img, p->img_len, p->lab, p->lab_len);
}

static void expect_idx_error(const idx_pair *p, int code, const char *needle)
{
	tally_dataset *d = NULL;

	tally_err_clear();
	assert_int_equal(load_pair(p, &d), code);
	assert_null(d);
	if (!strstr(tally_errmsg(), needle))
		fail_msg("message '%s' lacks '%s'", tally_errmsg(), needle);
}

static void test_idx_small_valid(void **state)
{
	tally_dataset *d = NULL;
	idx_pair p;

	make_idx(&p, 5, 3, 4);
	assert_int_equal(load_pair(&p, &d), 0);
	assert_int_equal(d->n, 5);
	assert_int_equal(d->dim, 12);
	assert_int_equal(d->n_classes, 3);
	for (size_t i = 0; i < 60; i++)
		assert_true(d->x[i] == (float)p.img[16 + i] / 255.0f);
	assert_memory_equal(d->y, p.lab + 8, 5);
	tally_dataset_destroy(&d);
	/* One class only still gives two outputs; label 200 gives 201. */
	memset(p.lab + 8, 0, 5);
	assert_int_equal(load_pair(&p, &d), 0);
	assert_int_equal(d->n_classes, 2);
	tally_dataset_destroy(&d);
	p.lab[10] = 200;
	assert_int_equal(load_pair(&p, &d), 0);
	assert_int_equal(d->n_classes, 201);
	tally_dataset_destroy(&d);
	tally_dataset_destroy(&d); /* NULL is fine */
	tally_dataset_destroy(NULL);
}

static void test_idx_bad_magic(void **state)
{
	idx_pair p;

	make_idx(&p, 2, 2, 2);
	put32(p.img, 0x801); /* a label file given as images */
	expect_idx_error(&p, TALLY_EFORMAT, "images: IDX magic 0x00000801");
	make_idx(&p, 2, 2, 2);
	put32(p.img, 0x08030000); /* little-endian writer */
	expect_idx_error(&p, TALLY_EFORMAT, "images: not an IDX file");
	make_idx(&p, 2, 2, 2);
	put32(p.img, 0x00000d03); /* float elements */
	expect_idx_error(&p, TALLY_EFORMAT, "element type 0x0d");
	make_idx(&p, 2, 2, 2);
	put32(p.lab, 0x803);
	expect_idx_error(&p, TALLY_EFORMAT, "labels: IDX magic 0x00000803");
	make_idx(&p, 2, 2, 2);
	p.img_len = 3;
	expect_idx_error(&p, TALLY_EFORMAT, "too short");
}

static void test_idx_truncated(void **state)
{
	idx_pair p;

	make_idx(&p, 4, 5, 5);
	p.img_len--;
	expect_idx_error(&p, TALLY_EFORMAT, "images: truncated");
	make_idx(&p, 4, 5, 5);
	p.lab_len--;
	expect_idx_error(&p, TALLY_EFORMAT, "labels: truncated");
	make_idx(&p, 4, 5, 5);
	p.img_len = 12;
	expect_idx_error(&p, TALLY_EFORMAT, "truncated IDX header");
	make_idx(&p, 4, 5, 5);
	p.lab_len = 6;
	expect_idx_error(&p, TALLY_EFORMAT, "truncated IDX header");
}

static void test_idx_trailing(void **state)
{
	idx_pair p;

	make_idx(&p, 4, 5, 5);
	p.img_len += 3;
	expect_idx_error(&p, TALLY_EFORMAT, "images: 3 trailing bytes");
	make_idx(&p, 4, 5, 5);
	p.lab_len += 1;
	expect_idx_error(&p, TALLY_EFORMAT, "labels: 1 trailing bytes");
}

static void test_idx_count_mismatch(void **state)
{
	idx_pair p;

	make_idx(&p, 4, 2, 2);
	put32(p.lab + 4, 3);
	p.lab_len = 8 + 3;
	expect_idx_error(&p, TALLY_ESHAPE, "images has 4 images but labels has 3 labels");
}

static void test_idx_zero_and_huge_dims(void **state)
{
	idx_pair p;

	make_idx(&p, 0, 2, 2);
	expect_idx_error(&p, TALLY_ESHAPE, "dimension 0 is zero");
	make_idx(&p, 2, 0, 2);
	expect_idx_error(&p, TALLY_ESHAPE, "dimension 1 is zero");
	make_idx(&p, 2, 2, 2);
	put32(p.lab + 4, 0);
	expect_idx_error(&p, TALLY_ESHAPE, "labels: IDX dimension 0 is zero");
	make_idx(&p, 2, 2, 2);
	put32(p.img + 8, 70000);
	expect_idx_error(&p, TALLY_ETOOBIG, "per side");
	make_idx(&p, 2, 2, 2);
	put32(p.img + 8, 65536);
	put32(p.img + 12, 65536);
	expect_idx_error(&p, TALLY_ETOOBIG, "pixels");
	make_idx(&p, 2, 2, 2);
	put32(p.img + 4, (1u << 24) + 1);
	expect_idx_error(&p, TALLY_ETOOBIG, "images is over the limit");
	make_idx(&p, 2, 2, 2);
	put32(p.img + 4, 0xffffffffu);
	put32(p.img + 8, 0xffffffffu);
	expect_idx_error(&p, TALLY_ETOOBIG, "images");
	make_idx(&p, 2, 2, 2);
	put32(p.img + 4, 1u << 24); /* within limits, but the data is not there */
	put32(p.img + 8, 1u << 12);
	put32(p.img + 12, 1u << 12);
	expect_idx_error(&p, TALLY_EFORMAT, "images: truncated");
}

/* Writes p as files in tmpdir, the images gzip'd (and damaged by the caller's hook). */
static void idx_files(const idx_pair *p, char *img, char *lab, const char *tag)
{
	char name[64];

	snprintf(name, sizeof(name), "%s-img.gz", tag);
	path_in(img, 512, tmpdir, name);
	snprintf(name, sizeof(name), "%s-lab", tag);
	path_in(lab, 512, tmpdir, name);
	write_gz(img, p->img, p->img_len);
	write_file(lab, p->lab, p->lab_len);
}

static uint8_t *file_bytes(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *b = malloc(1 << 16);

	assert_non_null(f);
	*len = fread(b, 1, 1 << 16, f);
	fclose(f);
	return b;
}

/* Writes p's images to path as two gzip members, split at byte cut. */
static void gz_members(const char *path, const idx_pair *p, size_t cut)
{
	char part[512];
	size_t len1, len2;
	uint8_t *a, *b;

	path_in(part, sizeof(part), tmpdir, "member.gz");
	write_gz(part, p->img, cut);
	a = file_bytes(part, &len1);
	write_gz(part, p->img + cut, p->img_len - cut);
	b = file_bytes(part, &len2);
	assert_true(len1 + len2 <= 1 << 16);
	memcpy(a + len1, b, len2);
	write_file(path, a, len1 + len2);
	free(a);
	free(b);
}

static void expect_file_error(const char *img, const char *lab, int code, const char *needle)
{
	tally_dataset *d = NULL;

	tally_err_clear();
	assert_int_equal(tally_dataset_load_idx(&d, img, lab), code);
	assert_null(d);
	if (!strstr(tally_errmsg(), img) || !strstr(tally_errmsg(), needle))
		fail_msg("message '%s' lacks '%s' or '%s'", tally_errmsg(), img, needle);
}

static void test_idx_gzip_files(void **state)
{
	char img[512], lab[512];
	tally_dataset *d = NULL;
	idx_pair p;

	make_idx(&p, 6, 7, 8);
	idx_files(&p, img, lab, "ok");
	assert_int_equal(tally_dataset_load_idx(&d, img, lab), 0);
	assert_int_equal(d->n, 6);
	assert_int_equal(d->dim, 56);
	assert_true(d->x[55] == (float)p.img[16 + 55] / 255.0f);
	tally_dataset_destroy(&d);
	/* Two gzip members are one stream, as gzip -d sees them. */
	gz_members(img, &p, 100);
	assert_int_equal(tally_dataset_load_idx(&d, img, lab), 0);
	assert_int_equal(d->n, 6);
	assert_true(d->x[300] == (float)p.img[16 + 300] / 255.0f);
	tally_dataset_destroy(&d);
	/* The whole file twice is a valid gzip stream but twice the data the header describes. */
	p.img_len *= 2;
	memcpy(p.img + p.img_len / 2, p.img, p.img_len / 2);
	gz_members(img, &p, p.img_len / 2);
	expect_file_error(img, lab, TALLY_EFORMAT, "trailing bytes");
}

static void test_idx_gzip_damaged(void **state)
{
	char img[512], lab[512];
	size_t len;
	uint8_t *b;
	idx_pair p;

	make_idx(&p, 6, 7, 8);
	idx_files(&p, img, lab, "bad");
	b = file_bytes(img, &len);
	/* Trailing garbage after the gzip data. */
	memcpy(b + len, "junk", 4);
	write_file(img, b, len + 4);
	expect_file_error(img, lab, TALLY_EFORMAT, "trailing garbage");
	/* Cut short. */
	write_file(img, b, len - 10);
	expect_file_error(img, lab, TALLY_EFORMAT, "truncated gzip");
	/* A flipped bit in the deflate data or the CRC. */
	b[len / 2] ^= 0x55;
	write_file(img, b, len);
	expect_file_error(img, lab, TALLY_EFORMAT, "corrupt gzip");
	b[len / 2] ^= 0x55;
	b[len - 6] ^= 1;
	write_file(img, b, len);
	expect_file_error(img, lab, TALLY_EFORMAT, "corrupt gzip");
	free(b);
}

static void test_idx_plain_files(void **state)
{
	char img[512], lab[512], missing[512];
	tally_dataset *d = NULL;
	idx_pair p;

	make_idx(&p, 3, 2, 2);
	path_in(img, sizeof(img), tmpdir, "t10k-images-idx3-ubyte");
	path_in(lab, sizeof(lab), tmpdir, "t10k-labels-idx1-ubyte");
	write_file(img, p.img, p.img_len);
	write_file(lab, p.lab, p.lab_len);
	assert_int_equal(tally_dataset_load_fmnist(&d, tmpdir, false), 0);
	assert_int_equal(d->n, 3);
	assert_int_equal(d->dim, 4);
	tally_dataset_destroy(&d);
	p.lab_len++;
	write_file(lab, p.lab, p.lab_len);
	tally_err_clear();
	assert_int_equal(tally_dataset_load_idx(&d, img, lab), TALLY_EFORMAT);
	assert_non_null(strstr(tally_errmsg(), lab));
	path_in(missing, sizeof(missing), tmpdir, "nope");
	assert_int_equal(tally_dataset_load_idx(&d, img, missing), TALLY_ENOENT);
	assert_non_null(strstr(tally_errmsg(), missing));
	assert_null(d);
}

/* CSV. */

static int csv(tally_dataset **d, const char *text, uint32_t label_column, bool header, float scale)
{
	tally_err_clear();
	return tally_dataset_from_csv_bytes(d, (const uint8_t *)text, strlen(text), label_column,
					    header, scale);
}

static void expect_csv_error(const char *text, uint32_t col, bool header, int code, const char *needle)
{
	tally_dataset *d = NULL;

	assert_int_equal(csv(&d, text, col, header, 1.0f), code);
	assert_null(d);
	if (!strstr(tally_errmsg(), needle))
		fail_msg("message '%s' lacks '%s' for '%s'", tally_errmsg(), needle, text);
}

static void test_csv_no_header(void **state)
{
	static const float want[] = { 0.5f, 2, 1, 3, -4, 1e-3f };
	tally_dataset *d = NULL;

	assert_int_equal(csv(&d, "1,0.5,2\n0,1,3\n4,-4,1e-3", 0, false, 1.0f), 0);
	assert_int_equal(d->n, 3);
	assert_int_equal(d->dim, 2);
	assert_int_equal(d->n_classes, 5);
	assert_memory_equal(d->x, want, sizeof(want));
	assert_memory_equal(d->y, "\1\0\4", 3);
	tally_dataset_destroy(&d);
}

static void test_csv_header_label_last(void **state)
{
	static const float want[] = { 1, 2, 3, 4 };
	tally_dataset *d = NULL;

	assert_int_equal(csv(&d, "\xef\xbb\xbf\"x, first\",y,label\r\n 10, 20 ,3\r\n\r\n \t\r\n30,40,1\r\n\n",
			     2, true, 0.1f), 0);
	assert_int_equal(d->n, 2);
	assert_int_equal(d->dim, 2);
	assert_int_equal(d->n_classes, 4);
	for (int i = 0; i < 4; i++)
		assert_float_equal(d->x[i], want[i], 1e-6);
	assert_memory_equal(d->y, "\3\1", 2);
	tally_dataset_destroy(&d);
	/* Label in the middle, as a float spelling of an integer. */
	assert_int_equal(csv(&d, "5,2.0,7\n6,0,8\n", 1, false, 1.0f), 0);
	assert_true(d->x[0] == 5 && d->x[1] == 7 && d->x[2] == 6 && d->x[3] == 8);
	assert_memory_equal(d->y, "\2\0", 2);
	tally_dataset_destroy(&d);
	/* A header counts as a line when has_header is false: "a" is not a number. */
	expect_csv_error("a,b\n1,2\n", 0, false, TALLY_EFORMAT, "line 1, column 0: 'a' is not a number");
}

static void test_csv_ragged(void **state)
{
	expect_csv_error("1,2,3\n4,5\n", 0, false, TALLY_EFORMAT, "csv: line 2 has 2 fields where earlier lines have 3");
	expect_csv_error("1,2\n\n4,5,6\n", 0, false, TALLY_EFORMAT, "line 3 has 3 fields");
	expect_csv_error("a,b,c\n1,2\n", 0, true, TALLY_EFORMAT, "line 2 has 2 fields");
	expect_csv_error("1,2,\n", 0, false, TALLY_EFORMAT, "line 1, column 2: empty field");
	expect_csv_error("1,,2\n", 0, false, TALLY_EFORMAT, "column 1: empty field");
}

static void test_csv_not_numbers(void **state)
{
	expect_csv_error("1,2\n0,abc\n", 0, false, TALLY_EFORMAT, "line 2, column 1: 'abc' is not a number");
	expect_csv_error("1,2\n0,3x\n", 0, false, TALLY_EFORMAT, "'3x'");
	expect_csv_error("1,2\n0,\"3\"\n", 0, false, TALLY_EFORMAT, "line 2");
	expect_csv_error("1,2\n0,1 2\n", 0, false, TALLY_EFORMAT, "'1 2'");
	expect_csv_error("x,y\n1,2\n2,3\n0,nan\n", 0, true, TALLY_ENONFINITE, "line 4, column 1: 'nan' is not finite");
	expect_csv_error("1,NaN\n", 0, false, TALLY_ENONFINITE, "line 1");
	expect_csv_error("1,-inf\n", 0, false, TALLY_ENONFINITE, "'-inf'");
	expect_csv_error("1,1e999\n", 0, false, TALLY_ENONFINITE, "'1e999'");
	expect_csv_error("1,1e39\n", 0, false, TALLY_ENONFINITE, "not a finite float"); /* float overflow */
	expect_csv_error("1,2\n1.5,2\n", 0, false, TALLY_EFORMAT, "line 2, column 0: label 1.5 is not an integer");
	expect_csv_error("256,2\n", 0, false, TALLY_ERANGE, "label 256 is outside 0..255");
	expect_csv_error("-1,2\n", 0, false, TALLY_ERANGE, "label -1");
	expect_csv_error("1,2\n0,1\x01\n", 0, false, TALLY_EFORMAT, "'1?'");
}

static void test_csv_empty_and_shape(void **state)
{
	tally_dataset *d = NULL;

	expect_csv_error("", 0, false, TALLY_EFORMAT, "no data rows");
	expect_csv_error("\n\n  \r\n", 0, false, TALLY_EFORMAT, "no data rows");
	expect_csv_error("a,b\n", 0, true, TALLY_EFORMAT, "no data rows");
	expect_csv_error("1,2\n", 2, false, TALLY_ESHAPE, "label column 2 is beyond rows of 2 fields");
	expect_csv_error("1\n2\n", 0, false, TALLY_ESHAPE, "at least one feature");
	assert_int_equal(tally_dataset_from_csv_bytes(&d, NULL, 0, 0, false, 1.0f), TALLY_EFORMAT);
	assert_int_equal(csv(&d, "1,2\n", 0, false, NAN), TALLY_EINVAL);
	assert_null(d);
}

static void test_csv_bounds(void **state)
{
	static const char text[] = "1,23456";
	tally_dataset *d = NULL;

	/* Only the first 3 bytes are the table; what follows must not be read. */
	assert_int_equal(tally_dataset_from_csv_bytes(&d, (const uint8_t *)text, 3, 0, false, 1.0f), 0);
	assert_int_equal(d->n, 1);
	assert_true(d->x[0] == 2.0f);
	tally_dataset_destroy(&d);
}

static void test_csv_file(void **state)
{
	static const char text[] = "label,a,b\n0,1,2\n1,3,4\n2,5,oops\n";
	char path[512];
	tally_dataset *d = NULL;

	path_in(path, sizeof(path), tmpdir, "table.csv");
	write_file(path, text, strlen(text));
	assert_int_equal(tally_dataset_load_csv(&d, path, 0, true, 1.0f), TALLY_EFORMAT);
	assert_null(d);
	assert_non_null(strstr(tally_errmsg(), path));
	assert_non_null(strstr(tally_errmsg(), "line 4, column 2: 'oops'"));
	write_file(path, text, strlen(text) - 9); /* without the bad line */
	assert_int_equal(tally_dataset_load_csv(&d, path, 0, true, 2.0f), 0);
	assert_int_equal(d->n, 2);
	assert_true(d->x[3] == 8.0f);
	tally_dataset_destroy(&d);
	path_in(path, sizeof(path), tmpdir, "missing.csv");
	assert_int_equal(tally_dataset_load_csv(&d, path, 0, true, 1.0f), TALLY_ENOENT);
}

static void test_subset(void **state)
{
	static const uint32_t idx[] = { 2, 0, 2 };
	static const uint32_t bad[] = { 0, 3 };
	tally_dataset *d = NULL, *s = NULL;

	assert_int_equal(csv(&d, "0,1,2\n1,3,4\n7,5,6\n", 0, false, 1.0f), 0);
	assert_int_equal(tally_dataset_subset(&s, d, idx, 3), 0);
	assert_int_equal(s->n, 3);
	assert_int_equal(s->dim, 2);
	assert_int_equal(s->n_classes, 8);
	assert_true(s->x[0] == 5 && s->x[1] == 6 && s->x[2] == 1 && s->x[3] == 2 && s->x[5] == 6);
	assert_memory_equal(s->y, "\7\0\7", 3);
	tally_dataset_destroy(&s);
	assert_int_equal(tally_dataset_subset(&s, d, idx, 0), 0);
	assert_int_equal(s->n, 0);
	tally_dataset_destroy(&s);
	assert_int_equal(tally_dataset_subset(&s, d, bad, 2), TALLY_ERANGE);
	assert_null(s);
	assert_non_null(strstr(tally_errmsg(), "index 3"));
	tally_dataset_destroy(&d);
}

static int setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/tally-test-data-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_anchor_files),
		cmocka_unit_test(test_fmnist_train),
		cmocka_unit_test(test_fmnist_test),
		cmocka_unit_test(test_fmnist_missing),
		cmocka_unit_test(test_idx_small_valid),
		cmocka_unit_test(test_idx_bad_magic),
		cmocka_unit_test(test_idx_truncated),
		cmocka_unit_test(test_idx_trailing),
		cmocka_unit_test(test_idx_count_mismatch),
		cmocka_unit_test(test_idx_zero_and_huge_dims),
		cmocka_unit_test(test_idx_gzip_files),
		cmocka_unit_test(test_idx_gzip_damaged),
		cmocka_unit_test(test_idx_plain_files),
		cmocka_unit_test(test_csv_no_header),
		cmocka_unit_test(test_csv_header_label_last),
		cmocka_unit_test(test_csv_ragged),
		cmocka_unit_test(test_csv_not_numbers),
		cmocka_unit_test(test_csv_empty_and_shape),
		cmocka_unit_test(test_csv_bounds),
		cmocka_unit_test(test_csv_file),
		cmocka_unit_test(test_subset),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
