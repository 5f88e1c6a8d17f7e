/* notify.c: changes the sandbox reported (the transport's watch; docs/design.md, decision 5) become
 * kernel cache invalidations, so cached attributes, data and entries can be trusted for long. The
 * path is walked down the inode table without creating anything: what the table does not know, the
 * kernel cannot hold, except a negative entry in the last known directory, which is dropped too.
 * The notify calls run with no lock held: the kernel may call back into lookup or forget while
 * it handles them. */
#include "fs_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "negative.h"

/* The sandbox changed `ino`: nothing cached of it is served again (ops_read.c has the rule): not
 * the daemon's read-ahead, not the size open files knew, not the kernel's attributes and pages. */
static void inval_inode(struct fs *fs, uint64_t ino)
{
	inode_show_begin(fs->inodes, ino); /* getattrs wait until the kernel has the new size */
	fs_mark_stale(fs, ino);
	fs_data_changed(fs, ino);
	fs_forget_size(fs, ino);
	fs_forget_kernel_inode(fs, ino);
	fs_show_changed_size(fs, ino); /* mappings and O_APPEND take no size on their own */
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

void fs_notify_change(void *arg, const char *remote_path)
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
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		dir = ino;
		name = c;
		ino = inode_lookup(fs->inodes, dir, c);
		if (!ino)
			break;
	}
	if (ino)
		inval_inode(fs, ino); /* attributes and data of the object itself */
	if (name) {
		/* its name, or a cached "does not exist": revalidated at the next use */
		fs_expire_entry(fs, dir, name, ino && inode_type(fs->inodes, ino) == S_IFDIR);
		negative_remove(fs->negatives, dir, name);
		inval_inode(fs, dir); /* the listing of the directory holding it */
	}
	free(copy);
}
