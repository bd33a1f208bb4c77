/* A CGI function (WAGI) in C, built with clang and wasi-libc: Wafer runs main once per
 * request, with the request in the environment (REQUEST_METHOD, PATH_INFO, QUERY_STRING,
 * HTTP_*) and its body on stdin. What it prints is the response: headers, a blank line, the
 * body. */
#include <stdio.h>
#include <stdlib.h>

static const char *env(const char *name) {
    const char *value = getenv(name);
    return value ? value : "";
}

int main(void) {
    size_t in = 0;
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, stdin)) > 0)
        in += n;
    printf("Content-Type: text/plain; charset=utf-8\n\n");
    printf("Hello from {{name}}! (%s %s, %zu bytes in)\n", env("REQUEST_METHOD"),
           env("PATH_INFO"), in);
    return fflush(stdout) == 0 ? 0 : 1;
}
