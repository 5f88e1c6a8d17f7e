/* test_config.c: SANDBOX URLs, -o options and the JSON config file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"

static void test_urls(void)
{
	struct sandbox_cfg c;
	struct err e;
	CHECK(config_resolve("ssh://agent@host.example:2222/home/agent/ws", NULL, &c, NULL, &e) ==
	      0);
	CHECK(c.kind == SANDBOX_SSH && !strcmp(c.host, "host.example") && c.port == 2222);
	CHECK(!strcmp(c.user, "agent") && !strcmp(c.remote_dir, "/home/agent/ws"));
	CHECK(c.connect_timeout_s == 10 && c.op_timeout_s == 30 && !c.accept_new_host_key);
	config_free(&c);

	CHECK(config_resolve("ssh://[::1]:22/~/ws", NULL, &c, NULL, &e) == 0);
	CHECK(!strcmp(c.host, "::1") && c.port == 22 && !strcmp(c.remote_dir, "ws") && !c.user);
	config_free(&c);

	CHECK(config_resolve("ssh://host/", NULL, &c, NULL, &e) == -1);
	CHECK(strstr(e.msg, "no workspace directory") != NULL);
	config_free(&c);
	CHECK(config_resolve("ssh://host:99999/x", NULL, &c, NULL, &e) == -1);
	CHECK(strstr(e.msg, "port") != NULL);
	config_free(&c);
	CHECK(config_resolve("ssh://@:22/x", NULL, &c, NULL, &e) == -1);
	config_free(&c);

	CHECK(config_resolve("docker://c1/workspace", NULL, &c, NULL, &e) == 0);
	CHECK(c.kind == SANDBOX_DOCKER && !strcmp(c.container, "c1"));
	CHECK(!strcmp(c.remote_dir, "/workspace"));
	config_free(&c);
	CHECK(config_resolve("ftp://x/y", NULL, &c, NULL, &e) == -1);
	config_free(&c);
}

static void test_options(void)
{
	struct sandbox_cfg c;
	struct err e;
	char *fuse = NULL;
	CHECK(config_resolve("ssh://h/d",
			     "identity=/k,known_hosts=/kh\\,x,accept_new_host_key,port=2200,"
			     "cache_timeout=0.5,ro,max_read=65536",
			     &c, &fuse, &e) == 0);
	CHECK(!strcmp(c.identity, "/k") && !strcmp(c.known_hosts, "/kh,x"));
	CHECK(c.accept_new_host_key && c.port == 2200 && c.cache_timeout_s == 0.5);
	CHECK(fuse && !strcmp(fuse, "ro,max_read=65536"));
	free(fuse);
	config_free(&c);

	CHECK(config_resolve("ssh://h/d", "port=abc", &c, NULL, &e) == -1);
	CHECK(strstr(e.msg, "port") != NULL);
	config_free(&c);
	CHECK(config_resolve("ssh://h/d", "bogus", &c, NULL, &e) == -1);
	CHECK(strstr(e.msg, "unknown option 'bogus'") != NULL);
	config_free(&c);
	CHECK(config_resolve("ssh://h/d", "identity=", &c, NULL, &e) == -1);
	config_free(&c);
	CHECK(config_resolve("ssh://h/d", "StrictHostKeyChecking=accept-new", &c, NULL, &e) == 0);
	CHECK(c.accept_new_host_key);
	config_free(&c);
	CHECK(config_resolve("ssh://h/d", NULL, &c, NULL, &e) == 0 && !c.owners_real);
	config_free(&c);
	CHECK(config_resolve("ssh://h/d", "owners=real", &c, NULL, &e) == 0 && c.owners_real);
	config_free(&c);
	CHECK(config_resolve("ssh://h/d", "owners=user", &c, NULL, &e) == 0 && !c.owners_real);
	config_free(&c);
	CHECK(config_resolve("ssh://h/d", NULL, &c, NULL, &e) == 0 && c.agent_max_watches == 0);
	config_free(&c);
	CHECK(config_resolve("ssh://h/d", "agent_max_watches=5000", &c, NULL, &e) == 0 &&
	      c.agent_max_watches == 5000);
	config_free(&c);
	CHECK(config_resolve("ssh://h/d", "agent_max_watches=-1", &c, NULL, &e) == -1);
	config_free(&c);
	CHECK(config_resolve("ssh://h/d", "owners=root", &c, NULL, &e) == -1);
	CHECK(strstr(e.msg, "owners=user or owners=real") != NULL);
	config_free(&c);
	CHECK(config_resolve("ssh://h/d", NULL, &c, NULL, &e) == 0 && !c.prefetch_off);
	config_free(&c);
	CHECK(config_resolve("ssh://h/d", "prefetch=off", &c, NULL, &e) == 0 && c.prefetch_off);
	config_free(&c);
	CHECK(config_resolve("ssh://h/d", "prefetch=on", &c, NULL, &e) == 0 && !c.prefetch_off);
	config_free(&c);
	CHECK(config_resolve("ssh://h/d", "prefetch=yes", &c, NULL, &e) == -1);
	CHECK(strstr(e.msg, "prefetch=on or prefetch=off") != NULL);
	config_free(&c);
}

static char *write_config(const char *text)
{
	char *path = strdup("/tmp/sandmount-test-config-XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		abort();
	close(fd);
	setenv("SANDMOUNT_CONFIG", path, 1);
	return path;
}

static void test_config_file(void)
{
	struct sandbox_cfg c;
	struct err e;
	char *path =
	    write_config("{\"local_fallback\": true, \"env_allow\": [\"CI_*\"],\n"
			 " \"sandboxes\": {\"mox\": {\"url\": \"ssh://a@h:2022/ws\", "
			 "\"mountpoint\": \"/srv/m\",\n"
			 "   \"options\": {\"identity\": \"/id\", \"accept_new_host_key\": true, "
			 "\"op_timeout\": 5}}}}");
	CHECK(config_resolve("mox", "port=2023", &c, NULL, &e) == 0);
	CHECK(!strcmp(c.host, "h") && c.port == 2023 && !strcmp(c.mountpoint, "/srv/m"));
	CHECK(!strcmp(c.identity, "/id") && c.accept_new_host_key && c.op_timeout_s == 5);
	CHECK(c.local_fallback && c.env_allow && !strcmp(c.env_allow[0], "CI_*") &&
	      !c.env_allow[1]);
	config_free(&c);

	CHECK(config_resolve("nope", NULL, &c, NULL, &e) == -1);
	CHECK(strstr(e.msg, "no sandbox named 'nope'") != NULL);
	config_free(&c);
	unlink(path);
	free(path);

	path = write_config("{\"sandboxes\": {\"x\": {\"url\": 5}}}");
	CHECK(config_resolve("x", NULL, &c, NULL, &e) == -1);
	CHECK(strstr(e.msg, "no \"url\"") != NULL);
	config_free(&c);
	unlink(path);
	free(path);

	path = write_config("{\"sandboxes\": {\"x\": ");
	CHECK(config_resolve("x", NULL, &c, NULL, &e) == -1);
	CHECK(strstr(e.msg, "bad config JSON") != NULL);
	config_free(&c);
	config_defaults(&c);
	CHECK(config_load_global(&c, &e) == -1);
	config_free(&c);
	unlink(path);
	free(path);
	unsetenv("SANDMOUNT_CONFIG");
}

static void test_limits(void)
{
	struct sandbox_cfg c;
	struct err e;
	CHECK(config_resolve("ssh://h/d", NULL, &c, NULL, &e) == 0);
	CHECK(c.limits.max_dir_entries == LIMIT_DEF_DIR_ENTRIES && c.limits.max_name == 255);
	config_free(&c);
	CHECK(
	    config_resolve("ssh://h/d",
			   "max_dir_entries=5000,max_listing_bytes=17179869184,max_link_target=100,"
			   "sftp_server=python3 /x/s.py endless",
			   &c, NULL, &e) == 0);
	CHECK(c.limits.max_dir_entries == 5000 && c.limits.max_listing_bytes == 16ull << 30);
	CHECK(c.limits.max_link_target == 100 && c.limits.max_packet == LIMIT_DEF_PACKET);
	CHECK(c.sftp_server && !strcmp(c.sftp_server, "python3 /x/s.py endless"));
	config_free(&c);
	CHECK(config_resolve("docker://c/w", "sftp_server=/x", &c, NULL, &e) == -1);
	CHECK(strstr(e.msg, "sftp_server") != NULL);
	config_free(&c);
	const char *bad[] = {"max_dir_entries=-1", "max_name=256",
			     "max_packet=1000",	   "max_listing_bytes=17179869185",
			     "max_inflight=x",	   "max_dir_entries="};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(config_resolve("ssh://h/d", bad[i], &c, NULL, &e) == -1);
		CHECK(strstr(e.msg, "expected a whole number") != NULL);
		config_free(&c);
	}
}

int main(void)
{
	test_urls();
	test_options();
	test_limits();
	test_config_file();
	return check_done();
}
