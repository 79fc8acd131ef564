/*
 * tally-coordinator's configuration schema: every TOML key, its flag, default, range and help.
 * deploy/coordinator.toml documents the same keys for operators.
 */
#include "coord.h"

#include "tally/error.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define S(key, flag, field, def, help) \
	{key, flag, TALLY_CFG_STRING, offsetof(coord_config, field), sizeof(((coord_config *)0)->field), 0, 0, def, help}
#define I(key, flag, field, lo, hi, def, help) \
	{key, flag, TALLY_CFG_INT, offsetof(coord_config, field), 0, lo, hi, def, help}
#define D(key, flag, field, lo, hi, def, help) \
	{key, flag, TALLY_CFG_DOUBLE, offsetof(coord_config, field), 0, lo, hi, def, help}
#define B(key, flag, field, def, help) \
	{key, flag, TALLY_CFG_BOOL, offsetof(coord_config, field), 0, 0, 0, def, help}

const tally_cfg_field coord_schema[] = {
	S("coordinator.bind", "bind", bind, "tcp://*:7070", "ZeroMQ endpoint to listen on (tcp://HOST:PORT; port * picks a free one)"),
	S("coordinator.data_bind", "data-bind", data_bind, "auto", "open data path for masked updates (plain TCP, checked by digest): tcp://HOST:PORT, auto (bind's host, bind's port + 1, or * when bind's port is *) or off"),
	S("coordinator.state_dir", "state-dir", state_dir, "tally-state", "folder for model.safetensors and metrics.jsonl"),
	S("coordinator.run_id", "run-id", run_id, "", "name of this run (default: random)"),
	B("coordinator.insecure", "insecure", insecure, "false", "plain TCP without CURVE or enrolment (testing only)"),
	S("coordinator.secret_key", "key", secret_key, "coordinator.key", "the coordinator's CURVE key file (from tally keygen)"),
	S("coordinator.enrolled", "enrolled", enrolled, "workers", "folder of enrolled workers' .pub files, or a roster file"),
	S("coordinator.endpoint_file", "endpoint-file", endpoint_file, "", "write the bound endpoint here once listening"),
	I("coordinator.heartbeat_ms", "heartbeat-ms", heartbeat_ms, 50, 600000, "1000", "heartbeat interval, both ways"),
	I("coordinator.patience_ms", "patience-ms", patience_ms, 100, 86400000, "15000", "silence after which a worker is lost"),
	S("coordinator.log_level", "log-level", log_level, "info", "debug, info, warn or error"),
	S("model.arch", "model", arch, "mlp:784-256-128-10", "architecture: mlp:IN-H1-...-CLASSES (mlp:784-10 is softmax regression)"),
	I("model.seed", "model-seed", model_seed, 0, 9.2e18, "1", "seed of the initial weights"),
	S("model.init", "init", init_model, "", "start from this safetensors file instead of random weights"),
	I("rounds.count", "rounds", rounds, 1, 1e9, "20", "rounds to run"),
	D("rounds.target_accuracy", "target-accuracy", target_accuracy, 0, 1, "0", "stop once test accuracy reaches this (0: off)"),
	I("rounds.min_workers", "min-workers", min_workers, 1, 1e6, "2", "live workers needed before the first round starts"),
	D("rounds.fraction", "fraction", fraction, 0, 1, "1", "fraction of live workers selected per round"),
	I("rounds.min_participants", "min-participants", min_participants, 1, 1e6, "2", "at least this many selected per round"),
	I("rounds.max_participants", "max-participants", max_participants, 0, 1e6, "0", "at most this many per round (0: no limit)"),
	I("rounds.quorum", "quorum", quorum, 1, 1e6, "1", "updates needed by the deadline for the round to count"),
	D("rounds.deadline_s", "deadline", deadline_s, 0.1, 86400 * 7, "300", "seconds a round may take"),
	I("rounds.seed", "seed", round_seed, 0, 9.2e18, "1", "seed of participant selection and training order"),
	B("rounds.retry_failed", "retry-failed", retry_failed, "true", "retry a round that fails (same number and seeds) instead of moving on"),
	D("rounds.over_selection", "over-select", over_selection, 0, 10, "0", "select this fraction more workers and close once the planned number of updates is in"),
	D("rounds.max_update_value", "max-update-value", max_update_value, 1e-6, 1e30, "10000", "refuse plain updates holding a value beyond +-this"),
	D("rounds.max_update_norm", "max-update-norm", max_update_norm, 0, 1e30, "0", "refuse plain updates whose L2 norm exceeds this (0: no bound)"),
	I("coordinator.flood_limit", "flood-limit", flood_limit, 1, 1e9, "100", "refused messages within 10 s after which a worker is banned for 60 s"),
	I("rounds.max_inflight_chunks", "max-inflight", max_inflight_chunks, 1, 1024, "8", "4 MiB update chunks in flight at once (bounds memory)"),
	I("train.epochs", "epochs", epochs, 1, 100000, "1", "local epochs per round"),
	I("train.batch_size", "batch-size", batch_size, 1, 65536, "32", "local minibatch size"),
	D("train.lr", "lr", lr, 1e-9, 100, "0.05", "local SGD learning rate"),
	D("train.momentum", "momentum", momentum, 0, 0.999, "0.9", "local SGD momentum"),
	D("train.weight_decay", "weight-decay", weight_decay, 0, 1, "0", "local L2 weight decay"),
	D("train.prox_mu", "prox-mu", prox_mu, 0, 1000, "0", "FedProx proximal term (0: plain FedAvg)"),
	S("eval.images", "eval-images", eval_images, "", "IDX images (.gz) of a held-out set evaluated after every round"),
	S("eval.labels", "eval-labels", eval_labels, "", "IDX labels (.gz) of that held-out set"),
	B("secure_agg.enabled", "secure-agg", secure_agg, "true", "SecAgg+: the coordinator learns only the sum (--no-secure-agg: plain FedAvg)"),
	D("secure_agg.clip", "sa-clip", sa_clip, 1e-6, 1e6, "8", "updates are clipped to [-clip, clip] before quantization"),
	I("secure_agg.quant_range", "sa-quant-range", sa_qrange, 1, 1099511627776.0, "4194304", "quantization levels (2^22)"),
	D("secure_agg.adversarial_fraction", "sa-gamma", sa_gamma, 0, 0.9, "0.05", "assumed fraction of adversarial workers"),
	D("secure_agg.dropout_fraction", "sa-delta", sa_delta, 0, 0.9, "0.1", "tolerated fraction of workers dropping out"),
	B("secure_agg.semi_malicious", "sa-semi-malicious", semi_malicious, "false", "size the graph for a semi-malicious coordinator"),
	D("secure_agg.stage_s", "sa-stage", sa_stage_s, 0.1, 3600, "30", "seconds each key-exchange and unmask stage may take"),
};
const size_t coord_schema_len = sizeof(coord_schema) / sizeof(coord_schema[0]);

static void usage(void)
{
	printf("usage: tally-coordinator [--config FILE] [flags]\n\n"
	       "Runs federated rounds: admits enrolled workers over CURVE, sends them the global model,\n"
	       "aggregates their updates by example-weighted FedAvg and saves the model after every round.\n"
	       "Flags override the TOML file given with --config (see deploy/coordinator.toml).\n\n"
	       "  --config FILE              TOML configuration file\n"
	       "  --help                     this text\n");
	tally_cfg_print_help(coord_schema, coord_schema_len, stdout);
	printf("\nExit status: 0 after the last round or on SIGTERM/SIGINT, 1 on a runtime failure,\n"
	       "2 on a bad configuration.\n");
}

int coord_config_load(coord_config *cfg, int argc, char **argv)
{
	if (tally_cfg_wants_help(argc, argv)) {
		usage();
		exit(0);
	}
	if (tally_cfg_load_argv(coord_schema, coord_schema_len, cfg, argc, argv))
		goto fail;
	if (cfg->max_participants && cfg->max_participants < cfg->min_participants) {
		tally_err(TALLY_ECONFIG, "rounds.max_participants (%lld) is below rounds.min_participants (%lld)",
			  (long long)cfg->max_participants, (long long)cfg->min_participants);
		goto fail;
	}
	if (!cfg->eval_images[0] != !cfg->eval_labels[0]) {
		tally_err(TALLY_ECONFIG, "eval.images and eval.labels must be given together");
		goto fail;
	}
	return 0;
fail:
	fprintf(stderr, "tally-coordinator: configuration error: %s\n", tally_errmsg());
	exit(2);
}
