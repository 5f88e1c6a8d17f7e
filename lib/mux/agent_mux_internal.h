/* agent_mux_internal.h: what agent_mux.c (the pump, the frames, the mux's life) and
 * agent_mux_ops.c (opening channels: SFTP, exec_procs, the watch) share. Locking as described in
 * agent_mux.c. */
#ifndef SANDMOUNT_AGENT_MUX_INTERNAL_H
#define SANDMOUNT_AGENT_MUX_INTERNAL_H

#include <poll.h>
#include <pthread.h>
#include <stdint.h>

#include "mux/agent_mux.h"
#include "buf.h"
#include "proto/mux_proto.h"
#include "sftp/sftp_client.h"

#define OPEN_TIMEOUT_MS 15000
#define TX_HIGH		(1024 * 1024) /* local input is not read while this much waits for the agent */
#define RX_CHUNK	(256 * 1024)
#define CREDIT_STEP	(MUX_WINDOW / 16)
#define EVENTS_MAX	10000 /* undelivered events beyond this become one "everything changed" */
/* A longer changed path becomes "everything changed": the backlog stays within EVENTS_MAX x
 * (EVENT_PATH_MAX + sizeof(struct event)) bytes (an event's attributes are of fixed size). */
#define EVENT_PATH_MAX 4096

enum mkind { MK_SFTP, MK_EXEC, MK_WATCH };
enum mstate { MS_OPENING, MS_OPEN, MS_FAILED };

struct mchan {
	struct mchan *next;
	struct agent_mux *m;
	uint32_t id;
	enum mkind kind;
	bool tty;
	void (*changed)(void *ctx, const char *path, bool inside, const struct sftp_attrs *attrs);
	void (*partial)(void *ctx, uint32_t unwatched);
	void *ctx;
	char *dir;	    /* watched directory, without a trailing '/' */
	uint32_t unwatched; /* the agent's last PARTIAL (under m->lock) */

	/* pump-only */
	int io_fd;  /* our end of the stdin/stdout (SFTP) pair; -1 once closed */
	int err_fd; /* our end of the stderr pair; -1 when none or closed */
	int pfd_io, pfd_err;
	struct buf out, err;	     /* agent output waiting for the local ends */
	bool out_eof, err_eof;	     /* the agent ended the stream */
	bool out_shut;		     /* io_fd was shut for writing after out_eof */
	bool out_broken, err_broken; /* the local reader is gone: output is dropped */
	bool hup;		     /* the caller closed its end of io_fd */
	uint32_t credit;	     /* stdin bytes we may still send */
	uint32_t consumed;	     /* output bytes delivered since the last CREDIT */
	bool in_eof_sent;

	/* shared */
	enum mstate state;
	char errmsg[320];
	long pid;
	bool exited;
	int status;
	uint64_t events_before_exit; /* m->events_queued when EXIT arrived */
	bool coherent;	  /* a watch ran when EXIT arrived (see exec_proc.coherent_exit) */
	bool finished;	  /* exited and every byte of output delivered */
	bool released;	  /* the owner is gone: the pump closes and frees it */
	bool handed_over; /* chan_open returned it: the opener no longer looks at it */
};

struct event {
	struct event *next;
	void (*changed)(void *ctx, const char *path, bool inside, const struct sftp_attrs *attrs);
	void (*partial)(void *ctx, uint32_t unwatched); /* set: a PARTIAL, not a change */
	void *ctx;
	char *path;  /* NULL: overflow */
	bool inside; /* CHANGED_INSIDE: only what the name refers to changed */
	bool have_attrs;
	struct sftp_attrs attrs; /* with have_attrs: sent along (a directory's) */
	uint32_t unwatched;
};

struct agent_mux {
	int fd;
	int wake_fd;
	char label[128];
	pthread_t thread, notifier;
	bool thread_started, notifier_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_cond_t events_cond; /* signalled when events were queued or on stop */

	/* shared */
	bool stop, dead, hello;
	char dead_msg[300];
	char version[64];
	struct mchan *chans;
	uint32_t next_id;
	struct buf tx;

	struct event *events, **events_tail; /* for the notifier */
	size_t nevents;
	uint64_t events_queued;	   /* events ever queued */
	uint64_t events_delivered; /* of those, the ones whose callbacks returned */

	/* pump-only */
	struct buf rx;
	struct pollfd *pfd;
	size_t pfd_cap;
};

/* agent_mux.c; m->lock held for the tx_* helpers and mux_wait. */
size_t tx_begin(struct agent_mux *m, uint8_t type, uint32_t ch);
void tx_end(struct agent_mux *m, size_t start);
void tx_u32(struct agent_mux *m, uint8_t type, uint32_t ch, uint32_t v);
void mux_wake(struct agent_mux *m);
/* Wait on m->cond until the deadline (0 = none). False once it passed. */
bool mux_wait(struct agent_mux *m, int64_t deadline);
struct mchan *chan_new(struct agent_mux *m, enum mkind kind);
void chan_destroy(struct mchan *c);
/* Link c, send its OPEN frame (its payload built by `payload` into m->tx) and wait for the
 * agent's answer. On failure c is released (or destroyed) and e is set. m->lock held. */
int chan_open(struct agent_mux *m, struct mchan *c, uint8_t type,
	      void (*payload)(struct buf *tx, const void *arg), const void *arg, struct err *e);

#endif
