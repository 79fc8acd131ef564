/*
 * Unit tests for CURVE key files and the roster: keygen's files and modes, refusal to overwrite,
 * loading a key pair back (and checking the secret really is the public key's secret), the
 * permission check, malformed files of every kind, rosters from a folder and from a file, and the
 * fingerprint against a known answer. Every test works in its own mkdtemp folder.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "tally/error.h"
#include "tally/keys.h"

typedef struct fixture {
	char dir[64];
} fixture;

static int setup(void **state)
{
	fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/tally-test-keys.XXXXXX");
	if (!mkdtemp(fx->dir)) {
		free(fx);
		return -1;
	}
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

/* dir/name into buf. */
static const char *join(char *buf, size_t cap, const char *dir, const char *name)
{
	if ((size_t)snprintf(buf, cap, "%s/%s", dir, name) >= cap)
		fail_msg("path too long: %s/%s", dir, name);
	return buf;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	write_file(path, text, strlen(text), mode);
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

static void expect_error(int rc, int code, const char *needle)
{
	if (rc != code || (needle && !strstr(tally_errmsg(), needle)))
		fail_msg("got %d '%s', wanted %d with '%s'", rc, tally_errmsg(), code, needle ? needle : "");
}

/* ---- keygen ---- */

static void test_keygen_writes_both_files(void **state)
{
	fixture *fx = *state;
	char prefix[128], path[160], z85[TALLY_Z85_KEY_LEN + 1], name[64];
	mode_t old = umask(0077); /* the modes are the files', not the umask's */

	join(prefix, sizeof(prefix), fx->dir, "alice");
	assert_int_equal(tally_keygen(prefix, false), 0);
	umask(old);
	snprintf(path, sizeof(path), "%s.key", prefix);
	assert_int_equal(mode_of(path), 0600);
	snprintf(path, sizeof(path), "%s.pub", prefix);
	assert_int_equal(mode_of(path), 0644);
	assert_int_equal(tally_pubkey_load(path, z85, name), 0);
	assert_string_equal(name, "alice");
	assert_int_equal(strlen(z85), TALLY_Z85_KEY_LEN);
	/* no temporary files are left behind */
	snprintf(path, sizeof(path), "%s.key.tmp.%ld", prefix, (long)getpid());
	assert_int_equal(access(path, F_OK), -1);
}

static void test_keygen_refuses_overwrite(void **state)
{
	fixture *fx = *state;
	char prefix[128], path[160], before[TALLY_Z85_KEY_LEN + 1], after[TALLY_Z85_KEY_LEN + 1];

	join(prefix, sizeof(prefix), fx->dir, "bob");
	assert_int_equal(tally_keygen(prefix, false), 0);
	snprintf(path, sizeof(path), "%s.pub", prefix);
	assert_int_equal(tally_pubkey_load(path, before, NULL), 0);
	expect_error(tally_keygen(prefix, false), TALLY_EINVAL, "exists");
	assert_int_equal(tally_pubkey_load(path, after, NULL), 0);
	assert_string_equal(before, after);
	assert_int_equal(tally_keygen(prefix, true), 0);
	assert_int_equal(tally_pubkey_load(path, after, NULL), 0);
	assert_string_not_equal(before, after);
}

/* With only NAME.pub present, keygen must refuse before writing a NAME.key that does not match. */
static void test_keygen_refuses_when_only_pub_exists(void **state)
{
	fixture *fx = *state;
	char prefix[128], path[160];

	join(prefix, sizeof(prefix), fx->dir, "carol");
	snprintf(path, sizeof(path), "%s.pub", prefix);
	write_text(path, "name = \"carol\"\n", 0644);
	expect_error(tally_keygen(prefix, false), TALLY_EINVAL, "exists");
	snprintf(path, sizeof(path), "%s.key", prefix);
	if (access(path, F_OK) == 0)
		fail_msg("keygen refused to overwrite carol.pub but left a new carol.key behind");
}

static void test_keygen_refuses_bad_names(void **state)
{
	fixture *fx = *state;
	char prefix[256];

	expect_error(tally_keygen(join(prefix, sizeof(prefix), fx->dir, "bad name"), false), TALLY_EINVAL,
		     "bad name");
	expect_error(tally_keygen(join(prefix, sizeof(prefix), fx->dir, ""), false), TALLY_EINVAL, NULL);
	memset(prefix, 'a', 200);
	prefix[200] = '\0';
	expect_error(tally_keygen(prefix, false), TALLY_EINVAL, "1-63");
}

/* ---- key pairs ---- */

static void test_keypair_round_trip(void **state)
{
	fixture *fx = *state;
	char prefix[128], path[160], pub[TALLY_Z85_KEY_LEN + 1], derived[TALLY_Z85_KEY_LEN + 1];
	uint8_t secret[32], public_bin[32];
	tally_keypair *kp = NULL;

	join(prefix, sizeof(prefix), fx->dir, "dora.v2");
	assert_int_equal(tally_keygen(prefix, false), 0);
	snprintf(path, sizeof(path), "%s.pub", prefix);
	assert_int_equal(tally_pubkey_load(path, pub, NULL), 0);
	snprintf(path, sizeof(path), "%s.key", prefix);
	assert_int_equal(tally_keypair_load(&kp, path), 0);
	assert_non_null(kp);
	assert_string_equal(kp->name, "dora.v2");
	assert_string_equal(kp->public_z85, pub);
	assert_int_equal(strlen(kp->secret_z85), TALLY_Z85_KEY_LEN);
	assert_non_null(zmq_z85_decode(secret, kp->secret_z85));
	assert_non_null(zmq_z85_decode(public_bin, kp->public_z85));
	assert_int_equal(zmq_curve_public(derived, kp->secret_z85), 0);
	assert_string_equal(derived, kp->public_z85);
	sodium_memzero(secret, sizeof(secret));
	/* the .key file also serves as a public key file */
	assert_int_equal(tally_pubkey_load(path, derived, NULL), 0);
	assert_string_equal(derived, pub);
	tally_keypair_destroy(&kp);
	assert_null(kp);
	tally_keypair_destroy(&kp);
	tally_keypair_destroy(NULL);
}

static void test_keypair_refuses_open_permissions(void **state)
{
	fixture *fx = *state;
	char prefix[128], path[160];
	static const mode_t bad[] = {0644, 0640, 0604, 0660, 0602, 0610};
	tally_keypair *kp = NULL;

	join(prefix, sizeof(prefix), fx->dir, "erin");
	assert_int_equal(tally_keygen(prefix, false), 0);
	snprintf(path, sizeof(path), "%s.key", prefix);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(chmod(path, bad[i]), 0);
		expect_error(tally_keypair_load(&kp, path), TALLY_EACCES, "chmod 600");
		assert_non_null(strstr(tally_errmsg(), path));
		assert_null(kp);
	}
	assert_int_equal(chmod(path, 0400), 0);
	assert_int_equal(tally_keypair_load(&kp, path), 0);
	tally_keypair_destroy(&kp);
	expect_error(tally_keypair_load(&kp, "/nonexistent/tally/x.key"), TALLY_ENOENT, "x.key");
	assert_null(kp);
}

/* A .key file made of lines, each writing the real public and secret keys unless replaced. */
static void write_keyfile(const char *path, const char *body)
{
	write_text(path, body, 0600);
}

static void test_keypair_refuses_malformed(void **state)
{
	fixture *fx = *state;
	char path[160], pub[TALLY_Z85_KEY_LEN + 1], sec[TALLY_Z85_KEY_LEN + 1], text[512];
	char badpub[TALLY_Z85_KEY_LEN + 1];
	tally_keypair *kp = NULL;

	assert_int_equal(zmq_curve_keypair(pub, sec), 0);
	join(path, sizeof(path), fx->dir, "m.key");

	/* the well-formed file, for contrast */
	snprintf(text, sizeof(text), "# c\nname = \"m\"\npublic-key = \"%s\"\nsecret-key = \"%s\"\n", pub, sec);
	write_keyfile(path, text);
	assert_int_equal(tally_keypair_load(&kp, path), 0);
	assert_string_equal(kp->secret_z85, sec);
	tally_keypair_destroy(&kp);

	snprintf(text, sizeof(text), "name = \"m\"\npublic-key = \"%s\"\n", pub);
	write_keyfile(path, text);
	expect_error(tally_keypair_load(&kp, path), TALLY_EFORMAT, "secret-key");
	assert_null(kp);

	snprintf(text, sizeof(text), "public-key = \"%s\"\nsecret-key = \"%s\"\n", pub, sec);
	write_keyfile(path, text);
	expect_error(tally_keypair_load(&kp, path), TALLY_EFORMAT, "name");

	memcpy(badpub, pub, sizeof(badpub));
	badpub[7] = '~'; /* not in the Z85 alphabet */
	snprintf(text, sizeof(text), "name = \"m\"\npublic-key = \"%s\"\nsecret-key = \"%s\"\n", badpub, sec);
	write_keyfile(path, text);
	expect_error(tally_keypair_load(&kp, path), TALLY_EFORMAT, "public-key");

	snprintf(text, sizeof(text), "name = \"m\"\npublic-key = \"%s\"\nsecret-key = \"%.39s\"\n", pub, sec);
	write_keyfile(path, text);
	expect_error(tally_keypair_load(&kp, path), TALLY_EFORMAT, "secret-key is not a 40-character");

	snprintf(text, sizeof(text), "name = \"m\"\npublic-key = %s\nsecret-key = \"%s\"\n", pub, sec);
	write_keyfile(path, text);
	expect_error(tally_keypair_load(&kp, path), TALLY_EFORMAT, "m.key:2:");

	snprintf(text, sizeof(text), "name = \"m\"\nthis is not a key line\n");
	write_keyfile(path, text);
	expect_error(tally_keypair_load(&kp, path), TALLY_EFORMAT, "m.key:2:");

	snprintf(text, sizeof(text), "name = \"bad name\"\npublic-key = \"%s\"\nsecret-key = \"%s\"\n", pub, sec);
	write_keyfile(path, text);
	expect_error(tally_keypair_load(&kp, path), TALLY_EFORMAT, NULL);

	/* binary: a NUL inside the file */
	snprintf(text, sizeof(text), "name = \"m\"\npublic-key = \"%s\"\nsecret-key = \"%s\"\n", pub, sec);
	text[3] = '\0';
	write_file(path, text, 40, 0600);
	expect_error(tally_keypair_load(&kp, path), TALLY_EFORMAT, "binary");
	assert_null(kp);
}

/* A message names the line as the file counts it: blank lines count too. */
static void test_keyfile_line_numbers_count_blank_lines(void **state)
{
	fixture *fx = *state;
	char path[160];
	tally_keypair *kp = NULL;

	join(path, sizeof(path), fx->dir, "lines.key");
	write_keyfile(path, "name = \"m\"\n\n\nbroken line\n");
	expect_error(tally_keypair_load(&kp, path), TALLY_EFORMAT, "lines.key:4:");
}

static void test_keypair_refuses_large_file(void **state)
{
	fixture *fx = *state;
	char path[160], pub[TALLY_Z85_KEY_LEN + 1], name[64];
	char *big = malloc(8192);
	tally_keypair *kp = NULL;

	assert_non_null(big);
	memset(big, '#', 8191);
	for (size_t i = 100; i < 8191; i += 100)
		big[i] = '\n';
	big[8191] = '\0';
	join(path, sizeof(path), fx->dir, "big.key");
	write_keyfile(path, big);
	expect_error(tally_keypair_load(&kp, path), TALLY_ETOOBIG, "big.key");
	assert_null(kp);
	expect_error(tally_pubkey_load(path, pub, name), TALLY_ETOOBIG, "big.key");
	free(big);
}

static void test_pubkey_load(void **state)
{
	fixture *fx = *state;
	char path[160], pub[TALLY_Z85_KEY_LEN + 1], sec[TALLY_Z85_KEY_LEN + 1], text[256];
	char got[TALLY_Z85_KEY_LEN + 1], name[64];

	assert_int_equal(zmq_curve_keypair(pub, sec), 0);
	join(path, sizeof(path), fx->dir, "w1.pub");
	snprintf(text, sizeof(text), "  # indented comment\r\nname=\"w-1\"\r\n\tpublic-key =  \"%s\"  \r\n", pub);
	write_text(path, text, 0644);
	memset(name, 'x', sizeof(name));
	assert_int_equal(tally_pubkey_load(path, got, name), 0);
	assert_string_equal(got, pub);
	assert_string_equal(name, "w-1");

	snprintf(text, sizeof(text), "public-key = \"%s\"\n", pub);
	write_text(path, text, 0644);
	expect_error(tally_pubkey_load(path, got, name), TALLY_EFORMAT, "name");
	write_text(path, "name = \"w\"\npublic-key = \"short\"\n", 0644);
	expect_error(tally_pubkey_load(path, got, name), TALLY_EFORMAT, "Z85");
	expect_error(tally_pubkey_load("/nonexistent/tally/x.pub", got, name), TALLY_ENOENT, "x.pub");
}

/* ---- roster ---- */

static void gen_pub(const char *dir, const char *name, char z85[TALLY_Z85_KEY_LEN + 1])
{
	char prefix[128], path[160];

	join(prefix, sizeof(prefix), dir, name);
	assert_int_equal(tally_keygen(prefix, false), 0);
	snprintf(path, sizeof(path), "%s.pub", prefix);
	assert_int_equal(tally_pubkey_load(path, z85, NULL), 0);
}

static void test_roster_from_folder(void **state)
{
	fixture *fx = *state;
	static const char *const names[3] = {"w0", "w1", "w2"};
	char z85[3][TALLY_Z85_KEY_LEN + 1], other[TALLY_Z85_KEY_LEN + 1], sec[TALLY_Z85_KEY_LEN + 1];
	char path[160];
	uint8_t bin[32];
	tally_roster *r = NULL;

	for (int i = 0; i < 3; i++)
		gen_pub(fx->dir, names[i], z85[i]);
	/* hidden files and other extensions are not part of the roster */
	write_text(join(path, sizeof(path), fx->dir, ".hidden.pub"), "garbage", 0644);
	write_text(join(path, sizeof(path), fx->dir, "notes.txt"), "garbage", 0644);
	assert_int_equal(tally_roster_load(&r, fx->dir), 0);
	assert_int_equal(tally_roster_size(r), 3);
	for (int i = 0; i < 3; i++) {
		const char *found;

		assert_non_null(zmq_z85_decode(bin, z85[i]));
		found = tally_roster_find(r, bin);
		assert_non_null(found);
		assert_string_equal(found, names[i]);
	}
	assert_int_equal(zmq_curve_keypair(other, sec), 0);
	assert_non_null(zmq_z85_decode(bin, other));
	assert_null(tally_roster_find(r, bin));
	tally_roster_destroy(&r);
	assert_null(r);
	tally_roster_destroy(&r);

	/* a broken .pub in the folder fails the whole roster */
	write_text(join(path, sizeof(path), fx->dir, "broken.pub"), "name = \"broken\"\n", 0644);
	expect_error(tally_roster_load(&r, fx->dir), TALLY_EFORMAT, "broken.pub");
	assert_null(r);
}

static void test_roster_from_file(void **state)
{
	fixture *fx = *state;
	char z85[3][TALLY_Z85_KEY_LEN + 1], sec[TALLY_Z85_KEY_LEN + 1], path[160], text[512];
	uint8_t bin[32];
	tally_roster *r = NULL;

	for (int i = 0; i < 3; i++)
		assert_int_equal(zmq_curve_keypair(z85[i], sec), 0);
	snprintf(text, sizeof(text), "# enrolled workers\n\nalpha = \"%s\"\n  beta.2 = \"%s\"\n# gamma\n", z85[0],
		 z85[1]);
	join(path, sizeof(path), fx->dir, "roster");
	write_text(path, text, 0644);
	assert_int_equal(tally_roster_load(&r, path), 0);
	assert_int_equal(tally_roster_size(r), 2);
	assert_non_null(zmq_z85_decode(bin, z85[0]));
	assert_string_equal(tally_roster_find(r, bin), "alpha");
	assert_non_null(zmq_z85_decode(bin, z85[1]));
	assert_string_equal(tally_roster_find(r, bin), "beta.2");
	assert_non_null(zmq_z85_decode(bin, z85[2]));
	assert_null(tally_roster_find(r, bin));
	bin[0] ^= 1;
	assert_null(tally_roster_find(r, bin));
	tally_roster_destroy(&r);

	snprintf(text, sizeof(text), "alpha = \"%s\"\nbroken = \"%.20s\"\n", z85[0], z85[1]);
	write_text(path, text, 0644);
	expect_error(tally_roster_load(&r, path), TALLY_EFORMAT, "broken");
	assert_null(r);
}

static void test_roster_refuses_duplicates(void **state)
{
	fixture *fx = *state;
	char z85[2][TALLY_Z85_KEY_LEN + 1], sec[TALLY_Z85_KEY_LEN + 1], path[160], text[512], sub[160];
	tally_roster *r = NULL;

	for (int i = 0; i < 2; i++)
		assert_int_equal(zmq_curve_keypair(z85[i], sec), 0);
	join(path, sizeof(path), fx->dir, "roster");
	snprintf(text, sizeof(text), "same = \"%s\"\nsame = \"%s\"\n", z85[0], z85[1]);
	write_text(path, text, 0644);
	expect_error(tally_roster_load(&r, path), TALLY_EFORMAT, "twice");
	assert_null(r);
	snprintf(text, sizeof(text), "one = \"%s\"\ntwo = \"%s\"\n", z85[0], z85[0]);
	write_text(path, text, 0644);
	expect_error(tally_roster_load(&r, path), TALLY_EFORMAT, "twice");
	assert_null(r);

	/* in a folder: the same key under two file names */
	join(sub, sizeof(sub), fx->dir, "dir");
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(text, sizeof(text), "name = \"a\"\npublic-key = \"%s\"\n", z85[0]);
	write_text(join(path, sizeof(path), sub, "a.pub"), text, 0644);
	snprintf(text, sizeof(text), "name = \"b\"\npublic-key = \"%s\"\n", z85[0]);
	write_text(join(path, sizeof(path), sub, "b.pub"), text, 0644);
	expect_error(tally_roster_load(&r, sub), TALLY_EFORMAT, "twice");
	assert_null(r);
}

static void test_roster_refuses_empty(void **state)
{
	fixture *fx = *state;
	char path[160], sub[160];
	tally_roster *r = NULL;

	join(path, sizeof(path), fx->dir, "empty");
	write_text(path, "", 0644);
	expect_error(tally_roster_load(&r, path), TALLY_EFORMAT, "no worker");
	write_text(path, "# nobody yet\n\n", 0644);
	expect_error(tally_roster_load(&r, path), TALLY_EFORMAT, "no worker");
	join(sub, sizeof(sub), fx->dir, "emptydir");
	assert_int_equal(mkdir(sub, 0700), 0);
	expect_error(tally_roster_load(&r, sub), TALLY_EFORMAT, "no worker");
	expect_error(tally_roster_load(&r, "/nonexistent/tally/roster"), TALLY_ENOENT, "roster");
	assert_null(r);
}

/* ---- fingerprint ---- */

static void test_fingerprint_known_answer(void **state)
{
	uint8_t key[32], h[32];
	char fp[TALLY_FINGERPRINT_LEN + 1], want[TALLY_FINGERPRINT_LEN + 1];

	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)i;
	memset(fp, 'x', sizeof(fp));
	tally_key_fingerprint(key, fp);
	assert_int_equal(strlen(fp), TALLY_FINGERPRINT_LEN);
	assert_int_equal(strspn(fp, "0123456789abcdef"), TALLY_FINGERPRINT_LEN);
	crypto_generichash(h, sizeof(h), key, sizeof(key), NULL, 0);
	sodium_bin2hex(want, sizeof(want), h, 16);
	assert_string_equal(fp, want);
	/* python3: hashlib.blake2b(bytes(range(32)), digest_size=32).hexdigest()[:32] */
	assert_string_equal(fp, "cb2f5160fc1f7e05a55ef49d340b48da");
	key[31] ^= 0x80;
	tally_key_fingerprint(key, want);
	assert_string_not_equal(fp, want);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_keygen_writes_both_files),
		T(test_keygen_refuses_overwrite),
		T(test_keygen_refuses_when_only_pub_exists),
		T(test_keygen_refuses_bad_names),
		T(test_keypair_round_trip),
		T(test_keypair_refuses_open_permissions),
		T(test_keypair_refuses_malformed),
		T(test_keyfile_line_numbers_count_blank_lines),
		T(test_keypair_refuses_large_file),
		T(test_pubkey_load),
		T(test_roster_from_folder),
		T(test_roster_from_file),
		T(test_roster_refuses_duplicates),
		T(test_roster_refuses_empty),
		T(test_fingerprint_known_answer),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
