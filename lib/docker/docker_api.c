/* docker_api.c: the Docker Engine API client — libcurl easy handles on a unix socket, tcp,
 * tcp+TLS or ssh (libcurl connects to ssh_forward's local socket, each connection a channel to
 * the daemon's socket on the SSH host); the version negotiated with /_ping; errors that quote the
 * daemon's "message"; and the hijacked connection of exec start (a connect-only handle on which we
 * write the HTTP request and parse the response head ourselves, then keep the socket as a raw
 * stream). */
#include "docker/docker_api.h"

#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ssh/ssh_forward.h"

#define MAX_RESPONSE (16u << 20) /* inspect/list answers are small; bounded anyway */
#define MAX_HEAD     65536

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t collect_body(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	size_t len = size * n;
	if (b->len + len > MAX_RESPONSE)
		return 0;
	buf_put_bytes(b, p, len);
	return buf_ok(b) ? len : 0;
}

static size_t discard_body(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

/* "API-Version: 1.41" from /_ping's headers. */
static size_t collect_version(char *p, size_t size, size_t n, void *arg)
{
	char *version = arg;
	size_t len = size * n;
	static const char key[] = "api-version:";
	if (len > sizeof(key) - 1 && !strncasecmp(p, key, sizeof(key) - 1)) {
		size_t i = sizeof(key) - 1;
		while (i < len && p[i] == ' ')
			i++;
		size_t j = i;
		while (j < len && ((p[j] >= '0' && p[j] <= '9') || p[j] == '.') && j - i < 15)
			j++;
		memcpy(version, p + i, j - i);
		version[j - i] = 0;
	}
	return len;
}

/* One transfer's error texts: curl's, and the SSH hop's when it could not carry a connection. */
struct call {
	char errbuf[CURL_ERROR_SIZE];
	unsigned fwd_failures; /* ssh_forward_failures() before the transfer */
};

/* A handle for url with the endpoint's transport and TLS settings; call receives the errors
 * and must outlive the transfer. */
static CURL *easy_new(struct docker_api *api, const char *url, struct call *call)
{
	pthread_once(&curl_once, curl_init_once);
	CURL *h = curl_easy_init();
	if (!h)
		return NULL;
	const struct docker_endpoint *ep = &api->ep;
	call->errbuf[0] = 0;
	call->fwd_failures = api->fwd ? ssh_forward_failures(api->fwd) : 0;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, call->errbuf);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)api->connect_timeout_s * 1000);
	curl_easy_setopt(h, CURLOPT_PROXY, "");
	if (ep->socket_path)
		curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, ep->socket_path);
	if (api->fwd)
		curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, ssh_forward_local_path(api->fwd));
	if (ep->tls) {
		if (ep->ca_file)
			curl_easy_setopt(h, CURLOPT_CAINFO, ep->ca_file);
		if (ep->cert_file)
			curl_easy_setopt(h, CURLOPT_SSLCERT, ep->cert_file);
		if (ep->key_file)
			curl_easy_setopt(h, CURLOPT_SSLKEY, ep->key_file);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, ep->tls_verify ? 1L : 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, ep->tls_verify ? 2L : 0L);
	}
	return h;
}

static bool is_tls_error(CURLcode rc)
{
	return rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CONNECT_ERROR ||
	       rc == CURLE_SSL_CACERT_BADFILE || rc == CURLE_SSL_CERTPROBLEM ||
	       rc == CURLE_SSL_ISSUER_ERROR || rc == CURLE_SSL_CRL_BADFILE;
}

/* One clear line for a transfer that failed below HTTP. */
static void set_curl_error(struct docker_api *api, CURL *h, CURLcode rc, const struct call *call,
			   struct err *e)
{
	const char *why = call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc);
	const struct docker_endpoint *ep = &api->ep;
	long os_errno = 0;
	struct err fwd;
	if (api->fwd && ssh_forward_failures(api->fwd) != call->fwd_failures) {
		/* the SSH hop closed the connection at once: its reason is the one */
		ssh_forward_last_error(api->fwd, &fwd);
		why = fwd.msg;
	}
	/* curl names "localhost port 80" for a unix socket: the OS error says more */
	else if (ep->socket_path && rc == CURLE_COULDNT_CONNECT &&
		 curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno) == CURLE_OK && os_errno)
		why = strerror((int)os_errno);
	if (is_tls_error(rc))
		err_set(e,
			"TLS with the Docker daemon at %s failed: %s (CA: %s; set DOCKER_CERT_PATH "
			"or the context's TLS files to the daemon's CA)",
			ep->host, why, ep->ca_file ? ep->ca_file : "the system CA store");
	else if (rc == CURLE_OPERATION_TIMEDOUT)
		err_set(e, "the Docker daemon at %s did not answer in time: %s", ep->host, why);
	else
		err_set(e, "cannot reach the Docker daemon at %s: %s", ep->host, why);
}

void docker_http_error(long status, const struct buf *body, const char *what, struct err *e)
{
	json_t *j =
	    body && body->len ? json_loadb((const char *)body->data, body->len, 0, NULL) : NULL;
	const char *msg = json_string_value(json_object_get(j, "message"));
	char fallback[64];
	if (!msg) {
		snprintf(fallback, sizeof(fallback), "the Docker daemon answered HTTP %ld", status);
		msg = fallback;
	}
	if (what)
		err_set(e, "%s: %s", what, msg);
	else
		err_set(e, "%s", msg);
	json_decref(j);
}

long docker_api_request(struct docker_api *api, const char *method, const char *path,
			const char *ctype, const void *body, size_t body_len, struct buf *resp,
			int64_t deadline, struct err *e)
{
	int64_t left = deadline ? deadline - now_ms() : 0;
	if (deadline && left <= 0) {
		err_set(e, "the Docker daemon at %s did not answer in time", api->ep.host);
		return -1;
	}
	char *url = str_printf("%s/v%s%s", api->ep.url_base, api->version, path);
	struct call call;
	CURL *h = url ? easy_new(api, url, &call) : NULL;
	free(url);
	if (!h) {
		err_set(e, "out of memory");
		return -1;
	}
	struct buf local;
	buf_init(&local);
	struct buf *out = resp ? resp : &local;
	struct curl_slist *hdr = NULL;
	if (ctype) {
		char *ct = str_printf("Content-Type: %s", ctype);
		hdr = curl_slist_append(hdr, ct);
		free(ct);
	}
	hdr = curl_slist_append(hdr, "Expect:");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	if (body || !strcmp(method, "POST") || !strcmp(method, "PUT")) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	}
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
	if (deadline)
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)left);
	long status = -1;
	CURLcode rc = curl_easy_perform(h);
	if (rc != CURLE_OK) {
		set_curl_error(api, h, rc, &call, e);
	} else {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		if (status >= 400)
			docker_http_error(status, out, NULL, e);
	}
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	buf_free(&local);
	return status;
}

long docker_api_json(struct docker_api *api, const char *method, const char *path, json_t *body,
		     json_t **out, const char *what, int64_t deadline, struct err *e)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct buf resp;
	buf_init(&resp);
	long status = docker_api_request(api, method, path, body ? "application/json" : NULL, text,
					 text ? strlen(text) : 0, &resp, deadline, e);
	free(text);
	if (out)
		*out = NULL;
	if (status >= 400)
		docker_http_error(status, &resp, what, e);
	else if (status >= 0 && out && resp.len)
		*out = json_loadb((const char *)resp.data, resp.len, 0, NULL);
	buf_free(&resp);
	return status;
}

/* 1.40 < 1.41; versions are "major.minor". */
static int version_cmp(const char *a, const char *b)
{
	unsigned amaj = 0, amin = 0, bmaj = 0, bmin = 0;
	sscanf(a, "%u.%u", &amaj, &amin);
	sscanf(b, "%u.%u", &bmaj, &bmin);
	if (amaj != bmaj)
		return amaj < bmaj ? -1 : 1;
	return amin < bmin ? -1 : amin > bmin;
}

static int ping(struct docker_api *api, int64_t deadline, int64_t *rtt_us, char *version,
		struct err *e)
{
	char *url = str_printf("%s/_ping", api->ep.url_base);
	struct call call;
	CURL *h = url ? easy_new(api, url, &call) : NULL;
	free(url);
	if (!h) {
		err_set(e, "out of memory");
		return -1;
	}
	int64_t left = deadline - now_ms();
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(left > 1 ? left : 1));
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_body);
	if (version) {
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, collect_version);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, version);
	}
	int64_t t0 = now_ms();
	CURLcode rc = curl_easy_perform(h);
	int rv = 0;
	long status = 0;
	if (rc != CURLE_OK) {
		set_curl_error(api, h, rc, &call, e);
		rv = -1;
	} else if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status), status != 200) {
		err_set(e, "%s does not look like a Docker daemon (/_ping answered HTTP %ld)%s",
			api->ep.host, status,
			status == 400 && !api->ep.tls
			    ? "; if it is a TLS port, set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH"
			    : "");
		rv = -1;
	} else if (rtt_us) {
		curl_off_t t = 0;
		if (curl_easy_getinfo(h, CURLINFO_TOTAL_TIME_T, &t) == CURLE_OK)
			*rtt_us = (int64_t)t;
		else
			*rtt_us = (now_ms() - t0) * 1000;
	}
	curl_easy_cleanup(h);
	return rv;
}

int docker_api_ping(struct docker_api *api, int64_t deadline, int64_t *rtt_us, struct err *e)
{
	return ping(api, deadline, rtt_us, NULL, e);
}

/* The SSH session of an ssh:// endpoint, with the sandbox's SSH options. */
static int open_forward(struct docker_api *api, const struct sandbox_cfg *cfg, struct err *e)
{
	const struct docker_endpoint *ep = &api->ep;
	struct sandbox_cfg hop = *cfg;
	hop.host = ep->ssh_host;
	hop.user = ep->ssh_user;
	hop.port = ep->ssh_port;
	struct err why;
	if (ssh_forward_open(&hop, ep->remote_socket, &api->fwd, &why) < 0) {
		err_set(e, "cannot reach the Docker daemon at %s: %s", ep->host, why.msg);
		return -1;
	}
	return 0;
}

int docker_api_connect(struct docker_api *api, struct docker_endpoint *ep,
		       const struct sandbox_cfg *cfg, struct err *e)
{
	memset(api, 0, sizeof(*api));
	api->ep = *ep;
	memset(ep, 0, sizeof(*ep));
	int timeout_s = cfg->connect_timeout_s > 0 ? cfg->connect_timeout_s : 10;
	api->connect_timeout_s = timeout_s;
	if (api->ep.ssh_host && open_forward(api, cfg, e) < 0)
		return -1;
	char daemon_version[16] = "";
	if (ping(api, deadline_in((int64_t)timeout_s * 1000), NULL, daemon_version, e) < 0)
		return -1;
	snprintf(api->version, sizeof(api->version), "%s", DOCKER_API_VERSION);
	if (daemon_version[0] && version_cmp(daemon_version, DOCKER_API_VERSION) < 0)
		snprintf(api->version, sizeof(api->version), "%s", daemon_version);
	return 0;
}

void docker_api_free(struct docker_api *api)
{
	ssh_forward_close(api->fwd);
	api->fwd = NULL;
	docker_endpoint_free(&api->ep);
}

/* ---- the hijacked connection ---- */

int docker_raw_wait(CURL *h, bool want_write, int timeout_ms)
{
	curl_socket_t s = CURL_SOCKET_BAD;
	if (curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &s) != CURLE_OK || s == CURL_SOCKET_BAD)
		return -1;
	struct pollfd p = {.fd = s, .events = want_write ? POLLOUT : POLLIN};
	int n = poll(&p, 1, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -1;
	return n > 0;
}

int docker_raw_close_write(CURL *h)
{
	curl_socket_t s = CURL_SOCKET_BAD;
	if (curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &s) != CURLE_OK || s == CURL_SOCKET_BAD)
		return -1;
	struct curl_tlssessioninfo *tls = NULL;
	if (curl_easy_getinfo(h, CURLINFO_TLS_SSL_PTR, &tls) != CURLE_OK || !tls ||
	    tls->backend == CURLSSLBACKEND_NONE || !tls->internals)
		return shutdown(s, SHUT_WR);
	if (tls->backend != CURLSSLBACKEND_OPENSSL)
		return -1;
	/* libcurl exposes its OpenSSL SSL*; SSL_shutdown sends close_notify and leaves reading
	 * possible. Looked up at run time: libssl is loaded with libcurl, and sandmount does not
	 * link it itself. */
	int (*ssl_shutdown)(void *) = (int (*)(void *))dlsym(RTLD_DEFAULT, "SSL_shutdown");
	if (!ssl_shutdown)
		return -1;
	return ssl_shutdown(tls->internals) < 0 ? -1 : 0;
}

static int raw_send_all(CURL *h, const char *p, size_t n, int64_t deadline)
{
	while (n) {
		size_t sent = 0;
		CURLcode rc = curl_easy_send(h, p, n, &sent);
		if (rc == CURLE_AGAIN) {
			if (docker_raw_wait(h, true, deadline_poll_timeout(deadline)) <= 0)
				return -1;
			continue;
		}
		if (rc != CURLE_OK)
			return -1;
		p += sent;
		n -= sent;
	}
	return 0;
}

size_t docker_head_len(const struct buf *in)
{
	const char *end = in->len >= 4 ? memmem(in->data, in->len, "\r\n\r\n", 4) : NULL;
	return end ? (size_t)(end + 4 - (const char *)in->data) : 0;
}

int docker_head_status(const struct buf *in, size_t head_len)
{
	/* sscanf on the status line alone: on the raw buffer, its whitespace directives would go
	 * on past the head ("HTTP/1.1\r\n\r\n" then digits) and past the bytes received. */
	char line[64];
	const uint8_t *eol = memchr(in->data, '\r', head_len);
	size_t n = eol ? (size_t)(eol - in->data) : head_len;
	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	memcpy(line, in->data, n);
	line[n] = 0;
	int status = 0;
	return sscanf(line, "HTTP/1.%*d %d", &status) == 1 ? status : -1;
}

size_t docker_error_body_len(const struct buf *in, size_t head_len)
{
	const char *cl = memmem(in->data, head_len, "\r\nContent-Length:", 17);
	return cl ? strtoul(cl + 17, NULL, 10) : 4096;
}

/* Read until the response head is complete; returns the head's length, or -1. */
static long raw_read_head(CURL *h, struct buf *in, int64_t deadline)
{
	for (;;) {
		size_t head = docker_head_len(in);
		if (head)
			return (long)head;
		if (in->len > MAX_HEAD || buf_reserve(in, 4096) < 0)
			return -1;
		size_t got = 0;
		CURLcode rc = curl_easy_recv(h, in->data + in->len, 4096, &got);
		if (rc == CURLE_AGAIN) {
			if (docker_raw_wait(h, false, deadline_poll_timeout(deadline)) <= 0)
				return -1;
			continue;
		}
		if (rc != CURLE_OK || got == 0)
			return -1;
		in->len += got;
	}
}

/* The rest of an error response (Content-Length bytes, or until EOF/deadline). */
static void raw_read_error_body(CURL *h, struct buf *in, size_t head_len, int64_t deadline)
{
	size_t want = docker_error_body_len(in, head_len);
	while (in->len - head_len < want && in->len < MAX_HEAD && buf_reserve(in, 4096) == 0) {
		size_t got = 0;
		CURLcode rc = curl_easy_recv(h, in->data + in->len, 4096, &got);
		if (rc == CURLE_AGAIN) {
			if (docker_raw_wait(h, false, deadline_poll_timeout(deadline)) <= 0)
				return;
			continue;
		}
		if (rc != CURLE_OK || got == 0)
			return;
		in->len += got;
	}
}

CURL *docker_api_hijack(struct docker_api *api, const char *path, json_t *body, struct buf *early,
			int64_t deadline, struct err *e)
{
	struct call call;
	CURL *h = easy_new(api, api->ep.url_base, &call);
	char *text = body ? json_dumps(body, JSON_COMPACT) : xstrdup("");
	char *req = text ? str_printf("POST /v%s%s HTTP/1.1\r\nHost: localhost\r\n"
				      "User-Agent: sandmount/" SANDMOUNT_VERSION "\r\n"
				      "Content-Type: application/json\r\nConnection: Upgrade\r\n"
				      "Upgrade: tcp\r\nContent-Length: %zu\r\n\r\n%s",
				      api->version, path, strlen(text), text)
			 : NULL;
	free(text);
	if (!h || !req) {
		err_set(e, "out of memory");
		goto fail;
	}
	curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
	CURLcode rc = curl_easy_perform(h);
	if (rc != CURLE_OK) {
		set_curl_error(api, h, rc, &call, e);
		goto fail;
	}
	struct buf in;
	buf_init(&in);
	long head = -1;
	if (raw_send_all(h, req, strlen(req), deadline) == 0)
		head = raw_read_head(h, &in, deadline);
	int status = head < 0 ? -1 : docker_head_status(&in, (size_t)head);
	if (status < 0) {
		if (api->fwd && ssh_forward_failures(api->fwd) != call.fwd_failures)
			set_curl_error(api, h, CURLE_GOT_NOTHING, &call, e);
		else
			err_set(e, "the Docker daemon at %s did not answer the exec start request",
				api->ep.host);
		buf_free(&in);
		goto fail;
	}
	if (status != 101 && status != 200) {
		raw_read_error_body(h, &in, (size_t)head, deadline);
		struct buf msg = {.data = in.data + head, .len = in.len - (size_t)head};
		docker_http_error(status, &msg, "exec start", e);
		buf_free(&in);
		goto fail;
	}
	buf_put_bytes(early, in.data + head, in.len - (size_t)head);
	buf_free(&in);
	free(req);
	return h;
fail:
	free(req);
	if (h)
		curl_easy_cleanup(h);
	return NULL;
}

char *docker_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1), *w = out;
	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			*w++ = (char)c;
		} else {
			*w++ = '%';
			*w++ = hex[c >> 4];
			*w++ = hex[c & 15];
		}
	}
	*w = 0;
	return out;
}
