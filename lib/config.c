/* config.c: turns a SANDBOX argument (URL or config-file name) and -o options into a
 * struct sandbox_cfg. The config file is JSON (jansson):
 *   {"local_fallback": false, "env_allow": ["PATTERN", ...],
 *    "sandboxes": {"NAME": {"url": "ssh://...", "mountpoint": "/path",
 *                           "options": {"identity": "...", "accept_new_host_key": true}}}} */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void config_defaults(struct sandbox_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->connect_timeout_s = 10;
	cfg->keepalive_s = 15;
	cfg->op_timeout_s = 30;
	cfg->cache_timeout_s = 2.0;
	cfg->limits = mount_limits_default();
}

static void strv_free(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}

void config_free(struct sandbox_cfg *cfg)
{
	char **strs[] = {&cfg->name,	    &cfg->remote_dir,	  &cfg->mountpoint,
			 &cfg->host,	    &cfg->user,		  &cfg->identity,
			 &cfg->known_hosts, &cfg->ssh_config,	  &cfg->container,
			 &cfg->docker_host, &cfg->docker_context, &cfg->agent_dir,
			 &cfg->sftp_server, &cfg->container_spec, &cfg->session};
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		free(*strs[i]);
	strv_free(cfg->env_allow);
	config_defaults(cfg);
}

static void set_str(char **field, const char *v)
{
	free(*field);
	*field = v ? xstrdup(v) : NULL;
}

static char *home_path(const char *rest)
{
	const char *home = getenv("HOME");
	if (!home || !*home)
		return NULL;
	return str_printf("%s/%s", home, rest);
}

char *config_file_path(void)
{
	const char *env = getenv("SANDMOUNT_CONFIG");
	if (env && *env)
		return xstrdup(env);
	char *user = home_path(".config/sandmount/config.json");
	if (user && access(user, F_OK) == 0)
		return user;
	free(user);
	if (access("/etc/sandmount/config.json", F_OK) == 0)
		return xstrdup("/etc/sandmount/config.json");
	return NULL;
}

/* ---- numbers and options ---- */

static int parse_int(const char *key, const char *v, long lo, long hi, int *out, struct err *e)
{
	char *end;
	errno = 0;
	long n = v ? strtol(v, &end, 10) : 0;
	if (!v || !*v || *end || errno || n < lo || n > hi) {
		err_set(e, "option %s: expected a whole number from %ld to %ld, got '%s'", key, lo,
			hi, v ? v : "");
		return -1;
	}
	*out = (int)n;
	return 0;
}

static int parse_u64(const char *key, const char *v, uint64_t lo, uint64_t hi, uint64_t *out,
		     struct err *e)
{
	char *end;
	errno = 0;
	unsigned long long n = v && *v != '-' ? strtoull(v, &end, 10) : 0;
	if (!v || !*v || *v == '-' || *end || errno || n < lo || n > hi) {
		err_set(e, "option %s: expected a whole number from %llu to %llu, got '%s'", key,
			(unsigned long long)lo, (unsigned long long)hi, v ? v : "");
		return -1;
	}
	*out = n;
	return 0;
}

/* The mount_limits.h keys; 1 when key is not one of them. */
static int apply_limit(struct mount_limits *l, const char *key, const char *v, struct err *e)
{
	static const struct {
		const char *key;
		size_t off;
		uint64_t lo, hi;
	} keys[] = {
	    {"max_dir_entries", offsetof(struct mount_limits, max_dir_entries), 16, 100000000},
	    {"max_listing_bytes", offsetof(struct mount_limits, max_listing_bytes), 65536,
	     16ull << 30},
	    {"max_name", offsetof(struct mount_limits, max_name), 1, 255},
	    {"max_link_target", offsetof(struct mount_limits, max_link_target), 1, 1 << 20},
	    {"max_packet", offsetof(struct mount_limits, max_packet), 272 * 1024, 64 << 20},
	    {"max_inflight", offsetof(struct mount_limits, max_inflight), 256, 1 << 20},
	};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (strcmp(key, keys[i].key))
			continue;
		uint64_t *field = (uint64_t *)((char *)l + keys[i].off);
		return parse_u64(key, v, keys[i].lo, keys[i].hi, field, e);
	}
	return 1;
}

static int parse_bool(const char *key, const char *v, bool *out, struct err *e)
{
	if (!v || !strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on")) {
		*out = true;
		return 0;
	}
	if (!strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off")) {
		*out = false;
		return 0;
	}
	err_set(e, "option %s: expected yes or no, got '%s'", key, v);
	return -1;
}

static int parse_seconds(const char *key, const char *v, double *out, struct err *e)
{
	char *end;
	double d = v ? strtod(v, &end) : -1;
	if (!v || !*v || *end || d < 0 || d > 86400) {
		err_set(e, "option %s: expected seconds (0 to 86400), got '%s'", key, v ? v : "");
		return -1;
	}
	*out = d;
	return 0;
}

static void append_fuse_opt(char **fuse_opts, const char *key, const char *v)
{
	char *opt = v ? str_printf("%s=%s", key, v) : xstrdup(key);
	char *joined = *fuse_opts ? str_printf("%s,%s", *fuse_opts, opt) : xstrdup(opt);
	free(opt);
	free(*fuse_opts);
	*fuse_opts = joined;
}

/* One option; v is NULL for a bare flag. */
static int apply_option(struct sandbox_cfg *cfg, const char *key, const char *v, char **fuse_opts,
			struct err *e)
{
	static const struct {
		const char *key;
		size_t off;
	} strs[] = {
	    {"identity", offsetof(struct sandbox_cfg, identity)},
	    {"known_hosts", offsetof(struct sandbox_cfg, known_hosts)},
	    {"user", offsetof(struct sandbox_cfg, user)},
	    {"ssh_config", offsetof(struct sandbox_cfg, ssh_config)},
	    {"docker_host", offsetof(struct sandbox_cfg, docker_host)},
	    {"docker_context", offsetof(struct sandbox_cfg, docker_context)},
	    {"agent_dir", offsetof(struct sandbox_cfg, agent_dir)},
	    {"sftp_server", offsetof(struct sandbox_cfg, sftp_server)},
	};
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		if (strcmp(key, strs[i].key))
			continue;
		if (!v || !*v) {
			err_set(e, "option %s needs a value (%s=...)", key, key);
			return -1;
		}
		set_str((char **)((char *)cfg + strs[i].off), v);
		return 0;
	}
	int lim = apply_limit(&cfg->limits, key, v, e);
	if (lim <= 0)
		return lim;
	if (!strcmp(key, "port"))
		return parse_int(key, v, 1, 65535, &cfg->port, e);
	if (!strcmp(key, "connect_timeout"))
		return parse_int(key, v, 1, 3600, &cfg->connect_timeout_s, e);
	if (!strcmp(key, "keepalive"))
		return parse_int(key, v, 1, 3600, &cfg->keepalive_s, e);
	if (!strcmp(key, "op_timeout"))
		return parse_int(key, v, 1, 3600, &cfg->op_timeout_s, e);
	if (!strcmp(key, "cache_timeout"))
		return parse_seconds(key, v, &cfg->cache_timeout_s, e);
	if (!strcmp(key, "agent_max_watches"))
		return parse_int(key, v, 0, 1 << 24, &cfg->agent_max_watches, e);
	if (!strcmp(key, "accept_new_host_key"))
		return parse_bool(key, v, &cfg->accept_new_host_key, e);
	if (!strcmp(key, "agent")) {
		if (v && (!strcmp(v, "off") || !strcmp(v, "on") || !strcmp(v, "auto"))) {
			cfg->agent_off = !strcmp(v, "off");
			cfg->agent_on = !strcmp(v, "on");
			return 0;
		}
		err_set(e, "option agent: use agent=auto, agent=on or agent=off");
		return -1;
	}
	if (!strcmp(key, "allow_other"))
		return parse_bool(key, v, &cfg->allow_other, e);
	if (!strcmp(key, "owners")) {
		if (v && (!strcmp(v, "user") || !strcmp(v, "real"))) {
			cfg->owners_real = !strcmp(v, "real");
			return 0;
		}
		err_set(e, "option owners: use owners=user or owners=real");
		return -1;
	}
	if (!strcmp(key, "prefetch")) {
		if (v && (!strcmp(v, "on") || !strcmp(v, "off"))) {
			cfg->prefetch_off = !strcmp(v, "off");
			return 0;
		}
		err_set(e, "option prefetch: use prefetch=on or prefetch=off");
		return -1;
	}
	if (!strcmp(key, "StrictHostKeyChecking")) {
		if (v && !strcmp(v, "accept-new")) {
			cfg->accept_new_host_key = true;
			return 0;
		}
		if (v && !strcmp(v, "yes"))
			return 0;
		err_set(e,
			"option StrictHostKeyChecking: only 'yes' or 'accept-new' are supported");
		return -1;
	}
	if (!fuse_opts) {
		err_set(e, "unknown option '%s'", key);
		return -1;
	}
	append_fuse_opt(fuse_opts, key, v);
	return 0;
}

int config_apply_options(struct sandbox_cfg *cfg, const char *opts, char **fuse_opts, struct err *e)
{
	if (!opts)
		return 0;
	char *copy = xstrdup(opts);
	char *item = copy, *w = copy;
	int rc = 0;
	/* Split on unescaped commas; "\," stands for a literal comma. */
	for (char *r = copy;; r++) {
		if (*r == '\\' && r[1] == ',') {
			*w++ = ',';
			r++;
			continue;
		}
		if (*r != ',' && *r != 0) {
			*w++ = *r;
			continue;
		}
		bool last = *r == 0;
		*w = 0;
		if (*item) {
			char *eq = strchr(item, '=');
			if (eq)
				*eq = 0;
			rc = apply_option(cfg, item, eq ? eq + 1 : NULL, fuse_opts, e);
			if (rc < 0)
				break;
		}
		if (last)
			break;
		item = w = r + 1;
	}
	free(copy);
	return rc;
}

/* ---- URLs ---- */

static int parse_ssh_authority(struct sandbox_cfg *cfg, const char *auth, size_t n, struct err *e)
{
	char *a = strndup(auth, n);
	char *host = a;
	char *at = strrchr(a, '@');
	if (at) {
		*at = 0;
		if (*a)
			set_str(&cfg->user, a);
		host = at + 1;
	}
	char *port = NULL;
	if (*host == '[') {
		char *close = strchr(host, ']');
		if (!close) {
			err_set(e, "%s: unterminated [ in host", cfg->name);
			free(a);
			return -1;
		}
		*close = 0;
		host++;
		if (close[1] == ':')
			port = close + 2;
	} else if ((port = strchr(host, ':'))) {
		*port++ = 0;
	}
	int rc = 0;
	if (!*host) {
		err_set(e, "%s: no host name", cfg->name);
		rc = -1;
	} else {
		set_str(&cfg->host, host);
		if (port)
			rc = parse_int("port", port, 1, 65535, &cfg->port, e);
	}
	free(a);
	return rc;
}

static int parse_url(struct sandbox_cfg *cfg, const char *url, struct err *e)
{
	const char *rest;
	if (!strncmp(url, "ssh://", 6)) {
		cfg->kind = SANDBOX_SSH;
		rest = url + 6;
	} else if (!strncmp(url, "docker://", 9)) {
		cfg->kind = SANDBOX_DOCKER;
		rest = url + 9;
	} else {
		err_set(e,
			"'%s' is not a sandbox URL (ssh://[USER@]HOST[:PORT]/DIR or "
			"docker://CONTAINER/DIR) nor a name from the config file",
			url);
		return -1;
	}
	const char *slash = strchr(rest, '/');
	if (!slash || !slash[1]) {
		err_set(e, "%s: no workspace directory in the URL (…/DIR)", url);
		return -1;
	}
	/* "/~/x" names a path relative to the remote user's home directory. */
	const char *dir = !strncmp(slash, "/~/", 3) ? slash + 3 : slash;
	set_str(&cfg->remote_dir, dir);
	if (cfg->kind == SANDBOX_SSH)
		return parse_ssh_authority(cfg, rest, (size_t)(slash - rest), e);
	if (slash == rest) {
		err_set(e, "%s: no container name", url);
		return -1;
	}
	free(cfg->container);
	cfg->container = strndup(rest, (size_t)(slash - rest));
	return 0;
}

/* ---- the config file ---- */

static json_t *load_config_file(const char *path, struct err *e)
{
	json_error_t je;
	json_t *root = json_load_file(path, 0, &je);
	if (!root) {
		err_set(e, "%s:%d:%d: bad config JSON: %s", path, je.line, je.column, je.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		err_set(e, "%s: the config must be a JSON object", path);
		json_decref(root);
		return NULL;
	}
	return root;
}

static int apply_json_options(struct sandbox_cfg *cfg, json_t *opts, const char *path,
			      char **fuse_opts, struct err *e)
{
	if (json_is_string(opts))
		return config_apply_options(cfg, json_string_value(opts), fuse_opts, e);
	if (!json_is_object(opts)) {
		err_set(e, "%s: \"options\" of %s must be an object or a string", path, cfg->name);
		return -1;
	}
	const char *key;
	json_t *v;
	json_object_foreach(opts, key, v)
	{
		char num[64];
		const char *val = NULL;
		if (json_is_string(v)) {
			val = json_string_value(v);
		} else if (json_is_true(v)) {
			val = NULL;
		} else if (json_is_false(v)) {
			val = "no";
		} else if (json_is_integer(v)) {
			snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
			val = num;
		} else if (json_is_real(v)) {
			snprintf(num, sizeof(num), "%g", json_real_value(v));
			val = num;
		} else {
			err_set(e, "%s: option %s of %s: expected a string, number or boolean",
				path, key, cfg->name);
			return -1;
		}
		if (json_is_false(v) && strcmp(key, "accept_new_host_key") &&
		    strcmp(key, "allow_other"))
			continue;
		if (apply_option(cfg, key, val, fuse_opts, e) < 0) {
			char inner[sizeof(e->msg)];
			memcpy(inner, e->msg, sizeof(inner));
			err_set(e, "%s: sandbox %s: %.400s", path, cfg->name, inner);
			return -1;
		}
	}
	return 0;
}

static int load_globals(struct sandbox_cfg *cfg, json_t *root, const char *path, struct err *e)
{
	json_t *fb = json_object_get(root, "local_fallback");
	if (fb && !json_is_boolean(fb)) {
		err_set(e, "%s: \"local_fallback\" must be true or false", path);
		return -1;
	}
	cfg->local_fallback = fb && json_is_true(fb);
	json_t *allow = json_object_get(root, "env_allow");
	if (!allow)
		return 0;
	if (!json_is_array(allow)) {
		err_set(e, "%s: \"env_allow\" must be an array of strings", path);
		return -1;
	}
	strv_free(cfg->env_allow);
	cfg->env_allow = calloc(json_array_size(allow) + 1, sizeof(char *));
	size_t i;
	json_t *v;
	json_array_foreach(allow, i, v)
	{
		if (!json_is_string(v)) {
			err_set(e, "%s: \"env_allow\" must be an array of strings", path);
			return -1;
		}
		cfg->env_allow[i] = xstrdup(json_string_value(v));
	}
	return 0;
}

int config_load_global(struct sandbox_cfg *cfg, struct err *e)
{
	char *path = config_file_path();
	if (!path)
		return 0;
	json_t *root = load_config_file(path, e);
	int rc = root ? load_globals(cfg, root, path, e) : -1;
	json_decref(root);
	free(path);
	return rc;
}

static int resolve_name(struct sandbox_cfg *cfg, const char *name, char **fuse_opts, struct err *e)
{
	char *path = config_file_path();
	if (!path) {
		err_set(e,
			"'%s' is not a sandbox URL (ssh://[USER@]HOST[:PORT]/DIR or "
			"docker://CONTAINER/DIR), and there is no config file to look it up in "
			"($SANDMOUNT_CONFIG, ~/.config/sandmount/config.json, "
			"/etc/sandmount/config.json)",
			name);
		return -1;
	}
	int rc = -1;
	json_t *root = load_config_file(path, e);
	if (!root)
		goto out;
	if (load_globals(cfg, root, path, e) < 0)
		goto out;
	json_t *sb = json_object_get(json_object_get(root, "sandboxes"), name);
	if (!json_is_object(sb)) {
		err_set(e, "no sandbox named '%s' in %s", name, path);
		goto out;
	}
	json_t *url = json_object_get(sb, "url");
	if (!json_is_string(url) && !json_object_get(sb, "docker")) {
		err_set(e, "%s: sandbox %s has no \"url\" string (nor a \"docker\" block)", path,
			name);
		goto out;
	}
	if (url && parse_url(cfg, json_string_value(url), e) < 0)
		goto out;
	if (config_container_parse(cfg, sb, path, e) < 0)
		goto out;
	json_t *mp = json_object_get(sb, "mountpoint");
	if (mp && !json_is_string(mp)) {
		err_set(e, "%s: \"mountpoint\" of %s must be a string", path, name);
		goto out;
	}
	if (mp)
		set_str(&cfg->mountpoint, json_string_value(mp));
	json_t *opts = json_object_get(sb, "options");
	rc = opts ? apply_json_options(cfg, opts, path, fuse_opts, e) : 0;
out:
	json_decref(root);
	free(path);
	return rc;
}

int config_resolve(const char *sandbox, const char *opts, struct sandbox_cfg *cfg, char **fuse_opts,
		   struct err *e)
{
	config_defaults(cfg);
	cfg->name = xstrdup(sandbox);
	int rc = strstr(sandbox, "://") ? parse_url(cfg, sandbox, e)
					: resolve_name(cfg, sandbox, fuse_opts, e);
	if (rc == 0)
		rc = config_apply_options(cfg, opts, fuse_opts, e);
	if (rc == 0 && cfg->sftp_server && cfg->kind != SANDBOX_SSH) {
		err_set(e, "option sftp_server is for ssh:// sandboxes only");
		rc = -1;
	}
	return rc;
}
