/* sftp_client.c: the SFTP connection: handshake, the table of pending requests, the one reader
 * thread that matches replies to requests by id, deadlines, death of the connection, and stats.
 *
 * Locking: c->write_mu serializes whole packets onto the stream; c->mu guards the table, the
 * stats and every request's done/abandoned/err fields. A request is in the table from its send
 * until its reply (or the connection's end). A waiter past its deadline marks its request
 * abandoned and leaves; whoever takes it out of the table later frees it.
 *
 * Callers must wait for (or abandon) every asynchronous request before sftp_client_close. */
#include "sftp/sftp_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define READ_CHUNK (256 * 1024)

static uint32_t load_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool is_dead(struct sftp_client *c)
{
	return __atomic_load_n(&c->dead, __ATOMIC_ACQUIRE);
}

/* ---- the pending table (c->mu held) ---- */

static struct sftp_req **table_slot(struct sftp_client *c, uint32_t id)
{
	struct sftp_req **pp = &c->table[id % SFTP_TABLE_SIZE];
	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

static struct sftp_req *table_take(struct sftp_client *c, uint32_t id)
{
	struct sftp_req **pp = table_slot(c, id);
	struct sftp_req *r = *pp;
	if (r) {
		*pp = r->next;
		r->next = NULL;
		c->st.in_flight--;
	}
	return r;
}

void sftp_req_free(struct sftp_req *r)
{
	if (!r)
		return;
	buf_free(&r->reply);
	pthread_cond_destroy(&r->cv);
	free(r);
}

/* The connection is over: complete every pending request with -EIO. */
static void fail_all_locked(struct sftp_client *c)
{
	__atomic_store_n(&c->dead, true, __ATOMIC_RELEASE);
	for (size_t i = 0; i < SFTP_TABLE_SIZE; i++) {
		while (c->table[i]) {
			struct sftp_req *r = table_take(c, c->table[i]->id);
			if (r->abandoned) {
				sftp_req_free(r);
				continue;
			}
			r->err = -EIO;
			r->done = true;
			pthread_cond_signal(&r->cv);
		}
	}
}

static void fail_all(struct sftp_client *c)
{
	pthread_mutex_lock(&c->mu);
	fail_all_locked(c);
	pthread_mutex_unlock(&c->mu);
}

/* ---- sending and waiting ---- */

static struct sftp_req *req_new(struct sftp_client *c, uint8_t type)
{
	struct sftp_req *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	int rc = pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (rc != 0) {
		free(r);
		return NULL;
	}
	r->c = c;
	r->type = type;
	buf_init(&r->reply);
	return r;
}

/* Give r an unused id and put it in the table; -EIO if the connection is over. */
static int register_req(struct sftp_client *c, struct sftp_req *r)
{
	pthread_mutex_lock(&c->mu);
	if (c->dead) {
		pthread_mutex_unlock(&c->mu);
		return -EIO;
	}
	if (c->st.in_flight >= c->lim.max_inflight) {
		/* A server that leaves requests unanswered would make the table grow forever. */
		log_warn("sftp: %llu requests left unanswered (max_inflight): dropping the "
			 "connection",
			 (unsigned long long)c->st.in_flight);
		fail_all_locked(c);
		pthread_mutex_unlock(&c->mu);
		return -EIO;
	}
	do
		r->id = c->next_id++;
	while (*table_slot(c, r->id));
	r->next = c->table[r->id % SFTP_TABLE_SIZE];
	c->table[r->id % SFTP_TABLE_SIZE] = r;
	c->st.requests++;
	c->st.in_flight++;
	c->st.per_op[r->type - SSH2_FXP_OPEN < 31 ? r->type - SSH2_FXP_OPEN : 31]++;
	r->deadline = deadline_in(c->op_timeout_ms);
	r->sent_us = now_us();
	r->wait_epoch = c->wait_epoch;
	pthread_mutex_unlock(&c->mu);
	return 0;
}

int sftp_send(struct sftp_client *c, struct buf *pkt, const void *tail, size_t tail_len,
	      struct sftp_req **out)
{
	if (sftp_packet_finish(pkt, 0, tail_len) < 0) {
		buf_free(pkt);
		return -ENOMEM;
	}
	struct sftp_req *r = req_new(c, pkt->data[4]);
	if (!r) {
		buf_free(pkt);
		return -ENOMEM;
	}
	r->asked = tail_len;
	int e = register_req(c, r);
	if (e < 0) {
		buf_free(pkt);
		sftp_req_free(r);
		return e;
	}
	buf_set_u32_at(pkt, 5, r->id);

	pthread_mutex_lock(&c->write_mu);
	int w = is_dead(c) ? -EIO : fd_write_all(c->fd, pkt->data, pkt->len, r->deadline);
	if (w == 0 && tail_len)
		w = fd_write_all(c->fd, tail, tail_len, r->deadline);
	pthread_mutex_unlock(&c->write_mu);
	buf_free(pkt);

	if (w < 0) {
		/* A packet cut short leaves the stream out of frame: the connection is over. */
		pthread_mutex_lock(&c->mu);
		fail_all_locked(c);
		if (w == -ETIMEDOUT) {
			r->err = -ETIMEDOUT;
			c->st.timeouts++;
		}
		pthread_mutex_unlock(&c->mu);
	}
	*out = r;
	return 0;
}

/* Round trips this thread waited for, on any client: what one operation cost, even while
 * other threads wait for theirs. */
static __thread uint64_t thread_round_trips;

uint64_t sftp_thread_round_trips(void)
{
	return thread_round_trips;
}

int sftp_wait(struct sftp_req *r)
{
	struct sftp_client *c = r->c;
	struct timespec until = {.tv_sec = r->deadline / 1000,
				 .tv_nsec = (r->deadline % 1000) * 1000000};
	pthread_mutex_lock(&c->mu);
	c->waiters++;
	bool round_trip = r->wait_epoch == c->wait_epoch;
	if (round_trip)
		c->wait_epoch++;
	while (!r->done) {
		int rc = pthread_cond_timedwait(&r->cv, &c->mu, &until);
		if (rc == ETIMEDOUT && !r->done)
			break;
	}
	bool done = r->done;
	int e = done ? r->err : -ETIMEDOUT;
	if (!done) {
		r->abandoned = true;
		c->st.timeouts++;
	} else if (round_trip && e == 0) {
		c->st.round_trips++;
		thread_round_trips++;
	}
	if (--c->waiters == 0)
		pthread_cond_broadcast(&c->idle);
	pthread_mutex_unlock(&c->mu);
	if (done && e < 0)
		sftp_req_free(r);
	return e;
}

void sftp_req_abandon(struct sftp_req *r)
{
	struct sftp_client *c = r->c;
	pthread_mutex_lock(&c->mu);
	bool done = r->done;
	r->abandoned = true;
	pthread_mutex_unlock(&c->mu);
	if (done)
		sftp_req_free(r);
}

/* ---- the reader ---- */

/* Data read and writes acknowledged, from a reply (c->mu held). */
static void count_bytes(struct sftp_client *c, const struct sftp_req *r, const uint8_t *p,
			uint32_t len)
{
	if (len < 9)
		return;
	uint32_t v = load_be32(p + 5);
	if (p[0] == SSH2_FXP_DATA)
		c->st.bytes_read += v < len - 9 ? v : len - 9;
	else if (r->type == SSH2_FXP_WRITE && p[0] == SSH2_FXP_STATUS && v == SSH2_FX_OK)
		c->st.bytes_written += r->asked;
}

/* Nobody waits for an abandoned request; a close sent without waiting (sftp_close_async) that
 * failed on the sandbox is still worth a line in the log. */
static void log_abandoned_failure(const struct sftp_req *r, const uint8_t *p, uint32_t len)
{
	if (r->type != SSH2_FXP_CLOSE || p[0] != SSH2_FXP_STATUS || len < 9)
		return;
	uint32_t code = load_be32(p + 5);
	if (code != SSH2_FX_OK)
		log_warn("sftp: the sandbox failed to close a file (status %u)", code);
}

/* Hand one packet (type, id, payload) to its request; -1 for an id nobody asked for. */
static int deliver(struct sftp_client *c, const uint8_t *p, uint32_t len)
{
	uint32_t id = load_be32(p + 1);
	pthread_mutex_lock(&c->mu);
	struct sftp_req *r = table_take(c, id);
	pthread_mutex_unlock(&c->mu);
	if (!r) {
		log_warn("sftp: reply to request id %u, which is not pending: dropping the "
			 "connection",
			 id);
		return -1;
	}
	/* Out of the table and not done: only this thread touches r->reply now. */
	r->reply_type = p[0];
	buf_put_bytes(&r->reply, p + 5, len - 5);
	pthread_mutex_lock(&c->mu);
	c->st.last_rtt_us = now_us() - r->sent_us;
	count_bytes(c, r, p, len);
	if (r->abandoned) {
		pthread_mutex_unlock(&c->mu);
		log_abandoned_failure(r, p, len);
		sftp_req_free(r);
		return 0;
	}
	r->err = buf_ok(&r->reply) ? 0 : -EIO;
	r->done = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&c->mu);
	return 0;
}

/* Deliver every complete packet in `in`; -1 on a framing or protocol error. */
static int deliver_buffered(struct sftp_client *c, struct buf *in)
{
	while (buf_remaining(in) >= 4) {
		uint32_t len = load_be32(buf_cursor(in));
		if (len < 5 || len > c->lim.max_packet) {
			log_warn(
			    "sftp: packet length %u (max_packet %llu): dropping the connection",
			    len, (unsigned long long)c->lim.max_packet);
			return -1;
		}
		if (buf_remaining(in) - 4 < len)
			break;
		if (deliver(c, buf_cursor(in) + 4, len) < 0)
			return -1;
		in->off += 4 + (size_t)len;
	}
	size_t left = buf_remaining(in);
	memmove(in->data, buf_cursor(in), left);
	in->len = left;
	in->off = 0;
	return 0;
}

static void *reader_main(void *arg)
{
	struct sftp_client *c = arg;
	struct buf in;
	buf_init(&in);
	for (;;) {
		struct pollfd pfd[2] = {{.fd = c->wake[0], .events = POLLIN},
					{.fd = c->fd, .events = POLLIN}};
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[0].revents)
			break;
		if (!pfd[1].revents)
			continue;
		if (buf_reserve(&in, READ_CHUNK) < 0)
			break;
		ssize_t n = read(c->fd, in.data + in.len, in.cap - in.len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		in.len += (size_t)n;
		if (deliver_buffered(c, &in) < 0)
			break;
	}
	buf_free(&in);
	fail_all(c);
	return NULL;
}

/* ---- handshake ---- */

static int read_packet(int fd, struct buf *b, int64_t deadline)
{
	uint8_t hdr[4];
	int r = fd_read_full(fd, hdr, 4, deadline);
	if (r < 0)
		return r;
	uint32_t len = load_be32(hdr);
	if (len < 1 || len > SFTP_MAX_INCOMING)
		return -EPROTO;
	buf_reset(b);
	if (buf_reserve(b, len) < 0)
		return -ENOMEM;
	r = fd_read_full(fd, b->data, len, deadline);
	if (r < 0)
		return r;
	b->len = len;
	return 0;
}

static int exchange(struct sftp_client *c, struct buf *pkt, uint8_t want, int64_t deadline)
{
	int r = fd_write_all(c->fd, pkt->data, pkt->len, deadline);
	if (r == 0)
		r = read_packet(c->fd, pkt, deadline);
	uint8_t type;
	if (r == 0 && (buf_get_u8(pkt, &type) < 0 || type != want))
		r = -EPROTO;
	return r;
}

static int query_limits(struct sftp_client *c, int64_t deadline)
{
	struct buf b;
	uint32_t id;
	sftp_packet_begin_extended(&b, "limits@openssh.com");
	int r = sftp_packet_finish(&b, c->next_id, 0) < 0 ? -ENOMEM : 0;
	if (r == 0)
		r = exchange(c, &b, SSH2_FXP_EXTENDED_REPLY, deadline);
	if (r == 0 && (buf_get_u32(&b, &id) < 0 || id != c->next_id))
		r = -EPROTO;
	if (r == 0)
		r = sftp_parse_limits(&b, &c->limits);
	c->next_id++;
	buf_free(&b);
	return r;
}

static size_t chunk_size(uint64_t stated, uint64_t max_packet)
{
	uint64_t n = stated ? stated : SFTP_DEFAULT_CHUNK;
	if (n > SFTP_MAX_CHUNK)
		n = SFTP_MAX_CHUNK;
	/* Room for the header, a handle and the offsets within the server's packet size. */
	if (max_packet > SFTP_DEFAULT_CHUNK + 1024 && n > max_packet - 1024)
		n = max_packet - 1024;
	return (size_t)n;
}

static int handshake(struct sftp_client *c, struct err *e)
{
	int64_t deadline = deadline_in(c->op_timeout_ms);
	struct buf b;
	uint32_t version;
	buf_init(&b);
	buf_put_u32(&b, 5);
	buf_put_u8(&b, SSH2_FXP_INIT);
	buf_put_u32(&b, SSH2_FILEXFER_VERSION);
	int r = buf_ok(&b) ? exchange(c, &b, SSH2_FXP_VERSION, deadline) : -ENOMEM;
	if (r == 0)
		r = sftp_parse_version(&b, &version, &c->ext);
	buf_free(&b);
	if (r < 0) {
		err_set(e, "SFTP handshake failed: %s", strerror(-r));
		return r;
	}
	if (version < SSH2_FILEXFER_VERSION) {
		err_set(e, "SFTP server speaks protocol version %u, need 3", version);
		return -EPROTO;
	}
	c->openssh_symlink = c->ext & SFTP_EXT_POSIX_RENAME;
	if ((c->ext & SFTP_EXT_LIMITS) && (r = query_limits(c, deadline)) < 0) {
		err_set(e, "SFTP limits@openssh.com query failed: %s", strerror(-r));
		return r;
	}
	c->max_read = chunk_size(c->limits.max_read, c->limits.max_packet);
	c->max_write = chunk_size(c->limits.max_write, c->limits.max_packet);
	return 0;
}

/* ---- the client ---- */

static void client_free(struct sftp_client *c)
{
	if (c->wake[0] >= 0)
		close(c->wake[0]);
	if (c->wake[1] >= 0)
		close(c->wake[1]);
	close(c->fd);
	pthread_cond_destroy(&c->idle);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->write_mu);
	free(c);
}

int sftp_client_open(int fd, int op_timeout_ms, struct sftp_client **out, struct err *e)
{
	return sftp_client_open_limited(fd, op_timeout_ms, NULL, out, e);
}

int sftp_client_open_limited(int fd, int op_timeout_ms, const struct mount_limits *lim,
			     struct sftp_client **out, struct err *e)
{
	struct sftp_client *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		err_set(e, "SFTP client: out of memory");
		return -ENOMEM;
	}
	c->fd = fd;
	c->op_timeout_ms = op_timeout_ms > 0 ? op_timeout_ms : 1;
	c->lim = lim ? *lim : mount_limits_default();
	c->next_id = 1;
	c->wake[0] = c->wake[1] = -1;
	pthread_mutex_init(&c->write_mu, NULL);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->idle, NULL);
	int r = fd_set_nonblock(fd, true);
	if (r == 0 && pipe2(c->wake, O_CLOEXEC) < 0)
		r = -errno;
	if (r < 0) {
		err_set(e, "SFTP client setup: %s", strerror(-r));
		client_free(c);
		return r;
	}
	r = handshake(c, e);
	if (r == 0 && (r = -pthread_create(&c->reader, NULL, reader_main, c)) < 0)
		err_set(e, "SFTP client: cannot start the reader thread: %s", strerror(-r));
	if (r < 0) {
		client_free(c);
		return r;
	}
	*out = c;
	return 0;
}

void sftp_client_close(struct sftp_client *c)
{
	if (!c)
		return;
	while (write(c->wake[1], "x", 1) < 0 && errno == EINTR)
		;
	pthread_join(c->reader, NULL);
	pthread_mutex_lock(&c->mu);
	fail_all_locked(c);
	while (c->waiters > 0)
		pthread_cond_wait(&c->idle, &c->mu);
	pthread_mutex_unlock(&c->mu);
	client_free(c);
}

bool sftp_client_dead(struct sftp_client *c)
{
	return is_dead(c);
}

unsigned sftp_client_extensions(struct sftp_client *c)
{
	return c->ext;
}

void sftp_client_limits(struct sftp_client *c, struct sftp_limits *l)
{
	*l = c->limits;
	l->max_read = c->max_read;
	l->max_write = c->max_write;
}

void sftp_client_stats(struct sftp_client *c, struct sftp_stats *st)
{
	pthread_mutex_lock(&c->mu);
	*st = c->st;
	pthread_mutex_unlock(&c->mu);
}
