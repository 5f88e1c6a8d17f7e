/* mux_spawn.c: the children of `sandmount-agent serve`. A command runs as `sh -c COMMAND` in a
 * session of its own (so its whole process group can be signalled), with pipes for stdin, stdout
 * and stderr, or with a PTY (opened without libutil: posix_openpt, grantpt, unlockpt, ptsname).
 * An SFTP channel is a forked copy of the agent running its SFTP server loop on pipes.
 *
 * sandexec sends `exec 'WORD' 'WORD'...` for a plain argument vector. Such a command is run
 * without the shell (it would only search PATH and exec, costing a second exec): the words are
 * unquoted and the program is exec'd directly, with PWD set as the shell would export it. When
 * that exec fails for any reason the child falls back to `sh -c`, so errors read as usual. */
#include "mux.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "sftp_server.h"

#define MAX_NOTED_FDS 4096
#define PIPE_SIZE     (1024 * 1024) /* fewer wake-ups per MiB moved; best effort */

/* Descriptors of the agent a forked child must not keep (they carry no O_CLOEXEC for the SFTP
 * child, which does not exec). A bitmap indexed by fd. */
static uint8_t noted[MAX_NOTED_FDS / 8];

void spawn_note_fd(int fd)
{
	if (fd >= 0 && fd < MAX_NOTED_FDS)
		noted[fd / 8] |= (uint8_t)(1u << (fd % 8));
}

void spawn_forget_fd(int fd)
{
	if (fd >= 0 && fd < MAX_NOTED_FDS)
		noted[fd / 8] &= (uint8_t) ~(1u << (fd % 8));
}

int spawn_status(int wstatus)
{
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	if (WIFSIGNALED(wstatus))
		return 256 + WTERMSIG(wstatus); /* MUX_EXIT: 256+N, not an exit code */
	return 255;
}

int spawn_resize(int master_fd, unsigned rows, unsigned cols)
{
	struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
	return ioctl(master_fd, TIOCSWINSZ, &ws);
}

/* In a child: every disposition back to its default, nothing blocked. Not only the ones the
 * agent changed: whatever started the agent may have left SIGINT and SIGQUIT ignored (a shell's
 * background job), and an ignored signal stays ignored across exec, even in a shell, so a
 * forwarded ^C would never stop the command. */
static void child_reset_signals(void)
{
	sigset_t none;
	sigemptyset(&none);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* fork() with every signal blocked until the child has reset its dispositions: a signal sent
 * right after the spawn (before the child's setsid(), so to its pid alone) would otherwise run
 * the agent's own handler in the child, which writes to the self-pipe the agent shares with it
 * (a SIGTERM read as the agent's own), and the signal would be lost. Blocked, it waits, and
 * child_reset_signals lets it act with its default. */
static pid_t fork_child(void)
{
	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	pid_t pid = fork();
	if (pid != 0) {
		int saved = errno;
		sigprocmask(SIG_SETMASK, &old, NULL);
		errno = saved;
	}
	return pid;
}

static void child_close_noted(void)
{
	for (int fd = 3; fd < MAX_NOTED_FDS; fd++)
		if (noted[fd / 8] & (1u << (fd % 8)))
			close(fd);
}

static void child_fail(const char *what, const char *detail, int status)
{
	dprintf(STDERR_FILENO, "sandmount: %s %s: %s\n", what, detail, strerror(errno));
	_exit(status);
}

static bool has_name(char **env, const char *name)
{
	size_t n = strlen(name);
	for (; env && *env; env++)
		if (!strncmp(*env, name, n) && (*env)[n] == '=')
			return true;
	return false;
}

static char *env_entry(const char *name, const char *value)
{
	char *s = malloc(strlen(name) + strlen(value) + 2);
	if (s)
		sprintf(s, "%s=%s", name, value);
	return s;
}

/* The given environment, plus PATH and HOME from the agent's own when not given (PATH: a
 * default), plus TERM with a tty. Built in the child, which execs or exits right after. */
static char **child_env(const struct spawn_req *r)
{
	size_t n = 0;
	while (r->env && r->env[n])
		n++;
	char **env = calloc(n + 4, sizeof(*env));
	if (!env)
		return NULL;
	memcpy(env, r->env, n * sizeof(*env));
	const char *path = getenv("PATH"), *home = getenv("HOME");
	if (!has_name(env, "PATH"))
		env[n++] = env_entry("PATH", path ? path : "/usr/local/bin:/usr/bin:/bin");
	if (!has_name(env, "HOME") && home)
		env[n++] = env_entry("HOME", home);
	if (r->tty && !has_name(env, "TERM"))
		env[n++] = env_entry("TERM", r->term && *r->term ? r->term : "xterm");
	/* A failed allocation leaves a NULL that ends the list early: the rest is dropped. */
	return env;
}

/* The words of `exec 'A' 'B'...` (each quoted as sh_quote does: '\'' for a quote), or NULL
 * when the command is anything else. */
static char **plain_argv(const char *cmd)
{
	if (strncmp(cmd, "exec '", 6) != 0)
		return NULL;
	size_t max = 1;
	for (const char *c = cmd; *c; c++)
		max += *c == ' ';
	char **argv = calloc(max + 1, sizeof(*argv));
	char *words = malloc(strlen(cmd) + 1), *o = words;
	size_t n = 0;
	const char *p = cmd + 5;
	while (argv && words && *p == '\'') {
		argv[n++] = o;
		for (p++;; p++) {
			if (*p == '\'' && !strncmp(p, "'\\''", 4)) {
				*o++ = '\'';
				p += 3;
			} else if (*p == '\'') {
				break;
			} else if (!*p) {
				goto not_plain;
			} else {
				*o++ = *p;
			}
		}
		*o++ = 0;
		p++; /* the closing quote */
		if (!*p)
			return argv; /* argv[0] owns `words` */
		if (*p++ != ' ')
			break;
	}
not_plain:
	free(argv);
	free(words);
	return NULL;
}

/* Search PATH (from env) for name, as the shell would; returns the path in out or NULL. */
static const char *find_program(const char *name, char **env, char *out, size_t size)
{
	if (strchr(name, '/'))
		return name;
	const char *path = "/usr/local/bin:/usr/bin:/bin";
	for (char **e = env; e && *e; e++)
		if (!strncmp(*e, "PATH=", 5))
			path = *e + 5;
	for (const char *d = path;; d++) {
		size_t len = strcspn(d, ":");
		int n = snprintf(out, size, "%.*s%s%s", (int)len, len ? d : ".", "/", name);
		if (n > 0 && (size_t)n < size && access(out, X_OK) == 0)
			return out;
		d += len;
		if (!*d)
			return NULL;
	}
}

/* Exec a plain argument vector directly; returns only when that is not possible. */
static void exec_plain(const struct spawn_req *r, char **env)
{
	char **argv = plain_argv(r->command);
	char prog[4096], cwd[4096], *pwd = NULL;
	const char *file = argv ? find_program(argv[0], env, prog, sizeof(prog)) : NULL;
	if (!file)
		goto out;
	size_t n = 0;
	while (env[n])
		n++;
	char **full = calloc(n + 2, sizeof(*full));
	if (!full)
		goto out;
	memcpy(full, env, n * sizeof(*full));
	if (!has_name(env, "PWD") && getcwd(cwd, sizeof(cwd)))
		full[n] = pwd = env_entry("PWD", cwd);
	execve(file, argv, full);
	free(pwd);
	free(full);
out:
	if (argv)
		free(argv[0]);
	free(argv);
}

static void child_exec(const struct spawn_req *r)
{
	if (r->cwd && *r->cwd && chdir(r->cwd) < 0)
		child_fail("cannot change to remote directory", r->cwd, 125);
	char **env = child_env(r);
	char *argv[] = {"sh", "-c", (char *)r->command, NULL};
	if (env) {
		exec_plain(r, env);
		execve("/bin/sh", argv, env);
	}
	child_fail("cannot run", "/bin/sh", 127);
}

/* A pipe whose parent end (index `parent`) is non-blocking; both ends close-on-exec. */
static int make_pipe(int p[2], int parent)
{
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	fcntl(p[parent], F_SETFL, O_NONBLOCK);
	fcntl(p[parent], F_SETPIPE_SZ, PIPE_SIZE);
	return 0;
}

static void close_pair(int p[2])
{
	for (int i = 0; i < 2; i++)
		if (p[i] >= 0)
			close(p[i]);
}

static pid_t spawn_pipes(const struct spawn_req *r, bool sftp, struct child_fds *fds, char *msg,
			 size_t size)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
	if (make_pipe(in, 1) < 0 || make_pipe(out, 0) < 0 || (!sftp && make_pipe(err, 0) < 0)) {
		snprintf(msg, size, "pipe: %s", strerror(errno));
		close_pair(in);
		close_pair(out);
		close_pair(err);
		return -1;
	}
	pid_t pid = fork_child();
	if (pid == 0) {
		child_reset_signals();
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || (!sftp && dup2(err[1], 2) < 0))
			_exit(126);
		if (sftp) {
			child_close_noted();
			close_pair(in);
			close_pair(out);
			signal(SIGPIPE, SIG_IGN);
			_exit(sftp_server_run());
		}
		setsid();
		child_exec(r);
	}
	int saved = errno;
	close(in[0]);
	close(out[1]);
	if (err[1] >= 0)
		close(err[1]);
	if (pid < 0) {
		snprintf(msg, size, "fork: %s", strerror(saved));
		close(in[1]);
		close(out[0]);
		if (err[0] >= 0)
			close(err[0]);
		return -1;
	}
	fds->in_fd = in[1];
	fds->out_fd = out[0];
	fds->err_fd = err[0];
	return pid;
}

static pid_t spawn_pty(const struct spawn_req *r, struct child_fds *fds, char *msg, size_t size)
{
	int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	char name[128];
	if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
	    ptsname_r(master, name, sizeof(name)) != 0) {
		snprintf(msg, size, "cannot allocate a pseudo-terminal: %s", strerror(errno));
		if (master >= 0)
			close(master);
		return -1;
	}
	spawn_resize(master, r->rows ? r->rows : 24, r->cols ? r->cols : 80);
	int second = fcntl(master, F_DUPFD_CLOEXEC, 0);
	/* Opened here, not in the child: a child that dies before it would have opened the slave
	 * (a signal right after the spawn) still leaves a slave that was open and is now closed,
	 * so the master reads EIO and the command's end is seen. */
	int slave = second < 0 ? -1 : open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (second < 0 || slave < 0) {
		snprintf(msg, size, "cannot open %s: %s", second < 0 ? "the PTY" : name,
			 strerror(errno));
		close(master);
		if (second >= 0)
			close(second);
		return -1;
	}
	pid_t pid = fork_child();
	if (pid == 0) {
		child_reset_signals();
		setsid();
		ioctl(slave, TIOCSCTTY, 0);
		if (dup2(slave, 0) < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0)
			_exit(126);
		child_exec(r);
	}
	int saved = errno;
	close(slave);
	if (pid < 0) {
		snprintf(msg, size, "fork: %s", strerror(saved));
		close(master);
		close(second);
		return -1;
	}
	fcntl(master, F_SETFL, O_NONBLOCK);
	fds->in_fd = second;
	fds->out_fd = master;
	fds->err_fd = -1;
	return pid;
}

pid_t spawn_command(const struct spawn_req *r, struct child_fds *fds, char *msg, size_t size)
{
	return r->tty ? spawn_pty(r, fds, msg, size) : spawn_pipes(r, false, fds, msg, size);
}

pid_t spawn_sftp(struct child_fds *fds, char *msg, size_t size)
{
	return spawn_pipes(NULL, true, fds, msg, size);
}
