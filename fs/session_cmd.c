/* session_cmd.c: the session commands of a config-file sandbox.
 *   sandmount up [-f] [-d] [--session ID] [-o OPTS] NAME[:ID]  container up (created, started,
 *       setupCommand once — lib/docker/docker_create.c), then mounted at its mountpoint; a
 *       session that is up already is left as it is
 *   sandmount down [--session ID] NAME[:ID]  flush and unmount, then the container's onDown
 *   sandmount list                           the configured sandboxes, their mounts and containers
 * "{session}" in the mountpoint (and a workspace volume/hostPath) becomes the session id. */
#include "session_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "docker/docker_create.h"
#include "log.h"
#include "runtime.h"

static const char *const commands[] = {"up", "down", "list"};

bool session_cmd_is(const char *word)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(word, commands[i]))
			return true;
	return false;
}

static void usage(FILE *out)
{
	fputs("usage: sandmount up [-f] [-d] [--session ID] [-o OPT[,OPT...]] NAME[:ID]\n"
	      "       sandmount down [--session ID] NAME[:ID]\n"
	      "       sandmount list\n",
	      out);
}

struct args {
	bool foreground, debug;
	char *opts;
	const char *session;
	char *name;
};

static int parse_args(int argc, char **argv, struct args *a)
{
	static const struct option longopts[] = {{"session", required_argument, NULL, 's'},
						 {"help", no_argument, NULL, 'h'},
						 {NULL, 0, NULL, 0}};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "fdo:h", longopts, NULL)) != -1) {
		if (c == 'f') {
			a->foreground = true;
		} else if (c == 'd') {
			a->debug = true;
		} else if (c == 'o') {
			char *j = a->opts ? str_printf("%s,%s", a->opts, optarg) : xstrdup(optarg);
			free(a->opts);
			a->opts = j;
		} else if (c == 's') {
			a->session = optarg;
		} else {
			usage(c == 'h' ? stdout : stderr);
			return c == 'h' ? 0 : 2;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return 2;
	}
	/* NAME:ID (a systemd instance name) stands for NAME --session ID */
	a->name = xstrdup(argv[optind]);
	char *colon = strchr(a->name, ':');
	if (colon && !strstr(a->name, "://")) {
		*colon = 0;
		if (!a->session)
			a->session = colon + 1;
	}
	return -1;
}

static int resolve(const struct args *a, struct sandbox_cfg *cfg, char **fuse_opts)
{
	struct err e;
	if (config_resolve(a->name, a->opts, cfg, fuse_opts, &e) < 0 ||
	    config_apply_session(cfg, a->session, &e) < 0) {
		fprintf(stderr, "sandmount: %s\n", e.msg);
		return -1;
	}
	if (!cfg->mountpoint) {
		fprintf(stderr, "sandmount: %s has no \"mountpoint\" in the config\n", cfg->name);
		return -1;
	}
	return 0;
}

/* mkdir -p for the mountpoint (a {session} path is usually new). */
static int make_dirs(const char *path)
{
	char *p = xstrdup(path);
	int rc = 0;
	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s != 0)
			continue;
		char c = *s;
		*s = 0;
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			fprintf(stderr, "sandmount: mkdir %s: %s\n", p, strerror(errno));
			rc = -1;
			break;
		}
		*s = c;
		if (!c)
			break;
	}
	free(p);
	return rc;
}

/* 1 when mp is a live sandmount mount (the session is up), 0 when not. */
static int is_up(const char *mp)
{
	char real[PATH_MAX];
	struct stat st;
	return realpath(mp, real) && mounts_is_sandmount(real) == 1 && stat(real, &st) == 0;
}

static int cmd_up(const struct args *a)
{
	struct sandbox_cfg cfg;
	char *fuse_opts = NULL;
	int rc = 1;
	if (resolve(a, &cfg, &fuse_opts) < 0)
		goto out;
	struct err e;
	bool created = false;
	if (cfg.container_spec && docker_container_up(&cfg, &created, &e) < 0) {
		fprintf(stderr, "sandmount: %s: %s\n", cfg.container, e.msg);
		goto out;
	}
	if (created)
		fprintf(stderr, "sandmount: created container %s\n", cfg.container);
	if (make_dirs(cfg.mountpoint) < 0)
		goto out;
	if (is_up(cfg.mountpoint)) {
		fprintf(stderr, "sandmount: %s is up at %s already\n", cfg.name, cfg.mountpoint);
		rc = 0;
		goto out;
	}
	char mp[PATH_MAX];
	if (prepare_mountpoint(cfg.mountpoint, mp, sizeof(mp)) < 0)
		goto out;
	struct daemon_opts o = {
	    .foreground = a->foreground, .debug = a->debug, .fuse_opts = fuse_opts};
	rc = daemon_run_mount(&cfg, mp, &o);
out:
	free(fuse_opts);
	config_free(&cfg);
	return rc;
}

static int cmd_down(const struct args *a)
{
	struct sandbox_cfg cfg;
	int rc = 1;
	if (resolve(a, &cfg, NULL) < 0)
		goto out;
	char real[PATH_MAX];
	bool mounted = realpath(cfg.mountpoint, real) ? mounts_is_sandmount(real) == 1
						      : errno == ENOTCONN; /* a dead mount */
	if (mounted && cmd_unmount(cfg.mountpoint) != 0)
		goto out; /* the container stays while the mount could not be flushed */
	struct err e;
	if (docker_container_down(&cfg, &e) < 0) {
		fprintf(stderr, "sandmount: %s: %s\n", cfg.container, e.msg);
		goto out;
	}
	rc = 0;
out:
	config_free(&cfg);
	return rc;
}

/* ---- list ---- */

static void print_container(void *ctx, const char *container, const char *session,
			    const char *state)
{
	(void)ctx;
	printf("  container %s%s%s: %s\n", container, *session ? " session " : "", session, state);
}

static void list_one(const char *name)
{
	struct sandbox_cfg cfg;
	struct err e;
	if (config_resolve(name, NULL, &cfg, NULL, &e) < 0) {
		printf("%s: %s\n", name, e.msg);
		config_free(&cfg);
		return;
	}
	printf("%s -> %s%s%s%s\n", name, cfg.mountpoint ? cfg.mountpoint : "(no mountpoint)",
	       cfg.container_spec ? " (container " : "", cfg.container_spec ? cfg.container : "",
	       cfg.container_spec ? ")" : "");
	char **mps = NULL;
	int n = mounts_of_sandbox(name, &mps);
	for (int i = 0; i < n; i++) {
		char *id = cfg.mountpoint ? config_session_of(cfg.mountpoint, mps[i]) : NULL;
		struct stat st;
		printf("  mount %s%s%s: %s\n", mps[i], id && *id ? " session " : "", id ? id : "",
		       stat(mps[i], &st) == 0 ? "up" : "dead");
		free(id);
		free(mps[i]);
	}
	free(mps);
	if (cfg.container_spec && docker_container_list(&cfg, print_container, NULL, &e) < 0)
		printf("  containers: %s\n", e.msg);
	config_free(&cfg);
}

static int cmd_list(void)
{
	char *path = config_file_path();
	json_error_t je;
	json_t *root = path ? json_load_file(path, 0, &je) : NULL;
	json_t *sbs = json_object_get(root, "sandboxes");
	if (!root) {
		fprintf(stderr, "sandmount: %s\n", path ? je.text : "no config file");
		free(path);
		return 1;
	}
	const char *name;
	json_t *v;
	json_object_foreach(sbs, name, v)
	{
		(void)v;
		list_one(name);
	}
	if (!json_object_size(sbs))
		printf("no sandboxes in %s\n", path);
	json_decref(root);
	free(path);
	return 0;
}

int session_cmd_main(int argc, char **argv)
{
	const char *cmd = argv[0];
	struct args a = {0};
	if (!strcmp(cmd, "list")) {
		log_init("sandmount", LOG_WARN);
		return argc == 1 ? cmd_list() : (usage(stderr), 2);
	}
	int rc = parse_args(argc, argv, &a);
	if (rc < 0) {
		log_init("sandmount", a.debug ? LOG_DEBUG : LOG_INFO);
		rc = !strcmp(cmd, "up") ? cmd_up(&a) : cmd_down(&a);
	}
	free(a.opts);
	free(a.name);
	return rc;
}
