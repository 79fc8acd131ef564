/*
 * Secure aggregation (SecAgg+, Bell et al. 2020, on Bonawitz et al. 2017) as two explicit state
 * machines, one per side, that neither send nor receive: the daemons move their messages. The
 * coordinator learns only the sum of the cohort's quantized, weighted updates.
 *
 * Stages (each with its own deadline, kept by the coordinator):
 *   0 advertise   each worker makes two X25519 key pairs for the round (c: share encryption,
 *                 s: mask agreement) and signs them with its Ed25519 identity;
 *   1 share keys  the coordinator sends the signed key list; each worker checks every signature
 *                 against its own roster (so the coordinator cannot substitute keys), derives
 *                 the session id (a hash over the round's parameters and every advertised key)
 *                 and the neighbour graph from it, Shamir-shares its s secret key and a fresh
 *                 self-mask seed b among its neighbours (threshold t) and seals each pair of
 *                 shares for its neighbour in an AEAD box the coordinator only forwards;
 *   2 relay       the coordinator forwards the boxes of the senders it keeps (U2); each worker
 *                 opens its boxes and acknowledges, naming any sender whose box failed;
 *   3 masked input  each worker quantizes its update (weight folded in, see quant.h) and adds its
 *                 self mask PRG(b) and, for each neighbour j in U2, +-PRG(s_ij) (+ when its index
 *                 is below j's); the coordinator adds the masked vectors as they arrive;
 *   4 unmask      for the survivors U3 (whose input was added) and the dropped D = U2 \ U3 each
 *                 survivor reveals its share of b for survivors and of s for the dropped, never
 *                 both for one peer; the coordinator reconstructs, removes the self masks of U3
 *                 and the pairwise masks that survivors made with the dropped, and decodes.
 * Fewer than t workers at any stage aborts the round with a reason; nothing is applied.
 *
 * Indices are positions 0..n-1 in the round's participant list (sorted by name). All messages
 * carry run id and round through their envelope; the session id binds everything after stage 1.
 */
#ifndef TALLY_SECAGG_H
#define TALLY_SECAGG_H

#include "tally/keys.h"
#include "tally/quant.h"
#include "tally/shamir.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TALLY_SA_MAX_N 4096
#define TALLY_SA_BOX_PLAIN (8 + 2 * TALLY_SHAMIR_SHARE_BYTES)
#define TALLY_SA_BOX_BYTES (TALLY_SA_BOX_PLAIN + 16) /* ChaCha20-Poly1305 tag */

typedef struct tally_sa_params {
	char run_id[64];
	uint64_t round;
	uint32_t n;            /* cohort size: participants selected */
	uint32_t k;            /* neighbour degree (n - 1: complete graph) */
	uint32_t t;            /* Shamir threshold, 1..k */
	tally_quant quant;     /* clip, qrange, ring */
	uint64_t length;       /* model parameters d; the masked vector has d + 1 elements */
} tally_sa_params;

/* Stage 0: a worker's advertised keys. */
typedef struct tally_sa_advert {
	uint32_t index;
	uint8_t c_pk[32], s_pk[32];
	uint8_t sig[64];       /* Ed25519 over the round, the index, the name and both keys */
} tally_sa_advert;

/* Stage 1/2: a sealed pair of shares from one worker to a neighbour. */
typedef struct tally_sa_box {
	uint32_t from, to;
	uint8_t data[TALLY_SA_BOX_BYTES];
} tally_sa_box;

/* Stage 4: one revealed share of `owner`'s secret: b (self seed) or s (mask key). */
typedef enum { TALLY_SA_REVEAL_B = 1, TALLY_SA_REVEAL_S = 2 } tally_sa_reveal_kind;
typedef struct tally_sa_reveal {
	uint32_t owner;
	uint8_t kind;
	tally_share share;
} tally_sa_reveal;

/* Words (32-bit) of a masked vector: (d + 1) elements of ring_bits. */
size_t tally_sa_vector_words(const tally_sa_params *p);

/* Checks parameters (n, k, t, quant, length ranges). TALLY_EINVAL with a message. */
int tally_sa_params_check(const tally_sa_params *p);

/* ---- worker side ---- */

typedef struct tally_sa_client tally_sa_client;

/*
 * A worker's state for one round. names[0..n) are the participants in index order; roster gives
 * their identity keys (the worker's own roster, never the coordinator's word); me holds this
 * worker's identity (has_sign). Errors: TALLY_EINVAL (not in the list, bad params), TALLY_ECRYPTO
 * (no identity key).
 */
int tally_sa_client_new(tally_sa_client **out, const tally_sa_params *p, const char *const *names,
			const tally_roster *roster, const tally_keypair *me);
void tally_sa_client_destroy(tally_sa_client **cp);
uint32_t tally_sa_client_index(const tally_sa_client *c);

/* Stage 0: makes this round's keys and signs them. */
int tally_sa_client_advertise(tally_sa_client *c, tally_sa_advert *out);

/*
 * Stage 1: takes the coordinator's key list (ascending index), checks it and every signature,
 * and seals shares for each valid neighbour. Sets *boxes (malloc'd, *n_boxes of them) and the
 * indices whose signature failed (*rejected, malloc'd, may be empty). Errors: TALLY_ECRYPTO when
 * this worker's own keys are missing or altered in the list (the coordinator is lying: abort),
 * TALLY_EQUORUM when fewer than t valid neighbours remain, TALLY_EFORMAT for a malformed list.
 */
int tally_sa_client_share(tally_sa_client *c, const tally_sa_advert *list, size_t n_list,
			  tally_sa_box **boxes, size_t *n_boxes, uint32_t **rejected, size_t *n_rejected);

/*
 * Stage 2: u2 is the coordinator's list of kept senders, boxes those addressed to this worker.
 * Opens them; senders whose box is missing or fails are returned in *rejected.
 */
int tally_sa_client_receive(tally_sa_client *c, const uint32_t *u2, size_t n_u2, const tally_sa_box *boxes,
			    size_t n_boxes, uint32_t **rejected, size_t *n_rejected);

/*
 * Stage 3, ahead of time: adds up this worker's self mask and pairwise masks (k + 1 keystreams),
 * which do not depend on the update, so that they can be computed while the model downloads or
 * the worker trains. After share keys it counts every peer with a valid advert; after the relay,
 * a peer the coordinator did not keep is taken back out (one keystream each). Optional:
 * tally_sa_client_mask does it when it was not done. Errors: TALLY_EPROTO before share keys or
 * after the masked input; TALLY_ECRYPTO when a peer's key cannot be agreed with.
 */
int tally_sa_client_prepare(tally_sa_client *c);

/*
 * Stage 3: quantizes update[0..d) with weight w (rng draws the rounding) and masks it. Sets
 * *masked (tally_sa_vector_words 32-bit words; release it with tally_sa_vector_free). Errors: TALLY_EPROTO before stage 2,
 * TALLY_ENONFINITE, TALLY_EINVAL (w, length).
 */
int tally_sa_client_mask(tally_sa_client *c, const float *update, uint64_t w, tally_rng *rng, uint32_t **masked);

/*
 * Stage 4: reveals shares for the survivors (b) and the dropped (s). Answers once per round:
 * a second request, a peer in both lists, or this worker missing from the survivors is refused
 * (TALLY_EPROTO) so that no peer's two secrets ever leave together.
 */
int tally_sa_client_unmask(tally_sa_client *c, const uint32_t *dropped, size_t n_dropped,
			   const uint32_t *survivors, size_t n_survivors, tally_sa_reveal **out, size_t *n_out);
/*
 * Releases a masked vector of `words` 32-bit words from tally_sa_client_mask; NULL is ignored.
 * Up to two are kept for reuse by the next rounds' masks (a recycled vector is already faulted
 * in); tally_sa_vector_pool_drain frees them (at exit, so that leak checkers see nothing held).
 * Any thread.
 */
void tally_sa_vector_free(uint32_t *v, size_t words);
void tally_sa_vector_pool_drain(void);

/* Whether the relay has been received, so that tally_sa_client_mask may run. */
bool tally_sa_client_can_mask(const tally_sa_client *c);
/* 32-bit words of this round's masked vector. */
size_t tally_sa_client_words(const tally_sa_client *c);
/* Wipes and frees what tally_sa_client_unmask returned; accepts NULL. */
void tally_sa_reveals_free(tally_sa_reveal *r);

/* ---- coordinator side ---- */

typedef enum {
	TALLY_SA_ADVERTISE, TALLY_SA_SHARE, TALLY_SA_RELAY, TALLY_SA_INPUT, TALLY_SA_UNMASK,
	TALLY_SA_DONE, TALLY_SA_ABORTED,
} tally_sa_stage;

typedef struct tally_sa_server tally_sa_server;

/* roster may be NULL: the coordinator then leaves signature checks to the workers. */
int tally_sa_server_new(tally_sa_server **out, const tally_sa_params *p, const char *const *names,
			const tally_roster *roster);
void tally_sa_server_destroy(tally_sa_server **sp);
tally_sa_stage tally_sa_server_stage(const tally_sa_server *s);
/* Why the round was aborted ("" otherwise). */
const char *tally_sa_server_reason(const tally_sa_server *s);
/* Whether worker i is still expected at the current stage. */
bool tally_sa_server_expects(const tally_sa_server *s, uint32_t i);

/* Stage 0 input. Refuses duplicates or a wrong index (TALLY_EPROTO) and, with a roster, an advert
 * not signed by the worker's enrolled identity (TALLY_ECRYPTO). */
int tally_sa_server_on_advert(tally_sa_server *s, uint32_t from, const tally_sa_advert *a);
/* Ends stage 0 (all in, or deadline): the key list for everyone (ascending), or TALLY_EQUORUM. */
int tally_sa_server_close_advertise(tally_sa_server *s, const tally_sa_advert **list, size_t *n);

/* Stage 1 input: a sender's boxes and the indices it rejected. */
int tally_sa_server_on_shares(tally_sa_server *s, uint32_t from, const tally_sa_box *boxes, size_t n,
			      const uint32_t *rejected, size_t n_rejected);
/* Ends stage 1: U2 (ascending), or TALLY_EQUORUM. */
int tally_sa_server_close_share(tally_sa_server *s, const uint32_t **u2, size_t *n_u2);
/* The boxes for worker `to` from senders in U2 (valid until the server is destroyed). */
int tally_sa_server_boxes_for(tally_sa_server *s, uint32_t to, const tally_sa_box **boxes, size_t *n);

/* Stage 2 input: worker `from` acknowledged, naming senders whose box failed. */
int tally_sa_server_on_ack(tally_sa_server *s, uint32_t from, const uint32_t *rejected, size_t n);
/* Ends stage 2: masked inputs may now be accepted from the returned set (U2 minus the reported). */
int tally_sa_server_close_relay(tally_sa_server *s, const uint32_t **accept, size_t *n);

/* Stage 3: worker i's masked input was wholly added into the sum. */
int tally_sa_server_on_input(tally_sa_server *s, uint32_t i);
/* Ends stage 3: the dropped and survivor lists for the unmask request, or TALLY_EQUORUM. */
int tally_sa_server_close_input(tally_sa_server *s, const uint32_t **dropped, size_t *n_dropped,
				const uint32_t **survivors, size_t *n_survivors);

/* Stage 4 input: a survivor's revealed shares. */
int tally_sa_server_on_reveal(tally_sa_server *s, uint32_t from, const tally_sa_reveal *r, size_t n);
/*
 * Ends stage 4: reconstructs the secrets, removes every remaining mask from sum (the wrapping sum
 * of the survivors' masked vectors, tally_sa_vector_words words) and decodes the weighted mean
 * into mean[0..d). Errors: TALLY_EQUORUM (too few shares for some secret), TALLY_ECRYPTO (a
 * reconstructed key does not match its advertised public key), TALLY_ERANGE (sum does not decode).
 */
int tally_sa_server_finish(tally_sa_server *s, uint32_t *sum, float *mean, uint64_t *total_weight);

/* Aborts the round with a reason (a deadline with too few workers, the coordinator stopping). */
void tally_sa_server_abort(tally_sa_server *s, const char *reason);

#endif
