/* fuzz_ctl_proto.c: libFuzzer target for lib/ctl_proto.c's ctl_recv, the reader of the control
 * socket's frames. The input is written to one end of a socket pair as a peer would send it and
 * ctl_recv reads frames off the other end until it reports EOF or an error. */
#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl_proto.h"
#include "util.h"

/* The daemon ignores SIGPIPE (a peer that hangs up is an error return, not a signal); so do we. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	/* -max_len keeps the input well under the socket buffer: this write never blocks. */
	if (size && write(sv[0], data, size) != (ssize_t)size) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	shutdown(sv[0], SHUT_WR);
	struct buf payload;
	buf_init(&payload);
	for (int frames = 0; frames < 1000; frames++) {
		uint8_t type;
		int fds[3], nfds = 0;
		int r = ctl_recv(sv[1], &type, &payload, fds, 3, &nfds, deadline_in(1000));
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		if (r < 0)
			break;
	}
	buf_free(&payload);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
