/*
 * Error names and the per-thread message buffer behind tally_err()/tally_errmsg().
 */
#include "tally/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char errmsg[1024];

const char *tally_strerror(int err)
{
	switch (err) {
	case TALLY_OK: return "success";
	case TALLY_EFORMAT: return "malformed input";
	case TALLY_ESHAPE: return "wrong shape or size";
	case TALLY_EVERSION: return "unsupported version";
	case TALLY_EDIGEST: return "digest mismatch";
	case TALLY_ECONFIG: return "bad configuration";
	case TALLY_ETIMEOUT: return "deadline passed";
	case TALLY_EPROTO: return "protocol violation";
	case TALLY_ECRYPTO: return "cryptographic failure";
	case TALLY_ENONFINITE: return "non-finite value";
	case TALLY_ETOOBIG: return "over size limit";
	case TALLY_EQUORUM: return "quorum not reached";
	case TALLY_ESTOPPED: return "stopped";
	case TALLY_ESYS: return "system call failed";
	default:
		if (err < 0 && err > -1000)
			return strerror(-err);
		return "unknown error";
	}
}

int tally_err(int err, const char *fmt, ...)
{
	char tmp[sizeof(errmsg)];
	va_list ap;

	/* Format aside first: callers may pass tally_errmsg() itself as an argument. */
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	memcpy(errmsg, tmp, sizeof(errmsg));
	return err;
}

const char *tally_errmsg(void)
{
	return errmsg;
}

void tally_err_clear(void)
{
	errmsg[0] = '\0';
}
