/*
 * What both sides of secure aggregation compute alike: parameter checks, the signed advert
 * message, the session id, share boxes and their nonces.
 */
#include "secagg_internal.h"

#include "tally/error.h"
#include "tally/graph.h"
#include "tally/mask.h"

#include <sodium.h>
#include <string.h>

size_t tally_sa_vector_words(const tally_sa_params *p)
{
	return (size_t)(p->length + 1) * (p->quant.ring_bits / 32);
}

int tally_sa_params_check(const tally_sa_params *p)
{
	if (p->n < 2 || p->n > TALLY_SA_MAX_N)
		return tally_err(TALLY_EINVAL, "secure aggregation needs 2..%d participants, not %u", TALLY_SA_MAX_N, p->n);
	if (p->k < 1 || p->k > p->n - 1 || (p->k != p->n - 1 && p->k % 2))
		return tally_err(TALLY_EINVAL, "neighbour degree %u is not even and below %u, nor %u", p->k, p->n, p->n - 1);
	if (p->t < 1 || p->t > p->k)
		return tally_err(TALLY_EINVAL, "threshold %u is outside 1..%u", p->t, p->k);
	if (p->quant.ring_bits != 32 && p->quant.ring_bits != 64)
		return tally_err(TALLY_EINVAL, "ring of %u bits is not 32 or 64", p->quant.ring_bits);
	if (!(p->quant.clip > 0) || p->quant.qrange < 1 || p->quant.qrange > (UINT64_C(1) << 40))
		return tally_err(TALLY_EINVAL, "quantization clip %g, range %llu out of bounds", p->quant.clip,
				 (unsigned long long)p->quant.qrange);
	if (p->length < 1 || p->length > (UINT64_C(1) << 31))
		return tally_err(TALLY_EINVAL, "vector length %llu out of range", (unsigned long long)p->length);
	return 0;
}

static void put32(crypto_generichash_state *st, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};

	crypto_generichash_update(st, b, 4);
}

static void put64(crypto_generichash_state *st, uint64_t v)
{
	put32(st, (uint32_t)v);
	put32(st, (uint32_t)(v >> 32));
}

static void put_str(crypto_generichash_state *st, const char *s)
{
	put32(st, (uint32_t)strlen(s));
	crypto_generichash_update(st, (const uint8_t *)s, strlen(s));
}

static void put_params(crypto_generichash_state *st, const tally_sa_params *p)
{
	uint64_t clip_bits;

	memcpy(&clip_bits, &p->quant.clip, sizeof(clip_bits));
	put_str(st, p->run_id);
	put64(st, p->round);
	put32(st, p->n);
	put32(st, p->k);
	put32(st, p->t);
	put64(st, clip_bits);
	put64(st, p->quant.qrange);
	put32(st, p->quant.ring_bits);
	put64(st, p->length);
}

/* The bytes an advert's signature covers, hashed: run, round, parameters, index, name, keys. */
void sa_advert_digest(const tally_sa_params *p, const char *name, const tally_sa_advert *a, uint8_t out[32])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, 32);
	crypto_generichash_update(&st, (const uint8_t *)"tally-secagg-v1-advert", 22);
	put_params(&st, p);
	put32(&st, a->index);
	put_str(&st, name);
	crypto_generichash_update(&st, a->c_pk, 32);
	crypto_generichash_update(&st, a->s_pk, 32);
	crypto_generichash_final(&st, out, 32);
}

bool sa_advert_verify(const tally_sa_params *p, const char *name, const uint8_t sign_pk[32], const tally_sa_advert *a)
{
	uint8_t d[32];

	sa_advert_digest(p, name, a, d);
	return crypto_sign_verify_detached(a->sig, d, sizeof(d), sign_pk) == 0;
}

void sa_session_id(const tally_sa_params *p, char (*names)[64], const tally_sa_advert *list, size_t n, uint8_t out[32])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, 32);
	crypto_generichash_update(&st, (const uint8_t *)"tally-secagg-v1-session", 23);
	put_params(&st, p);
	put32(&st, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		put32(&st, list[i].index);
		put_str(&st, names[list[i].index]);
		crypto_generichash_update(&st, list[i].c_pk, 32);
		crypto_generichash_update(&st, list[i].s_pk, 32);
		crypto_generichash_update(&st, list[i].sig, 64);
	}
	crypto_generichash_final(&st, out, 32);
}

static void box_nonce(uint32_t from, uint32_t to, uint8_t nonce[12])
{
	memset(nonce, 0, 12);
	for (int i = 0; i < 4; i++) {
		nonce[i] = (uint8_t)(from >> (8 * i));
		nonce[4 + i] = (uint8_t)(to >> (8 * i));
	}
}

int sa_box_seal(tally_sa_box *box, const uint8_t my_c_sk[32], const uint8_t peer_c_pk[32], const uint8_t session[32],
		uint64_t round, const uint8_t plain[TALLY_SA_BOX_PLAIN])
{
	uint8_t key[32], nonce[12];
	int rc = tally_mask_agree(key, my_c_sk, peer_c_pk, TALLY_MASK_SHARE_BOX, session, round, 0);

	if (rc == 0) {
		box_nonce(box->from, box->to, nonce);
		crypto_aead_chacha20poly1305_ietf_encrypt(box->data, NULL, plain, TALLY_SA_BOX_PLAIN, session, 32, NULL,
							  nonce, key);
	}
	sodium_memzero(key, sizeof(key));
	return rc;
}

int sa_box_open(const tally_sa_box *box, const uint8_t my_c_sk[32], const uint8_t peer_c_pk[32], const uint8_t session[32],
		uint64_t round, uint8_t plain[TALLY_SA_BOX_PLAIN])
{
	uint8_t key[32], nonce[12];
	int rc = tally_mask_agree(key, my_c_sk, peer_c_pk, TALLY_MASK_SHARE_BOX, session, round, 0);

	if (rc == 0) {
		box_nonce(box->from, box->to, nonce);
		if (crypto_aead_chacha20poly1305_ietf_decrypt(plain, NULL, NULL, box->data, TALLY_SA_BOX_BYTES, session, 32,
							      nonce, key) != 0)
			rc = tally_err(TALLY_ECRYPTO, "share box from %u does not authenticate", box->from);
	}
	sodium_memzero(key, sizeof(key));
	return rc;
}

int sa_copy_names(char (**out)[64], const char *const *names, uint32_t n)
{
	char (*copy)[64] = calloc(n, 64);

	if (!copy)
		return TALLY_ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		if (!names[i] || strlen(names[i]) >= 64 || (i > 0 && strcmp(names[i - 1], names[i]) >= 0)) {
			free(copy);
			return tally_err(TALLY_EINVAL, "participant names must be distinct, sorted and short");
		}
		memcpy(copy[i], names[i], strlen(names[i]) + 1);
	}
	*out = copy;
	return 0;
}

bool sa_contains(const uint32_t *sorted, size_t n, uint32_t x)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (sorted[mid] == x)
			return true;
		if (sorted[mid] < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}
