/*
 * tally-worker: configuration, start-up and shutdown around the event loop in worker.c.
 */
#include "worker.h"

#include "tally/error.h"
#include "tally/log.h"
#include "tally/secagg.h"

#include <cblas.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	static worker w;
	tally_log_level level = TALLY_LOG_INFO;
	int rc;

	worker_config_load(&w.cfg, argc, argv);
	if (tally_log_level_parse(w.cfg.log_level, &level)) {
		fprintf(stderr, "tally-worker: configuration error: worker.log_level: %s\n", tally_errmsg());
		return 2;
	}
	tally_log_init("tally-worker", level);
	openblas_set_num_threads((int)w.cfg.threads);
	w.signal_fd = -1;
	rc = worker_init(&w);
	if (rc) {
		tally_error("%s", tally_errmsg()[0] ? tally_errmsg() : tally_strerror(rc));
		worker_fini(&w);
		return rc == TALLY_EIO || rc == TALLY_ESYS || rc == TALLY_ENOMEM ? 1 : 2;
	}
	rc = worker_run(&w);
	if (rc)
		tally_error("%s", tally_errmsg());
	worker_fini(&w);
	tally_sa_vector_pool_drain();
	return rc ? 1 : 0;
}
