/* ops_entry.c: FUSE operations on names and attributes: lookup, forget, getattr, setattr,
 * readlink, symlink, mkdir, rmdir, unlink, rename, link and mknod.
 *
 * Symlinks: what readlink shows is the containment rewrite of the remote target (linkpath.c), so
 * the size lstat reports is the length of that, not of the stored target (a program reads the
 * link with a buffer of st_size bytes). A symlink made through the mount whose target lies in the
 * mountpoint is stored relative to its directory (linkpath_remote_target). */
#include "fs_internal.h"
#include "linkpath.h"
#include "log.h"
#include "negative.h"
#include "own_change.h"

#include <errno.h>
#include <stdio.h> /* RENAME_NOREPLACE */
#include <stdlib.h>
#include <string.h>
#include <time.h>

void fs_set_mountpoint(struct fs *fs, const char *mountpoint)
{
	snprintf(fs->mountpoint, sizeof(fs->mountpoint), "%s", mountpoint);
}

/* For a symlink at remote `path` in directory `dir` (relative to the workspace): its size is the
 * length of the target readlink shows. Left as it was when the link cannot be read. */
static void shown_link_size(struct fs *fs, const char *path, const char *dir, struct sftp_attrs *a)
{
	char *target = NULL, *shown = NULL;
	if (fs_attrs_type(a) != S_IFLNK || fs_readlink(fs, path, &target) < 0)
		return;
	shown = linkpath_local_target(fs->root, fs->alias, dir, target);
	if (shown) {
		a->size = strlen(shown);
		a->flags |= SFTP_ATTR_SIZE;
	}
	free(target);
	free(shown);
}

/* lstat `name` in `parent` (a symlink with the size readlink shows). */
static int lstat_name(struct fs *fs, fuse_ino_t parent, const char *name, struct sftp_attrs *a)
{
	char *path, *dir = NULL;
	int r = fs_remote_path(fs, parent, name, &path);
	if (r < 0)
		return r;
	r = fs_lstat(fs, path, a);
	if (r == 0 && fs_attrs_type(a) == S_IFLNK &&
	    inode_path(fs->inodes, parent, false, &dir) == 0)
		shown_link_size(fs, path, dir, a);
	free(dir);
	free(path);
	return r;
}

/* A name the complete listing of parent does not hold: "does not exist", asked of no one. A
 * report handled meanwhile (fs_seq moved; the listing had been told before it moved) makes us
 * look again, a few times, before asking the sandbox. */
static bool listed_absent(struct fs *fs, fuse_ino_t parent, const char *name,
			  struct fuse_entry_param *e)
{
	for (int tries = 0; tries < 3 && atomic_load(&fs->watched); tries++) {
		uint64_t seq = fs_seq(fs);
		if (listing_lookup(fs->listings, parent, name) != LISTING_ABSENT)
			return false;
		if (fs_keep_negative(fs, parent, name, seq, e))
			return true;
	}
	return false;
}

void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	if (fs_hidden_name(parent, name)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	struct sftp_attrs a;
	struct fuse_entry_param e;
	uint64_t known = inode_lookup(fs->inodes, parent, name);
	if (known && fs_fresh_attrs(fs, known, &a) &&
	    fs_make_entry(fs, parent, name, &a, FS_SEQ_NONE, &e) == 0) {
		fuse_reply_entry(req, &e);
		return;
	}
	/* Writes of open files land first, so the size reported includes them (draining after
	 * the stat would miss writes another thread drained meanwhile: the kernel would take the
	 * older, smaller size). Only a name the table knows can have open files. */
	if (known)
		fs_drain_inode(fs, known);
	if (listed_absent(fs, parent, name, &e)) {
		fuse_reply_entry(req, &e);
		return;
	}
	uint64_t seq = fs_seq(fs);
	int r = lstat_name(fs, parent, name, &a);
	if (r == 0)
		r = fs_make_entry(fs, parent, name, &a, seq, &e);
	if (r == -ENOENT && fs_keep_negative(fs, parent, name, seq, &e))
		r = 0;
	if (r < 0)
		fs_reply_errno(req, r);
	else
		fuse_reply_entry(req, &e);
}

void fs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	inode_forget(fs_of(req)->inodes, ino, nlookup);
	fuse_reply_none(req);
}

void fs_op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fs *fs = fs_of(req);
	for (size_t i = 0; i < count; i++)
		inode_forget(fs->inodes, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/* Current attributes of an inode; through an open file when its name is gone. */
static int stat_inode(struct fs *fs, fuse_ino_t ino, struct sftp_attrs *a)
{
	char *path, *dir = NULL;
	int r = fs_remote_path(fs, ino, NULL, &path);
	if (r == -ENOENT)
		return fs_open_inode_attrs(fs, ino, NULL, a);
	if (r < 0)
		return r;
	r = fs_lstat(fs, path, a);
	if (r == 0 && fs_attrs_type(a) == S_IFLNK && inode_path(fs->inodes, ino, true, &dir) == 0)
		shown_link_size(fs, path, dir, a);
	free(dir);
	free(path);
	return r;
}

/* `mark`: fs_await_shown's when the request began. The reply waits for a show of the inode in
 * progress: its caller must not see a size before the kernel holds it. */
static void reply_attr(fuse_req_t req, fuse_ino_t ino, const struct sftp_attrs *a, uint64_t seq,
		       uint64_t mark)
{
	struct fs *fs = fs_of(req);
	struct stat st;
	fs_await_shown(fs, req, ino);
	fs_fill_stat(fs, ino, a, mark, &st);
	fs_remember_attrs(fs, ino, a, seq);
	if (a->flags & SFTP_ATTR_SIZE)
		fs_note_size(fs, ino, a->size, false);
	inode_touch(fs->inodes, ino, now_ms());
	fuse_reply_attr(req, &st, fs_attr_timeout(fs, a));
}

/* The root is a directory whatever happens: while the sandbox is unreachable, its last known
 * attributes keep `sandmount -u` and `cd` from waiting for the reconnect. */
static bool root_attrs_offline(struct fs *fs, struct sftp_attrs *a)
{
	struct conn *c = conn_get(fs->conn, 0);
	conn_put(fs->conn, c);
	if (c)
		return false;
	pthread_mutex_lock(&fs->root_attrs_lock);
	if (fs->have_root_attrs)
		*a = fs->root_attrs;
	else
		*a = (struct sftp_attrs){.flags = SFTP_ATTR_PERM, .perm = S_IFDIR | 0755};
	pthread_mutex_unlock(&fs->root_attrs_lock);
	return true;
}

static void root_attrs_seen(struct fs *fs, const struct sftp_attrs *a)
{
	pthread_mutex_lock(&fs->root_attrs_lock);
	fs->root_attrs = *a;
	fs->have_root_attrs = true;
	pthread_mutex_unlock(&fs->root_attrs_lock);
}

/* A getattr reply may be dropped by the kernel (an invalidation crossing it) while its caller
 * sees it. For an open file, whose size the kernel uses without asking (O_APPEND, mappings),
 * a size the kernel may not hold is shown to it first (kernel_size.c), so the caller never
 * sees a size the kernel does not have. */
static void show_before_reply(struct fs *fs, fuse_req_t req, fuse_ino_t ino,
			      const struct sftp_attrs *a, uint64_t seq)
{
	if (!(a->flags & SFTP_ATTR_SIZE) || fs_attrs_type(a) != S_IFREG ||
	    inode_shown_compare(fs->inodes, ino, a) != INODE_SHOWN_OTHER_SIZE ||
	    !fs_inode_is_open(fs, ino) || fs_req_is_show(fs, req))
		return;
	fs_remember_attrs(fs, ino, a, seq); /* the show's getattr is then answered from them */
	fs_show_size(fs, ino);
}

void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct fs *fs = fs_of(req);
	struct sftp_attrs a;
	/* The kernel applies this reply only if no invalidation crosses it: noted only then. */
	uint64_t mark = fs_await_shown(fs, req, ino);
	if (ino == INODE_ROOT && root_attrs_offline(fs, &a)) {
		reply_attr(req, ino, &a, FS_SEQ_NONE, mark);
		return;
	}
	if (fs_fresh_attrs(fs, ino, &a)) {
		show_before_reply(fs, req, ino, &a, FS_SEQ_NONE);
		reply_attr(req, ino, &a, FS_SEQ_NONE, mark);
		return;
	}
	fs_drain_inode(fs, ino);
	uint64_t seq = fs_seq(fs);
	int r = stat_inode(fs, ino, &a);
	if (r == 0 && ino == INODE_ROOT)
		root_attrs_seen(fs, &a);
	if (r == 0)
		show_before_reply(fs, req, ino, &a, seq);
	if (r < 0)
		fs_reply_errno(req, r);
	else
		reply_attr(req, ino, &a, seq, mark);
}

/* Times with nanoseconds (our agent): what is not given is left as it is (UTIME_OMIT). */
static void setattr_ns_times(const struct stat *attr, int to_set, struct sftp_attrs *set)
{
	set->flags |= SFTP_ATTR_NSTIME;
	set->atim.tv_nsec = set->mtim.tv_nsec = UTIME_OMIT;
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		set->atim.tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME)
		set->atim = attr->st_atim;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		set->mtim.tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		set->mtim = attr->st_mtim;
}

/* With owners=real: the sandbox's numeric owners are set; one not given stays as it is. */
static int setattr_owners(struct fs *fs, fuse_ino_t ino, const struct stat *attr, int to_set,
			  struct sftp_attrs *set)
{
	int owners = to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID);
	if (!owners || !fs->owners_real)
		return 0;
	if (owners != (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		struct sftp_attrs cur;
		int r = stat_inode(fs, ino, &cur);
		if (r < 0)
			return r;
		if (!(cur.flags & SFTP_ATTR_UIDGID))
			return -EPERM;
		set->uid = cur.uid;
		set->gid = cur.gid;
	}
	if (to_set & FUSE_SET_ATTR_UID)
		set->uid = attr->st_uid;
	if (to_set & FUSE_SET_ATTR_GID)
		set->gid = attr->st_gid;
	set->flags |= SFTP_ATTR_UIDGID;
	return 0;
}

/* Build the SFTP attributes for a setattr; times not given keep their current values. */
static int setattr_attrs(struct fs *fs, fuse_ino_t ino, const struct stat *attr, int to_set,
			 struct sftp_attrs *set)
{
	memset(set, 0, sizeof(*set));
	if (to_set & FUSE_SET_ATTR_MODE) {
		set->flags |= SFTP_ATTR_PERM;
		set->perm = attr->st_mode & 07777;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		set->flags |= SFTP_ATTR_SIZE;
		set->size = (uint64_t)attr->st_size;
	}
	int r = setattr_owners(fs, ino, attr, to_set, set);
	int times = to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME);
	if (r < 0 || !times)
		return r;
	if (fs_extensions(fs) & SFTP_EXT_SM_STAT) {
		setattr_ns_times(attr, to_set, set);
		return 0;
	}
	if (times != (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
		struct sftp_attrs cur;
		r = stat_inode(fs, ino, &cur);
		if (r < 0)
			return r;
		set->atime = cur.atime;
		set->mtime = cur.mtime;
	}
	uint32_t now = (uint32_t)time(NULL);
	if (to_set & FUSE_SET_ATTR_ATIME)
		set->atime = (to_set & FUSE_SET_ATTR_ATIME_NOW) ? now : (uint32_t)attr->st_atime;
	if (to_set & FUSE_SET_ATTR_MTIME)
		set->mtime = (to_set & FUSE_SET_ATTR_MTIME_NOW) ? now : (uint32_t)attr->st_mtime;
	set->flags |= SFTP_ATTR_ACMODTIME;
	return 0;
}

/* Owners are not ours to change (unless owners=real): accept only a change to what is shown. */
static bool owner_change_refused(struct fs *fs, const struct stat *attr, int to_set)
{
	if (fs->owners_real)
		return false;
	return ((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != fs->uid) ||
	       ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != fs->gid);
}

/* Setting the same attributes again is harmless: retried like a lookup. */
static int setstat_path(struct fs *fs, const char *path, const struct sftp_attrs *set)
{
	struct fs_call call;
	int r = fs_call_begin(fs, &call);
	if (r < 0)
		return r;
	do
		r = sftp_setstat(call.sftp, path, set);
	while (fs_call_retry(&call, &r));
	fs_call_end(&call);
	return r;
}

void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		   struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct sftp_attrs set, a;
	char *path = NULL;
	bool have_attrs = false;
	int r = 0;

	(void)fi; /* every open file of the inode is drained, then the path is used */
	fs_mark_stale(fs, ino);
	uint64_t seq = fs_seq(fs);
	if (owner_change_refused(fs, attr, to_set))
		r = -EPERM;
	/* Buffered writes go first: sent later, they would undo a truncate, or set the mtime
	 * a futimens() before close() asked for (tar, cp -p) back to "now". */
	if (r == 0 && (to_set & (FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
				 FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW))) {
		r = fs_drain_inode(fs, ino);
		r = r > 0 ? 0 : r;
	}
	if (r == 0)
		r = setattr_attrs(fs, ino, attr, to_set, &set);
	/* A truncate: read-ahead asked for before it must not be served (ops_read.c). */
	bool truncate = r == 0 && (set.flags & SFTP_ATTR_SIZE);
	if (truncate)
		fs_data_changed(fs, ino);
	/* SFTP's setstat follows symlinks: never change a link's target through it. */
	if (r == 0 && set.flags && inode_type(fs->inodes, ino) != S_IFLNK) {
		r = fs_remote_path(fs, ino, NULL, &path);
		if (r == 0) {
			r = setstat_path(fs, path, &set);
		} else if (r == -ENOENT) {
			/* Unlinked but open (ftruncate of a temporary file). */
			r = fs_open_inode_attrs(fs, ino, &set, &a);
			have_attrs = r == 0;
		}
		free(path);
	}
	if (truncate)
		fs_data_changed(fs, ino); /* also what was asked for while the SETSTAT ran */
	if (r == 0 && !have_attrs)
		r = stat_inode(fs, ino, &a);
	if (r == 0 && (to_set & FUSE_SET_ATTR_SIZE))
		fs_note_size(fs, ino, a.size, true);
	if (r < 0)
		fs_reply_errno(req, r);
	else
		reply_attr(req, ino, &a, seq, INODE_MARK_ANY); /* the kernel applies it as it is */
}

void fs_op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	char *path = NULL, *dir = NULL, *target = NULL, *shown = NULL;
	int r = fs_remote_path(fs, ino, NULL, &path);
	if (r == 0)
		r = inode_path(fs->inodes, ino, true, &dir);
	if (r == 0)
		r = fs_readlink(fs, path, &target);
	if (r == 0) {
		shown = linkpath_local_target(fs->root, fs->alias, dir, target);
		if (!shown)
			r = -ENOMEM;
	}
	if (r < 0)
		fs_reply_errno(req, r);
	else
		fuse_reply_readlink(req, shown);
	free(path);
	free(dir);
	free(target);
	free(shown);
}

/* The entry of a name just made: from the attributes the change brought, else LSTATed. */
static int new_entry(struct fs *fs, fuse_ino_t parent, const char *name,
		     const struct sftp_after *known, uint64_t seq, struct fuse_entry_param *e)
{
	struct sftp_attrs a;
	int r = 0;
	if (known && known->ok) {
		a = known->attrs;
	} else {
		seq = fs_seq(fs);
		r = lstat_name(fs, parent, name, &a);
	}
	return r < 0 ? r : fs_make_entry(fs, parent, name, &a, seq, e);
}

void fs_reply_new_entry(fuse_req_t req, fuse_ino_t parent, const char *name,
			const struct sftp_after *known, uint64_t seq)
{
	struct fuse_entry_param e;
	int r = new_entry(fs_of(req), parent, name, known, seq, &e);
	if (r < 0)
		fs_reply_errno(req, r);
	else
		fuse_reply_entry(req, &e);
}

/* A change of names (sftp_change), with after[0..n) looked up in the same round trip. Not
 * retried after a lost connection: the first try may have happened. */
static int fs_mutate(struct fs *fs, enum sftp_change_op op, const char *a, const char *b,
		     uint32_t mode, struct sftp_after *after, size_t n)
{
	struct fs_call call;
	int r = fs_call_begin(fs, &call);
	if (r < 0)
		return r;
	r = sftp_change(call.sftp, op, a, b, mode, after, n);
	if (r == -EIO)
		conn_failed(fs->conn, call.c); /* reconnect at once if that was the cause */
	fs_call_end(&call);
	return r;
}

/* The directory's attributes, LSTATed right after a change we made in it (seq: fs_seq before the
 * change): the kernel drops its own copy at every change of a name and asks again, from here. */
void fs_remember_after(struct fs *fs, fuse_ino_t dir, const struct sftp_after *after, uint64_t seq)
{
	if (after->ok && fs_attrs_type(&after->attrs) == S_IFDIR)
		fs_remember_attrs(fs, dir, &after->attrs, seq);
}

/* A name in `parent` is about to change: neither the directory nor what the name held is fresh. */
static void mark_name_stale(struct fs *fs, fuse_ino_t parent, const char *name)
{
	fs_mark_stale(fs, parent);
	uint64_t ino = inode_lookup(fs->inodes, parent, name);
	if (ino)
		fs_mark_stale(fs, ino);
}

/* The remote path for a new name; the containment name can never be made. */
static int new_name_path(struct fs *fs, fuse_ino_t parent, const char *name, char **path)
{
	mark_name_stale(fs, parent, name);
	if (fs_hidden_name(parent, name))
		return -EPERM;
	return fs_remote_path(fs, parent, name, path);
}

/* A regular file: an exclusive create. */
static int mknod_regular(struct fs *fs, const char *path, mode_t mode)
{
	struct sftp_attrs a = {.flags = SFTP_ATTR_PERM, .perm = mode & 07777};
	struct sftp_handle h;
	struct fs_call call;
	int r = fs_call_begin(fs, &call);
	if (r == 0)
		r = sftp_open(call.sftp, path, SFTP_OPEN_WRITE | SFTP_OPEN_CREAT | SFTP_OPEN_EXCL,
			      &a, &h);
	if (r == 0)
		r = sftp_close(call.sftp, &h);
	fs_call_end(&call);
	return r;
}

/* FIFOs, sockets and devices: through our agent's mknod@sandmount, where the sandbox allows
 * them; without the agent the file system does not support the type (EPERM, as mknod(2)). */
static int mknod_special(struct fs *fs, const char *path, mode_t mode, dev_t rdev)
{
	struct fs_call call;
	int r = fs_call_begin(fs, &call);
	if (r == 0)
		r = sftp_mknod(call.sftp, path, mode, rdev);
	if (r == -EIO)
		conn_failed(fs->conn, call.c);
	fs_call_end(&call);
	return r == -ENOSYS || r == -ENOTSUP ? -EPERM : r;
}

void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct fs *fs = fs_of(req);
	char *path = NULL;
	int r = new_name_path(fs, parent, name, &path);
	if (r == 0 && S_ISREG(mode))
		r = mknod_regular(fs, path, mode);
	else if (r == 0)
		r = mknod_special(fs, path, mode, rdev);
	free(path);
	listing_note(fs->listings, parent, name, r == 0 ? LISTING_ADDED : LISTING_DOUBT);
	if (r < 0)
		fs_reply_errno(req, r);
	else
		fs_reply_new_entry(req, parent, name, NULL, 0);
}

/* A directory we just made holds nothing: its complete listing is empty, unless a change in it
 * was reported since seq (something may have been made in it already). Reports elsewhere, such
 * as the echo of our previous mkdir, do not count. The check follows the begin: a report handled
 * after it either marked what the check reads, or tells the listing (notify.c). */
static void hold_empty_listing(struct fs *fs, fuse_ino_t parent, uint64_t ino, uint64_t seq)
{
	if (!atomic_load(&fs->watched))
		return;
	uint64_t token = listing_begin(fs->listings, ino);
	if (token && inode_new_dir_unchanged(fs->inodes, parent, ino, seq))
		listing_commit(fs->listings, ino, token);
}

/* mkdir: the new directory's attributes and its parent's come in the same round trip. */
void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fs *fs = fs_of(req);
	char *path = NULL, *dir = NULL;
	struct sftp_after after[2] = {{0}};
	struct fuse_entry_param e;
	int r = new_name_path(fs, parent, name, &path);
	uint64_t seq = fs_seq(fs);
	if (r == 0)
		r = fs_remote_path(fs, parent, NULL, &dir);
	bool tracked = r == 0 && own_change_begin(fs->own_changes, parent);
	if (r == 0) {
		after[0].path = path;
		after[1].path = dir;
		r = fs_mutate(fs, SFTP_MKDIR, path, NULL, mode & 07777, after, 2);
	}
	free(path);
	free(dir);
	listing_note(fs->listings, parent, name, r == 0 ? LISTING_ADDED : LISTING_DOUBT);
	if (r == 0) {
		fs_remember_after(fs, parent, &after[1], seq);
		r = new_entry(fs, parent, name, &after[0], seq, &e);
	}
	if (r < 0) {
		fs_reply_errno(req, r);
	} else {
		/* before the reply: the kernel looks up the names to make in it right after */
		hold_empty_listing(fs, parent, e.ino, seq);
		fuse_reply_entry(req, &e);
	}
	fs_own_change_end(fs, parent, tracked);
}

static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name, bool is_dir)
{
	struct fs *fs = fs_of(req);
	char *path = NULL, *dir = NULL;
	struct sftp_after after = {0};
	mark_name_stale(fs, parent, name);
	uint64_t seq = fs_seq(fs);
	int r = fs_remote_path(fs, parent, name, &path);
	if (r == 0)
		r = fs_remote_path(fs, parent, NULL, &dir);
	bool tracked = r == 0 && own_change_begin(fs->own_changes, parent);
	if (r == 0) {
		after.path = dir;
		r = fs_mutate(fs, is_dir ? SFTP_RMDIR : SFTP_REMOVE, path, NULL, 0, &after, 1);
	}
	free(path);
	free(dir);
	listing_note(fs->listings, parent, name, r == 0 ? LISTING_REMOVED : LISTING_DOUBT);
	if (r == 0) {
		uint64_t gone = is_dir ? inode_lookup(fs->inodes, parent, name) : 0;
		if (gone)
			listing_drop(fs->listings, gone);
		inode_remove(fs->inodes, parent, name);
		fs_remember_after(fs, parent, &after, seq);
	}
	fs_reply_errno(req, r);
	fs_own_change_end(fs, parent, tracked);
}

void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, false);
}

void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, true);
}

void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	char *path = NULL, *dir = NULL, *rdir = NULL, *target = NULL;
	struct sftp_after after = {0};
	int r = new_name_path(fs, parent, name, &path);
	uint64_t seq = fs_seq(fs);
	if (r == 0)
		r = inode_path(fs->inodes, parent, false, &dir);
	if (r == 0)
		r = fs_remote_path(fs, parent, NULL, &rdir);
	if (r == 0 && !(target = linkpath_remote_target(fs->mountpoint, dir, link)))
		r = -ENOMEM;
	bool tracked = r == 0 && own_change_begin(fs->own_changes, parent);
	if (r == 0) {
		after.path = rdir;
		r = fs_mutate(fs, SFTP_SYMLINK, target, path, 0, &after, 1);
	}
	free(path);
	free(dir);
	free(rdir);
	free(target);
	listing_note(fs->listings, parent, name, r == 0 ? LISTING_ADDED : LISTING_DOUBT);
	if (r < 0) {
		fs_reply_errno(req, r);
	} else {
		fs_remember_after(fs, parent, &after, seq);
		/* A link's size is what readlink shows (containment may rewrite the target). */
		fs_reply_new_entry(req, parent, name, NULL, 0);
	}
	fs_own_change_end(fs, parent, tracked);
}

void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		  const char *newname, unsigned int flags)
{
	struct fs *fs = fs_of(req);
	char *from = NULL, *to = NULL;
	int r = 0;
	/* SFTP cannot swap two names atomically. */
	if (flags & ~RENAME_NOREPLACE)
		r = -EINVAL;
	char *dir = NULL, *newdir = NULL;
	struct sftp_after after[2] = {{0}};
	size_t n = 0;
	mark_name_stale(fs, parent, name);
	if (r == 0)
		r = fs_remote_path(fs, parent, name, &from);
	if (r == 0)
		r = new_name_path(fs, newparent, newname, &to);
	uint64_t seq = fs_seq(fs);
	if (r == 0)
		r = fs_remote_path(fs, parent, NULL, &dir);
	if (r == 0 && newparent != parent)
		r = fs_remote_path(fs, newparent, NULL, &newdir);
	bool tracked = r == 0 && own_change_begin(fs->own_changes, parent);
	bool tracked_new = r == 0 && newdir && own_change_begin(fs->own_changes, newparent);
	if (r == 0) {
		bool overwrite = !(flags & RENAME_NOREPLACE);
		after[n++].path = dir;
		if (newdir)
			after[n++].path = newdir;
		r = fs_mutate(fs, overwrite ? SFTP_RENAME_OVERWRITE : SFTP_RENAME, from, to, 0,
			      after, n);
		if (r == -ENOTSUP && overwrite)
			r = fs_mutate(fs, SFTP_RENAME, from, to, 0, after, n);
	}
	/* The source stays doubtful even when the rename succeeded: a rename onto another name of
	 * the same file leaves both names (POSIX). */
	listing_note(fs->listings, parent, name, LISTING_DOUBT);
	listing_note(fs->listings, newparent, newname, r == 0 ? LISTING_ADDED : LISTING_DOUBT);
	if (r == 0)
		r = inode_rename(fs->inodes, parent, name, newparent, newname);
	if (r == 0) {
		negative_remove(fs->negatives, newparent, newname);
		fs_remember_after(fs, parent, &after[0], seq);
		if (newdir)
			fs_remember_after(fs, newparent, &after[1], seq);
	}
	free(from);
	free(to);
	free(dir);
	free(newdir);
	fs_reply_errno(req, r);
	fs_own_change_end(fs, parent, tracked);
	fs_own_change_end(fs, newparent, tracked_new);
}

void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct fs *fs = fs_of(req);
	char *from = NULL, *to = NULL;
	char *dir = NULL;
	struct sftp_after after = {0};
	fs_mark_stale(fs, ino);
	int r = fs_remote_path(fs, ino, NULL, &from);
	if (r == 0)
		r = new_name_path(fs, newparent, newname, &to);
	uint64_t seq = fs_seq(fs);
	if (r == 0)
		r = fs_remote_path(fs, newparent, NULL, &dir);
	bool tracked = r == 0 && own_change_begin(fs->own_changes, newparent);
	if (r == 0) {
		after.path = dir;
		r = fs_mutate(fs, SFTP_HARDLINK, from, to, 0, &after, 1);
	}
	listing_note(fs->listings, newparent, newname, r == 0 ? LISTING_ADDED : LISTING_DOUBT);
	if (r == 0)
		fs_remember_after(fs, newparent, &after, seq);
	free(from);
	free(to);
	free(dir);
	/* Without the server's hardlink extension the file system cannot make links. */
	if (r == -ENOTSUP || r == -EOPNOTSUPP)
		r = -EPERM;
	/* The new name gets a node of its own: the kernel would keep the link count it has cached
	 * for this one. Dropping cached attributes only takes no lock the link holds. */
	if (r == 0 && fs->se)
		fs_forget_kernel_attrs(fs, ino);
	if (r < 0)
		fs_reply_errno(req, r);
	else
		fs_reply_new_entry(req, newparent, newname, NULL, 0);
	fs_own_change_end(fs, newparent, tracked);
}
