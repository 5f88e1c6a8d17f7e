/* docker_agent.c: decide which SFTP server serves a container's files (docs/design.md, decision 3).
 * First choice: sandmount-agent, placed once with the archive API (PUT of an in-memory tar) in the
 * first place outside the workspace where it can actually run — agent_dir=, /tmp, /var/tmp,
 * /dev/shm, $HOME (never one that is or lies in the workspace: the agent would show up there) —,
 * then a hidden dir in the workspace (bind mounts are exec-able even in hardened containers). A
 * copy of the same content (its name carries a hash) placed earlier is reused. Where it cannot run:
 * a sidecar container (docker_sidecar.c), then the image's own OpenSSH sftp-server. Else an error
 * naming the options. */
#include "docker/docker_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent_locate.h"
#include "log.h"

#define PROBE_OUTPUT_MAX 8192

struct agent_bin {
	uint8_t *data;
	size_t size;
	char name[64]; /* "sandmount-agent-<fnv64 of the content>" */
	char path[4096];
};

/* ---- the local binary ---- */

static int load_agent(struct agent_bin *a, struct err *e)
{
	if (agent_read_local(a->path, sizeof(a->path), &a->data, &a->size, e) < 0)
		return -1;
	agent_content_name(a->data, a->size, a->name, sizeof(a->name));
	return 0;
}

/* ---- a minimal ustar writer ---- */

static void tar_header(struct buf *t, const char *name, unsigned mode, char type, size_t size,
		       unsigned uid, unsigned gid)
{
	char h[512];
	memset(h, 0, sizeof(h));
	snprintf(h, 100, "%s", name);
	snprintf(h + 100, 8, "%07o", mode);
	snprintf(h + 108, 8, "%07o", uid);
	snprintf(h + 116, 8, "%07o", gid);
	snprintf(h + 124, 12, "%011zo", size);
	snprintf(h + 136, 12, "%011llo", (unsigned long long)time(NULL));
	memset(h + 148, ' ', 8);
	h[156] = type;
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	unsigned sum = 0;
	for (size_t i = 0; i < sizeof(h); i++)
		sum += (unsigned char)h[i];
	snprintf(h + 148, 8, "%06o", sum);
	h[155] = ' ';
	buf_put_bytes(t, h, sizeof(h));
}

/* A tar holding the agent as `name` (inside `subdir/` when subdir is non-NULL). */
static void make_tar(struct buf *t, const struct agent_bin *a, const char *subdir, unsigned uid,
		     unsigned gid)
{
	static const char zeros[1024];
	char name[160];
	if (subdir) {
		snprintf(name, sizeof(name), "%s/", subdir);
		tar_header(t, name, 0755, '5', 0, uid, gid);
		snprintf(name, sizeof(name), "%s/%s", subdir, a->name);
	} else {
		snprintf(name, sizeof(name), "%s", a->name);
	}
	tar_header(t, name, 0755, '0', a->size, uid, gid);
	buf_put_bytes(t, a->data, a->size);
	buf_put_bytes(t, zeros, (512 - a->size % 512) % 512);
	buf_put_bytes(t, zeros, sizeof(zeros));
}

int docker_agent_tar(const char *name, struct buf *tar, char *hash, size_t hash_size, struct err *e)
{
	struct agent_bin a = {0};
	if (load_agent(&a, e) < 0)
		return -1;
	snprintf(hash, hash_size, "%s", a.name + strlen("sandmount-agent-"));
	snprintf(a.name, sizeof(a.name), "%s", name);
	make_tar(tar, &a, NULL, 0, 0);
	free(a.data);
	if (!buf_ok(tar)) {
		err_set(e, "out of memory");
		return -1;
	}
	return 0;
}

/* ---- probing and placing ---- */

/* The numeric uid/gid of the container's configured user ("1000", "1000:1000"); 0 otherwise. */
static void container_ids(struct docker_tr *tr, unsigned *uid, unsigned *gid)
{
	*uid = *gid = 0;
	char *path = str_printf("/containers/%s/json", tr->container_id);
	json_t *j = NULL;
	struct err e;
	docker_api_json(&tr->api, "GET", path, NULL, &j, NULL, deadline_in(5000), &e);
	free(path);
	const char *user = json_string_value(json_object_get(json_object_get(j, "Config"), "User"));
	if (user && sscanf(user, "%u", uid) == 1 && sscanf(user, "%*u:%u", gid) != 1)
		*gid = *uid;
	json_decref(j);
}

static int run_script(struct docker_tr *tr, const char *script, struct buf *out, int *status,
		      struct err *e)
{
	buf_reset(out);
	int64_t deadline = deadline_in((int64_t)tr->op_timeout_s * 1000);
	int rc = docker_exec_capture(tr, script, out, PROBE_OUTPUT_MAX, status, deadline, e);
	buf_put_u8(out, 0);
	return rc;
}

/* The candidate directories as shell words ("$HOME" is expanded by the container's shell); the
 * workspace's hidden dir is not among them. */
static char *candidate_words(struct docker_tr *tr)
{
	char *agent_dir = tr->agent_dir ? sh_quote(tr->agent_dir) : xstrdup("''");
	char *words = str_printf("%s /tmp /var/tmp /dev/shm \"$HOME\"", agent_dir);
	free(agent_dir);
	return words;
}

/* A shell test that the agent at "$f" is ours and runs. */
#define AGENT_OK_TEST                                                                              \
	"[ -f \"$f\" ] && [ \"$(wc -c < \"$f\")\" -eq %zu ] && \"$f\" --version >/dev/null 2>&1"

/* Shell function `out DIR`: true when DIR exists and lies outside the workspace ($ws, both
 * resolved with pwd -P); sets $r to DIR resolved. A home directory that is the workspace (the
 * usual `useradd -d /workspace`) is thus never used: the agent would show up in it. */
#define OUTSIDE_WS_FN                                                                              \
	"out() { r=$(cd \"$1\" 2>/dev/null && pwd -P) || return 1; [ -n \"$ws\" ] || return 0; "   \
	"[ \"$ws\" != / ] || return 1; case \"$r/\" in \"$ws\"/*) return 1;; esac; return 0; }; "

/* One exec: an agent already placed outside the workspace or in its hidden dir ("found PATH"),
 * else the existing dirs outside the workspace ("dir PATH"). */
static int probe(struct docker_tr *tr, const struct agent_bin *a, struct buf *out, struct err *e)
{
	char *dirs = candidate_words(tr);
	char *qws = sh_quote(tr->remote_dir);
	char *hidden = str_printf("%s/" AGENT_HIDDEN_DIR "/%s", tr->remote_dir, a->name);
	char *qhidden = hidden ? sh_quote(hidden) : NULL;
	char *script =
	    dirs && qws && qhidden
		? str_printf(
		      "ws=$(cd %s 2>/dev/null && pwd -P); " OUTSIDE_WS_FN
		      "for d in %s; do [ -n \"$d\" ] && out \"$d\" || continue; "
		      "f=\"$r/%s\"; if " AGENT_OK_TEST "; then echo \"found $f\"; exit 0; fi; "
		      "done; f=%s; if " AGENT_OK_TEST "; then echo \"found $f\"; exit 0; fi; "
		      "for d in %s; do [ -n \"$d\" ] && out \"$d\" && echo \"dir $r\"; done; "
		      "exit 0",
		      qws, dirs, a->name, a->size, qhidden, a->size, dirs)
		: NULL;
	int status = -1;
	int rc = script ? run_script(tr, script, out, &status, e) : -1;
	free(dirs);
	free(qws);
	free(hidden);
	free(qhidden);
	free(script);
	if (rc == 0 && status != 0) {
		err_set(e, "probing the container with /bin/sh failed (exit %d)", status);
		rc = -1;
	}
	return rc;
}

/* PUT the agent into dir (or dir/AGENT_HIDDEN_DIR) and check that it runs there. */
static bool place_at(struct docker_tr *tr, const struct agent_bin *a, const char *dir, bool hidden,
		     unsigned uid, unsigned gid, char *placed, size_t size)
{
	struct buf tar;
	buf_init(&tar);
	make_tar(&tar, a, hidden ? AGENT_HIDDEN_DIR : NULL, uid, gid);
	char *qdir = docker_escape(dir);
	char *path = str_printf("/containers/%s/archive?path=%s", tr->container_id, qdir);
	struct err e;
	long st =
	    buf_ok(&tar) && path
		? docker_api_request(&tr->api, "PUT", path, "application/x-tar", tar.data, tar.len,
				     NULL, deadline_in((int64_t)tr->op_timeout_s * 1000), &e)
		: -1;
	free(qdir);
	free(path);
	buf_free(&tar);
	if (st != 200) {
		log_info("agent: cannot place it in %s: %s", dir,
			 st < 0 ? "request failed" : e.msg);
		return false;
	}
	snprintf(placed, size, "%s%s/%s", dir, hidden ? "/" AGENT_HIDDEN_DIR : "", a->name);
	char *qf = sh_quote(placed);
	char *script = qf ? str_printf("f=%s; " AGENT_OK_TEST, qf, a->size) : NULL;
	struct buf out;
	buf_init(&out);
	int status = -1;
	bool ok = script && run_script(tr, script, &out, &status, &e) == 0 && status == 0;
	if (ok)
		log_info("agent: placed %s", placed);
	else
		log_info("agent: placed in %s but it cannot run there", dir);
	buf_free(&out);
	free(qf);
	free(script);
	return ok;
}

/* Try every candidate dir from the probe's output, then the workspace's hidden dir. -1 when
 * the container cannot be probed, -2 when the agent cannot run anywhere in it. */
static int place_agent(struct docker_tr *tr, const struct agent_bin *a, char *placed, size_t size,
		       struct err *e)
{
	struct buf out;
	buf_init(&out);
	if (probe(tr, a, &out, e) < 0) {
		buf_free(&out);
		return -1;
	}
	unsigned uid, gid;
	container_ids(tr, &uid, &gid);
	int rc = -1;
	for (char *line = (char *)out.data, *next; line && *line && rc < 0; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		if (!strncmp(line, "found ", 6)) {
			snprintf(placed, size, "%s", line + 6);
			log_info("agent: reusing %s", placed);
			rc = 0;
		} else if (!strncmp(line, "dir /", 5) &&
			   place_at(tr, a, line + 4, false, uid, gid, placed, size)) {
			rc = 0;
		}
	}
	if (rc < 0 && place_at(tr, a, tr->remote_dir, true, uid, gid, placed, size))
		rc = 0;
	buf_free(&out);
	if (rc < 0) {
		err_set(e, "sandmount-agent cannot run anywhere in the container");
		rc = -2;
	}
	return rc;
}

/* The image's own sftp-server, if any. */
static int find_sftp_server(struct docker_tr *tr, char *found, size_t size, struct err *e)
{
	static const char script[] =
	    "for f in /usr/lib/openssh/sftp-server /usr/lib/sftp-server "
	    "/usr/libexec/openssh/sftp-server /usr/libexec/sftp-server; do "
	    "[ -x \"$f\" ] && { echo \"$f\"; exit 0; }; done; exit 1";
	struct buf out;
	buf_init(&out);
	int status = -1;
	int rc = run_script(tr, script, &out, &status, e);
	if (rc == 0 && status == 0) {
		char *nl = strchr((char *)out.data, '\n');
		if (nl)
			*nl = 0;
		snprintf(found, size, "%s", (char *)out.data);
	} else if (rc == 0) {
		rc = -1;
	}
	buf_free(&out);
	return rc;
}

/* The agent in a sidecar container; else why (the agent's failure) gets the sidecar's. */
static int try_sidecar(struct docker_tr *tr, char *path, size_t size, struct err *why)
{
	struct err sc;
	if (docker_sidecar_prepare(tr, &sc) == 0) {
		snprintf(path, size, "/sandmount-agent");
		log_info("files: the agent in a sidecar container");
		return 0;
	}
	log_warn("%s", sc.msg);
	struct err agent = *why;
	err_set(why, "%.200s; %.300s", agent.msg, sc.msg);
	return -1;
}

int docker_sftp_server(struct docker_tr *tr, char *path, size_t size, bool *is_agent, struct err *e)
{
	struct err why = {""};
	if (!tr->agent_off) {
		struct agent_bin a = {0};
		int rc = load_agent(&a, &why);
		if (rc == 0)
			rc = place_agent(tr, &a, path, size, &why);
		free(a.data);
		if (rc == 0) {
			*is_agent = true;
			log_info("files: the agent in the container");
			return 0;
		}
		log_warn("%s", why.msg);
		if (rc == -2 && try_sidecar(tr, path, size, &why) == 0) {
			*is_agent = true;
			return 0;
		}
	} else {
		err_set(&why, "agent=off");
	}
	struct err e2;
	if (find_sftp_server(tr, path, size, &e2) == 0) {
		*is_agent = false;
		log_info("files: the image's %s", path);
		return 0;
	}
	err_set(e,
		"%s: cannot serve files (%s; and the image has no sftp-server): set "
		"-o agent_dir=DIR to a writable, exec-able directory in the container, make /tmp "
		"or the workspace exec-able, put the workspace on a volume or bind mount (for a "
		"sidecar), or use an image with OpenSSH's sftp-server",
		tr->container_name, why.msg);
	return -1;
}
