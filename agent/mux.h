/* mux.h: how the parts of `sandmount-agent serve` meet. mux_server.c owns the event loop, the
 * frames and the channel table; mux_spawn.c starts children (commands and the SFTP server);
 * mux_watch.c is the inotify watcher. See mux_proto.h for the wire. */
#ifndef SANDMOUNT_AGENT_MUX_H
#define SANDMOUNT_AGENT_MUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "proto/mux_proto.h"

/* Serve the protocol on stdin/stdout until the stream closes. Returns the exit status. */
int mux_server_run(void);

/* ---- children (mux_spawn.c) ---- */

struct spawn_req {
	const char *command;
	const char *cwd; /* NULL or "": the agent's directory */
	char **env;	 /* "K=V", NULL-terminated */
	bool tty;
	const char *term;
	unsigned rows, cols;
};

/* The parent's ends: in_fd (child's stdin), out_fd, err_fd (-1 with a tty: the PTY master is
 * both in_fd and out_fd, as two descriptors). All non-blocking and close-on-exec. */
struct child_fds {
	int in_fd, out_fd, err_fd;
};

/* Fork a process in its own session running `sh -c command`. Returns its pid or -1 with msg. */
pid_t spawn_command(const struct spawn_req *r, struct child_fds *fds, char *msg, size_t size);
/* Fork a child serving SFTP on pipes (the agent's own SFTP server). */
pid_t spawn_sftp(struct child_fds *fds, char *msg, size_t size);
/* TIOCSWINSZ on a PTY master. */
int spawn_resize(int master_fd, unsigned rows, unsigned cols);
/* Every descriptor the agent holds that a forked child must close; kept by mux_server.c. */
void spawn_note_fd(int fd);
void spawn_forget_fd(int fd);
/* Exit status convention: exit code, or 128+N after signal N. */
int spawn_status(int wstatus);

/* ---- the watcher (mux_watch.c) ---- */

struct watch;

/* Watch dir and every directory under it (except the agent's hidden dir in dir), at most
 * max_watches directories (0: as many as the kernel allows); the rest are reported as PARTIAL. */
struct watch *watch_open(const char *dir, uint32_t max_watches, char *msg, size_t size);
void watch_free(struct watch *w);
int watch_fd(const struct watch *w);
/* Read the pending inotify events (call when watch_fd is readable). */
void watch_read(struct watch *w);
/* Milliseconds until the gathered events are due (-1: none gathered, 0: due now). */
int watch_due_in(const struct watch *w, int64_t now);
/* Append the due events to out as CHANGED / CHANGED_INSIDE / OVERFLOW frames of channel ch
 * and forget them. */
void watch_flush(struct watch *w, struct buf *out, uint32_t ch);

/* Frames (mux_server.c): start one in out, returning its start for frame_end. */
size_t frame_begin(struct buf *out, uint8_t type, uint32_t ch);
void frame_end(struct buf *out, size_t start);
int64_t mono_ms(void);

#endif
