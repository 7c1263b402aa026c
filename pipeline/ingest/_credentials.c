/* Where AssumeRole credentials sit in a record's own bytes, for redact.redact_many.
 *
 * redact.redact_many fingerprints a record's sessionToken / secretAccessKey values in place when
 * it can prove the full redaction (redact.redact_raw) would change nothing else. The Python
 * search (redact.credential_spans) is the reference; this is the same search, a record at a time
 * in C: the value spans of those keys, or None when the record must take the full redaction.
 * Hashing and formatting the fingerprints stay in Python (hashlib), so what a secret becomes is
 * written once. (Which decoder owns which rule, and what keeps them equal: docs/DECODERS.md.)
 *
 * Per record, exactly as the Python search:
 *   - not ASCII: None (str.lower() folds some non-ASCII letters onto ASCII key letters);
 *   - each credential key given (redact._CREDENTIAL_KEYS: '"sessionToken":"' and
 *     '"secretAccessKey":"', compact JSON up to the value's opening quote) is found left to
 *     right; its string value ends at the first quote after an even run of backslashes (none:
 *     not JSON, None); the key counts only where it opens or follows a member ('{' or ','
 *     before it), and the search goes on after that value either way;
 *   - no key counted: None;
 *   - the bytes outside the counted keys and values are checked for doubt, as redact._DOUBT_PATTERN
 *     does: a key (quoted text, white space, a colon) holding a word of a secret key (but
 *     "subjectFromWebIdentityToken" as CloudTrail spells it, which Python blanks before its pass)
 *     (_secrets.c: secrets_key_words; "credential", and "access" then "key" not followed by "id",
 *     only when the value does not open an object: the full redaction looks into an object under
 *     those); a header line ("x-api-key: ...") or a setting ("Password=...") whose name holds such
 *     a word; a Bearer or Basic scheme; a JWT; a \u escape or an escaped quote (a string holding
 *     quotes, which the full redaction looks into); a URL parameter or password; a PEM block; a
 *     string of 40 base64 characters. Any of them: None. The Python search joins those pieces with
 *     a NUL byte and runs RE2 once; no match can span a NUL (a piece after one starts with the
 *     quote that ended a value, and the bytes before one are "{" or "," after a quote), so each
 *     piece is checked alone here.
 *   - else a tuple (start, end, start, end, ...) of the counted values (between their quotes),
 *     in the order they appear. */

#define _GNU_SOURCE
#include "_secrets.h"

#include <stdint.h>
#include <string.h>

static int is_ascii(const unsigned char *p, Py_ssize_t n) {
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ULL) return 0;
    }
    for (; i < n; i++)
        if (p[i] & 0x80) return 0;
    return 1;
}

static Py_ssize_t find(const unsigned char *p, Py_ssize_t n, Py_ssize_t from, const void *what,
                       Py_ssize_t len) {
    if (from < 0 || from > n) return -1;
    const unsigned char *at = memmem(p + from, (size_t)(n - from), what, (size_t)len);
    return at ? at - p : -1;
}

/* redact._string_end: the quote that ends the string whose text starts at ``start``, or -1. */
static Py_ssize_t string_end(const unsigned char *p, Py_ssize_t n, Py_ssize_t start) {
    Py_ssize_t end = find(p, n, start, "\"", 1);
    while (end > 0 && p[end - 1] == '\\') {
        Py_ssize_t back = end - 1;
        while (back > 0 && p[back - 1] == '\\') back--;
        if ((end - back) % 2 == 0) break;
        end = find(p, n, end + 1, "\"", 1);
    }
    return end;
}

typedef struct {
    const unsigned char **keys; /* bytes objects' contents, borrowed */
    Py_ssize_t *lens;
    Py_ssize_t n;
} Keys;

/* Are the len bytes at p the lower-case letters w, in either case? (OR-ing 0x20 folds exactly
 * the ASCII letters onto lower case and makes a letter of nothing else.) */
static inline int folded_is(const unsigned char *p, const char *w, Py_ssize_t len) {
    for (Py_ssize_t j = 0; j < len; j++)
        if ((p[j] | 0x20) != (unsigned char)w[j]) return 0;
    return 1;
}

static inline int blank(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* The doubt at a quote: a key holding a secret key's word, or a string of 40 base64
 * characters (the bytes to the next quote are both the key's text and that string's body). */
static int doubt_at_quote(const unsigned char *p, Py_ssize_t n, Py_ssize_t i) {
    const unsigned char *close = memchr(p + i + 1, '"', (size_t)(n - i - 1));
    if (!close) return 0;
    Py_ssize_t len = close - p - i - 1, c = close - p + 1;
    if (secrets_base64_body(p + i + 1, len)) return 1;
    /* As CloudTrail spells it, the web identity token's subject (redact._WEB_IDENTITY_SUBJECT) */
    if (len == 27 && c < n && p[c] == ':' && !memcmp(p + i + 1, "subjectFromWebIdentityToken", 27))
        return 0;
    while (c < n && blank(p[c])) c++;
    if (c >= n || p[c] != ':') return 0;
    int words = secrets_key_words(p + i + 1, len);
    if (words != 1) return words;
    for (c++; c < n && blank(p[c]);) c++;
    return c < n && p[c] != '{';
}

/* Does the doubt pattern match at p[i]? */
static inline __attribute__((always_inline)) int doubt_at(const unsigned char *p, Py_ssize_t n,
                                                          Py_ssize_t i) {
    switch (p[i]) {
    case '?':
    case '#':
    case '&':
    case ';':
        while (++i < n) {
            switch (p[i]) {
            case '"': case '\t': case '\n': case '\v': case '\f': case '\r': case ' ':
            case '?': case '#': case '&': case ';':
                return 0;
            case '=':
                return 1;
            }
        }
        return 0;
    case '"':
        return doubt_at_quote(p, n, i);
    case ':':
        return i + 1 < n && (p[i + 1] == ' ' || p[i + 1] == '\t') && secrets_header_words(p, i);
    case '=':
        return secrets_setting_words(p, i);
    case '-':
        return i + 10 <= n && !memcmp(p + i, "-----BEGIN", 10);
    case 'e':
        if (i + 3 <= n && !memcmp(p + i, "eyJ", 3)) return 1;
        /* fall through */
    case 'E':
        return i + 5 <= n && folded_is(p + i, "earer", 5);
    case 'a':
    case 'A':
        return i + 4 <= n && folded_is(p + i, "asic", 4);
    case '\\':
        return i + 1 < n && (p[i + 1] == 'u' || p[i + 1] == '"');
    default:
        return 0;
    }
}

typedef unsigned char v16 __attribute__((vector_size(16)));

/* Does the doubt pattern match anywhere in p[0 .. n)? A password in a URL is looked for from
 * each "@"; for the rest, sixteen places at a time are tested for where a match could start (a
 * quote; a colon; "="; "--"; "ea", "as" in either case, "ey" with the "e" in either; a backslash
 * before "u" or a quote; a URL parameter's separator: GCC/Clang vector extensions, SSE2 on
 * x86-64, NEON on arm64), and only there is it tested whole. */
static int doubtful(const unsigned char *p, Py_ssize_t n) {
    if (secrets_userinfo(p, n)) return 1; /* from each "@" (memchr), once for the whole piece */
    Py_ssize_t i = 0;
    for (; i + 17 <= n; i += 16) {
        v16 a, b;
        memcpy(&a, p + i, 16);
        memcpy(&b, p + i + 1, 16);
        v16 fa = a | 0x20, fb = b | 0x20;
        v16 m = (v16)(a == '"') | (v16)(a == ':') | (v16)(a == '=') |
                (v16)((a == '-') & (b == '-')) |
                (v16)((fa == 'e') & ((fb == 'a') | (b == 'y'))) |
                (v16)((fa == 'a') & (fb == 's')) | (v16)((a == '\\') & ((b == 'u') | (b == '"'))) |
                (v16)((a == '?') | (a == '#') | (a == '&') | (a == ';'));
        uint64_t lanes[2];
        memcpy(lanes, &m, 16);
        if (!(lanes[0] | lanes[1])) continue;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* Only the places hit: a hit is a 0xff byte, the lowest byte the first place. */
        for (int h = 0; h < 2; h++)
            for (uint64_t w = lanes[h]; w;) {
                int j = __builtin_ctzll(w) >> 3;
                if (doubt_at(p, n, i + 8 * h + j)) return 1;
                w &= ~((uint64_t)0xff << (8 * j));
            }
#else
        for (int j = 0; j < 16; j++)
            if (m[j] && doubt_at(p, n, i + j)) return 1;
#endif
    }
    for (; i < n; i++)
        if (doubt_at(p, n, i)) return 1;
    return 0;
}

#define MAX_SPANS 64 /* more credentials than this in one record: the full redaction takes it */

typedef struct {
    Py_ssize_t key, start, end;
} Span;

static int by_key(const void *a, const void *b) {
    Py_ssize_t x = ((const Span *)a)->key, y = ((const Span *)b)->key;
    return (x > y) - (x < y);
}

/* The record's spans as a tuple, or None (a new reference either way; NULL on a Python error). */
static PyObject *record_spans(const unsigned char *p, Py_ssize_t n, const Keys *creds) {
    Span spans[MAX_SPANS];
    int count = 0;
    if (!is_ascii(p, n)) Py_RETURN_NONE;
    for (Py_ssize_t k = 0; k < creds->n; k++) {
        Py_ssize_t len = creds->lens[k];
        Py_ssize_t at = find(p, n, 0, creds->keys[k], len);
        while (at > 0) {
            Py_ssize_t start = at + len, end = string_end(p, n, start);
            if (end < 0) Py_RETURN_NONE; /* a string that does not end: not JSON */
            if (p[at - 1] == '{' || p[at - 1] == ',') {
                if (count == MAX_SPANS) Py_RETURN_NONE;
                spans[count++] = (Span){at, start, end};
            }
            at = find(p, n, end, creds->keys[k], len);
        }
    }
    if (!count) Py_RETURN_NONE;
    qsort(spans, (size_t)count, sizeof spans[0], by_key);
    Py_ssize_t pos = 0;
    for (int s = 0; s < count; s++) {
        if (doubtful(p + pos, spans[s].key - pos)) Py_RETURN_NONE;
        pos = spans[s].end;
    }
    if (doubtful(p + pos, n - pos)) Py_RETURN_NONE;
    PyObject *out = PyTuple_New(2 * count);
    if (!out) return NULL;
    for (int s = 0; s < count; s++) {
        PyObject *a = PyLong_FromSsize_t(spans[s].start), *b = PyLong_FromSsize_t(spans[s].end);
        if (!a || !b) {
            Py_XDECREF(a);
            Py_XDECREF(b);
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, 2 * s, a);
        PyTuple_SET_ITEM(out, 2 * s + 1, b);
    }
    return out;
}

/* ``objs`` (a tuple of bytes) as Keys. 0, or -1 with a Python error set. */
static int read_keys(PyObject *objs, Keys *out) {
    Py_ssize_t n = PyTuple_GET_SIZE(objs);
    *out = (Keys){PyMem_Malloc(sizeof(unsigned char *) * (size_t)(n + 1)),
                  PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n + 1)), n};
    if (!out->keys || !out->lens) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *key = PyTuple_GET_ITEM(objs, k);
        if (!PyBytes_Check(key) || !PyBytes_GET_SIZE(key)) {
            PyErr_SetString(PyExc_TypeError, "keys must be non-empty bytes");
            return -1;
        }
        out->keys[k] = (const unsigned char *)PyBytes_AS_STRING(key);
        out->lens[k] = PyBytes_GET_SIZE(key);
    }
    return 0;
}

/* credential_spans(raws: list[bytes], credential_keys: tuple[bytes, ...]) -> list[tuple | None] */
PyObject *credential_spans(PyObject *self, PyObject *args) {
    PyObject *raws, *cred_objs, *out = NULL;
    Keys creds = {0};
    if (!PyArg_ParseTuple(args, "O!O!:credential_spans", &PyList_Type, &raws, &PyTuple_Type,
                          &cred_objs))
        return NULL;
    if (read_keys(cred_objs, &creds) < 0) goto done;
    Py_ssize_t n = PyList_GET_SIZE(raws);
    out = PyList_New(n);
    if (!out) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *raw = PyList_GET_ITEM(raws, i);
        if (!PyBytes_Check(raw)) {
            PyErr_SetString(PyExc_TypeError, "records must be bytes");
            Py_CLEAR(out);
            goto done;
        }
        PyObject *spans = record_spans((const unsigned char *)PyBytes_AS_STRING(raw),
                                       PyBytes_GET_SIZE(raw), &creds);
        if (!spans) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, spans);
    }
done:
    PyMem_Free(creds.keys);
    PyMem_Free(creds.lens);
    return out;
}

/* might_hold_secret(raw: bytes) -> bool: prefilter.might_hold_secret. */
PyObject *might_hold_secret(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *p = view.buf;
    int found = secrets_needles(p, view.len) || secrets_base64_string(p, view.len);
    PyBuffer_Release(&view);
    return PyBool_FromLong(found);
}
