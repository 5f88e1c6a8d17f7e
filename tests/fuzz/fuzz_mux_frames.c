/* fuzz_mux_frames.c: libFuzzer target for the client of the agent's multiplexed protocol
 * (lib/mux/: the pump thread's frame parser and everything a frame does to a channel). The real
 * client runs over a socket pair; a scripted agent thread in this file sends the input's frames.
 * No seam: nothing in lib/ knows it is being fuzzed.
 *
 * Input: segments 0, 1 and 2 (each u32 length + bytes), then segment 3, the rest. The agent
 * sends segment 0 at once (it should hold HELLO), and one more segment after each OPEN the
 * client sends (the client opens a WATCH as channel 1, an SFTP stream as 2, a command as 3), then
 * closes its sending side; it closes it early when the client will not go on (client_goes_on). */
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mux/agent_mux.h"
#include "proto/mux_proto.h"
#include "sftp/sftp_client.h"

#define NSEGMENTS 4
#define WAIT_MS	  2000 /* a safety net only: the script knows when the client will not answer */

/* The agent's side: the stream it sends (the segments back to back) and where each ends. */
struct script {
	int fd;
	uint8_t *stream;
	size_t end[NSEGMENTS];
	size_t scanned; /* frames before this offset were looked at */
	bool broken;	/* a frame the client cannot parse: it will hang up */
};

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int split(struct script *s, const uint8_t *p, size_t n)
{
	s->stream = malloc(n ? n : 1);
	if (!s->stream)
		return -1;
	size_t len = 0;
	for (int i = 0; i < NSEGMENTS; i++) {
		size_t take = n;
		if (i < NSEGMENTS - 1) {
			size_t skip = n >= 4 ? 4 : n;
			take = n >= 4 ? be32(p) : 0;
			p += skip;
			n -= skip;
			if (take > n)
				take = n;
		}
		memcpy(s->stream + len, p, take);
		len += take;
		s->end[i] = len;
		p += take;
		n -= take;
	}
	return 0;
}

/* Whether the client, once it has read segment k, will send its next OPEN: the complete frames
 * so far (framing only, as the client splits them) include the one it waits for, HELLO for
 * segment 0, the answer to channel k's OPEN for segment k. Otherwise it waits for more, or hangs
 * up, and we hang up first instead of waiting for a frame that will not come. */
static bool client_goes_on(struct script *s, int k)
{
	bool found = false;
	while (!s->broken && s->end[k] - s->scanned >= 4) {
		const uint8_t *f = s->stream + s->scanned;
		uint32_t len = be32(f);
		if (len < MUX_FRAME_MIN || len > MUX_FRAME_MAX) {
			s->broken = true;
			break;
		}
		if (s->end[k] - s->scanned - 4 < len)
			break;
		uint8_t type = f[4];
		uint32_t ch = be32(f + 5);
		if (k == 0 ? type == MUX_HELLO
			   : (type == MUX_OPEN_OK || type == MUX_OPEN_FAIL) && ch == (uint32_t)k)
			found = true;
		s->scanned += 4 + (size_t)len;
	}
	return found && !s->broken;
}

static int read_full(int fd, uint8_t *p, size_t n)
{
	while (n) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, WAIT_MS) <= 0)
			return -1;
		ssize_t r = read(fd, p, n);
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* The type of the client's next frame (its body discarded); -1 at EOF. */
static int read_frame_type(int fd)
{
	uint8_t hdr[5], body[4096];
	if (read_full(fd, hdr, 5) < 0 || be32(hdr) < 1)
		return -1;
	uint32_t left = be32(hdr) - 1;
	while (left) {
		uint32_t n = left < sizeof(body) ? left : sizeof(body);
		if (read_full(fd, body, n) < 0)
			return -1;
		left -= n;
	}
	return hdr[4];
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

static void *agent_main(void *arg)
{
	struct script *s = arg;
	size_t sent = 0;
	for (int k = 0; k < NSEGMENTS; k++) {
		if (write_full(s->fd, s->stream + sent, s->end[k] - sent) < 0)
			break;
		sent = s->end[k];
		if (k == NSEGMENTS - 1 || !client_goes_on(s, k))
			break;
		int type;
		do
			type = read_frame_type(s->fd);
		while (type >= 0 && type != MUX_OPEN_SFTP && type != MUX_OPEN_SPAWN &&
		       type != MUX_OPEN_WATCH);
		if (type < 0)
			break;
	}
	shutdown(s->fd, SHUT_WR);
	/* Drain what the client still sends until it closes, so that it never blocks on us. */
	uint8_t sink[4096];
	while (read(s->fd, sink, sizeof(sink)) > 0)
		;
	return NULL;
}

/* What any report must be, whatever the agent sent: "everything changed" carries nothing; a
 * path is under the watched directory; attributes come only with a CHANGED_INSIDE and are what
 * the decoder accepts. */
static void changed(void *ctx, const char *path, bool inside, const struct sftp_attrs *attrs)
{
	(void)ctx;
	if (!path && (inside || attrs))
		abort();
	if (path && strncmp(path, "/w", 2) != 0)
		abort();
	if (attrs && (!inside || attrs->mtim.tv_nsec >= 1000000000 || attrs->mtim.tv_nsec < 0))
		abort();
}

static void run_channels(struct agent_mux *m)
{
	struct err e;
	int sftp_fd = -1;
	struct watch_req req = {.dir = "/w", .changed = changed};
	agent_mux_watch(m, &req, &e);
	agent_mux_open_sftp(m, &sftp_fd, &e);
	struct exec_spec spec = {.command = "true", .cwd = "/w"};
	struct exec_proc *p;
	if (agent_mux_exec_start(m, &spec, &p, &e) == 0) {
		int status;
		p->ops->wait(p, deadline_in(WAIT_MS), &status, &e);
		p->ops->free(p);
	}
	if (sftp_fd >= 0)
		close(sftp_fd);
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
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	struct script s = {.fd = sv[1]};
	pthread_t agent;
	if (split(&s, data, size) < 0 || pthread_create(&agent, NULL, agent_main, &s) != 0) {
		free(s.stream);
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	struct agent_mux *m;
	struct err e;
	if (agent_mux_start(sv[0], "fuzz", WAIT_MS, &m, &e) == 0) {
		run_channels(m);
		agent_mux_close(m);
	}
	pthread_join(agent, NULL);
	free(s.stream);
	close(sv[1]);
	return 0;
}
