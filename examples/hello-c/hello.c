/* Minimal C guest (clang + wasi-libc): a CGI header and a greeting on stdout. */
#include <stdio.h>

int main(void) {
    if (fputs("Content-Type: text/plain\n\nHello from C!\n", stdout) == EOF)
        return 1;
    return fflush(stdout) == 0 ? 0 : 1;
}
