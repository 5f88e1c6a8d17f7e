/* docker_exec.c: commands in the container through the exec API. An exec is created, started on a
 * hijacked connection, and a bridge thread moves bytes between that raw connection and local
 * socket pairs: without a TTY the daemon frames output in 8-byte stdcopy headers (type 1 stdout,
 * 2 stderr, big-endian length) which are demultiplexed here. The exit code comes from exec inspect
 * once the stream ended. The API cannot kill an exec, so commands run under a wrapper that prints
 * "SMPID:<pid>" first (an exec's process is a session leader, so the pid names its process group)
 * and signals are a second, detached exec running `kill -SIG -PID` (no "--": dash rejects it).
 * Stdin EOF is a half-close of the raw connection (a TLS close_notify on tcp+TLS). */
#include "docker/docker_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define IO_CHUNK	   65536
#define HEADER_MAX	   32
#define INSPECT_TIMEOUT_MS 10000

struct dexec {
	struct exec_proc proc;
	struct docker_tr *tr;
	struct dexec *next;
	char id[80];
	CURL *raw;
	pthread_t thread;
	int wake_fd;
	int io_fd;  /* our end of the stdin/stdout pair; -1 once closed */
	int err_fd; /* our end of the stderr pair; -1 when none */
	bool tty, strip_header, stderr_to_log, owned, attach_stdin;
	bool attach; /* a container's main process (no exec, no exit code to inspect) */
	char label[64];

	/* bridge-only */
	struct buf rx;		 /* an incomplete stdcopy header */
	int frame_type;		 /* stream of the frame being read */
	size_t frame_left;	 /* its payload bytes still to come */
	struct buf out, err, in; /* bytes waiting for io_fd, err_fd, the daemon */
	char header[HEADER_MAX];
	size_t header_len;
	bool header_done;
	bool raw_eof, raw_more, in_eof, in_eof_sent, out_broken, err_broken;

	/* shared */
	long pid;
	bool done;
	bool lost;
	int status;
	char errmsg[300];
	bool stop;
};

/* Wait on tr->cond (tr->lock held) for at most 50 ms; callers re-check their condition. */
static void cond_wait_briefly(struct docker_tr *tr)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 50 * 1000000;
	ts.tv_sec += ts.tv_nsec / 1000000000;
	ts.tv_nsec %= 1000000000;
	pthread_cond_timedwait(&tr->cond, &tr->lock, &ts);
}

static void wake(struct dexec *x)
{
	uint64_t one = 1;
	if (write(x->wake_fd, &one, sizeof(one)) < 0)
		log_debug("docker exec: wake: %s", strerror(errno));
}

/* ---- exit status ---- */

int docker_exec_inspect_status(const json_t *j, int *status)
{
	bool running = json_is_true(json_object_get(j, "Running"));
	json_t *code = json_object_get(j, "ExitCode");
	if (running || !json_is_integer(code))
		return -1;
	*status = (int)json_integer_value(code);
	return 0;
}

/* Poll exec inspect until the process is no longer running; 0 with *status, or -1. */
static int inspect_exit(struct dexec *x, int *status, struct err *e)
{
	char *path = str_printf("/exec/%s/json", x->id);
	int64_t deadline = deadline_in(INSPECT_TIMEOUT_MS);
	int delay_ms = 2, rc = -1;
	while (path) {
		json_t *j = NULL;
		long st = docker_api_json(&x->tr->api, "GET", path, NULL, &j, "exec inspect",
					  deadline, e);
		if (st != 200) {
			json_decref(j);
			break;
		}
		if (docker_exec_inspect_status(j, status) == 0) {
			json_decref(j);
			rc = 0;
			break;
		}
		json_decref(j);
		if (now_ms() + delay_ms >= deadline) {
			err_set(e, "exec %s: still running after its stream ended", x->id);
			break;
		}
		usleep((useconds_t)delay_ms * 1000);
		delay_ms = delay_ms < 100 ? delay_ms * 2 : 100;
	}
	free(path);
	return rc;
}

/* ---- output: stdcopy demux and the SMPID header ---- */

static void put_stdout(struct dexec *x, const uint8_t *p, size_t n)
{
	if (x->strip_header && !x->header_done) {
		while (n && x->header_len < HEADER_MAX - 1) {
			char c = (char)*p++;
			n--;
			x->header[x->header_len++] = c;
			if (c == '\n')
				break;
		}
		x->header[x->header_len] = 0;
		if (!x->header_len ||
		    (x->header[x->header_len - 1] != '\n' && x->header_len < HEADER_MAX - 1))
			return; /* the rest comes later */
		x->header_done = true;
		long pid = 0;
		if (sscanf(x->header, "SMPID:%ld", &pid) == 1 && pid > 0) {
			pthread_mutex_lock(&x->tr->lock);
			x->pid = pid;
			pthread_cond_broadcast(&x->tr->cond);
			pthread_mutex_unlock(&x->tr->lock);
		} else {
			buf_put_bytes(&x->out, x->header, x->header_len);
		}
	}
	if (!x->out_broken)
		buf_put_bytes(&x->out, p, n);
}

static void put_stderr(struct dexec *x, const uint8_t *p, size_t n)
{
	if (x->stderr_to_log) {
		while (n && (p[n - 1] == '\n' || p[n - 1] == '\r'))
			n--;
		if (n)
			log_warn("%s: %.*s", x->label, (int)n, (const char *)p);
	} else if (x->err_fd >= 0 && !x->err_broken) {
		buf_put_bytes(&x->err, p, n);
	}
}

void dexec_demux(struct dexec *x, const uint8_t *p, size_t n)
{
	if (x->tty) {
		put_stdout(x, p, n);
		return;
	}
	while (n) {
		if (x->frame_left == 0) {
			size_t take = 8 - x->rx.len < n ? 8 - x->rx.len : n;
			buf_put_bytes(&x->rx, p, take);
			p += take;
			n -= take;
			if (x->rx.len < 8)
				return;
			const uint8_t *h = x->rx.data;
			x->frame_type = h[0];
			x->frame_left =
			    (size_t)h[4] << 24 | (size_t)h[5] << 16 | (size_t)h[6] << 8 | h[7];
			buf_reset(&x->rx);
			continue;
		}
		size_t take = x->frame_left < n ? x->frame_left : n;
		if (x->frame_type == 2)
			put_stderr(x, p, take);
		else
			put_stdout(x, p, take);
		p += take;
		n -= take;
		x->frame_left -= take;
	}
}

/* ---- the bridge ---- */

static void raw_read(struct dexec *x)
{
	uint8_t chunk[IO_CHUNK];
	size_t got = 0;
	CURLcode rc = curl_easy_recv(x->raw, chunk, sizeof(chunk), &got);
	if (rc == CURLE_AGAIN) {
		x->raw_more = false;
		return;
	}
	if (rc != CURLE_OK || got == 0) {
		if (rc != CURLE_OK) {
			pthread_mutex_lock(&x->tr->lock);
			x->lost = true;
			snprintf(x->errmsg, sizeof(x->errmsg),
				 "connection to the Docker daemon lost: %s",
				 curl_easy_strerror(rc));
			pthread_mutex_unlock(&x->tr->lock);
		}
		x->raw_eof = true;
		return;
	}
	x->raw_more = true;
	atomic_fetch_add(&x->tr->bytes_in, got);
	dexec_demux(x, chunk, got);
}

static void raw_write(struct dexec *x)
{
	size_t sent = 0;
	CURLcode rc = curl_easy_send(x->raw, buf_cursor(&x->in), buf_remaining(&x->in), &sent);
	if (rc == CURLE_AGAIN)
		return;
	if (rc != CURLE_OK) {
		buf_reset(&x->in); /* the daemon stopped reading stdin: drop it */
		x->in_eof = true;
		return;
	}
	atomic_fetch_add(&x->tr->bytes_out, sent);
	x->in.off += sent;
	if (!buf_remaining(&x->in))
		buf_reset(&x->in);
}

/* Send stdin EOF to the daemon. With a TTY the daemon would close the PTY master on it and hang
 * the command up, so a TTY's stdin EOF is not forwarded (as with an SSH PTY session). */
static void raw_shutdown_write(struct dexec *x)
{
	x->in_eof_sent = true;
	if (!x->tty && docker_raw_close_write(x->raw) < 0)
		log_warn("%s: cannot send end of input to the Docker daemon", x->label);
}

static void local_read(struct dexec *x)
{
	if (buf_reserve(&x->in, IO_CHUNK) < 0)
		return;
	ssize_t n = read(x->io_fd, x->in.data + x->in.len, IO_CHUNK);
	if (n > 0)
		x->in.len += (size_t)n;
	else if (n == 0 || (errno != EAGAIN && errno != EINTR))
		x->in_eof = true;
}

/* Flush pending bytes to a local end; a reader that went away makes the rest be discarded. */
static void local_write(int fd, struct buf *b, bool *broken)
{
	ssize_t n = send(fd, buf_cursor(b), buf_remaining(b), MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n > 0)
		b->off += (size_t)n;
	else if (n < 0 && errno != EAGAIN && errno != EINTR)
		*broken = true;
	if (*broken || !buf_remaining(b))
		buf_reset(b);
}

static bool stop_requested(struct dexec *x)
{
	pthread_mutex_lock(&x->tr->lock);
	bool stop = x->stop || x->tr->stop;
	pthread_mutex_unlock(&x->tr->lock);
	return stop;
}

/* One poll round; false when the bridge is finished. */
static bool bridge_step(struct dexec *x)
{
	bool pending = buf_remaining(&x->out) || buf_remaining(&x->err);
	if (x->raw_eof && !pending)
		return false;
	if (!x->attach_stdin || (x->in_eof && !buf_remaining(&x->in) && !x->in_eof_sent)) {
		if (x->attach_stdin)
			raw_shutdown_write(x);
		x->in_eof = x->in_eof_sent = true;
	}
	bool want_raw_in = !x->raw_eof && !pending;
	if (want_raw_in && x->raw_more) {
		raw_read(x);
		return true;
	}
	curl_socket_t s = CURL_SOCKET_BAD;
	curl_easy_getinfo(x->raw, CURLINFO_ACTIVESOCKET, &s);
	struct pollfd p[4] = {
	    {.fd = x->wake_fd, .events = POLLIN},
	    {.fd = s,
	     .events = (short)((want_raw_in ? POLLIN : 0) | (buf_remaining(&x->in) ? POLLOUT : 0))},
	    {.fd = x->io_fd,
	     .events = (short)((!x->in_eof && !buf_remaining(&x->in) ? POLLIN : 0) |
			       (buf_remaining(&x->out) ? POLLOUT : 0))},
	    {.fd = x->err_fd, .events = buf_remaining(&x->err) ? POLLOUT : 0},
	};
	if (x->raw_eof)
		p[1].fd = -1;
	if (poll(p, 4, -1) < 0)
		return errno == EINTR;
	if (p[0].revents) {
		uint64_t v;
		if (read(x->wake_fd, &v, sizeof(v)) < 0)
			log_debug("docker exec: wake read: %s", strerror(errno));
		if (stop_requested(x))
			return false;
	}
	if (p[1].revents & (POLLIN | POLLHUP | POLLERR))
		raw_read(x);
	if (p[1].revents & POLLOUT)
		raw_write(x);
	if (p[2].revents & POLLOUT)
		local_write(x->io_fd, &x->out, &x->out_broken);
	if (p[2].revents & (POLLIN | POLLHUP | POLLERR) && !x->in_eof && !buf_remaining(&x->in))
		local_read(x);
	if (p[3].revents)
		local_write(x->err_fd, &x->err, &x->err_broken);
	return true;
}

static void unlink_live(struct dexec *x)
{
	for (struct dexec **pp = &x->tr->live; *pp; pp = &(*pp)->next) {
		if (*pp == x) {
			*pp = x->next;
			x->tr->nlive--;
			return;
		}
	}
}

void dexec_destroy(struct dexec *x)
{
	if (x->raw)
		curl_easy_cleanup(x->raw);
	if (x->io_fd >= 0)
		close(x->io_fd);
	if (x->err_fd >= 0)
		close(x->err_fd);
	if (x->wake_fd >= 0)
		close(x->wake_fd);
	buf_free(&x->rx);
	buf_free(&x->out);
	buf_free(&x->err);
	buf_free(&x->in);
	free(x);
}

static void *bridge_main(void *arg)
{
	struct dexec *x = arg;
	while (bridge_step(x))
		;
	/* the local readers see EOF once everything was delivered */
	shutdown(x->io_fd, SHUT_WR);
	if (x->err_fd >= 0)
		shutdown(x->err_fd, SHUT_WR);
	curl_easy_cleanup(x->raw);
	x->raw = NULL;
	int status = -1;
	struct err e = {""};
	bool stopped = stop_requested(x);
	bool got = !stopped && !x->lost && (x->attach || inspect_exit(x, &status, &e) == 0);

	struct docker_tr *tr = x->tr;
	pthread_mutex_lock(&tr->lock);
	if (!got && !x->lost) {
		x->lost = true;
		snprintf(x->errmsg, sizeof(x->errmsg), "%s",
			 stopped ? "the Docker transport was closed" : e.msg);
	}
	x->status = status;
	x->done = true;
	bool self_free = !x->owned;
	if (self_free)
		unlink_live(x);
	pthread_cond_broadcast(&tr->cond);
	pthread_mutex_unlock(&tr->lock);
	if (self_free)
		dexec_destroy(x);
	return NULL;
}

/* ---- starting ---- */

static json_t *create_body(const struct dexec_req *req)
{
	json_t *cmd = json_array();
	for (char *const *a = req->argv; *a; a++)
		json_array_append_new(cmd, json_string(*a));
	json_t *b = json_pack("{s:b, s:b, s:b, s:b, s:o}", "AttachStdin", req->attach_stdin,
			      "AttachStdout", 1, "AttachStderr", 1, "Tty", req->tty, "Cmd", cmd);
	if (req->env) {
		json_t *env = json_array();
		for (char *const *v = req->env; *v; v++)
			json_array_append_new(env, json_string(*v));
		json_object_set_new(b, "Env", env);
	}
	if (req->cwd)
		json_object_set_new(b, "WorkingDir", json_string(req->cwd));
	return b;
}

/* POST /containers/{id}/exec; the new exec's id into id. */
static int exec_create(struct docker_tr *tr, const char *container, json_t *body, char *id,
		       size_t idsize, int64_t deadline, struct err *e)
{
	char *path = str_printf("/containers/%s/exec", container ? container : tr->container_id);
	json_t *j = NULL;
	long st = docker_api_json(&tr->api, "POST", path, body, &j, "exec create", deadline, e);
	free(path);
	const char *v = json_string_value(json_object_get(j, "Id"));
	int rc = 0;
	if (st != 201 && st != 200) {
		rc = -1;
	} else if (!v) {
		err_set(e, "exec create: the Docker daemon returned no exec id");
		rc = -1;
	} else {
		snprintf(id, idsize, "%s", v);
	}
	json_decref(j);
	return rc;
}

static int make_pair(int *ours, int *theirs, struct err *e)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		err_set(e, "socketpair: %s", strerror(errno));
		return -1;
	}
	fd_set_nonblock(sv[1], true);
	*theirs = sv[0];
	*ours = sv[1];
	return 0;
}

struct dexec *dexec_new(struct docker_tr *tr, const struct dexec_req *req)
{
	struct dexec *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->tr = tr;
	x->io_fd = x->err_fd = x->wake_fd = -1;
	x->tty = req->tty;
	x->strip_header = req->strip_header;
	x->stderr_to_log = req->stderr_to_log;
	x->owned = req->owned;
	x->attach_stdin = req->attach_stdin;
	x->attach = req->attach;
	snprintf(x->label, sizeof(x->label), "%s", req->label ? req->label : "exec");
	buf_init(&x->rx);
	buf_init(&x->out);
	buf_init(&x->err);
	buf_init(&x->in);
	return x;
}

int dexec_start(struct docker_tr *tr, const struct dexec_req *req, struct dexec **out, int *io_fd,
		int *err_fd, struct err *e)
{
	int64_t deadline = deadline_in((int64_t)tr->api.connect_timeout_s * 1000);
	struct dexec *x = dexec_new(tr, req);
	if (!x) {
		err_set(e, "out of memory");
		return -1;
	}
	*io_fd = -1;
	if (err_fd)
		*err_fd = -1;

	char *path;
	json_t *start = NULL;
	if (req->attach) {
		path = str_printf("/containers/%s/attach?stream=1&stdin=%d&stdout=1&stderr=1",
				  req->container, req->attach_stdin);
	} else {
		json_t *body = create_body(req);
		int rc = exec_create(tr, req->container, body, x->id, sizeof(x->id), deadline, e);
		json_decref(body);
		if (rc < 0)
			goto fail;
		path = str_printf("/exec/%s/start", x->id);
		start = json_pack("{s:b, s:b}", "Detach", 0, "Tty", req->tty);
	}
	struct buf early;
	buf_init(&early);
	x->raw = docker_api_hijack(&tr->api, path, start, &early, deadline, e);
	json_decref(start);
	free(path);
	if (!x->raw) {
		buf_free(&early);
		goto fail;
	}
	curl_socket_t s = CURL_SOCKET_BAD;
	curl_easy_getinfo(x->raw, CURLINFO_ACTIVESOCKET, &s);
	fd_set_nonblock(s, true);
	x->raw_more = true; /* curl may hold decrypted bytes the socket no longer shows */
	dexec_demux(x, early.data, early.len);
	buf_free(&early);

	x->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (x->wake_fd < 0 || make_pair(&x->io_fd, io_fd, e) < 0)
		goto fail;
	bool want_err = err_fd && !req->tty && !req->stderr_to_log;
	if (want_err && make_pair(&x->err_fd, err_fd, e) < 0)
		goto fail;

	pthread_mutex_lock(&tr->lock);
	x->next = tr->live;
	tr->live = x;
	tr->nlive++;
	pthread_mutex_unlock(&tr->lock);
	if (pthread_create(&x->thread, NULL, bridge_main, x) != 0) {
		pthread_mutex_lock(&tr->lock);
		unlink_live(x);
		pthread_mutex_unlock(&tr->lock);
		err_set(e, "cannot start the exec bridge thread");
		goto fail;
	}
	if (!x->owned)
		pthread_detach(x->thread);
	*out = x;
	return 0;
fail:
	if (*io_fd >= 0)
		close(*io_fd);
	if (err_fd && *err_fd >= 0)
		close(*err_fd);
	*io_fd = -1;
	if (err_fd)
		*err_fd = -1;
	dexec_destroy(x);
	return -1;
}

/* A fire-and-forget exec (Detach): `sh -c script`, output discarded. */
static int exec_detached(struct docker_tr *tr, const char *script, struct err *e)
{
	int64_t deadline = deadline_in((int64_t)tr->api.connect_timeout_s * 1000);
	char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
	struct dexec_req req = {.argv = argv};
	json_t *body = create_body(&req);
	json_object_set_new(body, "AttachStdout", json_false());
	json_object_set_new(body, "AttachStderr", json_false());
	char id[80];
	int rc = exec_create(tr, NULL, body, id, sizeof(id), deadline, e);
	json_decref(body);
	if (rc < 0)
		return -1;
	char *path = str_printf("/exec/%s/start", id);
	json_t *start = json_pack("{s:b}", "Detach", 1);
	long st = docker_api_json(&tr->api, "POST", path, start, NULL, "exec start", deadline, e);
	json_decref(start);
	free(path);
	return st == 200 || st == 204 ? 0 : -1;
}

/* ---- exec_proc ---- */

static struct dexec *of_proc(struct exec_proc *p)
{
	return (struct dexec *)p; /* proc is the first member */
}

static int proc_resize(struct exec_proc *p, unsigned rows, unsigned cols)
{
	struct dexec *x = of_proc(p);
	if (!x->tty)
		return 0;
	char *path = str_printf("/exec/%s/resize?h=%u&w=%u", x->id, rows, cols);
	struct err e;
	long st = docker_api_request(&x->tr->api, "POST", path, NULL, NULL, 0, NULL,
				     deadline_in((int64_t)x->tr->op_timeout_s * 1000), &e);
	free(path);
	if (st != 200 && st != 201) {
		log_debug("exec resize: %s", e.msg);
		return -EIO;
	}
	return 0;
}

/* Wait (bounded) for the wrapper's pid; 0 when it never came. */
static long wait_pid(struct dexec *x, int64_t deadline)
{
	struct docker_tr *tr = x->tr;
	pthread_mutex_lock(&tr->lock);
	while (!x->pid && !x->done && now_ms() < deadline)
		cond_wait_briefly(tr);
	long pid = x->done ? 0 : x->pid;
	pthread_mutex_unlock(&tr->lock);
	return pid;
}

static int proc_signal(struct exec_proc *p, int sig)
{
	struct dexec *x = of_proc(p);
	/* A slow daemon may start the wrapper late: a signal sent before must not be lost. */
	long pid = wait_pid(x, deadline_in((int64_t)x->tr->op_timeout_s * 1000));
	if (!pid)
		return -ESRCH;
	char *script = str_printf("kill -%d -%ld 2>/dev/null || kill -%d %ld", sig, pid, sig, pid);
	struct err e;
	int rc = script ? exec_detached(x->tr, script, &e) : -1;
	free(script);
	if (rc < 0) {
		log_warn("cannot signal exec %s: %s", x->id, e.msg);
		return -EIO;
	}
	return 0;
}

/* Wait for the bridge to finish until deadline (0 = none); true when done. */
static bool wait_done(struct dexec *x, int64_t deadline)
{
	struct docker_tr *tr = x->tr;
	pthread_mutex_lock(&tr->lock);
	while (!x->done) {
		if (deadline && now_ms() >= deadline)
			break;
		cond_wait_briefly(tr);
	}
	bool done = x->done;
	pthread_mutex_unlock(&tr->lock);
	return done;
}

static int proc_wait(struct exec_proc *p, int64_t deadline, int *status, struct err *e)
{
	struct dexec *x = of_proc(p);
	if (!wait_done(x, deadline))
		return -ETIMEDOUT;
	if (x->lost) {
		err_set(e, "%s", x->errmsg);
		return -1;
	}
	*status = x->status;
	return 0;
}

static void proc_free(struct exec_proc *p)
{
	struct dexec *x = of_proc(p);
	struct docker_tr *tr = x->tr;
	if (!wait_done(x, deadline_in(1)) && x->pid) {
		proc_signal(p, 15);
		if (!wait_done(x, deadline_in(1000))) {
			proc_signal(p, 9);
			wait_done(x, deadline_in(2000));
		}
	}
	pthread_mutex_lock(&tr->lock);
	x->stop = true;
	pthread_mutex_unlock(&tr->lock);
	wake(x);
	pthread_join(x->thread, NULL);
	pthread_mutex_lock(&tr->lock);
	unlink_live(x);
	pthread_cond_broadcast(&tr->cond);
	pthread_mutex_unlock(&tr->lock);
	dexec_destroy(x);
}

static const struct exec_ops docker_exec_ops = {
    .resize = proc_resize,
    .signal = proc_signal,
    .wait = proc_wait,
    .free = proc_free,
};

/* The SMPID wrapper: prints the process group id, then becomes the command's shell. With a TTY
 * it first sets the PTY size with stty (the resize call after start could land after the
 * command already looked); the resize call still covers images without stty. */
static const char WRAPPER[] = "printf 'SMPID:%d\\n' $$; exec /bin/sh -c \"$0\"";
static const char TTY_WRAPPER[] = "stty rows %u cols %u 2>/dev/null; "
				  "printf 'SMPID:%%d\\n' $$; exec /bin/sh -c \"$0\"";

int docker_exec_start(struct transport *t, const struct exec_spec *spec, struct exec_proc **out,
		      struct err *e)
{
	struct docker_tr *tr = (struct docker_tr *)t;
	char *wrapper = spec->tty && spec->rows && spec->cols
			    ? str_printf(TTY_WRAPPER, spec->rows, spec->cols)
			    : xstrdup(WRAPPER);
	char *argv[] = {"/bin/sh", "-c", wrapper, (char *)spec->command, NULL};
	size_t n = 0;
	while (spec->env && spec->env[n])
		n++;
	char **env = calloc(n + 2, sizeof(*env));
	if (!env || !wrapper) {
		free(env);
		free(wrapper);
		err_set(e, "out of memory");
		return -1;
	}
	char *term = spec->tty ? str_printf("TERM=%s", spec->term ? spec->term : "xterm") : NULL;
	for (size_t i = 0; i < n; i++)
		env[i] = spec->env[i];
	env[n] = term;
	struct dexec_req req = {.argv = argv,
				.cwd = spec->cwd,
				.env = env,
				.tty = spec->tty,
				.attach_stdin = true,
				.strip_header = true,
				.owned = true};
	struct dexec *x;
	int io = -1, er = -1;
	int rc = dexec_start(tr, &req, &x, &io, spec->tty ? NULL : &er, e);
	free(term);
	free(env);
	free(wrapper);
	if (rc < 0)
		return -1;
	x->proc.ops = &docker_exec_ops;
	x->proc.stdio_fd = io;
	x->proc.stderr_fd = er;
	if (spec->tty && spec->rows && spec->cols)
		proc_resize(&x->proc, spec->rows, spec->cols);
	*out = &x->proc;
	return 0;
}

int docker_exec_capture(struct docker_tr *tr, const char *script, struct buf *out, size_t cap,
			int *status, int64_t deadline, struct err *e)
{
	char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
	struct dexec_req req = {
	    .argv = argv, .stderr_to_log = true, .owned = true, .label = "docker probe"};
	struct dexec *x;
	int io = -1;
	if (dexec_start(tr, &req, &x, &io, NULL, e) < 0)
		return -1;
	x->proc.ops = &docker_exec_ops;
	x->proc.stdio_fd = io;
	x->proc.stderr_fd = -1;
	int rc = 0;
	for (;;) {
		struct pollfd p = {.fd = io, .events = POLLIN};
		int n = poll(&p, 1, deadline_poll_timeout(deadline));
		if (n == 0) {
			err_set(e, "a command in the container did not finish in time");
			rc = -1;
			break;
		}
		if (buf_reserve(out, 4096) < 0)
			break;
		ssize_t got = read(io, out->data + out->len, 4096);
		if (got <= 0)
			break;
		out->len += (size_t)got;
		if (out->len > cap)
			out->len = cap;
	}
	if (rc == 0) {
		int r = proc_wait(&x->proc, deadline, status, e);
		if (r == -ETIMEDOUT)
			err_set(e, "a command in the container did not finish in time");
		rc = r < 0 ? -1 : 0;
	}
	close(io);
	proc_free(&x->proc);
	return rc;
}

void dexec_stop_all(struct docker_tr *tr)
{
	pthread_mutex_lock(&tr->lock);
	tr->stop = true;
	for (struct dexec *x = tr->live; x; x = x->next)
		wake(x);
	int64_t deadline = deadline_in(5000);
	for (;;) {
		bool busy = false;
		for (struct dexec *x = tr->live; x; x = x->next)
			busy |= !x->owned;
		if (!busy || now_ms() >= deadline)
			break;
		cond_wait_briefly(tr);
	}
	pthread_mutex_unlock(&tr->lock);
}
