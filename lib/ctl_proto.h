/* ctl_proto.h: the control-socket protocol between sandexec / `sandmount --status` and the
 * session daemon. Frames are u32 length + u8 type + payload (struct buf encoding); the EXEC frame
 * carries the client's stdin/stdout/stderr as SCM_RIGHTS. */
#ifndef SANDMOUNT_CTL_PROTO_H
#define SANDMOUNT_CTL_PROTO_H

#include <stdint.h>
#include "buf.h"

#define CTL_MAX_FRAME (1u << 20)

enum ctl_type {
	/* client -> daemon */
	CTL_EXEC = 1, /* u32 flags, string command, string cwd_rel, u32 rows, u32 cols, string term,
			 u32 nenv, nenv x string "K=V"; fds: stdin, stdout, stderr */
	CTL_SIGNAL = 2,	 /* u32 signal number */
	CTL_RESIZE = 3,	 /* u32 rows, u32 cols */
	CTL_STATUS = 4,	 /* no payload */
	CTL_CHANGES = 5, /* string token: the paths changed since (sandmount-fsmonitor) */
	/* daemon -> client */
	CTL_EXIT = 64,		/* u32 status (0..255, 128+N) */
	CTL_ERROR = 65,		/* u32 exit code (125), string message */
	CTL_STATUS_REPLY = 66,	/* string text */
	CTL_CHANGES_REPLY = 67, /* string new token, u8 everything (1: assume every path changed),
				 * u32 n, n x string path relative to the mount root */
};

#define CTL_EXEC_TTY 0x1

/* Send one frame; fds (may be NULL/0) ride along with it. Returns 0 or -errno. */
int ctl_send(int sock, uint8_t type, const struct buf *payload, const int *fds, int nfds);
/* Receive one frame into payload (reset first); received fds are stored in fds[] (up to maxfds,
 * extra ones closed) and *nfds. Returns 0, -EPIPE on clean EOF, -ETIMEDOUT, -EPROTO, -errno. */
int ctl_recv(int sock, uint8_t *type, struct buf *payload, int *fds, int maxfds, int *nfds,
	     int64_t deadline);

#endif
