/*
 * Error codes and the per-thread error message of libtally.
 *
 * Every fallible function returns int: 0 on success or a negative TALLY_E* code. Codes that have
 * an errno equivalent are the negated errno (as libuv does); tally's own codes sit below -1000.
 * A function that fails on outside input (a peer's bytes, a file, a flag) also records a message a
 * user can act on with tally_err(); tally_errmsg() returns the last one recorded on this thread.
 */
#ifndef TALLY_ERROR_H
#define TALLY_ERROR_H

#include <errno.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
	TALLY_OK = 0,
	TALLY_ENOMEM = -ENOMEM,
	TALLY_EINVAL = -EINVAL,
	TALLY_EIO = -EIO,
	TALLY_ENOENT = -ENOENT,
	TALLY_EACCES = -EACCES,
	TALLY_EAGAIN = -EAGAIN,
	TALLY_ERANGE = -ERANGE,
	TALLY_EFORMAT = -1001,   /* malformed bytes: a file or message that does not parse */
	TALLY_ESHAPE = -1002,    /* well-formed but of the wrong shape, size or type */
	TALLY_EVERSION = -1003,  /* protocol or file version we do not speak */
	TALLY_EDIGEST = -1004,   /* content does not match its digest */
	TALLY_ECONFIG = -1005,   /* bad configuration: unknown key, wrong type, out of range */
	TALLY_ETIMEOUT = -1006,  /* a deadline passed */
	TALLY_EPROTO = -1007,    /* message not valid in the current protocol state */
	TALLY_ECRYPTO = -1008,   /* key, signature or authentication failure */
	TALLY_ENONFINITE = -1009,/* NaN or infinity where finite numbers are required */
	TALLY_ETOOBIG = -1010,   /* over a hard size limit */
	TALLY_EQUORUM = -1011,   /* not enough participants */
	TALLY_ESTOPPED = -1012,  /* interrupted by a shutdown request */
	TALLY_ESYS = -1013,      /* other system call failure; message says which */
};

/* Static name of an error code; never NULL. Any thread. */
const char *tally_strerror(int err);

/*
 * Records a formatted message for this thread and returns err unchanged, so that a failure reads
 * `return tally_err(TALLY_EFORMAT, "%s: header too long", path);`. Any thread.
 */
int tally_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last message recorded on this thread, or tally_strerror of nothing (""); never NULL. */
const char *tally_errmsg(void);

/* Clears this thread's message. */
void tally_err_clear(void);

#ifdef __cplusplus
}
#endif
#endif
