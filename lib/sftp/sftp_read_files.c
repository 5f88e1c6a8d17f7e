/* sftp_read_files.c: sftp_read_files, the client of read-files@sandmount (lib/proto/sftp_proto.h):
 * a directory's small regular files with their attributes in one round trip. The reply comes
 * from the sandbox and is checked like any other: every name is one path component, every
 * file's data is exactly its stated size and at most what was asked for, and nothing follows
 * the last entry. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "sftp_internal.h"

/* A name from the reply into out (SFTP_NAME_BUF): one non-empty component, not "." or "..".
 * `empty_ok` for the resume name. */
static int get_name(struct buf *b, char *out, bool empty_ok)
{
	const uint8_t *p;
	uint32_t n;
	if (buf_get_string(b, &p, &n) < 0 || n >= SFTP_NAME_BUF || (n == 0 && !empty_ok))
		return -1;
	if (memchr(p, '/', n) || memchr(p, '\0', n))
		return -1;
	if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
		return -1;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

/* The entries of a reply, each to cb: 0, or -EPROTO at the first malformed one. */
static int take_files(struct sftp_req *r, uint32_t max_file, sftp_file_cb cb, void *ctx)
{
	uint32_t count;
	if (buf_get_u32(&r->reply, &count) < 0 || count > SM_READ_FILES_MAX_ENTRIES)
		return -EPROTO;
	for (uint32_t i = 0; i < count; i++) {
		char name[SFTP_NAME_BUF];
		struct sftp_attrs a;
		const uint8_t *data;
		uint32_t len;
		if (get_name(&r->reply, name, false) < 0 || sftp_decode_attrs(r, &a) < 0 ||
		    buf_get_string(&r->reply, &data, &len) < 0)
			return -EPROTO;
		if (len > max_file || !(a.flags & SFTP_ATTR_SIZE) || a.size != len ||
		    !(a.flags & SFTP_ATTR_PERM) || !S_ISREG(a.perm))
			return -EPROTO;
		if (cb(ctx, name, &a, data, len) != 0)
			return 0;
	}
	return buf_remaining(&r->reply) == 0 ? 0 : -EPROTO;
}

int sftp_read_files(struct sftp_client *c, const char *dir, uint32_t max_file, const char *after,
		    sftp_file_cb cb, void *ctx, char *resume)
{
	if (!(c->ext & SFTP_EXT_SM_READ_FILES))
		return -ENOSYS;
	if (max_file > SM_READ_FILES_MAX_FILE)
		max_file = SM_READ_FILES_MAX_FILE;
	struct buf b;
	struct sftp_req *r = NULL;
	sftp_packet_begin_extended(&b, SM_EXT_READ_FILES);
	buf_put_cstring(&b, dir);
	buf_put_u32(&b, max_file);
	buf_put_cstring(&b, after);
	int e = sftp_call(c, &b, &r);
	if (e < 0)
		return e;
	if (r->reply_type != SSH2_FXP_EXTENDED_REPLY)
		return sftp_reply_error(r);
	e = get_name(&r->reply, resume, true) < 0 ? -EPROTO : take_files(r, max_file, cb, ctx);
	sftp_req_free(r);
	if (e < 0)
		return e;
	return resume[0] ? 1 : 0;
}
