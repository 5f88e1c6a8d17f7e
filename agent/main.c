/* main.c: sandmount-agent's command line. The agent is the static helper sandmount places in a
 * sandbox and talks to over one byte stream (its stdin/stdout); `sftp` serves SFTP v3 on it,
 * `serve` the multiplexed protocol of mux_proto.h (SFTP, commands, change watching). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mux.h"
#include "sftp_server.h"

static const char usage[] =
    "usage: sandmount-agent sftp [-d DIR]   serve SFTP v3 on stdin/stdout\n"
    "       sandmount-agent serve [-d DIR]  serve the multiplexed protocol on stdin/stdout\n"
    "       sandmount-agent --version\n"
    "       sandmount-agent --help\n"
    "  -d DIR   change to DIR first, so relative paths are relative to it\n";

/* `sftp` and `serve` take the same options. */
static int run(const char *name, int argc, char **argv, int (*serve)(void))
{
	const char *dir = NULL;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "-d") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else {
			fprintf(stderr, "sandmount-agent: %s: unexpected argument '%s'\n%s", name,
				argv[i], usage);
			return 2;
		}
	}
	/* `serve` takes absolute paths for everything; a workspace that is missing is reported
	 * by the client when it looks at it, with the agent running. */
	if (dir && chdir(dir) < 0 && serve != mux_server_run) {
		fprintf(stderr, "sandmount-agent: %s: cannot change to %s: %s\n", name, dir,
			strerror(errno));
		return 1;
	}
	/* A closed stdout is reported by write(2) as EPIPE, not by a signal. */
	signal(SIGPIPE, SIG_IGN);
	return serve();
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "sftp") == 0)
		return run("sftp", argc - 2, argv + 2, sftp_server_run);
	if (argc >= 2 && strcmp(argv[1], "serve") == 0)
		return run("serve", argc - 2, argv + 2, mux_server_run);
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("sandmount-agent %s\n", SANDMOUNT_VERSION);
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "--help") == 0) {
		fputs(usage, stdout);
		return 0;
	}
	fputs(usage, stderr);
	return 2;
}
