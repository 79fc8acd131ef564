/*
 * The strict TOML-subset reader behind tally's configuration files (see tally/toml.h).
 *
 * One pass over the bytes, by recursive descent over lines: a statement is a blank line, a
 * comment, a [table] header or a key = value pair. Leaves are stored flat under their full dotted
 * key; tables are tracked only to enforce TOML's rules on redefinition, with the same states as
 * tomllib: implicit (a parent of a header), header-defined, and dotted-key-defined (pending until
 * the next header, then final). Every buffer has a hard ceiling from the header's limits.
 */
#include "toml_internal.h"
#include "tally/error.h"
#include "tally/fs.h"

#include <assert.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX TALLY_TOML_MAX_KEY_LEN
#define TOKEN_MAX 256

/* A dotted key: segments joined by '.', ends[i] the offset just past segment i. */
struct keypath {
	char s[KEY_MAX + 1];
	size_t len;
	int nseg;
	uint16_t ends[KEY_MAX / 2 + 1];
};

struct parser {
	tally_toml *doc;
	const char *p, *end;
	int line;
	struct keypath header;
	locale_t c_numeric;  /* for strtod, made on the first float; thread-safe via uselocale */
};

/* Records "file:line: message" and returns code. */
__attribute__((format(printf, 3, 4)))
static int fail(struct parser *ps, int code, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return tally_err(code, "%s:%d: %s", ps->doc->filename, ps->line, msg);
}

/* ---- lexical helpers ---- */

static int peek(const struct parser *ps)
{
	return ps->p < ps->end ? (unsigned char)*ps->p : -1;
}

/* A printable description of the character c (or end of input) for messages. */
static const char *show(int c, char buf[32])
{
	if (c < 0)
		return "end of file";
	if (c == '\n')
		return "end of line";
	if (c == '\r')
		return "a carriage return";
	if (c > 0x20 && c < 0x7f)
		snprintf(buf, 32, "'%c'", c);
	else
		snprintf(buf, 32, "byte 0x%02x", (unsigned)c);
	return buf;
}

/* Like show(peek(ps)), but names "\r\n" as the end of the line it is. */
static const char *show_next(const struct parser *ps, char buf[32])
{
	if (ps->end - ps->p >= 2 && ps->p[0] == '\r' && ps->p[1] == '\n')
		return "end of line";
	return show(peek(ps), buf);
}

static bool is_ctrl(int c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

static bool is_bare(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t'))
		ps->p++;
}

/* Consumes "\n" or "\r\n" and counts the line. */
static bool eat_newline(struct parser *ps)
{
	size_t n = ps->end - ps->p;

	if (n >= 1 && ps->p[0] == '\n')
		ps->p += 1;
	else if (n >= 2 && ps->p[0] == '\r' && ps->p[1] == '\n')
		ps->p += 2;
	else
		return false;
	ps->line++;
	return true;
}

/* Skips a comment at '#', stopping before its line ending. */
static int skip_comment(struct parser *ps)
{
	char b[32];

	if (peek(ps) != '#')
		return 0;
	for (ps->p++; ps->p < ps->end && *ps->p != '\n'; ps->p++) {
		int c = (unsigned char)*ps->p;

		if (c == '\r' && ps->p + 1 < ps->end && ps->p[1] == '\n')
			break;
		if (is_ctrl(c))
			return fail(ps, TALLY_EFORMAT, "control character %s in a comment", show(c, b));
	}
	return 0;
}

/* Requires the rest of the line to be blank or a comment, and consumes its ending. */
static int end_of_line(struct parser *ps, const char *after)
{
	char b[32];
	int rc;

	skip_ws(ps);
	if ((rc = skip_comment(ps)))
		return rc;
	if (ps->p == ps->end || eat_newline(ps))
		return 0;
	return fail(ps, TALLY_EFORMAT, "expected end of line after %s, found %s", after,
		    show_next(ps, b));
}

/* Skips whitespace, comments and line endings (inside arrays). */
static int skip_blank(struct parser *ps)
{
	int rc;

	for (;;) {
		skip_ws(ps);
		if ((rc = skip_comment(ps)))
			return rc;
		if (!eat_newline(ps))
			return 0;
	}
}

static int validate_utf8(struct parser *ps)
{
	const unsigned char *s = (const unsigned char *)ps->p, *e = (const unsigned char *)ps->end;

	while (s < e) {
		unsigned c = *s, n = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 :
				      c >= 0xf0 && c <= 0xf4 ? 3 : 4;
		unsigned lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
		unsigned hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;

		if (c == '\n')
			ps->line++;
		if (n == 4 || (size_t)(e - s) <= n)
			return fail(ps, TALLY_EFORMAT, "invalid UTF-8");
		for (unsigned k = 1; k <= n; k++)
			if (s[k] < (k == 1 ? lo : 0x80) || s[k] > (k == 1 ? hi : 0xbf))
				return fail(ps, TALLY_EFORMAT, "invalid UTF-8");
		s += n + 1;
	}
	ps->line = 1;
	return 0;
}

/* ---- strings ---- */

static int hex_value(int c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 : 99;
}

static size_t utf8_encode(uint32_t cp, char *out)
{
	static const unsigned char lead[] = { 0, 0, 0xc0, 0xe0, 0xf0 };
	size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;

	for (size_t k = n - 1; k > 0; k--, cp >>= 6)
		out[k] = (char)(0x80 | (cp & 0x3f));
	out[0] = (char)(lead[n] | cp);
	return n;
}

/* Decodes \uXXXX or \UXXXXXXXX at *s (on the 'u'), appending UTF-8 to out. */
static int decode_unicode(struct parser *ps, const char **s, const char *e, char *out, size_t *o)
{
	int digits = **s == 'u' ? 4 : 8;
	uint32_t cp = 0;

	if (e - (*s + 1) < digits)
		return fail(ps, TALLY_EFORMAT, "escape \\%c needs %d hex digits", **s, digits);
	for (int k = 1; k <= digits; k++) {
		int h = hex_value((unsigned char)(*s)[k]);

		if (h > 15)
			return fail(ps, TALLY_EFORMAT, "escape \\%c needs %d hex digits", **s, digits);
		cp = cp << 4 | (uint32_t)h;
	}
	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return fail(ps, TALLY_EFORMAT, "escape \\%.*s is not a Unicode scalar value",
			    digits + 1, *s);
	if (cp == 0)
		return fail(ps, TALLY_EFORMAT, "NUL characters (\\u0000) in strings are not supported");
	*o += utf8_encode(cp, out + *o);
	*s += digits + 1;
	return 0;
}

/* Decodes the escape at *s (on the backslash), appending to out. */
static int decode_escape(struct parser *ps, const char **s, const char *e, char *out, size_t *o)
{
	static const char from[] = "btnfr\"\\", to[] = "\b\t\n\f\r\"\\";
	const char *hit;
	char b[32];

	(*s)++;
	if (*s == e)
		return fail(ps, TALLY_EFORMAT, "unterminated escape in string");
	if (**s == 'u' || **s == 'U')
		return decode_unicode(ps, s, e, out, o);
	hit = **s ? strchr(from, **s) : NULL;
	if (!hit)
		return fail(ps, TALLY_EFORMAT, "invalid escape '\\' followed by %s in string",
			    show((unsigned char)**s, b));
	out[(*o)++] = to[hit - from];
	(*s)++;
	return 0;
}

/* Decodes the body [s, e) of a basic (escapes) or literal string into out. */
static int decode_string(struct parser *ps, bool basic, const char *s, const char *e, char *out,
			 size_t *n)
{
	size_t o = 0;
	char b[32];
	int rc;

	while (s < e) {
		int c = (unsigned char)*s;

		if (c == '\\' && basic) {
			if ((rc = decode_escape(ps, &s, e, out, &o)))
				return rc;
			continue;
		}
		if (is_ctrl(c))
			return fail(ps, TALLY_EFORMAT, "control character %s in string (use an escape)",
				    show(c, b));
		out[o++] = (char)c;
		s++;
	}
	*n = o;
	return 0;
}

/* Parses the string opening at ps->p into a new NUL-terminated buffer of at most max bytes. */
static int parse_string(struct parser *ps, size_t max, char **out, size_t *outlen)
{
	char quote = *ps->p, *buf;
	const char *start, *q;
	size_t n = 0;
	int rc;

	if (ps->end - ps->p >= 3 && ps->p[1] == quote && ps->p[2] == quote)
		return fail(ps, TALLY_EFORMAT, "multi-line strings are not supported");
	start = q = ps->p + 1;
	while (q < ps->end && *q != quote && *q != '\n' && *q != '\r')
		q += (*q == '\\' && quote == '"' && q + 1 < ps->end && q[1] != '\n' && q[1] != '\r') ? 2 : 1;
	if (q >= ps->end || *q != quote)
		return fail(ps, TALLY_EFORMAT, "unterminated string");
	if (!(buf = malloc((size_t)(q - start) + 1)))
		return TALLY_ENOMEM;
	rc = decode_string(ps, quote == '"', start, q, buf, &n);
	if (rc == 0 && n > max)
		rc = fail(ps, TALLY_ETOOBIG, "string of %zu bytes is over the limit of %zu", n, max);
	if (rc) {
		free(buf);
		return rc;
	}
	buf[n] = '\0';
	ps->p = q + 1;
	*out = buf;
	*outlen = n;
	return 0;
}

/* ---- keys ---- */

static int key_append(struct parser *ps, struct keypath *k, const char *seg, size_t n)
{
	size_t need = k->len + (k->nseg > 0) + n;

	if (need > KEY_MAX)
		return fail(ps, TALLY_ETOOBIG, "key is longer than %d bytes", KEY_MAX);
	if (k->nseg > 0)
		k->s[k->len++] = '.';
	memcpy(k->s + k->len, seg, n);
	k->len += n;
	k->s[k->len] = '\0';
	k->ends[k->nseg++] = (uint16_t)k->len;
	return 0;
}

static int parse_key_segment(struct parser *ps, struct keypath *k)
{
	const char *start = ps->p;
	char b[32], *s = NULL;
	size_t n;
	int rc, c = peek(ps);

	if (c == '"' || c == '\'') {
		if ((rc = parse_string(ps, KEY_MAX, &s, &n)))
			return rc;
		if (n == 0)
			rc = fail(ps, TALLY_EFORMAT, "empty keys are not supported");
		else if (memchr(s, '.', n))
			rc = fail(ps, TALLY_EFORMAT, "quoted key \"%s\" contains '.', which is not supported", s);
		else
			rc = key_append(ps, k, s, n);
		free(s);
		return rc;
	}
	while (ps->p < ps->end && is_bare((unsigned char)*ps->p))
		ps->p++;
	if (ps->p == start)
		return fail(ps, TALLY_EFORMAT, "expected a key, found %s", show(c, b));
	return key_append(ps, k, start, (size_t)(ps->p - start));
}

/* Parses a possibly dotted key, leaving ps->p after trailing whitespace. */
static int parse_key(struct parser *ps, struct keypath *k)
{
	int rc;

	k->len = 0;
	k->nseg = 0;
	k->s[0] = '\0';
	for (;;) {
		skip_ws(ps);
		if ((rc = parse_key_segment(ps, k)))
			return rc;
		skip_ws(ps);
		if (peek(ps) != '.')
			return 0;
		ps->p++;
	}
}

/* ---- scalars ---- */

/* True if s[0..n) is digit (_? digit)* in base. */
static bool digits_ok(const char *s, size_t n, int base)
{
	if (n == 0 || s[0] == '_' || s[n - 1] == '_')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '_' ? s[i + 1] == '_' : hex_value((unsigned char)s[i]) >= base)
			return false;
	}
	return true;
}

static int parse_int(struct parser *ps, const char *tok, struct value *v)
{
	const char *s = tok;
	bool neg = false;
	int base = 10;
	uint64_t acc = 0, lim;

	if (tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'o' || tok[1] == 'b')) {
		base = tok[1] == 'x' ? 16 : tok[1] == 'o' ? 8 : 2;
		s += 2;
	} else if (*s == '+' || *s == '-') {
		neg = *s++ == '-';
	}
	if (!digits_ok(s, strlen(s), base) || (base == 10 && s[0] == '0' && s[1]))
		return fail(ps, TALLY_EFORMAT, "invalid integer '%s'", tok);
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; *s; s++) {
		uint64_t d = (uint64_t)hex_value((unsigned char)*s);

		if (*s == '_')
			continue;
		if (acc > (lim - d) / (uint64_t)base)
			return fail(ps, TALLY_EFORMAT, "integer '%s' is out of the 64-bit range", tok);
		acc = acc * (uint64_t)base + d;
	}
	v->type = TALLY_TOML_INT;
	v->u.i = !neg ? (int64_t)acc : acc > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)acc;
	return 0;
}

/* Checks tok against TOML's float grammar, then converts it in the "C" locale. */
static int parse_float(struct parser *ps, const char *tok, struct value *v)
{
	const char *s = tok + (tok[0] == '+' || tok[0] == '-'), *x = strpbrk(s, "eE");
	const char *stop = x ? x : s + strlen(s), *dot = memchr(s, '.', (size_t)(stop - s));
	const char *int_end = dot ? dot : stop;
	bool ok = (dot || x) && digits_ok(s, (size_t)(int_end - s), 10) && !(s[0] == '0' && s + 1 < int_end);
	char buf[TOKEN_MAX + 1], *o = buf;
	locale_t prev;

	if (dot)
		ok = ok && digits_ok(dot + 1, (size_t)(stop - dot - 1), 10);
	if (x) {
		x += x[1] == '+' || x[1] == '-';
		ok = ok && digits_ok(x + 1, strlen(x + 1), 10);
	}
	if (!ok)
		return fail(ps, TALLY_EFORMAT, "invalid float '%s'", tok);
	for (s = tok; *s; s++)
		if (*s != '_')
			*o++ = *s;
	*o = '\0';
	if (!ps->c_numeric && !(ps->c_numeric = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0)))
		return TALLY_ENOMEM;
	prev = uselocale(ps->c_numeric);
	v->type = TALLY_TOML_FLOAT;
	v->u.d = strtod(buf, NULL);
	uselocale(prev);
	if (isinf(v->u.d))
		return fail(ps, TALLY_EFORMAT, "float '%s' is out of range", tok);
	return 0;
}

/* True for the start of a date or a time: 1979-05-27 or 07:32. */
static bool looks_like_date(const char *t)
{
	bool d4 = strspn(t, "0123456789") == 4, d2 = strspn(t, "0123456789") == 2;

	return (d4 && t[4] == '-') || (d2 && t[2] == ':');
}

/* A bare value: boolean, integer or float (or something unsupported, named in the message). */
static int parse_token(struct parser *ps, struct value *v)
{
	char tok[TOKEN_MAX + 1], b[32];
	const char *s;
	size_t n = 0;

	while (ps->p < ps->end && (is_bare((unsigned char)*ps->p) ||
				       *ps->p == '+' || *ps->p == '.' || *ps->p == ':')) {
		if (n == TOKEN_MAX)
			return fail(ps, TALLY_EFORMAT, "value is longer than %d characters", TOKEN_MAX);
		tok[n++] = *ps->p++;
	}
	tok[n] = '\0';
	s = tok + (tok[0] == '+' || tok[0] == '-');
	v->type = TALLY_TOML_BOOL;
	if (n == 0)
		return fail(ps, TALLY_EFORMAT, "expected a value, found %s", show_next(ps, b));
	if (!strcmp(tok, "true") || !strcmp(tok, "false")) {
		v->u.b = tok[0] == 't';
		return 0;
	}
	if (looks_like_date(tok))
		return fail(ps, TALLY_EFORMAT, "dates and times are not supported ('%s')", tok);
	v->type = TALLY_TOML_FLOAT;
	if (!strcmp(s, "inf") || !strcmp(s, "nan")) {
		v->u.d = s[0] == 'i' ? INFINITY : NAN;
		v->u.d = tok[0] == '-' ? -v->u.d : v->u.d;
		return 0;
	}
	if ((tok[0] >= 'A' && tok[0] <= 'Z') || (tok[0] >= 'a' && tok[0] <= 'z'))
		return fail(ps, TALLY_EFORMAT, "invalid value '%s' (strings must be quoted)", tok);
	if (tok[0] == '0' && (tok[1] == 'x' || tok[1] == 'o' || tok[1] == 'b'))
		return parse_int(ps, tok, v);
	return strpbrk(tok, ".eE") ? parse_float(ps, tok, v) : parse_int(ps, tok, v);
}

/* A scalar value (string or token); composite values are rejected here. */
static int parse_scalar(struct parser *ps, struct value *v)
{
	char *s;
	size_t n;
	int rc, c = peek(ps);

	if (c == '"' || c == '\'') {
		if ((rc = parse_string(ps, TALLY_TOML_MAX_STRING, &s, &n)))
			return rc;
		v->type = TALLY_TOML_STRING;
		v->u.s = s;
		return 0;
	}
	if (c == '{')
		return fail(ps, TALLY_EFORMAT, "inline tables are not supported");
	if (c == '[')
		return fail(ps, TALLY_EFORMAT, "nested arrays are not supported");
	return parse_token(ps, v);
}

/* ---- values and the document ---- */

static void value_free(struct value *v)
{
	if (v->type == TALLY_TOML_STRING) {
		free(v->u.s);
	} else if (v->type == TALLY_TOML_ARRAY) {
		for (size_t i = 0; i < v->u.a.n; i++)
			value_free(&v->u.a.items[i]);
		free(v->u.a.items);
	}
	v->type = TALLY_TOML_BOOL;
}

/*
 * Makes room for element n (< max) of size elem in a of capacity *cap: returns a itself, a
 * bigger copy, or NULL when out of memory (a is then unchanged).
 */
static void *grow(void *a, size_t *cap, size_t n, size_t elem, size_t max)
{
	size_t c = *cap ? *cap * 2 : 8;

	if (n < *cap)
		return a;
	if (c > max)
		c = max;
	if (!(a = realloc(a, c * elem)))
		return NULL;
	*cap = c;
	return a;
}

/* Parses one array element onto the end of *items. */
static int push_element(struct parser *ps, struct value **items, size_t *n, size_t *cap)
{
	struct value *bigger;
	int rc;

	if (*n == TALLY_TOML_MAX_ARRAY)
		return fail(ps, TALLY_ETOOBIG, "array has more than %d elements", TALLY_TOML_MAX_ARRAY);
	if (!(bigger = grow(*items, cap, *n, sizeof(*bigger), TALLY_TOML_MAX_ARRAY)))
		return TALLY_ENOMEM;
	*items = bigger;
	if ((rc = parse_scalar(ps, &bigger[*n])) == 0)
		(*n)++;
	return rc;
}

/* An array of scalars: elements and commas alternate, with blanks and comments between. */
static int parse_array(struct parser *ps, struct value *v)
{
	struct value *items = NULL;
	size_t n = 0, cap = 0;
	int rc, c, open_line = ps->line;
	bool need_comma = false;
	char b[32];

	for (ps->p++; (rc = skip_blank(ps)) == 0 && (c = peek(ps)) != ']'; need_comma = !need_comma) {
		if (c < 0)
			rc = fail(ps, TALLY_EFORMAT, "unterminated array (opened on line %d)", open_line);
		else if (need_comma && c != ',')
			rc = fail(ps, TALLY_EFORMAT, "expected ',' or ']' in array, found %s", show_next(ps, b));
		else if (need_comma)
			ps->p++;
		else
			rc = push_element(ps, &items, &n, &cap);
		if (rc)
			break;
	}
	if (rc == 0) {
		ps->p++;
		v->type = TALLY_TOML_ARRAY;
		v->u.a.items = items;
		v->u.a.n = n;
		items = NULL;
		n = 0;
	}
	for (size_t i = 0; i < n; i++)
		value_free(&items[i]);
	free(items);
	return rc;
}

static uint32_t hash_key(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* The index slot holding path, or the empty slot where it belongs. */
static uint32_t slot_of(const tally_toml *t, const char *path)
{
	uint32_t h = hash_key(path), mask = INDEX_SLOTS - 1;

	for (uint32_t i = h & mask;; i = (i + 1) & mask) {
		int32_t x = t->index[i];
		const struct entry *e = x > 0 ? &t->entries[x - 1] : NULL;
		const struct table *tb = x < 0 ? &t->tables[-x - 1] : NULL;

		if (x == 0 || (e && e->hash == h && !strcmp(e->key, path)) ||
		    (tb && tb->hash == h && !strcmp(tb->path, path)))
			return i;
	}
}

static int find_table(const tally_toml *t, const char *path)
{
	int32_t x = t->index[slot_of(t, path)];

	return x < 0 ? -x - 1 : -1;
}

/* Index of the table at path, created implicitly if absent. */
static int get_table(struct parser *ps, const char *path, int line, int *idx)
{
	tally_toml *t = ps->doc;
	struct table *tb;

	if ((*idx = find_table(t, path)) >= 0)
		return 0;
	if (t->n_tables == TALLY_TOML_MAX_TABLES)
		return fail(ps, TALLY_ETOOBIG, "more than %d tables", TALLY_TOML_MAX_TABLES);
	if (!(tb = grow(t->tables, &t->cap_tables, t->n_tables, sizeof(*tb), TALLY_TOML_MAX_TABLES)))
		return TALLY_ENOMEM;
	t->tables = tb;
	tb = &t->tables[t->n_tables];
	if (!(tb->path = strdup(path)))
		return TALLY_ENOMEM;
	tb->hash = hash_key(path);
	tb->line = line;
	tb->kind = TBL_IMPLICIT;
	*idx = (int)t->n_tables++;
	t->index[slot_of(t, path)] = -(int32_t)t->n_tables;
	return 0;
}

/* The first i segments of k, NUL-terminated, in buf. */
static const char *prefix(const struct keypath *k, int i, char buf[KEY_MAX + 1])
{
	memcpy(buf, k->s, k->ends[i - 1]);
	buf[k->ends[i - 1]] = '\0';
	return buf;
}

static int define_table(struct parser *ps, const struct keypath *k, int line)
{
	tally_toml *t = ps->doc;
	char path[KEY_MAX + 1];
	struct table *tb;
	int idx = -1, rc;

	for (size_t i = 0; t->n_pending && i < t->n_tables; i++)
		if (t->tables[i].kind == TBL_PENDING)
			t->tables[i].kind = TBL_DOTTED;
	t->n_pending = 0;
	for (int i = 1; i <= k->nseg; i++) {
		if ((idx = tally_toml_find(t, prefix(k, i, path))) >= 0)
			return fail(ps, TALLY_EFORMAT, "cannot define table [%s]: '%s' is already a value (line %d)",
				    k->s, path, t->entries[idx].line);
		if ((rc = get_table(ps, path, line, &idx)))
			return rc;
	}
	tb = &t->tables[idx];
	if (tb->kind == TBL_HEADER)
		return fail(ps, TALLY_EFORMAT, "table [%s] is defined twice (first on line %d)", k->s, tb->line);
	if (tb->kind == TBL_DOTTED)
		return fail(ps, TALLY_EFORMAT, "table [%s] was already defined by dotted keys on line %d",
			    k->s, tb->line);
	tb->kind = TBL_HEADER;
	tb->line = line;
	ps->header = *k;
	return 0;
}

/* Checks the tables a dotted key passes through (those below the current header). */
static int define_dotted(struct parser *ps, const struct keypath *full, int line)
{
	tally_toml *t = ps->doc;
	char path[KEY_MAX + 1];
	struct table *tb;
	int idx, rc;

	for (int i = ps->header.nseg + 1; i < full->nseg; i++) {
		if ((idx = tally_toml_find(t, prefix(full, i, path))) >= 0)
			return fail(ps, TALLY_EFORMAT, "cannot set '%s': '%s' is already a value (line %d)",
				    full->s, path, t->entries[idx].line);
		if ((rc = get_table(ps, path, line, &idx)))
			return rc;
		tb = &t->tables[idx];
		if (tb->kind == TBL_HEADER || tb->kind == TBL_DOTTED)
			return fail(ps, TALLY_EFORMAT, "cannot set '%s' with a dotted key: table [%s] was "
				    "defined on line %d", full->s, path, tb->line);
		if (tb->kind == TBL_IMPLICIT) {
			tb->kind = TBL_PENDING;
			tb->line = line;
			t->n_pending++;
		}
	}
	return 0;
}

/* Stores v under the current header + rel; takes v's contents on success. */
static int define_leaf(struct parser *ps, const struct keypath *rel, struct value *v, int line)
{
	tally_toml *t = ps->doc;
	struct keypath full = ps->header;
	struct entry *e;
	int idx, rc;

	for (int i = 0; i < rel->nseg; i++) {
		size_t start = i ? rel->ends[i - 1] + 1 : 0;

		if ((rc = key_append(ps, &full, rel->s + start, rel->ends[i] - start)))
			return rc;
	}
	if ((rc = define_dotted(ps, &full, line)))
		return rc;
	if ((idx = tally_toml_find(t, full.s)) >= 0)
		return fail(ps, TALLY_EFORMAT, "duplicate key '%s' (first defined on line %d)", full.s,
			    t->entries[idx].line);
	if ((idx = find_table(t, full.s)) >= 0)
		return fail(ps, TALLY_EFORMAT, "key '%s' is already a table", full.s);
	if (t->n == TALLY_TOML_MAX_KEYS)
		return fail(ps, TALLY_ETOOBIG, "more than %d keys", TALLY_TOML_MAX_KEYS);
	if (!(e = grow(t->entries, &t->cap, t->n, sizeof(*e), TALLY_TOML_MAX_KEYS)))
		return TALLY_ENOMEM;
	t->entries = e;
	e = &t->entries[t->n];
	if (!(e->key = strdup(full.s)))
		return TALLY_ENOMEM;
	e->hash = hash_key(full.s);
	e->line = line;
	e->val = *v;
	v->type = TALLY_TOML_BOOL;
	t->n++;
	t->index[slot_of(t, e->key)] = (int32_t)t->n;
	return 0;
}

static int parse_header(struct parser *ps)
{
	struct keypath k;
	int rc, next, line = ps->line;
	char b[32];

	ps->p++;
	if (peek(ps) == '[')
		return fail(ps, TALLY_EFORMAT, "arrays of tables ([[...]]) are not supported");
	if ((rc = parse_key(ps, &k)))
		return rc;
	if (peek(ps) != ']')
		return fail(ps, TALLY_EFORMAT, "expected ']' after table name, found %s", show_next(ps, b));
	ps->p++;
	if ((rc = end_of_line(ps, "table header")))
		return rc;
	next = ps->line;
	ps->line = line;  /* report conflicts on the header's line */
	rc = define_table(ps, &k, line);
	ps->line = next;
	return rc;
}

static int parse_keyval(struct parser *ps)
{
	struct value v = { .type = TALLY_TOML_BOOL };
	struct keypath k;
	int rc, next, line = ps->line;
	char b[32];

	if ((rc = parse_key(ps, &k)))
		goto out;
	if (peek(ps) != '=') {
		rc = fail(ps, TALLY_EFORMAT, "expected '=' after key '%s', found %s", k.s, show_next(ps, b));
		goto out;
	}
	ps->p++;
	skip_ws(ps);
	rc = peek(ps) == '[' ? parse_array(ps, &v) : parse_scalar(ps, &v);
	if (rc == 0)
		rc = end_of_line(ps, "value");
	if (rc == 0) {
		next = ps->line;
		ps->line = line;  /* report conflicts on the key's line */
		rc = define_leaf(ps, &k, &v, line);
		ps->line = next;
	}
out:
	value_free(&v);
	return rc;
}

static int parse_document(struct parser *ps)
{
	int rc = 0;

	while (rc == 0) {
		skip_ws(ps);
		if (ps->p == ps->end)
			break;
		if (*ps->p == '#')
			rc = skip_comment(ps);
		else if (eat_newline(ps))
			continue;
		else if (*ps->p == '[')
			rc = parse_header(ps);
		else
			rc = parse_keyval(ps);
	}
	return rc;
}

int tally_toml_parse(tally_toml **out, const char *text, size_t len, const char *filename)
{
	struct parser ps = { .line = 1 };
	tally_toml *t;
	int rc;

	assert(text || len == 0);
	ps.p = text ? text : "";
	ps.end = ps.p + len;
	if (!filename)
		filename = "<string>";
	if (len > TALLY_TOML_MAX_DOC)
		return tally_err(TALLY_ETOOBIG, "%s: %zu bytes is over the limit of %zu", filename, len,
				 TALLY_TOML_MAX_DOC);
	if (!(t = calloc(1, sizeof(*t))) || !(t->filename = strdup(filename))) {
		free(t);
		return TALLY_ENOMEM;
	}
	ps.doc = t;
	rc = validate_utf8(&ps);
	if (rc == 0)
		rc = parse_document(&ps);
	if (rc == 0) {
		*out = t;
		t = NULL;
	}
	if (ps.c_numeric)
		freelocale(ps.c_numeric);
	tally_toml_destroy(&t);
	return rc;
}

int tally_toml_load(tally_toml **out, const char *path)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc;

	if ((rc = tally_file_read(path, TALLY_TOML_MAX_DOC, &buf, &len)))
		return rc;
	rc = tally_toml_parse(out, (const char *)buf, len, path);
	free(buf);
	return rc;
}

void tally_toml_destroy(tally_toml **tp)
{
	tally_toml *t;

	if (!tp || !*tp)
		return;
	t = *tp;
	for (size_t i = 0; i < t->n; i++) {
		free(t->entries[i].key);
		value_free(&t->entries[i].val);
	}
	for (size_t i = 0; i < t->n_tables; i++)
		free(t->tables[i].path);
	free(t->entries);
	free(t->tables);
	free(t->filename);
	free(t);
	*tp = NULL;
}

/* ---- lookup by key (the typed getters are in toml_query.c) ---- */

int tally_toml_find(const tally_toml *t, const char *key)
{
	int32_t x = t->index[slot_of(t, key)];

	return x > 0 ? x - 1 : -1;
}
