/* negative.c: the "does not exist" answers the kernel may keep while the watch is trusted.
 *
 * A lookup that finds nothing can be answered with a negative entry the kernel keeps as long as
 * a positive one (git, compilers and module resolvers ask for the same missing names again and
 * again). A change the sandbox reports expires the name (notify.c); but when the watch ends or
 * overflows, the barrier must expire every negative entry the kernel may still hold, and the
 * kernel offers no list of them. This set is that list. A positive entry for the name, a local
 * rename onto it or a reported change takes the name out again. Bounded in entries: when it is
 * full, further misses are answered without being kept, until the next barrier empties it. */
#include "negative.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NEGATIVE_BUCKETS 16384u

struct negative {
	struct negative *next;
	uint64_t parent;
	char name[];
};

struct negative_set {
	pthread_mutex_t lock;
	size_t count, max;
	struct negative *bucket[NEGATIVE_BUCKETS];
};

struct negative_set *negative_set_new(size_t max_entries)
{
	struct negative_set *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	s->max = max_entries;
	return s;
}

static unsigned bucket_of(uint64_t parent, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ parent; /* FNV-1a over the name */
	for (const unsigned char *c = (const unsigned char *)name; *c; c++)
		h = (h ^ *c) * 1099511628211ull;
	return (unsigned)(h ^ (h >> 32)) & (NEGATIVE_BUCKETS - 1);
}

bool negative_add(struct negative_set *s, uint64_t parent, const char *name)
{
	unsigned b = bucket_of(parent, name);
	size_t len = strlen(name);
	bool ok = false;
	pthread_mutex_lock(&s->lock);
	struct negative *n = s->bucket[b];
	while (n && (n->parent != parent || strcmp(n->name, name) != 0))
		n = n->next;
	if (n) {
		ok = true;
	} else if (s->count < s->max && (n = malloc(sizeof(*n) + len + 1))) {
		n->parent = parent;
		memcpy(n->name, name, len + 1);
		n->next = s->bucket[b];
		s->bucket[b] = n;
		s->count++;
		ok = true;
	}
	pthread_mutex_unlock(&s->lock);
	return ok;
}

void negative_remove(struct negative_set *s, uint64_t parent, const char *name)
{
	unsigned b = bucket_of(parent, name);
	pthread_mutex_lock(&s->lock);
	for (struct negative **p = &s->bucket[b]; *p; p = &(*p)->next) {
		struct negative *n = *p;
		if (n->parent == parent && strcmp(n->name, name) == 0) {
			*p = n->next;
			s->count--;
			free(n);
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
}

/* Detach every entry into one list (under the lock); the caller walks it without the lock. */
static struct negative *detach_all(struct negative_set *s)
{
	struct negative *all = NULL;
	pthread_mutex_lock(&s->lock);
	for (unsigned b = 0; b < NEGATIVE_BUCKETS; b++) {
		while (s->bucket[b]) {
			struct negative *n = s->bucket[b];
			s->bucket[b] = n->next;
			n->next = all;
			all = n;
		}
	}
	s->count = 0;
	pthread_mutex_unlock(&s->lock);
	return all;
}

void negative_take_all(struct negative_set *s,
		       void (*fn)(void *ctx, uint64_t parent, const char *name), void *ctx)
{
	struct negative *n = detach_all(s);
	while (n) {
		struct negative *next = n->next;
		if (fn)
			fn(ctx, n->parent, n->name);
		free(n);
		n = next;
	}
}

size_t negative_count(struct negative_set *s)
{
	pthread_mutex_lock(&s->lock);
	size_t n = s->count;
	pthread_mutex_unlock(&s->lock);
	return n;
}

void negative_set_free(struct negative_set *s)
{
	if (!s)
		return;
	negative_take_all(s, NULL, NULL);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
