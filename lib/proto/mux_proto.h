/* mux_proto.h: the multiplexed protocol of `sandmount-agent serve`, shared by the agent
 * (agent/mux_*.c) and its client (lib/mux/agent_mux.c). Constants only.
 *
 * One byte stream (the agent's stdin/stdout) carries frames:
 *	u32 length   bytes that follow (type + channel + payload), MUX_FRAME_MIN..MUX_FRAME_MAX
 *	u8  type     MUX_*
 *	u32 channel  chosen by the client when it opens one (never 0, never reused); 0: the session
 *	payload      as listed below; integers big endian, strings u32 length + bytes (no NUL)
 *
 * The agent speaks first: HELLO on channel 0. The client then opens channels with OPEN_* and
 * the agent answers each with OPEN_OK or OPEN_FAIL (after OPEN_FAIL the channel is gone).
 *
 * Flow control: every channel has a window of MUX_WINDOW bytes of DATA payload per direction
 * (agent to client: stdout and stderr together; client to agent: stdin / SFTP requests). A
 * sender never has more than the window outstanding; the receiver returns CREDIT as the bytes
 * leave its buffers (written to the child or to the local socket). So neither side buffers more
 * than MUX_WINDOW per channel, and a slow reader stalls only its own channel.
 *
 * Changes before exits: before the agent sends EXIT for a command it reads every inotify event
 * already queued and sends every gathered change (CHANGED, CHANGED_INSIDE, OVERFLOW on the
 * watch channels), so a client that delivers the changes it received before it reports the exit
 * never shows a file as it was before the command changed it.
 *
 * Output ordering: the agent sends EOF for each output stream once the child's end of it
 * closed, and EXIT only after those EOFs, so everything printed is delivered before the status.
 * When the stream closes, the agent kills every process group it started (TERM, KILL after
 * MUX_KILL_GRACE_MS) and exits. */
#ifndef SANDMOUNT_MUX_PROTO_H
#define SANDMOUNT_MUX_PROTO_H

#define MUX_PROTO_VERSION 3

#define MUX_HEADER_SIZE	      9			/* u32 length + u8 type + u32 channel */
#define MUX_FRAME_MIN	      5			/* type + channel */
#define MUX_FRAME_MAX	      (256 * 1024)	/* largest length value accepted */
#define MUX_DATA_MAX	      (128 * 1024)	/* largest DATA payload sent */
#define MUX_WINDOW	      (4 * 1024 * 1024) /* per channel, per direction: >= bandwidth x RTT */
#define MUX_KILL_GRACE_MS     1000		/* TERM, then KILL after this long */
#define MUX_WATCH_COALESCE_MS 10 /* events are gathered this long before they are sent */

/* Output streams of a SPAWN channel (DATA, EOF). SFTP channels use MUX_STREAM_STDIO only. */
#define MUX_STREAM_STDIO  0 /* client->agent: stdin; agent->client: stdout (tty: all output) */
#define MUX_STREAM_STDERR 1 /* agent->client only; never with a tty */

/* Frame types. Direction: c = client, a = agent. */
#define MUX_HELLO     1 /* a->c, ch 0: u32 MUX_PROTO_VERSION, string agent version */
#define MUX_OPEN_SFTP 2 /* c->a: (empty) an SFTP v3 server on this channel's stdio stream */
#define MUX_OPEN_SPAWN                                                                             \
	3 /* c->a: string command (run as sh -c), string cwd ("" = the agent's),                   \
	   * u32 n, n x string "K=V", u8 tty, string TERM, u32 rows, u32 cols */
#define MUX_OPEN_WATCH                                                                             \
	4 /* c->a: string dir (absolute or relative to the agent's -d dir), u32 max_watches        \
	   * (directories watched at most; 0 = as many as the kernel allows) */
#define MUX_OPEN_OK   5	 /* a->c: u32 pid (the process group of a SPAWN; 0 for a WATCH) */
#define MUX_OPEN_FAIL 6	 /* a->c: string message */
#define MUX_DATA      7	 /* both: u8 stream, bytes (the rest of the frame) */
#define MUX_EOF	      8	 /* both: u8 stream. c->a STDIO: close the child's stdin */
#define MUX_CREDIT    9	 /* both: u32 bytes the receiver consumed (adds to the sender's window) */
#define MUX_SIGNAL    10 /* c->a: u32 signal number, delivered to the channel's process group */
#define MUX_RESIZE    11 /* c->a: u32 rows, u32 cols (TIOCSWINSZ on the PTY) */
#define MUX_EXIT      12 /* a->c: u32 status: exit code 0..255, or 256+N after signal N */
#define MUX_CLOSE                                                                                  \
	13 /* c->a: the client is done; a process still running has its group                      \
	    * killed (TERM, KILL after the grace); nothing more is sent for it */
#define MUX_CHANGED                                                                                \
	14 /* a->c (WATCH): u32 n, n x string path relative to the watched dir ("" = the dir       \
	    * itself): the name changed: created, removed, moved from or moved to. When a          \
	    * directory appears (created or moved in), every name below it is reported too */
#define MUX_OVERFLOW 15 /* a->c (WATCH): events were lost; assume everything changed */
#define MUX_PARTIAL                                                                                \
	16 /* a->c (WATCH): u32 n: n directories (a running total) could not be watched            \
	    * (inotify limit, max_watches); changes in them are not reported */
#define MUX_CHANGED_INSIDE                                                                         \
	17 /* a->c (WATCH): u32 n, n x (string path as in CHANGED, u8 attrs_follow, attrs when     \
	    * attrs_follow is 1): only what the name refers to changed (a file's data or           \
	    * attributes, a directory's attributes or entries), not the name. attrs_follow is 1    \
	    * when its lstat() when the report was sent follows, encoded as the attributes of an   \
	    * SFTP ATTRS reply with the stat@sandmount pair (sftp_proto.h); our agent always      \
	    * sends them. A path whose name changed too is sent in CHANGED only; an object gone    \
	    * before its lstat is sent in CHANGED. */

#endif
