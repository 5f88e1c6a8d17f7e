/* control_server.h: the daemon's control socket (mode 0600 in a 0700 dir, SO_PEERCRED checked)
 * and the exec service behind it: runs sandexec's commands over the daemon's transport, relaying
 * the stdin/stdout/stderr fds sandexec passed, signals, resizes and the exit status, and running
 * the exec barrier before the status is reported. */
#ifndef SANDMOUNT_CONTROL_SERVER_H
#define SANDMOUNT_CONTROL_SERVER_H

#include "buf.h"
#include "transport.h"
#include "util.h"

struct control_hooks {
	struct transport *transport; /* used when get_transport is NULL */
	/* The transport to run one command on, held until put_transport; NULL when the sandbox
	 * cannot be reached right now (the daemon is reconnecting). */
	struct transport *(*get_transport)(void *ctx);
	void (*put_transport)(void *ctx, struct transport *t);
	const char *remote_root; /* commands run in remote_root/<cwd_rel> */
	/* Called after each command, before CTL_EXIT, unless the transport reported a
	 * coherent exit (exec_proc.coherent_exit: its watch delivered the command's changes). */
	void (*barrier)(void *ctx);
	void (*status)(void *ctx, struct buf *text); /* fills the --status text */
	/* Fills the CTL_CHANGES_REPLY payload for the changes since token (NULL: no journal). */
	void (*changes)(void *ctx, const char *token, struct buf *reply);
	void *ctx;
};

struct control_server;

/* Bind and listen on sock_path (replacing a stale socket), serve in background threads. */
int control_server_start(const char *sock_path, const struct control_hooks *hooks,
			 struct control_server **out, struct err *e);
/* Stop accepting; running commands are killed (their remote process groups) and waited for. */
void control_server_stop(struct control_server *s);

#endif
