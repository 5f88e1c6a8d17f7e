/* prefetch.c: a directory's small files, fetched in one round trip and handed to the kernel's
 * page cache (docs/design.md, "Prefetch"). When a read-only open of a regular file had to ask
 * the sandbox (its data was not cached), its siblings are likely next (grep -r, cat *, a
 * compiler's headers): the prefetch thread asks our agent for every regular file of that
 * directory up to FS_HEAD_BYTES (read-files@sandmount, at most SM_READ_FILES_MAX_BYTES a reply,
 * PREFETCH_MAX_REPLIES replies a directory), and stores each into the kernel's pages
 * (fuse_lowlevel_notify_store). Its later open is then lazy and its reads cost nothing. There is
 * no content cache of our own: memory stays the kernel's to reclaim.
 *
 * A small file's open does that fetch itself and then opens lazily: one round trip for the
 * directory instead of one per file (fs_prefetch_now); a larger file's open goes on and the
 * fetch runs on the thread (fs_prefetch_kick).
 *
 * Only while the watch vouches for what we hold, only for a directory whose listing the kernel
 * was handed, and only what the kernel knows (the inode is in the table: looked up or listed
 * with readdirplus). A file's data goes in only when, under the
 * store lock: no handle of it is open (a reader or writer would see its pages change under it;
 * a writer's page locks could block the store), its data epoch is the one read before the
 * request went out (no write, truncate, report or barrier since), and the attributes the reply
 * brought are the fresh ones we hold and the size the kernel holds. Every open takes the store
 * lock once it is registered, and so does every data change after its epoch moved, so a store
 * ends before they go on, or sees them and stays out. If the epoch moved while the store ran, the
 * pages go again. A stored file's size and mtime are recorded as those of its previous open, so
 * the next open keeps the pages (ops_file.c, open_lazily).
 *
 * Bounded: one request in flight on the thread (and one per opening thread), a queue of
 * PREFETCH_QUEUE directories (more are dropped), a directory is fetched again only after
 * PREFETCH_AGAIN_SMALL_MS (PREFETCH_AGAIN_MS for the thread), at most PREFETCH_MAX_REPLIES
 * replies a fetch, and a reply is at most SM_READ_FILES_MAX_BYTES (the agent's bound; the
 * client checks it too). */
#include "fs_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define PREFETCH_QUEUE	16
#define PREFETCH_RECENT 256 /* directories remembered as fetched (hashed slots) */
/* A directory is fetched again after this long for a small file's open (it missed: it is new,
 * changed, or was open when its data came), and for a larger file's open. */
#define PREFETCH_AGAIN_SMALL_MS 2000
#define PREFETCH_AGAIN_MS	30000
#define PREFETCH_MAX_REPLIES	4

struct recent {
	uint64_t dir;
	int64_t at_ms;
};

struct prefetcher {
	pthread_mutex_t lock; /* the queue, the recent table and `stop` */
	pthread_cond_t wake;
	pthread_t thread;
	bool started, stop;
	uint64_t queue[PREFETCH_QUEUE];
	unsigned head, count;
	struct recent recent[PREFETCH_RECENT];
	pthread_mutex_t store_lock; /* a store against opens and data changes (above) */
	atomic_uint_fast64_t requests, files, bytes, refused;
};

struct prefetcher *prefetcher_new(void)
{
	struct prefetcher *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->store_lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	return p;
}

void fs_prefetch_stop(struct fs *fs)
{
	struct prefetcher *p = fs->prefetch;
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	bool started = p->started;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	if (started)
		pthread_join(p->thread, NULL);
	p->started = false;
}

void prefetcher_free(struct prefetcher *p)
{
	if (!p)
		return;
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->store_lock);
	pthread_cond_destroy(&p->wake);
	free(p);
}

void fs_prefetch_barrier(struct fs *fs)
{
	if (!fs->prefetch)
		return;
	pthread_mutex_lock(&fs->prefetch->store_lock);
	pthread_mutex_unlock(&fs->prefetch->store_lock);
}

bool fs_prefetch_counts(struct fs *fs, struct prefetch_counts *n)
{
	struct prefetcher *p = fs->prefetch;
	if (!p)
		return false;
	*n = (struct prefetch_counts){atomic_load(&p->requests), atomic_load(&p->files),
				      atomic_load(&p->bytes), atomic_load(&p->refused)};
	return true;
}

/* ---- one directory ---- */

struct batch {
	struct fs *fs;
	uint64_t dir;
	uint64_t epochs[FS_EPOCH_SLOTS]; /* read before the request went out */
	unsigned stored, left_out;
};

/* Whether the file may take these bytes now (store lock held): see the top of the file. */
static bool may_store(struct batch *b, uint64_t ino, const struct sftp_attrs *a)
{
	struct fs *fs = b->fs;
	struct sftp_attrs held;
	if (fs_data_epoch(fs, ino) != b->epochs[ino % FS_EPOCH_SLOTS] || fs_inode_is_open(fs, ino))
		return false;
	if (!fs_fresh_attrs(fs, ino, &held) || !(held.flags & SFTP_ATTR_SIZE) ||
	    held.size != a->size || inode_type(fs->inodes, ino) != S_IFREG)
		return false;
	const struct timespec *m = &held.mtim, *n = &a->mtim;
	if (!(held.flags & SFTP_ATTR_NSTIME) || !(a->flags & SFTP_ATTR_NSTIME) ||
	    m->tv_sec != n->tv_sec || m->tv_nsec != n->tv_nsec)
		return false;
	return inode_shown_compare(fs->inodes, ino, a) == INODE_SHOWN_SAME;
}

static int store_file(void *ctx, const char *name, const struct sftp_attrs *a, const uint8_t *data,
		      size_t len)
{
	struct batch *b = ctx;
	struct fs *fs = b->fs;
	struct prefetcher *p = fs->prefetch;
	uint64_t ino = inode_lookup(fs->inodes, b->dir, name);
	if (!ino || fs_hidden_name(b->dir, name) || !fs->se)
		return 0;
	pthread_mutex_lock(&p->store_lock);
	bool stored = false;
	if (may_store(b, ino, a)) {
		int r = 0;
		if (len > 0) {
			struct fuse_bufvec v = FUSE_BUFVEC_INIT(len);
			v.buf[0].mem = (void *)data;
			r = fuse_lowlevel_notify_store(fs->se, ino, 0, &v, 0);
		}
		if (fs_data_epoch(fs, ino) != b->epochs[ino % FS_EPOCH_SLOTS]) {
			/* Changed while it went in: the pages go again. */
			fs_forget_kernel_inode(fs, ino);
		} else if (r == 0) {
			inode_open_unchanged(fs->inodes, ino, a); /* the next open keeps them */
			stored = true;
		}
	}
	pthread_mutex_unlock(&p->store_lock);
	if (stored) {
		b->stored++;
		atomic_fetch_add(&p->files, 1);
		atomic_fetch_add(&p->bytes, len);
	} else {
		b->left_out++;
		atomic_fetch_add(&p->refused, 1);
	}
	return 0;
}

/* Nothing of dir could be stored though there were files to store (say their attributes were
 * not fresh yet): the next read that misses there may try again. */
static void forget_recent(struct prefetcher *p, uint64_t dir)
{
	pthread_mutex_lock(&p->lock);
	struct recent *r = &p->recent[dir % PREFETCH_RECENT];
	if (r->dir == dir)
		*r = (struct recent){0};
	pthread_mutex_unlock(&p->lock);
}

/* Fetch dir's small files into the kernel's pages: how many went in. */
static unsigned fetch_dir(struct fs *fs, uint64_t dir)
{
	char *path;
	if (!atomic_load(&fs->watched) || fs_remote_path(fs, dir, NULL, &path) < 0)
		return 0;
	/* A connection that is down is not waited for: the prefetch is only worth it now. */
	struct conn *c = conn_get(fs->conn, 0);
	struct batch *b = c ? calloc(1, sizeof(*b)) : NULL;
	if (!b) {
		conn_put(fs->conn, c);
		free(path);
		return 0;
	}
	b->fs = fs;
	b->dir = dir;
	char after[SFTP_NAME_BUF] = "", resume[SFTP_NAME_BUF];
	for (int i = 0; i < PREFETCH_MAX_REPLIES && atomic_load(&fs->watched); i++) {
		for (unsigned s = 0; s < FS_EPOCH_SLOTS; s++)
			b->epochs[s] = fs_data_epoch(fs, s);
		atomic_fetch_add(&fs->prefetch->requests, 1);
		int r = sftp_read_files(c->sftp, path, FS_HEAD_BYTES, after, store_file, b, resume);
		if (r < 0 && r != -ENOSYS && r != -ENOENT)
			log_debug("prefetch of %s: %s", path, strerror(-r));
		if (r != 1)
			break;
		memcpy(after, resume, sizeof(after));
	}
	conn_put(fs->conn, c);
	unsigned stored = b->stored;
	if (stored == 0 && b->left_out > 1) /* more than the file that was opened */
		forget_recent(fs->prefetch, dir);
	free(b);
	free(path);
	return stored;
}

/* ---- the thread and its queue ---- */

static void *prefetch_main(void *arg)
{
	struct fs *fs = arg;
	struct prefetcher *p = fs->prefetch;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->stop && p->count == 0)
			pthread_cond_wait(&p->wake, &p->lock);
		if (p->stop)
			break;
		uint64_t dir = p->queue[p->head];
		p->head = (p->head + 1) % PREFETCH_QUEUE;
		p->count--;
		pthread_mutex_unlock(&p->lock);
		fetch_dir(fs, dir);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* The directory of ino when a prefetch of it is worth it: the watch vouches for what we hold,
 * the agent can, and the kernel was handed its listing (so it knows the names the data goes
 * to); else 0. */
static uint64_t prefetch_dir(struct fs *fs, fuse_ino_t ino)
{
	if (!fs->prefetch || !fs->se || !atomic_load(&fs->watched))
		return 0;
	uint64_t dir = inode_parent(fs->inodes, ino);
	if (!dir || !inode_listing_fresh(fs->inodes, dir, now_ms()) ||
	    !(fs_extensions(fs) & SFTP_EXT_SM_READ_FILES))
		return 0;
	return dir;
}

/* With p->lock held: claim dir for a fetch, unless it was fetched less than again_ms ago. */
static bool claim(struct prefetcher *p, uint64_t dir, int64_t again_ms)
{
	int64_t now = now_ms();
	struct recent *r = &p->recent[dir % PREFETCH_RECENT];
	if (p->stop || (r->dir == dir && now - r->at_ms < again_ms))
		return false;
	*r = (struct recent){dir, now};
	return true;
}

bool fs_prefetch_now(struct fs *fs, fuse_ino_t ino)
{
	struct sftp_attrs a;
	uint64_t dir = prefetch_dir(fs, ino);
	if (!dir || !fs_fresh_attrs(fs, ino, &a) || !(a.flags & SFTP_ATTR_SIZE) ||
	    a.size > FS_HEAD_BYTES)
		return false;
	pthread_mutex_lock(&fs->prefetch->lock);
	bool mine = claim(fs->prefetch, dir, PREFETCH_AGAIN_SMALL_MS);
	pthread_mutex_unlock(&fs->prefetch->lock);
	return mine && fetch_dir(fs, dir) > 0;
}

void fs_prefetch_kick(struct fs *fs, fuse_ino_t ino)
{
	uint64_t dir = prefetch_dir(fs, ino);
	if (!dir)
		return;
	struct prefetcher *p = fs->prefetch;
	pthread_mutex_lock(&p->lock);
	if (p->count < PREFETCH_QUEUE && claim(p, dir, PREFETCH_AGAIN_MS)) {
		p->queue[(p->head + p->count) % PREFETCH_QUEUE] = dir;
		p->count++;
		if (!p->started)
			p->started = pthread_create(&p->thread, NULL, prefetch_main, fs) == 0;
		pthread_cond_signal(&p->wake);
	}
	pthread_mutex_unlock(&p->lock);
}
