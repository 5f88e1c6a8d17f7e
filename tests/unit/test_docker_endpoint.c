/* test_docker_endpoint.c: endpoint resolution as the docker CLI does it — options, DOCKER_HOST,
 * DOCKER_CONTEXT, config.json's currentContext with meta.json and TLS files, DOCKER_TLS_VERIFY —
 * on a temporary DOCKER_CONFIG directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "docker/docker_endpoint.h"

static char cfgdir[] = "/tmp/test-docker-endpoint-XXXXXX";

static void write_file(const char *rel, const char *text)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", cfgdir, rel);
	for (char *s = path + strlen(cfgdir) + 1; (s = strchr(s, '/')); s++) {
		*s = 0;
		mkdir(path, 0700);
		*s = '/';
	}
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

static void clean_env(void)
{
	unsetenv("DOCKER_HOST");
	unsetenv("DOCKER_CONTEXT");
	unsetenv("DOCKER_TLS_VERIFY");
	unsetenv("DOCKER_TLS");
	unsetenv("DOCKER_CERT_PATH");
	setenv("DOCKER_CONFIG", cfgdir, 1);
}

static void test_default(void)
{
	struct docker_endpoint ep;
	struct err e;
	clean_env();
	CHECK(docker_endpoint_resolve(NULL, NULL, &ep, &e) == 0);
	CHECK(!strcmp(ep.host, "unix:///var/run/docker.sock"));
	CHECK(!strcmp(ep.socket_path, "/var/run/docker.sock"));
	CHECK(!strcmp(ep.url_base, "http://localhost") && !ep.tls && !ep.context);
	docker_endpoint_free(&ep);

	setenv("DOCKER_HOST", "tcp://10.0.0.1", 1);
	CHECK(docker_endpoint_resolve(NULL, NULL, &ep, &e) == 0);
	CHECK(!strcmp(ep.url_base, "http://10.0.0.1:2375") && !ep.socket_path && !ep.tls);
	docker_endpoint_free(&ep);

	setenv("DOCKER_TLS_VERIFY", "1", 1);
	setenv("DOCKER_CERT_PATH", cfgdir, 1);
	write_file("ca.pem", "x");
	CHECK(docker_endpoint_resolve(NULL, NULL, &ep, &e) == 0);
	CHECK(!strcmp(ep.url_base, "https://10.0.0.1:2376") && ep.tls && ep.tls_verify);
	CHECK(ep.ca_file && strstr(ep.ca_file, "/ca.pem") && !ep.cert_file);
	docker_endpoint_free(&ep);

	/* the option beats the environment */
	CHECK(docker_endpoint_resolve("tcp://[::1]:9999", NULL, &ep, &e) == 0);
	CHECK(!strcmp(ep.url_base, "https://[::1]:9999"));
	docker_endpoint_free(&ep);
	CHECK(docker_endpoint_resolve("unix:///run/d.sock", NULL, &ep, &e) == 0);
	CHECK(!strcmp(ep.socket_path, "/run/d.sock") && !ep.tls);
	docker_endpoint_free(&ep);

	CHECK(docker_endpoint_resolve("/var/run/docker.sock", NULL, &ep, &e) == -1);
	CHECK(strstr(e.msg, "unsupported address") != NULL);
	CHECK(docker_endpoint_resolve("unix://", NULL, &ep, &e) == -1);
	CHECK(docker_endpoint_resolve("unix:///a", "ctx", &ep, &e) == -1);
	CHECK(strstr(e.msg, "cannot be used together") != NULL);
}

/* ssh://[USER@]HOST[:PORT][/PATH]: the remote default socket unless a path is given */
static void test_ssh(void)
{
	struct docker_endpoint ep;
	struct err e;
	clean_env();
	CHECK(docker_endpoint_resolve("ssh://ops@gpu-box", NULL, &ep, &e) == 0);
	CHECK(!strcmp(ep.host, "ssh://ops@gpu-box") && !ep.socket_path && !ep.tls);
	CHECK(!strcmp(ep.ssh_user, "ops") && !strcmp(ep.ssh_host, "gpu-box") && ep.ssh_port == 0);
	CHECK(!strcmp(ep.remote_socket, "/var/run/docker.sock"));
	docker_endpoint_free(&ep);

	CHECK(docker_endpoint_resolve("ssh://gpu-box:2222/run/user/1000/docker.sock", NULL, &ep,
				      &e) == 0);
	CHECK(!ep.ssh_user && !strcmp(ep.ssh_host, "gpu-box") && ep.ssh_port == 2222);
	CHECK(!strcmp(ep.remote_socket, "/run/user/1000/docker.sock"));
	docker_endpoint_free(&ep);

	CHECK(docker_endpoint_resolve("ssh://a@b@[::1]:22/", NULL, &ep, &e) == 0);
	CHECK(!strcmp(ep.ssh_user, "a@b") && !strcmp(ep.ssh_host, "::1") && ep.ssh_port == 22);
	CHECK(!strcmp(ep.remote_socket, "/var/run/docker.sock"));
	docker_endpoint_free(&ep);

	setenv("DOCKER_HOST", "ssh://me@h", 1);
	CHECK(docker_endpoint_resolve(NULL, NULL, &ep, &e) == 0);
	CHECK(!strcmp(ep.ssh_host, "h") && !strcmp(ep.ssh_user, "me"));
	docker_endpoint_free(&ep);
	unsetenv("DOCKER_HOST");

	CHECK(docker_endpoint_resolve("ssh://", NULL, &ep, &e) == -1);
	CHECK(strstr(e.msg, "no host name") != NULL);
	CHECK(docker_endpoint_resolve("ssh://@h", NULL, &ep, &e) == -1);
	CHECK(docker_endpoint_resolve("ssh://h:0", NULL, &ep, &e) == -1);
	CHECK(docker_endpoint_resolve("ssh://h:22x", NULL, &ep, &e) == -1);
	CHECK(strstr(e.msg, "invalid port") != NULL);
	CHECK(docker_endpoint_resolve("ssh://h/s.sock?x=1", NULL, &ep, &e) == -1);
	CHECK(strstr(e.msg, "query") != NULL);
}

static void test_contexts(void)
{
	struct docker_endpoint ep;
	struct err e;
	clean_env();
	/* the directory name is sha256(name) for the CLI; we find contexts by their Name */
	write_file("contexts/meta/aaaa/meta.json",
		   "{\"Name\":\"remote\",\"Metadata\":{},\"Endpoints\":{\"docker\":"
		   "{\"Host\":\"tcp://docker.example:2376\",\"SkipTLSVerify\":false}}}");
	write_file("contexts/tls/aaaa/docker/ca.pem", "x");
	write_file("contexts/tls/aaaa/docker/cert.pem", "x");
	write_file("contexts/tls/aaaa/docker/key.pem", "x");
	write_file(
	    "contexts/meta/bbbb/meta.json",
	    "{\"Name\":\"local\",\"Endpoints\":{\"docker\":{\"Host\":\"unix:///srv/d.sock\"}}}");
	write_file("contexts/meta/cccc/meta.json",
		   "{\"Name\":\"insecure\",\"Endpoints\":{\"docker\":"
		   "{\"Host\":\"tcp://h:1234\",\"SkipTLSVerify\":true}}}");
	write_file("contexts/meta/dddd/meta.json",
		   "{\"Name\":\"plain\",\"Endpoints\":{\"docker\":{\"Host\":\"tcp://h:2375\"}}}");
	write_file("contexts/meta/eeee/meta.json",
		   "{\"Name\":\"over-ssh\",\"Endpoints\":{\"docker\":"
		   "{\"Host\":\"ssh://ops@remote:2200\",\"SkipTLSVerify\":false}}}");

	/* currentContext from config.json */
	write_file("config.json", "{\"auths\":{},\"currentContext\":\"local\"}");
	CHECK(docker_endpoint_resolve(NULL, NULL, &ep, &e) == 0);
	CHECK(!strcmp(ep.socket_path, "/srv/d.sock") && ep.context && !strcmp(ep.context, "local"));
	docker_endpoint_free(&ep);

	/* DOCKER_CONTEXT beats currentContext */
	setenv("DOCKER_CONTEXT", "remote", 1);
	CHECK(docker_endpoint_resolve(NULL, NULL, &ep, &e) == 0);
	CHECK(!strcmp(ep.url_base, "https://docker.example:2376") && ep.tls && ep.tls_verify);
	CHECK(ep.ca_file && strstr(ep.ca_file, "contexts/tls/aaaa/docker/ca.pem"));
	CHECK(ep.cert_file && ep.key_file);
	docker_endpoint_free(&ep);

	/* DOCKER_HOST beats DOCKER_CONTEXT */
	setenv("DOCKER_HOST", "unix:///x.sock", 1);
	CHECK(docker_endpoint_resolve(NULL, NULL, &ep, &e) == 0);
	CHECK(!strcmp(ep.socket_path, "/x.sock") && !ep.context);
	docker_endpoint_free(&ep);

	/* docker_context= beats everything */
	CHECK(docker_endpoint_resolve(NULL, "insecure", &ep, &e) == 0);
	CHECK(ep.tls && !ep.tls_verify && !strcmp(ep.url_base, "https://h:1234"));
	docker_endpoint_free(&ep);
	CHECK(docker_endpoint_resolve(NULL, "plain", &ep, &e) == 0);
	CHECK(!ep.tls && !strcmp(ep.url_base, "http://h:2375"));
	docker_endpoint_free(&ep);
	CHECK(docker_endpoint_resolve(NULL, "default", &ep, &e) == 0);
	CHECK(!strcmp(ep.socket_path, "/x.sock"));
	docker_endpoint_free(&ep);

	CHECK(docker_endpoint_resolve(NULL, "over-ssh", &ep, &e) == 0);
	CHECK(!ep.tls && !strcmp(ep.ssh_host, "remote") && ep.ssh_port == 2200);
	CHECK(!strcmp(ep.ssh_user, "ops") && !strcmp(ep.context, "over-ssh"));
	CHECK(!strcmp(ep.remote_socket, "/var/run/docker.sock"));
	docker_endpoint_free(&ep);

	CHECK(docker_endpoint_resolve(NULL, "nope", &ep, &e) == -1);
	CHECK(strstr(e.msg, "\"nope\" does not exist") != NULL);

	/* a dangling currentContext is an error, as in the CLI */
	clean_env();
	write_file("config.json", "{\"currentContext\":\"gone\"}");
	CHECK(docker_endpoint_resolve(NULL, NULL, &ep, &e) == -1);
	write_file("config.json", "not json");
	CHECK(docker_endpoint_resolve(NULL, NULL, &ep, &e) == 0);
	CHECK(!strcmp(ep.socket_path, "/var/run/docker.sock"));
	docker_endpoint_free(&ep);
}

int main(void)
{
	if (!mkdtemp(cfgdir))
		return 1;
	test_default();
	test_ssh();
	test_contexts();
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cfgdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", cfgdir);
	return check_done();
}
