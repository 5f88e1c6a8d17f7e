/* control_server.c: the daemon's control socket. An accept thread checks each peer's
 * credentials (SO_PEERCRED: our uid or root) and hands the connection to a thread of its own,
 * which answers one request: CTL_STATUS with the status text, CTL_CHANGES with the changed paths
 * (the daemon's journal), CTL_EXEC by running the command (exec_relay.c). Stopping closes the stop
 * pipe, which every thread polls. */
#include "control_server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl_proto.h"
#include "exec_relay.h"
#include "log.h"

#define FIRST_FRAME_TIMEOUT_MS 10000
#define LISTEN_BACKLOG	       64

struct conn {
	struct control_server *server;
	int sock; /* -1 once closed (under server->lock) */
	pthread_t thread;
	bool done; /* the thread finished and may be joined (under server->lock) */
	struct conn *next;
};

struct control_server {
	struct control_hooks hooks;
	char *sock_path;
	int listen_fd;
	int stop_rd, stop_wr; /* stop_wr is closed to stop: stop_rd turns readable for all */
	pthread_t accept_thread;
	pthread_mutex_t lock;
	struct conn *conns;
};

static void serve_status(struct conn *c)
{
	struct buf text, reply;
	buf_init(&text);
	buf_init(&reply);
	if (c->server->hooks.status)
		c->server->hooks.status(c->server->hooks.ctx, &text);
	buf_put_string(&reply, text.data, text.len);
	ctl_send(c->sock, CTL_STATUS_REPLY, &reply, NULL, 0);
	buf_free(&text);
	buf_free(&reply);
}

static void serve_changes(struct conn *c, struct buf *req)
{
	char *token = NULL;
	struct buf reply;
	buf_init(&reply);
	if (buf_get_cstring(req, &token) == 0 && c->server->hooks.changes) {
		c->server->hooks.changes(c->server->hooks.ctx, token, &reply);
		ctl_send(c->sock, CTL_CHANGES_REPLY, &reply, NULL, 0);
	} else {
		buf_put_u32(&reply, 125);
		buf_put_cstring(&reply, token ? "this daemon keeps no change journal"
					      : "malformed changes request");
		ctl_send(c->sock, CTL_ERROR, &reply, NULL, 0);
	}
	free(token);
	buf_free(&reply);
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	struct control_server *s = c->server;
	struct buf req;
	uint8_t type;
	int fds[3], nfds;

	buf_init(&req);
	int r = ctl_recv(c->sock, &type, &req, fds, 3, &nfds, deadline_in(FIRST_FRAME_TIMEOUT_MS));
	if (r == 0 && type == CTL_EXEC && nfds == 3) {
		exec_relay_run(c->sock, &req, fds, &s->hooks, s->stop_rd);
	} else if (r == 0) {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		if (type == CTL_STATUS)
			serve_status(c);
		else if (type == CTL_CHANGES)
			serve_changes(c, &req);
		else
			log_warn("control: unexpected request type %u (%d fds)", type, nfds);
	} else if (r != -EPIPE) {
		log_warn("control: bad request: %s", strerror(-r));
	}
	buf_free(&req);
	pthread_mutex_lock(&s->lock);
	close(c->sock);
	c->sock = -1;
	c->done = true;
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* Join connection threads that finished (all of them when stopping). */
static void reap_conns(struct control_server *s, bool all)
{
	for (;;) {
		struct conn *c = NULL, **pp;
		pthread_mutex_lock(&s->lock);
		for (pp = &s->conns; *pp; pp = &(*pp)->next) {
			if (all || (*pp)->done) {
				c = *pp;
				*pp = c->next;
				break;
			}
		}
		pthread_mutex_unlock(&s->lock);
		if (!c)
			return;
		pthread_join(c->thread, NULL);
		free(c);
	}
}

static bool peer_allowed(int sock)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_warn("control: SO_PEERCRED: %s", strerror(errno));
		return false;
	}
	if (cred.uid == geteuid() || cred.uid == 0)
		return true;
	log_warn("control: refused a connection from uid %u (pid %d)", (unsigned)cred.uid,
		 (int)cred.pid);
	return false;
}

static void start_conn(struct control_server *s, int sock)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(sock);
		return;
	}
	c->server = s;
	c->sock = sock;
	pthread_mutex_lock(&s->lock);
	int r = pthread_create(&c->thread, NULL, conn_main, c);
	if (r == 0) {
		c->next = s->conns;
		s->conns = c;
	}
	pthread_mutex_unlock(&s->lock);
	if (r != 0) {
		log_err("control: cannot start a thread: %s", strerror(r));
		close(sock);
		free(c);
	}
}

static void *accept_main(void *arg)
{
	struct control_server *s = arg;
	for (;;) {
		struct pollfd p[2] = {{.fd = s->listen_fd, .events = POLLIN},
				      {.fd = s->stop_rd, .events = POLLIN}};
		/* Wake now and then to join finished connection threads. */
		int r = poll(p, 2, 1000);
		reap_conns(s, false);
		if (r < 0 && errno != EINTR) {
			log_err("control: poll: %s", strerror(errno));
			return NULL;
		}
		if (r <= 0)
			continue;
		if (p[1].revents)
			return NULL;
		if (!p[0].revents)
			continue;
		int sock = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (sock < 0) {
			if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
				log_warn("control: accept: %s", strerror(errno));
			continue;
		}
		if (!peer_allowed(sock))
			close(sock);
		else
			start_conn(s, sock);
	}
}

/* A socket file nobody answers on is left over from a dead daemon; a live one is an error. */
static int clear_stale_socket(const struct sockaddr_un *addr, struct err *e)
{
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe < 0) {
		err_set(e, "socket: %s", strerror(errno));
		return -1;
	}
	int r = connect(probe, (const struct sockaddr *)addr, sizeof(*addr));
	int saved = errno;
	close(probe);
	if (r == 0) {
		err_set(e, "%s: another sandmount daemon is already serving this mount",
			addr->sun_path);
		return -1;
	}
	if (saved != ENOENT && unlink(addr->sun_path) < 0 && errno != ENOENT) {
		err_set(e, "cannot remove stale %s: %s", addr->sun_path, strerror(errno));
		return -1;
	}
	return 0;
}

static int listen_on(const char *path, struct err *e)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(addr.sun_path)) {
		err_set(e, "%s: socket path too long", path);
		return -1;
	}
	strcpy(addr.sun_path, path);
	if (clear_stale_socket(&addr, e) < 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err_set(e, "socket: %s", strerror(errno));
		return -1;
	}
	/* The directory is 0700 already; 0600 on the socket is the second lock. */
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || chmod(path, 0600) < 0 ||
	    listen(fd, LISTEN_BACKLOG) < 0) {
		err_set(e, "control socket %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int control_server_start(const char *sock_path, const struct control_hooks *hooks,
			 struct control_server **out, struct err *e)
{
	int pfd[2];
	/* Writes to a client's pipe whose reader is gone must fail with EPIPE, not kill us. */
	signal(SIGPIPE, SIG_IGN);

	struct control_server *s = calloc(1, sizeof(*s));
	if (!s) {
		err_set(e, "out of memory");
		return -1;
	}
	s->hooks = *hooks;
	s->sock_path = xstrdup(sock_path);
	s->stop_rd = s->stop_wr = -1;
	pthread_mutex_init(&s->lock, NULL);
	s->listen_fd = listen_on(sock_path, e);
	if (s->listen_fd < 0)
		goto fail;
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		err_set(e, "pipe: %s", strerror(errno));
		goto fail;
	}
	s->stop_rd = pfd[0];
	s->stop_wr = pfd[1];
	int r = pthread_create(&s->accept_thread, NULL, accept_main, s);
	if (r != 0) {
		err_set(e, "cannot start the control thread: %s", strerror(r));
		goto fail;
	}
	*out = s;
	return 0;
fail:
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		unlink(sock_path);
	}
	if (s->stop_rd >= 0) {
		close(s->stop_rd);
		close(s->stop_wr);
	}
	pthread_mutex_destroy(&s->lock);
	free(s->sock_path);
	free(s);
	return -1;
}

void control_server_stop(struct control_server *s)
{
	if (!s)
		return;
	close(s->stop_wr);
	pthread_join(s->accept_thread, NULL);
	close(s->listen_fd);
	unlink(s->sock_path);
	/* Wake threads still waiting for a request; running commands see stop_rd. */
	pthread_mutex_lock(&s->lock);
	for (struct conn *c = s->conns; c; c = c->next)
		if (c->sock >= 0)
			shutdown(c->sock, SHUT_RD);
	pthread_mutex_unlock(&s->lock);
	reap_conns(s, true);
	close(s->stop_rd);
	pthread_mutex_destroy(&s->lock);
	free(s->sock_path);
	free(s);
}
