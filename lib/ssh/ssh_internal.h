/* ssh_internal.h: what the SSH transport's files share — the connected session (ssh_auth.c), the
 * pump thread that alone drives libssh and bridges every channel to a local socket (ssh_pump.c),
 * the transport object and its vtable (ssh_transport.c), and remote commands (ssh_exec.c).
 *
 * Locking: tr->lock protects every field marked "shared" below and the channel list. The pump holds
 * it whenever it is not sleeping in poll(); other threads take it briefly, change a request flag,
 * and wake the pump through tr->wake_fd. Only the pump thread calls libssh after connecting. */
#ifndef SANDMOUNT_SSH_INTERNAL_H
#define SANDMOUNT_SSH_INTERNAL_H

#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "transport.h"

struct agent_mux;

/* Who the session talks to, after ~/.ssh/config was applied. */
struct ssh_peer {
	char user[128];
	char host[256];
	int port;
	char label[300]; /* "host" or "[host]:port", as in known_hosts and OpenSSH messages */
};

/* Connect, verify the host key and authenticate (blocking, bounded by cfg->connect_timeout_s). */
int ssh_auth_connect(const struct sandbox_cfg *cfg, ssh_session *out, struct ssh_peer *peer,
		     struct err *e);

enum chan_kind {
	CHAN_SFTP,    /* subsystem "sftp"; lives as long as the caller keeps its fd open */
	CHAN_EXEC,    /* a command owned by an exec_proc */
	CHAN_HELPER,  /* a fire-and-forget command of our own (kill); output discarded */
	CHAN_FORWARD, /* direct-streamlocal to the unix socket named by request (not a session:
		       * no session slot); lives as long as the caller keeps its fd open */
};

enum chan_state {
	CS_QUEUED,  /* created by a caller, not yet seen by the pump */
	CS_OPENING, /* channel open in progress */
	CS_PTY,	    /* pty-req in progress */
	CS_REQUEST, /* subsystem/exec request in progress */
	CS_RUNNING, /* data flows */
	CS_DONE,    /* closed or failed; waiting to be released */
};

#define CHAN_BUF_SIZE 32768
/* What a channel's stdout may have in flight towards us: libssh keeps its receive window near
 * what a read asks for (ssh_chan_io.c), and on its own stops at 1.28 MB, which bounds a 10 ms
 * link at ~50 MB/s. Virtual memory per channel; pages are touched only by that much data. */
#define CHAN_RX_WINDOW (4 * 1024 * 1024)

/* Bytes waiting to be written to one side; refilled only when empty (that is the flow control). */
struct chan_buf {
	size_t off, len, cap;
	uint8_t *data;
};

struct pump_chan {
	struct pump_chan *next;
	struct ssh_tr *tr;
	enum chan_kind kind;
	char *request; /* subsystem name or command line */
	bool tty;
	char *term;
	unsigned rows, cols;

	/* pump-only */
	ssh_channel ch;
	struct ssh_channel_callbacks_struct cb;
	int io_fd;  /* our end of the stdin/stdout pair; -1 once closed */
	int err_fd; /* our end of the stderr pair; -1 for none */
	int pfd_io; /* index of io_fd in the pump's poll set, -1 if not polled */
	bool hup;   /* poll reported the caller's end closed */
	struct chan_buf out, err, in;
	bool in_eof; /* the caller shut down stdin: send EOF once `in` is empty */
	bool in_eof_sent;
	bool out_eof, err_eof;	     /* the remote ended the stream and the local end was shut */
	bool out_broken, err_broken; /* the caller stopped reading: output is discarded */
	bool strip_header;	     /* the first stdout line is "SMPID:<pid>" from the wrapper */
	char header[32];
	size_t header_len;
	long pid; /* remote process group; 0 until the header arrived */
	bool kill_sent;
	int64_t open_started_us;
	int64_t retry_at_ms; /* refused for lack of a session slot: try again after this */

	/* shared */
	enum chan_state state;
	char errmsg[512];
	bool exited;
	int status;
	bool finished;	  /* exited or closed, and all output handed to the local ends */
	bool lost;	  /* the session died */
	bool released;	  /* the owner is gone; the pump frees the channel when it can */
	uint64_t signals; /* bit N: deliver signal N to the process group */
	bool resize;
	unsigned new_rows, new_cols;
};

struct ssh_tr {
	struct transport base;
	ssh_session session;
	ssh_event event;
	struct ssh_peer peer;
	int keepalive_s;
	int open_timeout_ms;
	char *sftp_server; /* sftp_server=: a command run for SFTP streams; NULL: the subsystem */

	pthread_t thread;
	bool thread_started;
	int wake_fd;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* broadcast after every pump iteration */

	/* shared */
	bool stop;
	bool connected;
	bool no_quickack; /* the session's descriptor is not TCP (a ProxyCommand's pipe) */
	char lost_msg[512];
	struct pump_chan *chans;
	int64_t rtt_us;
	uint64_t bytes_in, bytes_out;

	/* sandmount-agent (ssh_agent.c): set at open, NULL without it */
	struct agent_mux *mux;
	struct exec_proc *agent_proc;

	/* pump-only */
	struct ssh_counter_struct wire; /* bytes libssh moved on the socket */
	uint64_t seen_in_bytes;
	int64_t last_rx_ms, last_ka_ms, ka_sent_us;
};

/* ssh_pump.c */
int pump_start(struct ssh_tr *tr, struct err *e);
void pump_stop(struct ssh_tr *tr);
void pump_wake(struct ssh_tr *tr);
/* ssh_chan_io.c, on the pump thread: remote → local for stdout or stderr (true when it stopped
 * with data possibly left in libssh's buffers: no fd event will announce it, so the pump must
 * come back without sleeping), and local → remote as far as the remote window allows. */
bool pump_output(struct pump_chan *c, bool is_stderr);
void pump_input(struct pump_chan *c);
/* Wait on tr->cond until the deadline (0 = none); tr->lock held. Returns false when it passed. */
bool pump_wait(struct ssh_tr *tr, int64_t deadline);
/* Queue a channel (filled by the caller: kind, request, tty...), create its socket pairs and wait
 * until it runs. *io_fd (and *err_fd when err_fd is non-NULL) get the caller's ends. On failure
 * the channel is released and -1 returned with e set. */
int pump_open(struct ssh_tr *tr, struct pump_chan *c, int *io_fd, int *err_fd, struct err *e);
/* Like pump_open, with fd (a connected stream socket, now owned by the pump) as the pump's end:
 * the peer of fd is the caller's end. No stderr. */
int pump_attach(struct ssh_tr *tr, struct pump_chan *c, int fd, struct err *e);
struct pump_chan *pump_chan_new(enum chan_kind kind, const char *request);
/* Give a channel to the pump for disposal (an exec still running is killed). */
void pump_release(struct pump_chan *c);

/* ssh_agent.c: upload (if needed) and start `sandmount-agent serve`; tr->mux is set on success.
 * ssh_agent_stop ends it. */
int ssh_agent_start(struct ssh_tr *tr, const char *remote_dir, int timeout_ms, struct err *e);
void ssh_agent_stop(struct ssh_tr *tr);

/* ssh_exec.c */
int ssh_exec_start(struct transport *t, const struct exec_spec *spec, struct exec_proc **out,
		   struct err *e);
/* "kill -SIG -- -PID" as a helper channel's command line; malloc'd. */
char *ssh_kill_command(int sig, long pid);
/* The command line that ends a process group still running when its exec_proc is freed. */
char *ssh_reap_command(long pid);
/* Signal number for an SSH signal name ("INT", "KILL"...); -1 if unknown. */
int ssh_signal_number(const char *name);

#endif
