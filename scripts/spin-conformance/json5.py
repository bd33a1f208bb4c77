"""A small JSON5 reader (https://spec.json5.org/), enough for the conformance suite's
`test.json5` files: comments, unquoted keys, single-quoted strings, trailing commas,
hexadecimal numbers, leading/trailing decimal points, explicit `+`, Infinity and NaN, and
line continuations in strings. Standard library only."""

import math
import re

__all__ = ["loads", "JSON5Error"]


class JSON5Error(ValueError):
    pass


_ESCAPES = {
    "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "0": "\0",
    "'": "'", '"': '"', "\\": "\\", "/": "/",
}
_IDENT_START = re.compile(r"[A-Za-z_$\u00c0-\uffff]")
_IDENT_PART = re.compile(r"[A-Za-z0-9_$\u00c0-\uffff\u200c\u200d]")
_NUMBER = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F]+|Infinity|NaN|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
)
_WHITESPACE = " \t\n\r\v\f\u00a0\u2028\u2029\ufeff"


class _Parser:
    def __init__(self, text):
        self.s = text
        self.i = 0

    def error(self, msg):
        line = self.s.count("\n", 0, self.i) + 1
        col = self.i - (self.s.rfind("\n", 0, self.i) + 1) + 1
        raise JSON5Error(f"{msg} at line {line} column {col}")

    def skip(self):
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c in _WHITESPACE:
                self.i += 1
            elif s.startswith("//", self.i):
                end = s.find("\n", self.i)
                self.i = len(s) if end < 0 else end + 1
            elif s.startswith("/*", self.i):
                end = s.find("*/", self.i + 2)
                if end < 0:
                    self.error("unterminated comment")
                self.i = end + 2
            else:
                break

    def peek(self):
        self.skip()
        return self.s[self.i] if self.i < len(self.s) else ""

    def value(self):
        c = self.peek()
        if c == "{":
            return self.obj()
        if c == "[":
            return self.arr()
        if c in "\"'":
            return self.string()
        for word, val in (("true", True), ("false", False), ("null", None)):
            if self.s.startswith(word, self.i) and not self._ident_continues(len(word)):
                self.i += len(word)
                return val
        m = _NUMBER.match(self.s, self.i)
        if m and not self._ident_continues(m.end() - self.i):
            self.i = m.end()
            return _number(m.group())
        self.error("unexpected " + (repr(c) if c else "end of input"))

    def _ident_continues(self, n):
        j = self.i + n
        return j < len(self.s) and bool(_IDENT_PART.match(self.s[j]))

    def obj(self):
        self.i += 1
        out = {}
        while True:
            c = self.peek()
            if c == "}":
                self.i += 1
                return out
            key = self.string() if c in "\"'" else self.ident()
            if self.peek() != ":":
                self.error("expected ':'")
            self.i += 1
            out[key] = self.value()
            c = self.peek()
            if c == ",":
                self.i += 1
            elif c != "}":
                self.error("expected ',' or '}'")

    def arr(self):
        self.i += 1
        out = []
        while True:
            if self.peek() == "]":
                self.i += 1
                return out
            out.append(self.value())
            c = self.peek()
            if c == ",":
                self.i += 1
            elif c != "]":
                self.error("expected ',' or ']'")

    def ident(self):
        start = self.i
        if self.i >= len(self.s) or not _IDENT_START.match(self.s[self.i]):
            self.error("expected a key")
        self.i += 1
        while self.i < len(self.s) and _IDENT_PART.match(self.s[self.i]):
            self.i += 1
        return self.s[start:self.i]

    def string(self):
        quote = self.s[self.i]
        self.i += 1
        out = []
        s = self.s
        while True:
            if self.i >= len(s):
                self.error("unterminated string")
            c = s[self.i]
            self.i += 1
            if c == quote:
                return "".join(out)
            if c in "\n\r":
                self.error("newline in string")
            if c != "\\":
                out.append(c)
                continue
            if self.i >= len(s):
                self.error("unterminated string")
            e = s[self.i]
            self.i += 1
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
            elif e == "x":
                out.append(chr(int(self._hex(2), 16)))
            elif e == "u":
                code = int(self._hex(4), 16)
                if 0xD800 <= code < 0xDC00 and s.startswith("\\u", self.i):
                    self.i += 2
                    low = int(self._hex(4), 16)
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                out.append(chr(code))
            elif e == "\r":
                if s.startswith("\n", self.i):
                    self.i += 1
            elif e in "\n\u2028\u2029":
                pass
            else:
                out.append(e)

    def _hex(self, n):
        h = self.s[self.i:self.i + n]
        if len(h) != n or not all(c in "0123456789abcdefABCDEF" for c in h):
            self.error("bad escape")
        self.i += n
        return h


def _number(text):
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body == "Infinity":
        return sign * math.inf
    if body == "NaN":
        return math.nan
    if body[:2] in ("0x", "0X"):
        return sign * int(body, 16)
    if re.fullmatch(r"\d+", body):
        return sign * int(body)
    return sign * float(body)


def loads(text):
    p = _Parser(text)
    v = p.value()
    p.skip()
    if p.i != len(p.s):
        p.error("trailing characters")
    return v
