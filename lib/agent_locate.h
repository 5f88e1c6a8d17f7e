/* agent_locate.h: where the local sandmount-agent binary is, for the transports that place it in
 * a sandbox (docker_agent.c, ssh_agent.c). */
#ifndef SANDMOUNT_AGENT_LOCATE_H
#define SANDMOUNT_AGENT_LOCATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* The directory inside the workspace where a transport may place the agent as a last resort,
 * when no exec-able place outside the workspace exists; the mount never shows it. A home
 * directory that is (or is inside) the workspace is never used: the agent would show up in it. */
#define AGENT_HIDDEN_DIR ".sandmount-agent"

/* Read the agent binary: $SANDMOUNT_AGENT, else the build tree next to this program, else the
 * install locations. *data is malloc'd; path receives where it was found. 0 or -1 with e set. */
int agent_read_local(char *path, size_t path_size, uint8_t **data, size_t *size, struct err *e);
/* The name a placed copy of this binary gets: "sandmount-agent-<64-bit FNV-1a of the content>",
 * so a copy is reused only when it is byte for byte the same build. */
/* True when canonical path `path` is `dir` or lies below it (both absolute, no trailing '/'
 * except for "/" itself). */
bool agent_path_inside(const char *path, const char *dir);
void agent_content_name(const uint8_t *data, size_t size, char *out, size_t out_size);

#endif
