/* config_container.c: the session keys of a sandbox in the config file — a container described
 * with the keys of OpenClaw's sandbox.docker block, which `sandmount up` creates through the
 * Engine API (docker/docker_create.c), and {session} in its names:
 *   "NAME": {"docker": {"image": "...", "containerPrefix": "...", "workdir": "/workspace", ...},
 *            "host": "ssh://ops@ct342", "workspace": {"volume": "V"} | {"hostPath": "/DIR"},
 *            "mountpoint": "/srv/agents/NAME/{session}", "onDown": "stop"|"remove"|"keep"}
 * Types are checked here, with errors naming the key; the block is kept as JSON text. */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

enum ktype { K_STR, K_BOOL, K_INT, K_NUM, K_STRS, K_STRMAP, K_SIZE, K_ULIMITS };

static const struct {
	const char *key;
	enum ktype type;
} docker_keys[] = {
    {"image", K_STR},
    {"containerPrefix", K_STR},
    {"workdir", K_STR},
    {"readOnlyRoot", K_BOOL},
    {"tmpfs", K_STRS},
    {"network", K_STR},
    {"user", K_STR},
    {"capDrop", K_STRS},
    {"env", K_STRMAP},
    {"setupCommand", K_STR},
    {"pidsLimit", K_INT},
    {"memory", K_SIZE},
    {"memorySwap", K_SIZE},
    {"cpus", K_NUM},
    {"ulimits", K_ULIMITS},
    {"seccompProfile", K_STR},
    {"apparmorProfile", K_STR},
    {"dns", K_STRS},
    {"extraHosts", K_STRS},
    {"binds", K_STRS},
};

static const char *const type_names[] = {
    [K_STR] = "a string",
    [K_BOOL] = "true or false",
    [K_INT] = "a whole number",
    [K_NUM] = "a number",
    [K_STRS] = "an array of strings",
    [K_STRMAP] = "an object of strings",
    [K_SIZE] = "a size (bytes, or a string like \"512m\")",
    [K_ULIMITS] = "an object of {\"soft\": N, \"hard\": N} or numbers",
};

static bool all_strings(json_t *v, bool object)
{
	const char *k;
	size_t i;
	json_t *x;
	if (object) {
		json_object_foreach(v, k, x) if (!json_is_string(x)) return false;
		return true;
	}
	json_array_foreach(v, i, x) if (!json_is_string(x)) return false;
	return true;
}

static bool ulimit_ok(json_t *x)
{
	return json_is_integer(x) ||
	       (json_is_object(x) && json_is_integer(json_object_get(x, "soft")) &&
		json_is_integer(json_object_get(x, "hard")));
}

static bool type_ok(json_t *v, enum ktype t)
{
	const char *k;
	json_t *x;
	switch (t) {
	case K_STR:
		return json_is_string(v);
	case K_BOOL:
		return json_is_boolean(v);
	case K_INT:
		return json_is_integer(v);
	case K_NUM:
		return json_is_number(v) && json_number_value(v) > 0;
	case K_STRS:
		return json_is_array(v) && all_strings(v, false);
	case K_STRMAP:
		return json_is_object(v) && all_strings(v, true);
	case K_SIZE:
		return json_is_integer(v) ||
		       (json_is_string(v) && config_parse_size(json_string_value(v), NULL) == 0);
	case K_ULIMITS:
		if (!json_is_object(v))
			return false;
		json_object_foreach(v, k, x) if (!ulimit_ok(x)) return false;
		return true;
	}
	return false;
}

int config_parse_size(const char *s, long long *out)
{
	static const char units[] = "bkmg";
	char *end;
	errno = 0;
	long long n = strtoll(s, &end, 10);
	if (end == s || n < 0 || errno)
		return -1;
	long long mult = 1;
	if (*end) {
		const char *u = strchr(units, *end | 0x20);
		if (!u)
			return -1;
		mult = 1LL << (10 * (u - units));
		end++;
		if (u != units && (*end | 0x20) == 'b')
			end++;
		if (*end)
			return -1;
	}
	if (n > (1LL << 50) / mult)
		return -1;
	if (out)
		*out = n * mult;
	return 0;
}

static int check_docker_block(json_t *d, const char *path, const char *name, struct err *e)
{
	const char *key;
	json_t *v;
	json_object_foreach(d, key, v)
	{
		size_t i = 0, n = sizeof(docker_keys) / sizeof(docker_keys[0]);
		while (i < n && strcmp(docker_keys[i].key, key))
			i++;
		if (i == n) {
			err_set(e, "%s: sandbox %s: unknown key docker.%s", path, name, key);
			return -1;
		}
		if (!type_ok(v, docker_keys[i].type)) {
			err_set(e, "%s: sandbox %s: docker.%s must be %s", path, name, key,
				type_names[docker_keys[i].type]);
			return -1;
		}
	}
	if (!json_is_string(json_object_get(d, "image"))) {
		err_set(e, "%s: sandbox %s: docker.image (a string) is required", path, name);
		return -1;
	}
	json_t *wd = json_object_get(d, "workdir");
	if (wd && json_string_value(wd)[0] != '/') {
		err_set(e, "%s: sandbox %s: docker.workdir must be an absolute path", path, name);
		return -1;
	}
	return 0;
}

static int check_workspace(json_t *w, const char *path, const char *name, struct err *e)
{
	json_t *vol = json_object_get(w, "volume"), *hp = json_object_get(w, "hostPath");
	bool ok = json_is_object(w) && json_object_size(w) == 1 &&
		  ((vol && json_is_string(vol) && *json_string_value(vol)) ||
		   (hp && json_is_string(hp) && json_string_value(hp)[0] == '/'));
	if (!ok) {
		err_set(e,
			"%s: sandbox %s: \"workspace\" must be {\"volume\": NAME} or "
			"{\"hostPath\": ABSOLUTE_DIR}",
			path, name);
		return -1;
	}
	return 0;
}

static int parse_on_down(struct sandbox_cfg *cfg, json_t *v, const char *path, struct err *e)
{
	const char *s = json_string_value(v);
	if (!v)
		return 0;
	if (s && !strcmp(s, "stop"))
		cfg->on_down = ON_DOWN_STOP;
	else if (s && !strcmp(s, "remove"))
		cfg->on_down = ON_DOWN_REMOVE;
	else if (s && !strcmp(s, "keep"))
		cfg->on_down = ON_DOWN_KEEP;
	else {
		err_set(e, "%s: sandbox %s: \"onDown\" must be \"stop\", \"remove\" or \"keep\"",
			path, cfg->name);
		return -1;
	}
	return 0;
}

static void set_field(char **f, const char *v)
{
	free(*f);
	*f = v ? strdup(v) : NULL;
}

int config_container_parse(struct sandbox_cfg *cfg, void *sandbox_json, const char *path,
			   struct err *e)
{
	json_t *sb = sandbox_json;
	json_t *d = json_object_get(sb, "docker"), *host = json_object_get(sb, "host");
	json_t *ws = json_object_get(sb, "workspace");
	if (parse_on_down(cfg, json_object_get(sb, "onDown"), path, e) < 0)
		return -1;
	if (!d) {
		if (host || ws) {
			err_set(
			    e, "%s: sandbox %s: \"host\" and \"workspace\" need a \"docker\" block",
			    path, cfg->name);
			return -1;
		}
		return 0;
	}
	if (!json_is_object(d)) {
		err_set(e, "%s: sandbox %s: \"docker\" must be an object", path, cfg->name);
		return -1;
	}
	if (check_docker_block(d, path, cfg->name, e) < 0)
		return -1;
	if (host && !json_is_string(host)) {
		err_set(e, "%s: sandbox %s: \"host\" must be a string (a Docker endpoint)", path,
			cfg->name);
		return -1;
	}
	if (ws && check_workspace(ws, path, cfg->name, e) < 0)
		return -1;
	json_t *wd = json_object_get(d, "workdir"), *prefix = json_object_get(d, "containerPrefix");
	cfg->kind = SANDBOX_DOCKER;
	set_field(&cfg->remote_dir, wd ? json_string_value(wd) : "/workspace");
	if (host)
		set_field(&cfg->docker_host, json_string_value(host));
	free(cfg->container);
	cfg->container =
	    str_printf("%s%s", prefix ? json_string_value(prefix) : "sandmount-", cfg->name);
	json_t *spec = json_pack("{sOsO}", "docker", d, "workspace", ws ? ws : json_null());
	free(cfg->container_spec);
	cfg->container_spec = spec ? json_dumps(spec, JSON_COMPACT) : NULL;
	json_decref(spec);
	return cfg->container_spec ? 0 : -1;
}

/* s with every "{session}" replaced by session; malloc'd. */
static char *substitute(const char *s, const char *session)
{
	size_t n = strlen(s), sl = strlen(session), k = 0;
	for (const char *p = strstr(s, "{session}"); p; p = strstr(p + 9, "{session}"))
		k++;
	char *out = malloc(n + k * sl + 1), *w = out;
	if (!out)
		return NULL;
	for (const char *p = s;;) {
		const char *q = strstr(p, "{session}");
		size_t len = q ? (size_t)(q - p) : strlen(p);
		memcpy(w, p, len);
		w += len;
		if (!q)
			break;
		memcpy(w, session, sl);
		w += sl;
		p = q + 9;
	}
	*w = 0;
	return out;
}

static bool session_id_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64 || s[0] == '.' || s[0] == '-')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '.' || *s == '-'))
			return false;
	return true;
}

int config_apply_session(struct sandbox_cfg *cfg, const char *session, struct err *e)
{
	bool wants = cfg->mountpoint && strstr(cfg->mountpoint, "{session}");
	if (!session) {
		if (wants) {
			err_set(e, "%s: its mountpoint %s has {session}: give --session ID",
				cfg->name, cfg->mountpoint);
			return -1;
		}
		return 0;
	}
	if (!session_id_ok(session)) {
		err_set(e, "session id '%s': use 1 to 64 letters, digits, '_', '.' or '-'",
			session);
		return -1;
	}
	set_field(&cfg->session, session);
	if (cfg->mountpoint) {
		char *mp = substitute(cfg->mountpoint, session);
		free(cfg->mountpoint);
		cfg->mountpoint = mp;
	}
	if (cfg->container_spec) {
		char *c = str_printf("%s-%s", cfg->container, session);
		free(cfg->container);
		cfg->container = c;
	}
	return cfg->mountpoint || !wants ? 0 : -1;
}

char *config_session_substitute(const char *s, const char *session)
{
	return substitute(s, session ? session : "");
}

char *config_session_of(const char *pattern, const char *mp)
{
	const char *at = strstr(pattern, "{session}");
	if (!at)
		return !strcmp(pattern, mp) ? xstrdup("") : NULL;
	size_t pre = (size_t)(at - pattern), post = strlen(at + 9), n = strlen(mp);
	if (n <= pre + post || strncmp(mp, pattern, pre) || strcmp(mp + n - post, at + 9))
		return NULL;
	char *id = strndup(mp + pre, n - pre - post);
	if (id && strchr(id, '/')) {
		free(id);
		return NULL;
	}
	return id;
}
