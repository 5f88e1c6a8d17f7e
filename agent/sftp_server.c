/* sftp_server.c: the SFTP v3 server loop on stdin/stdout, modelled on OpenSSH's sftp-server.
 * One process, no threads: poll both ends, read whole packets into an input queue, dispatch
 * every complete packet to its handler (sftp_server_ops.c), and write the queued replies back.
 * Input is only read while the output queue is small, so a client that stops reading stalls us
 * instead of growing memory. Also here: the handle table, the reply helpers and the attribute
 * codec the handlers share. */
#include "sftp_server.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IN_CHUNK (SFTP_MAX_PACKET + 4) /* bytes asked for per read(2) */
#define OUT_HIGH (1024 * 1024)	       /* stop dispatching while this much output waits */

static struct buf inq, outq;
static bool initialized;
static struct handle handles[SFTP_MAX_HANDLES];

static void fatal_msg(const char *what, const char *detail)
{
	fprintf(stderr, "sandmount-agent: sftp: %s%s%s\n", what, detail ? ": " : "",
		detail ? detail : "");
}

/* ---- attributes ---- */

/* A time of a stat@sandmount pair from a client: nanoseconds below 1e9, or UTIME_NOW/OMIT. */
static int get_time(struct buf *b, struct timespec *ts)
{
	uint64_t sec;
	uint32_t nsec;
	if (buf_get_u64(b, &sec) < 0 || buf_get_u32(b, &nsec) < 0)
		return -1;
	if (nsec >= 1000000000u && nsec != SM_NSEC_NOW && nsec != SM_NSEC_OMIT)
		return -1;
	ts->tv_sec = (time_t)(int64_t)sec;
	ts->tv_nsec = nsec == SM_NSEC_NOW ? UTIME_NOW : nsec == SM_NSEC_OMIT ? UTIME_OMIT : nsec;
	return 0;
}

/* The data of a stat@sandmount pair: only the times are of use in a request. */
static int get_sm_stat(const uint8_t *p, uint32_t n, struct sftp_attrs *a)
{
	struct buf b;
	struct timespec ctime;
	uint64_t skip;
	if (n != SM_STAT_LEN)
		return -1;
	buf_view(&b, (uint8_t *)p, n); /* read only */
	if (buf_get_u32(&b, &a->sm_valid) < 0)
		return -1;
	for (int i = 0; i < 4; i++)
		if (buf_get_u64(&b, &skip) < 0)
			return -1;
	if (get_time(&b, &a->times[0]) < 0 || get_time(&b, &a->times[1]) < 0 ||
	    get_time(&b, &ctime) < 0)
		return -1;
	a->sm_valid &= SM_STAT_TIMES;
	return 0;
}

/* Extended attribute pairs: stat@sandmount is understood, others are skipped. */
static int get_extended(struct buf *req, struct sftp_attrs *a)
{
	uint32_t count;
	if (buf_get_u32(req, &count) < 0)
		return -1;
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *name, *data;
		uint32_t name_len, data_len;
		if (buf_get_string(req, &name, &name_len) < 0 ||
		    buf_get_string(req, &data, &data_len) < 0)
			return -1;
		if (name_len == strlen(SM_EXT_STAT) && memcmp(name, SM_EXT_STAT, name_len) == 0 &&
		    get_sm_stat(data, data_len, a) < 0)
			return -1;
	}
	return 0;
}

int sftp_attrs_get(struct buf *req, struct sftp_attrs *a)
{
	memset(a, 0, sizeof(*a));
	if (buf_get_u32(req, &a->flags) < 0)
		return -1;
	if ((a->flags & SSH2_FILEXFER_ATTR_SIZE) && buf_get_u64(req, &a->size) < 0)
		return -1;
	if ((a->flags & SSH2_FILEXFER_ATTR_UIDGID) &&
	    (buf_get_u32(req, &a->uid) < 0 || buf_get_u32(req, &a->gid) < 0))
		return -1;
	if ((a->flags & SSH2_FILEXFER_ATTR_PERMISSIONS) && buf_get_u32(req, &a->perm) < 0)
		return -1;
	if ((a->flags & SSH2_FILEXFER_ATTR_ACMODTIME) &&
	    (buf_get_u32(req, &a->atime) < 0 || buf_get_u32(req, &a->mtime) < 0))
		return -1;
	if ((a->flags & SSH2_FILEXFER_ATTR_EXTENDED) && get_extended(req, a) < 0)
		return -1;
	return 0;
}

static void put_time(struct buf *out, const struct timespec *ts)
{
	buf_put_u64(out, (uint64_t)(int64_t)ts->tv_sec);
	buf_put_u32(out, (uint32_t)ts->tv_nsec);
}

void sftp_attrs_put_stat(struct buf *out, const struct stat *st)
{
	buf_put_u32(out, SSH2_FILEXFER_ATTR_SIZE | SSH2_FILEXFER_ATTR_UIDGID |
			     SSH2_FILEXFER_ATTR_PERMISSIONS | SSH2_FILEXFER_ATTR_ACMODTIME |
			     SSH2_FILEXFER_ATTR_EXTENDED);
	buf_put_u64(out, (uint64_t)st->st_size);
	buf_put_u32(out, st->st_uid);
	buf_put_u32(out, st->st_gid);
	buf_put_u32(out, st->st_mode);
	buf_put_u32(out, (uint32_t)st->st_atime);
	buf_put_u32(out, (uint32_t)st->st_mtime);
	buf_put_u32(out, 1); /* one extended pair: stat@sandmount */
	buf_put_cstring(out, SM_EXT_STAT);
	buf_put_u32(out, SM_STAT_LEN);
	buf_put_u32(out,
		    SM_STAT_DEVINO | SM_STAT_NLINK | SM_STAT_RDEV | SM_STAT_TIMES | SM_STAT_CTIME);
	buf_put_u64(out, (uint64_t)st->st_dev);
	buf_put_u64(out, (uint64_t)st->st_ino);
	buf_put_u64(out, (uint64_t)st->st_nlink);
	buf_put_u64(out, (uint64_t)st->st_rdev);
	put_time(out, &st->st_atim);
	put_time(out, &st->st_mtim);
	put_time(out, &st->st_ctim);
}

/* ---- handles: on the wire, 8 bytes: the slot index and its generation ---- */

struct handle *handle_alloc(void)
{
	for (size_t i = 0; i < SFTP_MAX_HANDLES; i++) {
		if (handles[i].kind == HANDLE_FREE) {
			handles[i].gen++;
			handles[i].fd = -1;
			handles[i].append = false;
			handles[i].dir = NULL;
			return &handles[i];
		}
	}
	return NULL;
}

int handle_get(struct buf *req, struct handle **h)
{
	const uint8_t *p;
	uint32_t n;
	if (buf_get_string(req, &p, &n) < 0)
		return -1;
	*h = NULL;
	if (n != 8)
		return 0;
	uint32_t index = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
	uint32_t gen = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
	if (index < SFTP_MAX_HANDLES && handles[index].kind != HANDLE_FREE &&
	    handles[index].gen == gen)
		*h = &handles[index];
	return 0;
}

int handle_fd(const struct handle *h)
{
	return h->kind == HANDLE_DIR ? dirfd(h->dir) : h->fd;
}

int handle_close(struct handle *h)
{
	int r = h->kind == HANDLE_DIR ? closedir(h->dir) : close(h->fd);
	h->kind = HANDLE_FREE;
	h->fd = -1;
	h->dir = NULL;
	return r;
}

static void handles_close_all(void)
{
	for (size_t i = 0; i < SFTP_MAX_HANDLES; i++)
		if (handles[i].kind != HANDLE_FREE)
			handle_close(&handles[i]);
}

/* ---- replies ---- */

struct buf *reply_queue(void)
{
	return &outq;
}

size_t reply_begin(uint8_t type, uint32_t id)
{
	size_t start = outq.len;
	buf_put_u32(&outq, 0);
	buf_put_u8(&outq, type);
	buf_put_u32(&outq, id);
	return start;
}

void reply_end(size_t start)
{
	buf_set_u32_at(&outq, start, (uint32_t)(outq.len - start - 4));
}

static const char *status_text(uint32_t code)
{
	static const char *const text[SSH2_FX_MAX + 1] = {
	    "Success",	   "End of file",   "No such file",    "Permission denied",	"Failure",
	    "Bad message", "No connection", "Connection lost", "Operation unsupported",
	};
	return code <= SSH2_FX_MAX ? text[code] : "Unknown error";
}

int reply_status(uint32_t id, uint32_t code, const char *msg)
{
	size_t start = reply_begin(SSH2_FXP_STATUS, id);
	buf_put_u32(&outq, code);
	buf_put_cstring(&outq, msg ? msg : status_text(code));
	buf_put_cstring(&outq, ""); /* language tag */
	reply_end(start);
	return 0;
}

int reply_errno(uint32_t id, int err)
{
	/* The code as OpenSSH maps it; the message is always strerror() text, which tells our
	 * client the precise errno (EPERM from EACCES, ENOTDIR from ENOENT...). */
	uint32_t code;
	switch (err) {
	case 0:
		return reply_status(id, SSH2_FX_OK, NULL);
	case ENOENT:
	case ENOTDIR:
	case EBADF:
	case ELOOP:
		code = SSH2_FX_NO_SUCH_FILE;
		break;
	case EPERM:
	case EACCES:
	case EFAULT:
		code = SSH2_FX_PERMISSION_DENIED;
		break;
	case ENAMETOOLONG:
	case EINVAL:
		code = SSH2_FX_BAD_MESSAGE;
		break;
	case ENOSYS:
		code = SSH2_FX_OP_UNSUPPORTED;
		break;
	default:
		code = SSH2_FX_FAILURE;
		break;
	}
	return reply_status(id, code, strerror(err));
}

int reply_bad_handle(uint32_t id)
{
	return reply_status(id, SSH2_FX_FAILURE, "Invalid handle");
}

struct handle *slot_for(uint32_t id, char *path, int *rc)
{
	struct handle *h = handle_alloc();
	if (!h) {
		free(path);
		*rc = reply_status(id, SSH2_FX_FAILURE, "Too many open handles");
	}
	return h;
}

void put_handle(struct buf *out, const struct handle *h)
{
	uint32_t index = (uint32_t)(h - handles);
	uint8_t wire[8] = {index >> 24,	 index >> 16,  index >> 8,  index,
			   h->gen >> 24, h->gen >> 16, h->gen >> 8, h->gen};
	buf_put_string(out, wire, sizeof(wire));
}

int reply_handle(uint32_t id, const struct handle *h)
{
	size_t start = reply_begin(SSH2_FXP_HANDLE, id);
	put_handle(&outq, h);
	reply_end(start);
	return 0;
}

int reply_attrs(uint32_t id, const struct stat *st)
{
	size_t start = reply_begin(SSH2_FXP_ATTRS, id);
	sftp_attrs_put_stat(&outq, st);
	reply_end(start);
	return 0;
}

int reply_name(uint32_t id, const char *name)
{
	size_t start = reply_begin(SSH2_FXP_NAME, id);
	buf_put_u32(&outq, 1);
	buf_put_cstring(&outq, name);
	buf_put_cstring(&outq, name);
	buf_put_u32(&outq, 0); /* no attributes */
	reply_end(start);
	return 0;
}

/* ---- dispatch ---- */

static int process_init(struct buf *req)
{
	uint32_t client_version;
	if (buf_get_u32(req, &client_version) < 0)
		return -1;
	size_t start = outq.len;
	buf_put_u32(&outq, 0);
	buf_put_u8(&outq, SSH2_FXP_VERSION);
	buf_put_u32(&outq, SSH2_FILEXFER_VERSION);
	for (const struct sftp_extension *x = sftp_extensions; x->name; x++) {
		buf_put_cstring(&outq, x->name);
		buf_put_cstring(&outq, x->version);
	}
	reply_end(start);
	initialized = true;
	return 0;
}

static int process_extended(uint32_t id, struct buf *req)
{
	const uint8_t *name;
	uint32_t n;
	if (buf_get_string(req, &name, &n) < 0)
		return -1;
	for (const struct sftp_extension *x = sftp_extensions; x->name; x++)
		if (strlen(x->name) == n && memcmp(x->name, name, n) == 0)
			return x->handle(id, req);
	return reply_status(id, SSH2_FX_OP_UNSUPPORTED, NULL);
}

/* One packet (its body, after the length). Returns -1, with a message on stderr, if it is
 * malformed or out of order. */
static int process_packet(struct buf *req)
{
	uint8_t type;
	uint32_t id;
	if (buf_get_u8(req, &type) < 0) {
		fatal_msg("malformed packet", "no type");
		return -1;
	}
	if (!initialized && type != SSH2_FXP_INIT) {
		fatal_msg("request before INIT", NULL);
		return -1;
	}
	if (initialized && type == SSH2_FXP_INIT) {
		fatal_msg("INIT received twice", NULL);
		return -1;
	}
	int r;
	if (type == SSH2_FXP_INIT)
		r = process_init(req);
	else if (buf_get_u32(req, &id) < 0)
		r = -1;
	else if (type == SSH2_FXP_EXTENDED)
		r = process_extended(id, req);
	else if (type < sizeof(sftp_handlers) / sizeof(sftp_handlers[0]) && sftp_handlers[type])
		r = sftp_handlers[type](id, req);
	else
		r = reply_status(id, SSH2_FX_OP_UNSUPPORTED, NULL);
	if (r < 0) {
		char detail[32];
		snprintf(detail, sizeof(detail), "request type %u", type);
		fatal_msg("malformed packet", detail);
	}
	return r;
}

/* Dispatch every complete packet in the input queue while the output queue has room. */
static int process_input(void)
{
	while (outq.len - outq.off < OUT_HIGH) {
		uint32_t len;
		if (buf_peek_u32(&inq, &len) < 0)
			break;
		if (len == 0 || len > SFTP_MAX_PACKET) {
			char detail[64];
			snprintf(detail, sizeof(detail), "%u bytes (limit %u)", len,
				 SFTP_MAX_PACKET);
			fatal_msg("bad packet length", detail);
			return -1;
		}
		if (buf_remaining(&inq) - 4 < len)
			break;
		struct buf req;
		buf_view(&req, inq.data + inq.off + 4, len);
		inq.off += 4 + (size_t)len;
		if (process_packet(&req) < 0)
			return -1;
		if (!buf_ok(&outq)) {
			fatal_msg("out of memory", NULL);
			return -1;
		}
	}
	buf_compact(&inq);
	return 0;
}

/* ---- the loop ---- */

/* Read what stdin has: 1 data, 0 EOF, -1 error. */
static int read_input(void)
{
	size_t before = inq.len;
	uint8_t *p = buf_put_space(&inq, IN_CHUNK);
	if (!p) {
		fatal_msg("out of memory", NULL);
		return -1;
	}
	ssize_t n;
	do
		n = read(STDIN_FILENO, p, IN_CHUNK);
	while (n < 0 && errno == EINTR);
	buf_truncate(&inq, before + (n > 0 ? (size_t)n : 0));
	if (n < 0) {
		fatal_msg("read", strerror(errno));
		return -1;
	}
	return n > 0;
}

static int write_output(void)
{
	ssize_t n;
	do
		n = write(STDOUT_FILENO, buf_cursor(&outq), buf_remaining(&outq));
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		fatal_msg("write", strerror(errno));
		return -1;
	}
	outq.off += (size_t)n;
	buf_compact(&outq);
	return 0;
}

static int serve(void)
{
	bool in_eof = false;
	for (;;) {
		if (process_input() < 0)
			return 1;
		bool out_pending = buf_remaining(&outq) > 0;
		if (in_eof && !out_pending) {
			if (buf_remaining(&inq) == 0)
				return 0;
			fatal_msg("input ends inside a packet", NULL);
			return 1;
		}
		/* A complete packet still queued means the output queue is full: wait for it. */
		bool want_in = !in_eof && buf_remaining(&inq) < SFTP_MAX_PACKET + 4 &&
			       buf_remaining(&outq) < OUT_HIGH;
		/* A negative fd is skipped: a hangup on an end we do not wait for must not
		 * wake us up again and again. */
		struct pollfd fds[2] = {
		    {.fd = want_in ? STDIN_FILENO : -1, .events = POLLIN},
		    {.fd = out_pending ? STDOUT_FILENO : -1, .events = POLLOUT},
		};
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			fatal_msg("poll", strerror(errno));
			return 1;
		}
		if (want_in && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			int r = read_input();
			if (r < 0)
				return 1;
			in_eof = r == 0;
		}
		if (out_pending && (fds[1].revents & (POLLOUT | POLLHUP | POLLERR)) &&
		    write_output() < 0)
			return 1;
	}
}

int sftp_server_run(void)
{
	/* A fresh session: no-ops in the agent, which serves one; tests/fuzz serves many. */
	initialized = false;
	memset(handles, 0, sizeof(handles));
	buf_init(&inq);
	buf_init(&outq);
	int status = serve();
	handles_close_all();
	buf_free(&inq);
	buf_free(&outq);
	return status;
}
