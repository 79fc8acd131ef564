/*
 * Schema-driven configuration: TOML file, then flags, validated against one table.
 */
#include "tally/config.h"
#include "tally/error.h"
#include "tally/toml.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int set_value(const tally_cfg_field *f, void *cfg, const char *text, const char *where)
{
	char *end;
	void *p = (char *)cfg + f->offset;

	switch (f->type) {
	case TALLY_CFG_STRING:
		if (strlen(text) >= f->size)
			return tally_err(TALLY_ECONFIG, "%s: value is longer than %zu characters", where, f->size - 1);
		memcpy(p, text, strlen(text) + 1);
		return 0;
	case TALLY_CFG_INT: {
		long long v;

		errno = 0;
		v = strtoll(text, &end, 10);
		if (errno || end == text || *end)
			return tally_err(TALLY_ECONFIG, "%s: '%s' is not an integer", where, text);
		if ((double)v < f->min || (double)v > f->max)
			return tally_err(TALLY_ECONFIG, "%s: %lld is outside %.17g..%.17g", where, v, f->min, f->max);
		*(int64_t *)p = v;
		return 0;
	}
	case TALLY_CFG_DOUBLE: {
		double v;

		errno = 0;
		v = strtod(text, &end);
		if (errno || end == text || *end || !isfinite(v))
			return tally_err(TALLY_ECONFIG, "%s: '%s' is not a finite number", where, text);
		if (v < f->min || v > f->max)
			return tally_err(TALLY_ECONFIG, "%s: %g is outside %g..%g", where, v, f->min, f->max);
		*(double *)p = v;
		return 0;
	}
	case TALLY_CFG_BOOL:
		if (strcmp(text, "true") != 0 && strcmp(text, "false") != 0)
			return tally_err(TALLY_ECONFIG, "%s: '%s' is not true or false", where, text);
		*(bool *)p = text[0] == 't';
		return 0;
	}
	return tally_err(TALLY_ECONFIG, "%s: bad schema type", where);
}

int tally_cfg_defaults(const tally_cfg_field *schema, size_t n, void *cfg)
{
	for (size_t i = 0; i < n; i++) {
		int rc = set_value(&schema[i], cfg, schema[i].def, schema[i].key);

		if (rc)
			return rc;
	}
	return 0;
}

/* Reads one key of the document into the config through its textual form. */
static int load_key(const tally_cfg_field *f, void *cfg, const tally_toml *t, const char *where)
{
	char text[64];
	const char *s;
	int64_t iv;
	double dv;
	bool bv;
	int rc;

	switch (f->type) {
	case TALLY_CFG_STRING:
		rc = tally_toml_get_string(t, f->key, &s);
		return rc ? rc : set_value(f, cfg, s, where);
	case TALLY_CFG_INT:
		if ((rc = tally_toml_get_int(t, f->key, &iv)) == 0)
			snprintf(text, sizeof(text), "%lld", (long long)iv);
		break;
	case TALLY_CFG_DOUBLE:
		if ((rc = tally_toml_get_double(t, f->key, &dv)) == 0)
			snprintf(text, sizeof(text), "%.17g", dv);
		break;
	default:
		if ((rc = tally_toml_get_bool(t, f->key, &bv)) == 0)
			snprintf(text, sizeof(text), "%s", bv ? "true" : "false");
		break;
	}
	return rc ? rc : set_value(f, cfg, text, where);
}

int tally_cfg_load_file(const tally_cfg_field *schema, size_t n, void *cfg, const char *path)
{
	const char *allowed[512];
	tally_toml *t = NULL;
	int rc;

	if (n >= sizeof(allowed) / sizeof(allowed[0]))
		return tally_err(TALLY_ECONFIG, "schema too large");
	for (size_t i = 0; i < n; i++)
		allowed[i] = schema[i].key;
	allowed[n] = NULL;
	rc = tally_toml_load(&t, path);
	if (rc)
		return rc == TALLY_EFORMAT ? tally_err(TALLY_ECONFIG, "%s", tally_errmsg()) : rc;
	rc = tally_toml_check_keys(t, allowed);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		int idx = tally_toml_find(t, schema[i].key);
		char where[512];

		if (idx < 0)
			continue;
		snprintf(where, sizeof(where), "%s:%d: key '%s'", path, tally_toml_line(t, (size_t)idx), schema[i].key);
		rc = load_key(&schema[i], cfg, t, where);
	}
	tally_toml_destroy(&t);
	return rc ? tally_err(TALLY_ECONFIG, "%s", tally_errmsg()) : 0;
}

static const tally_cfg_field *find_flag(const tally_cfg_field *schema, size_t n, const char *name, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (schema[i].flag && strlen(schema[i].flag) == len && strncmp(schema[i].flag, name, len) == 0)
			return &schema[i];
	return NULL;
}

static int apply_one(const tally_cfg_field *schema, size_t n, void *cfg, int argc, char **argv, int *i)
{
	const char *arg = argv[*i] + 2, *eq = strchr(arg, '='), *value;
	size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
	const tally_cfg_field *f = find_flag(schema, n, arg, len);
	bool negated = false;
	char where[128];

	if (!f && len > 3 && strncmp(arg, "no-", 3) == 0) {
		f = find_flag(schema, n, arg + 3, len - 3);
		negated = f && f->type == TALLY_CFG_BOOL;
		if (!negated)
			f = NULL;
	}
	if (!f)
		return tally_err(TALLY_ECONFIG, "unknown flag --%.*s (see --help)", (int)len, arg);
	snprintf(where, sizeof(where), "--%s", f->flag);
	if (negated && eq)
		return tally_err(TALLY_ECONFIG, "--no-%s takes no value", f->flag);
	if (f->type == TALLY_CFG_BOOL && !eq)
		return set_value(f, cfg, negated ? "false" : "true", where);
	if (eq) {
		value = eq + 1;
	} else if (*i + 1 < argc) {
		value = argv[++*i];
	} else {
		return tally_err(TALLY_ECONFIG, "--%s needs a value", f->flag);
	}
	return set_value(f, cfg, value, where);
}

int tally_cfg_apply_flags(const tally_cfg_field *schema, size_t n, void *cfg, int argc, char **argv,
			  int first, int *rest)
{
	int i;

	for (i = first; i < argc; i++) {
		int rc;

		if (strncmp(argv[i], "--", 2) != 0 || argv[i][2] == '\0')
			break;
		if (strncmp(argv[i], "--config", 8) == 0 && (argv[i][8] == '\0' || argv[i][8] == '=')) {
			if (argv[i][8] == '\0' && ++i >= argc)
				return tally_err(TALLY_ECONFIG, "--config needs a file");
			continue;
		}
		rc = apply_one(schema, n, cfg, argc, argv, &i);
		if (rc)
			return rc;
	}
	if (rest)
		*rest = i;
	return 0;
}

const char *tally_cfg_find_config(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0)
			return i + 1 < argc ? argv[i + 1] : "";
		if (strncmp(argv[i], "--config=", 9) == 0)
			return argv[i] + 9;
	}
	return NULL;
}

void tally_cfg_print_help(const tally_cfg_field *schema, size_t n, FILE *out)
{
	static const char *const types[] = {"TEXT", "N", "X", ""};

	for (size_t i = 0; i < n; i++) {
		char left[64];

		if (!schema[i].flag)
			continue;
		snprintf(left, sizeof(left), "--%s%s%s", schema[i].flag, schema[i].type == TALLY_CFG_BOOL ? "" : " ",
			 types[schema[i].type]);
		fprintf(out, "  %-26s %s\n  %-26s [%s; default %s]\n", left, schema[i].help, "", schema[i].key,
			schema[i].def[0] ? schema[i].def : "\"\"");
	}
}

int tally_cfg_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return 1;
	return 0;
}

int tally_cfg_load_argv(const tally_cfg_field *schema, size_t n, void *cfg, int argc, char **argv)
{
	const char *path = tally_cfg_find_config(argc, argv);
	int rest, rc;

	if ((rc = tally_cfg_defaults(schema, n, cfg)))
		return rc;
	if (path && !*path)
		return tally_err(TALLY_ECONFIG, "--config needs a file");
	if (path && (rc = tally_cfg_load_file(schema, n, cfg, path)))
		return rc;
	if ((rc = tally_cfg_apply_flags(schema, n, cfg, argc, argv, 1, &rest)))
		return rc;
	if (rest < argc)
		return tally_err(TALLY_ECONFIG, "unexpected argument '%s' (see --help)", argv[rest]);
	return 0;
}
