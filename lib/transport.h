/* transport.h: how sandmount reaches a sandbox. A transport is a small vtable; fs/ and exec/ only
 * call these functions and never learn whether the sandbox is an SSH host or a container.
 *
 * Every stream a transport hands out is a plain local socket fd (one end of a socketpair that the
 * transport bridges to the remote), so callers use read/write/poll with deadlines and shutdown()
 * for half-close. Closing the fd closes the remote side. */
#ifndef SANDMOUNT_TRANSPORT_H
#define SANDMOUNT_TRANSPORT_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include "config.h"
#include "util.h"

struct transport;
struct exec_proc;
struct sftp_attrs;

struct exec_spec {
	const char *command; /* run as `sh -c command` in the sandbox */
	const char *cwd;     /* absolute remote directory */
	char *const *env;    /* "K=V" entries to set, NULL-terminated, may be NULL */
	bool tty;	     /* allocate a PTY (stdout and stderr merged) */
	const char *term;    /* TERM for the PTY; NULL = "xterm" */
	unsigned rows, cols; /* initial PTY size */
};

/* Exit status convention (wait): 0..255 the command's exit code; EXEC_STATUS_SIGNALED(N) when
 * signal N killed it and the transport knows (the agent, SSH's exit-signal). A transport that
 * cannot tell (Docker's exec API reports 128+N as an exit code) passes on what it got.
 * -1 with e set: the connection was lost, the status is unknown. */
#define EXEC_STATUS_SIGNALED(n) (256 + (n))
#define EXEC_STATUS_SIGNAL_MAX	EXEC_STATUS_SIGNALED(64)
struct exec_ops {
	int (*resize)(struct exec_proc *p, unsigned rows, unsigned cols);
	/* Deliver a signal to the remote command's whole process group. */
	int (*signal)(struct exec_proc *p, int sig);
	/* Wait until the command has exited and all its output was delivered to the fds, up to
	 * the deadline (0 = none). Returns 0 with *status set, -ETIMEDOUT, or -1 (lost; e set). */
	int (*wait)(struct exec_proc *p, int64_t deadline, int *status, struct err *e);
	/* Release. If the command still runs, its process group is killed (TERM, KILL after 1 s).
	 */
	void (*free)(struct exec_proc *p);
};

struct exec_proc {
	const struct exec_ops *ops;
	int stdio_fd;  /* write: stdin (shutdown(SHUT_WR) sends EOF); read: stdout (tty: all output)
			*/
	int stderr_fd; /* read: stderr; -1 with a tty */
	/* Set by wait() when it returned a status: the transport delivered every change the
	 * command made to the watch callback before wait() returned (so no cache barrier is
	 * needed). False by default (transports allocate exec_procs zeroed). */
	bool coherent_exit;
};

/* A change watch (transport_ops.watch). */
struct watch_req {
	const char *dir;      /* absolute remote directory */
	uint32_t max_watches; /* watch at most this many directories (0: the kernel's bound) */
	/* Called from any thread for every file or directory created, written, removed or renamed
	 * under dir; path NULL means "events were lost: assume everything changed". inside: only
	 * what the name refers to changed (its data, attributes, a directory's entries), not the
	 * name; attrs (NULL when not sent) are its attributes after the change. */
	void (*changed)(void *ctx, const char *path, bool inside, const struct sftp_attrs *attrs);
	/* Optional: `unwatched` directories (a running total) could not be watched (the inotify
	 * limit, max_watches): changes in them are not reported. */
	void (*partial)(void *ctx, uint32_t unwatched);
	void *ctx;
};

struct transport_stats {
	bool connected;
	int64_t rtt_us; /* last measured round trip; -1 unknown */
	uint64_t bytes_in, bytes_out;
	unsigned channels; /* open channels/streams */
	char detail[256];  /* "ssh agent@host:2222", "docker unix:///var/run/docker.sock c1" */
};

struct transport_ops {
	const char *name;
	/* A stream to an SFTP v3 server for the sandbox's files. */
	int (*open_sftp)(struct transport *t, int *fd, struct err *e);
	int (*exec_start)(struct transport *t, const struct exec_spec *spec, struct exec_proc **out,
			  struct err *e);
	void (*stats)(struct transport *t, struct transport_stats *st);
	/* Optional (NULL, or -ENOTSUP at run time, when the sandbox cannot report changes): report
	 * the changes under req->dir through req's callbacks for as long as the transport lives. */
	int (*watch)(struct transport *t, const struct watch_req *req, struct err *e);
	void (*close)(struct transport *t);
};

struct transport {
	const struct transport_ops *ops;
};

/* Connect to the sandbox described by cfg (the only place that names backends). */
int transport_open(const struct sandbox_cfg *cfg, struct transport **out, struct err *e);

static inline int transport_open_sftp(struct transport *t, int *fd, struct err *e)
{
	return t->ops->open_sftp(t, fd, e);
}
static inline int transport_exec_start(struct transport *t, const struct exec_spec *s,
				       struct exec_proc **out, struct err *e)
{
	return t->ops->exec_start(t, s, out, e);
}
static inline void transport_stats(struct transport *t, struct transport_stats *st)
{
	t->ops->stats(t, st);
}
static inline int transport_watch(struct transport *t, const struct watch_req *req, struct err *e)
{
	if (!t->ops->watch) {
		err_set(e, "this sandbox cannot report changes");
		return -ENOTSUP;
	}
	return t->ops->watch(t, req, e);
}
static inline void transport_close(struct transport *t)
{
	if (t)
		t->ops->close(t);
}

/* Backends. */
int ssh_transport_open(const struct sandbox_cfg *cfg, struct transport **out, struct err *e);
int docker_transport_open(const struct sandbox_cfg *cfg, struct transport **out, struct err *e);

#endif
