/* ssh_chan_io.c: moving the bytes of one SSH channel to and from its local socket (the pump
 * thread calls these; ssh_pump.c). Flow control is real in both directions: a channel is read
 * only when its pending buffer to the local end is empty (so libssh stops growing the window and
 * the server stops sending), and the local end is read only as far as the remote window allows.
 * A command's first stdout line is the wrapper's "SMPID:<pid>" header, consumed here. */
#include "ssh/ssh_internal.h"

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>

#include "log.h"

#define ROUNDS_PER_WAKE 8 /* buffers moved per channel per call, for fairness */

/* "SMPID:<pid>" (plus "\r" with a PTY) is the wrapper's first stdout line: consume it. */
static void take_header(struct pump_chan *c, struct chan_buf *b)
{
	while (b->off < b->len && c->strip_header) {
		char ch = (char)b->data[b->off++];
		if (ch != '\n') {
			if (c->header_len + 1 < sizeof(c->header))
				c->header[c->header_len++] = ch;
			continue;
		}
		c->header[c->header_len] = 0;
		c->strip_header = false;
		if (sscanf(c->header, "SMPID:%ld", &c->pid) != 1 || c->pid <= 0) {
			log_warn("ssh: unexpected first line from a command on %s",
				 c->tr->peer.label);
			c->pid = 0;
		}
	}
}

/* Write pending bytes to a local end. False: it would block (try again on POLLOUT). */
static bool flush_local(int fd, struct chan_buf *b, bool *broken)
{
	while (b->off < b->len && fd >= 0 && !*broken) {
		ssize_t w =
		    send(fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			b->off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return false;
		*broken = true; /* the caller closed its end: discard from now on */
	}
	b->off = b->len = 0;
	return true;
}

/* One read of what libssh holds for the stream: 0 when nothing is there yet, SSH_EOF or
 * SSH_ERROR. It asks for a whole buffer, not only what is held: a read that asks for more than
 * libssh holds plus the receive window is what grows that window (to our buffer's size). */
static int read_output(struct pump_chan *c, struct chan_buf *b, bool is_stderr)
{
	int avail = ssh_channel_poll(c->ch, is_stderr);
	if (avail <= 0)
		return avail;
	return ssh_channel_read_timeout(c->ch, b->data, (uint32_t)b->cap, is_stderr, 0);
}

/* Remote → local for stdout or stderr. Returns true when it stopped with data possibly left in
 * libssh's buffers (the round limit): no fd event will announce it, so the pump must come back
 * without sleeping. */
bool pump_output(struct pump_chan *c, bool is_stderr)
{
	struct chan_buf *b = is_stderr ? &c->err : &c->out;
	int fd = is_stderr ? c->err_fd : c->io_fd;
	bool *eof = is_stderr ? &c->err_eof : &c->out_eof;
	bool *broken = is_stderr ? &c->err_broken : &c->out_broken;

	for (int round = 0; round < ROUNDS_PER_WAKE && !*eof; round++) {
		if (b->off == b->len) {
			int n = read_output(c, b, is_stderr);
			if (n == 0 || n == SSH_AGAIN)
				return false;
			if (n < 0) { /* SSH_EOF, or SSH_ERROR for a broken channel */
				*eof = true;
				if (fd >= 0)
					shutdown(fd, SHUT_WR);
				return false;
			}
			c->tr->bytes_in += (uint64_t)n;
			b->off = 0;
			b->len = (size_t)n;
			if (!is_stderr && c->strip_header)
				take_header(c, b);
		}
		if (!flush_local(fd, b, broken))
			return false; /* POLLOUT on the local end brings the pump back */
	}
	return !*eof && ssh_channel_poll(c->ch, is_stderr) != 0;
}

/* Local → remote: read the caller's end only as far as the remote window allows. */
void pump_input(struct pump_chan *c)
{
	struct chan_buf *b = &c->in;

	if (c->in_eof_sent || c->io_fd < 0 || !ssh_channel_is_open(c->ch))
		return;
	for (int round = 0; round < ROUNDS_PER_WAKE; round++) {
		uint32_t win = ssh_channel_window_size(c->ch);
		if (b->off == b->len && !c->in_eof) {
			if (win == 0)
				return;
			size_t want = win < b->cap ? win : b->cap;
			ssize_t n = recv(c->io_fd, b->data, want, MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			b->off = 0;
			b->len = n > 0 ? (size_t)n : 0;
			c->in_eof = n <= 0;
		}
		if (b->off < b->len) {
			if (win == 0)
				return;
			size_t len = b->len - b->off;
			int w = ssh_channel_write(c->ch, b->data + b->off,
						  (uint32_t)(len < win ? len : win));
			if (w < 0) {
				b->off = b->len;
				c->in_eof = true;
				break;
			}
			c->tr->bytes_out += (uint64_t)w;
			b->off += (size_t)w;
			if (b->off < b->len)
				return;
		}
		if (c->in_eof)
			break;
	}
	if (c->in_eof && b->off == b->len) {
		ssh_channel_send_eof(c->ch);
		c->in_eof_sent = true;
	}
}
