/* fs.h: the FUSE low-level filesystem that shows a sandbox's workspace (fs/ops_*.c), its inode
 * table (fs/inode.c) and the symlink containment rules (fs/linkpath.c). */
#ifndef SANDMOUNT_FS_H
#define SANDMOUNT_FS_H

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <sys/types.h>

#include "buf.h"
#include "sftp/sftp_client.h"
#include "util.h"

struct fs;
struct conn_mgr;

struct fs_params {
	struct conn_mgr *conn;	       /* the sandbox connection (fs/conn.h), not owned */
	const char *remote_root;       /* canonical absolute workspace path on the sandbox */
	const char *remote_root_alias; /* the path as the user gave it, if different; may be NULL */
	double cache_timeout_s;	       /* attr/entry TTL */
	uid_t uid;		       /* owner shown for every file (the mounting user) */
	gid_t gid;
	bool owners_real; /* owners=real: show and set the sandbox's numeric owners instead */
	bool prefetch;	  /* fetch a directory's small files when one of them is read */
};

int fs_create(const struct fs_params *p, struct fs **out, struct err *e);
void fs_destroy(struct fs *fs);
/* The ops table; fuse_session_new() gets the struct fs * as userdata. */
const struct fuse_lowlevel_ops *fs_lowlevel_ops(void);
/* Needed for cache invalidation notifications; call after fuse_session_new(). */
void fs_set_session(struct fs *fs, struct fuse_session *se);
/* The canonical absolute local mount path: symlinks made through the mount with a target in it
 * are stored relative (fs/linkpath.h). */
void fs_set_mountpoint(struct fs *fs, const char *mountpoint);
/* Exec barrier (docs/design.md, decision 5): drop the kernel's cached attributes, entries and data
 * of everything it may hold, so what a finished command changed is seen. Safe from any thread that
 * is not serving a FUSE request. `fs` is a struct fs *. */
void fs_barrier(void *fs);
/* The barrier after a reconnect, from the thread that reconnects: what the daemon holds is
 * dropped at once; the kernel's caches on the expirer thread (expire.c says why). */
void fs_barrier_reconnected(struct fs *fs);
/* A reconnect has begun: its fs_barrier_reconnected will follow. fs_expirer_wait then waits for
 * that barrier too, so an answer given after the wait never predates it. */
void fs_expirer_expect(struct fs *fs);
/* Wait until every barrier announced or kicked has reached the kernel: 0, or -ETIMEDOUT. */
int fs_expirer_wait(struct fs *fs, int timeout_ms);
/* Stop the expirer thread: after the FUSE session is unmounted, before it is destroyed. */
void fs_stop_expirer(struct fs *fs);
/* Stop the prefetch thread (fs/prefetch.c; before the session goes: it writes to it). */
void fs_prefetch_stop(struct fs *fs);
/* The FUSE loop has ended: no size is shown any more, and a show waiting for its stat (which no
 * worker will answer) ends now. Before the session is unmounted and change reports are shut
 * out: teardown waits for both. */
void fs_stop_shows(struct fs *fs);
/* After an exec barrier: open files take the size the sandbox has now (fs_show_changed_size);
 * mappings and O_APPEND use it without a stat. From a thread that serves no FUSE request. */
void fs_show_open_sizes(struct fs *fs);
/* The sandbox reported a change at the absolute remote path (the transport's watch, protocol in
 * lib/proto/mux_proto.h). inside false: the name changed (created, removed, renamed): its entry,
 * and the listing of the directory holding it, are no longer trusted. inside true: only what the
 * name refers to changed (data, attributes, a directory's listing); attrs (may be NULL) are the
 * object's attributes after the change when the sandbox sent them (directories). path NULL:
 * everything may have changed (as fs_barrier). Any thread that is not serving a FUSE request.
 * `fs` is a struct fs *. */
void fs_notify_change(void *fs, const char *remote_path, bool inside,
		      const struct sftp_attrs *attrs);
/* The attr/entry cache lifetime from now on (longer while a change watch runs). */
void fs_set_cache_timeout(struct fs *fs, double seconds);
/* Whether the sandbox reports its changes (the transport watch runs, and every change comes to
 * fs_notify_change): fresh attributes and listings are then served without asking the sandbox.
 * Every call (on or off) drops what was known fresh (changes may have been missed meanwhile). */
void fs_set_watched(struct fs *fs, bool watched);
/* The sandbox reported a change of inode `ino` (its attributes, data, or listing): not fresh
 * any more. Call before the kernel invalidation (fs/notify.c). `fs` is a struct fs *. */
void fs_mark_stale(struct fs *fs, uint64_t ino);
/* Append human-readable status lines (inodes, open files, pending writes, op counters). */
void fs_status(struct fs *fs, struct buf *text);
/* Bytes written by local programs but not yet acknowledged by the sandbox. */
uint64_t fs_pending_bytes(struct fs *fs);

#endif
