/*
 * Logging to stderr: one line per event, with UTC time, level and program name.
 * Secrets are never passed to these functions.
 */
#ifndef TALLY_LOG_H
#define TALLY_LOG_H

#include <stdbool.h>

typedef enum { TALLY_LOG_DEBUG, TALLY_LOG_INFO, TALLY_LOG_WARN, TALLY_LOG_ERROR } tally_log_level;

/* Sets the program name shown in each line and the minimum level. Call once at start-up. */
void tally_log_init(const char *program, tally_log_level level);

/* Parses "debug", "info", "warn" or "error"; returns 0 or TALLY_EINVAL. */
int tally_log_level_parse(const char *s, tally_log_level *out);

/* Writes one line if level is at or above the minimum. Any thread. */
void tally_log(tally_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define tally_debug(...) tally_log(TALLY_LOG_DEBUG, __VA_ARGS__)
#define tally_info(...) tally_log(TALLY_LOG_INFO, __VA_ARGS__)
#define tally_warn(...) tally_log(TALLY_LOG_WARN, __VA_ARGS__)
#define tally_error(...) tally_log(TALLY_LOG_ERROR, __VA_ARGS__)

#endif
