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
 * Chooses degree k (even, or n - 1 for the complete graph) and threshold t. Errors: TALLY_EINVAL
 * when gamma + delta (curious) or gamma + 2 delta (semi-malicious) exceeds 0.9, or n < 2.
 */
int tally_graph_params(uint32_t n, double gamma, double delta, bool semi_malicious, uint32_t *k, uint32_t *t);

/*
 * The neighbours of worker `self` (0..n-1, in the order of the session's sorted roster) in the
 * graph of degree k drawn from session: writes k indices, ascending, into out. Any thread.
 */
int tally_graph_neighbours(const uint8_t session[32], uint32_t n, uint32_t k, uint32_t self, uint32_t *out);

#endif
