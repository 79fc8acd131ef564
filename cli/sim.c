/*
 * tally sim: a whole federation on one machine. Makes fresh CURVE keys for a coordinator and N
 * workers, starts them as separate processes on loopback, follows metrics.jsonl with a progress
 * bar and a line per round, and leaves metrics.jsonl, model.safetensors, accuracy.svg and the
 * processes' logs in the output folder.
 */
#include "cli.h"

#include "tally/config.h"
#include "tally/error.h"
#include "tally/fs.h"
#include "tally/keys.h"
#include "tally/plot.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct sim_config {
	int64_t workers, rounds, seed, epochs, batch_size, quorum;
	char partition[64], model[256], out[1024], data_dir[1024];
	double lr, momentum, deadline, fraction, target_accuracy, prox_mu;
	bool insecure, secure_agg;
} sim_config;

#define S(key, field, def, help) \
	{key, key, TALLY_CFG_STRING, offsetof(sim_config, field), sizeof(((sim_config *)0)->field), 0, 0, def, help}
#define I(key, field, lo, hi, def, help) {key, key, TALLY_CFG_INT, offsetof(sim_config, field), 0, lo, hi, def, help}
#define D(key, field, lo, hi, def, help) {key, key, TALLY_CFG_DOUBLE, offsetof(sim_config, field), 0, lo, hi, def, help}
#define B(key, field, def, help) {key, key, TALLY_CFG_BOOL, offsetof(sim_config, field), 0, 0, 0, def, help}

static const tally_cfg_field sim_schema[] = {
	I("workers", workers, 1, 256, "10", "worker processes"),
	I("rounds", rounds, 1, 100000, "25", "federated rounds"),
	S("partition", partition, "dirichlet:0.5", "how the training set is split: iid, dirichlet:ALPHA or shards:S"),
	S("model", model, "mlp", "mlp (784-256-128-10), softmax (784-10) or mlp:784-...-10"),
	I("seed", seed, 0, 9.2e18, "1", "seed of the partition, initial weights, selection and training order"),
	S("out", out, "tally-sim", "output folder"),
	S("data-dir", data_dir, "/usr/share/datasets/fashion-mnist", "folder of the Fashion-MNIST IDX .gz files"),
	I("epochs", epochs, 1, 1000, "2", "local epochs per round"),
	I("batch-size", batch_size, 1, 65536, "32", "local minibatch size"),
	D("lr", lr, 1e-9, 100, "0.05", "local learning rate"),
	D("momentum", momentum, 0, 0.999, "0.9", "local SGD momentum"),
	D("prox-mu", prox_mu, 0, 1000, "0", "FedProx proximal term (0: FedAvg)"),
	D("fraction", fraction, 0, 1, "1", "fraction of workers selected per round"),
	I("quorum", quorum, 0, 256, "0", "updates a round needs (0: half the selected workers)"),
	D("deadline", deadline, 1, 86400, "120", "seconds a round may take"),
	D("target-accuracy", target_accuracy, 0, 1, "0", "stop once test accuracy reaches this (0: off)"),
	B("secure-agg", secure_agg, "true", "SecAgg+ secure aggregation (--no-secure-agg: plain FedAvg)"),
	B("insecure", insecure, "false", "plain TCP instead of CURVE (not recommended)"),
};
#define SIM_N (sizeof(sim_schema) / sizeof(sim_schema[0]))

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void sim_usage(void)
{
	printf("usage: tally sim [flags]\n\n"
	       "Runs a federation on this machine: a coordinator and N workers as separate processes on\n"
	       "loopback, with fresh CURVE keys, training on Fashion-MNIST split among the workers.\n"
	       "Writes OUT/metrics.jsonl, OUT/model.safetensors, OUT/accuracy.svg and OUT/logs/.\n\n");
	for (size_t i = 0; i < SIM_N; i++) {
		char left[48];

		snprintf(left, sizeof(left), "--%s%s", sim_schema[i].flag,
			 sim_schema[i].type == TALLY_CFG_BOOL ? "" : sim_schema[i].type == TALLY_CFG_STRING ? " TEXT" : " N");
		printf("  %-22s %s (default %s)\n", left, sim_schema[i].help, sim_schema[i].def);
	}
}

static const char *model_arch(const char *m)
{
	if (strcmp(m, "mlp") == 0)
		return "mlp:784-256-128-10";
	if (strcmp(m, "softmax") == 0)
		return "mlp:784-10";
	return m;
}

/* ---- processes ---- */

static pid_t spawn(char *const *argv, const char *log_path)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd >= 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
	}
	setenv("OPENBLAS_NUM_THREADS", "1", 1);
	signal(SIGINT, SIG_IGN); /* the sim forwards a SIGTERM instead */
	execvp(argv[0], argv);
	fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

typedef struct sim {
	sim_config cfg;
	char keys[1100], enrolled[1100], logs[1100];
	pid_t coord;
	pid_t *workers;
	int *worker_status;
	bool *worker_done;
} sim;

static int make_keys(sim *s)
{
	char prefix[1200], from[1300], to[1300];
	int rc;

	snprintf(s->keys, sizeof(s->keys), "%s/keys", s->cfg.out);
	snprintf(s->enrolled, sizeof(s->enrolled), "%s/keys/enrolled", s->cfg.out);
	if ((rc = tally_mkdir_p(s->enrolled, 0700)))
		return rc;
	snprintf(prefix, sizeof(prefix), "%s/coordinator", s->keys);
	if ((rc = tally_keygen(prefix, true)))
		return rc;
	for (int64_t k = 0; k < s->cfg.workers; k++) {
		snprintf(prefix, sizeof(prefix), "%s/worker-%lld", s->keys, (long long)k);
		if ((rc = tally_keygen(prefix, true)))
			return rc;
		snprintf(from, sizeof(from), "%s.pub", prefix);
		snprintf(to, sizeof(to), "%s/worker-%lld.pub", s->enrolled, (long long)k);
		if (link(from, to) < 0 && (errno != EEXIST || (unlink(to) == 0 && link(from, to) < 0)))
			return tally_err(TALLY_EIO, "cannot enroll %s: %s", from, strerror(errno));
	}
	return 0;
}

static void clear_previous(const sim *s)
{
	static const char *const files[] = {"metrics.jsonl", "model.safetensors", "accuracy.svg", "endpoint"};
	char path[1300];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", s->cfg.out, files[i]);
		unlink(path);
	}
	for (int k = 0; k < 256; k++) {
		snprintf(path, sizeof(path), "%s/keys/enrolled/worker-%d.pub", s->cfg.out, k);
		unlink(path);
	}
}

#define ARG(...) (snprintf(buf[n], sizeof(buf[n]), __VA_ARGS__), argv[n] = buf[n], n++)

static int start_coordinator(sim *s)
{
	static char buf[40][1300];
	char *argv[41], log[1300];
	int n = 0;
	int64_t quorum = s->cfg.quorum ? s->cfg.quorum : (s->cfg.workers + 1) / 2;

	cli_sibling_path("tally-coordinator", buf[n], sizeof(buf[n]));
	argv[n] = buf[n];
	n++;
	ARG("--bind=tcp://127.0.0.1:*");
	ARG("--endpoint-file=%s/endpoint", s->cfg.out);
	ARG("--state-dir=%s", s->cfg.out);
	ARG("--run-id=sim-%lld", (long long)s->cfg.seed);
	ARG("--model=%s", model_arch(s->cfg.model));
	ARG("--model-seed=%lld", (long long)s->cfg.seed);
	ARG("--seed=%lld", (long long)s->cfg.seed);
	ARG("--rounds=%lld", (long long)s->cfg.rounds);
	ARG("--min-workers=%lld", (long long)s->cfg.workers);
	ARG("--min-participants=%lld", (long long)(quorum < s->cfg.workers ? quorum : s->cfg.workers));
	ARG("--fraction=%.17g", s->cfg.fraction);
	ARG("--quorum=%lld", (long long)quorum);
	ARG("--deadline=%.17g", s->cfg.deadline);
	ARG("--target-accuracy=%.17g", s->cfg.target_accuracy);
	ARG("--epochs=%lld", (long long)s->cfg.epochs);
	ARG("--batch-size=%lld", (long long)s->cfg.batch_size);
	ARG("--lr=%.17g", s->cfg.lr);
	ARG("--momentum=%.17g", s->cfg.momentum);
	ARG("--prox-mu=%.17g", s->cfg.prox_mu);
	ARG("--eval-images=%s/t10k-images-idx3-ubyte.gz", s->cfg.data_dir);
	ARG("--eval-labels=%s/t10k-labels-idx1-ubyte.gz", s->cfg.data_dir);
	ARG("--%s", s->cfg.secure_agg ? "secure-agg" : "no-secure-agg");
	if (s->cfg.insecure) {
		ARG("--insecure");
	} else {
		ARG("--key=%s/coordinator.key", s->keys);
		ARG("--enrolled=%s", s->enrolled);
	}
	argv[n] = NULL;
	snprintf(log, sizeof(log), "%s/coordinator.log", s->logs);
	s->coord = spawn(argv, log);
	return s->coord > 0 ? 0 : tally_err(TALLY_ESYS, "fork failed");
}

static int start_worker(sim *s, int64_t k, const char *endpoint)
{
	static char buf[20][1300];
	char *argv[21], log[1300];
	int n = 0;

	cli_sibling_path("tally-worker", buf[n], sizeof(buf[n]));
	argv[n] = buf[n];
	n++;
	ARG("--coordinator=%s", endpoint);
	ARG("--name=worker-%lld", (long long)k);
	ARG("--partition=%lld/%lld", (long long)k, (long long)s->cfg.workers);
	ARG("--scheme=%s", s->cfg.partition);
	ARG("--data-seed=%lld", (long long)s->cfg.seed);
	ARG("--data-dir=%s", s->cfg.data_dir);
	/* Keys always: in --insecure mode they still give secure aggregation its identities. */
	ARG("--key=%s/worker-%lld.key", s->keys, (long long)k);
	ARG("--roster=%s", s->enrolled);
	if (s->cfg.insecure)
		ARG("--insecure");
	else
		ARG("--coordinator-key=%s/coordinator.pub", s->keys);
	argv[n] = NULL;
	snprintf(log, sizeof(log), "%s/worker-%lld.log", s->logs, (long long)k);
	s->workers[k] = spawn(argv, log);
	return s->workers[k] > 0 ? 0 : tally_err(TALLY_ESYS, "fork failed");
}

/* Waits for the coordinator to write its endpoint file. */
static int read_endpoint(sim *s, char *ep, size_t size)
{
	char path[1300];

	snprintf(path, sizeof(path), "%s/endpoint", s->cfg.out);
	for (int i = 0; i < 600 && !interrupted; i++) {
		FILE *f = fopen(path, "r");
		int status;

		if (f) {
			bool ok = fgets(ep, (int)size, f) != NULL;

			fclose(f);
			ep[strcspn(ep, "\n")] = '\0';
			if (ok && ep[0])
				return 0;
		}
		if (waitpid(s->coord, &status, WNOHANG) == s->coord) {
			s->coord = 0;
			return tally_err(TALLY_ESYS, "the coordinator exited at start-up; see %s/coordinator.log", s->logs);
		}
		usleep(100000);
	}
	return tally_err(TALLY_ETIMEOUT, "the coordinator did not start listening within 60 s");
}

/* ---- following the run ---- */

typedef struct follow {
	long offset;
	int64_t rounds_seen;
	double last_accuracy;
	bool tty;
} follow;

static void draw_bar(const sim *s, const follow *f)
{
	int width = 30, done = (int)(width * f->rounds_seen / s->cfg.rounds);

	if (!f->tty)
		return;
	fprintf(stderr, "\r[");
	for (int i = 0; i < width; i++)
		fputc(i < done ? '#' : '.', stderr);
	fprintf(stderr, "] round %lld/%lld", (long long)f->rounds_seen, (long long)s->cfg.rounds);
	fflush(stderr);
}

static void print_round(const sim *s, follow *f, const char *line)
{
	json_t *o = json_loads(line, 0, NULL);
	json_t *acc = o ? json_object_get(o, "accuracy") : NULL, *loss = o ? json_object_get(o, "loss") : NULL;
	char acc_s[16] = "  -   ", loss_s[16] = "  -   ";

	if (!o)
		return;
	if (f->tty)
		fprintf(stderr, "\r\033[K");
	f->rounds_seen = json_integer_value(json_object_get(o, "round"));
	if (json_is_number(acc)) {
		f->last_accuracy = json_number_value(acc);
		snprintf(acc_s, sizeof(acc_s), "%.4f", f->last_accuracy);
	}
	if (json_is_number(loss))
		snprintf(loss_s, sizeof(loss_s), "%.4f", json_number_value(loss));
	printf("round %3lld/%lld  accuracy %s  loss %s  participants %lld/%lld  %5.1f s%s\n",
	       (long long)f->rounds_seen, (long long)s->cfg.rounds, acc_s, loss_s,
	       (long long)json_integer_value(json_object_get(o, "updates")),
	       (long long)json_integer_value(json_object_get(o, "participants")),
	       json_number_value(json_object_get(o, "seconds")),
	       json_is_true(json_object_get(o, "applied")) ? "" : "  (not applied: model unchanged)");
	fflush(stdout);
	json_decref(o);
}

/* Prints every complete new line of metrics.jsonl. */
static void poll_metrics(const sim *s, follow *f)
{
	char path[1300], line[8192];
	FILE *m;

	snprintf(path, sizeof(path), "%s/metrics.jsonl", s->cfg.out);
	m = fopen(path, "r");
	if (!m)
		return;
	fseek(m, f->offset, SEEK_SET);
	while (fgets(line, sizeof(line), m)) {
		if (!strchr(line, '\n'))
			break; /* partial line: read it next time */
		f->offset += (long)strlen(line);
		print_round(s, f, line);
	}
	fclose(m);
	draw_bar(s, f);
}

/* Reaps exited workers; returns how many are still running. */
static int64_t reap_workers(sim *s)
{
	int64_t running = 0;

	for (int64_t k = 0; k < s->cfg.workers; k++) {
		if (s->worker_done[k])
			continue;
		if (waitpid(s->workers[k], &s->worker_status[k], WNOHANG) == s->workers[k])
			s->worker_done[k] = true;
		else
			running++;
	}
	return running;
}

static void stop_all(sim *s, int sig)
{
	if (s->coord > 0)
		kill(s->coord, sig);
	for (int64_t k = 0; k < s->cfg.workers; k++)
		if (s->workers[k] > 0 && !s->worker_done[k])
			kill(s->workers[k], sig);
}

/* Follows the run until the coordinator exits; returns its exit status or -1. */
static int follow_run(sim *s)
{
	follow f = {.tty = isatty(STDERR_FILENO)};
	int status = -1;
	bool term_sent = false;

	for (;;) {
		poll_metrics(s, &f);
		if (waitpid(s->coord, &status, WNOHANG) == s->coord)
			break;
		if (interrupted && !term_sent) {
			fprintf(stderr, "\ninterrupted: stopping the federation\n");
			stop_all(s, SIGTERM);
			term_sent = true;
		}
		if (!term_sent && reap_workers(s) < s->cfg.workers && f.rounds_seen < s->cfg.rounds) {
			for (int64_t k = 0; k < s->cfg.workers; k++)
				if (s->worker_done[k])
					fprintf(stderr, "\nworker %lld exited early; see %s/worker-%lld.log\n", (long long)k,
						s->logs, (long long)k);
			stop_all(s, SIGTERM);
			term_sent = true;
		}
		usleep(200000);
	}
	s->coord = 0;
	poll_metrics(s, &f);
	if (f.tty)
		fprintf(stderr, "\n");
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Gives the workers a few seconds to leave after the coordinator's goodbye, then ends them. */
static void finish_workers(sim *s)
{
	for (int i = 0; i < 100 && reap_workers(s) > 0; i++)
		usleep(100000);
	if (reap_workers(s) > 0) {
		stop_all(s, SIGKILL);
		while (reap_workers(s) > 0)
			usleep(10000);
	}
}

static int render_plot(const sim *s)
{
	char metrics[1300], svg[1300], title[600];
	tally_metrics_row *rows = NULL;
	size_t n = 0;
	int rc;

	snprintf(metrics, sizeof(metrics), "%s/metrics.jsonl", s->cfg.out);
	snprintf(svg, sizeof(svg), "%s/accuracy.svg", s->cfg.out);
	snprintf(title, sizeof(title), "tally sim: %lld workers, %s, %s", (long long)s->cfg.workers,
		 s->cfg.partition, model_arch(s->cfg.model));
	rc = tally_metrics_load(metrics, &rows, &n);
	if (rc == 0)
		rc = tally_plot_svg(rows, n, title, svg);
	free(rows);
	return rc;
}

static int run(sim *s)
{
	char endpoint[300];
	int rc, status;

	snprintf(s->logs, sizeof(s->logs), "%s/logs", s->cfg.out);
	if ((rc = tally_mkdir_p(s->logs, 0755)))
		return rc;
	clear_previous(s);
	if ((rc = make_keys(s)))
		return rc;
	if ((rc = start_coordinator(s)) || (rc = read_endpoint(s, endpoint, sizeof(endpoint))))
		return rc;
	printf("tally sim: coordinator on %s%s, %lld workers, %s partitions, %s, %lld rounds, %s\n", endpoint,
	       s->cfg.insecure ? " (INSECURE)" : " (CURVE)", (long long)s->cfg.workers, s->cfg.partition,
	       model_arch(s->cfg.model), (long long)s->cfg.rounds,
	       s->cfg.secure_agg ? "secure aggregation" : "plain FedAvg (no secure aggregation)");
	for (int64_t k = 0; k < s->cfg.workers; k++)
		if ((rc = start_worker(s, k, endpoint)))
			return rc;
	status = follow_run(s);
	finish_workers(s);
	if (status != 0)
		return tally_err(TALLY_ESYS, "the coordinator exited with status %d; see %s/coordinator.log", status, s->logs);
	if (interrupted)
		return tally_err(TALLY_ESTOPPED, "interrupted");
	return render_plot(s);
}

int cli_sim(int argc, char **argv)
{
	sim s = {0};
	int rest, rc;

	for (int i = 0; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return sim_usage(), 0;
	if (tally_cfg_defaults(sim_schema, SIM_N, &s.cfg) ||
	    tally_cfg_apply_flags(sim_schema, SIM_N, &s.cfg, argc, argv, 0, &rest) || rest < argc) {
		fprintf(stderr, "tally sim: %s\n", rest < argc ? "unexpected argument (see --help)" : tally_errmsg());
		return 2;
	}
	s.workers = calloc((size_t)s.cfg.workers, sizeof(pid_t));
	s.worker_status = calloc((size_t)s.cfg.workers, sizeof(int));
	s.worker_done = calloc((size_t)s.cfg.workers, sizeof(bool));
	if (!s.workers || !s.worker_status || !s.worker_done)
		return 1;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	rc = run(&s);
	if (s.coord > 0) {
		stop_all(&s, SIGTERM);
		waitpid(s.coord, NULL, 0);
		finish_workers(&s);
	}
	if (rc == 0)
		printf("done: %s/model.safetensors, %s/metrics.jsonl, %s/accuracy.svg\n", s.cfg.out, s.cfg.out, s.cfg.out);
	else
		fprintf(stderr, "tally sim: %s\n", tally_errmsg());
	free(s.workers);
	free(s.worker_status);
	free(s.worker_done);
	return rc == 0 ? 0 : rc == TALLY_ECONFIG ? 2 : 1;
}
