/*
 * Fuzz target for the key-file and roster readers. The input is written to a temporary file of
 * mode 0600 and read back as a key pair, as a public key and as a roster file. Each either fails
 * with an error code or returns keys that are 40-character Z85 strings decoding to 32 bytes; a
 * file that loads as a key pair must also load as a public key with the same key and name, and a
 * loaded roster holds at least one key. Any other outcome aborts.
 */
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "tally/error.h"
#include "tally/keys.h"

static char path[64];

static void remove_file(void)
{
	unlink(path);
}

/* (Re)writes the temporary file with data; created once, mode 0600 by mkstemp. */
static int write_input(const uint8_t *data, size_t size)
{
	int fd;

	if (!path[0]) {
		if (sodium_init() < 0)
			abort();
		snprintf(path, sizeof(path), "/tmp/tally-fuzz-keys.XXXXXX");
		fd = mkstemp(path);
		if (fd < 0)
			return -1;
		atexit(remove_file);
	} else {
		fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
		if (fd < 0)
			return -1;
	}
	while (size > 0) {
		ssize_t w = write(fd, data, size);

		if (w <= 0) {
			close(fd);
			return -1;
		}
		data += w;
		size -= (size_t)w;
	}
	return close(fd);
}

static void check_z85(const char *z85)
{
	uint8_t bin[32];

	if (strlen(z85) != TALLY_Z85_KEY_LEN || !zmq_z85_decode(bin, z85))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tally_keypair *kp = NULL;
	tally_roster *r = NULL;
	char z85[TALLY_Z85_KEY_LEN + 1], name[64];
	int pub_rc;

	if (write_input(data, size) != 0)
		abort();
	pub_rc = tally_pubkey_load(path, z85, name);
	if (pub_rc > 0)
		abort();
	if (pub_rc == 0) {
		check_z85(z85);
		if (name[0] == '\0')
			abort();
	}
	if (tally_keypair_load(&kp, path) == 0) {
		if (!kp || !kp->secret_z85 || pub_rc != 0)
			abort();
		check_z85(kp->public_z85);
		check_z85(kp->secret_z85);
		if (strcmp(kp->public_z85, z85) != 0 || strcmp(kp->name, name) != 0)
			abort();
		tally_keypair_destroy(&kp);
		if (kp)
			abort();
	} else if (kp) {
		abort(); /* *out is set only on success */
	}
	if (tally_roster_load(&r, path) == 0) {
		if (!r || tally_roster_size(r) == 0)
			abort();
		tally_roster_destroy(&r);
	} else if (r) {
		abort();
	}
	return 0;
}
