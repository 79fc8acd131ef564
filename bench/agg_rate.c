/*
 * agg_rate: how fast the coordinator's FedAvg accumulate loop consumes update bytes, against a
 * plain read of the same bytes measured in the same process.
 *
 * The coordinator adds every verified 4 MiB chunk of every update into one model-sized float32
 * accumulator (tally_axpy). Here updates of a 1e7-parameter model (40 MB) stream chunk by chunk
 * from a buffer larger than the last-level cache into one such accumulator, as a round with many
 * workers does. The baseline is a summing read of the same bytes with four vector accumulators,
 * which the compiler cannot elide or shorten. The claim: aggregation runs at >= 0.7x the read rate,
 * so that the accumulator is never the reason a round is slow. The BLAKE2b chunk digest the
 * coordinator checks before adding, and the whole per-chunk path (digest, finiteness, add), are
 * printed for information next to the ~0.65-0.9 GB/s of a CURVE link, and so are the same adds
 * into an accumulator window that stays in L2, which separates the arithmetic from the memory
 * traffic of the accumulator itself.
 *
 * usage: agg_rate [--mib N] [--params N] [--runs N]
 */
#include "tally/agg.h"
#include "tally/digest.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CLAIM_RATIO 0.7
#define CURVE_LINK_GBS 0.7 /* DESIGN.md "Physical limits": one CURVE connection, 4 MiB frames */

typedef float v4f __attribute__((vector_size(16)));

typedef struct bench {
	float *updates;    /* n_updates back-to-back updates of n_params floats */
	size_t n_updates;
	size_t n_params;
	tally_agg *agg;
	volatile float sink;
} bench;

typedef void (*kernel_fn)(bench *b);

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static size_t chunk_len(size_t n, size_t off)
{
	return n - off < TALLY_CHUNK_FLOATS ? n - off : TALLY_CHUNK_FLOATS;
}

/* Sums n floats (n a multiple of 16) with four independent vector accumulators. */
static float read_sum(const float *p, size_t n)
{
	v4f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, x;
	float s = 0;

	for (size_t i = 0; i + 16 <= n; i += 16) {
		memcpy(&x, p + i, sizeof(x));
		a0 += x;
		memcpy(&x, p + i + 4, sizeof(x));
		a1 += x;
		memcpy(&x, p + i + 8, sizeof(x));
		a2 += x;
		memcpy(&x, p + i + 12, sizeof(x));
		a3 += x;
	}
	a0 += a1 + a2 + a3;
	for (int k = 0; k < 4; k++)
		s += a0[k];
	for (size_t i = n & ~(size_t)15; i < n; i++)
		s += p[i];
	return s;
}

static void kernel_read(bench *b)
{
	float s = 0;

	for (size_t u = 0; u < b->n_updates; u++) {
		const float *x = b->updates + u * b->n_params;

		for (size_t off = 0; off < b->n_params; off += TALLY_CHUNK_FLOATS)
			s += read_sum(x + off, chunk_len(b->n_params, off));
	}
	b->sink = s;
}

static void kernel_axpy(bench *b)
{
	for (size_t u = 0; u < b->n_updates; u++) {
		const float *x = b->updates + u * b->n_params;
		float w = (u & 1) ? -1.0f : 1.0f; /* keeps the sum bounded over many runs */

		for (size_t off = 0; off < b->n_params; off += TALLY_CHUNK_FLOATS)
			tally_axpy(b->agg->sum + off, x + off, chunk_len(b->n_params, off), w);
	}
	b->sink = b->agg->sum[b->n_params / 2];
}

/* The same adds into a 256 KiB window of the accumulator that stays in L2: the arithmetic alone,
 * without the accumulator's own memory traffic. */
static void kernel_axpy_l2(bench *b)
{
	const size_t win = (256u << 10) / sizeof(float);

	for (size_t u = 0; u < b->n_updates; u++) {
		const float *x = b->updates + u * b->n_params;
		float w = (u & 1) ? -1.0f : 1.0f;

		for (size_t off = 0; off < b->n_params; off += win)
			tally_axpy(b->agg->sum, x + off, b->n_params - off < win ? b->n_params - off : win, w);
	}
	b->sink = b->agg->sum[win / 2];
}

static void kernel_digest(bench *b)
{
	tally_digest d;
	uint8_t x = 0;

	for (size_t u = 0; u < b->n_updates; u++) {
		const float *p = b->updates + u * b->n_params;

		for (size_t off = 0; off < b->n_params; off += TALLY_CHUNK_FLOATS) {
			tally_digest_chunk(p + off, chunk_len(b->n_params, off), d);
			x ^= d[0];
		}
	}
	b->sink = x;
}

/* What the coordinator does per arriving chunk: digest, finiteness check, add. */
static void kernel_verify_add(bench *b)
{
	tally_digest d;
	size_t bad = 0;

	for (size_t u = 0; u < b->n_updates; u++) {
		const float *x = b->updates + u * b->n_params;
		float w = (u & 1) ? -1.0f : 1.0f;

		for (size_t off = 0; off < b->n_params; off += TALLY_CHUNK_FLOATS) {
			size_t len = chunk_len(b->n_params, off);

			tally_digest_chunk(x + off, len, d);
			for (size_t i = 0; i < len; i++)
				bad += !isfinite(x[off + i]);
			tally_axpy(b->agg->sum + off, x + off, len, w);
		}
	}
	b->sink = (float)bad + d[0];
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

typedef struct row {
	const char *name;
	kernel_fn fn;
	double secs[16], cpu[16];
	double best_gbs, median_gbs, cpu_gbs;
} row;

static void summarise(row *r, int runs, double bytes)
{
	double s[16];

	memcpy(s, r->secs, (size_t)runs * sizeof(double));
	qsort(s, (size_t)runs, sizeof(double), cmp_double);
	r->best_gbs = bytes / s[0] / 1e9;
	r->median_gbs = bytes / s[runs / 2] / 1e9;
	memcpy(s, r->cpu, (size_t)runs * sizeof(double));
	qsort(s, (size_t)runs, sizeof(double), cmp_double);
	r->cpu_gbs = bytes / s[0] / 1e9;
}

static size_t l3_bytes(void)
{
	long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);

	return l3 > 0 ? (size_t)l3 : 0;
}

static int parse_args(int argc, char **argv, size_t *mib, size_t *params, int *runs)
{
	for (int i = 1; i < argc; i++) {
		char *end;
		unsigned long long v;

		if (i + 1 >= argc) {
			fprintf(stderr, "usage: agg_rate [--mib N] [--params N] [--runs N]\n");
			return 2;
		}
		v = strtoull(argv[i + 1], &end, 10);
		if (*end || v == 0) {
			fprintf(stderr, "agg_rate: %s needs a positive integer\n", argv[i]);
			return 2;
		}
		if (strcmp(argv[i], "--mib") == 0)
			*mib = v;
		else if (strcmp(argv[i], "--params") == 0)
			*params = v;
		else if (strcmp(argv[i], "--runs") == 0 && v <= 16)
			*runs = (int)v;
		else {
			fprintf(stderr, "usage: agg_rate [--mib N] [--params N] [--runs 1..16]\n");
			return 2;
		}
		i++;
	}
	return 0;
}

/* Default stream size: 256 MiB, or twice the last-level cache when that is larger. */
static size_t default_mib(void)
{
	size_t mib = 256, l3_mib = l3_bytes() >> 20;

	return 2 * l3_mib > mib ? 2 * l3_mib : mib;
}

static int setup(bench *b, size_t mib, size_t params)
{
	size_t n;

	b->n_params = params;
	b->n_updates = (mib << 20) / (params * sizeof(float));
	if (b->n_updates < 2)
		b->n_updates = 2;
	n = b->n_updates * b->n_params;
	b->updates = aligned_alloc(64, (n * sizeof(float) + 63) & ~(size_t)63);
	if (!b->updates || tally_agg_new(&b->agg, params)) {
		fprintf(stderr, "agg_rate: out of memory for %zu updates of %zu parameters\n", b->n_updates, params);
		return 1;
	}
	for (size_t i = 0; i < n; i++) /* small finite values; also faults every page in */
		b->updates[i] = (float)((i * 2654435761u) % 2001) * 1e-6f - 1e-3f;
	return 0;
}

int main(int argc, char **argv)
{
	size_t mib = default_mib(), params = 10000000;
	int runs = 5, rc;
	bench b = {0};
	row rows[] = {
		{"memory read (sum, 4 vector acc)", kernel_read, {0}, {0}, 0, 0, 0},
		{"tally_axpy (FedAvg accumulate)", kernel_axpy, {0}, {0}, 0, 0, 0},
		{"tally_axpy, 256 KiB acc (in L2)", kernel_axpy_l2, {0}, {0}, 0, 0, 0},
		{"tally_digest_chunk (BLAKE2b)", kernel_digest, {0}, {0}, 0, 0, 0},
		{"digest + finite + axpy (coord)", kernel_verify_add, {0}, {0}, 0, 0, 0},
	};
	const size_t n_rows = sizeof(rows) / sizeof(rows[0]);
	double bytes, ratio, load[1];

	if ((rc = parse_args(argc, argv, &mib, &params, &runs)))
		return rc;
	if (sodium_init() < 0) {
		fprintf(stderr, "agg_rate: libsodium failed to initialise\n");
		return 1;
	}
	if (setup(&b, mib, params))
		return 1;
	bytes = (double)b.n_updates * (double)b.n_params * sizeof(float);
	printf("agg_rate: FedAvg accumulate (tally_axpy) vs a plain memory read, one core\n");
	printf("  %zu updates x %zu parameters = %.0f MiB of update bytes streamed in %u-float chunks\n",
	       b.n_updates, b.n_params, bytes / (1 << 20), TALLY_CHUNK_FLOATS);
	printf("  into one %.1f MB accumulator; last-level cache %zu MiB; best and median of %d runs;\n",
	       (double)params * sizeof(float) / 1e6, l3_bytes() >> 20, runs);
	printf("  GB/s = update bytes consumed per wall-clock second (1 GB = 1e9 bytes); the CPU column\n"
	       "  divides by this thread's CPU time instead, which other processes' load does not inflate\n");
	if (getloadavg(load, 1) == 1)
		printf("  load average %.2f on %ld cores at start%s\n", load[0], sysconf(_SC_NPROCESSORS_ONLN),
		       load[0] > 0.5 ? ": the machine is busy, so expect lower and noisier figures" : "");
	printf("\n");
	for (int r = 0; r < runs; r++) {
		for (size_t k = 0; k < n_rows; k++) { /* interleaved, so drift hits every kernel alike */
			double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);

			rows[k].fn(&b);
			rows[k].secs[r] = clock_s(CLOCK_MONOTONIC) - t0;
			rows[k].cpu[r] = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
		}
	}
	printf("%-34s %10s %12s %10s %14s\n", "kernel", "best GB/s", "median GB/s", "x read", "best CPU GB/s");
	for (size_t k = 0; k < n_rows; k++) {
		summarise(&rows[k], runs, bytes);
		printf("%-34s %10.2f %12.2f %9.2fx %14.2f\n", rows[k].name, rows[k].best_gbs, rows[k].median_gbs,
		       rows[k].best_gbs / rows[0].best_gbs, rows[k].cpu_gbs);
	}
	ratio = rows[1].best_gbs / rows[0].best_gbs;
	printf("\n");
	printf("info: digest %.2f GB/s, per-chunk path %.2f GB/s = %.2fx a %.1f GB/s CURVE link\n",
	       rows[3].best_gbs, rows[4].best_gbs, rows[4].best_gbs / CURVE_LINK_GBS, CURVE_LINK_GBS);
	printf("claim: aggregation %.2fx memory read (need >= %.1fx): %s\n", ratio, CLAIM_RATIO,
	       ratio >= CLAIM_RATIO ? "ok" : "NOT MET");
	free(b.updates);
	tally_agg_destroy(&b.agg);
	return 0;
}
