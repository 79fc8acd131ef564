/*
 * tally-coordinator's internal state: configuration, worker registry and the round in progress.
 * Everything here is owned by the one thread that runs the zmq_poll loop.
 */
#ifndef COORD_H
#define COORD_H

#include "tally/agg.h"
#include "tally/config.h"
#include "tally/data.h"
#include "tally/keys.h"
#include "tally/model.h"
#include "tally/net.h"
#include "tally/rng.h"
#include "tally/secagg.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct coord_config {
	char bind[256];
	char data_bind[256];
	char state_dir[1024];
	char run_id[TALLY_NAME_MAX];
	bool insecure;
	char secret_key[1024];
	char enrolled[1024];
	char endpoint_file[1024];
	int64_t heartbeat_ms, patience_ms;
	char log_level[16];
	char arch[TALLY_ARCH_MAX];
	int64_t model_seed;
	char init_model[1024];
	int64_t rounds, min_workers, min_participants, max_participants, quorum, round_seed;
	double target_accuracy, fraction, deadline_s;
	int64_t epochs, batch_size, max_inflight_chunks;
	double lr, momentum, weight_decay, prox_mu;
	char eval_images[1024], eval_labels[1024];
	bool secure_agg, semi_malicious, retry_failed;
	double over_selection, max_update_norm, max_update_value;
	int64_t flood_limit;
	double sa_clip, sa_gamma, sa_delta, sa_stage_s;
	int64_t sa_qrange;
} coord_config;

extern const tally_cfg_field coord_schema[];
extern const size_t coord_schema_len;

/* Parses --config FILE then flags over defaults; exits the process with status 2 on error. */
int coord_config_load(coord_config *cfg, int argc, char **argv);

typedef enum { W_IDLE, W_BUSY, W_LOST } worker_state;

typedef struct coord_worker {
	char name[TALLY_NAME_MAX];     /* enrolled name (CURVE) or Hello name (insecure) */
	uint8_t rid[TALLY_ROUTING_ID_MAX];
	size_t rid_len;
	uint64_t examples;
	int64_t last_seen_ms;
	worker_state state;
	uint64_t refused;              /* messages refused from it */
	uint32_t refused_window;       /* refusals in the current window */
	int64_t window_start_ms, banned_until_ms;
	uint8_t data_token[TALLY_DATA_TOKEN]; /* this session's data-path secret (sent in Welcome) */
	uint8_t attempt_token[TALLY_DATA_TOKEN]; /* tally_data_token for token_round, token_attempt */
	uint64_t token_round, token_attempt;
	bool has_attempt_token;
	uint8_t data_rid[TALLY_ROUTING_ID_MAX]; /* the data-path connection that token is bound to */
	size_t data_rid_len;                  /* 0: not bound yet */
	bool data_seen;                       /* this session has sent a chunk over the data path */
} coord_worker;

typedef enum { P_TRAINING, P_READY, P_PULLING, P_UNDOING, P_DONE, P_FAILED } part_state;

typedef struct coord_participant {
	int worker;                    /* index into workers */
	part_state state;
	uint64_t examples;
	tally_digest digest;
	tally_digest *chunk_digests;
	size_t n_chunks;
	size_t next_request, received, outstanding;
	double norm2;                  /* squared L2 norm of what was added (plain rounds) */
	size_t model_next;             /* next chunk of the global model to send it */
	double train_loss, train_accuracy;
	bool lost;                     /* its worker went away (it may have finished first) */
	bool curve_only;               /* something bad came on the data path: pull over CURVE */
	int64_t progress_ms;           /* last chunk received, or first request while none was out */
} coord_participant;

/* A model buffer shared with zero-copy sends: freed when the last reference is dropped. */
typedef struct coord_blob {
	float *data;
	size_t n;
	int refs;
} coord_blob;

/*
 * The broadcast window of one round, shared with libzmq's I/O thread (whose free function
 * counts a chunk as sent): chunks libzmq holds over all participants and per participant.
 * Freed by the last of the round and its in-flight chunks.
 */
typedef struct coord_bcast {
	int refs;
	int total;
	int per_part[];
} coord_bcast;

typedef struct coord {
	coord_config cfg;
	void *ctx, *router;
	void *data;                    /* ROUTER of the open data path (masked chunks), or NULL */
	uint32_t data_port;
	uint64_t data_refused;         /* data-path messages dropped: no valid token, wrong kind */
	uint64_t data_chunks;          /* this round's update chunks taken from the data path */
	bool chunk_prechecked;         /* the chunk being handled already matched its digest */
	tally_zap *zap;
	tally_roster *roster;
	tally_keypair *keys;
	char endpoint[256];
	int signal_fd;
	volatile bool stopping;

	coord_worker *workers;
	size_t n_workers, cap_workers;

	tally_model *global;           /* the model; params point into blob */
	coord_blob *blob;              /* global params, shared with in-flight sends */
	tally_digest global_digest;
	tally_agg *agg;
	tally_dataset *eval;

	uint64_t round;                /* the round in progress or last finished */
	uint64_t attempt;              /* random id of this attempt at the round (a retry gets another) */
	uint32_t attempts;             /* attempts at the current round number so far */
	int64_t next_round_at_ms;      /* a failed round is retried no sooner than this */
	bool round_open;
	int64_t round_started_ms, round_deadline_ms;
	coord_participant *parts;
	size_t n_parts;
	size_t inflight;               /* chunk requests outstanding, all participants */
	coord_bcast *bcast;            /* the model broadcast window of the round in progress */
	uint64_t bytes_in, bytes_out, late_discarded, replays_ignored; /* bytes: this round's */
	uint64_t total_in, total_out;  /* bytes over the whole run */
	size_t target_updates;         /* updates that close the round early (over-selection), 0: all */
	double best_accuracy;
	FILE *metrics;
	tally_rng select_rng;

	/* secure aggregation of the round in progress (sa == NULL for a plain round) */
	tally_sa_server *sa;
	tally_sa_params sa_params;
	uint32_t *ring;                /* the masked sum, tally_sa_vector_words words */
	char (*sa_names)[TALLY_NAME_MAX]; /* participants in index order */
	size_t ring_words;
	int64_t stage_deadline_ms;
	char abort_reason[256];
} coord;

int64_t coord_now_ms(void);

/* coord.c: set-up, the loop, the registry */
int coord_init(coord *c);
int coord_run(coord *c);
void coord_fini(coord *c);
int coord_send(coord *c, int worker, tally_msg *m, const void *data, size_t len, zmq_free_fn *f, void *hint);
void coord_refuse(coord *c, const uint8_t *rid, size_t rid_len, const char *reason);
/* Counts a refused message of worker w; a worker over the flood limit is banned for a while. */
void coord_note_refusal(coord *c, int w);
bool coord_is_banned(const coord *c, const char *name);

/* state.c: checkpoints */
int coord_state_save(coord *c);
/* Takes the newest intact checkpoint in state_dir, if any; errors only when all are unusable. */
int coord_state_resume(coord *c);

/* round.c: the round state machine */
int coord_round_load_model(coord *c);
void coord_round_tick(coord *c);
void coord_round_on_message(coord *c, int worker, tally_inmsg *in);
/*
 * Whether an UpdateChunk from the open data path matches the digest its worker committed to for
 * that index (true too when no such chunk is expected: the round code then ignores it). Bytes
 * that do not match are dropped there, not held against the worker: anyone who saw the session
 * token on the wire could have sent them.
 */
bool coord_round_data_chunk_ok(coord *c, int worker, const tally_inmsg *in);
/*
 * Something bad came on the data path under worker's token: the rest of its update, including
 * the chunks already requested, is pulled over CURVE (once; later trouble changes nothing).
 */
void coord_round_data_suspect(coord *c, int worker);
void coord_round_on_lost(coord *c, int worker);
/* A participant refused a message of the current attempt: it cannot go on with the round. */
void coord_round_on_withdrawal(coord *c, int worker, const tally_msg *refusal);
void coord_round_fini(coord *c);
bool coord_round_is_finished(const coord *c);
/* Whether the round has work the loop should come back to soon (the paced broadcast). */
bool coord_round_is_busy(const coord *c);

/* secround.c: secure aggregation inside a round (participant index = position in parts) */
int coord_sa_start(coord *c, tally_msg *round_start);
void coord_sa_on_message(coord *c, coord_participant *p, tally_inmsg *in);
void coord_sa_tick(coord *c);
bool coord_sa_accepts_input(const coord *c, const coord_participant *p);
void coord_sa_add(coord *c, size_t word_offset, const uint32_t *x, size_t words, bool subtract);
void coord_sa_input_done(coord *c, coord_participant *p);
bool coord_sa_settled(const coord *c);
/* Applies the unmasked mean to the global model: 0, or an error with the round's reason. */
int coord_sa_apply(coord *c);
void coord_sa_abort(coord *c, const char *reason);
void coord_sa_end(coord *c);
uint32_t coord_part_index(const coord *c, const coord_participant *p);

#endif
