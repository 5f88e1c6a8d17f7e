/* expire.c: "revalidate this name" notifications for the kernel's dentry cache.
 *
 * libfuse 3.14 can only send a full invalidation of a name (fuse_lowlevel_notify_inval_entry),
 * which unhashes the dentry: for a directory that is some process's cwd (a gateway's shell sits
 * in its workspace), getcwd() then fails with ENOENT although nothing changed. Linux 6.2 added
 * FUSE_EXPIRE_ONLY: the entry only times out, so the next use revalidates it with a LOOKUP and
 * keeps it when it still names the same inode. libfuse learned it in 3.16; until then the
 * message is written to /dev/fuse here (it is one writev, like libfuse's own notifications).
 *
 * Every such notification may wait for a kernel lock (the directory's) that a FUSE request holds
 * while it waits for the sandbox. So the barrier after a reconnect does not run on the thread
 * that reconnects: a request holding that lock would wait for a connection only that thread can
 * make (it did, until the op timeout, when a reconnect met a listing in progress). The expirer
 * thread runs it; the daemon's own caches were dropped before (fs_barrier_reconnected). */
#include "fs_internal.h"

#include <errno.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "log.h"

/* Send FUSE_NOTIFY_INVAL_ENTRY with FUSE_EXPIRE_ONLY. 0 or -errno (-EINVAL: kernel too old). */
static int send_expire(struct fuse_session *se, uint64_t parent, const char *name, size_t len)
{
	struct fuse_notify_inval_entry_out arg = {
	    .parent = parent,
	    .namelen = (uint32_t)len,
	    .flags = FUSE_EXPIRE_ONLY,
	};
	struct fuse_out_header out = {
	    .len = (uint32_t)(sizeof(out) + sizeof(arg) + len + 1),
	    .error = FUSE_NOTIFY_INVAL_ENTRY,
	    .unique = 0,
	};
	struct iovec iov[] = {
	    {&out, sizeof(out)},
	    {&arg, sizeof(arg)},
	    {(void *)name, len + 1},
	};
	ssize_t n = writev(fuse_session_fd(se), iov, 3);
	if (n < 0)
		return -errno;
	return (size_t)n == out.len ? 0 : -EIO;
}

void fs_expire_entry(struct fs *fs, uint64_t parent, const char *name, bool is_dir)
{
	static atomic_bool unsupported;
	size_t len = strlen(name);
	int r = -EINVAL;
	if (!unsupported) {
		r = send_expire(fs->se, parent, name, len);
		if (r == -EINVAL) {
			unsupported = true;
			log_info(
			    "the kernel cannot expire entries (before Linux 6.2): directory names "
			    "are revalidated only when their cache times out");
		}
	}
	if (r == -EINVAL && !is_dir) /* a file's name is never a cwd: invalidate it outright */
		r = fuse_lowlevel_notify_inval_entry(fs->se, parent, name, len);
	if (r < 0 && r != -ENOENT && r != -EINVAL)
		log_debug("expiring entry %s: %s", name, strerror(-r));
}

/* ---- the expirer thread ---- */

struct expirer {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* work for the thread, and "done" for fs_expirer_wait */
	pthread_t thread;
	bool started, pending, stop;
	bool running;	  /* a barrier is being sent */
	unsigned awaited; /* barriers announced (fs_expirer_expect), not kicked yet */
};

struct expirer *fs_expirer_new(void)
{
	struct expirer *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_mutex_init(&x->lock, NULL);
	pthread_cond_init(&x->cond, &attr);
	pthread_condattr_destroy(&attr);
	return x;
}

static void *expirer_main(void *arg)
{
	struct fs *fs = arg;
	struct expirer *x = fs->expirer;
	pthread_mutex_lock(&x->lock);
	while (!x->stop) {
		if (!x->pending) {
			pthread_cond_wait(&x->cond, &x->lock);
			continue;
		}
		x->pending = false;
		x->running = true;
		pthread_mutex_unlock(&x->lock);
		fs_expire_kernel_all(fs);
		pthread_mutex_lock(&x->lock);
		x->running = false;
		pthread_cond_broadcast(&x->cond);
	}
	pthread_cond_broadcast(&x->cond);
	pthread_mutex_unlock(&x->lock);
	return NULL;
}

void fs_expirer_kick(struct fs *fs)
{
	struct expirer *x = fs->expirer;
	pthread_mutex_lock(&x->lock);
	if (!x->started && !x->stop)
		x->started = pthread_create(&x->thread, NULL, expirer_main, fs) == 0;
	x->pending = x->started;
	if (x->awaited)
		x->awaited--;
	pthread_cond_broadcast(&x->cond);
	bool started = x->started;
	pthread_mutex_unlock(&x->lock);
	if (!started) {
		log_warn(
		    "cache barrier: no expirer thread; the kernel's caches expire by their TTL");
	}
}

void fs_expirer_expect(struct fs *fs)
{
	struct expirer *x = fs->expirer;
	pthread_mutex_lock(&x->lock);
	if (!x->stop)
		x->awaited++;
	pthread_mutex_unlock(&x->lock);
}

int fs_expirer_wait(struct fs *fs, int timeout_ms)
{
	struct expirer *x = fs->expirer;
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	int rc = 0;
	pthread_mutex_lock(&x->lock);
	while ((x->awaited || x->pending || x->running) && !x->stop) {
		if (pthread_cond_timedwait(&x->cond, &x->lock, &until) == ETIMEDOUT) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&x->lock);
	return rc;
}

void fs_stop_expirer(struct fs *fs)
{
	struct expirer *x = fs->expirer;
	if (!x)
		return;
	pthread_mutex_lock(&x->lock);
	x->stop = true;
	x->awaited = 0;
	x->pending = false;
	pthread_cond_broadcast(&x->cond);
	bool started = x->started;
	x->started = false;
	pthread_mutex_unlock(&x->lock);
	if (started)
		pthread_join(x->thread, NULL);
}

void fs_expirer_free(struct expirer *x)
{
	if (!x)
		return;
	pthread_cond_destroy(&x->cond);
	pthread_mutex_destroy(&x->lock);
	free(x);
}
