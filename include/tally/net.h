/*
 * ZeroMQ plumbing shared by both daemons: socket limits, CURVE set-up, the ZAP handler that admits
 * only enrolled worker keys, and sending/receiving one tally message (an envelope frame plus an
 * optional raw tensor frame, behind a routing-id frame on ROUTER sockets).
 */
#ifndef TALLY_NET_H
#define TALLY_NET_H

#include "tally/keys.h"
#include "tally/wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <zmq.h>

#define TALLY_ZAP_DOMAIN "tally"
#define TALLY_ZAP_DATA_DOMAIN "tally-data" /* the open data path (NULL mechanism) */
#define TALLY_ROUTING_ID_MAX 255

/* ZMQ_MAXMSGSIZE, linger and TCP keepalive on any tally socket. */
int tally_sock_limits(void *sock);

/* Makes sock a CURVE server with kp's keys, authenticated through ZAP domain "tally". */
int tally_sock_curve_server(void *sock, const tally_keypair *kp);

/*
 * Makes sock the coordinator's open data path: no encryption (what travels there is masked or
 * public, and checked against digests sent over CURVE), but connections go through ZAP domain
 * "tally-data", which admits only addresses from which an enrolled key was admitted over CURVE.
 */
int tally_sock_data_server(void *sock);

/*
 * The token an UpdateChunk carries on the open data path in one attempt at one round:
 * BLAKE2b-128 keyed by the session's secret (Welcome.data_token, sent over CURVE) over
 * "tally-data-v1", round and attempt (u64le). A token seen on the wire is good for that attempt
 * only and says nothing about the next one. Any thread.
 */
void tally_data_token(uint8_t out[TALLY_DATA_TOKEN], const uint8_t session[TALLY_DATA_TOKEN], uint64_t round,
		      uint64_t attempt);

/* Makes sock a CURVE client with kp's keys that trusts only server_public_z85. */
int tally_sock_curve_client(void *sock, const tally_keypair *kp, const char *server_public_z85);

/*
 * The ZAP handler: a REP socket at inproc://zeromq.zap.01 on ctx, polled by the daemon's loop.
 * It admits a CURVE client whose key is in the roster (User-Id = its enrolled name) and refuses
 * any other, logging the key's fingerprint and address. A NULL-mechanism connection in domain
 * "tally-data" is admitted only from an address an enrolled key was admitted from (the last 256
 * such addresses are remembered); any other request is refused. Owned by the loop's thread.
 */
typedef struct tally_zap tally_zap;
int tally_zap_new(tally_zap **out, void *ctx, const tally_roster *roster);
void *tally_zap_socket(tally_zap *z);
/* Answers one pending request; never fails the caller's loop (errors are logged). */
void tally_zap_handle(tally_zap *z);
uint64_t tally_zap_refused(const tally_zap *z);
/* Also refuses enrolled names for which banned(ctx, name) is true (a worker banned for a while). */
void tally_zap_set_ban_check(tally_zap *z, bool (*banned)(void *ctx, const char *name), void *ctx);
void tally_zap_destroy(tally_zap **zp);

/* One received message. */
typedef struct tally_inmsg {
	uint8_t rid[TALLY_ROUTING_ID_MAX]; /* routing id (ROUTER sockets only) */
	size_t rid_len;
	char user_id[64];                  /* ZAP User-Id of the sender ("" without CURVE) */
	char peer_addr[64];                /* sender's address as libzmq reports it */
	tally_msg msg;                     /* the decoded envelope */
	zmq_msg_t data;                    /* the tensor frame (has_data) */
	bool has_data;
	size_t wire_bytes;                 /* bytes received, all frames */
} tally_inmsg;

/*
 * Receives one whole message without blocking past what is pending (ZMQ_DONTWAIT). Returns 0,
 * TALLY_EAGAIN when nothing is pending, or TALLY_EFORMAT/EVERSION/ETOOBIG for a message that was
 * consumed but refused (in->rid is still set so the caller can answer the sender). Call
 * tally_inmsg_clear afterwards in every case.
 */
int tally_recv(void *sock, bool router, tally_inmsg *in);
void tally_inmsg_clear(tally_inmsg *in);

/*
 * Sends m (to routing id rid on a ROUTER socket, rid NULL otherwise), followed by the tensor frame
 * data[0..len) when data is not NULL. With free_fn the tensor is sent zero-copy and free_fn(data,
 * hint) runs once libzmq is done with it (also on failure); without it the bytes are copied.
 * Returns 0, TALLY_EAGAIN (peer unreachable or its queue full) or TALLY_EIO.
 */
int tally_send(void *sock, const uint8_t *rid, size_t rid_len, const tally_msg *m, const void *data,
	       size_t len, zmq_free_fn *free_fn, void *hint);

#endif
