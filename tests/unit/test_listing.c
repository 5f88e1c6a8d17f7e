/* test_listing.c: complete listings (fs/listing.c): begin/add/commit and its tokens, the local
 * operations' notes and doubts, invalid names, the bounds, tables growing and shrinking, and a
 * randomized run checked against a simple model (SM_LISTING_SEED=N replays one seed). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "listing.h"

#define A LISTING_ABSENT
#define P LISTING_PRESENT
#define U LISTING_UNKNOWN

/* A complete listing of dir holding names (NULL-terminated). */
static void list(struct listings *l, uint64_t dir, const char *const *names)
{
	uint64_t t = listing_begin(l, dir);
	CHECK(t != 0);
	for (; *names; names++)
		CHECK(listing_add_name(l, dir, t, *names) == 0);
	CHECK(listing_commit(l, dir, t));
}

static bool counts_are(struct listings *l, uint64_t dirs, uint64_t names)
{
	uint64_t d, n;
	listing_counts(l, &d, &n);
	if (d != dirs || n != names)
		fprintf(stderr, "counts %llu dirs %llu names, want %llu %llu\n",
			(unsigned long long)d, (unsigned long long)n, (unsigned long long)dirs,
			(unsigned long long)names);
	return d == dirs && n == names;
}

static void test_begin_commit(void)
{
	struct listings *l = listings_new();
	CHECK(listing_lookup(l, 5, "a") == U);
	uint64_t t = listing_begin(l, 5);
	CHECK(listing_add_name(l, 5, t, "a") == 0);
	CHECK(listing_add_name(l, 5, t, "a") == 0); /* a repeated name is held once */
	CHECK(listing_lookup(l, 5, "a") == U);	    /* pending */
	CHECK(listing_commit(l, 5, t));
	CHECK(!listing_commit(l, 5, t));
	CHECK(listing_add_name(l, 5, t, "b") == -ESTALE);
	CHECK(listing_lookup(l, 5, "a") == P && listing_lookup(l, 5, "b") == A);
	CHECK(listing_lookup(l, 6, "a") == U);
	CHECK(counts_are(l, 1, 1));

	/* A begin drops the complete listing at once; an earlier token is stale. */
	uint64_t t2 = listing_begin(l, 5);
	CHECK(t2 != t && listing_lookup(l, 5, "a") == U && counts_are(l, 0, 0));
	uint64_t t3 = listing_begin(l, 5);
	CHECK(listing_add_name(l, 5, t2, "x") == -ESTALE && !listing_commit(l, 5, t2));
	CHECK(listing_commit(l, 5, t3)); /* an empty directory */
	CHECK(listing_lookup(l, 5, "a") == A && counts_are(l, 1, 0));
	CHECK(!listing_commit(l, 6, t3) && listing_add_name(l, 6, t3, "a") == -ESTALE);

	/* A note or a drop between begin and commit: the commit fails. */
	t = listing_begin(l, 7);
	listing_note(l, 7, "zz", LISTING_ADDED);
	CHECK(listing_add_name(l, 7, t, "a") == -ESTALE && !listing_commit(l, 7, t));
	t = listing_begin(l, 7);
	listing_drop(l, 7);
	CHECK(!listing_commit(l, 7, t) && listing_lookup(l, 7, "a") == U);
	listing_note(l, 8, "a", LISTING_ADDED); /* no listing: nothing */
	CHECK(listing_lookup(l, 8, "a") == U && counts_are(l, 1, 0));
	listings_free(l);
}

static void test_notes_and_doubts(void)
{
	struct listings *l = listings_new_seeded(2);
	list(l, 1, (const char *[]){"a", "b", NULL});
	list(l, 2, (const char *[]){"a", NULL});
	listing_note(l, 1, "c", LISTING_ADDED);
	listing_note(l, 1, "a", LISTING_REMOVED);
	listing_note(l, 1, "nope", LISTING_REMOVED);
	CHECK(listing_lookup(l, 1, "a") == A && listing_lookup(l, 1, "c") == P);
	CHECK(listing_lookup(l, 2, "a") == P && counts_are(l, 2, 3));

	listing_note(l, 1, "b", LISTING_DOUBT);
	listing_note(l, 1, "d", LISTING_DOUBT);
	listing_note(l, 1, "d", LISTING_DOUBT);
	CHECK(listing_lookup(l, 1, "b") == U && listing_lookup(l, 1, "d") == U);
	CHECK(listing_lookup(l, 1, "c") == P && listing_lookup(l, 1, "e") == A);
	CHECK(counts_are(l, 2, 3)); /* a doubted name stays held */
	listing_note(l, 1, "b", LISTING_REMOVED);
	listing_note(l, 1, "d", LISTING_ADDED);
	CHECK(listing_lookup(l, 1, "b") == A && listing_lookup(l, 1, "d") == P);
	listing_note(l, 1, "d", LISTING_DOUBT);
	listing_note(l, 1, "d", LISTING_DOUBT);
	listing_note(l, 1, "d", LISTING_REMOVED); /* settled once, however often doubted */
	CHECK(listing_lookup(l, 1, "d") == A);

	listing_drop_all(l);
	CHECK(listing_lookup(l, 2, "a") == U && counts_are(l, 0, 0));
	list(l, 2, (const char *[]){"a", NULL});
	CHECK(listing_lookup(l, 2, "a") == P);
	listings_free(l);
}

static void test_names(void)
{
	struct listings *l = listings_new_seeded(3);
	char max[257], over[258];
	memset(max, 'm', 255);
	max[255] = 0;
	memset(over, 'o', 256);
	over[256] = 0;
	list(l, 1, (const char *[]){max, "\xff\x01", NULL}); /* names are bytes */
	CHECK(listing_lookup(l, 1, max) == P && listing_lookup(l, 1, "\xff\x01") == P);
	CHECK(listing_lookup(l, 1, over) == U && listing_lookup(l, 1, "") == U);
	listing_note(l, 1, over, LISTING_ADDED); /* nothing a listing could hold */
	listing_note(l, 1, "", LISTING_DOUBT);
	CHECK(listing_lookup(l, 1, max) == P && listing_lookup(l, 1, "x") == A);

	uint64_t t = listing_begin(l, 2);
	CHECK(listing_add_name(l, 2, t, "a") == 0);
	CHECK(listing_add_name(l, 2, t, over) == -EINVAL);
	CHECK(listing_add_name(l, 2, t, "b") == -ESTALE && !listing_commit(l, 2, t));
	t = listing_begin(l, 2);
	CHECK(listing_add_name(l, 2, t, "") == -EINVAL && !listing_commit(l, 2, t));
	CHECK(listing_lookup(l, 2, "a") == U && counts_are(l, 1, 2));
	listings_free(l);
}

static void test_bounds(void)
{
	struct listings *l = listings_new_seeded(4);
	char name[16];
	uint64_t t = listing_begin(l, 1);
	int rc = 0;
	for (int i = 0; i < LISTING_MAX_NAMES && !rc; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		rc = listing_add_name(l, 1, t, name);
	}
	CHECK(rc == 0);
	CHECK(listing_add_name(l, 1, t, "n0") == 0); /* already held */
	CHECK(listing_begin(l, 2) == 0);	     /* no room left */
	CHECK(listing_add_name(l, 1, t, "one more") == -ENOSPC);
	CHECK(!listing_commit(l, 1, t) && counts_are(l, 0, 0));

	/* Exactly the bound, committed; one more name by a note drops the listing. */
	t = listing_begin(l, 1);
	rc = 0;
	for (int i = 0; i < LISTING_MAX_NAMES && !rc; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		rc = listing_add_name(l, 1, t, name);
	}
	CHECK(rc == 0 && listing_commit(l, 1, t) && counts_are(l, 1, LISTING_MAX_NAMES));
	CHECK(listing_lookup(l, 1, "n199999") == P && listing_lookup(l, 1, "n200000") == A);
	listing_note(l, 1, "n5", LISTING_ADDED);
	listing_note(l, 1, "n6", LISTING_REMOVED); /* room for one */
	listing_note(l, 1, "new", LISTING_ADDED);
	CHECK(listing_lookup(l, 1, "new") == P && counts_are(l, 1, LISTING_MAX_NAMES));
	listing_note(l, 1, "extra", LISTING_ADDED);
	CHECK(listing_lookup(l, 1, "n5") == U && counts_are(l, 0, 0));

	list(l, 3, (const char *[]){"keep", NULL});
	for (int i = 0; i < LISTING_MAX_DOUBTS; i++) {
		snprintf(name, sizeof(name), "d%d", i);
		listing_note(l, 3, name, LISTING_DOUBT);
	}
	listing_note(l, 3, "d0", LISTING_DOUBT);
	CHECK(listing_lookup(l, 3, "keep") == P && listing_lookup(l, 3, "d255") == U);
	listing_note(l, 3, "one doubt too many", LISTING_DOUBT);
	CHECK(listing_lookup(l, 3, "keep") == U && counts_are(l, 0, 0));
	listings_free(l);
}

/* One directory: many names in and out (growth, backward-shift deletes, shrinking), every
 * answer checked. */
static void test_growth(void)
{
	enum { N = 6000 };
	static bool in[N];
	struct listings *l = listings_new_seeded(5);
	char name[16];
	uint64_t t = listing_begin(l, 9);
	for (int i = 0; i < N; i += 3) {
		snprintf(name, sizeof(name), "f%d", i);
		CHECK(listing_add_name(l, 9, t, name) == 0);
		in[i] = true;
	}
	CHECK(listing_commit(l, 9, t));
	for (int round = 0; round < 6; round++) {
		int bad = 0, held = 0;
		for (int i = 0; i < N; i++) {
			bool add = round == 5 ? false : (i * 7 + round * 13) % (round + 2) == 0;
			snprintf(name, sizeof(name), "f%d", i);
			listing_note(l, 9, name, add ? LISTING_ADDED : LISTING_REMOVED);
			in[i] = add;
		}
		for (int i = 0; i < N; i++) {
			snprintf(name, sizeof(name), "f%d", i);
			bad += listing_lookup(l, 9, name) != (in[i] ? P : A);
			held += in[i];
		}
		CHECK(bad == 0 && counts_are(l, 1, held));
	}
	listings_free(l);
}

/* The randomized run: a few directories, a small alphabet (the last names are invalid ones). */
enum { R_DIRS = 4, R_VALID = 24, R_NAMES = R_VALID + 2, R_OPS = 2000, R_SEEDS = 200 };
static const uint64_t r_dir[R_DIRS] = {1, 7, 1ull << 33, UINT64_MAX - 1};
static char r_name[R_NAMES][260];

enum { NONE, PENDING, COMPLETE };
struct model {
	int state;
	uint64_t token;
	bool present[R_VALID], doubted[R_VALID];
};

static uint64_t rnd(uint64_t *s) /* splitmix64 */
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static enum listing_answer model_answer(const struct model *m, int n)
{
	if (m->state != COMPLETE || n >= R_VALID || m->doubted[n])
		return U;
	return m->present[n] ? P : A;
}

/* Every answer for directory d, and the counts, against the model. */
static bool model_agrees(struct listings *l, const struct model *m, int d)
{
	for (int n = 0; n < R_NAMES; n++)
		if (listing_lookup(l, r_dir[d], r_name[n]) != model_answer(&m[d], n))
			return false;
	uint64_t dirs = 0, names = 0, got_dirs, got_names;
	for (int i = 0; i < R_DIRS; i++) {
		if (m[i].state != COMPLETE)
			continue;
		dirs++;
		for (int n = 0; n < R_VALID; n++)
			names += m[i].present[n];
	}
	listing_counts(l, &got_dirs, &got_names);
	return dirs == got_dirs && names == got_names;
}

static void model_note(struct model *md, int n, enum listing_change c)
{
	if (md->state == PENDING)
		md->state = NONE;
	if (md->state != COMPLETE || n >= R_VALID)
		return;
	if (c == LISTING_DOUBT) {
		md->doubted[n] = true;
	} else {
		md->present[n] = c == LISTING_ADDED;
		md->doubted[n] = false;
	}
}

enum { BEGIN, ADD, COMMIT, NOTE, DROP, DROP_ALL, LOOKUP };
static const char *const op_name[] = {"begin", "add",	   "commit", "note",
				      "drop",  "drop_all", "lookup"};

/* One random operation on directory d, applied to both; false when their results differ. */
static bool random_op(struct listings *l, struct model *m, int d, uint64_t *s, char *what)
{
	/* Cumulative odds in % of each operation but lookup, by state: listings are mostly begun,
	 * filled and committed, complete ones mostly noted. */
	static const int odds[3][LOOKUP] = {
	    [NONE] = {30, 35, 40, 60, 61, 62},
	    [PENDING] = {3, 63, 78, 86, 88, 88},
	    [COMPLETE] = {3, 6, 9, 59, 61, 62},
	};
	struct model *md = &m[d];
	int op = 0, n = rnd(s) % R_NAMES;
	for (int r = rnd(s) % 100; op < LOOKUP && r >= odds[md->state][op];)
		op++;
	/* mostly the current token; else a stale one or garbage */
	uint64_t tok = rnd(s) % 8 ? md->token : rnd(s) % 2 ? m[rnd(s) % R_DIRS].token : rnd(s) % 4;
	enum listing_change c = rnd(s) % 3;
	bool live = md->state == PENDING && tok == md->token;
	sprintf(what, "%s dir %d name %d token %llu change %d", op_name[op], d, n,
		(unsigned long long)tok, c);
	switch (op) {
	case BEGIN:
		*md = (struct model){PENDING, listing_begin(l, r_dir[d]), {0}, {0}};
		return md->token != 0;
	case ADD:
		if (live && n < R_VALID)
			md->present[n] = true;
		else if (live)
			md->state = NONE;
		return listing_add_name(l, r_dir[d], tok, r_name[n]) == (!live	       ? -ESTALE
									 : n < R_VALID ? 0
										       : -EINVAL);
	case COMMIT:
		if (live)
			md->state = COMPLETE;
		return listing_commit(l, r_dir[d], tok) == live;
	case NOTE:
		listing_note(l, r_dir[d], r_name[n], c);
		model_note(md, n, c);
		break;
	case DROP:
		listing_drop(l, r_dir[d]);
		md->state = NONE;
		break;
	case DROP_ALL:
		listing_drop_all(l);
		for (int i = 0; i < R_DIRS; i++)
			m[i].state = NONE;
		break;
	}
	return listing_lookup(l, r_dir[d], r_name[n]) == model_answer(md, n);
}

static bool random_run(uint64_t seed)
{
	struct listings *l = listings_new_seeded(seed);
	struct model m[R_DIRS] = {0};
	uint64_t s = seed;
	char what[128];
	bool ok = true;
	for (int i = 0; i < R_OPS && ok; i++) {
		int d = rnd(&s) % R_DIRS;
		ok = random_op(l, m, d, &s, what) && model_agrees(l, m, d);
		if (ok && i % 64 == 63)
			for (int j = 0; j < R_DIRS && ok; j++)
				ok = model_agrees(l, m, j);
		if (!ok)
			fprintf(stderr, "random: SM_LISTING_SEED=%llu fails at op index %d (%s)\n",
				(unsigned long long)seed, i, what);
	}
	listings_free(l);
	return ok;
}

static void test_random(const char *one_seed)
{
	for (int n = 0; n < R_VALID - 1; n++) { /* short names, some alike: a..f, a6..e22 */
		snprintf(r_name[n], sizeof(r_name[n]), "%c%d", 'a' + n % 6, n);
		r_name[n][n < 6 ? 1 : 3] = 0;
	}
	memset(r_name[R_VALID - 1], 'L', 255); /* the longest valid name */
	memset(r_name[R_VALID + 1], 'O', 256); /* too long; r_name[R_VALID] is "" */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int failed = 0, seeds = one_seed ? 1 : R_SEEDS;
	for (int i = 0; i < seeds; i++)
		failed += !random_run(one_seed ? strtoull(one_seed, NULL, 10) : (uint64_t)i + 1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("random: %d seeds x %d ops, %d failed, %.2f s\n", seeds, R_OPS, failed,
	       (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	CHECK(failed == 0);
}

int main(void)
{
	const char *seed = getenv("SM_LISTING_SEED");
	if (!seed) {
		test_begin_commit();
		test_notes_and_doubts();
		test_names();
		test_bounds();
		test_growth();
	}
	test_random(seed);
	return check_done();
}
