/*
 * Unit tests for schema-driven configuration: defaults, TOML files over them (unknown keys, wrong
 * types and out-of-range values each refused with file:line), flags in every accepted spelling
 * and every refused one, flags over the file, finding --config, and the --help text.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tally/config.h"
#include "tally/error.h"

typedef struct test_cfg {
	char name[16];
	int64_t count;
	double rate;
	bool verbose;
	char bind[32];
	int64_t port;
} test_cfg;

#define F(k, fl, t, m, sz, lo, hi, d, h) {k, fl, t, offsetof(test_cfg, m), sz, lo, hi, d, h}
static const tally_cfg_field schema[] = {
	F("name", "name", TALLY_CFG_STRING, name, 16, 0, 0, "tally", "display name"),
	F("count", "count", TALLY_CFG_INT, count, 0, 1, 100, "10", "number of rounds"),
	F("train.rate", "rate", TALLY_CFG_DOUBLE, rate, 0, 0, 1, "0.25", "learning rate"),
	F("verbose", "verbose", TALLY_CFG_BOOL, verbose, 0, 0, 0, "false", "log every message"),
	F("net.bind", NULL, TALLY_CFG_STRING, bind, 32, 0, 0, "", "address to bind"),
	F("net.port", "port", TALLY_CFG_INT, port, 0, -5, 65535, "5555", "port number"),
};
#define N_SCHEMA (sizeof(schema) / sizeof(schema[0]))

typedef struct fixture {
	char dir[64];
	char path[128];
	test_cfg cfg;
} fixture;

static int setup(void **state)
{
	fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/tally-test-config.XXXXXX");
	if (!mkdtemp(fx->dir)) {
		free(fx);
		return -1;
	}
	snprintf(fx->path, sizeof(fx->path), "%s/t.toml", fx->dir);
	memset(&fx->cfg, 0x5a, sizeof(fx->cfg));
	if (tally_cfg_defaults(schema, N_SCHEMA, &fx->cfg) != 0)
		return -1;
	*state = fx;
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int teardown(void **state)
{
	fixture *fx = *state;

	nftw(fx->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

static void write_toml(fixture *fx, const char *text)
{
	FILE *f = fopen(fx->path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* A file that must be refused with TALLY_ECONFIG and a message "PATH:line: ..." containing n1
 * and n2 (each may be NULL). */
typedef struct bad_file {
	const char *text;
	int line;
	const char *n1, *n2;
} bad_file;

/* Tries every case, reporting each mismatch, and fails at the end if any did not match. */
static void expect_file_errors(fixture *fx, const bad_file *c, size_t n)
{
	int failures = 0;

	for (size_t i = 0; i < n; i++) {
		char where[160];
		int rc;

		write_toml(fx, c[i].text);
		tally_err_clear();
		rc = tally_cfg_load_file(schema, N_SCHEMA, &fx->cfg, fx->path);
		snprintf(where, sizeof(where), "%s:%d:", fx->path, c[i].line);
		if (rc != TALLY_ECONFIG || strncmp(tally_errmsg(), where, strlen(where)) != 0 ||
		    (c[i].n1 && !strstr(tally_errmsg(), c[i].n1)) || (c[i].n2 && !strstr(tally_errmsg(), c[i].n2))) {
			print_error("file '%s': got %d '%s'; wanted %d '%s ...%s...%s'\n", c[i].text, rc,
				    tally_errmsg(), TALLY_ECONFIG, where, c[i].n1 ? c[i].n1 : "", c[i].n2 ? c[i].n2 : "");
			failures++;
		}
	}
	if (failures)
		fail_msg("%d of %zu bad files were not refused as they should be", failures, n);
}

#define EXPECT_FILE_ERRORS(fx, ...)                                                                \
	do {                                                                                        \
		const bad_file cases_[] = {__VA_ARGS__};                                            \
		expect_file_errors(fx, cases_, sizeof(cases_) / sizeof(cases_[0]));                 \
	} while (0)

static int apply(fixture *fx, int argc, char **argv, int *rest)
{
	tally_err_clear();
	return tally_cfg_apply_flags(schema, N_SCHEMA, &fx->cfg, argc, argv, 1, rest);
}

static void expect_flag_error(fixture *fx, int argc, char **argv, const char *needle)
{
	int rest = -1, rc = apply(fx, argc, argv, &rest);

	if (rc != TALLY_ECONFIG || !strstr(tally_errmsg(), needle))
		fail_msg("flags %s ...: got %d '%s'; wanted %d naming '%s'", argv[1], rc, tally_errmsg(),
			 TALLY_ECONFIG, needle);
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
	fixture *fx = *state;

	assert_string_equal(fx->cfg.name, "tally");
	assert_int_equal(fx->cfg.count, 10);
	assert_true(fx->cfg.rate == 0.25);
	assert_false(fx->cfg.verbose);
	assert_string_equal(fx->cfg.bind, "");
	assert_int_equal(fx->cfg.port, 5555);
}

static void test_bad_default_is_refused(void **state)
{
	fixture *fx = *state;
	tally_cfg_field bad[2] = {schema[1], schema[0]};

	bad[0].def = "1000"; /* outside 1..100 */
	assert_int_equal(tally_cfg_defaults(bad, 2, &fx->cfg), TALLY_ECONFIG);
	assert_non_null(strstr(tally_errmsg(), "count"));
	bad[0] = schema[1];
	bad[1].def = "a name far too long for sixteen";
	assert_int_equal(tally_cfg_defaults(bad, 2, &fx->cfg), TALLY_ECONFIG);
	assert_non_null(strstr(tally_errmsg(), "name"));
	bad[1] = schema[3];
	bad[1].def = "yes";
	assert_int_equal(tally_cfg_defaults(bad, 2, &fx->cfg), TALLY_ECONFIG);
	assert_non_null(strstr(tally_errmsg(), "verbose"));
}

/* ---- files ---- */

static void test_load_file(void **state)
{
	fixture *fx = *state;

	write_toml(fx, "# a test file\n"
		       "name = \"node-7\"\n"
		       "count = 42\n"
		       "verbose = true\n"
		       "[train]\n"
		       "rate = 0.5\n"
		       "[net]\n"
		       "bind = 'tcp://*:1'\n"
		       "port = -5\n");
	assert_int_equal(tally_cfg_load_file(schema, N_SCHEMA, &fx->cfg, fx->path), 0);
	assert_string_equal(fx->cfg.name, "node-7");
	assert_int_equal(fx->cfg.count, 42);
	assert_true(fx->cfg.rate == 0.5);
	assert_true(fx->cfg.verbose);
	assert_string_equal(fx->cfg.bind, "tcp://*:1");
	assert_int_equal(fx->cfg.port, -5);

	/* keys a file leaves out keep what they had; an integer is a fine double; dotted keys work */
	write_toml(fx, "train.rate = 1\ncount = 100\n");
	assert_int_equal(tally_cfg_load_file(schema, N_SCHEMA, &fx->cfg, fx->path), 0);
	assert_true(fx->cfg.rate == 1.0);
	assert_int_equal(fx->cfg.count, 100);
	assert_string_equal(fx->cfg.name, "node-7");
	assert_int_equal(fx->cfg.port, -5);
	/* an empty file changes nothing */
	write_toml(fx, "");
	assert_int_equal(tally_cfg_load_file(schema, N_SCHEMA, &fx->cfg, fx->path), 0);
	assert_int_equal(fx->cfg.count, 100);
}

static void test_file_unknown_key(void **state)
{
	EXPECT_FILE_ERRORS(*state,
		{"count = 3\n\nmystery = 1\n", 3, "unknown key", "mystery"},
		/* a known key in the wrong table is unknown too */
		{"count = 3\n[net]\nrate = 0.5\n", 3, "unknown key", "net.rate"},
		{"[train]\nrate = 0.5\n[train.deep]\nx = 1\n", 4, "unknown key", "train.deep.x"});
}

static void test_file_wrong_type(void **state)
{
	EXPECT_FILE_ERRORS(*state,
		{"name = \"x\"\ncount = \"five\"\n", 2, "count", "integer"},
		{"count = 2.5\n", 1, "count", "integer"},
		{"name = 5\n", 1, "name", "string"},
		{"\n\nverbose = 1\n", 3, "verbose", "boolean"},
		{"[train]\nrate = \"fast\"\n", 2, "train.rate", "number"},
		{"count = [1, 2]\n", 1, "count", NULL});
}

static void test_file_out_of_range(void **state)
{
	fixture *fx = *state;

	EXPECT_FILE_ERRORS(fx,
		{"name = \"ok\"\ncount = 101\n", 2, "count", "outside"},
		{"count = 0\n", 1, "count", "outside"},
		{"[net]\nport = 65536\n", 2, "net.port", "outside"},
		{"train.rate = 1.0000001\n", 1, "train.rate", "outside"},
		{"train.rate = -0.1\n", 1, "train.rate", NULL},
		{"train.rate = nan\n", 1, "train.rate", "finite"},
		{"train.rate = inf\n", 1, "train.rate", "finite"},
		{"name = \"sixteen chars!!!\"\n", 1, "name", "longer"},
		/* a document that does not parse is a configuration error naming file and line */
		{"count = 3\ncount = = 4\n", 2, NULL, NULL});
	/* a missing file is not found */
	assert_int_equal(tally_cfg_load_file(schema, N_SCHEMA, &fx->cfg, "/nonexistent/tally.toml"),
			 TALLY_ENOENT);
	assert_non_null(strstr(tally_errmsg(), "/nonexistent/tally.toml"));
}

/* ---- flags ---- */

static void test_flags_accepted_spellings(void **state)
{
	fixture *fx = *state;
	char *argv[] = {"prog", "--count", "3", "--rate=0.75", "--verbose", "--name=a=b", "--port", "-5",
			"run", "--count", "7"};
	int rest = -1;

	assert_int_equal(apply(fx, 11, argv, &rest), 0);
	assert_int_equal(fx->cfg.count, 3);
	assert_true(fx->cfg.rate == 0.75);
	assert_true(fx->cfg.verbose);
	assert_string_equal(fx->cfg.name, "a=b");
	assert_int_equal(fx->cfg.port, -5);
	assert_int_equal(rest, 8); /* "run"; what follows is not read */

	{
		char *a2[] = {"prog", "--count=4", "--no-verbose"};

		assert_int_equal(apply(fx, 3, a2, &rest), 0);
		assert_int_equal(fx->cfg.count, 4);
		assert_false(fx->cfg.verbose);
		assert_int_equal(rest, 3);
	}
	{
		char *a3[] = {"prog", "--verbose=true", "--name", "", "--", "--count", "9"};

		assert_int_equal(apply(fx, 7, a3, &rest), 0);
		assert_true(fx->cfg.verbose);
		assert_string_equal(fx->cfg.name, "");
		assert_int_equal(rest, 4);
		assert_int_equal(fx->cfg.count, 4);
	}
	{
		char *a4[] = {"prog", "--verbose=false", "--config", "x.toml", "--config=y.toml", "--count", "5"};

		assert_int_equal(apply(fx, 7, a4, &rest), 0);
		assert_false(fx->cfg.verbose);
		assert_int_equal(fx->cfg.count, 5);
		assert_int_equal(rest, 7);
	}
}

static void test_flags_refused(void **state)
{
	fixture *fx = *state;
	char *unknown[] = {"prog", "--bogus", "1"};
	char *unknown_eq[] = {"prog", "--bogus=1"};
	char *file_only[] = {"prog", "--bind", "x"};
	char *no_int[] = {"prog", "--no-count"};
	char *missing[] = {"prog", "--count"};
	char *missing_str[] = {"prog", "--count=7", "--name"};
	char *not_int[] = {"prog", "--count", "3x"};
	char *empty_int[] = {"prog", "--count="};
	char *range[] = {"prog", "--count", "101"};
	char *not_num[] = {"prog", "--rate", "fast"};
	char *not_finite[] = {"prog", "--rate=nan"};
	char *not_bool[] = {"prog", "--verbose=yes"};
	char *too_long[] = {"prog", "--name", "sixteen chars!!!"};
	char *prefix[] = {"prog", "--configx", "1"};

	expect_flag_error(fx, 3, unknown, "--bogus");
	expect_flag_error(fx, 2, unknown_eq, "--bogus");
	assert_null(strstr(tally_errmsg(), "=1"));
	expect_flag_error(fx, 3, file_only, "--bind");
	expect_flag_error(fx, 2, no_int, "--no-count");
	expect_flag_error(fx, 2, missing, "--count needs a value");
	expect_flag_error(fx, 3, missing_str, "--name needs a value");
	expect_flag_error(fx, 3, not_int, "--count");
	expect_flag_error(fx, 2, empty_int, "--count");
	expect_flag_error(fx, 3, range, "--count");
	assert_non_null(strstr(tally_errmsg(), "outside"));
	expect_flag_error(fx, 3, not_num, "--rate");
	expect_flag_error(fx, 2, not_finite, "--rate");
	expect_flag_error(fx, 2, not_bool, "--verbose");
	expect_flag_error(fx, 3, too_long, "--name");
	expect_flag_error(fx, 3, prefix, "--configx");
	assert_string_equal(fx->cfg.name, "tally");
	assert_true(fx->cfg.rate == 0.25);
	assert_false(fx->cfg.verbose);
}

/* --no-verbose=true must not switch verbose on: refuse it, or treat it as negated. */
static void test_negated_flag_with_value(void **state)
{
	fixture *fx = *state;
	char *argv[] = {"prog", "--no-verbose=true"};
	int rest = -1, rc = apply(fx, 2, argv, &rest);

	if (rc == 0 && fx->cfg.verbose)
		fail_msg("--no-verbose=true was accepted and set verbose to true");
}

/* A trailing "--config" without its path must not push *rest past argc. */
static void test_trailing_config_flag(void **state)
{
	fixture *fx = *state;
	char *argv[] = {"prog", "--count", "2", "--config", NULL};
	int rest = -1, rc = apply(fx, 4, argv, &rest);

	if (rc == 0 && (rest < 1 || rest > 4))
		fail_msg("flags ending in --config gave rest = %d with argc = 4", rest);
	assert_true(rc == 0 || rc == TALLY_ECONFIG);
}

static void test_flags_override_file(void **state)
{
	fixture *fx = *state;
	char *argv[] = {"prog", "--config", "ignored", "--count", "99", "--no-verbose", "--rate=0.125"};
	int rest = -1;

	write_toml(fx, "count = 7\nname = \"from-file\"\nverbose = true\ntrain.rate = 0.5\n");
	assert_int_equal(tally_cfg_load_file(schema, N_SCHEMA, &fx->cfg, fx->path), 0);
	assert_int_equal(apply(fx, 7, argv, &rest), 0);
	assert_int_equal(rest, 7);
	assert_int_equal(fx->cfg.count, 99);
	assert_false(fx->cfg.verbose);
	assert_true(fx->cfg.rate == 0.125);
	assert_string_equal(fx->cfg.name, "from-file");
	assert_int_equal(fx->cfg.port, 5555);
}

static void test_find_config(void **state)
{
	char *none[] = {"prog", "--count", "3", "run"};
	char *sep[] = {"prog", "--count", "3", "--config", "a.toml"};
	char *eq[] = {"prog", "--config=b.toml", "--count", "3"};
	char *bare[] = {"prog", "--config"};
	char *prog_only[] = {"prog"};
	char *not_quite[] = {"prog", "--configs", "c.toml"};

	assert_null(tally_cfg_find_config(4, none));
	assert_string_equal(tally_cfg_find_config(5, sep), "a.toml");
	assert_string_equal(tally_cfg_find_config(4, eq), "b.toml");
	assert_string_equal(tally_cfg_find_config(2, bare), "");
	assert_null(tally_cfg_find_config(1, prog_only));
	assert_null(tally_cfg_find_config(3, not_quite));
	(void)state;
}

static void test_print_help(void **state)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	assert_non_null(out);
	tally_cfg_print_help(schema, N_SCHEMA, out);
	assert_int_equal(fclose(out), 0);
	for (size_t i = 0; i < N_SCHEMA; i++) {
		char flag[64];

		if (!schema[i].flag)
			continue;
		snprintf(flag, sizeof(flag), "--%s", schema[i].flag);
		if (!strstr(text, flag) || !strstr(text, schema[i].help) || !strstr(text, schema[i].key))
			fail_msg("help lacks %s, its help or its key:\n%s", flag, text);
	}
	assert_non_null(strstr(text, "--name TEXT"));
	assert_non_null(strstr(text, "--count N"));
	assert_non_null(strstr(text, "--rate X"));
	assert_non_null(strstr(text, "default 5555"));
	assert_non_null(strstr(text, "default 0.25"));
	assert_null(strstr(text, "--bind")); /* file-only keys have no flag */
	free(text);
	(void)state;
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_defaults),
		T(test_bad_default_is_refused),
		T(test_load_file),
		T(test_file_unknown_key),
		T(test_file_wrong_type),
		T(test_file_out_of_range),
		T(test_flags_accepted_spellings),
		T(test_flags_refused),
		T(test_negated_flag_with_value),
		T(test_trailing_config_flag),
		T(test_flags_override_file),
		T(test_find_config),
		T(test_print_help),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
