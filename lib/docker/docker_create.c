/* docker_create.c: create, start, stop and remove the container a config-file sandbox describes
 * (docker_create.h), through the Engine API: POST /containers/create with a HostConfig built from
 * OpenClaw's sandbox.docker keys, start, inspect; setupCommand runs once, right after the
 * container is created (the exec API, docker_exec.c), and the container records it in a label. */
#include "docker/docker_create.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "docker/docker_internal.h"
#include "log.h"

#define SETUP_TIMEOUT_MS (600 * 1000)
#define SETUP_OUTPUT_MAX 4096
#define SECCOMP_FILE_MAX (1u << 20)
#define STOP_GRACE_S	 10
/* PID 1 of the container: stays up, and ends at once on SIGTERM (docker stop). */
#define KEEPALIVE_SCRIPT "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"

static int api_open(const struct sandbox_cfg *cfg, struct docker_api *api, struct err *e)
{
	struct docker_endpoint ep;
	if (docker_endpoint_resolve(cfg->docker_host, cfg->docker_context, &ep, e) < 0)
		return -1;
	if (docker_api_connect(api, &ep, cfg, e) < 0) {
		docker_api_free(api);
		return -1;
	}
	return 0;
}

static int64_t api_deadline(const struct docker_api *api, int extra_s)
{
	return deadline_in((int64_t)(api->connect_timeout_s + extra_s) * 1000);
}

/* ---- the create body ---- */

static json_t *str_array(json_t *v)
{
	return v ? json_deep_copy(v) : json_array();
}

/* "/tmp:rw,noexec" entries into the {"/tmp": "rw,noexec"} map of HostConfig.Tmpfs. */
static json_t *tmpfs_map(json_t *list)
{
	json_t *m = json_object();
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v)
	{
		const char *s = json_string_value(v), *colon = strchr(s, ':');
		char *path = colon ? strndup(s, (size_t)(colon - s)) : xstrdup(s);
		json_object_set_new(m, path, json_string(colon ? colon + 1 : ""));
		free(path);
	}
	return m;
}

static json_t *env_array(json_t *map)
{
	json_t *a = json_array();
	const char *k;
	json_t *v;
	json_object_foreach(map, k, v)
	{
		char *kv = str_printf("%s=%s", k, json_string_value(v));
		json_array_append_new(a, json_string(kv));
		free(kv);
	}
	return a;
}

static json_t *ulimit_array(json_t *map)
{
	json_t *a = json_array();
	const char *k;
	json_t *v;
	json_object_foreach(map, k, v)
	{
		json_int_t soft = json_is_integer(v)
				      ? json_integer_value(v)
				      : json_integer_value(json_object_get(v, "soft"));
		json_int_t hard =
		    json_is_integer(v) ? soft : json_integer_value(json_object_get(v, "hard"));
		json_array_append_new(a,
				      json_pack("{sssIsI}", "Name", k, "Soft", soft, "Hard", hard));
	}
	return a;
}

static json_int_t size_value(json_t *v)
{
	long long n = 0;
	if (json_is_integer(v))
		return json_integer_value(v);
	config_parse_size(json_string_value(v), &n); /* checked by config_container.c */
	return n;
}

/* A seccomp profile: "unconfined", or a JSON file on this machine whose content is sent. */
static int seccomp_opt(const char *profile, json_t *secopts, struct err *e)
{
	if (!strcmp(profile, "unconfined")) {
		json_array_append_new(secopts, json_string("seccomp=unconfined"));
		return 0;
	}
	int fd = open(profile, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    st.st_size > SECCOMP_FILE_MAX) {
		err_set(e, "docker.seccompProfile %s: not a readable file of at most 1 MiB",
			profile);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	char *text = malloc((size_t)st.st_size + 1);
	int rc = text ? fd_read_full(fd, text, (size_t)st.st_size, 0) : -ENOMEM;
	close(fd);
	if (rc < 0) {
		free(text);
		err_set(e, "docker.seccompProfile %s: %s", profile, strerror(-rc));
		return -1;
	}
	text[st.st_size] = 0;
	char *opt = str_printf("seccomp=%s", text);
	json_array_append_new(secopts, json_string(opt));
	free(opt);
	free(text);
	return 0;
}

/* The workspace: a named volume or a directory of the Docker host, at workdir. */
static void add_workspace(const struct sandbox_cfg *cfg, json_t *ws, json_t *host)
{
	const char *vol = json_string_value(json_object_get(ws, "volume"));
	const char *dir = json_string_value(json_object_get(ws, "hostPath"));
	char *src = config_session_substitute(vol ? vol : dir ? dir : "", cfg->session);
	if (vol) {
		json_t *mounts = json_array();
		json_array_append_new(mounts, json_pack("{ssssss}", "Type", "volume", "Source", src,
							"Target", cfg->remote_dir));
		json_object_set_new(host, "Mounts", mounts);
	} else if (dir) {
		char *bind = str_printf("%s:%s", src, cfg->remote_dir);
		json_array_append_new(json_object_get(host, "Binds"), json_string(bind));
		free(bind);
	}
	free(src);
}

static int host_config(const struct sandbox_cfg *cfg, json_t *d, json_t *ws, json_t **out,
		       struct err *e)
{
	json_t *host = json_object(), *v;
	json_object_set_new(host, "Binds", str_array(json_object_get(d, "binds")));
	add_workspace(cfg, ws, host);
	json_object_set_new(host, "ReadonlyRootfs",
			    json_boolean(json_is_true(json_object_get(d, "readOnlyRoot"))));
	if ((v = json_object_get(d, "tmpfs")))
		json_object_set_new(host, "Tmpfs", tmpfs_map(v));
	if ((v = json_object_get(d, "network")))
		json_object_set(host, "NetworkMode", v);
	if ((v = json_object_get(d, "capDrop")))
		json_object_set_new(host, "CapDrop", str_array(v));
	if ((v = json_object_get(d, "pidsLimit")))
		json_object_set(host, "PidsLimit", v);
	if ((v = json_object_get(d, "memory")))
		json_object_set_new(host, "Memory", json_integer(size_value(v)));
	if ((v = json_object_get(d, "memorySwap")))
		json_object_set_new(host, "MemorySwap", json_integer(size_value(v)));
	if ((v = json_object_get(d, "cpus")))
		json_object_set_new(host, "NanoCpus",
				    json_integer((json_int_t)(json_number_value(v) * 1e9)));
	if ((v = json_object_get(d, "ulimits")))
		json_object_set_new(host, "Ulimits", ulimit_array(v));
	if ((v = json_object_get(d, "dns")))
		json_object_set_new(host, "Dns", str_array(v));
	if ((v = json_object_get(d, "extraHosts")))
		json_object_set_new(host, "ExtraHosts", str_array(v));
	json_t *sec = json_array();
	json_object_set_new(host, "SecurityOpt", sec);
	if ((v = json_object_get(d, "apparmorProfile"))) {
		char *opt = str_printf("apparmor=%s", json_string_value(v));
		json_array_append_new(sec, json_string(opt));
		free(opt);
	}
	v = json_object_get(d, "seccompProfile");
	if (v && seccomp_opt(json_string_value(v), sec, e) < 0) {
		json_decref(host);
		return -1;
	}
	*out = host;
	return 0;
}

static json_t *labels(const struct sandbox_cfg *cfg, json_t *d)
{
	json_t *l = json_object();
	json_object_set_new(l, DOCKER_LABEL_SANDBOX, json_string(cfg->name));
	json_object_set_new(l, DOCKER_LABEL_SESSION, json_string(cfg->session ? cfg->session : ""));
	json_t *setup = json_object_get(d, "setupCommand");
	json_object_set_new(l, DOCKER_LABEL_SETUP, json_string(setup ? "once" : "none"));
	return l;
}

static int create_body(const struct sandbox_cfg *cfg, json_t *spec, json_t **out, struct err *e)
{
	json_t *d = json_object_get(spec, "docker"), *host, *v;
	if (host_config(cfg, d, json_object_get(spec, "workspace"), &host, e) < 0)
		return -1;
	json_t *b = json_pack("{sOs[sss]sssoso}", "Image", json_object_get(d, "image"), "Cmd",
			      "/bin/sh", "-c", KEEPALIVE_SCRIPT, "WorkingDir", cfg->remote_dir,
			      "Labels", labels(cfg, d), "HostConfig", host);
	if ((v = json_object_get(d, "user")))
		json_object_set(b, "User", v);
	if ((v = json_object_get(d, "env")))
		json_object_set_new(b, "Env", env_array(v));
	*out = b;
	return 0;
}

/* ---- the calls ---- */

/* GET /containers/NAME/json: 1 and *j when it exists, 0 when it does not, -1 on error. */
static int inspect(struct docker_api *api, const char *name, json_t **j, struct err *e)
{
	char *q = docker_escape(name);
	char *path = str_printf("/containers/%s/json", q);
	long st = docker_api_json(api, "GET", path, NULL, j, "inspect", api_deadline(api, 0), e);
	free(q);
	free(path);
	if (st == 404) {
		json_decref(*j);
		*j = NULL;
		return 0;
	}
	return st == 200 ? 1 : -1;
}

/* POST /containers/ID/ACTION (start, stop?t=N, unpause); 304 (already so) is fine. */
static int post_action(struct docker_api *api, const char *id, const char *action, int wait_s,
		       struct err *e)
{
	char *path = str_printf("/containers/%s/%s", id, action);
	long st = docker_api_request(api, "POST", path, NULL, NULL, 0, NULL,
				     api_deadline(api, wait_s), e);
	free(path);
	return st == 204 || st == 304 || st == 200 ? 0 : -1;
}

static int remove_container(struct docker_api *api, const char *id, struct err *e)
{
	char *path = str_printf("/containers/%s?force=1&v=0", id);
	long st = docker_api_request(api, "DELETE", path, NULL, NULL, 0, NULL,
				     api_deadline(api, STOP_GRACE_S), e);
	free(path);
	return st == 204 || st == 200 || st == 404 ? 0 : -1;
}

/* Run setupCommand with `sh -c` as the container's user, through the exec machinery. */
static int run_setup(struct docker_api *api, const char *id, const char *cmd, struct err *e)
{
	struct docker_tr *tr = calloc(1, sizeof(*tr));
	if (!tr) {
		err_set(e, "out of memory");
		return -1;
	}
	tr->api = *api; /* borrowed: not freed here */
	tr->container_id = (char *)id;
	tr->op_timeout_s = SETUP_TIMEOUT_MS / 1000;
	pthread_mutex_init(&tr->lock, NULL);
	pthread_cond_init(&tr->cond, NULL);
	struct buf out;
	buf_init(&out);
	int status = -1;
	log_info("%s: running setupCommand", id);
	int rc = docker_exec_capture(tr, cmd, &out, SETUP_OUTPUT_MAX, &status,
				     deadline_in(SETUP_TIMEOUT_MS), e);
	buf_put_u8(&out, 0);
	if (rc == 0 && status != 0) {
		err_set(e, "setupCommand failed (exit %d): %.300s", status,
			buf_ok(&out) ? (char *)out.data : "");
		rc = -1;
	}
	dexec_stop_all(tr);
	buf_free(&out);
	pthread_mutex_destroy(&tr->lock);
	pthread_cond_destroy(&tr->cond);
	free(tr);
	return rc;
}

static int create(struct docker_api *api, const struct sandbox_cfg *cfg, char **id, struct err *e)
{
	json_t *spec = json_loads(cfg->container_spec, 0, NULL), *body = NULL, *j = NULL;
	if (!spec || create_body(cfg, spec, &body, e) < 0) {
		if (!spec)
			err_set(e, "%s: bad container description", cfg->name);
		json_decref(spec);
		return -1;
	}
	char *q = docker_escape(cfg->container);
	char *path = str_printf("/containers/create?name=%s", q);
	long st = docker_api_json(api, "POST", path, body, &j, "container create",
				  api_deadline(api, 60), e);
	free(q);
	free(path);
	json_decref(body);
	const char *v = json_string_value(json_object_get(j, "Id"));
	int rc = st == 201 && v ? 0 : -1;
	if (rc == 0)
		*id = xstrdup(v);
	else if (st == 201)
		err_set(e, "container create: the Docker daemon returned no id");
	json_decref(j);
	const char *setup =
	    json_string_value(json_object_get(json_object_get(spec, "docker"), "setupCommand"));
	if (rc == 0)
		rc = post_action(api, *id, "start", 0, e);
	if (rc == 0 && setup)
		rc = run_setup(api, *id, setup, e);
	if (rc < 0 && *id) {
		struct err ignored;
		remove_container(api, *id, &ignored); /* the next `up` starts afresh */
	}
	json_decref(spec);
	return rc;
}

int docker_container_up(const struct sandbox_cfg *cfg, bool *created, struct err *e)
{
	struct docker_api api;
	*created = false;
	if (!cfg->container_spec) {
		err_set(e, "%s: the config describes no container (a \"docker\" block)", cfg->name);
		return -1;
	}
	if (api_open(cfg, &api, e) < 0)
		return -1;
	json_t *j = NULL;
	char *id = NULL;
	int rc = inspect(&api, cfg->container, &j, e);
	if (rc == 0) {
		rc = create(&api, cfg, &id, e);
		*created = rc == 0;
	} else if (rc == 1) {
		json_t *state = json_object_get(j, "State");
		id = xstrdup(json_string_value(json_object_get(j, "Id")));
		rc = 0;
		if (json_is_true(json_object_get(state, "Paused")))
			rc = post_action(&api, id, "unpause", 0, e);
		else if (!json_is_true(json_object_get(state, "Running")))
			rc = post_action(&api, id, "start", 0, e);
	}
	free(id);
	json_decref(j);
	docker_api_free(&api);
	return rc;
}

int docker_container_down(const struct sandbox_cfg *cfg, struct err *e)
{
	if (!cfg->container_spec || cfg->on_down == ON_DOWN_KEEP)
		return 0;
	struct docker_api api;
	if (api_open(cfg, &api, e) < 0)
		return -1;
	char *q = docker_escape(cfg->container), *stop = str_printf("stop?t=%d", STOP_GRACE_S);
	int rc = cfg->on_down == ON_DOWN_REMOVE ? remove_container(&api, q, e)
						: post_action(&api, q, stop, STOP_GRACE_S, e);
	if (rc < 0 && strstr(e->msg, "No such container"))
		rc = 0;
	free(q);
	free(stop);
	docker_api_free(&api);
	return rc;
}

int docker_container_list(const struct sandbox_cfg *cfg, docker_container_cb cb, void *ctx,
			  struct err *e)
{
	struct docker_api api;
	if (api_open(cfg, &api, e) < 0)
		return -1;
	char *filter = str_printf("{\"label\":[\"" DOCKER_LABEL_SANDBOX "=%s\"]}", cfg->name);
	char *q = docker_escape(filter);
	char *path = str_printf("/containers/json?all=1&filters=%s", q);
	json_t *j = NULL;
	long st = docker_api_json(&api, "GET", path, NULL, &j, "container list",
				  api_deadline(&api, 0), e);
	free(filter);
	free(q);
	free(path);
	size_t i;
	json_t *c;
	if (st == 200 && json_is_array(j)) {
		json_array_foreach(j, i, c)
		{
			const char *name =
			    json_string_value(json_array_get(json_object_get(c, "Names"), 0));
			const char *session = json_string_value(
			    json_object_get(json_object_get(c, "Labels"), DOCKER_LABEL_SESSION));
			const char *state = json_string_value(json_object_get(c, "State"));
			cb(ctx, name ? name + (name[0] == '/') : "?", session ? session : "",
			   state ? state : "?");
		}
	}
	json_decref(j);
	docker_api_free(&api);
	return st == 200 ? 0 : -1;
}
