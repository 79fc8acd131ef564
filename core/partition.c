/*
 * Partitions of a labelled dataset over the parties of a federation. Every party computes the
 * whole assignment from the labels, the scheme, the party count and the seed, then keeps its own
 * part: no coordination is needed and the parts are disjoint and complete by construction, as
 * long as everyone holds the same labels. Each scheme draws from its own tally_rng stream, so
 * that the same seed gives unrelated shuffles under different schemes.
 */
#include "tally/data.h"
#include "tally/error.h"
#include "tally/rng.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_IID 0x7461726969640000ULL       /* "tariid" */
#define STREAM_SHARDS 0x7461727368640000ULL    /* "tarshd" */
#define STREAM_DIRICHLET 0x7461726469720000ULL /* "tardir", + attempt */
#define DIRICHLET_TRIES 100
#define DIRICHLET_WORK ((uint64_t)1 << 25) /* gamma draws plus examples over all redraws */
#define DIRICHLET_MIN_PARTY 10

/* Parses decimal digits [s, end) into *v <= max; no sign, no spaces. */
static bool parse_u32(const char *s, const char *end, uint32_t max, uint32_t *v)
{
	uint64_t x = 0;

	if (s == end)
		return false;
	for (; s < end; s++) {
		if (*s < '0' || *s > '9')
			return false;
		x = x * 10 + (uint64_t)(*s - '0');
		if (x > max)
			return false;
	}
	*v = (uint32_t)x;
	return true;
}

static int parse_alpha(const char *s, double *alpha)
{
	char *end;
	double a;

	if (*s == '\0' || isspace((unsigned char)*s))
		return tally_err(TALLY_ECONFIG, "dirichlet:%s: alpha must be a number above 0", s);
	a = strtod(s, &end);
	if (*end != '\0' || !isfinite(a) || !(a > 0))
		return tally_err(TALLY_ECONFIG, "dirichlet:%s: alpha must be a finite number above 0", s);
	*alpha = a;
	return 0;
}

int tally_part_scheme_parse(const char *s, tally_part_scheme *out)
{
	tally_part_scheme p = { .kind = TALLY_PART_IID };
	int rc;

	if (!s)
		return tally_err(TALLY_ECONFIG, "missing partition scheme");
	if (strncmp(s, "dirichlet:", 10) == 0) {
		p.kind = TALLY_PART_DIRICHLET;
		if ((rc = parse_alpha(s + 10, &p.alpha)))
			return rc;
	} else if (strncmp(s, "shards:", 7) == 0) {
		p.kind = TALLY_PART_SHARDS;
		if (!parse_u32(s + 7, s + strlen(s), TALLY_PART_MAX_SHARDS, &p.shards) || p.shards == 0)
			return tally_err(TALLY_ECONFIG, "%s: shards per party must be 1..%u", s,
					 TALLY_PART_MAX_SHARDS);
	} else if (strcmp(s, "iid") != 0) {
		return tally_err(TALLY_ECONFIG, "unknown partition scheme '%s' (expected iid, "
				 "dirichlet:ALPHA or shards:S)", s);
	}
	*out = p;
	return 0;
}

int tally_part_scheme_format(const tally_part_scheme *s, char *buf, size_t size)
{
	char tmp[64];

	switch (s->kind) {
	case TALLY_PART_DIRICHLET:
		/* The shortest form that reads back as the same double. */
		snprintf(tmp, sizeof(tmp), "%.15g", s->alpha);
		if (strtod(tmp, NULL) != s->alpha)
			snprintf(tmp, sizeof(tmp), "%.17g", s->alpha);
		return snprintf(buf, size, "dirichlet:%s", tmp);
	case TALLY_PART_SHARDS:
		return snprintf(buf, size, "shards:%u", s->shards);
	default:
		return snprintf(buf, size, "iid");
	}
}

int tally_part_spec_parse(const char *s, uint32_t *k, uint32_t *n)
{
	const char *slash = s ? strchr(s, '/') : NULL;
	uint32_t kk, nn;

	if (!slash || !parse_u32(s, slash, TALLY_PART_MAX_PARTIES, &kk) ||
	    !parse_u32(slash + 1, slash + strlen(slash), TALLY_PART_MAX_PARTIES, &nn))
		return tally_err(TALLY_ECONFIG, "partition '%s' is not K/N (for example 3/10)",
				 s ? s : "");
	if (nn == 0 || kk >= nn)
		return tally_err(TALLY_ECONFIG, "partition %u/%u: K counts from 0 and must be below N "
				 "(N at most %u)", kk, nn, TALLY_PART_MAX_PARTIES);
	*k = kk;
	*n = nn;
	return 0;
}

/* Start of block p when m items are cut into parts nearly equal contiguous blocks. */
static size_t block_start(size_t m, uint64_t parts, uint64_t p)
{
	return (size_t)((uint64_t)m * p / parts);
}

static uint32_t *identity(size_t m)
{
	uint32_t *a = malloc((m ? m : 1) * sizeof(*a));

	for (size_t i = 0; a && i < m; i++)
		a[i] = (uint32_t)i;
	return a;
}

/* Example indices grouped by label, ascending within a label; class c is order[start[c]..start[c+1]). */
static uint32_t *sort_by_label(const uint8_t *labels, size_t m, uint32_t n_classes, size_t *start)
{
	uint32_t *order = malloc((m ? m : 1) * sizeof(*order));
	size_t fill[257];

	if (!order)
		return NULL;
	memset(start, 0, (n_classes + 1) * sizeof(*start));
	for (size_t i = 0; i < m; i++)
		start[labels[i] + 1]++;
	for (uint32_t c = 0; c < n_classes; c++)
		start[c + 1] += start[c];
	memcpy(fill, start, (n_classes + 1) * sizeof(*start));
	for (size_t i = 0; i < m; i++)
		order[fill[labels[i]]++] = (uint32_t)i;
	return order;
}

static int assign_iid(size_t m, uint32_t n, uint64_t seed, uint32_t *owner)
{
	uint32_t *perm = identity(m);
	tally_rng r;

	if (!perm)
		return TALLY_ENOMEM;
	tally_rng_seed(&r, seed, STREAM_IID);
	tally_rng_shuffle_u32(&r, perm, m);
	for (uint32_t p = 0; p < n; p++)
		for (size_t i = block_start(m, n, p); i < block_start(m, n, p + 1); i++)
			owner[perm[i]] = p;
	free(perm);
	return 0;
}

/* McMahan et al.: n*S label-sorted shards in random order, S consecutive ones per party. */
static int assign_shards(const uint8_t *labels, size_t m, uint32_t n_classes, uint32_t n,
			 uint32_t shards, uint64_t seed, uint32_t *owner)
{
	size_t start[257], total = (size_t)n * shards; /* <= m, checked by the caller */
	uint32_t *order = sort_by_label(labels, m, n_classes, start);
	uint32_t *shard = identity(total);
	tally_rng r;
	int rc = 0;

	if (!order || !shard) {
		rc = TALLY_ENOMEM;
		goto out;
	}
	tally_rng_seed(&r, seed, STREAM_SHARDS);
	tally_rng_shuffle_u32(&r, shard, total);
	for (size_t j = 0; j < total; j++) {
		size_t end = block_start(m, total, (uint64_t)shard[j] + 1);

		for (size_t i = block_start(m, total, shard[j]); i < end; i++)
			owner[order[i]] = (uint32_t)(j / shards);
	}
out:
	free(order);
	free(shard);
	return rc;
}

/* Scratch for the Dirichlet label-skew partition. */
typedef struct dirichlet_job {
	size_t m;            /* examples */
	uint32_t n_classes;
	uint32_t n;          /* parties */
	double alpha;
	uint64_t seed;
	size_t start[257];   /* class c is order[start[c]..start[c+1]) */
	uint32_t *order;     /* examples grouped by class */
	uint32_t *work;      /* one class's examples, shuffled */
	uint32_t *draw;      /* owners under the current draw */
	double *p;           /* proportions over the parties */
	size_t *size;        /* examples per party so far in the current draw */
} dirichlet_job;

/* When every weight underflowed (tiny alpha) or is masked: one open party at random takes all. */
static void dirichlet_one_party(dirichlet_job *j, tally_rng *r, double fair)
{
	uint32_t open = 0, pick;

	for (uint32_t p = 0; p < j->n; p++)
		open += (double)j->size[p] < fair;
	pick = (uint32_t)tally_rng_below(r, open ? open : j->n);
	for (uint32_t p = 0; p < j->n; p++) {
		bool eligible = !open || (double)j->size[p] < fair;

		j->p[p] = 0;
		if (eligible && pick-- == 0)
			j->p[p] = 1;
	}
}

/*
 * Draws p ~ Dir(alpha) as normalised Gamma(alpha) variates (divided by alpha first so that a
 * large alpha cannot overflow the sum). As in Hsu et al./FedLab/Flower, parties that already hold
 * their fair share m/n get nothing more, which keeps party sizes from running away.
 */
static void dirichlet_proportions(dirichlet_job *j, tally_rng *r)
{
	double fair = (double)j->m / j->n, sum = 0;

	for (uint32_t p = 0; p < j->n; p++)
		j->p[p] = tally_rng_gamma(r, j->alpha) / j->alpha;
	for (uint32_t p = 0; p < j->n; p++) {
		if ((double)j->size[p] >= fair)
			j->p[p] = 0;
		sum += j->p[p];
	}
	if (!(sum > 0) || !isfinite(sum)) {
		dirichlet_one_party(j, r, fair);
		return;
	}
	for (uint32_t p = 0; p < j->n; p++)
		j->p[p] /= sum;
}

/* Splits class c's shuffled examples over the parties at the cumulative proportions. */
static void dirichlet_class(dirichlet_job *j, tally_rng *r, uint32_t c)
{
	size_t len = j->start[c + 1] - j->start[c], from = 0;
	double cum = 0;

	memcpy(j->work, j->order + j->start[c], len * sizeof(*j->work));
	tally_rng_shuffle_u32(r, j->work, len);
	dirichlet_proportions(j, r);
	for (uint32_t p = 0; p < j->n; p++) {
		size_t to;

		cum += j->p[p];
		to = p + 1 == j->n ? len : (size_t)(cum * (double)len);
		to = to > len ? len : to < from ? from : to;
		for (size_t i = from; i < to; i++)
			j->draw[j->work[i]] = p;
		j->size[p] += to - from;
		from = to;
	}
}

/* One complete draw into j->draw, from its own stream; returns the smallest party's size. */
static size_t dirichlet_draw(dirichlet_job *j, uint32_t attempt)
{
	size_t least = SIZE_MAX;
	tally_rng r;

	tally_rng_seed(&r, j->seed, STREAM_DIRICHLET + attempt);
	memset(j->size, 0, j->n * sizeof(*j->size));
	for (uint32_t c = 0; c < j->n_classes; c++)
		dirichlet_class(j, &r, c);
	for (uint32_t p = 0; p < j->n; p++)
		least = j->size[p] < least ? j->size[p] : least;
	return least;
}

static int assign_dirichlet(const uint8_t *labels, size_t m, uint32_t n_classes, uint32_t n,
			    double alpha, uint64_t seed, uint32_t *owner)
{
	dirichlet_job j = { .m = m, .n_classes = n_classes, .n = n, .alpha = alpha, .seed = seed };
	size_t need = m / n / 2 < DIRICHLET_MIN_PARTY ? m / n / 2 : DIRICHLET_MIN_PARTY, best = 0;
	uint64_t tries = DIRICHLET_WORK / ((uint64_t)n * n_classes + m);
	int rc = 0;

	j.order = sort_by_label(labels, m, n_classes, j.start);
	j.work = malloc(m * sizeof(*j.work));
	j.draw = malloc(m * sizeof(*j.draw));
	j.p = malloc(n * sizeof(*j.p));
	j.size = malloc(n * sizeof(*j.size));
	if (!j.order || !j.work || !j.draw || !j.p || !j.size) {
		rc = TALLY_ENOMEM;
		goto out;
	}
	/*
	 * Redraw until every party has enough; keep the draw with the largest minimum. Huge
	 * federations get fewer redraws so that the cost stays bounded; the count depends only on
	 * the inputs, so every party still makes the same draws.
	 */
	tries = tries < 1 ? 1 : tries > DIRICHLET_TRIES ? DIRICHLET_TRIES : tries;
	for (uint32_t attempt = 0; attempt < tries; attempt++) {
		size_t least = dirichlet_draw(&j, attempt);

		if (attempt == 0 || least > best) {
			memcpy(owner, j.draw, m * sizeof(*owner));
			best = least;
		}
		if (least >= need)
			break;
	}
out:
	free(j.order);
	free(j.work);
	free(j.draw);
	free(j.p);
	free(j.size);
	return rc;
}

static int check_assign_args(const uint8_t *labels, size_t m, uint32_t n_classes,
			     const tally_part_scheme *s, uint32_t n)
{
	if (n < 1 || n > TALLY_PART_MAX_PARTIES)
		return tally_err(TALLY_EINVAL, "%u parties: the count must be 1..%u", n,
				 TALLY_PART_MAX_PARTIES);
	if (m > TALLY_DATA_MAX_EXAMPLES)
		return tally_err(TALLY_EINVAL, "%zu examples is over the limit of %u", m,
				 TALLY_DATA_MAX_EXAMPLES);
	if (n_classes < 1 || n_classes > 256)
		return tally_err(TALLY_EINVAL, "%u classes: the count must be 1..256", n_classes);
	for (size_t i = 0; i < m; i++)
		if (labels[i] >= n_classes)
			return tally_err(TALLY_ERANGE, "label %u of example %zu is not below %u classes",
					 labels[i], i, n_classes);
	if (s->kind == TALLY_PART_DIRICHLET && !(isfinite(s->alpha) && s->alpha > 0))
		return tally_err(TALLY_ECONFIG, "dirichlet alpha %g must be finite and above 0", s->alpha);
	if (s->kind == TALLY_PART_SHARDS && (s->shards < 1 || s->shards > TALLY_PART_MAX_SHARDS))
		return tally_err(TALLY_ECONFIG, "shards:%u: shards per party must be 1..%u", s->shards,
				 TALLY_PART_MAX_SHARDS);
	if (s->kind == TALLY_PART_SHARDS && m > 0 && (uint64_t)n * s->shards > m)
		return tally_err(TALLY_ECONFIG, "shards:%u over %u parties needs %llu examples, there "
				 "are %zu", s->shards, n, (unsigned long long)n * s->shards, m);
	return 0;
}

int tally_partition_assign(const uint8_t *labels, size_t n_examples, uint32_t n_classes,
			   const tally_part_scheme *scheme, uint32_t n, uint64_t seed, uint32_t *owner)
{
	int rc = check_assign_args(labels, n_examples, n_classes, scheme, n);

	if (rc || n_examples == 0)
		return rc;
	switch (scheme->kind) {
	case TALLY_PART_IID:
		return assign_iid(n_examples, n, seed, owner);
	case TALLY_PART_DIRICHLET:
		return assign_dirichlet(labels, n_examples, n_classes, n, scheme->alpha, seed, owner);
	case TALLY_PART_SHARDS:
		return assign_shards(labels, n_examples, n_classes, n, scheme->shards, seed, owner);
	}
	return tally_err(TALLY_ECONFIG, "unknown partition scheme kind %d", (int)scheme->kind);
}

int tally_partition(const uint8_t *labels, size_t n_examples, uint32_t n_classes,
		    const tally_part_scheme *scheme, uint32_t k, uint32_t n, uint64_t seed,
		    uint32_t **idx, size_t *count)
{
	uint32_t *owner = NULL, *mine = NULL;
	size_t c = 0;
	int rc;

	if (k >= n)
		return tally_err(TALLY_EINVAL, "party %u of %u does not exist (parties count from 0)", k, n);
	if (n_examples > TALLY_DATA_MAX_EXAMPLES)
		return tally_err(TALLY_EINVAL, "%zu examples is over the limit of %u", n_examples,
				 TALLY_DATA_MAX_EXAMPLES);
	owner = malloc((n_examples ? n_examples : 1) * sizeof(*owner));
	if (!owner)
		return TALLY_ENOMEM;
	if ((rc = tally_partition_assign(labels, n_examples, n_classes, scheme, n, seed, owner)))
		goto out;
	for (size_t i = 0; i < n_examples; i++)
		c += owner[i] == k;
	if (!(mine = malloc((c ? c : 1) * sizeof(*mine)))) {
		rc = TALLY_ENOMEM;
		goto out;
	}
	c = 0;
	for (size_t i = 0; i < n_examples; i++)
		if (owner[i] == k)
			mine[c++] = (uint32_t)i;
	*idx = mine;
	*count = c;
	mine = NULL;
out:
	free(owner);
	free(mine);
	return rc;
}
