/* sftp_codec.c: SFTP v3 wire formats: packet framing, file attributes (with our agent's
 * stat@sandmount pair), status codes and their errno, and the parsers of the replies the client
 * understands. Pure functions over struct buf; every parser rejects truncated input with -1 (or
 * -EPROTO). */
#include "sftp/sftp_internal.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

/* Framing: u32 length, u8 type, u32 id. */
#define SFTP_HEADER_LEN 9

void sftp_packet_begin(struct buf *b, uint8_t type)
{
	buf_init(b);
	buf_put_u32(b, 0);
	buf_put_u8(b, type);
	buf_put_u32(b, 0);
}

void sftp_packet_begin_extended(struct buf *b, const char *name)
{
	sftp_packet_begin(b, SSH2_FXP_EXTENDED);
	buf_put_cstring(b, name);
}

int sftp_packet_finish(struct buf *pkt, uint32_t id, size_t tail_len)
{
	if (!buf_ok(pkt) || pkt->len < SFTP_HEADER_LEN)
		return -1;
	size_t body = pkt->len - 4 + tail_len;
	if (body > UINT32_MAX)
		return -1;
	buf_set_u32_at(pkt, 0, (uint32_t)body);
	buf_set_u32_at(pkt, 5, id);
	return buf_ok(pkt) ? 0 : -1;
}

#define V3_FLAGS (SFTP_ATTR_SIZE | SFTP_ATTR_UIDGID | SFTP_ATTR_PERM | SFTP_ATTR_ACMODTIME)
/* Our flags for what stat@sandmount carries are its valid bits shifted by 8. */
#define SM_SHIFT 8
#define SM_FLAGS                                                                                   \
	(SFTP_ATTR_DEVINO | SFTP_ATTR_NLINK | SFTP_ATTR_RDEV | SFTP_ATTR_NSTIME | SFTP_ATTR_CTIME)

static void put_time(struct buf *b, const struct timespec *ts)
{
	uint32_t nsec = (uint32_t)ts->tv_nsec;
	if (ts->tv_nsec == UTIME_NOW)
		nsec = SM_NSEC_NOW;
	else if (ts->tv_nsec == UTIME_OMIT)
		nsec = SM_NSEC_OMIT;
	buf_put_u64(b, (uint64_t)(int64_t)ts->tv_sec);
	buf_put_u32(b, nsec);
}

/* The stat@sandmount pair (its name, then its data as a string). */
static void put_sm_stat(struct buf *b, const struct sftp_attrs *a)
{
	buf_put_cstring(b, SM_EXT_STAT);
	buf_put_u32(b, SM_STAT_LEN);
	buf_put_u32(b, (a->flags & SM_FLAGS) >> SM_SHIFT);
	buf_put_u64(b, a->dev);
	buf_put_u64(b, a->ino);
	buf_put_u64(b, a->nlink);
	buf_put_u64(b, a->rdev);
	put_time(b, &a->atim);
	put_time(b, &a->mtim);
	put_time(b, &a->ctim);
}

void sftp_attrs_encode(struct buf *b, const struct sftp_attrs *a)
{
	uint32_t flags = a ? a->flags & V3_FLAGS : 0;
	bool sm = a && (a->flags & SM_FLAGS);
	buf_put_u32(b, flags | (sm ? SSH2_FILEXFER_ATTR_EXTENDED : 0));
	if (flags & SFTP_ATTR_SIZE)
		buf_put_u64(b, a->size);
	if (flags & SFTP_ATTR_UIDGID) {
		buf_put_u32(b, a->uid);
		buf_put_u32(b, a->gid);
	}
	if (flags & SFTP_ATTR_PERM)
		buf_put_u32(b, a->perm);
	if (flags & SFTP_ATTR_ACMODTIME) {
		buf_put_u32(b, a->atime);
		buf_put_u32(b, a->mtime);
	}
	if (sm) {
		buf_put_u32(b, 1);
		put_sm_stat(b, a);
	}
}

/* A time from the server: nanoseconds must be below a second. */
static int get_time(struct buf *b, struct timespec *ts)
{
	uint64_t sec;
	uint32_t nsec;
	if (buf_get_u64(b, &sec) < 0 || buf_get_u32(b, &nsec) < 0 || nsec >= 1000000000u)
		return -1;
	ts->tv_sec = (time_t)(int64_t)sec;
	ts->tv_nsec = nsec;
	return 0;
}

static int get_sm_stat(const uint8_t *p, uint32_t n, struct sftp_attrs *a)
{
	struct buf b;
	uint32_t valid;
	if (n != SM_STAT_LEN)
		return -1;
	buf_view(&b, (uint8_t *)p, n); /* read only */
	if (buf_get_u32(&b, &valid) < 0 || buf_get_u64(&b, &a->dev) < 0 ||
	    buf_get_u64(&b, &a->ino) < 0 || buf_get_u64(&b, &a->nlink) < 0 ||
	    buf_get_u64(&b, &a->rdev) < 0 || get_time(&b, &a->atim) < 0 ||
	    get_time(&b, &a->mtim) < 0 || get_time(&b, &a->ctim) < 0)
		return -1;
	a->flags |= (valid << SM_SHIFT) & SM_FLAGS;
	/* What is not flagged valid is not kept. */
	if (!(a->flags & SFTP_ATTR_DEVINO))
		a->dev = a->ino = 0;
	if (!(a->flags & SFTP_ATTR_NLINK))
		a->nlink = 0;
	if (!(a->flags & SFTP_ATTR_RDEV))
		a->rdev = 0;
	if (!(a->flags & SFTP_ATTR_NSTIME))
		a->atim = a->mtim = (struct timespec){0};
	if (!(a->flags & SFTP_ATTR_CTIME))
		a->ctim = (struct timespec){0};
	return 0;
}

/* Extended pairs: stat@sandmount is read, others are skipped. No server sends this many. */
#define MAX_EXTENDED 256

static int get_extended(struct buf *b, struct sftp_attrs *a)
{
	uint32_t count;
	if (buf_get_u32(b, &count) < 0 || count > MAX_EXTENDED)
		return -1;
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *name, *data;
		uint32_t name_len, data_len;
		if (buf_get_string(b, &name, &name_len) < 0 ||
		    buf_get_string(b, &data, &data_len) < 0)
			return -1;
		if (name_len == strlen(SM_EXT_STAT) && memcmp(name, SM_EXT_STAT, name_len) == 0 &&
		    get_sm_stat(data, data_len, a) < 0)
			return -1;
	}
	return 0;
}

int sftp_attrs_decode(struct buf *b, struct sftp_attrs *a)
{
	uint32_t flags;
	memset(a, 0, sizeof(*a));
	if (buf_get_u32(b, &flags) < 0)
		return -1;
	if ((flags & SFTP_ATTR_SIZE) && buf_get_u64(b, &a->size) < 0)
		return -1;
	if ((flags & SFTP_ATTR_UIDGID) &&
	    (buf_get_u32(b, &a->uid) < 0 || buf_get_u32(b, &a->gid) < 0))
		return -1;
	if ((flags & SFTP_ATTR_PERM) && buf_get_u32(b, &a->perm) < 0)
		return -1;
	if ((flags & SFTP_ATTR_ACMODTIME) &&
	    (buf_get_u32(b, &a->atime) < 0 || buf_get_u32(b, &a->mtime) < 0))
		return -1;
	a->flags = flags & V3_FLAGS;
	if ((flags & SSH2_FILEXFER_ATTR_EXTENDED) && get_extended(b, a) < 0)
		return -1;
	return 0;
}

/* Codes 0-8 are SFTP v3; the later drafts' codes are accepted too, for servers that send them. */
int sftp_status_to_errno(uint32_t status)
{
	static const int map[] = {
	    [SSH2_FX_OK] = 0,
	    [SSH2_FX_EOF] = ENODATA,
	    [SSH2_FX_NO_SUCH_FILE] = ENOENT,
	    [SSH2_FX_PERMISSION_DENIED] = EACCES,
	    [SSH2_FX_FAILURE] = EIO,
	    [SSH2_FX_BAD_MESSAGE] = EPROTO,
	    [SSH2_FX_NO_CONNECTION] = EIO,
	    [SSH2_FX_CONNECTION_LOST] = EIO,
	    [SSH2_FX_OP_UNSUPPORTED] = ENOTSUP,
	    [9] = EBADF,      /* INVALID_HANDLE */
	    [10] = ENOENT,    /* NO_SUCH_PATH */
	    [11] = EEXIST,    /* FILE_ALREADY_EXISTS */
	    [12] = EROFS,     /* WRITE_PROTECT */
	    [13] = ENODEV,    /* NO_MEDIA */
	    [14] = ENOSPC,    /* NO_SPACE_ON_FILESYSTEM */
	    [15] = EDQUOT,    /* QUOTA_EXCEEDED */
	    [16] = EIO,	      /* UNKNOWN_PRINCIPAL */
	    [17] = ENOLCK,    /* LOCK_CONFLICT */
	    [18] = ENOTEMPTY, /* DIR_NOT_EMPTY */
	    [19] = ENOTDIR,   /* NOT_A_DIRECTORY */
	    [20] = EINVAL,    /* INVALID_FILENAME */
	    [21] = ELOOP,     /* LINK_LOOP */
	    [22] = EACCES,    /* CANNOT_DELETE */
	    [23] = EINVAL,    /* INVALID_PARAMETER */
	    [24] = EISDIR,    /* FILE_IS_A_DIRECTORY */
	};
	if (status >= sizeof(map) / sizeof(map[0]))
		return -EIO;
	return -map[status];
}

/* Servers that pass strerror() text as the message (OpenSSH sends just "Failure"; our agent
 * always sends it, so its EPERM, ENOTDIR, ELOOP... come through exactly). */
int sftp_errno_from_message(const uint8_t *msg, size_t len)
{
	static const struct {
		const char *text;
		int err;
	} known[] = {
	    {"File exists", EEXIST},
	    {"Directory not empty", ENOTEMPTY},
	    {"Is a directory", EISDIR},
	    {"Not a directory", ENOTDIR},
	    {"No space left on device", ENOSPC},
	    {"Disk quota exceeded", EDQUOT},
	    {"Read-only file system", EROFS},
	    {"File too large", EFBIG},
	    {"Too many links", EMLINK},
	    {"Operation not permitted", EPERM},
	    {"Invalid argument", EINVAL},
	    {"Device or resource busy", EBUSY},
	    {"Invalid cross-device link", EXDEV},
	    {"Too many levels of symbolic links", ELOOP},
	    {"File name too long", ENAMETOOLONG},
	    {"Text file busy", ETXTBSY},
	    {"Bad file descriptor", EBADF},
	    {"Operation not supported", EOPNOTSUPP},
	    {"Function not implemented", ENOSYS},
	    {"No such device", ENODEV},
	};
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		size_t n = strlen(known[i].text);
		if (len == n && memcmp(msg, known[i].text, n) == 0)
			return known[i].err;
	}
	return 0;
}

int sftp_parse_status(struct buf *b, uint32_t *code)
{
	const uint8_t *msg = NULL;
	uint32_t msg_len = 0;
	if (buf_get_u32(b, code) < 0)
		return -EPROTO;
	/* v3 servers send a message and a language tag; tolerate their absence. */
	if (buf_remaining(b) > 0 && buf_get_string(b, &msg, &msg_len) < 0)
		return -EPROTO;
	int e = sftp_status_to_errno(*code);
	if (*code != SSH2_FX_OK && *code != SSH2_FX_EOF && msg) {
		int m = sftp_errno_from_message(msg, msg_len);
		if (m)
			e = -m;
	}
	return e;
}

int sftp_parse_handle(struct buf *b, struct sftp_handle *h)
{
	const uint8_t *p;
	uint32_t n;
	if (buf_get_string(b, &p, &n) < 0 || n > SFTP_HANDLE_MAX)
		return -EPROTO;
	h->len = n;
	memcpy(h->data, p, n);
	return 0;
}

void sftp_put_handle(struct buf *b, const struct sftp_handle *h)
{
	buf_put_string(b, h->data, h->len);
}

int sftp_parse_single_name(struct buf *b, char **name)
{
	uint32_t count;
	if (buf_get_u32(b, &count) < 0 || count != 1)
		return -EPROTO;
	return buf_get_cstring(b, name) < 0 ? -EPROTO : 0;
}

static unsigned extension_bit(const uint8_t *name, uint32_t n)
{
	static const struct {
		const char *name;
		unsigned bit;
	} ours[] = {
	    {"posix-rename@openssh.com", SFTP_EXT_POSIX_RENAME},
	    {"statvfs@openssh.com", SFTP_EXT_STATVFS},
	    {"fsync@openssh.com", SFTP_EXT_FSYNC},
	    {"hardlink@openssh.com", SFTP_EXT_HARDLINK},
	    {"limits@openssh.com", SFTP_EXT_LIMITS},
	    {SM_EXT_STAT, SFTP_EXT_SM_STAT},
	    {SM_EXT_MKNOD, SFTP_EXT_SM_MKNOD},
	    {SM_EXT_OPEN_READ, SFTP_EXT_SM_OPEN_READ},
	    {SM_EXT_LIST, SFTP_EXT_SM_LIST},
	    {SM_EXT_READ_FILES, SFTP_EXT_SM_READ_FILES},
	};
	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++)
		if (strlen(ours[i].name) == n && memcmp(ours[i].name, name, n) == 0)
			return ours[i].bit;
	return 0;
}

int sftp_parse_version(struct buf *b, uint32_t *version, unsigned *ext)
{
	*ext = 0;
	if (buf_get_u32(b, version) < 0)
		return -EPROTO;
	while (buf_remaining(b) > 0) {
		const uint8_t *name, *data;
		uint32_t name_len, data_len;
		if (buf_get_string(b, &name, &name_len) < 0 ||
		    buf_get_string(b, &data, &data_len) < 0)
			return -EPROTO;
		*ext |= extension_bit(name, name_len);
	}
	return 0;
}

int sftp_parse_limits(struct buf *b, struct sftp_limits *l)
{
	if (buf_get_u64(b, &l->max_packet) < 0 || buf_get_u64(b, &l->max_read) < 0 ||
	    buf_get_u64(b, &l->max_write) < 0 || buf_get_u64(b, &l->max_open_handles) < 0)
		return -EPROTO;
	return 0;
}

int sftp_parse_statvfs(struct buf *b, struct statvfs *st)
{
	uint64_t v[11];
	for (int i = 0; i < 11; i++)
		if (buf_get_u64(b, &v[i]) < 0)
			return -EPROTO;
	memset(st, 0, sizeof(*st));
	st->f_bsize = v[0];
	st->f_frsize = v[1];
	st->f_blocks = v[2];
	st->f_bfree = v[3];
	st->f_bavail = v[4];
	st->f_files = v[5];
	st->f_ffree = v[6];
	st->f_favail = v[7];
	st->f_fsid = v[8];
	/* OpenSSH's SSH2_FXE_STATVFS_ST_RDONLY = 1, ST_NOSUID = 2, as Linux's. */
	st->f_flag = v[9] & (ST_RDONLY | ST_NOSUID);
	st->f_namemax = v[10];
	return 0;
}

int sftp_parse_data(struct buf *b, const uint8_t **p, uint32_t *n)
{
	return buf_get_string(b, p, n) < 0 ? -EPROTO : 0;
}
