/* docker_api.h: requests to the Docker Engine API over libcurl (unix socket, tcp, tcp+TLS, ssh),
 * the API version negotiated once with /_ping, JSON bodies via jansson, and the daemon's "message"
 * in every error. Also opens the raw "hijacked" connection that exec start upgrades to. Each call
 * uses its own curl handle, so any thread may call at any time. */
#ifndef SANDMOUNT_DOCKER_API_H
#define SANDMOUNT_DOCKER_API_H

#include <curl/curl.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "docker/docker_endpoint.h"
#include "util.h"

#define DOCKER_API_VERSION "1.41" /* the newest version we speak */

struct ssh_forward;

struct docker_api {
	struct docker_endpoint ep;
	struct ssh_forward *fwd; /* ssh:// endpoints: every connection is a forwarded channel */
	char version[16];	 /* negotiated: min(ours, the daemon's) */
	int connect_timeout_s;
};

/* Take ownership of ep, ping the daemon and negotiate the version (bounded by
 * cfg->connect_timeout_s). For an ssh:// endpoint, first open the SSH session with cfg's SSH
 * options (identity, known_hosts, ssh_config, accept_new_host_key, keepalive_s). On failure ep
 * is still owned by api: call docker_api_free. */
int docker_api_connect(struct docker_api *api, struct docker_endpoint *ep,
		       const struct sandbox_cfg *cfg, struct err *e);
void docker_api_free(struct docker_api *api);

/* GET /_ping with a deadline; *rtt_us gets the round trip. 0 or -1 with e set. */
int docker_api_ping(struct docker_api *api, int64_t deadline, int64_t *rtt_us, struct err *e);

/* One request to /vX.Y<path> with an optional body (JSON: ctype NULL and body a json_t via
 * docker_api_json; raw: ctype given). The response body goes to resp (may be NULL). Returns the
 * HTTP status; a status >= 400 also sets e to "<what>: <daemon message>". -1 with e set when the
 * daemon could not be reached or the deadline passed. */
long docker_api_request(struct docker_api *api, const char *method, const char *path,
			const char *ctype, const void *body, size_t body_len, struct buf *resp,
			int64_t deadline, struct err *e);

/* A JSON request: body may be NULL; *out (may be NULL) gets the parsed JSON response. Returns
 * the status like docker_api_request; what = context for errors ("exec create"). */
long docker_api_json(struct docker_api *api, const char *method, const char *path, json_t *body,
		     json_t **out, const char *what, int64_t deadline, struct err *e);

/* POST path with a JSON body (NULL: none) and take over the connection as a raw byte stream (the
 * daemon answers "101 UPGRADED" or "200 OK" and then streams). *early gets bytes that arrived after
 * the response headers. Returns a CURL handle in connect-only mode for curl_easy_send/recv, or NULL
 * with e set. */
CURL *docker_api_hijack(struct docker_api *api, const char *path, json_t *body, struct buf *early,
			int64_t deadline, struct err *e);

/* Wait until the connect-only handle is readable (want_write: writable) or the timeout (ms, -1
 * none) passes. Returns 1 ready, 0 timeout, -1 error. */
int docker_raw_wait(CURL *h, bool want_write, int timeout_ms);

/* Send EOF on the raw stream and keep reading: shutdown(SHUT_WR) on a plain socket, a TLS
 * close_notify on an OpenSSL connection (the daemon's Go TLS then reads EOF). 0 or -1. */
int docker_raw_close_write(CURL *h);

/* "%2F"-style escaping of a path or query component; malloc'd. */
char *docker_escape(const char *s);

/* The parsers of docker_api_hijack's response (separate for tests/fuzz): the length of its head
 * once "\r\n\r\n" has arrived in `in` (0: not yet); the HTTP status of a complete head (-1: not
 * an HTTP/1.x status line); the length of an error body (Content-Length, else 4096); and the
 * error set from an error response: "<what>: <message>" from its JSON {"message": "..."}. */
size_t docker_head_len(const struct buf *in);
int docker_head_status(const struct buf *in, size_t head_len);
size_t docker_error_body_len(const struct buf *in, size_t head_len);
void docker_http_error(long status, const struct buf *body, const char *what, struct err *e);

#endif
