/* mux_probe_watch.c: mux_probe's watch tests: each sandbox mutation is reported as the kind it
 * is (a name change, or a change inside with a directory's attributes), gone directories are
 * reported by name, and the agent's own directory is never reported. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "mux_probe.h"
#include "sftp/sftp_client.h"

static int t_watch(struct target *tg,
		   void (*cb)(void *, const char *, bool, const struct sftp_attrs *), void *ctx,
		   struct err *e)
{
	struct watch_req req = {.dir = tg->dir, .changed = cb, .ctx = ctx};
	return tg->mux ? agent_mux_watch(tg->mux, &req, e) : transport_watch(tg->t, &req, e);
}

/* One report: the name changed (CHANGED), or only what it refers to (CHANGED_INSIDE), with a
 * directory's attributes. */
struct report {
	char *path;
	bool inside, have_attrs;
	struct sftp_attrs attrs;
};

struct seen {
	pthread_mutex_t lock;
	struct report r[4096];
	int n;
	int overflows;
};

static void on_change(void *ctx, const char *path, bool inside, const struct sftp_attrs *attrs)
{
	struct seen *s = ctx;
	pthread_mutex_lock(&s->lock);
	if (!path) {
		s->overflows++;
	} else if (s->n < 4096) {
		struct report *r = &s->r[s->n++];
		*r = (struct report){.path = strdup(path), .inside = inside, .have_attrs = !!attrs};
		if (attrs)
			r->attrs = *attrs;
	}
	pthread_mutex_unlock(&s->lock);
}

static void seen_reset(struct seen *s)
{
	pthread_mutex_lock(&s->lock);
	for (int k = 0; k < s->n; k++)
		free(s->r[k].path);
	s->n = 0;
	pthread_mutex_unlock(&s->lock);
}

enum kind { NAME, INSIDE };

/* The last report of rel (relative to dir; "" = dir) of that kind, copied to *out. */
static bool last_report(struct seen *s, const char *dir, const char *rel, enum kind kind,
			struct report *out)
{
	char want[4200];
	snprintf(want, sizeof(want), "%s%s%s", dir, *rel ? "/" : "", rel);
	bool found = false;
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < s->n; i++) {
		if (!strcmp(s->r[i].path, want) && s->r[i].inside == (kind == INSIDE)) {
			*out = s->r[i];
			found = true;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return found;
}

/* Whether rel was reported as kind when the command's wait returned (no waiting: the agent
 * sends a command's changes before its exit, and wait() returns only once they were
 * delivered). */
static bool saw(struct seen *s, const char *dir, const char *rel, enum kind kind)
{
	struct report r;
	if (last_report(s, dir, rel, kind, &r))
		return true;
	fprintf(stderr, "watch: no %s report for %s/%s when the command's wait returned\n",
		kind == NAME ? "CHANGED" : "CHANGED_INSIDE", dir, rel);
	return false;
}

/* Reported as CHANGED_INSIDE, with attributes that match what stat(1) says in the sandbox now
 * (a directory's and a file's alike; a file's size too). */
static bool saw_inside(struct target *tg, struct seen *s, const char *rel)
{
	struct report r = {0};
	if (!last_report(s, tg->dir, rel, INSIDE, &r)) {
		fprintf(stderr, "watch: no CHANGED_INSIDE report for %s/%s\n", tg->dir, rel);
		return false;
	}
	if (!r.have_attrs) {
		fprintf(stderr, "watch: %s/%s reported without attributes\n", tg->dir, rel);
		return false;
	}
	char cmd[4300];
	snprintf(cmd, sizeof(cmd), "stat -c '%%i %%h %%Y %%f %%s' './%s'", rel);
	struct buf out;
	buf_init(&out);
	struct err e;
	unsigned long long ino = 0, nlink = 0, mtime = 0, size = 0;
	unsigned mode = 0;
	bool ok = run(tg, cmd, NULL, 0, &out, NULL, &e) == 0;
	buf_put_u8(&out, 0);
	ok = ok && sscanf((char *)out.data, "%llu %llu %llu %x %llu", &ino, &nlink, &mtime, &mode,
			  &size) == 5;
	buf_free(&out);
	const struct sftp_attrs *a = &r.attrs;
	uint32_t need =
	    SFTP_ATTR_PERM | SFTP_ATTR_DEVINO | SFTP_ATTR_NLINK | SFTP_ATTR_NSTIME | SFTP_ATTR_SIZE;
	bool match = ok && (a->flags & need) == need && a->perm == mode && a->ino == ino &&
		     a->nlink == nlink && (uint64_t)a->mtim.tv_sec == mtime &&
		     (!S_ISREG(a->perm) || a->size == size);
	if (!match)
		fprintf(stderr,
			"watch: %s/%s attributes: ino %llu nlink %llu mtime %lld mode %o, but stat "
			"says ino %llu nlink %llu mtime %llu mode %o\n",
			tg->dir, rel, (unsigned long long)a->ino, (unsigned long long)a->nlink,
			(long long)a->mtim.tv_sec, a->perm, ino, nlink, mtime, mode);
	return match;
}

/* No report for rel at all (kind < 0) or none of that kind. */
static bool not_reported(struct seen *s, const char *dir, const char *rel, int kind)
{
	struct report r;
	for (int k = NAME; k <= INSIDE; k++) {
		if ((kind < 0 || kind == k) && last_report(s, dir, rel, k, &r)) {
			fprintf(stderr, "watch: unexpected %s report for %s/%s\n",
				k == NAME ? "CHANGED" : "CHANGED_INSIDE", dir, rel);
			return false;
		}
	}
	return true;
}

/* Whether any report names the agent's hidden directory. */
static bool saw_hidden(struct seen *s)
{
	bool hidden = false;
	pthread_mutex_lock(&s->lock);
	for (int k = 0; k < s->n; k++)
		hidden |= strstr(s->r[k].path, ".sandmount-agent") != NULL;
	pthread_mutex_unlock(&s->lock);
	return hidden;
}

/* Run one step of the watch test, its reports collected in s. */
static void watch_step(struct target *tg, struct seen *s, const char *cmd)
{
	struct err e;
	seen_reset(s);
	CHECK(run(tg, cmd, NULL, 0, NULL, NULL, &e) == 0);
	CHECK(last_coherent);
}

/* A directory changed inside, then gone (its parent moved away) before the report was sent: its
 * name is reported. The agent stats it when it sends the report, so both must happen within one
 * report: when they did not (its attributes came along), the step is tried again. */
static void test_watch_vanished(struct target *tg, struct seen *s)
{
	const char *d = tg->dir;
	struct report r;
	struct err e;
	for (int attempt = 0; attempt < 5; attempt++) {
		CHECK(run(tg, "rm -rf v1 v2 && mkdir -p v1/a/b", NULL, 0, NULL, NULL, &e) == 0);
		watch_step(tg, s, "echo z > v1/a/b/z && mv v1/a v1/gone");
		if (last_report(s, d, "v1/a/b", INSIDE, &r) && r.have_attrs)
			continue; /* reported before the move */
		CHECK(saw(s, d, "v1/a/b", NAME) && not_reported(s, d, "v1/a/b", INSIDE));
		CHECK(saw(s, d, "v1/a", NAME) && saw(s, d, "v1/gone/b/z", NAME));
		run(tg, "rm -rf v1", NULL, 0, NULL, NULL, &e);
		return;
	}
	CHECK(!"a change and a move within one report in 5 attempts");
}

void test_watch(struct target *tg)
{
	static struct seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct err e;
	const char *d = tg->dir;
	if (t_watch(tg, on_change, &s, &e) < 0) {
		fprintf(stderr, "watch: %s\n", e.msg);
		CHECK(!"watch started");
		return;
	}
	/* New directories: every name below them is a name change. */
	watch_step(tg, &s, "mkdir -p w1/w2/w3 && echo x > w1/w2/w3/f");
	CHECK(saw(&s, d, "w1", NAME) && saw(&s, d, "w1/w2", NAME) && saw(&s, d, "w1/w2/w3", NAME) &&
	      saw(&s, d, "w1/w2/w3/f", NAME));
	CHECK(saw_inside(tg, &s, ""));
	/* A file created in a directory: its name; the directory's entries, with its stat. */
	watch_step(tg, &s, "echo n > w1/w2/w3/n");
	CHECK(saw(&s, d, "w1/w2/w3/n", NAME));
	CHECK(saw_inside(tg, &s, "w1/w2/w3"));
	CHECK(not_reported(&s, d, "w1/w2/w3", NAME) && not_reported(&s, d, "w1/w2", -1));
	/* Data written to a file: only inside it, without attributes; its directory is untouched.
	 */
	watch_step(tg, &s, "echo more >> w1/w2/w3/f");
	CHECK(saw_inside(tg, &s, "w1/w2/w3/f"));
	CHECK(not_reported(&s, d, "w1/w2/w3/f", NAME) && not_reported(&s, d, "w1/w2/w3", -1));
	/* Attributes of a file, of a directory (an event on the watched directory itself). */
	watch_step(tg, &s, "chmod 600 w1/w2/w3/f && chmod 700 w1/w2");
	CHECK(saw_inside(tg, &s, "w1/w2/w3/f") && saw_inside(tg, &s, "w1/w2"));
	CHECK(not_reported(&s, d, "w1/w2/w3/f", NAME) && not_reported(&s, d, "w1/w2", NAME));
	/* A rename: both names. */
	watch_step(tg, &s, "mv w1/w2/w3/f w1/w2/w3/g");
	CHECK(saw(&s, d, "w1/w2/w3/f", NAME) && saw(&s, d, "w1/w2/w3/g", NAME));
	CHECK(saw_inside(tg, &s, "w1/w2/w3"));
	/* A directory moved: both names, and every name below the new one. */
	watch_step(tg, &s, "mv w1/w2 w1/moved && echo y > w1/moved/w3/h");
	CHECK(saw(&s, d, "w1/w2", NAME) && saw(&s, d, "w1/moved", NAME) &&
	      saw(&s, d, "w1/moved/w3", NAME) && saw(&s, d, "w1/moved/w3/g", NAME) &&
	      saw(&s, d, "w1/moved/w3/n", NAME) && saw(&s, d, "w1/moved/w3/h", NAME));
	CHECK(saw_inside(tg, &s, "w1"));
	watch_step(tg, &s, "rm w1/moved/w3/g");
	CHECK(saw(&s, d, "w1/moved/w3/g", NAME) && saw_inside(tg, &s, "w1/moved/w3"));
	test_watch_vanished(tg, &s);
	watch_step(tg, &s, "mkdir -p .sandmount-agent && touch .sandmount-agent/hidden");
	usleep(100000);
	CHECK(!saw_hidden(&s));
	watch_step(tg, &s, "rm -r w1");
	CHECK(saw(&s, d, "w1", NAME) && saw_inside(tg, &s, ""));
	run(tg, "rm -rf .sandmount-agent", NULL, 0, NULL, NULL, &e);
	seen_reset(&s);
	printf("watch: names changed vs. only inside (directories with their stat), in new nested "
	       "dirs, delivered before each command's wait returned (coherent exits), hidden dir "
	       "skipped, %d overflows\n",
	       s.overflows);
}

void watch_check_counts(int *passed, int *failed)
{
	*passed = check_passed;
	*failed = check_failed;
}
