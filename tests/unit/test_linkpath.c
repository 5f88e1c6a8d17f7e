/* test_linkpath.c: symlink containment — what a remote symlink shows locally, for targets
 * inside and outside the workspace, absolute and relative, at depths 0 to 3 — and what a symlink
 * made through the mount stores on the sandbox. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "linkpath.h"

#define ROOT  "/home/u/ws"
#define ALIAS "/srv/link-to-ws/"
#define OUT   LINKPATH_OUTSIDE

static int expect_line;

/* Compare the shown target with `want`; print both when they differ. */
static int shows(const char *dir, const char *target, const char *want)
{
	char *got = linkpath_local_target(ROOT, ALIAS, dir, target);
	int ok = got && strcmp(got, want) == 0;
	if (!ok)
		fprintf(stderr, "line %d: dir '%s' target '%s': got '%s', want '%s'\n", expect_line,
			dir, target, got ? got : "(null)", want);
	free(got);
	return ok;
}

#define SHOWS(dir, target, want)                                                                   \
	do {                                                                                       \
		expect_line = __LINE__;                                                            \
		CHECK(shows(dir, target, want));                                                   \
	} while (0)

static void test_relative_inside(void)
{
	SHOWS("", "a", "a");
	SHOWS("", "./a/./b", "a/b");
	SHOWS("", "a//b", "a/b");
	SHOWS("", "a/../b", "b");
	SHOWS("d", "../a", "../a");
	SHOWS("d", "x/../../a", "../a");
	SHOWS("d1/d2", "../../a/b", "../../a/b");
	SHOWS("d1/d2", "../x", "../x");
	SHOWS("d1/d2", "../../d1/d2/f", "f"); /* every ".." leading, none needless */
	SHOWS("d1/d2/d3", "../../../z", "../../../z");
	SHOWS("d1/d2/d3", "../../x/../../y", "../../../y");
	SHOWS("d1/d2/d3", "./f", "f");
}

static void test_relative_outside(void)
{
	SHOWS("", "..", OUT);
	SHOWS("", "../ws/a", OUT); /* leaves, even if it would come back */
	SHOWS("d", "../../x", "../" OUT);
	SHOWS("d1/d2", "../../../etc/passwd", "../../" OUT);
	SHOWS("d1/d2/d3", "../../../..", "../../../" OUT);
	SHOWS("d1/d2/d3", "a/../../../../../x", "../../../" OUT);
}

static void test_absolute(void)
{
	SHOWS("", "/etc/passwd", OUT);
	SHOWS("d", "/etc/passwd", "../" OUT);
	SHOWS("d1/d2/d3", "/", "../../../" OUT);
	SHOWS("", "/home/u/ws/a", "a");
	SHOWS("", "/home/u/ws2/a", OUT); /* a prefix of a name is not the root */
	SHOWS("", "/home/u", OUT);
	SHOWS("d1", "/home/u/ws/d1/f", "f");
	SHOWS("d1/d2", "/home/u/ws/x/y", "../../x/y");
	SHOWS("d1/d2", "//home//u/./ws/x", "../../x");
	SHOWS("d1", "/home/u/ws/../ws/d1/f", "f");
	SHOWS("d1", "/home/u/other/../ws/f", "../f");
	SHOWS("", "/../home/u/ws/f", "f"); /* ".." at "/" stays at "/" */
}

static void test_root_itself(void)
{
	SHOWS("", "/home/u/ws", ".");
	SHOWS("", ".", ".");
	SHOWS("d", "..", "..");
	SHOWS("d1/d2", "/home/u/ws", "../..");
	SHOWS("d1/d2/d3", "../../..", "../../..");
	SHOWS("d1", ".", ".");
}

static void test_alias(void)
{
	SHOWS("", "/srv/link-to-ws", ".");
	SHOWS("", "/srv/link-to-ws/a/b", "a/b");
	SHOWS("d1/d2", "/srv/link-to-ws/", "../../");
	SHOWS("d1", "/srv/link-to-ws/d1/x", "x");
	SHOWS("d1", "/srv/link-to-wsx/d1/x", "../" OUT);
	SHOWS("", "/srv", OUT);
}

static void test_trailing_slash(void)
{
	SHOWS("", "a/", "a/");
	SHOWS("d", "../", "../");
	SHOWS("d", "/home/u/ws/e/", "../e/");
	SHOWS("d", "./", "./");
	SHOWS("d", "../../", "../" OUT);
}

static void test_odd_targets(void)
{
	SHOWS("", "", OUT);
	SHOWS("d", "", "../" OUT);
	SHOWS("", "name with spaces/\xc3\xa9", "name with spaces/\xc3\xa9");
	SHOWS("", "a\nb", "a\nb");
	SHOWS("", "...", "...");
	SHOWS("d", "..x", "..x");
}

static void test_root_is_slash(void)
{
	char *s = linkpath_local_target("/", NULL, "a/b", "/etc/passwd");
	CHECK(s && strcmp(s, "../../etc/passwd") == 0);
	free(s);
	s = linkpath_local_target("/", NULL, "", "../../x");
	CHECK(s && strcmp(s, OUT) == 0);
	free(s);
	s = linkpath_local_target("/ws/", "relative/alias", "", "/ws/f");
	CHECK(s && strcmp(s, "f") == 0);
	free(s);
}

#define MP "/srv/agents/mox"

/* What a symlink made through the mount stores; and that it shows back the same through it. */
static int stores(const char *dir, const char *target, const char *want)
{
	char *got = linkpath_remote_target(MP, dir, target);
	char *back = got ? linkpath_local_target(ROOT, NULL, dir, got) : NULL;
	int ok = got && strcmp(got, want) == 0 && back && (got[0] == '/' || strcmp(back, got) == 0);
	if (!ok)
		fprintf(
		    stderr, "line %d: dir '%s' target '%s': stored '%s' (shown '%s'), want '%s'\n",
		    expect_line, dir, target, got ? got : "(null)", back ? back : "(null)", want);
	free(got);
	free(back);
	return ok;
}

#define STORES(dir, target, want)                                                                  \
	do {                                                                                       \
		expect_line = __LINE__;                                                            \
		CHECK(stores(dir, target, want));                                                  \
	} while (0)

static void test_made_through_mount(void)
{
	STORES("", MP "/x", "x");
	STORES("d", MP "/x", "../x");
	STORES("d1/d2", MP "/d1/d2/f", "f");
	STORES("d1/d2", MP "/d1/e/f", "../e/f");
	STORES("", MP, ".");
	STORES("d", MP, "..");
	STORES("d", MP "/", "../");
	STORES("d", MP "/e/", "../e/");
	STORES("", "//srv/agents/./mox//a/../b", "b"); /* normalized lexically */
	STORES("", MP "/../mox/b", "b");
	/* Not inside the mountpoint: stored as given. */
	STORES("", "/srv/agents/moxy/x", "/srv/agents/moxy/x");
	STORES("", "/srv/agents", "/srv/agents");
	STORES("", MP "/../other", MP "/../other");
	STORES("", "/etc/passwd", "/etc/passwd");
	STORES("d", "x", "x");
	STORES("d", "../y", "../y");
	char *s = linkpath_remote_target("", "", "/a/b");
	CHECK(s && strcmp(s, "/a/b") == 0); /* mountpoint unknown */
	free(s);
}

static void test_hidden_name(void)
{
	CHECK(linkpath_is_hidden_name(OUT));
	CHECK(linkpath_is_hidden_name(OUT "-2"));
	CHECK(!linkpath_is_hidden_name(".sandmount"));
	CHECK(linkpath_is_hidden_name(".sandmount-agent"));
	CHECK(!linkpath_is_hidden_name(".sandmount-agent2"));
	CHECK(!linkpath_is_hidden_name("a" OUT));
}

int main(void)
{
	test_relative_inside();
	test_relative_outside();
	test_absolute();
	test_root_itself();
	test_alias();
	test_trailing_slash();
	test_odd_targets();
	test_root_is_slash();
	test_made_through_mount();
	test_hidden_name();
	return check_done();
}
