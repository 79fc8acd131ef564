/*
 * A small, strict reader for the subset of TOML 1.0 that tally's configuration files use.
 *
 * Supported: comments, [table] and [a.b] headers, key = value with bare, "quoted" or 'literal'
 * keys and dotted keys; basic strings with the TOML escapes (\b \t \n \f \r \" \\ \uXXXX
 * \UXXXXXXXX), literal strings, integers (decimal, 0x, 0o, 0b, _ separators, 64-bit range),
 * floats (including inf and nan), booleans, and arrays of those scalars (which may span lines,
 * hold comments and end with a trailing comma). Table and dotted-key rules follow TOML 1.0 (as
 * Python's tomllib implements them): duplicate keys and redefined tables are errors.
 *
 * Everything else is rejected with "file:line: reason": inline tables, arrays of tables, nested
 * arrays, multi-line strings, dates and times, "\u0000" in strings, empty keys and quoted keys
 * containing '.', floats that overflow to infinity. Hard limits: 1 MiB per document, 4096 keys,
 * 4096 tables, 256 bytes per full dotted key, 64 KiB per string, 65536 array elements.
 *
 * A parsed document is a flat list of its leaf keys in document order, each named by its full
 * dotted path ("coordinator.bind"); empty tables leave no trace. A document is immutable once
 * parsed, so any number of threads may read one concurrently.
 */
#ifndef TALLY_TOML_H
#define TALLY_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TALLY_TOML_MAX_DOC ((size_t)1 << 20)
#define TALLY_TOML_MAX_KEYS 4096
#define TALLY_TOML_MAX_TABLES 4096
#define TALLY_TOML_MAX_KEY_LEN 256
#define TALLY_TOML_MAX_STRING 65536
#define TALLY_TOML_MAX_ARRAY 65536

typedef struct tally_toml tally_toml;

typedef enum {
	TALLY_TOML_STRING,
	TALLY_TOML_INT,
	TALLY_TOML_FLOAT,
	TALLY_TOML_BOOL,
	TALLY_TOML_ARRAY,
} tally_toml_type;

/*
 * Parses len bytes of text (need not be NUL-terminated) into a new document; filename (may be
 * NULL, then "<string>") names it in messages and is copied. Sets *out only on success.
 * Errors: TALLY_EFORMAT for anything outside the subset, TALLY_ETOOBIG for a hard limit, both
 * with the message "file:line: reason"; TALLY_ENOMEM. Any thread.
 */
int tally_toml_parse(tally_toml **out, const char *text, size_t len, const char *filename);

/*
 * Reads path (at most TALLY_TOML_MAX_DOC bytes) and parses it, naming it path in messages.
 * Errors: those of tally_file_read (TALLY_ENOENT, TALLY_EACCES, TALLY_ETOOBIG, TALLY_EIO) and of
 * tally_toml_parse, each with a message. Any thread.
 */
int tally_toml_load(tally_toml **out, const char *path);

/* Frees *tp and sets it to NULL; accepts NULL and *tp == NULL. */
void tally_toml_destroy(tally_toml **tp);

/* Number of leaf keys (values, including arrays) in the document. */
size_t tally_toml_count(const tally_toml *t);

/* Full dotted key of leaf i < count, e.g. "coordinator.bind"; owned by t. */
const char *tally_toml_key(const tally_toml *t, size_t i);

/* Type of leaf i < count. */
tally_toml_type tally_toml_type_of(const tally_toml *t, size_t i);

/* Line (1-based) on which leaf i < count was defined. */
int tally_toml_line(const tally_toml *t, size_t i);

/* The name given to parse or load; owned by t. */
const char *tally_toml_filename(const tally_toml *t);

/* Index of the leaf with this full dotted key, or -1. */
int tally_toml_find(const tally_toml *t, const char *key);

/*
 * Typed getters by full dotted key. Return 0 and set *out; TALLY_ENOENT without a message if the
 * key is absent (or names a table); TALLY_ECONFIG with "file:line: key 'k' must be an integer"
 * (a string, a number, a boolean) if the value has another type. Strings are owned by t.
 * get_double also accepts integers, converted to the nearest double.
 */
int tally_toml_get_string(const tally_toml *t, const char *key, const char **out);
int tally_toml_get_int(const tally_toml *t, const char *key, int64_t *out);
int tally_toml_get_double(const tally_toml *t, const char *key, double *out);
int tally_toml_get_bool(const tally_toml *t, const char *key, bool *out);

/* Number of elements of an array; TALLY_ENOENT if absent, TALLY_ECONFIG if not an array. */
int tally_toml_array_len(const tally_toml *t, const char *key, size_t *n);

/*
 * Element index of an array. TALLY_ENOENT without a message if the key is absent or
 * index >= length; TALLY_ECONFIG with "file:line: key 'k' must be an array" or "file:line: key
 * 'k' element 2 must be an integer" on a wrong type. get_double_at also accepts integers.
 */
int tally_toml_get_string_at(const tally_toml *t, const char *key, size_t index, const char **out);
int tally_toml_get_int_at(const tally_toml *t, const char *key, size_t index, int64_t *out);
int tally_toml_get_double_at(const tally_toml *t, const char *key, size_t index, double *out);
int tally_toml_get_bool_at(const tally_toml *t, const char *key, size_t index, bool *out);

/*
 * Checks every leaf key against allowed, a NULL-terminated list of full dotted keys. Fails on
 * the first key (in document order) not in the list with TALLY_ECONFIG and "file:line: unknown
 * key 'x'".
 */
int tally_toml_check_keys(const tally_toml *t, const char *const *allowed);

#ifdef __cplusplus
}
#endif
#endif
