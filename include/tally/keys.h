/*
 * CURVE key files and the roster of enrolled worker keys.
 *
 * `tally keygen NAME` writes NAME.key (mode 0600: the name, public and secret key) and NAME.pub
 * (the name and public key), as lines of `field = "value"`. Keys are Z85 text as libzmq uses them.
 * Secret keys live only in sodium_malloc'd memory and are wiped when freed; they are never logged.
 *
 * A roster is either a folder of NAME.pub files or one file of `NAME = "Z85 public key"` lines;
 * the coordinator admits exactly the keys it holds.
 *
 * Every function here needs sodium_init() to have been called first.
 */
#ifndef TALLY_KEYS_H
#define TALLY_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TALLY_Z85_KEY_LEN 40
#define TALLY_FINGERPRINT_LEN 32 /* hex characters */

typedef struct tally_keypair {
	char name[64];
	char public_z85[TALLY_Z85_KEY_LEN + 1];
	char *secret_z85; /* TALLY_Z85_KEY_LEN + 1 bytes in sodium_malloc'd memory */
	/* The long-term Ed25519 identity that signs secure-aggregation keys (key files from
	 * tally keygen have it; has_sign is false for a file without sign-* fields). */
	bool has_sign;
	uint8_t sign_public[32];
	uint8_t *sign_secret; /* 64 bytes (libsodium's seed || public) in sodium_malloc'd memory */
} tally_keypair;

/*
 * Generates a key pair and writes PREFIX.key (0600) and PREFIX.pub (0644), where the key's name is
 * the last path component of prefix. Refuses to overwrite existing files (TALLY_EINVAL unless
 * force). Main thread only: the coordinator and worker never call it.
 */
int tally_keygen(const char *prefix, bool force);

/*
 * Loads a .key file. Refuses files readable or writable by group or others (TALLY_EACCES, with
 * the chmod to fix it) and malformed files (TALLY_EFORMAT, naming file and line).
 */
int tally_keypair_load(tally_keypair **out, const char *path);

/* Wipes and frees; accepts NULL. */
void tally_keypair_destroy(tally_keypair **kpp);

/* Loads the public key of a .pub file (or the public part of a .key file). */
int tally_pubkey_load(const char *path, char z85[TALLY_Z85_KEY_LEN + 1], char name[64]);

/* Hex fingerprint (BLAKE2b-256, first 16 bytes) of a 32-byte public key, for logs. */
void tally_key_fingerprint(const uint8_t pub[32], char out[TALLY_FINGERPRINT_LEN + 1]);

/* Loads the Ed25519 identity key ("sign-public-key") of a .pub or .key file. TALLY_EFORMAT when
 * the file has none (made before identities existed: run tally keygen again). */
int tally_pubkey_load_sign(const char *path, uint8_t sign_public[32]);

typedef struct tally_roster tally_roster;

/* Loads a roster from a folder of *.pub files or from one roster file. Duplicate keys or names
 * are refused. */
int tally_roster_load(tally_roster **out, const char *path);
void tally_roster_destroy(tally_roster **rp);
size_t tally_roster_size(const tally_roster *r);

/* The enrolled name of a 32-byte binary public key, or NULL; compares in constant time. */
const char *tally_roster_find(const tally_roster *r, const uint8_t pub[32]);

/* The Ed25519 identity key of an enrolled name, or NULL (unknown name, or none on file). In a
 * roster file an identity key follows the CURVE key in the same string, after one space. */
const uint8_t *tally_roster_sign_key(const tally_roster *r, const char *name);

#endif
