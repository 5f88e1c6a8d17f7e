/* test_sftp_bounds.c: the SFTP client against scripted hostile peers over a socketpair: a peer
 * that never answers cannot make the request table grow past max_inflight (the connection is
 * dropped, every pending call fails at once), and a packet over max_packet or a reply to an id
 * nobody asked for ends the connection instead of being buffered or misdelivered. */
#include "buf.h"
#include "check.h"
#include "sftp/sftp_client.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

enum peer_mode { PEER_SILENT, PEER_HUGE_PACKET, PEER_WRONG_ID };

struct peer {
	int fd;
	enum peer_mode mode;
};

static void reply(int fd, struct buf *out)
{
	buf_set_u32_at(out, 0, (uint32_t)out->len - 4);
	if (fd_write_all(fd, out->data, out->len, 0) < 0)
		exit(3);
	buf_reset(out);
}

/* Answers INIT with VERSION 3; then every request as its mode says, until the client hangs up. */
static void *peer_main(void *arg)
{
	struct peer *p = arg;
	struct buf in, out;
	buf_init(&in);
	buf_init(&out);
	uint8_t hdr[4];
	while (fd_read_full(p->fd, hdr, 4, 0) == 0) {
		uint32_t len = (uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];
		uint8_t type;
		uint32_t id = 0;
		buf_reset(&in);
		if (buf_reserve(&in, len) < 0 || fd_read_full(p->fd, in.data, len, 0) < 0)
			break;
		in.len = len;
		buf_get_u8(&in, &type);
		buf_get_u32(&in, &id);
		buf_put_u32(&out, 0);
		if (type == 1) {
			buf_put_u8(&out, 2);
			buf_put_u32(&out, 3);
		} else if (p->mode == PEER_SILENT) {
			buf_reset(&out);
			continue;
		} else if (p->mode == PEER_HUGE_PACKET) {
			uint8_t huge[9] = {0x7f, 0xff, 0xff, 0xff, 101}; /* "2 GiB follow" */
			buf_reset(&out);
			if (fd_write_all(p->fd, huge, sizeof(huge), 0) < 0)
				break;
			continue;
		} else { /* PEER_WRONG_ID: a well-formed STATUS OK for another id */
			buf_put_u8(&out, 101);
			buf_put_u32(&out, id + 1000);
			buf_put_u32(&out, 0);
			buf_put_cstring(&out, "");
			buf_put_cstring(&out, "");
		}
		reply(p->fd, &out);
	}
	buf_free(&in);
	buf_free(&out);
	close(p->fd);
	return NULL;
}

static struct sftp_client *open_against(struct peer *p, pthread_t *t,
					const struct mount_limits *lim)
{
	int sv[2];
	struct sftp_client *c = NULL;
	struct err e;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		exit(2);
	p->fd = sv[1];
	pthread_create(t, NULL, peer_main, p);
	CHECK(sftp_client_open_limited(sv[0], 20000, lim, &c, &e) == 0);
	if (!c)
		exit(1);
	return c;
}

static void test_unanswered_requests_are_bounded(void)
{
	struct mount_limits lim = mount_limits_default();
	lim.max_inflight = 16;
	struct peer p = {.mode = PEER_SILENT};
	pthread_t t;
	struct sftp_client *c = open_against(&p, &t, &lim);
	struct sftp_handle h = {.len = 1, .data = {'h'}};
	struct sftp_req *r[16];
	for (int i = 0; i < 16; i++)
		CHECK(sftp_read_async(c, &h, (uint64_t)i * 4096, 4096, &r[i]) == 0);
	struct sftp_req *extra = NULL;
	int64_t t0 = now_ms();
	CHECK(sftp_read_async(c, &h, 0, 4096, &extra) == -EIO);
	CHECK(sftp_client_dead(c));
	uint8_t data[4096];
	size_t got;
	for (int i = 0; i < 16; i++)
		CHECK(sftp_req_wait_read(r[i], data, sizeof(data), &got) == -EIO);
	CHECK(now_ms() - t0 < 2000); /* at once, not after the 20 s op timeout */
	sftp_client_close(c);
	pthread_join(t, NULL);
}

static void test_connection_ends(enum peer_mode mode)
{
	struct peer p = {.mode = mode};
	pthread_t t;
	struct sftp_client *c = open_against(&p, &t, NULL);
	struct sftp_attrs a;
	int64_t t0 = now_ms();
	CHECK(sftp_stat(c, "x", &a) == -EIO);
	CHECK(sftp_client_dead(c));
	CHECK(now_ms() - t0 < 2000);
	sftp_client_close(c);
	pthread_join(t, NULL);
}

int main(void)
{
	test_unanswered_requests_are_bounded();
	test_connection_ends(PEER_HUGE_PACKET);
	test_connection_ends(PEER_WRONG_ID);
	return check_done();
}
