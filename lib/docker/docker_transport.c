/* docker_transport.c: the "docker" transport — a container reached through the Docker Engine API.
 * Opening resolves the endpoint as the docker CLI does, negotiates the API version and checks
 * that the container runs; a small thread pings the daemon every keepalive_s for stats().
 * With the agent placed, one `sandmount-agent serve` started through an exec carries files,
 * commands and the change watch (agent_mux.c); when it can only run in a sidecar container
 * (docker_sidecar.c), that one carries files and the watch while commands use the exec API;
 * without it (agent=off, or it cannot run), files come from the image's sftp-server and commands
 * from the exec API. */
#include "docker/docker_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mux/agent_mux.h"
#include "log.h"

static void cond_wait_ms(struct docker_tr *tr, int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	ts.tv_sec += ts.tv_nsec / 1000000000;
	ts.tv_nsec %= 1000000000;
	pthread_cond_timedwait(&tr->cond, &tr->lock, &ts);
}

static void *keepalive_main(void *arg)
{
	struct docker_tr *tr = arg;
	pthread_mutex_lock(&tr->lock);
	while (!tr->stop) {
		int64_t next = now_ms() + (int64_t)tr->keepalive_s * 1000;
		while (!tr->stop && now_ms() < next)
			cond_wait_ms(tr, next - now_ms());
		if (tr->stop)
			break;
		pthread_mutex_unlock(&tr->lock);
		int64_t rtt = -1;
		struct err e;
		int timeout_ms = tr->keepalive_s * 1000 < 10000 ? tr->keepalive_s * 1000 : 10000;
		int rc = docker_api_ping(&tr->api, deadline_in(timeout_ms), &rtt, &e);
		pthread_mutex_lock(&tr->lock);
		if (rc < 0 && tr->connected)
			log_warn("%s", e.msg);
		else if (rc == 0 && !tr->connected)
			log_info("the Docker daemon at %s answers again", tr->api.ep.host);
		tr->connected = rc == 0;
		if (rc == 0)
			tr->rtt_us = rtt;
	}
	pthread_mutex_unlock(&tr->lock);
	return NULL;
}

/* Find the SFTP server once (placing the agent). place_lock held. */
static int find_server(struct docker_tr *tr, struct err *e)
{
	if (tr->server_path[0])
		return 0;
	return docker_sftp_server(tr, tr->server_path, sizeof(tr->server_path),
				  &tr->server_is_agent, e);
}

/* Start `sandmount-agent serve` (again, after the previous one died). place_lock held. */
static void start_mux(struct docker_tr *tr, struct err *e)
{
	if (tr->mux) {
		struct agent_mux **v = realloc(tr->retired, (tr->nretired + 1) * sizeof(*v));
		if (!v)
			return;
		tr->retired = v;
		tr->retired[tr->nretired++] = tr->mux;
		tr->mux = NULL;
	}
	char *argv[] = {tr->server_path, "serve", "-d", tr->remote_dir, NULL};
	struct dexec_req req = {
	    .argv = argv, .attach_stdin = true, .stderr_to_log = true, .label = "agent"};
	struct dexec *x;
	int fd = -1;
	int timeout_ms = tr->op_timeout_s * 1000;
	int rc = tr->sidecar ? docker_sidecar_serve(tr, &fd, e)
			     : dexec_start(tr, &req, &x, &fd, NULL, e);
	if (rc < 0 || agent_mux_start(fd, tr->container_name, timeout_ms, &tr->mux, e) < 0) {
		/* the sidecar has no other way to serve files: the next use tries again */
		log_warn("agent: `serve` did not start (%s)%s", e->msg,
			 tr->sidecar ? "" : ": commands use the exec API");
		tr->mux_failed = !tr->sidecar;
		return;
	}
	log_info("agent: serving %s through sandmount-agent %s", tr->container_name,
		 agent_mux_version(tr->mux));
}

/* The agent's mux when the agent serves this container; NULL otherwise (e set). */
static struct agent_mux *get_mux(struct docker_tr *tr, struct err *e)
{
	pthread_mutex_lock(&tr->place_lock);
	struct agent_mux *m = NULL;
	if (find_server(tr, e) == 0 && tr->server_is_agent && !tr->mux_failed) {
		if (!tr->mux || !agent_mux_alive(tr->mux))
			start_mux(tr, e);
		m = tr->mux;
	}
	if (!m && tr->server_path[0] && !tr->sidecar)
		err_set(e, "%s: the sandbox agent does not run in this container",
			tr->container_name);
	pthread_mutex_unlock(&tr->place_lock);
	return m;
}

static int docker_open_sftp(struct transport *t, int *fd, struct err *e)
{
	struct docker_tr *tr = (struct docker_tr *)t;
	struct agent_mux *m = get_mux(tr, e);
	if (m)
		return agent_mux_open_sftp(m, fd, e);
	pthread_mutex_lock(&tr->place_lock);
	int rc = find_server(tr, e);
	char path[sizeof(tr->server_path)];
	snprintf(path, sizeof(path), "%s", tr->server_path);
	bool agent = tr->server_is_agent;
	bool sidecar = tr->sidecar != NULL;
	pthread_mutex_unlock(&tr->place_lock);
	if (rc < 0 || sidecar)
		return -1;
	char *agent_argv[] = {path, "sftp", "-d", tr->remote_dir, NULL};
	char *server_argv[] = {path, "-d", tr->remote_dir, NULL};
	struct dexec_req req = {.argv = agent ? agent_argv : server_argv,
				.attach_stdin = true,
				.stderr_to_log = true,
				.label = agent ? "agent" : "sftp-server"};
	struct dexec *x;
	return dexec_start(tr, &req, &x, fd, NULL, e);
}

/* Through the agent when it runs in the container (~1 ms a command), else the exec API (~50 ms):
 * a sidecar's agent sees the files but is not where commands run. */
static int docker_exec(struct transport *t, const struct exec_spec *spec, struct exec_proc **out,
		       struct err *e)
{
	struct docker_tr *tr = (struct docker_tr *)t;
	struct err why;
	struct agent_mux *m = tr->agent_off ? NULL : get_mux(tr, &why);
	if (m && tr->sidecar)
		m = NULL;
	if (m)
		return agent_mux_exec_start(m, spec, out, e);
	return docker_exec_start(t, spec, out, e);
}

static int docker_watch(struct transport *t, const struct watch_req *req, struct err *e)
{
	struct docker_tr *tr = (struct docker_tr *)t;
	struct agent_mux *m = tr->agent_off ? NULL : get_mux(tr, e);
	if (!m) {
		if (tr->agent_off)
			err_set(e, "agent=off: this sandbox cannot report changes");
		return -ENOTSUP;
	}
	return agent_mux_watch(m, req, e);
}

static void docker_stats(struct transport *t, struct transport_stats *st)
{
	struct docker_tr *tr = (struct docker_tr *)t;
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&tr->lock);
	st->connected = tr->connected;
	st->rtt_us = tr->rtt_us;
	st->channels = tr->nlive;
	pthread_mutex_unlock(&tr->lock);
	/* Placing the agent may hold the lock for seconds: stats do not wait for it. */
	const char *files = "";
	if (pthread_mutex_trylock(&tr->place_lock) == 0) {
		if (tr->mux)
			st->channels += agent_mux_channels(tr->mux);
		if (tr->server_path[0])
			files = tr->sidecar	      ? " (files: agent in a sidecar)"
				: tr->server_is_agent ? " (files: agent in the container)"
						      : " (files: the image's sftp-server)";
		pthread_mutex_unlock(&tr->place_lock);
	}
	st->bytes_in = atomic_load(&tr->bytes_in);
	st->bytes_out = atomic_load(&tr->bytes_out);
	/* the status shows "<detail>:<remote dir>": the container name stays next to it */
	snprintf(st->detail, sizeof(st->detail), "docker %s%s %s", tr->api.ep.host, files,
		 tr->container_name);
}

static void docker_close(struct transport *t)
{
	struct docker_tr *tr = (struct docker_tr *)t;
	pthread_mutex_lock(&tr->lock);
	tr->stop = true;
	pthread_cond_broadcast(&tr->cond);
	pthread_mutex_unlock(&tr->lock);
	if (tr->ka_started)
		pthread_join(tr->ka_thread, NULL);
	/* The agent sees its stream close and ends what it still runs. */
	agent_mux_close(tr->mux);
	for (size_t i = 0; i < tr->nretired; i++)
		agent_mux_close(tr->retired[i]);
	free(tr->retired);
	dexec_stop_all(tr);
	docker_sidecar_close(tr);
	if (tr->live)
		log_warn("docker transport closed with %u exec(s) not freed", tr->nlive);
	docker_api_free(&tr->api);
	pthread_mutex_destroy(&tr->place_lock);
	pthread_mutex_destroy(&tr->lock);
	pthread_cond_destroy(&tr->cond);
	free(tr->container_id);
	free(tr->container_name);
	free(tr->remote_dir);
	free(tr->agent_dir);
	free(tr);
}

static const struct transport_ops docker_ops = {
    .name = "docker",
    .open_sftp = docker_open_sftp,
    .exec_start = docker_exec,
    .stats = docker_stats,
    .watch = docker_watch,
    .close = docker_close,
};

/* Inspect the container: its full id, and that it runs. */
static int check_container(struct docker_tr *tr, struct err *e)
{
	char *name = docker_escape(tr->container_name);
	char *path = name ? str_printf("/containers/%s/json", name) : NULL;
	free(name);
	json_t *j = NULL;
	long st = path ? docker_api_json(&tr->api, "GET", path, NULL, &j, NULL,
					 deadline_in((int64_t)tr->api.connect_timeout_s * 1000), e)
		       : -1;
	free(path);
	int rc = -1;
	const char *id = json_string_value(json_object_get(j, "Id"));
	json_t *state = json_object_get(j, "State");
	if (st == 404) {
		err_set(e, "no such container: %s (on the Docker daemon at %s)", tr->container_name,
			tr->api.ep.host);
	} else if (st != 200) {
		/* e is set */
	} else if (!id) {
		err_set(e, "%s: the Docker daemon returned no container id", tr->container_name);
	} else if (!json_is_true(json_object_get(state, "Running"))) {
		const char *s = json_string_value(json_object_get(state, "Status"));
		err_set(e, "container %s is not running (%s)", tr->container_name,
			s ? s : "stopped");
	} else {
		tr->container_id = xstrdup(id);
		rc = 0;
	}
	json_decref(j);
	return rc;
}

int docker_transport_open(const struct sandbox_cfg *cfg, struct transport **out, struct err *e)
{
	struct docker_endpoint ep;
	if (docker_endpoint_resolve(cfg->docker_host, cfg->docker_context, &ep, e) < 0)
		return -1;
	struct docker_tr *tr = calloc(1, sizeof(*tr));
	if (!tr) {
		docker_endpoint_free(&ep);
		err_set(e, "out of memory");
		return -1;
	}
	tr->base.ops = &docker_ops;
	tr->container_name = xstrdup(cfg->container);
	tr->remote_dir = xstrdup(cfg->remote_dir);
	tr->agent_dir = cfg->agent_dir ? xstrdup(cfg->agent_dir) : NULL;
	tr->agent_off = cfg->agent_off;
	tr->op_timeout_s = cfg->op_timeout_s;
	tr->keepalive_s = cfg->keepalive_s > 0 ? cfg->keepalive_s : 15;
	tr->rtt_us = -1;
	pthread_mutex_init(&tr->lock, NULL);
	pthread_mutex_init(&tr->place_lock, NULL);
	pthread_cond_init(&tr->cond, NULL);
	if (docker_api_connect(&tr->api, &ep, cfg, e) < 0 || check_container(tr, e) < 0) {
		docker_close(&tr->base);
		return -1;
	}
	tr->connected = true;
	if (pthread_create(&tr->ka_thread, NULL, keepalive_main, tr) == 0)
		tr->ka_started = true;
	log_info("docker: %s (API %s), container %s", tr->api.ep.host, tr->api.version,
		 tr->container_name);
	*out = &tr->base;
	return 0;
}
