/* sftp_ops.c: the SFTP operations of sftp_client.h, built on sftp_send/sftp_wait.
 *
 * OpenSSH's sftp-server answers FAILURE for most errnos (EEXIST, ENOTEMPTY, EISDIR...) with the
 * bare message "Failure", and NO_SUCH_FILE for ENOTDIR. Where the operation implies a precise
 * errno, the error path asks the server one LSTAT to tell which it was. */
#include "sftp/sftp_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

/* ---- request helpers ---- */

static void begin_path(struct buf *b, uint8_t type, const char *path)
{
	sftp_packet_begin(b, type);
	buf_put_cstring(b, path);
}

static void begin_handle(struct buf *b, uint8_t type, const struct sftp_handle *h)
{
	sftp_packet_begin(b, type);
	sftp_put_handle(b, h);
}

/* Send pkt (consumed) and wait: 0 with *out the answered request. */
int sftp_call(struct sftp_client *c, struct buf *pkt, struct sftp_req **out)
{
	struct sftp_req *r = NULL;
	int e = sftp_send(c, pkt, NULL, 0, &r);
	if (e == 0)
		e = sftp_wait(r);
	if (e == 0)
		*out = r;
	return e;
}

/* A reply that is not the one wanted: its status as an errno, else -EPROTO. Frees r. */
int sftp_reply_error(struct sftp_req *r)
{
	uint32_t code;
	int e = -EPROTO;
	if (r->reply_type == SSH2_FXP_STATUS) {
		e = sftp_parse_status(&r->reply, &code);
		if (e == 0)
			e = -EPROTO;
	}
	sftp_req_free(r);
	return e;
}

/* A status reply: 0 or the errno. Frees r. */
static int reply_status(struct sftp_req *r)
{
	uint32_t code;
	if (r->reply_type != SSH2_FXP_STATUS) {
		sftp_req_free(r);
		return -EPROTO;
	}
	int e = sftp_parse_status(&r->reply, &code);
	sftp_req_free(r);
	return e;
}

static int call_status(struct sftp_client *c, struct buf *pkt)
{
	struct sftp_req *r = NULL;
	int e = sftp_call(c, pkt, &r);
	return e < 0 ? e : reply_status(r);
}

/* ---- attributes looked up in the same round trip as a change ---- */

/* Send an LSTAT for every after[i].path right behind the request just sent: the server answers in
 * order, so each describes the path after the change. */
static void send_afters(struct sftp_client *c, struct sftp_after *after, size_t n,
			struct sftp_req **reqs)
{
	for (size_t i = 0; i < n; i++) {
		struct buf b;
		after[i].ok = false;
		reqs[i] = NULL;
		sftp_packet_begin(&b, SSH2_FXP_LSTAT);
		buf_put_cstring(&b, after[i].path);
		if (sftp_send(c, &b, NULL, 0, &reqs[i]) < 0)
			reqs[i] = NULL;
	}
}

/* Collect the LSTATs when the change succeeded (status 0); otherwise leave them to the reader. */
static void collect_afters(int status, struct sftp_after *after, size_t n, struct sftp_req **reqs)
{
	for (size_t i = 0; i < n; i++) {
		struct sftp_req *r = reqs[i];
		if (!r)
			continue;
		if (status < 0) {
			sftp_req_abandon(r);
			continue;
		}
		int e = sftp_wait(r);
		if (e < 0)
			continue;
		if (r->reply_type == SSH2_FXP_ATTRS)
			after[i].ok = sftp_decode_attrs(r, &after[i].attrs) == 0;
		sftp_req_free(r);
	}
}

/* call_status with after[] looked up in the same round trip. */
static int call_status_after(struct sftp_client *c, struct buf *pkt, struct sftp_after *after,
			     size_t n)
{
	struct sftp_req *r = NULL, *reqs[SFTP_AFTER_MAX];
	if (n > SFTP_AFTER_MAX)
		n = SFTP_AFTER_MAX;
	int e = sftp_send(c, pkt, NULL, 0, &r);
	if (e < 0)
		return e;
	send_afters(c, after, n, reqs);
	e = sftp_wait(r);
	if (e == 0)
		e = reply_status(r);
	collect_afters(e, after, n, reqs);
	return e;
}

/* Attributes of a reply to r: stat@sandmount's fields count only from a server that offered
 * the extension (our agent). 0 or -1. */
int sftp_decode_attrs(struct sftp_req *r, struct sftp_attrs *a)
{
	if (sftp_attrs_decode(&r->reply, a) < 0)
		return -1;
	if (!(r->c->ext & SFTP_EXT_SM_STAT))
		a->flags &=
		    SFTP_ATTR_SIZE | SFTP_ATTR_UIDGID | SFTP_ATTR_PERM | SFTP_ATTR_ACMODTIME;
	return 0;
}

static int call_attrs(struct sftp_client *c, struct buf *pkt, struct sftp_attrs *a)
{
	struct sftp_req *r = NULL;
	int e = sftp_call(c, pkt, &r);
	if (e < 0)
		return e;
	if (r->reply_type != SSH2_FXP_ATTRS)
		return sftp_reply_error(r);
	e = sftp_decode_attrs(r, a) < 0 ? -EPROTO : 0;
	sftp_req_free(r);
	return e;
}

int sftp_call_handle(struct sftp_client *c, struct buf *pkt, struct sftp_handle *h)
{
	struct sftp_req *r = NULL;
	int e = sftp_call(c, pkt, &r);
	if (e < 0)
		return e;
	if (r->reply_type != SSH2_FXP_HANDLE)
		return sftp_reply_error(r);
	e = sftp_parse_handle(&r->reply, h);
	sftp_req_free(r);
	return e;
}

static int call_name(struct sftp_client *c, struct buf *pkt, char **name)
{
	struct sftp_req *r = NULL;
	int e = sftp_call(c, pkt, &r);
	if (e < 0)
		return e;
	if (r->reply_type != SSH2_FXP_NAME)
		return sftp_reply_error(r);
	e = sftp_parse_single_name(&r->reply, name);
	sftp_req_free(r);
	return e;
}

/* ---- error refinement (error paths only) ---- */

enum sftp_kind sftp_lstat_kind(struct sftp_client *c, const char *path)
{
	struct sftp_attrs a;
	if (sftp_lstat(c, path, &a) < 0)
		return SFTP_KIND_NONE;
	if ((a.flags & SFTP_ATTR_PERM) && S_ISDIR(a.perm))
		return SFTP_KIND_DIR;
	return SFTP_KIND_OTHER;
}

/* A FAILURE where the target's existence is the likely cause. */
static int exists_or_eio(struct sftp_client *c, int e, const char *path)
{
	if (e == -EIO && sftp_lstat_kind(c, path) != SFTP_KIND_NONE)
		return -EEXIST;
	return e;
}

/* ---- attributes ---- */

int sftp_stat(struct sftp_client *c, const char *path, struct sftp_attrs *a)
{
	struct buf b;
	begin_path(&b, SSH2_FXP_STAT, path);
	return call_attrs(c, &b, a);
}

int sftp_lstat(struct sftp_client *c, const char *path, struct sftp_attrs *a)
{
	struct buf b;
	begin_path(&b, SSH2_FXP_LSTAT, path);
	return call_attrs(c, &b, a);
}

int sftp_fstat(struct sftp_client *c, const struct sftp_handle *h, struct sftp_attrs *a)
{
	struct buf b;
	begin_handle(&b, SSH2_FXP_FSTAT, h);
	return call_attrs(c, &b, a);
}

/* Times with nanoseconds go only to a server that offers stat@sandmount. */
static void encode_setstat(struct sftp_client *c, struct buf *b, const struct sftp_attrs *a)
{
	struct sftp_attrs v3 = *a;
	if (!(c->ext & SFTP_EXT_SM_STAT))
		v3.flags &= ~SFTP_ATTR_NSTIME;
	v3.flags &= ~(SFTP_ATTR_DEVINO | SFTP_ATTR_NLINK | SFTP_ATTR_RDEV | SFTP_ATTR_CTIME);
	sftp_attrs_encode(b, &v3);
}

int sftp_setstat(struct sftp_client *c, const char *path, const struct sftp_attrs *a)
{
	struct buf b;
	begin_path(&b, SSH2_FXP_SETSTAT, path);
	encode_setstat(c, &b, a);
	return call_status(c, &b);
}

int sftp_fsetstat(struct sftp_client *c, const struct sftp_handle *h, const struct sftp_attrs *a)
{
	struct buf b;
	begin_handle(&b, SSH2_FXP_FSETSTAT, h);
	encode_setstat(c, &b, a);
	return call_status(c, &b);
}

/* ---- files ---- */

static void begin_open(struct buf *b, const char *path, uint32_t pflags, const struct sftp_attrs *a)
{
	struct sftp_attrs mode = {0};
	if (a && (a->flags & SFTP_ATTR_PERM)) {
		mode.flags = SFTP_ATTR_PERM;
		mode.perm = a->perm;
	}
	begin_path(b, SSH2_FXP_OPEN, path);
	buf_put_u32(b, pflags);
	sftp_attrs_encode(b, &mode);
}

/* OpenSSH answers a bare FAILURE for EEXIST and EISDIR: ask which it was. */
static int open_error(struct sftp_client *c, const char *path, uint32_t pflags, int e)
{
	if (e != -EIO)
		return e;
	enum sftp_kind k = sftp_lstat_kind(c, path);
	if (k != SFTP_KIND_NONE &&
	    (pflags & (SFTP_OPEN_CREAT | SFTP_OPEN_EXCL)) == (SFTP_OPEN_CREAT | SFTP_OPEN_EXCL))
		return -EEXIST;
	if (k == SFTP_KIND_DIR && (pflags & SFTP_OPEN_WRITE))
		return -EISDIR;
	return e;
}

int sftp_open(struct sftp_client *c, const char *path, uint32_t pflags, const struct sftp_attrs *a,
	      struct sftp_handle *h)
{
	struct buf b;
	begin_open(&b, path, pflags, a);
	return open_error(c, path, pflags, sftp_call_handle(c, &b, h));
}

/* Wait for a reply of the given type; 0 with r still to free, else the error (r freed). */
static int wait_reply(struct sftp_req *r, uint8_t type)
{
	int e = sftp_wait(r);
	if (e < 0)
		return e;
	return r->reply_type == type ? 0 : sftp_reply_error(r);
}

int sftp_open_stat(struct sftp_client *c, const char *path, uint32_t pflags,
		   const struct sftp_attrs *a, struct sftp_handle *h, struct sftp_attrs *st,
		   bool *have_st, struct sftp_after *after, size_t n)
{
	struct buf b;
	struct sftp_req *ro = NULL, *rs = NULL, *reqs[SFTP_AFTER_MAX];
	*have_st = false;
	if (n > SFTP_AFTER_MAX)
		n = SFTP_AFTER_MAX;
	begin_open(&b, path, pflags, a);
	int e = sftp_send(c, &b, NULL, 0, &ro);
	if (e < 0)
		return e;
	begin_path(&b, SSH2_FXP_STAT, path);
	if (sftp_send(c, &b, NULL, 0, &rs) < 0)
		rs = NULL;
	send_afters(c, after, n, reqs);
	e = wait_reply(ro, SSH2_FXP_HANDLE);
	if (e == 0) {
		e = sftp_parse_handle(&ro->reply, h);
		sftp_req_free(ro);
	}
	collect_afters(e, after, n, reqs);
	if (e < 0) {
		if (rs)
			sftp_req_abandon(rs);
		return open_error(c, path, pflags, e);
	}
	if (rs && wait_reply(rs, SSH2_FXP_ATTRS) == 0) {
		*have_st = sftp_decode_attrs(rs, st) == 0;
		sftp_req_free(rs);
	}
	return 0;
}

int sftp_close(struct sftp_client *c, const struct sftp_handle *h)
{
	struct buf b;
	begin_handle(&b, SSH2_FXP_CLOSE, h);
	return call_status(c, &b);
}

void sftp_close_async(struct sftp_client *c, const struct sftp_handle *h)
{
	struct buf b;
	struct sftp_req *r = NULL;
	begin_handle(&b, SSH2_FXP_CLOSE, h);
	if (sftp_send(c, &b, NULL, 0, &r) == 0)
		sftp_req_abandon(r);
}

int sftp_fsync(struct sftp_client *c, const struct sftp_handle *h)
{
	if (!(c->ext & SFTP_EXT_FSYNC))
		return -ENOTSUP;
	struct buf b;
	sftp_packet_begin_extended(&b, "fsync@openssh.com");
	sftp_put_handle(&b, h);
	return call_status(c, &b);
}

/* ---- reads and writes ---- */

static int send_read(struct sftp_client *c, const struct sftp_handle *h, uint64_t off, size_t len,
		     struct sftp_req **out)
{
	struct buf b;
	begin_handle(&b, SSH2_FXP_READ, h);
	buf_put_u64(&b, off);
	buf_put_u32(&b, (uint32_t)len);
	int e = sftp_send(c, &b, NULL, 0, out);
	if (e == 0)
		(*out)->asked = len;
	return e;
}

static int send_write(struct sftp_client *c, const struct sftp_handle *h, uint64_t off,
		      const void *p, size_t len, struct sftp_req **out)
{
	struct buf b;
	begin_handle(&b, SSH2_FXP_WRITE, h);
	buf_put_u64(&b, off);
	buf_put_u32(&b, (uint32_t)len);
	return sftp_send(c, &b, p, len, out);
}

/* Wait for a request that answers `want` or, at the end, an EOF status: 0 with r kept for the
 * caller, 1 at EOF, or a negative errno (r freed in both of those cases). */
int sftp_wait_reply_or_eof(struct sftp_req *r, uint8_t want)
{
	int e = sftp_wait(r);
	if (e < 0)
		return e;
	if (r->reply_type == SSH2_FXP_STATUS) {
		uint32_t code;
		e = sftp_parse_status(&r->reply, &code);
		sftp_req_free(r);
		return code == SSH2_FX_EOF ? 1 : e == 0 ? -EPROTO : e;
	}
	return r->reply_type == want ? 0 : sftp_reply_error(r);
}

/* Collect a read: copies at most len bytes to p, *got = 0 at EOF. Frees r. */
static int finish_read(struct sftp_req *r, void *p, size_t len, size_t *got)
{
	*got = 0;
	int e = sftp_wait_reply_or_eof(r, SSH2_FXP_DATA);
	if (e != 0)
		return e == 1 ? 0 : e;
	const uint8_t *data;
	uint32_t n;
	e = sftp_parse_data(&r->reply, &data, &n);
	if (e == 0 && n > r->asked)
		e = -EPROTO;
	if (e == 0) {
		*got = n < len ? n : len;
		memcpy(p, data, *got);
	}
	sftp_req_free(r);
	return e;
}

/* Collect a write's (or any request's) status. Frees r. */
static int finish_status(struct sftp_req *r)
{
	int e = sftp_wait(r);
	if (e < 0)
		return e;
	if (r->reply_type == SSH2_FXP_DATA) {
		sftp_req_free(r);
		return 0;
	}
	if (r->reply_type != SSH2_FXP_STATUS)
		return sftp_reply_error(r);
	uint32_t code;
	e = sftp_parse_status(&r->reply, &code);
	sftp_req_free(r);
	return e;
}

/* The requests of one sftp_read/sftp_write, oldest first. */
struct window {
	struct sftp_req *req[SFTP_MAX_INFLIGHT];
	size_t off[SFTP_MAX_INFLIGHT], len[SFTP_MAX_INFLIGHT]; /* relative to the call's start */
	size_t head, count;
};

static void window_push(struct window *w, struct sftp_req *r, size_t off, size_t len)
{
	size_t i = (w->head + w->count++) % SFTP_MAX_INFLIGHT;
	w->req[i] = r;
	w->off[i] = off;
	w->len[i] = len;
}

static size_t window_pop(struct window *w)
{
	size_t i = w->head;
	w->head = (w->head + 1) % SFTP_MAX_INFLIGHT;
	w->count--;
	return i;
}

static void window_abandon(struct window *w)
{
	while (w->count)
		sftp_req_abandon(w->req[window_pop(w)]);
}

int sftp_read(struct sftp_client *c, const struct sftp_handle *h, uint64_t off, void *p, size_t len,
	      size_t *got)
{
	struct window w = {0};
	size_t next = 0, eof_at = len;
	int e = 0;
	for (;;) {
		while (e == 0 && w.count < SFTP_MAX_INFLIGHT && next < eof_at) {
			size_t n = eof_at - next < c->max_read ? eof_at - next : c->max_read;
			struct sftp_req *r;
			e = send_read(c, h, off + next, n, &r);
			if (e == 0)
				window_push(&w, r, next, n);
			next += n;
		}
		if (e < 0 || w.count == 0)
			break;
		size_t i = window_pop(&w), k;
		e = finish_read(w.req[i], (uint8_t *)p + w.off[i], w.len[i], &k);
		if (e < 0 || k == w.len[i] || w.off[i] >= eof_at)
			continue;
		if (k == 0) {
			eof_at = w.off[i];
			continue;
		}
		/* A short read before EOF: ask again for the rest of this piece. */
		struct sftp_req *r;
		e = send_read(c, h, off + w.off[i] + k, w.len[i] - k, &r);
		if (e == 0)
			window_push(&w, r, w.off[i] + k, w.len[i] - k);
	}
	window_abandon(&w);
	*got = e == 0 ? eof_at : 0;
	return e;
}

int sftp_write(struct sftp_client *c, const struct sftp_handle *h, uint64_t off, const void *p,
	       size_t len)
{
	struct window w = {0};
	size_t next = 0;
	int e = 0;
	for (;;) {
		while (e == 0 && w.count < SFTP_MAX_INFLIGHT && next < len) {
			size_t n = len - next < c->max_write ? len - next : c->max_write;
			struct sftp_req *r;
			e = send_write(c, h, off + next, (const uint8_t *)p + next, n, &r);
			if (e == 0)
				window_push(&w, r, next, n);
			next += n;
		}
		if (e < 0 || w.count == 0)
			break;
		e = finish_status(w.req[window_pop(&w)]);
	}
	window_abandon(&w);
	return e;
}

int sftp_write_async(struct sftp_client *c, const struct sftp_handle *h, uint64_t off,
		     const void *p, size_t len, struct sftp_req **out)
{
	if (len > c->max_write)
		return -EINVAL;
	return send_write(c, h, off, p, len, out);
}

int sftp_read_async(struct sftp_client *c, const struct sftp_handle *h, uint64_t off, size_t len,
		    struct sftp_req **out)
{
	if (len > c->max_read)
		return -EINVAL;
	return send_read(c, h, off, len, out);
}

int sftp_req_wait(struct sftp_req *r)
{
	return finish_status(r);
}

int sftp_req_wait_read(struct sftp_req *r, void *p, size_t len, size_t *got)
{
	return finish_read(r, p, len, got);
}

/* ---- directories (listing: sftp_list.c) ---- */

static int mkdir_after(struct sftp_client *c, const char *path, uint32_t mode,
		       struct sftp_after *after, size_t n)
{
	struct sftp_attrs a = {.flags = SFTP_ATTR_PERM, .perm = mode & 07777};
	struct buf b;
	begin_path(&b, SSH2_FXP_MKDIR, path);
	sftp_attrs_encode(&b, &a);
	return exists_or_eio(c, call_status_after(c, &b, after, n), path);
}

static int rmdir_after(struct sftp_client *c, const char *path, struct sftp_after *after, size_t n)
{
	struct buf b;
	begin_path(&b, SSH2_FXP_RMDIR, path);
	int e = call_status_after(c, &b, after, n);
	if (e == -EIO && sftp_lstat_kind(c, path) == SFTP_KIND_DIR)
		return -ENOTEMPTY;
	if (e == -ENOENT && sftp_lstat_kind(c, path) == SFTP_KIND_OTHER)
		return -ENOTDIR;
	return e;
}

static int remove_after(struct sftp_client *c, const char *path, struct sftp_after *after, size_t n)
{
	struct buf b;
	begin_path(&b, SSH2_FXP_REMOVE, path);
	int e = call_status_after(c, &b, after, n);
	if (e == -EIO && sftp_lstat_kind(c, path) == SFTP_KIND_DIR)
		return -EISDIR;
	return e;
}

/* ---- names ---- */

static int posix_rename(struct sftp_client *c, const char *from, const char *to,
			struct sftp_after *after, size_t n)
{
	if (!(c->ext & SFTP_EXT_POSIX_RENAME))
		return -ENOTSUP;
	struct buf b;
	sftp_packet_begin_extended(&b, "posix-rename@openssh.com");
	buf_put_cstring(&b, from);
	buf_put_cstring(&b, to);
	int e = call_status_after(c, &b, after, n);
	if (e == -EIO && sftp_lstat_kind(c, to) == SFTP_KIND_DIR)
		return sftp_lstat_kind(c, from) == SFTP_KIND_DIR ? -ENOTEMPTY : -EISDIR;
	if (e == -ENOENT && sftp_lstat_kind(c, from) == SFTP_KIND_DIR &&
	    sftp_lstat_kind(c, to) == SFTP_KIND_OTHER)
		return -ENOTDIR;
	return e;
}

static int rename_after(struct sftp_client *c, const char *from, const char *to, bool overwrite,
			struct sftp_after *after, size_t n)
{
	if (overwrite)
		return posix_rename(c, from, to, after, n);
	struct buf b;
	sftp_packet_begin(&b, SSH2_FXP_RENAME);
	buf_put_cstring(&b, from);
	buf_put_cstring(&b, to);
	return exists_or_eio(c, call_status_after(c, &b, after, n), to);
}

static int symlink_after(struct sftp_client *c, const char *target, const char *linkpath,
			 struct sftp_after *after, size_t n)
{
	struct buf b;
	sftp_packet_begin(&b, SSH2_FXP_SYMLINK);
	/* The draft says (linkpath, targetpath); OpenSSH has always read (targetpath, linkpath). */
	buf_put_cstring(&b, c->openssh_symlink ? target : linkpath);
	buf_put_cstring(&b, c->openssh_symlink ? linkpath : target);
	return exists_or_eio(c, call_status_after(c, &b, after, n), linkpath);
}

int sftp_readlink(struct sftp_client *c, const char *path, char **target)
{
	struct buf b;
	begin_path(&b, SSH2_FXP_READLINK, path);
	int e = call_name(c, &b, target);
	if (e == 0 && strlen(*target) > c->lim.max_link_target) {
		log_warn("sftp: link target of %s is over max_link_target %llu: refused", path,
			 (unsigned long long)c->lim.max_link_target);
		free(*target);
		*target = NULL;
		return -ENAMETOOLONG;
	}
	/* OpenSSH reports readlink's EINVAL (not a symlink) as BAD_MESSAGE. */
	return e == -EPROTO && sftp_lstat_kind(c, path) == SFTP_KIND_OTHER ? -EINVAL : e;
}

int sftp_realpath(struct sftp_client *c, const char *path, char **out)
{
	struct buf b;
	begin_path(&b, SSH2_FXP_REALPATH, path);
	return call_name(c, &b, out);
}

static int hardlink_after(struct sftp_client *c, const char *from, const char *to,
			  struct sftp_after *after, size_t n)
{
	if (!(c->ext & SFTP_EXT_HARDLINK))
		return -ENOTSUP;
	struct buf b;
	sftp_packet_begin_extended(&b, "hardlink@openssh.com");
	buf_put_cstring(&b, from);
	buf_put_cstring(&b, to);
	return exists_or_eio(c, call_status_after(c, &b, after, n), to);
}

int sftp_change(struct sftp_client *c, enum sftp_change_op op, const char *a, const char *b,
		uint32_t mode, struct sftp_after *after, size_t n)
{
	switch (op) {
	case SFTP_MKDIR:
		return mkdir_after(c, a, mode, after, n);
	case SFTP_RMDIR:
		return rmdir_after(c, a, after, n);
	case SFTP_REMOVE:
		return remove_after(c, a, after, n);
	case SFTP_SYMLINK:
		return symlink_after(c, a, b, after, n);
	case SFTP_RENAME:
	case SFTP_RENAME_OVERWRITE:
		return rename_after(c, a, b, op == SFTP_RENAME_OVERWRITE, after, n);
	case SFTP_HARDLINK:
		return hardlink_after(c, a, b, after, n);
	}
	return -EINVAL;
}

int sftp_mkdir(struct sftp_client *c, const char *path, uint32_t mode)
{
	return mkdir_after(c, path, mode, NULL, 0);
}

int sftp_rmdir(struct sftp_client *c, const char *path)
{
	return rmdir_after(c, path, NULL, 0);
}

int sftp_remove(struct sftp_client *c, const char *path)
{
	return remove_after(c, path, NULL, 0);
}

int sftp_rename(struct sftp_client *c, const char *from, const char *to, bool overwrite)
{
	return rename_after(c, from, to, overwrite, NULL, 0);
}

int sftp_symlink(struct sftp_client *c, const char *target, const char *linkpath)
{
	return symlink_after(c, target, linkpath, NULL, 0);
}

int sftp_hardlink(struct sftp_client *c, const char *from, const char *to)
{
	return hardlink_after(c, from, to, NULL, 0);
}

int sftp_mknod(struct sftp_client *c, const char *path, uint32_t mode, uint64_t rdev)
{
	if (!(c->ext & SFTP_EXT_SM_MKNOD))
		return -ENOSYS;
	struct buf b;
	sftp_packet_begin_extended(&b, SM_EXT_MKNOD);
	buf_put_cstring(&b, path);
	buf_put_u32(&b, mode);
	buf_put_u64(&b, rdev);
	return exists_or_eio(c, call_status(c, &b), path);
}

int sftp_open_read(struct sftp_client *c, const char *path, uint32_t want, struct sftp_handle *h,
		   struct sftp_attrs *st, uint8_t *data, size_t *got)
{
	if (!(c->ext & SFTP_EXT_SM_OPEN_READ))
		return -ENOSYS;
	struct buf b;
	struct sftp_req *r = NULL;
	const uint8_t *p;
	uint32_t n;
	sftp_packet_begin_extended(&b, SM_EXT_OPEN_READ);
	buf_put_cstring(&b, path);
	buf_put_u32(&b, want);
	int e = sftp_call(c, &b, &r);
	if (e < 0)
		return e;
	if (r->reply_type != SSH2_FXP_EXTENDED_REPLY)
		return sftp_reply_error(r);
	e = sftp_parse_handle(&r->reply, h);
	if (e == 0 && (sftp_decode_attrs(r, st) < 0 || buf_get_string(&r->reply, &p, &n) < 0 ||
		       n > want || buf_remaining(&r->reply) != 0)) {
		sftp_close_async(c, h); /* a malformed reply: the handle is not used */
		e = -EPROTO;
	}
	if (e == 0) {
		memcpy(data, p, n);
		*got = n;
	}
	sftp_req_free(r);
	return e;
}

int sftp_statvfs(struct sftp_client *c, const char *path, struct statvfs *st)
{
	if (!(c->ext & SFTP_EXT_STATVFS))
		return -ENOTSUP;
	struct buf b;
	struct sftp_req *r = NULL;
	sftp_packet_begin_extended(&b, "statvfs@openssh.com");
	buf_put_cstring(&b, path);
	int e = sftp_call(c, &b, &r);
	if (e < 0)
		return e;
	if (r->reply_type != SSH2_FXP_EXTENDED_REPLY)
		return sftp_reply_error(r);
	e = sftp_parse_statvfs(&r->reply, st);
	sftp_req_free(r);
	return e;
}
