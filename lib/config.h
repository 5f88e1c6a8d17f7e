/* config.h: what a sandbox is and how to reach it — parsed from a SANDBOX argument (a URL or a
 * name from the JSON config file) plus -o options. Knows nothing of FUSE or of the wire. */
#ifndef SANDMOUNT_CONFIG_H
#define SANDMOUNT_CONFIG_H

#include <stdbool.h>
#include "mount_limits.h"
#include "util.h"

enum sandbox_kind { SANDBOX_SSH, SANDBOX_DOCKER };
/* What `sandmount down` does with a container the config describes (config_container.c). */
enum on_down { ON_DOWN_STOP, ON_DOWN_REMOVE, ON_DOWN_KEEP };

struct sandbox_cfg {
	char *name; /* config name, or the URL as given */
	enum sandbox_kind kind;
	char *remote_dir; /* the workspace directory on the sandbox (absolute) */
	char *mountpoint; /* from the config file, may be NULL */

	/* ssh */
	char *host;
	char *user;		  /* NULL: from ~/.ssh/config or the local user name */
	int port;		  /* 0: from ~/.ssh/config or 22 */
	char *identity;		  /* private key file; NULL: ssh-agent and default keys */
	char *known_hosts;	  /* NULL: ~/.ssh/known_hosts */
	char *ssh_config;	  /* NULL: ~/.ssh/config; "none" to skip */
	bool accept_new_host_key; /* add an unknown (never a changed) host key */
	char *sftp_server;	  /* sftp_server=: run this command for SFTP, not the subsystem */

	/* docker */
	char *container;
	char *docker_host;
	char *docker_context;
	char *agent_dir; /* agent_dir=: where to place sandmount-agent in the container */
	bool agent_off;	 /* agent=off: serve files with the image's sftp-server */
	bool agent_on;	 /* agent=on: use sandmount-agent or fail (default auto: fall back) */

	/* behaviour */
	int connect_timeout_s; /* default 10 */
	int keepalive_s;       /* default 15: probe interval; dead after 3 missed */
	int op_timeout_s;      /* default 30: a file op waits at most this long, then EIO */
	double
	    cache_timeout_s; /* default 2: attr/entry TTL when the sandbox cannot notify changes */
	int agent_max_watches; /* agent_max_watches=N: directories the agent watches (0: the
				  kernel's max_user_watches is the bound) */
	bool allow_other;
	bool owners_real;    /* owners=real: show and set the sandbox's numeric uid/gid */
	bool prefetch_off;   /* prefetch=off: no read-ahead of a directory's small files */
	bool local_fallback; /* sandexec outside every mount runs locally (config file only) */
	char **env_allow;    /* NULL-terminated glob patterns of host variables sandexec forwards */
	struct mount_limits limits; /* bounds on what the sandbox sends (mount_limits.h) */

	/* sessions (config_container.c) */
	char *container_spec; /* {"docker": {...}, "workspace": {...}|null} as JSON text: the config
				 describes the container (sandmount up creates it); NULL: none */
	char *session;	      /* the session id given to up/down (already substituted), or NULL */
	enum on_down on_down; /* default stop */
};

/* Fill cfg from SANDBOX (URL or config name) and a comma-separated -o list (may be NULL).
 * Options unknown to sandmount are appended to *fuse_opts (malloc'd, comma-separated, may stay
 * NULL) when fuse_opts is non-NULL, else rejected. Returns 0 or -1 with e set. */
int config_resolve(const char *sandbox, const char *opts, struct sandbox_cfg *cfg, char **fuse_opts,
		   struct err *e);
/* Apply one comma-separated option list on top of cfg (same rules as above). */
int config_apply_options(struct sandbox_cfg *cfg, const char *opts, char **fuse_opts,
			 struct err *e);
/* The config file path in use: $SANDMOUNT_CONFIG, ~/.config/sandmount/config.json,
 * /etc/sandmount/config.json — the first that exists; NULL if none. malloc'd. */
char *config_file_path(void);
/* Global settings from the config file (local_fallback, env_allow) for sandexec. */
int config_load_global(struct sandbox_cfg *cfg, struct err *e);
void config_defaults(struct sandbox_cfg *cfg);

/* config_container.c. Parse the session keys of a config-file sandbox object (a json_t *):
 * "docker", "host", "workspace", "onDown". A "docker" block makes it a docker sandbox whose
 * container is <containerPrefix><name>. 0 or -1 with e set naming the key. */
int config_container_parse(struct sandbox_cfg *cfg, void *sandbox_json, const char *path,
			   struct err *e);
/* Apply a session id (NULL: none): "{session}" in the mountpoint is replaced, and a described
 * container's name gets "-<id>". A mountpoint with {session} and no id is an error. */
int config_apply_session(struct sandbox_cfg *cfg, const char *session, struct err *e);
/* s with "{session}" replaced by session ("" for NULL); malloc'd. */
char *config_session_substitute(const char *s, const char *session);
/* The session id of mount point mp under a mountpoint pattern with {session} ("" when the
 * pattern has none and is mp itself); NULL if mp is not one of its mountpoints. malloc'd. */
char *config_session_of(const char *pattern, const char *mp);
/* "512m", "1g", "1024" (bytes; b/k/m/g, optional trailing b): 0 and *out (may be NULL) or -1. */
int config_parse_size(const char *s, long long *out);
void config_free(struct sandbox_cfg *cfg);

#endif
