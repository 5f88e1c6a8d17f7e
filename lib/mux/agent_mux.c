/* agent_mux.c: the client of `sandmount-agent serve` (lib/proto/mux_proto.h). One pump thread owns
 * the stream: it reads frames, writes the queued ones, and bridges every channel to local socket
 * pairs (like ssh_pump.c does for libssh channels). Flow control is the protocol's credit
 * window: a channel's output buffers never hold more than MUX_WINDOW, and stdin is read from the
 * local socket only while the agent granted room for it.
 *
 * Locking: m->lock protects everything marked "shared" and the transmit queue; the pump holds it
 * except while it sleeps in poll(). Other threads append a frame to
 * m->tx, wake the pump through m->wake_fd and wait on m->cond, which the pump broadcasts after
 * every round. Watch events go to a notifier thread of their own: a callback that invalidates
 * kernel caches may wait for a FUSE request that itself waits for the pump. The agent sends a
 * command's changes before its EXIT; a command's wait returns only once the notifier has run
 * every event queued before that EXIT (events_delivered), so its caller sees what it changed. */
#include "mux/agent_mux_internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

/* write() that never raises SIGPIPE: the streams are sockets, whose peer may be gone. */
static ssize_t send_nosig(int fd, const void *p, size_t n)
{
	ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
	return r < 0 && errno == ENOTSOCK ? write(fd, p, n) : r;
}

/* ---- frames (m->lock held) ---- */

size_t tx_begin(struct agent_mux *m, uint8_t type, uint32_t ch)
{
	size_t start = m->tx.len;
	buf_put_u32(&m->tx, 0);
	buf_put_u8(&m->tx, type);
	buf_put_u32(&m->tx, ch);
	return start;
}

void tx_end(struct agent_mux *m, size_t start)
{
	buf_set_u32_at(&m->tx, start, (uint32_t)(m->tx.len - start - 4));
}

void tx_u32(struct agent_mux *m, uint8_t type, uint32_t ch, uint32_t v)
{
	size_t s = tx_begin(m, type, ch);
	buf_put_u32(&m->tx, v);
	tx_end(m, s);
}

void mux_wake(struct agent_mux *m)
{
	uint64_t one = 1;
	if (write(m->wake_fd, &one, sizeof(one)) < 0)
		log_debug("agent mux: wake: %s", strerror(errno));
}

bool mux_wait(struct agent_mux *m, int64_t deadline)
{
	if (!deadline) {
		pthread_cond_wait(&m->cond, &m->lock);
		return true;
	}
	if (now_ms() >= deadline)
		return false;
	struct timespec ts = {.tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000};
	pthread_cond_timedwait(&m->cond, &m->lock, &ts);
	return true;
}

/* Drop the consumed front of a buffer once it is worth the copy. */
static void buf_drop_consumed(struct buf *b)
{
	if (b->off == b->len) {
		buf_reset(b);
	} else if (b->off >= RX_CHUNK) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
}

/* ---- channels ---- */

static struct mchan *chan_find(struct agent_mux *m, uint32_t id)
{
	for (struct mchan *c = m->chans; c; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

void chan_destroy(struct mchan *c)
{
	close_fd(&c->io_fd);
	close_fd(&c->err_fd);
	buf_free(&c->out);
	buf_free(&c->err);
	free(c->dir);
	free(c);
}

static void chan_unlink(struct agent_mux *m, struct mchan *c)
{
	for (struct mchan **p = &m->chans; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			return;
		}
	}
}

/* The stream is gone: every local end reads EOF, waiters learn why. */
static void mux_die(struct agent_mux *m, const char *why)
{
	if (m->dead)
		return;
	m->dead = true;
	snprintf(m->dead_msg, sizeof(m->dead_msg), "the sandbox agent on %s %s", m->label, why);
	if (m->hello)
		log_warn("%s", m->dead_msg);
	else
		log_debug("%s", m->dead_msg); /* the start failed: agent_mux_start reports it */
	for (struct mchan *c = m->chans; c; c = c->next) {
		close_fd(&c->io_fd);
		close_fd(&c->err_fd);
		if (c->state == MS_OPENING) {
			c->state = MS_FAILED;
			snprintf(c->errmsg, sizeof(c->errmsg), "%s", m->dead_msg);
		}
	}
}

/* Output bytes left our buffers: give the agent its window back in steps. */
static void consumed(struct agent_mux *m, struct mchan *c, size_t n)
{
	c->consumed += (uint32_t)n;
	if (c->consumed >= CREDIT_STEP && !m->dead) {
		tx_u32(m, MUX_CREDIT, c->id, c->consumed);
		c->consumed = 0;
	}
}

/* ---- frames from the agent ---- */

static void free_events(struct event *ev)
{
	for (struct event *next; ev; ev = next) {
		next = ev->next;
		free(ev->path);
		free(ev);
	}
}

/* A change report: the name changed, or (inside) only what it refers to, with its attributes
 * when the agent sent them. */
struct change {
	bool inside;
	const struct sftp_attrs *attrs; /* NULL: none sent */
};

static void link_event(struct agent_mux *m, struct mchan *c, char *path, bool partial,
		       const struct change *ch)
{
	struct event *ev = calloc(1, sizeof(*ev));
	if (!ev) {
		free(path);
		return;
	}
	if (path && ch) {
		ev->inside = ch->inside;
		ev->have_attrs = ch->attrs != NULL;
		if (ch->attrs)
			ev->attrs = *ch->attrs;
	}
	ev->changed = c->changed;
	ev->partial = partial ? c->partial : NULL;
	ev->unwatched = c->unwatched;
	ev->ctx = c->ctx;
	ev->path = path;
	*m->events_tail = ev;
	m->events_tail = &ev->next;
	m->nevents++;
	m->events_queued++;
	pthread_cond_signal(&m->events_cond);
}

/* The notifier is far behind: one "everything changed" replaces the backlog; the partial watches
 * it held are told again. */
static void drop_backlog(struct agent_mux *m)
{
	free_events(m->events);
	m->events = NULL;
	m->events_tail = &m->events;
	m->nevents = 0;
	for (struct mchan *w = m->chans; w; w = w->next)
		if (w->kind == MK_WATCH && w->unwatched && w->partial)
			link_event(m, w, NULL, true, NULL);
}

/* path NULL (or dropped with the backlog): "everything changed". */
static void queue_event(struct agent_mux *m, struct mchan *c, char *path, const struct change *ch)
{
	if (m->nevents >= EVENTS_MAX) {
		drop_backlog(m);
		free(path);
		path = NULL;
	}
	link_event(m, c, path, false, ch);
}

/* PARTIAL: u32 directories the agent could not watch. */
static int on_partial(struct agent_mux *m, struct mchan *c, struct buf *f)
{
	uint32_t n;
	if (c->kind != MK_WATCH || buf_get_u32(f, &n) < 0)
		return -1;
	c->unwatched = n;
	if (!c->partial)
		return 0;
	if (m->nevents >= EVENTS_MAX)
		drop_backlog(m);
	link_event(m, c, NULL, true, NULL);
	return 0;
}

/* One path of a CHANGED / CHANGED_INSIDE frame (p, len: as sent), queued; a path too long to
 * keep becomes "everything changed". -1: malformed. */
static int queue_path(struct agent_mux *m, struct mchan *c, const uint8_t *p, uint32_t len,
		      const struct change *ch)
{
	if (memchr(p, 0, len))
		return -1;
	if (len > EVENT_PATH_MAX) {
		queue_event(m, c, NULL, NULL);
		return 0;
	}
	char *path =
	    len ? str_printf("%s/%.*s", c->dir, (int)len, (const char *)p) : xstrdup(c->dir);
	if (path)
		queue_event(m, c, path, ch);
	return 0;
}

/* CHANGED: u32 n, n x string path (n bounded by the bytes left: 4 per path at least). */
static int on_changed(struct agent_mux *m, struct mchan *c, struct buf *f)
{
	uint32_t n;
	if (buf_get_u32(f, &n) < 0 || n > buf_remaining(f) / 4)
		return -1;
	struct change ch = {.inside = false};
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *p;
		uint32_t len;
		if (buf_get_string(f, &p, &len) < 0 || queue_path(m, c, p, len, &ch) < 0)
			return -1;
	}
	return 0;
}

/* CHANGED_INSIDE: u32 n, n x (string path, u8 attrs_follow, attrs when 1), n bounded by the
 * bytes left (5 per entry at least). Attributes go through the SFTP client's decoder. */
static int on_changed_inside(struct agent_mux *m, struct mchan *c, struct buf *f)
{
	uint32_t n;
	if (buf_get_u32(f, &n) < 0 || n > buf_remaining(f) / 5)
		return -1;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *p;
		uint32_t len;
		uint8_t follow;
		struct sftp_attrs a;
		if (buf_get_string(f, &p, &len) < 0 || buf_get_u8(f, &follow) < 0 || follow > 1 ||
		    (follow && sftp_attrs_decode(f, &a) < 0))
			return -1;
		struct change ch = {.inside = true, .attrs = follow ? &a : NULL};
		if (queue_path(m, c, p, len, &ch) < 0)
			return -1;
	}
	return 0;
}

static int on_data(struct agent_mux *m, struct mchan *c, struct buf *f)
{
	uint8_t stream;
	if (buf_get_u8(f, &stream) < 0 || stream > MUX_STREAM_STDERR ||
	    (stream == MUX_STREAM_STDERR && c->kind != MK_EXEC))
		return -1;
	size_t n = buf_remaining(f);
	if (buf_remaining(&c->out) + buf_remaining(&c->err) + n > MUX_WINDOW)
		return -1; /* the agent overran the window */
	bool to_err = stream == MUX_STREAM_STDERR && !c->tty;
	struct buf *b = to_err ? &c->err : &c->out;
	bool broken = to_err ? c->err_broken || c->err_fd < 0 : c->out_broken || c->io_fd < 0;
	if (broken) {
		consumed(m, c, n);
		return 0;
	}
	const uint8_t *data = buf_cursor(f);
	if (!buf_remaining(b)) {
		/* Nothing waits: straight to the local end, buffering only what it did not take. */
		ssize_t w = send_nosig(to_err ? c->err_fd : c->io_fd, data, n);
		if (w > 0) {
			data += w;
			n -= (size_t)w;
			consumed(m, c, (size_t)w);
		}
	}
	if (n)
		buf_put_bytes(b, data, n);
	return 0;
}

static bool watch_running(struct agent_mux *m)
{
	for (struct mchan *c = m->chans; c; c = c->next)
		if (c->kind == MK_WATCH && c->state == MS_OPEN && !c->released)
			return true;
	return false;
}

static int on_frame(struct agent_mux *m, uint8_t type, uint32_t id, struct buf *f)
{
	uint32_t v, n;
	uint8_t stream;
	const uint8_t *p;
	if (type == MUX_HELLO) {
		if (buf_get_u32(f, &v) < 0 || buf_get_string(f, &p, &n) < 0)
			return -1;
		if (v != MUX_PROTO_VERSION)
			return -1;
		snprintf(m->version, sizeof(m->version), "%.*s", (int)n, (const char *)p);
		m->hello = true;
		return 0;
	}
	struct mchan *c = chan_find(m, id);
	if (!c || c->released)
		return 0; /* closed on our side: what was in flight is dropped */
	switch (type) {
	case MUX_OPEN_OK:
		if (buf_get_u32(f, &v) < 0)
			return -1;
		c->pid = v;
		c->state = MS_OPEN;
		return 0;
	case MUX_OPEN_FAIL:
		if (buf_get_string(f, &p, &n) < 0)
			return -1;
		snprintf(c->errmsg, sizeof(c->errmsg), "%.*s", (int)n, (const char *)p);
		c->state = MS_FAILED;
		return 0;
	case MUX_DATA:
		return on_data(m, c, f);
	case MUX_EOF:
		if (buf_get_u8(f, &stream) < 0)
			return -1;
		if (stream == MUX_STREAM_STDERR && !c->tty)
			c->err_eof = true;
		else
			c->out_eof = true;
		return 0;
	case MUX_CREDIT:
		if (buf_get_u32(f, &v) < 0 || v > MUX_WINDOW - c->credit)
			return -1;
		c->credit += v;
		return 0;
	case MUX_EXIT:
		if (buf_get_u32(f, &v) < 0)
			return -1;
		c->exited = true;
		c->status = (int)v;
		/* The agent sent the command's changes before this: they are queued. */
		c->events_before_exit = m->events_queued;
		c->coherent = watch_running(m);
		return 0;
	case MUX_CHANGED:
		return c->kind == MK_WATCH ? on_changed(m, c, f) : -1;
	case MUX_CHANGED_INSIDE:
		return c->kind == MK_WATCH ? on_changed_inside(m, c, f) : -1;
	case MUX_OVERFLOW:
		if (c->kind == MK_WATCH)
			queue_event(m, c, NULL, NULL);
		return 0;
	case MUX_PARTIAL:
		return on_partial(m, c, f);
	default:
		return -1;
	}
}

static void parse_frames(struct agent_mux *m)
{
	uint32_t len;
	while (!m->dead && buf_remaining(&m->rx) >= 4) {
		const uint8_t *h = buf_cursor(&m->rx);
		len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
		if (len < MUX_FRAME_MIN || len > MUX_FRAME_MAX) {
			mux_die(m, "sent a malformed frame");
			return;
		}
		if (buf_remaining(&m->rx) - 4 < len)
			break;
		struct buf f = {.data = (uint8_t *)h + 4, .len = len, .cap = len};
		m->rx.off += 4 + (size_t)len;
		uint8_t type;
		uint32_t id;
		buf_get_u8(&f, &type);
		buf_get_u32(&f, &id);
		if (on_frame(m, type, id, &f) < 0) {
			log_debug("agent mux: bad frame type %u on channel %u", type, id);
			mux_die(m, "sent a malformed frame");
		}
	}
	buf_drop_consumed(&m->rx);
}

/* ---- the pump ---- */

static void stream_io(struct agent_mux *m, short revents)
{
	if (revents & (POLLIN | POLLHUP | POLLERR)) {
		if (buf_reserve(&m->rx, RX_CHUNK) < 0) {
			mux_die(m, "connection ran out of memory");
			return;
		}
		ssize_t n = read(m->fd, m->rx.data + m->rx.len, RX_CHUNK);
		if (n > 0) {
			m->rx.len += (size_t)n;
			parse_frames(m);
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			mux_die(m, n == 0 ? "closed the connection" : "connection failed");
			return;
		}
	}
	if (buf_remaining(&m->tx) && (revents & POLLOUT)) {
		ssize_t n = send_nosig(m->fd, buf_cursor(&m->tx), buf_remaining(&m->tx));
		if (n > 0)
			m->tx.off += (size_t)n;
		else if (n < 0 && errno != EAGAIN && errno != EINTR)
			mux_die(m, "connection failed");
		buf_drop_consumed(&m->tx);
	}
}

/* Local stdin (or SFTP requests) into DATA frames, within the channel's credit. */
static void read_local(struct agent_mux *m, struct mchan *c)
{
	size_t want = c->credit < MUX_DATA_MAX ? c->credit : MUX_DATA_MAX;
	size_t start = tx_begin(m, MUX_DATA, c->id);
	buf_put_u8(&m->tx, MUX_STREAM_STDIO);
	ssize_t n =
	    buf_reserve(&m->tx, want) == 0 ? read(c->io_fd, m->tx.data + m->tx.len, want) : -1;
	if (n > 0) {
		m->tx.len += (size_t)n;
		tx_end(m, start);
		c->credit -= (uint32_t)n;
		return;
	}
	m->tx.len = start;
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (c->kind == MK_SFTP) {
		c->released = true; /* the SFTP client closed its fd */
		return;
	}
	size_t s = tx_begin(m, MUX_EOF, c->id);
	buf_put_u8(&m->tx, MUX_STREAM_STDIO);
	tx_end(m, s);
	c->in_eof_sent = true;
}

/* Buffered output to one local end; a reader that went away makes it dropped from now on. */
static void write_local(struct agent_mux *m, struct mchan *c, int fd, struct buf *b, bool *broken)
{
	ssize_t n = send_nosig(fd, buf_cursor(b), buf_remaining(b));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		*broken = true;
		n = (ssize_t)buf_remaining(b);
	}
	b->off += (size_t)n;
	consumed(m, c, (size_t)n);
	buf_drop_consumed(b);
}

/* After the round's I/O: half-close finished outputs, note what is finished, free released. */
static void chan_progress(struct agent_mux *m, struct mchan *c)
{
	if (c->out_eof && !buf_remaining(&c->out) && !c->out_shut) {
		if (c->io_fd >= 0)
			shutdown(c->io_fd, SHUT_WR);
		c->out_shut = true;
	}
	if (c->err_eof && !buf_remaining(&c->err))
		close_fd(&c->err_fd);
	bool err_done = c->tty || c->err_eof;
	if (c->exited && c->out_shut && err_done && !buf_remaining(&c->err))
		c->finished = true;
	/* Not before chan_open let go of it: OPEN_OK and the death may come in one round. */
	if (c->kind == MK_SFTP && c->handed_over && (c->hup || m->dead))
		c->released = true;
	if (c->released) {
		if (!m->dead)
			tx_u32(m, MUX_CLOSE, c->id, 0);
		chan_unlink(m, c);
		chan_destroy(c);
	}
}

static size_t build_poll(struct agent_mux *m)
{
	size_t need = 2;
	for (struct mchan *c = m->chans; c; c = c->next)
		need += 2;
	if (need > m->pfd_cap) {
		struct pollfd *p = realloc(m->pfd, need * 2 * sizeof(*p));
		if (!p)
			return 0;
		m->pfd = p;
		m->pfd_cap = need * 2;
	}
	size_t n = 0;
	m->pfd[n++] = (struct pollfd){.fd = m->wake_fd, .events = POLLIN};
	short ev = POLLIN | (buf_remaining(&m->tx) ? POLLOUT : 0);
	m->pfd[n++] = (struct pollfd){.fd = m->dead ? -1 : m->fd, .events = ev};
	bool tx_room = buf_remaining(&m->tx) < TX_HIGH;
	for (struct mchan *c = m->chans; c; c = c->next) {
		c->pfd_io = c->pfd_err = -1;
		if (c->io_fd >= 0 && !c->hup && c->state == MS_OPEN) {
			bool want_in =
			    !c->in_eof_sent && c->credit && tx_room && c->kind != MK_WATCH;
			short e = (want_in ? POLLIN : 0) | (buf_remaining(&c->out) ? POLLOUT : 0);
			c->pfd_io = (int)n;
			m->pfd[n++] = (struct pollfd){.fd = c->io_fd, .events = e};
		}
		if (c->err_fd >= 0 && buf_remaining(&c->err)) {
			c->pfd_err = (int)n;
			m->pfd[n++] = (struct pollfd){.fd = c->err_fd, .events = POLLOUT};
		}
	}
	return n;
}

static void chan_io(struct agent_mux *m, struct mchan *c)
{
	if (c->pfd_io >= 0) {
		short r = m->pfd[c->pfd_io].revents;
		if (r & POLLOUT)
			write_local(m, c, c->io_fd, &c->out, &c->out_broken);
		if (r & POLLIN)
			read_local(m, c);
		else if (r & (POLLHUP | POLLERR))
			c->hup = true; /* nothing to read and nobody to write to */
	}
	if (c->pfd_err >= 0 && (m->pfd[c->pfd_err].revents & (POLLOUT | POLLHUP | POLLERR)))
		write_local(m, c, c->err_fd, &c->err, &c->err_broken);
	if (c->hup && !c->out_broken) {
		c->out_broken = true;
		consumed(m, c, buf_remaining(&c->out));
		buf_reset(&c->out);
	}
}

/* The notifier thread: hands queued watch events to their callbacks, without the lock. */
static void *notifier_main(void *arg)
{
	struct agent_mux *m = arg;
	pthread_mutex_lock(&m->lock);
	while (!m->stop) {
		if (!m->events) {
			pthread_cond_wait(&m->events_cond, &m->lock);
			continue;
		}
		struct event *ev = m->events;
		uint64_t taken = m->events_queued;
		m->events = NULL;
		m->events_tail = &m->events;
		m->nevents = 0;
		pthread_mutex_unlock(&m->lock);
		for (struct event *e = ev; e; e = e->next)
			if (e->partial)
				e->partial(e->ctx, e->unwatched);
			else
				e->changed(e->ctx, e->path, e->path && e->inside,
					   e->have_attrs ? &e->attrs : NULL);
		free_events(ev);
		pthread_mutex_lock(&m->lock);
		m->events_delivered = taken;
		pthread_cond_broadcast(&m->cond); /* exec waits for the changes before the exit */
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

static void *pump_main(void *arg)
{
	struct agent_mux *m = arg;
	pthread_mutex_lock(&m->lock);
	while (!m->stop) {
		size_t n = build_poll(m);
		if (!n) {
			mux_die(m, "connection ran out of memory");
			n = build_poll(m);
		}
		pthread_mutex_unlock(&m->lock);
		int r = poll(m->pfd, n, -1);
		pthread_mutex_lock(&m->lock);
		if (r < 0)
			continue;
		if (m->pfd[0].revents) {
			uint64_t v;
			if (read(m->wake_fd, &v, sizeof(v)) < 0)
				log_debug("agent mux: wake read: %s", strerror(errno));
		}
		if (!m->dead)
			stream_io(m, m->pfd[1].revents);
		for (struct mchan *c = m->chans; c; c = c->next)
			chan_io(m, c);
		for (struct mchan *c = m->chans, *next; c; c = next) {
			next = c->next;
			chan_progress(m, c);
		}
		if (!buf_ok(&m->tx))
			mux_die(m, "connection ran out of memory");
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

/* ---- channels opened by callers ---- */

struct mchan *chan_new(struct agent_mux *m, enum mkind kind)
{
	struct mchan *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->m = m;
	c->kind = kind;
	c->io_fd = c->err_fd = -1;
	c->pfd_io = c->pfd_err = -1;
	c->credit = MUX_WINDOW;
	buf_init(&c->out);
	buf_init(&c->err);
	return c;
}

int chan_open(struct agent_mux *m, struct mchan *c, uint8_t type,
	      void (*payload)(struct buf *tx, const void *arg), const void *arg, struct err *e)
{
	if (m->dead) {
		err_set(e, "%s", m->dead_msg);
		chan_destroy(c);
		return -1;
	}
	c->id = ++m->next_id;
	c->next = m->chans;
	m->chans = c;
	size_t s = tx_begin(m, type, c->id);
	if (payload)
		payload(&m->tx, arg);
	tx_end(m, s);
	mux_wake(m);
	int64_t deadline = deadline_in(OPEN_TIMEOUT_MS);
	while (c->state == MS_OPENING && mux_wait(m, deadline))
		;
	c->handed_over = true;
	if (c->state == MS_OPEN)
		return 0;
	if (c->state == MS_FAILED)
		err_set(e, "%s: %s", m->label, c->errmsg);
	else
		err_set(e, "%s: the sandbox agent did not answer within %d s", m->label,
			OPEN_TIMEOUT_MS / 1000);
	c->released = true;
	mux_wake(m);
	return -1;
}

/* ---- the mux ---- */

int agent_mux_start(int fd, const char *label, int timeout_ms, struct agent_mux **out,
		    struct err *e)
{
	struct agent_mux *m = calloc(1, sizeof(*m));
	if (!m) {
		close(fd);
		err_set(e, "out of memory");
		return -1;
	}
	m->fd = fd;
	snprintf(m->label, sizeof(m->label), "%s", label);
	fd_set_nonblock(fd, true);
	fd_set_cloexec(fd);
	buf_init(&m->tx);
	buf_init(&m->rx);
	m->events_tail = &m->events;
	pthread_mutex_init(&m->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&m->events_cond, NULL);
	m->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	m->thread_started = m->wake_fd >= 0 && pthread_create(&m->thread, NULL, pump_main, m) == 0;
	m->notifier_started =
	    m->thread_started && pthread_create(&m->notifier, NULL, notifier_main, m) == 0;
	if (!m->notifier_started) {
		err_set(e, "cannot start the agent connection: %s", strerror(errno));
		agent_mux_close(m);
		return -1;
	}
	int64_t deadline = deadline_in(timeout_ms);
	pthread_mutex_lock(&m->lock);
	while (!m->hello && !m->dead && mux_wait(m, deadline))
		;
	bool ok = m->hello && !m->dead;
	if (!ok)
		err_set(e, "%s", m->dead ? m->dead_msg : "the sandbox agent did not start in time");
	pthread_mutex_unlock(&m->lock);
	if (!ok) {
		agent_mux_close(m);
		return -1;
	}
	*out = m;
	return 0;
}

void agent_mux_close(struct agent_mux *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->stop = true;
	if (m->wake_fd >= 0)
		mux_wake(m);
	pthread_cond_broadcast(&m->events_cond);
	pthread_mutex_unlock(&m->lock);
	if (m->thread_started)
		pthread_join(m->thread, NULL);
	if (m->notifier_started)
		pthread_join(m->notifier, NULL);
	close(m->fd);
	if (m->wake_fd >= 0)
		close(m->wake_fd);
	while (m->chans) {
		struct mchan *c = m->chans;
		m->chans = c->next;
		chan_destroy(c);
	}
	free_events(m->events);
	buf_free(&m->tx);
	buf_free(&m->rx);
	free(m->pfd);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	pthread_cond_destroy(&m->events_cond);
	free(m);
}

bool agent_mux_alive(struct agent_mux *m)
{
	pthread_mutex_lock(&m->lock);
	bool alive = !m->dead;
	pthread_mutex_unlock(&m->lock);
	return alive;
}

const char *agent_mux_version(struct agent_mux *m)
{
	return m->version;
}

unsigned agent_mux_channels(struct agent_mux *m)
{
	unsigned n = 0;
	pthread_mutex_lock(&m->lock);
	for (struct mchan *c = m->chans; c; c = c->next)
		n += c->kind != MK_WATCH && c->state == MS_OPEN;
	pthread_mutex_unlock(&m->lock);
	return n;
}
