/* ctl_proto.c: framing of the control-socket protocol (see ctl_proto.h).
 *
 * A frame is u32 length (of type + payload, big endian), u8 type, payload. File descriptors ride
 * along as SCM_RIGHTS with the frame's first bytes; the receiver collects them from whichever
 * recvmsg() of the frame delivers them. */
#include "ctl_proto.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

#define CTL_HDR_LEN 5
#define CTL_MAX_FDS 3

static int send_with_fds(int sock, const uint8_t *p, size_t n, const int *fds, int nfds)
{
	union {
		struct cmsghdr align;
		char space[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
	} ctrl;
	struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

	if (nfds > 0) {
		memset(&ctrl, 0, sizeof(ctrl));
		msg.msg_control = ctrl.space;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	for (;;) {
		ssize_t r = sendmsg(sock, &msg, MSG_NOSIGNAL);
		if (r >= 0)
			return (int)r;
		if (errno != EINTR)
			return -errno;
	}
}

int ctl_send(int sock, uint8_t type, const struct buf *payload, const int *fds, int nfds)
{
	size_t plen = payload ? payload->len : 0;
	if (nfds < 0 || nfds > CTL_MAX_FDS || plen + 1 > CTL_MAX_FRAME)
		return -EINVAL;

	struct buf frame;
	buf_init(&frame);
	buf_put_u32(&frame, (uint32_t)(plen + 1));
	buf_put_u8(&frame, type);
	if (plen)
		buf_put_bytes(&frame, payload->data, plen);
	if (!buf_ok(&frame)) {
		buf_free(&frame);
		return -ENOMEM;
	}

	int r = send_with_fds(sock, frame.data, frame.len, fds, nfds);
	if (r >= 0 && (size_t)r < frame.len)
		r = fd_write_all(sock, frame.data + r, frame.len - (size_t)r, deadline_in(10000));
	buf_free(&frame);
	return r < 0 ? r : 0;
}

/* Move the descriptors of one SCM_RIGHTS message into fds[]; extras are closed. */
static int take_fds(struct msghdr *msg, int *fds, int maxfds, int *nfds)
{
	int bad = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*nfds < maxfds)
				fds[(*nfds)++] = fd;
			else
				close(fd);
		}
	}
	if (msg->msg_flags & MSG_CTRUNC)
		bad = -EPROTO;
	return bad;
}

/* Read exactly n bytes of the current frame, collecting passed fds. *got reports progress so the
 * caller can tell a clean EOF (nothing read yet) from a truncated frame. */
static int recv_exact(int sock, uint8_t *p, size_t n, int *fds, int maxfds, int *nfds,
		      int64_t deadline, size_t *got)
{
	union {
		struct cmsghdr align;
		char space[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
	} ctrl;

	while (n > 0) {
		struct pollfd pfd = {.fd = sock, .events = POLLIN};
		int pr = poll(&pfd, 1, deadline_poll_timeout(deadline));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return -errno;
		if (pr == 0)
			return -ETIMEDOUT;

		struct iovec iov = {.iov_base = p, .iov_len = n};
		struct msghdr msg = {.msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = ctrl.space,
				     .msg_controllen = sizeof(ctrl.space)};
		ssize_t r = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		int fr = take_fds(&msg, fds, maxfds, nfds);
		if (fr < 0)
			return fr;
		if (r == 0)
			return *got == 0 ? -EPIPE : -EPROTO;
		p += r;
		n -= (size_t)r;
		*got += (size_t)r;
	}
	return 0;
}

int ctl_recv(int sock, uint8_t *type, struct buf *payload, int *fds, int maxfds, int *nfds,
	     int64_t deadline)
{
	uint8_t hdr[CTL_HDR_LEN];
	size_t got = 0;
	*nfds = 0;
	buf_reset(payload);

	int r = recv_exact(sock, hdr, sizeof(hdr), fds, maxfds, nfds, deadline, &got);
	if (r == 0) {
		uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
			       (uint32_t)hdr[2] << 8 | hdr[3];
		*type = hdr[4];
		if (len < 1 || len > CTL_MAX_FRAME)
			r = -EPROTO;
		else if (len > 1 && buf_reserve(payload, len - 1) < 0)
			r = -ENOMEM;
		else if (len > 1)
			r = recv_exact(sock, payload->data, len - 1, fds, maxfds, nfds, deadline,
				       &got);
		if (r == 0)
			payload->len = len - 1;
	}
	if (r < 0) {
		for (int i = 0; i < *nfds; i++)
			close(fds[i]);
		*nfds = 0;
	}
	return r;
}
