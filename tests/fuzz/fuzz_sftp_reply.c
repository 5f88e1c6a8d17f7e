/* fuzz_sftp_reply.c: libFuzzer target for the SFTP client's handling of what a server sends
 * (lib/sftp/sftp_client.c: handshake, framing, the reader thread matching replies to requests;
 * sftp_ops.c: every reply parsed by the operations). The real client runs over a socket pair;
 * a scripted server thread in this file answers each request it reads with the next packet of
 * the input. No seam: nothing in lib/ knows it is being fuzzed.
 *
 * Input: one byte picking the first operation of a fixed sequence (so short inputs reach every
 * operation), then the server's packets, each u32 length + body as on the wire. A packet whose
 * id field (bytes 5-8) is zero gets the id of the request it answers; any other id is sent as
 * is. Once the input is used up, or when no request comes for a while (the client waits for a
 * reply it will not get), the server closes the connection. */
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sftp/sftp_client.h"
#include "proto/sftp_proto.h"

#define IDLE_MS 100 /* no request this long: the client waits for us; we hang up */

struct script {
	int fd;
	const uint8_t *p;
	size_t n;
};

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Read exactly n bytes (into p if non-NULL), waiting at most IDLE_MS for each piece. */
static int read_full(int fd, uint8_t *p, size_t n)
{
	uint8_t sink[4096];
	while (n) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, IDLE_MS) <= 0)
			return -1;
		size_t want = p ? n : (n < sizeof(sink) ? n : sizeof(sink));
		ssize_t r = read(fd, p ? p : sink, want);
		if (r <= 0)
			return -1;
		n -= (size_t)r;
		if (p)
			p += r;
	}
	return 0;
}

static int write_full(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One request: its type and id (the id of INIT is its version). -1 at EOF or when idle. */
static int read_request(int fd, uint8_t *type, uint8_t id[4])
{
	uint8_t hdr[9];
	if (read_full(fd, hdr, 4) < 0)
		return -1;
	uint32_t len = be32(hdr);
	if (len < 5 || read_full(fd, hdr + 4, 5) < 0 || read_full(fd, NULL, len - 5) < 0)
		return -1;
	*type = hdr[4];
	memcpy(id, hdr + 5, 4);
	return 0;
}

static void *server_main(void *arg)
{
	struct script *s = arg;
	uint8_t type, id[4];
	while (s->n >= 4 && read_request(s->fd, &type, id) == 0) {
		size_t take = 4 + (size_t)be32(s->p);
		if (take < 4 || take > s->n)
			take = s->n;
		uint8_t *pkt = malloc(take);
		if (!pkt)
			break;
		memcpy(pkt, s->p, take);
		s->p += take;
		s->n -= take;
		if (type != SSH2_FXP_INIT && take >= 9 && !memcmp(pkt + 5, "\0\0\0\0", 4))
			memcpy(pkt + 5, id, 4);
		int w = write_full(s->fd, pkt, take);
		free(pkt);
		if (w < 0)
			break;
	}
	shutdown(s->fd, SHUT_RDWR);
	return NULL;
}

static int ignore_entry(void *ctx, const char *name, const struct sftp_attrs *a)
{
	(void)ctx;
	(void)name;
	(void)a;
	return 0;
}

/* Touches every byte it is given (ASan sees a read past what the reply held). */
static int sum_file(void *ctx, const char *name, const struct sftp_attrs *a, const uint8_t *data,
		    size_t len)
{
	unsigned *sum = ctx;
	for (size_t i = 0; i < len; i++)
		*sum += data[i];
	*sum += (unsigned)strlen(name) + (unsigned)a->size;
	return 0;
}

/* The operations, in order from `first`; each parses its replies its own way. */
static void run_ops(struct sftp_client *c, unsigned first)
{
	static uint8_t data[70000];
	struct sftp_attrs a = {.flags = SFTP_ATTR_PERM, .perm = 0644};
	struct sftp_handle h = {.len = 1, .data = {'h'}};
	struct statvfs vfs;
	char *s;
	size_t got;
	bool have_st;
	struct sftp_after after[2] = {{.path = "/w"}, {.path = "/w/d"}};
	char resume[SFTP_NAME_BUF];
	unsigned sum = 0;
	enum { NOPS = 19 };
	for (unsigned op = first % NOPS; op < NOPS; op++) {
		switch (op) {
		case 0:
			sftp_stat(c, "/w/f", &a);
			break;
		case 1:
			sftp_open(c, "/w/f", SFTP_OPEN_READ | SFTP_OPEN_WRITE, NULL, &h);
			sftp_open_read(c, "/w/f", sizeof(data), &h, &a, data, &got);
			break;
		case 2:
			sftp_read(c, &h, 0, data, sizeof(data), &got);
			break;
		case 3:
			sftp_write(c, &h, 0, data, sizeof(data));
			break;
		case 4:
			sftp_fstat(c, &h, &a);
			break;
		case 5:
			sftp_fsync(c, &h);
			break;
		case 6:
			sftp_close(c, &h);
			break;
		case 7:
			sftp_list_dir(c, "/w", ignore_entry, NULL);
			break;
		case 8:
			if (sftp_readlink(c, "/w/l", &s) == 0)
				free(s);
			break;
		case 9:
			if (sftp_realpath(c, ".", &s) == 0)
				free(s);
			break;
		case 10:
			sftp_statvfs(c, "/w", &vfs);
			break;
		case 11:
			sftp_open_stat(c, "/w/g",
				       SFTP_OPEN_WRITE | SFTP_OPEN_CREAT | SFTP_OPEN_EXCL, &a, &h,
				       &a, &have_st, after, 2);
			break;
		case 12:
			sftp_rename(c, "/w/g", "/w/h", true);
			sftp_rename(c, "/w/h", "/w/g", false);
			break;
		case 13:
			sftp_symlink(c, "f", "/w/s");
			sftp_hardlink(c, "/w/f", "/w/k");
			break;
		case 14:
			sftp_change(c, SFTP_MKDIR, "/w/d", NULL, 0755, after, 2);
			sftp_change(c, SFTP_RMDIR, "/w/d", NULL, 0, after, 1);
			sftp_change(c, SFTP_RENAME_OVERWRITE, "/w/g", "/w/d", 0, after, 2);
			break;
		case 15:
			sftp_remove(c, "/w/g");
			break;
		case 16:
			sftp_setstat(c, "/w/f", &a);
			sftp_fsetstat(c, &h, &a);
			break;
		case 17:
			sftp_read_files(c, "/w", 1000, "", sum_file, &sum, resume);
			sftp_read_files(c, "/w", 1000, "a", sum_file, &sum, resume);
			break;
		default:
			sftp_close_async(c, &h);
			break;
		}
	}
}

/* The daemon ignores SIGPIPE (a peer that hangs up is an error return, not a signal); so do we. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	struct script s = {.fd = sv[1], .p = data + 1, .n = size - 1};
	pthread_t server;
	if (pthread_create(&server, NULL, server_main, &s) != 0) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	struct sftp_client *c;
	struct err e;
	if (sftp_client_open(sv[0], 2000, &c, &e) == 0) {
		run_ops(c, data[0]);
		sftp_client_close(c);
	}
	pthread_join(server, NULL);
	close(sv[1]);
	return 0;
}
