/* buf.c: the bounds-checked wire buffer (see buf.h). */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b)
{
	memset(b, 0, sizeof(*b));
}

void buf_free(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	b->off = 0;
	b->err = false;
}

bool buf_ok(const struct buf *b)
{
	return !b->err;
}

int buf_reserve(struct buf *b, size_t extra)
{
	if (b->err)
		return -1;
	if (extra > SIZE_MAX - b->len) {
		b->err = true;
		return -1;
	}
	size_t need = b->len + extra;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	uint8_t *p = realloc(b->data, cap);
	if (!p) {
		b->err = true;
		return -1;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

size_t buf_remaining(const struct buf *b)
{
	return b->len - b->off;
}

const uint8_t *buf_cursor(const struct buf *b)
{
	return b->data + b->off;
}

void buf_view(struct buf *b, uint8_t *p, size_t n)
{
	buf_init(b);
	b->data = p;
	b->len = n;
	b->cap = n;
}

void buf_compact(struct buf *b)
{
	if (b->off == 0)
		return;
	memmove(b->data, b->data + b->off, b->len - b->off);
	b->len -= b->off;
	b->off = 0;
}

uint8_t *buf_put_space(struct buf *b, size_t n)
{
	if (buf_reserve(b, n) < 0)
		return NULL;
	uint8_t *p = b->data + b->len;
	b->len += n;
	return p;
}

void buf_truncate(struct buf *b, size_t len)
{
	if (len < b->len)
		b->len = len;
	if (b->off > b->len)
		b->off = b->len;
}

void buf_put_bytes(struct buf *b, const void *p, size_t n)
{
	if (n == 0 || buf_reserve(b, n) < 0)
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void buf_put_u8(struct buf *b, uint8_t v)
{
	buf_put_bytes(b, &v, 1);
}

void buf_put_u32(struct buf *b, uint32_t v)
{
	uint8_t x[4] = {v >> 24, v >> 16, v >> 8, v};
	buf_put_bytes(b, x, 4);
}

void buf_put_u64(struct buf *b, uint64_t v)
{
	buf_put_u32(b, (uint32_t)(v >> 32));
	buf_put_u32(b, (uint32_t)v);
}

void buf_put_string(struct buf *b, const void *p, size_t n)
{
	if (n > UINT32_MAX) {
		b->err = true;
		return;
	}
	buf_put_u32(b, (uint32_t)n);
	buf_put_bytes(b, p, n);
}

void buf_put_cstring(struct buf *b, const char *s)
{
	buf_put_string(b, s, strlen(s));
}

void buf_set_u32_at(struct buf *b, size_t pos, uint32_t v)
{
	if (b->err || pos > b->len || b->len - pos < 4) {
		b->err = true;
		return;
	}
	uint8_t *x = b->data + pos;
	x[0] = v >> 24;
	x[1] = v >> 16;
	x[2] = v >> 8;
	x[3] = v;
}

int buf_get_bytes(struct buf *b, void *p, size_t n)
{
	if (buf_remaining(b) < n)
		return -1;
	if (n)
		memcpy(p, b->data + b->off, n);
	b->off += n;
	return 0;
}

int buf_skip(struct buf *b, size_t n)
{
	if (buf_remaining(b) < n)
		return -1;
	b->off += n;
	return 0;
}

int buf_get_u8(struct buf *b, uint8_t *v)
{
	return buf_get_bytes(b, v, 1);
}

int buf_peek_u32(const struct buf *b, uint32_t *v)
{
	if (buf_remaining(b) < 4)
		return -1;
	const uint8_t *x = b->data + b->off;
	*v = (uint32_t)x[0] << 24 | (uint32_t)x[1] << 16 | (uint32_t)x[2] << 8 | x[3];
	return 0;
}

int buf_get_u32(struct buf *b, uint32_t *v)
{
	uint8_t x[4];
	if (buf_get_bytes(b, x, 4) < 0)
		return -1;
	*v = (uint32_t)x[0] << 24 | (uint32_t)x[1] << 16 | (uint32_t)x[2] << 8 | x[3];
	return 0;
}

int buf_get_u64(struct buf *b, uint64_t *v)
{
	uint32_t hi, lo;
	if (buf_remaining(b) < 8)
		return -1;
	buf_get_u32(b, &hi);
	buf_get_u32(b, &lo);
	*v = (uint64_t)hi << 32 | lo;
	return 0;
}

int buf_get_string(struct buf *b, const uint8_t **p, uint32_t *n)
{
	size_t save = b->off;
	uint32_t len;
	if (buf_get_u32(b, &len) < 0)
		return -1;
	if (buf_remaining(b) < len) {
		b->off = save;
		return -1;
	}
	*p = b->data + b->off;
	*n = len;
	b->off += len;
	return 0;
}

int buf_get_cstring(struct buf *b, char **out)
{
	size_t save = b->off;
	const uint8_t *p;
	uint32_t n;
	if (buf_get_string(b, &p, &n) < 0)
		return -1;
	if (memchr(p, 0, n)) {
		b->off = save;
		return -1;
	}
	char *s = malloc((size_t)n + 1);
	if (!s) {
		b->off = save;
		return -1;
	}
	memcpy(s, p, n);
	s[n] = 0;
	*out = s;
	return 0;
}
