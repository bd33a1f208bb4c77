/*
 * wafer.h: the Wafer host-call SDK for C guests (clang --target=wasm32-wasi, wasi-libc).
 *
 * A single header of `static inline` functions: include it in any number of files, nothing to
 * define, nothing to link. Every call goes through the waPC `__host_call` import (module
 * `wapc`, binding `wafer`), as docs/host-calls.md describes.
 *
 * Results. Every call returns a `wafer_result` that owns a malloc'd buffer: free it with
 * wafer_result_free(). When `ok` is 1, `data`/`len` is the answer (a kv value, a config value,
 * an HTTP body); when `ok` is 0 it is the host's error message, which starts with a code word
 * (`denied: ...`, `not_found: ...`); wafer_error_code() turns that word into an enum. `data` is
 * always NUL-terminated (the NUL is not counted in `len`), so text answers are C strings;
 * it is NULL only if memory ran out, and wafer_result_text() never returns NULL.
 *
 *     #include "wafer.h"
 *
 *     wafer_result r = wafer_kv_get("visits");
 *     if (r.ok)
 *         printf("visits = %s\n", r.data);
 *     else if (wafer_error_code(&r) == WAFER_NOT_FOUND)
 *         printf("no visits yet\n");
 *     else
 *         printf("kv error: %s\n", wafer_result_text(&r));
 *     wafer_result_free(&r);
 *
 *     wafer_log(WAFER_LOG_INFO, "hello");
 *     wafer_result_drop(wafer_kv_set("visits", "1", 1));  // answer not needed
 *
 *     int status;
 *     wafer_result page = wafer_http_get("https://example.com/", &status);
 *     if (page.ok) fwrite(page.data, 1, page.len, stdout);  // the decoded body
 *     wafer_result_free(&page);
 *
 * Byte payloads (kv values, pub/sub messages, HTTP bodies) are sent as JSON text when they
 * are valid UTF-8 and as base64 (`value_base64`, ...) otherwise. Strings given as
 * `const char *` (keys, names, topics, URLs) are NUL-terminated UTF-8; NULL counts as "".
 *
 * Build:  clang -O2 --target=wasm32-wasi --sysroot=/usr -I guests/c -o f.wasm f.c
 * Tests:  cc -std=c99 -Wall -Wextra -DWAFER_NATIVE_TEST -o target/guests-c/test_wafer \
 *           guests/c/test_wafer.c && target/guests-c/test_wafer
 *         With WAFER_NATIVE_TEST the header compiles natively, and every host call fails
 *         with `failed: not running inside Wafer`.
 *
 * Names starting with `wafer__` are internal.
 */
#ifndef WAFER_H
#define WAFER_H

#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------
 * The waPC imports (docs/host-calls.md). Pointers and lengths are i32 on wasm32.
 * ---------------------------------------------------------------------------------------- */

#if defined(WAFER_NATIVE_TEST)

#define WAFER__NATIVE_ERROR "failed: not running inside Wafer"

static inline int32_t wafer__host_call(const void *bd, uint32_t bd_len, const void *ns,
                                       uint32_t ns_len, const void *op, uint32_t op_len,
                                       const void *payload, uint32_t len) {
    (void)bd;
    (void)bd_len;
    (void)ns;
    (void)ns_len;
    (void)op;
    (void)op_len;
    (void)payload;
    (void)len;
    return 0;
}
static inline int32_t wafer__host_response_len(void) { return 0; }
static inline void wafer__host_response(void *ptr) { (void)ptr; }
static inline int32_t wafer__host_error_len(void) {
    return (int32_t)(sizeof WAFER__NATIVE_ERROR - 1);
}
static inline void wafer__host_error(void *ptr) {
    memcpy(ptr, WAFER__NATIVE_ERROR, sizeof WAFER__NATIVE_ERROR - 1);
}

#elif defined(__wasm__)

#define WAFER__IMPORT(name) __attribute__((import_module("wapc"), import_name(name)))

/* Calls binding/namespace/operation with a payload: 1 = ok, 0 = error. */
WAFER__IMPORT("__host_call")
int32_t wafer__host_call(const void *bd, uint32_t bd_len, const void *ns, uint32_t ns_len,
                         const void *op, uint32_t op_len, const void *payload, uint32_t len);
/* Length of, and copy of, the answer to the last successful call. */
WAFER__IMPORT("__host_response_len") int32_t wafer__host_response_len(void);
WAFER__IMPORT("__host_response") void wafer__host_response(void *ptr);
/* Length of, and copy of, the error message of the last failed call. */
WAFER__IMPORT("__host_error_len") int32_t wafer__host_error_len(void);
WAFER__IMPORT("__host_error") void wafer__host_error(void *ptr);

#else
#error "wafer.h targets wasm32 (clang --target=wasm32-wasi); define WAFER_NATIVE_TEST to build natively with stubbed host calls"
#endif

/* ------------------------------------------------------------------------------------------
 * Results and error codes
 * ---------------------------------------------------------------------------------------- */

/* The outcome of a host call. `data` is malloc'd and NUL-terminated (not counted in `len`):
 * the answer if `ok`, else the error message. Free it with wafer_result_free(). */
typedef struct {
    int ok;
    char *data;
    size_t len;
} wafer_result;

/* The code word an error message starts with (docs/host-calls.md#errors). */
typedef enum {
    WAFER_OK = 0,      /* not an error */
    WAFER_DENIED,      /* `denied`: not granted */
    WAFER_NOT_FOUND,   /* `not_found`: no such key or config value */
    WAFER_INVALID,     /* `invalid`: malformed payload */
    WAFER_TOO_LARGE,   /* `too_large`: over a limit */
    WAFER_FAILED,      /* `failed`: the host tried and failed (also: out of memory here) */
    WAFER_OTHER        /* any other message */
} wafer_error;

/* Frees the buffer of `r` and clears it; safe to call twice. */
static inline void wafer_result_free(wafer_result *r) {
    if (!r)
        return;
    free(r->data);
    r->data = NULL;
    r->len = 0;
}

/* Frees a result that is not needed, for calls made only for their effect. */
static inline void wafer_result_drop(wafer_result r) { free(r.data); }

/* The answer or error message as a C string; never NULL. */
static inline const char *wafer_result_text(const wafer_result *r) {
    if (r->data)
        return r->data;
    return r->ok ? "" : "failed: out of memory";
}

/* The code word of a failed result's message; WAFER_OK if `r` succeeded. */
static inline wafer_error wafer_error_code(const wafer_result *r) {
    static const struct {
        const char *word;
        wafer_error code;
    } codes[] = {
        {"denied", WAFER_DENIED},   {"not_found", WAFER_NOT_FOUND},
        {"invalid", WAFER_INVALID}, {"too_large", WAFER_TOO_LARGE},
        {"failed", WAFER_FAILED},
    };
    const char *text;
    size_t i;
    if (r->ok)
        return WAFER_OK;
    text = wafer_result_text(r);
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        size_t n = strlen(codes[i].word);
        if (strncmp(text, codes[i].word, n) == 0 && text[n] == ':')
            return codes[i].code;
    }
    return WAFER_OTHER;
}

/* A result holding a copy of `len` bytes (ok or an error message). */
static inline wafer_result wafer__result(int ok, const void *data, size_t len) {
    wafer_result r;
    r.ok = ok;
    r.len = len;
    r.data = (char *)malloc(len + 1);
    if (!r.data) {
        r.ok = 0;
        r.len = 0;
        return r;
    }
    if (len)
        memcpy(r.data, data, len);
    r.data[len] = '\0';
    return r;
}

/* A failed result with the message `msg` ("code: text"). */
static inline wafer_result wafer__fail(const char *msg) {
    return wafer__result(0, msg, strlen(msg));
}

/* ------------------------------------------------------------------------------------------
 * The raw call
 * ---------------------------------------------------------------------------------------- */

/* Calls operation `op` of namespace `ns` (binding `wafer`) with `len` bytes of `payload`. */
static inline wafer_result wafer_host_call(const char *ns, const char *op, const void *payload,
                                           size_t len) {
    static const char binding[] = "wafer";
    wafer_result r = {0, NULL, 0};
    int32_t ok, n;
    size_t size;
    if (!ns)
        ns = "";
    if (!op)
        op = "";
    if (!payload) {
        if (len)
            return wafer__fail("invalid: payload is NULL but its length is not 0");
        payload = "";
    }
    if (len > INT32_MAX || strlen(ns) > INT32_MAX || strlen(op) > INT32_MAX)
        return wafer__fail("too_large: a host-call argument is over 2 GiB");
    ok = wafer__host_call(binding, (uint32_t)(sizeof binding - 1), ns, (uint32_t)strlen(ns), op,
                          (uint32_t)strlen(op), payload, (uint32_t)len);
    n = ok ? wafer__host_response_len() : wafer__host_error_len();
    size = n > 0 ? (size_t)n : 0;
    r.data = (char *)malloc(size + 1);
    if (!r.data)
        return r; /* ok = 0, data = NULL: "failed: out of memory" */
    if (size) {
        if (ok)
            wafer__host_response(r.data);
        else
            wafer__host_error(r.data);
    }
    r.data[size] = '\0';
    r.len = size;
    r.ok = ok != 0;
    return r;
}

/* ------------------------------------------------------------------------------------------
 * Encoding: UTF-8 check, JSON strings, base64
 * ---------------------------------------------------------------------------------------- */

/* 1 if `n` bytes at `data` are valid UTF-8 (no overlong forms, surrogates or > U+10FFFF). */
static inline int wafer_utf8_valid(const void *data, size_t n) {
    const unsigned char *s = (const unsigned char *)data;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t more;
        unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            more = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            more = 2;
            if (c == 0xE0)
                lo = 0xA0; /* no overlong 3-byte forms */
            else if (c == 0xED)
                hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            more = 3;
            if (c == 0xF0)
                lo = 0x90; /* no overlong 4-byte forms */
            else if (c == 0xF4)
                hi = 0x8F; /* nothing above U+10FFFF */
        } else {
            return 0;
        }
        if (n - i <= more || s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k <= more; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        i += more + 1;
    }
    return 1;
}

/* A growable byte buffer, always NUL-terminated once non-empty; `failed` is sticky. */
typedef struct {
    char *p;
    size_t len, cap;
    int failed;
} wafer__buf;

static inline void wafer__buf_put(wafer__buf *b, const void *data, size_t n) {
    if (b->failed || n == 0)
        return;
    if (n > SIZE_MAX - 1 - b->len) {
        b->failed = 1;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t need = b->len + n + 1, cap = b->cap ? b->cap : 64;
        char *p;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        p = (char *)realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static inline void wafer__buf_str(wafer__buf *b, const char *s) { wafer__buf_put(b, s, strlen(s)); }

/* Appends `n` bytes of `s` as a quoted JSON string: `"` and `\` escaped, control characters
 * as \u00XX, everything else (including UTF-8 sequences) as is. */
static inline void wafer__buf_json(wafer__buf *b, const void *data, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)data;
    size_t run = 0; /* start of the bytes not yet copied */
    wafer__buf_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c != '"' && c != '\\' && c >= 0x20)
            continue;
        wafer__buf_put(b, s + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            wafer__buf_put(b, esc, 2);
        } else {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            wafer__buf_put(b, esc, 6);
        }
    }
    wafer__buf_put(b, s + run, n - run);
    wafer__buf_put(b, "\"", 1);
}

/* Appends `n` bytes as standard base64 with padding. */
static inline void wafer__buf_base64(wafer__buf *b, const void *data, size_t n) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = (const unsigned char *)data;
    char chunk[256]; /* a multiple of 4 */
    size_t used = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        size_t left = n - i;
        if (left > 1)
            v |= (uint32_t)s[i + 1] << 8;
        if (left > 2)
            v |= s[i + 2];
        chunk[used++] = abc[v >> 18 & 63];
        chunk[used++] = abc[v >> 12 & 63];
        chunk[used++] = left > 1 ? abc[v >> 6 & 63] : '=';
        chunk[used++] = left > 2 ? abc[v & 63] : '=';
        if (used == sizeof chunk) {
            wafer__buf_put(b, chunk, used);
            used = 0;
        }
    }
    wafer__buf_put(b, chunk, used);
}

/* Appends `,"NAME":"text"` if the bytes are UTF-8, else `,"NAME_base64":"..."`. */
static inline void wafer__buf_bytes_field(wafer__buf *b, const char *name, const void *data,
                                          size_t n) {
    wafer__buf_str(b, ",\"");
    wafer__buf_str(b, name);
    if (wafer_utf8_valid(data, n)) {
        wafer__buf_str(b, "\":");
        wafer__buf_json(b, data, n);
    } else {
        wafer__buf_str(b, "_base64\":\"");
        wafer__buf_base64(b, data, n);
        wafer__buf_str(b, "\"");
    }
}

/* Hands over a buffer's bytes as a malloc'd, NUL-terminated string; NULL if it failed. */
static inline char *wafer__buf_take(wafer__buf *b, size_t *out_len) {
    if (b->failed) {
        free(b->p);
        return NULL;
    }
    if (!b->p) {
        b->p = (char *)calloc(1, 1);
        if (!b->p)
            return NULL;
    }
    if (out_len)
        *out_len = b->len;
    return b->p;
}

/* `n` bytes as a quoted JSON string (see wafer__buf_json), malloc'd; NULL if out of memory.
 * Its length goes to *out_len if not NULL. Useful to build JSON of your own. */
static inline char *wafer_json_quote(const void *data, size_t n, size_t *out_len) {
    wafer__buf b = {NULL, 0, 0, 0};
    wafer__buf_json(&b, data, n);
    return wafer__buf_take(&b, out_len);
}

/* `n` bytes as standard padded base64, malloc'd and NUL-terminated; NULL if out of memory. */
static inline char *wafer_base64_encode(const void *data, size_t n, size_t *out_len) {
    wafer__buf b = {NULL, 0, 0, 0};
    wafer__buf_base64(&b, data, n);
    return wafer__buf_take(&b, out_len);
}

/* Decodes `n` characters of standard base64 (padding optional) into a malloc'd,
 * NUL-terminated buffer; its length goes to *out_len. NULL if the input is not base64 or
 * memory ran out. */
static inline char *wafer_base64_decode(const char *s, size_t n, size_t *out_len) {
    size_t pad = 0, len, o = 0;
    uint32_t acc = 0;
    int bits = 0;
    char *out;
    if (n >= 1 && s[n - 1] == '=')
        pad = (n >= 2 && s[n - 2] == '=') ? 2 : 1;
    if (pad && n % 4 != 0)
        return NULL;
    len = n - pad;
    if (len % 4 == 1)
        return NULL;
    out = (char *)malloc(len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '+')
            v = 62;
        else if (c == '/')
            v = 63;
        else {
            free(out);
            return NULL;
        }
        acc = (acc << 6 | (uint32_t)v) & 0xFFFFFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)(acc >> bits & 0xFF);
        }
    }
    out[o] = '\0';
    if (out_len)
        *out_len = o;
    return out;
}

/* ------------------------------------------------------------------------------------------
 * A small JSON reader for the host's answers; every read is bounds-checked.
 * ---------------------------------------------------------------------------------------- */

typedef struct {
    const char *p, *end;
} wafer__json;

static inline void wafer__json_ws(wafer__json *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

/* Skips whitespace, then consumes `c` if it is next. */
static inline int wafer__json_eat(wafer__json *j, char c) {
    wafer__json_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return 1;
    }
    return 0;
}

/* Four hex digits at *p (before end) as a number, or -1. */
static inline long wafer__json_hex4(const char *p, const char *end) {
    long v = 0;
    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* Writes code point `cp` as UTF-8 at `out`; returns the number of bytes (1 to 4). */
static inline size_t wafer__utf8_put(char *out, unsigned long cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Reads a JSON string. With `out`, its decoded bytes go to a malloc'd NUL-terminated buffer
 * (length in *out_len); without, it is only skipped. A lone surrogate becomes U+FFFD.
 * Returns 0 on malformed input or when out of memory. */
static inline int wafer__json_string(wafer__json *j, char **out, size_t *out_len) {
    const char *start, *q, *r;
    char *s;
    size_t o = 0;
    wafer__json_ws(j);
    if (j->p >= j->end || *j->p != '"')
        return 0;
    /* First find the closing quote, so the buffer is no bigger than the string. */
    start = q = j->p + 1;
    for (;;) {
        if (q >= j->end || (unsigned char)*q < 0x20)
            return 0;
        if (*q == '"')
            break;
        if (*q == '\\' && ++q >= j->end)
            return 0;
        q++;
    }
    if (!out) {
        j->p = q + 1;
        return 1;
    }
    /* Each escape decodes to no more bytes than it takes, so q - start bytes are enough. */
    s = (char *)malloc((size_t)(q - start) + 1);
    if (!s)
        return 0;
    for (r = start; r < q;) {
        char c = *r++;
        long cp;
        if (c != '\\') {
            s[o++] = c;
            continue;
        }
        c = *r++; /* an escaped character always comes before q (see the scan above) */
        switch (c) {
        case '"': case '\\': case '/': s[o++] = c; break;
        case 'b': s[o++] = '\b'; break;
        case 'f': s[o++] = '\f'; break;
        case 'n': s[o++] = '\n'; break;
        case 'r': s[o++] = '\r'; break;
        case 't': s[o++] = '\t'; break;
        case 'u':
            cp = wafer__json_hex4(r, q);
            if (cp < 0)
                goto bad;
            r += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && q - r >= 6 && r[0] == '\\' && r[1] == 'u') {
                long lo = wafer__json_hex4(r + 2, q);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    r += 6;
                }
            }
            if (cp >= 0xD800 && cp <= 0xDFFF)
                cp = 0xFFFD;
            o += wafer__utf8_put(s + o, (unsigned long)cp);
            break;
        default:
            goto bad;
        }
    }
    s[o] = '\0';
    *out = s;
    if (out_len)
        *out_len = o;
    j->p = q + 1;
    return 1;
bad:
    free(s);
    return 0;
}

/* Reads a JSON integer (no fraction or exponent) that fits in an int. */
static inline int wafer__json_int(wafer__json *j, int *out) {
    int neg = 0, digits = 0;
    int v = 0;
    wafer__json_ws(j);
    if (j->p < j->end && *j->p == '-') {
        neg = 1;
        j->p++;
    }
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        int d = *j->p - '0';
        if (v > (INT_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
        j->p++;
        digits++;
    }
    if (!digits || (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E')))
        return 0;
    *out = (int)(neg ? -v : v);
    return 1;
}

/* Skips one JSON value of any kind. Containers are skipped by counting brackets (strings
 * inside are skipped properly); their contents are not validated. */
static inline int wafer__json_skip(wafer__json *j) {
    const char *start;
    wafer__json_ws(j);
    if (j->p >= j->end)
        return 0;
    if (*j->p == '"')
        return wafer__json_string(j, NULL, NULL);
    if (*j->p == '{' || *j->p == '[') {
        size_t depth = 0;
        while (j->p < j->end) {
            char c = *j->p;
            if (c == '"') {
                if (!wafer__json_string(j, NULL, NULL))
                    return 0;
                continue;
            }
            j->p++;
            if (c == '{' || c == '[')
                depth++;
            else if ((c == '}' || c == ']') && --depth == 0)
                return 1;
        }
        return 0;
    }
    /* A number or a literal: everything up to a delimiter. */
    start = j->p;
    while (j->p < j->end && *j->p != ',' && *j->p != '}' && *j->p != ']' && *j->p != ' ' &&
           *j->p != '\t' && *j->p != '\n' && *j->p != '\r')
        j->p++;
    return j->p > start;
}

/* 1 if only whitespace is left. */
static inline int wafer__json_done(wafer__json *j) {
    wafer__json_ws(j);
    return j->p == j->end;
}

/* Parses an http/request answer, `{"status": 200, "headers": [...], "body": "text"}` (or
 * `body_base64`). The body (decoded, malloc'd, NUL-terminated; empty if absent) goes to
 * *body. Returns 0 if the answer is malformed or memory ran out. */
static inline int wafer__parse_http_answer(const char *json, size_t len, int *status,
                                           char **body, size_t *body_len) {
    wafer__json j;
    int have_status = 0;
    char *b = NULL;
    size_t blen = 0;
    j.p = json;
    j.end = json + len;
    if (!wafer__json_eat(&j, '{'))
        return 0;
    if (!wafer__json_eat(&j, '}')) {
        do {
            char *key, *s;
            size_t klen, slen;
            int ok;
            if (!wafer__json_string(&j, &key, &klen))
                goto bad;
            if (!wafer__json_eat(&j, ':')) {
                free(key);
                goto bad;
            }
            if (klen == 6 && memcmp(key, "status", 6) == 0) {
                ok = wafer__json_int(&j, status);
                have_status = 1;
            } else if ((klen == 4 && memcmp(key, "body", 4) == 0) ||
                       (klen == 11 && memcmp(key, "body_base64", 11) == 0)) {
                ok = wafer__json_string(&j, &s, &slen);
                if (ok) {
                    free(b);
                    b = s;
                    blen = slen;
                    if (klen == 11) {
                        b = wafer_base64_decode(s, slen, &blen);
                        free(s);
                        ok = b != NULL;
                    }
                }
            } else {
                ok = wafer__json_skip(&j);
            }
            free(key);
            if (!ok)
                goto bad;
        } while (wafer__json_eat(&j, ','));
        if (!wafer__json_eat(&j, '}'))
            goto bad;
    }
    if (!have_status || !wafer__json_done(&j))
        goto bad;
    if (!b && !(b = (char *)calloc(1, 1)))
        return 0;
    *body = b;
    *body_len = blen;
    return 1;
bad:
    free(b);
    return 0;
}

/* A list of NUL-terminated strings, each malloc'd; free with wafer_strings_free(). */
typedef struct {
    size_t count;
    char **items;
} wafer_strings;

static inline void wafer_strings_free(wafer_strings *list) {
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i]);
    free(list->items);
    list->count = 0;
    list->items = NULL;
}

/* Parses a JSON array of strings into *out. Returns 0 if malformed or out of memory. */
static inline int wafer__parse_string_array(const char *json, size_t len, wafer_strings *out) {
    wafer__json j;
    wafer_strings list = {0, NULL};
    size_t cap = 0;
    j.p = json;
    j.end = json + len;
    if (!wafer__json_eat(&j, '['))
        return 0;
    if (!wafer__json_eat(&j, ']')) {
        do {
            char *s;
            if (list.count == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                char **items = ncap > SIZE_MAX / sizeof *items
                                   ? NULL
                                   : (char **)realloc(list.items, ncap * sizeof *items);
                if (!items)
                    goto bad;
                list.items = items;
                cap = ncap;
            }
            if (!wafer__json_string(&j, &s, NULL))
                goto bad;
            list.items[list.count++] = s;
        } while (wafer__json_eat(&j, ','));
        if (!wafer__json_eat(&j, ']'))
            goto bad;
    }
    if (!wafer__json_done(&j))
        goto bad;
    *out = list;
    return 1;
bad:
    wafer_strings_free(&list);
    return 0;
}

/* Sends a built JSON payload; an out-of-memory buffer becomes a `failed` result. */
static inline wafer_result wafer__call_json(const char *ns, const char *op, wafer__buf *b) {
    size_t len = 0;
    char *payload = wafer__buf_take(b, &len);
    wafer_result r;
    if (!payload)
        return wafer__fail("failed: out of memory");
    r = wafer_host_call(ns, op, payload, len);
    free(payload);
    return r;
}

static inline const char *wafer__str(const char *s) { return s ? s : ""; }

/* ------------------------------------------------------------------------------------------
 * log
 * ---------------------------------------------------------------------------------------- */

typedef enum { WAFER_LOG_DEBUG, WAFER_LOG_INFO, WAFER_LOG_WARN, WAFER_LOG_ERROR } wafer_log_level;

/* Writes one line to the function's log (`wafer logs NAME`). Returns 1 on success. */
static inline int wafer_log(wafer_log_level level, const char *msg) {
    static const char *const ops[] = {"debug", "info", "warn", "error"};
    const char *op = (unsigned)level < 4 ? ops[level] : "info";
    wafer_result r = wafer_host_call("log", op, wafer__str(msg), strlen(wafer__str(msg)));
    int ok = r.ok;
    wafer_result_free(&r);
    return ok;
}

/* wafer_log() with a printf format. */
__attribute__((format(printf, 2, 3))) static inline int wafer_logf(wafer_log_level level,
                                                                   const char *fmt, ...) {
    va_list ap;
    int n, ok;
    char *line;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !(line = (char *)malloc((size_t)n + 1)))
        return 0;
    va_start(ap, fmt);
    vsnprintf(line, (size_t)n + 1, fmt, ap);
    va_end(ap);
    ok = wafer_log(level, line);
    free(line);
    return ok;
}

/* ------------------------------------------------------------------------------------------
 * config
 * ---------------------------------------------------------------------------------------- */

/* The config value or secret `name`; WAFER_NOT_FOUND if there is none. */
static inline wafer_result wafer_config_get(const char *name) {
    return wafer_host_call("config", "get", wafer__str(name), strlen(wafer__str(name)));
}

/* ------------------------------------------------------------------------------------------
 * kv
 * ---------------------------------------------------------------------------------------- */

/* The value of `key` (raw bytes, NUL-terminated); WAFER_NOT_FOUND if absent. */
static inline wafer_result wafer_kv_get(const char *key) {
    return wafer_host_call("kv", "get", wafer__str(key), strlen(wafer__str(key)));
}

/* Sets `key` to `len` bytes of `value`. The answer is empty. */
static inline wafer_result wafer_kv_set(const char *key, const void *value, size_t len) {
    wafer__buf b = {NULL, 0, 0, 0};
    if (!value && len)
        return wafer__fail("invalid: value is NULL but its length is not 0");
    wafer__buf_str(&b, "{\"key\":");
    wafer__buf_json(&b, wafer__str(key), strlen(wafer__str(key)));
    wafer__buf_bytes_field(&b, "value", value ? value : "", len);
    wafer__buf_str(&b, "}");
    return wafer__call_json("kv", "set", &b);
}

/* Deletes `key` (deleting an absent key is not an error). The answer is empty. */
static inline wafer_result wafer_kv_delete(const char *key) {
    return wafer_host_call("kv", "delete", wafer__str(key), strlen(wafer__str(key)));
}

/* The keys starting with `prefix` (NULL or "" for all), sorted. On success the result holds
 * the raw JSON array and, if `keys` is not NULL, *keys the parsed keys (free both). */
static inline wafer_result wafer_kv_list(const char *prefix, wafer_strings *keys) {
    wafer_result r = wafer_host_call("kv", "list", wafer__str(prefix), strlen(wafer__str(prefix)));
    if (keys) {
        keys->count = 0;
        keys->items = NULL;
    }
    if (r.ok && keys && !wafer__parse_string_array(r.data, r.len, keys)) {
        wafer_result_free(&r);
        return wafer__fail("failed: malformed answer from kv/list");
    }
    return r;
}

/* ------------------------------------------------------------------------------------------
 * pubsub
 * ---------------------------------------------------------------------------------------- */

/* Publishes `len` bytes of `msg` to `topic`. The answer is empty. */
static inline wafer_result wafer_publish(const char *topic, const void *msg, size_t len) {
    wafer__buf b = {NULL, 0, 0, 0};
    if (!msg && len)
        return wafer__fail("invalid: message is NULL but its length is not 0");
    wafer__buf_str(&b, "{\"topic\":");
    wafer__buf_json(&b, wafer__str(topic), strlen(wafer__str(topic)));
    wafer__buf_bytes_field(&b, "message", msg ? msg : "", len);
    wafer__buf_str(&b, "}");
    return wafer__call_json("pubsub", "publish", &b);
}

/* ------------------------------------------------------------------------------------------
 * http
 * ---------------------------------------------------------------------------------------- */

/* Makes an HTTP request. `method` NULL means GET; `headers` is NULL or a NULL-terminated
 * array of alternating names and values ({"Accept", "text/plain", NULL}); `body` NULL sends
 * no body. On success the result holds the response body (decoded from base64 if the host
 * sent it so) and *status (if not NULL) the HTTP status; any status is a success. Response
 * headers are not returned. */
static inline wafer_result wafer_http_request(const char *method, const char *url,
                                              const char *const *headers, const void *body,
                                              size_t body_len, int *status) {
    wafer__buf b = {NULL, 0, 0, 0};
    wafer_result r;
    char *answer_body;
    size_t answer_len;
    int st = 0;
    if (status)
        *status = 0;
    wafer__buf_str(&b, "{\"url\":");
    wafer__buf_json(&b, wafer__str(url), strlen(wafer__str(url)));
    if (method) {
        wafer__buf_str(&b, ",\"method\":");
        wafer__buf_json(&b, method, strlen(method));
    }
    if (headers && headers[0]) {
        wafer__buf_str(&b, ",\"headers\":[");
        for (size_t i = 0; headers[i] && headers[i + 1]; i += 2) {
            wafer__buf_str(&b, i ? ",[" : "[");
            wafer__buf_json(&b, headers[i], strlen(headers[i]));
            wafer__buf_str(&b, ",");
            wafer__buf_json(&b, headers[i + 1], strlen(headers[i + 1]));
            wafer__buf_str(&b, "]");
        }
        wafer__buf_str(&b, "]");
    }
    if (body)
        wafer__buf_bytes_field(&b, "body", body, body_len);
    wafer__buf_str(&b, "}");
    r = wafer__call_json("http", "request", &b);
    if (!r.ok)
        return r;
    if (!wafer__parse_http_answer(r.data, r.len, &st, &answer_body, &answer_len)) {
        wafer_result_free(&r);
        return wafer__fail("failed: malformed answer from http/request");
    }
    wafer_result_free(&r);
    r.data = answer_body;
    r.len = answer_len;
    if (status)
        *status = st;
    return r;
}

/* GET `url`; see wafer_http_request(). */
static inline wafer_result wafer_http_get(const char *url, int *status) {
    return wafer_http_request(NULL, url, NULL, NULL, 0, status);
}

#ifdef __cplusplus
}
#endif

#endif /* WAFER_H */
