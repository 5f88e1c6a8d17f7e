/* sftp_internal.h: what sftp_client.c (connection, request table, reader), sftp_codec.c (wire
 * formats), sftp_ops.c (the operations) and sftp_list.c (directory listings) share. Not for use
 * outside lib/sftp/. */
#ifndef SANDMOUNT_SFTP_INTERNAL_H
#define SANDMOUNT_SFTP_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "buf.h"
#include "proto/sftp_proto.h"
#include "sftp/sftp_client.h"

/* Chunk sizes: OpenSSH's safe default without limits@openssh.com, and our cap. */
#define SFTP_DEFAULT_CHUNK (32 * 1024)
#define SFTP_MAX_CHUNK	   (255 * 1024)
/* The largest packet accepted during the handshake (afterwards: c->lim.max_packet). */
#define SFTP_MAX_INCOMING (1024 * 1024)
/* Requests one sftp_read/sftp_write keeps in flight. */
#define SFTP_MAX_INFLIGHT 64

struct sftp_req {
	struct sftp_client *c;
	struct sftp_req *next; /* hash chain in the pending table */
	uint32_t id;
	uint8_t type;	    /* request type */
	uint8_t reply_type; /* valid once done */
	bool done;	    /* reply arrived, or the client died (err set) */
	bool abandoned;	    /* the waiter left (timeout): the reader frees it */
	int err;	    /* 0, -EIO (connection over), -ETIMEDOUT (send stalled) */
	int64_t deadline;   /* now_ms() based */
	int64_t sent_us;
	uint64_t wait_epoch; /* the client's wait_epoch when it was sent */
	size_t asked;	     /* bytes asked for (read) or sent (write) */
	struct buf reply;    /* payload after type and id */
	pthread_cond_t cv;
};

#define SFTP_TABLE_SIZE 256

struct sftp_client {
	int fd;
	int wake[2]; /* pipe: wakes the reader at close */
	int op_timeout_ms;
	pthread_t reader;
	pthread_mutex_t write_mu; /* one whole packet at a time */
	pthread_mutex_t mu;	  /* everything below */
	bool dead;
	uint32_t next_id;
	unsigned waiters; /* threads inside a wait (close waits for them to leave) */
	/* Moves when a wait starts for a request no earlier wait covered: that wait is a round
	 * trip, and every request sent before it rides on it. Counting this way does not depend on
	 * whether a reply happened to arrive before its waiter got the CPU. */
	uint64_t wait_epoch;
	pthread_cond_t idle;
	struct sftp_req *table[SFTP_TABLE_SIZE];
	struct sftp_stats st;
	unsigned ext;
	struct sftp_limits limits; /* as stated by the server */
	struct mount_limits lim;   /* ours: what we accept from the server */
	size_t max_read, max_write;
	bool openssh_symlink; /* server uses OpenSSH's (target, linkpath) order */
};

/* sftp_client.c: send a packet built with sftp_packet_begin (its id is filled in), followed by
 * tail (raw bytes that complete the packet, e.g. write data). On success *out is the pending
 * request; it must be passed to sftp_wait or sftp_req_abandon. */
int sftp_send(struct sftp_client *c, struct buf *pkt, const void *tail, size_t tail_len,
	      struct sftp_req **out);
/* Wait for r's reply until its deadline. 0: r->reply_type/r->reply hold it and the caller frees
 * r with sftp_req_free. Otherwise -ETIMEDOUT or -EIO and r is gone. */
int sftp_wait(struct sftp_req *r);
void sftp_req_free(struct sftp_req *r);
/* Give up on a request that was sent: freed now if answered, else when the reply arrives. */
void sftp_req_abandon(struct sftp_req *r);

/* sftp_ops.c: request helpers sftp_list.c uses too. */
/* Send pkt (consumed) and wait: 0 with *out the answered request (to free). */
int sftp_call(struct sftp_client *c, struct buf *pkt, struct sftp_req **out);
/* A reply that is not the one wanted: its status as an errno, else -EPROTO. Frees r. */
int sftp_reply_error(struct sftp_req *r);
/* Send pkt and parse a HANDLE reply into h. */
int sftp_call_handle(struct sftp_client *c, struct buf *pkt, struct sftp_handle *h);
/* Attributes from r's reply (stat@sandmount's fields only from a server that offers it): 0, -1. */
int sftp_decode_attrs(struct sftp_req *r, struct sftp_attrs *a);
/* Wait for a reply of type want or an EOF status: 0 with r kept for the caller, 1 at EOF, or a
 * negative errno (r freed in both of those cases). */
int sftp_wait_reply_or_eof(struct sftp_req *r, uint8_t want);
/* What an LSTAT finds at path (error paths only: it costs a round trip). */
enum sftp_kind { SFTP_KIND_NONE, SFTP_KIND_DIR, SFTP_KIND_OTHER };
enum sftp_kind sftp_lstat_kind(struct sftp_client *c, const char *path);

/* sftp_codec.c */
void sftp_packet_begin(struct buf *b, uint8_t type); /* length and id filled in by sftp_send */
void sftp_packet_begin_extended(struct buf *b, const char *name);
/* Finish the length field of a packet of pkt->len + tail_len bytes; -1 if invalid. */
int sftp_packet_finish(struct buf *pkt, uint32_t id, size_t tail_len);
/* A STATUS payload: 0 for OK, else the negative errno (FAILURE refined by the message text). */
int sftp_parse_status(struct buf *b, uint32_t *code);
int sftp_parse_handle(struct buf *b, struct sftp_handle *h);
void sftp_put_handle(struct buf *b, const struct sftp_handle *h);
/* A NAME reply with exactly one entry (REALPATH, READLINK): the filename. */
int sftp_parse_single_name(struct buf *b, char **name);
/* VERSION payload after the type byte: version and the extensions we use. */
int sftp_parse_version(struct buf *b, uint32_t *version, unsigned *ext);
int sftp_parse_limits(struct buf *b, struct sftp_limits *l);
int sftp_parse_statvfs(struct buf *b, struct statvfs *st);
/* A data reply: *p points into b, *n bytes. */
int sftp_parse_data(struct buf *b, const uint8_t **p, uint32_t *n);
/* The errno a FAILURE status message names ("File exists" ...), or 0. */
int sftp_errno_from_message(const uint8_t *msg, size_t len);

#endif
