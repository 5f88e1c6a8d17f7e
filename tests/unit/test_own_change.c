/* test_own_change.c: the table of directories with a change of ours in flight (fs/own_change.c):
 * a report waits only while a change is in flight, the newest report is the one handed back
 * when the last change ends, untracked directories are not deferred, and a full table tracks
 * nothing more. */
#include <stdint.h>

#include "check.h"
#include "own_change.h"

static struct sftp_attrs attrs_with_size(uint64_t size)
{
	return (struct sftp_attrs){.flags = SFTP_ATTR_SIZE, .size = size};
}

static void test_defer_while_in_flight(void)
{
	struct own_changes *o = own_changes_new();
	struct sftp_attrs a = attrs_with_size(1), got;
	CHECK(!own_change_defer(o, 7, &a)); /* nothing in flight: handle now */
	CHECK(own_change_begin(o, 7));
	CHECK(own_change_defer(o, 7, &a));
	CHECK(!own_change_defer(o, 8, &a)); /* another directory */
	CHECK(own_change_end(o, 7, &got) && got.size == 1);
	CHECK(!own_change_defer(o, 7, &a)); /* ended: handle now again */
	own_changes_free(o);
}

static void test_newest_report_after_last_change(void)
{
	struct own_changes *o = own_changes_new();
	struct sftp_attrs a = attrs_with_size(1), b = attrs_with_size(2), got = {0};
	CHECK(own_change_begin(o, 7) && own_change_begin(o, 7));
	CHECK(own_change_defer(o, 7, &a) && own_change_defer(o, 7, &b));
	CHECK(!own_change_end(o, 7, &got)); /* one change still in flight */
	CHECK(own_change_end(o, 7, &got) && got.size == 2);
	CHECK(own_change_begin(o, 7));
	CHECK(!own_change_end(o, 7, &got)); /* no report waited */
	own_changes_free(o);
}

static void test_full_table(void)
{
	struct own_changes *o = own_changes_new();
	struct sftp_attrs a = attrs_with_size(1), got;
	uint64_t dir = 1;
	while (own_change_begin(o, dir))
		dir++;
	CHECK(dir == 65);		      /* 64 slots */
	CHECK(!own_change_defer(o, dir, &a)); /* the untracked one is handled at once */
	CHECK(own_change_defer(o, 1, &a));
	CHECK(own_change_end(o, 1, &got));
	CHECK(own_change_begin(o, dir)); /* a freed slot is used again */
	for (uint64_t d = 2; d <= dir; d++)
		CHECK(!own_change_end(o, d, &got));
	CHECK(!own_change_begin(o, 0)); /* 0 is no directory */
	own_changes_free(o);
}

int main(void)
{
	test_defer_while_in_flight();
	test_newest_report_after_last_change();
	test_full_table();
	return check_done();
}
