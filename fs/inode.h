/* inode.h: the daemon's inode table (docs/design.md, decision 6). Every remote object gets one
 * number for the life of the mount, found by (parent inode, name). Entries survive the kernel
 * forgetting them, move on rename, and are replaced when the remote object changes type.
 * Thread-safe. */
#ifndef SANDMOUNT_INODE_H
#define SANDMOUNT_INODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "sftp/sftp_client.h"

#define INODE_ROOT 1

struct inode_table;

/* What the kernel may hold cached: an inode and the entry naming it (parent 0 for the root or
 * for an inode that lost its name). */
struct inode_cached {
	uint64_t ino;
	uint64_t parent;
	char *name;
	mode_t type; /* S_IFMT bits */
};

struct inode_table *inode_table_new(void);
void inode_table_free(struct inode_table *t);
size_t inode_table_count(struct inode_table *t);

/* The inode of `name` in `parent` with file type `type` (S_IFMT bits), made if missing or if
 * the existing one has another type. Adds `lookups` to its kernel lookup count and, when that is
 * not 0, stamps it as handed to the kernel at `now_ms`. Returns 0 when out of memory. */
uint64_t inode_enter(struct inode_table *t, uint64_t parent, const char *name, mode_t type,
		     uint64_t lookups, int64_t now_ms);
/* The st_ino shown for a remote object our agent identified by (dev, ino): so hard links share
 * it and a rename keeps it. The remote number itself on the first device seen; objects on other
 * devices (mounts inside the workspace) get a number of their own, kept for the life of the
 * table (a hashed one past a bound, or without memory). The kernel's node ids (inode_enter) stay
 * path-based. */
uint64_t inode_number(struct inode_table *t, uint64_t dev, uint64_t ino);
/* The kernel dropped `n` lookups. An inode that lost its name is freed at zero. */
void inode_forget(struct inode_table *t, uint64_t ino, uint64_t n);
/* Stamp an inode whose attributes were handed to the kernel. */
void inode_touch(struct inode_table *t, uint64_t ino, int64_t now_ms);
/* The directory holding an inode; the root for the root or an inode that lost its name. */
uint64_t inode_parent(struct inode_table *t, uint64_t ino);
/* Type (S_IFMT bits) of a known inode, 0 if unknown. */
mode_t inode_type(struct inode_table *t, uint64_t ino);

/* The path of an inode relative to the root ("" for the root), malloc'd into *out. With
 * `parent_only`, the path of the directory holding it. Returns 0, -ENOENT for an unknown inode
 * or one that lost its name, -ENOMEM. */
int inode_path(struct inode_table *t, uint64_t ino, bool parent_only, char **out);

/* The name was removed remotely: the inode loses its name (and its number with it). */
void inode_remove(struct inode_table *t, uint64_t parent, const char *name);
/* Move the entry; an inode already at the target loses its name. Returns 0 or -ENOMEM. */
int inode_rename(struct inode_table *t, uint64_t parent, const char *name, uint64_t newparent,
		 const char *newname);

/* Page cache rule (like sshfs): true when the remote size and mtime (with nanoseconds when the
 * agent gives them) equal those seen at the previous open of this inode. Records the new values. */
bool inode_open_unchanged(struct inode_table *t, uint64_t ino, const struct sftp_attrs *a);
/* What the kernel holds of `ino`'s size and mtime, as far as the daemon can tell: noted at every
 * reply with attributes (inode_note_shown) and raised by local writes past it, which the kernel
 * applies itself (inode_note_written). An invalidation leaves the kernel's size as it is, but
 * the kernel drops a getattr reply that an invalidation crossed (asked before it, applied
 * after) while its caller still sees it. So a reply that changes the size is `droppable`: an
 * invalidation the daemon sends (inode_doubt_shown) makes the shown size unknown until a reply
 * or a write settles it, and a reply asked before an invalidation (its `mark`, from
 * inode_await_shown, is older) that would change the size makes it unknown at once. Replies the
 * kernel always applies (setattr, an O_TRUNC open, a new entry) are noted with INODE_MARK_ANY.
 * Our own writes' reports (most reports) keep the size known: writes settle it, and a reply
 * showing the same size changes nothing. A droppable size is not known (inode_shown_size false)
 * until settled: by a write past it, a reply the kernel always applies, or a show whose stat
 * completed with no invalidation after its `mark` (inode_show_settle). inode_shown_compare
 * tells whether `a` differs from what was shown (an unknown or unsettled size differs).
 *
 * Shows (kernel_size.c) run between inode_show_begin and inode_show_end; inode_await_shown waits
 * (until `deadline`, CLOCK_MONOTONIC; NULL: no wait) for the inode's shows to end, so a getattr
 * reply is not handed to its caller before the kernel holds the size shown, and returns the
 * mark to note the reply with. */
#define INODE_MARK_ANY UINT64_MAX
enum inode_shown { INODE_SHOWN_SAME, INODE_SHOWN_OTHER_MTIME, INODE_SHOWN_OTHER_SIZE };
void inode_note_shown(struct inode_table *t, uint64_t ino, const struct sftp_attrs *a,
		      uint64_t mark);
void inode_doubt_shown(struct inode_table *t, uint64_t ino);
void inode_show_begin(struct inode_table *t, uint64_t ino);
void inode_show_end(struct inode_table *t, uint64_t ino);
uint64_t inode_await_shown(struct inode_table *t, uint64_t ino, const struct timespec *deadline);
bool inode_showing(struct inode_table *t, uint64_t ino);
bool inode_show_settle(struct inode_table *t, uint64_t ino, uint64_t mark);
void inode_note_written(struct inode_table *t, uint64_t ino, uint64_t end);
enum inode_shown inode_shown_compare(struct inode_table *t, uint64_t ino,
				     const struct sftp_attrs *a);
bool inode_shown_size(struct inode_table *t, uint64_t ino, uint64_t *size);

/* The inodes the kernel may still cache: looked up and stamped at or after `since_ms`.
 * Returns the count (or -ENOMEM) and a malloc'd array; free it with inode_cached_free. */
long inode_cached_since(struct inode_table *t, int64_t since_ms, struct inode_cached **out);
void inode_cached_free(struct inode_cached *v, long n);

/* The inode of `name` in `parent` if the table has one, else 0. Creates nothing (notify.c). */
uint64_t inode_lookup(struct inode_table *t, uint64_t parent, const char *name);

/* Freshness (trusted while a change watch runs): the attributes handed out for an inode and
 * whether its listing was handed out, each fresh until a deadline unless marked stale since.
 * `seq` is inode_stale_seq() read before the remote call that produced the data: data older
 * than a stale mark is not kept. */
uint64_t inode_stale_seq(struct inode_table *t);
void inode_set_attrs(struct inode_table *t, uint64_t ino, const struct sftp_attrs *a,
		     int64_t until_ms, uint64_t seq);
bool inode_fresh_attrs(struct inode_table *t, uint64_t ino, int64_t now_ms, struct sftp_attrs *a);
void inode_set_listed(struct inode_table *t, uint64_t ino, int64_t until_ms, uint64_t seq);
bool inode_listing_fresh(struct inode_table *t, uint64_t ino, int64_t now_ms);
/* Only the listing of directory ino is stale; its attributes stay as fresh as they were (what
 * it holds changed, and the change of its own attributes is reported apart). below: the change
 * was further down, under a name in ino the table did not know. */
void inode_mark_listing_stale(struct inode_table *t, uint64_t ino, bool below);
/* The object (its attributes, and its listing for a directory) may have changed. */
void inode_mark_stale(struct inode_table *t, uint64_t ino);
void inode_mark_all_stale(struct inode_table *t);
/* Whether nothing was reported since seq that could have put something in directory `dir` (just
 * made in `parent`): no mark on dir, no barrier, and no report from below an unknown name in
 * parent (made there before the table knew dir). */
bool inode_new_dir_unchanged(struct inode_table *t, uint64_t parent, uint64_t dir, uint64_t seq);

#endif
