/* test_ctl_proto.c: control-socket framing (payloads, fd passing, EOF, timeouts, bad frames)
 * and the mountinfo lookup that finds the sandmount mount holding a path. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "ctl_proto.h"
#include "runtime.h"
#include "util.h"

static void socket_pair(int sv[2])
{
	int r = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	CHECK(r == 0);
}

static void test_roundtrip_with_fds(void)
{
	int sv[2], pipefd[2];
	struct buf out, in;
	uint8_t type;
	int fds[3], nfds;
	char *s;
	uint32_t v;

	socket_pair(sv);
	CHECK(pipe(pipefd) == 0);
	buf_init(&out);
	buf_init(&in);
	buf_put_u32(&out, 7);
	buf_put_cstring(&out, "echo 'hi there'");
	int pass[3] = {pipefd[0], pipefd[1], pipefd[1]};
	CHECK(ctl_send(sv[0], CTL_EXEC, &out, pass, 3) == 0);
	CHECK(ctl_recv(sv[1], &type, &in, fds, 3, &nfds, deadline_in(1000)) == 0);
	CHECK(type == CTL_EXEC && nfds == 3);
	CHECK(buf_get_u32(&in, &v) == 0 && v == 7);
	CHECK(buf_get_cstring(&in, &s) == 0 && !strcmp(s, "echo 'hi there'"));
	CHECK(buf_remaining(&in) == 0);
	free(s);

	/* The passed fds are the same pipe: write through one, read from the other. */
	CHECK(write(fds[1], "x", 1) == 1);
	char c;
	CHECK(read(fds[0], &c, 1) == 1 && c == 'x');
	CHECK(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	close(pipefd[0]);
	close(pipefd[1]);
	buf_free(&out);
	buf_free(&in);
	close(sv[0]);
	close(sv[1]);
}

static void test_empty_payload_and_extra_fds(void)
{
	int sv[2], fds[1], nfds;
	struct buf in;
	uint8_t type;

	socket_pair(sv);
	buf_init(&in);
	int pass[2] = {0, 1};
	CHECK(ctl_send(sv[0], CTL_STATUS, NULL, pass, 2) == 0);
	CHECK(ctl_send(sv[0], CTL_SIGNAL, NULL, NULL, 0) == 0);
	/* Two fds arrive, one slot: the extra one is closed, not leaked. */
	CHECK(ctl_recv(sv[1], &type, &in, fds, 1, &nfds, deadline_in(1000)) == 0);
	CHECK(type == CTL_STATUS && in.len == 0 && nfds == 1);
	close(fds[0]);
	/* Frames stay separate. */
	CHECK(ctl_recv(sv[1], &type, &in, NULL, 0, &nfds, deadline_in(1000)) == 0);
	CHECK(type == CTL_SIGNAL && nfds == 0);
	buf_free(&in);
	close(sv[0]);
	close(sv[1]);
}

static void test_large_frame(void)
{
	int sv[2], nfds;
	struct buf out, in;
	uint8_t type;
	size_t n = CTL_MAX_FRAME - 1;

	socket_pair(sv);
	buf_init(&out);
	buf_init(&in);
	for (size_t i = 0; i < n; i++)
		buf_put_u8(&out, (uint8_t)(i * 31));
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(ctl_send(sv[0], CTL_STATUS_REPLY, &out, NULL, 0) == 0 ? 0 : 1);
	CHECK(ctl_recv(sv[1], &type, &in, NULL, 0, &nfds, deadline_in(5000)) == 0);
	CHECK(type == CTL_STATUS_REPLY && in.len == n && !memcmp(in.data, out.data, n));
	int st;
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* One byte more than the limit is refused by the sender. */
	buf_put_u8(&out, 0);
	CHECK(ctl_send(sv[0], CTL_STATUS_REPLY, &out, NULL, 0) == -EINVAL);
	buf_free(&out);
	buf_free(&in);
	close(sv[0]);
	close(sv[1]);
}

static void test_eof_timeout_garbage(void)
{
	int sv[2], nfds;
	struct buf in;
	uint8_t type;

	buf_init(&in);
	socket_pair(sv);
	int64_t t0 = now_ms();
	CHECK(ctl_recv(sv[1], &type, &in, NULL, 0, &nfds, deadline_in(100)) == -ETIMEDOUT);
	CHECK(now_ms() - t0 >= 90);
	close(sv[0]);
	CHECK(ctl_recv(sv[1], &type, &in, NULL, 0, &nfds, deadline_in(1000)) == -EPIPE);
	close(sv[1]);

	/* A truncated frame is a protocol error, not a clean EOF. */
	socket_pair(sv);
	CHECK(write(sv[0], "\0\0\0\x09\x01\0", 6) == 6);
	close(sv[0]);
	CHECK(ctl_recv(sv[1], &type, &in, NULL, 0, &nfds, deadline_in(1000)) == -EPROTO);
	close(sv[1]);

	/* Lengths of zero or past the limit are refused before reading on. */
	socket_pair(sv);
	CHECK(write(sv[0], "\0\0\0\0\x01", 5) == 5);
	CHECK(ctl_recv(sv[1], &type, &in, NULL, 0, &nfds, deadline_in(1000)) == -EPROTO);
	close(sv[0]);
	close(sv[1]);
	socket_pair(sv);
	CHECK(write(sv[0], "\xff\xff\xff\xff\x01", 5) == 5);
	CHECK(ctl_recv(sv[1], &type, &in, NULL, 0, &nfds, deadline_in(1000)) == -EPROTO);
	close(sv[0]);
	close(sv[1]);
	buf_free(&in);
}

static const char mountinfo[] =
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "30 22 0:40 / /home/u/ws rw,nosuid,nodev shared:5 - fuse.sandmount box1 rw,user_id=0\n"
    "31 30 0:41 / /home/u/ws/tmp rw - tmpfs tmpfs rw\n"
    "32 22 0:42 / /home/u/my\\040space rw,nosuid - fuse.sandmount box2 rw\n"
    "33 22 0:43 / /home/u/other rw - fuse.sshfs h:/x rw\n"
    "34 22 0:44 / /home/u/stack rw - tmpfs tmpfs rw\n"
    "35 34 0:45 / /home/u/stack rw master:3 - fuse.sandmount box3 rw\n"
    "36 22 0:46 / /home/u/tab\\011and\\134back rw - fuse.sandmount box4 rw\n"
    "garbage line\n";

static void expect_mount(const char *path, int want, const char *want_mp, const char *want_rel)
{
	char mp[4096];
	char *rel = NULL;
	int r = mounts_find_in(mountinfo, path, mp, sizeof(mp), &rel);
	bool ok = r == want && (want != 1 || (!strcmp(mp, want_mp) && !strcmp(rel, want_rel)));
	if (!ok)
		fprintf(stderr, "mounts_find_in(%s) = %d %s %s\n", path, r, r == 1 ? mp : "",
			r == 1 ? rel : "");
	CHECK(ok);
	free(rel);
}

static void test_mountinfo(void)
{
	expect_mount("/home/u/ws", 1, "/home/u/ws", "");
	expect_mount("/home/u/ws/src/lib", 1, "/home/u/ws", "src/lib");
	expect_mount("/home/u/wsx", 0, NULL, NULL);	 /* a prefix, not a parent */
	expect_mount("/home/u/ws/tmp/a", 0, NULL, NULL); /* a tmpfs inside the mount serves it */
	expect_mount("/home/u/my space/d", 1, "/home/u/my space", "d");
	expect_mount("/home/u/other/d", 0, NULL, NULL);		  /* fuse, but not ours */
	expect_mount("/home/u/stack/x", 1, "/home/u/stack", "x"); /* mounted on top */
	expect_mount("/home/u/tab\tand\\back", 1, "/home/u/tab\tand\\back", "");
	expect_mount("/", 0, NULL, NULL);

	char small[8];
	char *rel;
	CHECK(mounts_find_in(mountinfo, "/home/u/ws/a", small, sizeof(small), &rel) == -1);
}

static void test_runtime_paths(void)
{
	char dir[4096], a[4096], b[4096], tmpl[] = "/tmp/test_ctl_proto.XXXXXX";
	struct err e;
	CHECK(mkdtemp(tmpl));
	setenv("XDG_RUNTIME_DIR", tmpl, 1);
	CHECK(runtime_dir(dir, sizeof(dir), &e) == 0);
	CHECK(!strncmp(dir, tmpl, strlen(tmpl)) && strstr(dir, "/sandmount"));

	/* Same mountpoint spelled differently: same socket; .log beside it. */
	CHECK(runtime_socket_path(tmpl, a, sizeof(a), &e) == 0);
	char *alt = str_printf("%s/./", tmpl);
	CHECK(runtime_socket_path(alt, b, sizeof(b), &e) == 0);
	CHECK(!strcmp(a, b) && strlen(a) == strlen(dir) + 1 + 16 + 5);
	CHECK(runtime_log_path(tmpl, b, sizeof(b), &e) == 0);
	CHECK(!strncmp(a, b, strlen(a) - 5) && !strcmp(b + strlen(b) - 4, ".log"));
	free(alt);

	/* A directory open to others is refused. */
	CHECK(chmod(dir, 0755) == 0);
	CHECK(runtime_dir(dir, sizeof(dir), &e) == -1 && strstr(e.msg, "refusing"));
	CHECK(rmdir(dir) == 0);
	CHECK(rmdir(tmpl) == 0);
}

int main(void)
{
	test_roundtrip_with_fds();
	test_empty_payload_and_extra_fds();
	test_large_frame();
	test_eof_timeout_garbage();
	test_mountinfo();
	test_runtime_paths();
	return check_done();
}
