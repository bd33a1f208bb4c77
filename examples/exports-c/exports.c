// Plain exports in C (Wafer's "exports" ABI; see docs/calls.md).
//
// Numbers cross directly. A string or byte argument arrives as (ptr, len) in a buffer the
// host got from `allocate` and frees with `deallocate` after the call; a string or byte
// result leaves as one 64-bit integer, (ptr << 32) | len, of a buffer allocated here, which
// the host frees with `deallocate`.
//
// Build: clang --target=wasm32-wasi -O2 -mexec-model=reactor -o exports-c.wasm exports.c
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT(name) __attribute__((export_name(name)))

EXPORT("allocate") void *allocate(int32_t len) { return malloc(len > 0 ? (size_t)len : 1); }

EXPORT("deallocate") void deallocate(void *ptr, int32_t len) {
  (void)len;
  free(ptr);
}

static int64_t pack(const void *ptr, uint32_t len) {
  return (int64_t)(((uint64_t)(uintptr_t)ptr << 32) | len);
}

// sum(3, 2) -> 5
EXPORT("sum") int32_t sum(int32_t a, int32_t b) { return a + b; }

// greet("world") -> "Hello, world!"
EXPORT("greet") int64_t greet(const char *name, int32_t len) {
  static const char prefix[] = "Hello, ";
  size_t n = sizeof prefix - 1;
  char *out = allocate((int32_t)(n + (size_t)len + 1));
  memcpy(out, prefix, n);
  memcpy(out + n, name, (size_t)len);
  out[n + (size_t)len] = '!';
  return pack(out, (uint32_t)(n + (size_t)len + 1));
}
