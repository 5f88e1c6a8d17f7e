/* abuf.h: the agent's own bounds-checked wire buffer. The agent is a static binary that links no
 * part of lib/, so it keeps this small copy of lib/buf.h's API. Writers append and grow; an
 * allocation failure sets `err` and later puts are ignored, so a message is built without checks
 * and validated once (abuf_ok). Readers consume from `off` and return -1 instead of reading past
 * `len`. */
#ifndef SANDMOUNT_AGENT_ABUF_H
#define SANDMOUNT_AGENT_ABUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct abuf {
	uint8_t *data;
	size_t len; /* bytes written */
	size_t cap;
	size_t off; /* read position */
	bool err;   /* an append failed */
};

void abuf_init(struct abuf *b);
void abuf_free(struct abuf *b);
/* A read-only view of n bytes at p (no ownership: never free or append to a view). */
void abuf_view(struct abuf *b, uint8_t *p, size_t n);
bool abuf_ok(const struct abuf *b);
size_t abuf_remaining(const struct abuf *b); /* len - off */
const uint8_t *abuf_cursor(const struct abuf *b);
/* Drop the bytes already consumed (before off), moving the rest to the front. */
void abuf_compact(struct abuf *b);

/* Append n uninitialised bytes and return where they start (NULL on failure; sets err). The
 * caller fills them and may give back the unused tail with abuf_truncate. */
uint8_t *abuf_put_space(struct abuf *b, size_t n);
void abuf_truncate(struct abuf *b, size_t len); /* shrink to len bytes (never grows) */
void abuf_put_u8(struct abuf *b, uint8_t v);
void abuf_put_u32(struct abuf *b, uint32_t v); /* big endian, as SSH/SFTP */
void abuf_put_u64(struct abuf *b, uint64_t v);
void abuf_put_string(struct abuf *b, const void *p, size_t n); /* u32 length + bytes */
void abuf_put_cstring(struct abuf *b, const char *s);
/* Overwrite a u32 at an absolute position already written (e.g. a length prefix). */
void abuf_set_u32_at(struct abuf *b, size_t pos, uint32_t v);

int abuf_get_u8(struct abuf *b, uint8_t *v);
int abuf_get_u32(struct abuf *b, uint32_t *v);
int abuf_get_u64(struct abuf *b, uint64_t *v);
/* Read a big-endian u32 at the cursor without consuming it. */
int abuf_peek_u32(const struct abuf *b, uint32_t *v);
/* A length-prefixed string, zero-copy: *p points into the buffer (not NUL-terminated). */
int abuf_get_string(struct abuf *b, const uint8_t **p, uint32_t *n);
/* A length-prefixed string copied into a NUL-terminated malloc'd string; -1 if it holds a NUL. */
int abuf_get_cstring(struct abuf *b, char **out);

#endif
