/* fuzz_agent_sftp.c: libFuzzer target for the agent's SFTP server (agent/sftp_server*.c): the
 * input is the byte stream a (compromised or buggy) client sends. sftp_server_run serves it
 * unchanged: its stdin is a memfd holding the input, its stdout /dev/null.
 *
 * The server makes real system calls on the paths it is sent (open, write, rename, remove...),
 * so the process first chroots into $SM_FUZZ_AGENT_ROOT (scripts/fuzz gives it a scratch
 * directory, and its corpus and artifact paths relative to it) and caps file sizes. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sftp_server.h"

static void die(const char *what)
{
	perror(what);
	abort();
}

/* A few files for requests to find: /ws/file, /ws/dir/, /ws/link -> file. */
static void populate(void)
{
	mkdir("/ws", 0755);
	mkdir("/ws/dir", 0755);
	int fd = open("/ws/file", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		if (write(fd, "hello, fuzzer\n", 14) < 0)
			perror("write /ws/file");
		close(fd);
	}
	if (symlink("file", "/ws/link") < 0)
		(void)0; /* already there from an earlier run */
}

/* LeakSanitizer reads /proc/self/task, which the chroot has not (and must not have: /proc leads
 * out of it). Leaks in the SFTP server go unreported here. */
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void)
{
	return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *root = getenv("SM_FUZZ_AGENT_ROOT");
	if (!root || !*root) {
		fprintf(stderr,
			"fuzz_agent_sftp: set SM_FUZZ_AGENT_ROOT to a scratch directory (the "
			"target chroots there: the requests it serves touch files)\n");
		exit(2);
	}
	int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null_fd < 0 || dup2(null_fd, STDOUT_FILENO) < 0)
		die("/dev/null");
	close(null_fd);
	if (chdir(root) < 0 || chroot(".") < 0)
		die("chroot to $SM_FUZZ_AGENT_ROOT");
	struct rlimit fsize = {1 << 20, 1 << 20};
	signal(SIGXFSZ, SIG_IGN);
	if (setrlimit(RLIMIT_FSIZE, &fsize) < 0)
		die("setrlimit");
	populate();
	int input_fd = memfd_create("sandmount-fuzz-sftp", 0);
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
	sftp_server_run();
	return 0;
}
