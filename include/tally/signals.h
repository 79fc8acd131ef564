/*
 * SIGINT and SIGTERM for the daemons' poll loops. They are blocked in the calling thread (and so
 * in every thread it starts later) and read from a signalfd. Threads that already exist keep an
 * open mask: OpenBLAS's pthread build starts its pool from a library constructor, before main.
 * A process signal may land on one of those; a handler then records it instead of the default
 * action killing the process, and the loop, which wakes at least every 100 ms, picks it up with
 * tally_signal_caught. SIGPIPE is ignored.
 */
#ifndef TALLY_SIGNALS_H
#define TALLY_SIGNALS_H

/* Sets all of the above up; returns the signalfd (non-blocking, close-on-exec) or -1 (errno). */
int tally_signals_open(void);

/* The number of a SIGINT or SIGTERM that reached a thread other than the loop's, or 0. */
int tally_signal_caught(void);

#endif
