/* ssh_transport.c: the "ssh" transport — connects (ssh_auth.c), starts the pump (ssh_pump.c) and
 * exposes SFTP streams, remote commands (ssh_exec.c) and statistics through the transport vtable.
 * With sandmount-agent running on the host (ssh_agent.c; agent=auto|on), SFTP streams, commands
 * and the change watch go through it; otherwise (agent=off, or auto when it cannot run there)
 * through the sftp subsystem and exec channels. With sftp_server=CMD, SFTP streams are CMD run in
 * an exec channel (whether or not the agent runs; like sshfs's option). Every exec_proc must be
 * freed before the transport is closed. */
#include "ssh/ssh_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mux/agent_mux.h"
#include "log.h"

/* The agent, while its connection lives (afterwards the plain channels serve). */
static struct agent_mux *live_mux(struct ssh_tr *tr)
{
	return tr->mux && agent_mux_alive(tr->mux) ? tr->mux : NULL;
}

static int ssh_open_sftp(struct transport *t, int *fd, struct err *e)
{
	struct ssh_tr *tr = (struct ssh_tr *)t;
	struct agent_mux *m = live_mux(tr);
	if (m && !tr->sftp_server)
		return agent_mux_open_sftp(m, fd, e);
	struct pump_chan *c = pump_chan_new(CHAN_SFTP, tr->sftp_server ? tr->sftp_server : "sftp");
	if (!c) {
		err_set(e, "out of memory opening an sftp stream");
		return -1;
	}
	if (pump_open(tr, c, fd, NULL, e) < 0)
		return -1;
	pump_release(c); /* from now on the caller's fd owns the channel */
	return 0;
}

static int ssh_exec(struct transport *t, const struct exec_spec *spec, struct exec_proc **out,
		    struct err *e)
{
	struct agent_mux *m = live_mux((struct ssh_tr *)t);
	if (m)
		return agent_mux_exec_start(m, spec, out, e);
	return ssh_exec_start(t, spec, out, e);
}

static int ssh_watch(struct transport *t, const struct watch_req *req, struct err *e)
{
	struct agent_mux *m = live_mux((struct ssh_tr *)t);
	if (!m) {
		err_set(e, "without sandmount-agent this host cannot report changes");
		return -ENOTSUP;
	}
	return agent_mux_watch(m, req, e);
}

static void ssh_stats(struct transport *t, struct transport_stats *st)
{
	struct ssh_tr *tr = (struct ssh_tr *)t;

	pthread_mutex_lock(&tr->lock);
	st->connected = tr->connected;
	st->rtt_us = tr->rtt_us > 0 ? tr->rtt_us : -1;
	st->bytes_in = tr->bytes_in;
	st->bytes_out = tr->bytes_out;
	st->channels = 0;
	for (struct pump_chan *c = tr->chans; c; c = c->next)
		if (c->kind != CHAN_HELPER && c->state == CS_RUNNING)
			st->channels++;
	pthread_mutex_unlock(&tr->lock);
	if (tr->mux)
		st->channels += agent_mux_channels(tr->mux);
	snprintf(st->detail, sizeof(st->detail), "ssh %.100s@%.120s:%d%s", tr->peer.user,
		 tr->peer.host, tr->peer.port,
		 tr->mux && agent_mux_alive(tr->mux) ? " (commands: agent)" : "");
}

static void ssh_close(struct transport *t)
{
	struct ssh_tr *tr = (struct ssh_tr *)t;

	ssh_agent_stop(tr);
	pump_stop(tr);
	ssh_disconnect(tr->session);
	ssh_free(tr->session);
	free(tr->sftp_server);
	free(tr);
}

static const struct transport_ops ssh_ops = {
    .name = "ssh",
    .open_sftp = ssh_open_sftp,
    .exec_start = ssh_exec,
    .stats = ssh_stats,
    .watch = ssh_watch,
    .close = ssh_close,
};

int ssh_transport_open(const struct sandbox_cfg *cfg, struct transport **out, struct err *e)
{
	struct ssh_tr *tr = calloc(1, sizeof(*tr));
	if (!tr) {
		err_set(e, "out of memory");
		return -1;
	}
	tr->base.ops = &ssh_ops;
	tr->wake_fd = -1;
	tr->rtt_us = -1;
	tr->keepalive_s = cfg->keepalive_s;
	tr->open_timeout_ms = (cfg->connect_timeout_s > 0 ? cfg->connect_timeout_s : 10) * 1000;
	if (ssh_auth_connect(cfg, &tr->session, &tr->peer, e) < 0) {
		free(tr);
		return -1;
	}
	tr->sftp_server = cfg->sftp_server ? strdup(cfg->sftp_server) : NULL;
	if (pump_start(tr, e) < 0) {
		ssh_close(&tr->base);
		return -1;
	}
	if (!cfg->agent_off) {
		struct err why;
		if (ssh_agent_start(tr, cfg->remote_dir, tr->open_timeout_ms, &why) == 0) {
			log_info("ssh: %s served by sandmount-agent", tr->peer.label);
		} else if (cfg->agent_on) {
			err_set(e, "%s: sandmount-agent cannot run there (%s)", tr->peer.label,
				why.msg);
			ssh_close(&tr->base);
			return -1;
		} else {
			log_info("ssh: without sandmount-agent on %s (%s): sftp-server and exec "
				 "channels serve",
				 tr->peer.label, why.msg);
		}
	}
	*out = &tr->base;
	return 0;
}
