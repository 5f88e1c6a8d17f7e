/* journal.c: the change journal (journal.h). A ring of (seq, path) entries; `floor` is the oldest
 * token still answerable: a token below it lost changes (dropped to stay in bounds, or reported
 * lost by the watch). Tokens read "sandmount:INSTANCE:GEN:SEQ" (INSTANCE 16 hex digits, random per
 * daemon; GEN counts the times the watch became live). */
#include "journal.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define ENTRY_OVERHEAD (sizeof(struct jentry) + 1)

struct jentry {
	uint64_t seq;
	char *path;
};

struct journal {
	pthread_mutex_t lock;
	uint64_t instance, gen, seq, floor;
	bool live;
	struct jentry *ring;
	size_t cap, head, count; /* entries ring[head .. head+count) (mod cap), oldest first */
	size_t bytes, max_bytes;
};

static uint64_t random_instance(void)
{
	uint64_t v;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t)sizeof(v))
		return v;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 20 ^ (uint64_t)getpid() << 40;
}

struct journal *journal_new(size_t max_entries, size_t max_bytes)
{
	struct journal *j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	j->ring = calloc(max_entries ? max_entries : 1, sizeof(*j->ring));
	if (!j->ring) {
		free(j);
		return NULL;
	}
	pthread_mutex_init(&j->lock, NULL);
	j->cap = max_entries ? max_entries : 1;
	j->max_bytes = max_bytes;
	j->instance = random_instance();
	return j;
}

static void drop_oldest(struct journal *j)
{
	struct jentry *e = &j->ring[j->head];
	j->floor = e->seq; /* a token below it misses this change */
	j->bytes -= strlen(e->path) + ENTRY_OVERHEAD;
	free(e->path);
	e->path = NULL;
	j->head = (j->head + 1) % j->cap;
	j->count--;
}

static void drop_all(struct journal *j)
{
	while (j->count)
		drop_oldest(j);
}

void journal_free(struct journal *j)
{
	if (!j)
		return;
	drop_all(j);
	free(j->ring);
	pthread_mutex_destroy(&j->lock);
	free(j);
}

/* Everything up to now is unknown to any token issued so far. */
static void forget(struct journal *j)
{
	drop_all(j);
	j->floor = ++j->seq;
}

void journal_add(struct journal *j, const char *path)
{
	pthread_mutex_lock(&j->lock);
	size_t size = path ? strlen(path) + ENTRY_OVERHEAD : 0;
	char *copy = path && size <= j->max_bytes ? strdup(path) : NULL;
	if (!copy) {
		forget(j);
	} else {
		while (j->count && (j->count == j->cap || j->bytes + size > j->max_bytes))
			drop_oldest(j);
		struct jentry *e = &j->ring[(j->head + j->count) % j->cap];
		e->seq = ++j->seq;
		e->path = copy;
		j->count++;
		j->bytes += size;
	}
	pthread_mutex_unlock(&j->lock);
}

void journal_set_live(struct journal *j, bool live)
{
	pthread_mutex_lock(&j->lock);
	if (live && !j->live)
		j->gen++;
	j->live = live;
	forget(j);
	pthread_mutex_unlock(&j->lock);
}

bool journal_live(struct journal *j)
{
	pthread_mutex_lock(&j->lock);
	bool live = j->live;
	pthread_mutex_unlock(&j->lock);
	return live;
}

/* The sequence number a token of this instance and generation names; false for any other. */
static bool parse_token(const struct journal *j, const char *token, uint64_t *seq)
{
	uint64_t inst, gen;
	int end = 0;
	if (sscanf(token, "sandmount:%16" SCNx64 ":%" SCNu64 ":%" SCNu64 "%n", &inst, &gen, seq,
		   &end) != 3 ||
	    token[end] != 0)
		return false;
	return inst == j->instance && gen == j->gen;
}

static int answer(struct journal *j, uint64_t since, struct buf *out, uint32_t *n, size_t max_bytes)
{
	if (!j->live || since < j->floor || since > j->seq)
		return 1;
	size_t start = out->len;
	for (size_t i = 0; i < j->count; i++) {
		const struct jentry *e = &j->ring[(j->head + i) % j->cap];
		if (e->seq <= since)
			continue;
		buf_put_cstring(out, e->path);
		(*n)++;
		if (out->len - start > max_bytes || !buf_ok(out))
			return 1;
	}
	return 0;
}

int journal_since(struct journal *j, const char *token, struct buf *out, uint32_t *n,
		  size_t max_bytes, char new_token[JOURNAL_TOKEN_MAX])
{
	size_t start = out->len;
	*n = 0;
	pthread_mutex_lock(&j->lock);
	uint64_t since;
	int rc = parse_token(j, token, &since) ? answer(j, since, out, n, max_bytes) : 1;
	snprintf(new_token, JOURNAL_TOKEN_MAX, "sandmount:%016" PRIx64 ":%" PRIu64 ":%" PRIu64,
		 j->instance, j->gen, j->seq);
	pthread_mutex_unlock(&j->lock);
	if (rc) {
		buf_truncate(out, start);
		*n = 0;
	}
	return rc;
}
