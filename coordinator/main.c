/*
 * tally-coordinator: configuration, start-up and shutdown around the event loop in coord.c.
 */
#include "coord.h"

#include "tally/error.h"
#include "tally/log.h"

#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	static coord c;
	tally_log_level level = TALLY_LOG_INFO;
	int rc;

	coord_config_load(&c.cfg, argc, argv);
	if (tally_log_level_parse(c.cfg.log_level, &level)) {
		fprintf(stderr, "tally-coordinator: configuration error: coordinator.log_level: %s\n", tally_errmsg());
		return 2;
	}
	tally_log_init("tally-coordinator", level);
	rc = coord_init(&c);
	if (rc) {
		tally_error("%s", tally_errmsg()[0] ? tally_errmsg() : tally_strerror(rc));
		coord_round_fini(&c);
		coord_fini(&c);
		return rc == TALLY_ECONFIG || rc == TALLY_EACCES || rc == TALLY_ENOENT || rc == TALLY_EFORMAT ? 2 : 1;
	}
	rc = coord_run(&c);
	if (rc)
		tally_error("%s", tally_errmsg());
	coord_round_fini(&c);
	coord_fini(&c);
	return rc ? 1 : 0;
}
