/*
 * Line-oriented logging to stderr. Each line is written with one write() call so that lines of
 * several processes sharing a terminal do not interleave mid-line.
 */
#include "tally/log.h"
#include "tally/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char prog[32] = "tally";
static tally_log_level min_level = TALLY_LOG_INFO;

void tally_log_init(const char *program, tally_log_level level)
{
	snprintf(prog, sizeof(prog), "%s", program);
	min_level = level;
}

int tally_log_level_parse(const char *s, tally_log_level *out)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};

	for (int i = 0; i < 4; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (tally_log_level)i;
			return 0;
		}
	}
	return tally_err(TALLY_EINVAL, "log level '%s' is not one of debug, info, warn, error", s);
}

void tally_log(tally_log_level level, const char *fmt, ...)
{
	static const char *const tags[] = {"debug", "info", "warn", "error"};
	char line[2048];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	if (level < min_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000, prog, tags[level]);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}
