/* test_config_container.c: the session keys of the config file (config_container.c) — the
 * docker block's types, the derived container name and workdir, {session}, sizes, the session
 * of a mount point. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"

/* Write text as the config file ($SANDMOUNT_CONFIG) and resolve `name` from it. */
static int resolve_with(const char *text, const char *name, struct sandbox_cfg *c, struct err *e)
{
	char path[] = "/tmp/sm-test-cc-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		return -2;
	close(fd);
	setenv("SANDMOUNT_CONFIG", path, 1);
	int rc = config_resolve(name, NULL, c, NULL, e);
	unlink(path);
	unsetenv("SANDMOUNT_CONFIG");
	return rc;
}

static void test_sizes(void)
{
	long long n = 0;
	CHECK(config_parse_size("512m", &n) == 0 && n == 512LL << 20);
	CHECK(config_parse_size("1g", &n) == 0 && n == 1LL << 30);
	CHECK(config_parse_size("2GB", &n) == 0 && n == 2LL << 30);
	CHECK(config_parse_size("1024", &n) == 0 && n == 1024);
	CHECK(config_parse_size("10b", &n) == 0 && n == 10);
	CHECK(config_parse_size("lots", NULL) == -1);
	CHECK(config_parse_size("5x", NULL) == -1);
	CHECK(config_parse_size("-1", NULL) == -1);
	CHECK(config_parse_size("1mbb", NULL) == -1);
	CHECK(config_parse_size("99999999999999999999g", NULL) == -1);
}

static void test_docker_block(void)
{
	struct sandbox_cfg c;
	struct err e;
	CHECK(resolve_with(
		  "{\"sandboxes\": {\"mox\": {\"docker\": {\"image\": \"img\", "
		  "\"containerPrefix\": \"oc-\", \"workdir\": \"/ws\", \"memory\": \"1g\", "
		  "\"tmpfs\": [\"/tmp:noexec\"], \"env\": {\"A\": \"b\"}, \"ulimits\": "
		  "{\"nofile\": {\"soft\": 1, \"hard\": 2}, \"nproc\": 5}}, "
		  "\"host\": \"ssh://ops@ct342\", \"workspace\": {\"volume\": \"v-{session}\"},"
		  " \"mountpoint\": \"/srv/{session}/x\", \"onDown\": \"remove\"}}}",
		  "mox", &c, &e) == 0);
	CHECK(c.kind == SANDBOX_DOCKER && !strcmp(c.container, "oc-mox"));
	CHECK(!strcmp(c.remote_dir, "/ws") && !strcmp(c.docker_host, "ssh://ops@ct342"));
	CHECK(c.on_down == ON_DOWN_REMOVE && c.container_spec && strstr(c.container_spec, "img"));
	CHECK(config_apply_session(&c, NULL, &e) == -1 && strstr(e.msg, "--session"));
	CHECK(config_apply_session(&c, "../x", &e) == -1);
	CHECK(config_apply_session(&c, "s1", &e) == 0);
	CHECK(!strcmp(c.mountpoint, "/srv/s1/x") && !strcmp(c.container, "oc-mox-s1"));
	CHECK(!strcmp(c.session, "s1"));
	config_free(&c);

	static const struct {
		const char *block, *error;
	} bad[] = {
	    {"{\"image\": 1}", "docker.image must be a string"},
	    {"{\"image\": \"i\", \"pidsLimit\": \"x\"}", "docker.pidsLimit must be a whole number"},
	    {"{\"image\": \"i\", \"capDrop\": [1]}", "docker.capDrop must be an array of strings"},
	    {"{\"image\": \"i\", \"memory\": \"lots\"}", "docker.memory must be a size"},
	    {"{\"image\": \"i\", \"cpus\": -1}", "docker.cpus must be a number"},
	    {"{\"image\": \"i\", \"readOnlyRoot\": \"yes\"}", "docker.readOnlyRoot must be true"},
	    {"{\"image\": \"i\", \"ulimits\": {\"n\": {\"soft\": 1}}}", "docker.ulimits must be"},
	    {"{\"image\": \"i\", \"bogus\": 1}", "unknown key docker.bogus"},
	    {"{\"image\": \"i\", \"workdir\": \"rel\"}", "docker.workdir must be an absolute"},
	    {"{}", "docker.image (a string) is required"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *text = str_printf("{\"sandboxes\": {\"b\": {\"docker\": %s}}}", bad[i].block);
		CHECK(resolve_with(text, "b", &c, &e) == -1 && strstr(e.msg, bad[i].error));
		if (!strstr(e.msg, bad[i].error))
			fprintf(stderr, "  got: %s\n", e.msg);
		config_free(&c);
		free(text);
	}
	CHECK(resolve_with("{\"sandboxes\": {\"b\": {\"docker\": {\"image\": \"i\"}, "
			   "\"workspace\": {\"volume\": 3}}}}",
			   "b", &c, &e) == -1 &&
	      strstr(e.msg, "\"workspace\" must be"));
	config_free(&c);
	CHECK(resolve_with("{\"sandboxes\": {\"b\": {\"docker\": {\"image\": \"i\"}, "
			   "\"onDown\": \"explode\"}}}",
			   "b", &c, &e) == -1 &&
	      strstr(e.msg, "\"onDown\" must be"));
	config_free(&c);
	/* a plain URL sandbox: no session keys, a session only fills the mountpoint */
	CHECK(resolve_with("{\"sandboxes\": {\"u\": {\"url\": \"docker://c/w\", \"mountpoint\": "
			   "\"/m/{session}\"}}}",
			   "u", &c, &e) == 0);
	CHECK(!c.container_spec && config_apply_session(&c, "a", &e) == 0);
	CHECK(!strcmp(c.mountpoint, "/m/a") && !strcmp(c.container, "c"));
	config_free(&c);
}

/* The session of a live mount point under a mountpoint pattern (sandmount list, --check). */
static void test_session_of(void)
{
	char *id;
	CHECK((id = config_session_of("/srv/kit/{session}", "/srv/kit/s42")) && !strcmp(id, "s42"));
	free(id);
	CHECK((id = config_session_of("/srv/{session}/ws", "/srv/a/ws")) && !strcmp(id, "a"));
	free(id);
	CHECK((id = config_session_of("/srv/mox", "/srv/mox")) && !strcmp(id, ""));
	free(id);
	CHECK(!config_session_of("/srv/mox", "/srv/mox2"));
	CHECK(!config_session_of("/srv/kit/{session}", "/srv/kit/"));
	CHECK(!config_session_of("/srv/kit/{session}", "/srv/kit/a/b"));
	CHECK(!config_session_of("/srv/kit/{session}", "/srv/kat/a"));
	CHECK(!config_session_of("/srv/{session}/ws", "/srv/a/ws2"));
}

int main(void)
{
	test_sizes();
	test_docker_block();
	test_session_of();
	return check_done();
}
