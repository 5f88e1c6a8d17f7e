/* docker_endpoint.c: resolve the Docker daemon endpoint the way the docker CLI does — options,
 * DOCKER_HOST, DOCKER_CONTEXT, the current context in config.json with its meta.json and TLS
 * material, DOCKER_TLS_VERIFY/DOCKER_CERT_PATH — into a socket path or URL plus TLS files.
 * Contexts are found by scanning contexts/meta/<id>/meta.json for their "Name", which is the
 * same directory the CLI addresses by sha256(name). */
#include "docker/docker_endpoint.h"

#include <dirent.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_DOCKER_HOST   "unix:///var/run/docker.sock"
#define DEFAULT_REMOTE_SOCKET "/var/run/docker.sock"

static const char *env_nonempty(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

/* ${DOCKER_CONFIG:-~/.docker}, malloc'd; NULL when neither it nor HOME is set. */
static char *config_dir(void)
{
	const char *d = env_nonempty("DOCKER_CONFIG");
	if (d)
		return xstrdup(d);
	const char *home = env_nonempty("HOME");
	return home ? str_printf("%s/.docker", home) : NULL;
}

/* A malloc'd "dir/name" when that file exists, else NULL. */
static char *existing_file(const char *dir, const char *name)
{
	char *p = str_printf("%s/%s", dir, name);
	if (p && access(p, F_OK) == 0)
		return p;
	free(p);
	return NULL;
}

static void take_tls_files(struct docker_endpoint *ep, const char *dir)
{
	ep->ca_file = existing_file(dir, "ca.pem");
	ep->cert_file = existing_file(dir, "cert.pem");
	ep->key_file = existing_file(dir, "key.pem");
}

/* "h:p" or "[::1]:p" (not "[::1]") */
static bool authority_has_port(const char *auth, size_t n)
{
	for (size_t i = n; i > 0; i--) {
		if (auth[i - 1] == ':')
			return true;
		if (auth[i - 1] == ']')
			return false;
	}
	return false;
}

/* ssh://[USER@]HOST[:PORT][/PATH], as the docker CLI reads it: without PATH the remote daemon's
 * default socket. */
static int parse_ssh(struct docker_endpoint *ep, const char *host, struct err *e)
{
	const char *auth = host + 6;
	size_t n = strcspn(auth, "/?#");
	if (strpbrk(auth, "?#")) {
		err_set(e, "docker host '%s': query or fragment not supported in an ssh:// address",
			host);
		return -1;
	}
	const char *at = memrchr(auth, '@', n);
	if (at) {
		if (at == auth) {
			err_set(e, "docker host '%s': empty user name", host);
			return -1;
		}
		ep->ssh_user = str_printf("%.*s", (int)(at - auth), auth);
		n -= (size_t)(at + 1 - auth);
		auth = at + 1;
	}
	size_t hlen = n;
	if (authority_has_port(auth, n)) {
		const char *colon = memrchr(auth, ':', n);
		char *end = NULL;
		long port = strtol(colon + 1, &end, 10);
		if (end != auth + n || port <= 0 || port > 65535) {
			err_set(e, "docker host '%s': invalid port", host);
			return -1;
		}
		ep->ssh_port = (int)port;
		hlen = (size_t)(colon - auth);
	}
	if (hlen >= 2 && auth[0] == '[' && auth[hlen - 1] == ']') {
		auth++;
		hlen -= 2;
	}
	if (hlen == 0) {
		err_set(e, "docker host '%s': no host name", host);
		return -1;
	}
	ep->ssh_host = str_printf("%.*s", (int)hlen, auth);
	const char *path = strchr(host + 6, '/');
	ep->remote_socket = xstrdup(path && path[1] ? path : DEFAULT_REMOTE_SOCKET);
	/* libcurl connects to ssh_forward's local socket */
	ep->url_base = xstrdup("http://localhost");
	return 0;
}

/* Split a host string into socket path or URL base. */
static int parse_host(struct docker_endpoint *ep, const char *host, struct err *e)
{
	ep->host = xstrdup(host);
	if (!strncmp(host, "unix://", 7)) {
		if (!host[7]) {
			err_set(e, "docker host '%s': no socket path", host);
			return -1;
		}
		ep->socket_path = xstrdup(host + 7);
		ep->url_base = xstrdup("http://localhost");
		ep->tls = false;
		return 0;
	}
	if (!strncmp(host, "tcp://", 6)) {
		const char *auth = host + 6;
		size_t n = strcspn(auth, "/");
		if (n == 0) {
			err_set(e, "docker host '%s': no address", host);
			return -1;
		}
		if (authority_has_port(auth, n))
			ep->url_base =
			    str_printf("%s://%.*s", ep->tls ? "https" : "http", (int)n, auth);
		else
			ep->url_base = str_printf("%s://%.*s:%d", ep->tls ? "https" : "http",
						  (int)n, auth, ep->tls ? 2376 : 2375);
		return 0;
	}
	if (!strncmp(host, "ssh://", 6))
		return parse_ssh(ep, host, e);
	err_set(e,
		"docker host '%s': unsupported address (use unix:///PATH, tcp://HOST:PORT or "
		"ssh://[USER@]HOST[:PORT])",
		host);
	return -1;
}

/* The default context: DOCKER_HOST (or the given host) with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH. */
static int resolve_default(const char *host, struct docker_endpoint *ep, struct err *e)
{
	if (!host)
		host = env_nonempty("DOCKER_HOST");
	if (!host)
		host = DEFAULT_DOCKER_HOST;
	bool tls = env_nonempty("DOCKER_TLS_VERIFY") || env_nonempty("DOCKER_TLS");
	if (tls && !strncmp(host, "tcp://", 6)) {
		ep->tls = ep->tls_verify = true;
		char *cdir = config_dir();
		const char *certs = env_nonempty("DOCKER_CERT_PATH");
		if (certs || cdir)
			take_tls_files(ep, certs ? certs : cdir);
		free(cdir);
	}
	return parse_host(ep, host, e);
}

static char *read_current_context(const char *cdir)
{
	char *path = str_printf("%s/config.json", cdir);
	json_t *root = path ? json_load_file(path, 0, NULL) : NULL;
	free(path);
	const char *v = json_string_value(json_object_get(root, "currentContext"));
	char *out = v && *v ? xstrdup(v) : NULL;
	json_decref(root);
	return out;
}

/* Find contexts/meta/<id>/meta.json whose "Name" is name; returns its parsed JSON and *id. */
static json_t *find_context_meta(const char *cdir, const char *name, char **id)
{
	char *metadir = str_printf("%s/contexts/meta", cdir);
	DIR *d = metadir ? opendir(metadir) : NULL;
	json_t *found = NULL;
	struct dirent *de;
	while (d && !found && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *p = str_printf("%s/%s/meta.json", metadir, de->d_name);
		json_t *meta = p ? json_load_file(p, 0, NULL) : NULL;
		free(p);
		const char *n = json_string_value(json_object_get(meta, "Name"));
		if (n && !strcmp(n, name)) {
			found = meta;
			*id = xstrdup(de->d_name);
		} else {
			json_decref(meta);
		}
	}
	if (d)
		closedir(d);
	free(metadir);
	return found;
}

static int resolve_context(const char *name, struct docker_endpoint *ep, struct err *e)
{
	char *cdir = config_dir();
	char *id = NULL;
	json_t *meta = cdir ? find_context_meta(cdir, name, &id) : NULL;
	if (!meta) {
		err_set(e, "docker context \"%s\" does not exist (looked in %s/contexts/meta)",
			name, cdir ? cdir : "~/.docker");
		free(cdir);
		return -1;
	}
	json_t *dk = json_object_get(json_object_get(meta, "Endpoints"), "docker");
	const char *host = json_string_value(json_object_get(dk, "Host"));
	bool skip_verify = json_is_true(json_object_get(dk, "SkipTLSVerify"));
	ep->context = xstrdup(name);
	char *tlsdir = str_printf("%s/contexts/tls/%s/docker", cdir, id);
	if (tlsdir)
		take_tls_files(ep, tlsdir);
	free(tlsdir);
	int rc = -1;
	if (!host || !*host) {
		err_set(e, "docker context \"%s\" has no docker endpoint host", name);
	} else {
		bool tcp = !strncmp(host, "tcp://", 6);
		ep->tls = tcp && (ep->ca_file || ep->cert_file || skip_verify);
		ep->tls_verify = ep->tls && !skip_verify;
		rc = parse_host(ep, host, e);
	}
	json_decref(meta);
	free(id);
	free(cdir);
	return rc;
}

int docker_endpoint_resolve(const char *host_opt, const char *context_opt,
			    struct docker_endpoint *ep, struct err *e)
{
	memset(ep, 0, sizeof(*ep));
	if (host_opt && context_opt) {
		err_set(e, "options docker_host= and docker_context= cannot be used together");
		return -1;
	}
	const char *context = context_opt;
	char *current = NULL;
	if (!context && !host_opt && !env_nonempty("DOCKER_HOST")) {
		context = env_nonempty("DOCKER_CONTEXT");
		if (!context) {
			char *cdir = config_dir();
			current = cdir ? read_current_context(cdir) : NULL;
			free(cdir);
			context = current;
		}
	}
	int rc;
	if (context && strcmp(context, "default"))
		rc = resolve_context(context, ep, e);
	else
		rc = resolve_default(host_opt, ep, e);
	free(current);
	if (rc < 0)
		docker_endpoint_free(ep);
	return rc;
}

void docker_endpoint_free(struct docker_endpoint *ep)
{
	free(ep->host);
	free(ep->socket_path);
	free(ep->url_base);
	free(ep->ca_file);
	free(ep->cert_file);
	free(ep->key_file);
	free(ep->context);
	free(ep->ssh_host);
	free(ep->ssh_user);
	free(ep->remote_socket);
	memset(ep, 0, sizeof(*ep));
}
