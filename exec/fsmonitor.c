/* fsmonitor.c: sandmount-fsmonitor, git's fsmonitor hook (protocol version 2) for a repository on
 * a sandmount mount: `git config core.fsmonitor sandmount-fsmonitor`. Git runs it as
 * `sandmount-fsmonitor 2 TOKEN` in the worktree; it asks the daemon of the mount holding the
 * worktree for the paths changed since TOKEN (the daemon's change journal, fed by the sandbox's
 * watch) and prints the new token, NUL, then those paths relative to the worktree, each NUL
 * terminated, or "/" alone when everything may have changed. Every path is printed both as a file
 * and as a directory ("p" and "p/"): a removed or renamed directory has no type left to tell.
 * When none of the changes is git's (all in .git or outside the worktree), the token git gave is
 * handed back: git then has no reason to rewrite its index (which would be a change again).
 * Fails safe: any error exits non-zero (git then scans everything); it never says "nothing
 * changed" unless the daemon's journal vouches for it. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl_proto.h"
#include "runtime.h"
#include "util.h"

/* The daemon syncs with the sandbox's watch (a round trip or two) before it answers. */
#define REPLY_TIMEOUT_MS 30000

static int fail(const char *fmt, const char *arg)
{
	fprintf(stderr, "sandmount-fsmonitor: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return 1;
}

static int connect_daemon(const char *mountpoint)
{
	struct err e;
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (runtime_socket_path(mountpoint, addr.sun_path, sizeof(addr.sun_path), &e) < 0)
		return -1;
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s >= 0 && connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		close(s);
		s = -1;
	}
	return s;
}

/* Ask for the changes since token; reply holds the CTL_CHANGES_REPLY payload. */
static int query(const char *mountpoint, const char *token, struct buf *reply)
{
	int sock = connect_daemon(mountpoint);
	if (sock < 0)
		return fail("no sandmount daemon serves %s", mountpoint);
	struct buf req;
	buf_init(&req);
	buf_put_cstring(&req, token);
	uint8_t type = 0;
	int nfds = 0;
	int r = ctl_send(sock, CTL_CHANGES, &req, NULL, 0);
	if (r == 0)
		r = ctl_recv(sock, &type, reply, NULL, 0, &nfds, deadline_in(REPLY_TIMEOUT_MS));
	close(sock);
	buf_free(&req);
	if (r < 0)
		return fail("the daemon did not answer: %s", strerror(-r));
	if (type != CTL_CHANGES_REPLY)
		return fail("the daemon of %s keeps no change journal", mountpoint);
	return 0;
}

/* path (relative to the mount root) relative to the worktree (wt, relative to the mount root,
 * "" for the root); NULL when outside it, the worktree itself, or inside its .git. */
static const char *in_worktree(const char *path, const char *wt)
{
	size_t n = strlen(wt);
	if (n && (strncmp(path, wt, n) != 0 || path[n] != '/'))
		return NULL;
	const char *p = path + (n ? n + 1 : 0);
	if (!*p || !strcmp(p, ".git") || !strncmp(p, ".git/", 5))
		return NULL;
	return p;
}

static void put_path(struct buf *out, const char *p)
{
	buf_put_bytes(out, p, strlen(p) + 1);
	buf_put_bytes(out, p, strlen(p));
	buf_put_bytes(out, "/", 2);
}

/* Build git's answer to `asked` from the reply into out; -1 when the reply is malformed. */
static int answer(struct buf *reply, const char *asked, const char *wt, struct buf *out)
{
	char *token = NULL, *path = NULL;
	uint8_t all;
	uint32_t n;
	struct buf paths;
	if (buf_get_cstring(reply, &token) < 0 || buf_get_u8(reply, &all) < 0 ||
	    buf_get_u32(reply, &n) < 0) {
		free(token);
		return -1;
	}
	buf_init(&paths);
	if (all)
		buf_put_bytes(&paths, "/", 2);
	for (uint32_t i = 0; !all && i < n; i++) {
		if (buf_get_cstring(reply, &path) < 0)
			break;
		const char *p = in_worktree(path, wt);
		if (p)
			put_path(&paths, p);
		free(path);
		path = NULL;
	}
	const char *next = paths.len ? token : asked; /* nothing of git's changed: keep its token */
	buf_put_bytes(out, next, strlen(next) + 1);
	buf_put_bytes(out, paths.data, paths.len);
	int rc = buf_remaining(reply) || !buf_ok(&paths) || !buf_ok(out) ? -1 : 0;
	free(token);
	buf_free(&paths);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc != 3 || strcmp(argv[1], "2") != 0) {
		fprintf(stderr, "usage: sandmount-fsmonitor 2 TOKEN (git's fsmonitor hook, "
				"protocol version 2)\n");
		return 1;
	}
	char cwd[PATH_MAX], mountpoint[PATH_MAX];
	char *wt = NULL;
	if (!getcwd(cwd, sizeof(cwd)))
		return fail("cannot get the current directory: %s", strerror(errno));
	int r = mounts_find(cwd, mountpoint, sizeof(mountpoint), &wt);
	if (r != 1)
		return fail("%s is not on a sandmount mount", cwd);
	struct buf reply, out;
	buf_init(&reply);
	buf_init(&out);
	/* Nothing is printed before the whole answer is known to be good. */
	r = query(mountpoint, argv[2], &reply);
	if (r == 0 && answer(&reply, argv[2], wt, &out) < 0)
		r = fail("%s", "malformed answer from the daemon");
	if (r == 0 && (fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout) != 0))
		r = fail("cannot write the answer: %s", strerror(errno));
	buf_free(&reply);
	buf_free(&out);
	free(wt);
	return r;
}
