/* docker_create.h: the life cycle of a container that the config file describes (OpenClaw's
 * sandbox.docker keys; config_container.c) — what `sandmount up`, `down` and `list` do to it
 * through the Engine API. cfg->container is its name, cfg->container_spec its description. */
#ifndef SANDMOUNT_DOCKER_CREATE_H
#define SANDMOUNT_DOCKER_CREATE_H

#include <stdbool.h>

#include "config.h"
#include "util.h"

/* Labels put on a created container. */
#define DOCKER_LABEL_SANDBOX "sandmount.sandbox"
#define DOCKER_LABEL_SESSION "sandmount.session"
#define DOCKER_LABEL_SETUP   "sandmount.setup"

/* Make the container exist and run: create it (then start it and run setupCommand once — a
 * container whose setup failed is removed, so the next `up` runs it again) when missing, start or
 * unpause it when it is not running. *created tells whether it was made now. Returns with no
 * thread or connection left (callers fork next). 0 or -1 with e set. */
int docker_container_up(const struct sandbox_cfg *cfg, bool *created, struct err *e);

/* Apply cfg->on_down to the container: stop it, remove it (its volumes are kept), or keep it
 * running. A missing container is not an error. 0 or -1 with e set. */
int docker_container_down(const struct sandbox_cfg *cfg, struct err *e);

/* Called for each container of sandbox cfg->name (by label) on its Docker host. */
typedef void (*docker_container_cb)(void *ctx, const char *container, const char *session,
				    const char *state);
int docker_container_list(const struct sandbox_cfg *cfg, docker_container_cb cb, void *ctx,
			  struct err *e);

#endif
