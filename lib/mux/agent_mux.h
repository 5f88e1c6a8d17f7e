/* agent_mux.h: the client of `sandmount-agent serve` (protocol: lib/proto/mux_proto.h) over any
 * byte stream fd a transport hands out. A pump thread bridges every channel to local socket pairs,
 * so what it returns keeps the transport contract of transport.h: an SFTP stream fd, exec_procs,
 * and a change watch. The mux is dead once the stream closes: pending waits fail with a clear
 * error and every fd it handed out reads EOF. */
#ifndef SANDMOUNT_AGENT_MUX_H
#define SANDMOUNT_AGENT_MUX_H

#include <stdbool.h>

#include "transport.h"

struct agent_mux;

/* Take ownership of fd (the agent's stdin/stdout), start the pump and wait up to timeout_ms for
 * the agent's HELLO. label names the sandbox in messages. On failure fd is closed. */
int agent_mux_start(int fd, const char *label, int timeout_ms, struct agent_mux **out,
		    struct err *e);
/* Close the stream (the agent then kills every process group it started) and free. Every
 * exec_proc must have been freed before. */
void agent_mux_close(struct agent_mux *m);
bool agent_mux_alive(struct agent_mux *m);
/* The agent's version, from its HELLO. */
const char *agent_mux_version(struct agent_mux *m);
/* Open channels (for transport stats). */
unsigned agent_mux_channels(struct agent_mux *m);

/* A stream to the agent's SFTP server; closing fd closes the channel. */
int agent_mux_open_sftp(struct agent_mux *m, int *fd, struct err *e);
/* transport_ops.exec_start through the agent. */
int agent_mux_exec_start(struct agent_mux *m, const struct exec_spec *spec, struct exec_proc **out,
			 struct err *e);
/* transport_ops.watch: req->changed(ctx, absolute path) from the notifier thread for every change
 * under req->dir, NULL when events were lost; req->partial when the agent could not watch every
 * directory. For as long as the mux lives. */
int agent_mux_watch(struct agent_mux *m, const struct watch_req *req, struct err *e);

#endif
