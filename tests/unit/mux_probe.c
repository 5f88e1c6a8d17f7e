/* mux_probe.c: a test driver for the agent's multiplexed protocol (lib/proto/mux_proto.h) and its
 * client (lib/mux/agent_mux.h), against real processes — no mocks.
 *   mux_probe local AGENT
 *       run `AGENT serve -d TMPDIR` on a socket pair and test exec (exit codes, stdout/stderr,
 *       10 MB through stdin/stdout, tty + resize, signals, kill on free, 50 at once), SFTP over
 *       the mux (20 MB), the watch, and the latency of 200 sequential `true`.
 *   mux_probe [-o OPTS] transport SANDBOX_URL
 *       the same exec tests and latency through a transport (e.g. ssh://... -o agent=on), plus
 *       SFTP and the watch when the transport offers them.
 * Prints one line per finding and "N passed, N failed"; exit status 1 on any failure. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mux/agent_mux.h"
#include "buf.h"
#include "check.h"
#include "config.h"
#include "sftp/sftp_client.h"
#include "transport.h"
#include "mux_probe.h"

static int t_exec(struct target *tg, const struct exec_spec *s, struct exec_proc **p, struct err *e)
{
	return tg->mux ? agent_mux_exec_start(tg->mux, s, p, e)
		       : transport_exec_start(tg->t, s, p, e);
}

static int t_sftp(struct target *tg, int *fd, struct err *e)
{
	return tg->mux ? agent_mux_open_sftp(tg->mux, fd, e) : transport_open_sftp(tg->t, fd, e);
}

/* ---- running a command and collecting its output ---- */

struct feed {
	int fd;
	const uint8_t *data;
	size_t len;
};

static void *feeder(void *arg)
{
	struct feed *f = arg;
	fd_write_all(f->fd, f->data, f->len, deadline_in(60000));
	shutdown(f->fd, SHUT_WR);
	return NULL;
}

bool last_coherent;

int run(struct target *tg, const char *cmd, const uint8_t *in, size_t in_len, struct buf *out,
	struct buf *err, struct err *e)
{
	struct exec_spec spec = {.command = cmd, .cwd = tg->dir};
	struct exec_proc *p;
	if (t_exec(tg, &spec, &p, e) < 0)
		return -1;
	struct feed f = {p->stdio_fd, in, in_len};
	pthread_t th;
	bool fed = in && pthread_create(&th, NULL, feeder, &f) == 0;
	if (!in)
		shutdown(p->stdio_fd, SHUT_WR);
	int fds[2] = {p->stdio_fd, p->stderr_fd};
	struct buf *bufs[2] = {out, err};
	bool open[2] = {true, p->stderr_fd >= 0};
	int64_t deadline = deadline_in(60000);
	while ((open[0] || open[1]) && now_ms() < deadline) {
		struct pollfd pfd[2] = {{open[0] ? fds[0] : -1, POLLIN, 0},
					{open[1] ? fds[1] : -1, POLLIN, 0}};
		poll(pfd, 2, 1000);
		for (int i = 0; i < 2; i++) {
			if (!open[i] || !pfd[i].revents)
				continue;
			uint8_t tmp[65536];
			ssize_t n = read(fds[i], tmp, sizeof(tmp));
			if (n <= 0)
				open[i] = false;
			else if (bufs[i])
				buf_put_bytes(bufs[i], tmp, (size_t)n);
		}
	}
	if (fed)
		pthread_join(th, NULL);
	int status = -1;
	int rc = p->ops->wait(p, deadline_in(10000), &status, e);
	if (rc == -ETIMEDOUT)
		err_set(e, "wait timed out");
	last_coherent = rc == 0 && p->coherent_exit;
	p->ops->free(p);
	return rc == 0 ? status : -1;
}

static bool buf_is(struct buf *b, const char *s)
{
	return b->len == strlen(s) && !memcmp(b->data, s, b->len);
}

/* ---- the tests ---- */

static void test_exit_codes(struct target *tg)
{
	struct err e;
	CHECK(run(tg, "exit 0", NULL, 0, NULL, NULL, &e) == 0);
	CHECK(run(tg, "exit 3", NULL, 0, NULL, NULL, &e) == 3);
	CHECK(run(tg, "exit 255", NULL, 0, NULL, NULL, &e) == 255);
	CHECK(run(tg, "kill -TERM $$", NULL, 0, NULL, NULL, &e) == EXEC_STATUS_SIGNALED(SIGTERM));
	struct buf out, err;
	buf_init(&out);
	buf_init(&err);
	int st = run(tg, "echo out; echo err >&2; printf %s \"$PWD\" >&2", NULL, 0, &out, &err, &e);
	char want[4200];
	snprintf(want, sizeof(want), "err\n%s", tg->dir);
	CHECK(st == 0 && buf_is(&out, "out\n") && buf_is(&err, want));
	buf_reset(&out);
	st = run(tg, "test -n \"$PATH\" && test -n \"$HOME\" && echo \"$FOO\"", NULL, 0, &out, NULL,
		 &e);
	CHECK(st == 0);
	buf_free(&out);
	buf_free(&err);
	printf("exit codes, stdout/stderr: done\n");
}

static void test_env(struct target *tg)
{
	char *env[] = {"FOO=bar baz", NULL};
	struct exec_spec spec = {.command = "echo \"$FOO\"", .cwd = tg->dir, .env = env};
	struct exec_proc *p;
	struct err e;
	struct buf out;
	buf_init(&out);
	if (t_exec(tg, &spec, &p, &e) == 0) {
		shutdown(p->stdio_fd, SHUT_WR);
		uint8_t tmp[256];
		ssize_t n;
		while ((n = read(p->stdio_fd, tmp, sizeof(tmp))) > 0)
			buf_put_bytes(&out, tmp, (size_t)n);
		int st = -1;
		CHECK(p->ops->wait(p, deadline_in(5000), &st, &e) == 0 && st == 0);
		p->ops->free(p);
	}
	CHECK(buf_is(&out, "bar baz\n"));
	buf_free(&out);
}

static void test_bulk(struct target *tg)
{
	size_t n = 10u << 20;
	uint8_t *data = malloc(n);
	uint64_t x = 88172645463325252ull;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		data[i] = (uint8_t)x;
	}
	struct buf out;
	buf_init(&out);
	struct err e;
	int64_t t0 = now_ms();
	int st = run(tg, "cat", data, n, &out, NULL, &e);
	int64_t ms = now_ms() - t0;
	CHECK(st == 0 && out.len == n && !memcmp(out.data, data, n));
	printf("10 MB stdin -> cat -> stdout: %s in %lld ms (%.1f MB/s)\n",
	       st == 0 && out.len == n && !memcmp(out.data, data, n) ? "identical" : "DIFFERENT",
	       (long long)ms, ms ? 10.0 * 1000 / ms : 0.0);
	buf_free(&out);
	free(data);
}

/* Read from fd until `want` appears in what was read (or 5 s pass). */
static bool read_until(int fd, struct buf *b, const char *want)
{
	int64_t deadline = deadline_in(5000);
	while (now_ms() < deadline) {
		buf_put_u8(b, 0);
		b->len--;
		if (strstr((char *)b->data, want))
			return true;
		struct pollfd pfd = {fd, POLLIN, 0};
		if (poll(&pfd, 1, 200) <= 0)
			continue;
		uint8_t tmp[4096];
		ssize_t n = read(fd, tmp, sizeof(tmp));
		if (n <= 0)
			return false;
		buf_put_bytes(b, tmp, (size_t)n);
	}
	return false;
}

static void test_tty(struct target *tg)
{
	struct exec_spec spec = {.command = "stty size; read x; stty size; exit 7",
				 .cwd = tg->dir,
				 .tty = true,
				 .rows = 24,
				 .cols = 80};
	struct exec_proc *p;
	struct err e;
	if (t_exec(tg, &spec, &p, &e) < 0) {
		CHECK(!"tty exec started");
		return;
	}
	CHECK(p->stderr_fd < 0);
	struct buf out;
	buf_init(&out);
	CHECK(read_until(p->stdio_fd, &out, "24 80"));
	CHECK(p->ops->resize(p, 50, 132) == 0);
	usleep(100000);
	CHECK(write(p->stdio_fd, "\n", 1) == 1);
	CHECK(read_until(p->stdio_fd, &out, "50 132"));
	int st = -1;
	while (read(p->stdio_fd, (char[256]){0}, 256) > 0)
		;
	CHECK(p->ops->wait(p, deadline_in(5000), &st, &e) == 0 && st == 7);
	p->ops->free(p);
	buf_free(&out);
	printf("tty: stty size 24 80, resized to 50 132, exit %d\n", st);
}

static void test_signal(struct target *tg)
{
	struct exec_spec spec = {.command = "sleep 30", .cwd = tg->dir};
	struct exec_proc *p;
	struct err e;
	if (t_exec(tg, &spec, &p, &e) < 0) {
		CHECK(!"exec started");
		return;
	}
	usleep(200000);
	CHECK(p->ops->signal(p, SIGINT) == 0);
	int st = -1;
	CHECK(p->ops->wait(p, deadline_in(5000), &st, &e) == 0 &&
	      st == EXEC_STATUS_SIGNALED(SIGINT));
	p->ops->free(p);
	/* A trap runs, and its exit status is the command's. */
	struct exec_spec trap = {.command =
				     "exec sh -c 'trap \"echo got-int; exit 42\" INT; echo ready; "
				     "while :; do sleep 0.1; done'",
				 .cwd = tg->dir};
	int st2 = -1;
	struct buf out;
	buf_init(&out);
	if (t_exec(tg, &trap, &p, &e) == 0) {
		CHECK(read_until(p->stdio_fd, &out, "ready\n"));
		CHECK(p->ops->signal(p, SIGINT) == 0);
		CHECK(read_until(p->stdio_fd, &out, "got-int"));
		CHECK(p->ops->wait(p, deadline_in(5000), &st2, &e) == 0 && st2 == 42);
		p->ops->free(p);
	}
	buf_free(&out);
	printf("signal INT -> status %d; trapped INT -> status %d\n", st, st2);
}

/* Dead: gone, or a zombie nobody reaped yet. */
static bool pid_dead(long pid)
{
	if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
		return true;
	char path[64], stat[256] = "";
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return true;
	bool zombie = fgets(stat, sizeof(stat), f) && strstr(stat, ") Z");
	fclose(f);
	return zombie;
}

/* Alive in the sandbox (its pid namespace): exists and is not a zombie. */
static bool remote_alive(struct target *tg, long pid)
{
	char cmd[160];
	snprintf(cmd, sizeof(cmd),
		 "s=$(sed 's/.*) //' /proc/%ld/stat 2>/dev/null | cut -c1); [ -n \"$s\" ] && "
		 "[ \"$s\" != Z ]",
		 pid);
	struct err e;
	return run(tg, cmd, NULL, 0, NULL, NULL, &e) == 0;
}

/* free() of a running command kills its whole group. */
static void test_free_kills(struct target *tg)
{
	struct exec_spec spec = {.command = "sleep 300 & echo $!; wait", .cwd = tg->dir};
	struct exec_proc *p;
	struct err e;
	if (t_exec(tg, &spec, &p, &e) < 0) {
		CHECK(!"exec started");
		return;
	}
	struct buf out;
	buf_init(&out);
	CHECK(read_until(p->stdio_fd, &out, "\n"));
	long pid = atol((char *)out.data);
	CHECK(pid > 0 && remote_alive(tg, pid));
	int64_t t0 = now_ms();
	p->ops->free(p);
	while (remote_alive(tg, pid) && now_ms() - t0 < 3000)
		usleep(10000);
	CHECK(!remote_alive(tg, pid));
	printf("free() of a running group: background sleep %ld gone after %lld ms\n", pid,
	       (long long)(now_ms() - t0));
	buf_free(&out);
}

static void test_concurrent(struct target *tg)
{
	enum { N = 50 };
	struct exec_proc *p[N] = {0};
	struct err e;
	int started = 0, ok = 0;
	int64_t t0 = now_ms();
	for (int i = 0; i < N; i++) {
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "sleep 0.3; echo %d; exit %d", i, i % 7);
		struct exec_spec spec = {.command = cmd, .cwd = tg->dir};
		if (t_exec(tg, &spec, &p[i], &e) == 0) {
			shutdown(p[i]->stdio_fd, SHUT_WR);
			started++;
		} else {
			fprintf(stderr, "exec %d: %s\n", i, e.msg);
		}
	}
	for (int i = 0; i < N; i++) {
		if (!p[i])
			continue;
		char tmp[32] = "";
		struct buf out;
		buf_init(&out);
		read_until(p[i]->stdio_fd, &out, "\n");
		int st = -1;
		char want[16];
		snprintf(want, sizeof(want), "%d\n", i);
		if (p[i]->ops->wait(p[i], deadline_in(10000), &st, &e) == 0 && st == i % 7 &&
		    buf_is(&out, want))
			ok++;
		(void)tmp;
		buf_free(&out);
		p[i]->ops->free(p[i]);
	}
	CHECK(started == N && ok == N);
	printf("%d concurrent execs: %d started, %d correct, %lld ms\n", N, started, ok,
	       (long long)(now_ms() - t0));
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_latency(struct target *tg, const char *what)
{
	enum { N = 200 };
	int64_t us[N];
	struct err e;
	int bad = 0;
	for (int i = 0; i < N; i++) {
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		if (run(tg, "true", NULL, 0, NULL, NULL, &e) != 0)
			bad++;
		clock_gettime(CLOCK_MONOTONIC, &b);
		us[i] = (b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000;
	}
	qsort(us, N, sizeof(us[0]), cmp_i64);
	CHECK(bad == 0);
	printf("latency %s: %d x `true`: p50 %.2f ms, p95 %.2f ms, max %.2f ms\n", what, N,
	       us[N / 2] / 1000.0, us[N * 95 / 100] / 1000.0, us[N - 1] / 1000.0);
}

static void test_sftp(struct target *tg)
{
	struct err e;
	int fd;
	struct sftp_client *c;
	if (t_sftp(tg, &fd, &e) < 0 || sftp_client_open(fd, 30000, &c, &e) < 0) {
		fprintf(stderr, "sftp: %s\n", e.msg);
		CHECK(!"sftp over the mux");
		return;
	}
	size_t n = 20u << 20;
	uint8_t *data = malloc(n), *back = malloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)(i * 2654435761u >> 13);
	char path[4200];
	snprintf(path, sizeof(path), "%s/big.bin", tg->dir);
	struct sftp_handle h;
	int64_t t0 = now_ms();
	int rc = sftp_open(c, path, SFTP_OPEN_WRITE | SFTP_OPEN_CREAT | SFTP_OPEN_TRUNC, NULL, &h);
	if (rc == 0) {
		rc = sftp_write(c, &h, 0, data, n);
		sftp_close(c, &h);
	}
	int64_t t1 = now_ms();
	size_t got = 0;
	if (rc == 0 && (rc = sftp_open(c, path, SFTP_OPEN_READ, NULL, &h)) == 0) {
		rc = sftp_read(c, &h, 0, back, n, &got);
		sftp_close(c, &h);
	}
	int64_t t2 = now_ms();
	CHECK(rc == 0 && got == n && !memcmp(data, back, n));
	printf("sftp over the mux: 20 MB written in %lld ms, read back %s in %lld ms\n",
	       (long long)(t1 - t0),
	       rc == 0 && got == n && !memcmp(data, back, n) ? "identical" : "DIFFERENT",
	       (long long)(t2 - t1));
	sftp_remove(c, path);
	sftp_client_close(c);
	free(data);
	free(back);
}

static long rss_kb(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long kb = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

/* A reader that stalls: the agent must not buffer the producer's output, and other channels
 * must go on meanwhile. Then every byte still arrives. */
static void test_backpressure(struct target *tg, pid_t agent)
{
	struct exec_spec spec = {.command = "head -c 100000000 /dev/zero", .cwd = tg->dir};
	struct exec_proc *p;
	struct err e;
	if (t_exec(tg, &spec, &p, &e) < 0) {
		CHECK(!"exec started");
		return;
	}
	shutdown(p->stdio_fd, SHUT_WR);
	long before = rss_kb(agent);
	usleep(1000000); /* nobody reads */
	long during = rss_kb(agent);
	struct buf out;
	buf_init(&out);
	int64_t t0 = now_ms();
	int st = run(tg, "echo other", NULL, 0, &out, NULL, &e);
	int64_t other_ms = now_ms() - t0;
	CHECK(st == 0 && buf_is(&out, "other\n"));
	size_t total = 0;
	uint8_t tmp[65536];
	ssize_t n;
	while ((n = read(p->stdio_fd, tmp, sizeof(tmp))) > 0)
		total += (size_t)n;
	CHECK(p->ops->wait(p, deadline_in(10000), &st, &e) == 0 && st == 0);
	p->ops->free(p);
	CHECK(total == 100000000);
	CHECK(during - before < 4096);
	printf("stalled reader of 100 MB: agent RSS %ld -> %ld kB while stalled, another exec took "
	       "%lld ms meanwhile, then %zu bytes delivered\n",
	       before, during, (long long)other_ms, total);
	buf_free(&out);
}

/* ---- main ---- */

/* check.h counts per file: the watch tests' checks join ours. */
static void add_watch_checks(void)
{
	int passed, failed;
	watch_check_counts(&passed, &failed);
	check_passed += passed;
	check_failed += failed;
}

static int local_mode(const char *agent)
{
	char dir[] = "/tmp/mux_probe.XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(sv[1], 0);
		dup2(sv[1], 1);
		execl(agent, agent, "serve", "-d", dir, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	struct target tg = {.dir = dir};
	struct err e;
	if (agent_mux_start(sv[0], "local", 5000, &tg.mux, &e) < 0) {
		fprintf(stderr, "mux_probe: %s\n", e.msg);
		return 1;
	}
	printf("agent %s answered HELLO\n", agent_mux_version(tg.mux));
	test_exit_codes(&tg);
	test_env(&tg);
	test_bulk(&tg);
	test_tty(&tg);
	test_signal(&tg);
	test_free_kills(&tg);
	test_concurrent(&tg);
	test_backpressure(&tg, pid);
	test_sftp(&tg);
	test_watch(&tg);
	test_latency(&tg, "local agent mux");
	/* Closing the stream ends the agent, which kills what it still runs. */
	struct exec_spec spec = {.command = "sleep 300 & echo $!; wait", .cwd = dir};
	struct exec_proc *p;
	long bg = 0;
	if (agent_mux_exec_start(tg.mux, &spec, &p, &e) == 0) {
		struct buf out;
		buf_init(&out);
		read_until(p->stdio_fd, &out, "\n");
		bg = atol((char *)out.data);
		buf_free(&out);
		p->ops->free(p);
	}
	agent_mux_close(tg.mux);
	int ws;
	CHECK(waitpid(pid, &ws, 0) == pid && WIFEXITED(ws));
	int64_t t0 = now_ms();
	while (bg > 0 && !pid_dead(bg) && now_ms() - t0 < 3000)
		usleep(10000);
	CHECK(bg > 0 && pid_dead(bg));
	char *rm = str_printf("rm -rf %s", dir);
	if (system(rm) != 0)
		fprintf(stderr, "mux_probe: cannot remove %s\n", dir);
	free(rm);
	add_watch_checks();
	return check_done();
}

static int transport_mode(const char *url, const char *opts, bool full)
{
	struct sandbox_cfg cfg;
	struct err e;
	struct target tg = {0};
	if (config_resolve(url, opts, &cfg, NULL, &e) < 0 || transport_open(&cfg, &tg.t, &e) < 0) {
		fprintf(stderr, "mux_probe: %s\n", e.msg);
		return 1;
	}
	tg.dir = cfg.remote_dir;
	struct exec_proc *warm;
	struct exec_spec spec = {.command = "true", .cwd = tg.dir};
	if (transport_exec_start(tg.t, &spec, &warm, &e) == 0) {
		int st;
		warm->ops->wait(warm, deadline_in(10000), &st, &e);
		warm->ops->free(warm);
	}
	if (full) {
		test_exit_codes(&tg);
		test_env(&tg);
		test_bulk(&tg);
		test_tty(&tg);
		test_signal(&tg);
		test_free_kills(&tg);
		test_concurrent(&tg);
		test_sftp(&tg);
		test_watch(&tg);
	}
	char what[300];
	snprintf(what, sizeof(what), "%s (%s)", url, opts ? opts : "");
	test_latency(&tg, what);
	transport_close(tg.t);
	config_free(&cfg);
	add_watch_checks();
	return check_done();
}

int main(int argc, char **argv)
{
	const char *opts = NULL;
	bool full = true;
	int c;
	while ((c = getopt(argc, argv, "+o:L")) != -1) {
		if (c == 'o')
			opts = optarg;
		else if (c == 'L')
			full = false;
		else
			return 2;
	}
	argv += optind;
	argc -= optind;
	signal(SIGPIPE, SIG_IGN);
	if (argc == 2 && !strcmp(argv[0], "local"))
		return local_mode(argv[1]);
	if (argc == 2 && !strcmp(argv[0], "transport"))
		return transport_mode(argv[1], opts, full);
	fprintf(stderr, "usage: mux_probe local AGENT | mux_probe [-o OPTS] [-L] transport URL\n");
	return 2;
}
