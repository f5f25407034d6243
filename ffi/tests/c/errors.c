/*
 * errors.c: spike-ffi's error paths, from C. Run as `errors <case>`; tests/c_examples.rs sets
 * the environment each case needs. Prints "ok <case>" and exits 0 when every check passed.
 *
 * Cases: args, endpoint_not_set, workload_api_down (no server needed); client_args, not_found,
 * forbidden, nexus_down; jwt, jwt_no_url (JWT-SVID mode against Nexus's JWT listener).
 */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"

static const char INVALID_UTF8[] = {'a', '/', (char)0xff, (char)0xfe, 0};

/* Argument checks that need no server. */
static void case_args(void) {
  spike_client *client = (spike_client *)1; /* must be reset to NULL on failure */
  spike_client_builder *builder = NULL;
  spike_secret *secret = (spike_secret *)1;
  spike_str view;
  char buf[16];
  size_t n = 99;

  EXPECT_RC(spike_client_new_from_env(NULL), SPIKE_RESULT_NULL_PARAMETER);
  EXPECT_DETAIL("`out` is NULL");
  EXPECT_RC(spike_client_new(INVALID_UTF8, NULL, &client), SPIKE_RESULT_INVALID_UTF8);
  EXPECT_DETAIL("`socket` is not valid UTF-8");
  EXPECT(client == NULL);

  EXPECT_RC(spike_client_builder_new(&builder), SPIKE_RESULT_OK);
  EXPECT(strcmp(last_detail(), "") == 0);
  EXPECT_RC(spike_client_builder_set_url(builder, INVALID_UTF8), SPIKE_RESULT_INVALID_UTF8);
  EXPECT_RC(spike_client_builder_set_socket(builder, NULL), SPIKE_RESULT_NULL_PARAMETER);
  EXPECT_DETAIL("`socket` is NULL");
  EXPECT_RC(spike_client_builder_set_timeout_ms(builder, 0), SPIKE_RESULT_INVALID_ARGUMENT);
  EXPECT_RC(spike_client_builder_set_retry_attempts(builder, 0), SPIKE_RESULT_INVALID_ARGUMENT);
  EXPECT_RC(spike_client_builder_set_nexus_id(NULL, "x"), SPIKE_RESULT_NULL_PARAMETER);
  EXPECT_DETAIL("`builder` is NULL");
  EXPECT_RC(spike_client_builder_set_jwt_audience(NULL, "spike-nexus"),
            SPIKE_RESULT_NULL_PARAMETER);
  EXPECT_DETAIL("`builder` is NULL");
  EXPECT_RC(spike_client_builder_set_jwt_audience(builder, NULL), SPIKE_RESULT_NULL_PARAMETER);
  EXPECT_DETAIL("`audience` is NULL");
  EXPECT_RC(spike_client_builder_set_jwt_audience(builder, INVALID_UTF8),
            SPIKE_RESULT_INVALID_UTF8);
  EXPECT_DETAIL("`audience` is not valid UTF-8");
  EXPECT_RC(spike_client_builder_set_jwt_audience(builder, " "), SPIKE_RESULT_INVALID_ARGUMENT);
  EXPECT_DETAIL("audience");
  EXPECT_RC(spike_client_builder_set_jwt_audience(builder, "spike-nexus"), SPIKE_RESULT_OK);
  /* build consumes the builder even when `out` is NULL */
  EXPECT_RC(spike_client_builder_build(builder, NULL), SPIKE_RESULT_NULL_PARAMETER);
  EXPECT_RC(spike_client_builder_build(NULL, &client), SPIKE_RESULT_NULL_PARAMETER);

  EXPECT_RC(spike_client_put_secret(NULL, "a", NULL, NULL, 0), SPIKE_RESULT_NULL_PARAMETER);
  EXPECT_DETAIL("`client` is NULL");
  EXPECT_RC(spike_client_get_secret(NULL, "a", 0, &secret), SPIKE_RESULT_NULL_PARAMETER);
  EXPECT(secret == NULL);
  EXPECT_RC(spike_client_get_secret(NULL, "a", 0, NULL), SPIKE_RESULT_NULL_PARAMETER);
  EXPECT_RC(spike_client_list_secrets(NULL, NULL), SPIKE_RESULT_NULL_PARAMETER);
  EXPECT_RC(spike_client_delete_secret(NULL, "a", NULL, 0), SPIKE_RESULT_NULL_PARAMETER);
  EXPECT_RC(spike_client_create_policy(NULL, "p", ".*", ".*", SPIKE_PERMISSION_READ),
            SPIKE_RESULT_NULL_PARAMETER);
  EXPECT_RC(spike_client_encrypt(NULL, NULL, 0, NULL), SPIKE_RESULT_NULL_PARAMETER);
  EXPECT_RC(spike_secret_get(NULL, 0, &view, &view), SPIKE_RESULT_NULL_PARAMETER);
  EXPECT_RC(spike_str_list_get(NULL, 0, &view), SPIKE_RESULT_NULL_PARAMETER);
  EXPECT(spike_secret_len(NULL) == 0);
  EXPECT(spike_bytes_len(NULL) == 0 && spike_bytes_data(NULL) == NULL);
  EXPECT(spike_secret_metadata_current_version(NULL) == 0);

  /* Freeing NULL is a no-op everywhere. */
  spike_client_free(NULL);
  spike_client_builder_free(NULL);
  spike_secret_free(NULL);
  spike_secret_metadata_free(NULL);
  spike_str_list_free(NULL);
  spike_bytes_free(NULL);

  /* Messages: every code has one; unknown codes say so; small buffers truncate safely. */
  EXPECT(strstr(message_of(SPIKE_RESULT_FORBIDDEN), "access denied") != NULL);
  EXPECT(strstr(message_of(SPIKE_RESULT_NOT_FOUND), "not found") != NULL);
  EXPECT(strstr(message_of(SPIKE_RESULT_NEXUS_UNREACHABLE), "cannot reach") != NULL);
  EXPECT(strcmp(message_of(SPIKE_RESULT_OK), "success") == 0);
  EXPECT(strcmp(message_of((spike_result)12345), "unknown spike_result code 12345") == 0);
  spike_error_message(SPIKE_RESULT_FORBIDDEN, buf, sizeof buf, &n);
  EXPECT(n == sizeof buf - 1 && buf[n] == '\0');
  spike_error_message(SPIKE_RESULT_FORBIDDEN, NULL, 0, &n);
  EXPECT(n == 0);
  EXPECT(strncmp(spike_version(), "spike-ffi/", 10) == 0);
}

/* Argument checks that need a client (and so a Workload API), plus local validation. */
static void case_client_args(void) {
  spike_client *client = NULL;
  spike_client *bad = (spike_client *)1;
  spike_secret *secret = NULL;
  spike_bytes *bytes = NULL;
  spike_str key, value;
  const char *keys[] = {"k"};
  const char *values[] = {"v"};
  const char *null_values[] = {NULL};
  const char *bad_values[] = {INVALID_UTF8};
  const uint8_t garbage[] = {1, 2, 3};

  EXPECT_RC(spike_client_new(NULL, "http://127.0.0.1:1", &bad), SPIKE_RESULT_INVALID_ARGUMENT);
  EXPECT_DETAIL("https://");
  EXPECT(bad == NULL);

  EXPECT_RC(spike_client_new_from_env(&client), SPIKE_RESULT_OK);
  if (client == NULL) return;
  EXPECT_RC(spike_client_put_secret(client, NULL, keys, values, 1), SPIKE_RESULT_NULL_PARAMETER);
  EXPECT_DETAIL("`path` is NULL");
  EXPECT_RC(spike_client_put_secret(client, INVALID_UTF8, keys, values, 1),
            SPIKE_RESULT_INVALID_UTF8);
  EXPECT_DETAIL("`path` is not valid UTF-8");
  EXPECT_RC(spike_client_put_secret(client, "../x", keys, values, 1),
            SPIKE_RESULT_INVALID_ARGUMENT);
  EXPECT_DETAIL("secret path");
  EXPECT_RC(spike_client_put_secret(client, "c/args", NULL, values, 1),
            SPIKE_RESULT_NULL_PARAMETER);
  EXPECT_DETAIL("`keys` is NULL but its length is 1");
  EXPECT_RC(spike_client_put_secret(client, "c/args", keys, null_values, 1),
            SPIKE_RESULT_NULL_PARAMETER);
  EXPECT_DETAIL("`values[0]` is NULL");
  EXPECT_RC(spike_client_put_secret(client, "c/args", keys, bad_values, 1),
            SPIKE_RESULT_INVALID_UTF8);
  EXPECT_DETAIL("`values[0]` is not valid UTF-8");
  EXPECT_RC(spike_client_put_secret(client, "c/args", NULL, NULL, 0),
            SPIKE_RESULT_INVALID_ARGUMENT);
  EXPECT_RC(spike_client_create_policy(client, "p", ".*", ".*", 0),
            SPIKE_RESULT_INVALID_ARGUMENT);
  EXPECT_RC(spike_client_create_policy(client, "p", ".*", ".*", 1u << 20),
            SPIKE_RESULT_INVALID_ARGUMENT);
  EXPECT_DETAIL("unknown bits");
  EXPECT_RC(spike_client_decrypt(client, garbage, sizeof garbage, &bytes),
            SPIKE_RESULT_INVALID_ARGUMENT);
  EXPECT(bytes == NULL);

  EXPECT_RC(spike_client_put_secret(client, "c/args", keys, values, 1), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_get_secret(client, "c/args", 0, &secret), SPIKE_RESULT_OK);
  EXPECT_RC(spike_secret_get(secret, 1, &key, &value), SPIKE_RESULT_INVALID_ARGUMENT);
  EXPECT_DETAIL("out of range");
  EXPECT_RC(spike_secret_get(secret, 0, NULL, &value), SPIKE_RESULT_NULL_PARAMETER);
  EXPECT_RC(spike_secret_lookup(secret, "absent", &value), SPIKE_RESULT_NOT_FOUND);
  spike_secret_free(secret);
  spike_client_free(client);
}

static void case_not_found(void) {
  spike_client *client = NULL;
  spike_secret *secret = (spike_secret *)1;
  spike_secret_metadata *meta = (spike_secret_metadata *)1;
  const char *keys[] = {"k"};
  const char *values[] = {"v"};

  EXPECT_RC(spike_client_new_from_env(&client), SPIKE_RESULT_OK);
  if (client == NULL) return;
  EXPECT_RC(spike_client_get_secret(client, "c/missing", 0, &secret), SPIKE_RESULT_NOT_FOUND);
  EXPECT(secret == NULL);
  EXPECT_DETAIL("not found");
  EXPECT_RC(spike_client_put_secret(client, "c/present", keys, values, 1), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_get_secret(client, "c/present", 99, &secret), SPIKE_RESULT_NOT_FOUND);
  EXPECT_RC(spike_client_secret_metadata(client, "c/missing", &meta), SPIKE_RESULT_NOT_FOUND);
  EXPECT(meta == NULL);
  spike_client_free(client);
}

static void case_forbidden(void) {
  spike_client *client = NULL;
  spike_secret *secret = NULL;
  spike_bytes *bytes = NULL;
  spike_str_list *list = NULL;
  const char *keys[] = {"k"};
  const char *values[] = {"v"};

  EXPECT_RC(spike_client_new_from_env(&client), SPIKE_RESULT_OK);
  if (client == NULL) return;
  EXPECT_RC(spike_client_get_secret(client, "c/present", 0, &secret), SPIKE_RESULT_FORBIDDEN);
  EXPECT_DETAIL("access denied");
  EXPECT(secret == NULL);
  EXPECT_RC(spike_client_put_secret(client, "c/mine", keys, values, 1), SPIKE_RESULT_FORBIDDEN);
  EXPECT_RC(spike_client_create_policy(client, "grab", ".*", ".*", SPIKE_PERMISSION_SUPER),
            SPIKE_RESULT_FORBIDDEN);
  EXPECT_RC(spike_client_list_policies(client, &list), SPIKE_RESULT_FORBIDDEN);
  EXPECT(list == NULL);
  EXPECT_RC(spike_client_encrypt(client, (const uint8_t *)"x", 1, &bytes),
            SPIKE_RESULT_FORBIDDEN);
  spike_client_free(client);
}

static void case_nexus_down(void) {
  spike_client_builder *builder = NULL;
  spike_client *client = NULL;
  spike_str_list *list = (spike_str_list *)1;
  const char *url = getenv("SPIKE_TEST_DOWN_URL");

  EXPECT(url != NULL);
  if (url == NULL) return;
  EXPECT_RC(spike_client_builder_new(&builder), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_builder_set_url(builder, url), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_builder_set_retry_attempts(builder, 1), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_builder_set_timeout_ms(builder, 5000), SPIKE_RESULT_OK);
  /* Building needs only the Workload API; Nexus is contacted by the first call. */
  EXPECT_RC(spike_client_builder_build(builder, &client), SPIKE_RESULT_OK);
  if (client == NULL) return;
  EXPECT_RC(spike_client_list_secrets(client, &list), SPIKE_RESULT_NEXUS_UNREACHABLE);
  EXPECT(list == NULL);
  EXPECT_DETAIL("cannot reach SPIKE Nexus at");
  EXPECT_DETAIL(url);
  spike_client_free(client);
}

/*
 * JWT-SVID mode, run with SPIFFE_ENDPOINT_SOCKET set to a workload's socket,
 * SPIKE_NEXUS_JWT_API_URL to Nexus's JWT listener and SPIKE_TEST_ADMIN_SOCKET to the Pilot
 * superuser's socket (SPIKE_NEXUS_API_URL: Nexus's mTLS listener). The superuser grants the
 * workload read on c/jwt/ over mTLS; the workload then reads with a bearer token only.
 */
static void case_jwt(void) {
  spike_client *admin = NULL;
  spike_client *app = NULL;
  spike_client *stranger = NULL;
  spike_client_builder *builder = NULL;
  spike_secret *secret = (spike_secret *)1;
  spike_str value;
  const char *keys[] = {"pass"};
  const char *values[] = {"jwt-from-c"};
  const char *admin_socket = getenv("SPIKE_TEST_ADMIN_SOCKET");
  const char *app_id = "^spiffe://spike\\.ist/workload/app$";

  EXPECT(admin_socket != NULL);
  if (admin_socket == NULL) return;
  EXPECT_RC(spike_client_new(admin_socket, NULL, &admin), SPIKE_RESULT_OK);
  if (admin == NULL) return;
  EXPECT_RC(spike_client_put_secret(admin, "c/jwt/db", keys, values, 1), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_put_secret(admin, "c/other/db", keys, values, 1), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_create_policy(admin, "c-jwt-read", app_id, "^c/jwt/.*$",
                                       SPIKE_PERMISSION_READ),
            SPIKE_RESULT_OK);

  /* Socket from SPIFFE_ENDPOINT_SOCKET, URL from SPIKE_NEXUS_JWT_API_URL. */
  EXPECT_RC(spike_client_builder_new(&builder), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_builder_set_jwt_audience(builder, "spike-nexus"), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_builder_set_retry_attempts(builder, 1), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_builder_build(builder, &app), SPIKE_RESULT_OK);
  if (app != NULL) {
    EXPECT_RC(spike_client_get_secret(app, "c/jwt/db", 0, &secret), SPIKE_RESULT_OK);
    EXPECT_RC(spike_secret_lookup(secret, "pass", &value), SPIKE_RESULT_OK);
    EXPECT(str_eq(value, "jwt-from-c"));
    spike_secret_free(secret);
    secret = (spike_secret *)1;
    EXPECT_RC(spike_client_get_secret(app, "c/other/db", 0, &secret), SPIKE_RESULT_FORBIDDEN);
    EXPECT(secret == NULL);
    EXPECT_RC(spike_client_put_secret(app, "c/jwt/db", keys, values, 1), SPIKE_RESULT_FORBIDDEN);
    spike_client_free(app);
  }

  /* A token for another audience is refused by the listener. */
  EXPECT_RC(spike_client_builder_new(&builder), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_builder_set_jwt_audience(builder, "someone-else"), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_builder_set_retry_attempts(builder, 1), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_builder_build(builder, &stranger), SPIKE_RESULT_OK);
  if (stranger != NULL) {
    secret = (spike_secret *)1;
    EXPECT_RC(spike_client_get_secret(stranger, "c/jwt/db", 0, &secret), SPIKE_RESULT_FORBIDDEN);
    EXPECT(secret == NULL);
    spike_client_free(stranger);
  }

  EXPECT_RC(spike_client_delete_policy(admin, "c-jwt-read"), SPIKE_RESULT_OK);
  spike_client_free(admin);
}

/* JWT mode with no URL given and SPIKE_NEXUS_JWT_API_URL unset: refused when building. */
static void case_jwt_no_url(void) {
  spike_client_builder *builder = NULL;
  spike_client *client = (spike_client *)1;
  EXPECT_RC(spike_client_builder_new(&builder), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_builder_set_jwt_audience(builder, "spike-nexus"), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_builder_build(builder, &client), SPIKE_RESULT_INVALID_ARGUMENT);
  EXPECT(client == NULL);
  EXPECT_DETAIL("SPIKE_NEXUS_JWT_API_URL");
}

static void case_workload_api_down(void) {
  spike_client_builder *builder = NULL;
  spike_client *client = (spike_client *)1;
  EXPECT_RC(spike_client_builder_new(&builder), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_builder_set_socket(builder, "unix:///nonexistent/spike-test.sock"),
            SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_builder_set_svid_timeout_ms(builder, 300), SPIKE_RESULT_OK);
  EXPECT_RC(spike_client_builder_build(builder, &client), SPIKE_RESULT_WORKLOAD_API);
  EXPECT(client == NULL);
  EXPECT_DETAIL("unix:///nonexistent/spike-test.sock");
}

static void case_endpoint_not_set(void) {
  spike_client *client = (spike_client *)1;
  EXPECT_RC(spike_client_new_from_env(&client), SPIKE_RESULT_ENDPOINT_NOT_SET);
  EXPECT(client == NULL);
  EXPECT_DETAIL("SPIFFE_ENDPOINT_SOCKET is not set");
}

int main(int argc, char **argv) {
  const char *which = argc > 1 ? argv[1] : "";
  if (strcmp(which, "args") == 0) {
    case_args();
  } else if (strcmp(which, "client_args") == 0) {
    case_client_args();
  } else if (strcmp(which, "not_found") == 0) {
    case_not_found();
  } else if (strcmp(which, "forbidden") == 0) {
    case_forbidden();
  } else if (strcmp(which, "nexus_down") == 0) {
    case_nexus_down();
  } else if (strcmp(which, "jwt") == 0) {
    case_jwt();
  } else if (strcmp(which, "jwt_no_url") == 0) {
    case_jwt_no_url();
  } else if (strcmp(which, "workload_api_down") == 0) {
    case_workload_api_down();
  } else if (strcmp(which, "endpoint_not_set") == 0) {
    case_endpoint_not_set();
  } else {
    fprintf(stderr, "unknown case %s\n", which);
    return 2;
  }
  if (failures > 0) {
    fprintf(stderr, "%d check(s) failed in %s\n", failures, which);
    return 1;
  }
  printf("ok %s\n", which);
  return 0;
}
