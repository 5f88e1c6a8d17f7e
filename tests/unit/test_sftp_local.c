/* test_sftp_local.c: the SFTP client against a real peer, OpenSSH's sftp-server, spoken to over a
 * socketpair in a temporary directory. Results are checked against the local file system. Also:
 * a killed server fails pending and later calls with -EIO at once, a stopped one times out, and
 * short reads from a scripted peer are completed by asking again. */
#include "buf.h"
#include "sftp/sftp_client.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SFTP_SERVER "/usr/lib/openssh/sftp-server"
#define TIMEOUT_MS  10000

static int failures;
static char root[256];

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                     \
			failures++;                                                                \
		}                                                                                  \
	} while (0)
#define CHECK_EQ(got, want)                                                                        \
	do {                                                                                       \
		long long g_ = (got), w_ = (want);                                                 \
		if (g_ != w_) {                                                                    \
			printf("FAIL %s:%d: %s = %lld, want %lld\n", __FILE__, __LINE__, #got, g_, \
			       w_);                                                                \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

/* root/name in one of a few rotating buffers. */
static const char *P(const char *name)
{
	static __thread char bufs[8][PATH_MAX];
	static __thread int next;
	char *b = bufs[next++ % 8];
	snprintf(b, PATH_MAX, "%s/%s", root, name);
	return b;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct sftp_client *start_server(int timeout_ms, pid_t *pid)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("socketpair");
		exit(2);
	}
	*pid = fork();
	if (*pid == 0) {
		dup2(sv[1], 0);
		dup2(sv[1], 1);
		execl(SFTP_SERVER, "sftp-server", "-d", root, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	struct sftp_client *c;
	struct err e;
	if (sftp_client_open(sv[0], timeout_ms, &c, &e) < 0) {
		printf("FAIL sftp_client_open: %s\n", e.msg);
		exit(1);
	}
	return c;
}

static void stop_server(struct sftp_client *c, pid_t pid)
{
	sftp_client_close(c);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void write_local(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, p, n) != (ssize_t)n) {
		perror(path);
		exit(2);
	}
	close(fd);
}

static void fill_random(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245 + 12345;
		p[i] = (uint8_t)(seed >> 16);
	}
}

static void test_stat(struct sftp_client *c)
{
	struct sftp_attrs a;
	write_local(P("f1"), "hello", 5);
	mkdir(P("d1"), 0755);
	CHECK_EQ(symlink("f1", P("l1")), 0);
	CHECK_EQ(sftp_stat(c, P("f1"), &a), 0);
	CHECK(S_ISREG(a.perm) && a.size == 5 && (a.flags & SFTP_ATTR_ACMODTIME));
	CHECK_EQ(sftp_stat(c, P("d1"), &a), 0);
	CHECK(S_ISDIR(a.perm));
	CHECK_EQ(sftp_lstat(c, P("l1"), &a), 0);
	CHECK(S_ISLNK(a.perm));
	CHECK_EQ(sftp_stat(c, P("l1"), &a), 0);
	CHECK(S_ISREG(a.perm) && a.size == 5);
	CHECK_EQ(sftp_stat(c, P("missing"), &a), -ENOENT);
	CHECK_EQ(sftp_lstat(c, P("missing"), &a), -ENOENT);
	CHECK_EQ(sftp_stat(c, P("f1/sub"), &a), -ENOENT);
}

static void test_open(struct sftp_client *c)
{
	struct sftp_handle h;
	struct sftp_attrs a = {.flags = SFTP_ATTR_PERM, .perm = 0600};
	struct stat st;
	CHECK_EQ(sftp_open(c, P("new"), SFTP_OPEN_WRITE | SFTP_OPEN_CREAT | SFTP_OPEN_EXCL, &a, &h),
		 0);
	CHECK_EQ(sftp_close(c, &h), 0);
	CHECK(stat(P("new"), &st) == 0 && (st.st_mode & 07777) == 0600);
	CHECK_EQ(sftp_open(c, P("new"), SFTP_OPEN_WRITE | SFTP_OPEN_CREAT | SFTP_OPEN_EXCL, &a, &h),
		 -EEXIST);
	CHECK_EQ(sftp_open(c, P("missing"), SFTP_OPEN_READ, NULL, &h), -ENOENT);
	CHECK_EQ(sftp_open(c, P("d1"), SFTP_OPEN_WRITE, NULL, &h), -EISDIR);

	write_local(P("t"), "0123456789", 10);
	CHECK_EQ(sftp_open(c, P("t"), SFTP_OPEN_WRITE | SFTP_OPEN_TRUNC, NULL, &h), 0);
	CHECK_EQ(sftp_close(c, &h), 0);
	CHECK(stat(P("t"), &st) == 0 && st.st_size == 0);

	write_local(P("ap"), "abc", 3);
	CHECK_EQ(sftp_open(c, P("ap"), SFTP_OPEN_WRITE | SFTP_OPEN_APPEND, NULL, &h), 0);
	CHECK_EQ(sftp_write(c, &h, 0, "def", 3), 0);
	CHECK_EQ(sftp_fstat(c, &h, &a), 0);
	CHECK_EQ(a.size, 6);
	CHECK_EQ(sftp_fsync(c, &h), 0);
	CHECK_EQ(sftp_close(c, &h), 0);
	char got[8] = {0};
	int fd = open(P("ap"), O_RDONLY);
	CHECK(read(fd, got, sizeof(got)) == 6 && memcmp(got, "abcdef", 6) == 0);
	close(fd);
}

/* Write n random bytes with sftp_write, read them back with sftp_read; compare. */
static void round_trip(struct sftp_client *c, const char *name, size_t n, unsigned seed,
		       double *mbps_w, double *mbps_r)
{
	uint8_t *out = malloc(n + 1), *in = malloc(n + 100);
	struct sftp_handle h;
	size_t got = 12345;
	fill_random(out, n, seed);
	CHECK_EQ(
	    sftp_open(c, P(name), SFTP_OPEN_WRITE | SFTP_OPEN_CREAT | SFTP_OPEN_TRUNC, NULL, &h),
	    0);
	double t0 = now_s();
	CHECK_EQ(sftp_write(c, &h, 0, out, n), 0);
	double t1 = now_s();
	CHECK_EQ(sftp_close(c, &h), 0);
	CHECK_EQ(sftp_open(c, P(name), SFTP_OPEN_READ, NULL, &h), 0);
	double t2 = now_s();
	CHECK_EQ(sftp_read(c, &h, 0, in, n + 100, &got), 0);
	double t3 = now_s();
	CHECK_EQ(got, n);
	if (got == n && memcmp(in, out, n) != 0) {
		printf("FAIL %s: %zu bytes read back differ\n", name, n);
		failures++;
	}
	CHECK_EQ(sftp_read(c, &h, n, in, 10, &got), 0);
	CHECK_EQ(got, 0);
	CHECK_EQ(sftp_close(c, &h), 0);
	struct stat st;
	CHECK(stat(P(name), &st) == 0 && (size_t)st.st_size == n);
	if (mbps_w) {
		*mbps_w = n / 1e6 / (t1 - t0);
		*mbps_r = n / 1e6 / (t3 - t2);
	}
	free(out);
	free(in);
}

static void test_data(struct sftp_client *c)
{
	double w, r;
	round_trip(c, "d0", 0, 1, NULL, NULL);
	round_trip(c, "d1b", 1, 2, NULL, NULL);
	round_trip(c, "d100k", 100 * 1000, 3, NULL, NULL);
	round_trip(c, "d20m", 20 * 1000 * 1000, 4, &w, &r);
	printf("20 MB against local sftp-server: write %.1f MB/s, read %.1f MB/s\n", w, r);

	/* Asynchronous requests with a caller-kept window. */
	struct sftp_limits l;
	sftp_client_limits(c, &l);
	struct sftp_handle h;
	struct sftp_req *req[4];
	uint8_t *buf = malloc(4 * l.max_write), *back = malloc(4 * l.max_write);
	fill_random(buf, 4 * l.max_write, 9);
	CHECK_EQ(
	    sftp_open(c, P("async"), SFTP_OPEN_WRITE | SFTP_OPEN_READ | SFTP_OPEN_CREAT, NULL, &h),
	    0);
	CHECK_EQ(sftp_write_async(c, &h, 0, buf, l.max_write + 1, &req[0]), -EINVAL);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(sftp_write_async(c, &h, i * l.max_write, buf + i * l.max_write,
					  l.max_write, &req[i]),
			 0);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(sftp_req_wait(req[i]), 0);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(sftp_read_async(c, &h, i * l.max_read, l.max_read, &req[i]), 0);
	size_t got_total = 0;
	for (int i = 0; i < 4; i++) {
		size_t got = 0;
		CHECK_EQ(sftp_req_wait_read(req[i], back + i * l.max_read, l.max_read, &got), 0);
		got_total += got;
	}
	CHECK_EQ(got_total, 4 * l.max_write);
	CHECK(memcmp(buf, back, 4 * l.max_write) == 0);
	CHECK_EQ(sftp_close(c, &h), 0);
	free(buf);
	free(back);
}

struct worker {
	struct sftp_client *c;
	int index;
	int fails;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char name[32];
	size_t n = 2 * 1000 * 1000 + w->index * 777;
	uint8_t *out = malloc(n), *in = malloc(n);
	fill_random(out, n, 100 + w->index);
	snprintf(name, sizeof(name), "conc%d", w->index);
	for (int round = 0; round < 3; round++) {
		struct sftp_handle h;
		struct sftp_attrs a;
		size_t got = 0;
		if (sftp_open(w->c, P(name), SFTP_OPEN_WRITE | SFTP_OPEN_CREAT, NULL, &h) != 0 ||
		    sftp_write(w->c, &h, 0, out, n) != 0 || sftp_close(w->c, &h) != 0 ||
		    sftp_stat(w->c, P(name), &a) != 0 || a.size != n ||
		    sftp_open(w->c, P(name), SFTP_OPEN_READ, NULL, &h) != 0 ||
		    sftp_read(w->c, &h, 0, in, n, &got) != 0 || got != n ||
		    memcmp(in, out, n) != 0 || sftp_close(w->c, &h) != 0)
			w->fails++;
	}
	free(out);
	free(in);
	return NULL;
}

static void test_concurrency(struct sftp_client *c)
{
	pthread_t t[8];
	struct worker w[8];
	for (int i = 0; i < 8; i++) {
		w[i] = (struct worker){.c = c, .index = i};
		pthread_create(&t[i], NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		if (w[i].fails)
			printf("FAIL concurrent worker %d: %d failed rounds\n", i, w[i].fails);
		failures += w[i].fails;
	}
}

struct listing {
	int seen[3000];
	int others;
};

static int list_cb(void *ctx, const char *name, const struct sftp_attrs *a)
{
	struct listing *l = ctx;
	int i;
	char tail;
	if (sscanf(name, "entry%d%c", &i, &tail) == 1 && i >= 0 && i < 3000 && S_ISREG(a->perm))
		l->seen[i]++;
	else
		l->others++;
	return 0;
}

static int stop_cb(void *ctx, const char *name, const struct sftp_attrs *a)
{
	(void)name;
	(void)a;
	return ++*(int *)ctx == 5 ? 42 : 0;
}

static void test_list_dir(struct sftp_client *c)
{
	mkdir(P("big"), 0755);
	for (int i = 0; i < 3000; i++) {
		char name[64];
		snprintf(name, sizeof(name), "big/entry%d", i);
		write_local(P(name), "", 0);
	}
	static struct listing l;
	CHECK_EQ(sftp_list_dir(c, P("big"), list_cb, &l), 0);
	int missing = 0;
	for (int i = 0; i < 3000; i++)
		missing += l.seen[i] != 1;
	CHECK_EQ(missing, 0);
	CHECK_EQ(l.others, 0);
	int count = 0;
	CHECK_EQ(sftp_list_dir(c, P("big"), stop_cb, &count), 42);
	CHECK_EQ(count, 5);
	CHECK_EQ(sftp_list_dir(c, P("missing"), list_cb, &l), -ENOENT);
	CHECK_EQ(sftp_list_dir(c, P("f1"), list_cb, &l), -ENOTDIR);
}

static void test_dirs_and_remove(struct sftp_client *c)
{
	struct stat st;
	CHECK_EQ(sftp_mkdir(c, P("m"), 0750), 0);
	CHECK(stat(P("m"), &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0750);
	CHECK_EQ(sftp_mkdir(c, P("m"), 0755), -EEXIST);
	CHECK_EQ(sftp_mkdir(c, P("f1"), 0755), -EEXIST);
	CHECK_EQ(sftp_mkdir(c, P("missing/m"), 0755), -ENOENT);
	write_local(P("m/x"), "x", 1);
	CHECK_EQ(sftp_rmdir(c, P("m")), -ENOTEMPTY);
	CHECK_EQ(sftp_rmdir(c, P("missing")), -ENOENT);
	CHECK_EQ(sftp_rmdir(c, P("f1")), -ENOTDIR);
	CHECK_EQ(sftp_remove(c, P("m")), -EISDIR);
	CHECK_EQ(sftp_remove(c, P("m/x")), 0);
	CHECK(lstat(P("m/x"), &st) < 0 && errno == ENOENT);
	CHECK_EQ(sftp_remove(c, P("m/x")), -ENOENT);
	CHECK_EQ(sftp_rmdir(c, P("m")), 0);
	CHECK(lstat(P("m"), &st) < 0 && errno == ENOENT);
}

static void test_rename(struct sftp_client *c)
{
	struct stat st;
	char got[8] = {0};
	write_local(P("ra"), "A", 1);
	write_local(P("rb"), "B", 1);
	CHECK_EQ(sftp_rename(c, P("ra"), P("rc"), false), 0);
	CHECK(lstat(P("ra"), &st) < 0 && lstat(P("rc"), &st) == 0);
	CHECK_EQ(sftp_rename(c, P("rc"), P("rb"), false), -EEXIST);
	CHECK(lstat(P("rc"), &st) == 0 && lstat(P("rb"), &st) == 0);
	CHECK_EQ(sftp_rename(c, P("rc"), P("rb"), true), 0);
	int fd = open(P("rb"), O_RDONLY);
	CHECK(read(fd, got, sizeof(got)) == 1 && got[0] == 'A');
	close(fd);
	CHECK(lstat(P("rc"), &st) < 0);
	CHECK_EQ(sftp_rename(c, P("missing"), P("x"), false), -ENOENT);
	CHECK_EQ(sftp_rename(c, P("missing"), P("x"), true), -ENOENT);
	/* Directories: plain rename onto an existing one, overwrite onto a non-empty one. */
	mkdir(P("rd1"), 0755);
	mkdir(P("rd2"), 0755);
	write_local(P("rd2/x"), "", 0);
	CHECK_EQ(sftp_rename(c, P("rd1"), P("rd2"), false), -EEXIST);
	CHECK_EQ(sftp_rename(c, P("rd1"), P("rd2"), true), -ENOTEMPTY);
	CHECK_EQ(sftp_rename(c, P("rb"), P("rd2"), true), -EISDIR);
	CHECK_EQ(sftp_rename(c, P("rd1"), P("rd3"), true), 0);
}

static void test_links(struct sftp_client *c)
{
	char buf[PATH_MAX];
	char *s = NULL;
	struct stat st1, st2;
	/* sftp_symlink(target, linkpath) makes linkpath -> target. */
	CHECK_EQ(sftp_symlink(c, "f1", P("sl")), 0);
	ssize_t n = readlink(P("sl"), buf, sizeof(buf) - 1);
	CHECK(n == 2 && memcmp(buf, "f1", 2) == 0);
	CHECK_EQ(sftp_readlink(c, P("sl"), &s), 0);
	CHECK(s && strcmp(s, "f1") == 0);
	free(s);
	CHECK_EQ(sftp_symlink(c, "other", P("sl")), -EEXIST);
	CHECK_EQ(sftp_symlink(c, "x", P("missing/sl")), -ENOENT);
	CHECK_EQ(sftp_readlink(c, P("f1"), &s), -EINVAL);
	CHECK_EQ(sftp_readlink(c, P("missing"), &s), -ENOENT);

	CHECK_EQ(sftp_realpath(c, P("d1/../sl"), &s), 0);
	CHECK(s && strcmp(s, P("f1")) == 0);
	free(s);
	s = NULL;
	CHECK_EQ(sftp_realpath(c, ".", &s), 0);
	CHECK(s && strcmp(s, root) == 0);
	free(s);
	CHECK_EQ(sftp_realpath(c, P("missing/deeper"), &s), -ENOENT);

	CHECK_EQ(sftp_hardlink(c, P("f1"), P("hl")), 0);
	CHECK(stat(P("f1"), &st1) == 0 && stat(P("hl"), &st2) == 0 && st1.st_ino == st2.st_ino);
	CHECK_EQ(sftp_hardlink(c, P("f1"), P("hl")), -EEXIST);
	CHECK_EQ(sftp_hardlink(c, P("missing"), P("hl2")), -ENOENT);
}

static void test_setstat_statvfs(struct sftp_client *c)
{
	struct stat st;
	write_local(P("ss"), "0123456789abcdef", 16);
	struct sftp_attrs a = {.flags = SFTP_ATTR_PERM, .perm = 0640};
	CHECK_EQ(sftp_setstat(c, P("ss"), &a), 0);
	CHECK(stat(P("ss"), &st) == 0 && (st.st_mode & 07777) == 0640);
	a = (struct sftp_attrs){.flags = SFTP_ATTR_SIZE, .size = 10};
	CHECK_EQ(sftp_setstat(c, P("ss"), &a), 0);
	CHECK(stat(P("ss"), &st) == 0 && st.st_size == 10);
	a = (struct sftp_attrs){
	    .flags = SFTP_ATTR_ACMODTIME, .atime = 1000000000, .mtime = 1200000000};
	CHECK_EQ(sftp_setstat(c, P("ss"), &a), 0);
	CHECK(stat(P("ss"), &st) == 0 && st.st_atime == 1000000000 && st.st_mtime == 1200000000);
	CHECK_EQ(sftp_setstat(c, P("missing"), &a), -ENOENT);

	struct sftp_handle h;
	CHECK_EQ(sftp_open(c, P("ss"), SFTP_OPEN_WRITE, NULL, &h), 0);
	a = (struct sftp_attrs){.flags = SFTP_ATTR_SIZE, .size = 3};
	CHECK_EQ(sftp_fsetstat(c, &h, &a), 0);
	CHECK_EQ(sftp_fstat(c, &h, &a), 0);
	CHECK_EQ(a.size, 3);
	CHECK_EQ(sftp_close(c, &h), 0);

	struct statvfs mine, theirs;
	CHECK_EQ(sftp_statvfs(c, root, &theirs), 0);
	CHECK(statvfs(root, &mine) == 0 && mine.f_bsize == theirs.f_bsize &&
	      mine.f_blocks == theirs.f_blocks && mine.f_namemax == theirs.f_namemax);
	CHECK_EQ(sftp_statvfs(c, P("missing"), &theirs), -ENOENT);
}

static void test_client_info(struct sftp_client *c)
{
	unsigned want = SFTP_EXT_POSIX_RENAME | SFTP_EXT_STATVFS | SFTP_EXT_FSYNC |
			SFTP_EXT_HARDLINK | SFTP_EXT_LIMITS;
	CHECK_EQ(sftp_client_extensions(c) & want, want);
	struct sftp_limits l;
	sftp_client_limits(c, &l);
	CHECK(l.max_read == 255 * 1024 && l.max_write == 255 * 1024 && l.max_packet >= l.max_read);
	struct sftp_stats st;
	sftp_client_stats(c, &st);
	printf("stats: %llu requests, %llu round trips, %llu B written, %llu B read, last rtt %lld "
	       "us\n",
	       (unsigned long long)st.requests, (unsigned long long)st.round_trips,
	       (unsigned long long)st.bytes_written, (unsigned long long)st.bytes_read,
	       (long long)st.last_rtt_us);
	CHECK(st.requests > 500 && st.round_trips > 100 && st.bytes_written >= 20000000 &&
	      st.bytes_read >= 20000000 && st.in_flight == 0 && st.timeouts == 0);
	/* per_op is indexed by type - 3: OPEN (3) and WRITE (6). */
	CHECK(st.per_op[0] > 50 && st.per_op[3] > 200);
	CHECK(!sftp_client_dead(c));
}

struct pending_call {
	struct sftp_client *c;
	int result;
	double took;
	size_t len;
};

static void *pending_main(void *arg)
{
	struct pending_call *p = arg;
	double t0 = now_s();
	if (p->len) {
		struct sftp_handle h = {.len = 1, .data = {'0'}};
		void *buf = calloc(1, p->len);
		p->result = sftp_write(p->c, &h, 0, buf, p->len);
		free(buf);
	} else {
		struct sftp_attrs a;
		p->result = sftp_stat(p->c, root, &a);
	}
	p->took = now_s() - t0;
	return NULL;
}

/* A scripted peer: a 10000-byte file served at most 1000 bytes per READ, no extensions. */
#define FAKE_SIZE  10000
#define FAKE_CHUNK 1000

static void fake_reply(int fd, struct buf *out)
{
	buf_set_u32_at(out, 0, (uint32_t)out->len - 4);
	if (fd_write_all(fd, out->data, out->len, 0) < 0)
		exit(3);
	buf_reset(out);
}

static void *fake_server_main(void *arg)
{
	int fd = *(int *)arg;
	struct buf in, out;
	buf_init(&in);
	buf_init(&out);
	uint8_t len_be[4];
	while (fd_read_full(fd, len_be, 4, 0) == 0) {
		uint32_t len =
		    (uint32_t)len_be[0] << 24 | len_be[1] << 16 | len_be[2] << 8 | len_be[3];
		uint8_t type;
		uint32_t id = 0, n = 0;
		uint64_t off = 0;
		const uint8_t *handle;
		uint32_t handle_len;
		buf_reset(&in);
		if (buf_reserve(&in, len) < 0 || fd_read_full(fd, in.data, len, 0) < 0)
			break;
		in.len = len;
		buf_get_u8(&in, &type);
		buf_get_u32(&in, &id);
		buf_put_u32(&out, 0);
		if (type == 1) { /* INIT: VERSION 3 */
			buf_put_u8(&out, 2);
			buf_put_u32(&out, 3);
		} else if (type == 5 && buf_get_string(&in, &handle, &handle_len) == 0 &&
			   buf_get_u64(&in, &off) == 0 && buf_get_u32(&in, &n) == 0 &&
			   off < FAKE_SIZE) {
			uint32_t k = n < FAKE_CHUNK ? n : FAKE_CHUNK;
			if (k > FAKE_SIZE - off)
				k = FAKE_SIZE - (uint32_t)off;
			buf_put_u8(&out, 103);
			buf_put_u32(&out, id);
			buf_put_u32(&out, k);
			for (uint32_t i = 0; i < k; i++)
				buf_put_u8(&out, (uint8_t)((off + i) * 7));
		} else { /* STATUS: EOF for reads past the end, else OK */
			buf_put_u8(&out, 101);
			buf_put_u32(&out, id);
			buf_put_u32(&out, type == 5 ? 1 : 0);
			buf_put_cstring(&out, "");
			buf_put_cstring(&out, "");
		}
		fake_reply(fd, &out);
	}
	buf_free(&in);
	buf_free(&out);
	close(fd);
	return NULL;
}

static void test_short_reads(void)
{
	int sv[2];
	pthread_t t;
	struct sftp_client *c;
	struct err e;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		exit(2);
	pthread_create(&t, NULL, fake_server_main, &sv[1]);
	CHECK_EQ(sftp_client_open(sv[0], TIMEOUT_MS, &c, &e), 0);
	struct sftp_limits l;
	sftp_client_limits(c, &l);
	CHECK(sftp_client_extensions(c) == 0 && l.max_read == 32768 && l.max_write == 32768);
	struct sftp_handle h = {.len = 1, .data = {'h'}};
	static uint8_t data[3 * FAKE_SIZE];
	size_t got = 0;
	CHECK_EQ(sftp_read(c, &h, 0, data, sizeof(data), &got), 0);
	CHECK_EQ(got, FAKE_SIZE);
	int bad = 0;
	for (size_t i = 0; i < got; i++)
		bad += data[i] != (uint8_t)(i * 7);
	CHECK_EQ(bad, 0);
	CHECK_EQ(sftp_read(c, &h, 2500, data, 5000, &got), 0);
	CHECK_EQ(got, 5000);
	CHECK(data[0] == (uint8_t)(2500 * 7) && data[4999] == (uint8_t)(7499 * 7));
	CHECK_EQ(sftp_rename(c, "a", "b", true), -ENOTSUP);
	CHECK_EQ(sftp_hardlink(c, "a", "b"), -ENOTSUP);
	sftp_client_close(c);
	pthread_join(t, NULL);
}

static void test_killed_server(void)
{
	pid_t pid;
	struct sftp_client *c = start_server(30000, &pid);
	struct pending_call calls[2] = {{.c = c}, {.c = c, .len = 20 * 1000 * 1000}};
	pthread_t t[2];
	kill(pid, SIGSTOP);
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, pending_main, &calls[i]);
	usleep(200 * 1000);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(calls[i].result, -EIO);
		CHECK(calls[i].took < 2.0);
	}
	struct sftp_attrs a;
	double t0 = now_s();
	CHECK_EQ(sftp_stat(c, root, &a), -EIO);
	CHECK(now_s() - t0 < 0.1);
	CHECK(sftp_client_dead(c));
	struct sftp_stats st;
	sftp_client_stats(c, &st);
	CHECK_EQ(st.in_flight, 0);
	sftp_client_close(c);
}

static void test_stopped_server(void)
{
	pid_t pid;
	struct sftp_client *c = start_server(500, &pid);
	struct sftp_attrs a;
	CHECK_EQ(sftp_stat(c, root, &a), 0);
	kill(pid, SIGSTOP);
	double t0 = now_s();
	CHECK_EQ(sftp_stat(c, root, &a), -ETIMEDOUT);
	double took = now_s() - t0;
	CHECK(took >= 0.45 && took < 1.5);
	struct sftp_stats st;
	sftp_client_stats(c, &st);
	CHECK_EQ(st.timeouts, 1);
	CHECK_EQ(st.in_flight, 1);
	kill(pid, SIGCONT);
	/* The late reply frees the abandoned request; the client goes on. */
	CHECK_EQ(sftp_stat(c, root, &a), 0);
	sftp_client_stats(c, &st);
	CHECK_EQ(st.in_flight, 0);
	CHECK(!sftp_client_dead(c));
	stop_server(c, pid);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int main(void)
{
	if (access(SFTP_SERVER, X_OK) != 0) {
		printf("SKIP: %s not found\n", SFTP_SERVER);
		return 77;
	}
	char tmpl[] = "/tmp/test_sftp_local.XXXXXX";
	char *real = mkdtemp(tmpl) ? realpath(tmpl, NULL) : NULL;
	if (!real || strlen(real) >= sizeof(root)) {
		perror("mkdtemp");
		return 2;
	}
	strcpy(root, real);
	free(real);
	pid_t pid;
	struct sftp_client *c = start_server(TIMEOUT_MS, &pid);
	test_stat(c);
	test_open(c);
	test_data(c);
	test_concurrency(c);
	test_list_dir(c);
	test_dirs_and_remove(c);
	test_rename(c);
	test_links(c);
	test_setstat_statvfs(c);
	test_client_info(c);
	stop_server(c, pid);
	test_stopped_server();
	test_killed_server();
	test_short_reads();
	nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (failures) {
		printf("%d check(s) failed\n", failures);
		return 1;
	}
	printf("test_sftp_local: all checks passed\n");
	return 0;
}
