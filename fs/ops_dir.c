/* ops_dir.c: FUSE directory operations. The whole remote directory is listed once into a
 * snapshot owned by the open directory; readdir and readdirplus hand it out by index, so
 * offsets stay valid however the remote changes meanwhile.
 *
 * While the sandbox reports its changes, the kernel keeps listings (cache_readdir): opendir asks
 * the sandbox nothing, tells the kernel to keep its cached listing when ours is still fresh, and
 * the listing is fetched on the first readdir (which a kernel serving its cache never sends).
 * Without change reports, opendir lists at once, so errors come where programs expect them. */
#include "fs_internal.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct dir_entry {
	char *name;
	struct sftp_attrs attrs;
};

struct dir_snapshot {
	fuse_ino_t ino;
	bool listed;
	uint64_t seq; /* fs_seq() before the listing was asked for */
	struct dir_entry *v;
	size_t n, cap;
};

static void snapshot_free(struct dir_snapshot *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i].name);
	free(d->v);
	free(d);
}

static int snapshot_add(void *ctx, const char *name, const struct sftp_attrs *a)
{
	struct dir_snapshot *d = ctx;
	if (fs_hidden_name(d->ino, name))
		return 0;
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 32;
		struct dir_entry *v = realloc(d->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		d->v = v;
		d->cap = cap;
	}
	char *copy = strdup(name);
	if (!copy)
		return -ENOMEM;
	d->v[d->n++] = (struct dir_entry){copy, *a};
	return 0;
}

static int cmp_by_name(const void *a, const void *b)
{
	const struct dir_entry *x = *(const struct dir_entry *const *)a;
	const struct dir_entry *y = *(const struct dir_entry *const *)b;
	int c = strcmp(x->name, y->name);
	return c ? c : (x > y) - (x < y); /* equal names: the earlier entry first */
}

/* A hostile sandbox may list a name twice: keep its first occurrence, so a name has one entry. */
static int drop_duplicates(struct dir_snapshot *d)
{
	if (d->n < 2)
		return 0;
	struct dir_entry **by_name = malloc(d->n * sizeof(*by_name));
	if (!by_name)
		return -ENOMEM;
	for (size_t i = 0; i < d->n; i++)
		by_name[i] = &d->v[i];
	qsort(by_name, d->n, sizeof(*by_name), cmp_by_name);
	size_t dups = 0;
	for (size_t i = 1, keep = 0; i < d->n; i++) {
		if (strcmp(by_name[i]->name, by_name[keep]->name)) {
			keep = i;
			continue;
		}
		free(by_name[i]->name);
		by_name[i]->name = NULL;
		dups++;
	}
	free(by_name);
	if (!dups)
		return 0;
	size_t w = 0;
	for (size_t i = 0; i < d->n; i++)
		if (d->v[i].name)
			d->v[w++] = d->v[i];
	d->n = w;
	log_warn("listing of inode %llu: %zu duplicate names dropped", (unsigned long long)d->ino,
		 dups);
	return 0;
}

/* Every name of the listing, as the complete listing of the directory (listing.h): lookups of
 * other names are then answered "does not exist" at once, until a change says otherwise. */
static void hold_names(struct fs *fs, struct dir_snapshot *d, uint64_t token)
{
	for (size_t i = 0; i < d->n; i++)
		if (listing_add_name(fs->listings, d->ino, token, d->v[i].name) < 0)
			return;
	listing_commit(fs->listings, d->ino, token);
}

/* Listing is idempotent: after a lost connection, list again from the start. */
static int list_dir(struct fs *fs, struct dir_snapshot *d)
{
	char *path;
	struct fs_call call;
	d->seq = fs_seq(fs);
	int r = fs_remote_path(fs, d->ino, NULL, &path);
	if (r < 0)
		return r;
	r = fs_call_begin(fs, &call);
	if (r < 0) {
		free(path);
		return r;
	}
	/* Begun before the sandbox is asked: a change reported meanwhile voids it. */
	uint64_t token = atomic_load(&fs->watched) ? listing_begin(fs->listings, d->ino) : 0;
	do {
		for (size_t i = 0; i < d->n; i++)
			free(d->v[i].name);
		d->n = 0;
		r = sftp_list_dir(call.sftp, path, snapshot_add, d);
	} while (fs_call_retry(&call, &r));
	fs_call_end(&call);
	free(path);
	if (r == 0)
		r = drop_duplicates(d);
	d->listed = r == 0;
	if (r == 0 && atomic_load(&fs->watched))
		inode_set_listed(fs->inodes, d->ino, now_ms() + (int64_t)(fs->timeout_s * 1000),
				 d->seq);
	if (r == 0 && token)
		hold_names(fs, d, token);
	else if (token)
		listing_drop(fs->listings, d->ino); /* nothing pending is left behind */
	return r;
}

void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct dir_snapshot *d = calloc(1, sizeof(*d));
	bool watched = atomic_load(&fs->watched);
	int r = d ? 0 : -ENOMEM;
	if (d)
		d->ino = ino;
	if (d && watched) {
		fi->cache_readdir = 1;
		fi->keep_cache = inode_listing_fresh(fs->inodes, ino, now_ms());
	} else if (d) {
		r = list_dir(fs, d);
	}
	if (r < 0) {
		if (d)
			snapshot_free(d);
		fs_reply_errno(req, r);
		return;
	}
	fi->fh = (uintptr_t)d;
	atomic_fetch_add(&fs->open_dirs, 1);
	if (fuse_reply_open(req, fi) != 0) {
		atomic_fetch_sub(&fs->open_dirs, 1);
		snapshot_free(d);
	}
}

/* Add entry `index` (0 ".", 1 "..", then the snapshot) to buf; the size it takes, which is
 * larger than `room` when it did not fit. 0 past the end. */
static size_t add_entry(fuse_req_t req, struct dir_snapshot *d, size_t index, char *buf,
			size_t room, bool plus)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e = {0};
	const char *name;
	off_t next = (off_t)index + 1;

	if (index < 2) {
		/* The kernel takes no lookup for "." and "..", with or without plus. */
		name = index == 0 ? "." : "..";
		e.attr.st_ino = index == 0 ? d->ino : inode_parent(fs->inodes, d->ino);
		e.attr.st_mode = S_IFDIR;
	} else if (index - 2 < d->n) {
		struct dir_entry *de = &d->v[index - 2];
		name = de->name;
		e.attr.st_mode = fs_attrs_type(&de->attrs);
		e.attr.st_ino = inode_enter(fs->inodes, d->ino, name, e.attr.st_mode, 0, 0);
		/* Files open here may have writes the snapshot's size does not show, and a
		 * symlink's size is that of the target readlink shows (ops_entry.c): for them
		 * e.ino stays 0, which tells the kernel to take the name only. */
		if (plus && e.attr.st_mode != S_IFLNK && !fs_inode_is_open(fs, e.attr.st_ino) &&
		    fs_make_entry(fs, d->ino, name, &de->attrs, d->seq, &e) < 0)
			return room + 1;
		if (!e.ino) /* d_ino as stat shows it (the remote number with the agent) */
			e.attr.st_ino = fs_shown_ino(fs, e.attr.st_ino, &de->attrs);
	} else {
		return 0;
	}
	if (!plus)
		return fuse_add_direntry(req, buf, room, name, &e.attr, next);
	size_t size = fuse_add_direntry_plus(req, buf, room, name, &e, next);
	if (size > room && e.ino)
		inode_forget(fs->inodes, e.ino, 1); /* not handed out after all */
	return size;
}

static void read_dir(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi, bool plus)
{
	struct dir_snapshot *d = (struct dir_snapshot *)(uintptr_t)fi->fh;
	int r = d->listed ? 0 : list_dir(fs_of(req), d);
	if (r < 0) {
		fs_reply_errno(req, r);
		return;
	}
	char *buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t used = 0;
	for (size_t index = off < 0 ? 0 : (size_t)off;; index++) {
		size_t n = add_entry(req, d, index, buf + used, size - used, plus);
		if (n == 0 || n > size - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	(void)ino;
	read_dir(req, size, off, fi, false);
}

void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)ino;
	read_dir(req, size, off, fi, true);
}

void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	atomic_fetch_sub(&fs_of(req)->open_dirs, 1);
	snapshot_free((struct dir_snapshot *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

void fs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, 0);
}
