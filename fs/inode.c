/* inode.c: the inode table (docs/design.md, decision 6). Two chained hash tables over the same
 * nodes: by number (for the kernel's requests) and by (parent, name) (for lookups). Numbers are
 * never reused, so the generation is always 0. One mutex guards everything. */
#include "inode.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define INODE_MAX_DEPTH 4096

struct inode {
	uint64_t ino;
	uint64_t parent; /* 0: the root, or the inode lost its name */
	char *name;	 /* NULL when the inode lost its name */
	mode_t type;
	uint64_t nlookup;
	int64_t stamped_ms; /* last time the kernel got an entry or attributes for it */
	bool opened;	    /* open_size/open_mtime are valid */
	uint64_t open_size;
	struct timespec open_mtime;
	bool shown; /* shown_size/shown_mtime are valid: the kernel was handed them */
	uint64_t shown_size;
	struct timespec shown_mtime;
	/* shown_size came from a reply the kernel may drop, and replaced droppable_prev: until a
	 * write or a reply it must apply settles it, the kernel may hold either */
	bool droppable;
	uint64_t droppable_prev;
	uint64_t doubted; /* the table's doubt count at the last invalidation of its attributes */
	unsigned showing; /* invalidations and shows of its size in progress */
	struct sftp_attrs attrs; /* handed out, trusted until attrs_until */
	int64_t attrs_until, listed_until;
	uint64_t stale_seq; /* the table's seq when this inode was last marked stale */
	/* ... or only its listing: a name in it changed, which says nothing of the attributes (the
	 * watch reports those on their own), so a directory's LSTAT it crossed is still kept */
	uint64_t listing_stale_seq;
	/* ... or a report came from below a name in it that the table does not know: what that
	 * name's directory holds changed before we knew the directory (hold_empty_listing) */
	uint64_t below_stale_seq;
	struct inode *next_by_ino;
	struct inode *next_by_name;
};

struct hash {
	struct inode **slot;
	size_t cap; /* a power of two */
};

/* A remote (dev, ino) off the first device, and the number shown for it. */
struct devino {
	uint64_t dev, ino, number;
	struct devino *next;
};

#define DEVINO_SLOTS 4096
#define DEVINO_TOP   (1ull << 63) /* numbers given to (dev, ino) of other devices */
/* The sandbox is not trusted: past this many remembered (dev, ino), a number is derived from a
 * hash of the pair (unique only with high probability, never equal to a first-device number). */
#define DEVINO_MAX    (1u << 20)
#define DEVINO_HASHED (1ull << 62)

struct inode_table {
	pthread_mutex_t lock;
	bool have_dev; /* first_dev is known */
	uint64_t
	    first_dev; /* the device of the first full stat seen: its numbers are shown as is */
	uint64_t next_devino; /* also the count of pairs remembered, plus 1 */
	struct devino *devino[DEVINO_SLOTS];
	struct hash by_ino, by_name;
	size_t count;
	uint64_t next_ino;
	uint64_t seq;		 /* counts stale marks */
	uint64_t all_stale;	 /* seq of the last "everything is stale" */
	uint64_t doubts;	 /* counts invalidations of kernel attributes (inode_doubt_shown) */
	pthread_cond_t shown_cv; /* signalled when a show ends */
};

static size_t hash_ino(uint64_t ino)
{
	return (size_t)(ino * 0x9E3779B97F4A7C15ull >> 17);
}

static size_t hash_name(uint64_t parent, const char *name)
{
	uint64_t h = 0xcbf29ce484222325ull ^ parent;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 0x100000001b3ull;
	return (size_t)(h ^ h >> 29);
}

static struct inode **by_ino_slot(struct inode_table *t, uint64_t ino)
{
	return &t->by_ino.slot[hash_ino(ino) & (t->by_ino.cap - 1)];
}

static struct inode **by_name_slot(struct inode_table *t, uint64_t parent, const char *name)
{
	return &t->by_name.slot[hash_name(parent, name) & (t->by_name.cap - 1)];
}

static struct inode *find_ino(struct inode_table *t, uint64_t ino)
{
	struct inode *n = *by_ino_slot(t, ino);
	while (n && n->ino != ino)
		n = n->next_by_ino;
	return n;
}

static struct inode *find_name(struct inode_table *t, uint64_t parent, const char *name)
{
	struct inode *n = *by_name_slot(t, parent, name);
	while (n && (n->parent != parent || strcmp(n->name, name) != 0))
		n = n->next_by_name;
	return n;
}

/* Double both tables when they get full; a failed allocation just keeps the chains longer. */
static void grow(struct inode_table *t)
{
	if (t->count < t->by_ino.cap)
		return;
	size_t cap = t->by_ino.cap * 2;
	struct inode **ino_slot = calloc(cap, sizeof(*ino_slot));
	struct inode **name_slot = calloc(cap, sizeof(*name_slot));
	if (!ino_slot || !name_slot) {
		free(ino_slot);
		free(name_slot);
		return;
	}
	for (size_t i = 0; i < t->by_ino.cap; i++) {
		struct inode *n = t->by_ino.slot[i], *next;
		for (; n; n = next) {
			next = n->next_by_ino;
			struct inode **s = &ino_slot[hash_ino(n->ino) & (cap - 1)];
			n->next_by_ino = *s;
			*s = n;
		}
		n = t->by_name.slot[i];
		for (; n; n = next) {
			next = n->next_by_name;
			struct inode **s = &name_slot[hash_name(n->parent, n->name) & (cap - 1)];
			n->next_by_name = *s;
			*s = n;
		}
	}
	free(t->by_ino.slot);
	free(t->by_name.slot);
	t->by_ino = (struct hash){ino_slot, cap};
	t->by_name = (struct hash){name_slot, cap};
}

static void unlink_ino(struct inode_table *t, struct inode *n)
{
	struct inode **p = by_ino_slot(t, n->ino);
	while (*p != n)
		p = &(*p)->next_by_ino;
	*p = n->next_by_ino;
}

static void unlink_name(struct inode_table *t, struct inode *n)
{
	struct inode **p = by_name_slot(t, n->parent, n->name);
	while (*p != n)
		p = &(*p)->next_by_name;
	*p = n->next_by_name;
}

static void link_name(struct inode_table *t, struct inode *n)
{
	struct inode **s = by_name_slot(t, n->parent, n->name);
	n->next_by_name = *s;
	*s = n;
}

static void free_node(struct inode_table *t, struct inode *n)
{
	unlink_ino(t, n);
	t->count--;
	free(n->name);
	free(n);
}

/* The remote name is gone: the number dies with the kernel's last reference. */
static void lose_name(struct inode_table *t, struct inode *n)
{
	unlink_name(t, n);
	free(n->name);
	n->name = NULL;
	n->parent = 0;
	if (n->nlookup == 0)
		free_node(t, n);
}

struct inode_table *inode_table_new(void)
{
	struct inode_table *t = calloc(1, sizeof(*t));
	struct inode *root = calloc(1, sizeof(*root));
	if (!t || !root)
		goto fail;
	t->by_ino = (struct hash){calloc(64, sizeof(struct inode *)), 64};
	t->by_name = (struct hash){calloc(64, sizeof(struct inode *)), 64};
	if (!t->by_ino.slot || !t->by_name.slot)
		goto fail;
	pthread_mutex_init(&t->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->shown_cv, &ca);
	pthread_condattr_destroy(&ca);
	/* The root is in the number table only: it has no parent and no name. */
	root->ino = INODE_ROOT;
	root->type = 0040000;
	root->nlookup = 1;
	*by_ino_slot(t, INODE_ROOT) = root;
	t->count = 1;
	t->next_ino = INODE_ROOT + 1;
	t->next_devino = 1;
	return t;
fail:
	if (t) {
		free(t->by_ino.slot);
		free(t->by_name.slot);
	}
	free(t);
	free(root);
	return NULL;
}

void inode_table_free(struct inode_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->by_ino.cap; i++) {
		struct inode *n = t->by_ino.slot[i], *next;
		for (; n; n = next) {
			next = n->next_by_ino;
			free(n->name);
			free(n);
		}
	}
	pthread_cond_destroy(&t->shown_cv);
	for (size_t i = 0; i < DEVINO_SLOTS; i++) {
		struct devino *d = t->devino[i], *next;
		for (; d; d = next) {
			next = d->next;
			free(d);
		}
	}
	free(t->by_ino.slot);
	free(t->by_name.slot);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* Under the lock: the number of a (dev, ino) off the first device, made if new. */
static uint64_t devino_number(struct inode_table *t, uint64_t dev, uint64_t ino)
{
	struct devino **s = &t->devino[(hash_ino(ino) ^ hash_ino(dev)) % DEVINO_SLOTS];
	for (struct devino *d = *s; d; d = d->next)
		if (d->dev == dev && d->ino == ino)
			return d->number;
	struct devino *d = t->next_devino <= DEVINO_MAX ? calloc(1, sizeof(*d)) : NULL;
	if (!d) {
		uint64_t h = (dev + 0x9E3779B97F4A7C15ull) * 0xbf58476d1ce4e5b9ull ^ ino;
		h = (h ^ h >> 31) * 0x94d049bb133111ebull;
		return DEVINO_TOP | DEVINO_HASHED | (h & (DEVINO_HASHED - 1));
	}
	*d = (struct devino){dev, ino, DEVINO_TOP | t->next_devino++, *s};
	*s = d;
	return d->number;
}

uint64_t inode_number(struct inode_table *t, uint64_t dev, uint64_t ino)
{
	pthread_mutex_lock(&t->lock);
	if (!t->have_dev) {
		t->have_dev = true;
		t->first_dev = dev;
	}
	uint64_t number = ino;
	if (dev != t->first_dev || (ino & DEVINO_TOP) || ino == 0)
		number = devino_number(t, dev, ino);
	pthread_mutex_unlock(&t->lock);
	return number;
}

size_t inode_table_count(struct inode_table *t)
{
	pthread_mutex_lock(&t->lock);
	size_t n = t->count;
	pthread_mutex_unlock(&t->lock);
	return n;
}

static struct inode *add_node(struct inode_table *t, uint64_t parent, const char *name, mode_t type)
{
	struct inode *n = calloc(1, sizeof(*n));
	char *copy = strdup(name);
	if (!n || !copy) {
		free(n);
		free(copy);
		return NULL;
	}
	n->ino = t->next_ino++;
	n->parent = parent;
	n->name = copy;
	n->type = type;
	n->stale_seq = t->seq; /* data fetched before it existed is not trusted */
	struct inode **s = by_ino_slot(t, n->ino);
	n->next_by_ino = *s;
	*s = n;
	link_name(t, n);
	t->count++;
	grow(t);
	return n;
}

uint64_t inode_enter(struct inode_table *t, uint64_t parent, const char *name, mode_t type,
		     uint64_t lookups, int64_t now_ms)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_name(t, parent, name);
	if (n && n->type != type) {
		lose_name(t, n);
		n = NULL;
	}
	if (!n)
		n = add_node(t, parent, name, type);
	uint64_t ino = 0;
	if (n) {
		n->nlookup += lookups;
		if (lookups)
			n->stamped_ms = now_ms;
		ino = n->ino;
	}
	pthread_mutex_unlock(&t->lock);
	return ino;
}

void inode_forget(struct inode_table *t, uint64_t ino, uint64_t n)
{
	pthread_mutex_lock(&t->lock);
	struct inode *node = find_ino(t, ino);
	if (node && ino != INODE_ROOT) {
		node->nlookup = node->nlookup > n ? node->nlookup - n : 0;
		if (node->nlookup == 0 && !node->name)
			free_node(t, node);
	}
	pthread_mutex_unlock(&t->lock);
}

void inode_touch(struct inode_table *t, uint64_t ino, int64_t now_ms)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_ino(t, ino);
	if (n)
		n->stamped_ms = now_ms;
	pthread_mutex_unlock(&t->lock);
}

uint64_t inode_parent(struct inode_table *t, uint64_t ino)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_ino(t, ino);
	uint64_t parent = n && n->parent ? n->parent : INODE_ROOT;
	pthread_mutex_unlock(&t->lock);
	return parent;
}

mode_t inode_type(struct inode_table *t, uint64_t ino)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_ino(t, ino);
	mode_t type = n ? n->type : 0;
	pthread_mutex_unlock(&t->lock);
	return type;
}

/* Collect the chain from `ino` up to the root; returns its length or -ENOENT. */
static int ancestry(struct inode_table *t, uint64_t ino, struct inode **chain)
{
	int depth = 0;
	while (ino != INODE_ROOT) {
		struct inode *n = find_ino(t, ino);
		if (!n || !n->name || depth == INODE_MAX_DEPTH)
			return -ENOENT;
		chain[depth++] = n;
		ino = n->parent;
	}
	return depth;
}

int inode_path(struct inode_table *t, uint64_t ino, bool parent_only, char **out)
{
	struct inode **chain = malloc(INODE_MAX_DEPTH * sizeof(*chain));
	if (!chain)
		return -ENOMEM;
	pthread_mutex_lock(&t->lock);
	int depth = ancestry(t, ino, chain);
	int first = parent_only ? 1 : 0;
	char *path = NULL;
	if (depth >= 0 && parent_only && depth == 0)
		depth = -ENOENT; /* the root has no parent */
	if (depth >= 0) {
		size_t len = 1;
		for (int i = first; i < depth; i++)
			len += strlen(chain[i]->name) + 1;
		path = malloc(len);
		if (path) {
			char *w = path;
			for (int i = depth - 1; i >= first; i--) {
				if (w != path)
					*w++ = '/';
				w = stpcpy(w, chain[i]->name);
			}
			*w = '\0';
		}
	}
	pthread_mutex_unlock(&t->lock);
	free(chain);
	if (depth < 0)
		return depth;
	if (!path)
		return -ENOMEM;
	*out = path;
	return 0;
}

void inode_remove(struct inode_table *t, uint64_t parent, const char *name)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_name(t, parent, name);
	if (n)
		lose_name(t, n);
	pthread_mutex_unlock(&t->lock);
}

int inode_rename(struct inode_table *t, uint64_t parent, const char *name, uint64_t newparent,
		 const char *newname)
{
	char *copy = strdup(newname);
	if (!copy)
		return -ENOMEM;
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_name(t, parent, name);
	struct inode *victim = find_name(t, newparent, newname);
	if (n && victim != n) {
		if (victim)
			lose_name(t, victim);
		unlink_name(t, n);
		free(n->name);
		n->name = copy;
		n->parent = newparent;
		link_name(t, n);
		copy = NULL;
	}
	pthread_mutex_unlock(&t->lock);
	free(copy);
	return 0;
}

/* With the agent the mtime has nanoseconds: a rewrite within the second is seen too. */
static struct timespec attrs_mtime(const struct sftp_attrs *a)
{
	if (a->flags & SFTP_ATTR_NSTIME)
		return a->mtim;
	return (struct timespec){.tv_sec = a->mtime};
}

static bool same_time(struct timespec x, struct timespec y)
{
	return x.tv_sec == y.tv_sec && x.tv_nsec == y.tv_nsec;
}

bool inode_open_unchanged(struct inode_table *t, uint64_t ino, const struct sftp_attrs *a)
{
	struct timespec mtime = attrs_mtime(a);
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_ino(t, ino);
	bool same = false;
	if (n) {
		same = n->opened && n->open_size == a->size && same_time(n->open_mtime, mtime);
		n->opened = true;
		n->open_size = a->size;
		n->open_mtime = mtime;
	}
	pthread_mutex_unlock(&t->lock);
	return same;
}

void inode_note_shown(struct inode_table *t, uint64_t ino, const struct sftp_attrs *a,
		      uint64_t mark)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_ino(t, ino);
	if (!n) {
		pthread_mutex_unlock(&t->lock);
		return;
	}
	bool same = n->shown && n->shown_size == a->size;
	if (mark == INODE_MARK_ANY) {
		n->droppable = false;
	} else if (!same && n->doubted > mark) {
		n->shown = false; /* crossed by an invalidation: dropped, or not */
		pthread_mutex_unlock(&t->lock);
		return;
	} else if (!same) {
		/* from an unknown size, no write settles it (UINT64_MAX) */
		n->droppable_prev = n->shown ? n->shown_size : UINT64_MAX;
		n->droppable = true;
	}
	n->shown = true;
	n->shown_size = a->size;
	n->shown_mtime = attrs_mtime(a);
	pthread_mutex_unlock(&t->lock);
}

void inode_note_written(struct inode_table *t, uint64_t ino, uint64_t end)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_ino(t, ino);
	if (n && n->shown && n->shown_size < end) {
		n->shown_size = end;
		/* the kernel raises what it holds, either size, to `end` */
		if (end >= n->droppable_prev)
			n->droppable = false;
	}
	pthread_mutex_unlock(&t->lock);
}

void inode_doubt_shown(struct inode_table *t, uint64_t ino)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_ino(t, ino);
	if (n) {
		/* a reply still on its way is dropped now: the kernel keeps the size before it */
		if (n->droppable)
			n->shown = false;
		n->doubted = ++t->doubts;
	}
	pthread_mutex_unlock(&t->lock);
}

void inode_show_begin(struct inode_table *t, uint64_t ino)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_ino(t, ino);
	if (n)
		n->showing++;
	pthread_mutex_unlock(&t->lock);
}

void inode_show_end(struct inode_table *t, uint64_t ino)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_ino(t, ino);
	if (n && n->showing > 0 && --n->showing == 0)
		pthread_cond_broadcast(&t->shown_cv);
	pthread_mutex_unlock(&t->lock);
}

bool inode_show_settle(struct inode_table *t, uint64_t ino, uint64_t mark)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_ino(t, ino);
	bool settled = n && n->shown && n->doubted <= mark;
	if (settled)
		n->droppable = false;
	pthread_mutex_unlock(&t->lock);
	return settled;
}

bool inode_showing(struct inode_table *t, uint64_t ino)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_ino(t, ino);
	bool showing = n && n->showing > 0;
	pthread_mutex_unlock(&t->lock);
	return showing;
}

uint64_t inode_await_shown(struct inode_table *t, uint64_t ino, const struct timespec *deadline)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n;
	while (deadline && (n = find_ino(t, ino)) && n->showing > 0)
		if (pthread_cond_timedwait(&t->shown_cv, &t->lock, deadline) != 0)
			break;
	uint64_t mark = t->doubts;
	pthread_mutex_unlock(&t->lock);
	return mark;
}

bool inode_shown_size(struct inode_table *t, uint64_t ino, uint64_t *size)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_ino(t, ino);
	bool known = n && n->shown && !n->droppable;
	if (known)
		*size = n->shown_size;
	pthread_mutex_unlock(&t->lock);
	return known;
}

enum inode_shown inode_shown_compare(struct inode_table *t, uint64_t ino,
				     const struct sftp_attrs *a)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_ino(t, ino);
	enum inode_shown c = INODE_SHOWN_OTHER_SIZE;
	if (n && n->shown && !n->droppable && n->shown_size == a->size)
		c = same_time(n->shown_mtime, attrs_mtime(a)) ? INODE_SHOWN_SAME
							      : INODE_SHOWN_OTHER_MTIME;
	pthread_mutex_unlock(&t->lock);
	return c;
}

long inode_cached_since(struct inode_table *t, int64_t since_ms, struct inode_cached **out)
{
	pthread_mutex_lock(&t->lock);
	struct inode_cached *v = calloc(t->count, sizeof(*v));
	long n = 0;
	for (size_t i = 0; v && i < t->by_ino.cap; i++) {
		for (struct inode *node = t->by_ino.slot[i]; node; node = node->next_by_ino) {
			if (node->nlookup == 0 || node->stamped_ms < since_ms)
				continue;
			struct inode_cached *c = &v[n++];
			c->ino = node->ino;
			c->parent = node->parent;
			c->type = node->type;
			if (node->name && !(c->name = strdup(node->name))) {
				inode_cached_free(v, n);
				v = NULL;
				break;
			}
		}
	}
	pthread_mutex_unlock(&t->lock);
	if (!v)
		return -ENOMEM;
	*out = v;
	return n;
}

void inode_cached_free(struct inode_cached *v, long n)
{
	for (long i = 0; v && i < n; i++)
		free(v[i].name);
	free(v);
}

uint64_t inode_lookup(struct inode_table *t, uint64_t parent, const char *name)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_name(t, parent, name);
	uint64_t ino = n ? n->ino : 0;
	pthread_mutex_unlock(&t->lock);
	return ino;
}

uint64_t inode_stale_seq(struct inode_table *t)
{
	pthread_mutex_lock(&t->lock);
	uint64_t seq = t->seq;
	pthread_mutex_unlock(&t->lock);
	return seq;
}

/* The node, if data fetched at `seq` may be kept for it (t->lock held); a listing also needs
 * no listing stale mark since. */
static struct inode *find_current(struct inode_table *t, uint64_t ino, uint64_t seq, bool listing)
{
	struct inode *n = find_ino(t, ino);
	if (!n || n->stale_seq > seq || t->all_stale > seq)
		return NULL;
	return listing && n->listing_stale_seq > seq ? NULL : n;
}

void inode_set_attrs(struct inode_table *t, uint64_t ino, const struct sftp_attrs *a,
		     int64_t until_ms, uint64_t seq)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_current(t, ino, seq, false);
	if (n) {
		n->attrs = *a;
		n->attrs_until = until_ms;
	}
	pthread_mutex_unlock(&t->lock);
}

bool inode_fresh_attrs(struct inode_table *t, uint64_t ino, int64_t now_ms, struct sftp_attrs *a)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_ino(t, ino);
	bool fresh = n && n->attrs_until > now_ms;
	if (fresh)
		*a = n->attrs;
	pthread_mutex_unlock(&t->lock);
	return fresh;
}

void inode_set_listed(struct inode_table *t, uint64_t ino, int64_t until_ms, uint64_t seq)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_current(t, ino, seq, true);
	if (n)
		n->listed_until = until_ms;
	pthread_mutex_unlock(&t->lock);
}

bool inode_listing_fresh(struct inode_table *t, uint64_t ino, int64_t now_ms)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_ino(t, ino);
	bool fresh = n && n->listed_until > now_ms;
	pthread_mutex_unlock(&t->lock);
	return fresh;
}

enum stale_what { STALE_ALL, STALE_LISTING, STALE_BELOW };

static void mark_stale(struct inode_table *t, uint64_t ino, enum stale_what what)
{
	pthread_mutex_lock(&t->lock);
	struct inode *n = find_ino(t, ino);
	t->seq++;
	if (n && what == STALE_ALL) {
		n->attrs_until = 0;
		n->stale_seq = t->seq;
	}
	if (n && what == STALE_BELOW)
		n->below_stale_seq = t->seq;
	if (n) {
		n->listed_until = 0;
		n->listing_stale_seq = t->seq;
	}
	pthread_mutex_unlock(&t->lock);
}

void inode_mark_stale(struct inode_table *t, uint64_t ino)
{
	mark_stale(t, ino, STALE_ALL);
}

void inode_mark_listing_stale(struct inode_table *t, uint64_t ino, bool below)
{
	mark_stale(t, ino, below ? STALE_BELOW : STALE_LISTING);
}

bool inode_new_dir_unchanged(struct inode_table *t, uint64_t parent, uint64_t dir, uint64_t seq)
{
	pthread_mutex_lock(&t->lock);
	/* Not find_current(): a node made after seq is not marked for what was reported before it
	 * existed; of that, only the reports from below its name matter here (parent's mark). */
	struct inode *p = find_ino(t, parent), *n = find_ino(t, dir);
	bool unchanged = p && n && p->below_stale_seq <= seq && n->listing_stale_seq <= seq &&
			 t->all_stale <= seq;
	pthread_mutex_unlock(&t->lock);
	return unchanged;
}

void inode_mark_all_stale(struct inode_table *t)
{
	pthread_mutex_lock(&t->lock);
	t->all_stale = ++t->seq;
	for (size_t i = 0; i < t->by_ino.cap; i++) {
		for (struct inode *n = t->by_ino.slot[i]; n; n = n->next_by_ino) {
			n->attrs_until = 0;
			n->listed_until = 0;
		}
	}
	pthread_mutex_unlock(&t->lock);
}
