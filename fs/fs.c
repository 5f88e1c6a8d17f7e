/* fs.c: the file system's life cycle (create, session, destroy), the exec barrier, status, and
 * the helpers every operation uses: remote paths, attribute conversion, entries, errors. */
#include "fs_internal.h"
#include "linkpath.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fs_create(const struct fs_params *p, struct fs **out, struct err *e)
{
	if (!p->sftp || !p->remote_root || p->remote_root[0] != '/') {
		err_set(e, "the remote workspace must be an absolute path");
		return -EINVAL;
	}
	struct fs *fs = calloc(1, sizeof(*fs));
	if (!fs)
		goto nomem;
	fs->sftp = p->sftp;
	fs->timeout_s = p->cache_timeout_s;
	fs->uid = p->uid;
	fs->gid = p->gid;
	fs->root = strdup(p->remote_root);
	fs->root_path = strdup(p->remote_root);
	if (p->remote_root_alias && p->remote_root_alias[0] == '/')
		fs->alias = strdup(p->remote_root_alias);
	fs->inodes = inode_table_new();
	if (!fs->root || !fs->root_path || !fs->inodes ||
	    (p->remote_root_alias && p->remote_root_alias[0] == '/' && !fs->alias))
		goto nomem;
	size_t len = strlen(fs->root_path);
	while (len > 0 && fs->root_path[len - 1] == '/')
		fs->root_path[--len] = '\0';

	struct sftp_limits lim;
	sftp_client_limits(fs->sftp, &lim);
	fs->write_chunk = lim.max_write ? lim.max_write : 32768;
	if (fs->write_chunk > FS_WRITE_CHUNK_MAX)
		fs->write_chunk = FS_WRITE_CHUNK_MAX;
	if (fs->write_chunk < FS_WRITE_CHUNK_MIN)
		fs->write_chunk = FS_WRITE_CHUNK_MIN;
	pthread_mutex_init(&fs->files_lock, NULL);
	*out = fs;
	return 0;
nomem:
	err_set(e, "out of memory");
	if (fs) {
		inode_table_free(fs->inodes);
		free(fs->root);
		free(fs->root_path);
		free(fs->alias);
		free(fs);
	}
	return -ENOMEM;
}

void fs_destroy(struct fs *fs)
{
	if (!fs)
		return;
	fs_close_all_files(fs);
	pthread_mutex_destroy(&fs->files_lock);
	inode_table_free(fs->inodes);
	free(fs->root);
	free(fs->root_path);
	free(fs->alias);
	free(fs);
}

void fs_set_session(struct fs *fs, struct fuse_session *se)
{
	fs->se = se;
}

void fs_barrier(void *arg)
{
	struct fs *fs = arg;
	if (!fs->se)
		return;
	/* What was handed out longer ago than the TTL has expired in the kernel already. */
	int64_t since = now_ms() - (int64_t)(fs->timeout_s * 1000) - 1;
	struct inode_cached *v;
	long n = inode_cached_since(fs->inodes, since, &v);
	if (n < 0) {
		log_warn("cache barrier: out of memory");
		return;
	}
	for (long i = 0; i < n; i++) {
		int r = fuse_lowlevel_notify_inval_inode(fs->se, v[i].ino, 0, 0);
		if (r < 0 && r != -ENOENT)
			log_debug("invalidating inode %" PRIu64 ": %s", v[i].ino, strerror(-r));
		if (!v[i].parent || !v[i].name)
			continue;
		r = fuse_lowlevel_notify_inval_entry(fs->se, v[i].parent, v[i].name,
						     strlen(v[i].name));
		if (r < 0 && r != -ENOENT)
			log_debug("invalidating entry %s: %s", v[i].name, strerror(-r));
	}
	inode_cached_free(v, n);
}

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_printf(struct buf *b, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0)
		buf_put_bytes(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

void fs_status(struct fs *fs, struct buf *text)
{
	struct sftp_stats st;
	sftp_client_stats(fs->sftp, &st);
	buf_printf(text, "inodes: %zu\n", inode_table_count(fs->inodes));
	buf_printf(text, "open files: %u (directories: %u)\n", atomic_load(&fs->open_files),
		   atomic_load(&fs->open_dirs));
	buf_printf(text, "pending write bytes: %" PRIu64 "\n", fs_pending_bytes(fs));
	buf_printf(text,
		   "sftp requests: %" PRIu64 ", round trips: %" PRIu64 ", in flight: %" PRIu64
		   ", timeouts: %" PRIu64 "\n",
		   st.requests, st.round_trips, st.in_flight, st.timeouts);
	buf_printf(text, "sftp bytes read: %" PRIu64 ", written: %" PRIu64 "\n", st.bytes_read,
		   st.bytes_written);
	if (st.last_rtt_us >= 0)
		buf_printf(text, "sftp rtt: %.3f ms\n", st.last_rtt_us / 1000.0);
	else
		buf_printf(text, "sftp rtt: unknown\n");
}

uint64_t fs_pending_bytes(struct fs *fs)
{
	return atomic_load(&fs->pending_bytes);
}

void fs_reply_errno(fuse_req_t req, int err)
{
	err = err < 0 ? -err : err;
	if (err == ETIMEDOUT)
		err = EIO;
	fuse_reply_err(req, err);
}

int fs_remote_path(struct fs *fs, fuse_ino_t ino, const char *name, char **out)
{
	char *rel;
	int r = inode_path(fs->inodes, ino, false, &rel);
	if (r < 0)
		return r;
	char *path;
	if (name)
		path = str_printf("%s%s%s/%s", fs->root_path, rel[0] ? "/" : "", rel, name);
	else if (rel[0] || fs->root_path[0])
		path = str_printf("%s%s%s", fs->root_path, rel[0] ? "/" : "", rel);
	else
		path = strdup("/");
	free(rel);
	if (!path)
		return -ENOMEM;
	*out = path;
	return 0;
}

bool fs_hidden_name(fuse_ino_t parent, const char *name)
{
	return parent == INODE_ROOT && linkpath_is_hidden_name(name);
}

mode_t fs_attrs_type(const struct sftp_attrs *a)
{
	mode_t type = (a->flags & SFTP_ATTR_PERM) ? (a->perm & S_IFMT) : 0;
	return type ? type : S_IFREG;
}

void fs_fill_stat(struct fs *fs, fuse_ino_t ino, const struct sftp_attrs *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = fs_attrs_type(a) | ((a->flags & SFTP_ATTR_PERM) ? (a->perm & 07777) : 0644);
	st->st_nlink = S_ISDIR(st->st_mode) ? 2 : 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_size = (a->flags & SFTP_ATTR_SIZE) ? (off_t)a->size : 0;
	st->st_blksize = 4096;
	st->st_blocks = (st->st_size + 511) / 512;
	if (a->flags & SFTP_ATTR_ACMODTIME) {
		st->st_atime = a->atime;
		st->st_mtime = a->mtime;
		st->st_ctime = a->mtime;
	}
}

int fs_make_entry(struct fs *fs, fuse_ino_t parent, const char *name, const struct sftp_attrs *a,
		  struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = inode_enter(fs->inodes, parent, name, fs_attrs_type(a), 1, now_ms());
	if (!e->ino)
		return -ENOMEM;
	fs_fill_stat(fs, e->ino, a, &e->attr);
	e->attr_timeout = fs->timeout_s;
	e->entry_timeout = fs->timeout_s;
	return 0;
}
