/*
 * Checkpoint files: a round trip, and every kind of damage detected before use (truncation at
 * every length, any flipped byte, bad magic, lengths that do not add up).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tally/checkpoint.h"
#include "tally/error.h"
#include "tally/fs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/tally-ckpt-XXXXXX";

static void write_sample(const char *path)
{
	float p[5] = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f};

	assert_int_equal(tally_ckpt_write(path, "{\"round\":7}", p, sizeof(p)), 0);
}

static void test_round_trip(void **state)
{
	char path[256], *json = NULL;
	const uint8_t *data;
	uint8_t *buf = NULL;
	size_t len;
	struct stat st;

	(void)state;
	snprintf(path, sizeof(path), "%s/a.ckpt", dir);
	write_sample(path);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(tally_ckpt_read(path, 1 << 20, &buf, &json, &data, &len), 0);
	assert_string_equal(json, "{\"round\":7}");
	assert_int_equal(len, 5 * sizeof(float));
	{
		float third; /* the data need not be aligned: read it as bytes */

		memcpy(&third, data + 2 * sizeof(float), sizeof(third));
		assert_true(third == 3.25f);
	}
	free(json);
	free(buf);
}

static void test_every_truncation_refused(void **state)
{
	char path[256], *json = NULL;
	const uint8_t *data;
	uint8_t *buf = NULL;
	size_t size, len;

	(void)state;
	snprintf(path, sizeof(path), "%s/b.ckpt", dir);
	write_sample(path);
	assert_int_equal(tally_file_read(path, 1 << 20, &buf, &size), 0);
	for (size_t cut = 0; cut < size; cut++) {
		int rc = tally_ckpt_parse(buf, cut, &json, &data, &len);

		assert_true(rc == TALLY_EFORMAT || rc == TALLY_EDIGEST);
		assert_null(json);
	}
	free(buf);
}

static void test_every_flipped_byte_refused(void **state)
{
	char path[256], *json = NULL;
	const uint8_t *data;
	uint8_t *buf = NULL;
	size_t size, len;

	(void)state;
	snprintf(path, sizeof(path), "%s/c.ckpt", dir);
	write_sample(path);
	assert_int_equal(tally_file_read(path, 1 << 20, &buf, &size), 0);
	for (size_t i = 0; i < size; i++) {
		buf[i] ^= 0x20;
		assert_int_not_equal(tally_ckpt_parse(buf, size, &json, &data, &len), 0);
		assert_null(json);
		buf[i] ^= 0x20;
	}
	assert_int_equal(tally_ckpt_parse(buf, size, &json, &data, &len), 0);
	free(json);
	free(buf);
}

static void test_checksum_message(void **state)
{
	char path[256], *json = NULL;
	const uint8_t *data;
	uint8_t *buf = NULL;
	size_t size, len;

	(void)state;
	snprintf(path, sizeof(path), "%s/d.ckpt", dir);
	write_sample(path);
	assert_int_equal(tally_file_read(path, 1 << 20, &buf, &size), 0);
	buf[size - 40] ^= 1; /* inside the data: lengths still add up, only the checksum knows */
	assert_int_equal(tally_ckpt_parse(buf, size, &json, &data, &len), TALLY_EDIGEST);
	assert_non_null(strstr(tally_errmsg(), "checksum"));
	free(buf);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_every_truncation_refused),
		cmocka_unit_test(test_every_flipped_byte_refused),
		cmocka_unit_test(test_checksum_message),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
