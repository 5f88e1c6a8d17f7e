/* agent_standins.c: for fuzz_agent_mux, stand-ins for the parts of `sandmount-agent serve` that act
 * on this machine (agent/mux_spawn.c starts commands, agent/mux_watch.c watches directories).
 * Frames from the fuzzer reach mux_server.c's parsing and channel logic unchanged; a SPAWN or
 * SFTP open fails with a message, a WATCH on an absolute path opens a channel that never reports
 * anything. */
#include <stdio.h>

#include "mux.h"

struct watch {
	int unused;
};

static struct watch the_watch;

pid_t spawn_command(const struct spawn_req *r, struct child_fds *fds, char *msg, size_t size)
{
	(void)fds;
	snprintf(msg, size, "fuzz: not running '%s'", r->command);
	return -1;
}

pid_t spawn_sftp(struct child_fds *fds, char *msg, size_t size)
{
	(void)fds;
	snprintf(msg, size, "fuzz: no SFTP server");
	return -1;
}

int spawn_resize(int master_fd, unsigned rows, unsigned cols)
{
	(void)master_fd;
	(void)rows;
	(void)cols;
	return 0;
}

void spawn_note_fd(int fd)
{
	(void)fd;
}

void spawn_forget_fd(int fd)
{
	(void)fd;
}

int spawn_status(int wstatus)
{
	return wstatus;
}

struct watch *watch_open(const char *dir, uint32_t max_watches, char *msg, size_t size)
{
	(void)max_watches;
	if (dir[0] == '/')
		return &the_watch;
	snprintf(msg, size, "fuzz: %s: not an absolute path", dir);
	return NULL;
}

void watch_free(struct watch *w)
{
	(void)w;
}

int watch_fd(const struct watch *w)
{
	(void)w;
	return -1;
}

void watch_read(struct watch *w)
{
	(void)w;
}

int watch_due_in(const struct watch *w, int64_t now)
{
	(void)w;
	(void)now;
	return -1;
}

void watch_flush(struct watch *w, struct buf *out, uint32_t ch)
{
	(void)w;
	(void)out;
	(void)ch;
}
