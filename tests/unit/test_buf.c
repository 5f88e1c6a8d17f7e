/* test_buf.c: the wire buffer — encoding, bounds checks on every getter, growth. */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "check.h"

static void test_round_trip(void)
{
	struct buf b;
	buf_init(&b);
	buf_put_u8(&b, 0xab);
	buf_put_u32(&b, 0x01020304);
	buf_put_u64(&b, 0x1122334455667788ull);
	buf_put_cstring(&b, "hello");
	buf_put_string(&b, "a\0b", 3);
	CHECK(buf_ok(&b));
	CHECK(b.len == 1 + 4 + 8 + 4 + 5 + 4 + 3);
	CHECK(b.data[1] == 1 && b.data[4] == 4); /* big endian */

	uint8_t u8;
	uint32_t u32;
	uint64_t u64;
	char *s = NULL;
	const uint8_t *p;
	uint32_t n;
	CHECK(buf_get_u8(&b, &u8) == 0 && u8 == 0xab);
	CHECK(buf_get_u32(&b, &u32) == 0 && u32 == 0x01020304);
	CHECK(buf_get_u64(&b, &u64) == 0 && u64 == 0x1122334455667788ull);
	CHECK(buf_get_cstring(&b, &s) == 0 && s && !strcmp(s, "hello"));
	free(s);
	s = NULL;
	/* A string holding a NUL is refused as a C string, and the cursor stays. */
	size_t before = b.off;
	CHECK(buf_get_cstring(&b, &s) == -1 && s == NULL && b.off == before);
	CHECK(buf_get_string(&b, &p, &n) == 0 && n == 3 && p[1] == 0);
	CHECK(buf_remaining(&b) == 0);
	CHECK(buf_get_u8(&b, &u8) == -1);
	buf_free(&b);
}

static void test_bounds(void)
{
	struct buf b;
	buf_init(&b);
	buf_put_u32(&b, 100); /* claims 100 bytes */
	buf_put_bytes(&b, "abc", 3);
	const uint8_t *p;
	uint32_t n, u32;
	CHECK(buf_get_string(&b, &p, &n) == -1);
	CHECK(b.off == 0); /* a failed get consumes nothing */
	buf_reset(&b);
	buf_put_bytes(&b, "\x00\x00", 2);
	CHECK(buf_get_u32(&b, &u32) == -1);
	uint64_t u64;
	CHECK(buf_get_u64(&b, &u64) == -1);
	CHECK(buf_skip(&b, 3) == -1 && buf_skip(&b, 2) == 0);
	buf_put_u32(&b, 0);
	buf_set_u32_at(&b, 2, 7);
	CHECK(buf_get_u32(&b, &u32) == 0 && u32 == 7);
	buf_set_u32_at(&b, b.len - 2, 1); /* would run past the end */
	CHECK(!buf_ok(&b));
	buf_free(&b);
}

static void test_growth(void)
{
	struct buf b;
	buf_init(&b);
	char chunk[1000];
	memset(chunk, 'x', sizeof(chunk));
	for (int i = 0; i < 5000; i++)
		buf_put_bytes(&b, chunk, sizeof(chunk));
	CHECK(buf_ok(&b) && b.len == 5000000 && b.cap >= b.len);
	CHECK(b.data[4999999] == 'x');
	buf_reset(&b);
	CHECK(b.len == 0 && b.cap >= 5000000);
	buf_free(&b);
	CHECK(b.data == NULL && b.cap == 0);
}

int main(void)
{
	test_round_trip();
	test_bounds();
	test_growth();
	return check_done();
}
