/*
 * tally plot: draws accuracy and loss per round from a metrics.jsonl file into an SVG.
 */
#include "cli.h"

#include "tally/error.h"
#include "tally/plot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_plot(int argc, char **argv)
{
	const char *in = NULL, *out = "accuracy.svg", *title = "tally: accuracy and loss per round";
	tally_metrics_row *rows = NULL;
	size_t n = 0;
	int rc;

	for (int i = 0; i < argc; i++) {
		if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--out") == 0) && i + 1 < argc)
			out = argv[++i];
		else if (strcmp(argv[i], "--title") == 0 && i + 1 < argc)
			title = argv[++i];
		else if (strcmp(argv[i], "--help") == 0)
			return printf("usage: tally plot METRICS.jsonl [-o OUT.svg] [--title TEXT]\n"), 0;
		else if (!in && argv[i][0] != '-')
			in = argv[i];
		else
			return fprintf(stderr, "tally plot: unexpected argument '%s'\n", argv[i]), 2;
	}
	if (!in)
		return fprintf(stderr, "usage: tally plot METRICS.jsonl [-o OUT.svg] [--title TEXT]\n"), 2;
	rc = tally_metrics_load(in, &rows, &n);
	if (rc == 0)
		rc = tally_plot_svg(rows, n, title, out);
	free(rows);
	if (rc)
		return fprintf(stderr, "tally plot: %s\n", tally_errmsg()), 1;
	printf("wrote %s (%zu rounds)\n", out, n);
	return 0;
}
