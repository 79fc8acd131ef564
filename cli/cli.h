/*
 * The tally tool's subcommands. Each takes the arguments after its name and returns the process
 * exit status (0 ok, 1 failure, 2 usage or configuration error).
 */
#ifndef CLI_H
#define CLI_H

#include <stddef.h>

int cli_keygen(int argc, char **argv);
int cli_sim(int argc, char **argv);
int cli_plot(int argc, char **argv);
int cli_inspect(int argc, char **argv);

/* Path of a sibling program (tally-coordinator, tally-worker) next to this executable. */
void cli_sibling_path(const char *program, char *out, size_t size);

#endif
