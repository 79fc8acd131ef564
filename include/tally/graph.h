/*
 * The SecAgg+ neighbour graph (Bell et al. 2020): each of n workers shares keys with and masks
 * against only k neighbours in a k-regular graph, with Shamir threshold t, instead of everyone.
 *
 * tally_graph_params chooses (k, t) from n, the assumed fraction gamma of adversarial clients and
 * the tolerated dropout fraction delta, so that the protocol fails with probability under 2^-20
 * and leaks with probability under 2^-40 (the figures of Google's federated-compute parameter
 * finder, anchors/secagg-graph-parameters.md); for small cohorts, or when the k-regular graph
 * would be nearly complete, it falls back to the complete graph (k = n - 1).
 *
 * The graph is a Harary graph H(k, n) (node i linked to i +- 1..k/2 mod n) on a permutation of
 * the workers drawn from the session id, so every party computes the same graph and the
 * coordinator cannot choose it.
 */
#ifndef TALLY_GRAPH_H
#define TALLY_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Chooses degree k (even, or n - 1 for the complete graph) and threshold t. t counts shares held
 * by a worker's k neighbours. Cohorts under 65 workers always get the complete graph, as does any
 * cohort for which no even k < n - 1 meets both bounds. Errors: TALLY_EINVAL when gamma or delta
 * is outside [0, 1), gamma + delta (curious) or gamma + 2 delta (semi-malicious) exceeds 0.9,
 * n < 2, or (only for a handful of workers) even the complete graph has no threshold that
 * outnumbers the adversarial neighbours and fits within the surviving ones. Any thread.
 */
int tally_graph_params(uint32_t n, double gamma, double delta, bool semi_malicious, uint32_t *k, uint32_t *t);

/*
 * The neighbours of worker `self` (0..n-1, in the order of the session's sorted roster) in the
 * graph of degree k drawn from session: writes k indices, ascending, into out. Errors as for
 * tally_graph_ring_neighbours below, and TALLY_ENOMEM (it needs 8 n bytes of scratch). Any thread.
 */
int tally_graph_neighbours(const uint8_t session[32], uint32_t n, uint32_t k, uint32_t self, uint32_t *out);

/*
 * The session's ring, for callers that need many workers' neighbours (the coordinator): ring[p]
 * is the worker at position p, pos[w] the position of worker w (n entries each, caller-owned).
 * tally_graph_neighbours(session, ...) equals tally_graph_ring_neighbours(ring, pos, ...) after
 * one tally_graph_ring(session, ...), at O(k log k) per worker instead of O(n). The rng is seeded
 * from session bytes 0..7 (seed) and 8..15 (stream), little-endian. Errors: TALLY_EINVAL for
 * n == 0; for the neighbours, TALLY_EINVAL for self >= n, k == 0, k >= n, or k odd and not n - 1
 * (ring and pos may be NULL for k == n - 1). Any thread.
 */
int tally_graph_ring(const uint8_t session[32], uint32_t n, uint32_t *ring, uint32_t *pos);
int tally_graph_ring_neighbours(const uint32_t *ring, const uint32_t *pos, uint32_t n, uint32_t k,
				uint32_t self, uint32_t *out);

#endif
