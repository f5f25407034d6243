/* check.h: tiny assertion helpers for the C tests of spike-ffi (tests/c_examples.rs). */
#ifndef SPIKE_TEST_CHECK_H
#define SPIKE_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

#include "spike.h"

static int failures = 0;

static inline const char *last_detail(void) {
  static char detail[2048];
  spike_last_error(detail, sizeof detail, NULL);
  return detail;
}

static inline const char *message_of(spike_result rc) {
  static char message[512];
  spike_error_message(rc, message, sizeof message, NULL);
  return message;
}

/* Checks that `call` returns `want`; on a mismatch prints both codes and the detail. */
#define EXPECT_RC(call, want)                                                                  \
  do {                                                                                         \
    spike_result got_ = (call);                                                                \
    if (got_ != (want)) {                                                                      \
      fprintf(stderr, "%s:%d: %s returned %u, want %u (%s)\n  detail: %s\n", __FILE__,         \
              __LINE__, #call, (unsigned)got_, (unsigned)(want), #want, last_detail());        \
      failures++;                                                                              \
    }                                                                                          \
  } while (0)

/* Checks that this thread's last error detail contains `needle`. */
#define EXPECT_DETAIL(needle)                                                                  \
  do {                                                                                         \
    const char *d_ = last_detail();                                                            \
    if (strstr(d_, (needle)) == NULL) {                                                        \
      fprintf(stderr, "%s:%d: detail %s lacks %s\n", __FILE__, __LINE__, d_, (needle));      \
      failures++;                                                                              \
    }                                                                                          \
  } while (0)

#define EXPECT(cond)                                                                           \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);                      \
      failures++;                                                                              \
    }                                                                                          \
  } while (0)

/* Compares a view with a C string. */
static inline int str_eq(spike_str s, const char *want) {
  return s.len == strlen(want) && memcmp(s.data, want, s.len) == 0;
}

#endif
