/* transport.c: picks the backend for a sandbox; the only code that names backends. */
#include "transport.h"

int transport_open(const struct sandbox_cfg *cfg, struct transport **out, struct err *e)
{
	switch (cfg->kind) {
	case SANDBOX_SSH:
		return ssh_transport_open(cfg, out, e);
	case SANDBOX_DOCKER:
		return docker_transport_open(cfg, out, e);
	}
	err_set(e, "%s: unknown sandbox kind", cfg->name);
	return -1;
}
