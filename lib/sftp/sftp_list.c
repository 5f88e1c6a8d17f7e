/* sftp_list.c: sftp_list_dir. Through our agent one list@sandmount request opens the directory
 * and brings its entries (all of them, for all but the largest directories: one round trip);
 * from other servers OPENDIR. Whatever is left is read with READDIRs kept in flight. Every batch
 * is held to the same bounds (mount_limits.h): the sandbox may send anything. */
#include "sftp/sftp_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* READDIR requests kept in flight while listing: a directory that fits in one batch is listed
 * in one round trip (the second request's EOF comes back with the first batch). */
#define READDIR_AHEAD 2

/* One listing's progress against the client's bounds (mount_limits.h). */
struct listing {
	const char *path;
	sftp_dir_cb cb;
	void *ctx;
	int stop; /* what cb returned when it stopped the listing */
	uint64_t entries, bytes, skipped;
	int64_t deadline;
};

static int send_readdir(struct sftp_client *c, const struct sftp_handle *h, struct sftp_req **out)
{
	struct buf b;
	sftp_packet_begin(&b, SSH2_FXP_READDIR);
	sftp_put_handle(&b, h);
	return sftp_send(c, &b, NULL, 0, out);
}

/* A name the sandbox may not give us: one with a '/' (it would name another path), an empty one,
 * or one over max_name. "." and ".." are not entries. NUL cannot occur (buf_get_cstring). */
static bool name_refused(const struct sftp_client *c, const char *name, struct listing *l)
{
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return true;
	if (*name && !strchr(name, '/') && strlen(name) <= c->lim.max_name)
		return false;
	l->skipped++;
	return true;
}

/* A listing past its bounds is refused as a whole: a partial listing would look complete. */
static int listing_over(const struct sftp_client *c, const struct listing *l)
{
	if (l->entries > c->lim.max_dir_entries || l->bytes > c->lim.max_listing_bytes) {
		log_warn(
		    "sftp: listing of %s is over max_dir_entries %llu or max_listing_bytes %llu "
		    "(%llu entries, %llu bytes so far): refused with EIO",
		    l->path, (unsigned long long)c->lim.max_dir_entries,
		    (unsigned long long)c->lim.max_listing_bytes, (unsigned long long)l->entries,
		    (unsigned long long)l->bytes);
		return -EIO;
	}
	if (now_ms() > l->deadline) {
		log_warn("sftp: listing of %s took longer than the op timeout: refused", l->path);
		return -ETIMEDOUT;
	}
	return 0;
}

/* The entries of a reply (u32 count, then name, long name, attributes each), as a NAME reply
 * and list@sandmount's carry them: 1 when all were read (or cb stopped), else the error. */
static int take_entries(struct sftp_req *r, struct listing *l)
{
	struct sftp_client *c = r->c;
	uint32_t count;
	l->bytes += r->reply.len;
	int e = buf_get_u32(&r->reply, &count) < 0 ? -EPROTO : 1;
	for (uint32_t i = 0; e == 1 && i < count && !l->stop; i++) {
		char *name = NULL;
		const uint8_t *longname;
		uint32_t longname_len;
		struct sftp_attrs a;
		if (buf_get_cstring(&r->reply, &name) < 0 ||
		    buf_get_string(&r->reply, &longname, &longname_len) < 0 ||
		    sftp_decode_attrs(r, &a) < 0)
			e = -EPROTO;
		else if (++l->entries > c->lim.max_dir_entries)
			e = listing_over(c, l);
		else if (!name_refused(c, name, l))
			l->stop = l->cb(l->ctx, name, &a);
		free(name);
	}
	if (e != 1)
		return e;
	int over = listing_over(c, l);
	return over < 0 ? over : 1;
}

/* Collect one READDIR batch: 1 if more may follow, 0 at the end (or when cb stopped). */
static int finish_readdir(struct sftp_req *r, struct listing *l)
{
	int e = sftp_wait_reply_or_eof(r, SSH2_FXP_NAME);
	if (e != 0)
		return e == 1 ? 0 : e;
	e = take_entries(r, l);
	sftp_req_free(r);
	return e;
}

/* READDIR until EOF with READDIR_AHEAD requests in flight; 1 never comes back. */
static int read_dir_all(struct sftp_client *c, const struct sftp_handle *h, struct listing *l)
{
	struct sftp_req *q[READDIR_AHEAD];
	unsigned head = 0, n = 0;
	int e = 1;
	while (e == 1 && !l->stop) {
		while (n < READDIR_AHEAD && e == 1) {
			e = send_readdir(c, h, &q[(head + n) % READDIR_AHEAD]);
			if (e == 0) {
				n++;
				e = 1;
			}
		}
		if (e != 1)
			break;
		struct sftp_req *r = q[head];
		head = (head + 1) % READDIR_AHEAD;
		n--;
		e = finish_readdir(r, l);
	}
	for (; n > 0; n--, head = (head + 1) % READDIR_AHEAD)
		sftp_req_abandon(q[head]);
	return e;
}

/* An open that failed: OpenSSH says NO_SUCH_FILE for ENOTDIR; an LSTAT tells which it was. */
static int open_failed(struct sftp_client *c, const char *path, int e)
{
	return e == -ENOENT && sftp_lstat_kind(c, path) == SFTP_KIND_OTHER ? -ENOTDIR : e;
}

/* OPENDIR: 1 with *h open (the entries are still to read), or the error. */
static int open_dir(struct sftp_client *c, const char *path, struct sftp_handle *h)
{
	struct buf b;
	sftp_packet_begin(&b, SSH2_FXP_OPENDIR);
	buf_put_cstring(&b, path);
	int e = sftp_call_handle(c, &b, h);
	if (e == 0)
		return 1;
	h->len = 0;
	return open_failed(c, path, e);
}

/* The body of a list@sandmount reply: 0 when it held the whole directory, 1 when the rest is to
 * be read from h, or the error. h->len > 0 whenever the server left a handle open (even one it
 * should not have: the caller closes it). */
static int take_list_reply(struct sftp_req *r, struct listing *l, struct sftp_handle *h)
{
	uint32_t flags;
	if (buf_get_u32(&r->reply, &flags) < 0 || sftp_parse_handle(&r->reply, h) < 0) {
		h->len = 0;
		return -EPROTO;
	}
	int e = take_entries(r, l);
	if (e != 1 || l->stop)
		return e;
	bool complete = flags & SM_LIST_COMPLETE;
	/* Entries past the count, a complete listing with a handle, or neither: not our agent. */
	if (buf_remaining(&r->reply) != 0 || complete == (h->len > 0))
		return -EPROTO;
	return complete ? 0 : 1;
}

/* list@sandmount: the open and the first entries in one round trip. */
static int list_first(struct sftp_client *c, struct listing *l, struct sftp_handle *h)
{
	struct buf b;
	struct sftp_req *r = NULL;
	h->len = 0;
	sftp_packet_begin_extended(&b, SM_EXT_LIST);
	buf_put_cstring(&b, l->path);
	int e = sftp_call(c, &b, &r);
	if (e < 0)
		return e;
	if (r->reply_type != SSH2_FXP_EXTENDED_REPLY)
		return open_failed(c, l->path, sftp_reply_error(r));
	e = take_list_reply(r, l, h);
	sftp_req_free(r);
	return e;
}

int sftp_list_dir(struct sftp_client *c, const char *path, sftp_dir_cb cb, void *ctx)
{
	struct sftp_handle h = {0};
	struct listing l = {
	    .path = path, .cb = cb, .ctx = ctx, .deadline = deadline_in(c->op_timeout_ms)};
	int e = (c->ext & SFTP_EXT_SM_LIST) ? list_first(c, &l, &h) : open_dir(c, path, &h);
	if (e == 1 && !l.stop)
		e = read_dir_all(c, &h, &l);
	if (h.len > 0)
		sftp_close_async(c, &h);
	if (l.skipped)
		log_warn(
		    "sftp: listing of %s: %llu names skipped (with '/', empty or over max_name "
		    "%llu)",
		    path, (unsigned long long)l.skipped, (unsigned long long)c->lim.max_name);
	if (e < 0)
		return e;
	return l.stop;
}
