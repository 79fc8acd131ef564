/*
 * Unit tests for the metrics.jsonl reader and the SVG plot: a realistic sample with a null test
 * accuracy and a round that was not applied, ordering and duplicate rounds, every class of
 * rejection (each message must name its line), the row limit, loading from a file; then plots of
 * 20 rounds, one round, equal values, training figures only, and 1000 rounds, each checked to be
 * well-formed XML (by Python's minidom) with the expected markers, tick labels, escaped title and
 * final figure.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tally/error.h"
#include "tally/plot.h"

/* cmocka's assert_float_equal works in float; these figures are doubles. */
#define assert_near(a, b, eps)                                                                \
	do {                                                                                  \
		double a_ = (a), b_ = (b);                                                    \
		if (!(fabs(a_ - b_) <= (eps)))                                                \
			fail_msg("%s is %.17g, wanted %.17g", #a, a_, b_);                    \
	} while (0)

static char tmpdir[] = "/tmp/tally-test-plot-XXXXXX";

static int setup(void **state)
{
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void tmp_path(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/%s", tmpdir, name);
}

/* Whole file as a NUL-terminated string; fails the test if it cannot be read. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static size_t count(const char *hay, const char *needle)
{
	size_t k = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		k++;
	return k;
}

/* True when Python's minidom parses path as XML. */
static bool xml_ok(const char *path)
{
	char cmd[512];
	int st;

	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 -c 'import xml.dom.minidom,sys; "
		 "xml.dom.minidom.parse(sys.argv[1])' '%s'", path);
	st = system(cmd);
	return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void parse_ok(const char *doc, tally_metrics_row **rows, size_t *n)
{
	int rc = tally_metrics_parse(doc, strlen(doc), rows, n);

	if (rc)
		fail_msg("parse failed (%d): %s", rc, tally_errmsg());
}

/* ---- parsing ---- */

static const char sample[] =
	"{\"round\":1,\"run_id\":\"run-ab12\",\"applied\":true,\"accuracy\":0.61,\"loss\":1.12,"
	"\"participants\":10,\"updates\":10,\"examples\":60000,\"train_loss\":1.2,\"train_accuracy\":0.58,"
	"\"seconds\":4.2,\"bytes_in\":9400000,\"bytes_out\":9400000,\"late_discarded\":0}\n"
	"\n"
	"{\"round\":2,\"applied\":true,\"accuracy\":null,\"loss\":null,\"participants\":10,\"updates\":9,"
	"\"train_loss\":0.9,\"train_accuracy\":0.7,\"seconds\":3.9}\r\n"
	"{\"round\":3,\"applied\":false,\"accuracy\":null,\"loss\":null,\"participants\":10,\"updates\":2}\n"
	"   \t\n"
	"{\"round\":4,\"accuracy\":0.8421,\"loss\":0.4412,\"participants\":8,\"updates\":8,"
	"\"train_loss\":0.45,\"train_accuracy\":0.84,\"seconds\":4.2}\n"
	"{\"round\":5,\"applied\":true,\"accuracy\":1,\"loss\":0,\"participants\":4294967295}";

static void test_parse_sample(void **state)
{
	tally_metrics_row *r = NULL;
	size_t n = 0;

	parse_ok(sample, &r, &n);
	assert_int_equal(n, 5);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(r[i].round, i + 1);
	assert_true(r[0].applied && r[0].has_test);
	assert_near(r[0].accuracy, 0.61, 1e-12);
	assert_near(r[0].loss, 1.12, 1e-12);
	assert_near(r[0].train_accuracy, 0.58, 1e-12);
	assert_near(r[0].seconds, 4.2, 1e-12);
	assert_int_equal(r[0].participants, 10);
	assert_false(r[1].has_test);
	assert_true(isnan(r[1].accuracy) && isnan(r[1].loss));
	assert_near(r[1].train_loss, 0.9, 1e-12);
	assert_int_equal(r[1].updates, 9);
	assert_false(r[2].applied);
	assert_false(r[2].has_test);
	assert_true(isnan(r[2].accuracy) && isnan(r[2].train_accuracy) && isnan(r[2].seconds));
	assert_true(r[3].applied); /* absent "applied" means applied */
	assert_near(r[3].accuracy, 0.8421, 1e-12);
	assert_near(r[4].accuracy, 1.0, 0);
	assert_int_equal(r[4].participants, UINT32_MAX);
	assert_int_equal(r[4].updates, 0);
	free(r);
}

static void test_parse_orders_and_dedupes(void **state)
{
	tally_metrics_row *r = NULL;
	size_t n = 0;

	parse_ok("{\"round\":3,\"accuracy\":0.3}\n{\"round\":1,\"accuracy\":0.1}\n"
		 "{\"round\":2,\"accuracy\":0.2}\n{\"round\":1,\"accuracy\":0.15}\n"
		 "{\"round\":0,\"accuracy\":0.0}\n", &r, &n);
	assert_int_equal(n, 4);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(r[i].round, i);
	assert_near(r[1].accuracy, 0.15, 1e-12); /* the later line for round 1 wins */
	assert_near(r[3].accuracy, 0.3, 1e-12);
	free(r);
}

static void test_parse_empty(void **state)
{
	tally_metrics_row *r = (tally_metrics_row *)&r;
	size_t n = 7;

	assert_int_equal(tally_metrics_parse("", 0, &r, &n), 0);
	assert_null(r);
	assert_int_equal(n, 0);
	r = (tally_metrics_row *)&r;
	assert_int_equal(tally_metrics_parse("\n \r\n\t\n", 6, &r, &n), 0);
	assert_null(r);
	assert_int_equal(n, 0);
}

static const struct reject {
	const char *doc;
	int line;
	const char *needle;
} rejects[] = {
	{ "{\"round\":1}\nnot json\n", 2, "line 2" },
	{ "{\"round\":1}\n\n[1,2]\n", 3, "not a JSON object" },
	{ "{\"round\":1}\n\"text\"\n", 2, "line 2" },
	{ "{\"accuracy\":0.5}", 1, "\"round\"" },
	{ "{\"round\":-1}", 1, "\"round\"" },
	{ "{\"round\":\"3\"}", 1, "\"round\"" },
	{ "{\"round\":1.5}", 1, "\"round\"" },
	{ "{\"round\":null}", 1, "\"round\"" },
	{ "{\"round\":1}\n{\"round\":2,\"accuracy\":84.2}", 2, "not a fraction" },
	{ "{\"round\":1,\"train_accuracy\":-0.1}", 1, "train_accuracy" },
	{ "{\"round\":1,\"applied\":\"yes\"}", 1, "\"applied\"" },
	{ "{\"round\":1,\"applied\":null}", 1, "\"applied\"" },
	{ "{\"round\":1,\"loss\":\"high\"}", 1, "\"loss\"" },
	{ "{\"round\":1,\"seconds\":[1]}", 1, "\"seconds\"" },
	{ "{\"round\":1,\"participants\":4294967296}", 1, "\"participants\"" },
	{ "{\"round\":1,\"updates\":2.5}", 1, "\"updates\"" },
	{ "{\"round\":1} trailing", 1, "line 1" },
	{ "{\"round\":1,\"round\":2}", 1, "line 1" },
	{ "\n\n\n\n\n\n\n\n\n\n\n{\"round\":1}\n{\"round\":2}\n{\"round\":3", 14, "line 14" },
	{ "{\"round\":99999999999999999999}", 1, "line 1" },
	{ "{\"round\":1,\"loss\":1e999}", 1, "line 1" },
};

static void test_parse_rejects(void **state)
{
	for (size_t i = 0; i < sizeof(rejects) / sizeof(rejects[0]); i++) {
		const struct reject *t = &rejects[i];
		tally_metrics_row *r = (tally_metrics_row *)&r;
		size_t n = 7;
		char prefix[32];
		const char *msg;
		int rc;

		tally_err_clear();
		rc = tally_metrics_parse(t->doc, strlen(t->doc), &r, &n);
		msg = tally_errmsg();
		snprintf(prefix, sizeof(prefix), "line %d", t->line);
		if (rc != TALLY_EFORMAT || strncmp(msg, prefix, strlen(prefix)) ||
		    (msg[strlen(prefix)] != ':' && msg[strlen(prefix)] != ',') || !strstr(msg, t->needle))
			fail_msg("case %zu: got rc %d and '%s'; wanted %d and '%s...%s'", i, rc, msg,
				 TALLY_EFORMAT, prefix, t->needle);
		assert_ptr_equal(r, (tally_metrics_row *)&r);
		assert_int_equal(n, 7);
	}
}

/* A NUL byte inside a line is malformed too (len, not strlen, bounds the text). */
static void test_parse_rejects_nul(void **state)
{
	static const char doc[] = "{\"round\":1}\n{\"round\":\0 2}\n";
	tally_metrics_row *r = NULL;
	size_t n = 0;

	assert_int_equal(tally_metrics_parse(doc, sizeof(doc) - 1, &r, &n), TALLY_EFORMAT);
	assert_non_null(strstr(tally_errmsg(), "line 2"));
	assert_int_equal(tally_metrics_parse(doc, 12, &r, &n), 0);
	assert_int_equal(n, 1);
	free(r);
}

/* TALLY_METRICS_MAX_ROWS lines parse; one more is refused, naming the line. */
static void test_parse_row_limit(void **state)
{
	static const char line[] = "{\"round\":0}\n";
	size_t l = sizeof(line) - 1, max = TALLY_METRICS_MAX_ROWS;
	char *doc = malloc((max + 1) * l);
	tally_metrics_row *r = NULL;
	size_t n = 0;

	assert_non_null(doc);
	for (size_t i = 0; i <= max; i++)
		memcpy(doc + i * l, line, l);
	assert_int_equal(tally_metrics_parse(doc, max * l, &r, &n), 0);
	assert_int_equal(n, 1);
	free(r);
	assert_int_equal(tally_metrics_parse(doc, (max + 1) * l, &r, &n), TALLY_ETOOBIG);
	assert_non_null(strstr(tally_errmsg(), "line 1000001"));
	free(doc);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

static void test_load(void **state)
{
	char path[256], bad[256];
	tally_metrics_row *r = NULL;
	size_t n = 0;

	tmp_path(path, sizeof(path), "metrics.jsonl");
	tmp_path(bad, sizeof(bad), "bad.jsonl");
	write_text(path, sample);
	write_text(bad, "{\"round\":1}\n{\"round\":2,}\n");
	assert_int_equal(tally_metrics_load(path, &r, &n), 0);
	assert_int_equal(n, 5);
	free(r);
	assert_int_equal(tally_metrics_load(bad, &r, &n), TALLY_EFORMAT);
	assert_int_equal(strncmp(tally_errmsg(), bad, strlen(bad)), 0);
	assert_non_null(strstr(tally_errmsg(), ": line 2"));
	tmp_path(path, sizeof(path), "missing.jsonl");
	assert_int_equal(tally_metrics_load(path, &r, &n), TALLY_ENOENT);
}

/* ---- plotting ---- */

/*
 * A realistic run: accuracy climbing to ~86%, loss falling to ~0.41; round 7 was not applied and,
 * as the coordinator writes it, has null test figures (the plot carries round 6's forward).
 */
static void make_run(tally_metrics_row *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		double t = (double)i;

		r[i] = (tally_metrics_row){ .round = i + 1, .applied = i != 6, .has_test = true,
			.accuracy = 0.86 - 0.26 * exp(-t / 4.5) + 0.004 * sin(t * 1.7),
			.loss = 0.40 + 0.75 * exp(-t / 4.0), .participants = 10, .updates = 10,
			.train_accuracy = NAN, .train_loss = NAN, .seconds = 4.2 };
		if (!r[i].applied) {
			r[i].accuracy = r[i].loss = NAN;
			r[i].has_test = false;
		}
	}
}

/* Plots rows to name in the temp folder; returns the SVG text after checking it parses. */
static char *plot_ok(const tally_metrics_row *rows, size_t n, const char *title, const char *name)
{
	char path[256];
	struct stat st;
	char *svg;
	int rc;

	tmp_path(path, sizeof(path), name);
	rc = tally_plot_svg(rows, n, title, path);
	if (rc)
		fail_msg("plot failed (%d): %s", rc, tally_errmsg());
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	if (!xml_ok(path))
		fail_msg("%s is not well-formed XML", path);
	svg = slurp(path);
	assert_null(strstr(svg, "nan"));
	assert_null(strstr(svg, "inf"));
	assert_null(strstr(svg, "<script"));
	return svg;
}

/* Points in the first polyline of class cls. */
static size_t polyline_points(const char *svg, const char *cls)
{
	char needle[64];
	const char *p;
	size_t k = 1;

	snprintf(needle, sizeof(needle), "class=\"line %s\"", cls);
	p = strstr(svg, needle);
	assert_non_null(p);
	p = strstr(p, "points=\"");
	assert_non_null(p);
	for (p += 8; *p != '"'; p++)
		k += *p == ' ';
	return k;
}

static void test_plot_run(void **state)
{
	tally_metrics_row rows[20];
	char final[32], *svg;

	make_run(rows, 20);
	svg = plot_ok(rows, 20, "FedAvg <&> \"quoted\" 'x'", "run.svg");
	assert_non_null(strstr(svg, ">FedAvg &lt;&amp;&gt; &quot;quoted&quot; &apos;x&apos;</text>"));
	assert_null(strstr(svg, "<&>"));
	assert_int_equal(count(svg, "class=\"pt acc"), 20);
	assert_int_equal(count(svg, "class=\"pt acc kept\""), 1);
	assert_int_equal(count(svg, "class=\"pt loss"), 20);
	assert_int_equal(polyline_points(svg, "acc"), 20);
	assert_int_equal(polyline_points(svg, "loss"), 20);
	for (const char *const *t = (const char *const[]){ ">60%</text>", ">90%</text>", ">0.4</text>",
			">1.2</text>", ">5</text>", ">10</text>", ">20</text>", ">round</text>",
			">test accuracy</text>", ">loss</text>", ">test loss</text>", "not applied", NULL };
	     *t; t++)
		if (!strstr(svg, *t))
			fail_msg("no '%s' in the plot", *t);
	snprintf(final, sizeof(final), ">%.1f%%</text>", rows[19].accuracy * 100);
	assert_non_null(strstr(svg, final));
	assert_non_null(strstr(svg, "viewBox=\"0 0 900 520\""));
	free(svg);
}

static void test_plot_one_round(void **state)
{
	tally_metrics_row row = { .round = 0, .applied = true, .has_test = true, .accuracy = 0.1234,
				  .loss = 2.3, .train_accuracy = NAN, .train_loss = NAN };
	char *svg = plot_ok(&row, 1, "one", "one.svg");

	assert_int_equal(count(svg, "class=\"pt acc"), 1);
	assert_int_equal(count(svg, "class=\"pt loss"), 1);
	assert_non_null(strstr(svg, ">12.3%</text>"));
	assert_non_null(strstr(svg, ">0</text>"));
	free(svg);
}

static void test_plot_no_rows(void **state)
{
	tally_metrics_row row = { 0 };
	char path[256];

	tmp_path(path, sizeof(path), "none.svg");
	assert_int_equal(tally_plot_svg(&row, 0, "none", path), TALLY_EINVAL);
	assert_int_not_equal(access(path, F_OK), 0);
}

static void test_plot_equal_values(void **state)
{
	tally_metrics_row rows[5];
	char *svg;

	for (size_t i = 0; i < 5; i++)
		rows[i] = (tally_metrics_row){ .round = i, .applied = true, .has_test = true,
					       .accuracy = 0.5, .loss = 0, .train_accuracy = NAN,
					       .train_loss = NAN };
	svg = plot_ok(rows, 5, "flat", "flat.svg");
	assert_int_equal(count(svg, "class=\"pt acc"), 5);
	assert_non_null(strstr(svg, ">50%</text>"));
	assert_non_null(strstr(svg, ">0</text>"));
	free(svg);
}

/* No test figures: the plot draws the training figures and says so. */
static void test_plot_train_only(void **state)
{
	tally_metrics_row *rows = NULL;
	size_t n = 0;
	char *svg;

	parse_ok("{\"round\":1,\"accuracy\":null,\"loss\":null,\"train_accuracy\":0.5,\"train_loss\":1.1}\n"
		 "{\"round\":2,\"accuracy\":null,\"loss\":null,\"train_accuracy\":0.7,\"train_loss\":0.8}\n"
		 "{\"round\":3,\"applied\":false,\"accuracy\":null,\"loss\":null}\n"
		 "{\"round\":4,\"accuracy\":null,\"loss\":null,\"train_accuracy\":0.8,\"train_loss\":0.6}\n",
		 &rows, &n);
	svg = plot_ok(rows, n, "train", "train.svg");
	assert_non_null(strstr(svg, ">train accuracy (no test set)</text>"));
	assert_non_null(strstr(svg, ">train accuracy</text>"));
	assert_null(strstr(svg, "test accuracy"));
	/* round 3 had no figures and was not applied: it is drawn with round 2's, hollow */
	assert_int_equal(count(svg, "class=\"pt acc"), 4);
	assert_int_equal(count(svg, "class=\"pt acc kept\""), 1);
	assert_non_null(strstr(svg, ">80.0%</text>"));
	free(svg);
	free(rows);
}

/* Rounds without any accuracy figure still plot, with the empty panel saying so. */
static void test_plot_no_figures(void **state)
{
	tally_metrics_row rows[2] = {
		{ .round = 1, .applied = true, .accuracy = NAN, .loss = NAN, .train_accuracy = NAN,
		  .train_loss = 0.9 },
		{ .round = 2, .applied = true, .accuracy = NAN, .loss = NAN, .train_accuracy = NAN,
		  .train_loss = 0.7 },
	};
	char *svg = plot_ok(rows, 2, "no accuracy", "empty.svg");

	assert_non_null(strstr(svg, ">no train accuracy figures</text>"));
	assert_int_equal(count(svg, "class=\"pt acc"), 0);
	assert_int_equal(count(svg, "class=\"pt loss"), 2);
	free(svg);
}

/* Tick values must be multiples of 1, 2 or 5 times a power of ten. */
static void test_plot_many_rounds(void **state)
{
	size_t n = 1000;
	tally_metrics_row *rows = calloc(n, sizeof(*rows));
	char *svg;

	assert_non_null(rows);
	for (size_t i = 0; i < n; i++)
		rows[i] = (tally_metrics_row){ .round = i, .applied = i % 17 != 0, .has_test = true,
					       .accuracy = 0.1 + 0.8 * (1 - exp(-(double)i / 150)),
					       .loss = 2.3 * exp(-(double)i / 200) + 0.3 };
	svg = plot_ok(rows, n, "many", "many.svg");
	assert_int_equal(polyline_points(svg, "acc"), n);
	assert_int_equal(count(svg, "class=\"pt "), 0); /* too many to mark */
	assert_non_null(strstr(svg, ">200</text>"));
	assert_non_null(strstr(svg, ">800</text>"));
	assert_null(strstr(svg, ">100</text>"));
	assert_null(strstr(svg, ">250</text>"));
	assert_non_null(strstr(svg, ">0%</text>"));
	assert_non_null(strstr(svg, ">100%</text>"));
	free(svg);
	free(rows);
}

/* Figures no parser would return still draw: rounds past 2^53, out-of-range and huge values. */
static void test_plot_extremes(void **state)
{
	tally_metrics_row rows[3] = {
		{ .round = (1ull << 62) + 1, .applied = true, .has_test = true, .accuracy = 1e300,
		  .loss = 1e308, .train_accuracy = NAN, .train_loss = NAN },
		{ .round = (1ull << 62) + 2, .applied = true, .has_test = true, .accuracy = -3,
		  .loss = -1e308, .train_accuracy = NAN, .train_loss = NAN },
		{ .round = UINT64_MAX, .applied = false, .has_test = true, .accuracy = NAN,
		  .loss = 5e-324, .train_accuracy = NAN, .train_loss = NAN },
	};
	char *svg = plot_ok(rows, 1, "huge round", "huge1.svg");

	assert_non_null(strstr(svg, ">100.0%</text>"));
	free(svg);
	svg = plot_ok(rows, 3, "extremes", "huge3.svg");
	assert_int_equal(count(svg, "class=\"pt acc"), 3);
	free(svg);
}

/* Bytes that are not XML text must not break the document. */
static void test_plot_hostile_title(void **state)
{
	tally_metrics_row row = { .round = 3, .applied = true, .has_test = true, .accuracy = 0.5,
				  .loss = 1 };
	char *svg = plot_ok(&row, 1, "bad \xff\xfe \x01 ]]> \xed\xa0\x80 caf\xc3\xa9 \xe2\x82", "t.svg");

	assert_non_null(strstr(svg, "caf\xc3\xa9"));
	assert_non_null(strstr(svg, "\xef\xbf\xbd"));
	free(svg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_sample),
		cmocka_unit_test(test_parse_orders_and_dedupes),
		cmocka_unit_test(test_parse_empty),
		cmocka_unit_test(test_parse_rejects),
		cmocka_unit_test(test_parse_rejects_nul),
		cmocka_unit_test(test_parse_row_limit),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_plot_run),
		cmocka_unit_test(test_plot_one_round),
		cmocka_unit_test(test_plot_no_rows),
		cmocka_unit_test(test_plot_equal_values),
		cmocka_unit_test(test_plot_train_only),
		cmocka_unit_test(test_plot_no_figures),
		cmocka_unit_test(test_plot_many_rounds),
		cmocka_unit_test(test_plot_extremes),
		cmocka_unit_test(test_plot_hostile_title),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
