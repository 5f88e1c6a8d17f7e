/* docker_endpoint.h: which Docker daemon to talk to, resolved as the docker CLI does it:
 * -o docker_host= / docker_context=, else DOCKER_HOST, DOCKER_CONTEXT, the current context of
 * ${DOCKER_CONFIG:-~/.docker}/config.json, else unix:///var/run/docker.sock. Hosts: unix://, tcp://
 * (TLS by DOCKER_TLS_VERIFY or the context), ssh://. Pure logic on the
 * environment and files; no network. */
#ifndef SANDMOUNT_DOCKER_ENDPOINT_H
#define SANDMOUNT_DOCKER_ENDPOINT_H

#include <stdbool.h>
#include "util.h"

struct docker_endpoint {
	char *host; /* as given: "unix:///var/run/docker.sock", "tcp://h:2376", "ssh://u@h" */
	char *socket_path; /* unix: the socket file; NULL for tcp and ssh */
	char *url_base;	   /* "http://localhost", "https://h:2376": what libcurl connects to */
	/* ssh://[USER@]HOST[:PORT][/PATH]: the daemon's socket on HOST, reached through a
	 * direct-streamlocal channel of an SSH session (ssh_forward.h) */
	char *ssh_host;	     /* NULL unless ssh:// */
	char *ssh_user;	     /* NULL: from ~/.ssh/config or the local user name */
	int ssh_port;	     /* 0: from ~/.ssh/config or 22 */
	char *remote_socket; /* the socket path on HOST: PATH, else /var/run/docker.sock */
	bool tls;
	bool tls_verify; /* verify the daemon's certificate (always, unless a context skips it) */
	char *ca_file;	 /* PEM files; NULL: not given (curl's default CA store for ca_file) */
	char *cert_file;
	char *key_file;
	char *context; /* the context it came from; NULL for DOCKER_HOST / the default */
};

/* host_opt / context_opt: the -o docker_host= / docker_context= values (may be NULL).
 * Returns 0 or -1 with e set (an unknown context, an unsupported scheme...). */
int docker_endpoint_resolve(const char *host_opt, const char *context_opt,
			    struct docker_endpoint *ep, struct err *e);
void docker_endpoint_free(struct docker_endpoint *ep);

#endif
