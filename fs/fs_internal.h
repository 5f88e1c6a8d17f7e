/* fs_internal.h: state and helpers shared by the fs/ops_*.c files; not for other modules. */
#ifndef SANDMOUNT_FS_INTERNAL_H
#define SANDMOUNT_FS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "fs.h"
#include "inode.h"

/* Bounds of the per-file write staging buffer and of its in-flight window. */
#define FS_WRITE_CHUNK_MAX (256 * 1024)
#define FS_WRITE_CHUNK_MIN 4096
#define FS_WRITE_WINDOW	   16

struct fs_file;

struct fs {
	struct sftp_client *sftp;
	char *root;	 /* remote workspace, as given (absolute) */
	char *root_path; /* prefix for remote paths: root without trailing '/' ("" for "/") */
	char *alias;	 /* NULL if none */
	double timeout_s;
	uid_t uid;
	gid_t gid;
	size_t write_chunk;
	struct fuse_session *se;
	struct inode_table *inodes;

	pthread_mutex_t files_lock; /* guards the list of open files and their reference counts */
	struct fs_file *files;
	atomic_uint open_files;
	atomic_uint open_dirs;
	atomic_uint_fast64_t pending_bytes;
};

static inline struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Answer with a negative errno from sftp_* (or a positive one); a timeout is an I/O error. */
void fs_reply_errno(fuse_req_t req, int err);
/* The remote path of `name` in directory `ino` (name NULL: of `ino` itself), malloc'd. */
int fs_remote_path(struct fs *fs, fuse_ino_t ino, const char *name, char **out);
/* True for a name that never exists (the containment name in the root). */
bool fs_hidden_name(fuse_ino_t parent, const char *name);
void fs_fill_stat(struct fs *fs, fuse_ino_t ino, const struct sftp_attrs *a, struct stat *st);
/* Enter `name` in `parent` as one more kernel lookup and fill the entry to hand out. */
int fs_make_entry(struct fs *fs, fuse_ino_t parent, const char *name, const struct sftp_attrs *a,
		  struct fuse_entry_param *e);
/* lstat the new name and answer with its entry (mkdir, symlink, link, mknod). */
void fs_reply_new_entry(fuse_req_t req, fuse_ino_t parent, const char *name);
mode_t fs_attrs_type(const struct sftp_attrs *a);

/* Open files (ops_file.c). */
/* Wait until every write of every open file of `ino` is acknowledged. Returns the first error,
 * else 1 if there were writes to wait for, else 0. */
int fs_drain_inode(struct fs *fs, fuse_ino_t ino);
bool fs_inode_is_open(struct fs *fs, fuse_ino_t ino);
/* For an inode that lost its name: through any open file of it, set `set` (if not NULL), then
 * fstat into `a`. -ENOENT if it has no open file. */
int fs_open_inode_attrs(struct fs *fs, fuse_ino_t ino, const struct sftp_attrs *set,
			struct sftp_attrs *a);
/* Close and free whatever the kernel left open (at unmount). */
void fs_close_all_files(struct fs *fs);

/* The operations, by file. */
void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void fs_op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		   struct fuse_file_info *fi);
void fs_op_readlink(fuse_req_t req, fuse_ino_t ino);
void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		  const char *newname, unsigned int flags);
void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi);
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi);
void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);

void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi);
void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi);
void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);

#endif
