/*
 * The coordinator's side of secure aggregation: a state machine over one round that collects
 * adverts, relays share boxes, tracks which masked inputs went into the sum, gathers revealed
 * shares and finally strips the masks off the sum. It never sees one worker's unmasked input:
 * it only ever holds the sum.
 */
#include "secagg_internal.h"

#include "tally/error.h"
#include "tally/graph.h"
#include "tally/mask.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

typedef struct boxlist {
	tally_sa_box *b;
	size_t n, cap;
} boxlist;

typedef struct sharelist {
	tally_share *s;
	size_t n, cap;
} sharelist;

struct tally_sa_server {
	tally_sa_params p;
	char (*names)[64];
	const tally_roster *roster;
	tally_sa_stage stage;
	char reason[256];
	uint8_t session[32];
	tally_sa_advert *adv, *list;       /* adverts by index; the compact key list */
	size_t n_list;
	bool *has_adv, *shared, *bad, *acked, *accepted, *input, *revealed;
	boxlist *to;                       /* boxes by recipient */
	uint32_t *u2, *accept, *dropped, *survivors;
	size_t n_u2, n_accept, n_dropped, n_survivors;
	sharelist *b_shares, *s_shares;    /* revealed shares by owner */
};

static int fail(tally_sa_server *s, int code, const char *reason)
{
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	s->stage = TALLY_SA_ABORTED;
	return tally_err(code, "secure aggregation aborted: %s", reason);
}

void tally_sa_server_abort(tally_sa_server *s, const char *reason)
{
	fail(s, TALLY_EQUORUM, reason);
}

tally_sa_stage tally_sa_server_stage(const tally_sa_server *s)
{
	return s->stage;
}

const char *tally_sa_server_reason(const tally_sa_server *s)
{
	return s->reason;
}

int tally_sa_server_new(tally_sa_server **out, const tally_sa_params *p, const char *const *names,
			const tally_roster *roster)
{
	tally_sa_server *s;
	uint32_t n = p->n;
	int rc = tally_sa_params_check(p);

	if (rc)
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s)
		return TALLY_ENOMEM;
	s->p = *p;
	s->roster = roster;
	s->adv = calloc(n, sizeof(*s->adv));
	s->list = calloc(n, sizeof(*s->list));
	s->has_adv = calloc(n, 1), s->shared = calloc(n, 1), s->bad = calloc(n, 1), s->acked = calloc(n, 1);
	s->accepted = calloc(n, 1), s->input = calloc(n, 1), s->revealed = calloc(n, 1);
	s->to = calloc(n, sizeof(*s->to));
	s->u2 = calloc(n, 4), s->accept = calloc(n, 4), s->dropped = calloc(n, 4), s->survivors = calloc(n, 4);
	s->b_shares = calloc(n, sizeof(sharelist)), s->s_shares = calloc(n, sizeof(sharelist));
	if (!s->adv || !s->list || !s->has_adv || !s->shared || !s->bad || !s->acked || !s->accepted || !s->input ||
	    !s->revealed || !s->to || !s->u2 || !s->accept || !s->dropped || !s->survivors || !s->b_shares ||
	    !s->s_shares)
		rc = TALLY_ENOMEM;
	if (rc == 0)
		rc = sa_copy_names(&s->names, names, n);
	if (rc) {
		tally_sa_server_destroy(&s);
		return rc;
	}
	*out = s;
	return 0;
}

void tally_sa_server_destroy(tally_sa_server **sp)
{
	tally_sa_server *s;

	if (!sp || !*sp)
		return;
	s = *sp;
	for (uint32_t i = 0; s->to && i < s->p.n; i++)
		free(s->to[i].b);
	for (uint32_t i = 0; s->b_shares && s->s_shares && i < s->p.n; i++) {
		free(s->b_shares[i].s);
		free(s->s_shares[i].s);
	}
	free(s->names), free(s->adv), free(s->list), free(s->has_adv), free(s->shared), free(s->bad);
	free(s->acked), free(s->accepted), free(s->input), free(s->revealed), free(s->to);
	free(s->u2), free(s->accept), free(s->dropped), free(s->survivors), free(s->b_shares), free(s->s_shares);
	free(s);
	*sp = NULL;
}

bool tally_sa_server_expects(const tally_sa_server *s, uint32_t i)
{
	if (i >= s->p.n)
		return false;
	switch (s->stage) {
	case TALLY_SA_ADVERTISE: return !s->has_adv[i];
	case TALLY_SA_SHARE: return s->has_adv[i] && !s->shared[i];
	case TALLY_SA_RELAY: return sa_contains(s->u2, s->n_u2, i) && !s->acked[i];
	case TALLY_SA_INPUT: return s->accepted[i] && !s->input[i];
	case TALLY_SA_UNMASK: return sa_contains(s->survivors, s->n_survivors, i) && !s->revealed[i];
	default: return false;
	}
}

/* ---- stage 0: advertise ---- */

int tally_sa_server_on_advert(tally_sa_server *s, uint32_t from, const tally_sa_advert *a)
{
	const uint8_t *pk;

	if (s->stage != TALLY_SA_ADVERTISE || from >= s->p.n || a->index != from || s->has_adv[from])
		return tally_err(TALLY_EPROTO, "advert from %u out of place", from);
	pk = s->roster ? tally_roster_sign_key(s->roster, s->names[from]) : NULL;
	if (s->roster && (!pk || !sa_advert_verify(&s->p, s->names[from], pk, a)))
		return tally_err(TALLY_ECRYPTO, "advert of '%s' is not signed by its enrolled identity", s->names[from]);
	s->adv[from] = *a;
	s->has_adv[from] = true;
	return 0;
}

int tally_sa_server_close_advertise(tally_sa_server *s, const tally_sa_advert **list, size_t *n)
{
	if (s->stage != TALLY_SA_ADVERTISE)
		return tally_err(TALLY_EPROTO, "advertise stage already closed");
	s->n_list = 0;
	for (uint32_t i = 0; i < s->p.n; i++)
		if (s->has_adv[i])
			s->list[s->n_list++] = s->adv[i];
	if (s->n_list < s->p.t || s->n_list < 2)
		return fail(s, TALLY_EQUORUM, "fewer workers than the threshold advertised keys");
	sa_session_id(&s->p, s->names, s->list, s->n_list, s->session);
	s->stage = TALLY_SA_SHARE;
	*list = s->list;
	*n = s->n_list;
	return 0;
}

/* ---- stage 1: share keys ---- */

static bool neighbours(const tally_sa_server *s, uint32_t i, uint32_t *out)
{
	return tally_graph_neighbours(s->session, s->p.n, s->p.k, i, out) == 0;
}

static int boxlist_push(boxlist *l, const tally_sa_box *b)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		tally_sa_box *nb = realloc(l->b, cap * sizeof(*nb));

		if (!nb)
			return TALLY_ENOMEM;
		l->b = nb;
		l->cap = cap;
	}
	l->b[l->n++] = *b;
	return 0;
}

/*
 * A worker names peers whose advert (stage 1) or share box (stage 2) it could not use. Either
 * those peers are faulty or the accuser is; dropping either keeps the masks consistent, so the
 * rule is about whom to believe: an accuser naming more than half of its neighbours is not
 * believed (an honest worker meets one or two faulty peers, not a crowd) and is dropped itself.
 */
static void note_accusations(tally_sa_server *s, uint32_t from, const uint32_t *ids, size_t n)
{
	size_t limit = s->p.k / 2 > 1 ? s->p.k / 2 : 1;

	if (n == 0)
		return;
	if (n > limit) {
		s->bad[from] = true;
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (ids[i] < s->p.n && ids[i] != from)
			s->bad[ids[i]] = true;
}

int tally_sa_server_on_shares(tally_sa_server *s, uint32_t from, const tally_sa_box *boxes, size_t n,
			      const uint32_t *rejected, size_t n_rejected)
{
	uint32_t nbr[TALLY_SA_MAX_N];
	int rc = 0;

	if (s->stage != TALLY_SA_SHARE || from >= s->p.n || !s->has_adv[from] || s->shared[from])
		return tally_err(TALLY_EPROTO, "shares from %u out of place", from);
	if (n > s->p.k || !neighbours(s, from, nbr))
		return tally_err(TALLY_EPROTO, "worker %u sent %zu share boxes for %u neighbours", from, n, s->p.k);
	for (size_t i = 0; i < n; i++) {
		const tally_sa_box *b = &boxes[i];

		if (b->from != from || b->to >= s->p.n || !s->has_adv[b->to] || !sa_contains(nbr, s->p.k, b->to))
			return tally_err(TALLY_EPROTO, "worker %u sent a share box to %u, not a neighbour", from, b->to);
	}
	note_accusations(s, from, rejected, n_rejected);
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = boxlist_push(&s->to[boxes[i].to], &boxes[i]);
	s->shared[from] = rc == 0;
	return rc;
}

/* Keeps, for every recipient, only the boxes whose sender is in U2. */
static void prune_boxes(tally_sa_server *s)
{
	for (uint32_t j = 0; j < s->p.n; j++) {
		boxlist *l = &s->to[j];
		size_t kept = 0;

		for (size_t i = 0; i < l->n; i++)
			if (sa_contains(s->u2, s->n_u2, l->b[i].from))
				l->b[kept++] = l->b[i];
		l->n = kept;
	}
}

int tally_sa_server_close_share(tally_sa_server *s, const uint32_t **u2, size_t *n_u2)
{
	if (s->stage != TALLY_SA_SHARE)
		return tally_err(TALLY_EPROTO, "share stage is not open");
	s->n_u2 = 0;
	for (uint32_t i = 0; i < s->p.n; i++)
		if (s->shared[i] && !s->bad[i])
			s->u2[s->n_u2++] = i;
	if (s->n_u2 < s->p.t || s->n_u2 < 2)
		return fail(s, TALLY_EQUORUM, "fewer workers than the threshold shared their keys");
	prune_boxes(s);
	s->stage = TALLY_SA_RELAY;
	memset(s->bad, 0, s->p.n);
	*u2 = s->u2;
	*n_u2 = s->n_u2;
	return 0;
}

int tally_sa_server_boxes_for(tally_sa_server *s, uint32_t to, const tally_sa_box **boxes, size_t *n)
{
	if (s->stage < TALLY_SA_RELAY || to >= s->p.n)
		return tally_err(TALLY_EPROTO, "no relay for %u", to);
	*boxes = s->to[to].b;
	*n = s->to[to].n;
	return 0;
}

/* ---- stage 2: relay acknowledged ---- */

int tally_sa_server_on_ack(tally_sa_server *s, uint32_t from, const uint32_t *rejected, size_t n)
{
	if (s->stage != TALLY_SA_RELAY || !sa_contains(s->u2, s->n_u2, from) || s->acked[from])
		return tally_err(TALLY_EPROTO, "acknowledgement from %u out of place", from);
	note_accusations(s, from, rejected, n);
	s->acked[from] = true;
	return 0;
}

int tally_sa_server_close_relay(tally_sa_server *s, const uint32_t **accept, size_t *n)
{
	if (s->stage != TALLY_SA_RELAY)
		return tally_err(TALLY_EPROTO, "relay stage is not open");
	s->n_accept = 0;
	for (size_t i = 0; i < s->n_u2; i++) {
		uint32_t j = s->u2[i];

		s->accepted[j] = !s->bad[j];
		if (s->accepted[j])
			s->accept[s->n_accept++] = j;
	}
	if (s->n_accept < s->p.t)
		return fail(s, TALLY_EQUORUM, "fewer workers than the threshold hold valid shares");
	s->stage = TALLY_SA_INPUT;
	*accept = s->accept;
	*n = s->n_accept;
	return 0;
}

/* ---- stage 3: masked inputs ---- */

int tally_sa_server_on_input(tally_sa_server *s, uint32_t i)
{
	if (s->stage != TALLY_SA_INPUT || i >= s->p.n || !s->accepted[i] || s->input[i])
		return tally_err(TALLY_EPROTO, "masked input of %u out of place", i);
	s->input[i] = true;
	return 0;
}

int tally_sa_server_close_input(tally_sa_server *s, const uint32_t **dropped, size_t *n_dropped,
				const uint32_t **survivors, size_t *n_survivors)
{
	if (s->stage != TALLY_SA_INPUT)
		return tally_err(TALLY_EPROTO, "input stage is not open");
	s->n_dropped = s->n_survivors = 0;
	for (size_t i = 0; i < s->n_u2; i++) {
		uint32_t j = s->u2[i];

		if (s->input[j])
			s->survivors[s->n_survivors++] = j;
		else
			s->dropped[s->n_dropped++] = j;
	}
	if (s->n_survivors < s->p.t)
		return fail(s, TALLY_EQUORUM, "fewer masked inputs than the threshold arrived");
	s->stage = TALLY_SA_UNMASK;
	*dropped = s->dropped;
	*n_dropped = s->n_dropped;
	*survivors = s->survivors;
	*n_survivors = s->n_survivors;
	return 0;
}

/* ---- stage 4: unmask ---- */

static int sharelist_push(sharelist *l, const tally_share *sh)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		tally_share *ns = realloc(l->s, cap * sizeof(*ns));

		if (!ns)
			return TALLY_ENOMEM;
		l->s = ns;
		l->cap = cap;
	}
	l->s[l->n++] = *sh;
	return 0;
}

/* A revealed share must be the one `from` holds: of a neighbour, of the right kind, at from + 1. */
static bool reveal_fits(const tally_sa_server *s, uint32_t from, const uint32_t *nbr, const tally_sa_reveal *r)
{
	if (r->owner >= s->p.n || !sa_contains(nbr, s->p.k, r->owner) || r->share.x != from + 1)
		return false;
	if (r->kind == TALLY_SA_REVEAL_B)
		return sa_contains(s->survivors, s->n_survivors, r->owner);
	return r->kind == TALLY_SA_REVEAL_S && sa_contains(s->dropped, s->n_dropped, r->owner);
}

int tally_sa_server_on_reveal(tally_sa_server *s, uint32_t from, const tally_sa_reveal *r, size_t n)
{
	uint32_t nbr[TALLY_SA_MAX_N];
	int rc = 0;

	if (s->stage != TALLY_SA_UNMASK || !sa_contains(s->survivors, s->n_survivors, from) || s->revealed[from])
		return tally_err(TALLY_EPROTO, "revealed shares from %u out of place", from);
	if (n > s->p.k || !neighbours(s, from, nbr))
		return tally_err(TALLY_EPROTO, "worker %u revealed %zu shares for %u neighbours", from, n, s->p.k);
	for (size_t i = 0; i < n; i++) {
		if (!reveal_fits(s, from, nbr, &r[i]))
			return tally_err(TALLY_EPROTO, "worker %u revealed a share it does not hold (owner %u)", from,
					 r[i].owner);
		for (size_t j = 0; j < i; j++)
			if (r[j].owner == r[i].owner)
				return tally_err(TALLY_EPROTO, "worker %u revealed two shares of %u", from, r[i].owner);
	}
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = sharelist_push(r[i].kind == TALLY_SA_REVEAL_B ? &s->b_shares[r[i].owner] : &s->s_shares[r[i].owner],
				    &r[i].share);
	s->revealed[from] = rc == 0;
	return rc;
}

static void strip(const tally_sa_params *p, uint32_t *sum, const uint8_t key[TALLY_MASK_KEY], int sign)
{
	size_t elems = (size_t)p->length + 1;

	if (p->quant.ring_bits == 32)
		tally_mask_add_u32(sum, elems, 0, key, sign);
	else
		tally_mask_add_u64((uint64_t *)sum, elems, 0, key, sign);
}

static int recover(tally_sa_server *s, const sharelist *l, uint32_t owner, const char *what, uint8_t secret[32])
{
	char why[160];

	if (l->n >= s->p.t && tally_shamir_combine(l->s, l->n, s->p.t, secret) == 0)
		return 0;
	snprintf(why, sizeof(why), "%s of '%s' not recoverable from %zu share(s) (threshold %u)", what,
		 s->names[owner], l->n, s->p.t);
	return fail(s, TALLY_EQUORUM, why);
}

/* Removes the self mask of survivor i. */
static int strip_self(tally_sa_server *s, uint32_t i, uint32_t *sum)
{
	uint8_t b[32], key[TALLY_MASK_KEY];
	int rc = recover(s, &s->b_shares[i], i, "self-mask seed", b);

	if (rc == 0) {
		tally_mask_kdf(key, b, TALLY_MASK_SELF, s->session, s->p.round, s->p.length + 1);
		strip(&s->p, sum, key, -1);
	}
	sodium_memzero(b, sizeof(b));
	sodium_memzero(key, sizeof(key));
	return rc;
}

static bool any_survivor(const tally_sa_server *s, const uint32_t *nbr)
{
	for (uint32_t i = 0; i < s->p.k; i++)
		if (sa_contains(s->survivors, s->n_survivors, nbr[i]))
			return true;
	return false;
}

/* Removes the pairwise masks that survivors made with dropped worker d. */
static int strip_dropped(tally_sa_server *s, uint32_t d, uint32_t *sum)
{
	uint8_t sk[32], pk[32], key[TALLY_MASK_KEY];
	uint32_t nbr[TALLY_SA_MAX_N];
	int rc;

	if (!neighbours(s, d, nbr))
		return fail(s, TALLY_EINVAL, "neighbour graph");
	if (!any_survivor(s, nbr))
		return 0; /* no survivor masked with it: nothing to remove */
	rc = recover(s, &s->s_shares[d], d, "mask key", sk);

	if (rc == 0 && (crypto_scalarmult_base(pk, sk) != 0 || memcmp(pk, s->adv[d].s_pk, 32) != 0))
		rc = fail(s, TALLY_ECRYPTO, "a reconstructed mask key does not match its advertised public key");
	for (uint32_t i = 0; rc == 0 && i < s->p.k; i++) {
		uint32_t j = nbr[i];

		if (!sa_contains(s->survivors, s->n_survivors, j))
			continue;
		rc = tally_mask_agree(key, sk, s->adv[j].s_pk, TALLY_MASK_PAIR, s->session, s->p.round, s->p.length + 1);
		if (rc == 0)
			strip(&s->p, sum, key, j < d ? -1 : +1); /* j added +PRG when j < d */
	}
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(key, sizeof(key));
	return rc;
}

int tally_sa_server_finish(tally_sa_server *s, uint32_t *sum, float *mean, uint64_t *total_weight)
{
	int rc = 0;

	if (s->stage != TALLY_SA_UNMASK)
		return tally_err(TALLY_EPROTO, "unmask stage is not open");
	for (size_t i = 0; rc == 0 && i < s->n_survivors; i++)
		rc = strip_self(s, s->survivors[i], sum);
	for (size_t i = 0; rc == 0 && i < s->n_dropped; i++)
		rc = strip_dropped(s, s->dropped[i], sum);
	if (rc == 0 && (rc = tally_quant_decode(&s->p.quant, sum, (size_t)s->p.length, mean, total_weight)))
		fail(s, rc, "the unmasked sum does not decode");
	if (rc == 0)
		s->stage = TALLY_SA_DONE;
	return rc;
}
