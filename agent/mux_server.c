/* mux_server.c: `sandmount-agent serve`, one long-lived process per mount speaking the protocol
 * of mux_proto.h on stdin/stdout. One thread, one poll loop, every descriptor non-blocking: the
 * stream, the children's pipes or PTYs, the inotify watchers and a self-pipe for SIGCHLD. A
 * child's output is read only while its channel has credit and the output queue is short, so a
 * slow client stalls that child alone. When the stream closes (or on SIGTERM/SIGHUP) every
 * process group the agent started is killed and the agent exits. */
#include "mux.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IN_CHUNK    (256 * 1024)
#define OUT_HIGH    (1024 * 1024) /* children are not read while this much output waits */
#define CREDIT_STEP (MUX_WINDOW / 16)
#define ERRMSG_MAX  512

enum chan_kind { CK_SFTP, CK_SPAWN, CK_WATCH };

struct chan {
	struct chan *next;
	uint32_t id;
	enum chan_kind kind;
	bool tty;
	pid_t pid; /* 0: none; kept after the exit (it names the process group) */
	bool exited;
	int status;
	struct child_fds fds; /* -1 once closed */
	struct buf in;	      /* the client's bytes waiting for the child's stdin */
	bool in_eof;	      /* the client sent EOF: close stdin once `in` is empty */
	uint32_t credit;      /* output bytes we may still send */
	uint32_t consumed;    /* stdin bytes taken since the last CREDIT */
	bool exit_sent;
	bool closed;	 /* the client sent CLOSE: nothing more is sent; freed once reaped */
	int64_t kill_at; /* SIGKILL the group at this time (0: not scheduled) */
	struct watch *watch;
};

static struct buf inq, outq;
static struct chan *chans;
static int sig_pipe[2] = {-1, -1};
static bool stream_done;

int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fatal_msg(const char *what, const char *detail)
{
	fprintf(stderr, "sandmount-agent: serve: %s%s%s\n", what, detail ? ": " : "",
		detail ? detail : "");
}

/* ---- frames ---- */

size_t frame_begin(struct buf *out, uint8_t type, uint32_t ch)
{
	size_t start = out->len;
	buf_put_u32(out, 0);
	buf_put_u8(out, type);
	buf_put_u32(out, ch);
	return start;
}

void frame_end(struct buf *out, size_t start)
{
	buf_set_u32_at(out, start, (uint32_t)(out->len - start - 4));
}

static void send_u32(uint8_t type, uint32_t ch, uint32_t v)
{
	size_t s = frame_begin(&outq, type, ch);
	buf_put_u32(&outq, v);
	frame_end(&outq, s);
}

static void send_fail(uint32_t ch, const char *msg)
{
	size_t s = frame_begin(&outq, MUX_OPEN_FAIL, ch);
	buf_put_cstring(&outq, msg);
	frame_end(&outq, s);
}

static void send_eof(uint32_t ch, uint8_t stream)
{
	size_t s = frame_begin(&outq, MUX_EOF, ch);
	buf_put_u8(&outq, stream);
	frame_end(&outq, s);
}

/* ---- channels ---- */

static struct chan *chan_find(uint32_t id)
{
	for (struct chan *c = chans; c; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		spawn_forget_fd(*fd);
		close(*fd);
		*fd = -1;
	}
}

static void chan_close_fds(struct chan *c)
{
	close_fd(&c->fds.in_fd);
	close_fd(&c->fds.out_fd);
	close_fd(&c->fds.err_fd);
}

static struct chan *chan_new(uint32_t id, enum chan_kind kind)
{
	struct chan *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->id = id;
	c->kind = kind;
	c->credit = MUX_WINDOW;
	c->fds = (struct child_fds){-1, -1, -1};
	buf_init(&c->in);
	c->next = chans;
	chans = c;
	return c;
}

static void chan_free(struct chan *c)
{
	for (struct chan **p = &chans; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	chan_close_fds(c);
	watch_free(c->watch);
	buf_free(&c->in);
	free(c);
}

static void chan_adopt(struct chan *c, pid_t pid, const struct child_fds *fds)
{
	c->pid = pid;
	c->fds = *fds;
	spawn_note_fd(fds->in_fd);
	spawn_note_fd(fds->out_fd);
	spawn_note_fd(fds->err_fd);
	send_u32(MUX_OPEN_OK, c->id, (uint32_t)pid);
}

/* ---- requests ---- */

static int open_spawn(uint32_t id, struct buf *req)
{
	struct spawn_req r = {0};
	char *term = NULL, *cwd = NULL, *command = NULL;
	uint32_t nenv = 0, rows = 0, cols = 0;
	uint8_t tty = 0;
	int rc = -1;
	if (buf_get_cstring(req, &command) < 0 || buf_get_cstring(req, &cwd) < 0 ||
	    buf_get_u32(req, &nenv) < 0 || nenv > buf_remaining(req) / 4)
		goto out;
	r.env = calloc((size_t)nenv + 1, sizeof(*r.env));
	if (!r.env)
		goto out;
	for (uint32_t i = 0; i < nenv; i++)
		if (buf_get_cstring(req, &r.env[i]) < 0)
			goto out;
	if (buf_get_u8(req, &tty) < 0 || buf_get_cstring(req, &term) < 0 ||
	    buf_get_u32(req, &rows) < 0 || buf_get_u32(req, &cols) < 0)
		goto out;
	rc = 0;
	r.command = command;
	r.cwd = cwd;
	r.tty = tty != 0;
	r.term = term;
	r.rows = rows;
	r.cols = cols;
	char msg[ERRMSG_MAX];
	struct child_fds fds;
	struct chan *c = chan_new(id, CK_SPAWN);
	pid_t pid = c ? spawn_command(&r, &fds, msg, sizeof(msg)) : -1;
	if (pid < 0) {
		if (c)
			chan_free(c);
		send_fail(id, c ? msg : "out of memory");
		goto out;
	}
	c->tty = r.tty;
	chan_adopt(c, pid, &fds);
out:
	for (uint32_t i = 0; r.env && i < nenv; i++)
		free(r.env[i]);
	free(r.env);
	free(command);
	free(cwd);
	free(term);
	return rc;
}

static void open_sftp(uint32_t id)
{
	char msg[ERRMSG_MAX];
	struct child_fds fds;
	struct chan *c = chan_new(id, CK_SFTP);
	pid_t pid = c ? spawn_sftp(&fds, msg, sizeof(msg)) : -1;
	if (pid < 0) {
		if (c)
			chan_free(c);
		send_fail(id, c ? msg : "out of memory");
		return;
	}
	chan_adopt(c, pid, &fds);
}

static int open_watch(uint32_t id, struct buf *req)
{
	char *dir;
	uint32_t max_watches = 0;
	if (buf_get_cstring(req, &dir) < 0)
		return -1;
	if (buf_remaining(req) && buf_get_u32(req, &max_watches) < 0) {
		free(dir);
		return -1;
	}
	char msg[ERRMSG_MAX];
	struct chan *c = chan_new(id, CK_WATCH);
	if (c)
		c->watch = watch_open(dir, max_watches, msg, sizeof(msg));
	if (!c || !c->watch) {
		if (c)
			chan_free(c);
		send_fail(id, c ? msg : "out of memory");
	} else {
		send_u32(MUX_OPEN_OK, id, 0);
	}
	free(dir);
	return 0;
}

/* Credit goes back in steps only: a CREDIT sent for every request (as it once was) left ahead
 * of the reply as a small segment of its own, and sshd's Nagle then held the reply until that
 * was acknowledged (up to a round trip per request). The client keeps at least MUX_WINDOW -
 * CREDIT_STEP in flight, so it never waits for the rest. */
static void give_credit(struct chan *c, size_t n)
{
	c->consumed += (uint32_t)n;
	if (c->consumed >= CREDIT_STEP) {
		send_u32(MUX_CREDIT, c->id, c->consumed);
		c->consumed = 0;
	}
}

static int on_data(struct chan *c, struct buf *req)
{
	uint8_t stream;
	if (buf_get_u8(req, &stream) < 0 || stream != MUX_STREAM_STDIO)
		return -1;
	size_t n = buf_remaining(req);
	if (buf_remaining(&c->in) + n > MUX_WINDOW) {
		fatal_msg("protocol error", "the client overran a channel's window");
		return -1;
	}
	if (c->fds.in_fd < 0 || c->in_eof) {
		give_credit(c, n); /* nobody reads it: discarded */
		return 0;
	}
	const uint8_t *data = buf_cursor(req);
	if (buf_remaining(&c->in) == 0) {
		/* Nothing waits: straight to the child, keeping only what it did not take. */
		ssize_t w = write(c->fds.in_fd, data, n);
		if (w > 0) {
			data += w;
			n -= (size_t)w;
			give_credit(c, (size_t)w);
		}
	}
	if (n == 0)
		return 0;
	if (c->in.off && c->in.off >= buf_remaining(&c->in))
		buf_compact(&c->in); /* amortised: at most as many bytes moved as consumed */
	uint8_t *p = buf_put_space(&c->in, n);
	if (p)
		memcpy(p, data, n);
	return 0;
}

/* Signal a command's process group. A child that has not yet called setsid() is no group leader
 * (kill(-pid) fails with ESRCH): signal it alone then, so a signal sent right after the spawn is
 * not lost. Only while it is unreaped, so its pid cannot belong to anybody else. */
static void signal_command(struct chan *c, int sig)
{
	if (kill(-c->pid, sig) < 0 && errno == ESRCH && !c->exited)
		kill(c->pid, sig);
}

static void on_close(struct chan *c)
{
	c->closed = true;
	chan_close_fds(c);
	watch_free(c->watch);
	c->watch = NULL;
	if (c->kind == CK_SPAWN && !c->exited) {
		signal_command(c, SIGTERM);
		c->kill_at = mono_ms() + MUX_KILL_GRACE_MS;
	}
}

static int dispatch(uint8_t type, uint32_t id, struct buf *req)
{
	struct chan *c = chan_find(id);
	uint32_t a, b;
	if (type == MUX_OPEN_SFTP || type == MUX_OPEN_SPAWN || type == MUX_OPEN_WATCH) {
		if (id == 0 || c) {
			fatal_msg("protocol error", "a channel number was reused");
			return -1;
		}
		if (type == MUX_OPEN_SFTP)
			open_sftp(id);
		return type == MUX_OPEN_SPAWN	? open_spawn(id, req)
		       : type == MUX_OPEN_WATCH ? open_watch(id, req)
						: 0;
	}
	if (!c || c->closed)
		return 0; /* a channel already closed: what was in flight is dropped */
	switch (type) {
	case MUX_DATA:
		return on_data(c, req);
	case MUX_EOF:
		c->in_eof = true;
		return 0;
	case MUX_CREDIT:
		if (buf_get_u32(req, &a) < 0 || a > MUX_WINDOW - c->credit)
			return -1;
		c->credit += a;
		return 0;
	case MUX_SIGNAL:
		if (buf_get_u32(req, &a) < 0 || a == 0 || a >= 65)
			return -1;
		if (c->kind == CK_SPAWN && !c->exited)
			signal_command(c, (int)a);
		return 0;
	case MUX_RESIZE:
		if (buf_get_u32(req, &a) < 0 || buf_get_u32(req, &b) < 0)
			return -1;
		if (c->tty && c->fds.out_fd >= 0)
			spawn_resize(c->fds.out_fd, a, b);
		return 0;
	case MUX_CLOSE:
		on_close(c);
		return 0;
	default:
		return -1;
	}
}

/* Dispatch every complete frame. -1 on a protocol error (the stream is then dropped). */
static int process_input(void)
{
	uint32_t len;
	while (buf_peek_u32(&inq, &len) == 0) {
		if (len < MUX_FRAME_MIN || len > MUX_FRAME_MAX) {
			fatal_msg("protocol error", "bad frame length");
			return -1;
		}
		if (buf_remaining(&inq) - 4 < len)
			break;
		struct buf req;
		uint8_t type;
		uint32_t id;
		buf_view(&req, inq.data + inq.off + 4, len);
		inq.off += 4 + (size_t)len;
		buf_get_u8(&req, &type);
		buf_get_u32(&req, &id);
		if (dispatch(type, id, &req) < 0) {
			char detail[48];
			snprintf(detail, sizeof(detail), "malformed frame of type %u", type);
			fatal_msg("protocol error", detail);
			return -1;
		}
	}
	buf_compact(&inq);
	return 0;
}

/* ---- children's I/O ---- */

/* Read what a child printed on one stream into a DATA frame; EOF (or EIO from a PTY whose
 * last holder closed it) sends EOF and closes our end. */
static void read_child(struct chan *c, int *fd, uint8_t stream)
{
	size_t want = c->credit < MUX_DATA_MAX ? c->credit : MUX_DATA_MAX;
	size_t start = frame_begin(&outq, MUX_DATA, c->id);
	buf_put_u8(&outq, stream);
	size_t at = outq.len;
	uint8_t *p = buf_put_space(&outq, want);
	ssize_t n = p ? read(*fd, p, want) : -1;
	if (n > 0) {
		buf_truncate(&outq, at + (size_t)n);
		frame_end(&outq, start);
		c->credit -= (uint32_t)n;
		return;
	}
	buf_truncate(&outq, start);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	close_fd(fd);
	if (c->tty)
		close_fd(&c->fds.in_fd); /* the same PTY */
	send_eof(c->id, stream);
}

static void write_child(struct chan *c)
{
	ssize_t n = write(c->fds.in_fd, buf_cursor(&c->in), buf_remaining(&c->in));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		/* The child closed its stdin: what waits is dropped (and credited). */
		size_t left = buf_remaining(&c->in);
		c->in.off = c->in.len;
		close_fd(&c->fds.in_fd);
		give_credit(c, left);
		return;
	}
	c->in.off += (size_t)n;
	if (c->in.off == c->in.len)
		buf_compact(&c->in);
	give_credit(c, (size_t)n);
}

/* Before an EXIT: every change already made is sent first (see mux_proto.h). */
static void flush_watches(void)
{
	for (struct chan *w = chans; w; w = w->next) {
		if (!w->watch)
			continue;
		watch_read(w->watch);
		if (watch_due_in(w->watch, 0) >= 0)
			watch_flush(w->watch, &outq, w->id);
	}
}

/* Close stdin after EOF, send EXIT once the outputs ended, free what the client closed. */
static void chan_progress(struct chan *c, int64_t now)
{
	if (c->in_eof && !c->tty && buf_remaining(&c->in) == 0)
		close_fd(&c->fds.in_fd);
	if (c->kind != CK_WATCH && !c->closed && c->exited && !c->exit_sent && c->fds.out_fd < 0 &&
	    c->fds.err_fd < 0) {
		flush_watches();
		send_u32(MUX_EXIT, c->id, (uint32_t)c->status);
		c->exit_sent = true;
	}
	if (c->kill_at && now >= c->kill_at) {
		signal_command(c, SIGKILL);
		c->kill_at = 0;
	}
	if (c->watch && watch_due_in(c->watch, now) == 0)
		watch_flush(c->watch, &outq, c->id);
}

static void reap_children(void)
{
	char drain[64];
	ssize_t n;
	while ((n = read(sig_pipe[0], drain, sizeof(drain))) > 0) {
		if (memchr(drain, 'T', (size_t)n))
			stream_done = true; /* SIGTERM or SIGHUP */
	}
	int ws;
	pid_t pid;
	while ((pid = waitpid(-1, &ws, WNOHANG)) > 0) {
		for (struct chan *c = chans; c; c = c->next) {
			if (c->pid == pid && !c->exited) {
				c->exited = true;
				c->status = spawn_status(ws);
			}
		}
	}
}

static void on_signal(int sig)
{
	int saved = errno;
	char b = sig == SIGCHLD ? 'C' : 'T';
	if (write(sig_pipe[1], &b, 1) < 0) {
		/* the pipe is full: a wake-up is pending anyway */
	}
	errno = saved;
}

/* ---- the loop ---- */

static int read_stream(void)
{
	size_t before = inq.len;
	uint8_t *p = buf_put_space(&inq, IN_CHUNK);
	ssize_t n = p ? read(STDIN_FILENO, p, IN_CHUNK) : -1;
	buf_truncate(&inq, before + (n > 0 ? (size_t)n : 0));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return -1;
	return process_input();
}

static int write_stream(void)
{
	ssize_t n = write(STDOUT_FILENO, buf_cursor(&outq), buf_remaining(&outq));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n < 0)
		return -1;
	outq.off += (size_t)n;
	if (outq.off == outq.len || outq.off >= OUT_HIGH / 4)
		buf_compact(&outq);
	return 0;
}

enum slot_what { SLOT_STDIN, SLOT_OUT, SLOT_ERR, SLOT_WATCH };
struct slot {
	struct chan *c;
	enum slot_what what;
};

static void add_fd(struct pollfd *pfd, struct slot *slots, size_t *n, int fd, short events,
		   struct chan *c, enum slot_what what)
{
	pfd[*n] = (struct pollfd){.fd = fd, .events = events};
	slots[*n] = (struct slot){c, what};
	(*n)++;
}

/* One round: poll everything, then move the bytes. -1 when the stream ended. */
static int loop_once(struct pollfd *pfd, struct slot *slots)
{
	int64_t now = mono_ms();
	int timeout = -1;
	size_t n = 0;
	add_fd(pfd, slots, &n, STDIN_FILENO, POLLIN, NULL, SLOT_STDIN);
	add_fd(pfd, slots, &n, buf_remaining(&outq) ? STDOUT_FILENO : -1, POLLOUT, NULL, SLOT_OUT);
	add_fd(pfd, slots, &n, sig_pipe[0], POLLIN, NULL, SLOT_WATCH);
	bool out_room = buf_remaining(&outq) < OUT_HIGH;
	for (struct chan *c = chans; c; c = c->next) {
		if (c->fds.in_fd >= 0 && buf_remaining(&c->in))
			add_fd(pfd, slots, &n, c->fds.in_fd, POLLOUT, c, SLOT_STDIN);
		if (c->fds.out_fd >= 0 && c->credit && out_room)
			add_fd(pfd, slots, &n, c->fds.out_fd, POLLIN, c, SLOT_OUT);
		if (c->fds.err_fd >= 0 && c->credit && out_room)
			add_fd(pfd, slots, &n, c->fds.err_fd, POLLIN, c, SLOT_ERR);
		if (c->watch)
			add_fd(pfd, slots, &n, watch_fd(c->watch), POLLIN, c, SLOT_WATCH);
		int due = c->watch ? watch_due_in(c->watch, now) : -1;
		if (c->kill_at && (due < 0 || c->kill_at - now < due))
			due = c->kill_at > now ? (int)(c->kill_at - now) : 0;
		if (due >= 0 && (timeout < 0 || due < timeout))
			timeout = due;
	}
	if (poll(pfd, n, timeout) < 0 && errno != EINTR) {
		fatal_msg("poll", strerror(errno));
		return -1;
	}
	if ((pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) && read_stream() < 0)
		return -1;
	if ((pfd[1].revents & (POLLOUT | POLLHUP | POLLERR)) && write_stream() < 0)
		return -1;
	for (size_t i = 3; i < n; i++) {
		struct chan *c = slots[i].c;
		if (!pfd[i].revents || c->closed)
			continue;
		if (slots[i].what == SLOT_STDIN && c->fds.in_fd >= 0)
			write_child(c);
		else if (slots[i].what == SLOT_OUT && c->fds.out_fd >= 0 && c->credit)
			read_child(c, &c->fds.out_fd, MUX_STREAM_STDIO);
		else if (slots[i].what == SLOT_ERR && c->fds.err_fd >= 0 && c->credit)
			read_child(c, &c->fds.err_fd, MUX_STREAM_STDERR);
		else if (slots[i].what == SLOT_WATCH && c->watch)
			watch_read(c->watch);
	}
	if (pfd[2].revents)
		reap_children(); /* SIGCHLD (or SIGTERM/SIGHUP) wrote to the self-pipe */
	now = mono_ms();
	for (struct chan *c = chans, *next; c; c = next) {
		next = c->next;
		chan_progress(c, now);
		if (c->closed && (c->exited || !c->pid) && !c->kill_at)
			chan_free(c);
	}
	if (!buf_ok(&outq) || !buf_ok(&inq)) {
		fatal_msg("out of memory", NULL);
		return -1;
	}
	return stream_done ? -1 : 0;
}

/* The stream is gone: end every command's process group (TERM, KILL after the grace). */
static void kill_everything(void)
{
	for (struct chan *c = chans; c; c = c->next) {
		chan_close_fds(c);
		if (c->kind == CK_SPAWN && c->pid)
			signal_command(c, SIGTERM);
	}
	int64_t deadline = mono_ms() + MUX_KILL_GRACE_MS;
	for (;;) {
		reap_children();
		bool running = false;
		for (struct chan *c = chans; c; c = c->next)
			running |= c->pid && !c->exited;
		if (!running || mono_ms() >= deadline)
			break;
		usleep(10000);
	}
	for (struct chan *c = chans; c; c = c->next)
		if (c->kind == CK_SPAWN && c->pid)
			signal_command(c, SIGKILL);
	while (chans)
		chan_free(chans);
}

static int setup(void)
{
	if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -1;
	spawn_note_fd(sig_pipe[0]);
	spawn_note_fd(sig_pipe[1]);
	struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGCHLD, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
	fcntl(STDOUT_FILENO, F_SETFL, fcntl(STDOUT_FILENO, F_GETFL) | O_NONBLOCK);
	return 0;
}

int mux_server_run(void)
{
	buf_init(&inq);
	buf_init(&outq);
	if (setup() < 0) {
		fatal_msg("pipe", strerror(errno));
		return 1;
	}
	size_t hello = frame_begin(&outq, MUX_HELLO, 0);
	buf_put_u32(&outq, MUX_PROTO_VERSION);
	buf_put_cstring(&outq, SANDMOUNT_VERSION);
	frame_end(&outq, hello);
	struct pollfd *pfd = NULL;
	struct slot *slots = NULL;
	size_t cap = 0;
	for (;;) {
		size_t need = 3;
		for (struct chan *c = chans; c; c = c->next)
			need += 4;
		if (need > cap) {
			cap = need * 2;
			free(pfd);
			free(slots);
			pfd = calloc(cap, sizeof(*pfd));
			slots = calloc(cap, sizeof(*slots));
			if (!pfd || !slots) {
				fatal_msg("out of memory", NULL);
				break;
			}
		}
		if (loop_once(pfd, slots) < 0)
			break;
	}
	free(pfd);
	free(slots);
	kill_everything();
	close_fd(&sig_pipe[0]);
	close_fd(&sig_pipe[1]);
	buf_free(&inq);
	buf_free(&outq);
	return 0;
}
