/* ops_misc.c: statfs, init, destroy and the table of FUSE low-level operations. */
#include "fs_internal.h"

#include <errno.h>
#include <string.h>

static void fs_op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* O_TRUNC comes with open (one SFTP open with TRUNC) instead of a separate setattr. */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* Writes must reach us as they happen so close() can report their fate. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/* The kernel drops its pages when attributes show another size or mtime; notifications
	 * alone would miss changes made without a watch (ops_read.c has the rule). */
	if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA)
		conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
	conn->want &= ~FUSE_CAP_EXPLICIT_INVAL_DATA;
}

static void fs_op_destroy(void *userdata)
{
	fs_close_all_files(userdata);
}

static void fs_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct fs *fs = fs_of(req);
	struct statvfs st;
	memset(&st, 0, sizeof(st));
	struct fs_call call;
	int r = fs_call_begin(fs, &call);
	if (r == 0) {
		r = -ENOTSUP;
		do
			if (sftp_client_extensions(call.sftp) & SFTP_EXT_STATVFS)
				r = sftp_statvfs(call.sftp, fs->root, &st);
		while (fs_call_retry(&call, &r));
	}
	fs_call_end(&call);
	if (r == -ENOTSUP) {
		/* Nothing known: a large, empty file system, so tools do not refuse to write. */
		st.f_bsize = st.f_frsize = 4096;
		st.f_blocks = st.f_bfree = st.f_bavail = 1ull << 30;
		st.f_files = st.f_ffree = st.f_favail = 1ull << 24;
		st.f_namemax = 255;
		r = 0;
	}
	if (r < 0)
		fs_reply_errno(req, r);
	else
		fuse_reply_statfs(req, &st);
}

/* Each counted operation runs through a wrapper that adds the round trips it took to its
 * counters (the ones its own thread waited for: others' waits at the same time are theirs). */
#define COUNTED(name, kind, params, args)                                                          \
	static void counted_##name params                                                          \
	{                                                                                          \
		struct fs *fs = fs_of(req);                                                        \
		uint64_t before = sftp_thread_round_trips();                                       \
		fs_op_##name args;                                                                 \
		fs_count_op(fs, kind, sftp_thread_round_trips() - before);                         \
	}

COUNTED(lookup, FS_OP_LOOKUP, (fuse_req_t req, fuse_ino_t p, const char *n), (req, p, n))
COUNTED(getattr, FS_OP_GETATTR, (fuse_req_t req, fuse_ino_t i, struct fuse_file_info *fi),
	(req, i, fi))
COUNTED(setattr, FS_OP_SETATTR,
	(fuse_req_t req, fuse_ino_t i, struct stat *a, int s, struct fuse_file_info *fi),
	(req, i, a, s, fi))
COUNTED(readlink, FS_OP_READLINK, (fuse_req_t req, fuse_ino_t i), (req, i))
COUNTED(mknod, FS_OP_MKNOD, (fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, dev_t d),
	(req, p, n, m, d))
COUNTED(mkdir, FS_OP_MKDIR, (fuse_req_t req, fuse_ino_t p, const char *n, mode_t m), (req, p, n, m))
COUNTED(unlink, FS_OP_UNLINK, (fuse_req_t req, fuse_ino_t p, const char *n), (req, p, n))
COUNTED(rmdir, FS_OP_RMDIR, (fuse_req_t req, fuse_ino_t p, const char *n), (req, p, n))
COUNTED(symlink, FS_OP_SYMLINK, (fuse_req_t req, const char *l, fuse_ino_t p, const char *n),
	(req, l, p, n))
COUNTED(rename, FS_OP_RENAME,
	(fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np, const char *nn,
	 unsigned int f),
	(req, p, n, np, nn, f))
COUNTED(link, FS_OP_LINK, (fuse_req_t req, fuse_ino_t i, fuse_ino_t np, const char *nn),
	(req, i, np, nn))
COUNTED(open, FS_OP_OPEN, (fuse_req_t req, fuse_ino_t i, struct fuse_file_info *fi), (req, i, fi))
COUNTED(create, FS_OP_CREATE,
	(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, struct fuse_file_info *fi),
	(req, p, n, m, fi))
COUNTED(read, FS_OP_READ,
	(fuse_req_t req, fuse_ino_t i, size_t s, off_t o, struct fuse_file_info *fi),
	(req, i, s, o, fi))
COUNTED(write, FS_OP_WRITE,
	(fuse_req_t req, fuse_ino_t i, const char *b, size_t s, off_t o, struct fuse_file_info *fi),
	(req, i, b, s, o, fi))
COUNTED(flush, FS_OP_FLUSH, (fuse_req_t req, fuse_ino_t i, struct fuse_file_info *fi), (req, i, fi))
COUNTED(release, FS_OP_RELEASE, (fuse_req_t req, fuse_ino_t i, struct fuse_file_info *fi),
	(req, i, fi))
COUNTED(fsync, FS_OP_FSYNC, (fuse_req_t req, fuse_ino_t i, int d, struct fuse_file_info *fi),
	(req, i, d, fi))
COUNTED(opendir, FS_OP_OPENDIR, (fuse_req_t req, fuse_ino_t i, struct fuse_file_info *fi),
	(req, i, fi))
COUNTED(readdirplus, FS_OP_READDIR,
	(fuse_req_t req, fuse_ino_t i, size_t s, off_t o, struct fuse_file_info *fi),
	(req, i, s, o, fi))
COUNTED(statfs, FS_OP_STATFS, (fuse_req_t req, fuse_ino_t i), (req, i))

static const struct fuse_lowlevel_ops fs_ops = {
    .init = fs_op_init,
    .destroy = fs_op_destroy,
    .lookup = counted_lookup,
    .forget = fs_op_forget,
    .forget_multi = fs_op_forget_multi,
    .getattr = counted_getattr,
    .setattr = counted_setattr,
    .readlink = counted_readlink,
    .mknod = counted_mknod,
    .mkdir = counted_mkdir,
    .unlink = counted_unlink,
    .rmdir = counted_rmdir,
    .symlink = counted_symlink,
    .rename = counted_rename,
    .link = counted_link,
    .open = counted_open,
    .create = counted_create,
    .read = counted_read,
    .write = counted_write,
    .flush = counted_flush,
    .release = counted_release,
    .fsync = counted_fsync,
    .opendir = counted_opendir,
    .readdir = fs_op_readdir,
    .readdirplus = counted_readdirplus,
    .releasedir = fs_op_releasedir,
    .fsyncdir = fs_op_fsyncdir,
    .statfs = counted_statfs,
};

const struct fuse_lowlevel_ops *fs_lowlevel_ops(void)
{
	return &fs_ops;
}
