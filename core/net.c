/*
 * ZeroMQ socket set-up, the ZAP authentication handler, and framing of tally messages.
 */
#include "tally/net.h"
#include "tally/error.h"
#include "tally/log.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tally_sock_limits(void *sock)
{
	int64_t max = TALLY_FRAME_MAX;
	int linger = 2000, keepalive = 1, idle = 30;

	if (zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max, sizeof(max)) ||
	    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger)) ||
	    zmq_setsockopt(sock, ZMQ_TCP_KEEPALIVE, &keepalive, sizeof(keepalive)) ||
	    zmq_setsockopt(sock, ZMQ_TCP_KEEPALIVE_IDLE, &idle, sizeof(idle)))
		return tally_err(TALLY_EIO, "socket options: %s", zmq_strerror(zmq_errno()));
	return 0;
}

int tally_sock_curve_server(void *sock, const tally_keypair *kp)
{
	int one = 1;

	if (zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, TALLY_ZAP_DOMAIN, strlen(TALLY_ZAP_DOMAIN)) ||
	    zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof(one)) ||
	    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, kp->secret_z85, TALLY_Z85_KEY_LEN))
		return tally_err(TALLY_ECRYPTO, "CURVE server set-up: %s", zmq_strerror(zmq_errno()));
	return 0;
}

int tally_sock_data_server(void *sock)
{
	if (zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, TALLY_ZAP_DATA_DOMAIN, strlen(TALLY_ZAP_DATA_DOMAIN)))
		return tally_err(TALLY_EIO, "data path set-up: %s", zmq_strerror(zmq_errno()));
	return 0;
}

void tally_data_token(uint8_t out[TALLY_DATA_TOKEN], const uint8_t session[TALLY_DATA_TOKEN], uint64_t round,
		      uint64_t attempt)
{
	static const char label[13] = "tally-data-v1"; /* no terminator */
	uint8_t msg[sizeof(label) + 16];

	memcpy(msg, label, sizeof(label));
	for (int i = 0; i < 8; i++) {
		msg[sizeof(label) + i] = (uint8_t)(round >> (8 * i));
		msg[sizeof(label) + 8 + i] = (uint8_t)(attempt >> (8 * i));
	}
	crypto_generichash(out, TALLY_DATA_TOKEN, msg, sizeof(msg), session, TALLY_DATA_TOKEN);
}

int tally_sock_curve_client(void *sock, const tally_keypair *kp, const char *server_public_z85)
{
	if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_public_z85, TALLY_Z85_KEY_LEN) ||
	    zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, kp->public_z85, TALLY_Z85_KEY_LEN) ||
	    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, kp->secret_z85, TALLY_Z85_KEY_LEN))
		return tally_err(TALLY_ECRYPTO, "CURVE client set-up: %s", zmq_strerror(zmq_errno()));
	return 0;
}

/* ---- ZAP (RFC 27) ---- */

#define ZAP_ADDRS 256

struct tally_zap {
	void *sock;
	const tally_roster *roster;
	uint64_t refused;
	bool (*banned)(void *ctx, const char *name);
	void *ban_ctx;
	char addrs[ZAP_ADDRS][64]; /* addresses enrolled keys were admitted from, a ring */
	uint64_t data_refused;     /* data-path connections refused */
	size_t n_addrs, next_addr;
};

static bool known_addr(const tally_zap *z, const char *addr)
{
	for (size_t i = 0; i < z->n_addrs; i++)
		if (strcmp(z->addrs[i], addr) == 0)
			return true;
	return false;
}

static void remember_addr(tally_zap *z, const char *addr)
{
	if (known_addr(z, addr))
		return;
	snprintf(z->addrs[z->next_addr], sizeof(z->addrs[0]), "%s", addr);
	z->next_addr = (z->next_addr + 1) % ZAP_ADDRS;
	if (z->n_addrs < ZAP_ADDRS)
		z->n_addrs++;
}

void tally_zap_set_ban_check(tally_zap *z, bool (*banned)(void *ctx, const char *name), void *ctx)
{
	z->banned = banned;
	z->ban_ctx = ctx;
}

int tally_zap_new(tally_zap **out, void *ctx, const tally_roster *roster)
{
	tally_zap *z = calloc(1, sizeof(*z));

	if (!z)
		return TALLY_ENOMEM;
	z->roster = roster;
	z->sock = zmq_socket(ctx, ZMQ_REP);
	if (!z->sock || zmq_bind(z->sock, "inproc://zeromq.zap.01") != 0) {
		int rc = tally_err(TALLY_EIO, "ZAP handler: %s", zmq_strerror(zmq_errno()));

		tally_zap_destroy(&z);
		return rc;
	}
	*out = z;
	return 0;
}

void *tally_zap_socket(tally_zap *z)
{
	return z->sock;
}

uint64_t tally_zap_refused(const tally_zap *z)
{
	return z->refused;
}

static void zap_reply(void *sock, const zmq_msg_t *req_id, const char *status, const char *text,
		      const char *user)
{
	zmq_msg_t id;

	zmq_msg_init(&id);
	zmq_msg_copy(&id, (zmq_msg_t *)req_id);
	zmq_send(sock, "1.0", 3, ZMQ_SNDMORE);
	zmq_msg_send(&id, sock, ZMQ_SNDMORE);
	zmq_send(sock, status, strlen(status), ZMQ_SNDMORE);
	zmq_send(sock, text, strlen(text), ZMQ_SNDMORE);
	zmq_send(sock, user, strlen(user), ZMQ_SNDMORE);
	zmq_send(sock, "", 0, 0);
	zmq_msg_close(&id);
}

/* Request frames: version, request id, domain, address, identity, mechanism, credentials... */
void tally_zap_handle(tally_zap *z)
{
	zmq_msg_t f[8];
	int n = 0, more = 1;
	char addr[64] = "?", fp[TALLY_FINGERPRINT_LEN + 1] = "none";
	const char *name = NULL;

	while (more && n < 8) {
		zmq_msg_init(&f[n]);
		if (zmq_msg_recv(&f[n], z->sock, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&f[n]);
			break;
		}
		more = zmq_msg_more(&f[n++]);
	}
	if (n < 6) {
		tally_warn("ZAP: malformed request of %d frames ignored", n);
		goto out;
	}
	if (zmq_msg_size(&f[3]) < sizeof(addr))
		snprintf(addr, sizeof(addr), "%.*s", (int)zmq_msg_size(&f[3]), (char *)zmq_msg_data(&f[3]));
	if (zmq_msg_size(&f[2]) == strlen(TALLY_ZAP_DATA_DOMAIN) &&
	    memcmp(zmq_msg_data(&f[2]), TALLY_ZAP_DATA_DOMAIN, strlen(TALLY_ZAP_DATA_DOMAIN)) == 0) {
		/* The open data path: no key to check, so only where a worker is known to be. */
		if (zmq_msg_size(&f[5]) == 4 && memcmp(zmq_msg_data(&f[5]), "NULL", 4) == 0 && known_addr(z, addr)) {
			tally_debug("data path: connection from %s", addr);
			zap_reply(z->sock, &f[1], "200", "OK", "");
		} else {
			/* libzmq retries a refused connection every 100 ms: say so once in a while. */
			if (z->data_refused++ % 100 == 0)
				tally_warn("refused a data-path connection from %s: no enrolled worker was admitted from "
					   "there (%llu such refusals)", addr, (unsigned long long)z->data_refused);
			z->refused++;
			zap_reply(z->sock, &f[1], "400", "unknown address", "");
		}
		goto out;
	}
	if (n == 7 && zmq_msg_size(&f[5]) == 5 && memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0 &&
	    zmq_msg_size(&f[6]) == 32) {
		tally_key_fingerprint(zmq_msg_data(&f[6]), fp);
		name = tally_roster_find(z->roster, zmq_msg_data(&f[6]));
	}
	if (name && z->banned && z->banned(z->ban_ctx, name)) {
		z->refused++;
		tally_warn("refused a connection from %s: worker '%s' (key %s) is banned for now", addr, name, fp);
		zap_reply(z->sock, &f[1], "400", "banned", "");
	} else if (name) {
		tally_info("admitted worker '%s' (key %s) from %s", name, fp, addr);
		remember_addr(z, addr);
		zap_reply(z->sock, &f[1], "200", "OK", name);
	} else {
		z->refused++;
		tally_warn("refused a connection from %s: key %s is not enrolled", addr, fp);
		zap_reply(z->sock, &f[1], "400", "key not enrolled", "");
	}
out:
	for (int i = 0; i < n; i++)
		zmq_msg_close(&f[i]);
	/* Drain any excess frames so the REP socket can answer the next request. */
	while (more) {
		zmq_msg_t x;

		zmq_msg_init(&x);
		if (zmq_msg_recv(&x, z->sock, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&x);
			break;
		}
		more = zmq_msg_more(&x);
		zmq_msg_close(&x);
	}
}

void tally_zap_destroy(tally_zap **zp)
{
	if (!zp || !*zp)
		return;
	if ((*zp)->sock)
		zmq_close((*zp)->sock);
	free(*zp);
	*zp = NULL;
}

/* ---- messages ---- */

static void drain(void *sock)
{
	int more = 1;

	while (more) {
		zmq_msg_t x;

		zmq_msg_init(&x);
		if (zmq_msg_recv(&x, sock, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&x);
			return;
		}
		more = zmq_msg_more(&x);
		zmq_msg_close(&x);
	}
}

static void copy_property(zmq_msg_t *m, const char *prop, char *out, size_t size)
{
	const char *v = zmq_msg_gets(m, prop);

	snprintf(out, size, "%s", v ? v : "");
}

/* Receives the envelope frame (and the tensor frame, if any) after the routing id. */
static int recv_body(void *sock, tally_inmsg *in)
{
	zmq_msg_t env;
	int rc;

	zmq_msg_init(&env);
	if (zmq_msg_recv(&env, sock, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&env);
		return tally_err(TALLY_EFORMAT, "message ended before its envelope");
	}
	in->wire_bytes += zmq_msg_size(&env);
	copy_property(&env, "User-Id", in->user_id, sizeof(in->user_id));
	copy_property(&env, "Peer-Address", in->peer_addr, sizeof(in->peer_addr));
	rc = tally_msg_decode(&in->msg, zmq_msg_data(&env), zmq_msg_size(&env));
	if (zmq_msg_more(&env)) {
		zmq_msg_init(&in->data);
		in->has_data = true;
		if (zmq_msg_recv(&in->data, sock, ZMQ_DONTWAIT) >= 0) {
			in->wire_bytes += zmq_msg_size(&in->data);
			if (zmq_msg_more(&in->data) && rc == 0)
				rc = tally_err(TALLY_EFORMAT, "message has more than one tensor frame");
		}
	}
	if (zmq_msg_more(&env) && zmq_msg_more(&in->data))
		drain(sock);
	zmq_msg_close(&env);
	return rc;
}

int tally_recv(void *sock, bool router, tally_inmsg *in)
{
	memset(in, 0, sizeof(*in));
	if (router) {
		zmq_msg_t rid;

		zmq_msg_init(&rid);
		if (zmq_msg_recv(&rid, sock, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&rid);
			return TALLY_EAGAIN;
		}
		in->rid_len = zmq_msg_size(&rid) <= TALLY_ROUTING_ID_MAX ? zmq_msg_size(&rid) : 0;
		memcpy(in->rid, zmq_msg_data(&rid), in->rid_len);
		if (!zmq_msg_more(&rid)) {
			zmq_msg_close(&rid);
			return tally_err(TALLY_EFORMAT, "message has only a routing id");
		}
		zmq_msg_close(&rid);
	} else {
		zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};

		if (zmq_poll(&item, 1, 0) <= 0)
			return TALLY_EAGAIN;
	}
	return recv_body(sock, in);
}

void tally_inmsg_clear(tally_inmsg *in)
{
	tally_msg_clear(&in->msg);
	if (in->has_data)
		zmq_msg_close(&in->data);
	in->has_data = false;
}

int tally_send(void *sock, const uint8_t *rid, size_t rid_len, const tally_msg *m, const void *data,
	       size_t len, zmq_free_fn *free_fn, void *hint)
{
	uint8_t *buf = NULL;
	size_t blen = 0;
	zmq_msg_t part;
	int rc;

	rc = tally_msg_encode(m, &buf, &blen);
	if (rc) {
		if (free_fn)
			free_fn((void *)data, hint);
		return rc;
	}
	rc = 0;
	if (rid && zmq_send(sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
		goto fail;
	if (zmq_send(sock, buf, blen, (data ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0)
		goto fail;
	free(buf);
	if (!data)
		return 0;
	if (free_fn)
		zmq_msg_init_data(&part, (void *)data, len, free_fn, hint);
	else if (zmq_msg_init_size(&part, len) == 0)
		memcpy(zmq_msg_data(&part), data, len);
	else
		return TALLY_ENOMEM;
	if (zmq_msg_send(&part, sock, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&part);
		return tally_err(TALLY_EIO, "sending a tensor frame: %s", zmq_strerror(zmq_errno()));
	}
	return 0;
fail:
	rc = zmq_errno() == EAGAIN || zmq_errno() == EHOSTUNREACH ? TALLY_EAGAIN : TALLY_EIO;
	free(buf);
	if (free_fn)
		free_fn((void *)data, hint);
	return tally_err(rc, "sending %s: %s", tally_msg_type_name(m->type), zmq_strerror(zmq_errno()));
}
