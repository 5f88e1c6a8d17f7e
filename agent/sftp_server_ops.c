/* sftp_server_ops.c: one handler per SFTP v3 request and per OpenSSH extension, each doing what
 * OpenSSH's sftp-server does for it, so clients written against OpenSSH work unchanged; and our
 * own extensions (stat@sandmount, mknod@sandmount, open-read@sandmount: lib/proto/sftp_proto.h). A
 * handler parses its request, makes the system call and queues one reply (see sftp_server.h).
 * The directory requests (OPENDIR, READDIR, list@sandmount) are in sftp_server_dir.c. */
#include "sftp_server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* The errno of a system call's result: 0 on success. */
static int err_of(int r)
{
	return r < 0 ? errno : 0;
}

static int get_two_paths(struct buf *req, char **first, char **second)
{
	if (buf_get_cstring(req, first) < 0)
		return -1;
	if (buf_get_cstring(req, second) < 0) {
		free(*first);
		return -1;
	}
	return 0;
}

/* Requests that are one call on one path. */
static int path_call(uint32_t id, struct buf *req, int (*call)(const char *))
{
	char *path;
	if (buf_get_cstring(req, &path) < 0)
		return -1;
	int err = err_of(call(path));
	free(path);
	return reply_errno(id, err);
}

/* Requests that are one call on two paths, in the order they arrive. */
static int two_path_call(uint32_t id, struct buf *req, int (*call)(const char *, const char *))
{
	char *first, *second;
	if (get_two_paths(req, &first, &second) < 0)
		return -1;
	int err = err_of(call(first, second));
	free(first);
	free(second);
	return reply_errno(id, err);
}

static int stat_call(uint32_t id, struct buf *req, int (*call)(const char *, struct stat *))
{
	char *path;
	struct stat st;
	if (buf_get_cstring(req, &path) < 0)
		return -1;
	int err = err_of(call(path, &st));
	free(path);
	return err ? reply_errno(id, err) : reply_attrs(id, &st);
}

/* ---- attribute changes: by descriptor, or by path following links or not ---- */

struct target {
	int fd; /* used when path is NULL */
	const char *path;
	int at_flags; /* 0 or AT_SYMLINK_NOFOLLOW */
};

static int set_size(const struct target *t, uint64_t size)
{
	if (size > INT64_MAX) {
		errno = EINVAL;
		return -1;
	}
	return t->path ? truncate(t->path, (off_t)size) : ftruncate(t->fd, (off_t)size);
}

static int set_mode(const struct target *t, mode_t mode)
{
	return t->path ? fchmodat(AT_FDCWD, t->path, mode, t->at_flags) : fchmod(t->fd, mode);
}

static int set_times(const struct target *t, const struct timespec ts[2])
{
	return t->path ? utimensat(AT_FDCWD, t->path, ts, t->at_flags) : futimens(t->fd, ts);
}

/* The times a request sets: stat@sandmount's (nanoseconds) win over v3's seconds. */
static bool request_times(const struct sftp_attrs *a, struct timespec ts[2])
{
	if (a->sm_valid & SM_STAT_TIMES) {
		ts[0] = a->times[0];
		ts[1] = a->times[1];
		return true;
	}
	ts[0] = (struct timespec){.tv_sec = a->atime};
	ts[1] = (struct timespec){.tv_sec = a->mtime};
	return a->flags & SSH2_FILEXFER_ATTR_ACMODTIME;
}

static int set_owner(const struct target *t, uid_t uid, gid_t gid)
{
	return t->path ? fchownat(AT_FDCWD, t->path, uid, gid, t->at_flags)
		       : fchown(t->fd, uid, gid);
}

/* In OpenSSH's order: size, permissions, times, owner. Stops at the first failure. */
static int apply_attrs(const struct target *t, const struct sftp_attrs *a)
{
	if ((a->flags & SSH2_FILEXFER_ATTR_SIZE) && set_size(t, a->size) < 0)
		return -1;
	if ((a->flags & SSH2_FILEXFER_ATTR_PERMISSIONS) && set_mode(t, a->perm & 07777) < 0)
		return -1;
	struct timespec ts[2];
	if (request_times(a, ts) && set_times(t, ts) < 0)
		return -1;
	if ((a->flags & SSH2_FILEXFER_ATTR_UIDGID) && set_owner(t, a->uid, a->gid) < 0)
		return -1;
	return 0;
}

static int path_setstat(uint32_t id, struct buf *req, int at_flags)
{
	char *path;
	struct sftp_attrs a;
	if (buf_get_cstring(req, &path) < 0)
		return -1;
	if (sftp_attrs_get(req, &a) < 0) {
		free(path);
		return -1;
	}
	struct target t = {.fd = -1, .path = path, .at_flags = at_flags};
	int err;
	if (at_flags && (a.flags & SSH2_FILEXFER_ATTR_SIZE))
		err = EINVAL; /* a size makes no sense for a link itself */
	else
		err = err_of(apply_attrs(&t, &a));
	free(path);
	return reply_errno(id, err);
}

/* ---- files ---- */

static int open_flags(uint32_t pflags)
{
	int flags;
	if ((pflags & SSH2_FXF_READ) && (pflags & SSH2_FXF_WRITE))
		flags = O_RDWR;
	else if (pflags & SSH2_FXF_WRITE)
		flags = O_WRONLY;
	else
		flags = O_RDONLY;
	if (pflags & SSH2_FXF_APPEND)
		flags |= O_APPEND;
	if (pflags & SSH2_FXF_CREAT)
		flags |= O_CREAT;
	if (pflags & SSH2_FXF_TRUNC)
		flags |= O_TRUNC;
	if (pflags & SSH2_FXF_EXCL)
		flags |= O_EXCL;
	return flags;
}

/* A request that starts with a path and a u32: -1 (nothing to free) when it does not parse. */
static int get_path_u32(struct buf *req, char **path, uint32_t *v)
{
	if (buf_get_cstring(req, path) < 0)
		return -1;
	if (buf_get_u32(req, v) < 0) {
		free(*path);
		return -1;
	}
	return 0;
}

static int process_open(uint32_t id, struct buf *req)
{
	char *path;
	uint32_t pflags;
	struct sftp_attrs a;
	if (get_path_u32(req, &path, &pflags) < 0)
		return -1;
	if (sftp_attrs_get(req, &a) < 0) {
		free(path);
		return -1;
	}
	int rc;
	struct handle *h = slot_for(id, path, &rc);
	if (!h)
		return rc;
	mode_t mode = (a.flags & SSH2_FILEXFER_ATTR_PERMISSIONS) ? a.perm & 07777 : 0666;
	int flags = open_flags(pflags);
	int fd = open(path, flags | O_CLOEXEC | O_NOCTTY, mode);
	int err = errno;
	free(path);
	if (fd < 0)
		return reply_errno(id, err);
	h->kind = HANDLE_FILE;
	h->fd = fd;
	h->append = flags & O_APPEND;
	return reply_handle(id, h);
}

static int process_close(uint32_t id, struct buf *req)
{
	struct handle *h;
	if (handle_get(req, &h) < 0)
		return -1;
	if (!h)
		return reply_bad_handle(id);
	return reply_errno(id, err_of(handle_close(h)));
}

/* The data goes straight from pread(2) into the reply queue. */
static int process_read(uint32_t id, struct buf *req)
{
	struct handle *h;
	uint64_t off;
	uint32_t len;
	if (handle_get(req, &h) < 0 || buf_get_u64(req, &off) < 0 || buf_get_u32(req, &len) < 0)
		return -1;
	if (!h || h->kind != HANDLE_FILE)
		return reply_bad_handle(id);
	if (off > INT64_MAX)
		return reply_errno(id, EINVAL);
	if (len > SFTP_MAX_READ)
		len = SFTP_MAX_READ;
	struct buf *out = reply_queue();
	size_t start = reply_begin(SSH2_FXP_DATA, id);
	size_t len_pos = out->len;
	uint8_t *p = buf_put_space(out, 4 + (size_t)len);
	if (!p)
		return 0; /* the server sees the queue's error */
	ssize_t n;
	do
		n = pread(h->fd, p + 4, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	int err = errno;
	if (n <= 0) {
		buf_truncate(out, start);
		return n == 0 ? reply_status(id, SSH2_FX_EOF, NULL) : reply_errno(id, err);
	}
	buf_truncate(out, len_pos + 4 + (size_t)n);
	buf_set_u32_at(out, len_pos, (uint32_t)n);
	reply_end(start);
	return 0;
}

/* The data is written from the input queue where it arrived. */
static int process_write(uint32_t id, struct buf *req)
{
	struct handle *h;
	uint64_t off;
	const uint8_t *data;
	uint32_t len;
	if (handle_get(req, &h) < 0 || buf_get_u64(req, &off) < 0 ||
	    buf_get_string(req, &data, &len) < 0)
		return -1;
	if (!h || h->kind != HANDLE_FILE)
		return reply_bad_handle(id);
	if (off > INT64_MAX)
		return reply_errno(id, EINVAL);
	while (len > 0) {
		ssize_t n =
		    h->append ? write(h->fd, data, len) : pwrite(h->fd, data, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return reply_errno(id, n == 0 ? EIO : errno);
		data += n;
		len -= (uint32_t)n;
		off += (uint64_t)n;
	}
	return reply_status(id, SSH2_FX_OK, NULL);
}

static int process_stat(uint32_t id, struct buf *req)
{
	return stat_call(id, req, stat);
}

static int process_lstat(uint32_t id, struct buf *req)
{
	return stat_call(id, req, lstat);
}

static int process_fstat(uint32_t id, struct buf *req)
{
	struct handle *h;
	struct stat st;
	if (handle_get(req, &h) < 0)
		return -1;
	if (!h)
		return reply_bad_handle(id);
	if (fstat(handle_fd(h), &st) < 0)
		return reply_errno(id, errno);
	return reply_attrs(id, &st);
}

static int process_setstat(uint32_t id, struct buf *req)
{
	return path_setstat(id, req, 0);
}

static int process_fsetstat(uint32_t id, struct buf *req)
{
	struct handle *h;
	struct sftp_attrs a;
	if (handle_get(req, &h) < 0 || sftp_attrs_get(req, &a) < 0)
		return -1;
	if (!h)
		return reply_bad_handle(id);
	struct target t = {.fd = handle_fd(h), .path = NULL, .at_flags = 0};
	return reply_errno(id, err_of(apply_attrs(&t, &a)));
}

static int process_remove(uint32_t id, struct buf *req)
{
	return path_call(id, req, unlink);
}

static int process_mkdir(uint32_t id, struct buf *req)
{
	char *path;
	struct sftp_attrs a;
	if (buf_get_cstring(req, &path) < 0)
		return -1;
	if (sftp_attrs_get(req, &a) < 0) {
		free(path);
		return -1;
	}
	mode_t mode = (a.flags & SSH2_FILEXFER_ATTR_PERMISSIONS) ? a.perm & 07777 : 0777;
	int err = err_of(mkdir(path, mode));
	free(path);
	return reply_errno(id, err);
}

static int process_rmdir(uint32_t id, struct buf *req)
{
	return path_call(id, req, rmdir);
}

/* ---- names ---- */

/* realpath(3), except that the final component need not exist (as OpenSSH's sftp_realpath):
 * clients ask for the absolute name of a file they are about to create. */
static char *canonical_path(const char *path)
{
	char *resolved = realpath(*path ? path : ".", NULL);
	if (resolved || errno != ENOENT)
		return resolved;
	char *dir = strdup(path);
	if (!dir)
		return NULL;
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		dir[--n] = '\0';
	char *slash = strrchr(dir, '/');
	const char *base = slash ? slash + 1 : dir;
	const char *parent_path = ".";
	if (slash == dir)
		parent_path = "/";
	else if (slash)
		parent_path = dir;
	if (slash)
		*slash = '\0';
	char *parent = realpath(parent_path, NULL);
	char *joined = NULL;
	if (parent) {
		size_t plen = strlen(parent);
		const char *sep = parent[plen - 1] == '/' ? "" : "/";
		if (asprintf(&joined, "%s%s%s", parent, sep, base) < 0)
			joined = NULL;
	}
	int err = errno;
	free(parent);
	free(dir);
	errno = err;
	return joined;
}

static int process_realpath(uint32_t id, struct buf *req)
{
	char *path;
	if (buf_get_cstring(req, &path) < 0)
		return -1;
	char *resolved = canonical_path(path);
	int err = errno;
	free(path);
	if (!resolved)
		return reply_errno(id, err);
	reply_name(id, resolved);
	free(resolved);
	return 0;
}

/* OpenSSH's rename: never replaces an existing target. A regular file is linked to the new name
 * and then unlinked (race-free); where links are not supported, and for other file types, the
 * target is checked first and then renamed. */
static int rename_no_replace(const char *from, const char *to)
{
	struct stat st;
	if (lstat(from, &st) < 0)
		return -1;
	if (S_ISREG(st.st_mode)) {
		if (link(from, to) == 0) {
			if (unlink(from) == 0)
				return 0;
			int err = errno;
			unlink(to);
			errno = err;
			return -1;
		}
		if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EXDEV && errno != EPERM)
			return -1;
	}
	if (stat(to, &st) == 0) {
		errno = EEXIST;
		return -1;
	}
	return rename(from, to);
}

static int process_rename(uint32_t id, struct buf *req)
{
	return two_path_call(id, req, rename_no_replace);
}

static int process_readlink(uint32_t id, struct buf *req)
{
	char *path, target[PATH_MAX];
	if (buf_get_cstring(req, &path) < 0)
		return -1;
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	int err = errno;
	free(path);
	if (n < 0)
		return reply_errno(id, err);
	target[n] = '\0';
	return reply_name(id, target);
}

/* OpenSSH's argument order, which clients follow: the link's target first, then its path. */
static int process_symlink(uint32_t id, struct buf *req)
{
	return two_path_call(id, req, symlink);
}

/* ---- extensions ---- */

static int process_posix_rename(uint32_t id, struct buf *req)
{
	return two_path_call(id, req, rename);
}

static int process_hardlink(uint32_t id, struct buf *req)
{
	return two_path_call(id, req, link);
}

static int reply_statvfs(uint32_t id, const struct statvfs *st)
{
	uint64_t flag = ((st->f_flag & ST_RDONLY) ? SSH2_FXE_STATVFS_ST_RDONLY : 0) |
			((st->f_flag & ST_NOSUID) ? SSH2_FXE_STATVFS_ST_NOSUID : 0);
	struct buf *out = reply_queue();
	size_t start = reply_begin(SSH2_FXP_EXTENDED_REPLY, id);
	buf_put_u64(out, st->f_bsize);
	buf_put_u64(out, st->f_frsize);
	buf_put_u64(out, st->f_blocks);
	buf_put_u64(out, st->f_bfree);
	buf_put_u64(out, st->f_bavail);
	buf_put_u64(out, st->f_files);
	buf_put_u64(out, st->f_ffree);
	buf_put_u64(out, st->f_favail);
	buf_put_u64(out, st->f_fsid);
	buf_put_u64(out, flag);
	buf_put_u64(out, st->f_namemax);
	reply_end(start);
	return 0;
}

static int process_statvfs(uint32_t id, struct buf *req)
{
	char *path;
	struct statvfs st;
	if (buf_get_cstring(req, &path) < 0)
		return -1;
	int err = err_of(statvfs(path, &st));
	free(path);
	return err ? reply_errno(id, err) : reply_statvfs(id, &st);
}

static int process_fstatvfs(uint32_t id, struct buf *req)
{
	struct handle *h;
	struct statvfs st;
	if (handle_get(req, &h) < 0)
		return -1;
	if (!h)
		return reply_bad_handle(id);
	if (fstatvfs(handle_fd(h), &st) < 0)
		return reply_errno(id, errno);
	return reply_statvfs(id, &st);
}

static int process_fsync(uint32_t id, struct buf *req)
{
	struct handle *h;
	if (handle_get(req, &h) < 0)
		return -1;
	if (!h)
		return reply_bad_handle(id);
	return reply_errno(id, err_of(fsync(handle_fd(h))));
}

static int process_limits(uint32_t id, struct buf *req)
{
	(void)req;
	struct buf *out = reply_queue();
	size_t start = reply_begin(SSH2_FXP_EXTENDED_REPLY, id);
	buf_put_u64(out, SFTP_MAX_PACKET);
	buf_put_u64(out, SFTP_MAX_READ);
	buf_put_u64(out, SFTP_MAX_WRITE);
	buf_put_u64(out, SFTP_MAX_HANDLES);
	reply_end(start);
	return 0;
}

static int process_lsetstat(uint32_t id, struct buf *req)
{
	return path_setstat(id, req, AT_SYMLINK_NOFOLLOW);
}

/* stat@sandmount needs no request of its own: advertised, its pair is in every ATTRS. */
static int process_sm_stat(uint32_t id, struct buf *req)
{
	(void)req;
	return reply_status(id, SSH2_FX_OK, NULL);
}

static int process_sm_mknod(uint32_t id, struct buf *req)
{
	char *path;
	uint32_t mode;
	uint64_t rdev;
	if (get_path_u32(req, &path, &mode) < 0)
		return -1;
	if (buf_get_u64(req, &rdev) < 0) {
		free(path);
		return -1;
	}
	int err = err_of(mknod(path, (mode_t)mode, (dev_t)rdev));
	free(path);
	return reply_errno(id, err);
}

/* open-read@sandmount: open for reading, fstat and read the first `len` bytes, in one reply. */
static int process_sm_open_read(uint32_t id, struct buf *req)
{
	char *path;
	uint32_t len;
	struct stat st;
	if (get_path_u32(req, &path, &len) < 0)
		return -1;
	int rc;
	struct handle *h = slot_for(id, path, &rc);
	if (!h)
		return rc;
	/* O_NONBLOCK: a FIFO must not hold the server; it is refused below like any non-file. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	int err = errno;
	free(path);
	if (fd < 0)
		return reply_errno(id, err);
	if (fstat(fd, &st) < 0)
		err = errno;
	else if (!S_ISREG(st.st_mode))
		err = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
	else
		err = 0;
	if (err) {
		close(fd);
		return reply_errno(id, err);
	}
	if (len > SFTP_MAX_READ)
		len = SFTP_MAX_READ;
	struct buf *out = reply_queue();
	size_t start = reply_begin(SSH2_FXP_EXTENDED_REPLY, id);
	h->kind = HANDLE_FILE;
	h->fd = fd;
	h->append = false;
	put_handle(out, h);
	sftp_attrs_put_stat(out, &st);
	size_t len_pos = out->len;
	uint8_t *p = buf_put_space(out, 4 + (size_t)len);
	if (!p)
		return 0; /* the server sees the queue's error */
	ssize_t n;
	do
		n = pread(fd, p + 4, len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		err = errno;
		buf_truncate(out, start);
		handle_close(h);
		return reply_errno(id, err);
	}
	buf_truncate(out, len_pos + 4 + (size_t)n);
	buf_set_u32_at(out, len_pos, (uint32_t)n);
	reply_end(start);
	return 0;
}

const sftp_handler sftp_handlers[SSH2_FXP_SYMLINK + 1] = {
    [SSH2_FXP_OPEN] = process_open,	    [SSH2_FXP_CLOSE] = process_close,
    [SSH2_FXP_READ] = process_read,	    [SSH2_FXP_WRITE] = process_write,
    [SSH2_FXP_LSTAT] = process_lstat,	    [SSH2_FXP_FSTAT] = process_fstat,
    [SSH2_FXP_SETSTAT] = process_setstat,   [SSH2_FXP_FSETSTAT] = process_fsetstat,
    [SSH2_FXP_OPENDIR] = process_opendir,   [SSH2_FXP_READDIR] = process_readdir,
    [SSH2_FXP_REMOVE] = process_remove,	    [SSH2_FXP_MKDIR] = process_mkdir,
    [SSH2_FXP_RMDIR] = process_rmdir,	    [SSH2_FXP_REALPATH] = process_realpath,
    [SSH2_FXP_STAT] = process_stat,	    [SSH2_FXP_RENAME] = process_rename,
    [SSH2_FXP_READLINK] = process_readlink, [SSH2_FXP_SYMLINK] = process_symlink,
};

const struct sftp_extension sftp_extensions[] = {
    {"posix-rename@openssh.com", "1", process_posix_rename},
    {"statvfs@openssh.com", "2", process_statvfs},
    {"fstatvfs@openssh.com", "2", process_fstatvfs},
    {"hardlink@openssh.com", "1", process_hardlink},
    {"fsync@openssh.com", "1", process_fsync},
    {"limits@openssh.com", "1", process_limits},
    {"lsetstat@openssh.com", "1", process_lsetstat},
    {SM_EXT_STAT, "1", process_sm_stat},
    {SM_EXT_MKNOD, "1", process_sm_mknod},
    {SM_EXT_OPEN_READ, "1", process_sm_open_read},
    {SM_EXT_LIST, "1", process_sm_list},
    {SM_EXT_READ_FILES, "1", process_sm_read_files},
    {NULL, NULL, NULL},
};
