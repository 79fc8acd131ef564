/*
 * metrics.jsonl reader and the SVG training-curve plot (see tally/plot.h).
 *
 * The reader parses each line on its own with jansson so that an error names its line. The plot
 * is written by hand into a bounded buffer: a fixed 900x520 layout with a title and legend on
 * top, an accuracy panel above a loss panel, and a shared round axis below. Every coordinate is
 * computed from axes whose range always has a positive span, so equal values, a single round and
 * a million rounds all draw without dividing by zero.
 */
#include "tally/plot.h"
#include "tally/error.h"
#include "tally/fs.h"

#include <assert.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* ---- metrics.jsonl ---- */

typedef struct rowvec {
	tally_metrics_row *rows;
	size_t n, cap;
} rowvec;

static bool is_blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return false;
	return true;
}

/* The optional number-or-null keys; absent and null give NaN. */
static const struct figure_key {
	const char *key;
	size_t offset;
	bool fraction;
} figure_keys[] = {
	{ "accuracy", offsetof(tally_metrics_row, accuracy), true },
	{ "loss", offsetof(tally_metrics_row, loss), false },
	{ "train_accuracy", offsetof(tally_metrics_row, train_accuracy), true },
	{ "train_loss", offsetof(tally_metrics_row, train_loss), false },
	{ "seconds", offsetof(tally_metrics_row, seconds), false },
};

static int get_figure(json_t *o, const struct figure_key *k, size_t line, tally_metrics_row *r)
{
	json_t *v = json_object_get(o, k->key);
	double *out = (double *)((char *)r + k->offset);

	*out = NAN;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v))
		return tally_err(TALLY_EFORMAT, "line %zu: \"%s\" must be a number or null", line, k->key);
	*out = json_number_value(v);
	if (k->fraction && !(*out >= 0 && *out <= 1))
		return tally_err(TALLY_EFORMAT, "line %zu: \"%s\" is %g, not a fraction in [0, 1]", line,
				 k->key, *out);
	return 0;
}

/* A whole number in [0, max]; absent and null give 0 unless required. */
static int get_count(json_t *o, const char *key, size_t line, json_int_t max, bool required,
		     json_int_t *out)
{
	json_t *v = json_object_get(o, key);

	*out = 0;
	if ((!v || json_is_null(v)) && !required)
		return 0;
	if (!v)
		return tally_err(TALLY_EFORMAT, "line %zu: no \"%s\" key", line, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
		return tally_err(TALLY_EFORMAT, "line %zu: \"%s\" must be a whole number from 0 to %lld",
				 line, key, (long long)max);
	*out = json_integer_value(v);
	return 0;
}

static int get_applied(json_t *o, size_t line, bool *out)
{
	json_t *v = json_object_get(o, "applied");

	*out = true;
	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return tally_err(TALLY_EFORMAT, "line %zu: \"applied\" must be true or false", line);
	*out = json_is_true(v);
	return 0;
}

static int row_from_object(json_t *o, size_t line, tally_metrics_row *r)
{
	json_int_t round = 0, parts = 0, updates = 0;
	int rc = get_count(o, "round", line, INT64_MAX, true, &round);

	if (!rc)
		rc = get_count(o, "participants", line, UINT32_MAX, false, &parts);
	if (!rc)
		rc = get_count(o, "updates", line, UINT32_MAX, false, &updates);
	if (!rc)
		rc = get_applied(o, line, &r->applied);
	for (size_t i = 0; !rc && i < sizeof(figure_keys) / sizeof(figure_keys[0]); i++)
		rc = get_figure(o, &figure_keys[i], line, r);
	r->round = (uint64_t)round;
	r->participants = (uint32_t)parts;
	r->updates = (uint32_t)updates;
	r->has_test = !isnan(r->accuracy);
	return rc;
}

static int parse_line(const char *s, size_t len, size_t line, tally_metrics_row *r)
{
	json_error_t e;
	json_t *o = json_loadb(s, len, JSON_REJECT_DUPLICATES, &e);
	int rc;

	if (!o)
		return tally_err(TALLY_EFORMAT, "line %zu, column %d: %s", line, e.column, e.text);
	if (json_is_object(o))
		rc = row_from_object(o, line, r);
	else
		rc = tally_err(TALLY_EFORMAT, "line %zu: not a JSON object", line);
	json_decref(o);
	return rc;
}

static int rowvec_push(rowvec *v, size_t line)
{
	tally_metrics_row *grown;
	size_t cap;

	if (v->n >= TALLY_METRICS_MAX_ROWS)
		return tally_err(TALLY_ETOOBIG, "line %zu: more than %u rounds", line,
				 TALLY_METRICS_MAX_ROWS);
	if (v->n == v->cap) {
		cap = v->cap ? v->cap * 2 : 64;
		if (cap > TALLY_METRICS_MAX_ROWS)
			cap = TALLY_METRICS_MAX_ROWS;
		grown = realloc(v->rows, cap * sizeof(*grown));
		if (!grown)
			return TALLY_ENOMEM;
		v->rows = grown;
		v->cap = cap;
	}
	memset(&v->rows[v->n++], 0, sizeof(*v->rows));
	return 0;
}

/* Stable bottom-up merge sort by round, through tmp (n rows). */
static void sort_by_round(tally_metrics_row *a, tally_metrics_row *tmp, size_t n)
{
	for (size_t w = 1; w < n; w *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * w) {
			size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
			size_t i = lo, j = mid, k = lo;

			while (i < mid && j < hi)
				tmp[k++] = a[j].round < a[i].round ? a[j++] : a[i++];
			while (i < mid)
				tmp[k++] = a[i++];
			while (j < hi)
				tmp[k++] = a[j++];
		}
		memcpy(a, tmp, n * sizeof(*a));
	}
}

/* Sorts v by round and keeps only the last row of each round. */
static int order_rows(rowvec *v)
{
	size_t i, k = 0;

	for (i = 1; i < v->n && v->rows[i - 1].round <= v->rows[i].round; i++)
		;
	if (i < v->n) {
		tally_metrics_row *tmp = malloc(v->n * sizeof(*tmp));

		if (!tmp)
			return TALLY_ENOMEM;
		sort_by_round(v->rows, tmp, v->n);
		free(tmp);
	}
	for (i = 0; i < v->n; i++)
		if (i + 1 == v->n || v->rows[i + 1].round != v->rows[i].round)
			v->rows[k++] = v->rows[i];
	v->n = k;
	return 0;
}

int tally_metrics_parse(const char *text, size_t len, tally_metrics_row **rows, size_t *n)
{
	rowvec v = { 0 };
	size_t line = 0, pos = 0;
	int rc = 0;

	assert(text || len == 0);
	while (rc == 0 && pos < len) {
		const char *s = text + pos, *nl = memchr(s, '\n', len - pos);
		size_t l = nl ? (size_t)(nl - s) : len - pos;

		line++;
		pos += l + (nl != NULL);
		if (is_blank(s, l))
			continue;
		rc = rowvec_push(&v, line);
		if (!rc)
			rc = parse_line(s, l, line, &v.rows[v.n - 1]);
	}
	if (!rc)
		rc = order_rows(&v);
	if (rc)
		goto out;
	*rows = v.n ? v.rows : NULL;
	*n = v.n;
	if (v.n)
		v.rows = NULL;
out:
	free(v.rows);
	return rc;
}

int tally_metrics_load(const char *path, tally_metrics_row **rows, size_t *n)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	char msg[1024];
	int rc = tally_file_read(path, TALLY_METRICS_MAX_FILE, &buf, &len);

	if (rc)
		return rc;
	rc = tally_metrics_parse((const char *)buf, len, rows, n);
	if (rc && rc != TALLY_ENOMEM) {
		snprintf(msg, sizeof(msg), "%s", tally_errmsg());
		tally_err(rc, "%s: %s", path, msg);
	}
	free(buf);
	return rc;
}

/* ---- SVG output buffer ---- */

#define SVG_MAX ((size_t)64 << 20)

typedef struct svgbuf {
	char *p;
	size_t len, cap;
	int err;      /* sticky: the first failure; later writes are ignored */
} svgbuf;

static int grow(svgbuf *b, size_t need)
{
	size_t cap = b->cap ? b->cap : 16384;
	char *p;

	if (need > SVG_MAX)
		return b->err = tally_err(TALLY_ETOOBIG, "the plot would be over %zu bytes", SVG_MAX);
	while (cap < need)
		cap *= 2;
	cap = cap > SVG_MAX ? SVG_MAX : cap;
	p = realloc(b->p, cap);
	if (!p)
		return b->err = TALLY_ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static void put(svgbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(svgbuf *b, const char *fmt, ...)
{
	va_list ap;
	int k;

	while (!b->err) {
		va_start(ap, fmt);
		k = vsnprintf(b->p ? b->p + b->len : NULL, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (k < 0) {
			b->err = tally_err(TALLY_EINVAL, "cannot format the plot");
		} else if (b->len + (size_t)k < b->cap) {
			b->len += (size_t)k;
			return;
		} else {
			grow(b, b->len + (size_t)k + 1);
		}
	}
}

/* Length of the valid UTF-8 sequence (of an XML character) at s, or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *s)
{
	uint32_t cp, min;
	size_t n;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1fu, min = 0x80;
	else if ((s[0] & 0xf0) == 0xe0)
		n = 3, cp = s[0] & 0x0fu, min = 0x800;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07u, min = 0x10000;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
			return 0;
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff)
		return 0;
	return n;
}

/* Writes text as XML character data: escaped, invalid bytes as U+FFFD, controls as spaces. */
static void put_text(svgbuf *b, const char *text, size_t max_chars)
{
	const unsigned char *s = (const unsigned char *)text;

	for (size_t count = 0; *s; count++) {
		size_t k = utf8_seq(s);

		if (count == max_chars) {
			put(b, "\xe2\x80\xa6"); /* ellipsis */
			return;
		}
		if (k == 0)
			put(b, "\xef\xbf\xbd");
		else if (strchr("&<>\"'", *s))
			put(b, "&%s;", *s == '&' ? "amp" : *s == '<' ? "lt" : *s == '>' ? "gt" :
			    *s == '"' ? "quot" : "apos");
		else if (*s < 0x20)
			put(b, " ");
		else
			put(b, "%.*s", (int)k, (const char *)s);
		s += k ? k : 1;
	}
}

/* ---- layout ---- */

#define VIEW_W 900
#define VIEW_H 520
#define PLOT_L 78.0
#define PLOT_R 810.0
#define XPAD 10.0          /* keeps the first and last markers off the panel edges */
#define MARKS_MAX 300      /* rounds past which markers and bands would only be noise */
#define TITLE_CHARS 90
#define BLUE "#1f5fbf"
#define ORANGE "#e8710a"
#define INK "#1f2937"
#define MUTED "#6b7280"
#define GRID "#e5e7eb"
#define BAND "#eef0f4"
#define FONTS "Inter, 'Helvetica Neue', Helvetica, Arial, 'Liberation Sans', 'DejaVu Sans', sans-serif"

typedef struct axis {
	double lo, hi, step; /* hi > lo always */
} axis;

typedef struct panel {
	double top, bottom;
	axis y;
	double *v;                 /* n values to draw; NaN leaves a gap */
	bool pct, empty;
	const char *cls, *colour, *legend, *title;
} panel;

typedef struct plot {
	const tally_metrics_row *rows;
	size_t n;
	axis x;
	panel p[2];                /* accuracy, loss */
	bool test, marks, any_kept;
	svgbuf out;
} plot;

/* 1, 2 or 5 times a power of ten, at least raw (> 0). */
static double nice_step(double raw)
{
	double mag = pow(10, floor(log10(raw))), f = raw / mag;

	return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

/* Fits an axis of about ticks steps around [lo, hi], at least min_span wide. */
static void axis_fit(axis *a, double lo, double hi, int ticks, double min_span)
{
	min_span = fmax(min_span, fmax(fabs(lo), fabs(hi)) * 1e-6); /* stay within precision */
	if (hi - lo < min_span) {
		double mid = lo / 2 + hi / 2;

		lo = mid - min_span / 2;
		hi = mid + min_span / 2;
	}
	a->step = nice_step((hi - lo) / ticks);
	a->lo = floor(lo / a->step) * a->step;
	a->hi = ceil(hi / a->step) * a->step;
	if (!(a->hi > a->lo))
		a->hi = a->lo + a->step;
}

static double px_x(const plot *p, double round)
{
	return PLOT_L + XPAD + (round - p->x.lo) / (p->x.hi - p->x.lo) * (PLOT_R - PLOT_L - 2 * XPAD);
}

static double px_y(const panel *pn, double v)
{
	v = v < pn->y.lo ? pn->y.lo : v > pn->y.hi ? pn->y.hi : v;
	return pn->bottom - (v - pn->y.lo) / (pn->y.hi - pn->y.lo) * (pn->bottom - pn->top);
}

/* The figure drawn for row i: test or train; a round not applied without one keeps the last. */
static double drawn_value(const plot *p, size_t i, int which, double prev)
{
	const tally_metrics_row *r = &p->rows[i];
	double v = p->test ? (which ? r->loss : r->accuracy) : (which ? r->train_loss : r->train_accuracy);
	double top = which ? 1e300 : 1, bottom = which ? -1e300 : 0; /* accuracy is a fraction */

	if (!isfinite(v))
		return r->applied ? NAN : prev;
	return v > top ? top : v < bottom ? bottom : v;
}

/* Fills panel values and fits its y axis. */
static int panel_init(plot *p, int which)
{
	panel *pn = &p->p[which];
	double lo = INFINITY, hi = -INFINITY, prev = NAN;

	pn->v = malloc(p->n * sizeof(*pn->v));
	if (!pn->v)
		return TALLY_ENOMEM;
	for (size_t i = 0; i < p->n; i++) {
		prev = pn->v[i] = drawn_value(p, i, which, prev);
		lo = isnan(prev) ? lo : fmin(lo, prev);
		hi = isnan(prev) ? hi : fmax(hi, prev);
	}
	pn->empty = !(lo <= hi);
	if (pn->empty)
		lo = 0, hi = 1;
	if (pn->pct) {
		axis_fit(&pn->y, lo, hi, 5, 0.05);
		pn->y.lo = fmax(pn->y.lo, 0);
		pn->y.hi = fmin(pn->y.hi, 1);
	} else {
		double mag = fmax(fabs(lo), fabs(hi));

		axis_fit(&pn->y, lo, hi, 4, mag > 1e-200 ? mag * 0.1 : 1);
		if (lo >= 0 && pn->y.lo < 0)
			pn->y.lo = 0;
	}
	return 0;
}

static int plot_init(plot *p, const tally_metrics_row *rows, size_t n)
{
	double lo = INFINITY, hi = -INFINITY;
	panel *acc = &p->p[0], *loss = &p->p[1];
	int rc;

	p->rows = rows;
	p->n = n;
	p->marks = n <= MARKS_MAX;
	for (size_t i = 0; i < n; i++) {
		p->test |= rows[i].has_test;
		p->any_kept |= !rows[i].applied;
		lo = fmin(lo, (double)rows[i].round);
		hi = fmax(hi, (double)rows[i].round);
	}
	if (!(hi - lo >= 1)) { /* one round; past 2^53, r - 1 and r + 1 round to r */
		double pad = fmax(1, fabs(lo) * 1e-9);

		lo -= pad;
		hi += pad;
	}
	p->x = (axis){ lo, hi, fmax(1, nice_step((hi - lo) / 8)) };
	*acc = (panel){ .top = 76, .bottom = 266, .pct = true, .cls = "acc", .colour = BLUE,
			.legend = p->test ? "test accuracy" : "train accuracy (no test set)",
			.title = p->test ? "test accuracy" : "train accuracy" };
	*loss = (panel){ .top = 296, .bottom = 458, .cls = "loss", .colour = ORANGE,
			 .legend = p->test ? "test loss" : "train loss (no test set)", .title = "loss" };
	rc = panel_init(p, 0);
	return rc ? rc : panel_init(p, 1);
}

/* ---- drawing ---- */

/* A legend entry at x; returns where the next one starts. */
static double legend_item(svgbuf *b, double x, const char *colour, bool hollow, const char *label)
{
	if (!hollow)
		put(b, "<line x1=\"%.1f\" y1=\"52\" x2=\"%.1f\" y2=\"52\" stroke=\"%s\" stroke-width=\"2\"/>"
		       "<circle cx=\"%.1f\" cy=\"52\" r=\"3.2\" fill=\"%s\" stroke=\"#fff\"/>\n",
		    x, x + 22, colour, x + 11, colour);
	else
		put(b, "<rect x=\"%.1f\" y=\"44\" width=\"22\" height=\"16\" fill=\"" BAND "\"/>"
		       "<circle cx=\"%.1f\" cy=\"52\" r=\"3.6\" fill=\"#fff\" stroke=\"%s\" "
		       "stroke-width=\"1.6\"/>\n", x, x + 11, colour);
	put(b, "<text x=\"%.1f\" y=\"56\">%s</text>\n", x + 30, label);
	return x + 30 + 6.6 * (double)strlen(label) + 26;
}

static void draw_head(plot *p, const char *title)
{
	svgbuf *b = &p->out;
	double x = PLOT_L;

	put(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	       "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" width=\"%d\" "
	       "height=\"%d\" font-family=\"" FONTS "\" font-size=\"12\" fill=\"" INK "\">\n<title>",
	    VIEW_W, VIEW_H, VIEW_W, VIEW_H);
	put_text(b, title, SIZE_MAX);
	put(b, "</title>\n<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n"
	       "<text class=\"title\" x=\"%.0f\" y=\"30\" font-size=\"19\" font-weight=\"bold\" "
	       "fill=\"#111827\">", VIEW_W, VIEW_H, PLOT_L);
	put_text(b, title, TITLE_CHARS);
	put(b, "</text>\n<g class=\"legend\" font-size=\"12.5\">\n");
	x = legend_item(b, x, BLUE, false, p->p[0].legend);
	x = legend_item(b, x, ORANGE, false, p->p[1].legend);
	if (p->any_kept && p->marks)
		legend_item(b, x, MUTED, true, "round not applied (figures kept)");
	put(b, "</g>\n");
}

/* Shaded bands behind rounds that were not applied. */
static void draw_bands(plot *p, const panel *pn)
{
	double unit = (PLOT_R - PLOT_L - 2 * XPAD) / (p->x.hi - p->x.lo), w = fmax(6, unit * 0.8);

	if (!p->marks || !p->any_kept)
		return;
	put(&p->out, "<g fill=\"" BAND "\">");
	for (size_t i = 0; i < p->n; i++)
		if (!p->rows[i].applied)
			put(&p->out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>",
			    px_x(p, (double)p->rows[i].round) - w / 2, pn->top, w, pn->bottom - pn->top);
	put(&p->out, "</g>\n");
}

/* Formats a tick value with as many decimals as the step needs. */
static void tick_label(char *s, size_t size, double v, double step, bool pct)
{
	int d;

	if (pct)
		v *= 100, step *= 100;
	d = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
	if (fabs(v) < step * 1e-6)
		v = 0;
	if (d > 6 || fabs(v) >= 1e7)
		snprintf(s, size, "%.3g%s", v, pct ? "%" : "");
	else
		snprintf(s, size, "%.*f%s", d, v, pct ? "%" : "");
}

/* Horizontal grid lines, y tick labels and the rotated y-axis title of a panel. */
static void draw_y_axis(plot *p, const panel *pn)
{
	svgbuf *b = &p->out;
	char label[64];

	put(b, "<g class=\"ygrid\" stroke=\"" GRID "\" shape-rendering=\"crispEdges\">");
	for (int k = 0; k <= 100 && pn->y.lo + k * pn->y.step <= pn->y.hi + pn->y.step * 1e-6; k++)
		put(b, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\"/>", PLOT_L, PLOT_R,
		    px_y(pn, pn->y.lo + k * pn->y.step), px_y(pn, pn->y.lo + k * pn->y.step));
	put(b, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#9ca3af\"/></g>\n"
	       "<g class=\"ytick\" font-size=\"11.5\" fill=\"" MUTED "\" text-anchor=\"end\">",
	    PLOT_L, PLOT_R, pn->bottom, pn->bottom);
	for (int k = 0; k <= 100 && pn->y.lo + k * pn->y.step <= pn->y.hi + pn->y.step * 1e-6; k++) {
		tick_label(label, sizeof(label), pn->y.lo + k * pn->y.step, pn->y.step, pn->pct);
		put(b, "<text x=\"%.0f\" y=\"%.1f\">%s</text>", PLOT_L - 8,
		    px_y(pn, pn->y.lo + k * pn->y.step) + 4, label);
	}
	put(b, "</g>\n<text class=\"axis-title\" transform=\"translate(22 %.1f) rotate(-90)\" "
	       "text-anchor=\"middle\" font-size=\"13\">%s</text>\n", (pn->top + pn->bottom) / 2, pn->title);
	if (pn->empty)
		put(b, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"" MUTED "\">no %s figures"
		       "</text>\n", (PLOT_L + PLOT_R) / 2, (pn->top + pn->bottom) / 2, pn->title);
}

/* Vertical grid lines in both panels, round tick labels and the "round" axis title. */
static void draw_x_axis(plot *p)
{
	svgbuf *b = &p->out;
	double first = ceil(p->x.lo / p->x.step) * p->x.step, x;

	put(b, "<g class=\"xgrid\" stroke=\"" GRID "\" shape-rendering=\"crispEdges\">");
	for (int k = 0; k <= 100 && first + k * p->x.step <= p->x.hi; k++) {
		x = px_x(p, first + k * p->x.step);
		put(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
		       "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", x, x, p->p[0].top,
		    p->p[0].bottom, x, x, p->p[1].top, p->p[1].bottom);
	}
	put(b, "</g>\n<g class=\"xtick\" font-size=\"11.5\" fill=\"" MUTED "\" text-anchor=\"middle\">");
	for (int k = 0; k <= 100 && first + k * p->x.step <= p->x.hi; k++)
		if (first + k * p->x.step >= 0)
			put(b, "<text x=\"%.1f\" y=\"%.1f\">%.0f</text>", px_x(p, first + k * p->x.step),
			    p->p[1].bottom + 18, first + k * p->x.step);
	put(b, "</g>\n<text class=\"axis-title\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
	       "font-size=\"13\">round</text>\n", (PLOT_L + PLOT_R) / 2, p->p[1].bottom + 44);
}

/* The curve as one polyline per run of finite values; lone points get a dot without markers. */
static void draw_line(plot *p, const panel *pn)
{
	svgbuf *b = &p->out;
	size_t i = 0, j;

	while (i < p->n) {
		for (; i < p->n && isnan(pn->v[i]); i++)
			;
		for (j = i; j < p->n && !isnan(pn->v[j]); j++)
			;
		if (j == i + 1 && !p->marks)
			put(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2\" fill=\"%s\"/>\n",
			    px_x(p, (double)p->rows[i].round), px_y(pn, pn->v[i]), pn->colour);
		if (j > i + 1) {
			put(b, "<polyline class=\"line %s\" fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" "
			       "stroke-linejoin=\"round\" stroke-linecap=\"round\" points=\"", pn->cls, pn->colour,
			    p->marks ? "2" : "1.5");
			for (size_t k = i; k < j; k++)
				put(b, "%s%.1f,%.1f", k > i ? " " : "", px_x(p, (double)p->rows[k].round),
				    px_y(pn, pn->v[k]));
			put(b, "\"/>\n");
		}
		i = j;
	}
}

/* One marker per drawn point: filled when applied, hollow when the round kept the old figures. */
static void draw_markers(plot *p, const panel *pn)
{
	svgbuf *b = &p->out;

	if (!p->marks)
		return;
	put(b, "<g fill=\"%s\" stroke=\"#fff\" stroke-width=\"1\">", pn->colour);
	for (size_t i = 0; i < p->n; i++) {
		if (isnan(pn->v[i]))
			continue;
		if (p->rows[i].applied)
			put(b, "<circle class=\"pt %s\" cx=\"%.1f\" cy=\"%.1f\" r=\"3.2\"/>", pn->cls,
			    px_x(p, (double)p->rows[i].round), px_y(pn, pn->v[i]));
		else
			put(b, "<circle class=\"pt %s kept\" cx=\"%.1f\" cy=\"%.1f\" r=\"3.6\" fill=\"#fff\" "
			       "stroke=\"%s\" stroke-width=\"1.6\"/>", pn->cls, px_x(p, (double)p->rows[i].round),
			    px_y(pn, pn->v[i]), pn->colour);
	}
	put(b, "</g>\n");
}

/* The last figure, written just right of the last point of its curve. */
static void draw_final(plot *p, const panel *pn)
{
	char label[64];
	size_t i = p->n;

	while (i > 0 && isnan(pn->v[i - 1]))
		i--;
	if (i == 0)
		return;
	if (pn->pct)
		snprintf(label, sizeof(label), "%.1f%%", pn->v[i - 1] * 100);
	else
		snprintf(label, sizeof(label), "%.3g", pn->v[i - 1]);
	put(&p->out, "<text class=\"final %s\" x=\"%.1f\" y=\"%.1f\" font-size=\"13.5\" "
		     "font-weight=\"bold\" fill=\"%s\" stroke=\"#fff\" stroke-width=\"3\" "
		     "paint-order=\"stroke\" stroke-linejoin=\"round\">%s</text>\n", pn->cls,
	    px_x(p, (double)p->rows[i - 1].round) + 9, px_y(pn, pn->v[i - 1]) + 4.5, pn->colour, label);
}

int tally_plot_svg(const tally_metrics_row *rows, size_t n, const char *title, const char *svg_path)
{
	plot p = { 0 };
	int rc;

	assert(title && svg_path && (rows || n == 0));
	if (n == 0)
		return tally_err(TALLY_EINVAL, "no rounds to plot into %s", svg_path);
	rc = plot_init(&p, rows, n);
	if (rc)
		goto out;
	draw_head(&p, title);
	for (int k = 0; k < 2; k++) {
		draw_bands(&p, &p.p[k]);
		draw_y_axis(&p, &p.p[k]);
	}
	draw_x_axis(&p);
	for (int k = 0; k < 2; k++) {
		draw_line(&p, &p.p[k]);
		draw_markers(&p, &p.p[k]);
		draw_final(&p, &p.p[k]);
	}
	put(&p.out, "</svg>\n");
	rc = p.out.err;
	if (!rc)
		rc = tally_file_write_atomic(svg_path, &(struct iovec){ p.out.p, p.out.len }, 1, 0644);
out:
	free(p.p[0].v);
	free(p.p[1].v);
	free(p.out.p);
	return rc;
}
