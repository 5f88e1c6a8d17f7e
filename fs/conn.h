/* conn.h: the daemon's connection to its sandbox, kept alive (docs/design.md, decision 8). A
 * connection is a transport plus the SFTP client on it, shared by reference: whoever uses one holds
 * a reference, so a reconnect can swap in a new connection while FUSE threads still finish their
 * calls on the old one. When the connection dies, a background thread reconnects with backoff
 * (0.5 s doubling to 30 s, jittered); meanwhile callers wait for it up to a deadline. */
#ifndef SANDMOUNT_CONN_H
#define SANDMOUNT_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "sftp/sftp_client.h"
#include "transport.h"
#include "util.h"

struct conn {
	struct transport *transport;
	struct sftp_client *sftp;
	unsigned generation; /* 1 for the first connection, +1 per reconnect */
	unsigned refs;	     /* under the manager's lock */
	struct conn *next;   /* the manager's list of connections still referenced */
};

struct conn_mgr;

/* Connect to cfg (blocking, bounded by the connect timeout) and start watching the connection.
 * cfg must outlive the manager. on_reconnect (may be NULL) runs on the manager's thread after
 * every successful reconnect, with the new connection. */
int conn_mgr_open(const struct sandbox_cfg *cfg, void (*on_reconnect)(void *ctx, struct conn *c),
		  void *ctx, struct conn_mgr **out, struct err *e);
/* Stop reconnecting: from now on conn_get never waits. Call when unmounting. */
void conn_mgr_shutdown(struct conn_mgr *m);
/* Shut down, drop the manager's reference; the last reference closes a connection. */
void conn_mgr_free(struct conn_mgr *m);

/* The live connection (a new reference), waiting for a reconnect until the deadline (now_ms()
 * based; 0 = do not wait). NULL when there is none by then. */
struct conn *conn_get(struct conn_mgr *m, int64_t deadline);
void conn_put(struct conn_mgr *m, struct conn *c);
/* One more reference to a connection the caller holds (or knows held). */
void conn_hold(struct conn_mgr *m, struct conn *c);
/* The same for users that only keep the transport (the exec service): the transport of the
 * live connection with a reference held (no wait; NULL while reconnecting), and its release. */
struct transport *conn_get_transport(struct conn_mgr *m);
void conn_put_transport(struct conn_mgr *m, struct transport *t);
/* True when c is the current connection and not known dead. */
bool conn_current(struct conn_mgr *m, const struct conn *c);
/* A call on c failed with -EIO: if the connection is dead, start reconnecting now. Returns
 * whether c is dead (so the failure was the connection's, not the call's). */
bool conn_failed(struct conn_mgr *m, struct conn *c);
/* The deadline an operation starting now has to get its answer (op_timeout). */
int64_t conn_op_deadline(struct conn_mgr *m);
/* Status lines: state (connected / reconnecting with attempt, next try and last error). */
void conn_mgr_status(struct conn_mgr *m, struct buf *text);

#endif
