/* ssh_forward.h: a local unix socket whose every connection is carried to a unix socket on a
 * remote host — one direct-streamlocal@openssh.com channel each, over one SSH session — as the
 * Docker transport needs for ssh://HOST (the daemon's socket on HOST). libcurl connects to the
 * local socket like to any daemon socket. The session is opened with the SSH transport's code
 * (config, host key, authentication, keepalive) and reopened when it was lost. */
#ifndef SANDMOUNT_SSH_FORWARD_H
#define SANDMOUNT_SSH_FORWARD_H

#include "config.h"
#include "util.h"

struct ssh_forward;

/* Connect to cfg's host (host, user, port, identity, known_hosts, ssh_config,
 * accept_new_host_key, connect_timeout_s, keepalive_s) for connections to socket_path there,
 * and start listening locally. Returns 0 or -1 with e set (unreachable, host key,
 * authentication). */
int ssh_forward_open(const struct sandbox_cfg *cfg, const char *socket_path,
		     struct ssh_forward **out, struct err *e);
/* The local socket (in the runtime directory, 0700). */
const char *ssh_forward_local_path(const struct ssh_forward *f);
/* How many local connections could not be carried so far (they were closed at once), and the
 * reason of the last one: "the remote socket PATH: ...", "authentication failed ..." */
unsigned ssh_forward_failures(struct ssh_forward *f);
void ssh_forward_last_error(struct ssh_forward *f, struct err *e);
/* Stops listening and ends the session; connections still open see EOF. NULL is ignored. */
void ssh_forward_close(struct ssh_forward *f);

#endif
