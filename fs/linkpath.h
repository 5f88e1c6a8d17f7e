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

/* The target to store on the sandbox for a symlink made through the mount. mountpoint: the
 * canonical absolute local mount path; link_dir: the directory that will hold the link, relative
 * to the workspace ("" for the root); target: what the local program asked for. An absolute
 * target inside the mountpoint is stored relative to the link's directory, so it names the same
 * object on both sides (the workspace and the mount hold the same tree at different absolute
 * paths, and a container sees its workspace at yet another one); any other target is stored as
 * given. Returns a malloc'd string, or NULL when out of memory. */
char *linkpath_remote_target(const char *mountpoint, const char *link_dir, const char *target);

/* True for names that must never resolve in the mount root. */
bool linkpath_is_hidden_name(const char *name);

#endif
