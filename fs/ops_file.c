/* ops_file.c: FUSE operations on open files (open, create, read, write, flush, release, fsync)
 * and the per-file write buffer (DESIGN decisions 5 and 8): contiguous writes are coalesced
 * into a staging chunk, full chunks go out asynchronously within a bounded window, and
 * flush/fsync/release wait for every acknowledgement and report the first failure. */
#include "fs_internal.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

struct fs_write_req {
	struct sftp_req *req;
	size_t len;
};

struct fs_file {
	pthread_mutex_t lock; /* guards the fields below up to `refs` */
	fuse_ino_t ino;
	struct sftp_handle handle;
	bool closed;
	int err; /* first failed write: reported by flush, fsync and close */
	uint8_t *stage;
	size_t stage_len;
	uint64_t stage_off;
	struct fs_write_req window[FS_WRITE_WINDOW]; /* in flight, oldest at `head` */
	unsigned head, count;

	unsigned refs; /* under fs->files_lock, as the list links */
	struct fs_file *next, **pprev;
};

static struct fs_file *file_of(struct fuse_file_info *fi)
{
	return (struct fs_file *)(uintptr_t)fi->fh;
}

static void record_error(struct fs_file *f, int r)
{
	if (r < 0 && f->err == 0)
		f->err = r;
}

static void wait_oldest(struct fs *fs, struct fs_file *f)
{
	struct fs_write_req *w = &f->window[f->head];
	record_error(f, sftp_req_wait(w->req));
	atomic_fetch_sub(&fs->pending_bytes, w->len);
	f->head = (f->head + 1) % FS_WRITE_WINDOW;
	f->count--;
}

static void send_stage(struct fs *fs, struct fs_file *f)
{
	if (f->stage_len == 0)
		return;
	if (f->count == FS_WRITE_WINDOW)
		wait_oldest(fs, f);
	struct sftp_req *req;
	int r = sftp_write_async(fs->sftp, &f->handle, f->stage_off, f->stage, f->stage_len, &req);
	if (r < 0) {
		record_error(f, r);
		atomic_fetch_sub(&fs->pending_bytes, f->stage_len);
	} else {
		f->window[(f->head + f->count) % FS_WRITE_WINDOW] =
		    (struct fs_write_req){req, f->stage_len};
		f->count++;
	}
	f->stage_len = 0;
}

/* With f->lock held: every write sent and acknowledged. The first error, else 1 if there was
 * anything to wait for, else 0. */
static int drain(struct fs *fs, struct fs_file *f)
{
	bool waited = f->stage_len > 0 || f->count > 0;
	send_stage(fs, f);
	while (f->count > 0)
		wait_oldest(fs, f);
	return f->err ? f->err : waited;
}

static struct fs_file *file_new(struct fs *fs, fuse_ino_t ino, const struct sftp_handle *h)
{
	struct fs_file *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	pthread_mutex_init(&f->lock, NULL);
	f->ino = ino;
	f->handle = *h;
	f->refs = 1;
	pthread_mutex_lock(&fs->files_lock);
	f->next = fs->files;
	if (f->next)
		f->next->pprev = &f->next;
	f->pprev = &fs->files;
	fs->files = f;
	pthread_mutex_unlock(&fs->files_lock);
	atomic_fetch_add(&fs->open_files, 1);
	return f;
}

static void file_unref(struct fs *fs, struct fs_file *f)
{
	pthread_mutex_lock(&fs->files_lock);
	bool last = --f->refs == 0;
	pthread_mutex_unlock(&fs->files_lock);
	if (!last)
		return;
	pthread_mutex_destroy(&f->lock);
	free(f->stage);
	free(f);
}

/* Take the file off the list, send what is left, close the handle, drop the list's reference. */
static int file_close(struct fs *fs, struct fs_file *f)
{
	pthread_mutex_lock(&fs->files_lock);
	*f->pprev = f->next;
	if (f->next)
		f->next->pprev = f->pprev;
	pthread_mutex_unlock(&fs->files_lock);

	pthread_mutex_lock(&f->lock);
	int r = drain(fs, f);
	int rc = sftp_close(fs->sftp, &f->handle);
	f->closed = true;
	pthread_mutex_unlock(&f->lock);
	atomic_fetch_sub(&fs->open_files, 1);
	file_unref(fs, f);
	return r < 0 ? r : rc;
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

int fs_drain_inode(struct fs *fs, fuse_ino_t ino)
{
	if (atomic_load(&fs->open_files) == 0)
		return 0;
	struct fs_file **v;
	int n = files_of_inode(fs, ino, &v);
	int result = n < 0 ? n : 0;
	for (int i = 0; i < n; i++) {
		pthread_mutex_lock(&v[i]->lock);
		int r = drain(fs, v[i]);
		pthread_mutex_unlock(&v[i]->lock);
		if (result >= 0 && (r < 0 || r > result))
			result = r;
		file_unref(fs, v[i]);
	}
	if (n > 0)
		free(v);
	return result;
}

int fs_open_inode_attrs(struct fs *fs, fuse_ino_t ino, const struct sftp_attrs *set,
			struct sftp_attrs *a)
{
	struct fs_file **v;
	int n = files_of_inode(fs, ino, &v);
	int r = n < 0 ? n : -ENOENT;
	for (int i = 0; i < n; i++) {
		pthread_mutex_lock(&v[i]->lock);
		if (r == -ENOENT && !v[i]->closed) {
			r = set ? sftp_fsetstat(fs->sftp, &v[i]->handle, set) : 0;
			if (r == 0)
				r = sftp_fstat(fs->sftp, &v[i]->handle, a);
		}
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
	if (flags & O_APPEND)
		pf |= SFTP_OPEN_APPEND;
	if (flags & O_TRUNC)
		pf |= SFTP_OPEN_TRUNC;
	if (flags & O_CREAT)
		pf |= SFTP_OPEN_CREAT;
	if (flags & O_EXCL)
		pf |= SFTP_OPEN_EXCL;
	return pf;
}

/* Register the opened handle as fi->fh; keep the page cache if the file did not change since
 * the previous open. On failure the remote handle is closed. */
static int attach_file(struct fs *fs, fuse_ino_t ino, const struct sftp_handle *h,
		       const struct sftp_attrs *a, struct fuse_file_info *fi)
{
	struct fs_file *f = file_new(fs, ino, h);
	if (!f) {
		sftp_close(fs->sftp, h);
		return -ENOMEM;
	}
	fi->fh = (uintptr_t)f;
	fi->keep_cache = a && inode_open_unchanged(fs->inodes, ino, a->size, a->mtime);
	return 0;
}

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	char *path;
	struct sftp_handle h;
	struct sftp_attrs a;
	int r = fs_remote_path(fs, ino, NULL, &path);
	if (r == 0) {
		r = sftp_open(fs->sftp, path, sftp_open_flags(fi->flags & ~(O_CREAT | O_EXCL)),
			      NULL, &h);
		free(path);
	}
	if (r == 0) {
		bool have_attrs = sftp_fstat(fs->sftp, &h, &a) == 0;
		r = attach_file(fs, ino, &h, have_attrs ? &a : NULL, fi);
	}
	if (r < 0)
		fs_reply_errno(req, r);
	else if (fuse_reply_open(req, fi) != 0)
		file_close(fs, file_of(fi)); /* the request was interrupted: no release will come */
}

void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	char *path;
	struct sftp_handle h;
	struct sftp_attrs a = {.flags = SFTP_ATTR_PERM, .perm = mode & 07777};
	struct fuse_entry_param e;
	int r = fs_hidden_name(parent, name) ? -EPERM : fs_remote_path(fs, parent, name, &path);
	if (r == 0) {
		r = sftp_open(fs->sftp, path, sftp_open_flags(fi->flags | O_CREAT), &a, &h);
		free(path);
	}
	if (r == 0) {
		r = sftp_fstat(fs->sftp, &h, &a);
		if (r == 0)
			r = fs_make_entry(fs, parent, name, &a, &e);
		if (r < 0)
			sftp_close(fs->sftp, &h);
		else if ((r = attach_file(fs, e.ino, &h, &a, fi)) < 0)
			inode_forget(fs->inodes, e.ino, 1);
	}
	if (r < 0)
		fs_reply_errno(req, r);
	else if (fuse_reply_create(req, &e, fi) != 0)
		file_close(fs, file_of(fi));
}

void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_file *f = file_of(fi);
	/* Unsent writes of this inode must be visible to the read. */
	fs_drain_inode(fs, ino);
	char *buf = malloc(size ? size : 1);
	size_t got = 0;
	int r = buf ? sftp_read(fs->sftp, &f->handle, (uint64_t)off, buf, size, &got) : -ENOMEM;
	if (r < 0)
		fs_reply_errno(req, r);
	else
		fuse_reply_buf(req, buf, got);
	free(buf);
}

/* With f->lock held: append to the staging chunk, sending it whenever it is full. */
static int stage_write(struct fs *fs, struct fs_file *f, const char *buf, size_t size, uint64_t off)
{
	if (!f->stage && !(f->stage = malloc(fs->write_chunk)))
		return -ENOMEM;
	if (f->stage_len > 0 && off != f->stage_off + f->stage_len)
		send_stage(fs, f);
	atomic_fetch_add(&fs->pending_bytes, size);
	while (size > 0) {
		if (f->stage_len == 0)
			f->stage_off = off;
		size_t n = fs->write_chunk - f->stage_len;
		n = n < size ? n : size;
		memcpy(f->stage + f->stage_len, buf, n);
		f->stage_len += n;
		buf += n;
		off += n;
		size -= n;
		if (f->stage_len == fs->write_chunk)
			send_stage(fs, f);
	}
	return 0;
}

void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	(void)ino;
	struct fs *fs = fs_of(req);
	struct fs_file *f = file_of(fi);
	pthread_mutex_lock(&f->lock);
	int r = f->err ? f->err : stage_write(fs, f, buf, size, (uint64_t)off);
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
	int r = drain_file(fs, f);
	if (r == 0 && (sftp_client_extensions(fs->sftp) & SFTP_EXT_FSYNC))
		r = sftp_fsync(fs->sftp, &f->handle);
	fs_reply_errno(req, r);
}
