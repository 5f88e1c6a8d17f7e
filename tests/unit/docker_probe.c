/* docker_probe.c: a test driver for the Docker transport, used by tests/e2e/test_docker_api.py.
 *   docker_probe [-o OPTS] [-t] [-k MS] [-s|-S SIG:MS] [-T] exec CONTAINER CWD CMD
 *       run CMD, relaying our stdin/stdout/stderr; exit with its status (128+N after signal N;
 *       125: transport error).
 *       -t: with a TTY; -k MS: free() the exec after MS ms (kills it) and exit 0;
 *       -s SIG:MS: send SIG after MS ms; -S SIG:MS: send SIG MS ms after the first output
 *       byte (the command has started: a shell forking its child is not signalled); -T: print
 * "open_ms=... exec_ms=..." to stderr. docker_probe [-o OPTS] sftp CONTAINER DIR open the SFTP
 * stream, write DIR/probe.txt, read it back, print its owner and "ok". docker_probe [-o OPTS] bench
 * CONTAINER N run `true` N times, print the mean exec latency in ms. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "sftp/sftp_client.h"
#include "transport.h"

static const char *opts;
static bool tty_mode, timings, sig_after_output;
static int kill_after_ms = -1, sig_num, sig_after_ms = -1;

static int open_transport(const char *container, const char *dir, struct transport **t)
{
	char *url = str_printf("docker://%s%s", container, dir);
	struct sandbox_cfg cfg;
	struct err e;
	int rc = config_resolve(url, opts, &cfg, NULL, &e);
	if (rc == 0)
		rc = transport_open(&cfg, t, &e);
	if (rc < 0)
		fprintf(stderr, "docker_probe: %s\n", e.msg);
	config_free(&cfg);
	free(url);
	return rc;
}

/* Relay until the command's output ended (or a -k / -s moment came). */
static void relay(struct exec_proc *p, int64_t start)
{
	bool in_open = true, out_open = true, err_open = p->stderr_fd >= 0, signalled = false;
	int64_t sig_from = sig_after_output ? -1 : start;
	char b[65536];
	while (out_open || err_open) {
		int64_t now = now_ms(), t = now - start;
		if (kill_after_ms >= 0 && t >= kill_after_ms)
			return;
		if (sig_after_ms >= 0 && !signalled && sig_from >= 0 &&
		    now - sig_from >= sig_after_ms) {
			p->ops->signal(p, sig_num);
			signalled = true;
		}
		struct pollfd f[3] = {{.fd = in_open ? 0 : -1, .events = POLLIN},
				      {.fd = out_open ? p->stdio_fd : -1, .events = POLLIN},
				      {.fd = err_open ? p->stderr_fd : -1, .events = POLLIN}};
		if (poll(f, 3, 20) < 0 && errno != EINTR)
			return;
		if (f[0].revents) {
			ssize_t n = read(0, b, sizeof(b));
			if (n <= 0) {
				shutdown(p->stdio_fd, SHUT_WR);
				in_open = false;
			} else if (fd_write_all(p->stdio_fd, b, (size_t)n, deadline_in(30000)) <
				   0) {
				in_open = false;
			}
		}
		if (f[1].revents) {
			ssize_t n = read(p->stdio_fd, b, sizeof(b));
			if (n <= 0)
				out_open = false;
			else
				fd_write_all(1, b, (size_t)n, 0);
			if (n > 0 && sig_from < 0)
				sig_from = now_ms();
		}
		if (f[2].revents) {
			ssize_t n = read(p->stderr_fd, b, sizeof(b));
			if (n <= 0)
				err_open = false;
			else
				fd_write_all(2, b, (size_t)n, 0);
		}
	}
}

static int cmd_exec(const char *container, const char *cwd, const char *cmd)
{
	int64_t t0 = now_ms();
	struct transport *t;
	if (open_transport(container, cwd, &t) < 0)
		return 125;
	int64_t t1 = now_ms();
	struct exec_spec spec = {
	    .command = cmd, .cwd = cwd, .tty = tty_mode, .rows = 24, .cols = 80};
	struct exec_proc *p;
	struct err e;
	if (transport_exec_start(t, &spec, &p, &e) < 0) {
		fprintf(stderr, "docker_probe: %s\n", e.msg);
		transport_close(t);
		return 125;
	}
	relay(p, t1);
	int status = 0;
	if (kill_after_ms < 0 && p->ops->wait(p, deadline_in(60000), &status, &e) < 0) {
		fprintf(stderr, "docker_probe: wait: %s\n", e.msg);
		status = 125;
	}
	int64_t t2 = now_ms();
	p->ops->free(p);
	if (timings)
		fprintf(stderr, "open_ms=%lld exec_ms=%lld\n", (long long)(t1 - t0),
			(long long)(t2 - t1));
	transport_close(t);
	/* a death by signal N (EXEC_STATUS_SIGNALED) exits 128+N, as a shell reports it */
	return status >= EXEC_STATUS_SIGNALED(1) ? 128 + status - EXEC_STATUS_SIGNALED(0) : status;
}

static int cmd_sftp(const char *container, const char *dir)
{
	struct transport *t;
	if (open_transport(container, dir, &t) < 0)
		return 125;
	int fd, rc = 1;
	struct err e;
	struct sftp_client *c = NULL;
	if (transport_open_sftp(t, &fd, &e) < 0 || sftp_client_open(fd, 20000, &c, &e) < 0) {
		fprintf(stderr, "docker_probe: %s\n", e.msg);
		transport_close(t);
		return 125;
	}
	char *path = str_printf("%s/probe.txt", dir);
	static const char text[] = "hello through docker\n";
	struct sftp_handle h;
	char back[64] = "";
	size_t got = 0;
	struct sftp_attrs a;
	if (sftp_open(c, path, SFTP_OPEN_WRITE | SFTP_OPEN_CREAT | SFTP_OPEN_TRUNC, NULL, &h) ==
		0 &&
	    sftp_write(c, &h, 0, text, sizeof(text) - 1) == 0 && sftp_close(c, &h) == 0 &&
	    sftp_open(c, path, SFTP_OPEN_READ, NULL, &h) == 0 &&
	    sftp_read(c, &h, 0, back, sizeof(back) - 1, &got) == 0 && sftp_close(c, &h) == 0 &&
	    got == sizeof(text) - 1 && !memcmp(back, text, got) && sftp_stat(c, path, &a) == 0) {
		printf("owner %u:%u\nok\n", a.uid, a.gid);
		rc = 0;
	} else {
		fprintf(stderr, "docker_probe: sftp round trip on %s failed\n", path);
	}
	free(path);
	sftp_client_close(c);
	transport_close(t);
	return rc;
}

static int cmd_bench(const char *container, int n)
{
	struct transport *t;
	if (open_transport(container, "/tmp", &t) < 0)
		return 125;
	int64_t t0 = now_ms();
	for (int i = 0; i < n; i++) {
		struct exec_spec spec = {.command = "true", .cwd = "/tmp"};
		struct exec_proc *p;
		struct err e;
		int status = -1;
		if (transport_exec_start(t, &spec, &p, &e) < 0) {
			fprintf(stderr, "docker_probe: %s\n", e.msg);
			break;
		}
		shutdown(p->stdio_fd, SHUT_WR);
		p->ops->wait(p, deadline_in(30000), &status, &e);
		p->ops->free(p);
	}
	printf("%.1f\n", (double)(now_ms() - t0) / n);
	transport_close(t);
	return 0;
}

int main(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, "+o:tk:s:S:T")) != -1) {
		switch (c) {
		case 'o':
			opts = optarg;
			break;
		case 't':
			tty_mode = true;
			break;
		case 'k':
			kill_after_ms = atoi(optarg);
			break;
		case 's':
		case 'S':
			sscanf(optarg, "%d:%d", &sig_num, &sig_after_ms);
			sig_after_output = c == 'S';
			break;
		case 'T':
			timings = true;
			break;
		default:
			return 2;
		}
	}
	argv += optind;
	argc -= optind;
	if (argc == 4 && !strcmp(argv[0], "exec"))
		return cmd_exec(argv[1], argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[0], "sftp"))
		return cmd_sftp(argv[1], argv[2]);
	if (argc == 3 && !strcmp(argv[0], "bench"))
		return cmd_bench(argv[1], atoi(argv[2]));
	fprintf(stderr, "usage: docker_probe [-o OPTS] [-t] [-k MS] [-s|-S SIG:MS] [-T] "
			"exec CONTAINER CWD CMD | sftp CONTAINER DIR | bench CONTAINER N\n");
	return 2;
}
