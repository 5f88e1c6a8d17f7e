/* docker_internal.h: what the Docker transport's files share — the transport object
 * (docker_transport.c) and the exec machinery (docker_exec.c): one bridge thread per exec moving
 * bytes between the hijacked daemon connection and local socket pairs.
 *
 * Locking: tr->lock protects the list of live execs and every field marked "shared"; tr->cond is
 * broadcast whenever one of them changes. */
#ifndef SANDMOUNT_DOCKER_INTERNAL_H
#define SANDMOUNT_DOCKER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "docker/docker_api.h"
#include "transport.h"

struct dexec;
struct agent_mux;
struct docker_sidecar;

struct docker_tr {
	struct transport base;
	struct docker_api api;
	char *container_id;
	char *container_name;
	char *remote_dir;
	char *agent_dir; /* cfg agent_dir=, may be NULL */
	bool agent_off;
	pthread_mutex_t place_lock; /* serializes finding the SFTP server */
	char server_path[4096];	    /* the SFTP server found by docker_sftp_server; "" until then */
	bool server_is_agent;
	struct agent_mux *mux; /* `sandmount-agent serve`, under place_lock; NULL: none */
	bool mux_failed;       /* serve did not start: exec API and `agent sftp` instead */
	struct docker_sidecar
	    *sidecar; /* the agent serves from a sidecar container; under place_lock */
	struct agent_mux **retired; /* muxes that died (their exec_procs may still be held) */
	size_t nretired;
	int op_timeout_s;
	int keepalive_s;

	pthread_t ka_thread;
	bool ka_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	_Atomic uint64_t bytes_in, bytes_out;

	/* shared */
	bool stop;
	bool connected;
	int64_t rtt_us;
	struct dexec *live; /* execs whose bridge runs or whose owner has not freed them */
	unsigned nlive;
};

/* What to run and how its streams are bridged. */
struct dexec_req {
	char *const *argv; /* the command (no shell added) */
	const char *cwd;   /* NULL: the container's default */
	char *const *env;  /* "K=V", NULL-terminated, may be NULL */
	bool tty;
	bool attach_stdin;
	bool strip_header;  /* stdout starts with "SMPID:<pid>\n" from the wrapper */
	bool stderr_to_log; /* no stderr fd: stderr lines go to the log (prefixed with label) */
	bool owned;	    /* an exec_proc frees it; else it frees itself when the stream ends */
	const char *label;
	const char *container; /* NULL: the target container */
	bool attach;	       /* attach to container's main process instead of an exec */
};

/* docker_exec.c */
/* Create and start an exec with a hijacked stream. *io_fd (and *err_fd when non-NULL and the
 * request has neither tty nor stderr_to_log) receive the caller's socket ends. */
int dexec_start(struct docker_tr *tr, const struct dexec_req *req, struct dexec **out, int *io_fd,
		int *err_fd, struct err *e);
/* transport_ops.exec_start: the command under the SMPID wrapper, as an exec_proc. */
int docker_exec_start(struct transport *t, const struct exec_spec *spec, struct exec_proc **out,
		      struct err *e);
/* Run `sh -c script` without stdin, collect stdout (up to cap bytes) and the exit status. */
int docker_exec_capture(struct docker_tr *tr, const char *script, struct buf *out, size_t cap,
			int *status, int64_t deadline, struct err *e);
/* Ask every bridge to stop and wait (bounded) until the self-freeing ones are gone. */
void dexec_stop_all(struct docker_tr *tr);

/* The bridge's parts that read what the daemon sends, separate for tests/fuzz: a bridge with
 * no stream yet (no fds, no thread; dexec_destroy frees it), the routing of received bytes (as
 * is with a TTY, else through the stdcopy frames; the SMPID header stripped) into its buffers,
 * and an exec inspect reply: 0 with the exit status once the process ended, else -1. */
struct dexec *dexec_new(struct docker_tr *tr, const struct dexec_req *req);
void dexec_demux(struct dexec *x, const uint8_t *p, size_t n);
void dexec_destroy(struct dexec *x);
int docker_exec_inspect_status(const json_t *j, int *status);

/* docker_agent.c */
/* The SFTP server to run: the placed agent (*is_agent) or the image's sftp-server. */
int docker_sftp_server(struct docker_tr *tr, char *path, size_t size, bool *is_agent,
		       struct err *e);

/* docker_agent.c, for docker_sidecar.c: a tar holding only the local agent as `name` (mode
 * 0755, owner 0); hash gets the hex hash of its content (names a version of the agent). */
int docker_agent_tar(const char *name, struct buf *tar, char *hash, size_t hash_size,
		     struct err *e);

/* docker_sidecar.c: when the agent cannot run in the target (docs/design.md, decision 3, last
 * resort) it runs in a sidecar container that shares the target's volumes. prepare checks that the
 * workspace is on a volume or bind mount and loads the image: 0 sets tr->sidecar. */
int docker_sidecar_prepare(struct docker_tr *tr, struct err *e);
/* Start (or reuse) the sidecar: *fd gets the stream of `sandmount-agent serve` in it. */
int docker_sidecar_serve(struct docker_tr *tr, int *fd, struct err *e);
/* Remove the sidecar this transport made and free tr->sidecar. */
void docker_sidecar_close(struct docker_tr *tr);

#endif
