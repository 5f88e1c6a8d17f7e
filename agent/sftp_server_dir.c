/* sftp_server_dir.c: the SFTP server's directory requests: OPENDIR and READDIR as OpenSSH's
 * sftp-server answers them, and list@sandmount (lib/proto/sftp_proto.h), which opens a directory
 * and sends its entries in the same reply. Both listings write entries with one loop. */
#include "sftp_server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define READDIR_BATCH 100 /* names per READDIR reply, as OpenSSH */
/* Room kept for one more entry: a 255-byte name, its long name and its attributes. */
#define ENTRY_ROOM 1024

/* The request's path opened as a directory handle; NULL when it could not be, with *rc the
 * handler's result (a reply queued, or -1 for a malformed request). */
static struct handle *open_dir_handle(uint32_t id, struct buf *req, int *rc)
{
	char *path;
	*rc = -1;
	if (buf_get_cstring(req, &path) < 0)
		return NULL;
	struct handle *h = slot_for(id, path, rc);
	if (!h)
		return NULL;
	DIR *dir = opendir(path);
	int err = errno;
	free(path);
	if (!dir) {
		*rc = reply_errno(id, err);
		return NULL;
	}
	h->kind = HANDLE_DIR;
	h->dir = dir;
	return h;
}

int process_opendir(uint32_t id, struct buf *req)
{
	int rc;
	struct handle *h = open_dir_handle(id, req, &rc);
	return h ? reply_handle(id, h) : rc;
}

/* "drwxr-xr-x" as ls(1) and strmode(3) write it. */
static void mode_string(mode_t m, char s[11])
{
	static const struct {
		mode_t type;
		char c;
	} types[] = {{S_IFDIR, 'd'}, {S_IFLNK, 'l'},  {S_IFCHR, 'c'}, {S_IFBLK, 'b'},
		     {S_IFIFO, 'p'}, {S_IFSOCK, 's'}, {S_IFREG, '-'}};
	s[0] = '?';
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if ((m & S_IFMT) == types[i].type)
			s[0] = types[i].c;
	s[1] = (m & S_IRUSR) ? 'r' : '-';
	s[2] = (m & S_IWUSR) ? 'w' : '-';
	s[3] = (m & S_ISUID) ? ((m & S_IXUSR) ? 's' : 'S') : ((m & S_IXUSR) ? 'x' : '-');
	s[4] = (m & S_IRGRP) ? 'r' : '-';
	s[5] = (m & S_IWGRP) ? 'w' : '-';
	s[6] = (m & S_ISGID) ? ((m & S_IXGRP) ? 's' : 'S') : ((m & S_IXGRP) ? 'x' : '-');
	s[7] = (m & S_IROTH) ? 'r' : '-';
	s[8] = (m & S_IWOTH) ? 'w' : '-';
	s[9] = (m & S_ISVTX) ? ((m & S_IXOTH) ? 't' : 'T') : ((m & S_IXOTH) ? 'x' : '-');
	s[10] = '\0';
}

/* The `ls -l` line OpenSSH sends as a name's long name; owners are numeric (no NSS in a static
 * binary). The date shows the time for the last six months, else the year. */
static void long_name(char *out, size_t size, const char *name, const struct stat *st)
{
	char mode[11], date[32] = "";
	struct tm tm;
	time_t now = time(NULL);
	mode_string(st->st_mode, mode);
	if (localtime_r(&st->st_mtime, &tm)) {
		bool recent = now - (365 * 24 * 60 * 60) / 2 < st->st_mtime && now >= st->st_mtime;
		if (!strftime(date, sizeof(date), recent ? "%b %e %H:%M" : "%b %e  %Y", &tm))
			date[0] = '\0';
	}
	snprintf(out, size, "%s  %3u %-8u %-8u %8llu %s %s", mode, (unsigned)st->st_nlink,
		 (unsigned)st->st_uid, (unsigned)st->st_gid, (unsigned long long)st->st_size, date,
		 name);
}

/* One entry as in a NAME reply; false when it is gone since it was listed. */
static bool put_entry(struct buf *out, DIR *dir, const struct dirent *de)
{
	struct stat st;
	if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return false;
	char line[sizeof(de->d_name) + 128];
	long_name(line, sizeof(line), de->d_name, &st);
	buf_put_cstring(out, de->d_name);
	buf_put_cstring(out, line);
	sftp_attrs_put_stat(out, &st);
	return true;
}

/* Entries from dir into out until the stream ends (*end; *err its errno, 0 at the end of the
 * directory), `max` entries are in, or the reply begun at `start` is SM_LIST_MAX_BYTES long.
 * Returns the count. */
static uint32_t put_entries(struct buf *out, DIR *dir, uint32_t max, size_t start, bool *end,
			    int *err)
{
	uint32_t count = 0;
	*end = false;
	*err = 0;
	while (count < max && out->len - start + ENTRY_ROOM <= SM_LIST_MAX_BYTES) {
		errno = 0;
		struct dirent *de = readdir(dir);
		if (!de) {
			*end = true;
			*err = errno;
			break;
		}
		count += put_entry(out, dir, de);
	}
	return count;
}

int process_readdir(uint32_t id, struct buf *req)
{
	struct handle *h;
	if (handle_get(req, &h) < 0)
		return -1;
	if (!h || h->kind != HANDLE_DIR)
		return reply_bad_handle(id);
	struct buf *out = reply_queue();
	size_t start = reply_begin(SSH2_FXP_NAME, id);
	size_t count_pos = out->len;
	buf_put_u32(out, 0);
	bool end;
	int err;
	uint32_t count = put_entries(out, h->dir, READDIR_BATCH, start, &end, &err);
	if (count == 0) {
		buf_truncate(out, start);
		return err ? reply_errno(id, err) : reply_status(id, SSH2_FX_EOF, NULL);
	}
	buf_set_u32_at(out, count_pos, count);
	reply_end(start);
	return 0;
}

/* Whether a stream stopped by a bound is at its end: the next entry is read and, if there is
 * one, put back (seekdir) for the READDIR that continues. *err: the errno that ended it. */
static bool at_end(DIR *dir, int *err)
{
	long pos = telldir(dir);
	errno = 0;
	struct dirent *de = readdir(dir);
	*err = de ? 0 : errno;
	if (de)
		seekdir(dir, pos);
	return !de;
}

/* The handle of a list@sandmount reply ("8 bytes" at hpos) becomes the empty string. */
static void drop_handle(struct buf *out, size_t hpos)
{
	size_t tail = hpos + 4 + 8;
	memmove(out->data + hpos + 4, out->data + tail, out->len - tail);
	buf_truncate(out, out->len - 8);
	buf_set_u32_at(out, hpos, 0);
}

/* list@sandmount: open the directory and send what fits of it in one reply. */
int process_sm_list(uint32_t id, struct buf *req)
{
	int rc;
	struct handle *h = open_dir_handle(id, req, &rc);
	if (!h)
		return rc;
	struct buf *out = reply_queue();
	size_t start = reply_begin(SSH2_FXP_EXTENDED_REPLY, id);
	size_t flags_pos = out->len;
	buf_put_u32(out, 0);
	size_t hpos = out->len;
	put_handle(out, h);
	size_t count_pos = out->len;
	buf_put_u32(out, 0);
	bool end;
	int err;
	DIR *dir = h->dir;
	uint32_t count = put_entries(out, dir, SM_LIST_MAX_ENTRIES, start, &end, &err);
	if (!end)
		end = at_end(dir, &err);
	if (err || !buf_ok(out)) {
		buf_truncate(out, start);
		handle_close(h);
		return err ? reply_errno(id, err) : 0; /* else the server sees the queue's error */
	}
	buf_set_u32_at(out, count_pos, count);
	if (end) {
		buf_set_u32_at(out, flags_pos, SM_LIST_COMPLETE);
		drop_handle(out, hpos);
		handle_close(h);
	}
	reply_end(start);
	return 0;
}
