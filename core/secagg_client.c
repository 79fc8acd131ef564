/*
 * The worker's side of secure aggregation: a state machine over one round, fed by the daemon.
 * Secrets (the two X25519 secret keys, the self-mask seed, shares held for peers) live in
 * sodium_malloc'd memory, wiped when the state is destroyed.
 */
#include "secagg_internal.h"

#include "tally/error.h"
#include "tally/graph.h"
#include "tally/mask.h"

#include <assert.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

enum { C_NEW, C_ADVERTISED, C_SHARED, C_RECEIVED, C_MASKED, C_UNMASKED };

typedef struct secrets {
	uint8_t c_sk[32], s_sk[32], b[32];
	tally_share held_s[TALLY_SA_MAX_N]; /* shares held for each peer, indexed by owner */
	tally_share held_b[TALLY_SA_MAX_N];
	uint8_t pair_key[TALLY_SA_MAX_N][TALLY_MASK_KEY]; /* by neighbour position, once the relay is in */
	uint8_t self_key[TALLY_MASK_KEY];
} secrets;

struct tally_sa_client {
	tally_sa_params p;
	uint32_t me;
	char (*names)[64];
	uint8_t (*sign_pk)[32];
	bool *has_pk;
	const tally_keypair *id;
	int stage;
	uint8_t c_pk[32], s_pk[32], session[32];
	secrets *sec;
	tally_sa_advert *keys;   /* by index, valid[i] when checked */
	bool *valid, *held, *in_u2;
	uint32_t *nbr;           /* graph neighbours, k of them */
	uint32_t *mask;          /* the sum of this worker's masks once prepared (secret until used) */
	int8_t *msign;           /* by neighbour position: that pair mask's sign in mask (0: not in it) */
	bool *has_key;           /* by neighbour position: pair_key derived */
	bool self_ready;         /* self_key derived */
};

static void free_mask(tally_sa_client *c);

/*
 * Masked vectors are recycled: a worker masks one vector of the same size every round, and a
 * fresh allocation of that size comes from the kernel as untouched pages, whose faults and
 * zeroing cost about half a keystream expansion per round. Up to POOL_SIZE freed vectors are kept
 * (bounded memory: at most two model-sized vectors), matched by size. They hold masked (public)
 * words or wiped masks, never secrets. Any thread: the pool is behind a mutex.
 */
#define POOL_SIZE 2

static struct {
	pthread_mutex_t lock;
	void *buf[POOL_SIZE];
	size_t bytes[POOL_SIZE];
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

static size_t pool_round(size_t bytes)
{
	return (bytes + 63) & ~(size_t)63;
}

static void *vector_alloc(size_t bytes)
{
	void *p = NULL;

	bytes = pool_round(bytes);
	pthread_mutex_lock(&pool.lock);
	for (int i = 0; i < POOL_SIZE && !p; i++)
		if (pool.buf[i] && pool.bytes[i] == bytes) {
			p = pool.buf[i];
			pool.buf[i] = NULL;
		}
	pthread_mutex_unlock(&pool.lock);
	return p ? p : aligned_alloc(64, bytes);
}

static void vector_release(void *p, size_t bytes)
{
	if (!p)
		return;
	bytes = pool_round(bytes);
	pthread_mutex_lock(&pool.lock);
	for (int i = 0; i < POOL_SIZE && p; i++)
		if (!pool.buf[i]) {
			pool.buf[i] = p;
			pool.bytes[i] = bytes;
			p = NULL;
		}
	pthread_mutex_unlock(&pool.lock);
	free(p); /* the pool was full */
}

void tally_sa_vector_free(uint32_t *v, size_t words)
{
	vector_release(v, words * 4);
}

void tally_sa_vector_pool_drain(void)
{
	pthread_mutex_lock(&pool.lock);
	for (int i = 0; i < POOL_SIZE; i++) {
		free(pool.buf[i]);
		pool.buf[i] = NULL;
	}
	pthread_mutex_unlock(&pool.lock);
}

uint32_t tally_sa_client_index(const tally_sa_client *c)
{
	return c->me;
}

static int load_roster_keys(tally_sa_client *c, const tally_roster *roster)
{
	for (uint32_t i = 0; i < c->p.n; i++) {
		const uint8_t *pk = roster ? tally_roster_sign_key(roster, c->names[i]) : NULL;

		if (pk) {
			memcpy(c->sign_pk[i], pk, 32);
			c->has_pk[i] = true;
		}
		if (strcmp(c->names[i], c->id->name) == 0)
			c->me = i;
	}
	if (c->me == UINT32_MAX)
		return tally_err(TALLY_EINVAL, "this worker ('%s') is not among the round's participants", c->id->name);
	return 0;
}

int tally_sa_client_new(tally_sa_client **out, const tally_sa_params *p, const char *const *names,
			const tally_roster *roster, const tally_keypair *me)
{
	tally_sa_client *c;
	int rc = tally_sa_params_check(p);

	if (rc)
		return rc;
	if (!me->has_sign)
		return tally_err(TALLY_ECRYPTO, "secure aggregation needs an identity key: key file of '%s' has none "
				 "(make it again with tally keygen)", me->name);
	c = calloc(1, sizeof(*c));
	if (!c)
		return TALLY_ENOMEM;
	c->p = *p;
	c->id = me;
	c->me = UINT32_MAX;
	c->sign_pk = calloc(p->n, 32);
	c->has_pk = calloc(p->n, sizeof(bool));
	c->keys = calloc(p->n, sizeof(*c->keys));
	c->valid = calloc(p->n, sizeof(bool));
	c->held = calloc(p->n, sizeof(bool));
	c->in_u2 = calloc(p->n, sizeof(bool));
	c->nbr = calloc(p->k, sizeof(uint32_t));
	c->msign = calloc(p->k ? p->k : 1, sizeof(int8_t));
	c->has_key = calloc(p->k ? p->k : 1, sizeof(bool));
	c->sec = sodium_malloc(sizeof(secrets));
	if (!c->sign_pk || !c->has_pk || !c->keys || !c->valid || !c->held || !c->in_u2 || !c->nbr || !c->msign ||
	    !c->has_key || !c->sec)
		rc = TALLY_ENOMEM;
	if (rc == 0)
		rc = sa_copy_names(&c->names, names, p->n);
	if (rc == 0)
		rc = load_roster_keys(c, roster);
	if (rc) {
		tally_sa_client_destroy(&c);
		return rc;
	}
	*out = c;
	return 0;
}

void tally_sa_client_destroy(tally_sa_client **cp)
{
	tally_sa_client *c;

	if (!cp || !*cp)
		return;
	c = *cp;
	free_mask(c);
	sodium_free(c->sec); /* wipes */
	free(c->names);
	free(c->sign_pk);
	free(c->has_pk);
	free(c->keys);
	free(c->valid);
	free(c->held);
	free(c->in_u2);
	free(c->nbr);
	free(c->msign);
	free(c->has_key);
	free(c);
	*cp = NULL;
}

int tally_sa_client_advertise(tally_sa_client *c, tally_sa_advert *out)
{
	uint8_t d[32];

	if (c->stage != C_NEW)
		return tally_err(TALLY_EPROTO, "keys were already advertised this round");
	crypto_box_keypair(c->c_pk, c->sec->c_sk);
	crypto_box_keypair(c->s_pk, c->sec->s_sk);
	randombytes_buf(c->sec->b, sizeof(c->sec->b));
	memset(out, 0, sizeof(*out));
	out->index = c->me;
	memcpy(out->c_pk, c->c_pk, 32);
	memcpy(out->s_pk, c->s_pk, 32);
	sa_advert_digest(&c->p, c->names[c->me], out, d);
	crypto_sign_detached(out->sig, NULL, d, sizeof(d), c->id->sign_secret);
	c->stage = C_ADVERTISED;
	return 0;
}

/* A peer's round keys must agree with ours: a low-order point (even a signed one) is refused. */
static bool keys_usable(const tally_sa_client *c, const tally_sa_advert *a)
{
	uint8_t shared[32];
	bool ok = crypto_scalarmult(shared, c->sec->c_sk, a->c_pk) == 0 &&
		  crypto_scalarmult(shared, c->sec->s_sk, a->s_pk) == 0;

	sodium_memzero(shared, sizeof(shared));
	return ok;
}

/* Checks the key list's shape and this worker's own entry; marks peers with a valid signature. */
static int check_list(tally_sa_client *c, const tally_sa_advert *list, size_t n)
{
	bool mine = false;

	for (size_t i = 0; i < n; i++) {
		const tally_sa_advert *a = &list[i];

		if (a->index >= c->p.n || (i > 0 && a->index <= list[i - 1].index))
			return tally_err(TALLY_EFORMAT, "key list is not in ascending index order within %u", c->p.n);
		if (a->index == c->me) {
			if (memcmp(a->c_pk, c->c_pk, 32) != 0 || memcmp(a->s_pk, c->s_pk, 32) != 0)
				return tally_err(TALLY_ECRYPTO, "the key list carries other keys under this worker's name");
			mine = true;
			continue;
		}
		c->keys[a->index] = *a;
		c->valid[a->index] = c->has_pk[a->index] &&
				     sa_advert_verify(&c->p, c->names[a->index], c->sign_pk[a->index], a) &&
				     keys_usable(c, a);
	}
	return mine ? 0 : tally_err(TALLY_ECRYPTO, "the key list leaves this worker out");
}

static int push(uint32_t **arr, size_t *n, uint32_t x)
{
	uint32_t *a = realloc(*arr, (*n + 1) * sizeof(uint32_t));

	if (!a)
		return TALLY_ENOMEM;
	a[(*n)++] = x;
	*arr = a;
	return 0;
}

/* Seals this worker's shares of s_sk and b for each of its valid neighbours. */
static int seal_shares(tally_sa_client *c, const uint32_t *active, uint32_t n_active, tally_sa_box *boxes)
{
	tally_share *ss = sodium_malloc(2 * sizeof(tally_share) * n_active);
	uint8_t *plain = sodium_malloc(TALLY_SA_BOX_PLAIN);
	uint32_t xs[TALLY_SA_MAX_N];
	int rc = ss && plain ? 0 : TALLY_ENOMEM;

	for (uint32_t i = 0; i < n_active; i++)
		xs[i] = active[i] + 1;
	if (rc == 0)
		rc = tally_shamir_split(c->sec->s_sk, c->p.t, n_active, xs, ss);
	if (rc == 0)
		rc = tally_shamir_split(c->sec->b, c->p.t, n_active, xs, ss + n_active);
	for (uint32_t i = 0; rc == 0 && i < n_active; i++) {
		uint32_t j = active[i];

		boxes[i].from = c->me;
		boxes[i].to = j;
		for (int b = 0; b < 4; b++) {
			plain[b] = (uint8_t)(c->me >> (8 * b));
			plain[4 + b] = (uint8_t)(j >> (8 * b));
		}
		tally_shamir_pack(&ss[i], plain + 8);
		tally_shamir_pack(&ss[n_active + i], plain + 8 + TALLY_SHAMIR_SHARE_BYTES);
		rc = sa_box_seal(&boxes[i], c->sec->c_sk, c->keys[j].c_pk, c->session, c->p.round, plain);
	}
	sodium_free(ss);
	sodium_free(plain);
	return rc;
}

static int share(tally_sa_client *c, const tally_sa_advert *list, size_t n_list, tally_sa_box **boxes,
		 size_t *n_boxes, uint32_t **rejected, size_t *n_rejected);

/* Each attempt starts from a clean view of the peers, so a refused list leaves nothing behind. */
int tally_sa_client_share(tally_sa_client *c, const tally_sa_advert *list, size_t n_list,
			  tally_sa_box **boxes, size_t *n_boxes, uint32_t **rejected, size_t *n_rejected)
{
	int rc;

	if (c->stage == C_ADVERTISED) {
		memset(c->keys, 0, c->p.n * sizeof(*c->keys));
		memset(c->valid, 0, c->p.n * sizeof(bool));
	}
	rc = share(c, list, n_list, boxes, n_boxes, rejected, n_rejected);
	if (rc) {
		free(*rejected);
		*rejected = NULL;
		*n_rejected = 0;
	}
	return rc;
}

static int share(tally_sa_client *c, const tally_sa_advert *list, size_t n_list, tally_sa_box **boxes,
		 size_t *n_boxes, uint32_t **rejected, size_t *n_rejected)
{
	uint32_t active[TALLY_SA_MAX_N], n_active = 0;
	int rc;

	*boxes = NULL;
	*rejected = NULL;
	*n_boxes = *n_rejected = 0;
	if (c->stage != C_ADVERTISED)
		return tally_err(TALLY_EPROTO, "key list before this worker advertised its keys");
	if ((rc = check_list(c, list, n_list)))
		return rc;
	sa_session_id(&c->p, c->names, list, n_list, c->session);
	if ((rc = tally_graph_neighbours(c->session, c->p.n, c->p.k, c->me, c->nbr)))
		return rc;
	for (size_t i = 0; i < n_list; i++)
		if (list[i].index != c->me && !c->valid[list[i].index] && (rc = push(rejected, n_rejected, list[i].index)))
			return rc;
	for (uint32_t i = 0; i < c->p.k; i++)
		if (c->valid[c->nbr[i]])
			active[n_active++] = c->nbr[i];
	if (n_active < c->p.t)
		return tally_err(TALLY_EQUORUM, "only %u of %u neighbours advertised valid keys; threshold is %u",
				 n_active, c->p.k, c->p.t);
	*boxes = calloc(n_active, sizeof(tally_sa_box));
	if (!*boxes)
		return TALLY_ENOMEM;
	rc = seal_shares(c, active, n_active, *boxes);
	if (rc) {
		free(*boxes);
		*boxes = NULL;
		return rc;
	}
	*n_boxes = n_active;
	c->stage = C_SHARED;
	return 0;
}

/* Opens one box addressed to this worker and keeps the two shares it holds for the sender. */
static int open_box(tally_sa_client *c, const tally_sa_box *box)
{
	uint8_t *plain = sodium_malloc(TALLY_SA_BOX_PLAIN);
	uint32_t from = box->from, to_check = 0, from_check = 0;
	int rc = plain ? 0 : TALLY_ENOMEM;

	if (rc == 0)
		rc = sa_box_open(box, c->sec->c_sk, c->keys[from].c_pk, c->session, c->p.round, plain);
	for (int b = 0; rc == 0 && b < 4; b++) {
		from_check |= (uint32_t)plain[b] << (8 * b);
		to_check |= (uint32_t)plain[4 + b] << (8 * b);
	}
	if (rc == 0 && (from_check != from || to_check != c->me))
		rc = tally_err(TALLY_ECRYPTO, "share box from %u names the wrong pair", from);
	if (rc == 0)
		rc = tally_shamir_unpack(&c->sec->held_s[from], plain + 8);
	if (rc == 0)
		rc = tally_shamir_unpack(&c->sec->held_b[from], plain + 8 + TALLY_SHAMIR_SHARE_BYTES);
	if (rc == 0 && (c->sec->held_s[from].x != c->me + 1 || c->sec->held_b[from].x != c->me + 1))
		rc = tally_err(TALLY_ECRYPTO, "share box from %u holds shares for another point", from);
	c->held[from] = rc == 0;
	sodium_free(plain);
	return rc;
}

/* Key agreement with every neighbour kept in U2, and the self-mask key: done once the relay is in,
 * so that masking itself is keystream only. */
/*
 * The sign of neighbour i's pair mask in this worker's masked input: 0 for a peer left out, +1
 * toward a higher index, -1 toward a lower one. Before the relay (stage C_SHARED) every peer
 * with a valid advert counts; from the relay on, only those the coordinator kept (U2).
 */
static int8_t pair_sign(const tally_sa_client *c, uint32_t i)
{
	uint32_t j = c->nbr[i];
	bool in = c->valid[j] && (c->stage == C_SHARED || c->in_u2[j]);

	return (int8_t)(!in ? 0 : c->me < j ? 1 : -1);
}

/* Derives the self-mask key and the pair keys of the peers pair_sign counts, once each. */
static int derive_mask_keys(tally_sa_client *c)
{
	uint64_t elems = c->p.length + 1;
	int rc = 0;

	if (!c->self_ready)
		tally_mask_kdf(c->sec->self_key, c->sec->b, TALLY_MASK_SELF, c->session, c->p.round, elems);
	c->self_ready = true;
	for (uint32_t i = 0; rc == 0 && i < c->p.k; i++) {
		if (c->has_key[i] || pair_sign(c, i) == 0)
			continue;
		rc = tally_mask_agree(c->sec->pair_key[i], c->sec->s_sk, c->keys[c->nbr[i]].s_pk, TALLY_MASK_PAIR,
				      c->session, c->p.round, elems);
		c->has_key[i] = rc == 0;
	}
	return rc;
}

static bool is_neighbour(const tally_sa_client *c, uint32_t j)
{
	return sa_contains(c->nbr, c->p.k, j);
}

static int receive(tally_sa_client *c, const uint32_t *u2, size_t n_u2, const tally_sa_box *boxes,
		   size_t n_boxes, uint32_t **rejected, size_t *n_rejected);

int tally_sa_client_receive(tally_sa_client *c, const uint32_t *u2, size_t n_u2, const tally_sa_box *boxes,
			    size_t n_boxes, uint32_t **rejected, size_t *n_rejected)
{
	int rc;

	if (c->stage == C_SHARED) {
		memset(c->in_u2, 0, c->p.n * sizeof(bool));
		memset(c->held, 0, c->p.n * sizeof(bool));
	}
	rc = receive(c, u2, n_u2, boxes, n_boxes, rejected, n_rejected);
	if (rc) {
		free(*rejected);
		*rejected = NULL;
		*n_rejected = 0;
	}
	return rc;
}

static int receive(tally_sa_client *c, const uint32_t *u2, size_t n_u2, const tally_sa_box *boxes,
		   size_t n_boxes, uint32_t **rejected, size_t *n_rejected)
{
	int rc = 0;

	*rejected = NULL;
	*n_rejected = 0;
	if (c->stage != C_SHARED)
		return tally_err(TALLY_EPROTO, "share relay before this worker shared its keys");
	for (size_t i = 0; i < n_u2; i++) {
		if (u2[i] >= c->p.n || (i > 0 && u2[i] <= u2[i - 1]))
			return tally_err(TALLY_EFORMAT, "U2 is not in ascending index order within %u", c->p.n);
		c->in_u2[u2[i]] = true;
	}
	if (!c->in_u2[c->me])
		return tally_err(TALLY_EPROTO, "the coordinator dropped this worker after share keys");
	for (size_t i = 0; i < n_boxes; i++) {
		const tally_sa_box *b = &boxes[i];

		if (b->to != c->me || b->from >= c->p.n || !c->in_u2[b->from] || !c->valid[b->from] ||
		    !is_neighbour(c, b->from) || c->held[b->from])
			continue; /* not for us, or a duplicate: the sender counts as missing below */
		open_box(c, b);
	}
	for (uint32_t i = 0; i < c->p.k && rc == 0; i++) {
		uint32_t j = c->nbr[i];

		if (c->in_u2[j] && c->valid[j] && !c->held[j])
			rc = push(rejected, n_rejected, j);
	}
	if (rc == 0)
		rc = derive_mask_keys(c);
	if (rc == 0)
		c->stage = C_RECEIVED;
	return rc;
}

static void free_mask(tally_sa_client *c)
{
	if (c->mask)
		sodium_memzero(c->mask, tally_sa_vector_words(&c->p) * 4);
	vector_release(c->mask, tally_sa_vector_words(&c->p) * 4);
	c->mask = NULL;
}

/*
 * Masks ahead of time. From share keys on (C_SHARED) the pair masks of every peer with a valid
 * advert are summed, while the model downloads; once the relay is in (C_RECEIVED), a peer the
 * coordinator did not keep has its mask taken back out and one first left out is added, so the
 * sum always matches pair_sign (a peer dropping between the two stages costs one keystream).
 */
int tally_sa_client_prepare(tally_sa_client *c)
{
	size_t bytes = tally_sa_vector_words(&c->p) * 4, elems = (size_t)c->p.length + 1;
	int rc;

	if (c->stage != C_SHARED && c->stage != C_RECEIVED)
		return tally_err(TALLY_EPROTO, "masks before share keys or after the masked input");
	if ((rc = derive_mask_keys(c)))
		return rc;
	if (c->mask) {
		for (uint32_t i = 0; i < c->p.k; i++) {
			int8_t want = pair_sign(c, i);
			int delta = want - c->msign[i];

			if (delta == 0)
				continue;
			assert(c->has_key[i] && (delta == 1 || delta == -1));
			if (c->p.quant.ring_bits == 32)
				tally_mask_add_u32(c->mask, elems, 0, c->sec->pair_key[i], delta);
			else
				tally_mask_add_u64((uint64_t *)(void *)c->mask, elems, 0, c->sec->pair_key[i], delta);
			c->msign[i] = want;
		}
		return 0;
	}
	c->mask = vector_alloc(bytes);
	if (!c->mask)
		return TALLY_ENOMEM;
	for (uint32_t i = 0; i < c->p.k; i++)
		c->msign[i] = pair_sign(c, i);
	/* Self mask plus every pair mask in one pass over the vector, slice by slice. */
	if (c->p.quant.ring_bits == 32)
		tally_mask_sum_u32(c->mask, elems, c->sec->self_key, (const uint8_t(*)[TALLY_MASK_KEY])c->sec->pair_key,
				   c->msign, c->p.k);
	else
		tally_mask_sum_u64((uint64_t *)(void *)c->mask, elems, c->sec->self_key,
				   (const uint8_t(*)[TALLY_MASK_KEY])c->sec->pair_key, c->msign, c->p.k);
	return 0;
}

int tally_sa_client_mask(tally_sa_client *c, const float *update, uint64_t w, tally_rng *rng, uint32_t **masked)
{
	int rc;

	*masked = NULL;
	if (c->stage != C_RECEIVED)
		return tally_err(TALLY_EPROTO, "masking before the share relay");
	if ((rc = tally_sa_client_prepare(c)))
		return rc;
	/* Quantize straight into the mask: one pass, and the vector leaves this state masked. */
	rc = tally_quant_encode_add(&c->p.quant, update, (size_t)c->p.length, w, rng, c->mask);
	if (rc)
		return rc; /* the mask stays for another try */
	c->stage = C_MASKED;
	*masked = c->mask;
	c->mask = NULL;
	return 0;
}

static int check_unmask_lists(const tally_sa_client *c, const uint32_t *dropped, size_t nd, const uint32_t *surv,
			      size_t ns)
{
	for (size_t i = 0; i < nd; i++)
		if (dropped[i] >= c->p.n || (i > 0 && dropped[i] <= dropped[i - 1]) || sa_contains(surv, ns, dropped[i]))
			return tally_err(TALLY_EPROTO, "unmask request: dropped list is malformed or overlaps the survivors");
	for (size_t i = 0; i < ns; i++)
		if (surv[i] >= c->p.n || (i > 0 && surv[i] <= surv[i - 1]))
			return tally_err(TALLY_EPROTO, "unmask request: survivor list is malformed");
	if (!sa_contains(surv, ns, c->me))
		return tally_err(TALLY_EPROTO, "unmask request leaves this worker out of the survivors");
	return 0;
}

int tally_sa_client_unmask(tally_sa_client *c, const uint32_t *dropped, size_t n_dropped,
			   const uint32_t *survivors, size_t n_survivors, tally_sa_reveal **out, size_t *n_out)
{
	tally_sa_reveal *r;
	size_t n = 0;
	int rc;

	*out = NULL;
	*n_out = 0;
	if (c->stage != C_MASKED)
		return tally_err(TALLY_EPROTO, c->stage == C_UNMASKED ? "this worker already answered an unmask request"
								     : "unmask request before this worker's masked input");
	if ((rc = check_unmask_lists(c, dropped, n_dropped, survivors, n_survivors)))
		return rc;
	c->stage = C_UNMASKED; /* once only, whatever happens next */
	r = sodium_malloc(sizeof(*r) * (c->p.k + 1));
	if (!r)
		return TALLY_ENOMEM;
	for (uint32_t i = 0; i < c->p.k; i++) {
		uint32_t j = c->nbr[i];
		bool surv = sa_contains(survivors, n_survivors, j), drop = sa_contains(dropped, n_dropped, j);

		if (!c->held[j] || (!surv && !drop))
			continue;
		r[n].owner = j;
		r[n].kind = surv ? TALLY_SA_REVEAL_B : TALLY_SA_REVEAL_S;
		r[n].share = surv ? c->sec->held_b[j] : c->sec->held_s[j];
		n++;
	}
	*out = r;
	*n_out = n;
	return 0;
}

void tally_sa_reveals_free(tally_sa_reveal *r)
{
	sodium_free(r);
}

bool tally_sa_client_can_mask(const tally_sa_client *c)
{
	return c->stage == C_RECEIVED;
}

size_t tally_sa_client_words(const tally_sa_client *c)
{
	return tally_sa_vector_words(&c->p);
}
