/* exec_relay.c: runs one sandexec command over the transport and relays its streams.
 *
 * The fds sandexec passed share their file descriptions with its terminal or pipes, so they are
 * never switched to O_NONBLOCK: the client's stdin is read only when poll() says it is readable,
 * and output is written to the client in pieces of at most PIPE_BUF bytes, only when poll() says
 * it is writable, so the thread keeps watching the control connection (signals, resizes, the
 * client going away) while the client is slow. The transport's streams are our own sockets and
 * use MSG_DONTWAIT. */
#include "exec_relay.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl_proto.h"
#include "log.h"

#define RELAY_BUF	      65536
#define MAX_ENV		      1024
#define WAIT_SLICE_MS	      100
#define EXIT_CODE_UNREACHABLE 125

struct request {
	uint32_t flags, rows, cols;
	char *command, *cwd_rel, *term;
	char **env; /* NULL-terminated */
};

/* One direction of bytes: src -> buffer -> dst. */
struct pump {
	int src, dst;
	bool src_is_socket; /* the transport's end: MSG_DONTWAIT */
	bool dst_is_socket;
	bool eof;	  /* src is finished */
	bool broken;	  /* dst failed: further data is dropped */
	bool reader_gone; /* dst failed with EPIPE: nobody reads the output any more */
	size_t off, len;
	uint8_t data[RELAY_BUF];
};

static void request_free(struct request *rq)
{
	free(rq->command);
	free(rq->cwd_rel);
	free(rq->term);
	for (char **e = rq->env; e && *e; e++)
		free(*e);
	free(rq->env);
}

static int parse_request(struct buf *b, struct request *rq)
{
	uint32_t nenv;
	memset(rq, 0, sizeof(*rq));
	if (buf_get_u32(b, &rq->flags) < 0 || buf_get_cstring(b, &rq->command) < 0 ||
	    buf_get_cstring(b, &rq->cwd_rel) < 0 || buf_get_u32(b, &rq->rows) < 0 ||
	    buf_get_u32(b, &rq->cols) < 0 || buf_get_cstring(b, &rq->term) < 0 ||
	    buf_get_u32(b, &nenv) < 0 || nenv > MAX_ENV)
		return -1;
	rq->env = calloc(nenv + 1, sizeof(char *));
	if (!rq->env)
		return -1;
	for (uint32_t i = 0; i < nenv; i++) {
		if (buf_get_cstring(b, &rq->env[i]) < 0)
			return -1;
		char *eq = strchr(rq->env[i], '=');
		if (!eq || eq == rq->env[i])
			return -1;
	}
	return 0;
}

/* remote_root + "/" + rel with "." and ".." resolved lexically; NULL if rel climbs out. */
static char *remote_cwd(const char *root, const char *rel)
{
	size_t cap = strlen(root) + strlen(rel) + 2;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	strcpy(out, root);
	size_t root_len = strlen(out);
	while (root_len > 1 && out[root_len - 1] == '/')
		out[--root_len] = 0;
	size_t len = root_len;

	const char *p = rel;
	while (*p) {
		size_t n = strcspn(p, "/");
		if (n == 2 && !strncmp(p, "..", 2)) {
			if (len == root_len) {
				free(out);
				return NULL;
			}
			while (len > root_len && out[len - 1] != '/')
				len--;
			len = len > root_len ? len - 1 : root_len;
		} else if (n > 0 && !(n == 1 && p[0] == '.')) {
			if (len == 0 || out[len - 1] != '/')
				out[len++] = '/';
			memcpy(out + len, p, n);
			len += n;
		}
		out[len] = 0;
		p += n;
		while (*p == '/')
			p++;
	}
	return out;
}

static void reply_error(int sock, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply_error(int sock, const char *fmt, ...)
{
	struct buf b;
	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	buf_init(&b);
	buf_put_u32(&b, EXIT_CODE_UNREACHABLE);
	buf_put_cstring(&b, msg ? msg : "sandmount: out of memory");
	ctl_send(sock, CTL_ERROR, &b, NULL, 0);
	buf_free(&b);
	free(msg);
}

static void reply_exit(int sock, int status)
{
	struct buf b;
	buf_init(&b);
	buf_put_u32(&b, (uint32_t)status);
	ctl_send(sock, CTL_EXIT, &b, NULL, 0);
	buf_free(&b);
}

static void close_fds(int fds[3])
{
	for (int i = 0; i < 3; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

static bool pump_done(const struct pump *p)
{
	return p->src < 0 || (p->eof && p->len == 0);
}

/* What to poll for: the source while the buffer is empty, else the destination. */
static void pump_events(const struct pump *p, struct pollfd *src, struct pollfd *dst)
{
	*src = (struct pollfd){.fd = -1};
	*dst = (struct pollfd){.fd = -1};
	if (pump_done(p))
		return;
	if (p->len == 0)
		*src = (struct pollfd){.fd = p->src, .events = POLLIN};
	else
		*dst = (struct pollfd){.fd = p->dst, .events = POLLOUT};
}

static void pump_fill(struct pump *p)
{
	ssize_t r;
	if (p->src_is_socket)
		r = recv(p->src, p->data, sizeof(p->data), MSG_DONTWAIT);
	else
		r = read(p->src, p->data, sizeof(p->data));
	if (r > 0) {
		p->off = 0;
		p->len = (size_t)r;
	} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
		p->eof = true;
	}
}

static void pump_flush(struct pump *p)
{
	size_t n = p->len;
	ssize_t r;
	if (p->broken) {
		r = (ssize_t)n;
	} else if (p->dst_is_socket) {
		r = send(p->dst, p->data + p->off, n, MSG_DONTWAIT | MSG_NOSIGNAL);
	} else {
		r = write(p->dst, p->data + p->off, n < PIPE_BUF ? n : PIPE_BUF);
	}
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r < 0) {
		p->broken = true;
		p->reader_gone = errno == EPIPE;
		r = (ssize_t)n;
	}
	p->off += (size_t)r;
	p->len -= (size_t)r;
}

/* A control frame during the command: a signal or a resize. Returns -1 when the client is
 * gone (EOF or garbage on the connection). */
static int handle_control(int sock, struct exec_proc *proc)
{
	struct buf msg;
	uint8_t type;
	int nfds;
	uint32_t a, b;
	buf_init(&msg);
	int r = ctl_recv(sock, &type, &msg, NULL, 0, &nfds, deadline_in(5000));
	if (r == 0 && type == CTL_SIGNAL && buf_get_u32(&msg, &a) == 0 && a > 0 && a < NSIG)
		proc->ops->signal(proc, (int)a);
	else if (r == 0 && type == CTL_RESIZE && buf_get_u32(&msg, &a) == 0 &&
		 buf_get_u32(&msg, &b) == 0)
		proc->ops->resize(proc, a, b);
	else if (r == 0)
		log_warn("control: unexpected frame type %u during a command", type);
	buf_free(&msg);
	return r < 0 ? -1 : 0;
}

enum relay_end { RELAY_EXITED, RELAY_CLIENT_GONE, RELAY_LOST };

/* Relay until the command has exited and its output is written to the client. */
static enum relay_end relay(int sock, int stop_fd, int fds[3], struct exec_proc *proc,
			    struct pump pumps[3], int *status, struct err *e)
{
	struct pump *pin = &pumps[0], *pout = &pumps[1], *perr = &pumps[2];
	*pin = (struct pump){.src = fds[0], .dst = proc->stdio_fd, .dst_is_socket = true};
	*pout = (struct pump){.src = proc->stdio_fd, .dst = fds[1], .src_is_socket = true};
	*perr = (struct pump){.src = proc->stderr_fd, .dst = fds[2], .src_is_socket = true};
	bool stdin_closed = false, sent_sigpipe = false;

	for (;;) {
		if (pump_done(pout) && pump_done(perr)) {
			int w = proc->ops->wait(proc, deadline_in(WAIT_SLICE_MS), status, e);
			if (w == 0)
				return RELAY_EXITED;
			if (w != -ETIMEDOUT)
				return RELAY_LOST;
		}
		if (pump_done(pin) && !stdin_closed) {
			shutdown(proc->stdio_fd, SHUT_WR);
			stdin_closed = true;
		}

		struct pollfd p[8] = {{.fd = sock, .events = POLLIN},
				      {.fd = stop_fd, .events = POLLIN}};
		pump_events(pin, &p[2], &p[3]);
		pump_events(pout, &p[4], &p[5]);
		pump_events(perr, &p[6], &p[7]);
		bool waiting = pump_done(pout) && pump_done(perr);
		if (poll(p, 8, waiting ? 0 : -1) < 0) {
			if (errno == EINTR)
				continue;
			err_set(e, "poll: %s", strerror(errno));
			return RELAY_LOST;
		}
		if (p[1].revents)
			return RELAY_CLIENT_GONE;
		if (p[0].revents && handle_control(sock, proc) < 0)
			return RELAY_CLIENT_GONE;
		for (int i = 0; i < 3; i++) {
			if (p[2 + 2 * i].revents)
				pump_fill(&pumps[i]);
			if (p[3 + 2 * i].revents)
				pump_flush(&pumps[i]);
		}
		/* Remote stdin closed: stop consuming the client's stdin. */
		if (pin->broken) {
			pin->eof = true;
			pin->len = 0;
		}
		/* The client's reader of stdout went away (`sandexec cmd | head`): as in a local
		 * pipeline, the command gets SIGPIPE instead of writing into the void forever. */
		if (pout->reader_gone && !sent_sigpipe) {
			proc->ops->signal(proc, SIGPIPE);
			sent_sigpipe = true;
		}
	}
}

static void start_spec(const struct request *rq, const char *cwd, struct exec_spec *spec)
{
	*spec = (struct exec_spec){
	    .command = rq->command,
	    .cwd = cwd,
	    .env = rq->env,
	    .tty = rq->flags & CTL_EXEC_TTY,
	    .term = rq->term[0] ? rq->term : NULL,
	    .rows = rq->rows,
	    .cols = rq->cols,
	};
}

void exec_relay_run(int sock, struct buf *req, int fds[3], const struct control_hooks *hooks,
		    int stop_fd)
{
	struct request rq;
	struct exec_spec spec;
	struct exec_proc *proc = NULL;
	struct transport *transport = NULL;
	struct err e = {""};
	char *cwd = NULL;

	if (parse_request(req, &rq) < 0) {
		close_fds(fds);
		reply_error(sock, "sandmount: malformed exec request");
		goto out;
	}
	cwd = remote_cwd(hooks->remote_root, rq.cwd_rel);
	if (!cwd) {
		close_fds(fds);
		reply_error(sock, "sandmount: directory %s is outside the sandbox workspace",
			    rq.cwd_rel);
		goto out;
	}
	start_spec(&rq, cwd, &spec);
	log_debug("exec in %s: %s", cwd, rq.command);
	transport = hooks->get_transport ? hooks->get_transport(hooks->ctx) : hooks->transport;
	if (!transport) {
		close_fds(fds);
		reply_error(
		    sock, "sandmount: sandbox unreachable (reconnecting; see sandmount --status)");
		goto out;
	}
	if (transport_exec_start(transport, &spec, &proc, &e) < 0) {
		close_fds(fds);
		reply_error(sock, "sandmount: %s", e.msg);
		goto out;
	}

	int status = 0;
	struct pump *pumps = malloc(3 * sizeof(*pumps));
	enum relay_end end =
	    pumps ? relay(sock, stop_fd, fds, proc, pumps, &status, &e) : RELAY_LOST;
	if (!pumps)
		err_set(&e, "out of memory");
	free(pumps);
	switch (end) {
	case RELAY_EXITED: {
		/* The watch already told the caches what the command changed: no barrier. */
		bool coherent = proc->coherent_exit;
		proc->ops->free(proc);
		if (hooks->barrier && !coherent)
			hooks->barrier(hooks->ctx);
		close_fds(fds);
		reply_exit(sock, status);
		break;
	}
	case RELAY_CLIENT_GONE:
		log_debug("exec client gone; killing: %s", rq.command);
		proc->ops->free(proc);
		close_fds(fds);
		break;
	case RELAY_LOST:
		proc->ops->free(proc);
		close_fds(fds);
		reply_error(sock, "sandmount: lost the command's status: %s", e.msg);
		break;
	}
out:
	if (transport && hooks->get_transport && hooks->put_transport)
		hooks->put_transport(hooks->ctx, transport);
	free(cwd);
	request_free(&rq);
}
