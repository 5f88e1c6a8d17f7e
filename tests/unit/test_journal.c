/* test_journal.c: the change journal behind the fsmonitor hook (fs/journal.c): tokens, the
 * "everything" answers (foreign, old, lost, not live, too big) and the bounds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "journal.h"

/* Query since token; the paths joined with ',' into got (NULL for "everything"). */
static const char *since(struct journal *j, const char *token, char *next, size_t max_bytes)
{
	static char got[4096];
	struct buf out;
	uint32_t n = 99;
	buf_init(&out);
	int rc = journal_since(j, token, &out, &n, max_bytes, next);
	got[0] = 0;
	for (uint32_t i = 0; i < n; i++) {
		char *p = NULL;
		CHECK(buf_get_cstring(&out, &p) == 0);
		if (p && strlen(got) + strlen(p) + 2 < sizeof(got)) {
			strcat(got, i ? "," : "");
			strcat(got, p);
		}
		free(p);
	}
	CHECK(rc == 1 ? n == 0 && out.len == 0 : rc == 0);
	buf_free(&out);
	return rc ? NULL : got;
}

static void test_tokens(void)
{
	struct journal *j = journal_new(16, 4096);
	char t0[JOURNAL_TOKEN_MAX], t1[JOURNAL_TOKEN_MAX], t2[JOURNAL_TOKEN_MAX];
	/* Not live yet: everything, whatever the token. */
	CHECK(since(j, "", t0, 1 << 20) == NULL);
	journal_set_live(j, true);
	CHECK(since(j, "", t0, 1 << 20) == NULL);
	CHECK(since(j, "bogus", t0, 1 << 20) == NULL);
	CHECK(strncmp(t0, "sandmount:", 10) == 0);
	const char *r = since(j, t0, t1, 1 << 20);
	CHECK(r && !strcmp(r, ""));
	CHECK(!strcmp(t0, t1));
	journal_add(j, "a/b");
	journal_add(j, "c");
	r = since(j, t0, t1, 1 << 20);
	CHECK(r && !strcmp(r, "a/b,c"));
	journal_add(j, "d");
	r = since(j, t1, t2, 1 << 20);
	CHECK(r && !strcmp(r, "d"));
	/* A token from the future, another instance, a trailing byte: everything. */
	char fut[JOURNAL_TOKEN_MAX + 8];
	snprintf(fut, sizeof(fut), "%s9", t2);
	CHECK(since(j, fut, t1, 1 << 20) == NULL);
	char other[JOURNAL_TOKEN_MAX];
	snprintf(other, sizeof(other), "%s", t2);
	other[10] = other[10] == '0' ? '1' : '0';
	CHECK(since(j, other, t1, 1 << 20) == NULL);
	snprintf(fut, sizeof(fut), "%s ", t2);
	CHECK(since(j, fut, t1, 1 << 20) == NULL);
	/* Lost events: every earlier token answers everything, a later one works. */
	journal_add(j, NULL);
	CHECK(since(j, t2, t1, 1 << 20) == NULL);
	journal_add(j, "e");
	r = since(j, t1, t2, 1 << 20);
	CHECK(r && !strcmp(r, "e"));
	/* Too many bytes for the answer: everything. */
	journal_add(j, "0123456789");
	CHECK(since(j, t2, t1, 8) == NULL);
	/* Not live (partial watch): everything; live again: a new generation. */
	journal_set_live(j, false);
	CHECK(since(j, t1, t2, 1 << 20) == NULL);
	journal_add(j, "f");
	CHECK(since(j, t2, t0, 1 << 20) == NULL);
	journal_set_live(j, true);
	CHECK(since(j, t0, t1, 1 << 20) == NULL);
	CHECK(strcmp(t0, t1) != 0);
	r = since(j, t1, t2, 1 << 20);
	CHECK(r && !strcmp(r, ""));
	journal_free(j);
}

static void test_bounds(void)
{
	char t0[JOURNAL_TOKEN_MAX], t1[JOURNAL_TOKEN_MAX], t2[JOURNAL_TOKEN_MAX];
	/* Entries: 4 kept; a token older than the oldest kept answers everything. */
	struct journal *j = journal_new(4, 1 << 20);
	journal_set_live(j, true);
	since(j, "", t0, 1 << 20);
	journal_add(j, "1");
	since(j, t0, t1, 1 << 20);
	for (int i = 2; i <= 5; i++) {
		char p[8];
		snprintf(p, sizeof(p), "%d", i);
		journal_add(j, p);
	}
	CHECK(since(j, t0, t2, 1 << 20) == NULL);
	const char *r = since(j, t1, t2, 1 << 20);
	CHECK(r && !strcmp(r, "2,3,4,5"));
	journal_add(j, "6");
	CHECK(since(j, t1, t2, 1 << 20) == NULL);
	journal_free(j);

	/* Bytes: about 3 entries of 40 bytes fit in 200; a path larger than the bound is lost. */
	j = journal_new(1000, 200);
	journal_set_live(j, true);
	since(j, "", t0, 1 << 20);
	char big[48];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	for (int i = 0; i < 10; i++)
		journal_add(j, big);
	CHECK(since(j, t0, t1, 1 << 20) == NULL);
	journal_add(j, "y");
	r = since(j, t1, t2, 1 << 20);
	CHECK(r && !strcmp(r, "y"));
	char huge[300];
	memset(huge, 'z', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = 0;
	journal_add(j, huge);
	CHECK(since(j, t2, t1, 1 << 20) == NULL);
	journal_free(j);

	/* Many: the bounds hold over a long run. */
	j = journal_new(JOURNAL_MAX_ENTRIES, JOURNAL_MAX_BYTES);
	journal_set_live(j, true);
	since(j, "", t0, 1 << 20);
	for (int i = 0; i < 3 * JOURNAL_MAX_ENTRIES; i++)
		journal_add(j, "some/path/in/the/tree");
	CHECK(since(j, t0, t1, 64u << 20) == NULL);
	journal_add(j, "last");
	r = since(j, t1, t2, 1 << 20);
	CHECK(r && !strcmp(r, "last"));
	journal_free(j);
}

int main(void)
{
	test_tokens();
	test_bounds();
	return check_done();
}
