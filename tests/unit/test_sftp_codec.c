/* test_sftp_codec.c: the SFTP wire codec: attrs round trip, status mapping, and rejection of
 * malformed input (truncated fields, string lengths past the end). */
#include "sftp/sftp_internal.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                     \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

static void test_attrs_round_trip(void)
{
	struct sftp_attrs in = {.flags = SFTP_ATTR_SIZE | SFTP_ATTR_UIDGID | SFTP_ATTR_PERM |
					 SFTP_ATTR_ACMODTIME,
				.size = 0x123456789abcULL,
				.uid = 1000,
				.gid = 100,
				.perm = 0100644,
				.atime = 1700000000,
				.mtime = 1700000001};
	struct sftp_attrs out;
	struct buf b;
	buf_init(&b);
	sftp_attrs_encode(&b, &in);
	CHECK(buf_ok(&b) && b.len == 4 + 8 + 8 + 4 + 8);
	CHECK(sftp_attrs_decode(&b, &out) == 0);
	CHECK(out.flags == in.flags && out.size == in.size && out.uid == in.uid &&
	      out.gid == in.gid && out.perm == in.perm && out.atime == in.atime &&
	      out.mtime == in.mtime); /* field by field: the struct has padding */
	CHECK(buf_remaining(&b) == 0);

	/* Only the fields flagged are on the wire. */
	buf_reset(&b);
	struct sftp_attrs perm_only = {.flags = SFTP_ATTR_PERM, .perm = 0755, .size = 99};
	sftp_attrs_encode(&b, &perm_only);
	CHECK(b.len == 8);
	CHECK(sftp_attrs_decode(&b, &out) == 0 && out.flags == SFTP_ATTR_PERM && out.perm == 0755 &&
	      out.size == 0);

	/* NULL attrs encode as "no attributes". */
	buf_reset(&b);
	sftp_attrs_encode(&b, NULL);
	CHECK(b.len == 4 && sftp_attrs_decode(&b, &out) == 0 && out.flags == 0);

	/* Extended attributes are skipped. */
	buf_reset(&b);
	buf_put_u32(&b, SFTP_ATTR_SIZE | SSH2_FILEXFER_ATTR_EXTENDED);
	buf_put_u64(&b, 7);
	buf_put_u32(&b, 1);
	buf_put_cstring(&b, "name@x");
	buf_put_cstring(&b, "data");
	buf_put_u8(&b, 0xee);
	CHECK(sftp_attrs_decode(&b, &out) == 0 && out.size == 7 && out.flags == SFTP_ATTR_SIZE);
	CHECK(buf_remaining(&b) == 1);
	buf_free(&b);
}

static void test_attrs_truncated(void)
{
	struct sftp_attrs full = {.flags = SFTP_ATTR_SIZE | SFTP_ATTR_UIDGID | SFTP_ATTR_PERM |
					   SFTP_ATTR_ACMODTIME};
	struct sftp_attrs out;
	struct buf b;
	buf_init(&b);
	sftp_attrs_encode(&b, &full);
	size_t n = b.len;
	for (size_t cut = 0; cut < n; cut++) {
		b.len = cut;
		b.off = 0;
		if (sftp_attrs_decode(&b, &out) != -1) {
			printf("FAIL attrs truncated at %zu bytes accepted\n", cut);
			failures++;
		}
	}
	/* An extended pair whose string length runs past the end. */
	buf_reset(&b);
	buf_put_u32(&b, SSH2_FILEXFER_ATTR_EXTENDED);
	buf_put_u32(&b, 1);
	buf_put_u32(&b, 1000);
	buf_put_bytes(&b, "abc", 3);
	CHECK(sftp_attrs_decode(&b, &out) == -1);
	buf_free(&b);
}

/* Attributes as our agent sends them: v3 fields plus a stat@sandmount pair. */
static struct sftp_attrs full_attrs(void)
{
	return (struct sftp_attrs){
	    .flags = SFTP_ATTR_SIZE | SFTP_ATTR_UIDGID | SFTP_ATTR_PERM | SFTP_ATTR_ACMODTIME |
		     SFTP_ATTR_DEVINO | SFTP_ATTR_NLINK | SFTP_ATTR_RDEV | SFTP_ATTR_NSTIME |
		     SFTP_ATTR_CTIME,
	    .size = 42,
	    .uid = 0,
	    .gid = 5,
	    .perm = 0010644,
	    .atime = 1700000000,
	    .mtime = 1700000001,
	    .dev = 0x803,
	    .ino = 0xfedcba9876ULL,
	    .nlink = 3,
	    .rdev = 0x10203,
	    .atim = {1700000000, 123456789},
	    .mtim = {1700000001, 999999999},
	    .ctim = {-5, 1}, /* before the epoch: seconds are signed */
	};
}

static bool same_ts(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

static void test_full_attrs_round_trip(void)
{
	struct sftp_attrs in = full_attrs(), out;
	struct buf b;
	buf_init(&b);
	sftp_attrs_encode(&b, &in);
	size_t pair = 4 + 4 + strlen(SM_EXT_STAT) + 4 + SM_STAT_LEN;
	CHECK(buf_ok(&b) && b.len == 4 + 8 + 8 + 4 + 8 + pair);
	CHECK(sftp_attrs_decode(&b, &out) == 0 && buf_remaining(&b) == 0);
	CHECK(out.flags == in.flags && out.size == 42 && out.gid == 5 && out.perm == 0010644);
	CHECK(out.dev == in.dev && out.ino == in.ino && out.nlink == 3 && out.rdev == in.rdev);
	CHECK(same_ts(out.atim, in.atim) && same_ts(out.mtim, in.mtim) &&
	      same_ts(out.ctim, in.ctim));

	/* Only the parts flagged valid count (a pair with times only, as a SETSTAT sends). */
	buf_reset(&b);
	struct sftp_attrs times = {
	    .flags = SFTP_ATTR_NSTIME, .atim = {1, UTIME_OMIT}, .mtim = {2, 5}, .ino = 77};
	sftp_attrs_encode(&b, &times);
	uint32_t flags;
	CHECK(buf_peek_u32(&b, &flags) == 0 && flags == SSH2_FILEXFER_ATTR_EXTENDED);
	/* UTIME_OMIT travels as SM_NSEC_OMIT, which a client refuses in a reply. */
	CHECK(sftp_attrs_decode(&b, &out) == -1);
	buf_reset(&b);
	times.atim.tv_nsec = 0;
	sftp_attrs_encode(&b, &times);
	CHECK(sftp_attrs_decode(&b, &out) == 0 && out.flags == SFTP_ATTR_NSTIME && out.ino == 0 &&
	      out.mtim.tv_nsec == 5);
	buf_free(&b);
}

/* Build a reply attr block with a stat@sandmount pair whose data is `data` (n bytes). */
static void put_sm_pair(struct buf *b, const void *data, uint32_t n)
{
	buf_reset(b);
	buf_put_u32(b, SFTP_ATTR_PERM | SSH2_FILEXFER_ATTR_EXTENDED);
	buf_put_u32(b, 0100600);
	buf_put_u32(b, 1);
	buf_put_cstring(b, SM_EXT_STAT);
	buf_put_string(b, data, n);
}

static void test_full_attrs_hostile(void)
{
	struct sftp_attrs in = full_attrs(), out;
	struct buf b, pair;
	buf_init(&b);
	buf_init(&pair);
	sftp_attrs_encode(&b, &in);
	size_t n = b.len;
	for (size_t cut = 0; cut < n; cut++) {
		b.len = cut;
		b.off = 0;
		if (sftp_attrs_decode(&b, &out) != -1) {
			printf("FAIL full attrs truncated at %zu bytes accepted\n", cut);
			failures++;
		}
	}
	/* The pair's data: a valid one, then one byte short, one byte long, a bad nanosecond. */
	uint8_t data[SM_STAT_LEN + 1] = {0};
	data[3] = SM_STAT_NLINK;
	data[4 + 2 * 8 + 7] = 9; /* nlink = 9 */
	put_sm_pair(&b, data, SM_STAT_LEN);
	CHECK(sftp_attrs_decode(&b, &out) == 0 && out.nlink == 9 &&
	      out.flags == (SFTP_ATTR_PERM | SFTP_ATTR_NLINK));
	put_sm_pair(&b, data, SM_STAT_LEN - 1);
	CHECK(sftp_attrs_decode(&b, &out) == -1);
	put_sm_pair(&b, data, SM_STAT_LEN + 1);
	CHECK(sftp_attrs_decode(&b, &out) == -1);
	memset(data + 4 + 4 * 8 + 8, 0xff, 4); /* atime nanoseconds 0xffffffff */
	put_sm_pair(&b, data, SM_STAT_LEN);
	CHECK(sftp_attrs_decode(&b, &out) == -1);
	/* Unknown valid bits are ignored, not turned into flags. */
	memset(data, 0xff, 4);
	memset(data + 4 + 4 * 8 + 8, 0, 4);
	put_sm_pair(&b, data, SM_STAT_LEN);
	CHECK(sftp_attrs_decode(&b, &out) == 0 &&
	      (out.flags & ~(SFTP_ATTR_PERM | SFTP_ATTR_DEVINO | SFTP_ATTR_NLINK | SFTP_ATTR_RDEV |
			     SFTP_ATTR_NSTIME | SFTP_ATTR_CTIME)) == 0);
	/* A lying pair count: far more pairs than the block holds, or more than we accept. */
	buf_reset(&b);
	buf_put_u32(&b, SSH2_FILEXFER_ATTR_EXTENDED);
	buf_put_u32(&b, 0xffffffff);
	buf_put_cstring(&b, "a");
	buf_put_cstring(&b, "b");
	CHECK(sftp_attrs_decode(&b, &out) == -1);
	buf_free(&b);
	buf_free(&pair);
}

static void test_status(void)
{
	CHECK(sftp_status_to_errno(SSH2_FX_OK) == 0);
	CHECK(sftp_status_to_errno(SSH2_FX_NO_SUCH_FILE) == -ENOENT);
	CHECK(sftp_status_to_errno(SSH2_FX_PERMISSION_DENIED) == -EACCES);
	CHECK(sftp_status_to_errno(SSH2_FX_FAILURE) == -EIO);
	CHECK(sftp_status_to_errno(SSH2_FX_BAD_MESSAGE) == -EPROTO);
	CHECK(sftp_status_to_errno(SSH2_FX_NO_CONNECTION) == -EIO);
	CHECK(sftp_status_to_errno(SSH2_FX_CONNECTION_LOST) == -EIO);
	CHECK(sftp_status_to_errno(SSH2_FX_OP_UNSUPPORTED) == -ENOTSUP);
	CHECK(sftp_status_to_errno(SSH2_FX_EOF) == -ENODATA);
	CHECK(sftp_status_to_errno(18) == -ENOTEMPTY);
	CHECK(sftp_status_to_errno(12345) == -EIO);

	struct buf b;
	uint32_t code;
	buf_init(&b);
	buf_put_u32(&b, SSH2_FX_FAILURE);
	buf_put_cstring(&b, "Failure");
	buf_put_cstring(&b, "");
	CHECK(sftp_parse_status(&b, &code) == -EIO && code == SSH2_FX_FAILURE);
	buf_reset(&b);
	buf_put_u32(&b, SSH2_FX_FAILURE);
	buf_put_cstring(&b, "Directory not empty");
	buf_put_cstring(&b, "en");
	CHECK(sftp_parse_status(&b, &code) == -ENOTEMPTY);
	/* A bare code (some servers omit the message) is accepted. */
	buf_reset(&b);
	buf_put_u32(&b, SSH2_FX_NO_SUCH_FILE);
	CHECK(sftp_parse_status(&b, &code) == -ENOENT);
	/* Truncated: no code, or a message length past the end. */
	buf_reset(&b);
	buf_put_u8(&b, 0);
	CHECK(sftp_parse_status(&b, &code) == -EPROTO);
	buf_reset(&b);
	buf_put_u32(&b, SSH2_FX_OK);
	buf_put_u32(&b, 50);
	buf_put_bytes(&b, "short", 5);
	CHECK(sftp_parse_status(&b, &code) == -EPROTO);
	buf_free(&b);
}

static void test_replies(void)
{
	struct buf b;
	buf_init(&b);

	struct sftp_handle h;
	buf_put_string(&b, "abcd", 4);
	CHECK(sftp_parse_handle(&b, &h) == 0 && h.len == 4 && memcmp(h.data, "abcd", 4) == 0);
	buf_reset(&b);
	uint8_t big[SFTP_HANDLE_MAX + 1] = {0};
	buf_put_string(&b, big, sizeof(big));
	CHECK(sftp_parse_handle(&b, &h) == -EPROTO);
	buf_reset(&b);
	buf_put_u32(&b, 8);
	buf_put_bytes(&b, "abc", 3);
	CHECK(sftp_parse_handle(&b, &h) == -EPROTO);

	char *name = NULL;
	buf_reset(&b);
	buf_put_u32(&b, 1);
	buf_put_cstring(&b, "/tmp/x");
	buf_put_cstring(&b, "");
	buf_put_u32(&b, 0);
	CHECK(sftp_parse_single_name(&b, &name) == 0 && name && strcmp(name, "/tmp/x") == 0);
	free(name);
	buf_reset(&b);
	buf_put_u32(&b, 1);
	buf_put_u32(&b, 100);
	buf_put_bytes(&b, "/tmp", 4);
	CHECK(sftp_parse_single_name(&b, &name) == -EPROTO);
	buf_reset(&b);
	buf_put_u32(&b, 1);
	buf_put_string(&b, "a\0b", 3);
	CHECK(sftp_parse_single_name(&b, &name) == -EPROTO);
	buf_reset(&b);
	buf_put_u32(&b, 0);
	CHECK(sftp_parse_single_name(&b, &name) == -EPROTO);

	const uint8_t *p;
	uint32_t n;
	buf_reset(&b);
	buf_put_u32(&b, 0x7fffffff);
	buf_put_bytes(&b, "xx", 2);
	CHECK(sftp_parse_data(&b, &p, &n) == -EPROTO);
	buf_free(&b);
}

static void test_version_and_extensions(void)
{
	struct buf b;
	uint32_t version;
	unsigned ext;
	buf_init(&b);
	buf_put_u32(&b, 3);
	const char *names[] = {"posix-rename@openssh.com", "statvfs@openssh.com",
			       "fstatvfs@openssh.com",	   "hardlink@openssh.com",
			       "fsync@openssh.com",	   "limits@openssh.com"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		buf_put_cstring(&b, names[i]);
		buf_put_cstring(&b, "1");
	}
	CHECK(sftp_parse_version(&b, &version, &ext) == 0 && version == 3);
	CHECK(ext == (SFTP_EXT_POSIX_RENAME | SFTP_EXT_STATVFS | SFTP_EXT_HARDLINK |
		      SFTP_EXT_FSYNC | SFTP_EXT_LIMITS));
	/* A name without its data string. */
	buf_reset(&b);
	buf_put_u32(&b, 3);
	buf_put_cstring(&b, "fsync@openssh.com");
	CHECK(sftp_parse_version(&b, &version, &ext) == -EPROTO);

	struct sftp_limits l;
	buf_reset(&b);
	buf_put_u64(&b, 262144);
	buf_put_u64(&b, 261120);
	buf_put_u64(&b, 261120);
	buf_put_u64(&b, 1000);
	CHECK(sftp_parse_limits(&b, &l) == 0 && l.max_packet == 262144 && l.max_read == 261120 &&
	      l.max_open_handles == 1000);
	b.off = 0;
	b.len -= 1;
	CHECK(sftp_parse_limits(&b, &l) == -EPROTO);

	struct statvfs st;
	buf_reset(&b);
	for (int i = 0; i < 11; i++)
		buf_put_u64(&b, (uint64_t)i + 1);
	CHECK(sftp_parse_statvfs(&b, &st) == 0 && st.f_bsize == 1 && st.f_blocks == 3 &&
	      st.f_namemax == 11 && st.f_flag == 2);
	b.off = 0;
	b.len = 80;
	CHECK(sftp_parse_statvfs(&b, &st) == -EPROTO);
	buf_free(&b);
}

static void test_packet_framing(void)
{
	struct buf b;
	sftp_packet_begin(&b, SSH2_FXP_STAT);
	buf_put_cstring(&b, "/a");
	CHECK(sftp_packet_finish(&b, 77, 0) == 0);
	uint32_t len, id;
	uint8_t type;
	CHECK(buf_get_u32(&b, &len) == 0 && len == b.len - 4);
	CHECK(buf_get_u8(&b, &type) == 0 && type == SSH2_FXP_STAT);
	CHECK(buf_get_u32(&b, &id) == 0 && id == 77);
	buf_free(&b);

	sftp_packet_begin(&b, SSH2_FXP_WRITE);
	CHECK(sftp_packet_finish(&b, 1, 1000) == 0);
	b.off = 0;
	CHECK(buf_get_u32(&b, &len) == 0 && len == 5 + 1000);
	buf_free(&b);
}

int main(void)
{
	test_attrs_round_trip();
	test_attrs_truncated();
	test_full_attrs_round_trip();
	test_full_attrs_hostile();
	test_status();
	test_replies();
	test_version_and_extensions();
	test_packet_framing();
	if (failures) {
		printf("%d check(s) failed\n", failures);
		return 1;
	}
	printf("test_sftp_codec: all checks passed\n");
	return 0;
}
