/* sftp_client.h: our SFTP v3 client (docs/design.md, decision 1) over any stream fd. Fully
 * pipelined: any number of threads issue requests at once, one reader thread matches replies by id.
 * Every request has a deadline (the client's op timeout). Uses the OpenSSH extensions posix-rename,
 * statvfs, fsync, hardlink and limits when the server offers them, and our agent's stat@sandmount
 * (full stat, nanosecond times) and mknod@sandmount (lib/proto/sftp_proto.h).
 *
 * All calls return 0 or a negative errno: SFTP status codes map to ENOENT, EACCES, EEXIST (where
 * the call implies it), ENOTSUP...; a lost connection is -EIO and marks the client dead; a
 * request past its deadline is -ETIMEDOUT. */
#ifndef SANDMOUNT_SFTP_CLIENT_H
#define SANDMOUNT_SFTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <time.h>

#include "mount_limits.h"
#include "util.h"

#define SFTP_ATTR_SIZE	    0x00000001
#define SFTP_ATTR_UIDGID    0x00000002
#define SFTP_ATTR_PERM	    0x00000004
#define SFTP_ATTR_ACMODTIME 0x00000008
/* From our agent's stat@sandmount (lib/proto/sftp_proto.h); never from plain sftp-server. */
#define SFTP_ATTR_DEVINO 0x00000100 /* dev, ino */
#define SFTP_ATTR_NLINK	 0x00000200
#define SFTP_ATTR_RDEV	 0x00000400
/* atim, mtim with nanoseconds. To set (only with SFTP_EXT_SM_STAT): tv_nsec may be UTIME_NOW
 * or UTIME_OMIT, and SFTP_ATTR_ACMODTIME need not be set. */
#define SFTP_ATTR_NSTIME 0x00000800
#define SFTP_ATTR_CTIME	 0x00001000

struct sftp_attrs {
	uint32_t flags; /* SFTP_ATTR_* present */
	uint64_t size;
	uint32_t uid, gid;
	uint32_t perm; /* includes S_IFMT type bits */
	uint32_t atime, mtime;
	uint64_t dev, ino, nlink, rdev;
	struct timespec atim, mtim, ctim;
};

/* open flags (SSH2_FXF_*) */
#define SFTP_OPEN_READ	 0x01
#define SFTP_OPEN_WRITE	 0x02
#define SFTP_OPEN_APPEND 0x04
#define SFTP_OPEN_CREAT	 0x08
#define SFTP_OPEN_TRUNC	 0x10
#define SFTP_OPEN_EXCL	 0x20

#define SFTP_HANDLE_MAX 256
struct sftp_handle {
	uint32_t len;
	uint8_t data[SFTP_HANDLE_MAX];
};

enum sftp_ext {
	SFTP_EXT_POSIX_RENAME = 1 << 0,
	SFTP_EXT_STATVFS = 1 << 1,
	SFTP_EXT_FSYNC = 1 << 2,
	SFTP_EXT_HARDLINK = 1 << 3,
	SFTP_EXT_LIMITS = 1 << 4,
	SFTP_EXT_SM_STAT = 1 << 5,	 /* stat@sandmount: full stat, times with nanoseconds */
	SFTP_EXT_SM_MKNOD = 1 << 6,	 /* mknod@sandmount */
	SFTP_EXT_SM_OPEN_READ = 1 << 7,	 /* open-read@sandmount */
	SFTP_EXT_SM_LIST = 1 << 8,	 /* list@sandmount */
	SFTP_EXT_SM_READ_FILES = 1 << 9, /* read-files@sandmount */
};

struct sftp_limits {
	uint64_t max_packet, max_read, max_write, max_open_handles; /* 0 = not stated */
};

struct sftp_stats {
	uint64_t requests;    /* sent */
	uint64_t round_trips; /* waits for a request sent after the last such wait began */
	uint64_t in_flight;
	uint64_t bytes_read, bytes_written;
	uint64_t timeouts;
	int64_t last_rtt_us;
	uint64_t per_op[32]; /* requests by SSH2_FXP_* type, index = type - 3 (OPEN=3..) capped */
};

struct sftp_client;
struct sftp_req; /* an asynchronous request */

/* Handshake on fd (INIT/VERSION, extensions, limits) and start the reader. Takes ownership of
 * fd. op_timeout_ms bounds every request. */
int sftp_client_open(int fd, int op_timeout_ms, struct sftp_client **out, struct err *e);
/* The same, with the bounds on what the server may send (NULL: mount_limits_default()): a packet
 * over max_packet, a reply to an id nobody asked for, or more than max_inflight requests left
 * unanswered end the connection; sftp_list_dir and sftp_readlink enforce the listing, name and
 * link target bounds. */
int sftp_client_open_limited(int fd, int op_timeout_ms, const struct mount_limits *lim,
			     struct sftp_client **out, struct err *e);
/* Fail all pending requests with -EIO, stop the reader, close the fd, free. */
void sftp_client_close(struct sftp_client *c);
bool sftp_client_dead(struct sftp_client *c);
unsigned sftp_client_extensions(struct sftp_client *c);
void sftp_client_limits(struct sftp_client *c, struct sftp_limits *l); /* effective values */
void sftp_client_stats(struct sftp_client *c, struct sftp_stats *st);
/* The round trips the calling thread has waited for so far, on every client. */
uint64_t sftp_thread_round_trips(void);

int sftp_stat(struct sftp_client *c, const char *path, struct sftp_attrs *a);
int sftp_lstat(struct sftp_client *c, const char *path, struct sftp_attrs *a);
int sftp_fstat(struct sftp_client *c, const struct sftp_handle *h, struct sftp_attrs *a);
int sftp_setstat(struct sftp_client *c, const char *path, const struct sftp_attrs *a);
int sftp_fsetstat(struct sftp_client *c, const struct sftp_handle *h, const struct sftp_attrs *a);
/* attrs may be NULL; only a->perm (with SFTP_ATTR_PERM) is sent for creation mode. */
int sftp_open(struct sftp_client *c, const char *path, uint32_t pflags, const struct sftp_attrs *a,
	      struct sftp_handle *h);
/* A path to LSTAT in the same round trip as a change (sftp_change, sftp_open_stat): sent right
 * behind it, so answered after it. ok: attrs hold the path's attributes after a change that
 * succeeded (never set when the change failed). */
#define SFTP_AFTER_MAX 2
struct sftp_after {
	const char *path;
	struct sftp_attrs attrs;
	bool ok;
};
/* Open, and STAT the path right after, in one round trip, with after[0..n) (n <= SFTP_AFTER_MAX)
 * LSTATed behind it. Returns the open's result; *have_st tells whether st holds the attributes
 * (a failed STAT does not fail the open). */
int sftp_open_stat(struct sftp_client *c, const char *path, uint32_t pflags,
		   const struct sftp_attrs *a, struct sftp_handle *h, struct sftp_attrs *st,
		   bool *have_st, struct sftp_after *after, size_t n);
int sftp_close(struct sftp_client *c, const struct sftp_handle *h);
/* Send CLOSE without waiting: the reply is dropped when it comes, a failure logged (for handles
 * that have no unacknowledged writes, whose close has no one left to report to). */
void sftp_close_async(struct sftp_client *c, const struct sftp_handle *h);
/* Reads up to len bytes (split into server-sized requests sent at once); *got < len only at EOF. */
int sftp_read(struct sftp_client *c, const struct sftp_handle *h, uint64_t off, void *p, size_t len,
	      size_t *got);
/* Writes all len bytes (split and pipelined), waits for every ack. */
int sftp_write(struct sftp_client *c, const struct sftp_handle *h, uint64_t off, const void *p,
	       size_t len);
/* Asynchronous write of at most the server's max write size: the data is copied, the request is
 * sent, and the caller later collects the status with sftp_req_wait (which frees the request). */
int sftp_write_async(struct sftp_client *c, const struct sftp_handle *h, uint64_t off,
		     const void *p, size_t len, struct sftp_req **out);
/* Asynchronous read of at most the server's max read size; sftp_req_wait_read copies the data. */
int sftp_read_async(struct sftp_client *c, const struct sftp_handle *h, uint64_t off, size_t len,
		    struct sftp_req **out);
int sftp_req_wait(struct sftp_req *r);
int sftp_req_wait_read(struct sftp_req *r, void *p, size_t len, size_t *got);

/* List a directory: calls cb for every entry except "." and "..". cb returns 0 to go on. With
 * list@sandmount the open and the first entries (all of a directory of up to ~4096) come in one
 * round trip; otherwise OPENDIR. Two READDIRs are kept in flight for the rest, and a handle left
 * open is closed without waiting. Names with a '/' or longer
 * than max_name are skipped (and logged); a listing past max_dir_entries or max_listing_bytes is
 * -EIO (logged), one that lasts longer than the op timeout in all -ETIMEDOUT. */
typedef int (*sftp_dir_cb)(void *ctx, const char *name, const struct sftp_attrs *a);
int sftp_list_dir(struct sftp_client *c, const char *path, sftp_dir_cb cb, void *ctx);

/* The changes of names below, with after[0..n) (n <= SFTP_AFTER_MAX) LSTATed in the same round
 * trip. a and b: mkdir, rmdir, remove: a path (mode: mkdir's); symlink: a target, b the link;
 * rename and hardlink: a from, b to. Errors as the single calls below. */
enum sftp_change_op {
	SFTP_MKDIR,
	SFTP_RMDIR,
	SFTP_REMOVE,
	SFTP_SYMLINK,
	SFTP_RENAME,
	SFTP_RENAME_OVERWRITE,
	SFTP_HARDLINK
};
int sftp_change(struct sftp_client *c, enum sftp_change_op op, const char *a, const char *b,
		uint32_t mode, struct sftp_after *after, size_t n);
int sftp_mkdir(struct sftp_client *c, const char *path, uint32_t mode);
int sftp_rmdir(struct sftp_client *c, const char *path);
int sftp_remove(struct sftp_client *c, const char *path);
/* overwrite: replace an existing target atomically (posix-rename@openssh.com; -ENOTSUP without
 * it). Without overwrite: SSH2_FXP_RENAME, which fails with -EEXIST if the target exists. */
int sftp_rename(struct sftp_client *c, const char *from, const char *to, bool overwrite);
/* Creates linkpath pointing to target (handles OpenSSH's swapped argument order). */
int sftp_symlink(struct sftp_client *c, const char *target, const char *linkpath);
int sftp_readlink(struct sftp_client *c, const char *path, char **target);
int sftp_realpath(struct sftp_client *c, const char *path, char **out);
int sftp_hardlink(struct sftp_client *c, const char *from, const char *to);
int sftp_statvfs(struct sftp_client *c, const char *path, struct statvfs *st);
int sftp_fsync(struct sftp_client *c, const struct sftp_handle *h);
/* Make a FIFO, socket or device (mode holds the S_IFMT type): -ENOSYS without mknod@sandmount. */
int sftp_mknod(struct sftp_client *c, const char *path, uint32_t mode, uint64_t rdev);
/* Open a regular file for reading, with its attributes and its first bytes (up to `want`, into
 * data; *got < want: the end of the file) in one round trip: -ENOSYS without
 * open-read@sandmount. */
int sftp_open_read(struct sftp_client *c, const char *path, uint32_t want, struct sftp_handle *h,
		   struct sftp_attrs *st, uint8_t *data, size_t *got);
/* The small regular files of directory `dir` with their attributes, in one round trip
 * (read-files@sandmount; -ENOSYS without it): cb gets each file the server sent (its whole
 * data, at most max_file bytes; cb returns 0 to go on). Starts after the entry named `after`
 * ("" from the start). 0 when the directory was read to its end, 1 when the server stopped
 * early: *resume (a name, sizeof SFTP_NAME_BUF) is where the next call starts. */
#define SFTP_NAME_BUF 256
typedef int (*sftp_file_cb)(void *ctx, const char *name, const struct sftp_attrs *a,
			    const uint8_t *data, size_t len);
int sftp_read_files(struct sftp_client *c, const char *dir, uint32_t max_file, const char *after,
		    sftp_file_cb cb, void *ctx, char *resume);

/* Pure helpers (unit-tested): attrs codec and status mapping. */
struct buf;
void sftp_attrs_encode(struct buf *b, const struct sftp_attrs *a);
int sftp_attrs_decode(struct buf *b, struct sftp_attrs *a);
int sftp_status_to_errno(uint32_t status);

#endif
