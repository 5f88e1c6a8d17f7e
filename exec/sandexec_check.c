/* sandexec_check.c: `sandexec --check` tells the operator whether a gateway (OpenClaw and the
 * like) is wired to run its agent's commands through sandexec: $SHELL is this sandexec, it is
 * listed in /etc/shells (else the gateway's login-shell probe uses /bin/sh), the config file
 * reads, and every sandbox the config gives a mountpoint (each session mounted now when the
 * mountpoint has {session}; and every other live sandmount mount) is mounted and runs a
 * command, with the round trip measured. One line per item, "ok" or
 * "FAIL" first; the exit status is 1 when any item failed. */
#include "sandexec_check.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "ctl_proto.h"
#include "runtime.h"
#include "util.h"

#define ROUND_TRIP_DEADLINE_MS 15000

struct report {
	int failures;
};

static void item(struct report *r, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void item(struct report *r, bool ok, const char *fmt, ...)
{
	va_list ap;
	printf("%-4s  ", ok ? "ok" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	r->failures += !ok;
}

static bool same_file(const char *a, const char *b)
{
	char ra[PATH_MAX], rb[PATH_MAX];
	return realpath(a, ra) && realpath(b, rb) && !strcmp(ra, rb);
}

static void check_shell(struct report *r, const char *self)
{
	const char *shell = getenv("SHELL");
	if (!shell || !*shell)
		item(r, false,
		     "SHELL is not set: the gateway runs commands with its own default "
		     "shell on this host (set SHELL=%s)",
		     self);
	else if (!same_file(shell, self))
		item(r, false,
		     "SHELL is %s, not sandexec: the gateway runs commands on this host "
		     "(set SHELL=%s)",
		     shell, self);
	else
		item(r, true, "SHELL=%s is sandexec", shell);
}

/* The gateway uses $SHELL for its login-shell probe only when /etc/shells lists it as is. */
static void check_shells_file(struct report *r, const char *self)
{
	const char *shell = getenv("SHELL");
	const char *want = shell && *shell && same_file(shell, self) ? shell : self;
	FILE *f = fopen("/etc/shells", "re");
	char line[PATH_MAX + 2];
	bool listed = false;
	while (f && !listed && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = 0;
		listed = !strcmp(line, want);
	}
	if (f)
		fclose(f);
	if (listed)
		item(r, true, "%s is listed in /etc/shells", want);
	else
		item(r, false,
		     "%s is not listed in /etc/shells: the gateway's login-shell probe "
		     "uses /bin/sh instead (add it: echo %s >> /etc/shells)",
		     want, want);
}

/* The config file, and the sandboxes in it that have a mountpoint (names, malloc'd). */
static json_t *check_config(struct report *r)
{
	struct sandbox_cfg cfg;
	struct err e;
	char *path = config_file_path();
	json_t *root = NULL;
	config_defaults(&cfg);
	if (!path) {
		item(r, true,
		     "no config file (defaults; none of ~/.config/sandmount/config.json, "
		     "/etc/sandmount/config.json, $SANDMOUNT_CONFIG exists)");
	} else if (config_load_global(&cfg, &e) < 0) {
		item(r, false, "config: %s", e.msg);
	} else {
		json_error_t je;
		root = json_load_file(path, 0, &je);
		item(r, true, "config %s reads (local_fallback %s)", path,
		     cfg.local_fallback ? "on: commands outside every mount run on this host"
					: "off");
	}
	free(path);
	config_free(&cfg);
	return root;
}

static int exec_true(int s)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0)
		return -errno;
	int fds[3] = {null, null, null};
	struct buf m;
	buf_init(&m);
	buf_put_u32(&m, 0);
	buf_put_cstring(&m, "true");
	buf_put_cstring(&m, "");
	buf_put_u32(&m, 0);
	buf_put_u32(&m, 0);
	buf_put_cstring(&m, "");
	buf_put_u32(&m, 0);
	int rc = buf_ok(&m) ? ctl_send(s, CTL_EXEC, &m, fds, 3) : -ENOMEM;
	close(null);
	uint8_t type = 0;
	int nfds = 0;
	uint32_t code = 0;
	if (rc == 0)
		rc = ctl_recv(s, &type, &m, NULL, 0, &nfds, deadline_in(ROUND_TRIP_DEADLINE_MS));
	if (rc == 0 && (type != CTL_EXIT || buf_get_u32(&m, &code) < 0 || code != 0))
		rc = -EPROTO;
	buf_free(&m);
	return rc;
}

/* A command round trip through the daemon serving mp. */
static void check_mount(struct report *r, const char *label, const char *mp)
{
	struct err e;
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (mounts_is_sandmount(mp) != 1) {
		item(r, false, "%s: %s is not mounted: commands run there would be refused", label,
		     mp);
		return;
	}
	if (runtime_socket_path(mp, addr.sun_path, sizeof(addr.sun_path), &e) < 0) {
		item(r, false, "%s: %s", label, e.msg);
		return;
	}
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int64_t t0 = now_ms();
	if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		item(r, false, "%s: %s is mounted but no daemon answers at %s (%s)", label, mp,
		     addr.sun_path, strerror(errno));
	} else {
		int rc = exec_true(s);
		if (rc < 0)
			item(r, false,
			     "%s: %s is mounted but `true` did not run in the sandbox (%s)", label,
			     mp, rc == -EPROTO ? "error reply" : strerror(-rc));
		else
			item(r, true, "%s: %s is mounted, a command round trip took %lld ms", label,
			     mp, (long long)(now_ms() - t0));
	}
	if (s >= 0)
		close(s);
}

static bool contains(char **v, int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (v[i] && !strcmp(v[i], s))
			return true;
	return false;
}

/* A sandbox whose mountpoint has {session}: each live mount of one of its sessions (none up is
 * not a failure: sessions come and go). Returns the new count of done[]. */
static int check_sessions(struct report *r, const char *name, const char *pattern, char **done,
			  int n, int max)
{
	/* the directory before {session} as the mount table shows it (canonical) */
	char dir[PATH_MAX], canon[PATH_MAX];
	const char *at = strstr(pattern, "{session}");
	char *pat = NULL;
	size_t cut = (size_t)(at - pattern);
	while (cut > 0 && pattern[cut - 1] != '/')
		cut--;
	if (cut > 1 && cut - 1 < sizeof(dir)) {
		memcpy(dir, pattern, cut - 1);
		dir[cut - 1] = 0;
		if (realpath(dir, canon))
			pat = str_printf("%s%s", canon, pattern + cut - 1);
	}
	char **all = NULL;
	int k = mounts_list(&all), found = 0;
	for (int i = 0; i < k; i++) {
		char *id = config_session_of(pat ? pat : pattern, all[i]);
		if (id && *id) {
			char *label = str_printf("sandbox %s session %s", name, id);
			check_mount(r, label ? label : name, all[i]);
			free(label);
			found++;
			if (n < max)
				done[n++] = xstrdup(all[i]);
		}
		free(id);
		free(all[i]);
	}
	free(all);
	free(pat);
	if (!found)
		printf("--    sandbox %s: no session mounted at %s\n", name, pattern);
	return n;
}

/* The configured sandboxes with a mountpoint; the canonical mountpoints checked go to done[]. */
static int check_configured(struct report *r, json_t *root, char **done, int max)
{
	const char *name;
	json_t *sb;
	int n = 0;
	json_object_foreach(json_object_get(root, "sandboxes"), name, sb)
	{
		const char *mp = json_string_value(json_object_get(sb, "mountpoint"));
		char canon[PATH_MAX];
		if (!mp) {
			printf("--    sandbox %s: no mountpoint in the config (not checked)\n",
			       name);
			continue;
		}
		if (strstr(mp, "{session}")) {
			n = check_sessions(r, name, mp, done, n, max);
			continue;
		}
		if (!realpath(mp, canon)) {
			item(r, false, "sandbox %s: mountpoint %s: %s", name, mp, strerror(errno));
			continue;
		}
		char *label = str_printf("sandbox %s", name);
		check_mount(r, label ? label : name, canon);
		free(label);
		if (n < max)
			done[n++] = xstrdup(canon);
	}
	return n;
}

/* A workspace the gateway runs commands in: inside a mount that runs them? */
static void check_workspace(struct report *r, const char *dir)
{
	char target[PATH_MAX], mp[PATH_MAX], *rel = NULL;
	if (!realpath(dir, target)) {
		item(r, false, "workspace %s: %s", dir, strerror(errno));
		return;
	}
	int found = mounts_find(target, mp, sizeof(mp), &rel);
	free(rel);
	if (found != 1) {
		item(r, false,
		     "workspace %s is not inside a sandmount mount: commands run there "
		     "would be refused",
		     dir);
		return;
	}
	char *label = str_printf("workspace %s", dir);
	check_mount(r, label ? label : dir, mp);
	free(label);
}

/* Every configured sandbox with a mountpoint and every live mount not among them. */
static void check_all_mounts(struct report *r, json_t *root)
{
	char *done[64] = {NULL}, **all = NULL;
	int ndone = root ? check_configured(r, root, done, 64) : 0;
	int n = mounts_list(&all);
	for (int i = 0; i < n; i++) {
		if (!contains(done, ndone, all[i]))
			check_mount(r, "mount", all[i]);
		free(all[i]);
	}
	if (n <= 0 && ndone == 0)
		item(r, false,
		     "no sandmount mount: every command would be refused (mount a "
		     "sandbox with sandmount)");
	for (int i = 0; i < ndone; i++)
		free(done[i]);
	free(all);
}

int sandexec_check(char *const *workspaces, int n)
{
	struct report r = {0};
	char self[PATH_MAX];
	ssize_t k = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[k > 0 ? k : 0] = 0;
	check_shell(&r, self);
	check_shells_file(&r, self);
	json_t *root = check_config(&r);
	for (int i = 0; i < n; i++)
		check_workspace(&r, workspaces[i]);
	if (n == 0)
		check_all_mounts(&r, root);
	json_decref(root);
	printf("%s\n", r.failures ? "sandexec --check: the wiring has problems (FAIL above)"
				  : "sandexec --check: all good");
	return r.failures ? 1 : 0;
}
