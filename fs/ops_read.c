/* ops_read.c: the FUSE read operation, the daemon's read-ahead, and the one invalidation rule
 * every data cache of the mount follows.
 *
 * A read-only open through our agent brings the file's first FS_HEAD_BYTES (open-read@sandmount:
 * the "head"), so reading a small file costs the open's round trip only. Other reads ask for no
 * more than the file is known to hold (the size seen at open, since raised by our writes and by
 * the attributes handed to the kernel). The known size is a lower bound only (writes through any
 * handle raise it, a reported change forgets it, but a size seen before a change may be noted
 * after it): a capped read that comes back full goes on for the rest, because a short answer
 * makes the kernel shrink the file (reads past it then fail with SIGBUS in a mapping). A handle
 * read sequentially gets read-ahead: the next chunks (of the reader's own size, at most
 * FS_READAHEAD_BYTES) are requested before they are asked for; a read elsewhere drops them (and
 * the head).
 *
 * Invalidation rule (no stale data, ever). Cached file data lives in two places: the daemon's
 * read-ahead and head (per handle, here) and the kernel's page cache (per inode). Whatever may
 * have changed the bytes of an inode invalidates both before anything cached is served again:
 *   - a truncate (setattr size): fs_data_changed before and after the SETSTAT (ops_entry.c); the
 *     kernel truncates its own page cache in the same setattr;
 *   - a write through any handle: fs_data_changed when it is staged and again when the sandbox
 *     acknowledged it (ops_file.c), so read-ahead asked for before it landed is never served; the
 *     kernel's page cache is written through (no writeback cache) for every handle of the inode;
 *   - a change the sandbox reported (watch event, notify.c): fs_data_changed, the open handles
 *     forget the size they knew, and fuse_lowlevel_notify_inval_inode drops the kernel's pages;
 *   - the exec barrier and a reconnect (fs_barrier): fs_data_changed_all (every open file also
 *     forgets its size) and an invalidation of every inode the kernel may hold; a handle revived
 *     on a new connection drops its read-ahead;
 *   - without change reports, read-ahead older than FS_READAHEAD_UNWATCHED_MS is not served,
 *     and the kernel's pages are dropped at every open (keep_cache only when the watch vouches
 *     that the file is unchanged since the previous open, ops_file.c; such an open of a file
 *     for reading is lazy: nothing is sent until a read misses the page cache) and when the
 *     attributes show another size or mtime (FUSE_CAP_AUTO_INVAL_DATA, asked for in ops_misc.c;
 *     never FUSE_CAP_EXPLICIT_INVAL_DATA, which would leave only the notifications, and never the
 *     writeback cache, under which the kernel would hold writes back and serve its own pages).
 * The mechanism is a data epoch per inode (hashed into FS_EPOCH_SLOTS counters, so a collision
 * only costs a needless drop): every read-ahead request (and a head) remembers the epoch it was
 * sent in and is served only while the epoch is unchanged.
 *
 * The kernel's size is a cache too, and mappings (a fault past it is SIGBUS) and O_APPEND (the
 * offset of every append) use it without asking. The daemon keeps what the kernel holds (inode.h,
 * "shown") and makes it current wherever the sandbox's size may have moved without the kernel
 * seeing a stat (kernel_size.c): an open that finds another size (a change not reported yet, or
 * no watch), a change report for an open file, the exec barrier; and lookup and getattr drain the
 * inode's buffered writes before their stat. */
#include "fs_internal.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static struct fs_file *file_of(struct fuse_file_info *fi)
{
	return (struct fs_file *)(uintptr_t)fi->fh;
}

static atomic_uint_fast64_t *epoch_slot(struct fs *fs, fuse_ino_t ino)
{
	return &fs->data_epoch[ino % FS_EPOCH_SLOTS];
}

void fs_data_changed(struct fs *fs, fuse_ino_t ino)
{
	atomic_fetch_add(epoch_slot(fs, ino), 1);
	fs_prefetch_barrier(fs); /* a prefetch store in progress ends first (prefetch.c) */
}

void fs_data_changed_all(struct fs *fs)
{
	for (unsigned i = 0; i < FS_EPOCH_SLOTS; i++)
		atomic_fetch_add(&fs->data_epoch[i], 1);
	fs_prefetch_barrier(fs);
	/* Nothing reported what changed meanwhile: no open file knows its size any more. */
	pthread_mutex_lock(&fs->files_lock);
	for (struct fs_file *f = fs->files; f; f = f->next)
		__atomic_store_n(&f->known_size, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&fs->files_lock);
}

static void ra_collect(struct fs_ra_req *q)
{
	char sink[1];
	size_t got;
	sftp_req_wait_read(q->req, sink, 0, &got);
}

/* Bytes held in the heads of open files (one daemon serves one mount). */
static atomic_size_t head_total;

uint64_t fs_data_epoch(struct fs *fs, fuse_ino_t ino)
{
	return atomic_load(epoch_slot(fs, ino));
}

void fs_head_free(struct fs_head *head)
{
	if (head->data)
		atomic_fetch_sub(&head_total, head->len ? head->len : 1);
	free(head->data);
	*head = (struct fs_head){0};
}

int fs_open_remote(struct fs *fs, struct sftp_client *sftp, fuse_ino_t ino, const char *path,
		   uint32_t pflags, struct sftp_handle *h, struct sftp_attrs *a, bool *have_attrs,
		   struct fs_head *head)
{
	*head = (struct fs_head){0};
	bool try_head = pflags == SFTP_OPEN_READ && inode_type(fs->inodes, ino) == S_IFREG &&
			atomic_load(&head_total) < FS_HEAD_TOTAL_MAX;
	uint8_t *data = try_head ? malloc(FS_HEAD_BYTES) : NULL;
	if (data) {
		size_t got = 0;
		uint64_t epoch = fs_data_epoch(fs, ino); /* before the request goes out */
		int64_t sent = now_ms();
		int r = sftp_open_read(sftp, path, FS_HEAD_BYTES, h, a, data, &got);
		if (r != -ENOSYS && r != -EINVAL) {
			*have_attrs = r == 0;
			uint8_t *fit = r == 0 ? realloc(data, got ? got : 1) : NULL;
			if (fit) {
				*head =
				    (struct fs_head){fit, got, got < FS_HEAD_BYTES, epoch, sent};
				atomic_fetch_add(&head_total, got ? got : 1);
			} else {
				free(data);
			}
			return r;
		}
		free(data);
	}
	return sftp_open_stat(sftp, path, pflags, NULL, h, a, have_attrs, NULL, 0);
}

/* With f->lock held: serve [off, off+size) from the head when it holds that range (or the end
 * of the file comes first and the kernel knows no larger size). */
static bool head_take(struct fs *fs, struct fs_file *f, uint64_t off, size_t size, char *buf,
		      size_t *got)
{
	struct fs_head *hd = &f->first;
	if (!hd->data || hd->epoch != fs_data_epoch(fs, f->ino) || off > hd->len)
		return false;
	if (!atomic_load(&fs->watched) && now_ms() - hd->sent_ms > FS_READAHEAD_UNWATCHED_MS)
		return false; /* as read-ahead: without change reports, only young data is served */
	size_t n = hd->len - off < size ? hd->len - off : size;
	uint64_t shown;
	if (n < size &&
	    !(hd->eof && inode_shown_size(fs->inodes, f->ino, &shown) && shown <= hd->len))
		return false;
	memcpy(buf, hd->data + off, n);
	*got = n;
	return true;
}

void fs_readahead_drop(struct fs_file *f)
{
	for (unsigned i = 0; i < f->ra_count; i++)
		ra_collect(&f->ra[i]);
	f->ra_count = 0;
	fs_head_free(&f->first);
}

/* With f->lock held: drop the read-ahead unless every request of it may still be served (nothing
 * changed the inode's data since it was asked for, and it is recent enough without a watch). */
static void ra_check(struct fs *fs, struct fs_file *f)
{
	uint64_t epoch = atomic_load(epoch_slot(fs, f->ino));
	int64_t oldest =
	    atomic_load(&fs->watched) ? INT64_MIN : now_ms() - FS_READAHEAD_UNWATCHED_MS;
	for (unsigned i = 0; i < f->ra_count; i++) {
		if (f->ra[i].epoch != epoch || f->ra[i].sent_ms < oldest) {
			fs_readahead_drop(f);
			return;
		}
	}
}

/* With f->lock held: serve the read from read-ahead requests that cover exactly this range (a
 * read larger than the server's reads spans several). 1 when there are none, else 0 or the
 * error. */
static int ra_take(struct fs_file *f, uint64_t off, size_t size, char *buf, size_t *got)
{
	unsigned i = 0, j;
	while (i < f->ra_count && f->ra[i].off != off)
		i++;
	size_t span = 0;
	for (j = i; j < f->ra_count && span < size && f->ra[j].off == off + span; j++)
		span += f->ra[j].len;
	if (i == f->ra_count || span != size)
		return 1;
	struct fs_ra_req take[FS_READAHEAD_MAX];
	unsigned n = j - i;
	memcpy(take, &f->ra[i], n * sizeof(*take));
	memmove(&f->ra[i], &f->ra[j], (f->ra_count - j) * sizeof(*take));
	f->ra_count -= n;
	int r = 0;
	bool eof = false;
	*got = 0;
	for (unsigned k = 0; k < n; k++) {
		size_t part = 0;
		if (r == 0 && !eof) {
			r = sftp_req_wait_read(take[k].req, buf + *got, take[k].len, &part);
			*got += part;
			eof = r == 0 && part < take[k].len;
		} else {
			ra_collect(&take[k]);
		}
	}
	if (r < 0 || eof)
		fs_readahead_drop(f); /* connection trouble, or EOF: what follows is useless */
	return r;
}

static void ra_fill(struct fs *fs, struct fs_file *f, uint64_t from, size_t size)
{
	if (!conn_current(fs->conn, f->conn))
		return;
	struct sftp_limits lim;
	sftp_client_limits(f->conn->sftp, &lim);
	size_t chunk = lim.max_read && lim.max_read < size ? lim.max_read : size;
	/* Chunks must tile the reader's requests exactly. */
	if (size % chunk)
		return;
	unsigned max = FS_READAHEAD_BYTES / chunk;
	if (max > FS_READAHEAD_MAX)
		max = FS_READAHEAD_MAX;
	uint64_t next =
	    f->ra_count ? f->ra[f->ra_count - 1].off + f->ra[f->ra_count - 1].len : from;
	uint64_t known = __atomic_load_n(&f->known_size, __ATOMIC_RELAXED);
	/* The epoch is read before the requests go out: a change after that drops them. */
	uint64_t epoch = atomic_load(epoch_slot(fs, f->ino));
	int64_t sent = now_ms();
	while (f->ra_count < max && next < known) {
		struct sftp_req *q;
		if (sftp_read_async(f->conn->sftp, &f->handle, next, chunk, &q) < 0)
			return; /* the connection is over */
		f->ra[f->ra_count++] = (struct fs_ra_req){q, next, chunk, epoch, sent};
		next += chunk;
	}
}

/* One read on the handle, with f->lock released while waiting (so the kernel's parallel reads of
 * one file overlap); once more on a new connection if the connection died under it. */
static int read_once(struct fs *fs, struct fs_file *f, uint64_t off, size_t want, char *buf,
		     size_t *got)
{
	int64_t deadline = conn_op_deadline(fs->conn);
	for (int attempt = 0;; attempt++) {
		int r = fs_file_revive(fs, f, deadline);
		if (r < 0)
			return r;
		struct conn *c = f->conn;
		struct sftp_handle h = f->handle;
		conn_hold(fs->conn, c);
		pthread_mutex_unlock(&f->lock);
		r = sftp_read(c->sftp, &h, off, buf, want, got);
		bool dead = r == -EIO && conn_failed(fs->conn, c);
		conn_put(fs->conn, c);
		pthread_mutex_lock(&f->lock);
		if (!dead || attempt == 1)
			return r;
	}
}

/* With f->lock held: read up to `size` bytes; a short result means EOF. The first request is
 * capped at the known size; when it comes back full, the rest is asked for as well. */
static int read_direct(struct fs *fs, struct fs_file *f, uint64_t off, size_t size, char *buf,
		       size_t *got)
{
	*got = 0;
	while (*got < size) {
		uint64_t at = off + *got;
		size_t left = size - *got;
		uint64_t known = __atomic_load_n(&f->known_size, __ATOMIC_RELAXED);
		size_t want = at < known && known - at < left ? (size_t)(known - at) : left;
		size_t part = 0;
		int r = read_once(fs, f, at, want, buf + *got, &part);
		if (r < 0)
			return r;
		*got += part;
		fs_file_raise_size(f, at + part);
		/* Short: EOF. Capped and full: the known size is only a lower bound (a size seen
		 * before a change may be noted after it), so look further. */
		if (part < want || part == 0)
			break;
	}
	return 0;
}

void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_file *f = file_of(fi);
	/* Unsent writes of this inode must be visible to the read (their acknowledgement moves
	 * the data epoch, which drops read-ahead asked for before). */
	fs_drain_inode(fs, ino);
	char *buf = malloc(size ? size : 1);
	size_t got = 0;
	int r = -ENOMEM;
	pthread_mutex_lock(&f->lock);
	ra_check(fs, f);
	if (buf) {
		uint64_t at = (uint64_t)off;
		bool sequential = at == f->read_end;
		r = head_take(fs, f, at, size, buf, &got) ? 0 : ra_take(f, at, size, buf, &got);
		sequential |= r == 0;
		if (r != 0) {
			fs_readahead_drop(f);
			r = read_direct(fs, f, at, size, buf, &got);
		}
		if (r == 0) {
			f->read_end = at + got;
			if (sequential && got == size && size)
				ra_fill(fs, f, at + size, size);
		}
	}
	pthread_mutex_unlock(&f->lock);
	if (r < 0)
		fs_reply_errno(req, r);
	else
		fuse_reply_buf(req, buf, got);
	free(buf);
}
