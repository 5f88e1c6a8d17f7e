/* runtime.h: where a mount's daemon keeps its control socket and log, and how a process finds
 * the sandmount mount that holds a path (from /proc/self/mountinfo). */
#ifndef SANDMOUNT_RUNTIME_H
#define SANDMOUNT_RUNTIME_H

#include <stddef.h>
#include "util.h"

#define SANDMOUNT_FSTYPE "fuse.sandmount"

/* $XDG_RUNTIME_DIR/sandmount or /tmp/sandmount-UID, created 0700 and checked to be ours. */
int runtime_dir(char *out, size_t len, struct err *e);
/* <runtime dir>/<hash of the canonical mountpoint>.sock / .log */
int runtime_socket_path(const char *mountpoint, char *out, size_t len, struct err *e);
int runtime_log_path(const char *mountpoint, char *out, size_t len, struct err *e);

/* The innermost mount of type fuse.sandmount that contains the absolute canonical path.
 * Returns 1 and fills mountpoint (and *rel, malloc'd, "" for the root, no leading '/'),
 * 0 if none, -1 on error. */
int mounts_find(const char *path, char *mountpoint, size_t len, char **rel);
/* The same lookup on a given mountinfo text (for tests). A mount of another type on top of or
 * inside a sandmount mount hides it: the mount that actually serves path decides. */
int mounts_find_in(const char *mountinfo, const char *path, char *mountpoint, size_t len,
		   char **rel);
/* All mount points of type fuse.sandmount: *out is a malloc'd array of malloc'd paths.
 * Returns the count, or -1 if /proc/self/mountinfo cannot be read. */
int mounts_list(char ***out);
/* The same for the mounts of one sandbox (the SANDBOX argument sandmount was given: a config
 * name or a URL; commas in it read as '_'). */
int mounts_of_sandbox(const char *sandbox, char ***out);
/* 1 if path is itself a mount point of type fuse.sandmount, 0 if not. */
int mounts_is_sandmount(const char *path);

#endif
