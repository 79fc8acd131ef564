/*
 * File helpers: whole-file reads with a size ceiling, and atomic replacement (write a temporary
 * file in the same folder, fsync it, rename it over the target, fsync the folder), so that a crash
 * leaves either the old file or the new one, never a half-written one.
 */
#ifndef TALLY_FS_H
#define TALLY_FS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/*
 * Reads all of path into a new malloc'd buffer (NUL-terminated one past *len) of at most max
 * bytes. Errors: TALLY_ENOENT, TALLY_EACCES, TALLY_ETOOBIG, TALLY_EIO, with a message naming path.
 */
int tally_file_read(const char *path, size_t max, uint8_t **buf, size_t *len);

/* Atomically replaces path with the concatenation of iov[0..n), created with the given mode. */
int tally_file_write_atomic(const char *path, const struct iovec *iov, int n, mode_t mode);

/* mkdir -p with the given mode for created folders. */
int tally_mkdir_p(const char *path, mode_t mode);

#endif
