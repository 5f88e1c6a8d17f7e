/* sandexec_env.h: which of sandexec's environment variables reach the sandbox.
 *
 * Forwarded: TERM, LANG, LC_*, the config's env_allow patterns, and every variable the calling
 * program added or changed for this command, i.e. one absent from or different in the calling
 * program's own initial environment (/proc/PPID/environ); never the rest (the variables the
 * caller was started with, its secrets). PATH is rebuilt on the sandbox's own default PATH. */
#ifndef SANDMOUNT_SANDEXEC_ENV_H
#define SANDMOUNT_SANDEXEC_ENV_H

#include <stddef.h>

#define ENV_MAX_ENTRY (32 * 1024) /* bytes of one K=V forwarded */
#define ENV_MAX_TOTAL (256 * 1024)
#define ENV_MAX_COUNT 512

struct env_plan {
	char **entries;	   /* "K=V" to set in the sandbox, NULL-terminated (may be empty) */
	size_t n;	   /* entries used */
	char *path_prefix; /* shell code "PATH=...; export PATH; " to run first, or NULL */
};

/* The parent's initial environment as NUL-separated "K=V" entries (malloc'd, *len bytes), or NULL
 * when it cannot be read (then only the allowlist is forwarded). */
char *env_read_parent(size_t *len);
/* Plan the environment from env (sandexec's), the parent's initial environment (may be NULL),
 * the allow patterns and the -e entries (which come last and so win). Oversized entries are left
 * out with a warning on stderr. Returns 0, or -1 when out of memory. */
int env_plan_build(struct env_plan *p, char *const *env, const char *parent, size_t parent_len,
		   char *const *allow, char *const *set, int nset);
void env_plan_free(struct env_plan *p);

#endif
