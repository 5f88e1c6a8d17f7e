/* docker_sidecar.c: the last place the agent can run (docs/design.md, decision 3). When nothing in
 * the target container is both writable and exec-able, `sandmount-agent serve` runs in a sidecar
 * container instead: made from a one-file image (`sandmount-agent:<version>-<hash>`, imported
 * through the API from an in-memory tar, no registry), with the target's volumes (VolumesFrom),
 * the target's user, no network, a read-only root and no capabilities. The agent is the
 * sidecar's main process and its stdin/stdout are our stream (a hijacked attach, made before the
 * start so nothing is missed). StdinOnce: when our connection ends for any reason the agent
 * reads EOF and exits, and AutoRemove deletes the container, so a crashed daemon leaves nothing.
 * A sidecar that already runs for the target (another mount) is reused through an exec of
 * `serve` in it. The sidecar only sees files: commands still run in the target (exec API). */
#include "docker/docker_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define IMAGE_REPO	  "sandmount-agent"
#define AGENT_PATH	  "/sandmount-agent"
#define IMPORT_TIMEOUT_MS 60000

struct docker_sidecar {
	char image[128]; /* "sandmount-agent:<version>-<hash>" */
	char user[64];	 /* "uid:gid" of the target's user; "" for the image default (root) */
	char id[80];	 /* the sidecar serving us; "" until one was started */
	bool ours;	 /* we made it: removed when the transport closes */
};

static int64_t op_deadline(struct docker_tr *tr)
{
	return deadline_in((int64_t)tr->op_timeout_s * 1000);
}

static json_t *inspect(struct docker_tr *tr, const char *container, long *status, struct err *e)
{
	char *name = docker_escape(container);
	char *path = name ? str_printf("/containers/%s/json", name) : NULL;
	json_t *j = NULL;
	*status =
	    path ? docker_api_json(&tr->api, "GET", path, NULL, &j, "inspect", op_deadline(tr), e)
		 : -1;
	free(name);
	free(path);
	return j;
}

/* ---- what the sidecar needs ---- */

/* True when dir is mount (or below it). */
static bool is_under(const char *dir, const char *mount)
{
	size_t n = strlen(mount);
	while (n > 1 && mount[n - 1] == '/')
		n--;
	if (n == 1 && mount[0] == '/')
		return true;
	return !strncmp(dir, mount, n) && (dir[n] == 0 || dir[n] == '/');
}

/* The workspace must be on a volume or bind mount of the target: the only things VolumesFrom
 * gives the sidecar (not the target's own filesystem, not its tmpfs mounts). */
static int check_workspace(struct docker_tr *tr, json_t *target, struct err *e)
{
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(target, "Mounts"), i, m)
	{
		const char *type = json_string_value(json_object_get(m, "Type"));
		const char *dest = json_string_value(json_object_get(m, "Destination"));
		if (type && dest && (!strcmp(type, "bind") || !strcmp(type, "volume")) &&
		    is_under(tr->remote_dir, dest))
			return 0;
	}
	err_set(e,
		"no sidecar either: the workspace %s is not on a volume or bind mount of the "
		"container",
		tr->remote_dir);
	return -1;
}

static bool is_numeric_user(const char *u)
{
	size_t digits = strspn(u, "0123456789");
	if (!digits)
		return false;
	if (u[digits] == 0)
		return true;
	return u[digits] == ':' && strspn(u + digits + 1, "0123456789") > 0 &&
	       u[digits + 1 + strspn(u + digits + 1, "0123456789")] == 0;
}

/* The target's user as numbers: the sidecar's image has no /etc/passwd to resolve names. */
static int resolve_user(struct docker_tr *tr, json_t *target, char *user, size_t size,
			struct err *e)
{
	const char *configured =
	    json_string_value(json_object_get(json_object_get(target, "Config"), "User"));
	struct buf out;
	buf_init(&out);
	int status = -1;
	int rc = docker_exec_capture(tr, "echo \"$(id -u):$(id -g)\"", &out, 64, &status,
				     op_deadline(tr), e);
	buf_put_u8(&out, 0);
	unsigned uid, gid;
	if (rc == 0 && status == 0 && buf_ok(&out) &&
	    sscanf((const char *)out.data, "%u:%u", &uid, &gid) == 2) {
		snprintf(user, size, "%u:%u", uid, gid);
	} else if (!configured || !*configured || is_numeric_user(configured)) {
		snprintf(user, size, "%s", configured ? configured : "");
	} else {
		err_set(e, "no sidecar either: cannot find the ids of the container's user %s",
			configured);
		rc = -1;
	}
	buf_free(&out);
	return rc < 0 ? -1 : 0;
}

/* Import the one-file image unless the daemon has it. */
static int ensure_image(struct docker_tr *tr, struct docker_sidecar *sc, struct err *e)
{
	struct buf tar;
	buf_init(&tar);
	char hash[32];
	if (docker_agent_tar(AGENT_PATH + 1, &tar, hash, sizeof(hash), e) < 0) {
		buf_free(&tar);
		return -1;
	}
	snprintf(sc->image, sizeof(sc->image), IMAGE_REPO ":%s-%.12s", SANDMOUNT_VERSION, hash);
	char *qimage = docker_escape(sc->image);
	char *path = qimage ? str_printf("/images/%s/json", qimage) : NULL;
	long st = path ? docker_api_request(&tr->api, "GET", path, NULL, NULL, 0, NULL,
					    op_deadline(tr), e)
		       : -1;
	free(path);
	free(qimage);
	if (st == 200) {
		buf_free(&tar);
		return 0;
	}
	path = str_printf("/images/create?fromSrc=-&repo=" IMAGE_REPO "&tag=%s-%.12s",
			  SANDMOUNT_VERSION, hash);
	struct buf resp;
	buf_init(&resp);
	st = path ? docker_api_request(&tr->api, "POST", path, "application/x-tar", tar.data,
				       tar.len, &resp, deadline_in(IMPORT_TIMEOUT_MS), e)
		  : -1;
	/* the import reports a failure inside its 200 progress stream */
	json_t *j = st == 200 && resp.len ? json_loadb((const char *)resp.data, resp.len,
						       JSON_DISABLE_EOF_CHECK, NULL)
					  : NULL;
	const char *why = json_string_value(json_object_get(j, "error"));
	int rc = 0;
	if (st != 200 || why) {
		err_set(e, "no sidecar either: importing the image %s failed: %s", sc->image,
			why ? why : e->msg);
		rc = -1;
	} else {
		log_info("sidecar: imported the image %s", sc->image);
	}
	json_decref(j);
	buf_free(&resp);
	buf_free(&tar);
	free(path);
	return rc;
}

int docker_sidecar_prepare(struct docker_tr *tr, struct err *e)
{
	long st;
	json_t *target = inspect(tr, tr->container_id, &st, e);
	struct docker_sidecar *sc = calloc(1, sizeof(*sc));
	int rc = -1;
	if (!sc)
		err_set(e, "out of memory");
	else if (st == 200 && check_workspace(tr, target, e) == 0 &&
		 resolve_user(tr, target, sc->user, sizeof(sc->user), e) == 0 &&
		 ensure_image(tr, sc, e) == 0)
		rc = 0;
	json_decref(target);
	if (rc < 0) {
		free(sc);
		return -1;
	}
	tr->sidecar = sc;
	return 0;
}

/* ---- starting ---- */

static void remove_container(struct docker_tr *tr, const char *id)
{
	char *path = str_printf("/containers/%s?force=1", id);
	struct err e;
	long st = path ? docker_api_request(&tr->api, "DELETE", path, NULL, NULL, 0, NULL,
					    op_deadline(tr), &e)
		       : -1;
	free(path);
	/* 404/409: AutoRemove was faster */
	if (st < 0 || (st >= 400 && st != 404 && st != 409))
		log_warn("sidecar: cannot remove %.12s: %s", id, e.msg);
}

static json_t *create_body(struct docker_tr *tr, const struct docker_sidecar *sc)
{
	json_t *host =
	    json_pack("{s:[s], s:s, s:b, s:[s], s:[s], s:b}", "VolumesFrom", tr->container_id,
		      "NetworkMode", "none", "ReadonlyRootfs", 1, "CapDrop", "ALL", "SecurityOpt",
		      "no-new-privileges", "AutoRemove", 1);
	json_t *b = json_pack("{s:s, s:[s,s,s,s], s:s, s:b, s:b, s:b, s:b, s:b, s:b, s:o}", "Image",
			      sc->image, "Cmd", AGENT_PATH, "serve", "-d", tr->remote_dir, "User",
			      sc->user, "AttachStdin", 1, "AttachStdout", 1, "AttachStderr", 1,
			      "OpenStdin", 1, "StdinOnce", 1, "Tty", 0, "HostConfig", host);
	return b;
}

/* POST /containers/create; 0 with sc->id, 1 when the name is taken, -1. */
static int create(struct docker_tr *tr, struct docker_sidecar *sc, const char *name, struct err *e)
{
	json_t *body = create_body(tr, sc);
	char *path = str_printf("/containers/create?name=%s", name);
	json_t *j = NULL;
	long st = body && path ? docker_api_json(&tr->api, "POST", path, body, &j,
						 "creating the sidecar", op_deadline(tr), e)
			       : -1;
	const char *id = json_string_value(json_object_get(j, "Id"));
	int rc = st == 409 ? 1 : -1;
	if ((st == 201 || st == 200) && id) {
		snprintf(sc->id, sizeof(sc->id), "%s", id);
		rc = 0;
	}
	json_decref(body);
	json_decref(j);
	free(path);
	return rc;
}

/* Attach to the new sidecar's agent, then start it. */
static int attach_and_start(struct docker_tr *tr, struct docker_sidecar *sc, int *fd, struct err *e)
{
	struct dexec_req req = {.container = sc->id,
				.attach = true,
				.attach_stdin = true,
				.stderr_to_log = true,
				.label = "sidecar agent"};
	struct dexec *x;
	if (dexec_start(tr, &req, &x, fd, NULL, e) < 0)
		return -1;
	char *path = str_printf("/containers/%s/start", sc->id);
	long st = path ? docker_api_request(&tr->api, "POST", path, NULL, NULL, 0, NULL,
					    op_deadline(tr), e)
		       : -1;
	free(path);
	if (st != 204 && st != 304) {
		if (st >= 400)
			err_set(e, "starting the sidecar: %s", e->msg);
		close(*fd);
		*fd = -1;
		return -1;
	}
	return 0;
}

/* `serve` as an exec in a sidecar another mount of the target started. */
static int reuse(struct docker_tr *tr, struct docker_sidecar *sc, const char *name, int *fd,
		 struct err *e)
{
	long st;
	json_t *j = inspect(tr, name, &st, e);
	const char *id = json_string_value(json_object_get(j, "Id"));
	const char *image =
	    json_string_value(json_object_get(json_object_get(j, "Config"), "Image"));
	bool running = json_is_true(json_object_get(json_object_get(j, "State"), "Running"));
	int rc = -1;
	if (st == 200 && id && running && image && !strcmp(image, sc->image)) {
		char *argv[] = {AGENT_PATH, "serve", "-d", tr->remote_dir, NULL};
		struct dexec_req req = {.argv = argv,
					.container = id,
					.attach_stdin = true,
					.stderr_to_log = true,
					.label = "sidecar agent"};
		struct dexec *x;
		rc = dexec_start(tr, &req, &x, fd, NULL, e);
		if (rc == 0)
			log_info("sidecar: reusing %s", name);
	} else if (st == 200 && id) {
		/* a stopped one (AutoRemove still at work) or another version's */
		remove_container(tr, id);
		rc = 1;
	} else if (st == 404) {
		rc = 1;
	}
	json_decref(j);
	return rc;
}

int docker_sidecar_serve(struct docker_tr *tr, int *fd, struct err *e)
{
	struct docker_sidecar *sc = tr->sidecar;
	if (sc->id[0] && sc->ours)
		remove_container(tr, sc->id); /* its agent is gone: so is the sidecar */
	sc->id[0] = 0;
	sc->ours = false;
	char name[64];
	snprintf(name, sizeof(name), "sandmount-sidecar-%.12s", tr->container_id);
	for (int attempt = 0; attempt < 2; attempt++) {
		int rc = create(tr, sc, name, e);
		if (rc == 0) {
			sc->ours = true;
			if (attach_and_start(tr, sc, fd, e) < 0) {
				remove_container(tr, sc->id);
				sc->id[0] = 0;
				return -1;
			}
			log_info("sidecar: %s (%s, user %s) serves %s", name, sc->image,
				 sc->user[0] ? sc->user : "default", tr->remote_dir);
			return 0;
		}
		if (rc < 0)
			return -1;
		rc = reuse(tr, sc, name, fd, e);
		if (rc <= 0)
			return rc;
	}
	err_set(e, "the sidecar name %s stays taken", name);
	return -1;
}

void docker_sidecar_close(struct docker_tr *tr)
{
	struct docker_sidecar *sc = tr->sidecar;
	if (!sc)
		return;
	if (sc->id[0] && sc->ours)
		remove_container(tr, sc->id);
	free(sc);
	tr->sidecar = NULL;
}
