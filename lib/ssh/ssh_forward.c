/* ssh_forward.c: a local unix socket forwarded to a unix socket on a remote host. An acceptor
 * thread takes each local connection and hands it to the SSH transport's pump (ssh_pump.c) as
 * the local end of a new direct-streamlocal channel, so bytes are copied once. A session that
 * was lost (the pump declares it) is replaced at the next connection; the old one is kept until
 * close, since its channels may still be in use. */
#include "ssh/ssh_forward.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "runtime.h"
#include "ssh/ssh_internal.h"

struct ssh_forward {
	struct sandbox_cfg cfg; /* the SSH fields only; strings owned */
	char *socket_path;	/* on the remote host */
	char local_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	int stop_fd; /* eventfd: the acceptor ends */
	pthread_t acceptor;
	bool acceptor_started;

	/* acceptor-only, except at open and close */
	struct ssh_tr *tr; /* the live session; NULL after a failed reconnect */
	struct ssh_tr **retired;
	size_t nretired;

	pthread_mutex_t lock; /* protects the two below */
	unsigned failures;
	struct err last_error;
};

static void session_free(struct ssh_tr *tr)
{
	pump_stop(tr);
	ssh_disconnect(tr->session);
	ssh_free(tr->session);
	free(tr);
}

static struct ssh_tr *session_open(const struct sandbox_cfg *cfg, struct err *e)
{
	struct ssh_tr *tr = calloc(1, sizeof(*tr));
	if (!tr) {
		err_set(e, "out of memory");
		return NULL;
	}
	tr->wake_fd = -1;
	tr->rtt_us = -1;
	tr->keepalive_s = cfg->keepalive_s;
	tr->open_timeout_ms = (cfg->connect_timeout_s > 0 ? cfg->connect_timeout_s : 10) * 1000;
	if (ssh_auth_connect(cfg, &tr->session, &tr->peer, e) < 0) {
		free(tr);
		return NULL;
	}
	if (pump_start(tr, e) < 0) {
		session_free(tr);
		return NULL;
	}
	return tr;
}

static bool session_alive(struct ssh_tr *tr)
{
	pthread_mutex_lock(&tr->lock);
	bool alive = tr->connected;
	pthread_mutex_unlock(&tr->lock);
	return alive;
}

/* The live session, reconnecting when the last one was lost. */
static struct ssh_tr *live_session(struct ssh_forward *f, struct err *e)
{
	if (f->tr && session_alive(f->tr))
		return f->tr;
	if (f->tr) {
		struct ssh_tr **v = realloc(f->retired, (f->nretired + 1) * sizeof(*v));
		if (!v) {
			err_set(e, "out of memory");
			return NULL;
		}
		f->retired = v;
		f->retired[f->nretired++] = f->tr;
		f->tr = NULL;
	}
	f->tr = session_open(&f->cfg, e);
	if (f->tr)
		log_info("ssh: connected again to %s for %s", f->tr->peer.label, f->socket_path);
	return f->tr;
}

/* Carry one accepted connection (fd, owned) to the remote socket. On failure the reason is
 * recorded before the connection closes (a duplicate holds it open until then), so the peer
 * finds it when it sees the connection end. */
static void forward_one(struct ssh_forward *f, int fd)
{
	struct err e;
	int hold = dup(fd);
	struct ssh_tr *tr = live_session(f, &e);
	struct pump_chan *c = tr ? pump_chan_new(CHAN_FORWARD, f->socket_path) : NULL;
	if (tr && !c)
		err_set(&e, "out of memory");
	if (c && pump_attach(tr, c, fd, &e) == 0) {
		pump_release(c); /* from now on the peer's end owns the channel */
		if (hold >= 0)
			close(hold);
		return;
	}
	if (!c)
		close(fd);
	pthread_mutex_lock(&f->lock);
	f->failures++;
	f->last_error = e;
	pthread_mutex_unlock(&f->lock);
	if (hold >= 0)
		close(hold);
}

static void *acceptor_main(void *arg)
{
	struct ssh_forward *f = arg;
	for (;;) {
		struct pollfd p[2] = {{.fd = f->listen_fd, .events = POLLIN},
				      {.fd = f->stop_fd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0 && errno != EINTR) {
			log_warn("ssh: forwarding %s: poll: %s", f->socket_path, strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		if (!p[0].revents)
			continue;
		int fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			forward_one(f, fd);
		else if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
			log_warn("ssh: forwarding %s: accept: %s", f->socket_path, strerror(errno));
	}
	return NULL;
}

static int listen_local(struct ssh_forward *f, struct err *e)
{
	static unsigned seq;
	char dir[sizeof(f->local_path)];
	if (runtime_dir(dir, sizeof(dir), e) < 0)
		return -1;
	unsigned n = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
	int w = snprintf(f->local_path, sizeof(f->local_path), "%s/fwd-%ld-%u.sock", dir,
			 (long)getpid(), n);
	if (w < 0 || (size_t)w >= sizeof(f->local_path)) {
		err_set(e, "runtime directory %s: path too long for a socket", dir);
		f->local_path[0] = 0;
		return -1;
	}
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, f->local_path, sizeof(sa.sun_path));
	unlink(f->local_path);
	f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (f->listen_fd < 0 || bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(f->listen_fd, 64) < 0) {
		err_set(e, "cannot listen on %s: %s", f->local_path, strerror(errno));
		return -1;
	}
	f->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (f->stop_fd < 0) {
		err_set(e, "eventfd: %s", strerror(errno));
		return -1;
	}
	/* signals belong to the application's threads */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&f->acceptor, NULL, acceptor_main, f);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		err_set(e, "cannot start the forwarding thread: %s", strerror(rc));
		return -1;
	}
	f->acceptor_started = true;
	return 0;
}

static void copy_ssh_cfg(struct sandbox_cfg *to, const struct sandbox_cfg *from)
{
	memset(to, 0, sizeof(*to));
	to->host = xstrdup(from->host);
	to->user = from->user ? xstrdup(from->user) : NULL;
	to->port = from->port;
	to->identity = from->identity ? xstrdup(from->identity) : NULL;
	to->known_hosts = from->known_hosts ? xstrdup(from->known_hosts) : NULL;
	to->ssh_config = from->ssh_config ? xstrdup(from->ssh_config) : NULL;
	to->accept_new_host_key = from->accept_new_host_key;
	to->connect_timeout_s = from->connect_timeout_s;
	to->keepalive_s = from->keepalive_s;
}

int ssh_forward_open(const struct sandbox_cfg *cfg, const char *socket_path,
		     struct ssh_forward **out, struct err *e)
{
	struct ssh_forward *f = calloc(1, sizeof(*f));
	if (!f) {
		err_set(e, "out of memory");
		return -1;
	}
	copy_ssh_cfg(&f->cfg, cfg);
	f->socket_path = xstrdup(socket_path);
	f->listen_fd = f->stop_fd = -1;
	pthread_mutex_init(&f->lock, NULL);
	f->tr = session_open(&f->cfg, e);
	if (!f->tr || listen_local(f, e) < 0) {
		ssh_forward_close(f);
		return -1;
	}
	*out = f;
	return 0;
}

const char *ssh_forward_local_path(const struct ssh_forward *f)
{
	return f->local_path;
}

unsigned ssh_forward_failures(struct ssh_forward *f)
{
	pthread_mutex_lock(&f->lock);
	unsigned n = f->failures;
	pthread_mutex_unlock(&f->lock);
	return n;
}

void ssh_forward_last_error(struct ssh_forward *f, struct err *e)
{
	pthread_mutex_lock(&f->lock);
	*e = f->last_error;
	pthread_mutex_unlock(&f->lock);
}

void ssh_forward_close(struct ssh_forward *f)
{
	if (!f)
		return;
	if (f->acceptor_started) {
		uint64_t one = 1;
		if (write(f->stop_fd, &one, sizeof(one)) < 0)
			log_warn("ssh: cannot stop forwarding %s: %s", f->socket_path,
				 strerror(errno));
		pthread_join(f->acceptor, NULL);
	}
	if (f->listen_fd >= 0)
		close(f->listen_fd);
	if (f->stop_fd >= 0)
		close(f->stop_fd);
	if (f->local_path[0])
		unlink(f->local_path);
	if (f->tr)
		session_free(f->tr);
	for (size_t i = 0; i < f->nretired; i++)
		session_free(f->retired[i]);
	free(f->retired);
	pthread_mutex_destroy(&f->lock);
	free(f->socket_path);
	free(f->cfg.host);
	free(f->cfg.user);
	free(f->cfg.identity);
	free(f->cfg.known_hosts);
	free(f->cfg.ssh_config);
	free(f);
}
