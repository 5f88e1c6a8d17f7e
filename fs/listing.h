/* listing.h: complete listings (listing.c): the set of names a directory holds, known for sure
 * while the sandbox's change watch is live, so that a LOOKUP of a name not in it can be answered
 * "does not exist" without a round trip. Pure data: no FUSE, no I/O; thread-safe. */
#ifndef SANDMOUNT_LISTING_H
#define SANDMOUNT_LISTING_H

#include <stdbool.h>
#include <stdint.h>

/* Names held over all directories together (pending and complete listings); past it a begin or
 * an add fails and that listing is not kept. */
#define LISTING_MAX_NAMES 200000
/* Doubted names per directory; past it the directory's listing is dropped. */
#define LISTING_MAX_DOUBTS 256

struct listings;

/* With a random hash seed (a hostile sandbox must not be able to pick names that collide); the
 * seeded one is for tests, so that a run replays. */
struct listings *listings_new(void);
struct listings *listings_new_seeded(uint64_t hash_seed);
void listings_free(struct listings *l);

enum listing_answer { LISTING_UNKNOWN, LISTING_ABSENT, LISTING_PRESENT };

/* Start a complete listing of dir (an inode number): any earlier listing of dir is dropped now
 * (lookups answer UNKNOWN until the commit). Returns the token for listing_add_name and
 * listing_commit, 0 on failure (no room for names left, no memory). */
uint64_t listing_begin(struct listings *l, uint64_t dir);
/* A name read for the listing begun with token. Returns 0; -ESTALE when that listing is no longer
 * pending (committed, replaced, or dropped by a note or a drop); -EINVAL (an empty name or one
 * longer than NAME_MAX), -ENOSPC (LISTING_MAX_NAMES) or -ENOMEM: the listing is then dropped. */
int listing_add_name(struct listings *l, uint64_t dir, uint64_t token, const char *name);
/* The listing begun with token is complete and usable from now on. false (nothing kept) when
 * anything happened to dir since the begin: a note, a drop, another begin, a failed add. */
bool listing_commit(struct listings *l, uint64_t dir, uint64_t token);

/* UNKNOWN without a complete listing of dir, for a doubted name and for an invalid name. */
enum listing_answer listing_lookup(struct listings *l, uint64_t dir, const char *name);

/* What a local operation did to a name in dir. ADDED: create, mkdir, symlink, link, mknod or a
 * rename's target succeeded; REMOVED: unlink, rmdir or a rename's source succeeded; DOUBT: the
 * outcome is unknown (an error, a timeout, a sandbox-side change to the name): lookups of that
 * name answer UNKNOWN, other names keep their answers, until an ADDED or REMOVED of it settles it.
 * Changes a complete listing; drops a pending one (what was read may predate the change). */
enum listing_change { LISTING_ADDED, LISTING_REMOVED, LISTING_DOUBT };
void listing_note(struct listings *l, uint64_t dir, const char *name, enum listing_change c);

/* Forget dir's listing, pending or complete (the kernel forgot dir, it was removed, a barrier). */
void listing_drop(struct listings *l, uint64_t dir);
void listing_drop_all(struct listings *l);

/* For --status: the directories with a complete listing and the names those listings hold. */
void listing_counts(struct listings *l, uint64_t *dirs, uint64_t *names);

#endif
