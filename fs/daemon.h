/* daemon.h: the session daemon of one mount — connect, mount, serve, tear down. */
#ifndef SANDMOUNT_DAEMON_H
#define SANDMOUNT_DAEMON_H

#include <stdbool.h>
#include "config.h"

struct daemon_opts {
	bool foreground;
	bool debug;	       /* log debug lines; with -f also FUSE's own debug output */
	const char *fuse_opts; /* extra FUSE mount options, comma-separated, may be NULL */
};

/* Mount cfg at mountpoint (canonical) and serve until unmounted. Unless foreground, forks: the
 * parent exits 0 once the mount is live, or prints the error and exits 1. Returns the exit code
 * for the process that serves (or fails in the foreground). */
int daemon_run_mount(const struct sandbox_cfg *cfg, const char *mountpoint,
		     const struct daemon_opts *o);

#endif
