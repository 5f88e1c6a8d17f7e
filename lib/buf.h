/* buf.h: the one bounds-checked wire buffer. Every byte sent or parsed on a wire goes through it,
 * in lib/ and in the agent (which compiles buf.c into its static binary: it needs only libc).
 * Writers append and grow; an allocation failure sets `err` and later puts are ignored, so a
 * message is built without checks and validated once (buf_ok). Readers consume from `off` and
 * return -1 instead of reading past `len`. */
#ifndef SANDMOUNT_BUF_H
#define SANDMOUNT_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;
	size_t len; /* bytes written */
	size_t cap;
	size_t off; /* read position */
	bool err;   /* an append failed */
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b); /* len = off = 0, err = false; keeps memory */
bool buf_ok(const struct buf *b);
int buf_reserve(struct buf *b, size_t extra);	/* 0 or -1 (sets err) */
size_t buf_remaining(const struct buf *b);	/* len - off */
const uint8_t *buf_cursor(const struct buf *b); /* data + off */
/* A read-only view of n bytes at p (no ownership: never free or append to a view). */
void buf_view(struct buf *b, uint8_t *p, size_t n);
/* Drop the bytes already consumed (before off), moving the rest to the front. */
void buf_compact(struct buf *b);
/* Append n uninitialised bytes and return where they start (NULL on failure; sets err). The
 * caller fills them and may give back the unused tail with buf_truncate. */
uint8_t *buf_put_space(struct buf *b, size_t n);
void buf_truncate(struct buf *b, size_t len); /* shrink to len bytes (never grows) */

void buf_put_u8(struct buf *b, uint8_t v);
void buf_put_u32(struct buf *b, uint32_t v); /* big endian, as SSH/SFTP */
void buf_put_u64(struct buf *b, uint64_t v);
void buf_put_bytes(struct buf *b, const void *p, size_t n);
void buf_put_string(struct buf *b, const void *p, size_t n); /* u32 length + bytes */
void buf_put_cstring(struct buf *b, const char *s);
/* Overwrite a u32 at an absolute position already written (e.g. a length prefix). */
void buf_set_u32_at(struct buf *b, size_t pos, uint32_t v);

int buf_get_u8(struct buf *b, uint8_t *v);
int buf_get_u32(struct buf *b, uint32_t *v);
int buf_get_u64(struct buf *b, uint64_t *v);
int buf_get_bytes(struct buf *b, void *p, size_t n);
/* Read a big-endian u32 at the cursor without consuming it. */
int buf_peek_u32(const struct buf *b, uint32_t *v);
int buf_skip(struct buf *b, size_t n);
/* A length-prefixed string, zero-copy: *p points into the buffer (not NUL-terminated). */
int buf_get_string(struct buf *b, const uint8_t **p, uint32_t *n);
/* A length-prefixed string copied into a NUL-terminated malloc'd string; -1 if it holds a NUL. */
int buf_get_cstring(struct buf *b, char **out);

#endif
