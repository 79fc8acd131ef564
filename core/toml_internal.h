/*
 * The reader's data structures, shared by toml.c (parsing) and toml_query.c (lookups). Not part
 * of the public API.
 */
#ifndef TALLY_TOML_INTERNAL_H
#define TALLY_TOML_INTERNAL_H

#include "tally/toml.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct value {
	tally_toml_type type;
	union {
		char *s;
		int64_t i;
		double d;
		bool b;
		struct {
			struct value *items;  /* scalars only */
			size_t n;
		} a;
	} u;
};

struct entry {
	char *key;
	uint32_t hash;
	int line;
	struct value val;
};

enum table_kind { TBL_IMPLICIT, TBL_HEADER, TBL_PENDING, TBL_DOTTED };

struct table {
	char *path;
	uint32_t hash;
	int line;
	enum table_kind kind;
};

/* Open addressing over every path: 0 empty, i + 1 entry i, -(i + 1) table i. */
#define INDEX_SLOTS 16384
_Static_assert(INDEX_SLOTS >= 2 * (TALLY_TOML_MAX_KEYS + TALLY_TOML_MAX_TABLES), "index too small");

struct tally_toml {
	char *filename;
	struct entry *entries;
	size_t n, cap;
	struct table *tables;
	size_t n_tables, cap_tables, n_pending;
	int32_t index[INDEX_SLOTS];
};

#endif
