/* main.c: the sandmount command — mount a sandbox (and become its session daemon), unmount it,
 * or show the status of mounts; `up`, `down` and `list` are in session_cmd.c. Also the form
 * mount(8) uses for `mount -t fuse.sandmount NAME DIR -o OPTS` (through mount.fuse3, from fstab):
 * the generic mount options in OPTS are dropped. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "ctl_proto.h"
#include "daemon.h"
#include "log.h"
#include "runtime.h"
#include "session_cmd.h"
#include "stat_helper.h"

static void usage(FILE *out)
{
	fputs(
	    "usage: sandmount [-f] [-d] [-o OPT[,OPT...]] SANDBOX [MOUNTPOINT]\n"
	    "       sandmount -u MOUNTPOINT\n"
	    "       sandmount --status [MOUNTPOINT]\n"
	    "       sandmount up [-f] [-d] [--session ID] [-o OPT[,OPT...]] NAME[:ID]\n"
	    "       sandmount down [--session ID] NAME[:ID]\n"
	    "       sandmount list\n"
	    "\n"
	    "Mount a remote sandbox's workspace at MOUNTPOINT and serve it as its session daemon\n"
	    "(sandexec runs commands in the sandbox through it).\n"
	    "\n"
	    "SANDBOX   ssh://[USER@]HOST[:PORT]/DIR   an SSH host; DIR is absolute, /~/DIR is\n"
	    "                                         relative to the remote home\n"
	    "          docker://CONTAINER/DIR         a container (Docker Engine API or Podman)\n"
	    "          NAME                           a sandbox from the config file\n"
	    "MOUNTPOINT may be left out for a named sandbox that has a \"mountpoint\".\n"
	    "\n"
	    "  -f               stay in the foreground (log to stderr)\n"
	    "  -d               debug log (with -f: FUSE request trace too)\n"
	    "  -o OPT[,OPT]     options (below); others are passed to FUSE\n"
	    "  -u MOUNTPOINT    flush, unmount and stop the daemon\n"
	    "  --status [MP]    connection state, round-trip time, pending writes, counters\n"
	    "  -h, --help       this text;  -V, --version  the version\n"
	    "\n"
	    "options:\n"
	    "  identity=FILE          private key (default: ssh-agent and ~/.ssh keys)\n"
	    "  known_hosts=FILE       known hosts file (default ~/.ssh/known_hosts)\n"
	    "  accept_new_host_key    add an unknown host key (a changed key is always refused)\n"
	    "  user=NAME  port=N      override the URL / ~/.ssh/config\n"
	    "  ssh_config=FILE|none   ssh client config to read (default ~/.ssh/config)\n"
	    "  connect_timeout=S      give up connecting after S seconds (10)\n"
	    "  keepalive=S            probe an idle connection every S seconds (15)\n"
	    "  op_timeout=S           a file operation fails with EIO after S seconds (30)\n"
	    "  cache_timeout=S        attribute/name cache lifetime in seconds (2)\n"
	    "  max_dir_entries=N, max_listing_bytes=N, max_name=N, max_link_target=N,\n"
	    "  max_packet=N, max_inflight=N   bounds on what the sandbox sends (man: LIMITS)\n"
	    "  sftp_server=CMD        ssh: run CMD in an exec channel for SFTP (not the "
	    "subsystem)\n"
	    "  allow_other            let other users use the mount (needs user_allow_other)\n"
	    "  owners=user|real       files show as the mounting user (user, default), or with\n"
	    "                         the sandbox's numeric uid/gid, which chown sets (real)\n"
	    "  prefetch=on|off        with the agent's watch: reading a file brings its\n"
	    "                         directory's small files into the page cache (on)\n"
	    "  docker_host=URL        unix://PATH, tcp://HOST:PORT or ssh://[USER@]HOST (default:\n"
	    "                         as the docker CLI resolves it)\n"
	    "  docker_context=NAME    a docker context from ~/.docker\n"
	    "  agent=auto|on|off      sandmount-agent in the sandbox (fast exec, change watch)\n"
	    "  agent_dir=DIR          where to place the agent in a container\n"
	    "  session=ID             the session ({session} in a configured mountpoint)\n"
	    "  (mount(8)'s _netdev, noauto, auto, nofail, defaults, rw, user, x-systemd.* ... are\n"
	    "  accepted and ignored: mount -t fuse.sandmount NAME DIR -o OPTS works from fstab)\n"
	    "\n"
	    "Config: $SANDMOUNT_CONFIG, ~/.config/sandmount/config.json or\n"
	    "/etc/sandmount/config.json. See sandmount(1).\n",
	    out);
}

/* Run fusermount3 with the given flag on mp; returns its exit status. */
static int run_fusermount_quiet(const char *flag, const char *mp, bool quiet)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int null = quiet ? open("/dev/null", O_WRONLY) : -1;
		if (null >= 0)
			dup2(null, STDERR_FILENO);
		execlp("fusermount3", "fusermount3", flag, mp, (char *)NULL);
		fprintf(stderr, "sandmount: cannot run fusermount3: %s\n", strerror(errno));
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int run_fusermount(const char *flag, const char *mp)
{
	return run_fusermount_quiet(flag, mp, false);
}

/* The errno of a stat on a dead FUSE mount: its daemon is gone, or its connection was aborted. */
static bool dead_mount_errno(int e)
{
	return e == ENOTCONN || e == ECONNABORTED;
}

/* A FUSE mount whose daemon is gone. statfs, not stat: the kernel answers a stat from attributes
 * it still holds (under the watch for a day) without asking the dead connection. */
static bool mount_is_dead(const char *mp)
{
	struct statfs sf;
	return statfs(mp, &sf) < 0 && dead_mount_errno(errno);
}

/* Absolute, canonical path of a mountpoint whose own stat may fail (a stale FUSE mount):
 * the parent is resolved, the last component kept. */
static int canonical_mountpoint(const char *arg, char *out, size_t len)
{
	char resolved[PATH_MAX];
	if (realpath(arg, resolved)) {
		snprintf(out, len, "%s", resolved);
		return 0;
	}
	int saved = errno;
	if (!dead_mount_errno(saved))
		return -saved;
	char *a = xstrdup(arg), *b = xstrdup(arg);
	int rc = realpath(dirname(a), resolved) ? 0 : -errno;
	if (rc == 0 && (size_t)snprintf(out, len, "%s/%s", strcmp(resolved, "/") ? resolved : "",
					basename(b)) >= len)
		rc = -ENAMETOOLONG;
	free(a);
	free(b);
	return rc;
}

int prepare_mountpoint(const char *arg, char *mp, size_t len)
{
	int rc = canonical_mountpoint(arg, mp, len);
	if (rc < 0) {
		fprintf(stderr, "sandmount: mountpoint %s: %s\n", arg, strerror(-rc));
		return -1;
	}
	struct stat st;
	if (mount_is_dead(mp)) {
		if (mounts_is_sandmount(mp) != 1 || run_fusermount("-uz", mp) != 0) {
			fprintf(stderr, "sandmount: %s is a dead mount that could not be cleared\n",
				mp);
			return -1;
		}
		fprintf(stderr, "sandmount: cleared a stale mount at %s\n", mp);
	} else if (mounts_is_sandmount(mp) == 1) {
		fprintf(stderr,
			"sandmount: mountpoint busy: %s is already a sandmount mount "
			"(unmount it with: sandmount -u %s)\n",
			mp, mp);
		return -1;
	}
	if (stat(mp, &st) < 0) {
		fprintf(stderr, "sandmount: mountpoint %s: %s\n", mp, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "sandmount: mountpoint %s is not a directory\n", mp);
		return -1;
	}
	return 0;
}

static int connect_control(const char *mp, struct err *e)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (runtime_socket_path(mp, sa.sun_path, sizeof(sa.sun_path), e) < 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err_set(e, "no daemon answers for %s (%s)", mp, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int print_status(const char *mp)
{
	struct err e;
	int fd = connect_control(mp, &e);
	if (fd < 0) {
		fprintf(stderr, "sandmount: %s\n", e.msg);
		return 1;
	}
	struct buf b;
	buf_init(&b);
	uint8_t type = 0;
	int nfds = 0;
	int rc = ctl_send(fd, CTL_STATUS, &b, NULL, 0);
	if (rc == 0)
		rc = ctl_recv(fd, &type, &b, NULL, 0, &nfds, deadline_in(10000));
	char *text = NULL;
	if (rc == 0 && type == CTL_STATUS_REPLY && buf_get_cstring(&b, &text) == 0) {
		fputs(text, stdout);
		free(text);
	} else {
		fprintf(stderr, "sandmount: %s: no status from the daemon (%s)\n", mp,
			rc < 0 ? strerror(-rc) : "bad reply");
		rc = -1;
	}
	buf_free(&b);
	close(fd);
	return rc == 0 ? 0 : 1;
}

static int cmd_status(const char *arg)
{
	char mp[PATH_MAX];
	if (arg) {
		int rc = canonical_mountpoint(arg, mp, sizeof(mp));
		if (rc < 0 || mounts_is_sandmount(mp) != 1) {
			fprintf(stderr, "sandmount: %s is not a sandmount mount\n", arg);
			return 1;
		}
		return print_status(mp);
	}
	char **all = NULL;
	int n = mounts_list(&all);
	if (n <= 0) {
		puts(n == 0 ? "no sandmount mounts" : "cannot read /proc/self/mountinfo");
		return n == 0 ? 0 : 1;
	}
	int rc = 0;
	for (int i = 0; i < n; i++) {
		if (i)
			putchar('\n');
		rc |= print_status(all[i]);
		free(all[i]);
	}
	free(all);
	return rc;
}

/* Wait until the daemon's control socket stops answering (the daemon has exited). */
static void wait_daemon_gone(const char *mp)
{
	struct err e;
	for (int i = 0; i < 300; i++) {
		int fd = connect_control(mp, &e);
		if (fd < 0)
			return;
		close(fd);
		usleep(100 * 1000);
	}
	fprintf(stderr, "sandmount: the daemon of %s is still running after 30 s\n", mp);
}

int cmd_unmount(const char *arg)
{
	char mp[PATH_MAX];
	int rc = canonical_mountpoint(arg, mp, sizeof(mp));
	if (rc < 0) {
		fprintf(stderr, "sandmount: %s: %s\n", arg, strerror(-rc));
		return 1;
	}
	if (mounts_is_sandmount(mp) != 1) {
		fprintf(stderr, "sandmount: %s is not a sandmount mount\n", mp);
		return 1;
	}
	struct stat st; /* a stat, not mount_is_dead: a statfs waits for a live daemon's sandbox */
	bool stale = stat(mp, &st) < 0 && dead_mount_errno(errno);
	/* The daemon's stat helper may be inside the mount for a moment (showing the kernel a
	 * file's size, kernel_size.c): a busy mount is tried again for up to 3 s, quietly but the
	 * last. */
	int tries = 15;
	while (--tries > 0 && run_fusermount_quiet(stale ? "-uz" : "-u", mp, true) != 0 &&
	       mounts_is_sandmount(mp) == 1)
		usleep(200 * 1000);
	if (tries == 0 && run_fusermount(stale ? "-uz" : "-u", mp) != 0) {
		fprintf(stderr,
			"sandmount: could not unmount %s (files still open? see fuser -m %s)\n", mp,
			mp);
		return 1;
	}
	wait_daemon_gone(mp);
	return 0;
}

/* Options of mount(8) and fstab that mean nothing to sandmount (mount.fuse3 passes them on). */
static bool generic_mount_option(const char *o, size_t n)
{
	static const char *const ignored[] = {
	    "_netdev", "noauto", "auto",  "nofail", "defaults", "rw",	"user",	 "users",
	    "nouser",  "owner",	 "group", "dev",    "suid",	"exec", "async", "relatime"};
	if ((n > 2 && !strncmp(o, "x-", 2)) || (n > 8 && !strncmp(o, "comment=", 8)))
		return true;
	for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++)
		if (n == strlen(ignored[i]) && !strncmp(o, ignored[i], n))
			return true;
	return false;
}

/* Drop generic mount options from the comma-separated opts in place; *session gets the value
 * of session=ID (malloc'd). */
static void filter_mount_options(char *opts, char **session)
{
	char *w = opts;
	for (char *r = opts; *r;) {
		size_t n = strcspn(r, ",");
		bool drop = generic_mount_option(r, n);
		if (n > 8 && !strncmp(r, "session=", 8)) {
			free(*session);
			*session = strndup(r + 8, n - 8);
			drop = true;
		}
		if (!drop && n) {
			if (w != opts)
				*w++ = ',';
			memmove(w, r, n);
			w += n;
		}
		r += n + (r[n] == ',');
	}
	*w = 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], STAT_HELPER_ARG))
		return stat_helper_main();
	if (argc > 1 && session_cmd_is(argv[1]))
		return session_cmd_main(argc - 1, argv + 1);
	static const struct option longopts[] = {
	    {"status", no_argument, NULL, 'S'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	struct daemon_opts dopts = {0};
	char *opts = NULL;
	const char *unmount = NULL;
	bool status = false;
	int c;
	while ((c = getopt_long(argc, argv, "fdo:u:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			dopts.foreground = true;
			break;
		case 'd':
			dopts.debug = true;
			break;
		case 'o': {
			char *joined = opts ? str_printf("%s,%s", opts, optarg) : xstrdup(optarg);
			free(opts);
			opts = joined;
			break;
		}
		case 'u':
			unmount = optarg;
			break;
		case 'S':
			status = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("sandmount %s\n", SANDMOUNT_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	log_init("sandmount", dopts.debug ? LOG_DEBUG : LOG_INFO);
	if (unmount)
		return cmd_unmount(unmount);
	if (status)
		return cmd_status(optind < argc ? argv[optind] : NULL);
	if (optind >= argc || argc - optind > 2) {
		usage(stderr);
		return 2;
	}

	struct sandbox_cfg cfg;
	struct err e;
	char *fuse_opts = NULL, *session = NULL;
	if (opts)
		filter_mount_options(opts, &session);
	int crc = config_resolve(argv[optind], opts, &cfg, &fuse_opts, &e);
	/* {session} in the configured mountpoint matters only when no MOUNTPOINT is given */
	if (crc == 0 && (session || optind + 1 >= argc))
		crc = config_apply_session(&cfg, session, &e);
	free(session);
	if (crc < 0) {
		fprintf(stderr, "sandmount: %s\n", e.msg);
		return 1;
	}
	const char *mp_arg = optind + 1 < argc ? argv[optind + 1] : cfg.mountpoint;
	if (!mp_arg) {
		fprintf(stderr, "sandmount: no MOUNTPOINT given and %s has none in the config\n",
			cfg.name);
		return 2;
	}
	char mp[PATH_MAX];
	if (prepare_mountpoint(mp_arg, mp, sizeof(mp)) < 0)
		return 1;
	dopts.fuse_opts = fuse_opts;
	int rc = daemon_run_mount(&cfg, mp, &dopts);
	free(fuse_opts);
	free(opts);
	config_free(&cfg);
	return rc;
}
