/* sftp_server.h: how the SFTP server's parts meet. sftp_server.c owns the packet loop, the
 * handle table, the reply helpers and the attribute codec; sftp_server_ops.c holds one handler
 * per request type and per extension, except the directory ones, in sftp_server_dir.c, and
 * read-files@sandmount, in sftp_server_batch.c. */
#ifndef SANDMOUNT_AGENT_SFTP_SERVER_H
#define SANDMOUNT_AGENT_SFTP_SERVER_H

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "buf.h"
#include "proto/sftp_proto.h"

/* This server's limits (stated by limits@openssh.com). A packet's length field may not exceed
 * SFTP_MAX_PACKET: the largest read or write plus room for its header. */
#define SFTP_MAX_READ	 (256 * 1024)
#define SFTP_MAX_WRITE	 (256 * 1024)
#define SFTP_MAX_PACKET	 (SFTP_MAX_READ + 1024)
#define SFTP_MAX_HANDLES 1024

/* Serve SFTP on stdin/stdout until EOF. Returns the process exit status: 0 after a clean EOF,
 * 1 after a malformed packet or an I/O error (reported on stderr). */
int sftp_server_run(void);

/* A request handler: parses the request body after its id from req and queues exactly one
 * reply. Returns 0, or -1 when the request is malformed (the server then exits). */
typedef int (*sftp_handler)(uint32_t id, struct buf *req);

struct sftp_extension {
	const char *name;    /* e.g. "posix-rename@openssh.com"; NULL ends the table */
	const char *version; /* advertised in VERSION */
	sftp_handler handle;
};

/* Defined in sftp_server_ops.c: handlers indexed by SSH2_FXP_* type (NULL = unsupported), and
 * the extensions, advertised and dispatched by name. */
extern const sftp_handler sftp_handlers[SSH2_FXP_SYMLINK + 1];
extern const struct sftp_extension sftp_extensions[];

/* Attributes as sent by a client (SSH2_FILEXFER_ATTR_* in flags say which are present).
 * sm_valid: SM_STAT_TIMES when a stat@sandmount pair gave times with nanoseconds (tv_nsec may
 * be UTIME_NOW or UTIME_OMIT). */
struct sftp_attrs {
	uint32_t flags;
	uint64_t size;
	uint32_t uid, gid;
	uint32_t perm;
	uint32_t atime, mtime;
	uint32_t sm_valid;
	struct timespec times[2]; /* atime, mtime */
};
int sftp_attrs_get(struct buf *req, struct sftp_attrs *a);
void sftp_attrs_put_stat(struct buf *out, const struct stat *st);

/* Open handles: a file descriptor or a directory stream. */
enum handle_kind { HANDLE_FREE, HANDLE_FILE, HANDLE_DIR };
struct handle {
	enum handle_kind kind;
	uint32_t gen; /* bumped on every reuse of the slot, so stale handles do not match */
	int fd;	      /* HANDLE_FILE */
	bool append;  /* HANDLE_FILE opened with SSH2_FXF_APPEND: writes go to the end */
	DIR *dir;     /* HANDLE_DIR */
};
/* A free slot to fill in (then reply_handle), or NULL when SFTP_MAX_HANDLES are open. */
struct handle *handle_alloc(void);
/* Parse a handle string: -1 if malformed, else 0 with *h the open handle or NULL if unknown. */
int handle_get(struct buf *req, struct handle **h);
/* The descriptor behind a handle (a directory's dirfd). */
int handle_fd(const struct handle *h);
/* Close and free the slot; 0 or -1 with errno. */
int handle_close(struct handle *h);
/* The slot for a handle about to be opened; NULL when all are taken (path freed, a FAILURE
 * reply queued, its result in *rc). */
struct handle *slot_for(uint32_t id, char *path, int *rc);

/* Replies. Each request gets exactly one. */
struct buf *reply_queue(void);
/* Start a packet (length, type, id) in the reply queue; returns its start for reply_end. */
size_t reply_begin(uint8_t type, uint32_t id);
void reply_end(size_t start);
/* A status reply; msg NULL means the standard text for the code. Returns 0 (for tail calls). */
int reply_status(uint32_t id, uint32_t code, const char *msg);
/* A status for an errno as OpenSSH maps it (ENOENT -> NO_SUCH_FILE, EACCES -> PERMISSION_DENIED,
 * others FAILURE), with the strerror text as message. Returns 0. */
int reply_errno(uint32_t id, int err);
int reply_handle(uint32_t id, const struct handle *h);
/* FAILURE "Invalid handle": a handle unknown or of the wrong kind. Returns 0. */
int reply_bad_handle(uint32_t id);
/* The handle's wire form (a string), into a reply being built. */
void put_handle(struct buf *out, const struct handle *h);
int reply_attrs(uint32_t id, const struct stat *st);
/* A NAME reply with one entry (name and long name alike) and empty attributes. */
int reply_name(uint32_t id, const char *name);

/* sftp_server_dir.c: the directory handlers the tables in sftp_server_ops.c name. */
int process_opendir(uint32_t id, struct buf *req);
int process_readdir(uint32_t id, struct buf *req);
int process_sm_list(uint32_t id, struct buf *req);
/* sftp_server_batch.c */
int process_sm_read_files(uint32_t id, struct buf *req);

#endif
