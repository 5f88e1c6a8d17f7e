/* test_inode.c: the inode table — stable numbers, paths by walking parents, rename, removal,
 * type changes, lookup counts, the page-cache rule, the barrier's list and stale marks. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "inode.h"

static int path_is(struct inode_table *t, uint64_t ino, bool parent_only, const char *want)
{
	char *p = NULL;
	int r = inode_path(t, ino, parent_only, &p);
	int ok = r == 0 && strcmp(p, want) == 0;
	if (!ok)
		fprintf(stderr, "path of %llu: r=%d '%s', want '%s'\n", (unsigned long long)ino, r,
			p ? p : "", want);
	free(p);
	return ok;
}

static void test_numbers_and_paths(void)
{
	struct inode_table *t = inode_table_new();
	CHECK(path_is(t, INODE_ROOT, false, ""));
	uint64_t d = inode_enter(t, INODE_ROOT, "d", S_IFDIR, 1, 10);
	uint64_t f = inode_enter(t, d, "f", S_IFREG, 1, 10);
	CHECK(d > INODE_ROOT && f > d);
	CHECK(inode_enter(t, INODE_ROOT, "d", S_IFDIR, 1, 10) == d);
	CHECK(path_is(t, f, false, "d/f"));
	CHECK(path_is(t, f, true, "d"));
	CHECK(path_is(t, d, true, ""));
	char *p;
	CHECK(inode_path(t, INODE_ROOT, true, &p) == -ENOENT);
	CHECK(inode_path(t, 999, false, &p) == -ENOENT);
	CHECK(inode_parent(t, f) == d);
	CHECK(inode_type(t, f) == S_IFREG);
	CHECK(inode_table_count(t) == 3);

	/* Forgotten by the kernel, still the same number for the same path. */
	inode_forget(t, f, 2);
	inode_forget(t, d, 2);
	CHECK(inode_enter(t, INODE_ROOT, "d", S_IFDIR, 1, 10) == d);
	CHECK(inode_enter(t, d, "f", S_IFREG, 0, 10) == f);
	inode_forget(t, INODE_ROOT, 5); /* the root is never forgotten */
	CHECK(path_is(t, INODE_ROOT, false, ""));
	inode_table_free(t);
}

static void test_rename(void)
{
	struct inode_table *t = inode_table_new();
	uint64_t a = inode_enter(t, INODE_ROOT, "a", S_IFDIR, 1, 0);
	uint64_t b = inode_enter(t, INODE_ROOT, "b", S_IFDIR, 1, 0);
	uint64_t f = inode_enter(t, a, "f", S_IFREG, 1, 0);
	uint64_t g = inode_enter(t, b, "g", S_IFREG, 1, 0);

	CHECK(inode_rename(t, a, "f", b, "g") == 0); /* over an existing name */
	CHECK(path_is(t, f, false, "b/g"));
	CHECK(inode_enter(t, b, "g", S_IFREG, 0, 0) == f);
	char *p;
	CHECK(inode_path(t, g, false, &p) == -ENOENT); /* lost its name, kept until forgotten */
	CHECK(inode_table_count(t) == 5);
	inode_forget(t, g, 1);
	CHECK(inode_table_count(t) == 4);

	/* A directory moves with its children. */
	CHECK(inode_rename(t, INODE_ROOT, "b", a, "b2") == 0);
	CHECK(path_is(t, f, false, "a/b2/g"));
	CHECK(inode_enter(t, INODE_ROOT, "b", S_IFDIR, 0, 0) != b);
	CHECK(inode_rename(t, INODE_ROOT, "missing", INODE_ROOT, "x") == 0);
	inode_table_free(t);
}

static void test_remove_and_type_change(void)
{
	struct inode_table *t = inode_table_new();
	uint64_t f = inode_enter(t, INODE_ROOT, "f", S_IFREG, 1, 0);
	uint64_t d = inode_enter(t, INODE_ROOT, "f", S_IFDIR, 1, 0);
	CHECK(d != f); /* a file replaced by a directory gets a new number */
	CHECK(path_is(t, d, false, "f"));
	char *p;
	CHECK(inode_path(t, f, false, &p) == -ENOENT);

	inode_remove(t, INODE_ROOT, "f");
	CHECK(inode_path(t, d, false, &p) == -ENOENT);
	uint64_t d2 = inode_enter(t, INODE_ROOT, "f", S_IFDIR, 1, 0);
	CHECK(d2 != d && d2 != f);
	inode_forget(t, f, 1);
	inode_forget(t, d, 1);
	CHECK(inode_table_count(t) == 2);

	/* Removed while nobody holds it: gone at once. */
	uint64_t g = inode_enter(t, INODE_ROOT, "g", S_IFREG, 0, 0);
	CHECK(g != 0 && inode_table_count(t) == 3);
	inode_remove(t, INODE_ROOT, "g");
	CHECK(inode_table_count(t) == 2);
	inode_table_free(t);
}

static void test_open_rule(void)
{
	struct inode_table *t = inode_table_new();
	uint64_t f = inode_enter(t, INODE_ROOT, "f", S_IFREG, 1, 0);
	struct sftp_attrs a = {
	    .flags = SFTP_ATTR_SIZE | SFTP_ATTR_ACMODTIME, .size = 10, .mtime = 100};
	CHECK(!inode_open_unchanged(t, f, &a)); /* first open */
	CHECK(inode_open_unchanged(t, f, &a));
	a.size = 11;
	CHECK(!inode_open_unchanged(t, f, &a));
	a.mtime = 101;
	CHECK(!inode_open_unchanged(t, f, &a));
	CHECK(inode_open_unchanged(t, f, &a));
	/* With nanoseconds (the agent), a change within the same second counts. */
	a.flags |= SFTP_ATTR_NSTIME;
	a.mtim = (struct timespec){101, 5};
	CHECK(!inode_open_unchanged(t, f, &a));
	CHECK(inode_open_unchanged(t, f, &a));
	a.mtim.tv_nsec = 6;
	CHECK(!inode_open_unchanged(t, f, &a));
	CHECK(!inode_open_unchanged(t, 12345, &a));
	inode_table_free(t);
}

/* What the kernel holds of a size: noted at replies, raised by writes, never lowered by them. */
static void test_shown_size(void)
{
	struct inode_table *t = inode_table_new();
	uint64_t f = inode_enter(t, INODE_ROOT, "f", S_IFREG, 1, 0);
	struct sftp_attrs a = {
	    .flags = SFTP_ATTR_SIZE | SFTP_ATTR_ACMODTIME, .size = 10, .mtime = 100};
	uint64_t size = 0;
	CHECK(!inode_shown_size(t, f, &size)); /* nothing handed out yet */
	CHECK(inode_shown_compare(t, f, &a) == INODE_SHOWN_OTHER_SIZE);
	inode_note_written(t, f, 50); /* unknown stays unknown */
	CHECK(!inode_shown_size(t, f, &size));
	inode_note_shown(t, f, &a, INODE_MARK_ANY);
	CHECK(inode_shown_compare(t, f, &a) == INODE_SHOWN_SAME);
	CHECK(inode_shown_size(t, f, &size) && size == 10);
	inode_note_written(t, f, 4); /* inside: the kernel keeps its size */
	CHECK(inode_shown_size(t, f, &size) && size == 10);
	inode_note_written(t, f, 30);
	CHECK(inode_shown_size(t, f, &size) && size == 30);
	CHECK(inode_shown_compare(t, f, &a) == INODE_SHOWN_OTHER_SIZE); /* the sandbox shrank it */
	a.size = 30;
	CHECK(inode_shown_compare(t, f, &a) == INODE_SHOWN_SAME);
	a.mtime = 101;
	CHECK(inode_shown_compare(t, f, &a) == INODE_SHOWN_OTHER_MTIME);
	/* an invalidation does not change what the kernel holds */
	inode_mark_stale(t, f);
	inode_mark_all_stale(t);
	CHECK(inode_shown_size(t, f, &size) && size == 30);
	CHECK(inode_shown_compare(t, 12345, &a) == INODE_SHOWN_OTHER_SIZE);
	inode_table_free(t);
}

/* The kernel drops a getattr reply an invalidation crossed. A size from a reply it always
 * applies survives invalidations; a reply that changed the size does not; a reply asked before
 * an invalidation that would change the size leaves it unknown; a write past both settles it. */
static void test_doubted_shown_size(void)
{
	struct inode_table *t = inode_table_new();
	uint64_t f = inode_enter(t, INODE_ROOT, "f", S_IFREG, 1, 0);
	struct sftp_attrs a = {.flags = SFTP_ATTR_SIZE, .size = 10};
	uint64_t size = 0;
	inode_note_shown(t, f, &a, INODE_MARK_ANY);
	uint64_t before = inode_await_shown(t, f, NULL); /* a getattr begins */
	inode_doubt_shown(t, f); /* e.g. the report of our own write: the size stays known */
	CHECK(inode_shown_size(t, f, &size) && size == 10);
	inode_note_shown(t, f, &a, before); /* the same size: crossed or not, nothing changes */
	CHECK(inode_shown_size(t, f, &size) && size == 10);
	a.size = 99;
	inode_note_shown(t, f, &a, before); /* another size, crossed: the kernel holds 10 or 99 */
	CHECK(!inode_shown_size(t, f, &size));
	CHECK(inode_shown_compare(t, f, &a) == INODE_SHOWN_OTHER_SIZE);
	uint64_t after = inode_await_shown(t, f, NULL);
	inode_note_shown(t, f, &a, after); /* noted, not settled: the kernel may still drop it */
	CHECK(!inode_shown_size(t, f, &size));
	CHECK(inode_shown_compare(t, f, &a) == INODE_SHOWN_OTHER_SIZE);
	inode_show_settle(t, f, after); /* a show's stat completed: settled */
	CHECK(inode_shown_size(t, f, &size) && size == 99);
	CHECK(inode_shown_compare(t, f, &a) == INODE_SHOWN_SAME);
	a.size = 98;
	inode_note_shown(t, f, &a, after);
	inode_doubt_shown(t, f);	/* that reply may be dropped by this invalidation */
	inode_show_settle(t, f, after); /* a show the invalidation crossed settles nothing */
	CHECK(!inode_shown_size(t, f, &size));
	a.size = 50;
	inode_note_shown(t, f, &a, inode_await_shown(t, f, NULL));
	inode_note_written(t, f, 60); /* from unknown: a write does not settle it */
	inode_doubt_shown(t, f);
	CHECK(!inode_shown_size(t, f, &size));
	a.size = 100;
	inode_note_shown(t, f, &a, INODE_MARK_ANY);
	a.size = 120;
	inode_note_shown(t, f, &a, inode_await_shown(t, f, NULL)); /* 100 or 120 */
	inode_note_written(t, f, 130);				   /* past both: 130 */
	inode_doubt_shown(t, f);
	CHECK(inode_shown_size(t, f, &size) && size == 130);
	/* a show in progress: a wait ends at its deadline, and at once after the show ended */
	inode_show_begin(t, f);
	CHECK(inode_showing(t, f));
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_nsec += 20 * 1000000;
	if (dl.tv_nsec >= 1000000000) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000;
	}
	inode_await_shown(t, f, &dl);
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	CHECK(now.tv_sec > dl.tv_sec || (now.tv_sec == dl.tv_sec && now.tv_nsec >= dl.tv_nsec));
	inode_show_end(t, f);
	CHECK(!inode_showing(t, f));
	inode_show_end(t, f); /* unbalanced: stays at 0 */
	CHECK(!inode_showing(t, f));
	inode_table_free(t);
}

static void test_cached_since(void)
{
	struct inode_table *t = inode_table_new();
	uint64_t a = inode_enter(t, INODE_ROOT, "a", S_IFREG, 1, 100);
	uint64_t b = inode_enter(t, INODE_ROOT, "b", S_IFREG, 1, 200);
	inode_enter(t, INODE_ROOT, "c", S_IFREG, 0, 300); /* never handed to the kernel */
	inode_touch(t, INODE_ROOT, 250);
	struct inode_cached *v;
	long n = inode_cached_since(t, 150, &v);
	CHECK(n == 2);
	bool saw_b = false, saw_root = false;
	for (long i = 0; i < n; i++) {
		if (v[i].ino == b)
			saw_b = v[i].parent == INODE_ROOT && strcmp(v[i].name, "b") == 0;
		if (v[i].ino == INODE_ROOT)
			saw_root = v[i].parent == 0 && v[i].name == NULL;
		CHECK(v[i].ino != a);
	}
	CHECK(saw_b && saw_root);
	inode_cached_free(v, n);
	inode_table_free(t);
}

static void test_many(void)
{
	struct inode_table *t = inode_table_new();
	enum { N = 20000 };
	static uint64_t ino[N];
	char name[32];
	uint64_t dir = inode_enter(t, INODE_ROOT, "dir", S_IFDIR, 1, 0);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "file-%d", i);
		ino[i] = inode_enter(t, dir, name, S_IFREG, 1, 0);
	}
	int same = 0;
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "file-%d", i);
		same += inode_enter(t, dir, name, S_IFREG, 0, 0) == ino[i];
	}
	CHECK(same == N);
	CHECK(inode_table_count(t) == N + 2);
	CHECK(path_is(t, ino[N - 1], false, "dir/file-19999"));
	inode_table_free(t);
}

/* st_ino from the remote (dev, ino): the remote number on the first device, shared by hard
 * links, kept across renames; numbers of their own (never clashing) on other devices. */
static void test_remote_numbers(void)
{
	struct inode_table *t = inode_table_new();
	CHECK(inode_number(t, 0x803, 1234) == 1234);
	CHECK(inode_number(t, 0x803, 1234) == 1234); /* a second name of the same file */
	CHECK(inode_number(t, 0x803, 99) == 99);
	uint64_t other = inode_number(t, 0x900, 1234);
	CHECK(other != 1234 && other != 99 && other != 0);
	CHECK(inode_number(t, 0x900, 1234) == other);
	uint64_t other2 = inode_number(t, 0x900, 1235);
	CHECK(other2 != other && other2 != 1235);
	/* A first-device number in the range kept for other devices is mapped too. */
	uint64_t high = inode_number(t, 0x803, 1ull << 63);
	CHECK(high != other && high != other2);
	CHECK(inode_number(t, 0x803, 1ull << 63) == high);
	inode_table_free(t);
}

/* A directory just made is unchanged since seq unless a mark reached it, a barrier came, or a
 * report came from below an unknown name in its parent; marks elsewhere do not count. */
static void test_new_dir_unchanged(void)
{
	struct inode_table *t = inode_table_new();
	uint64_t p = inode_enter(t, INODE_ROOT, "p", S_IFDIR, 1, 0);
	uint64_t other = inode_enter(t, INODE_ROOT, "other", S_IFDIR, 1, 0);
	uint64_t seq = inode_stale_seq(t);
	inode_mark_stale(t, other);		  /* e.g. the echo of an earlier mkdir */
	inode_mark_listing_stale(t, p, false);	  /* a name in p changed (its own echo) */
	inode_mark_listing_stale(t, other, true); /* below an unknown name elsewhere */
	uint64_t d = inode_enter(t, p, "d", S_IFDIR, 1, 0);
	CHECK(inode_new_dir_unchanged(t, p, d, seq));
	CHECK(!inode_new_dir_unchanged(t, p, 9999, seq)); /* unknown directory */
	inode_mark_listing_stale(t, d, false);
	CHECK(!inode_new_dir_unchanged(t, p, d, seq));
	seq = inode_stale_seq(t);
	CHECK(inode_new_dir_unchanged(t, p, d, seq));
	inode_mark_stale(t, d);
	CHECK(!inode_new_dir_unchanged(t, p, d, seq));
	seq = inode_stale_seq(t);
	inode_mark_listing_stale(t, p, true); /* "p/d/x" before d was known */
	CHECK(!inode_new_dir_unchanged(t, p, d, seq));
	seq = inode_stale_seq(t);
	inode_mark_all_stale(t);
	CHECK(!inode_new_dir_unchanged(t, p, d, seq));
	CHECK(inode_new_dir_unchanged(t, p, d, inode_stale_seq(t)));
	inode_table_free(t);
}

int main(void)
{
	test_remote_numbers();
	test_numbers_and_paths();
	test_rename();
	test_remove_and_type_change();
	test_open_rule();
	test_shown_size();
	test_doubted_shown_size();
	test_cached_since();
	test_many();
	test_new_dir_unchanged();
	return check_done();
}
