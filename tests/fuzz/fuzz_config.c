/* fuzz_config.c: libFuzzer target for lib/config.c: the JSON config file, the SANDBOX argument
 * (URL or name) and the -o option list. Input: line 1 is the SANDBOX argument, line 2 the -o
 * list, the rest the config file, which config.c reads through $SANDMOUNT_CONFIG (a memfd). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

static int config_fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	config_fd = memfd_create("sandmount-fuzz-config", MFD_CLOEXEC);
	if (config_fd < 0)
		abort();
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", config_fd);
	setenv("SANDMOUNT_CONFIG", path, 1);
	return 0;
}

/* The next line of [*p, end) as a malloc'd string (without its newline). */
static char *take_line(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
	size_t n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
	char *s = strndup((const char *)*p, n);
	*p += nl ? n + 1 : n;
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	char *sandbox = take_line(&p, end);
	char *opts = take_line(&p, end);
	if (ftruncate(config_fd, 0) == 0 && pwrite(config_fd, p, (size_t)(end - p), 0) >= 0 &&
	    sandbox && opts) {
		struct sandbox_cfg cfg;
		struct err e;
		char *fuse_opts = NULL;
		config_resolve(sandbox, *opts ? opts : NULL, &cfg, &fuse_opts, &e);
		config_free(&cfg);
		free(fuse_opts);
		config_defaults(&cfg);
		config_load_global(&cfg, &e);
		config_free(&cfg);
	}
	free(sandbox);
	free(opts);
	return 0;
}
