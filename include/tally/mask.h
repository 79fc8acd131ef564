/*
 * Secure-aggregation masks: key agreement, key derivation and the mask generator.
 *
 * Pairwise mask keys come from X25519 between one worker's mask-agreement secret key and a
 * peer's public key; self masks from a 32-byte seed. Either way the 32-byte mask key is
 * BLAKE2b-256 keyed by the raw secret, over "tally-mask-v1", the purpose byte, the session id
 * (32 bytes), the round (u64le) and the vector length (u64le). The mask itself is the ChaCha20
 * (IETF, zero nonce) keystream of that key read as little-endian u32 or u64 words: element i of
 * the vector takes keystream bytes [4i, 4i+4) (ring 2^32) or [8i, 8i+8) (ring 2^64). Masking is a
 * wrapping add; any span of elements can be masked separately (chunk by chunk) with the same
 * result as the whole vector at once.
 *
 * Call sodium_init() first: besides seeding, it selects libsodium's vectorised ChaCha20 (without
 * it the generator runs on the portable reference code at a fraction of the rate).
 */
#ifndef TALLY_MASK_H
#define TALLY_MASK_H

#include <stddef.h>
#include <stdint.h>

#define TALLY_MASK_KEY 32

typedef enum { TALLY_MASK_PAIR = 1, TALLY_MASK_SELF = 2, TALLY_MASK_SHARE_BOX = 3 } tally_mask_purpose;

/*
 * Derives a mask key (or a share-encryption key, purpose SHARE_BOX) from a raw 32-byte secret.
 * Any thread.
 */
void tally_mask_kdf(uint8_t key[TALLY_MASK_KEY], const uint8_t secret[32], tally_mask_purpose purpose,
		    const uint8_t session[32], uint64_t round, uint64_t length);

/*
 * X25519(my_secret, peer_public) then tally_mask_kdf. Both sides of a pair get the same key.
 * Errors: TALLY_ECRYPTO with a message for a low-order peer key (libsodium refuses it); key is
 * then zeroed. The shared point is wiped on every path. Any thread.
 */
int tally_mask_agree(uint8_t key[TALLY_MASK_KEY], const uint8_t my_secret[32], const uint8_t peer_public[32],
		     tally_mask_purpose purpose, const uint8_t session[32], uint64_t round, uint64_t length);

/*
 * v[i] += sign * mask[offset + i] for i < n (mod 2^32 or 2^64), sign +1 or -1, where mask is the
 * keystream of key. offset is in elements. The keystream of one key is TALLY_MASK_MAX_BYTES long
 * (ChaCha20 IETF's 32-bit block counter), so offset + n must not exceed TALLY_MASK_MAX_BYTES / 4
 * (u32) or / 8 (u64) elements; a span past it aborts, even under NDEBUG. Callers bound lengths
 * that come from a peer by the model size, far below it. Any thread; uses 16 KiB of stack.
 */
void tally_mask_add_u32(uint32_t *v, size_t n, uint64_t offset, const uint8_t key[TALLY_MASK_KEY], int sign);
void tally_mask_add_u64(uint64_t *v, size_t n, uint64_t offset, const uint8_t key[TALLY_MASK_KEY], int sign);

/*
 * v[i] = self[i] + sum_k signs[k] * pair_k[i] for i < n (mod 2^32 or 2^64): the self mask of
 * self_key plus the pair masks of keys[k] with signs[k] in {+1, -1} (0 leaves keys[k] out), all
 * from element 0, overwriting v. The same words as zeroing v and calling tally_mask_add for each key, at the
 * memory traffic of one pass over v (slice by slice, each slice in cache while all keys add to
 * it). Same span limit as tally_mask_add. Any thread; uses 8 KiB of stack.
 */
void tally_mask_sum_u32(uint32_t *v, size_t n, const uint8_t self_key[TALLY_MASK_KEY],
			const uint8_t (*keys)[TALLY_MASK_KEY], const int8_t *signs, size_t count);
void tally_mask_sum_u64(uint64_t *v, size_t n, const uint8_t self_key[TALLY_MASK_KEY],
			const uint8_t (*keys)[TALLY_MASK_KEY], const int8_t *signs, size_t count);

/* Length of the keystream under one key: 2^32 blocks of 64 bytes (256 GiB). */
#define TALLY_MASK_MAX_BYTES (UINT64_C(1) << 38)

#endif
