/*
 * put_get.c: write a secret to SPIKE Nexus and read it back, from C.
 *
 * Configuration comes from SPIKE's environment variables: SPIFFE_ENDPOINT_SOCKET (the
 * Workload API socket that hands this process its SPIFFE identity) and SPIKE_NEXUS_API_URL.
 *
 *   cc -std=c11 -Iffi/include ffi/examples/put_get.c -Ltarget/release -lspike_ffi \
 *      -Wl,-rpath,$PWD/target/release -o put_get
 *   ./put_get [path] [value]
 *
 * Exits 0 and prints "greeting = <value>" on success; prints the error and exits 1 otherwise.
 */
#include <stdio.h>

#include "spike.h"

static void report(const char *what, spike_result rc) {
  char message[512];
  char detail[1024];
  spike_error_message(rc, message, sizeof message, NULL);
  spike_last_error(detail, sizeof detail, NULL);
  fprintf(stderr, "put_get: %s failed (%u): %s\n  %s\n", what, (unsigned)rc, message, detail);
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "examples/c/put-get";
  const char *value = argc > 2 ? argv[2] : "hello from C";
  const char *keys[] = {"greeting"};
  const char *values[] = {value};
  spike_client *client = NULL;
  spike_secret *secret = NULL;
  spike_str got;
  int status = 1;
  spike_result rc;

  rc = spike_client_new_from_env(&client);
  if (rc != SPIKE_RESULT_OK) {
    report("connecting", rc);
    goto cleanup;
  }
  rc = spike_client_put_secret(client, path, keys, values, 1);
  if (rc != SPIKE_RESULT_OK) {
    report("put", rc);
    goto cleanup;
  }
  rc = spike_client_get_secret(client, path, 0, &secret);
  if (rc != SPIKE_RESULT_OK) {
    report("get", rc);
    goto cleanup;
  }
  rc = spike_secret_lookup(secret, "greeting", &got);
  if (rc != SPIKE_RESULT_OK) {
    report("lookup", rc);
    goto cleanup;
  }
  printf("greeting = %.*s\n", (int)got.len, got.data);
  status = 0;

cleanup:
  spike_secret_free(secret); /* zeroizes the value */
  spike_client_free(client);
  return status;
}
