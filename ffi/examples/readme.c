/* The README's C example, compiled and run by tests/c_examples.rs so it stays true. */
#include <stdio.h>
#include "spike.h"

int main(void) {
  spike_client *c = NULL; spike_secret *s = NULL; spike_str v; char err[1024];
  const char *keys[] = {"pass"}, *vals[] = {"s3cr3t"};
  int rc = spike_client_new_from_env(&c) || spike_client_put_secret(c, "app/db", keys, vals, 1) ||
           spike_client_get_secret(c, "app/db", 0, &s) || spike_secret_lookup(s, "pass", &v);
  if (rc) { spike_last_error(err, sizeof err, NULL); fprintf(stderr, "spike: %s\n", err); }
  else printf("pass = %.*s\n", (int)v.len, v.data);
  spike_secret_free(s); spike_client_free(c);  /* free(NULL) is fine; values are zeroized */
  return rc;
}
