/* docker_endpoint.h: which Docker daemon to talk to, resolved as the docker CLI does it:
 * -o docker_host= / docker_context=, else DOCKER_HOST, DOCKER_CONTEXT, the current context of
 * ${DOCKER_CONFIG:-~/.docker}/config.json, else unix:///var/run/docker.sock. Pure logic on the
 * environment and files; no network. */
#ifndef SANDMOUNT_DOCKER_ENDPOINT_H
#define SANDMOUNT_DOCKER_ENDPOINT_H

#include <stdbool.h>
#include "util.h"

struct docker_endpoint {
	char *host;        /* as given: "unix:///var/run/docker.sock", "tcp://h:2376" */
	char *socket_path; /* unix: the socket file; NULL for tcp */
	char *url_base;    /* "http://localhost", "https://h:2376": what libcurl connects to */
	bool tls;
	bool tls_verify;   /* verify the daemon's certificate (always, unless a context skips it) */
	char *ca_file;     /* PEM files; NULL: not given (curl's default CA store for ca_file) */
	char *cert_file;
	char *key_file;
	char *context;     /* the context it came from; NULL for DOCKER_HOST / the default */
};

/* host_opt / context_opt: the -o docker_host= / docker_context= values (may be NULL).
 * Returns 0 or -1 with e set (an unknown context, an unsupported scheme...). */
int docker_endpoint_resolve(const char *host_opt, const char *context_opt,
			    struct docker_endpoint *ep, struct err *e);
void docker_endpoint_free(struct docker_endpoint *ep);

#endif
