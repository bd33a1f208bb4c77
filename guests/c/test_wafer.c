/*
 * Native unit tests of wafer.h's pure parts: UTF-8 check, JSON escaping, base64, payload
 * building, answer parsing, error codes, and the stubbed host calls.
 *
 *   mkdir -p target/guests-c && cc -std=c99 -Wall -Wextra -DWAFER_NATIVE_TEST \
 *     -o target/guests-c/test_wafer guests/c/test_wafer.c && target/guests-c/test_wafer
 *
 * Add -fsanitize=address,undefined to check that malformed input is never read out of bounds.
 */
#include "wafer.h"

static int failures = 0;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);       \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

/* 1 if `got` (len bytes) equals the C string `want`. */
static int same(const char *got, size_t len, const char *want) {
    return got && len == strlen(want) && memcmp(got, want, len) == 0;
}

/* A malloc'd copy of `n` bytes with nothing after them, so a sanitizer catches overreads. */
static char *exact_copy(const char *s, size_t n) {
    char *p = malloc(n ? n : 1);
    if (n)
        memcpy(p, s, n);
    return p;
}

static void test_utf8(void) {
    CHECK(wafer_utf8_valid("", 0));
    CHECK(wafer_utf8_valid("plain ascii", 11));
    CHECK(wafer_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
    CHECK(wafer_utf8_valid("\xed\x9f\xbf", 3));     /* U+D7FF */
    CHECK(wafer_utf8_valid("\xf4\x8f\xbf\xbf", 4)); /* U+10FFFF */
    CHECK(wafer_utf8_valid("a\0b", 3));             /* NUL is valid UTF-8 */
    CHECK(!wafer_utf8_valid("\x80", 1));            /* stray continuation */
    CHECK(!wafer_utf8_valid("\xc0\x80", 2));        /* overlong NUL */
    CHECK(!wafer_utf8_valid("\xc1\xbf", 2));        /* overlong */
    CHECK(!wafer_utf8_valid("\xe0\x80\x80", 3));    /* overlong 3-byte */
    CHECK(!wafer_utf8_valid("\xed\xa0\x80", 3));    /* surrogate U+D800 */
    CHECK(!wafer_utf8_valid("\xf0\x80\x80\x80", 4));/* overlong 4-byte */
    CHECK(!wafer_utf8_valid("\xf4\x90\x80\x80", 4));/* above U+10FFFF */
    CHECK(!wafer_utf8_valid("\xf5\x80\x80\x80", 4));
    CHECK(!wafer_utf8_valid("\xff", 1));
    CHECK(!wafer_utf8_valid("\xc3", 1));            /* truncated */
    CHECK(!wafer_utf8_valid("\xe2\x82", 2));
    CHECK(!wafer_utf8_valid("\xe2\x28\xa1", 3));    /* bad continuation */
    CHECK(!wafer_utf8_valid("\xf0\x9f\x98", 3));
}

static void test_json_quote(void) {
    size_t n;
    char *q = wafer_json_quote("a\"b\\c/\n\t\x01\x1f\x7f \xc3\xa9", 14, &n);
    CHECK(same(q, n, "\"a\\\"b\\\\c/\\u000a\\u0009\\u0001\\u001f\x7f \xc3\xa9\""));
    free(q);
    q = wafer_json_quote("", 0, &n);
    CHECK(same(q, n, "\"\""));
    free(q);
    q = wafer_json_quote("x\0y", 3, &n);
    CHECK(same(q, n, "\"x\\u0000y\""));
    free(q);
}

static void test_base64(void) {
    static const char *const vectors[][2] = {
        {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},         {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
    };
    unsigned char all[256];
    size_t n, m;
    char *e, *d;
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        e = wafer_base64_encode(vectors[i][0], strlen(vectors[i][0]), &n);
        CHECK(same(e, n, vectors[i][1]));
        free(e);
        d = wafer_base64_decode(vectors[i][1], strlen(vectors[i][1]), &n);
        CHECK(same(d, n, vectors[i][0]));
        free(d);
    }
    /* Every byte value, and every length up to 256, round-trips. */
    for (size_t i = 0; i < 256; i++)
        all[i] = (unsigned char)(255 - i);
    for (size_t len = 0; len <= 256; len++) {
        e = wafer_base64_encode(all, len, &n);
        CHECK(e && n == (len + 2) / 3 * 4);
        d = wafer_base64_decode(e, n, &m);
        CHECK(d && m == len && memcmp(d, all, len) == 0);
        free(e);
        free(d);
    }
    e = wafer_base64_encode("\xff\xfe\xfd", 3, &n);
    CHECK(same(e, n, "//79"));
    free(e);
    /* Unpadded input is accepted. */
    d = wafer_base64_decode("Zm9vYg", 6, &n);
    CHECK(same(d, n, "foob"));
    free(d);
    d = wafer_base64_decode("Zm8", 3, &n);
    CHECK(same(d, n, "fo"));
    free(d);
    /* Malformed input is refused. */
    CHECK(wafer_base64_decode("Zm9v!", 5, &n) == NULL);
    CHECK(wafer_base64_decode("Z", 1, &n) == NULL);
    CHECK(wafer_base64_decode("Zm9vY", 5, &n) == NULL);
    CHECK(wafer_base64_decode("Zg=", 3, &n) == NULL);
    CHECK(wafer_base64_decode("Z===", 4, &n) == NULL);
    CHECK(wafer_base64_decode("Zg==Zg==", 8, &n) == NULL);
    CHECK(wafer_base64_decode("Zm 9v", 5, &n) == NULL);
    CHECK(wafer_base64_decode("=", 1, &n) == NULL);
}

static void test_payloads(void) {
    wafer__buf b = {NULL, 0, 0, 0};
    char *s;
    size_t n;
    /* What wafer_kv_set sends for text and for binary values. */
    wafer__buf_str(&b, "{\"key\":");
    wafer__buf_json(&b, "k\"1", 3);
    wafer__buf_bytes_field(&b, "value", "line\n", 5);
    wafer__buf_bytes_field(&b, "value", "\xff\x00\x01", 3);
    wafer__buf_str(&b, "}");
    s = wafer__buf_take(&b, &n);
    CHECK(same(s, n,
               "{\"key\":\"k\\\"1\",\"value\":\"line\\u000a\",\"value_base64\":\"/wAB\"}"));
    free(s);
    /* An empty buffer still hands over an empty string. */
    b = (wafer__buf){NULL, 0, 0, 0};
    s = wafer__buf_take(&b, &n);
    CHECK(same(s, n, ""));
    free(s);
}

/* Parses `json` as an http/request answer; returns 1 if it parsed. */
static int http_answer(const char *json, int *status, char **body, size_t *len) {
    size_t n = strlen(json);
    char *copy = exact_copy(json, n);
    int ok = wafer__parse_http_answer(copy, n, status, body, len);
    free(copy);
    return ok;
}

static void test_http_answer(void) {
    static const char full[] =
        " { \"status\" : 200 ,\n \"headers\": [[\"content-type\", \"text/plain\"],"
        " [\"x-odd\", \"a]}\\\"[{\"]], \"extra\": {\"n\": [1, 2.5e3, true, null, {}]},"
        " \"body\": \"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\\\ \\/ \\b\\f\\n\\r\\t \\ud800x\" } ";
    int status = -1;
    char *body = NULL;
    size_t len = 0;

    CHECK(http_answer(full, &status, &body, &len));
    CHECK(status == 200);
    CHECK(same(body, len,
               "caf\xc3\xa9 \xf0\x9f\x98\x80 \"q\" \\ / \b\f\n\r\t \xef\xbf\xbdx"));
    free(body);

    CHECK(http_answer("{\"status\":404,\"headers\":[],\"body_base64\":\"/wAB\"}", &status, &body,
                      &len));
    CHECK(status == 404 && len == 3 && memcmp(body, "\xff\x00\x01", 3) == 0);
    free(body);

    CHECK(http_answer("{\"body\":\"x\",\"status\":204}", &status, &body, &len));
    CHECK(status == 204 && same(body, len, "x"));
    free(body);

    CHECK(http_answer("{\"status\":200}", &status, &body, &len));
    CHECK(status == 200 && same(body, len, ""));
    free(body);

    CHECK(http_answer("{\"status\":200,\"body\":\"a\\u0000b\"}", &status, &body, &len));
    CHECK(len == 3 && memcmp(body, "a\0b", 3) == 0);
    free(body);

    /* Malformed answers. */
    static const char *const bad[] = {
        "",
        "[]",
        "{}",                                      /* no status */
        "{\"body\":\"x\"}",                        /* no status */
        "{\"status\":\"200\"}",                    /* status not a number */
        "{\"status\":2.5}",
        "{\"status\":1e3}",
        "{\"status\":99999999999}",                /* does not fit */
        "{\"status\":-}",
        "{\"status\":200,}",
        "{\"status\":200 \"body\":\"x\"}",
        "{\"status\":200,\"body\":\"x\"} x",      /* trailing bytes */
        "{\"status\":200,\"body\":\"\\x\"}",      /* bad escape */
        "{\"status\":200,\"body\":\"\\u12G4\"}",
        "{\"status\":200,\"body\":\"\\u12\"}",
        "{\"status\":200,\"body\":\"a\nb\"}",     /* raw control character */
        "{\"status\":200,\"body\":12}",
        "{\"status\":200,\"body_base64\":\"!!\"}",
        "{\"status\":200,\"headers\":[[\"a\",\"b\"]}",
        "{\"status\":200,\"headers\":}",
        "{status:200}",
        "{\"status\":200,\"body\":\"x\\",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        body = NULL;
        int ok = http_answer(bad[i], &status, &body, &len);
        if (ok)
            fprintf(stderr, "accepted malformed answer: %s\n", bad[i]);
        CHECK(!ok);
        CHECK(body == NULL);
    }

    /* Every proper prefix of a valid answer is refused, without reading past its end. */
    for (size_t n = 0; n + 2 < sizeof full; n++) {
        char *copy = exact_copy(full, n);
        body = NULL;
        /* The answer ends with "} " so only the whole thing (less the last space) is valid. */
        CHECK(!wafer__parse_http_answer(copy, n, &status, &body, &len));
        free(copy);
    }
}

/* Mutated answers (a fixed pseudo-random sequence) must never crash or overread. */
static void test_http_answer_mutations(void) {
    static const char seed[] = "{\"status\":200,\"headers\":[[\"a\",\"b\\\"]\"]],"
                               "\"body\":\"x\\u00e9\\ud83d\\ude00\\n\",\"body_base64\":\"Zm8=\"}";
    static const char alphabet[] = "{}[]\",:\\u0123456789abdef -.eE/=+Zn";
    uint32_t rng = 12345;
    size_t n = sizeof seed - 1;
    for (int round = 0; round < 200000; round++) {
        char *copy = exact_copy(seed, n);
        char *body = NULL;
        size_t len, cut = n;
        int status;
        for (int k = 0; k < 3; k++) {
            rng = rng * 1103515245u + 12345u;
            copy[(rng >> 8) % n] = alphabet[(rng >> 20) % (sizeof alphabet - 1)];
        }
        rng = rng * 1103515245u + 12345u;
        if (rng & 0x10000)
            cut = (rng >> 17) % (n + 1);
        if (wafer__parse_http_answer(copy, cut, &status, &body, &len))
            free(body);
        free(copy);
    }
}

static void test_string_array(void) {
    wafer_strings list;
    const char *json = " [ \"a\" , \"b\\u00e9\", \"\" ] ";
    CHECK(wafer__parse_string_array(json, strlen(json), &list));
    CHECK(list.count == 3);
    if (list.count == 3) {
        CHECK(strcmp(list.items[0], "a") == 0);
        CHECK(strcmp(list.items[1], "b\xc3\xa9") == 0);
        CHECK(strcmp(list.items[2], "") == 0);
    }
    wafer_strings_free(&list);
    CHECK(list.count == 0 && list.items == NULL);

    CHECK(wafer__parse_string_array("[]", 2, &list) && list.count == 0);
    wafer_strings_free(&list);

    /* Many keys (the list grows). */
    {
        wafer__buf b = {NULL, 0, 0, 0};
        size_t n;
        char *s;
        wafer__buf_str(&b, "[");
        for (int i = 0; i < 100; i++) {
            char key[16];
            snprintf(key, sizeof key, "k%d", i);
            if (i)
                wafer__buf_str(&b, ",");
            wafer__buf_json(&b, key, strlen(key));
        }
        wafer__buf_str(&b, "]");
        s = wafer__buf_take(&b, &n);
        CHECK(wafer__parse_string_array(s, n, &list) && list.count == 100);
        if (list.count == 100)
            CHECK(strcmp(list.items[99], "k99") == 0);
        wafer_strings_free(&list);
        free(s);
    }

    static const char *const bad[] = {"", "[", "[\"a\"", "[\"a\",]", "[1]", "[\"a\"]x", "{}",
                                      "[\"a\" \"b\"]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *copy = exact_copy(bad[i], strlen(bad[i]));
        CHECK(!wafer__parse_string_array(copy, strlen(bad[i]), &list));
        free(copy);
    }
}

static void test_error_codes(void) {
    static const struct {
        const char *msg;
        wafer_error code;
    } cases[] = {
        {"denied: example.com is not on this function's allow-list", WAFER_DENIED},
        {"not_found: no key visits", WAFER_NOT_FOUND},
        {"invalid: bad JSON", WAFER_INVALID},
        {"too_large: value is over 1 MiB", WAFER_TOO_LARGE},
        {"failed: connection refused", WAFER_FAILED},
        {"failed:", WAFER_FAILED},
        {"no host calls are available to this guest", WAFER_OTHER},
        {"denied", WAFER_OTHER},
        {"deniedx: y", WAFER_OTHER},
        {"not_found_: y", WAFER_OTHER},
        {"", WAFER_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wafer_result r = wafer__fail(cases[i].msg);
        CHECK(!r.ok && wafer_error_code(&r) == cases[i].code);
        CHECK(strcmp(wafer_result_text(&r), cases[i].msg) == 0);
        wafer_result_free(&r);
        wafer_result_free(&r); /* a second free is harmless */
    }
    {
        wafer_result ok = wafer__result(1, "v", 1);
        wafer_result oom = {0, NULL, 0};
        CHECK(wafer_error_code(&ok) == WAFER_OK);
        CHECK(wafer_error_code(&oom) == WAFER_FAILED);
        CHECK(strcmp(wafer_result_text(&oom), "failed: out of memory") == 0);
        wafer_result_free(&ok);
    }
}

/* Natively every host call fails the same way. */
static void test_native_stubs(void) {
    static const char msg[] = "failed: not running inside Wafer";
    wafer_strings keys;
    int status = -1;
    wafer_result results[] = {
        wafer_host_call("kv", "get", "k", 1),
        wafer_config_get("greeting"),
        wafer_kv_get("visits"),
        wafer_kv_set("visits", "1", 1),
        wafer_kv_delete("visits"),
        wafer_kv_list("", &keys),
        wafer_publish("a.b", "\xff", 1),
        wafer_http_get("https://example.com/", &status),
    };
    for (size_t i = 0; i < sizeof results / sizeof results[0]; i++) {
        CHECK(!results[i].ok);
        CHECK(same(results[i].data, results[i].len, msg));
        CHECK(wafer_error_code(&results[i]) == WAFER_FAILED);
        wafer_result_free(&results[i]);
    }
    CHECK(status == 0);
    CHECK(keys.count == 0 && keys.items == NULL);
    CHECK(!wafer_log(WAFER_LOG_INFO, "hello"));
    CHECK(!wafer_logf(WAFER_LOG_WARN, "visit %d", 3));
    {
        wafer_result r = wafer_host_call("kv", "get", NULL, 1);
        CHECK(wafer_error_code(&r) == WAFER_INVALID);
        wafer_result_free(&r);
    }
}

int main(void) {
    test_utf8();
    test_json_quote();
    test_base64();
    test_payloads();
    test_http_answer();
    test_http_answer_mutations();
    test_string_array();
    test_error_codes();
    test_native_stubs();
    if (failures) {
        fprintf(stderr, "test_wafer: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_wafer: all checks passed\n");
    return 0;
}
