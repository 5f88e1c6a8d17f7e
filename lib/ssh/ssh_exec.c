/* ssh_exec.c: remote commands over SSH exec channels. A small sh wrapper reports the shell's PID
 * (sshd starts every session in a new session, so it is the process group to signal), sets the
 * environment and the directory, then execs `sh -c COMMAND`. Signals and the final kill run
 * `kill` over a new channel, since SSH signal requests reach only the session's shell. */
#include "ssh/ssh_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"

struct ssh_exec {
	struct exec_proc base;
	struct ssh_tr *tr;
	struct pump_chan *chan;
};

static const struct {
	const char *name;
	int num;
} signal_names[] = {
    {"HUP", SIGHUP},	 {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"ILL", SIGILL},	  {"ABRT", SIGABRT},
    {"FPE", SIGFPE},	 {"KILL", SIGKILL}, {"SEGV", SIGSEGV}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},
    {"TERM", SIGTERM},	 {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"BUS", SIGBUS},	  {"TRAP", SIGTRAP},
    {"CONT", SIGCONT},	 {"STOP", SIGSTOP}, {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},
    {"WINCH", SIGWINCH}, {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ}, {"SYS", SIGSYS},
};

int ssh_signal_number(const char *name)
{
	for (size_t i = 0; name && i < sizeof(signal_names) / sizeof(signal_names[0]); i++)
		if (strcmp(signal_names[i].name, name) == 0)
			return signal_names[i].num;
	return -1;
}

char *ssh_kill_command(int sig, long pid)
{
	for (size_t i = 0; i < sizeof(signal_names) / sizeof(signal_names[0]); i++)
		if (signal_names[i].num == sig)
			return str_printf("kill -%s -%ld 2>/dev/null", signal_names[i].name, pid);
	return str_printf("kill -%d -%ld 2>/dev/null", sig, pid);
}

char *ssh_reap_command(long pid)
{
	return str_printf("kill -TERM -%ld 2>/dev/null; sleep 1; kill -KILL -%ld 2>/dev/null", pid,
			  pid);
}

static bool valid_env_name(const char *s, size_t n)
{
	if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

static void put_quoted(struct buf *b, const char *s)
{
	char *q = sh_quote(s);
	if (!q) {
		b->err = true;
		return;
	}
	buf_put_bytes(b, q, strlen(q));
	free(q);
}

static void put_str(struct buf *b, const char *s)
{
	buf_put_bytes(b, s, strlen(s));
}

/* printf 'SMPID:%d\n' $$; export K='V'; cd -- 'DIR' 2>/dev/null || { ...; exit 125; };
 * exec /bin/sh -c 'COMMAND' — run by /bin/sh whatever the user's login shell is. */
static char *build_command(const struct exec_spec *spec, struct err *e)
{
	struct buf in, out;
	char *cmd = NULL;

	buf_init(&in);
	buf_init(&out);
	put_str(&in, "printf 'SMPID:%d\\n' $$; ");
	for (char *const *env = spec->env; env && *env; env++) {
		const char *eq = strchr(*env, '=');
		if (!eq || !valid_env_name(*env, (size_t)(eq - *env))) {
			err_set(e, "invalid environment entry \"%s\" (expected NAME=VALUE)", *env);
			goto out;
		}
		put_str(&in, "export ");
		buf_put_bytes(&in, *env, (size_t)(eq - *env) + 1);
		put_quoted(&in, eq + 1);
		put_str(&in, "; ");
	}
	if (spec->cwd) {
		put_str(&in, "cd -- ");
		put_quoted(&in, spec->cwd);
		put_str(&in, " 2>/dev/null || { printf 'sandmount: cannot change to remote "
			     "directory %s\\n' ");
		put_quoted(&in, spec->cwd);
		put_str(&in, " >&2; exit 125; }; ");
	}
	put_str(&in, "exec /bin/sh -c ");
	put_quoted(&in, spec->command);
	buf_put_u8(&in, 0);
	if (!buf_ok(&in)) {
		err_set(e, "out of memory building a remote command");
		goto out;
	}
	put_str(&out, "exec /bin/sh -c ");
	put_quoted(&out, (const char *)in.data);
	buf_put_u8(&out, 0);
	if (!buf_ok(&out)) {
		err_set(e, "out of memory building a remote command");
		goto out;
	}
	cmd = strdup((const char *)out.data);
	if (!cmd)
		err_set(e, "out of memory building a remote command");
out:
	buf_free(&in);
	buf_free(&out);
	return cmd;
}

static int exec_resize(struct exec_proc *p, unsigned rows, unsigned cols)
{
	struct ssh_exec *x = (struct ssh_exec *)p;
	struct pump_chan *c = x->chan;
	int rc = 0;

	pthread_mutex_lock(&x->tr->lock);
	if (!c->tty || c->lost || c->state != CS_RUNNING) {
		rc = c->tty ? -EPIPE : -ENOTTY;
	} else {
		c->new_rows = rows;
		c->new_cols = cols;
		c->resize = true;
	}
	pthread_mutex_unlock(&x->tr->lock);
	if (rc == 0)
		pump_wake(x->tr);
	return rc;
}

static int exec_signal(struct exec_proc *p, int sig)
{
	struct ssh_exec *x = (struct ssh_exec *)p;
	struct pump_chan *c = x->chan;
	int rc = 0;

	if (sig <= 0 || sig >= 64)
		return -EINVAL;
	pthread_mutex_lock(&x->tr->lock);
	if (c->lost)
		rc = -EPIPE;
	else
		c->signals |= UINT64_C(1) << sig;
	pthread_mutex_unlock(&x->tr->lock);
	if (rc == 0)
		pump_wake(x->tr);
	return rc;
}

static int exec_wait(struct exec_proc *p, int64_t deadline, int *status, struct err *e)
{
	struct ssh_exec *x = (struct ssh_exec *)p;
	struct pump_chan *c = x->chan;
	bool timed_out = false;
	int rc;

	pthread_mutex_lock(&x->tr->lock);
	for (;;) {
		if (c->finished && c->exited) {
			*status = c->status;
			rc = 0;
			break;
		}
		if (c->lost) {
			err_set(e, "%s", x->tr->lost_msg);
			rc = -1;
			break;
		}
		if (c->finished || c->state == CS_DONE) {
			err_set(e, "the command on %s ended without an exit status",
				x->tr->peer.label);
			rc = -1;
			break;
		}
		if (timed_out) {
			rc = -ETIMEDOUT;
			break;
		}
		timed_out = !pump_wait(x->tr, deadline);
	}
	pthread_mutex_unlock(&x->tr->lock);
	return rc;
}

/* Closes the caller's fds still held in the exec_proc; the pump kills a command still running. */
static void exec_free(struct exec_proc *p)
{
	struct ssh_exec *x = (struct ssh_exec *)p;
	if (p->stdio_fd >= 0)
		close(p->stdio_fd);
	if (p->stderr_fd >= 0)
		close(p->stderr_fd);
	pump_release(x->chan);
	free(x);
}

static const struct exec_ops ssh_exec_ops = {
    .resize = exec_resize,
    .signal = exec_signal,
    .wait = exec_wait,
    .free = exec_free,
};

int ssh_exec_start(struct transport *t, const struct exec_spec *spec, struct exec_proc **out,
		   struct err *e)
{
	struct ssh_tr *tr = (struct ssh_tr *)t;
	int io = -1, er = -1;

	char *cmd = build_command(spec, e);
	if (!cmd)
		return -1;
	struct ssh_exec *x = calloc(1, sizeof(*x));
	struct pump_chan *c = x ? pump_chan_new(CHAN_EXEC, cmd) : NULL;
	free(cmd);
	if (!c) {
		free(x);
		err_set(e, "out of memory starting a remote command");
		return -1;
	}
	if (spec->tty) {
		c->tty = true;
		c->term = strdup(spec->term ? spec->term : "xterm");
		c->rows = spec->rows ? spec->rows : 24;
		c->cols = spec->cols ? spec->cols : 80;
	}
	if (pump_open(tr, c, &io, spec->tty ? NULL : &er, e) < 0) {
		free(x);
		return -1;
	}
	x->base.ops = &ssh_exec_ops;
	x->base.stdio_fd = io;
	x->base.stderr_fd = er;
	x->tr = tr;
	x->chan = c;
	*out = &x->base;
	return 0;
}
