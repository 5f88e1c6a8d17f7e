/* fs.c: the file system's life cycle (create, session, destroy), the exec barrier, status, and
 * the helpers every operation uses: remote paths, attribute conversion, entries, errors. */
#include "fs_internal.h"
#include "linkpath.h"
#include "log.h"
#include "negative.h"
#include "own_change.h"
#include "stat_helper.h"

#include <errno.h>
#include <limits.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Everything fs_create allocates (any of it may be NULL). */
static void free_parts(struct fs *fs)
{
	if (!fs)
		return;
	inode_table_free(fs->inodes);
	fs_expirer_free(fs->expirer);
	stat_helper_free(fs->stat_helper);
	negative_set_free(fs->negatives);
	listings_free(fs->listings);
	own_changes_free(fs->own_changes);
	prefetcher_free(fs->prefetch);
	free(fs->root);
	free(fs->root_path);
	free(fs->alias);
	free(fs);
}

int fs_create(const struct fs_params *p, struct fs **out, struct err *e)
{
	if (!p->conn || !p->remote_root || p->remote_root[0] != '/') {
		err_set(e, "the remote workspace must be an absolute path");
		return -EINVAL;
	}
	struct fs *fs = calloc(1, sizeof(*fs));
	if (!fs)
		goto nomem;
	fs->conn = p->conn;
	fs->timeout_s = p->cache_timeout_s;
	fs->uid = p->uid;
	fs->gid = p->gid;
	fs->owners_real = p->owners_real;
	fs->root = strdup(p->remote_root);
	fs->root_path = strdup(p->remote_root);
	if (p->remote_root_alias && p->remote_root_alias[0] == '/')
		fs->alias = strdup(p->remote_root_alias);
	fs->inodes = inode_table_new();
	fs->stat_helper = stat_helper_new();
	fs->negatives = negative_set_new(NEGATIVE_MAX_ENTRIES);
	fs->expirer = fs_expirer_new();
	fs->listings = listings_new();
	fs->own_changes = own_changes_new();
	fs->prefetch = p->prefetch ? prefetcher_new() : NULL;
	if ((p->prefetch && !fs->prefetch) || !fs->root || !fs->root_path || !fs->inodes ||
	    !fs->stat_helper || !fs->negatives || !fs->expirer || !fs->listings ||
	    !fs->own_changes ||
	    (p->remote_root_alias && p->remote_root_alias[0] == '/' && !fs->alias))
		goto nomem;
	size_t len = strlen(fs->root_path);
	while (len > 0 && fs->root_path[len - 1] == '/')
		fs->root_path[--len] = '\0';

	struct sftp_limits lim;
	struct conn *c = conn_get(fs->conn, 0);
	if (!c) {
		err_set(e, "the connection to the sandbox was lost");
		free_parts(fs);
		return -EIO;
	}
	sftp_client_limits(c->sftp, &lim);
	conn_put(fs->conn, c);
	fs->write_chunk = lim.max_write ? lim.max_write : 32768;
	if (fs->write_chunk > FS_WRITE_CHUNK_MAX)
		fs->write_chunk = FS_WRITE_CHUNK_MAX;
	if (fs->write_chunk < FS_WRITE_CHUNK_MIN)
		fs->write_chunk = FS_WRITE_CHUNK_MIN;
	pthread_mutex_init(&fs->files_lock, NULL);
	pthread_mutex_init(&fs->root_attrs_lock, NULL);
	*out = fs;
	return 0;
nomem:
	err_set(e, "out of memory");
	free_parts(fs);
	return -ENOMEM;
}

void fs_destroy(struct fs *fs)
{
	if (!fs)
		return;
	fs_close_all_files(fs);
	pthread_mutex_destroy(&fs->files_lock);
	pthread_mutex_destroy(&fs->root_attrs_lock);
	fs_stop_expirer(fs);
	fs_prefetch_stop(fs);
	free_parts(fs);
}

void fs_set_session(struct fs *fs, struct fuse_session *se)
{
	fs->se = se;
}

void fs_set_cache_timeout(struct fs *fs, double seconds)
{
	fs->timeout_s = seconds;
}

void fs_set_watched(struct fs *fs, bool watched)
{
	listing_drop_all(fs->listings); /* before fs_seq() moves: see fs_notify_change */
	inode_mark_all_stale(fs->inodes);
	atomic_store(&fs->watched, watched);
}

void fs_mark_stale(struct fs *fs, uint64_t ino)
{
	inode_mark_stale(fs->inodes, ino);
}

uint64_t fs_seq(struct fs *fs)
{
	return inode_stale_seq(fs->inodes);
}

/* A file with several names: a change through one name (or a change the watch reports for it)
 * does not reach the kernel's or our cache of the others, so its attributes are not cached. */
static bool hard_linked(const struct sftp_attrs *a)
{
	return (a->flags & SFTP_ATTR_NLINK) && a->nlink > 1 &&
	       !((a->flags & SFTP_ATTR_PERM) && S_ISDIR(a->perm));
}

double fs_attr_timeout(struct fs *fs, const struct sftp_attrs *a)
{
	return hard_linked(a) ? 0 : fs->timeout_s;
}

void fs_remember_attrs(struct fs *fs, fuse_ino_t ino, const struct sftp_attrs *a, uint64_t seq)
{
	if (seq == FS_SEQ_NONE || !atomic_load(&fs->watched) || hard_linked(a))
		return;
	inode_set_attrs(fs->inodes, ino, a, now_ms() + (int64_t)(fs->timeout_s * 1000), seq);
}

bool fs_fresh_attrs(struct fs *fs, fuse_ino_t ino, struct sftp_attrs *a)
{
	return atomic_load(&fs->watched) && inode_fresh_attrs(fs->inodes, ino, now_ms(), a) &&
	       !fs_inode_is_written(fs, ino);
}

static void expire_negative(void *ctx, uint64_t parent, const char *name)
{
	fs_expire_entry(ctx, parent, name, false);
}

bool fs_keep_negative(struct fs *fs, fuse_ino_t parent, const char *name, uint64_t seq,
		      struct fuse_entry_param *e)
{
	if (!atomic_load(&fs->watched) || !fs->se || !negative_add(fs->negatives, parent, name))
		return false;
	/* Recorded before the check: a barrier or report after it expires this name too. */
	if (fs_seq(fs) != seq)
		return false;
	memset(e, 0, sizeof(*e)); /* node id 0: "does not exist", kept for entry_timeout */
	e->entry_timeout = fs->timeout_s;
	return true;
}

static void forget_all(struct fs *fs)
{
	listing_drop_all(fs->listings); /* before fs_seq() moves: see fs_notify_change */
	inode_mark_all_stale(fs->inodes);
	fs_data_changed_all(fs); /* no read-ahead asked for before is served (ops_read.c) */
}

void fs_expire_kernel_all(struct fs *fs)
{
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
		fs_forget_kernel_inode(fs, v[i].ino);
		if (v[i].parent && v[i].name)
			fs_expire_entry(fs, v[i].parent, v[i].name, S_ISDIR(v[i].type));
	}
	inode_cached_free(v, n);
	negative_take_all(fs->negatives, expire_negative, fs);
}

void fs_barrier(void *arg)
{
	struct fs *fs = arg;
	forget_all(fs);
	fs_expire_kernel_all(fs);
}

void fs_barrier_reconnected(struct fs *fs)
{
	forget_all(fs);
	fs_expirer_kick(fs);
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

static const char *const op_names[FS_OP_COUNT] = {
    "lookup", "getattr", "setattr", "readlink", "mknod",   "mkdir",   "unlink",
    "rmdir",  "symlink", "rename",  "link",	"open",	   "create",  "read",
    "write",  "flush",	 "release", "fsync",	"opendir", "readdir", "statfs",
};

void fs_count_op(struct fs *fs, enum fs_op_kind op, uint64_t round_trips)
{
	atomic_fetch_add(&fs->op_count[op], 1);
	atomic_fetch_add(&fs->op_round_trips[op], round_trips);
}

static void status_ops(struct fs *fs, struct buf *text)
{
	buf_printf(text, "round trips per operation (op: count, round trips, per op):\n");
	for (int i = 0; i < FS_OP_COUNT; i++) {
		uint64_t n = atomic_load(&fs->op_count[i]),
			 rt = atomic_load(&fs->op_round_trips[i]);
		if (n)
			buf_printf(text, "  %s: %" PRIu64 ", %" PRIu64 ", %.2f\n", op_names[i], n,
				   rt, (double)rt / (double)n);
	}
}

/* Requests by type (SSH2_FXP_* from OPEN = 3 on; EXTENDED = 200 lands in the last slot). */
static void status_sftp_types(const struct sftp_stats *st, struct buf *text)
{
	static const char *const names[] = {"open",   "close",	  "read",     "write",	  "lstat",
					    "fstat",  "setstat",  "fsetstat", "opendir",  "readdir",
					    "remove", "mkdir",	  "rmdir",    "realpath", "stat",
					    "rename", "readlink", "symlink"};
	buf_printf(text, "sftp requests by type:");
	for (unsigned i = 0; i < 32; i++) {
		if (!st->per_op[i])
			continue;
		const char *n = i < sizeof(names) / sizeof(names[0]) ? names[i] : "extended";
		buf_printf(text, " %s %" PRIu64, n, st->per_op[i]);
	}
	buf_printf(text, "\n");
}

void fs_status(struct fs *fs, struct buf *text)
{
	buf_printf(text, "inodes: %zu\n", inode_table_count(fs->inodes));
	buf_printf(text, "open files: %u (directories: %u)\n", atomic_load(&fs->open_files),
		   atomic_load(&fs->open_dirs));
	buf_printf(text, "pending write bytes: %" PRIu64 "\n", fs_pending_bytes(fs));
	buf_printf(text, "missing names kept by the kernel: %zu (at most %d)\n",
		   negative_count(fs->negatives), NEGATIVE_MAX_ENTRIES);
	uint64_t dirs, names;
	listing_counts(fs->listings, &dirs, &names);
	buf_printf(text,
		   "complete listings: %" PRIu64 " directories, %" PRIu64 " names (at most %d)\n",
		   dirs, names, LISTING_MAX_NAMES);
	struct conn *c = conn_get(fs->conn, 0);
	if (c) {
		struct sftp_stats st;
		sftp_client_stats(c->sftp, &st);
		conn_put(fs->conn, c);
		buf_printf(text,
			   "sftp requests: %" PRIu64 ", round trips: %" PRIu64
			   ", in flight: %" PRIu64 ", timeouts: %" PRIu64 "\n",
			   st.requests, st.round_trips, st.in_flight, st.timeouts);
		buf_printf(text, "sftp bytes read: %" PRIu64 ", written: %" PRIu64 "\n",
			   st.bytes_read, st.bytes_written);
		status_sftp_types(&st, text);
		if (st.last_rtt_us >= 0)
			buf_printf(text, "sftp rtt: %.3f ms\n", st.last_rtt_us / 1000.0);
		else
			buf_printf(text, "sftp rtt: unknown\n");
	}
	struct prefetch_counts pf;
	if (fs_prefetch_counts(fs, &pf))
		buf_printf(text,
			   "prefetch: %" PRIu64 " requests, %" PRIu64 " files (%" PRIu64
			   " bytes) stored, %" PRIu64 " left out\n",
			   pf.requests, pf.files, pf.bytes, pf.left_out);
	else
		buf_printf(text, "prefetch: off\n");
	status_ops(fs, text);
}

uint64_t fs_pending_bytes(struct fs *fs)
{
	return atomic_load(&fs->pending_bytes);
}

int fs_call_begin(struct fs *fs, struct fs_call *call)
{
	call->fs = fs;
	call->retried = false;
	call->deadline = conn_op_deadline(fs->conn);
	call->c = conn_get(fs->conn, call->deadline);
	call->sftp = call->c ? call->c->sftp : NULL;
	return call->c ? 0 : -EIO;
}

bool fs_call_retry(struct fs_call *call, int *r)
{
	if (*r != -EIO || call->retried || !conn_failed(call->fs->conn, call->c))
		return false;
	conn_put(call->fs->conn, call->c);
	call->retried = true;
	call->c = conn_get(call->fs->conn, call->deadline);
	call->sftp = call->c ? call->c->sftp : NULL;
	return call->c != NULL;
}

void fs_call_end(struct fs_call *call)
{
	conn_put(call->fs->conn, call->c);
	call->c = NULL;
	call->sftp = NULL;
}

int fs_lstat(struct fs *fs, const char *path, struct sftp_attrs *a)
{
	struct fs_call call;
	int r = fs_call_begin(fs, &call);
	if (r < 0)
		return r;
	do
		r = sftp_lstat(call.sftp, path, a);
	while (fs_call_retry(&call, &r));
	fs_call_end(&call);
	return r;
}

unsigned fs_extensions(struct fs *fs)
{
	struct conn *c = conn_get(fs->conn, 0);
	if (!c)
		return 0;
	unsigned ext = sftp_client_extensions(c->sftp);
	conn_put(fs->conn, c);
	return ext;
}

int fs_readlink(struct fs *fs, const char *path, char **target)
{
	struct fs_call call;
	int r = fs_call_begin(fs, &call);
	if (r < 0)
		return r;
	do
		r = sftp_readlink(call.sftp, path, target);
	while (fs_call_retry(&call, &r));
	fs_call_end(&call);
	return r;
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
	/* The kernel does not check name lengths for FUSE; the sandbox's file system would
	 * refuse the name with an error SFTP cannot express precisely. */
	if (name && strlen(name) > NAME_MAX)
		return -ENAMETOOLONG;
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

ino_t fs_shown_ino(struct fs *fs, fuse_ino_t ino, const struct sftp_attrs *a)
{
	uint64_t n = 0;
	if (a->flags & SFTP_ATTR_DEVINO)
		n = inode_number(fs->inodes, a->dev, a->ino);
	return n ? (ino_t)n : (ino_t)ino;
}

static void fill_times(struct stat *st, const struct sftp_attrs *a)
{
	if (a->flags & SFTP_ATTR_NSTIME) {
		st->st_atim = a->atim;
		st->st_mtim = a->mtim;
		st->st_ctim = a->mtim;
	} else if (a->flags & SFTP_ATTR_ACMODTIME) {
		st->st_atime = a->atime;
		st->st_mtime = a->mtime;
		st->st_ctime = a->mtime;
	}
	if (a->flags & SFTP_ATTR_CTIME)
		st->st_ctim = a->ctim;
}

void fs_fill_stat(struct fs *fs, fuse_ino_t ino, const struct sftp_attrs *a, uint64_t mark,
		  struct stat *st)
{
	/* Every attribute reply to the kernel is filled here: what it holds is noted. */
	inode_note_shown(fs->inodes, ino, a, mark);
	memset(st, 0, sizeof(*st));
	st->st_ino = fs_shown_ino(fs, ino, a);
	st->st_mode = fs_attrs_type(a) | ((a->flags & SFTP_ATTR_PERM) ? (a->perm & 07777) : 0644);
	st->st_nlink = S_ISDIR(st->st_mode) ? 2 : 1;
	if (a->flags & SFTP_ATTR_NLINK)
		st->st_nlink = a->nlink > UINT32_MAX ? UINT32_MAX : (nlink_t)a->nlink;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	if (fs->owners_real && (a->flags & SFTP_ATTR_UIDGID)) {
		st->st_uid = a->uid;
		st->st_gid = a->gid;
	}
	if ((a->flags & SFTP_ATTR_RDEV) && (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)))
		st->st_rdev = (dev_t)a->rdev;
	st->st_size = (a->flags & SFTP_ATTR_SIZE) ? (off_t)a->size : 0;
	st->st_blksize = 4096;
	st->st_blocks = (st->st_size + 511) / 512;
	fill_times(st, a);
}

int fs_make_entry(struct fs *fs, fuse_ino_t parent, const char *name, const struct sftp_attrs *a,
		  uint64_t seq, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	negative_remove(fs->negatives, parent, name);
	e->ino = inode_enter(fs->inodes, parent, name, fs_attrs_type(a), 1, now_ms());
	if (!e->ino)
		return -ENOMEM;
	fs_fill_stat(fs, e->ino, a, INODE_MARK_ANY, &e->attr);
	fs_remember_attrs(fs, e->ino, a, seq);
	if (a->flags & SFTP_ATTR_SIZE)
		fs_note_size(fs, e->ino, a->size, false);
	e->attr_timeout = fs_attr_timeout(fs, a);
	e->entry_timeout = fs->timeout_s;
	return 0;
}
