/*
 * Internals shared by the two sides of secure aggregation (secagg_common.c, secagg_client.c,
 * secagg_server.c). Not part of the public API.
 */
#ifndef TALLY_SECAGG_INTERNAL_H
#define TALLY_SECAGG_INTERNAL_H

#include "tally/secagg.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

void sa_advert_digest(const tally_sa_params *p, const char *name, const tally_sa_advert *a, uint8_t out[32]);
bool sa_advert_verify(const tally_sa_params *p, const char *name, const uint8_t sign_pk[32], const tally_sa_advert *a);
void sa_session_id(const tally_sa_params *p, char (*names)[64], const tally_sa_advert *list, size_t n, uint8_t out[32]);
int sa_box_seal(tally_sa_box *box, const uint8_t my_c_sk[32], const uint8_t peer_c_pk[32], const uint8_t session[32],
		uint64_t round, const uint8_t plain[TALLY_SA_BOX_PLAIN]);
int sa_box_open(const tally_sa_box *box, const uint8_t my_c_sk[32], const uint8_t peer_c_pk[32], const uint8_t session[32],
		uint64_t round, uint8_t plain[TALLY_SA_BOX_PLAIN]);
int sa_copy_names(char (**out)[64], const char *const *names, uint32_t n);
bool sa_contains(const uint32_t *sorted, size_t n, uint32_t x);

#endif
