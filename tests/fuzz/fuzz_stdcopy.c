/* fuzz_stdcopy.c: libFuzzer target for the exec bridge's routing of what the Docker daemon sends
 * on a hijacked exec stream (lib/docker/docker_exec.c, dexec_demux): stdcopy frames (8-byte
 * header: stream, 3 zero bytes, u32 length) or raw TTY bytes, and the "SMPID:<pid>\n" header the
 * exec wrapper prints first. Input: a flags byte (bit 0 TTY, bit 1 strip the SMPID header, bit 2
 * stderr to the log), a chunk-size byte, then the stream, fed in chunks as reads deliver it. */
#include "docker_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct docker_tr tr;
	fuzz_docker_tr_init(&tr);
	struct dexec_req req = {.tty = data[0] & 1,
				.strip_header = data[0] & 2,
				.stderr_to_log = data[0] & 4,
				.label = "fuzz"};
	size_t chunk = (size_t)data[1] + 1;
	struct dexec *x = dexec_new(&tr, &req);
	struct buf in;
	if (x && fuzz_copy(&in, data + 2, size - 2) == 0) {
		for (size_t off = 0; off < in.len; off += chunk)
			dexec_demux(x, in.data + off, in.len - off < chunk ? in.len - off : chunk);
		free(in.data);
	}
	if (x)
		dexec_destroy(x);
	fuzz_docker_tr_free(&tr);
	return 0;
}
