/* util.h: small shared helpers — error messages, monotonic time, fd I/O with deadlines. */
#ifndef SANDMOUNT_UTIL_H
#define SANDMOUNT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A human-readable error: one line, no trailing newline, shown to the user as is. */
struct err {
	char msg[512];
};

void err_set(struct err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Milliseconds on CLOCK_MONOTONIC. Deadlines are absolute values of this clock; 0 = none. */
int64_t now_ms(void);
int64_t now_us(void); /* the same clock (monotonic), in microseconds */
int64_t deadline_in(int64_t ms);
/* Milliseconds left until a deadline for poll(): -1 for none, 0 if passed. */
int deadline_poll_timeout(int64_t deadline);

/* Read exactly n bytes / write all n bytes on a (possibly non-blocking) fd, waiting with poll()
 * until the deadline. Writes to a socket never raise SIGPIPE (-EPIPE instead). Return 0, or -errno:
 * -ETIMEDOUT past the deadline, -EPIPE on EOF while reading (after 0 bytes too), -EINTR never
 * (retried). */
int fd_read_full(int fd, void *p, size_t n, int64_t deadline);
int fd_write_all(int fd, const void *p, size_t n, int64_t deadline);
int fd_set_nonblock(int fd, bool on);
int fd_set_cloexec(int fd);

/* Shell-quote s for POSIX sh with single quotes; returns malloc'd string or NULL. */
char *sh_quote(const char *s);
/* malloc'd printf; NULL on failure. */
char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* strdup that aborts on out-of-memory (for tiny strings in start-up code). */
char *xstrdup(const char *s);

#endif
