/*
 * Training curves: reads the coordinator's metrics.jsonl (one JSON object per round) and draws
 * accuracy and loss per round as a self-contained SVG, so that an operator can see how a run went
 * without any plotting stack.
 *
 * A metrics line looks like
 *   {"round":3,"applied":true,"accuracy":0.8421,"loss":0.4412,"participants":10,"updates":10,
 *    "train_loss":0.45,"train_accuracy":0.84,"seconds":4.2, ...}
 * "round" is required; every other key is optional and unknown keys are ignored. "accuracy" and
 * "loss" are test-set figures and are null when no held-out set is configured; the plot then
 * draws train_accuracy and train_loss and says so. A round with "applied":false kept the previous
 * model (and figures); the plot marks it.
 *
 * All functions are pure apart from file reads/writes and allocation; any thread may call them.
 */
#ifndef TALLY_PLOT_H
#define TALLY_PLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TALLY_METRICS_MAX_ROWS 1000000u                 /* rounds in one metrics file */
#define TALLY_METRICS_MAX_FILE ((size_t)512 << 20)      /* bytes of one metrics file */

/* One round's figures. Absent or null figures are NaN; absent counts are 0. */
typedef struct tally_metrics_row {
	uint64_t round;
	double accuracy, loss;              /* test set; NaN when null */
	double train_accuracy, train_loss;  /* mean over the round's updates */
	double seconds;                     /* wall time of the round */
	uint32_t participants, updates;
	bool applied;                       /* false: the round kept the previous model */
	bool has_test;                      /* "accuracy" was a number */
} tally_metrics_row;

/*
 * Parses metrics.jsonl text of len bytes (need not be NUL-terminated): one object per line, blank
 * lines ignored. Rows come back sorted by round, keeping file order among equal rounds; when a
 * round appears more than once (a resumed coordinator re-ran it) its last line wins. On success
 * *rows is a new malloc'd array for the caller to free() (NULL when *n is 0); on failure neither
 * is touched. Errors: TALLY_EFORMAT on a malformed line, with a message "line N: ..." naming it
 * (bad JSON, not an object, no "round", a key of the wrong type, an accuracy outside [0, 1]);
 * TALLY_ETOOBIG past TALLY_METRICS_MAX_ROWS rows; TALLY_ENOMEM.
 */
int tally_metrics_parse(const char *text, size_t len, tally_metrics_row **rows, size_t *n);

/*
 * tally_metrics_parse() on the contents of path (at most TALLY_METRICS_MAX_FILE bytes). Errors as
 * tally_file_read() and tally_metrics_parse(); messages are prefixed with path.
 */
int tally_metrics_load(const char *path, tally_metrics_row **rows, size_t *n);

/*
 * Draws rows (n >= 1, as from tally_metrics_parse) into an SVG file at svg_path, replaced
 * atomically with mode 0644: a title, a legend, and two panels sharing the round axis, accuracy
 * (in %, zoomed to the data) above loss, with grid lines, tick labels and the final figures
 * written beside the last points. Test figures are drawn when any row has them, else training
 * figures, labelled as such. Rounds that were not applied get hollow markers on a shaded band
 * (markers and bands are left out past a few hundred rounds, where they would only be noise).
 * title is plain UTF-8 text; it is escaped, and invalid bytes become U+FFFD. Errors: TALLY_EINVAL
 * when n is 0; TALLY_ETOOBIG or TALLY_ENOMEM; those of tally_file_write_atomic().
 */
int tally_plot_svg(const tally_metrics_row *rows, size_t n, const char *title, const char *svg_path);

#ifdef __cplusplus
}
#endif
#endif
