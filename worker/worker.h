/*
 * tally-worker's internal state. The main thread owns the DEALER socket and runs one zmq_poll
 * loop (connection, heartbeats, model download, update upload); training runs in a separate
 * thread that reports back over an inproc PAIR socket, so heartbeats go on while it trains.
 */
#ifndef WORKER_H
#define WORKER_H

#include "tally/config.h"
#include "tally/data.h"
#include "tally/keys.h"
#include "tally/ml.h"
#include "tally/model.h"
#include "tally/net.h"
#include "tally/secagg.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct worker_config {
	char name[TALLY_NAME_MAX];
	char coordinator[256];
	char coordinator_key[1024];
	char key[1024];
	char roster[1024];
	bool insecure;
	char log_level[16];
	int64_t threads, reconnect_min_ms, reconnect_max_ms, hello_timeout_ms;
	char format[16];
	char data_dir[1024], images[1024], labels[1024], csv[1024];
	int64_t csv_label_column;
	bool csv_header;
	double csv_scale;
	char partition[32], scheme[64];
	int64_t data_seed;
	bool no_train;
	bool data_path;
} worker_config;

extern const tally_cfg_field worker_schema[];
extern const size_t worker_schema_len;

/* Parses --config FILE then flags over defaults; exits the process with status 2 on error. */
int worker_config_load(worker_config *cfg, int argc, char **argv);

typedef enum { WS_CONNECTING, WS_IDLE, WS_RECEIVING, WS_TRAINING, WS_UPLOADING } worker_phase;

/* What the training thread works on and hands back. */
typedef struct worker_job {
	uint64_t round;
	tally_model *model;       /* trained in place; starts as the global model */
	float *global;            /* copy of the global parameters (FedProx and the delta) */
	tally_train_opts opts;
	tally_train_stats stats;
	double seconds;
	int rc;
	char err[256];
	float *update;            /* model - global, n_params */
	uint32_t *masked;         /* secure rounds: the masked ring vector, owned */
	const uint32_t *payload;  /* what is uploaded: update (plain) or masked (secure) */
	size_t payload_words;
	bool secure;              /* set at start: the round uses secure aggregation */
	volatile int cancel;      /* set by the loop to stop training early (a newer round began) */
	uint64_t attempt;
	tally_digest digest;
	tally_digest *chunk_digests;
	size_t n_chunks;
} worker_job;

typedef struct worker {
	worker_config cfg;
	tally_keypair *keys;
	char server_key[TALLY_Z85_KEY_LEN + 1];
	tally_dataset *data;          /* this worker's partition */
	void *ctx, *sock, *pipe_main, *pipe_thread;
	int signal_fd;
	bool stopping, finished;

	worker_phase phase;
	char run_id[TALLY_NAME_MAX];
	uint32_t heartbeat_ms, patience_ms;
	int64_t last_heard_ms, last_sent_ms, connect_started_ms, backoff_ms, reconnect_at_ms;
	uint64_t hb_seq;

	/* the round in progress */
	uint64_t round, attempt;
	uint32_t dims[TALLY_MODEL_MAX_LAYERS + 1], n_layers;
	tally_train_opts opts;
	tally_digest model_digest;
	float *incoming;              /* global model being received */
	size_t n_params, chunks_expected, chunks_received;
	tally_digest *incoming_digests;
	pthread_t thread;
	bool thread_running;
	worker_job *job;              /* owned by the thread while it runs */
	worker_job *upload;           /* the update being pulled, owned by the loop */
	worker_job *pending;          /* secure rounds: trained, waiting for the share relay */
	tally_sa_client *sa;          /* secure aggregation state of the round, or NULL */
	tally_roster *roster;         /* peers' identity keys, for secure aggregation */
	uint64_t max_weight;
	void *monitor;                /* PAIR socket receiving the DEALER's handshake events */
	void *data_sock;              /* DEALER on the coordinator's open data path, or NULL */
	uint8_t data_token[TALLY_DATA_TOKEN];
	unsigned monitor_seq;
} worker;

int64_t worker_now_ms(void);

/* worker.c */
int worker_init(worker *w);
int worker_run(worker *w);
void worker_fini(worker *w);

/* train.c */
int worker_load_data(worker *w);
/* Starts training on the received model; the thread writes a byte to pipe_thread when done. */
int worker_train_start(worker *w);
/* Joins the finished thread and returns its job (the caller owns it). */
worker_job *worker_train_join(worker *w);
void worker_job_free(worker_job **jp);

/* secure.c: the worker's part in secure aggregation */
int worker_sa_start(worker *w, const tally_msg *round_start);
void worker_sa_on_message(worker *w, const tally_msg *m);
/* Masks a trained job's update in place of its plain payload. */
int worker_sa_mask(worker *w, worker_job *j);
bool worker_sa_ready_to_mask(const worker *w);
void worker_sa_end(worker *w);
int worker_send(worker *w, tally_msg *m, const void *data, size_t len);

#endif
