/* kernel_size.c: making the kernel's idea of a file's size current (ops_read.c has the whole
 * invalidation rule).
 *
 * The kernel's size of an inode is a cache that mappings (a fault past it is SIGBUS) and
 * O_APPEND (the offset of every append) use without asking, and an open reply carries no
 * attributes. When the sandbox's size differs from the one the kernel holds (inode.h: what it
 * was last handed, raised by local writes) — an open found another size (a change not reported
 * yet, or no watch), or a change was reported for an open file, or the exec barrier passed —
 * the inode's kernel attributes are invalidated and its local path is stat'ed through the
 * mount: the kernel asks (getattr) and takes the size, smaller or larger.
 *
 * The kernel drops a getattr reply that an invalidation crossed, though its caller sees it: a
 * caller could see the new size while the kernel keeps the old one for its next append. So a
 * size from such a reply is not trusted across our invalidations (inode.h), getattrs of an
 * inode wait while a show of it runs (fs_await_shown), and a getattr of an open file that would
 * hand out a size the kernel may not hold shows it first (ops_entry.c).
 *
 * The stat is done by a helper process (stat_helper.c: a daemon thread in it would keep a killed
 * daemon from exiting), waited for until a deadline: when it is called from a FUSE request (an
 * open), the getattr it causes needs another worker, and if every worker were busy the wait would
 * never end. Past the deadline the caller goes on (logged) and the stat completes later. */
#include "fs_internal.h"
#include "log.h"
#include "stat_helper.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SHOW_TRIES 3

bool fs_req_is_show(struct fs *fs, fuse_req_t req)
{
	return stat_helper_owns(fs->stat_helper, fuse_req_ctx(req)->pid);
}

/* Every invalidation of an inode's kernel attributes goes through here: a getattr reply it
 * crosses is dropped by the kernel, so the size the kernel holds is not known after it. */
static void forget_kernel(struct fs *fs, fuse_ino_t ino, bool pages)
{
	inode_doubt_shown(fs->inodes, ino);
	int r = fs->se ? fuse_lowlevel_notify_inval_inode(fs->se, ino, pages ? 0 : -1, 0) : 0;
	if (r < 0 && r != -ENOENT)
		log_debug("invalidating inode %" PRIu64 ": %s", (uint64_t)ino, strerror(-r));
}

void fs_forget_kernel_attrs(struct fs *fs, fuse_ino_t ino)
{
	forget_kernel(fs, ino, false);
}

void fs_forget_kernel_inode(struct fs *fs, fuse_ino_t ino)
{
	forget_kernel(fs, ino, true);
}

uint64_t fs_await_shown(struct fs *fs, fuse_req_t req, fuse_ino_t ino)
{
	/* The helper's stat is the show itself: it does not wait for it. */
	if (!inode_showing(fs->inodes, ino) || fs_req_is_show(fs, req))
		return inode_await_shown(fs->inodes, ino, NULL);
	int64_t deadline = conn_op_deadline(fs->conn);
	struct timespec ts = {.tv_sec = deadline / 1000, .tv_nsec = deadline % 1000 * 1000000};
	return inode_await_shown(fs->inodes, ino, &ts);
}

void fs_show_size(struct fs *fs, fuse_ino_t ino)
{
	char *rel, *local;
	if (!fs->se || !fs->mountpoint[0] || stat_helper_cancelled(fs->stat_helper) ||
	    inode_path(fs->inodes, ino, false, &rel) < 0)
		return;
	local = str_printf("%s/%s", fs->mountpoint, rel);
	free(rel);
	if (!local)
		return;
	/* The helper's getattr is asked after this invalidation: unless another one crosses it
	 * (then again, a few times), the kernel applies it, and the size it noted is the kernel's.
	 */
	bool done = false;
	for (int i = 0; i < SHOW_TRIES; i++) {
		inode_show_begin(fs->inodes, ino);
		fs_forget_kernel_attrs(fs, ino);
		uint64_t mark = inode_await_shown(fs->inodes, ino, NULL);
		done = stat_helper_stat(fs->stat_helper, local, conn_op_deadline(fs->conn));
		bool settled = done && inode_show_settle(fs->inodes, ino, mark);
		inode_show_end(fs->inodes, ino);
		if (!done || settled)
			break;
	}
	free(local);
	if (!done && !stat_helper_cancelled(fs->stat_helper))
		log_warn("inode %" PRIu64 ": the kernel did not take its new size in time (every "
			 "FUSE worker busy?); an append or mapping may use the old one",
			 (uint64_t)ino);
}

void fs_stop_shows(struct fs *fs)
{
	stat_helper_cancel(fs->stat_helper);
}

/* The sandbox's size of `ino` now: the one its report brought (the agent's lstat when it sent
 * the report; a change after it is reported again), else asked for. 1 when writes of its open
 * handles are still on their way: a local writer is busy with it, and the size is one of a
 * moment in the middle. Those writes are not waited for: the report of a file is most often the
 * echo of a write still going on, and draining the writer's pipeline at each report halved a
 * long write's throughput. */
static int sandbox_size(struct fs *fs, fuse_ino_t ino, const struct sftp_attrs *reported,
			uint64_t *size)
{
	char *path;
	struct sftp_attrs a;
	if (fs_inode_writes_pending(fs, ino))
		return 1;
	const uint32_t need = SFTP_ATTR_SIZE | SFTP_ATTR_PERM;
	if (reported && (reported->flags & need) == need && S_ISREG(reported->perm)) {
		*size = reported->size;
		return 0;
	}
	int r = fs_remote_path(fs, ino, NULL, &path);
	if (r == 0) {
		r = fs_lstat(fs, path, &a);
		free(path);
	} else if (r == -ENOENT) {
		r = fs_open_inode_attrs(fs, ino, NULL, &a); /* its name is gone */
	}
	if (r == 0 && !(a.flags & SFTP_ATTR_SIZE))
		r = -EIO;
	if (r == 0)
		*size = a.size;
	return r;
}

void fs_show_changed_size(struct fs *fs, fuse_ino_t ino, const struct sftp_attrs *reported)
{
	if (!fs_inode_is_open(fs, ino) || inode_type(fs->inodes, ino) != S_IFREG)
		return;
	/* Most reports are the echo of our own writes. While they go on (writes to wait for, or
	 * written while we asked), the kernel's size is the writer's and the next open or stat
	 * takes the sandbox's; after them, the kernel has the size already. Either way no stat
	 * goes through the mount, which would hold it busy against an unmount. */
	uint64_t before = 0, after = 0, size = 0;
	bool known = inode_shown_size(fs->inodes, ino, &before);
	int r = sandbox_size(fs, ino, reported, &size);
	if (r > 0 || (known && inode_shown_size(fs->inodes, ino, &after) && after != before))
		return;
	/* Unreachable sandbox: a stat through the mount would only wait (holding the mount busy);
	 * after the reconnect the barrier drops the kernel's attributes, and the next open or stat
	 * takes the size. */
	if (r < 0 || (known && size == before))
		return;
	fs_show_size(fs, ino);
}

void fs_show_open_sizes(struct fs *fs)
{
	pthread_mutex_lock(&fs->files_lock);
	size_t n = 0;
	for (struct fs_file *f = fs->files; f; f = f->next)
		n++;
	fuse_ino_t *v = n ? malloc(n * sizeof(*v)) : NULL;
	size_t k = 0;
	for (struct fs_file *f = fs->files; v && f; f = f->next) {
		size_t i = 0;
		while (i < k && v[i] != f->ino)
			i++;
		if (i == k)
			v[k++] = f->ino;
	}
	pthread_mutex_unlock(&fs->files_lock);
	if (n && !v) {
		log_warn("exec barrier: out of memory; open files keep the size the kernel knew");
		return;
	}
	for (size_t i = 0; i < k; i++)
		fs_show_changed_size(fs, v[i], NULL);
	free(v);
}
