/* runtime.c: the per-user runtime directory (control sockets, logs) and the lookup of the
 * sandmount mount that holds a path, from /proc/self/mountinfo. */
#include "runtime.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Refuse a directory anybody else could use to plant or read our sockets. */
static int check_private_dir(const char *dir, struct err *e)
{
	struct stat st;
	if (lstat(dir, &st) < 0) {
		err_set(e, "%s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		err_set(e, "%s: not a directory", dir);
		return -1;
	}
	if (st.st_uid != getuid()) {
		err_set(e, "%s: owned by uid %u, not by us (uid %u); refusing to use it", dir,
			(unsigned)st.st_uid, (unsigned)getuid());
		return -1;
	}
	if (st.st_mode & 077) {
		err_set(e, "%s: mode %03o gives access to others; refusing to use it (chmod 700)",
			dir, (unsigned)(st.st_mode & 0777));
		return -1;
	}
	return 0;
}

static int make_private_dir(const char *dir, struct err *e)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		err_set(e, "cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	return check_private_dir(dir, e);
}

static bool xdg_runtime_usable(const char *xdg)
{
	struct stat st;
	return xdg && xdg[0] == '/' && stat(xdg, &st) == 0 && S_ISDIR(st.st_mode) &&
	       st.st_uid == getuid() && access(xdg, W_OK | X_OK) == 0;
}

int runtime_dir(char *out, size_t len, struct err *e)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;
	if (xdg_runtime_usable(xdg))
		n = snprintf(out, len, "%s/sandmount", xdg);
	else
		n = snprintf(out, len, "/tmp/sandmount-%u", (unsigned)getuid());
	if (n < 0 || (size_t)n >= len) {
		err_set(e, "runtime directory path too long");
		return -1;
	}
	return make_private_dir(out, e);
}

static uint64_t fnv1a64(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* The canonical form of a mountpoint. A mount whose daemon died fails realpath() (ENOTCONN), so
 * then canonicalize the parent and keep the last component. */
static int canonical_mountpoint(const char *path, char *out, size_t len, struct err *e)
{
	char buf[PATH_MAX];
	if (realpath(path, buf)) {
		if (strlen(buf) >= len)
			goto too_long;
		strcpy(out, buf);
		return 0;
	}
	int saved = errno;
	char *copy1 = xstrdup(path), *copy2 = xstrdup(path);
	char *base = basename(copy1);
	int r = -1;
	if (!realpath(dirname(copy2), buf) || !strcmp(base, ".") || !strcmp(base, "..") ||
	    !strcmp(base, "/"))
		err_set(e, "%s: %s", path, strerror(saved));
	else if (snprintf(out, len, "%s/%s", strcmp(buf, "/") ? buf : "", base) >= (int)len)
		err_set(e, "%s: path too long", path);
	else
		r = 0;
	free(copy1);
	free(copy2);
	return r;
too_long:
	err_set(e, "%s: path too long", path);
	return -1;
}

static int runtime_file(const char *mountpoint, const char *suffix, char *out, size_t len,
			struct err *e)
{
	char dir[PATH_MAX], canon[PATH_MAX];
	if (runtime_dir(dir, sizeof(dir), e) < 0 ||
	    canonical_mountpoint(mountpoint, canon, sizeof(canon), e) < 0)
		return -1;
	int n = snprintf(out, len, "%s/%016llx%s", dir, (unsigned long long)fnv1a64(canon), suffix);
	if (n < 0 || (size_t)n >= len) {
		err_set(e, "%s: runtime path too long", dir);
		return -1;
	}
	return 0;
}

int runtime_socket_path(const char *mountpoint, char *out, size_t len, struct err *e)
{
	return runtime_file(mountpoint, ".sock", out, len, e);
}

int runtime_log_path(const char *mountpoint, char *out, size_t len, struct err *e)
{
	return runtime_file(mountpoint, ".log", out, len, e);
}

/* Decode mountinfo's octal escapes (\040 space, \011 tab, \012 newline, \134 backslash) in
 * place. */
static void unescape_octal(char *s)
{
	char *o = s;
	for (char *c = s; *c; c++) {
		if (c[0] == '\\' && c[1] >= '0' && c[1] <= '3' && c[2] >= '0' && c[2] <= '7' &&
		    c[3] >= '0' && c[3] <= '7') {
			*o++ = (char)((c[1] - '0') << 6 | (c[2] - '0') << 3 | (c[3] - '0'));
			c += 3;
		} else {
			*o++ = *c;
		}
	}
	*o = 0;
}

/* Split one mountinfo line into its mount point, file system type and source (all point into
 * line, which is modified; source may be NULL). Returns 0, or -1 for a malformed line. */
static int parse_mountinfo_line(char *line, char **mountpoint, char **fstype, char **source)
{
	char *save = NULL;
	char *f = strtok_r(line, " ", &save);
	for (int i = 0; f && i < 4; i++) /* id, parent, major:minor, root */
		f = strtok_r(NULL, " ", &save);
	if (!f)
		return -1;
	*mountpoint = f;
	while ((f = strtok_r(NULL, " ", &save)) && strcmp(f, "-"))
		; /* mount options and optional fields, up to the separator */
	if (!f || !(*fstype = strtok_r(NULL, " ", &save)))
		return -1;
	if (source) {
		if (!(*source = strtok_r(NULL, " ", &save)))
			return -1;
		unescape_octal(*source);
	}
	unescape_octal(*mountpoint);
	return 0;
}

/* Length of the mount point prefix if mountpoint contains path, else -1. */
static long contains(const char *mountpoint, const char *path)
{
	size_t n = strlen(mountpoint);
	if (!strcmp(mountpoint, "/"))
		return 0;
	if (strncmp(mountpoint, path, n) || (path[n] != 0 && path[n] != '/'))
		return -1;
	return (long)n;
}

int mounts_find_in(const char *mountinfo, const char *path, char *mountpoint, size_t len,
		   char **rel)
{
	char *text = strdup(mountinfo);
	if (!text)
		return -1;
	/* The mount that serves path: the longest containing mount point; on a tie, the later
	 * line (mounted on top). */
	long best = -1;
	bool best_is_ours = false;
	char best_mp[PATH_MAX] = "";
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *mp, *type;
		if (parse_mountinfo_line(line, &mp, &type, NULL) < 0)
			continue;
		long n = contains(mp, path);
		if (n < 0 || n < best || strlen(mp) >= sizeof(best_mp))
			continue;
		best = n;
		best_is_ours = !strcmp(type, SANDMOUNT_FSTYPE);
		strcpy(best_mp, mp);
	}
	free(text);
	if (!best_is_ours)
		return 0;
	if (strlen(best_mp) >= len)
		return -1;
	const char *r = path + best;
	while (*r == '/')
		r++;
	char *relcopy = strdup(r);
	if (!relcopy)
		return -1;
	strcpy(mountpoint, best_mp);
	*rel = relcopy;
	return 1;
}

static char *read_mountinfo(void)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return NULL;
	char *text = NULL;
	size_t cap = 0;
	ssize_t n = getdelim(&text, &cap, 0, f); /* the whole file: it holds no NUL */
	fclose(f);
	if (n < 0) {
		free(text);
		return NULL;
	}
	return text;
}

int mounts_find(const char *path, char *mountpoint, size_t len, char **rel)
{
	char *text = read_mountinfo();
	if (!text)
		return -1;
	int r = mounts_find_in(text, path, mountpoint, len, rel);
	free(text);
	return r;
}

int mounts_is_sandmount(const char *path)
{
	char canon[PATH_MAX], mp[PATH_MAX];
	char *rel = NULL;
	if (canonical_mountpoint(path, canon, sizeof(canon), NULL) < 0)
		return 0;
	int r = mounts_find(canon, mp, sizeof(mp), &rel);
	bool is_root = r == 1 && rel[0] == 0 && !strcmp(mp, canon);
	free(rel);
	return is_root;
}

/* The sandmount mounts, all of them or those whose source is "sandmount:<sandbox>". */
static int list_mounts(const char *sandbox, char ***out)
{
	char *text = read_mountinfo();
	if (!text)
		return -1;
	char **list = NULL;
	int n = 0;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *mp, *type, *source;
		if (parse_mountinfo_line(line, &mp, &type, &source) < 0 ||
		    strcmp(type, SANDMOUNT_FSTYPE))
			continue;
		if (sandbox && (strncmp(source, "sandmount:", 10) || strcmp(source + 10, sandbox)))
			continue;
		char **grown = realloc(list, sizeof(*list) * (size_t)(n + 1));
		if (!grown)
			break;
		list = grown;
		list[n++] = xstrdup(mp);
	}
	free(text);
	*out = list;
	return n;
}

int mounts_list(char ***out)
{
	return list_mounts(NULL, out);
}

int mounts_of_sandbox(const char *sandbox, char ***out)
{
	return list_mounts(sandbox, out);
}
