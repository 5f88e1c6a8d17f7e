/* journal.h: the change journal behind git's fsmonitor hook (sandmount-fsmonitor). Every path the
 * sandbox's watch reports gets a sequence number; a token names a point in it (daemon instance,
 * watch generation, sequence). "What changed since TOKEN" is answered from the journal while it
 * holds every change since then; otherwise the answer is "everything" (git then scans). Bounded in
 * entries and bytes; thread-safe; never blocks on anything but its own mutex. */
#ifndef SANDMOUNT_JOURNAL_H
#define SANDMOUNT_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define JOURNAL_MAX_ENTRIES 65536
#define JOURNAL_MAX_BYTES   (8u << 20)
#define JOURNAL_TOKEN_MAX   96

struct journal;

struct journal *journal_new(size_t max_entries, size_t max_bytes);
void journal_free(struct journal *j);
/* path (relative to the mount root, "" = the root) changed; NULL: changes were lost. */
void journal_add(struct journal *j, const char *path);
/* The watch became live (a new generation: every earlier token answers "everything") or stopped
 * being complete (not live: every query answers "everything" until it is live again). */
void journal_set_live(struct journal *j, bool live);
bool journal_live(struct journal *j);

/* The changes after token: their paths appended to out as strings (buf_put_cstring), *n counted,
 * the current token written to new_token. Returns 0, or 1 for "everything" (unknown, old or
 * foreign token, lost changes, not live, or more than max_bytes of paths; out and *n are then
 * reset). */
int journal_since(struct journal *j, const char *token, struct buf *out, uint32_t *n,
		  size_t max_bytes, char new_token[JOURNAL_TOKEN_MAX]);

#endif
