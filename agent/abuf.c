/* abuf.c: the agent's bounds-checked wire buffer (see abuf.h). */
#include "abuf.h"

#include <stdlib.h>
#include <string.h>

void abuf_init(struct abuf *b)
{
	memset(b, 0, sizeof(*b));
}

void abuf_free(struct abuf *b)
{
	free(b->data);
	abuf_init(b);
}

void abuf_view(struct abuf *b, uint8_t *p, size_t n)
{
	abuf_init(b);
	b->data = p;
	b->len = n;
	b->cap = n;
}

bool abuf_ok(const struct abuf *b)
{
	return !b->err;
}

size_t abuf_remaining(const struct abuf *b)
{
	return b->len - b->off;
}

const uint8_t *abuf_cursor(const struct abuf *b)
{
	return b->data + b->off;
}

void abuf_compact(struct abuf *b)
{
	if (b->off == 0)
		return;
	memmove(b->data, b->data + b->off, b->len - b->off);
	b->len -= b->off;
	b->off = 0;
}

static int abuf_reserve(struct abuf *b, size_t extra)
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
	size_t cap = b->cap ? b->cap : 256;
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

uint8_t *abuf_put_space(struct abuf *b, size_t n)
{
	if (abuf_reserve(b, n) < 0)
		return NULL;
	uint8_t *p = b->data + b->len;
	b->len += n;
	return p;
}

void abuf_truncate(struct abuf *b, size_t len)
{
	if (len < b->len)
		b->len = len;
	if (b->off > b->len)
		b->off = b->len;
}

static void abuf_put_bytes(struct abuf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	uint8_t *dst = abuf_put_space(b, n);
	if (dst)
		memcpy(dst, p, n);
}

void abuf_put_u8(struct abuf *b, uint8_t v)
{
	abuf_put_bytes(b, &v, 1);
}

void abuf_put_u32(struct abuf *b, uint32_t v)
{
	uint8_t x[4] = {v >> 24, v >> 16, v >> 8, v};
	abuf_put_bytes(b, x, 4);
}

void abuf_put_u64(struct abuf *b, uint64_t v)
{
	abuf_put_u32(b, (uint32_t)(v >> 32));
	abuf_put_u32(b, (uint32_t)v);
}

void abuf_put_string(struct abuf *b, const void *p, size_t n)
{
	if (n > UINT32_MAX) {
		b->err = true;
		return;
	}
	abuf_put_u32(b, (uint32_t)n);
	abuf_put_bytes(b, p, n);
}

void abuf_put_cstring(struct abuf *b, const char *s)
{
	abuf_put_string(b, s, strlen(s));
}

void abuf_set_u32_at(struct abuf *b, size_t pos, uint32_t v)
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

int abuf_peek_u32(const struct abuf *b, uint32_t *v)
{
	if (abuf_remaining(b) < 4)
		return -1;
	const uint8_t *x = b->data + b->off;
	*v = (uint32_t)x[0] << 24 | (uint32_t)x[1] << 16 | (uint32_t)x[2] << 8 | x[3];
	return 0;
}

int abuf_get_u8(struct abuf *b, uint8_t *v)
{
	if (abuf_remaining(b) < 1)
		return -1;
	*v = b->data[b->off++];
	return 0;
}

int abuf_get_u32(struct abuf *b, uint32_t *v)
{
	if (abuf_peek_u32(b, v) < 0)
		return -1;
	b->off += 4;
	return 0;
}

int abuf_get_u64(struct abuf *b, uint64_t *v)
{
	uint32_t hi, lo;
	if (abuf_remaining(b) < 8 || abuf_get_u32(b, &hi) < 0 || abuf_get_u32(b, &lo) < 0)
		return -1;
	*v = (uint64_t)hi << 32 | lo;
	return 0;
}

int abuf_get_string(struct abuf *b, const uint8_t **p, uint32_t *n)
{
	uint32_t len;
	if (abuf_peek_u32(b, &len) < 0 || abuf_remaining(b) - 4 < len)
		return -1;
	b->off += 4;
	*p = b->data + b->off;
	*n = len;
	b->off += len;
	return 0;
}

int abuf_get_cstring(struct abuf *b, char **out)
{
	size_t save = b->off;
	const uint8_t *p;
	uint32_t n;
	if (abuf_get_string(b, &p, &n) < 0)
		return -1;
	char *s = NULL;
	if (memchr(p, 0, n) || !(s = malloc((size_t)n + 1))) {
		b->off = save;
		return -1;
	}
	memcpy(s, p, n);
	s[n] = 0;
	*out = s;
	return 0;
}
