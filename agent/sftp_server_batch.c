/* sftp_server_batch.c: read-files@sandmount (lib/proto/sftp_proto.h), the small regular files
 * of one directory with their attributes in one reply, for the daemon's prefetch. What it
 * sends must be a copy of one state of each file: a file is left out when it is not regular,
 * is larger than asked, or its size, mtime or ctime moved while it was read. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sftp_server.h"

/* Room for an entry's name length, attributes and data length (the attributes are at most
 * ~100 bytes: v3 fields and the stat@sandmount pair). */
#define ENTRY_ROOM 256

static bool same_state(const struct stat *a, const struct stat *b)
{
	return a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec && a->st_ino == b->st_ino;
}

/* Read exactly `size` bytes of fd into p; false when the file holds another number of bytes. */
static bool read_whole(int fd, uint8_t *p, size_t size)
{
	size_t got = 0;
	for (;;) {
		uint8_t extra;
		size_t want = got < size ? size - got : 1;
		ssize_t n = pread(fd, got < size ? p + got : &extra, want, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return false;
		if (n == 0)
			return got == size;
		got += (size_t)n;
		if (got > size)
			return false;
	}
}

/* Entry `name` of the directory (fd dfd) into out if it is a small regular file: 1 when it was
 * added, 0 when it was left out. */
static int put_file(struct buf *out, int dfd, const char *name, uint32_t max_file)
{
	struct stat before, after;
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	int added = 0;
	if (fstat(fd, &before) == 0 && S_ISREG(before.st_mode) && before.st_size >= 0 &&
	    (uint64_t)before.st_size <= max_file) {
		size_t start = out->len, size = (size_t)before.st_size;
		buf_put_cstring(out, name);
		sftp_attrs_put_stat(out, &before);
		buf_put_u32(out, (uint32_t)size);
		uint8_t *p = buf_put_space(out, size ? size : 1);
		if (p && read_whole(fd, p, size) && fstat(fd, &after) == 0 &&
		    same_state(&before, &after)) {
			buf_truncate(out, out->len - (size ? 0 : 1));
			added = 1;
		} else {
			buf_truncate(out, start);
		}
	}
	close(fd);
	return added;
}

static bool skip_name(const struct dirent *de)
{
	const char *n = de->d_name;
	if (n[0] == '.' && (!n[1] || (n[1] == '.' && !n[2])))
		return true;
	/* A known type that is not a regular file needs no open (DT_UNKNOWN is opened and
	 * checked). */
	return de->d_type != DT_REG && de->d_type != DT_UNKNOWN;
}

/* Position dir just after the entry named `after`; false when it is not there. */
static bool seek_after(DIR *dir, const char *after)
{
	struct dirent *de;
	while ((de = readdir(dir)))
		if (strcmp(de->d_name, after) == 0)
			return true;
	return false;
}

int process_sm_read_files(uint32_t id, struct buf *req)
{
	char *path, *after;
	uint32_t max_file;
	if (buf_get_cstring(req, &path) < 0)
		return -1;
	if (buf_get_u32(req, &max_file) < 0 || buf_get_cstring(req, &after) < 0) {
		free(path);
		return -1;
	}
	if (max_file > SM_READ_FILES_MAX_FILE)
		max_file = SM_READ_FILES_MAX_FILE;
	DIR *dir = opendir(path);
	int err = errno;
	free(path);
	if (!dir) {
		free(after);
		return reply_errno(id, err);
	}
	struct buf *out = reply_queue();
	size_t start = reply_begin(SSH2_FXP_EXTENDED_REPLY, id);
	char last[256] = "";
	bool found = !after[0] || seek_after(dir, after);
	size_t resume_pos = out->len;
	buf_put_cstring(out, "");
	size_t count_pos = out->len;
	buf_put_u32(out, 0);
	uint32_t count = 0, scanned = 0;
	bool stopped = false;
	struct dirent *de;
	while (found && (de = readdir(dir))) {
		if (count == SM_READ_FILES_MAX_ENTRIES || scanned == SM_READ_FILES_SCAN ||
		    out->len - start + ENTRY_ROOM + max_file > SM_READ_FILES_MAX_BYTES) {
			stopped = true;
			break;
		}
		scanned++;
		snprintf(last, sizeof(last), "%s", de->d_name);
		if (!skip_name(de))
			count += (uint32_t)put_file(out, dirfd(dir), de->d_name, max_file);
	}
	closedir(dir);
	free(after);
	if (!buf_ok(out))
		return 0; /* the server sees the queue's error */
	buf_set_u32_at(out, count_pos, count);
	if (stopped && last[0]) {
		/* The resume name goes in front of the count: rebuild the tail after it. */
		size_t tail = out->len - count_pos, n = strlen(last);
		if (!buf_put_space(out, n))
			return 0;
		memmove(out->data + count_pos + n, out->data + count_pos, tail);
		memcpy(out->data + resume_pos + 4, last, n);
		buf_set_u32_at(out, resume_pos, (uint32_t)n);
	}
	reply_end(start);
	return 0;
}
