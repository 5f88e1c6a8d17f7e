/* listing.c: complete listings (listing.h): for each directory whose names are known for sure,
 * the set of those names, plus the names whose state a local operation left in doubt.
 *
 * A listing is begun (the caller then reads the directory from the sandbox and adds every name)
 * and committed. Anything that happens to the directory in between (a note, a drop, another
 * begin) drops the pending listing, so the commit fails: what was read may predate the change.
 * A complete listing follows the local operations' outcomes; a doubted name answers UNKNOWN
 * until an operation that tells the truth about it (ADDED or REMOVED) settles it.
 *
 * The sandbox is hostile: names are bounded in number over all directories (LISTING_MAX_NAMES)
 * and doubts per directory (LISTING_MAX_DOUBTS); past a bound the listing is not kept. All sets
 * are open-addressing hash tables (linear probing, power-of-two capacity, backward-shift delete,
 * shrunk when mostly empty) under a seeded hash, so chosen names cannot pile up in one run. */
#include "listing.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define TABLE_MIN_CAP 8

struct slot {
	uint64_t hash;
	void *item; /* NULL: empty */
};

/* An open-addressing hash table of items; what an item is and how it matches a key is the
 * caller's (a match function). */
struct table {
	struct slot *slot;
	size_t cap, count; /* cap: 0 or a power of two */
};

typedef bool (*match_fn)(const void *item, const void *key);

struct dirlist {
	uint64_t dir, token;
	bool complete;		    /* committed; else pending since the begin with token */
	struct table names, doubts; /* of malloc'd names */
};

struct listings {
	pthread_mutex_t lock;
	uint64_t seed, generation;
	size_t names;	   /* names held in every dirlist's names (pending and complete) */
	struct table dirs; /* of struct dirlist, by dir */
};

/* The slot holding the item matching key, or the empty slot ending its probe run. t->cap > 0. */
static size_t table_find(const struct table *t, uint64_t hash, match_fn match, const void *key)
{
	size_t mask = t->cap - 1, i = hash & mask;
	while (t->slot[i].item && (t->slot[i].hash != hash || !match(t->slot[i].item, key)))
		i = (i + 1) & mask;
	return i;
}

static void *table_get(const struct table *t, uint64_t hash, match_fn match, const void *key)
{
	return t->cap ? t->slot[table_find(t, hash, match, key)].item : NULL;
}

static bool table_resize(struct table *t, size_t cap)
{
	struct slot *s = calloc(cap, sizeof(*s));
	if (!s)
		return false;
	for (size_t i = 0; i < t->cap; i++) {
		if (!t->slot[i].item)
			continue;
		size_t j = t->slot[i].hash & (cap - 1);
		while (s[j].item)
			j = (j + 1) & (cap - 1);
		s[j] = t->slot[i];
	}
	free(t->slot);
	t->slot = s;
	t->cap = cap;
	return true;
}

/* Add an item not in the table yet; false when out of memory. Grows past 70% full. */
static bool table_put(struct table *t, uint64_t hash, void *item)
{
	if ((t->count + 1) * 10 > t->cap * 7 &&
	    !table_resize(t, t->cap ? t->cap * 2 : TABLE_MIN_CAP))
		return false;
	size_t mask = t->cap - 1, i = hash & mask;
	while (t->slot[i].item)
		i = (i + 1) & mask;
	t->slot[i] = (struct slot){hash, item};
	t->count++;
	return true;
}

/* Take the item matching key out (NULL if none). The entries after it in its probe run move back
 * into the hole when their home slot allows, so no probe run is ever broken. */
static void *table_take(struct table *t, uint64_t hash, match_fn match, const void *key)
{
	if (!t->cap)
		return NULL;
	size_t mask = t->cap - 1, hole = table_find(t, hash, match, key);
	void *item = t->slot[hole].item;
	if (!item)
		return NULL;
	for (size_t j = (hole + 1) & mask; t->slot[j].item; j = (j + 1) & mask) {
		size_t home = t->slot[j].hash & mask;
		if (((j - home) & mask) >= ((j - hole) & mask)) { /* home not in (hole, j] */
			t->slot[hole] = t->slot[j];
			hole = j;
		}
	}
	t->slot[hole].item = NULL;
	t->count--;
	if (t->cap > TABLE_MIN_CAP && t->count * 8 <= t->cap)
		(void)table_resize(t, t->cap / 2); /* without memory, stays as large */
	return item;
}

static bool match_name(const void *item, const void *key)
{
	return strcmp(item, key) == 0;
}

static bool match_dir(const void *item, const void *key)
{
	return ((const struct dirlist *)item)->dir == *(const uint64_t *)key;
}

static uint64_t mix64(uint64_t h) /* MurmurHash3's finalizer: every bit reaches the low ones */
{
	h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdull;
	h = (h ^ (h >> 33)) * 0xc4ceb9fe1a85ec53ull;
	return h ^ (h >> 33);
}

static uint64_t hash_name(const struct listings *l, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ l->seed; /* FNV-1a */
	for (const unsigned char *c = (const unsigned char *)name; *c; c++)
		h = (h ^ *c) * 1099511628211ull;
	return mix64(h);
}

static uint64_t hash_dir(const struct listings *l, uint64_t dir)
{
	return mix64(dir ^ l->seed);
}

/* The length of a name a listing can hold (1 to NAME_MAX bytes), else 0. */
static size_t name_len(const char *name)
{
	size_t len = strnlen(name, NAME_MAX + 1);
	return len <= NAME_MAX ? len : 0;
}

static bool set_put(struct table *t, uint64_t hash, const char *name, size_t len)
{
	char *copy = malloc(len + 1);
	if (!copy)
		return false;
	memcpy(copy, name, len + 1);
	if (table_put(t, hash, copy))
		return true;
	free(copy);
	return false;
}

/* Remove name from the set; whether it was there. */
static bool set_del(struct table *t, uint64_t hash, const char *name)
{
	char *item = table_take(t, hash, match_name, name);
	free(item);
	return item != NULL;
}

static void set_free(struct table *t)
{
	for (size_t i = 0; i < t->cap; i++)
		free(t->slot[i].item);
	free(t->slot);
	*t = (struct table){0};
}

static struct dirlist *find_dir(struct listings *l, uint64_t dir)
{
	return table_get(&l->dirs, hash_dir(l, dir), match_dir, &dir);
}

static void dirlist_free(struct listings *l, struct dirlist *d)
{
	l->names -= d->names.count;
	set_free(&d->names);
	set_free(&d->doubts);
	free(d);
}

static void drop_locked(struct listings *l, uint64_t dir)
{
	struct dirlist *d = table_take(&l->dirs, hash_dir(l, dir), match_dir, &dir);
	if (d)
		dirlist_free(l, d);
}

/* Add name to d's names within the bound on names: 0, -ENOSPC or -ENOMEM. */
static int add_name_locked(struct listings *l, struct dirlist *d, uint64_t hash, const char *name,
			   size_t len)
{
	if (table_get(&d->names, hash, match_name, name))
		return 0;
	if (l->names >= LISTING_MAX_NAMES)
		return -ENOSPC;
	if (!set_put(&d->names, hash, name, len))
		return -ENOMEM;
	l->names++;
	return 0;
}

/* Apply a change to a complete listing; false when it can no longer be kept. */
static bool note_locked(struct listings *l, struct dirlist *d, const char *name,
			enum listing_change c)
{
	size_t len = name_len(name);
	if (!len)
		return true; /* no listing holds it: lookups of it answer UNKNOWN anyway */
	uint64_t hash = hash_name(l, name);
	if (c == LISTING_DOUBT) {
		if (table_get(&d->doubts, hash, match_name, name))
			return true;
		return d->doubts.count < LISTING_MAX_DOUBTS && set_put(&d->doubts, hash, name, len);
	}
	set_del(&d->doubts, hash, name); /* the operation's success settles it */
	if (c == LISTING_ADDED)
		return add_name_locked(l, d, hash, name, len) == 0;
	if (set_del(&d->names, hash, name))
		l->names--;
	return true;
}

struct listings *listings_new_seeded(uint64_t hash_seed)
{
	struct listings *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	pthread_mutex_init(&l->lock, NULL);
	l->seed = hash_seed;
	return l;
}

struct listings *listings_new(void)
{
	uint64_t seed;
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
		seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&seed; /* at least not fixed */
	return listings_new_seeded(seed);
}

void listings_free(struct listings *l)
{
	if (!l)
		return;
	listing_drop_all(l);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

uint64_t listing_begin(struct listings *l, uint64_t dir)
{
	uint64_t token = 0;
	pthread_mutex_lock(&l->lock);
	drop_locked(l, dir);
	struct dirlist *d = l->names < LISTING_MAX_NAMES ? calloc(1, sizeof(*d)) : NULL;
	if (d) {
		d->dir = dir;
		d->token = ++l->generation;
	}
	if (d && table_put(&l->dirs, hash_dir(l, dir), d))
		token = d->token;
	else
		free(d);
	pthread_mutex_unlock(&l->lock);
	return token;
}

int listing_add_name(struct listings *l, uint64_t dir, uint64_t token, const char *name)
{
	size_t len = name_len(name);
	int rc = -ESTALE;
	pthread_mutex_lock(&l->lock);
	struct dirlist *d = find_dir(l, dir);
	if (d && !d->complete && d->token == token) {
		rc = len ? add_name_locked(l, d, hash_name(l, name), name, len) : -EINVAL;
		if (rc)
			drop_locked(l, dir);
	}
	pthread_mutex_unlock(&l->lock);
	return rc;
}

bool listing_commit(struct listings *l, uint64_t dir, uint64_t token)
{
	pthread_mutex_lock(&l->lock);
	struct dirlist *d = find_dir(l, dir);
	bool ok = d && !d->complete && d->token == token;
	if (ok)
		d->complete = true;
	pthread_mutex_unlock(&l->lock);
	return ok;
}

enum listing_answer listing_lookup(struct listings *l, uint64_t dir, const char *name)
{
	enum listing_answer a = LISTING_UNKNOWN;
	if (!name_len(name))
		return a;
	uint64_t hash = hash_name(l, name);
	pthread_mutex_lock(&l->lock);
	struct dirlist *d = find_dir(l, dir);
	if (d && d->complete && !table_get(&d->doubts, hash, match_name, name))
		a = table_get(&d->names, hash, match_name, name) ? LISTING_PRESENT : LISTING_ABSENT;
	pthread_mutex_unlock(&l->lock);
	return a;
}

void listing_note(struct listings *l, uint64_t dir, const char *name, enum listing_change c)
{
	pthread_mutex_lock(&l->lock);
	struct dirlist *d = find_dir(l, dir);
	if (d && (!d->complete || !note_locked(l, d, name, c)))
		drop_locked(l, dir);
	pthread_mutex_unlock(&l->lock);
}

void listing_drop(struct listings *l, uint64_t dir)
{
	pthread_mutex_lock(&l->lock);
	drop_locked(l, dir);
	pthread_mutex_unlock(&l->lock);
}

void listing_drop_all(struct listings *l)
{
	pthread_mutex_lock(&l->lock);
	for (size_t i = 0; i < l->dirs.cap; i++)
		if (l->dirs.slot[i].item)
			dirlist_free(l, l->dirs.slot[i].item);
	free(l->dirs.slot);
	l->dirs = (struct table){0};
	pthread_mutex_unlock(&l->lock);
}

void listing_counts(struct listings *l, uint64_t *dirs, uint64_t *names)
{
	*dirs = *names = 0;
	pthread_mutex_lock(&l->lock);
	for (size_t i = 0; i < l->dirs.cap; i++) {
		const struct dirlist *d = l->dirs.slot[i].item;
		if (d && d->complete) {
			(*dirs)++;
			*names += d->names.count;
		}
	}
	pthread_mutex_unlock(&l->lock);
}
