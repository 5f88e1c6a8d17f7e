/* fuzz_http_upgrade.c: libFuzzer target for the parsing of the Docker daemon's answer to the
 * upgraded exec start request (lib/docker/docker_api.c, as docker_api_hijack does it): the head's
 * end, the status line, an error's Content-Length and JSON message; after a 101 or 200 the bytes
 * that came with the head go to the exec bridge (dexec_demux) as the stream's first bytes. The
 * input is what the daemon sends, as read into the buffer (exactly its size). */
#include "docker_fuzz.h"

static void stream_start(const uint8_t *p, size_t n)
{
	struct docker_tr tr;
	fuzz_docker_tr_init(&tr);
	struct dexec_req req = {.strip_header = true, .label = "fuzz"};
	struct dexec *x = dexec_new(&tr, &req);
	if (x) {
		dexec_demux(x, p, n);
		dexec_destroy(x);
	}
	fuzz_docker_tr_free(&tr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf in;
	if (fuzz_copy(&in, data, size) < 0)
		return 0;
	size_t head = docker_head_len(&in);
	int status = head ? docker_head_status(&in, head) : -1;
	if (status == 101 || status == 200) {
		stream_start(in.data + head, in.len - head);
	} else if (status >= 0) {
		size_t want = docker_error_body_len(&in, head);
		struct buf msg;
		buf_view(&msg, in.data + head, in.len - head < want ? in.len - head : want);
		struct err e;
		docker_http_error(status, &msg, "exec start", &e);
	}
	free(in.data);
	return 0;
}
