/* conn.c: the connection manager of conn.h. One watcher thread checks the current connection
 * (every WATCH_MS, or at once when a caller reports a failure); when the transport or the SFTP
 * client is dead it drops the connection and reconnects with backoff, then wakes every caller
 * waiting in conn_get. Connections are reference counted under m->lock; when the last reference
 * goes, the watcher closes the SFTP client and the transport (never the caller: see
 * defer_close). */
#include "conn.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define WATCH_MS	 250
#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS	 30000
#define SHUTDOWN_WAIT_MS 2000
#define DEMAND_GAP_MS	 1000 /* a caller may ask for an attempt this long after a failed one */

struct conn_mgr {
	const struct sandbox_cfg *cfg;
	void (*on_reconnect)(void *ctx, struct conn *c);
	void *ctx;

	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;  /* the connection changed, a failure was reported, or stop */
	struct conn *cur;     /* NULL while reconnecting */
	struct conn *all;     /* every connection with references */
	struct conn *closing; /* unreferenced, for the watcher to close */
	unsigned generation;
	bool stop;
	bool thread_done;
	bool connecting;  /* a reconnect attempt is under way */
	bool orphaned;	  /* conn_mgr_free gave up waiting: the thread frees the manager */
	unsigned attempt; /* failed reconnect attempts in this outage */
	unsigned reconnects;
	int64_t lost_at_ms, next_try_ms;
	int64_t last_fail_ms;
	unsigned failures; /* failed attempts ever: waiters learn of one by the change */
	char last_error[512];
	unsigned seed;
};

/* ---- connections ---- */

static int conn_open(const struct sandbox_cfg *cfg, unsigned generation, struct conn **out,
		     struct err *e)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) {
		err_set(e, "out of memory");
		return -1;
	}
	int fd;
	if (transport_open(cfg, &c->transport, e) < 0)
		goto fail;
	if (transport_open_sftp(c->transport, &fd, e) < 0)
		goto fail;
	if (sftp_client_open_limited(fd, cfg->op_timeout_s * 1000, &cfg->limits, &c->sftp, e) < 0)
		goto fail;
	c->generation = generation;
	c->refs = 1;
	*out = c;
	return 0;
fail:
	transport_close(c->transport);
	free(c);
	return -1;
}

static void conn_close(struct conn *c)
{
	sftp_client_close(c->sftp);
	transport_close(c->transport);
	free(c);
}

static bool conn_dead(struct conn *c)
{
	if (sftp_client_dead(c->sftp))
		return true;
	struct transport_stats st;
	transport_stats(c->transport, &st);
	return !st.connected;
}

/* Drop a reference with m->lock held; returns the connection to close (outside the lock). */
static struct conn *unref_locked(struct conn_mgr *m, struct conn *c)
{
	if (--c->refs > 0)
		return NULL;
	struct conn **pp = &m->all;
	while (*pp != c)
		pp = &(*pp)->next;
	*pp = c->next;
	return c;
}

static void add_locked(struct conn_mgr *m, struct conn *c)
{
	c->next = m->all;
	m->all = c;
}

/* m->lock held: c's last reference is gone. Closing a transport joins its threads, and a watch
 * notifier may be inside a stat() through our own mount, waiting for a FUSE request that needs
 * a lock the caller holds (a FUSE worker re-opening a file after a reconnect drops the old
 * connection with the file's lock held): the caller closing it would deadlock. So the watcher
 * closes it; returns c only when no watcher runs any more (the caller closes it then). */
static struct conn *defer_close(struct conn_mgr *m, struct conn *c)
{
	if (m->thread_done)
		return c;
	c->next = m->closing;
	m->closing = c;
	pthread_cond_broadcast(&m->cond);
	return NULL;
}

/* m->lock held (released while closing): close what defer_close queued. */
static void close_queued(struct conn_mgr *m)
{
	while (m->closing) {
		struct conn *c = m->closing;
		m->closing = c->next;
		pthread_mutex_unlock(&m->lock);
		conn_close(c);
		pthread_mutex_lock(&m->lock);
	}
}

/* ---- the watcher ---- */

static void cond_wait_until(struct conn_mgr *m, int64_t deadline)
{
	struct timespec ts = {.tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000};
	pthread_cond_timedwait(&m->cond, &m->lock, &ts);
}

static int64_t backoff_ms(struct conn_mgr *m)
{
	int64_t d = BACKOFF_FIRST_MS;
	for (unsigned i = 1; i < m->attempt && d < BACKOFF_MAX_MS; i++)
		d *= 2;
	if (d > BACKOFF_MAX_MS)
		d = BACKOFF_MAX_MS;
	/* +-20 % so that many daemons do not knock at the same moment */
	int64_t spread = d / 5;
	return d - spread + (int64_t)(rand_r(&m->seed) % (unsigned)(2 * spread + 1));
}

/* m->lock held: the current connection is dead; let it go. */
static void drop_current(struct conn_mgr *m)
{
	struct conn *c = m->cur;
	m->cur = NULL;
	m->attempt = 0;
	m->lost_at_ms = now_ms();
	m->next_try_ms = m->lost_at_ms + BACKOFF_FIRST_MS / 2;
	snprintf(m->last_error, sizeof(m->last_error), "connection lost");
	log_warn("connection to %s lost; reconnecting", m->cfg->name);
	struct conn *dead = unref_locked(m, c);
	if (dead) {
		pthread_mutex_unlock(&m->lock);
		conn_close(dead);
		pthread_mutex_lock(&m->lock);
	}
}

/* m->lock held; released while connecting. */
static void try_reconnect(struct conn_mgr *m)
{
	unsigned gen = m->generation + 1;
	m->connecting = true;
	pthread_mutex_unlock(&m->lock);
	struct conn *c = NULL;
	struct err e = {""};
	int r = conn_open(m->cfg, gen, &c, &e);
	pthread_mutex_lock(&m->lock);
	m->connecting = false;
	if (r < 0) {
		m->attempt++;
		m->failures++;
		m->last_fail_ms = now_ms();
		m->next_try_ms = m->last_fail_ms + backoff_ms(m);
		pthread_cond_broadcast(&m->cond);
		snprintf(m->last_error, sizeof(m->last_error), "%s", e.msg);
		log_warn("reconnect attempt %u to %s failed: %s", m->attempt, m->cfg->name, e.msg);
		return;
	}
	if (m->stop) {
		pthread_mutex_unlock(&m->lock);
		conn_close(c);
		pthread_mutex_lock(&m->lock);
		return;
	}
	m->cur = c;
	add_locked(m, c);
	m->generation = gen;
	m->reconnects++;
	log_info("reconnected to %s after %.1f s (%u failed attempts)", m->cfg->name,
		 (now_ms() - m->lost_at_ms) / 1000.0, m->attempt);
	m->attempt = 0;
	c->refs++;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	if (m->on_reconnect)
		m->on_reconnect(m->ctx, c);
	pthread_mutex_lock(&m->lock);
	struct conn *last = unref_locked(m, c);
	if (last) {
		pthread_mutex_unlock(&m->lock);
		conn_close(last);
		pthread_mutex_lock(&m->lock);
	}
}

static bool current_dead(struct conn_mgr *m)
{
	struct conn *c = m->cur;
	c->refs++;
	pthread_mutex_unlock(&m->lock);
	bool dead = conn_dead(c);
	pthread_mutex_lock(&m->lock);
	struct conn *last = unref_locked(m, c);
	if (last) { /* cannot happen while it is current, but stay correct */
		pthread_mutex_unlock(&m->lock);
		conn_close(last);
		pthread_mutex_lock(&m->lock);
	}
	return dead && m->cur == c;
}

static void *watch_main(void *arg)
{
	struct conn_mgr *m = arg;
	pthread_mutex_lock(&m->lock);
	while (!m->stop) {
		close_queued(m);
		if (m->cur) {
			if (current_dead(m))
				drop_current(m);
			else
				cond_wait_until(m, now_ms() + WATCH_MS);
		} else if (now_ms() >= m->next_try_ms) {
			try_reconnect(m);
		} else {
			cond_wait_until(m, m->next_try_ms);
		}
	}
	close_queued(m);
	m->thread_done = true;
	pthread_cond_broadcast(&m->cond);
	bool orphaned = m->orphaned;
	pthread_mutex_unlock(&m->lock);
	if (orphaned) {
		pthread_mutex_destroy(&m->lock);
		pthread_cond_destroy(&m->cond);
		free(m);
	}
	return NULL;
}

/* ---- the interface ---- */

int conn_mgr_open(const struct sandbox_cfg *cfg, void (*on_reconnect)(void *ctx, struct conn *c),
		  void *ctx, struct conn_mgr **out, struct err *e)
{
	struct conn_mgr *m = calloc(1, sizeof(*m));
	if (!m) {
		err_set(e, "out of memory");
		return -1;
	}
	m->cfg = cfg;
	m->on_reconnect = on_reconnect;
	m->ctx = ctx;
	m->generation = 1;
	m->seed = (unsigned)getpid() ^ (unsigned)now_ms();
	if (conn_open(cfg, 1, &m->cur, e) < 0) {
		free(m);
		return -1;
	}
	m->all = m->cur;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&m->lock, NULL);
	int r = pthread_create(&m->thread, NULL, watch_main, m);
	if (r != 0) {
		err_set(e, "cannot start the connection watcher: %s", strerror(r));
		conn_close(m->cur);
		pthread_mutex_destroy(&m->lock);
		pthread_cond_destroy(&m->cond);
		free(m);
		return -1;
	}
	*out = m;
	return 0;
}

void conn_mgr_shutdown(struct conn_mgr *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->stop = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

void conn_mgr_free(struct conn_mgr *m)
{
	if (!m)
		return;
	conn_mgr_shutdown(m);
	pthread_mutex_lock(&m->lock);
	/* A reconnect attempt may be stuck in a connect: do not wait for it past a moment. */
	int64_t deadline = now_ms() + SHUTDOWN_WAIT_MS;
	while (!m->thread_done && now_ms() < deadline)
		cond_wait_until(m, deadline);
	struct conn *c = m->cur;
	m->cur = NULL;
	c = c ? unref_locked(m, c) : NULL;
	bool done = m->thread_done;
	m->orphaned = !done;
	pthread_mutex_unlock(&m->lock);
	if (c)
		conn_close(c);
	if (!done) {
		log_warn("a reconnect attempt is still running at shutdown; leaving it");
		pthread_detach(m->thread);
		return;
	}
	pthread_join(m->thread, NULL);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	free(m);
}

/* m->lock held, no connection: should a caller that began waiting when `failures` attempts
 * had failed stop waiting? Early in an outage callers wait it out (it may be a blip); once it
 * has lasted op_timeout, the first attempt that fails while they wait ends the wait, so a
 * sandbox that stays down answers each operation within about a second, not op_timeout. A
 * caller also brings the next attempt forward (backoff may have grown to 30 s), so a sandbox
 * that is back is found as soon as someone needs it. */
static bool give_up_waiting(struct conn_mgr *m, unsigned failures)
{
	int64_t now = now_ms();
	if (m->connecting)
		return false;
	if (m->failures != failures && now - m->lost_at_ms >= (int64_t)m->cfg->op_timeout_s * 1000)
		return true;
	int64_t soonest = m->last_fail_ms + DEMAND_GAP_MS;
	if (m->next_try_ms > soonest) {
		m->next_try_ms = soonest > now ? soonest : now;
		pthread_cond_broadcast(&m->cond);
	}
	return false;
}

struct conn *conn_get(struct conn_mgr *m, int64_t deadline)
{
	pthread_mutex_lock(&m->lock);
	bool woke = false;
	unsigned failures = m->failures;
	while ((!m->cur || sftp_client_dead(m->cur->sftp)) && !m->stop && deadline &&
	       now_ms() < deadline) {
		if (m->cur && !woke) {
			pthread_cond_broadcast(&m->cond); /* the watcher drops it at once */
			woke = true;
		}
		if (!m->cur && give_up_waiting(m, failures))
			break;
		cond_wait_until(m, deadline);
	}
	struct conn *c = m->cur;
	if (c)
		c->refs++;
	pthread_mutex_unlock(&m->lock);
	return c;
}

void conn_hold(struct conn_mgr *m, struct conn *c)
{
	pthread_mutex_lock(&m->lock);
	c->refs++;
	pthread_mutex_unlock(&m->lock);
}

void conn_put(struct conn_mgr *m, struct conn *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&m->lock);
	struct conn *last = unref_locked(m, c);
	if (last)
		last = defer_close(m, last);
	pthread_mutex_unlock(&m->lock);
	if (last)
		conn_close(last);
}

struct transport *conn_get_transport(struct conn_mgr *m)
{
	struct conn *c = conn_get(m, 0);
	return c ? c->transport : NULL;
}

void conn_put_transport(struct conn_mgr *m, struct transport *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&m->lock);
	struct conn *c = m->all;
	while (c && c->transport != t)
		c = c->next;
	struct conn *last = c ? unref_locked(m, c) : NULL;
	if (last)
		last = defer_close(m, last);
	pthread_mutex_unlock(&m->lock);
	if (last)
		conn_close(last);
}

bool conn_current(struct conn_mgr *m, const struct conn *c)
{
	pthread_mutex_lock(&m->lock);
	bool cur = c && m->cur == c;
	pthread_mutex_unlock(&m->lock);
	return cur && !sftp_client_dead(c->sftp);
}

bool conn_failed(struct conn_mgr *m, struct conn *c)
{
	if (!conn_dead(c))
		return false;
	pthread_mutex_lock(&m->lock);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return true;
}

int64_t conn_op_deadline(struct conn_mgr *m)
{
	return deadline_in((int64_t)m->cfg->op_timeout_s * 1000);
}

void conn_mgr_status(struct conn_mgr *m, struct buf *text)
{
	char line[1024];
	int n;
	pthread_mutex_lock(&m->lock);
	if (m->cur) {
		n = snprintf(line, sizeof(line), "state: connected\nreconnects: %u\n",
			     m->reconnects);
	} else {
		char when[64];
		int64_t next = m->next_try_ms - now_ms();
		if (m->connecting)
			snprintf(when, sizeof(when), "connecting now");
		else
			snprintf(when, sizeof(when), "next in %.1f s",
				 next > 0 ? next / 1000.0 : 0.0);
		n = snprintf(
		    line, sizeof(line),
		    "state: reconnecting (attempt %u, %s, down for %.1f s, last error: %s)\n"
		    "reconnects: %u\n",
		    m->attempt + 1, when, (now_ms() - m->lost_at_ms) / 1000.0, m->last_error,
		    m->reconnects);
	}
	pthread_mutex_unlock(&m->lock);
	if (n > 0)
		buf_put_bytes(text, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}
