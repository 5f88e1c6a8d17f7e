/* fuzz_docker_json.c: libFuzzer target for the Docker daemon's JSON replies as lib/docker reads
 * them: an error response's {"message"} (docker_http_error) and an exec inspect reply's Running
 * and ExitCode (docker_exec_inspect_status). The input is the response body. */
#include "docker_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf body;
	if (fuzz_copy(&body, data, size) < 0)
		return 0;
	struct err e;
	docker_http_error(500, &body, "fuzz", &e);
	json_t *j = json_loadb((const char *)body.data, body.len, 0, NULL);
	int status;
	docker_exec_inspect_status(j, &status);
	json_decref(j);
	free(body.data);
	return 0;
}
