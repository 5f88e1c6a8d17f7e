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
	int r = -ENOTSUP;
	if (sftp_client_extensions(fs->sftp) & SFTP_EXT_STATVFS)
		r = sftp_statvfs(fs->sftp, fs->root, &st);
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

static const struct fuse_lowlevel_ops fs_ops = {
    .init = fs_op_init,
    .destroy = fs_op_destroy,
    .lookup = fs_op_lookup,
    .forget = fs_op_forget,
    .forget_multi = fs_op_forget_multi,
    .getattr = fs_op_getattr,
    .setattr = fs_op_setattr,
    .readlink = fs_op_readlink,
    .mknod = fs_op_mknod,
    .mkdir = fs_op_mkdir,
    .unlink = fs_op_unlink,
    .rmdir = fs_op_rmdir,
    .symlink = fs_op_symlink,
    .rename = fs_op_rename,
    .link = fs_op_link,
    .open = fs_op_open,
    .create = fs_op_create,
    .read = fs_op_read,
    .write = fs_op_write,
    .flush = fs_op_flush,
    .release = fs_op_release,
    .fsync = fs_op_fsync,
    .opendir = fs_op_opendir,
    .readdir = fs_op_readdir,
    .readdirplus = fs_op_readdirplus,
    .releasedir = fs_op_releasedir,
    .fsyncdir = fs_op_fsyncdir,
    .statfs = fs_op_statfs,
};

const struct fuse_lowlevel_ops *fs_lowlevel_ops(void)
{
	return &fs_ops;
}
