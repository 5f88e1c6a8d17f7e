/* agent_mux_ops.c: what callers open through the agent's mux — SFTP streams, commands as
 * exec_procs (transport.h's contract: resize, signal to the process group, wait with a deadline,
 * free that kills a command still running) and the change watch. */
#include "mux/agent_mux_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct mux_exec {
	struct exec_proc base;
	struct mchan *c;
};

/* A socket pair: *ours non-blocking (the pump's), *theirs for the caller; both close-on-exec. */
static int make_pair(int *ours, int *theirs, struct err *e)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		err_set(e, "socketpair: %s", strerror(errno));
		return -1;
	}
	fd_set_nonblock(sv[0], true);
	*ours = sv[0];
	*theirs = sv[1];
	return 0;
}

int agent_mux_open_sftp(struct agent_mux *m, int *fd, struct err *e)
{
	struct mchan *c = chan_new(m, MK_SFTP);
	int theirs = -1;
	if (!c || make_pair(&c->io_fd, &theirs, e) < 0) {
		if (c)
			chan_destroy(c);
		else
			err_set(e, "out of memory opening an sftp stream");
		return -1;
	}
	pthread_mutex_lock(&m->lock);
	int rc = chan_open(m, c, MUX_OPEN_SFTP, NULL, NULL, e);
	pthread_mutex_unlock(&m->lock);
	if (rc < 0) {
		close(theirs);
		return -1;
	}
	*fd = theirs;
	return 0;
}

/* ---- exec ---- */

static struct mux_exec *of_proc(struct exec_proc *p)
{
	return (struct mux_exec *)p;
}

static int exec_send(struct exec_proc *p, uint8_t type, uint32_t a, uint32_t b, bool two)
{
	struct mchan *c = of_proc(p)->c;
	struct agent_mux *m = c->m;
	pthread_mutex_lock(&m->lock);
	int rc = m->dead ? -EPIPE : 0;
	if (rc == 0 && !c->exited) {
		size_t s = tx_begin(m, type, c->id);
		buf_put_u32(&m->tx, a);
		if (two)
			buf_put_u32(&m->tx, b);
		tx_end(m, s);
		mux_wake(m);
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

static int exec_resize(struct exec_proc *p, unsigned rows, unsigned cols)
{
	if (!of_proc(p)->c->tty)
		return -ENOTTY;
	return exec_send(p, MUX_RESIZE, rows, cols, true);
}

static int exec_signal(struct exec_proc *p, int sig)
{
	if (sig <= 0 || sig >= 65)
		return -EINVAL;
	return exec_send(p, MUX_SIGNAL, (uint32_t)sig, 0, false);
}

static int exec_wait(struct exec_proc *p, int64_t deadline, int *status, struct err *e)
{
	struct mchan *c = of_proc(p)->c;
	struct agent_mux *m = c->m;
	int rc;
	pthread_mutex_lock(&m->lock);
	for (;;) {
		/* Finished, and the changes that came before the exit went to the callbacks. */
		bool delivered = m->events_delivered >= c->events_before_exit;
		if (c->finished && (delivered || m->dead)) {
			*status = c->status;
			p->coherent_exit = c->coherent && delivered;
			rc = 0;
			break;
		}
		if (m->dead) {
			err_set(e, "%s; the command's exit status is unknown", m->dead_msg);
			rc = -1;
			break;
		}
		if (!mux_wait(m, deadline)) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

/* The pump sends CLOSE: the agent kills the group if it still runs. */
static void exec_free(struct exec_proc *p)
{
	struct mchan *c = of_proc(p)->c;
	struct agent_mux *m = c->m;
	if (p->stdio_fd >= 0)
		close(p->stdio_fd);
	if (p->stderr_fd >= 0)
		close(p->stderr_fd);
	pthread_mutex_lock(&m->lock);
	c->released = true;
	mux_wake(m);
	pthread_mutex_unlock(&m->lock);
	free(p);
}

static const struct exec_ops mux_exec_ops = {
    .resize = exec_resize,
    .signal = exec_signal,
    .wait = exec_wait,
    .free = exec_free,
};

static void spawn_payload(struct buf *tx, const void *arg)
{
	const struct exec_spec *spec = arg;
	uint32_t n = 0;
	while (spec->env && spec->env[n])
		n++;
	buf_put_cstring(tx, spec->command);
	buf_put_cstring(tx, spec->cwd ? spec->cwd : "");
	buf_put_u32(tx, n);
	for (uint32_t i = 0; i < n; i++)
		buf_put_cstring(tx, spec->env[i]);
	buf_put_u8(tx, spec->tty);
	buf_put_cstring(tx, spec->term ? spec->term : "xterm");
	buf_put_u32(tx, spec->rows ? spec->rows : 24);
	buf_put_u32(tx, spec->cols ? spec->cols : 80);
}

static bool valid_env(char *const *env, struct err *e)
{
	for (; env && *env; env++) {
		const char *eq = strchr(*env, '=');
		if (!eq || eq == *env) {
			err_set(e, "invalid environment entry \"%s\" (expected NAME=VALUE)", *env);
			return false;
		}
	}
	return true;
}

int agent_mux_exec_start(struct agent_mux *m, const struct exec_spec *spec, struct exec_proc **out,
			 struct err *e)
{
	if (!valid_env(spec->env, e))
		return -1;
	struct mux_exec *x = calloc(1, sizeof(*x));
	struct mchan *c = x ? chan_new(m, MK_EXEC) : NULL;
	int io = -1, er = -1;
	if (!c) {
		free(x);
		err_set(e, "out of memory starting a remote command");
		return -1;
	}
	c->tty = spec->tty;
	if (make_pair(&c->io_fd, &io, e) < 0 || (!spec->tty && make_pair(&c->err_fd, &er, e) < 0)) {
		if (io >= 0)
			close(io);
		chan_destroy(c);
		free(x);
		return -1;
	}
	pthread_mutex_lock(&m->lock);
	int rc = chan_open(m, c, MUX_OPEN_SPAWN, spawn_payload, spec, e);
	pthread_mutex_unlock(&m->lock);
	if (rc < 0) {
		close(io);
		if (er >= 0)
			close(er);
		free(x);
		return -1;
	}
	x->base.ops = &mux_exec_ops;
	x->base.stdio_fd = io;
	x->base.stderr_fd = er;
	x->c = c;
	*out = &x->base;
	return 0;
}

/* ---- watch ---- */

static void watch_payload(struct buf *tx, const void *arg)
{
	const struct watch_req *req = arg;
	buf_put_cstring(tx, req->dir);
	buf_put_u32(tx, req->max_watches);
}

int agent_mux_watch(struct agent_mux *m, const struct watch_req *req, struct err *e)
{
	struct mchan *c = chan_new(m, MK_WATCH);
	const char *dir = req->dir;
	size_t len = strlen(dir);
	while (len > 1 && dir[len - 1] == '/')
		len--;
	char *trimmed = c ? strndup(dir, len) : NULL;
	if (!trimmed) {
		if (c)
			chan_destroy(c);
		err_set(e, "out of memory starting a watch");
		return -1;
	}
	c->dir = trimmed;
	if (!strcmp(c->dir, "/"))
		c->dir[0] = 0; /* paths are "/" + relative */
	c->changed = req->changed;
	c->partial = req->partial;
	c->ctx = req->ctx;
	pthread_mutex_lock(&m->lock);
	int rc = chan_open(m, c, MUX_OPEN_WATCH, watch_payload, req, e);
	pthread_mutex_unlock(&m->lock);
	return rc;
}
