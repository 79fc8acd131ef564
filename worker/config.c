/*
 * tally-worker's configuration schema; deploy/worker.toml documents the same keys.
 */
#include "worker.h"

#include "tally/error.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define S(key, flag, field, def, help) \
	{key, flag, TALLY_CFG_STRING, offsetof(worker_config, field), sizeof(((worker_config *)0)->field), 0, 0, def, help}
#define I(key, flag, field, lo, hi, def, help) \
	{key, flag, TALLY_CFG_INT, offsetof(worker_config, field), 0, lo, hi, def, help}
#define D(key, flag, field, lo, hi, def, help) \
	{key, flag, TALLY_CFG_DOUBLE, offsetof(worker_config, field), 0, lo, hi, def, help}
#define B(key, flag, field, def, help) \
	{key, flag, TALLY_CFG_BOOL, offsetof(worker_config, field), 0, 0, 0, def, help}

const tally_cfg_field worker_schema[] = {
	S("worker.name", "name", name, "", "display name (default: the name in the key file, or 'worker')"),
	S("worker.coordinator", "coordinator", coordinator, "tcp://127.0.0.1:7070", "the coordinator's endpoint"),
	S("worker.coordinator_key", "coordinator-key", coordinator_key, "coordinator.pub", "the coordinator's public key file"),
	S("worker.key", "key", key, "worker.key", "this worker's CURVE key file (enrolled with the coordinator)"),
	S("worker.roster", "roster", roster, "", "peers' public keys (folder of .pub files or roster file), for secure aggregation"),
	B("worker.insecure", "insecure", insecure, "false", "plain TCP without CURVE (testing only)"),
	B("worker.data_path", "data-path", data_path, "true", "send masked updates over the coordinator's open data path (checked by digest; --no-data-path: all over CURVE)"),
	S("worker.log_level", "log-level", log_level, "info", "debug, info, warn or error"),
	I("worker.threads", "threads", threads, 1, 256, "1", "OpenBLAS threads used for training"),
	I("worker.reconnect_min_ms", "reconnect-min-ms", reconnect_min_ms, 10, 3600000, "500", "first reconnect delay"),
	I("worker.reconnect_max_ms", "reconnect-max-ms", reconnect_max_ms, 10, 3600000, "30000", "longest reconnect delay (exponential backoff with jitter)"),
	I("worker.hello_timeout_ms", "hello-timeout-ms", hello_timeout_ms, 100, 3600000, "10000", "wait this long for the coordinator's welcome"),
	S("data.format", "format", format, "fmnist", "fmnist (IDX .gz files in data.dir), idx, csv, or none (with --no-train)"),
	S("data.dir", "data-dir", data_dir, "/usr/share/datasets/fashion-mnist", "folder of the Fashion-MNIST IDX files"),
	S("data.images", "images", images, "", "IDX images file (format idx)"),
	S("data.labels", "labels", labels, "", "IDX labels file (format idx)"),
	S("data.csv", "csv", csv, "", "CSV table of features and an integer label (format csv)"),
	I("data.csv_label_column", "csv-label-column", csv_label_column, 0, 1e6, "0", "column holding the label"),
	B("data.csv_header", "csv-header", csv_header, "true", "the CSV's first line is a header"),
	D("data.csv_scale", "csv-scale", csv_scale, -1e30, 1e30, "1", "multiply CSV features by this"),
	S("data.partition", "partition", partition, "0/1", "K/N: use partition K of N of the data"),
	S("data.scheme", "scheme", scheme, "iid", "how data is split: iid, dirichlet:ALPHA or shards:S"),
	I("data.seed", "data-seed", data_seed, 0, 9.2e18, "1", "seed of the partition (the same on every worker)"),
	B("train.skip", "no-train", no_train, "false", "send a synthetic update without training (benchmarks)"),
};
const size_t worker_schema_len = sizeof(worker_schema) / sizeof(worker_schema[0]);

static void usage(void)
{
	printf("usage: tally-worker [--config FILE] [flags]\n\n"
	       "Joins a tally coordinator, trains the global model on local data that never leaves this\n"
	       "machine, and uploads the update. Flags override the TOML file given with --config\n"
	       "(see deploy/worker.toml).\n\n"
	       "  --config FILE              TOML configuration file\n"
	       "  --help                     this text\n");
	tally_cfg_print_help(worker_schema, worker_schema_len, stdout);
	printf("\nExit status: 0 when the run is complete or on SIGTERM/SIGINT, 1 on a runtime failure,\n"
	       "2 on a bad configuration or unusable data.\n");
}

int worker_config_load(worker_config *cfg, int argc, char **argv)
{
	if (tally_cfg_wants_help(argc, argv)) {
		usage();
		exit(0);
	}
	if (tally_cfg_load_argv(worker_schema, worker_schema_len, cfg, argc, argv))
		goto fail;
	if (cfg->reconnect_max_ms < cfg->reconnect_min_ms) {
		tally_err(TALLY_ECONFIG, "worker.reconnect_max_ms is below worker.reconnect_min_ms");
		goto fail;
	}
	return 0;
fail:
	fprintf(stderr, "tally-worker: configuration error: %s\n", tally_errmsg());
	exit(2);
}
