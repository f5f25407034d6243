/*
 * api_loop.c: every spike-ffi call once per iteration, checking results and freeing every
 * object. Run as `api_loop <iterations>` with a superuser identity in SPIFFE_ENDPOINT_SOCKET;
 * tests/c_examples.rs runs it once plainly and again under valgrind to prove nothing leaks.
 * Prints "ok <iterations>" and exits 0 when every check passed.
 */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"

static void iteration(spike_client *client, int i) {
  char path[64], value[64];
  const char *keys[] = {"user", "pass"};
  const char *values[] = {"admin", value};
  const char *policy_name = "c-loop";
  spike_secret *secret = NULL;
  spike_secret_metadata *meta = NULL;
  spike_str_list *list = NULL;
  spike_bytes *sealed = NULL, *opened = NULL;
  spike_secret_version info;
  spike_str key, got;
  uint64_t latest;
  size_t j;
  int found;

  snprintf(path, sizeof path, "c/loop/%d", i % 3);
  snprintf(value, sizeof value, "s3cr3t-%d", i);

  /* put (twice, so a live version remains when the latest is deleted below), then get the
   * latest version as an iterable of pairs */
  EXPECT_RC(spike_client_put_secret(client, path, keys, values, 1), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_put_secret(client, path, keys, values, 2), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_get_secret(client, path, 0, &secret), SPIKE_RESULT_OK);
  EXPECT(spike_secret_len(secret) == 2);
  for (j = 0; j < spike_secret_len(secret); j++) {
    EXPECT_RC(spike_secret_get(secret, j, &key, &got), SPIKE_RESULT_OK);
    if (str_eq(key, "pass")) EXPECT(str_eq(got, value));
    if (str_eq(key, "user")) EXPECT(str_eq(got, "admin"));
    EXPECT(got.data[got.len] == '\0');
  }
  spike_secret_free(secret);
  secret = NULL;

  /* metadata, then a specific version */
  EXPECT_RC(spike_client_secret_metadata(client, path, &meta), SPIKE_RESULT_OK);
  latest = spike_secret_metadata_current_version(meta);
  EXPECT(latest >= 1);
  EXPECT(spike_secret_metadata_versions_len(meta) >= 1);
  EXPECT(spike_secret_metadata_max_versions(meta) >= 1);
  EXPECT(spike_secret_metadata_created_time(meta) > 1600000000);
  EXPECT_RC(spike_secret_metadata_version(meta, 0, &info), SPIKE_RESULT_OK);
  EXPECT(info.version >= 1 && info.created_time > 1600000000);
  spike_secret_metadata_free(meta);
  EXPECT_RC(spike_client_get_secret(client, path, latest, &secret), SPIKE_RESULT_OK);
  EXPECT_RC(spike_secret_lookup(secret, "pass", &got), SPIKE_RESULT_OK);
  EXPECT(str_eq(got, value));
  spike_secret_free(secret);
  secret = NULL;

  /* delete the latest version, see it gone, undelete it */
  EXPECT_RC(spike_client_delete_secret(client, path, &latest, 1), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_get_secret(client, path, latest, &secret), SPIKE_RESULT_NOT_FOUND);
  EXPECT_RC(spike_client_secret_metadata(client, path, &meta), SPIKE_RESULT_OK);
  for (j = 0; j < spike_secret_metadata_versions_len(meta); j++) {
    EXPECT_RC(spike_secret_metadata_version(meta, j, &info), SPIKE_RESULT_OK);
    if (info.version == latest) EXPECT(info.deleted && info.deleted_time > 0);
  }
  spike_secret_metadata_free(meta);
  EXPECT_RC(spike_client_undelete_secret(client, path, &latest, 1), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_get_secret(client, path, 0, &secret), SPIKE_RESULT_OK);
  spike_secret_free(secret);

  /* list */
  EXPECT_RC(spike_client_list_secrets(client, &list), SPIKE_RESULT_OK);
  found = 0;
  for (j = 0; j < spike_str_list_len(list); j++) {
    EXPECT_RC(spike_str_list_get(list, j, &got), SPIKE_RESULT_OK);
    if (str_eq(got, path)) found = 1;
  }
  EXPECT(found);
  spike_str_list_free(list);

  /* policies */
  EXPECT_RC(spike_client_create_policy(client, policy_name, "spiffe://spike\\.ist/c/.*",
                                       "c/loop/.*",
                                       SPIKE_PERMISSION_READ | SPIKE_PERMISSION_LIST),
            SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_list_policies(client, &list), SPIKE_RESULT_OK);
  found = 0;
  for (j = 0; j < spike_str_list_len(list); j++) {
    EXPECT_RC(spike_str_list_get(list, j, &got), SPIKE_RESULT_OK);
    if (str_eq(got, policy_name)) found = 1;
  }
  EXPECT(found);
  spike_str_list_free(list);
  EXPECT_RC(spike_client_delete_policy(client, policy_name), SPIKE_RESULT_OK);

  /* cipher */
  EXPECT_RC(spike_client_encrypt(client, (const uint8_t *)value, strlen(value), &sealed),
            SPIKE_RESULT_OK);
  EXPECT(spike_bytes_len(sealed) > strlen(value));
  EXPECT_RC(spike_client_decrypt(client, spike_bytes_data(sealed), spike_bytes_len(sealed),
                                 &opened),
            SPIKE_RESULT_OK);
  EXPECT(spike_bytes_len(opened) == strlen(value) &&
         memcmp(spike_bytes_data(opened), value, strlen(value)) == 0);
  spike_bytes_free(sealed);
  spike_bytes_free(opened);
}

int main(int argc, char **argv) {
  int iterations = argc > 1 ? atoi(argv[1]) : 1;
  spike_client *client = NULL;
  spike_client *second = NULL;
  int i;

  /* A client that is created and freed at once must release its runtime too. */
  EXPECT_RC(spike_client_new_from_env(&second), SPIKE_RESULT_OK);
  spike_client_free(second);

  EXPECT_RC(spike_client_new_from_env(&client), SPIKE_RESULT_OK);
  if (client == NULL) return 1;
  for (i = 0; i < iterations && failures == 0; i++) iteration(client, i);
  spike_client_free(client);
  if (failures > 0) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("ok %d\n", iterations);
  return 0;
}
