/* sandexec_env.c: decides which variables sandexec forwards to the sandbox (see sandexec_env.h).
 *
 * Why the parent's *initial* environment: a program that runs `$SHELL -c CMD` with extra
 * variables (OpenClaw's per-call env, a skill's variables, PATH prepends) passes its own
 * environment plus those; /proc/PPID/environ holds what that program was started with, which
 * later setenv() calls do not change. What differs is what the caller added for this command;
 * what is equal is the caller's own startup environment (API keys and other secrets), which stays
 * on the host unless the config's env_allow names it. */
#include "sandexec_env.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "util.h"

#define PARENT_ENV_MAX (4 * 1024 * 1024)

/* Local bookkeeping that means nothing in the sandbox even when the caller changed it. */
static const char *const never_added[] = {"PWD",	 "OLDPWD",  "SHLVL", "_",      "HOME",
					  "USER",	 "LOGNAME", "SHELL", "TMPDIR", "LD_*",
					  "SANDMOUNT_*", "XDG_*",   NULL};

char *env_read_parent(size_t *len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/environ", (int)getppid());
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct buf b;
	buf_init(&b);
	for (;;) {
		uint8_t *p = buf_put_space(&b, 65536);
		if (!p)
			break;
		ssize_t r = read(fd, p, 65536);
		buf_truncate(&b, b.len - 65536 + (r > 0 ? (size_t)r : 0));
		if (r < 0 || b.len > PARENT_ENV_MAX)
			b.err = true;
		if (r <= 0 || b.err)
			break;
	}
	close(fd);
	if (!buf_ok(&b)) {
		buf_free(&b);
		return NULL;
	}
	*len = b.len;
	return (char *)b.data;
}

static bool valid_name(const char *s, size_t n)
{
	if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9')))
			return false;
	return true;
}

static bool name_matches(const char *name, const char *const *patterns)
{
	for (const char *const *p = patterns; p && *p; p++)
		if (fnmatch(*p, name, 0) == 0)
			return true;
	return false;
}

/* The value of name in the NUL-separated blob, or NULL. */
static const char *blob_get(const char *blob, size_t len, const char *name, size_t n)
{
	for (size_t off = 0; blob && off < len;) {
		const char *e = blob + off;
		size_t elen = strnlen(e, len - off);
		if (elen > n && e[n] == '=' && !memcmp(e, name, n))
			return e + n + 1;
		off += elen + 1;
	}
	return NULL;
}

static int add_entry(struct env_plan *p, const char *entry, size_t *total)
{
	size_t len = strlen(entry);
	if (len > ENV_MAX_ENTRY || *total + len > ENV_MAX_TOTAL || p->n >= ENV_MAX_COUNT) {
		fprintf(stderr,
			"sandexec: not forwarding %.*s (%zu bytes; limits: %d per variable, "
			"%d in all, %d variables)\n",
			(int)strcspn(entry, "="), entry, len, ENV_MAX_ENTRY, ENV_MAX_TOTAL,
			ENV_MAX_COUNT);
		return 0;
	}
	p->entries[p->n] = strdup(entry);
	if (!p->entries[p->n])
		return -1;
	p->n++;
	*total += len;
	return 0;
}

static void strv_free(char **v)
{
	for (char **e = v; e && *e; e++)
		free(*e);
	free(v);
}

/* Non-empty elements of a PATH value (an empty one would mean the current directory). */
static char **path_split(const char *s, size_t *n)
{
	size_t cap = 1;
	for (const char *c = s; *c; c++)
		cap += *c == ':';
	char **v = calloc(cap + 1, sizeof(char *));
	*n = 0;
	while (v && *s) {
		size_t k = strcspn(s, ":");
		if (k && !(v[(*n)++] = strndup(s, k))) {
			strv_free(v);
			return NULL;
		}
		s += k + (s[k] == ':');
	}
	return v;
}

/* v[from..to) joined with ':', shell-quoted if asked; an allocation failure marks b. */
static void put_joined(struct buf *b, char *const *v, size_t from, size_t to, bool quote)
{
	struct buf j;
	buf_init(&j);
	for (size_t i = from; i < to; i++) {
		if (i > from)
			buf_put_u8(&j, ':');
		buf_put_bytes(&j, v[i], strlen(v[i]));
	}
	buf_put_u8(&j, 0);
	char *q = buf_ok(&j) && quote ? sh_quote((char *)j.data) : NULL;
	const char *s = quote ? q : buf_ok(&j) ? (char *)j.data : NULL;
	if (s)
		buf_put_bytes(b, s, strlen(s));
	else
		b->err = true;
	free(q);
	buf_free(&j);
}

/* Where the caller's own PATH (parent, n elements) lies within the new one, or -1. */
static long path_find(char *const *v, size_t nv, char *const *parent, size_t np)
{
	for (size_t i = 0; np && i + np <= nv; i++) {
		size_t k = 0;
		while (k < np && !strcmp(v[i + k], parent[k]))
			k++;
		if (k == np)
			return (long)i;
	}
	return -1;
}

/* PATH changed by the caller: where it kept its own PATH around additions, the sandbox's
 * default "$PATH" takes that place (shell code run before the command); otherwise the new value
 * is sent as is, without empty elements. */
static int plan_path(struct env_plan *p, const char *value, const char *parent, size_t *total)
{
	size_t nv, np = 0;
	char **v = path_split(value, &nv), **pv = parent ? path_split(parent, &np) : NULL;
	struct buf b;
	int rc = 0;
	buf_init(&b);
	long at = v && (pv || !parent) ? path_find(v, nv, pv, np) : -2;
	if (at == -2) {
		rc = -1;
	} else if (at < 0 && nv) {
		buf_put_bytes(&b, "PATH=", 5);
		put_joined(&b, v, 0, nv, false);
		buf_put_u8(&b, 0);
		rc = buf_ok(&b) ? add_entry(p, (char *)b.data, total) : -1;
	} else if (at >= 0 && (at > 0 || (size_t)at + np < nv)) {
		size_t after = (size_t)at + np;
		buf_put_bytes(&b, "PATH=", 5);
		if (at > 0) {
			put_joined(&b, v, 0, (size_t)at, true);
			buf_put_bytes(&b, "\"${PATH:+:$PATH}\"", 17);
		} else {
			buf_put_bytes(&b, "\"${PATH:+$PATH:}\"", 17);
		}
		if (after < nv) {
			if (at > 0)
				buf_put_bytes(&b, "':'", 3);
			put_joined(&b, v, after, nv, true);
		}
		buf_put_bytes(&b, "; export PATH; ", 16);
		rc = buf_ok(&b) && (p->path_prefix = strdup((char *)b.data)) ? 0 : -1;
	}
	buf_free(&b);
	strv_free(v);
	strv_free(pv);
	return rc;
}

/* TERM, LANG, LC_* and env_allow: always; anything else only if the caller added it. */
static int plan_one(struct env_plan *p, const char *e, const char *parent, size_t parent_len,
		    char *const *allow, size_t *total)
{
	static const char *const base[] = {"TERM", "LANG", "LC_*", NULL};
	size_t n = strcspn(e, "=");
	char name[256];
	if (e[n] != '=' || n >= sizeof(name) || !valid_name(e, n))
		return 0;
	memcpy(name, e, n);
	name[n] = 0;
	if (name_matches(name, base) || name_matches(name, (const char *const *)allow))
		return add_entry(p, e, total);
	if (!parent || name_matches(name, never_added))
		return 0;
	const char *old = blob_get(parent, parent_len, name, n);
	if (old && !strcmp(old, e + n + 1))
		return 0;
	if (!strcmp(name, "PATH"))
		return plan_path(p, e + n + 1, old, total);
	return add_entry(p, e, total);
}

int env_plan_build(struct env_plan *p, char *const *env, const char *parent, size_t parent_len,
		   char *const *allow, char *const *set, int nset)
{
	size_t count = (size_t)nset + 1, total = 0;
	for (char *const *e = env; *e; e++)
		count++;
	memset(p, 0, sizeof(*p));
	p->entries = calloc(count, sizeof(char *));
	if (!p->entries)
		return -1;
	for (char *const *e = env; *e; e++)
		if (plan_one(p, *e, parent, parent_len, allow, &total) < 0)
			return -1;
	for (int i = 0; i < nset; i++) {
		if (!strncmp(set[i], "PATH=", 5)) { /* -e PATH=... is meant literally */
			free(p->path_prefix);
			p->path_prefix = NULL;
		}
		if (add_entry(p, set[i], &total) < 0)
			return -1;
	}
	return 0;
}

void env_plan_free(struct env_plan *p)
{
	strv_free(p->entries);
	free(p->path_prefix);
	memset(p, 0, sizeof(*p));
}
