/* agent_locate.c: find and read the local sandmount-agent binary that a transport places in the
 * sandbox: $SANDMOUNT_AGENT, the build tree next to this binary, the binary's own directory, then
 * the libexec install locations. */
#include "agent_locate.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AGENT_MAX_SIZE (64u << 20)

static bool is_file(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Copy path into out when it fits and names a regular file. */
static bool try_path(char *out, size_t size, const char *path)
{
	size_t n = strlen(path);
	if (n >= size)
		return false;
	memcpy(out, path, n + 1);
	return is_file(out);
}

static bool find_local_agent(char *out, size_t size)
{
	const char *env = getenv("SANDMOUNT_AGENT");
	if (env && *env)
		return try_path(out, size, env);
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = 0;
		/* the build tree, then an install that put it next to sandmount (bindir) */
		static const char *const rel[] = {"../agent/sandmount-agent", "sandmount-agent"};
		const char *dir = dirname(self);
		char cand[4096 + 32];
		for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
			snprintf(cand, sizeof(cand), "%s/%s", dir, rel[i]);
			if (try_path(out, size, cand))
				return true;
		}
	}
	static const char *const installed[] = {"/usr/local/libexec/sandmount/sandmount-agent",
						"/usr/libexec/sandmount/sandmount-agent"};
	for (size_t i = 0; i < sizeof(installed) / sizeof(installed[0]); i++)
		if (try_path(out, size, installed[i]))
			return true;
	return false;
}

int agent_read_local(char *path, size_t path_size, uint8_t **data, size_t *size, struct err *e)
{
	if (!find_local_agent(path, path_size)) {
		err_set(e, "sandmount-agent was not found on this machine (set SANDMOUNT_AGENT)");
		return -1;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size > AGENT_MAX_SIZE) {
		err_set(e, "%s: cannot read the agent binary", path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*size = (size_t)st.st_size;
	*data = malloc(*size);
	int rc = *data ? fd_read_full(fd, *data, *size, 0) : -ENOMEM;
	close(fd);
	if (rc < 0) {
		free(*data);
		*data = NULL;
		err_set(e, "%s: %s", path, strerror(-rc));
		return -1;
	}
	return 0;
}

void agent_content_name(const uint8_t *data, size_t size, char *out, size_t out_size)
{
	uint64_t h = 14695981039346656037ull;
	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 1099511628211ull;
	snprintf(out, out_size, "sandmount-agent-%016llx", (unsigned long long)h);
}

bool agent_path_inside(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n == 1 && dir[0] == '/')
		return path[0] == '/';
	return !strncmp(path, dir, n) && (path[n] == 0 || path[n] == '/');
}
