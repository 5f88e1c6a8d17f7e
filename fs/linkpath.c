/* linkpath.c: symlink containment (docs/design.md, decision 7). Remote targets are normalized
 * lexically and rewritten relative to the link's directory; targets that would leave the workspace
 * point to a name in the mount root that never exists. The other direction: a link made through
 * the mount with an absolute target inside the mountpoint is stored relative, so it resolves to
 * the same file on the sandbox and through the mount. */
#include "linkpath.h"

#include "agent_locate.h"

#include <stdlib.h>
#include <string.h>

/* A path split into components; the strings point into `store`. */
struct parts {
	char *store;
	const char **v;
	size_t n, cap;
};

static void parts_free(struct parts *p)
{
	free(p->store);
	free(p->v);
	memset(p, 0, sizeof(*p));
}

static int parts_push(struct parts *p, const char *s)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		const char **v = realloc(p->v, cap * sizeof(*v));
		if (!v)
			return -1;
		p->v = v;
		p->cap = cap;
	}
	p->v[p->n++] = s;
	return 0;
}

enum norm_result { NORM_OK, NORM_ESCAPED, NORM_NOMEM };

/* Append the components of `path` to `p`, resolving "." and ".." lexically. A ".." with nothing
 * left to pop stays at "/" when `at_root_stays` (absolute paths), else the path escaped. */
static enum norm_result parts_add(struct parts *p, char *path, bool at_root_stays)
{
	char *save = NULL;
	for (char *c = strtok_r(path, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (strcmp(c, ".") == 0)
			continue;
		if (strcmp(c, "..") == 0) {
			if (p->n > 0)
				p->n--;
			else if (!at_root_stays)
				return NORM_ESCAPED;
			continue;
		}
		if (parts_push(p, c) < 0)
			return NORM_NOMEM;
	}
	return NORM_OK;
}

/* Components of an absolute path, normalized. */
static enum norm_result parts_of_absolute(struct parts *p, const char *path)
{
	memset(p, 0, sizeof(*p));
	p->store = strdup(path);
	if (!p->store)
		return NORM_NOMEM;
	return parts_add(p, p->store, true);
}

static bool parts_has_prefix(const struct parts *p, const struct parts *prefix)
{
	if (prefix->n > p->n)
		return false;
	for (size_t i = 0; i < prefix->n; i++)
		if (strcmp(p->v[i], prefix->v[i]) != 0)
			return false;
	return true;
}

/* If absolute path `t` lies in the workspace known as `base`, drop the base components. */
static bool strip_base(struct parts *t, const char *base)
{
	if (!base || base[0] != '/')
		return false;
	struct parts b;
	bool inside = parts_of_absolute(&b, base) == NORM_OK && parts_has_prefix(t, &b);
	if (inside) {
		memmove(t->v, t->v + b.n, (t->n - b.n) * sizeof(*t->v));
		t->n -= b.n;
	}
	parts_free(&b);
	return inside;
}

static char *outside_target(size_t depth)
{
	size_t len = depth * 3 + sizeof(LINKPATH_OUTSIDE);
	char *s = malloc(len);
	if (!s)
		return NULL;
	s[0] = '\0';
	for (size_t i = 0; i < depth; i++)
		strcat(s, "../");
	strcat(s, LINKPATH_OUTSIDE);
	return s;
}

/* The relative path from directory `from` to `to` (both workspace components). */
static char *relative_path(const struct parts *from, const struct parts *to, bool trailing_slash)
{
	size_t common = 0;
	while (common < from->n && common < to->n && strcmp(from->v[common], to->v[common]) == 0)
		common++;
	size_t ups = from->n - common;
	size_t len = ups * 3 + 3;
	for (size_t i = common; i < to->n; i++)
		len += strlen(to->v[i]) + 1;
	char *s = malloc(len);
	if (!s)
		return NULL;
	char *w = s;
	for (size_t i = 0; i < ups; i++)
		w = stpcpy(w, i ? "/.." : "..");
	for (size_t i = common; i < to->n; i++) {
		if (w != s)
			*w++ = '/';
		w = stpcpy(w, to->v[i]);
	}
	if (w == s)
		*w++ = '.';
	if (trailing_slash)
		*w++ = '/';
	*w = '\0';
	return s;
}

char *linkpath_local_target(const char *root, const char *alias, const char *link_dir,
			    const char *target)
{
	struct parts dir = {0}, t = {0};
	char *out = NULL;
	bool escaped = false;

	dir.store = strdup(link_dir);
	t.store = strdup(target);
	if (!dir.store || !t.store)
		goto done;
	if (parts_add(&dir, dir.store, false) != NORM_OK)
		goto done;

	enum norm_result r = NORM_OK;
	if (target[0] == '/') {
		r = parts_add(&t, t.store, true);
		if (r == NORM_OK && !strip_base(&t, root) && !strip_base(&t, alias))
			escaped = true;
	} else {
		/* Relative: resolve from the link's directory; climbing above the root escapes. */
		for (size_t i = 0; i < dir.n && r == NORM_OK; i++)
			if (parts_push(&t, dir.v[i]) < 0)
				r = NORM_NOMEM;
		if (r == NORM_OK)
			r = parts_add(&t, t.store, false);
		escaped = r == NORM_ESCAPED;
	}
	if (r == NORM_NOMEM)
		goto done;
	if (escaped || target[0] == '\0') {
		out = outside_target(dir.n);
		goto done;
	}
	size_t tl = strlen(target);
	out = relative_path(&dir, &t, tl > 1 && target[tl - 1] == '/');
done:
	parts_free(&dir);
	parts_free(&t);
	return out;
}

char *linkpath_remote_target(const char *mountpoint, const char *link_dir, const char *target)
{
	struct parts dir = {0}, t = {0};
	char *out = NULL;
	bool inside = false;
	if (target[0] == '/' && mountpoint && mountpoint[0] == '/') {
		dir.store = strdup(link_dir);
		if (!dir.store || parts_add(&dir, dir.store, false) != NORM_OK ||
		    parts_of_absolute(&t, target) != NORM_OK)
			goto done;
		inside = strip_base(&t, mountpoint);
	}
	if (inside) {
		size_t tl = strlen(target);
		out = relative_path(&dir, &t, tl > 1 && target[tl - 1] == '/');
	} else {
		out = strdup(target);
	}
done:
	parts_free(&dir);
	parts_free(&t);
	return out;
}

bool linkpath_is_hidden_name(const char *name)
{
	/* The containment target, and the directory the Docker backend may place the agent in
	 * (docs/design.md, decision 3: it never shows through the mount). */
	return strncmp(name, LINKPATH_OUTSIDE, sizeof(LINKPATH_OUTSIDE) - 1) == 0 ||
	       strcmp(name, AGENT_HIDDEN_DIR) == 0;
}
