/* fuzz_agent_mux.c: libFuzzer target for the agent's multiplexed-protocol server
 * (agent/mux_server.c): the input is the byte stream of frames a client sends. mux_server_run
 * serves it unchanged, its stdin a memfd holding the input and its stdout /dev/null; what would
 * start processes or watch directories is replaced by agent_standins.c. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mux.h"

static void die(const char *what)
{
	perror(what);
	abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null_fd < 0 || dup2(null_fd, STDOUT_FILENO) < 0)
		die("/dev/null");
	close(null_fd);
	int input_fd = memfd_create("sandmount-fuzz-mux", 0);
	if (input_fd < 0 || dup2(input_fd, STDIN_FILENO) < 0)
		die("memfd");
	close(input_fd);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (ftruncate(STDIN_FILENO, 0) < 0 ||
	    pwrite(STDIN_FILENO, data, size, 0) != (ssize_t)size ||
	    lseek(STDIN_FILENO, 0, SEEK_SET) < 0)
		die("memfd write");
	mux_server_run();
	return 0;
}
