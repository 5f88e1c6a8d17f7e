/* notify.c: changes the sandbox reported (the transport's watch; docs/design.md, decision 5) become
 * kernel cache invalidations, so cached attributes, data and entries can be trusted for long. The
 * path is walked down the inode table without creating anything: what the table does not know, the
 * kernel cannot hold, except a negative entry in the last known directory, which is dropped too.
 * A report says either that a name changed (its entry and the listing holding it are dropped) or
 * that only what it names changed (the object alone; not when the attributes the sandbox sent are
 * the ones we hold or older: that is the echo of our own change; a directory's report waits for a
 * change of ours in flight there to end, own_change.c).
 * The notify calls run with no lock held: the kernel may call back into lookup or forget while
 * it handles them. */
#include "fs_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "negative.h"
#include "own_change.h"

/* The sandbox changed `ino`: nothing cached of it is served again (ops_read.c has the rule): not
 * the daemon's read-ahead, not the size open files knew, not the kernel's attributes and pages. */
static void inval_inode(struct fs *fs, uint64_t ino, const struct sftp_attrs *reported)
{
	inode_show_begin(fs->inodes, ino); /* getattrs wait until the kernel has the new size */
	fs_mark_stale(fs, ino);
	fs_data_changed(fs, ino);
	fs_forget_size(fs, ino);
	fs_forget_kernel_inode(fs, ino);
	/* Mappings and O_APPEND take no size of their own. */
	fs_show_changed_size(fs, ino, reported);
	inode_show_end(fs->inodes, ino);
}

/* The path below the workspace root ("" for the root), or NULL for a path outside it. */
static const char *relative(const struct fs *fs, const char *path)
{
	size_t n = strlen(fs->root_path);
	if (strncmp(path, fs->root_path, n) != 0 || (path[n] && path[n] != '/'))
		return NULL;
	path += n;
	while (*path == '/')
		path++;
	return path;
}

/* Whether the attributes we hold fresh for ino (what the kernel was told) say all the sandbox
 * reported: the same ones (the echo of our own change, already known), or newer ones (a report
 * whose ctime is older than the one we hold was taken before our LSTAT, which saw everything it
 * did). Only a directory's are compared (its times change at every name change, so the report
 * of our own create or unlink would drop the kernel's copy each time); a file's timestamps are
 * too coarse to tell a same-size write by another process within one tick from our own. */
static bool holds_attrs(struct fs *fs, uint64_t ino, const struct sftp_attrs *r)
{
	struct sftp_attrs a;
	const uint32_t need = SFTP_ATTR_SIZE | SFTP_ATTR_UIDGID | SFTP_ATTR_PERM |
			      SFTP_ATTR_DEVINO | SFTP_ATTR_NLINK | SFTP_ATTR_NSTIME |
			      SFTP_ATTR_CTIME;
	if ((r->flags & need) != need || !fs_fresh_attrs(fs, ino, &a) || (a.flags & need) != need)
		return false;
	if (a.dev != r->dev || a.ino != r->ino)
		return false;
	if (r->ctim.tv_sec < a.ctim.tv_sec ||
	    (r->ctim.tv_sec == a.ctim.tv_sec && r->ctim.tv_nsec < a.ctim.tv_nsec))
		return true;
	return a.size == r->size && a.uid == r->uid && a.gid == r->gid && a.perm == r->perm &&
	       a.nlink == r->nlink && a.mtim.tv_sec == r->mtim.tv_sec &&
	       a.mtim.tv_nsec == r->mtim.tv_nsec && a.ctim.tv_sec == r->ctim.tv_sec &&
	       a.ctim.tv_nsec == r->ctim.tv_nsec;
}

/* A report from below `name` in dir, handled when the table did not know name: if our mkdir of
 * it has made it known since, the empty listing it may hold is not to be trusted. */
static void drop_new_dir_listing(struct fs *fs, uint64_t dir, const char *name)
{
	uint64_t made = inode_lookup(fs->inodes, dir, name);
	if (made)
		listing_drop(fs->listings, made);
}

void fs_own_change_end(struct fs *fs, uint64_t dir, bool tracked)
{
	struct sftp_attrs reported;
	if (tracked && own_change_end(fs->own_changes, dir, &reported) &&
	    !holds_attrs(fs, dir, &reported))
		inval_inode(fs, dir, NULL);
}

void fs_notify_change(void *arg, const char *remote_path, bool inside,
		      const struct sftp_attrs *attrs)
{
	struct fs *fs = arg;
	if (!remote_path) {
		fs_barrier(fs);
		return;
	}
	const char *rel = fs->se ? relative(fs, remote_path) : NULL;
	char *copy = rel ? strdup(rel) : NULL;
	if (!copy)
		return;
	/* Walk down: `dir` is the deepest known directory, `name` the component in it. */
	uint64_t dir = INODE_ROOT, ino = INODE_ROOT;
	char *name = NULL, *save = NULL;
	bool below = false; /* the path goes on under the unknown `name` */
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		dir = ino;
		name = c;
		ino = inode_lookup(fs->inodes, dir, c);
		if (!ino) {
			below = strtok_r(NULL, "/", &save) != NULL;
			break;
		}
	}
	/* The report of a directory we are changing waits for our reply (own_change.c). A file's
	 * attributes never make its report an echo (holds_attrs says why); they give its size. */
	bool dir_attrs = attrs && (attrs->flags & SFTP_ATTR_PERM) && S_ISDIR(attrs->perm);
	if (inside && ino && dir_attrs &&
	    (holds_attrs(fs, ino, attrs) || own_change_defer(fs->own_changes, ino, attrs))) {
		free(copy);
		return;
	}
	/* A changed name (or one we did not know, so the kernel may hold "does not exist" for it):
	 * its entry is revalidated at the next use, and the listing holding it is read again. The
	 * directory's own attributes come with their own report. The listing is told first: a
	 * lookup that reads fs_seq() after the stale marks below moved it finds the name doubtful.
	 * It is told again after them: a listing begun meanwhile saw no mark (hold_empty_listing).
	 */
	bool name_changed = name && (!inside || !ino);
	if (name_changed)
		listing_note(fs->listings, dir, name, LISTING_DOUBT);
	if (ino)
		inval_inode(fs, ino, inside ? attrs : NULL); /* attributes and data of the object */
	if (name_changed) {
		fs_expire_entry(fs, dir, name, ino && inode_type(fs->inodes, ino) == S_IFDIR);
		negative_remove(fs->negatives, dir, name);
		inode_mark_listing_stale(fs->inodes, dir, below);
		listing_note(fs->listings, dir, name, LISTING_DOUBT);
		if (below)
			drop_new_dir_listing(fs, dir, name);
	}
	free(copy);
}
