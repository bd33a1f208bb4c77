/*
 * visits-c: a CGI function that counts its visits in the key-value store, using wafer.h.
 *
 *   GET /visits-c                      greeting (config `greeting`, default `hello`) and count
 *   GET /visits-c?fetch=URL            also fetches URL (http/request) and prints its answer
 *   POST /visits-c?publish=TOPIC       also publishes the request body to TOPIC
 *   GET /visits-c?secret=NAME          also prints the length of config value/secret NAME
 *
 * Output: `Content-Type: text/plain`, an empty line, `GREETING, visit N`, then one line per
 * error or extra action. Grants it can use: config, secrets, kv = true, http, publish.
 *
 * Build (as examples/build.sh builds hello-c):
 *   clang -O2 --target=wasm32-wasi --sysroot=/usr -Wall -Wextra -Wl,--strip-all \
 *     -I guests/c -o visits-c.wasm examples/visits-c/visits.c
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wafer.h"

/* The value of query parameter `name` (verbatim, up to the next `&`) as a malloc'd string,
 * or NULL if the query has no such parameter. */
static char *query_param(const char *query, const char *name) {
    size_t n = strlen(name);
    while (query && *query) {
        const char *amp = strchr(query, '&');
        size_t len = amp ? (size_t)(amp - query) : strlen(query);
        if (len > n && memcmp(query, name, n) == 0 && query[n] == '=') {
            char *value = malloc(len - n);
            if (value) {
                memcpy(value, query + n + 1, len - n - 1);
                value[len - n - 1] = '\0';
            }
            return value;
        }
        query = amp ? amp + 1 : NULL;
    }
    return NULL;
}

/* `len` bytes of `s` as a count: surrounding whitespace, an optional `+`, then decimal
 * digits. Anything else (or a number too large) counts as 0. */
static unsigned long long parse_count(const char *s, size_t len) {
    unsigned long long v = 0;
    size_t digits = 0;
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    while (len > 0 && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    if (len > 0 && *s == '+') {
        s++;
        len--;
    }
    if (len == 0 || len > 19)
        return 0;
    for (; digits < len; digits++) {
        if (s[digits] < '0' || s[digits] > '9')
            return 0;
        v = v * 10 + (unsigned)(s[digits] - '0');
    }
    return v;
}

/* The whole of stdin in a malloc'd buffer (its length in *len); NULL if out of memory. */
static char *read_stdin(size_t *len) {
    size_t cap = 4096, n = 0, got;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    while ((got = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += got;
        if (n == cap) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                return NULL;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    *len = n;
    return buf;
}

/* Prints `PREFIX: MSG` for a failed result, MSG being the host's whole message. */
static void print_error(const char *prefix, const wafer_result *r) {
    printf("%s: %s\n", prefix, wafer_result_text(r));
}

int main(void) {
    const char *query = getenv("QUERY_STRING");
    wafer_result greeting, count, saved = {1, NULL, 0};
    unsigned long long visit = 0;
    char number[24];
    char *param;

    /* 1. The greeting: `hello` unless config says otherwise. */
    greeting = wafer_config_get("greeting");

    /* 2. The visit count: kv `visits` + 1, stored back; 0 if the store fails. */
    count = wafer_kv_get("visits");
    if (count.ok || wafer_error_code(&count) == WAFER_NOT_FOUND) {
        visit = (count.ok ? parse_count(count.data, count.len) : 0) + 1;
        snprintf(number, sizeof number, "%llu", visit);
        saved = wafer_kv_set("visits", number, strlen(number));
        if (!saved.ok)
            visit = 0;
    }

    /* 3. The log line. */
    wafer_logf(WAFER_LOG_INFO, "visit %llu", visit);

    /* 4. The response. */
    fputs("Content-Type: text/plain\n\n", stdout);
    if (greeting.ok)
        fwrite(greeting.data, 1, greeting.len, stdout);
    else
        fputs("hello", stdout);
    printf(", visit %llu\n", visit);
    if (!greeting.ok && wafer_error_code(&greeting) != WAFER_NOT_FOUND)
        print_error("config error", &greeting);
    if (!count.ok && wafer_error_code(&count) != WAFER_NOT_FOUND)
        print_error("kv error", &count);
    else if (!saved.ok)
        print_error("kv error", &saved);
    wafer_result_free(&greeting);
    wafer_result_free(&count);
    wafer_result_free(&saved);

    /* 5. ?fetch=URL: GET it. */
    if ((param = query_param(query, "fetch"))) {
        int status;
        wafer_result page = wafer_http_get(param, &status);
        if (page.ok) {
            printf("fetch: %d ", status);
            fwrite(page.data, 1, page.len, stdout);
            putchar('\n');
        } else {
            print_error("fetch error", &page);
        }
        wafer_result_free(&page);
        free(param);
    }

    /* 6. ?publish=TOPIC: publish the request body. */
    if ((param = query_param(query, "publish"))) {
        size_t len = 0;
        char *body = read_stdin(&len);
        if (body) {
            wafer_result sent = wafer_publish(param, body, len);
            if (sent.ok)
                puts("published");
            else
                print_error("publish error", &sent);
            wafer_result_free(&sent);
            free(body);
        } else {
            puts("publish error: failed: out of memory");
        }
        free(param);
    }

    /* 7. ?secret=NAME: its length, never its value. */
    if ((param = query_param(query, "secret"))) {
        wafer_result secret = wafer_config_get(param);
        if (secret.ok)
            printf("secret length: %zu\n", secret.len);
        else
            print_error("secret error", &secret);
        wafer_result_free(&secret);
        free(param);
    }

    fflush(stdout);
    return 0;
}
