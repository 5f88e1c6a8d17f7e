/* linkpath.h: symlink containment (docs/design.md, decision 7). The kernel resolves our symlinks
 * locally, so every target shown must stay inside the mount: pure lexical logic, no I/O. */
#ifndef SANDMOUNT_LINKPATH_H
#define SANDMOUNT_LINKPATH_H

#include <stdbool.h>

/* The name, in the mount root, that targets leaving the workspace point to. It never exists:
 * lookups of names starting with it in the root fail with ENOENT. */
#define LINKPATH_OUTSIDE ".sandmount-outside-workspace"

/* The target to show for a remote symlink. root: the canonical absolute workspace path; alias:
 * another absolute path of it or NULL; link_dir: the directory holding the link, relative to
 * the workspace ("" for the root, "a/b" otherwise); target: what the remote link says.
 * Returns a malloc'd relative path whose ".." components are all leading and never climb above
 * the root, or NULL when out of memory. */
char *linkpath_local_target(const char *root, const char *alias, const char *link_dir,
			    const char *target);

/* True for names that must never resolve in the mount root. */
bool linkpath_is_hidden_name(const char *name);

#endif
