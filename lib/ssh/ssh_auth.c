/* ssh_auth.c: open an SSH session — options from ~/.ssh/config overridden by the sandbox config,
 * TCP connect with a timeout, host key verification against known_hosts, public key
 * authentication. Every failure becomes one line that names the host and what to do. */
#include "ssh/ssh_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static int set_option(ssh_session s, enum ssh_options_e opt, const void *val, const char *what,
		      struct err *e)
{
	if (ssh_options_set(s, opt, val) == 0)
		return 0;
	err_set(e, "ssh: invalid %s: %s", what, ssh_get_error(s));
	return -1;
}

static int apply_options(ssh_session s, const struct sandbox_cfg *cfg, struct err *e)
{
	if (set_option(s, SSH_OPTIONS_HOST, cfg->host, "host", e) < 0)
		return -1;
	if (cfg->ssh_config && strcmp(cfg->ssh_config, "none") == 0) {
		int no = 0;
		if (set_option(s, SSH_OPTIONS_PROCESS_CONFIG, &no, "ssh_config", e) < 0)
			return -1;
	} else if (ssh_options_parse_config(s, cfg->ssh_config) < 0) {
		err_set(e, "ssh: cannot parse %s: %s",
			cfg->ssh_config ? cfg->ssh_config : "~/.ssh/config", ssh_get_error(s));
		return -1;
	}
	if (cfg->user && set_option(s, SSH_OPTIONS_USER, cfg->user, "user", e) < 0)
		return -1;
	if (cfg->port > 0) {
		unsigned port = (unsigned)cfg->port;
		if (set_option(s, SSH_OPTIONS_PORT, &port, "port", e) < 0)
			return -1;
	}
	/* An explicit known_hosts replaces the user file only; the system-wide file still counts,
	 * as with OpenSSH's UserKnownHostsFile. */
	if (cfg->known_hosts &&
	    set_option(s, SSH_OPTIONS_KNOWNHOSTS, cfg->known_hosts, "known_hosts", e) < 0)
		return -1;
	/* small SFTP requests and keystrokes must not wait for Nagle (40 ms per round trip) */
	int nodelay = 1;
	if (set_option(s, SSH_OPTIONS_NODELAY, &nodelay, "nodelay", e) < 0)
		return -1;
	long timeout = cfg->connect_timeout_s > 0 ? cfg->connect_timeout_s : 10;
	return set_option(s, SSH_OPTIONS_TIMEOUT, &timeout, "connect_timeout", e);
}

static void fill_peer(ssh_session s, const struct sandbox_cfg *cfg, struct ssh_peer *peer)
{
	char *v = NULL;
	unsigned port = 22;

	snprintf(peer->host, sizeof(peer->host), "%s", cfg->host);
	if (ssh_options_get(s, SSH_OPTIONS_HOST, &v) == SSH_OK) {
		snprintf(peer->host, sizeof(peer->host), "%s", v);
		ssh_string_free_char(v);
	}
	snprintf(peer->user, sizeof(peer->user), "%s", cfg->user ? cfg->user : "?");
	if (ssh_options_get(s, SSH_OPTIONS_USER, &v) == SSH_OK) {
		snprintf(peer->user, sizeof(peer->user), "%s", v);
		ssh_string_free_char(v);
	}
	if (ssh_options_get_port(s, &port) < 0)
		port = 22;
	peer->port = (int)port;
	if (port == 22)
		snprintf(peer->label, sizeof(peer->label), "%s", peer->host);
	else
		snprintf(peer->label, sizeof(peer->label), "[%s]:%u", peer->host, port);
}

/* The known_hosts file new keys go to (and the one to name in messages). */
static void known_hosts_file(ssh_session s, const struct sandbox_cfg *cfg, char *out, size_t n)
{
	char *v = NULL;
	if (ssh_options_get(s, SSH_OPTIONS_KNOWNHOSTS, &v) == SSH_OK) {
		snprintf(out, n, "%s", v);
		ssh_string_free_char(v);
		return;
	}
	snprintf(out, n, "%s", cfg->known_hosts ? cfg->known_hosts : "~/.ssh/known_hosts");
}

static void server_fingerprint(ssh_session s, char *out, size_t n)
{
	ssh_key key = NULL;
	unsigned char *hash = NULL;
	size_t hlen = 0;

	snprintf(out, n, "unknown");
	if (ssh_get_server_publickey(s, &key) < 0)
		return;
	if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) == 0) {
		char *fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
		if (fp)
			snprintf(out, n, "%s %s", ssh_key_type_to_char(ssh_key_type(key)), fp);
		ssh_string_free_char(fp);
		ssh_clean_pubkey_hash(&hash);
	}
	ssh_key_free(key);
}

static int verify_host_key(ssh_session s, const struct sandbox_cfg *cfg,
			   const struct ssh_peer *peer, struct err *e)
{
	char file[512], fp[160];

	known_hosts_file(s, cfg, file, sizeof(file));
	enum ssh_known_hosts_e state = ssh_session_is_known_server(s);
	switch (state) {
	case SSH_KNOWN_HOSTS_OK:
		return 0;
	case SSH_KNOWN_HOSTS_CHANGED:
		err_set(e,
			"host key for %s has CHANGED (possible man-in-the-middle); remove the "
			"old key from %s if the change is expected",
			peer->label, file);
		return -1;
	case SSH_KNOWN_HOSTS_OTHER:
		err_set(e,
			"host key for %s is of a different type than the one in %s (possible "
			"man-in-the-middle); remove the old key if the change is expected",
			peer->label, file);
		return -1;
	case SSH_KNOWN_HOSTS_NOT_FOUND:
	case SSH_KNOWN_HOSTS_UNKNOWN:
		server_fingerprint(s, fp, sizeof(fp));
		if (!cfg->accept_new_host_key) {
			err_set(e,
				"unknown host key for %s (fingerprint %s); add it to %s "
				"(ssh-keyscan) or mount with -o accept_new_host_key",
				peer->label, fp, file);
			return -1;
		}
		if (ssh_session_update_known_hosts(s) != SSH_OK) {
			err_set(e, "cannot add the host key of %s to %s: %s", peer->label, file,
				ssh_get_error(s));
			return -1;
		}
		log_info("added host key for %s (%s) to %s", peer->label, fp, file);
		return 0;
	case SSH_KNOWN_HOSTS_ERROR:
		break;
	}
	err_set(e, "cannot check the host key of %s against %s: %s", peer->label, file,
		ssh_get_error(s));
	return -1;
}

static int authenticate(ssh_session s, const struct sandbox_cfg *cfg, const struct ssh_peer *peer,
			struct err *e)
{
	int rc;

	if (cfg->identity) {
		ssh_key key = NULL;
		if (ssh_pki_import_privkey_file(cfg->identity, NULL, NULL, NULL, &key) != SSH_OK) {
			err_set(e,
				"cannot load identity %s (missing, unreadable, or protected by a "
				"passphrase: use ssh-agent instead)",
				cfg->identity);
			return -1;
		}
		rc = ssh_userauth_publickey(s, NULL, key);
		ssh_key_free(key);
		if (rc == SSH_AUTH_SUCCESS)
			return 0;
		err_set(e, "authentication failed for %s@%s: %s", peer->user, peer->label,
			rc == SSH_AUTH_ERROR ? ssh_get_error(s)
					     : "the server did not accept the identity key");
		return -1;
	}
	rc = ssh_userauth_publickey_auto(s, NULL, NULL);
	if (rc == SSH_AUTH_SUCCESS)
		return 0;
	err_set(e, "authentication failed for %s@%s: %s", peer->user, peer->label,
		rc == SSH_AUTH_ERROR
		    ? ssh_get_error(s)
		    : "no key from ssh-agent or ~/.ssh was accepted (set identity=FILE)");
	return -1;
}

int ssh_auth_connect(const struct sandbox_cfg *cfg, ssh_session *out, struct ssh_peer *peer,
		     struct err *e)
{
	if (!cfg->host || !*cfg->host) {
		err_set(e, "ssh: no host given");
		return -1;
	}
	ssh_session s = ssh_new();
	if (!s) {
		err_set(e, "ssh: out of memory");
		return -1;
	}
	if (apply_options(s, cfg, e) < 0)
		goto fail;
	fill_peer(s, cfg, peer);
	if (ssh_connect(s) != SSH_OK) {
		err_set(e, "cannot connect to %s port %d: %s", peer->host, peer->port,
			ssh_get_error(s));
		goto fail;
	}
	if (verify_host_key(s, cfg, peer, e) < 0 || authenticate(s, cfg, peer, e) < 0) {
		ssh_disconnect(s);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	ssh_free(s);
	return -1;
}
