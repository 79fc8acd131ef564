/*
 * Unit tests for the TOML-subset reader: values of every supported type, table and dotted-key
 * rules, every class of rejection (each message must name file:line), the hard limits, the typed
 * getters and their errors, and a cross-check against Python's tomllib through the reference
 * answers committed in tests/data/toml/ (see generate.py there).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tally/error.h"
#include "tally/toml.h"

/* Parses a NUL-terminated document named "t.toml", which must succeed. */
static tally_toml *parse_ok(const char *doc)
{
	tally_toml *t = NULL;
	int rc = tally_toml_parse(&t, doc, strlen(doc), "t.toml");

	if (rc)
		fail_msg("parse failed (%d): %s\n--- document:\n%s", rc, tally_errmsg(), doc);
	return t;
}

/* Parses len bytes of doc as "t.toml", which must fail with code on line, naming needle. */
static void expect_reject_len(const char *doc, size_t len, int code, int line, const char *needle)
{
	tally_toml *t = NULL;
	char prefix[64];
	int rc;

	tally_err_clear();
	rc = tally_toml_parse(&t, doc, len, "t.toml");
	snprintf(prefix, sizeof(prefix), "t.toml:%d: ", line);
	if (rc != code || strncmp(tally_errmsg(), prefix, strlen(prefix)) || !strstr(tally_errmsg(), needle))
		fail_msg("document %.60s...: got rc %d and '%s'; wanted rc %d and '%s...%s'", doc, rc,
			 tally_errmsg(), code, prefix, needle);
	assert_null(t);
}

static void expect_reject(const char *doc, int line, const char *needle)
{
	expect_reject_len(doc, strlen(doc), TALLY_EFORMAT, line, needle);
}

/* ---- valid documents ---- */

static void test_scalars_and_tables(void **state)
{
	tally_toml *t = parse_ok("# header\n"
				 "name = \"tally\"\n"
				 "rounds = 50\n"
				 "\n"
				 "[coordinator]\n"
				 "bind = 'tcp://*:5555'\n"
				 "lr = 0.5\n"
				 "secure = true\n"
				 "[coordinator.model]\n"
				 "seed = -7\n");
	const char *s;
	int64_t i;
	double d;
	bool b;

	assert_int_equal(tally_toml_count(t), 6);
	assert_string_equal(tally_toml_key(t, 0), "name");
	assert_string_equal(tally_toml_key(t, 2), "coordinator.bind");
	assert_string_equal(tally_toml_key(t, 5), "coordinator.model.seed");
	assert_int_equal(tally_toml_type_of(t, 0), TALLY_TOML_STRING);
	assert_int_equal(tally_toml_type_of(t, 1), TALLY_TOML_INT);
	assert_int_equal(tally_toml_type_of(t, 3), TALLY_TOML_FLOAT);
	assert_int_equal(tally_toml_type_of(t, 4), TALLY_TOML_BOOL);
	assert_int_equal(tally_toml_line(t, 0), 2);
	assert_int_equal(tally_toml_line(t, 2), 6);
	assert_int_equal(tally_toml_line(t, 5), 10);
	assert_string_equal(tally_toml_filename(t), "t.toml");
	assert_int_equal(tally_toml_find(t, "coordinator.lr"), 3);
	assert_int_equal(tally_toml_find(t, "coordinator"), -1);
	assert_int_equal(tally_toml_find(t, "lr"), -1);
	assert_int_equal(tally_toml_get_string(t, "coordinator.bind", &s), 0);
	assert_string_equal(s, "tcp://*:5555");
	assert_int_equal(tally_toml_get_int(t, "coordinator.model.seed", &i), 0);
	assert_int_equal(i, -7);
	assert_int_equal(tally_toml_get_double(t, "coordinator.lr", &d), 0);
	assert_true(d == 0.5);
	assert_int_equal(tally_toml_get_double(t, "rounds", &d), 0);
	assert_true(d == 50.0);
	assert_int_equal(tally_toml_get_bool(t, "coordinator.secure", &b), 0);
	assert_true(b);
	tally_toml_destroy(&t);
	assert_null(t);
}

static void test_strings(void **state)
{
	tally_toml *t = parse_ok("a = \"q\\\"b\\\\n\\n t\\t r\\r \\b\\f\"\n"
				 "u = \"\\u00e9\\u20AC\\U0001F600\"\n"
				 "l = 'C:\\no\\escape \"x\"'\n"
				 "e = \"\"\n"
				 "tab = \"a\tb\"\n"
				 "utf8 = \"ünï ✓\"\n"
				 "\"quoted key\" = 1\n"
				 "'lit key' = 2\n");
	const char *s;

	assert_int_equal(tally_toml_get_string(t, "a", &s), 0);
	assert_string_equal(s, "q\"b\\n\n t\t r\r \b\f");
	assert_int_equal(tally_toml_get_string(t, "u", &s), 0);
	assert_string_equal(s, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	assert_int_equal(tally_toml_get_string(t, "l", &s), 0);
	assert_string_equal(s, "C:\\no\\escape \"x\"");
	assert_int_equal(tally_toml_get_string(t, "e", &s), 0);
	assert_string_equal(s, "");
	assert_int_equal(tally_toml_get_string(t, "tab", &s), 0);
	assert_string_equal(s, "a\tb");
	assert_int_equal(tally_toml_get_string(t, "utf8", &s), 0);
	assert_string_equal(s, "ünï ✓");
	assert_int_not_equal(tally_toml_find(t, "quoted key"), -1);
	assert_int_not_equal(tally_toml_find(t, "lit key"), -1);
	tally_toml_destroy(&t);
}

static void test_integers(void **state)
{
	static const struct { const char *text; int64_t want; } cases[] = {
		{ "0", 0 }, { "+0", 0 }, { "-0", 0 }, { "42", 42 }, { "-17", -17 }, { "+99", 99 },
		{ "1_000_000", 1000000 }, { "9223372036854775807", INT64_MAX },
		{ "-9223372036854775808", INT64_MIN }, { "0xDEAD_beef", 0xdeadbeef },
		{ "0x7fffffffffffffff", INT64_MAX }, { "0o755", 0755 }, { "0b1101", 13 }, { "0x00ff", 255 },
	};

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		char doc[128];
		tally_toml *t;
		int64_t v = 12345;

		snprintf(doc, sizeof(doc), "v = %s\n", cases[k].text);
		t = parse_ok(doc);
		assert_int_equal(tally_toml_type_of(t, 0), TALLY_TOML_INT);
		assert_int_equal(tally_toml_get_int(t, "v", &v), 0);
		assert_true(v == cases[k].want);
		tally_toml_destroy(&t);
	}
}

static void test_floats(void **state)
{
	static const struct { const char *text; double want; } cases[] = {
		{ "1.5", 1.5 }, { "-2e-3", -2e-3 }, { "1_000.5", 1000.5 }, { "1e+05", 1e5 },
		{ "6.626E-34", 6.626e-34 }, { "0e5", 0.0 }, { "+1.25", 1.25 }, { "1e007", 1e7 },
		{ "inf", INFINITY }, { "+inf", INFINITY }, { "-inf", -INFINITY },
		{ "1.7976931348623157e308", 1.7976931348623157e308 }, { "5e-324", 5e-324 },
	};
	tally_toml *t;
	double d = 0;

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		char doc[128];

		snprintf(doc, sizeof(doc), "v = %s\n", cases[k].text);
		t = parse_ok(doc);
		assert_int_equal(tally_toml_type_of(t, 0), TALLY_TOML_FLOAT);
		assert_int_equal(tally_toml_get_double(t, "v", &d), 0);
		assert_true(d == cases[k].want);
		tally_toml_destroy(&t);
	}
	t = parse_ok("a = nan\nb = -nan\nc = -0.0\n");
	assert_int_equal(tally_toml_get_double(t, "a", &d), 0);
	assert_true(isnan(d));
	assert_int_equal(tally_toml_get_double(t, "b", &d), 0);
	assert_true(isnan(d));
	assert_int_equal(tally_toml_get_double(t, "c", &d), 0);
	assert_true(d == 0.0 && signbit(d));
	tally_toml_destroy(&t);
}

static void test_arrays(void **state)
{
	tally_toml *t = parse_ok("ints = [1, 2, 3,]\n"
				 "empty = []\n"
				 "multi = [\n"
				 "  \"a\",  # first\n"
				 "  # comment line\n"
				 "\n"
				 "  'b'\n"
				 "  , \"c\"\n"
				 "]\n"
				 "mixed = [1, 2.5, true, \"s\"]\n"
				 "after = 1\n");
	const char *s;
	int64_t i;
	double d;
	bool b;
	size_t n;

	assert_int_equal(tally_toml_type_of(t, 0), TALLY_TOML_ARRAY);
	assert_int_equal(tally_toml_array_len(t, "ints", &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(tally_toml_get_int_at(t, "ints", 2, &i), 0);
	assert_int_equal(i, 3);
	assert_int_equal(tally_toml_get_int_at(t, "ints", 3, &i), TALLY_ENOENT);
	assert_int_equal(tally_toml_array_len(t, "empty", &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(tally_toml_get_int_at(t, "empty", 0, &i), TALLY_ENOENT);
	assert_int_equal(tally_toml_array_len(t, "multi", &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(tally_toml_get_string_at(t, "multi", 1, &s), 0);
	assert_string_equal(s, "b");
	assert_int_equal(tally_toml_line(t, 2), 3);
	assert_int_equal(tally_toml_get_double_at(t, "mixed", 0, &d), 0);
	assert_true(d == 1.0);
	assert_int_equal(tally_toml_get_double_at(t, "mixed", 1, &d), 0);
	assert_true(d == 2.5);
	assert_int_equal(tally_toml_get_bool_at(t, "mixed", 2, &b), 0);
	assert_true(b);
	assert_int_equal(tally_toml_get_string_at(t, "mixed", 3, &s), 0);
	assert_string_equal(s, "s");
	assert_int_equal(tally_toml_line(t, 4), 11);
	tally_toml_destroy(&t);
}

static void test_dotted_keys_and_tables(void **state)
{
	tally_toml *t = parse_ok("a.b = 1\n"
				 "a . c = 2\n"
				 "[x]\n"
				 "y.z = 3\n"
				 "[x.y.w]\n"        /* a sub-table of a dotted-key table is allowed */
				 "v = 4\n"
				 "[p.q.r]\n"
				 "[p]\n"
				 "q.s = 5\n"        /* p.q was only implicit, so dotted keys may extend it */
				 "[ \"sp\" . 'ace' ]\n"
				 "k = 6\n");
	static const char *const keys[] = { "a.b", "a.c", "x.y.z", "x.y.w.v", "p.q.s", "sp.ace.k" };

	assert_int_equal(tally_toml_count(t), 6);
	for (size_t i = 0; i < 6; i++) {
		assert_string_equal(tally_toml_key(t, i), keys[i]);
		assert_int_equal(tally_toml_find(t, keys[i]), (int)i);
	}
	tally_toml_destroy(&t);
}

static void test_crlf_and_unterminated_buffer(void **state)
{
	const char *doc = "a = 1\r\n# c\r\n[t]\r\nb = [\r\n 2,\r\n]\r\nc = 'x' # y\r\n";
	const char *bounded = "v = 12345";
	tally_toml *t = parse_ok(doc);
	int64_t i;

	assert_int_equal(tally_toml_count(t), 3);
	assert_int_equal(tally_toml_line(t, 2), 7);
	tally_toml_destroy(&t);
	/* len, not the NUL, ends the document */
	assert_int_equal(tally_toml_parse(&t, bounded, 5, NULL), 0);
	assert_int_equal(tally_toml_get_int(t, "v", &i), 0);
	assert_int_equal(i, 1);
	assert_string_equal(tally_toml_filename(t), "<string>");
	tally_toml_destroy(&t);
	assert_int_equal(tally_toml_parse(&t, "", 0, NULL), 0);
	assert_int_equal(tally_toml_count(t), 0);
	tally_toml_destroy(&t);
	tally_toml_destroy(&t);
	tally_toml_destroy(NULL);
}

/* ---- rejections ---- */

static void test_syntax_errors(void **state)
{
	static const struct { const char *doc; int line; const char *needle; } cases[] = {
		{ "a = 1\nb = \"x\\qy\"\n", 2, "invalid escape" },
		{ "a = \"\\u12\"\n", 1, "needs 4 hex digits" },
		{ "a = \"\\U0011ffff\"\n", 1, "not a Unicode scalar value" },
		{ "a = \"\\ud800\"\n", 1, "not a Unicode scalar value" },
		{ "a = \"x\x01y\"\n", 1, "control character byte 0x01 in string" },
		{ "a = 'x\x1fy'\n", 1, "control character" },
		{ "\n\na = \"abc\nb = 1\n", 3, "unterminated string" },
		{ "a = 'abc", 1, "unterminated string" },
		{ "a = 007\n", 1, "invalid integer '007'" },
		{ "a = 1__0\n", 1, "invalid integer" },
		{ "a = 10_\n", 1, "invalid integer" },
		{ "a = +0x10\n", 1, "invalid integer" },
		{ "a = 0X10\n", 1, "invalid integer" },
		{ "a = 0b102\n", 1, "invalid integer" },
		{ "a = 9223372036854775808\n", 1, "out of the 64-bit range" },
		{ "a = -9223372036854775809\n", 1, "out of the 64-bit range" },
		{ "a = 0x8000000000000000\n", 1, "out of the 64-bit range" },
		{ "a = 1.\n", 1, "invalid float '1.'" },
		{ "a = .5\n", 1, "invalid float" },
		{ "a = 1e\n", 1, "invalid float" },
		{ "a = 03.5\n", 1, "invalid float" },
		{ "a = 1_.5\n", 1, "invalid float" },
		{ "a = 1e400\n", 1, "out of range" },
		{ "a = hello\n", 1, "strings must be quoted" },
		{ "a = True\n", 1, "strings must be quoted" },
		{ "a =\n", 1, "expected a value, found end of line" },
		{ "a = 1\nb 1\n", 2, "expected '=' after key 'b'" },
		{ "= 1\n", 1, "expected a key, found '='" },
		{ "a = 1 2\n", 1, "expected end of line after value, found '2'" },
		{ "[a] b = 1\n", 1, "expected end of line after table header" },
		{ "[a\n", 1, "expected ']'" },
		{ "[]\n", 1, "expected a key" },
		{ "a. = 1\n", 1, "expected a key" },
		{ "x = 1\na = [1,\n2\n", 4, "unterminated array (opened on line 2)" },
		{ "a = [\n1\n2]\n", 3, "expected ',' or ']'" },
		{ "a = [1,,2]\n", 1, "expected a value, found ','" },
		{ "a = 1\rb = 2\n", 1, "a carriage return" },
		{ "a = 1\n# x \x07 y\n", 2, "control character byte 0x07 in a comment" },
		{ "a = 1\n\nb = \"\xff\"\n", 3, "invalid UTF-8" },
		{ "a = \"\xc0\xaf\"\n", 1, "invalid UTF-8" },
		{ "a = \"\xed\xa0\x80\"\n", 1, "invalid UTF-8" },
		{ "a = \"\xe2\x82\"\n", 1, "invalid UTF-8" },
		{ "\xef\xbb\xbf" "a = 1\n", 1, "expected a key, found byte 0xef" },
	};

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
		expect_reject(cases[k].doc, cases[k].line, cases[k].needle);
	expect_reject_len("a = 1\n# \0\n", 10, TALLY_EFORMAT, 2, "control character byte 0x00");
	expect_reject_len("a = 1\0\n", 7, TALLY_EFORMAT, 1, "expected end of line after value, found byte 0x00");
	expect_reject_len("a = \"\0\"\n", 8, TALLY_EFORMAT, 1, "control character byte 0x00");
}

static void test_redefinitions(void **state)
{
	static const struct { const char *doc; int line; const char *needle; } cases[] = {
		{ "a = 1\nb = 2\na = 3\n", 3, "duplicate key 'a' (first defined on line 1)" },
		{ "a = 1\n\"a\" = 2\n", 2, "duplicate key 'a'" },
		{ "[t]\nx = 1\n[u]\n[t]\nx = 2\n", 4, "table [t] is defined twice (first on line 1)" },
		{ "[a.b]\n[a]\n[a]\n", 3, "table [a] is defined twice" },
		{ "a = 1\n[a]\n", 2, "cannot define table [a]: 'a' is already a value (line 1)" },
		{ "a = 1\n[a.b]\n", 2, "'a' is already a value" },
		{ "[a.b]\nx = 1\n[a]\nb = 2\n", 4, "key 'a.b' is already a table" },
		{ "a = 1\na.b = 2\n", 2, "cannot set 'a.b': 'a' is already a value (line 1)" },
		{ "a = [1]\na.b = 2\n", 2, "'a' is already a value" },
		{ "[a.b]\n[a]\nb.c = 1\n", 3, "table [a.b] was defined on line 1" },
		{ "a.b = 1\n[a]\n", 2, "table [a] was already defined by dotted keys on line 1" },
		{ "[x]\ny.z = 1\n[w]\n[x.y]\n", 4, "table [x.y] was already defined by dotted keys" },
		{ "a.b.c = 1\n[a.b]\n", 2, "already defined by dotted keys" },
		{ "[x]\ny.z = 1\n[w]\n[x]\ny.q = 2\n", 4, "table [x] is defined twice" },
	};

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
		expect_reject(cases[k].doc, cases[k].line, cases[k].needle);
}

static void test_unsupported_features(void **state)
{
	static const struct { const char *doc; int line; const char *needle; } cases[] = {
		{ "a = 1\nb = { c = 1 }\n", 2, "inline tables are not supported" },
		{ "[[servers]]\nname = \"a\"\n", 1, "arrays of tables ([[...]]) are not supported" },
		{ "a = \"\"\"\nx\"\"\"\n", 1, "multi-line strings are not supported" },
		{ "a = '''x'''\n", 1, "multi-line strings are not supported" },
		{ "a = 1979-05-27\n", 1, "dates and times are not supported" },
		{ "a = 07:32:00\n", 1, "dates and times are not supported" },
		{ "a = 1979-05-27T07:32:00Z\n", 1, "dates and times are not supported" },
		{ "a = 1979-05-27 07:32:00\n", 1, "dates and times are not supported" },
		{ "a = [[1, 2], [3]]\n", 1, "nested arrays are not supported" },
		{ "a = [{ x = 1 }]\n", 1, "inline tables are not supported" },
		{ "a = \"x\\u0000y\"\n", 1, "NUL characters" },
		{ "\"a.b\" = 1\n", 1, "contains '.', which is not supported" },
		{ "\"\" = 1\n", 1, "empty keys are not supported" },
		{ "[a.\"\"]\n", 1, "empty keys are not supported" },
	};

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
		expect_reject(cases[k].doc, cases[k].line, cases[k].needle);
}

/* ---- limits ---- */

/* head, then n copies of unit with each '@' replaced by the copy's index, then tail. */
static char *build(const char *head, const char *unit, size_t n, const char *tail)
{
	size_t cap = strlen(head) + strlen(tail) + n * (strlen(unit) + 24) + 1, len;
	char *s = malloc(cap);

	assert_non_null(s);
	strcpy(s, head);
	len = strlen(head);
	for (size_t i = 0; i < n; i++)
		for (const char *u = unit; *u; u++)
			len += *u == '@' ? (size_t)sprintf(s + len, "%zu", i) : (size_t)(s[len] = *u, 1);
	strcpy(s + len, tail);
	return s;
}

/* Parses doc (then frees it): it must succeed, or fail with TALLY_ETOOBIG on line. */
static void expect_limit(char *doc, bool ok, int line, const char *needle)
{
	tally_toml *t = NULL;

	if (ok) {
		t = parse_ok(doc);
		tally_toml_destroy(&t);
	} else {
		expect_reject_len(doc, strlen(doc), TALLY_ETOOBIG, line, needle);
	}
	free(doc);
}

static void test_limits(void **state)
{
	char key[TALLY_TOML_MAX_KEY_LEN + 1], doc[600];
	tally_toml *t = NULL;
	char *big;

	expect_limit(build("", "k@ = @\n", 4096, ""), true, 0, NULL);
	expect_limit(build("", "k@ = @\n", 4097, ""), false, 4097, "more than 4096 keys");
	expect_limit(build("", "[t@]\n#\n", 4096, ""), true, 0, NULL);
	expect_limit(build("", "[t@]\n#\n", 4097, ""), false, 8193, "more than 4096 tables");
	expect_limit(build("a = [", "@,", 65536, "]\n"), true, 0, NULL);
	expect_limit(build("a = [", "@,", 65537, "]\n"), false, 1, "more than 65536 elements");
	expect_limit(build("a = \"", "x", 65536, "\"\n"), true, 0, NULL);
	expect_limit(build("a = \"", "x", 65537, "\"\n"), false, 1, "65537 bytes is over the limit");
	/* the limit is on the decoded string: 65536 escapes decode to 65536 bytes */
	expect_limit(build("a = \"", "\\t", 65536, "\"\n"), true, 0, NULL);
	expect_limit(build("", "k", 256, " = 1\n"), true, 0, NULL);
	expect_limit(build("", "k", 257, " = 1\n"), false, 1, "key is longer than 256 bytes");
	/* the limit is on the full dotted key: header + '.' + key */
	memset(key, 'k', sizeof(key));
	key[200] = '\0';
	snprintf(doc, sizeof(doc), "\n[%s]\n%.55s = 1\n", key, key);
	expect_limit(strdup(doc), true, 0, NULL);
	snprintf(doc, sizeof(doc), "\n[%s]\n%.56s = 1\n", key, key);
	expect_limit(strdup(doc), false, 3, "key is longer than 256 bytes");
	big = build("", "#", TALLY_TOML_MAX_DOC + 1, "");
	assert_int_equal(tally_toml_parse(&t, big, TALLY_TOML_MAX_DOC, "t.toml"), 0);
	tally_toml_destroy(&t);
	assert_int_equal(tally_toml_parse(&t, big, TALLY_TOML_MAX_DOC + 1, "t.toml"), TALLY_ETOOBIG);
	assert_non_null(strstr(tally_errmsg(), "t.toml: 1048577 bytes is over the limit"));
	assert_null(t);
	free(big);
}

/* ---- getters ---- */

static void expect_config_error(int rc, const char *msg)
{
	assert_int_equal(rc, TALLY_ECONFIG);
	assert_string_equal(tally_errmsg(), msg);
}

static void test_getter_errors(void **state)
{
	tally_toml *t = parse_ok("s = \"x\"\n\ni = 3\nf = 1.5\nb = true\n[arr]\nv = [1, \"two\"]\n");
	const char *s = "unset";
	int64_t i = 77;
	double d = 7.0;
	bool b = false;
	size_t n = 9;

	tally_err_clear();
	assert_int_equal(tally_toml_get_int(t, "missing", &i), TALLY_ENOENT);
	assert_int_equal(tally_toml_get_string(t, "arr", &s), TALLY_ENOENT);
	assert_int_equal(tally_toml_array_len(t, "nope", &n), TALLY_ENOENT);
	assert_string_equal(tally_errmsg(), "");
	assert_true(i == 77 && n == 9 && !strcmp(s, "unset"));
	expect_config_error(tally_toml_get_int(t, "s", &i), "t.toml:1: key 's' must be an integer");
	expect_config_error(tally_toml_get_int(t, "f", &i), "t.toml:4: key 'f' must be an integer");
	expect_config_error(tally_toml_get_string(t, "i", &s), "t.toml:3: key 'i' must be a string");
	expect_config_error(tally_toml_get_double(t, "b", &d), "t.toml:5: key 'b' must be a number");
	expect_config_error(tally_toml_get_bool(t, "s", &b), "t.toml:1: key 's' must be a boolean");
	expect_config_error(tally_toml_get_int(t, "arr.v", &i), "t.toml:7: key 'arr.v' must be an integer");
	expect_config_error(tally_toml_array_len(t, "i", &n), "t.toml:3: key 'i' must be an array");
	expect_config_error(tally_toml_get_int_at(t, "i", 0, &i), "t.toml:3: key 'i' must be an array");
	expect_config_error(tally_toml_get_int_at(t, "arr.v", 1, &i),
			    "t.toml:7: key 'arr.v' element 1 must be an integer");
	expect_config_error(tally_toml_get_string_at(t, "arr.v", 0, &s),
			    "t.toml:7: key 'arr.v' element 0 must be a string");
	expect_config_error(tally_toml_get_double_at(t, "arr.v", 1, &d),
			    "t.toml:7: key 'arr.v' element 1 must be a number");
	expect_config_error(tally_toml_get_bool_at(t, "arr.v", 0, &b),
			    "t.toml:7: key 'arr.v' element 0 must be a boolean");
	assert_true(i == 77 && d == 7.0 && !b && n == 9 && !strcmp(s, "unset"));
	assert_int_equal(tally_toml_get_int_at(t, "arr.v", 0, &i), 0);
	assert_int_equal(i, 1);
	tally_toml_destroy(&t);
}

static void test_check_keys(void **state)
{
	static const char *const allowed[] = { "run_id", "coordinator.bind", "coordinator.rounds", NULL };
	static const char *const none[] = { NULL };
	tally_toml *t = parse_ok("run_id = \"r\"\n[coordinator]\nbind = \"x\"\n\nrond = 3\nrounds = 2\n");
	tally_toml *ok = parse_ok("[coordinator]\nrounds = 1\n");
	tally_toml *empty = parse_ok("[coordinator]\n");

	expect_config_error(tally_toml_check_keys(t, allowed), "t.toml:5: unknown key 'coordinator.rond'");
	assert_int_equal(tally_toml_check_keys(ok, allowed), 0);
	expect_config_error(tally_toml_check_keys(ok, none), "t.toml:2: unknown key 'coordinator.rounds'");
	assert_int_equal(tally_toml_check_keys(empty, none), 0);
	tally_toml_destroy(&t);
	tally_toml_destroy(&ok);
	tally_toml_destroy(&empty);
}

static void test_load(void **state)
{
	char dir[] = "/tmp/tally-toml-XXXXXX", path[128], big[160];
	tally_toml *t = NULL;
	int64_t i = 0;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a.toml", dir);
	snprintf(big, sizeof(big), "%s/big.toml", dir);
	assert_non_null(f = fopen(path, "w"));
	fputs("[w]\nn = 5\nbad = 0x\n", f);
	fclose(f);
	assert_int_equal(tally_toml_load(&t, path), TALLY_EFORMAT);
	assert_true(strncmp(tally_errmsg(), path, strlen(path)) == 0);
	assert_non_null(strstr(tally_errmsg(), ".toml:3: invalid integer '0x'"));
	assert_non_null(f = fopen(path, "w"));
	fputs("[w]\nn = 5\n", f);
	fclose(f);
	assert_int_equal(tally_toml_load(&t, path), 0);
	assert_string_equal(tally_toml_filename(t), path);
	assert_int_equal(tally_toml_get_int(t, "w.n", &i), 0);
	assert_int_equal(i, 5);
	tally_toml_destroy(&t);
	assert_non_null(f = fopen(big, "w"));
	for (size_t k = 0; k <= TALLY_TOML_MAX_DOC / 8; k++)
		fputs("#567890\n", f);
	fclose(f);
	assert_int_equal(tally_toml_load(&t, big), TALLY_ETOOBIG);
	unlink(path);
	unlink(big);
	assert_int_equal(tally_toml_load(&t, path), TALLY_ENOENT);
	assert_null(t);
	rmdir(dir);
}

/* ---- cross-check against Python's tomllib ---- */

static void check_value(const tally_toml *t, const char *key, size_t index, json_t *want);

static void check_array(const tally_toml *t, const char *key, json_t *items)
{
	size_t n = 99, i;
	json_t *item;

	assert_int_equal(tally_toml_array_len(t, key, &n), 0);
	assert_int_equal(n, json_array_size(items));
	json_array_foreach(items, i, item)
		check_value(t, key, i, item);
}

/* Compares key (or its element index, unless SIZE_MAX) with tomllib's tagged answer. */
static void check_value(const tally_toml *t, const char *key, size_t index, json_t *want)
{
	const char *type = json_string_value(json_object_get(want, "type"));
	json_t *value = json_object_get(want, "value");
	const char *text = json_string_value(value), *s = NULL;
	bool at = index != SIZE_MAX, b;
	int64_t i = 0;
	double d = 0, x;

	assert_non_null(type);
	if (!strcmp(type, "array")) {
		assert_false(at);
		check_array(t, key, value);
	} else if (!strcmp(type, "integer")) {
		assert_int_equal(at ? tally_toml_get_int_at(t, key, index, &i) : tally_toml_get_int(t, key, &i), 0);
		assert_true(i == strtoll(text, NULL, 10));
	} else if (!strcmp(type, "float")) {
		assert_int_equal(at ? tally_toml_get_int_at(t, key, index, &i) : tally_toml_get_int(t, key, &i),
				 TALLY_ECONFIG);
		assert_int_equal(at ? tally_toml_get_double_at(t, key, index, &d) : tally_toml_get_double(t, key, &d), 0);
		x = strtod(text, NULL);
		assert_true(isnan(x) ? isnan(d) : memcmp(&d, &x, sizeof(d)) == 0);
	} else if (!strcmp(type, "string")) {
		assert_int_equal(at ? tally_toml_get_string_at(t, key, index, &s) : tally_toml_get_string(t, key, &s), 0);
		assert_string_equal(s, text);
	} else {
		assert_string_equal(type, "bool");
		assert_int_equal(at ? tally_toml_get_bool_at(t, key, index, &b) : tally_toml_get_bool(t, key, &b), 0);
		assert_int_equal(b, !strcmp(text, "true"));
	}
}

static void check_good(const char *path, const char *json_path)
{
	json_error_t jerr;
	json_t *want = json_load_file(json_path, 0, &jerr), *v;
	tally_toml *t = NULL;
	const char *key;

	if (!want)
		fail_msg("%s: %s", json_path, jerr.text);
	if (tally_toml_load(&t, path))
		fail_msg("tomllib accepts %s but we do not: %s", path, tally_errmsg());
	assert_int_equal(tally_toml_count(t), json_object_size(want));
	json_object_foreach(want, key, v) {
		assert_int_not_equal(tally_toml_find(t, key), -1);
		check_value(t, key, SIZE_MAX, v);
	}
	tally_toml_destroy(&t);
	json_decref(want);
}

static void check_bad(const char *path, const char *json_path)
{
	json_t *want = json_load_file(json_path, 0, NULL), *line;
	tally_toml *t = NULL;
	char prefix[600];
	int rc = tally_toml_load(&t, path);

	assert_non_null(want);
	line = json_object_get(want, "line");
	if (json_is_integer(line))
		snprintf(prefix, sizeof(prefix), "%s:%lld: ", path, (long long)json_integer_value(line));
	else
		snprintf(prefix, sizeof(prefix), "%s:", path);
	if (rc != TALLY_EFORMAT || strncmp(tally_errmsg(), prefix, strlen(prefix)))
		fail_msg("%s: tomllib says '%s'; we return %d, '%s'", path,
			 json_string_value(json_object_get(want, "error")), rc, tally_errmsg());
	assert_null(t);
	json_decref(want);
}

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

static void test_tomllib_cross_check(void **state)
{
	const char *src = getenv("TALLY_SOURCE_DIR");
	char dir[512], path[1024], json_path[1024];
	int good = 0, bad = 0;
	struct dirent *e;
	DIR *d;

	if (!src)
		fail_msg("TALLY_SOURCE_DIR is not set (run through ctest)");
	snprintf(dir, sizeof(dir), "%s/tests/data/toml", src);
	assert_non_null(d = opendir(dir));
	while ((e = readdir(d))) {
		if (!has_suffix(e->d_name, ".toml"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		snprintf(json_path, sizeof(json_path), "%.*s.json", (int)strlen(path) - 5, path);
		if (has_suffix(e->d_name, ".bad.toml")) {
			check_bad(path, json_path);
			bad++;
		} else {
			check_good(path, json_path);
			good++;
		}
	}
	closedir(d);
	assert_true(good >= 10);
	assert_true(bad >= 40);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scalars_and_tables),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_integers),
		cmocka_unit_test(test_floats),
		cmocka_unit_test(test_arrays),
		cmocka_unit_test(test_dotted_keys_and_tables),
		cmocka_unit_test(test_crlf_and_unterminated_buffer),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_redefinitions),
		cmocka_unit_test(test_unsupported_features),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_getter_errors),
		cmocka_unit_test(test_check_keys),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_tomllib_cross_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
