/* exec_relay.h: one forwarded command — starts it over the transport and relays between the
 * stdin/stdout/stderr fds sandexec passed and the transport's streams, until the exit status is
 * reported on the control connection. */
#ifndef SANDMOUNT_EXEC_RELAY_H
#define SANDMOUNT_EXEC_RELAY_H

#include "buf.h"
#include "control_server.h"

/* Serve one CTL_EXEC request (its payload in req) on the control connection sock. fds are the
 * client's stdin, stdout, stderr; they are closed before this returns. stop_fd becomes readable
 * when the daemon stops: the command is then killed. Replies CTL_EXIT or CTL_ERROR, or nothing
 * when the client went away (the remote process group is killed then). */
void exec_relay_run(int sock, struct buf *req, int fds[3], const struct control_hooks *hooks,
		    int stop_fd);

#endif
