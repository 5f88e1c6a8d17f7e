/* ssh_agent.c: sandmount-agent on an SSH host (agent=auto|on; docs/design.md, decision 4). The
 * local binary is uploaded over SFTP as sandmount-agent-<content hash> (mode 0700) into the first
 * directory where it runs, unless that copy is there already; then `serve` runs on an exec channel
 * and its HELLO is the probe (a binary for another CPU never says it). The directories, in order:
 * ~/.cache/sandmount — skipped when the home directory is (or is inside) the workspace, where the
 * agent would show up —, /tmp/.sandmount-agent-<uid> (0700, owned by the user), and last the
 * workspace's hidden .sandmount-agent (the mount never shows it). A reused copy that does not
 * start, or reports another version, is replaced once. */
#include "ssh/ssh_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_locate.h"
#include "log.h"
#include "mux/agent_mux.h"
#include "sftp/sftp_client.h"

#define SFTP_TIMEOUT_MS 30000
#define MAX_DIRS	3

/* Where the agent may go: absolute directories, the last one the workspace's hidden dir. */
struct agent_dirs {
	char *dir[MAX_DIRS];
	size_t n;
	uint32_t uid; /* the home directory's owner: the user */
};

static void dirs_free(struct agent_dirs *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->dir[i]);
	d->n = 0;
}

/* mkdir -m 0700 path unless it is there; it must then be a real directory nobody else can
 * write to and, when owner >= 0, owned by that uid (a /tmp name may have been made by another
 * user, with a look-alike agent in it). */
static int ensure_dir(struct sftp_client *c, const char *path, long owner)
{
	int rc = sftp_mkdir(c, path, 0700);
	struct sftp_attrs a;
	if (sftp_lstat(c, path, &a) < 0 || (a.perm & 0170000) != 0040000 || (a.perm & 022) ||
	    (owner >= 0 && (!(a.flags & SFTP_ATTR_UIDGID) || a.uid != (uint32_t)owner)))
		return rc < 0 ? rc : -EPERM;
	return 0;
}

/* The candidate directories for this host and workspace (see the top of the file). */
static int find_dirs(struct sftp_client *c, const char *remote_dir, struct agent_dirs *d,
		     struct err *e)
{
	char *home = NULL, *ws = NULL;
	struct sftp_attrs ha = {0};
	int rc = sftp_realpath(c, ".", &home);
	if (rc == 0)
		rc = sftp_realpath(c, remote_dir, &ws);
	if (rc == 0)
		rc = sftp_stat(c, home, &ha);
	if (rc < 0) {
		err_set(e, "cannot resolve the home and workspace directories: %s", strerror(-rc));
		goto out;
	}
	d->uid = ha.uid;
	if (!agent_path_inside(home, ws))
		d->dir[d->n++] = str_printf("%s/.cache/sandmount", strcmp(home, "/") ? home : "");
	else
		log_info("agent: the home directory %s is in the workspace; not placing it there",
			 home);
	if (!agent_path_inside("/tmp", ws))
		d->dir[d->n++] = str_printf("/tmp/.sandmount-agent-%u", (unsigned)ha.uid);
	d->dir[d->n++] = str_printf("%s/" AGENT_HIDDEN_DIR, strcmp(ws, "/") ? ws : "");
out:
	free(home);
	free(ws);
	return rc < 0 ? -1 : 0;
}

/* Make dir (for ~/.cache/sandmount its parent too); one in /tmp must be the user's own. */
static int make_dir(struct sftp_client *c, const char *dir, uint32_t uid)
{
	const char *cache = strstr(dir, "/.cache/sandmount");
	if (cache && !strcmp(cache, "/.cache/sandmount")) {
		char *parent = strndup(dir, (size_t)(cache - dir) + strlen("/.cache"));
		int rc = parent ? ensure_dir(c, parent, -1) : -ENOMEM;
		free(parent);
		if (rc < 0)
			return rc;
	}
	return ensure_dir(c, dir, !strncmp(dir, "/tmp/", 5) ? (long)uid : -1);
}

/* Write the binary under a temporary name, make it 0700 and rename it into place. */
static int upload(struct sftp_client *c, const char *dest, const uint8_t *data, size_t size)
{
	char *tmp = str_printf("%s.%ld.tmp", dest, (long)getpid());
	struct sftp_attrs mode = {.flags = SFTP_ATTR_PERM, .perm = 0700};
	struct sftp_handle h;
	int rc = sftp_open(c, tmp, SFTP_OPEN_WRITE | SFTP_OPEN_CREAT | SFTP_OPEN_TRUNC, &mode, &h);
	if (rc == 0) {
		rc = sftp_write(c, &h, 0, data, size);
		int rc2 = sftp_close(c, &h);
		rc = rc ? rc : rc2;
	}
	if (rc == 0)
		rc = sftp_setstat(c, tmp, &mode);
	if (rc == 0)
		rc = sftp_rename(c, tmp, dest, true);
	if (rc < 0)
		sftp_remove(c, tmp);
	else
		log_info("agent: uploaded %s (%zu bytes)", dest, size);
	free(tmp);
	return rc;
}

/* Put the agent at dest in dir unless this very build is there; *fresh tells which. */
static int place(struct sftp_client *c, const char *dir, uint32_t uid, const char *dest,
		 const uint8_t *data, size_t size, bool force, bool *fresh, struct err *e)
{
	int rc = make_dir(c, dir, uid);
	struct sftp_attrs a;
	*fresh = force || rc < 0 || sftp_stat(c, dest, &a) < 0 || a.size != size;
	if (rc == 0 && *fresh)
		rc = upload(c, dest, data, size);
	if (rc < 0)
		err_set(e, "cannot place the agent in %s: %s", dir, strerror(-rc));
	return rc < 0 ? -1 : 0;
}

/* Run `serve` on an exec channel and wait for its HELLO. */
static int serve(struct ssh_tr *tr, const char *path, const char *remote_dir, int timeout_ms,
		 struct err *e)
{
	char *qdir = sh_quote(remote_dir), *qpath = sh_quote(path);
	char *cmd = qdir && qpath ? str_printf("exec %s serve -d %s", qpath, qdir) : NULL;
	free(qdir);
	free(qpath);
	if (!cmd) {
		err_set(e, "out of memory");
		return -1;
	}
	struct exec_spec spec = {.command = cmd, .cwd = remote_dir};
	struct exec_proc *p;
	int rc = ssh_exec_start(&tr->base, &spec, &p, e);
	free(cmd);
	if (rc < 0)
		return -1;
	int fd = p->stdio_fd;
	p->stdio_fd = -1; /* the mux owns the stream now */
	close(p->stderr_fd);
	p->stderr_fd = -1;
	if (agent_mux_start(fd, tr->peer.label, timeout_ms, &tr->mux, e) < 0) {
		p->ops->free(p);
		return -1;
	}
	tr->agent_proc = p;
	if (strcmp(agent_mux_version(tr->mux), SANDMOUNT_VERSION) != 0) {
		err_set(e, "the agent on the host is version %s", agent_mux_version(tr->mux));
		ssh_agent_stop(tr);
		return -1;
	}
	return 0;
}

/* Place and start the agent in dir; a reused copy that fails is replaced once. */
static int start_in(struct ssh_tr *tr, struct sftp_client *c, const char *dir, uint32_t uid,
		    const char *name, const uint8_t *data, size_t size, const char *remote_dir,
		    int timeout_ms, struct err *e)
{
	char *dest = str_printf("%s/%s", dir, name);
	bool fresh = false;
	int rc = place(c, dir, uid, dest, data, size, false, &fresh, e);
	if (rc == 0)
		rc = serve(tr, dest, remote_dir, timeout_ms, e);
	if (rc < 0 && !fresh) {
		log_info("agent: the copy in %s did not start (%s); uploading it again", dir,
			 e->msg);
		rc = place(c, dir, uid, dest, data, size, true, &fresh, e);
		if (rc == 0)
			rc = serve(tr, dest, remote_dir, timeout_ms, e);
	}
	free(dest);
	return rc;
}

int ssh_agent_start(struct ssh_tr *tr, const char *remote_dir, int timeout_ms, struct err *e)
{
	char path[4096], name[64];
	uint8_t *data = NULL;
	size_t size = 0;
	if (agent_read_local(path, sizeof(path), &data, &size, e) < 0)
		return -1;
	agent_content_name(data, size, name, sizeof(name));
	int fd;
	struct sftp_client *c = NULL;
	struct agent_dirs d = {.n = 0};
	int rc = tr->base.ops->open_sftp(&tr->base, &fd, e);
	if (rc == 0)
		rc = sftp_client_open(fd, SFTP_TIMEOUT_MS, &c, e);
	if (rc == 0)
		rc = find_dirs(c, remote_dir, &d, e);
	for (size_t i = 0; rc == 0 && i < d.n; i++) {
		rc = start_in(tr, c, d.dir[i], d.uid, name, data, size, remote_dir, timeout_ms, e);
		if (rc == 0)
			break;
		if (i + 1 < d.n) {
			log_info("agent: %s", e->msg);
			rc = 0;
		}
	}
	if (c)
		sftp_client_close(c);
	dirs_free(&d);
	free(data);
	return rc;
}

void ssh_agent_stop(struct ssh_tr *tr)
{
	agent_mux_close(tr->mux); /* the agent sees EOF and ends what it still runs */
	tr->mux = NULL;
	if (tr->agent_proc)
		tr->agent_proc->ops->free(tr->agent_proc);
	tr->agent_proc = NULL;
}
