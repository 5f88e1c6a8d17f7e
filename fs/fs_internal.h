/* fs_internal.h: state and helpers shared by the fs/ops_*.c files; not for other modules. */
#ifndef SANDMOUNT_FS_INTERNAL_H
#define SANDMOUNT_FS_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "conn.h"
#include "fs.h"
#include "inode.h"
#include "listing.h"

/* Bounds of the per-file write staging buffer and of its in-flight window. */
#define FS_WRITE_CHUNK_MAX (256 * 1024)
#define FS_WRITE_CHUNK_MIN 4096
#define FS_WRITE_WINDOW	   16
/* Sequential read-ahead: at most this many bytes requested ahead of the reader. */
#define FS_READAHEAD_BYTES (4 * 1024 * 1024)
#define FS_READAHEAD_MAX   32
/* Without change reports, read-ahead older than this is not served (ops_read.c). */
#define FS_READAHEAD_UNWATCHED_MS 300
/* A read-only open through our agent brings the file's first bytes (its "head", ops_read.c), at
 * most this many; past FS_HEAD_TOTAL_MAX held by open files, opens bring none. */
#define FS_HEAD_BYTES	  (64 * 1024)
#define FS_HEAD_TOTAL_MAX (32 * 1024 * 1024)
/* Data epochs (ops_read.c): one counter per slot, an inode counts in slot ino % FS_EPOCH_SLOTS. */
#define FS_EPOCH_SLOTS 64

/* The first bytes of a file, read at its open (ops_read.c). */
struct fs_head {
	uint8_t *data; /* len bytes from offset 0, or NULL */
	size_t len;
	bool eof;	 /* the file ended there */
	uint64_t epoch;	 /* the inode's data epoch when they were asked for */
	int64_t sent_ms; /* and when */
};

/* A write sent (req set) or waiting to be sent again on a new connection (req NULL). The data is
 * kept until the sandbox acknowledged it. */
struct fs_write_req {
	struct sftp_req *req;
	uint64_t off;
	size_t len;
	uint8_t *data;
};

/* A read-ahead request: `len` bytes at `off` asked for on the file's connection, at `sent_ms`
 * while the inode's data epoch was `epoch`. */
struct fs_ra_req {
	struct sftp_req *req;
	uint64_t off;
	size_t len;
	uint64_t epoch;
	int64_t sent_ms;
};

/* An open file (fi->fh). Its handle belongs to `conn`; after a reconnect the file is opened
 * again by path on first use and unacknowledged writes are sent again. */
struct fs_file {
	pthread_mutex_t lock; /* guards the fields below up to `refs` */
	fuse_ino_t ino;
	uint32_t reopen_flags; /* SFTP open flags without CREAT, TRUNC and EXCL */
	struct conn *conn;
	struct sftp_handle handle;
	bool closed;
	bool lost;  /* the file could not be opened again after a reconnect */
	bool wrote; /* written through: its close waits for the reply, its attributes go stale */
	int err;    /* first failed write: reported by flush, fsync and close */
	uint8_t *stage;
	size_t stage_len;
	uint64_t stage_off;
	struct fs_write_req window[FS_WRITE_WINDOW]; /* oldest at `head` */
	unsigned head, count;
	struct fs_ra_req ra[FS_READAHEAD_MAX]; /* read-ahead, in file order */
	struct fs_head first;		       /* its first bytes, read at open */
	unsigned ra_count;
	uint64_t read_end; /* where the previous read ended: the next one is sequential there */

	uint64_t
	    known_size; /* __atomic: the file is at least this long (reads need not look past) */
	unsigned refs;	/* under fs->files_lock, as the list links */
	struct fs_file *next, **pprev;
};

static inline void fs_file_raise_size(struct fs_file *f, uint64_t size)
{
	uint64_t cur = __atomic_load_n(&f->known_size, __ATOMIC_RELAXED);
	while (cur < size && !__atomic_compare_exchange_n(&f->known_size, &cur, size, false,
							  __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/* FUSE operations counted in the status (round trips per operation). */
enum fs_op_kind {
	FS_OP_LOOKUP,
	FS_OP_GETATTR,
	FS_OP_SETATTR,
	FS_OP_READLINK,
	FS_OP_MKNOD,
	FS_OP_MKDIR,
	FS_OP_UNLINK,
	FS_OP_RMDIR,
	FS_OP_SYMLINK,
	FS_OP_RENAME,
	FS_OP_LINK,
	FS_OP_OPEN,
	FS_OP_CREATE,
	FS_OP_READ,
	FS_OP_WRITE,
	FS_OP_FLUSH,
	FS_OP_RELEASE,
	FS_OP_FSYNC,
	FS_OP_OPENDIR,
	FS_OP_READDIR,
	FS_OP_STATFS,
	FS_OP_COUNT
};

struct fs {
	struct conn_mgr *conn;
	char *root;	 /* remote workspace, as given (absolute) */
	char *root_path; /* prefix for remote paths: root without trailing '/' ("" for "/") */
	char *alias;	 /* NULL if none */
	_Atomic double timeout_s; /* attr/entry TTL: longer while the sandbox reports changes */
	atomic_bool watched;	  /* the sandbox reports its changes: fresh caches are trusted */
	uid_t uid;
	gid_t gid;
	bool owners_real; /* owners=real: the sandbox's uid/gid are shown and set */
	size_t write_chunk;
	struct fuse_session *se;
	struct inode_table *inodes;

	pthread_mutex_t files_lock; /* guards the list of open files and their reference counts */
	struct fs_file *files;
	atomic_uint open_files;
	atomic_uint open_dirs;
	atomic_uint_fast64_t pending_bytes;
	atomic_uint_fast64_t op_count[FS_OP_COUNT], op_round_trips[FS_OP_COUNT];
	pthread_mutex_t root_attrs_lock;
	struct sftp_attrs root_attrs; /* last seen; shown while reconnecting (unmount stats it) */
	bool have_root_attrs;
	/* Bumped whenever the data of an inode in the slot may have changed (ops_read.c). */
	atomic_uint_fast64_t data_epoch[FS_EPOCH_SLOTS];
	char mountpoint[PATH_MAX];	 /* local, absolute ("" until known): symlink targets */
	struct stat_helper *stat_helper; /* stats through the mount (kernel_size.c) */
	struct negative_set *negatives;	 /* "does not exist" the kernel keeps (negative.c) */
	struct expirer *expirer;	 /* barriers after a reconnect (expire.c) */
	struct listings *listings;	 /* directories whose every name is known (listing.c) */
	struct own_changes *own_changes; /* directories we are changing now (own_change.c) */
	struct prefetcher *prefetch;	 /* small files into the kernel's pages (prefetch.c) */
};

/* One operation's use of the connection: begin takes a reference to the live connection
 * (waiting for a reconnect up to op_timeout), retry tells whether an idempotent call that failed
 * because the connection died goes again on the new one (once), end drops the reference. */
struct fs_call {
	struct fs *fs;
	struct conn *c;
	struct sftp_client *sftp;
	int64_t deadline;
	bool retried;
};

int fs_call_begin(struct fs *fs, struct fs_call *call);
bool fs_call_retry(struct fs_call *call, int *r);
void fs_call_end(struct fs_call *call);
/* Idempotent calls with the retry built in. */
int fs_lstat(struct fs *fs, const char *path, struct sftp_attrs *a);
/* The connection's SFTP_EXT_* bits (0 while it is down). */
unsigned fs_extensions(struct fs *fs);
int fs_readlink(struct fs *fs, const char *path, char **target);
/* Adds one operation and the round trips its thread waited for to the --status counters. */
/* A change of ours in directory dir ended, its reply handled: a watch report that waited for it
 * is compared with the attributes the reply brought (notify.c). tracked: own_change_begin's. */
void fs_own_change_end(struct fs *fs, uint64_t dir, bool tracked);
void fs_count_op(struct fs *fs, enum fs_op_kind op, uint64_t round_trips);

static inline struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Answer with a negative errno from sftp_* (or a positive one); a timeout is an I/O error. */
void fs_reply_errno(fuse_req_t req, int err);
/* Make the kernel revalidate `name` in `parent` at its next use (expire.c); a directory keeps
 * its dentry when it is still there, so cwds inside it stay valid. */
void fs_expire_entry(struct fs *fs, uint64_t parent, const char *name, bool is_dir);
/* The kernel part of the barrier: expire every entry, attribute and page it may hold. */
void fs_expire_kernel_all(struct fs *fs);
/* Run fs_expire_kernel_all on the expirer thread (started at the first call). */
void fs_expirer_kick(struct fs *fs);
struct expirer *fs_expirer_new(void);
void fs_expirer_free(struct expirer *x);
/* The remote path of `name` in directory `ino` (name NULL: of `ino` itself), malloc'd. */
int fs_remote_path(struct fs *fs, fuse_ino_t ino, const char *name, char **out);
/* True for a name that never exists (the containment name in the root). */
bool fs_hidden_name(fuse_ino_t parent, const char *name);
/* `mark`: from fs_await_shown when the request began (INODE_MARK_ANY: note the reply anyway). */
void fs_fill_stat(struct fs *fs, fuse_ino_t ino, const struct sftp_attrs *a, uint64_t mark,
		  struct stat *st);
/* The number shown as st_ino (and d_ino) for node ino: the remote identity (inode_number) when
 * the agent gave it, else the node id. */
ino_t fs_shown_ino(struct fs *fs, fuse_ino_t ino, const struct sftp_attrs *a);
/* How long the kernel may cache these attributes (0 for a file with several hard links). */
double fs_attr_timeout(struct fs *fs, const struct sftp_attrs *a);
/* Freshness of what was handed out (inode.h), kept only while the sandbox reports changes.
 * fs_seq() is read before the remote call whose answer is remembered; FS_SEQ_NONE: the
 * attributes are not remembered (they came from the cache, or are not the server's). */
#define FS_SEQ_NONE UINT64_MAX
/* At most this many "does not exist" answers kept by the kernel at once (negative.c). */
#define NEGATIVE_MAX_ENTRIES 65536
uint64_t fs_seq(struct fs *fs);
void fs_remember_attrs(struct fs *fs, fuse_ino_t ino, const struct sftp_attrs *a, uint64_t seq);
/* The attributes of `ino` when they are fresh and trusted (watched, not written through an open
 * handle). */
bool fs_fresh_attrs(struct fs *fs, fuse_ino_t ino, struct sftp_attrs *a);
/* Enter `name` in `parent` as one more kernel lookup and fill the entry to hand out; `seq` as
 * for fs_remember_attrs. */
int fs_make_entry(struct fs *fs, fuse_ino_t parent, const char *name, const struct sftp_attrs *a,
		  uint64_t seq, struct fuse_entry_param *e);
/* Answer a lookup that found nothing with a negative entry the kernel keeps, when the watch
 * is trusted and nothing was reported since `seq`; false: answer with a plain ENOENT. */
bool fs_keep_negative(struct fs *fs, fuse_ino_t parent, const char *name, uint64_t seq,
		      struct fuse_entry_param *e);
/* Answer with the new name's entry (mkdir, symlink, link, mknod): from known (an LSTAT sent with
 * the change, at seq) when it is there, else lstat it now. */
void fs_reply_new_entry(fuse_req_t req, fuse_ino_t parent, const char *name,
			const struct sftp_after *known, uint64_t seq);
/* The attributes of directory dir LSTATed right after our own change in it (seq: fs_seq before
 * the change) stay fresh: the kernel's GETATTR after the change is answered here. */
void fs_remember_after(struct fs *fs, fuse_ino_t dir, const struct sftp_after *after, uint64_t seq);
mode_t fs_attrs_type(const struct sftp_attrs *a);

/* Open files (ops_file.c). */
/* Wait until every write of every open file of `ino` is acknowledged. Returns the first error,
 * else 1 if there were writes to wait for, else 0. */
int fs_drain_inode(struct fs *fs, fuse_ino_t ino);
bool fs_inode_is_open(struct fs *fs, fuse_ino_t ino);
/* Whether writes of an open handle of ino are staged or not yet acknowledged: a local writer is
 * busy with it. Sends nothing and waits for no reply (only for a handle's lock). */
bool fs_inode_writes_pending(struct fs *fs, fuse_ino_t ino);
/* Some open handle of `ino` has written through (its attributes move with every write). */
bool fs_inode_is_written(struct fs *fs, fuse_ino_t ino);
/* For an inode that lost its name: through any open file of it, set `set` (if not NULL), then
 * fstat into `a`. -ENOENT if it has no open file. */
int fs_open_inode_attrs(struct fs *fs, fuse_ino_t ino, const struct sftp_attrs *set,
			struct sftp_attrs *a);
/* Attributes of `ino` with this size were handed to the kernel (exact: the size was set, so it
 * may also shrink): open files of it read up to at least that size. */
void fs_note_size(struct fs *fs, fuse_ino_t ino, uint64_t size, bool exact);
/* With f->lock held: make sure f's handle belongs to the live connection (open it again by path
 * and send unacknowledged writes again after a reconnect), waiting until the deadline. */
int fs_file_revive(struct fs *fs, struct fs_file *f, int64_t deadline);
/* The kernel's size of `ino` (kernel_size.c): its attributes are invalidated and it is made to
 * fetch them now, so mappings and O_APPEND, which use the size the kernel holds without asking,
 * see the sandbox's size, smaller or larger. Waits for the kernel until the op deadline. */
void fs_show_size(struct fs *fs, fuse_ino_t ino);
/* The sandbox reported a change of `ino` (with its attributes then, or NULL): when some handle
 * has it open (a mapping or O_APPEND may use the kernel's size) and its size is not the one the
 * kernel holds, fs_show_size. */
void fs_show_changed_size(struct fs *fs, fuse_ino_t ino, const struct sftp_attrs *reported);
/* Only the kernel's attributes of `ino` are invalidated (its size and pages stay); or its
 * attributes and pages. Either way the size the kernel holds is unknown after it. */
void fs_forget_kernel_attrs(struct fs *fs, fuse_ino_t ino);
void fs_forget_kernel_inode(struct fs *fs, fuse_ino_t ino);
/* Wait (until the op deadline) while the kernel is being shown a new size of `ino`, unless the
 * request is the show's own stat; the mark to fill the request's reply with (fs_fill_stat). */
uint64_t fs_await_shown(struct fs *fs, fuse_req_t req, fuse_ino_t ino);
/* Whether the request is the stat of a show (its caller is the stat helper). */
bool fs_req_is_show(struct fs *fs, fuse_req_t req);
/* With f->lock held: forget the read-ahead and the head (ops_read.c). */
void fs_readahead_drop(struct fs_file *f);
/* The data epoch of `ino` now (ops_read.c): read before asking for data that may be cached. */
uint64_t fs_data_epoch(struct fs *fs, fuse_ino_t ino);
/* Open `path` on the sandbox; a read-only open of a regular file through our agent also brings
 * its head (ops_read.c), which is given to f with fs_file_take_head. */
int fs_open_remote(struct fs *fs, struct sftp_client *sftp, fuse_ino_t ino, const char *path,
		   uint32_t pflags, struct sftp_handle *h, struct sftp_attrs *a, bool *have_attrs,
		   struct fs_head *head);
/* Forget a head (not given to a file, or the file's). */
void fs_head_free(struct fs_head *head);
/* The data of `ino` may have changed (a truncate, a write through any handle, a change the
 * sandbox reported): no read-ahead of it asked for before is served (ops_read.c). */
void fs_data_changed(struct fs *fs, fuse_ino_t ino);
/* The same for every inode (exec barrier, reconnect). */
void fs_data_changed_all(struct fs *fs);
/* Open files of `ino` forget the size they knew (the sandbox changed the file). */
void fs_forget_size(struct fs *fs, fuse_ino_t ino);
/* Prefetch (prefetch.c). A read-only open of `ino` had to ask the sandbox: fetch the small
 * files of its directory in the background. */
struct prefetcher *prefetcher_new(void);
void prefetcher_free(struct prefetcher *p);
void fs_prefetch_kick(struct fs *fs, fuse_ino_t ino);
/* The same, now, on this thread, for a small file about to be opened (not registered yet):
 * whether something was stored (then the open may be lazy). */
bool fs_prefetch_now(struct fs *fs, fuse_ino_t ino);
/* Every open (once its file is registered) and every data change (once the epoch moved) waits
 * here for a store in progress. */
void fs_prefetch_barrier(struct fs *fs);
struct prefetch_counts {
	uint64_t requests, files, bytes, left_out;
};
/* false when prefetch is off. */
bool fs_prefetch_counts(struct fs *fs, struct prefetch_counts *n);
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
