/*
 * keygen_helper: writes CURVE key pairs with tally_keygen for bench/round.sh, for builds in which
 * the `tally keygen` command is not available. Each argument is a PREFIX; PREFIX.key (0600) and
 * PREFIX.pub are written, overwriting old ones.
 *
 * usage: keygen_helper PREFIX...
 */
#include "tally/error.h"
#include "tally/keys.h"

#include <sodium.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: keygen_helper PREFIX...\n");
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "keygen_helper: libsodium failed to initialise\n");
		return 1;
	}
	for (int i = 1; i < argc; i++) {
		int rc = tally_keygen(argv[i], true);

		if (rc) {
			fprintf(stderr, "keygen_helper: %s: %s\n", argv[i],
				tally_errmsg()[0] ? tally_errmsg() : tally_strerror(rc));
			return 1;
		}
	}
	return 0;
}
