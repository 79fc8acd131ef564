/*
 * CURVE key files (generation, loading with permission checks) and the roster of enrolled keys.
 * Key files are read into sodium_malloc'd buffers and wiped, since .key files hold secrets.
 */
#include "tally/keys.h"
#include "tally/error.h"
#include "tally/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define KEYFILE_MAX 4096
#define ROSTER_MAX_KEYS 100000
#define ROSTER_MAX_BYTES (16u << 20)

typedef struct field {
	char key[64];
	char value[2 * TALLY_Z85_KEY_LEN + 24];
} field;

static bool is_ident(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '.' || *s == '_' || *s == '-'))
			return false;
	return true;
}

/* Parses one `key = "value"` line (already stripped of comments and blanks). */
static int parse_line(char *line, field *f, const char *path, int lineno)
{
	char *eq = strchr(line, '='), *k = line, *v, *end;

	if (!eq)
		return tally_err(TALLY_EFORMAT, "%s:%d: expected key = \"value\"", path, lineno);
	*eq = '\0';
	v = eq + 1;
	while (*k == ' ' || *k == '\t')
		k++;
	for (end = eq; end > k && (end[-1] == ' ' || end[-1] == '\t'); end--)
		end[-1] = '\0';
	while (*v == ' ' || *v == '\t')
		v++;
	end = v + strlen(v);
	while (end > v && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	if (!is_ident(k) || strlen(k) >= sizeof(f->key))
		return tally_err(TALLY_EFORMAT, "%s:%d: bad key name", path, lineno);
	if (end - v < 2 || *v != '"' || end[-1] != '"' || (size_t)(end - v - 2) >= sizeof(f->value))
		return tally_err(TALLY_EFORMAT, "%s:%d: value of '%s' must be a short quoted string", path, lineno, k);
	snprintf(f->key, sizeof(f->key), "%s", k);
	memcpy(f->value, v + 1, (size_t)(end - v - 2));
	f->value[end - v - 2] = '\0';
	return 0;
}

static ssize_t read_all(int fd, char *buf, size_t cap)
{
	size_t got = 0;

	while (got < cap) {
		ssize_t r = read(fd, buf + got, cap - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

static int count_lines(const char *s)
{
	int n = 1;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/*
 * Reads a file of `key = "value"` lines into fields (sodium_malloc'd, wiped by the caller with
 * sodium_free). Returns the number of fields or a negative code.
 */
static int read_fields(const char *path, field **out, int max_fields, size_t max_bytes)
{
	char *buf = NULL, *next;
	field *fields = NULL;
	int fd, n = 0, lineno = 0, rc;
	struct stat st;
	ssize_t len;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return tally_err(errno == ENOENT ? TALLY_ENOENT : TALLY_EACCES, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max_bytes) {
		rc = tally_err(TALLY_ETOOBIG, "%s: not a regular file of at most %zu bytes", path, max_bytes);
		goto fail;
	}
	/* Sized by the file, in guarded memory that sodium_free wipes: key files hold secrets. */
	buf = sodium_malloc((size_t)st.st_size + 2);
	if (!buf) {
		rc = TALLY_ENOMEM;
		goto fail;
	}
	len = read_all(fd, buf, (size_t)st.st_size + 1);
	if (len < 0 || len > st.st_size) {
		rc = tally_err(TALLY_EIO, "%s: %s", path, len < 0 ? strerror(errno) : "changed while read");
		goto fail;
	}
	buf[len] = '\0';
	if (count_lines(buf) < max_fields)
		max_fields = count_lines(buf);
	fields = sodium_malloc(sizeof(field) * (size_t)max_fields);
	if (!fields) {
		rc = TALLY_ENOMEM;
		goto fail;
	}
	if (memchr(buf, '\0', (size_t)len)) {
		rc = tally_err(TALLY_EFORMAT, "%s: binary data in a key file", path);
		goto fail;
	}
	for (char *line = buf; line; line = next) {
		char *p = line;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '#' || *p == '\0' || *p == '\r')
			continue;
		if (n == max_fields) {
			rc = tally_err(TALLY_EFORMAT, "%s:%d: too many entries", path, lineno);
			goto fail;
		}
		rc = parse_line(p, &fields[n++], path, lineno);
		if (rc)
			goto fail;
	}
	close(fd);
	sodium_free(buf);
	*out = fields;
	return n;
fail:
	if (fd >= 0)
		close(fd);
	sodium_free(buf);
	sodium_free(fields);
	return rc;
}

static const char *field_get(const field *f, int n, const char *key)
{
	for (int i = 0; i < n; i++)
		if (strcmp(f[i].key, key) == 0)
			return f[i].value;
	return NULL;
}

static int check_z85(const char *z85, const char *path, const char *what, uint8_t bin[32])
{
	uint8_t tmp[32];

	if (strlen(z85) != TALLY_Z85_KEY_LEN || !zmq_z85_decode(bin ? bin : tmp, z85))
		return tally_err(TALLY_EFORMAT, "%s: %s is not a 40-character Z85 key", path, what);
	return 0;
}

/* ---- generation ---- */

static int write_text(const char *path, const char *text, mode_t mode)
{
	struct iovec iov = {(void *)text, strlen(text)};

	return tally_file_write_atomic(path, &iov, 1, mode);
}

/* A fresh Ed25519 identity: its public key and its 32-byte seed, both as Z85. */
static int sign_keypair_z85(char pub_z85[TALLY_Z85_KEY_LEN + 1], char seed_z85[TALLY_Z85_KEY_LEN + 1])
{
	uint8_t seed[32], pk[32], sk[64];
	int rc = 0;

	randombytes_buf(seed, sizeof(seed));
	if (crypto_sign_seed_keypair(pk, sk, seed) != 0 || !zmq_z85_encode(pub_z85, pk, 32) ||
	    !zmq_z85_encode(seed_z85, seed, 32))
		rc = tally_err(TALLY_ECRYPTO, "cannot make an Ed25519 identity key");
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(sk, sizeof(sk));
	return rc;
}

/* Refuses before writing anything, so a refusal never leaves a mismatched pair behind. */
static int check_absent(const char *prefix)
{
	static const char *const ext[] = {".key", ".pub"};
	char path[4200];

	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s%s", prefix, ext[i]);
		if (access(path, F_OK) == 0)
			return tally_err(TALLY_EINVAL, "%s already exists; remove it first or pass --force", path);
	}
	return 0;
}

int tally_keygen(const char *prefix, bool force)
{
	char pub[TALLY_Z85_KEY_LEN + 1], path[4096], *text = NULL, *secret = NULL;
	char sign_pub[TALLY_Z85_KEY_LEN + 1], *sign_seed = NULL;
	const char *name = strrchr(prefix, '/') ? strrchr(prefix, '/') + 1 : prefix;
	int rc;

	if (!is_ident(name) || strlen(name) >= 64)
		return tally_err(TALLY_EINVAL, "key name '%s' must be 1-63 characters of [A-Za-z0-9._-]", name);
	if (strlen(prefix) > sizeof(path) - 8)
		return tally_err(TALLY_EINVAL, "key path too long");
	if (!force && (rc = check_absent(prefix)))
		return rc;
	secret = sodium_malloc(TALLY_Z85_KEY_LEN + 1);
	sign_seed = sodium_malloc(TALLY_Z85_KEY_LEN + 1);
	text = sodium_malloc(1024);
	if (!secret || !sign_seed || !text) {
		rc = TALLY_ENOMEM;
		goto out;
	}
	if (zmq_curve_keypair(pub, secret) != 0) {
		rc = tally_err(TALLY_ECRYPTO, "libzmq was built without CURVE support");
		goto out;
	}
	if ((rc = sign_keypair_z85(sign_pub, sign_seed)))
		goto out;
	snprintf(text, 1024, "# tally key pair. SECRET: keep this file private (mode 0600).\n"
		 "name = \"%s\"\npublic-key = \"%s\"\nsecret-key = \"%s\"\n"
		 "sign-public-key = \"%s\"\nsign-secret-key = \"%s\"\n", name, pub, secret, sign_pub, sign_seed);
	snprintf(path, sizeof(path), "%s.key", prefix);
	rc = write_text(path, text, 0600);
	if (rc)
		goto out;
	snprintf(text, 1024, "# tally public keys. Give this file to the coordinator's operator to enroll.\n"
		 "name = \"%s\"\npublic-key = \"%s\"\nsign-public-key = \"%s\"\n", name, pub, sign_pub);
	snprintf(path, sizeof(path), "%s.pub", prefix);
	rc = write_text(path, text, 0644);
out:
	sodium_free(secret);
	sodium_free(sign_seed);
	sodium_free(text);
	return rc;
}

/* ---- loading ---- */

/* The public key must be the one the secret key derives. */
static int check_pair(const char *pub, const char *sec, const char *path)
{
	char derived[TALLY_Z85_KEY_LEN + 1];
	int rc = 0;

	if (zmq_curve_public(derived, sec) != 0 || sodium_memcmp(derived, pub, TALLY_Z85_KEY_LEN) != 0)
		rc = tally_err(TALLY_EFORMAT, "%s: public-key does not belong to secret-key", path);
	sodium_memzero(derived, sizeof(derived));
	return rc;
}

/* Ed25519 identity from its Z85 seed; the public key on file must be the one it derives. */
static int load_sign(tally_keypair *kp, const char *pub, const char *seed_z85, const char *path)
{
	uint8_t seed[32], pk[32];
	int rc = 0;

	if (!pub && !seed_z85)
		return 0;
	if (!pub || !seed_z85 || check_z85(pub, path, "sign-public-key", pk))
		return tally_err(TALLY_EFORMAT, "%s: sign-public-key and sign-secret-key go together", path);
	if (!(kp->sign_secret = sodium_malloc(64)))
		return TALLY_ENOMEM;
	if (check_z85(seed_z85, path, "sign-secret-key", seed) ||
	    crypto_sign_seed_keypair(kp->sign_public, kp->sign_secret, seed) != 0 ||
	    sodium_memcmp(kp->sign_public, pk, 32) != 0)
		rc = tally_err(TALLY_EFORMAT, "%s: sign-public-key does not belong to sign-secret-key", path);
	sodium_memzero(seed, sizeof(seed));
	kp->has_sign = rc == 0;
	return rc;
}

int tally_pubkey_load_sign(const char *path, uint8_t sign_public[32])
{
	field *f = NULL;
	const char *pub;
	int n, rc;

	n = read_fields(path, &f, 8, KEYFILE_MAX);
	if (n < 0)
		return n;
	pub = field_get(f, n, "sign-public-key");
	rc = pub ? check_z85(pub, path, "sign-public-key", sign_public)
		 : tally_err(TALLY_EFORMAT, "%s has no sign-public-key (made by an older tally keygen?)", path);
	sodium_free(f);
	return rc;
}

int tally_keypair_load(tally_keypair **out, const char *path)
{
	struct stat st;
	field *f = NULL;
	const char *pub, *sec, *name;
	tally_keypair *kp = NULL;
	int n, rc;

	if (stat(path, &st) < 0)
		return tally_err(TALLY_ENOENT, "key file %s: %s", path, strerror(errno));
	if (st.st_mode & 077)
		return tally_err(TALLY_EACCES, "key file %s is accessible by group or others (mode %03o); "
				 "run: chmod 600 %s", path, st.st_mode & 0777, path);
	n = read_fields(path, &f, 8, KEYFILE_MAX);
	if (n < 0)
		return n;
	pub = field_get(f, n, "public-key");
	sec = field_get(f, n, "secret-key");
	name = field_get(f, n, "name");
	if (!pub || !sec || !name || !is_ident(name) || strlen(name) >= sizeof(kp->name)) {
		rc = tally_err(TALLY_EFORMAT, "%s: a key file needs name, public-key and secret-key", path);
		goto out;
	}
	if ((rc = check_z85(pub, path, "public-key", NULL)) || (rc = check_z85(sec, path, "secret-key", NULL)) ||
	    (rc = check_pair(pub, sec, path)))
		goto out;
	kp = calloc(1, sizeof(*kp));
	if (!kp || !(kp->secret_z85 = sodium_malloc(TALLY_Z85_KEY_LEN + 1))) {
		free(kp);
		rc = TALLY_ENOMEM;
		goto out;
	}
	snprintf(kp->name, sizeof(kp->name), "%s", name);
	memcpy(kp->public_z85, pub, TALLY_Z85_KEY_LEN + 1);
	memcpy(kp->secret_z85, sec, TALLY_Z85_KEY_LEN + 1);
	rc = load_sign(kp, field_get(f, n, "sign-public-key"), field_get(f, n, "sign-secret-key"), path);
	if (rc) {
		tally_keypair_destroy(&kp);
		goto out;
	}
	*out = kp;
out:
	sodium_free(f);
	return rc;
}

void tally_keypair_destroy(tally_keypair **kpp)
{
	if (!kpp || !*kpp)
		return;
	sodium_free((*kpp)->secret_z85);
	sodium_free((*kpp)->sign_secret);
	free(*kpp);
	*kpp = NULL;
}

int tally_pubkey_load(const char *path, char z85[TALLY_Z85_KEY_LEN + 1], char name[64])
{
	field *f = NULL;
	const char *pub, *nm;
	int n, rc;

	n = read_fields(path, &f, 8, KEYFILE_MAX);
	if (n < 0)
		return n;
	pub = field_get(f, n, "public-key");
	nm = field_get(f, n, "name");
	if (!pub || !nm || !is_ident(nm) || strlen(nm) >= 64)
		rc = tally_err(TALLY_EFORMAT, "%s: a public key file needs name and public-key", path);
	else
		rc = check_z85(pub, path, "public-key", NULL);
	if (rc == 0) {
		memcpy(z85, pub, TALLY_Z85_KEY_LEN + 1);
		if (name)
			snprintf(name, 64, "%s", nm);
	}
	sodium_free(f);
	return rc;
}

void tally_key_fingerprint(const uint8_t pub[32], char out[TALLY_FINGERPRINT_LEN + 1])
{
	uint8_t h[32];

	crypto_generichash(h, sizeof(h), pub, 32, NULL, 0);
	sodium_bin2hex(out, TALLY_FINGERPRINT_LEN + 1, h, TALLY_FINGERPRINT_LEN / 2);
}

/* ---- roster ---- */

typedef struct roster_entry {
	char name[64];
	uint8_t key[32];
	bool has_sign;
	uint8_t sign[32];
} roster_entry;

struct tally_roster {
	size_t n, cap;
	roster_entry *e;
};

/* Adds one enrolled worker; sign_z85 (its identity key) may be NULL. */
static int roster_add(tally_roster *r, const char *name, const char *z85, const char *sign_z85, const char *path)
{
	roster_entry e = {0};
	int rc;

	if (!is_ident(name) || strlen(name) >= sizeof(e.name))
		return tally_err(TALLY_EFORMAT, "%s: bad worker name '%s'", path, name);
	rc = check_z85(z85, path, name, e.key);
	if (rc == 0 && sign_z85) {
		rc = check_z85(sign_z85, path, name, e.sign);
		e.has_sign = true;
	}
	if (rc)
		return rc;
	snprintf(e.name, sizeof(e.name), "%s", name);
	for (size_t i = 0; i < r->n; i++) {
		if (strcmp(r->e[i].name, name) == 0 || sodium_memcmp(r->e[i].key, e.key, 32) == 0)
			return tally_err(TALLY_EFORMAT, "%s: worker '%s' or its key is enrolled twice", path, name);
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		roster_entry *ne = realloc(r->e, cap * sizeof(*ne));

		if (!ne)
			return TALLY_ENOMEM;
		r->e = ne;
		r->cap = cap;
	}
	r->e[r->n++] = e;
	return 0;
}

static int roster_load_dir(tally_roster *r, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = 0;

	if (!d)
		return tally_err(TALLY_ENOENT, "roster folder %s: %s", dir, strerror(errno));
	while (rc == 0 && (de = readdir(d))) {
		size_t len = strlen(de->d_name);
		char path[4096], z85[TALLY_Z85_KEY_LEN + 1], name[64];

		if (len < 5 || strcmp(de->d_name + len - 4, ".pub") != 0 || de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		uint8_t sign[32];
		char sign_z85[TALLY_Z85_KEY_LEN + 1];
		bool has_sign;

		rc = tally_pubkey_load(path, z85, name);
		has_sign = rc == 0 && tally_pubkey_load_sign(path, sign) == 0 && zmq_z85_encode(sign_z85, sign, 32);
		if (rc == 0)
			rc = roster_add(r, name, z85, has_sign ? sign_z85 : NULL, path);
	}
	closedir(d);
	return rc;
}

static int roster_load_file(tally_roster *r, const char *path)
{
	field *f = NULL;
	int n = read_fields(path, &f, ROSTER_MAX_KEYS, ROSTER_MAX_BYTES), rc = 0;

	if (n < 0)
		return n;
	for (int i = 0; i < n && rc == 0; i++)
	{
		char *space = strchr(f[i].value, ' ');

		if (space)
			*space++ = '\0';
		rc = roster_add(r, f[i].key, f[i].value, space, path);
	}
	sodium_free(f);
	return rc;
}

int tally_roster_load(tally_roster **out, const char *path)
{
	struct stat st;
	tally_roster *r;
	int rc;

	if (stat(path, &st) < 0)
		return tally_err(TALLY_ENOENT, "roster %s: %s", path, strerror(errno));
	r = calloc(1, sizeof(*r));
	if (!r)
		return TALLY_ENOMEM;
	rc = S_ISDIR(st.st_mode) ? roster_load_dir(r, path) : roster_load_file(r, path);
	if (rc == 0 && r->n == 0)
		rc = tally_err(TALLY_EFORMAT, "roster %s enrolls no worker key", path);
	if (rc) {
		tally_roster_destroy(&r);
		return rc;
	}
	*out = r;
	return 0;
}

void tally_roster_destroy(tally_roster **rp)
{
	if (!rp || !*rp)
		return;
	free((*rp)->e);
	free(*rp);
	*rp = NULL;
}

size_t tally_roster_size(const tally_roster *r)
{
	return r->n;
}

const char *tally_roster_find(const tally_roster *r, const uint8_t pub[32])
{
	const char *found = NULL;

	for (size_t i = 0; i < r->n; i++)
		if (sodium_memcmp(r->e[i].key, pub, 32) == 0)
			found = r->e[i].name;
	return found;
}

const uint8_t *tally_roster_sign_key(const tally_roster *r, const char *name)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->e[i].name, name) == 0)
			return r->e[i].has_sign ? r->e[i].sign : NULL;
	return NULL;
}
