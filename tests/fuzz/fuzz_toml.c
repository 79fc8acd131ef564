/*
 * Fuzz target for the TOML-subset reader (core/toml.c): any bytes must either parse or fail with
 * a format or limit error and a "file:..." message, never crash or leak; and a parsed document
 * must answer every query consistently (find(key(i)) == i, getters agree with type_of).
 */
#include "tally/error.h"
#include "tally/toml.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(bool ok)
{
	if (!ok)
		abort();
}

static void exercise_array(const tally_toml *t, const char *key)
{
	const char *s;
	int64_t n;
	double d;
	bool b;
	size_t len = 0;

	check(tally_toml_array_len(t, key, &len) == 0 && len <= TALLY_TOML_MAX_ARRAY);
	for (size_t j = 0; j < len; j++) {
		int ok = (tally_toml_get_string_at(t, key, j, &s) == 0) + (tally_toml_get_int_at(t, key, j, &n) == 0) +
			 (tally_toml_get_bool_at(t, key, j, &b) == 0);

		check(ok == 1 || tally_toml_get_double_at(t, key, j, &d) == 0);
	}
	check(tally_toml_get_int_at(t, key, len, &n) == TALLY_ENOENT);
	check(tally_toml_get_string(t, key, &s) == TALLY_ECONFIG);
}

static void exercise(const tally_toml *t)
{
	static const char *const allowed[] = { "a", "a.b", "x", "title", NULL };
	const char *s;
	int64_t n;
	double d;
	bool b;

	check(tally_toml_count(t) <= TALLY_TOML_MAX_KEYS);
	for (size_t i = 0; i < tally_toml_count(t); i++) {
		const char *key = tally_toml_key(t, i);

		check(tally_toml_find(t, key) == (int)i && tally_toml_line(t, i) >= 1);
		check(strlen(key) >= 1 && strlen(key) <= TALLY_TOML_MAX_KEY_LEN);
		switch (tally_toml_type_of(t, i)) {
		case TALLY_TOML_STRING:
			check(tally_toml_get_string(t, key, &s) == 0 && strlen(s) <= TALLY_TOML_MAX_STRING);
			break;
		case TALLY_TOML_INT:
			check(tally_toml_get_int(t, key, &n) == 0 && tally_toml_get_double(t, key, &d) == 0);
			break;
		case TALLY_TOML_FLOAT:
			check(tally_toml_get_double(t, key, &d) == 0 && tally_toml_get_int(t, key, &n) == TALLY_ECONFIG);
			break;
		case TALLY_TOML_BOOL:
			check(tally_toml_get_bool(t, key, &b) == 0 && tally_toml_get_double(t, key, &d) == TALLY_ECONFIG);
			break;
		case TALLY_TOML_ARRAY:
			exercise_array(t, key);
			break;
		}
	}
	check(tally_toml_find(t, "no such key!") == -1);
	(void)tally_toml_check_keys(t, allowed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tally_toml *t = NULL;
	int rc = tally_toml_parse(&t, (const char *)data, size, "fuzz.toml");

	if (rc == 0) {
		exercise(t);
	} else {
		check(t == NULL);
		check(rc == TALLY_ENOMEM || ((rc == TALLY_EFORMAT || rc == TALLY_ETOOBIG) &&
					     strncmp(tally_errmsg(), "fuzz.toml:", 10) == 0));
	}
	tally_toml_destroy(&t);
	return 0;
}
