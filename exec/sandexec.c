/* sandexec.c: runs a command in the sandbox whose sandmount mount holds the current directory.
 *
 * Finds the mount (or --mount), connects to its daemon's control socket, hands over
 * stdin/stdout/stderr with SCM_RIGHTS and then only relays signals and window sizes until the
 * daemon reports the exit status; a command killed by signal N kills sandexec with N too. Works
 * as a login shell: `sandexec -c 'STRING'` is `sh -c`, and the login-environment probe of
 * gateways (`sandexec -l -c "printf '\0'; env -0"`) is answered here without running anything.
 * `sandexec --check` reports the wiring (sandexec_check.c); what environment reaches the sandbox
 * is sandexec_env.c's. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "config.h"
#include "ctl_proto.h"
#include "runtime.h"
#include "sandexec_check.h"
#include "sandexec_env.h"
#include "transport.h"
#include "util.h"

#define EXIT_UNREACHABLE 125
#define EXIT_USAGE	 2
/* What gateways run to learn the login shell's environment (OpenClaw: `$SHELL -l -c ...`). */
#define LOGIN_ENV_PROBE "printf '\\0'; env -0"

extern char **environ;

struct options {
	const char *workdir; /* -w */
	const char *mount;   /* --mount */
	const char *sandbox; /* --sandbox */
	const char *command; /* -c STRING */
	char **argv;	     /* CMD ARG... (or $0 $1... after -c) */
	int argc;
	char **set_env; /* -e K=V, NULL-terminated */
	int nset_env;
	bool force_tty, no_tty;
	bool login; /* -l, --login */
	bool check; /* --check [WORKSPACE...] */
};

static struct termios saved_termios;
static bool termios_saved;

static void restore_terminal(void)
{
	if (termios_saved)
		tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_termios);
}

static void die_on_signal(int sig)
{
	restore_terminal();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void fail(int code, const char *fmt, ...)
{
	va_list ap;
	restore_terminal();
	fputs("sandexec: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

static void usage(FILE *f)
{
	fputs("usage: sandexec [-w DIR] [-e K=V]... [-i] [-t|-T] [--mount MOUNTPOINT|--sandbox "
	      "SANDBOX]"
	      " [--] CMD [ARG...]\n"
	      "       sandexec [-l] -c 'STRING' [NAME [ARG...]]\n"
	      "       sandexec --check [WORKSPACE...]\n"
	      "Runs a command in the sandbox whose sandmount mount holds the current directory.\n",
	      f);
}

static void parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
	    {"mount", required_argument, NULL, 'm'},
	    {"sandbox", required_argument, NULL, 's'},
	    {"login", no_argument, NULL, 'l'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {"check", no_argument, NULL, 'C'},
	    {NULL, 0, NULL, 0},
	};
	int c;
	memset(o, 0, sizeof(*o));
	o->set_env = calloc((size_t)argc + 1, sizeof(char *));
	if (!o->set_env)
		fail(EXIT_UNREACHABLE, "out of memory");
	while ((c = getopt_long(argc, argv, "+w:e:itTc:lhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'w':
			o->workdir = optarg;
			break;
		case 'm':
			o->mount = optarg;
			break;
		case 's':
			o->sandbox = optarg;
			break;
		case 'c':
			o->command = optarg;
			break;
		case 't':
			o->force_tty = true;
			break;
		case 'T':
			o->no_tty = true;
			break;
		case 'i': /* stdin is always forwarded */
			break;
		case 'l':
			o->login = true;
			break;
		case 'e':
			if (optarg[0] == '=' || !strchr(optarg, '='))
				fail(EXIT_USAGE, "-e %s: expected NAME=VALUE", optarg);
			o->set_env[o->nset_env++] = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("sandexec %s\n", SANDMOUNT_VERSION);
			exit(0);
		case 'C':
			o->check = true;
			break;
		default:
			usage(stderr);
			exit(EXIT_USAGE);
		}
	}
	if (o->mount && o->sandbox)
		fail(EXIT_USAGE, "--mount and --sandbox name the sandbox twice: give one");
	o->argv = argv + optind;
	o->argc = argc - optind;
}

/* The mountpoint of the sandbox named as sandmount was given it (config name or URL). */
static const char *sandbox_mountpoint(const char *sandbox)
{
	char *name = xstrdup(sandbox), **mps = NULL;
	for (char *c = name; *c; c++)
		if (*c == ',')
			*c = '_'; /* as the daemon writes it into the mount's source */
	int n = mounts_of_sandbox(name, &mps);
	free(name);
	if (n < 0)
		fail(EXIT_UNREACHABLE, "cannot read /proc/self/mountinfo: %s", strerror(errno));
	if (n == 0)
		fail(EXIT_UNREACHABLE, "sandbox %s is not mounted (mount it with: sandmount %s)",
		     sandbox, sandbox);
	if (n > 1)
		fail(EXIT_UNREACHABLE, "sandbox %s is mounted %d times (%s, %s...): use --mount",
		     sandbox, n, mps[0], mps[1]);
	return mps[0];
}

static char *join_quoted(char *const *words, int n, const char *prefix)
{
	struct buf b;
	buf_init(&b);
	buf_put_bytes(&b, prefix, strlen(prefix));
	for (int i = 0; i < n; i++) {
		char *q = sh_quote(words[i]);
		if (!q)
			fail(EXIT_UNREACHABLE, "out of memory");
		if (b.len)
			buf_put_u8(&b, ' ');
		buf_put_bytes(&b, q, strlen(q));
		free(q);
	}
	buf_put_u8(&b, 0);
	if (!buf_ok(&b))
		fail(EXIT_UNREACHABLE, "out of memory");
	return (char *)b.data;
}

/* The shell command string the sandbox runs with `sh -c`. */
static char *command_string(const struct options *o)
{
	if (o->command && o->argc == 0)
		return xstrdup(o->command);
	if (o->command) { /* sh -c STRING NAME ARG...: keep $0 and the positional parameters */
		char *q = sh_quote(o->command);
		char *prefix = q ? str_printf("exec sh -c %s", q) : NULL;
		if (!prefix)
			fail(EXIT_UNREACHABLE, "out of memory");
		char *s = join_quoted(o->argv, o->argc, prefix);
		free(q);
		free(prefix);
		return s;
	}
	if (o->argc == 0) /* no command: an interactive shell, as `sh` alone */
		return xstrdup("exec \"${SHELL:-/bin/sh}\" -l");
	/* exec: the command itself leads the process group, as it would under a local shell,
	 * so a forwarded SIGINT reaches it rather than killing a shell that waits for it. */
	return join_quoted(o->argv, o->argc, "exec");
}

/* The environment, then -e entries (which win on the remote side by coming last). */
static void put_env(struct buf *b, const struct env_plan *plan)
{
	buf_put_u32(b, (uint32_t)plan->n);
	for (size_t i = 0; i < plan->n; i++)
		buf_put_cstring(b, plan->entries[i]);
}

/* Answer a gateway's login-environment probe with sandexec's own environment, as a local
 * login shell would answer with the host's: the gateway asks about itself, not the sandbox. */
static void answer_env_probe(void)
{
	fputc(0, stdout);
	for (char **e = environ; *e; e++)
		fwrite(*e, 1, strlen(*e) + 1, stdout);
	exit(fflush(stdout) == 0 ? 0 : EXIT_UNREACHABLE);
}

/* A command killed by signal N: die by N as well, as a local shell's command would, so the
 * caller sees the signal (terminal restored, no core file). Returns 128+N if still alive. */
static int die_like(int sig)
{
	static const int deadly[] = {SIGHUP,  SIGINT,  SIGQUIT, SIGILL,	 SIGTRAP, SIGABRT,
				     SIGBUS,  SIGFPE,  SIGKILL, SIGUSR1, SIGSEGV, SIGUSR2,
				     SIGPIPE, SIGALRM, SIGTERM, SIGXCPU, SIGXFSZ, SIGSYS};
	int status = 128 + sig;
	bool known = false;
	for (size_t i = 0; i < sizeof(deadly) / sizeof(deadly[0]); i++)
		known |= deadly[i] == sig;
	if (!known)
		return status;
	struct rlimit no_core = {0, 0};
	sigset_t set;
	restore_terminal();
	fflush(NULL);
	setrlimit(RLIMIT_CORE, &no_core);
	signal(sig, SIG_DFL);
	raise(sig);
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	return status; /* still alive: the exit code says it */
}

/* rel of path under mountpoint, or NULL if path is outside. */
static const char *path_within(const char *mountpoint, const char *path)
{
	size_t n = strlen(mountpoint);
	if (!strcmp(mountpoint, "/"))
		n = 0;
	else if (strncmp(mountpoint, path, n) || (path[n] && path[n] != '/'))
		return NULL;
	while (path[n] == '/')
		n++;
	return path + n;
}

static void run_locally(const struct options *o, const char *command)
{
	char *argv[] = {"sh", "-c", (char *)command, NULL};
	for (int i = 0; i < o->nset_env; i++)
		if (putenv(o->set_env[i]) != 0)
			fail(EXIT_UNREACHABLE, "putenv: %s", strerror(errno));
	if (o->workdir && chdir(o->workdir) < 0)
		fail(EXIT_UNREACHABLE, "%s: %s", o->workdir, strerror(errno));
	execv("/bin/sh", argv);
	fail(EXIT_UNREACHABLE, "/bin/sh: %s", strerror(errno));
}

/* Resolve the directory to run in and the mount that holds it. Returns false when it lies in no
 * mount (mountpoint is then unset). */
static bool locate(const struct options *o, char *target, char *mountpoint, char **rel)
{
	char cwd[PATH_MAX], joined[PATH_MAX * 2];
	if (!getcwd(cwd, sizeof(cwd)))
		fail(EXIT_UNREACHABLE, "cannot get the current directory: %s", strerror(errno));
	strcpy(target, cwd);
	if (o->workdir) {
		snprintf(joined, sizeof(joined), "%s/%s", o->workdir[0] == '/' ? "" : cwd,
			 o->workdir);
		if (!realpath(joined, target))
			fail(EXIT_UNREACHABLE, "-w %s: %s", o->workdir, strerror(errno));
	}
	const char *mount = o->sandbox ? sandbox_mountpoint(o->sandbox) : o->mount;
	if (mount) {
		if (!realpath(mount, mountpoint))
			fail(EXIT_UNREACHABLE, "--mount %s: %s", mount, strerror(errno));
		const char *r = path_within(mountpoint, target);
		if (!r && o->workdir)
			fail(EXIT_UNREACHABLE, "-w %s: %s is not inside %s", o->workdir, target,
			     mountpoint);
		*rel = xstrdup(r ? r : "");
		return true;
	}
	int r = mounts_find(target, mountpoint, PATH_MAX, rel);
	if (r < 0)
		fail(EXIT_UNREACHABLE, "cannot read /proc/self/mountinfo: %s", strerror(errno));
	return r == 1;
}

static int connect_daemon(const char *mountpoint)
{
	struct err e;
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (runtime_socket_path(mountpoint, addr.sun_path, sizeof(addr.sun_path), &e) < 0)
		fail(EXIT_UNREACHABLE, "%s", e.msg);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		fail(EXIT_UNREACHABLE, "socket: %s", strerror(errno));
	if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		if (errno == ENOENT || errno == ECONNREFUSED)
			fail(EXIT_UNREACHABLE,
			     "no sandmount daemon is serving %s (is it mounted? see sandmount "
			     "--status)",
			     mountpoint);
		fail(EXIT_UNREACHABLE, "%s: %s", addr.sun_path, strerror(errno));
	}
	return s;
}

static void window_size(unsigned *rows, unsigned *cols)
{
	struct winsize ws;
	*rows = 24;
	*cols = 80;
	for (int fd = 0; fd <= 2; fd++) {
		if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
			*rows = ws.ws_row;
			*cols = ws.ws_col;
			return;
		}
	}
}

static void enter_raw_mode(void)
{
	static const int fatal[] = {SIGALRM, SIGUSR1, SIGUSR2, SIGABRT, SIGSEGV, SIGBUS};
	struct termios raw;
	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_termios) < 0)
		return;
	termios_saved = true;
	atexit(restore_terminal);
	for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
		signal(fatal[i], die_on_signal);
	raw = saved_termios;
	cfmakeraw(&raw);
	tcsetattr(STDIN_FILENO, TCSADRAIN, &raw);
}

static void send_u32s(int sock, uint8_t type, uint32_t a, uint32_t b, int n)
{
	struct buf m;
	buf_init(&m);
	buf_put_u32(&m, a);
	if (n == 2)
		buf_put_u32(&m, b);
	ctl_send(sock, type, &m, NULL, 0); /* a dead daemon shows as EOF in the main loop */
	buf_free(&m);
}

/* The last signal forwarded to the remote command (0: none). */
static int forwarded_signal;

/* Forward signals and resizes until the daemon reports how the command ended: an exit code
 * 0..255, or EXEC_STATUS_SIGNALED(N). */
static int wait_for_exit(int sock, int sigfd, bool tty)
{
	struct buf msg;
	buf_init(&msg);
	for (;;) {
		struct pollfd p[2] = {{.fd = sock, .events = POLLIN},
				      {.fd = sigfd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			fail(EXIT_UNREACHABLE, "poll: %s", strerror(errno));
		}
		if (p[1].revents) {
			struct signalfd_siginfo si;
			if (read(sigfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo == SIGWINCH && tty) {
				unsigned rows, cols;
				window_size(&rows, &cols);
				send_u32s(sock, CTL_RESIZE, rows, cols, 2);
			} else if (si.ssi_signo != SIGWINCH) {
				send_u32s(sock, CTL_SIGNAL, si.ssi_signo, 0, 1);
				forwarded_signal = (int)si.ssi_signo;
			}
		}
		if (!p[0].revents)
			continue;
		uint8_t type;
		int nfds;
		int r = ctl_recv(sock, &type, &msg, NULL, 0, &nfds, deadline_in(10000));
		if (r == -EPIPE)
			fail(EXIT_UNREACHABLE, "the sandmount daemon closed the connection");
		if (r < 0)
			fail(EXIT_UNREACHABLE, "control connection: %s", strerror(-r));
		uint32_t code;
		char *text = NULL;
		if (type == CTL_EXIT && buf_get_u32(&msg, &code) == 0)
			return code > EXEC_STATUS_SIGNAL_MAX ? EXIT_UNREACHABLE : (int)code;
		if (type == CTL_ERROR && buf_get_u32(&msg, &code) == 0 &&
		    buf_get_cstring(&msg, &text) == 0) {
			restore_terminal();
			fprintf(stderr, "%s\n", text);
			return code > 255 ? EXIT_UNREACHABLE : (int)code;
		}
		fail(EXIT_UNREACHABLE, "unexpected reply %u from the sandmount daemon", type);
	}
}

/* Closed standard fds cannot be passed: give them /dev/null, as a shell would see. */
static void ensure_std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		int n = open("/dev/null", O_RDWR);
		if (n < 0 || (n != fd && (dup2(n, fd) < 0 || close(n) < 0)))
			exit(EXIT_UNREACHABLE);
	}
}

static void send_exec(int sock, const struct env_plan *env, const char *command, const char *rel,
		      bool tty)
{
	struct buf m;
	unsigned rows = 0, cols = 0;
	const char *term = getenv("TERM");
	int fds[3] = {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO};
	if (tty)
		window_size(&rows, &cols);
	buf_init(&m);
	buf_put_u32(&m, tty ? CTL_EXEC_TTY : 0);
	buf_put_cstring(&m, command);
	buf_put_cstring(&m, rel);
	buf_put_u32(&m, rows);
	buf_put_u32(&m, cols);
	buf_put_cstring(&m, tty && term ? term : "");
	put_env(&m, env);
	if (!buf_ok(&m))
		fail(EXIT_UNREACHABLE, "out of memory");
	int r = ctl_send(sock, CTL_EXEC, &m, fds, 3);
	if (r < 0)
		fail(EXIT_UNREACHABLE, "cannot send the command to the daemon: %s", strerror(-r));
	buf_free(&m);
}

/* The signals sandexec forwards, as a signalfd. An ignored signal is dropped even while
 * blocked, and a background job of a non-interactive shell starts with SIGINT and SIGQUIT
 * ignored, yet `kill -INT` should still reach the command: reset them to the default. */
static int take_over_signals(void)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH};
	sigset_t set;
	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&set, sigs[i]);
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], SIG_DFL);
	int fd = signalfd(-1, &set, SFD_CLOEXEC);
	if (fd < 0)
		fail(EXIT_UNREACHABLE, "signalfd: %s", strerror(errno));
	return fd;
}

int main(int argc, char **argv)
{
	struct options o;
	struct sandbox_cfg cfg;
	struct err e;
	char target[PATH_MAX], mountpoint[PATH_MAX];
	char *rel = NULL;

	ensure_std_fds();
	parse_args(argc, argv, &o);
	if (o.check)
		return sandexec_check(o.argv, o.argc);
	config_defaults(&cfg);
	if (config_load_global(&cfg, &e) < 0)
		fail(EXIT_UNREACHABLE, "%s", e.msg);
	if (o.login && o.command && o.argc == 0 && !strcmp(o.command, LOGIN_ENV_PROBE))
		answer_env_probe();
	char *command = command_string(&o);

	if (!locate(&o, target, mountpoint, &rel)) {
		if (cfg.local_fallback)
			run_locally(&o, command);
		char *path = config_file_path();
		fail(EXIT_UNREACHABLE,
		     "%s is not inside a sandmount mount (mount one with sandmount, or set "
		     "local_fallback in %s)",
		     target, path ? path : "~/.config/sandmount/config.json");
	}

	int sigfd = take_over_signals();
	signal(SIGPIPE, SIG_IGN);

	bool tty = o.force_tty || (!o.no_tty && isatty(STDIN_FILENO) && isatty(STDOUT_FILENO));
	int sock = connect_daemon(mountpoint);
	if (tty)
		enter_raw_mode();
	struct env_plan env;
	size_t parent_len = 0;
	char *parent = env_read_parent(&parent_len);
	if (env_plan_build(&env, environ, parent, parent_len, cfg.env_allow, o.set_env,
			   o.nset_env) < 0)
		fail(EXIT_UNREACHABLE, "out of memory");
	free(parent);
	if (env.path_prefix) {
		char *prefixed = str_printf("%s%s", env.path_prefix, command);
		if (!prefixed)
			fail(EXIT_UNREACHABLE, "out of memory");
		free(command);
		command = prefixed;
	}
	send_exec(sock, &env, command, rel, tty);
	env_plan_free(&env);
	int status = wait_for_exit(sock, sigfd, tty);
	restore_terminal();
	if (status >= EXEC_STATUS_SIGNALED(1))
		return die_like(status - EXEC_STATUS_SIGNALED(0));
	/* A transport that cannot tell a signal from an exit code (Docker's exec API) reports
	 * 128+N; when N is the signal we forwarded, that is how the command ended. */
	if (forwarded_signal && status == 128 + forwarded_signal)
		return die_like(forwarded_signal);
	return status;
}
