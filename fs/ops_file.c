/* ops_file.c: FUSE operations on open files (open, create, write, flush, release, fsync) and the
 * per-file write buffer (docs/design.md, decisions 5 and 8): contiguous writes are coalesced into a
 * staging chunk, full chunks go out asynchronously within a bounded window, and
 * flush/fsync/release wait for every acknowledgement and report the first failure.
 *
 * Every write keeps its data until the sandbox acknowledged it. When the connection dies, the
 * file is opened again by path on the new connection (fs_file_revive) and the unacknowledged
 * writes are sent again in order, so a close() after a reconnect still means "on the sandbox".
 * Reads are in ops_read.c. */
#include "fs_internal.h"
#include "log.h"
#include "own_change.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

static struct fs_file *file_of(struct fuse_file_info *fi)
{
	return (struct fs_file *)(uintptr_t)fi->fh;
}

static void record_error(struct fs_file *f, int r)
{
	if (r < 0 && f->err == 0)
		f->err = r == -ETIMEDOUT ? -EIO : r;
}

/* ---- the write window ---- */

static struct fs_write_req *window_at(struct fs_file *f, unsigned i)
{
	return &f->window[(f->head + i) % FS_WRITE_WINDOW];
}

static void send_entry(struct fs_file *f, struct fs_write_req *w)
{
	if (sftp_write_async(f->conn->sftp, &f->handle, w->off, w->data, w->len, &w->req) < 0)
		w->req = NULL; /* the connection is over: sent again after the reconnect */
}

/* The oldest write is done with: acknowledged (its data is on the sandbox now, so read-ahead
 * asked for before is stale, ops_read.c) or given up. */
static void pop_oldest(struct fs *fs, struct fs_file *f)
{
	struct fs_write_req *w = window_at(f, 0);
	fs_data_changed(fs, f->ino);
	atomic_fetch_sub(&fs->pending_bytes, w->len);
	free(w->data);
	*w = (struct fs_write_req){0};
	f->head = (f->head + 1) % FS_WRITE_WINDOW;
	f->count--;
}

/* Settle the oldest write: 0 when it is done with (acknowledged, or failed for good with the
 * error recorded), -EIO when the connection died under it: it stays, to be sent again. */
static int settle_oldest(struct fs *fs, struct fs_file *f)
{
	struct fs_write_req *w = window_at(f, 0);
	if (!w->req)
		return -EIO;
	int r = sftp_req_wait(w->req);
	w->req = NULL;
	if ((r == -EIO || r == -ETIMEDOUT) && conn_failed(fs->conn, f->conn))
		return -EIO;
	record_error(f, r);
	pop_oldest(fs, f);
	return 0;
}

/* Forget every write still held (the file is lost or being freed). */
static void window_discard(struct fs *fs, struct fs_file *f)
{
	while (f->count > 0) {
		struct fs_write_req *w = window_at(f, 0);
		if (w->req)
			sftp_req_wait(w->req);
		w->req = NULL;
		pop_oldest(fs, f);
	}
}

/* Room for one more write in the window, reconnecting if the connection died. */
static int make_room(struct fs *fs, struct fs_file *f, int64_t deadline)
{
	while (f->count == FS_WRITE_WINDOW) {
		if (settle_oldest(fs, f) < 0) {
			int r = fs_file_revive(fs, f, deadline);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* Move the staging chunk into the window and send it. */
static int send_stage(struct fs *fs, struct fs_file *f, int64_t deadline)
{
	if (f->stage_len == 0)
		return 0;
	int r = make_room(fs, f, deadline);
	if (r < 0)
		return r;
	struct fs_write_req *w = window_at(f, f->count++);
	*w = (struct fs_write_req){.off = f->stage_off, .len = f->stage_len, .data = f->stage};
	f->stage = NULL;
	f->stage_len = 0;
	send_entry(f, w);
	return 0;
}

/* With f->lock held: every write sent and acknowledged. The first error, else 1 if there was
 * anything to wait for, else 0. */
static int drain(struct fs *fs, struct fs_file *f)
{
	bool waited = f->stage_len > 0 || f->count > 0;
	int64_t deadline = conn_op_deadline(fs->conn);
	int r = send_stage(fs, f, deadline);
	while (r == 0 && f->count > 0)
		if (settle_oldest(fs, f) < 0)
			r = fs_file_revive(fs, f, deadline);
	if (r < 0)
		return r;
	return f->err ? f->err : waited;
}

/* ---- surviving a reconnect ---- */

/* Writes that can no longer reach the sandbox: dropped, and the file reports EIO. */
static void discard_unsent(struct fs *fs, struct fs_file *f)
{
	record_error(f, -EIO);
	window_discard(fs, f);
	if (f->stage_len)
		atomic_fetch_sub(&fs->pending_bytes, f->stage_len);
	f->stage_len = 0;
}

static void revive_lost(struct fs *fs, struct fs_file *f, int r)
{
	log_warn("inode %llu: cannot open the file again after the reconnect (%s); "
		 "%u unacknowledged writes are lost",
		 (unsigned long long)f->ino, strerror(-r), f->count + (f->stage_len > 0));
	f->lost = true;
	discard_unsent(fs, f);
}

int fs_file_revive(struct fs *fs, struct fs_file *f, int64_t deadline)
{
	if (f->lost)
		return -EIO;
	if (conn_current(fs->conn, f->conn))
		return 0;
	bool lazy = !f->conn; /* opened lazily: this is its first use */
	fs_readahead_drop(f);
	/* Collect what the old connection answered before it died. */
	for (unsigned i = 0; i < f->count; i++) {
		struct fs_write_req *w = window_at(f, i);
		if (w->req && i == 0) {
			if (settle_oldest(fs, f) == 0)
				i = (unsigned)-1; /* the window moved: look at the new oldest */
		} else if (w->req) {
			sftp_req_wait(w->req); /* failed: the connection is over */
			w->req = NULL;
		}
	}
	struct conn *c = conn_get(fs->conn, deadline);
	if (!c)
		return -EIO;
	char *path;
	struct sftp_handle h;
	int r = fs_remote_path(fs, f->ino, NULL, &path);
	if (r == 0) {
		r = sftp_open(c->sftp, path, f->reopen_flags, NULL, &h);
		free(path);
	}
	if (r == -EIO && conn_failed(fs->conn, c)) {
		conn_put(fs->conn, c);
		return -EIO; /* died again: the next try may do better */
	}
	if (r < 0 && lazy) {
		conn_put(fs->conn, c);
		return r; /* nothing written through it: it can be tried again */
	}
	if (r < 0) {
		conn_put(fs->conn, c);
		revive_lost(fs, f, r);
		return -EIO;
	}
	if (!lazy)
		log_info("inode %llu opened again after the reconnect; sending %u writes again",
			 (unsigned long long)f->ino, f->count);
	conn_put(fs->conn, f->conn);
	f->conn = c;
	f->handle = h;
	for (unsigned i = 0; i < f->count; i++)
		send_entry(f, window_at(f, i));
	return 0;
}

/* ---- the list of open files ---- */

static struct fs_file *file_new(struct fs *fs, fuse_ino_t ino, struct conn *c,
				const struct sftp_handle *h, uint32_t pflags)
{
	struct fs_file *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	pthread_mutex_init(&f->lock, NULL);
	f->ino = ino;
	f->conn = c;
	f->handle = *h;
	f->reopen_flags = pflags & ~(SFTP_OPEN_CREAT | SFTP_OPEN_TRUNC | SFTP_OPEN_EXCL);
	f->refs = 1;
	pthread_mutex_lock(&fs->files_lock);
	f->next = fs->files;
	if (f->next)
		f->next->pprev = &f->next;
	f->pprev = &fs->files;
	fs->files = f;
	pthread_mutex_unlock(&fs->files_lock);
	atomic_fetch_add(&fs->open_files, 1);
	fs_prefetch_barrier(fs); /* a prefetch store of this inode ends before the open does */
	return f;
}

static void file_unref(struct fs *fs, struct fs_file *f)
{
	pthread_mutex_lock(&fs->files_lock);
	bool last = --f->refs == 0;
	pthread_mutex_unlock(&fs->files_lock);
	if (!last)
		return;
	conn_put(fs->conn, f->conn);
	pthread_mutex_destroy(&f->lock);
	free(f->stage);
	fs_head_free(&f->first);
	free(f);
}

/* Take the file off the list, send what is left, close the handle, drop the list's reference. */
static int file_close(struct fs *fs, struct fs_file *f)
{
	/* While on the list the file's writes are drained before any stat and its attributes are
	 * never fresh (fs_fresh_attrs): so drain it and mark it stale before it leaves the list, or
	 * a size seen while it was being written would be served as fresh (and cap reads). */
	pthread_mutex_lock(&f->lock);
	fs_readahead_drop(f);
	int r = drain(fs, f);
	if (f->wrote)
		fs_mark_stale(fs, f->ino);
	pthread_mutex_unlock(&f->lock);

	pthread_mutex_lock(&fs->files_lock);
	*f->pprev = f->next;
	if (f->next)
		f->next->pprev = f->pprev;
	pthread_mutex_unlock(&fs->files_lock);

	pthread_mutex_lock(&f->lock);
	if (r >= 0)
		r = drain(fs, f); /* nothing, unless written meanwhile through this handle */
	/* Every write was acknowledged above (close(2) itself returned at FLUSH, and RELEASE has no
	 * one to report to): the handle's close goes out without a wait, a failure is logged. */
	if (!f->lost && conn_current(fs->conn, f->conn))
		sftp_close_async(f->conn->sftp, &f->handle);
	if (f->wrote)
		fs_mark_stale(fs, f->ino);
	if (f->count || f->stage_len) {
		log_warn("inode %llu closed with %u writes the sandbox never acknowledged",
			 (unsigned long long)f->ino, f->count + (f->stage_len > 0));
		discard_unsent(fs, f);
	}
	f->closed = true;
	pthread_mutex_unlock(&f->lock);
	atomic_fetch_sub(&fs->open_files, 1);
	file_unref(fs, f);
	return r;
}

/* References to the open files of `ino` (n of them, malloc'd array), or -ENOMEM. */
static int files_of_inode(struct fs *fs, fuse_ino_t ino, struct fs_file ***out)
{
	pthread_mutex_lock(&fs->files_lock);
	size_t n = 0;
	for (struct fs_file *f = fs->files; f; f = f->next)
		n += f->ino == ino;
	struct fs_file **v = n ? malloc(n * sizeof(*v)) : NULL;
	size_t i = 0;
	for (struct fs_file *f = fs->files; v && f; f = f->next) {
		if (f->ino == ino) {
			f->refs++;
			v[i++] = f;
		}
	}
	pthread_mutex_unlock(&fs->files_lock);
	if (n && !v)
		return -ENOMEM;
	*out = v;
	return (int)n;
}

bool fs_inode_is_written(struct fs *fs, fuse_ino_t ino)
{
	if (atomic_load(&fs->open_files) == 0)
		return false;
	pthread_mutex_lock(&fs->files_lock);
	struct fs_file *f = fs->files;
	while (f && !(f->ino == ino && __atomic_load_n(&f->wrote, __ATOMIC_RELAXED)))
		f = f->next;
	pthread_mutex_unlock(&fs->files_lock);
	return f != NULL;
}

bool fs_inode_is_open(struct fs *fs, fuse_ino_t ino)
{
	if (atomic_load(&fs->open_files) == 0)
		return false;
	pthread_mutex_lock(&fs->files_lock);
	struct fs_file *f = fs->files;
	while (f && f->ino != ino)
		f = f->next;
	pthread_mutex_unlock(&fs->files_lock);
	return f != NULL;
}

void fs_forget_size(struct fs *fs, fuse_ino_t ino)
{
	fs_note_size(fs, ino, 0, true);
}

void fs_note_size(struct fs *fs, fuse_ino_t ino, uint64_t size, bool exact)
{
	if (atomic_load(&fs->open_files) == 0)
		return;
	pthread_mutex_lock(&fs->files_lock);
	for (struct fs_file *f = fs->files; f; f = f->next) {
		if (f->ino != ino)
			continue;
		if (exact)
			__atomic_store_n(&f->known_size, size, __ATOMIC_RELAXED);
		else
			fs_file_raise_size(f, size);
	}
	pthread_mutex_unlock(&fs->files_lock);
}

int fs_drain_inode(struct fs *fs, fuse_ino_t ino)
{
	if (atomic_load(&fs->open_files) == 0)
		return 0;
	struct fs_file **v;
	int n = files_of_inode(fs, ino, &v);
	int result = n < 0 ? n : 0;
	for (int i = 0; i < n; i++) {
		pthread_mutex_lock(&v[i]->lock);
		int r = v[i]->closed ? 0 : drain(fs, v[i]);
		pthread_mutex_unlock(&v[i]->lock);
		if (result >= 0 && (r < 0 || r > result))
			result = r;
		file_unref(fs, v[i]);
	}
	if (n > 0)
		free(v);
	return result;
}

bool fs_inode_writes_pending(struct fs *fs, fuse_ino_t ino)
{
	if (atomic_load(&fs->open_files) == 0)
		return false;
	struct fs_file **v;
	int n = files_of_inode(fs, ino, &v);
	bool pending = n < 0; /* cannot tell: as if a writer were busy */
	for (int i = 0; i < n; i++) {
		pthread_mutex_lock(&v[i]->lock);
		pending |= !v[i]->closed && (v[i]->stage_len > 0 || v[i]->count > 0);
		pthread_mutex_unlock(&v[i]->lock);
		file_unref(fs, v[i]);
	}
	if (n > 0)
		free(v);
	return pending;
}

/* With f->lock held: fsetstat (if set) and fstat through f's handle, once more after a
 * reconnect. */
static int file_attrs(struct fs *fs, struct fs_file *f, const struct sftp_attrs *set,
		      struct sftp_attrs *a)
{
	int64_t deadline = conn_op_deadline(fs->conn);
	int r = 0;
	for (int attempt = 0; attempt < 2; attempt++) {
		r = fs_file_revive(fs, f, deadline);
		if (r == 0 && set)
			r = sftp_fsetstat(f->conn->sftp, &f->handle, set);
		if (r == 0)
			r = sftp_fstat(f->conn->sftp, &f->handle, a);
		if (r != -EIO || !conn_failed(fs->conn, f->conn))
			break;
	}
	return r;
}

int fs_open_inode_attrs(struct fs *fs, fuse_ino_t ino, const struct sftp_attrs *set,
			struct sftp_attrs *a)
{
	struct fs_file **v;
	int n = files_of_inode(fs, ino, &v);
	int r = n < 0 ? n : -ENOENT;
	for (int i = 0; i < n; i++) {
		pthread_mutex_lock(&v[i]->lock);
		if (r == -ENOENT && !v[i]->closed)
			r = file_attrs(fs, v[i], set, a);
		pthread_mutex_unlock(&v[i]->lock);
		file_unref(fs, v[i]);
	}
	if (n > 0)
		free(v);
	return r;
}

void fs_close_all_files(struct fs *fs)
{
	for (;;) {
		pthread_mutex_lock(&fs->files_lock);
		struct fs_file *f = fs->files;
		pthread_mutex_unlock(&fs->files_lock);
		if (!f)
			break;
		int r = file_close(fs, f);
		if (r < 0)
			log_warn("closing a file left open at unmount: %s", strerror(-r));
	}
}

/* ---- operations ---- */

static uint32_t sftp_open_flags(int flags)
{
	uint32_t pf;
	switch (flags & O_ACCMODE) {
	case O_RDONLY:
		pf = SFTP_OPEN_READ;
		break;
	case O_WRONLY:
		pf = SFTP_OPEN_WRITE;
		break;
	default:
		pf = SFTP_OPEN_READ | SFTP_OPEN_WRITE;
		break;
	}
	/* O_APPEND is the kernel's: it hands every write its offset (the end it knows, which
	 * includes the writes of every handle), so the remote handle is never opened for appending.
	 * It would place every write at the sandbox's end, also the kernel's writeback of mmap'd
	 * pages through this handle and appends the kernel placed after other handles' buffered
	 * writes. */
	if (flags & O_TRUNC)
		pf |= SFTP_OPEN_TRUNC;
	if (flags & O_CREAT)
		pf |= SFTP_OPEN_CREAT;
	if (flags & O_EXCL)
		pf |= SFTP_OPEN_EXCL;
	return pf;
}

/* Register the opened handle as fi->fh (taking over the call's connection reference). The
 * kernel keeps its page cache only when the file provably did not change since the previous
 * open: the attributes are `vouched` for by the sandbox's change reports (nothing reported and
 * nothing written since they were fetched) and show the size and mtime of that open. Otherwise
 * the kernel drops the inode's pages at this open (ops_read.c has the whole rule). 0, or -errno
 * with the remote handle closed. */
static int attach_file(struct fs *fs, fuse_ino_t ino, struct fs_call *call,
		       const struct sftp_handle *h, uint32_t pflags, const struct sftp_attrs *a,
		       bool vouched, struct fuse_file_info *fi)
{
	struct fs_file *f = file_new(fs, ino, call->c, h, pflags);
	if (!f) {
		sftp_close(call->sftp, h);
		return -ENOMEM;
	}
	call->c = NULL;
	call->sftp = NULL;
	if (a && (a->flags & SFTP_ATTR_SIZE))
		f->known_size = a->size;
	fi->fh = (uintptr_t)f;
	/* inode_open_unchanged records this open's size and mtime: call it every time. */
	bool same = a && inode_open_unchanged(fs->inodes, ino, a);
	fi->keep_cache = same && vouched;
	return 0;
}

/* Lazy open: a read-only open of a file the sandbox's change reports vouch for (its attributes
 * are fresh, the kernel holds them, and they are those of the previous open, so the kernel's
 * pages are valid) sends nothing. The kernel keeps its pages and the handle is opened on the
 * sandbox at the first read they do not hold (fs_file_revive). A change made in the sandbox is
 * seen once its report arrived (docs/design.md, the invalidation rule). */
static bool open_lazily(struct fs *fs, fuse_ino_t ino, uint32_t pflags, struct fuse_file_info *fi)
{
	struct sftp_attrs cached;
	if (pflags != SFTP_OPEN_READ || !fs_fresh_attrs(fs, ino, &cached) ||
	    !(cached.flags & SFTP_ATTR_SIZE) ||
	    inode_shown_compare(fs->inodes, ino, &cached) != INODE_SHOWN_SAME ||
	    !inode_open_unchanged(fs->inodes, ino, &cached))
		return false;
	struct fs_file *f = file_new(fs, ino, NULL, &(struct sftp_handle){0}, pflags);
	if (!f)
		return false;
	f->known_size = cached.size;
	fi->fh = (uintptr_t)f;
	fi->keep_cache = 1;
	return true;
}

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	char *path;
	struct sftp_handle h;
	struct sftp_attrs a;
	struct fs_call call = {.fs = fs};
	uint32_t pflags = sftp_open_flags(fi->flags & ~(O_CREAT | O_EXCL));
	/* Attributes the sandbox vouches for (watched, unchanged since) let the kernel keep its
	 * pages; a small file of a directory not fetched lately first fetches the directory's
	 * small files, it among them, and then opens lazily too (prefetch.c). */
	if (open_lazily(fs, ino, pflags, fi) ||
	    (pflags == SFTP_OPEN_READ && fs_prefetch_now(fs, ino) &&
	     open_lazily(fs, ino, pflags, fi))) {
		if (fuse_reply_open(req, fi) != 0)
			file_close(fs, file_of(fi));
		return;
	}
	struct sftp_attrs cached;
	bool fresh = !(pflags & SFTP_OPEN_TRUNC) && fs_fresh_attrs(fs, ino, &cached);
	bool have_attrs = false;
	struct fs_head head = {0};
	uint64_t seq = fs_seq(fs);
	int r = fs_remote_path(fs, ino, NULL, &path);
	if (r == 0) {
		r = fs_call_begin(fs, &call);
		/* Opening again is harmless unless it truncates. */
		if (r == 0) {
			do {
				fs_head_free(&head);
				r = fs_open_remote(fs, call.sftp, ino, path, pflags, &h, &a,
						   &have_attrs, &head);
			} while (!(pflags & SFTP_OPEN_TRUNC) && fs_call_retry(&call, &r));
		}
		free(path);
	}

	if (pflags & SFTP_OPEN_TRUNC) {
		/* A truncate like setattr's: other handles' read-ahead and known size go. */
		fs_data_changed(fs, ino);
		fs_note_size(fs, ino, 0, true);
	}
	enum inode_shown shown = INODE_SHOWN_SAME;
	if (r == 0) {
		if (have_attrs)
			fs_remember_attrs(fs, ino, &a, seq);
		else if (fresh)
			a = cached;
		have_attrs |= fresh;
		/* The kernel takes no attributes from an open reply: when they are not the ones it
		 * holds (a change not reported yet, or not watched), it is made to fetch them. With
		 * O_TRUNC it sets the size to 0 itself. */
		if (have_attrs && (pflags & SFTP_OPEN_TRUNC))
			inode_note_shown(fs->inodes, ino, &a, INODE_MARK_ANY);
		else if (have_attrs)
			shown = inode_shown_compare(fs->inodes, ino, &a);
		r = attach_file(fs, ino, &call, &h, pflags, have_attrs ? &a : NULL, fresh, fi);
		if (r == 0) {
			file_of(fi)->first = head;
			head = (struct fs_head){0};
		}
	}
	fs_head_free(&head);
	fs_call_end(&call);
	if (r == 0 && shown == INODE_SHOWN_OTHER_SIZE)
		fs_show_size(fs, ino);
	else if (r == 0 && shown == INODE_SHOWN_OTHER_MTIME)
		fs_forget_kernel_attrs(fs, ino);
	if (r < 0)
		fs_reply_errno(req, r);
	else if (fuse_reply_open(req, fi) != 0)
		file_close(fs, file_of(fi)); /* the request was interrupted: no release will come */
	/* Its data was not cached: its directory's other small files likely are read next. */
	if (r == 0 && pflags == SFTP_OPEN_READ && inode_type(fs->inodes, ino) == S_IFREG)
		fs_prefetch_kick(fs, ino);
}

void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	char *path = NULL;
	struct sftp_handle h;
	struct sftp_attrs a = {.flags = SFTP_ATTR_PERM, .perm = mode & 07777};
	struct fuse_entry_param e;
	struct fs_call call = {.fs = fs};
	uint32_t pflags = sftp_open_flags(fi->flags | O_CREAT);
	bool have_attrs = false;
	char *dir = NULL;
	struct sftp_after after = {0};
	fs_mark_stale(fs, parent);
	uint64_t seq = fs_seq(fs);
	int r = fs_hidden_name(parent, name) ? -EPERM : fs_remote_path(fs, parent, name, &path);
	if (r == 0)
		r = fs_remote_path(fs, parent, NULL, &dir);
	bool tracked = r == 0 && own_change_begin(fs->own_changes, parent);
	if (r == 0) {
		/* The directory's attributes come along: the kernel asks for them next. */
		after.path = dir;
		r = fs_call_begin(fs, &call);
		if (r == 0)
			r = sftp_open_stat(call.sftp, path, pflags, &a, &h, &a, &have_attrs, &after,
					   1);
	}
	free(path);
	free(dir);
	listing_note(fs->listings, parent, name, r == 0 ? LISTING_ADDED : LISTING_DOUBT);
	if (r == 0)
		fs_remember_after(fs, parent, &after, seq);
	if (r == 0) {
		if (!have_attrs)
			r = sftp_fstat(call.sftp, &h, &a);
		if (r == 0)
			r = fs_make_entry(fs, parent, name, &a, FS_SEQ_NONE, &e);
		if (r == 0 && (pflags & SFTP_OPEN_TRUNC)) {
			/* The name may have been there: a truncate, as in open. */
			fs_data_changed(fs, e.ino);
			fs_note_size(fs, e.ino, 0, true);
		}
		if (r < 0)
			sftp_close(call.sftp, &h);
		else if ((r = attach_file(fs, e.ino, &call, &h, pflags, &a, false, fi)) < 0)
			inode_forget(fs->inodes, e.ino, 1);
	}
	fs_call_end(&call);
	if (r < 0)
		fs_reply_errno(req, r);
	else if (fuse_reply_create(req, &e, fi) != 0)
		file_close(fs, file_of(fi));
	fs_own_change_end(fs, parent, tracked);
}

/* With f->lock held: append to the staging chunk, sending it whenever it is full. */
static int stage_write(struct fs *fs, struct fs_file *f, const char *buf, size_t size, uint64_t off)
{
	int64_t deadline = conn_op_deadline(fs->conn);
	int r = 0;
	if (f->stage_len > 0 && off != f->stage_off + f->stage_len)
		r = send_stage(fs, f, deadline);
	while (r == 0 && size > 0) {
		if (!f->stage && !(f->stage = malloc(fs->write_chunk)))
			return -ENOMEM;
		if (f->stage_len == 0)
			f->stage_off = off;
		size_t n = fs->write_chunk - f->stage_len;
		n = n < size ? n : size;
		memcpy(f->stage + f->stage_len, buf, n);
		atomic_fetch_add(&fs->pending_bytes, n);
		f->stage_len += n;
		buf += n;
		off += n;
		size -= n;
		fs_file_raise_size(f, off);
		if (f->stage_len == fs->write_chunk)
			r = send_stage(fs, f, deadline);
	}
	return r;
}

/* Writes land in the order they returned: before one is staged, whatever other handles of the
 * inode hold goes out and is acknowledged, so an older overlapping write never lands over it. */
static void drain_others(struct fs *fs, struct fs_file *f)
{
	struct fs_file **v;
	int n = files_of_inode(fs, f->ino, &v);
	for (int i = 0; i < n; i++) {
		if (v[i] != f) {
			pthread_mutex_lock(&v[i]->lock);
			if (!v[i]->closed)
				drain(fs, v[i]); /* a failure stays recorded on that file */
			pthread_mutex_unlock(&v[i]->lock);
		}
		file_unref(fs, v[i]);
	}
	if (n > 0)
		free(v);
}

void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_file *f = file_of(fi);
	drain_others(fs, f);
	/* Read-ahead of every handle of the inode is stale from now on (ops_read.c), and every
	 * handle knows the file is at least this long. */
	fs_data_changed(fs, ino);
	fs_note_size(fs, ino, (uint64_t)off + size, false);
	pthread_mutex_lock(&f->lock);
	fs_readahead_drop(f);
	if (!f->wrote) {
		__atomic_store_n(&f->wrote, true, __ATOMIC_RELAXED);
		fs_mark_stale(fs, f->ino);
	}
	int r = f->err ? f->err : stage_write(fs, f, buf, size, (uint64_t)off);
	/* The kernel's size grows with the reply; noted once the write is staged (a drain of the
	 * inode then waits for it: kernel_size.c). */
	if (r == 0)
		inode_note_written(fs->inodes, ino, (uint64_t)off + size);
	pthread_mutex_unlock(&f->lock);
	if (r < 0)
		fs_reply_errno(req, r);
	else
		fuse_reply_write(req, size);
}

static int drain_file(struct fs *fs, struct fs_file *f)
{
	pthread_mutex_lock(&f->lock);
	int r = drain(fs, f);
	pthread_mutex_unlock(&f->lock);
	return r > 0 ? 0 : r;
}

void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	fs_reply_errno(req, drain_file(fs_of(req), file_of(fi)));
}

void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	int r = file_close(fs, file_of(fi));
	if (r < 0)
		log_warn("closing inode %llu: %s", (unsigned long long)ino, strerror(-r));
	fuse_reply_err(req, 0);
}

void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	struct fs *fs = fs_of(req);
	struct fs_file *f = file_of(fi);
	pthread_mutex_lock(&f->lock);
	int r = drain(fs, f);
	r = r > 0 ? 0 : r;
	if (r == 0)
		r = fs_file_revive(fs, f, conn_op_deadline(fs->conn));
	if (r == 0 && (sftp_client_extensions(f->conn->sftp) & SFTP_EXT_FSYNC))
		r = sftp_fsync(f->conn->sftp, &f->handle);
	pthread_mutex_unlock(&f->lock);
	fs_reply_errno(req, r);
}
