/* fuzz_sftp_codec.c: libFuzzer target for lib/sftp/sftp_codec.c, the parsers of SFTP v3 reply
 * payloads. The first byte picks the parser, the rest is the payload as a server would send it;
 * every parser must reject what it cannot read without reading past the buffer. */
#include <stdlib.h>
#include <string.h>

#include "sftp/sftp_internal.h"

static void parse_one(uint8_t which, struct buf *b)
{
	uint32_t u32;
	unsigned ext;
	char *name = NULL;
	const uint8_t *p;
	struct sftp_attrs a;
	struct sftp_handle h;
	struct sftp_limits l;
	struct statvfs st;
	switch (which % 8) {
	case 0:
		sftp_parse_status(b, &u32);
		break;
	case 1:
		sftp_parse_handle(b, &h);
		break;
	case 2:
		sftp_parse_single_name(b, &name);
		free(name);
		break;
	case 3:
		sftp_parse_version(b, &u32, &ext);
		break;
	case 4:
		sftp_parse_limits(b, &l);
		break;
	case 5:
		sftp_parse_statvfs(b, &st);
		break;
	case 6:
		sftp_parse_data(b, &p, &u32);
		break;
	default:
		/* ATTRS replies, back to back, until one fails */
		while (buf_remaining(b) && sftp_attrs_decode(b, &a) == 0)
			;
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	/* A private copy, so that a read past the payload is an out-of-bounds access. */
	uint8_t *copy = malloc(size - 1 ? size - 1 : 1);
	if (!copy)
		return 0;
	memcpy(copy, data + 1, size - 1);
	struct buf b;
	buf_view(&b, copy, size - 1);
	parse_one(data[0], &b);
	sftp_errno_from_message(copy, size - 1);
	free(copy);
	return 0;
}
