/*
 * Queries over a parsed TOML document: its keys in order, their lines and types, and typed
 * getters that name the file, line and key when a value has the wrong type.
 */
#include "toml_internal.h"

#include "tally/error.h"

#include <assert.h>
#include <string.h>

size_t tally_toml_count(const tally_toml *t)
{
	return t->n;
}

const char *tally_toml_key(const tally_toml *t, size_t i)
{
	assert(i < t->n);
	return t->entries[i].key;
}

tally_toml_type tally_toml_type_of(const tally_toml *t, size_t i)
{
	assert(i < t->n);
	return t->entries[i].val.type;
}

int tally_toml_line(const tally_toml *t, size_t i)
{
	assert(i < t->n);
	return t->entries[i].line;
}

const char *tally_toml_filename(const tally_toml *t)
{
	return t->filename;
}

static const char *const type_names[] = {
	[TALLY_TOML_STRING] = "a string", [TALLY_TOML_INT] = "an integer",
	[TALLY_TOML_FLOAT] = "a number", [TALLY_TOML_BOOL] = "a boolean", [TALLY_TOML_ARRAY] = "an array",
};

/* Stores scalar v (or an array's length) into out, whose C type follows want. */
static void store(const struct value *v, tally_toml_type want, void *out)
{
	switch (want) {
	case TALLY_TOML_STRING: *(const char **)out = v->u.s; break;
	case TALLY_TOML_INT: *(int64_t *)out = v->u.i; break;
	case TALLY_TOML_FLOAT: *(double *)out = v->type == TALLY_TOML_INT ? (double)v->u.i : v->u.d; break;
	case TALLY_TOML_BOOL: *(bool *)out = v->u.b; break;
	case TALLY_TOML_ARRAY: *(size_t *)out = v->u.a.n; break;
	}
}

/*
 * Finds the value at key, or element *index of the array at key (index not NULL), checks that
 * it has type want (an integer will do for a float) and stores it into out.
 */
static int get_value(const tally_toml *t, const char *key, const size_t *index, tally_toml_type want,
		     void *out)
{
	int i = tally_toml_find(t, key);
	const struct entry *e = i < 0 ? NULL : &t->entries[i];
	const struct value *v = e ? &e->val : NULL;

	if (!e)
		return TALLY_ENOENT;
	if (index && v->type != TALLY_TOML_ARRAY)
		return tally_err(TALLY_ECONFIG, "%s:%d: key '%s' must be an array", t->filename, e->line, key);
	if (index && *index >= v->u.a.n)
		return TALLY_ENOENT;
	if (index)
		v = &v->u.a.items[*index];
	if (v->type != want && !(want == TALLY_TOML_FLOAT && v->type == TALLY_TOML_INT)) {
		if (index)
			return tally_err(TALLY_ECONFIG, "%s:%d: key '%s' element %zu must be %s",
					 t->filename, e->line, key, *index, type_names[want]);
		return tally_err(TALLY_ECONFIG, "%s:%d: key '%s' must be %s", t->filename, e->line, key,
				 type_names[want]);
	}
	store(v, want, out);
	return 0;
}

int tally_toml_get_string(const tally_toml *t, const char *key, const char **out)
{
	return get_value(t, key, NULL, TALLY_TOML_STRING, out);
}

int tally_toml_get_int(const tally_toml *t, const char *key, int64_t *out)
{
	return get_value(t, key, NULL, TALLY_TOML_INT, out);
}

int tally_toml_get_double(const tally_toml *t, const char *key, double *out)
{
	return get_value(t, key, NULL, TALLY_TOML_FLOAT, out);
}

int tally_toml_get_bool(const tally_toml *t, const char *key, bool *out)
{
	return get_value(t, key, NULL, TALLY_TOML_BOOL, out);
}

int tally_toml_array_len(const tally_toml *t, const char *key, size_t *n)
{
	return get_value(t, key, NULL, TALLY_TOML_ARRAY, n);
}

int tally_toml_get_string_at(const tally_toml *t, const char *key, size_t index, const char **out)
{
	return get_value(t, key, &index, TALLY_TOML_STRING, out);
}

int tally_toml_get_int_at(const tally_toml *t, const char *key, size_t index, int64_t *out)
{
	return get_value(t, key, &index, TALLY_TOML_INT, out);
}

int tally_toml_get_double_at(const tally_toml *t, const char *key, size_t index, double *out)
{
	return get_value(t, key, &index, TALLY_TOML_FLOAT, out);
}

int tally_toml_get_bool_at(const tally_toml *t, const char *key, size_t index, bool *out)
{
	return get_value(t, key, &index, TALLY_TOML_BOOL, out);
}

int tally_toml_check_keys(const tally_toml *t, const char *const *allowed)
{
	for (size_t i = 0; i < t->n; i++) {
		const char *const *a = allowed;

		while (*a && strcmp(*a, t->entries[i].key))
			a++;
		if (!*a)
			return tally_err(TALLY_ECONFIG, "%s:%d: unknown key '%s'", t->filename,
					 t->entries[i].line, t->entries[i].key);
	}
	return 0;
}
