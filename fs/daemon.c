/* daemon.c: one mount's session daemon. Connect first (errors reach the terminal), mount, then
 * detach and serve FUSE requests plus the control socket until the mount goes away.
 *
 * Threads (the transport's pump, the SFTP reader, control connections) must not exist before
 * fork(), so the process forks first and the child reports "ready" or the error through a pipe
 * the waiting parent reads. */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conn.h"
#include "control_server.h"
#include "ctl_proto.h"
#include "fs.h"
#include "journal.h"
#include "log.h"
#include "runtime.h"
#include "sftp/sftp_client.h"
#include "transport.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

struct session {
	const struct sandbox_cfg *cfg;
	const char *mountpoint;
	struct conn_mgr *conn;
	char *remote_root;
	struct fs *fs;
	struct fuse_session *se;
	struct control_server *ctl;
	int64_t started_ms;
	/* Change reports arrive on the transport's thread until the transport closes, which is
	 * after the fs is gone: they pass this gate, which teardown shuts first. */
	pthread_rwlock_t watch_gate;
	bool watch_open;
	/* The change journal (fsmonitor queries) and the watch's state, under watch_lock. */
	struct journal *journal;
	pthread_mutex_t watch_lock;
	bool watch_live;    /* the last watch started */
	uint32_t unwatched; /* directories the agent could not watch (PARTIAL) */
	char watch_error[256];
	uint64_t queries, queries_all; /* fsmonitor queries; of those, answered "everything" */
};

/* ---- detaching ---- */

/* Fork; the parent waits for the child's verdict and exits with it. Returns the write end of
 * the verdict pipe in the child. */
static int detach_and_wait(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		perror("sandmount: pipe");
		exit(1);
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("sandmount: fork");
		exit(1);
	}
	if (pid > 0) {
		close(p[1]);
		char msg[1024];
		ssize_t n, got = 0;
		while ((n = read(p[0], msg + got, sizeof(msg) - 1 - (size_t)got)) > 0)
			got += n;
		msg[got < 0 ? 0 : got] = 0;
		if (!strcmp(msg, "ok"))
			exit(0);
		fprintf(stderr, "sandmount: %s\n",
			got > 0 ? msg : "the daemon died while mounting");
		exit(1);
	}
	close(p[0]);
	setsid();
	return p[1];
}

/* Tell the waiting parent; NULL = success. Then leave the terminal. */
static void report_verdict(int fd, const char *error)
{
	if (fd < 0)
		return;
	const char *msg = error ? error : "ok";
	if (write(fd, msg, strlen(msg)) < 0)
		log_warn("could not report to the parent: %s", strerror(errno));
	close(fd);
}

static void leave_terminal(void)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0)
		return;
	dup2(null, 0);
	dup2(null, 1);
	dup2(null, 2);
	if (null > 2)
		close(null);
	if (chdir("/") < 0)
		log_warn("chdir /: %s", strerror(errno));
}

/* Tell systemd (Type=notify; $NOTIFY_SOCKET) that the mount is usable. */
static void notify_ready(const char *mountpoint)
{
#ifdef HAVE_SYSTEMD
	int r = sd_notifyf(0, "READY=1\nSTATUS=mounted at %s", mountpoint);
	if (r < 0)
		log_warn("sd_notify: %s", strerror(-r));
#else
	(void)mountpoint;
#endif
}

/* ---- connecting ---- */

/* Caches may be trusted this long while the sandbox reports its changes. */
#define WATCHED_CACHE_TIMEOUT_S 86400.0

/* The path below the workspace root ("" for the root), or NULL for a path outside it. */
static const char *below_root(const struct session *s, const char *path)
{
	size_t n = strlen(s->remote_root);
	if (!strcmp(s->remote_root, "/"))
		n = 0;
	else if (strncmp(path, s->remote_root, n) != 0 || (path[n] && path[n] != '/'))
		return NULL;
	while (path[n] == '/')
		n++;
	return path + n;
}

/* Ask the sandbox to report changes to the workspace (the agent's watch). While it does, cached
 * attributes and names live longer and the journal answers fsmonitor queries; without it, or
 * while part of the tree goes unwatched, the configured cache_timeout applies. */
static void session_changed(void *ctx, const char *path, bool inside,
			    const struct sftp_attrs *attrs)
{
	struct session *s = ctx;
	pthread_rwlock_rdlock(&s->watch_gate);
	if (s->watch_open) {
		fs_notify_change(s->fs, path, inside, attrs);
		const char *rel = path ? below_root(s, path) : NULL;
		if (!path || rel)
			journal_add(s->journal, rel);
	}
	pthread_rwlock_unlock(&s->watch_gate);
}

/* Trust caches for long, and the journal, only while every directory is watched. watch_lock. */
static void apply_watch_state(struct session *s)
{
	bool full = s->watch_live && !s->unwatched;
	double ttl = s->cfg->cache_timeout_s;
	if (full && ttl < WATCHED_CACHE_TIMEOUT_S)
		ttl = WATCHED_CACHE_TIMEOUT_S;
	fs_set_cache_timeout(s->fs, ttl);
	fs_set_watched(s->fs, full);
	journal_set_live(s->journal, full);
	if (full)
		log_info("the sandbox reports changes: caching for %.0f s", ttl);
	else if (s->watch_live)
		log_warn(
		    "watch: partial, %u directories unwatched (inotify limit): caching for %g s",
		    s->unwatched, ttl);
	else
		log_info("no change reports (%s): caching for %g s", s->watch_error, ttl);
}

static void session_partial(void *ctx, uint32_t unwatched)
{
	struct session *s = ctx;
	pthread_rwlock_rdlock(&s->watch_gate);
	if (s->watch_open) {
		pthread_mutex_lock(&s->watch_lock);
		bool was_partial = s->unwatched != 0;
		s->unwatched = unwatched;
		/* Only a change of state costs anything (a flood of counts is just counted). */
		if (was_partial != (unwatched != 0))
			apply_watch_state(s);
		pthread_mutex_unlock(&s->watch_lock);
	}
	pthread_rwlock_unlock(&s->watch_gate);
}

static void start_watch(struct session *s, struct conn *c)
{
	struct err e = {""};
	struct watch_req req = {.dir = s->remote_root,
				.max_watches = (uint32_t)s->cfg->agent_max_watches,
				.changed = session_changed,
				.partial = session_partial,
				.ctx = s};
	pthread_mutex_lock(&s->watch_lock);
	s->unwatched = 0; /* a new watch: its PARTIAL reports come after this */
	s->watch_live = false;
	journal_set_live(s->journal, false);
	pthread_mutex_unlock(&s->watch_lock);
	int r = transport_watch(c->transport, &req, &e);
	pthread_mutex_lock(&s->watch_lock);
	s->watch_live = r == 0;
	snprintf(s->watch_error, sizeof(s->watch_error), "%s", e.msg);
	apply_watch_state(s);
	pthread_mutex_unlock(&s->watch_lock);
}

/* ---- fsmonitor queries ---- */

/* A sync point with the sandbox's watch is at most this far. */
#define SYNC_TIMEOUT_MS 10000

/* Every change made in the sandbox before now is in the journal once a command's exit was
 * coherent (the watch delivered everything the agent had read before it sent EXIT). */
static int watch_sync(struct session *s)
{
	struct transport *t = conn_get_transport(s->conn);
	struct exec_spec spec = {.command = ":", .cwd = s->remote_root};
	struct exec_proc *p = NULL;
	struct err e = {""};
	int status = -1, rc = -1;
	if (t && transport_exec_start(t, &spec, &p, &e) == 0) {
		if (p->ops->wait(p, deadline_in(SYNC_TIMEOUT_MS), &status, &e) == 0 &&
		    p->coherent_exit)
			rc = 0;
		p->ops->free(p);
	}
	conn_put_transport(s->conn, t);
	if (rc < 0)
		log_debug("fsmonitor: no sync with the watch (%s)",
			  e.msg[0] ? e.msg : "incoherent");
	return rc;
}

/* CTL_CHANGES: the paths (relative to the mount root) changed since token. */
static void session_changes(void *ctx, const char *token, struct buf *reply)
{
	struct session *s = ctx;
	char next[JOURNAL_TOKEN_MAX];
	struct buf paths;
	uint32_t n = 0;
	buf_init(&paths);
	bool all = !journal_live(s->journal);
	if (!all && watch_sync(s) < 0) {
		/* The watch may have lost changes (the agent died, and we have not noticed yet):
		 * git stats everything next, and must not get what the caches hold. */
		fs_barrier_reconnected(s->fs);
		all = true;
	}
	if (fs_expirer_wait(s->fs, SYNC_TIMEOUT_MS) < 0)
		log_warn("fsmonitor: the cache barrier is late");
	if (journal_since(s->journal, all ? "" : token, &paths, &n, CTL_MAX_FRAME / 2, next))
		all = true;
	buf_put_cstring(reply, next);
	buf_put_u8(reply, all);
	buf_put_u32(reply, n);
	buf_put_bytes(reply, paths.data, paths.len);
	buf_free(&paths);
	pthread_mutex_lock(&s->watch_lock);
	s->queries++;
	s->queries_all += all;
	pthread_mutex_unlock(&s->watch_lock);
}

static void on_reconnect(void *ctx, struct conn *c)
{
	struct session *s = ctx;
	if (!s->fs)
		return;
	/* An fsmonitor answer between the new watch and the kernel's barrier would let git trust
	 * attributes the kernel still holds from before: session_changes waits for the barrier. */
	fs_expirer_expect(s->fs);
	start_watch(s, c);
	/* Anything may have changed while we were away. */
	fs_barrier_reconnected(s->fs);
}

static int connect_sandbox(struct session *s, struct err *e)
{
	const struct sandbox_cfg *cfg = s->cfg;
	if (conn_mgr_open(cfg, on_reconnect, s, &s->conn, e) < 0)
		return -1;
	struct conn *c = conn_get(s->conn, 0);
	int rc = c ? sftp_realpath(c->sftp, cfg->remote_dir, &s->remote_root) : -EIO;
	struct sftp_attrs a;
	if (rc == 0)
		rc = sftp_stat(c->sftp, s->remote_root, &a);
	conn_put(s->conn, c);
	if (rc == -ENOENT) {
		err_set(e, "%s: remote directory %s does not exist", cfg->name, cfg->remote_dir);
		return -1;
	}
	if (rc < 0) {
		err_set(e, "%s: remote directory %s: %s", cfg->name, cfg->remote_dir,
			strerror(-rc));
		return -1;
	}
	if ((a.flags & SFTP_ATTR_PERM) && !S_ISDIR(a.perm)) {
		err_set(e, "%s: remote path %s is not a directory", cfg->name, s->remote_root);
		return -1;
	}
	return 0;
}

/* ---- status ---- */

/* The bounds on what the sandbox sends (sandmount(1), LIMITS). */
static void limits_status(const struct mount_limits *l, int op_timeout_s, struct buf *text)
{
	char line[512];
	int n = snprintf(line, sizeof(line),
			 "limits: op_timeout=%ds max_dir_entries=%llu max_listing_bytes=%llu "
			 "max_name=%llu max_link_target=%llu max_packet=%llu max_inflight=%llu\n",
			 op_timeout_s, (unsigned long long)l->max_dir_entries,
			 (unsigned long long)l->max_listing_bytes, (unsigned long long)l->max_name,
			 (unsigned long long)l->max_link_target, (unsigned long long)l->max_packet,
			 (unsigned long long)l->max_inflight);
	buf_put_bytes(text, line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* The watch (full, partial, off) and the fsmonitor queries answered. */
static void watch_status(struct session *s, struct buf *text)
{
	char line[512];
	pthread_mutex_lock(&s->watch_lock);
	int n;
	if (s->watch_live && s->unwatched)
		n = snprintf(line, sizeof(line),
			     "watch: partial — %u directories unwatched (inotify limit)\n",
			     s->unwatched);
	else if (s->watch_live)
		n = snprintf(line, sizeof(line), "watch: live\n");
	else
		n = snprintf(line, sizeof(line), "watch: off (%s)\n", s->watch_error);
	buf_put_bytes(text, line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
	n = snprintf(line, sizeof(line), "fsmonitor queries: %llu (%llu answered everything)\n",
		     (unsigned long long)s->queries, (unsigned long long)s->queries_all);
	buf_put_bytes(text, line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
	pthread_mutex_unlock(&s->watch_lock);
}

static void session_status(void *ctx, struct buf *text)
{
	struct session *s = ctx;
	struct transport_stats ts = {.connected = false, .rtt_us = -1};
	char rtt[32] = "unknown", line[1024];
	struct transport *t = conn_get_transport(s->conn);
	if (t)
		transport_stats(t, &ts);
	conn_put_transport(s->conn, t);
	if (ts.rtt_us >= 0)
		snprintf(rtt, sizeof(rtt), "%.2f ms", ts.rtt_us / 1000.0);
	int n = snprintf(line, sizeof(line), "mountpoint: %s\nsandbox: %s\nremote: %s:%s\n",
			 s->mountpoint, s->cfg->name, t ? ts.detail : "-", s->remote_root);
	buf_put_bytes(text, line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
	conn_mgr_status(s->conn, text);
	n = snprintf(line, sizeof(line), "rtt: %s\nuptime: %llds\nbytes in/out: %llu/%llu\n", rtt,
		     (long long)(now_ms() - s->started_ms) / 1000, (unsigned long long)ts.bytes_in,
		     (unsigned long long)ts.bytes_out);
	buf_put_bytes(text, line, n < (int)sizeof(line) ? (size_t)n : sizeof(line) - 1);
	limits_status(&s->cfg->limits, s->cfg->op_timeout_s, text);
	watch_status(s, text);
	if (s->fs)
		fs_status(s->fs, text);
}

static struct transport *session_get_transport(void *ctx)
{
	struct session *s = ctx;
	return conn_get_transport(s->conn);
}

static void session_put_transport(void *ctx, struct transport *t)
{
	struct session *s = ctx;
	conn_put_transport(s->conn, t);
}

static void session_barrier(void *ctx)
{
	struct session *s = ctx;
	fs_barrier(s->fs);
	fs_show_open_sizes(s->fs);
}

/* ---- mounting ---- */

static int mount_fuse(struct session *s, const struct daemon_opts *o, struct err *e)
{
	char *fsname = str_printf("sandmount:%s", s->cfg->name);
	/* FUSE option values cannot hold commas. */
	for (char *c = fsname; c && *c; c++)
		if (*c == ',')
			*c = '_';
	char *opts =
	    str_printf("fsname=%s,subtype=sandmount,default_permissions,nosuid,nodev%s%s%s", fsname,
		       s->cfg->allow_other ? ",allow_other" : "", o->fuse_opts ? "," : "",
		       o->fuse_opts ? o->fuse_opts : "");
	free(fsname);
	char *argv[] = {"sandmount", "-o", opts, o->debug && o->foreground ? "-d" : NULL, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(o->debug && o->foreground ? 4 : 3, argv);
	struct fs_params p = {
	    .conn = s->conn,
	    .remote_root = s->remote_root,
	    .remote_root_alias = s->cfg->remote_dir[0] == '/' ? s->cfg->remote_dir : NULL,
	    .cache_timeout_s = s->cfg->cache_timeout_s,
	    .uid = getuid(),
	    .gid = getgid(),
	    .owners_real = s->cfg->owners_real,
	    .prefetch = !s->cfg->prefetch_off,
	};
	int rc = -1;
	if (fs_create(&p, &s->fs, e) < 0)
		goto out;
	s->se = fuse_session_new(&args, fs_lowlevel_ops(), sizeof(struct fuse_lowlevel_ops), s->fs);
	if (!s->se) {
		err_set(e, "could not start the FUSE session (bad mount option in '%s'?)", opts);
		goto out;
	}
	fs_set_session(s->fs, s->se);
	fs_set_mountpoint(s->fs, s->mountpoint);
	if (fuse_set_signal_handlers(s->se) < 0) {
		err_set(e, "could not install signal handlers");
		goto out;
	}
	if (fuse_session_mount(s->se, s->mountpoint) < 0) {
		err_set(e, "could not mount at %s (is /dev/fuse usable? is fusermount3 installed?)",
			s->mountpoint);
		goto out;
	}
	/* No process we start may hold the connection open after we die (stat_helper.c). */
	if (fcntl(fuse_session_fd(s->se), F_SETFD, FD_CLOEXEC) < 0)
		log_warn("/dev/fuse: close-on-exec: %s", strerror(errno));
	rc = 0;
out:
	free(opts);
	return rc;
}

static int start_control(struct session *s, struct err *e)
{
	char path[4096];
	if (runtime_socket_path(s->mountpoint, path, sizeof(path), e) < 0)
		return -1;
	struct control_hooks hooks = {
	    .get_transport = session_get_transport,
	    .put_transport = session_put_transport,
	    .remote_root = s->remote_root,
	    .barrier = session_barrier,
	    .status = session_status,
	    .changes = session_changes,
	    .ctx = s,
	};
	return control_server_start(path, &hooks, &s->ctl, e);
}

static void session_teardown(struct session *s)
{
	if (s->fs)
		fs_stop_shows(s->fs);
	pthread_rwlock_wrlock(&s->watch_gate);
	s->watch_open = false;
	pthread_rwlock_unlock(&s->watch_gate);
	if (s->ctl)
		control_server_stop(s->ctl);
	if (s->se) {
		fuse_remove_signal_handlers(s->se);
		fuse_session_unmount(s->se);
		if (s->fs) {
			fs_stop_expirer(s->fs); /* they write to the session */
			fs_prefetch_stop(s->fs);
		}
		fuse_session_destroy(s->se);
	}
	if (s->fs)
		fs_destroy(s->fs);
	s->fs = NULL;
	conn_mgr_free(s->conn);
	journal_free(s->journal);
	free(s->remote_root);
}

int daemon_run_mount(const struct sandbox_cfg *cfg, const char *mountpoint,
		     const struct daemon_opts *o)
{
	struct session s = {.cfg = cfg,
			    .mountpoint = mountpoint,
			    .started_ms = now_ms(),
			    .watch_gate = PTHREAD_RWLOCK_INITIALIZER,
			    .watch_lock = PTHREAD_MUTEX_INITIALIZER,
			    .watch_error = "not started"};
	struct err e = {{0}};
	/* A sandbox that closes a stream must get EPIPE, never a signal that ends the daemon. */
	signal(SIGPIPE, SIG_IGN);
	int verdict = o->foreground ? -1 : detach_and_wait();
	/* A detaching mount says nothing on success: until the log file takes over, only
	 * warnings reach the terminal. */
	enum log_level level = log_get_level();
	if (verdict >= 0 && level < LOG_DEBUG)
		log_set_level(LOG_WARN);

	s.journal = journal_new(JOURNAL_MAX_ENTRIES, JOURNAL_MAX_BYTES);
	if (!s.journal)
		err_set(&e, "out of memory");
	if (!s.journal || connect_sandbox(&s, &e) < 0 || mount_fuse(&s, o, &e) < 0 ||
	    start_control(&s, &e) < 0) {
		if (verdict < 0)
			fprintf(stderr, "sandmount: %s\n", e.msg);
		else
			report_verdict(verdict, e.msg);
		session_teardown(&s);
		return 1;
	}
	if (verdict >= 0) {
		char logpath[4096];
		struct err le;
		if (runtime_log_path(mountpoint, logpath, sizeof(logpath), &le) == 0)
			log_to_file(logpath);
		log_set_level(level);
	}
	/* The watch runs before sandmount returns: a change made right after the mount is seen. */
	s.watch_open = true;
	struct conn *c = conn_get(s.conn, 0);
	if (c)
		start_watch(&s, c);
	conn_put(s.conn, c);
	if (verdict >= 0) {
		leave_terminal();
		report_verdict(verdict, NULL);
	}
	log_info("mounted %s (%s) at %s", cfg->name, s.remote_root, mountpoint);
	notify_ready(mountpoint);

	struct fuse_loop_config lc = {.clone_fd = 0, .max_idle_threads = 16};
	int rc = fuse_session_loop_mt(s.se, &lc);
	fs_stop_shows(s.fs);
	log_info("unmounted %s", mountpoint);
	/* Nothing waits for a reconnect any more: files left open are closed with what we have. */
	conn_mgr_shutdown(s.conn);
	session_teardown(&s);
	return rc == 0 ? 0 : 1;
}
