/*
 * Configuration from a TOML file, overridden by command-line flags, described once by a schema
 * table per program. The same table validates the file (unknown keys, types, ranges), parses the
 * flags and prints --help, so that the three never disagree.
 */
#ifndef TALLY_CONFIG_H
#define TALLY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { TALLY_CFG_STRING, TALLY_CFG_INT, TALLY_CFG_DOUBLE, TALLY_CFG_BOOL } tally_cfg_type;

typedef struct tally_cfg_field {
	const char *key;     /* dotted TOML key, e.g. "rounds.count" */
	const char *flag;    /* long flag without dashes, e.g. "rounds"; NULL = file only */
	tally_cfg_type type; /* STRING: char[size]; INT: int64_t; DOUBLE: double; BOOL: bool */
	size_t offset;       /* of the value in the program's config struct */
	size_t size;         /* STRING buffer size */
	double min, max;     /* inclusive range for INT and DOUBLE */
	const char *def;     /* default, as it would be written on the command line */
	const char *help;    /* one line */
} tally_cfg_field;

/* Fills every field of cfg with its default. Returns 0, or TALLY_ECONFIG for a bad table. */
int tally_cfg_defaults(const tally_cfg_field *schema, size_t n, void *cfg);

/*
 * Reads a TOML file over cfg. Unknown keys, wrong types and out-of-range values fail with
 * TALLY_ECONFIG and a message naming the file, line, key and problem.
 */
int tally_cfg_load_file(const tally_cfg_field *schema, size_t n, void *cfg, const char *path);

/*
 * Applies --flag value / --flag=value / --flag (booleans) / --no-flag (booleans) from argv[first..]
 * over cfg. Stops at the first argument that is not a flag and stores its index in *rest (argc if
 * none). "--config" and "--help" are not handled here. Errors: TALLY_ECONFIG naming the flag.
 */
int tally_cfg_apply_flags(const tally_cfg_field *schema, size_t n, void *cfg, int argc, char **argv,
			  int first, int *rest);

/* Finds "--config PATH" or "--config=PATH" in argv; NULL when absent. */
const char *tally_cfg_find_config(int argc, char **argv);

/*
 * The whole start-up path of a daemon: defaults, then the file of --config (if any), then the
 * flags from argv[1]; any other argument is an error. Returns 0, or TALLY_ECONFIG with a
 * message (the caller prints it and exits with status 2). --help is the caller's.
 */
int tally_cfg_load_argv(const tally_cfg_field *schema, size_t n, void *cfg, int argc, char **argv);

/* Whether argv holds --help or -h. */
int tally_cfg_wants_help(int argc, char **argv);

/* Prints one line per flag with its TOML key, default and help. */
void tally_cfg_print_help(const tally_cfg_field *schema, size_t n, FILE *out);

#endif
