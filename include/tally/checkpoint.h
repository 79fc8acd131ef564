/*
 * Checkpoint files: a JSON header and a block of bytes, sealed with a BLAKE2b-256 checksum so
 * that a truncated or corrupted file is detected before any of it is used.
 *
 * Layout: "TALLYCK1" | u64le json_len | json | u64le data_len | data | checksum (32 bytes,
 * BLAKE2b-256 of everything before it). Written atomically (temporary file, fsync, rename, fsync
 * of the folder).
 */
#ifndef TALLY_CHECKPOINT_H
#define TALLY_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#define TALLY_CKPT_JSON_MAX (16u << 20)

/* Writes json (NUL-terminated) and data[0..len) to path, mode 0600. */
int tally_ckpt_write(const char *path, const char *json, const void *data, size_t len);

/*
 * Checks and splits a whole checkpoint held in memory: on success *json points at a malloc'd
 * NUL-terminated copy of the header, and *data and *len describe the data inside buf. Errors: TALLY_EFORMAT (bad magic,
 * truncated, lengths that do not add up), TALLY_EDIGEST (checksum mismatch), with a message.
 */
int tally_ckpt_parse(const uint8_t *buf, size_t size, char **json, const uint8_t **data, size_t *len);

/* Reads and checks path; *buf owns the bytes that *data points into (free it after use). */
int tally_ckpt_read(const char *path, size_t max, uint8_t **buf, char **json, const uint8_t **data, size_t *len);

#endif
