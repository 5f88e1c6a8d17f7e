/* docker_fuzz.h: what the Docker targets share: a transport object with no daemon behind it (only
 * its lock and condition, which the bridge takes) and a private copy of the input, so that a read
 * one byte past it is an out-of-bounds access for ASan. */
#ifndef SANDMOUNT_FUZZ_DOCKER_H
#define SANDMOUNT_FUZZ_DOCKER_H

#include <stdlib.h>
#include <string.h>

#include "docker/docker_internal.h"

static inline void fuzz_docker_tr_init(struct docker_tr *tr)
{
	memset(tr, 0, sizeof(*tr));
	pthread_mutex_init(&tr->lock, NULL);
	pthread_cond_init(&tr->cond, NULL);
}

static inline void fuzz_docker_tr_free(struct docker_tr *tr)
{
	pthread_mutex_destroy(&tr->lock);
	pthread_cond_destroy(&tr->cond);
}

/* A malloc'd copy of p (at least one byte allocated), viewed by b; free b->data after. */
static inline int fuzz_copy(struct buf *b, const uint8_t *p, size_t n)
{
	uint8_t *copy = malloc(n ? n : 1);
	if (!copy)
		return -1;
	memcpy(copy, p, n);
	buf_view(b, copy, n);
	return 0;
}

#endif
