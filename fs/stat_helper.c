/* stat_helper.c: a separate process that stats paths through our own mount for the daemon.
 *
 * kernel_size.c makes the kernel take a file's new size by stat'ing it through the mount. Once a
 * FUSE worker has read a request, the kernel waits for its answer uninterruptibly, even for a
 * SIGKILLed caller. A daemon thread doing that stat would, if the daemon were killed meanwhile,
 * keep the dying daemon from ever exiting: its /dev/fuse stays open in it, so the request is
 * neither answered nor aborted (the mountpoint stays hung until someone aborts the connection
 * by hand). The helper holds no descriptor of the connection: when the daemon dies, the kernel
 * aborts the connection, the helper's stat fails, the helper sees its socket end and exits.
 *
 * The helper is this executable started again (`/proc/self/exe --stat-helper` with posix_spawn;
 * a bare fork of the threaded, sanitized daemon could stop in a lock another thread held, still
 * holding /dev/fuse) with a SOCK_SEQPACKET socket as descriptor 3. A request is one message: the
 * path, with a descriptor (SCM_RIGHTS) to which the helper writes one byte once the stat has
 * returned. One thread per stat in flight, at most HELPER_MAX_INFLIGHT; past that the helper
 * closes the reply descriptor at once and the caller sees "not done". */
#include "stat_helper.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define HELPER_FD	    3
#define HELPER_MAX_INFLIGHT 64

extern char **environ;

/* ---- the daemon's end ---- */

struct stat_helper {
	pthread_mutex_t lock;
	int sock; /* -1 while no helper runs */
	pid_t pid;
	/* Readable once stat_helper_cancel ran: every wait ends, no request is sent. */
	int cancel[2];
	atomic_bool cancelled;
};

struct stat_helper *stat_helper_new(void)
{
	struct stat_helper *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	if (pipe2(h->cancel, O_CLOEXEC) < 0) {
		free(h);
		return NULL;
	}
	pthread_mutex_init(&h->lock, NULL);
	h->sock = -1;
	return h;
}

void stat_helper_cancel(struct stat_helper *h)
{
	if (!h || atomic_exchange(&h->cancelled, true))
		return;
	if (write(h->cancel[1], "x", 1) < 0) {
		/* a pipe with room for a byte: cannot fail */
	}
}

bool stat_helper_cancelled(struct stat_helper *h)
{
	return h && atomic_load(&h->cancelled);
}

/* Under h->lock: forget a helper that is gone (or is being let go), reaping it if it exited. */
static void helper_drop(struct stat_helper *h)
{
	if (h->sock >= 0)
		close(h->sock);
	h->sock = -1;
	if (h->pid > 0)
		waitpid(h->pid, NULL, WNOHANG);
	h->pid = 0;
}

bool stat_helper_owns(struct stat_helper *h, pid_t tid)
{
	pthread_mutex_lock(&h->lock);
	pid_t pid = h->pid;
	pthread_mutex_unlock(&h->lock);
	char task[64];
	snprintf(task, sizeof(task), "/proc/%d/task/%d", (int)pid, (int)tid);
	return pid > 0 && access(task, F_OK) == 0;
}

void stat_helper_free(struct stat_helper *h)
{
	if (!h)
		return;
	helper_drop(h); /* it sees its socket end and exits */
	close(h->cancel[0]);
	close(h->cancel[1]);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

/* Under h->lock. */
static int helper_spawn(struct stat_helper *h)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	/* dup2 onto HELPER_FD clears close-on-exec there (also when sv[1] already is 3). */
	posix_spawn_file_actions_adddup2(&fa, sv[1], HELPER_FD);
	/* The calling thread may block signals (the transport's threads block all): the helper
	 * starts with none blocked and default dispositions. */
	posix_spawnattr_t sa;
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_init(&sa);
	posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setsigmask(&sa, &none);
	posix_spawnattr_setsigdefault(&sa, &all);
	char *argv[] = {"sandmount", STAT_HELPER_ARG, NULL};
	pid_t pid;
	int r = posix_spawn(&pid, "/proc/self/exe", &fa, &sa, argv, environ);
	posix_spawnattr_destroy(&sa);
	posix_spawn_file_actions_destroy(&fa);
	close(sv[1]);
	if (r != 0) {
		close(sv[0]);
		return -r;
	}
	h->sock = sv[0];
	h->pid = pid;
	return 0;
}

/* Under h->lock: one request; -errno when the helper cannot take it. */
static int helper_send(struct stat_helper *h, const char *path, int reply_fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = {0};
	struct iovec iov = {.iov_base = (void *)path, .iov_len = strlen(path)};
	struct msghdr m = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &reply_fd, sizeof(int));
	return sendmsg(h->sock, &m, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 ? -errno : 0;
}

/* Hand the request to the helper, starting it (again) when none runs. */
static int helper_request(struct stat_helper *h, const char *path, int reply_fd)
{
	pthread_mutex_lock(&h->lock);
	int r = -EPIPE;
	for (int attempt = 0; attempt < 2 && r == -EPIPE; attempt++) {
		if (h->sock < 0 && (r = helper_spawn(h)) < 0)
			break;
		r = helper_send(h, path, reply_fd);
		if (r == -EPIPE || r == -ECONNRESET || r == -ECONNREFUSED) {
			log_warn("the stat helper (pid %d) is gone; starting another", (int)h->pid);
			helper_drop(h);
			r = -EPIPE;
		}
	}
	pthread_mutex_unlock(&h->lock);
	return r;
}

/* Wait until the helper writes its byte (true) or closes without it, the deadline or a cancel. */
static bool wait_reply(struct stat_helper *h, int fd, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - now_ms();
		struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
				      {.fd = h->cancel[0], .events = POLLIN}};
		int n = poll(p, 2, left < 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || p[1].revents)
			return false;
		char b;
		ssize_t got;
		while ((got = read(fd, &b, 1)) < 0 && errno == EINTR)
			;
		return got == 1;
	}
}

bool stat_helper_stat(struct stat_helper *h, const char *path, int64_t deadline)
{
	int pair[2];
	if (!h || stat_helper_cancelled(h) ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
		return false;
	int r = helper_request(h, path, pair[1]);
	close(pair[1]); /* the helper's copy is the only one left: its end means "done" or "gone" */
	bool done = false;
	if (r < 0)
		log_warn("%s: the stat helper could not take it: %s", path, strerror(-r));
	else
		done = wait_reply(h, pair[0], deadline);
	close(pair[0]);
	return done;
}

/* ---- the helper process ---- */

struct job {
	int reply_fd;
	char path[];
};

static atomic_int inflight;

static void *job_run(void *arg)
{
	struct job *j = arg;
	struct stat st;
	(void)stat(j->path, &st); /* its only purpose: the kernel asks the daemon for attributes */
	if (write(j->reply_fd, "x", 1) < 0) {
		/* the daemon stopped waiting; nothing to tell */
	}
	close(j->reply_fd);
	free(j);
	atomic_fetch_sub(&inflight, 1);
	return NULL;
}

/* One request: the path (NUL-terminated into `path`) and the reply descriptor (-1 if none).
 * 0 at the daemon's end, 1 for a request, -1 on a broken one (skipped). */
static int receive_request(char *path, size_t cap, int *reply_fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = path, .iov_len = cap - 1};
	struct msghdr m = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	*reply_fd = -1;
	ssize_t n;
	while ((n = recvmsg(HELPER_FD, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	if (n == 0)
		return 0;
	if (n < 0)
		return errno == EAGAIN ? -1 : 0;
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
	    c->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(reply_fd, CMSG_DATA(c), sizeof(int));
	path[n] = 0;
	if ((m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || *reply_fd < 0 || path[0] != '/' ||
	    strlen(path) != (size_t)n) {
		if (*reply_fd >= 0)
			close(*reply_fd);
		return -1;
	}
	return 1;
}

static void start_job(const char *path, int reply_fd)
{
	size_t len = strlen(path);
	struct job *j = malloc(sizeof(*j) + len + 1);
	pthread_t th;
	pthread_attr_t ta;
	if (!j || atomic_fetch_add(&inflight, 1) >= HELPER_MAX_INFLIGHT) {
		if (j)
			atomic_fetch_sub(&inflight, 1);
		free(j);
		close(reply_fd);
		return;
	}
	j->reply_fd = reply_fd;
	memcpy(j->path, path, len + 1);
	pthread_attr_init(&ta);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &ta, job_run, j) != 0) {
		atomic_fetch_sub(&inflight, 1);
		close(reply_fd);
		free(j);
	}
	pthread_attr_destroy(&ta);
}

int stat_helper_main(void)
{
	struct stat st;
	if (fstat(HELPER_FD, &st) < 0 || !S_ISSOCK(st.st_mode)) {
		fprintf(stderr, "sandmount: %s is internal: the daemon starts it\n",
			STAT_HELPER_ARG);
		return 2;
	}
	close_range(HELPER_FD + 1, ~0U, 0); /* nothing of the daemon's; never /dev/fuse */
	prctl(PR_SET_NAME, "sandmount-stat");
	signal(SIGPIPE, SIG_IGN);
	static char path[PATH_MAX + 1];
	for (;;) {
		int reply_fd;
		int r = receive_request(path, sizeof(path), &reply_fd);
		if (r == 0)
			_exit(0); /* the daemon is gone (a stat still waiting ends when the mount
				     does) */
		if (r > 0)
			start_job(path, reply_fd);
	}
}
