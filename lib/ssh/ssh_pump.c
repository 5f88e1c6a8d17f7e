/* ssh_pump.c: the one thread that drives a libssh session (libssh is not thread-safe). It opens
 * channels as non-blocking state machines, bridges each channel to one end of a local socket pair
 * (the bytes move in ssh_chan_io.c), sends keepalives and declares the session dead when the
 * server stays silent. */
#include "ssh/ssh_internal.h"

#include <errno.h>
#include <libssh/server.h> /* ssh_send_keepalive */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define MAX_POLL_MS	1000 /* libssh can progress without a visible fd event (rekey) */
#define HELPER_START_MS 2000 /* how long close() lets kill helpers get started */
/* OpenSSH's default MaxSessions: channels beyond it are refused, so further opens wait for a
 * slot. The last slot is kept for kill helpers, so a signal is never stuck behind the commands
 * it is meant to stop. */
#define MAX_SESSIONS   10
#define QUEUED_POLL_MS 20 /* how often a channel waiting for a session slot looks again */
#define MAX_PASSES     8  /* channel passes per wake-up while libssh keeps reading input */

void pump_wake(struct ssh_tr *tr)
{
	uint64_t one = 1;
	if (write(tr->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("ssh: cannot wake the pump: %s", strerror(errno));
}

bool pump_wait(struct ssh_tr *tr, int64_t deadline)
{
	if (deadline == 0) {
		pthread_cond_wait(&tr->cond, &tr->lock);
		return true;
	}
	if (now_ms() >= deadline)
		return false;
	struct timespec ts = {.tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000};
	pthread_cond_timedwait(&tr->cond, &tr->lock, &ts);
	return now_ms() < deadline;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void chan_free(struct pump_chan *c)
{
	close_fd(&c->io_fd);
	close_fd(&c->err_fd);
	free(c->out.data);
	free(c->err.data);
	free(c->in.data);
	free(c->request);
	free(c->term);
	free(c);
}

struct pump_chan *pump_chan_new(enum chan_kind kind, const char *request)
{
	struct pump_chan *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->io_fd = c->err_fd = c->pfd_io = -1;
	/* A helper's output is thrown away: no window worth growing for it. */
	c->out.cap = kind == CHAN_HELPER ? CHAN_BUF_SIZE : CHAN_RX_WINDOW;
	c->err.cap = c->in.cap = CHAN_BUF_SIZE;
	c->out.data = malloc(c->out.cap);
	c->err.data = malloc(c->err.cap);
	c->in.data = malloc(c->in.cap);
	c->request = strdup(request);
	if (!c->request || !c->out.data || !c->err.data || !c->in.data) {
		chan_free(c);
		return NULL;
	}
	c->kind = kind;
	c->strip_header = kind == CHAN_EXEC;
	c->state = CS_QUEUED;
	return c;
}

static void chan_append(struct ssh_tr *tr, struct pump_chan *c)
{
	struct pump_chan **p = &tr->chans;
	while (*p)
		p = &(*p)->next;
	c->tr = tr;
	c->next = NULL;
	*p = c;
}

/* Only libssh calls these, from inside the pump, with tr->lock held. */
static void on_exit_status(ssh_session s, ssh_channel ch, int status, void *userdata)
{
	struct pump_chan *c = userdata;
	(void)s;
	(void)ch;
	c->exited = true;
	c->status = status & 0xff;
}

static void on_exit_signal(ssh_session s, ssh_channel ch, const char *sig, int core,
			   const char *errmsg, const char *lang, void *userdata)
{
	struct pump_chan *c = userdata;
	(void)s;
	(void)ch;
	(void)core;
	(void)errmsg;
	(void)lang;
	int n = ssh_signal_number(sig);
	c->exited = true;
	c->status = n > 0 ? EXEC_STATUS_SIGNALED(n) : 255;
}

static void spawn_helper(struct ssh_tr *tr, char *cmd)
{
	struct pump_chan *h = cmd ? pump_chan_new(CHAN_HELPER, cmd) : NULL;
	free(cmd);
	if (!h) {
		log_warn("ssh: out of memory starting a helper command on %s", tr->peer.label);
		return;
	}
	h->released = true;
	chan_append(tr, h);
	log_debug("ssh: running on %s: %s", tr->peer.label, h->request);
}

static void open_failed(struct pump_chan *c, const char *what)
{
	snprintf(c->errmsg, sizeof(c->errmsg), "cannot %s on %s: %s", what, c->tr->peer.label,
		 ssh_get_error(c->tr->session));
	c->state = CS_DONE;
	close_fd(&c->io_fd);
	close_fd(&c->err_fd);
	log_debug("ssh: %s", c->errmsg);
}

static unsigned sessions_in_use(struct ssh_tr *tr)
{
	unsigned n = 0;
	for (struct pump_chan *c = tr->chans; c; c = c->next)
		if (c->kind != CHAN_FORWARD && c->state != CS_QUEUED && c->state != CS_DONE)
			n++;
	return n;
}

/* A forwarded socket needs only the channel open; the server connects it to the socket. */
static void advance_forward(struct ssh_tr *tr, struct pump_chan *c)
{
	int rc = ssh_channel_open_forward_unix(c->ch, c->request, "127.0.0.1", 0);
	if (rc == SSH_AGAIN)
		return;
	if (rc != SSH_OK) {
		snprintf(c->errmsg, sizeof(c->errmsg),
			 "the remote socket %.120s: cannot connect (missing, or %.60s may not use "
			 "it): %.200s",
			 c->request, tr->peer.user, ssh_get_error(tr->session));
		c->state = CS_DONE;
		close_fd(&c->io_fd);
		log_debug("ssh: %s", c->errmsg);
		return;
	}
	tr->rtt_us = now_us() - c->open_started_us;
	c->state = CS_RUNNING;
}

/* One step of channel open → [pty-req] → subsystem/exec; each call returns SSH_AGAIN until the
 * server answered. */
static void advance_open(struct ssh_tr *tr, struct pump_chan *c)
{
	int rc;

	if (c->state == CS_QUEUED) {
		c->ch = ssh_channel_new(tr->session);
		if (!c->ch) {
			open_failed(c, "create a channel");
			return;
		}
		c->cb.userdata = c;
		c->cb.channel_exit_status_function = on_exit_status;
		c->cb.channel_exit_signal_function = on_exit_signal;
		ssh_callbacks_init(&c->cb);
		ssh_set_channel_callbacks(c->ch, &c->cb);
		c->open_started_us = now_us();
		c->state = CS_OPENING;
	}
	if (c->state == CS_OPENING && c->kind == CHAN_FORWARD) {
		advance_forward(tr, c);
		return;
	}
	if (c->state == CS_OPENING) {
		rc = ssh_channel_open_session(c->ch);
		if (rc == SSH_AGAIN)
			return;
		if (rc != SSH_OK && sessions_in_use(tr) > 1) {
			/* the server's session limit is lower than ours: wait for a slot */
			ssh_remove_channel_callbacks(c->ch, &c->cb);
			ssh_channel_free(c->ch);
			c->ch = NULL;
			c->state = CS_QUEUED;
			c->retry_at_ms = now_ms() + QUEUED_POLL_MS;
			return;
		}
		if (rc != SSH_OK) {
			open_failed(c, "open a session channel");
			return;
		}
		tr->rtt_us = now_us() - c->open_started_us;
		c->state = c->tty ? CS_PTY : CS_REQUEST;
	}
	if (c->state == CS_PTY) {
		rc = ssh_channel_request_pty_size(c->ch, c->term ? c->term : "xterm", (int)c->cols,
						  (int)c->rows);
		if (rc == SSH_AGAIN)
			return;
		if (rc != SSH_OK) {
			open_failed(c, "allocate a terminal");
			return;
		}
		c->state = CS_REQUEST;
	}
	if (c->kind == CHAN_SFTP && !strcmp(c->request, "sftp")) /* else an sftp_server= command */
		rc = ssh_channel_request_subsystem(c->ch, c->request);
	else
		rc = ssh_channel_request_exec(c->ch, c->request);
	if (rc == SSH_AGAIN)
		return;
	if (rc != SSH_OK) {
		open_failed(c, c->kind == CHAN_SFTP ? "start the sftp subsystem" : "run a command");
		return;
	}
	c->state = CS_RUNNING;
}

static void deliver_requests(struct ssh_tr *tr, struct pump_chan *c)
{
	if (c->resize) {
		c->resize = false;
		if (ssh_channel_change_pty_size(c->ch, (int)c->new_cols, (int)c->new_rows) !=
		    SSH_OK)
			log_warn("ssh: terminal resize failed on %s: %s", tr->peer.label,
				 ssh_get_error(tr->session));
	}
	if (!c->pid || c->exited) {
		if (c->exited)
			c->signals = 0;
		return;
	}
	for (int sig = 1; sig < 64 && c->signals; sig++) {
		if (c->signals & (UINT64_C(1) << sig)) {
			c->signals &= ~(UINT64_C(1) << sig);
			spawn_helper(tr, ssh_kill_command(sig, c->pid));
		}
	}
}

/* Returns whether output is left in libssh's buffers for the next pass. */
static bool service_running(struct ssh_tr *tr, struct pump_chan *c)
{
	deliver_requests(tr, c);
	bool more = pump_output(c, false);
	more |= pump_output(c, true);
	pump_input(c);
	/* a command is over with its exit status (or a close without one); other channels at EOF */
	if (!c->finished && c->out_eof && c->err_eof &&
	    (c->kind != CHAN_EXEC || c->exited || ssh_channel_is_closed(c->ch)))
		c->finished = true;
	return more;
}

/* A released channel goes once nothing more is owed: an exec still running is killed first
 * (its process group is known from the header, so wait for that). */
static bool disposable(struct ssh_tr *tr, struct pump_chan *c)
{
	if (!c->released || c->state == CS_DONE)
		return c->released;
	if (c->state != CS_RUNNING)
		return false; /* let the open finish, then close the channel */
	switch (c->kind) {
	case CHAN_SFTP:
	case CHAN_FORWARD:
		return c->finished || (c->hup && c->in_eof_sent);
	case CHAN_HELPER:
		return c->finished;
	case CHAN_EXEC:
		if (c->exited || c->finished)
			return true;
		if (!c->pid)
			return false;
		if (!c->kill_sent) {
			c->kill_sent = true;
			spawn_helper(tr, ssh_reap_command(c->pid));
		}
		return true;
	}
	return true;
}

static void chan_dispose(struct ssh_tr *tr, struct pump_chan *c)
{
	if (c->ch) {
		ssh_remove_channel_callbacks(c->ch, &c->cb);
		if (tr->connected)
			ssh_channel_free(c->ch); /* after a lost session, ssh_free frees it */
	}
	chan_free(c);
}

static bool may_open(const struct pump_chan *c, unsigned *in_use)
{
	if (c->state != CS_QUEUED || c->kind == CHAN_FORWARD)
		return true;
	if (c->retry_at_ms > now_ms() || *in_use >= MAX_SESSIONS - (c->kind == CHAN_HELPER ? 0 : 1))
		return false;
	(*in_use)++;
	return true;
}

/* Returns whether a channel still waits for a session slot; *more: whether a channel has output
 * buffered in libssh that it could not move yet. */
static bool service_channels(struct ssh_tr *tr, bool *more)
{
	bool waiting = false;
	struct pump_chan **p = &tr->chans;
	unsigned in_use = sessions_in_use(tr);
	while (*p) {
		struct pump_chan *c = *p;
		if (!tr->connected && c->state != CS_DONE) {
			snprintf(c->errmsg, sizeof(c->errmsg), "%s", tr->lost_msg);
			c->state = CS_DONE;
		}
		if (c->state < CS_RUNNING && may_open(c, &in_use))
			advance_open(tr, c);
		waiting |= c->state == CS_QUEUED;
		if (c->state == CS_RUNNING)
			*more |= service_running(tr, c);
		if (disposable(tr, c)) {
			*p = c->next;
			chan_dispose(tr, c);
			continue;
		}
		p = &c->next;
	}
	return waiting;
}

static void session_lost(struct ssh_tr *tr, const char *why)
{
	if (!tr->connected)
		return;
	tr->connected = false;
	snprintf(tr->lost_msg, sizeof(tr->lost_msg), "connection to %s lost: %s", tr->peer.label,
		 why);
	log_warn("%s", tr->lost_msg);
	for (struct pump_chan *c = tr->chans; c; c = c->next) {
		c->lost = true;
		if (c->state != CS_DONE)
			snprintf(c->errmsg, sizeof(c->errmsg), "%s", tr->lost_msg);
		c->state = CS_DONE;
		close_fd(&c->io_fd);
		close_fd(&c->err_fd);
	}
}

/* libssh answers a keepalive request only when called again after the reply arrived (it then
 * resets its request state without sending), so a second call is what sends the next probe when
 * the previous one was answered. Two calls send exactly one probe unless one is still pending. */
static void send_keepalive(struct ssh_tr *tr)
{
	ssh_send_keepalive(tr->session);
	ssh_send_keepalive(tr->session);
	tr->last_ka_ms = now_ms();
	if (!tr->ka_sent_us)
		tr->ka_sent_us = now_us();
}

/* Returns the poll timeout until the next keepalive event. */
static int keepalive_tick(struct ssh_tr *tr)
{
	if (tr->keepalive_s <= 0 || !tr->connected)
		return MAX_POLL_MS;
	int64_t iv = (int64_t)tr->keepalive_s * 1000, now = now_ms();
	if (now - tr->last_rx_ms >= 3 * iv) {
		char why[64];
		snprintf(why, sizeof(why), "no answer for %d s", 3 * tr->keepalive_s);
		session_lost(tr, why);
		return MAX_POLL_MS;
	}
	int64_t last = tr->last_rx_ms > tr->last_ka_ms ? tr->last_rx_ms : tr->last_ka_ms;
	if (now - last >= iv)
		send_keepalive(tr);
	last = tr->last_rx_ms > tr->last_ka_ms ? tr->last_rx_ms : tr->last_ka_ms;
	int64_t next = last + iv, dead = tr->last_rx_ms + 3 * iv;
	int64_t left = (next < dead ? next : dead) - now;
	return left < 0 ? 0 : left > MAX_POLL_MS ? MAX_POLL_MS : (int)left;
}

static size_t build_pollfds(struct ssh_tr *tr, struct pollfd *pfds)
{
	size_t n = 0;
	pfds[n++] = (struct pollfd){.fd = tr->wake_fd, .events = POLLIN};
	if (tr->connected) {
		short ev = POLLIN;
		if (ssh_get_status(tr->session) & SSH_WRITE_PENDING)
			ev |= POLLOUT;
		pfds[n++] = (struct pollfd){.fd = ssh_get_fd(tr->session), .events = ev};
	}
	for (struct pump_chan *c = tr->chans; c; c = c->next) {
		c->pfd_io = -1;
		if (c->state != CS_RUNNING)
			continue;
		short ev = 0;
		if (!c->in_eof && c->in.off == c->in.len && !c->finished &&
		    ssh_channel_window_size(c->ch) > 0 && ssh_channel_is_open(c->ch))
			ev |= POLLIN;
		if (c->out.off < c->out.len && !c->out_broken)
			ev |= POLLOUT;
		/* POLLHUP is reported even for no events: poll a hung-up end only to read it */
		if (c->io_fd >= 0 && ev && !(c->hup && !(ev & POLLIN))) {
			c->pfd_io = (int)n;
			pfds[n++] = (struct pollfd){.fd = c->io_fd, .events = ev};
		}
		if (c->err_fd >= 0 && c->err.off < c->err.len && !c->err_broken)
			pfds[n++] = (struct pollfd){.fd = c->err_fd, .events = POLLOUT};
	}
	return n;
}

static size_t count_chans(struct ssh_tr *tr)
{
	size_t n = 0;
	for (struct pump_chan *c = tr->chans; c; c = c->next)
		n++;
	return n;
}

/* Anything read from the server proves it alive and answers a pending keepalive. */
static void note_input(struct ssh_tr *tr)
{
	if (tr->wire.in_bytes == tr->seen_in_bytes)
		return;
	tr->seen_in_bytes = tr->wire.in_bytes;
	tr->last_rx_ms = now_ms();
	if (tr->ka_sent_us) {
		tr->rtt_us = now_us() - tr->ka_sent_us;
		tr->ka_sent_us = 0;
	}
}

/* Service all channels. Any libssh call may read the socket and queue data or answers for a
 * channel already visited, with nothing left for poll() to report; a channel also stops after
 * ROUNDS_PER_WAKE buffers with more already read from the socket. So pass again while the session
 * read input or a channel has buffered output, and never let poll() sleep on a timer while data
 * is already here. Returns the poll timeout. */
static int service_all(struct ssh_tr *tr, int timeout)
{
	bool waiting = false, more = false;
	uint64_t before = tr->wire.in_bytes;
	for (int pass = 0; pass < MAX_PASSES; pass++) {
		before = tr->wire.in_bytes;
		more = false;
		waiting = service_channels(tr, &more);
		if (tr->wire.in_bytes == before && !more)
			break;
	}
	if (tr->wire.in_bytes != before || more)
		return 0;
	if (waiting && timeout > QUEUED_POLL_MS)
		return QUEUED_POLL_MS;
	return timeout;
}

/* Acknowledge what arrives at once. sshd leaves Nagle on for sessions without a terminal, so
 * of two small replies in a row (pipelined SFTP requests) it holds the second until the first
 * is acknowledged, and a delayed ACK (up to 40 ms) held it that long. Linux drops quick-ACK
 * mode by itself, so it is asked for again before every read. */
static void ack_quickly(struct ssh_tr *tr, int fd)
{
	int one = 1;
	if (!tr->no_quickack && setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one)) < 0)
		tr->no_quickack = true;
}

static void handle_events(struct ssh_tr *tr, struct pollfd *pfds, size_t n)
{
	uint64_t v;
	if (pfds[0].revents && read(tr->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("ssh: pump wake-up read failed: %s", strerror(errno));
	for (struct pump_chan *c = tr->chans; c; c = c->next) {
		if (c->pfd_io >= 0 && (size_t)c->pfd_io < n &&
		    (pfds[c->pfd_io].revents & (POLLHUP | POLLERR)))
			c->hup = true;
		c->pfd_io = -1;
	}
	if (!tr->connected)
		return;
	if (n > 1 && (pfds[1].revents & POLLIN))
		ack_quickly(tr, pfds[1].fd);
	if (ssh_event_dopoll(tr->event, 0) == SSH_ERROR || !ssh_is_connected(tr->session))
		session_lost(tr, ssh_get_error(tr->session));
}

static void *pump_main(void *arg)
{
	struct ssh_tr *tr = arg;
	struct pollfd *pfds = NULL;
	size_t cap = 0;

	pthread_mutex_lock(&tr->lock);
	tr->last_rx_ms = now_ms();
	send_keepalive(tr); /* a first round trip time */
	while (!tr->stop) {
		note_input(tr);
		int timeout = service_all(tr, keepalive_tick(tr));
		note_input(tr);
		if (tr->connected && !ssh_is_connected(tr->session))
			session_lost(tr, ssh_get_error(tr->session));
		pthread_cond_broadcast(&tr->cond);

		size_t need = 2 + 2 * count_chans(tr);
		if (need > cap) {
			struct pollfd *np = realloc(pfds, need * sizeof(*pfds));
			if (!np) {
				session_lost(tr, "out of memory");
				continue;
			}
			pfds = np;
			cap = need;
		}
		size_t n = build_pollfds(tr, pfds);
		pthread_mutex_unlock(&tr->lock);
		int r = poll(pfds, n, timeout);
		pthread_mutex_lock(&tr->lock);
		if (r < 0 && errno != EINTR)
			log_warn("ssh: poll: %s", strerror(errno));
		if (r < 0)
			continue;
		handle_events(tr, pfds, n);
	}
	pthread_cond_broadcast(&tr->cond);
	pthread_mutex_unlock(&tr->lock);
	free(pfds);
	return NULL;
}

int pump_start(struct ssh_tr *tr, struct err *e)
{
	pthread_condattr_t ca;
	sigset_t all, old;

	pthread_mutex_init(&tr->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&tr->cond, &ca);
	pthread_condattr_destroy(&ca);
	tr->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	tr->event = ssh_event_new();
	if (tr->wake_fd < 0 || !tr->event ||
	    ssh_event_add_session(tr->event, tr->session) != SSH_OK) {
		err_set(e, "ssh: cannot set up the session pump for %s", tr->peer.label);
		return -1;
	}
	ssh_set_blocking(tr->session, 0);
	ssh_set_counters(tr->session, &tr->wire, NULL);
	tr->connected = true;
	/* signals belong to the application's threads, not to the pump */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&tr->thread, NULL, pump_main, tr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		err_set(e, "ssh: cannot start the session pump: %s", strerror(rc));
		return -1;
	}
	tr->thread_started = true;
	return 0;
}

static bool helpers_starting(struct ssh_tr *tr)
{
	for (struct pump_chan *c = tr->chans; c; c = c->next)
		if (c->kind == CHAN_HELPER && c->state < CS_RUNNING)
			return true;
	return false;
}

void pump_stop(struct ssh_tr *tr)
{
	if (tr->thread_started) {
		int64_t deadline = deadline_in(HELPER_START_MS);
		pthread_mutex_lock(&tr->lock);
		while (tr->connected && helpers_starting(tr) && pump_wait(tr, deadline))
			;
		tr->stop = true;
		pthread_mutex_unlock(&tr->lock);
		pump_wake(tr);
		pthread_join(tr->thread, NULL);
		tr->thread_started = false;
	}
	while (tr->chans) {
		struct pump_chan *c = tr->chans;
		tr->chans = c->next;
		chan_dispose(tr, c);
	}
	if (tr->event) {
		ssh_event_remove_session(tr->event, tr->session);
		ssh_event_free(tr->event);
		tr->event = NULL;
	}
	close_fd(&tr->wake_fd);
	pthread_cond_destroy(&tr->cond);
	pthread_mutex_destroy(&tr->lock);
}

/* Queue c (its io_fd set) and wait until it runs or failed. On failure c is released (or freed
 * when never queued) and e set. */
static int queue_and_wait(struct ssh_tr *tr, struct pump_chan *c, struct err *e)
{
	int64_t deadline = deadline_in(tr->open_timeout_ms);
	pthread_mutex_lock(&tr->lock);
	if (!tr->connected) {
		err_set(e, "%s", tr->lost_msg);
		pthread_mutex_unlock(&tr->lock);
		chan_free(c);
		return -1;
	}
	chan_append(tr, c);
	pump_wake(tr);
	while (c->state != CS_RUNNING && c->state != CS_DONE && pump_wait(tr, deadline))
		;
	bool ok = c->state == CS_RUNNING;
	if (!ok) {
		if (c->state == CS_DONE)
			err_set(e, "%s", c->errmsg);
		else
			err_set(e, "no answer from %s while opening a channel (%d ms)",
				tr->peer.label, tr->open_timeout_ms);
		c->released = true;
	}
	pthread_mutex_unlock(&tr->lock);
	if (!ok)
		pump_wake(tr);
	return ok ? 0 : -1;
}

int pump_open(struct ssh_tr *tr, struct pump_chan *c, int *io_fd, int *err_fd, struct err *e)
{
	int io[2] = {-1, -1}, er[2] = {-1, -1};

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, io) < 0 ||
	    (err_fd && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, er) < 0)) {
		err_set(e, "ssh: socketpair: %s", strerror(errno));
		close_fd(&io[1]);
		close_fd(&er[1]);
		c->io_fd = io[0];
		c->err_fd = er[0];
		chan_free(c);
		return -1;
	}
	c->io_fd = io[0];
	c->err_fd = er[0];
	fd_set_nonblock(c->io_fd, true);
	if (c->err_fd >= 0)
		fd_set_nonblock(c->err_fd, true);
	if (queue_and_wait(tr, c, e) < 0) {
		close_fd(&io[1]);
		close_fd(&er[1]);
		return -1;
	}
	*io_fd = io[1];
	if (err_fd)
		*err_fd = er[1];
	return 0;
}

int pump_attach(struct ssh_tr *tr, struct pump_chan *c, int fd, struct err *e)
{
	c->io_fd = fd;
	fd_set_nonblock(fd, true);
	return queue_and_wait(tr, c, e);
}

void pump_release(struct pump_chan *c)
{
	struct ssh_tr *tr = c->tr;
	pthread_mutex_lock(&tr->lock);
	c->released = true;
	pthread_mutex_unlock(&tr->lock);
	pump_wake(tr);
}
