/*
 * tally: the user's tool. Dispatches to keygen, sim, plot and inspect.
 */
#include "cli.h"

#include "tally/error.h"
#include "tally/keys.h"
#include "tally/log.h"
#include "tally/model.h"
#include "tally/digest.h"

#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

static void usage(FILE *out)
{
	fprintf(out,
		"usage: tally COMMAND [ARGS]\n\n"
		"Commands:\n"
		"  keygen NAME [--force]     write NAME.key (secret, mode 0600) and NAME.pub (CURVE key pair)\n"
		"  sim [FLAGS]               run a whole federation on this machine (see tally sim --help)\n"
		"  plot METRICS [-o SVG]     draw accuracy and loss per round from a metrics.jsonl file\n"
		"  inspect MODEL             show a model file's architecture, round, run id and digest\n"
		"  help                      this text\n\n"
		"The daemons are tally-coordinator and tally-worker; each has --help.\n");
}

void cli_sibling_path(const char *program, char *out, size_t size)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n > 0) {
		char *slash;

		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			snprintf(out, size, "%s/%s", self, program);
			if (access(out, X_OK) == 0)
				return;
		}
	}
	snprintf(out, size, "%s", program); /* found through PATH by execvp */
}

int cli_keygen(int argc, char **argv)
{
	bool force = false;
	const char *name = NULL;
	char z85[TALLY_Z85_KEY_LEN + 1], path[4096], fp[TALLY_FINGERPRINT_LEN + 1];
	uint8_t pub[32];

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--force") == 0)
			force = true;
		else if (strcmp(argv[i], "--help") == 0)
			return printf("usage: tally keygen NAME [--force]\n\nWrites NAME.key (name, public and "
				      "secret CURVE key; mode 0600) and NAME.pub (name and public key).\n"
				      "NAME may include a folder: tally keygen keys/alice.\n"), 0;
		else if (!name && argv[i][0] != '-')
			name = argv[i];
		else
			return fprintf(stderr, "tally keygen: unexpected argument '%s'\n", argv[i]), 2;
	}
	if (!name)
		return fprintf(stderr, "tally keygen: which NAME? (tally keygen NAME)\n"), 2;
	if (tally_keygen(name, force))
		return fprintf(stderr, "tally keygen: %s\n", tally_errmsg()), 1;
	snprintf(path, sizeof(path), "%s.pub", name);
	if (tally_pubkey_load(path, z85, NULL) || !zmq_z85_decode(pub, z85))
		return fprintf(stderr, "tally keygen: %s\n", tally_errmsg()), 1;
	tally_key_fingerprint(pub, fp);
	printf("wrote %s.key (secret, mode 0600) and %s.pub\nfingerprint %s\n", name, name, fp);
	return 0;
}

int cli_inspect(int argc, char **argv)
{
	tally_model *m = NULL;
	char arch[256], hex[65];
	tally_digest d;

	if (argc != 1 || argv[0][0] == '-')
		return fprintf(stderr, "usage: tally inspect MODEL.safetensors\n"), 2;
	if (tally_model_load(&m, argv[0]))
		return fprintf(stderr, "tally inspect: %s\n", tally_errmsg()), 1;
	tally_model_arch_format(m, arch, sizeof(arch));
	tally_digest_tensor(m->params, m->n_params, TALLY_CHUNK_FLOATS, d, NULL);
	tally_digest_hex(d, sizeof(d), hex);
	printf("file        %s\narchitecture %s (ReLU between layers)\nparameters  %zu\nround       %llu\n"
	       "run id      %s\ndigest      %s\n", argv[0], arch, m->n_params, (unsigned long long)m->round,
	       m->run_id[0] ? m->run_id : "-", hex);
	for (uint32_t l = 0; l < m->n_layers; l++)
		printf("  layers.%u.weight [%u, %u]  layers.%u.bias [%u]\n", l, m->dims[l + 1], m->dims[l], l,
		       m->dims[l + 1]);
	tally_model_destroy(&m);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "help";

	if (sodium_init() < 0)
		return fprintf(stderr, "tally: libsodium failed to initialise\n"), 1;
	tally_log_init("tally", TALLY_LOG_INFO);
	if (strcmp(cmd, "keygen") == 0)
		return cli_keygen(argc - 2, argv + 2);
	if (strcmp(cmd, "sim") == 0)
		return cli_sim(argc - 2, argv + 2);
	if (strcmp(cmd, "plot") == 0)
		return cli_plot(argc - 2, argv + 2);
	if (strcmp(cmd, "inspect") == 0)
		return cli_inspect(argc - 2, argv + 2);
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "tally: unknown command '%s'\n\n", cmd);
	usage(stderr);
	return 2;
}
