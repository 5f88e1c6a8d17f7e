/* util.c: error messages, monotonic time, fd I/O with deadlines, shell quoting. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

void err_set(struct err *e, const char *fmt, ...)
{
	if (!e)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
}

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t deadline_in(int64_t ms)
{
	return now_ms() + ms;
}

int deadline_poll_timeout(int64_t deadline)
{
	if (deadline == 0)
		return -1;
	int64_t left = deadline - now_ms();
	if (left <= 0)
		return 0;
	return left > 1000000 ? 1000000 : (int)left;
}

static int fd_wait(int fd, short events, int64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	for (;;) {
		int r = poll(&p, 1, deadline_poll_timeout(deadline));
		if (r > 0)
			return 0;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

int fd_read_full(int fd, void *p, size_t n, int64_t deadline)
{
	uint8_t *d = p;
	while (n > 0) {
		ssize_t r = read(fd, d, n);
		if (r > 0) {
			d += r;
			n -= (size_t)r;
			continue;
		}
		if (r == 0)
			return -EPIPE;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		int w = fd_wait(fd, POLLIN, deadline);
		if (w < 0)
			return w;
	}
	return 0;
}

/* A socket gets send() with MSG_NOSIGNAL (a peer that went away is EPIPE, never SIGPIPE) and
 * MSG_DONTWAIT (the deadline holds on a blocking socket too); anything else gets write(). */
static ssize_t write_some(int fd, const void *p, size_t n, bool *is_socket)
{
	if (*is_socket) {
		ssize_t r = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r >= 0 || errno != ENOTSOCK)
			return r;
		*is_socket = false;
	}
	return write(fd, p, n);
}

int fd_write_all(int fd, const void *p, size_t n, int64_t deadline)
{
	const uint8_t *d = p;
	bool is_socket = true;
	while (n > 0) {
		ssize_t r = write_some(fd, d, n, &is_socket);
		if (r >= 0) {
			d += r;
			n -= (size_t)r;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		int w = fd_wait(fd, POLLOUT, deadline);
		if (w < 0)
			return w;
	}
	return 0;
}

int fd_set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -errno;
	fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
	return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

int fd_set_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFD);
	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		return -errno;
	return 0;
}

char *sh_quote(const char *s)
{
	size_t n = 3;
	for (const char *c = s; *c; c++)
		n += *c == '\'' ? 4 : 1;
	char *out = malloc(n);
	if (!out)
		return NULL;
	char *o = out;
	*o++ = '\'';
	for (const char *c = s; *c; c++) {
		if (*c == '\'') {
			memcpy(o, "'\\''", 4);
			o += 4;
		} else {
			*o++ = *c;
		}
	}
	*o++ = '\'';
	*o = 0;
	return out;
}

char *str_printf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	int r = vasprintf(&s, fmt, ap);
	va_end(ap);
	return r < 0 ? NULL : s;
}

char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d) {
		fputs("out of memory\n", stderr);
		abort();
	}
	return d;
}
