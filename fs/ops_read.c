/* ops_read.c: the FUSE read operation. A read asks for no more than the file is known to hold
 * (the size seen at open, since raised by our writes and by the attributes handed to the
 * kernel), so a whole small file costs one round trip instead of a second one to confirm EOF.
 * A handle read sequentially gets read-ahead: the next chunks (of the reader's own size, at most
 * FS_READAHEAD_BYTES) are requested before they are asked for; a read elsewhere drops them. */
#include "fs_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static struct fs_file *file_of(struct fuse_file_info *fi)
{
	return (struct fs_file *)(uintptr_t)fi->fh;
}

static void ra_collect(struct fs_ra_req *q)
{
	char sink[1];
	size_t got;
	sftp_req_wait_read(q->req, sink, 0, &got);
}

void fs_readahead_drop(struct fs_file *f)
{
	for (unsigned i = 0; i < f->ra_count; i++)
		ra_collect(&f->ra[i]);
	f->ra_count = 0;
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
	while (f->ra_count < max && next < known) {
		struct sftp_req *q;
		if (sftp_read_async(f->conn->sftp, &f->handle, next, chunk, &q) < 0)
			return; /* the connection is over */
		f->ra[f->ra_count++] = (struct fs_ra_req){q, next, chunk};
		next += chunk;
	}
}

/* With f->lock held (released while waiting, so the kernel's parallel reads of one file overlap):
 * one read on the handle, capped at the known size; once more on a new connection if the
 * connection died under it. */
static int read_direct(struct fs *fs, struct fs_file *f, uint64_t off, size_t size, char *buf,
		       size_t *got)
{
	int64_t deadline = conn_op_deadline(fs->conn);
	for (int attempt = 0;; attempt++) {
		int r = fs_file_revive(fs, f, deadline);
		if (r < 0)
			return r;
		uint64_t known = __atomic_load_n(&f->known_size, __ATOMIC_RELAXED);
		size_t want = off < known && known - off < size ? (size_t)(known - off) : size;
		struct conn *c = f->conn;
		struct sftp_handle h = f->handle;
		conn_hold(fs->conn, c);
		pthread_mutex_unlock(&f->lock);
		r = sftp_read(c->sftp, &h, off, buf, want, got);
		bool dead = r == -EIO && conn_failed(fs->conn, c);
		conn_put(fs->conn, c);
		pthread_mutex_lock(&f->lock);
		if (r == 0)
			fs_file_raise_size(f, off + *got);
		if (!dead || attempt == 1)
			return r;
	}
}

void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fs_file *f = file_of(fi);
	/* Unsent writes of this inode must be visible to the read. */
	bool wrote = fs_drain_inode(fs, ino) > 0;
	char *buf = malloc(size ? size : 1);
	size_t got = 0;
	int r = -ENOMEM;
	pthread_mutex_lock(&f->lock);
	if (wrote)
		fs_readahead_drop(f);
	if (buf) {
		uint64_t at = (uint64_t)off;
		bool sequential = at == f->read_end;
		r = ra_take(f, at, size, buf, &got);
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
