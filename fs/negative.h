/* negative.h: the "does not exist" answers handed to the kernel to keep (negative.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct negative_set;

struct negative_set *negative_set_new(size_t max_entries);
void negative_set_free(struct negative_set *s);

/* Record that the kernel may keep "`name` does not exist in `parent`". false when the set is
 * full (the answer is then not to be kept) or out of memory. */
bool negative_add(struct negative_set *s, uint64_t parent, const char *name);

/* The kernel's entry for `name` in `parent` is no longer a negative one we handed out (a
 * positive entry replaced it, or it was expired). */
void negative_remove(struct negative_set *s, uint64_t parent, const char *name);

/* Empty the set, calling fn for each name it held (the caller expires them in the kernel). */
void negative_take_all(struct negative_set *s,
		       void (*fn)(void *ctx, uint64_t parent, const char *name), void *ctx);

size_t negative_count(struct negative_set *s);
