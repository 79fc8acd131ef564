/*
 * Content digests of tensors as they travel: BLAKE2b-256 of each chunk of at most chunk_floats
 * little-endian float32 values, and the tensor's digest as BLAKE2b-256 over its length and the
 * list of chunk digests. A receiver can so check every chunk on arrival, before using it, and the
 * list as a whole against the one digest carried on the control channel.
 */
#ifndef TALLY_DIGEST_H
#define TALLY_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define TALLY_DIGEST_BYTES 32
#define TALLY_CHUNK_FLOATS (1u << 20) /* 4 MiB of float32 per tensor frame */

typedef uint8_t tally_digest[TALLY_DIGEST_BYTES];

/* Number of chunks for n floats: ceil(n / chunk_floats); chunk_floats > 0. */
size_t tally_chunk_count(size_t n, uint32_t chunk_floats);

/* Digest of one chunk of n floats. Any thread. */
void tally_digest_chunk(const float *p, size_t n, tally_digest out);

/* Digest of a tensor of n_floats from the list of its chunk digests. */
void tally_digest_list(uint64_t n_floats, const tally_digest *chunks, size_t n_chunks, tally_digest out);

/*
 * Digest of a whole tensor; fills chunks[0..tally_chunk_count) too when chunks is not NULL.
 * Returns 0 or TALLY_ENOMEM.
 */
int tally_digest_tensor(const float *p, size_t n, uint32_t chunk_floats, tally_digest out,
			tally_digest *chunks);

/* Lower-case hex of the first n bytes of d (n <= 32) into out (2n+1 bytes). */
void tally_digest_hex(const uint8_t *d, size_t n, char *out);

#endif
