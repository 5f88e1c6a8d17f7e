/* ssh_agent.c: sandmount-agent on an SSH host (agent=auto|on; docs/design.md, decision 4). The
 * local binary is uploaded over SFTP to ~/.cache/sandmount/sandmount-agent-<content hash> (mode
 * 0700) unless that copy is there already, then `serve` runs on an exec channel; its HELLO is the
 * probe (a binary for another CPU never says it). A reused copy that does not start, or reports
 * another version, is replaced once. */
#include "ssh/ssh_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_locate.h"
#include "mux/agent_mux.h"
#include "log.h"
#include "sftp/sftp_client.h"

#define AGENT_DIR	".cache/sandmount" /* relative: sftp-server starts in the home directory */
#define SFTP_TIMEOUT_MS 30000

static int ensure_dirs(struct sftp_client *c, struct err *e)
{
	static const char *const dirs[] = {".cache", AGENT_DIR};
	for (size_t i = 0; i < 2; i++) {
		int rc = sftp_mkdir(c, dirs[i], 0700);
		struct sftp_attrs a;
		if (rc < 0 && (sftp_stat(c, dirs[i], &a) < 0 || (a.perm & 0170000) != 0040000)) {
			err_set(e, "cannot create ~/%s on the host: %s", dirs[i], strerror(-rc));
			return -1;
		}
	}
	return 0;
}

/* Write the binary under a temporary name, make it 0700 and rename it into place. */
static int upload(struct sftp_client *c, const char *name, const uint8_t *data, size_t size,
		  struct err *e)
{
	char tmp[160], dest[160];
	snprintf(tmp, sizeof(tmp), AGENT_DIR "/.%s.%ld", name, (long)getpid());
	snprintf(dest, sizeof(dest), AGENT_DIR "/%s", name);
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
	if (rc < 0) {
		sftp_remove(c, tmp);
		err_set(e, "cannot upload the agent to ~/" AGENT_DIR ": %s", strerror(-rc));
		return -1;
	}
	log_info("agent: uploaded ~/%s (%zu bytes)", dest, size);
	return 0;
}

/* Upload the agent unless this very build is there; *fresh tells which; name gets its name. */
static int place(struct ssh_tr *tr, bool force, bool *fresh, char *name, size_t name_size,
		 struct err *e)
{
	char path[4096];
	uint8_t *data = NULL;
	size_t size = 0;
	if (agent_read_local(path, sizeof(path), &data, &size, e) < 0)
		return -1;
	agent_content_name(data, size, name, name_size);
	char dest[160];
	snprintf(dest, sizeof(dest), AGENT_DIR "/%s", name);
	int fd;
	struct sftp_client *c = NULL;
	int rc = tr->base.ops->open_sftp(&tr->base, &fd, e);
	if (rc == 0)
		rc = sftp_client_open(fd, SFTP_TIMEOUT_MS, &c, e);
	if (rc == 0)
		rc = ensure_dirs(c, e);
	struct sftp_attrs a;
	*fresh = force || rc < 0 || sftp_stat(c, dest, &a) < 0 || a.size != size;
	if (rc == 0 && *fresh)
		rc = upload(c, name, data, size, e);
	if (c)
		sftp_client_close(c);
	free(data);
	return rc;
}

/* Run `serve` on an exec channel and wait for its HELLO. */
static int serve(struct ssh_tr *tr, const char *name, const char *remote_dir, int timeout_ms,
		 struct err *e)
{
	char *qdir = sh_quote(remote_dir);
	char *cmd =
	    qdir ? str_printf("exec \"$HOME\"/" AGENT_DIR "/%s serve -d %s", name, qdir) : NULL;
	free(qdir);
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

int ssh_agent_start(struct ssh_tr *tr, const char *remote_dir, int timeout_ms, struct err *e)
{
	bool fresh = false;
	char name[64];
	if (place(tr, false, &fresh, name, sizeof(name), e) < 0)
		return -1;
	if (serve(tr, name, remote_dir, timeout_ms, e) == 0)
		return 0;
	if (fresh)
		return -1;
	log_info("agent: the copy on the host did not start (%s); uploading it again", e->msg);
	if (place(tr, true, &fresh, name, sizeof(name), e) < 0 ||
	    serve(tr, name, remote_dir, timeout_ms, e) < 0)
		return -1;
	return 0;
}

void ssh_agent_stop(struct ssh_tr *tr)
{
	agent_mux_close(tr->mux); /* the agent sees EOF and ends what it still runs */
	tr->mux = NULL;
	if (tr->agent_proc)
		tr->agent_proc->ops->free(tr->agent_proc);
	tr->agent_proc = NULL;
}
