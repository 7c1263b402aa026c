/* CloudTrail delivery files straight into Arrow column buffers: the compiled decoder.
 *
 * Ingestion reads CloudTrail by two decoders. The Python one (pipeline/ingest/cloudtrail.py,
 * formats.py, decode.py and rows/, on msgspec and orjson) is the reference and takes every
 * input. This one takes a whole delivery file ({"Records": [...]}, decompressed and checked to
 * be UTF-8 by pipeline/ingest/rows/cloudtrail_c.py, through pipeline/ingest/native.py) in one
 * pass: it splits it into records, copies each record's bytes into the raw column and the fields
 * a row needs into string columns laid out as Arrow lays them out (validity bitmap, int32
 * offsets, data), so no Python object is made per record or per field.
 *
 * It is deliberately narrow: it takes a file only when it reads it exactly as the Python decoder
 * does. Anything else (a type it does not expect, a duplicate among the keys it reads, an escaped
 * key anywhere, an envelope key or a vendor field, a lone surrogate, nesting past MAX_DEPTH,
 * invalid JSON) makes Builder.add return None having added nothing, and the file takes the Python
 * decoder.
 *
 * Which decoder owns which rule, what this file and _credentials.c and _secrets.c copy from the
 * Python decoder, and what keeps the copies equal (tests/test_native.py and the differential
 * fuzzer in tests/fuzz/, a short pass of which make test runs; make fuzz runs it for minutes
 * against a build of this file with AddressSanitizer and UndefinedBehaviorSanitizer) are written
 * in one place: docs/DECODERS.md.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_secrets.h"

#define MAX_DEPTH 128
#define MAX_MAP_MEMBERS 64

/* ---------------------------------------------------------------------------------------- */
/* Growable buffers and Arrow string columns                                                 */

typedef struct {
    char *p;
    Py_ssize_t len, cap;
} Buf;

/* Growing is rare: kept out of line, so that the test before it (and buf_put, which appends a
 * few bytes some thirty times a record) inlines where it is used. */
static __attribute__((noinline)) int buf_grow(Buf *b, Py_ssize_t extra) {
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *p = PyMem_Realloc(b->p, (size_t)cap);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int buf_reserve(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 0;
    return buf_grow(b, extra);
}

static inline int buf_put(Buf *b, const void *s, Py_ssize_t n) {
    if (n == 0) return 0; /* also: memcpy may not be given a null pointer, even for nothing */
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->p + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

static void buf_free(Buf *b) {
    PyMem_Free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Memory handed to Python without a copy: a read-only buffer that frees it when released. */
typedef struct {
    PyObject_HEAD
    char *p;
    Py_ssize_t len;
} Owned;

static int Owned_getbuffer(Owned *o, Py_buffer *view, int flags) {
    return PyBuffer_FillInfo(view, (PyObject *)o, o->p ? o->p : (char *)"", o->len, 1, flags);
}

static void Owned_dealloc(Owned *o) {
    PyMem_Free(o->p);
    Py_TYPE(o)->tp_free((PyObject *)o);
}

static PyBufferProcs Owned_as_buffer = {(getbufferproc)Owned_getbuffer, NULL};

static PyTypeObject OwnedType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "pipeline.ingest._ctscan.Owned",
    .tp_basicsize = sizeof(Owned),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A builder's buffer, handed over.",
    .tp_dealloc = (destructor)Owned_dealloc,
    .tp_as_buffer = &Owned_as_buffer,
};

/* The buffer's memory as an Owned object; the buffer starts over with the same capacity (fresh
 * pages, filled as it is written, where a copy would have cost them and the copying too). */
static PyObject *hand_over(Buf *b) {
    Owned *o = PyObject_New(Owned, &OwnedType);
    if (!o) return NULL;
    Py_ssize_t cap = b->cap;
    o->p = b->p;
    o->len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    if (cap && buf_reserve(b, cap) < 0) {
        Py_DECREF(o);
        return NULL;
    }
    return (PyObject *)o;
}

typedef struct {
    Buf data;
    Buf offsets; /* int32, rows + 1 */
    Buf valid;   /* bitmap */
    Py_ssize_t nulls;
} Col;

/* A value to append: absent (p == NULL) or n bytes at p. */
typedef struct {
    const char *p;
    Py_ssize_t n;
} Str;

static const Str NONE = {NULL, 0};

static int col_append(Col *c, Py_ssize_t row, Str v) {
    if (row % 8 == 0) {
        if (buf_reserve(&c->valid, 1) < 0) return -1;
        c->valid.p[c->valid.len++] = 0;
    }
    if (v.p) {
        c->valid.p[row / 8] |= (char)(1 << (row % 8));
        if (buf_put(&c->data, v.p, v.n) < 0) return -1;
    } else {
        c->nulls++;
    }
    if (c->data.len > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "column chunk past 2 GiB: take() more often");
        return -1;
    }
    int32_t end = (int32_t)c->data.len;
    return buf_put(&c->offsets, &end, sizeof end);
}

/* Columns, in the order Builder.take returns them. */
enum {
    EVENT_ID, EVENT_TIME, TIMESTAMP, SERVICE, ACTION, EVENT_TYPE, ERROR_CODE, REGION, SOURCE_IP,
    USER_AGENT, RECIPIENT, REQUEST_ID, SESSION_SOURCE_IDENTITY, SOURCE_IDENTITY, ACTOR_TYPE, ARN,
    INVOKED_BY, PRINCIPAL_ID, IDENT_ACCOUNT, ACTOR_SESSION, H_ROLE_ARN,
    RESOURCE, H_S3_BUCKET, H_S3_KEY, H_DDB_TABLE, H_DDB_KEY, H_ARNS, H_ROLE_NAME, H_SESSION_NAME,
    RAW,
    NCOLS
};

static const char *COL_NAMES[NCOLS] = {
    "event_id", "event_time", "timestamp", "service", "action", "event_type", "error_code",
    "region", "source_ip", "user_agent", "recipient", "request_id", "session_source_identity",
    "source_identity", "actor_type", "arn", "invoked_by", "principal_id", "ident_account",
    "actor_session", "h_role_arn", "resource", "h_s3_bucket", "h_s3_key", "h_ddb_table",
    "h_ddb_key", "h_arns", "h_role_name", "h_session_name", "raw",
};

/* ---------------------------------------------------------------------------------------- */
/* The scanner                                                                               */

typedef struct {
    const unsigned char *p, *end;
    Buf *scratch; /* unescaped strings of the current record; reserved up front, never moves */
    int bail;     /* 1: not for this decoder (the file goes to Python); -1: a Python error is set */
    Py_ssize_t base64; /* strings read so far whose body is 40 base64 characters (the
                          pre-filter's last rule, asked where every string is read anyway) */
} Scan;

static inline void ws(Scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

static inline int bail(Scan *s) {
    if (!s->bail) s->bail = 1;
    return -1;
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int hex4(const unsigned char *q) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(q[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

typedef unsigned char v16 __attribute__((vector_size(16)));
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Might one of eight bytes be a quote, a backslash or a control character? (No false
 * negatives; a false positive only sends the caller to its byte loop.) */
static inline int special8(uint64_t x) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
    uint64_t hit = ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) |
                   ((x - ones * 0x20) & ~x);
    return (hit & highs) != 0;
}

/* Where among the sixteen bytes at q is the first quote, backslash or control character? 16 if
 * there is none. Strings are most of a record's bytes (keys, IDs, ARNs, user agents, and the
 * values of requestParameters and responseElements, which are only skipped), and this is where
 * the scanner spent most of its time, eight bytes at a time. A byte's three tests are one vector
 * compare each (v16: SSE2 on x86-64, NEON on arm64); the first hit's place is the count of
 * trailing zero bits of the lanes (pmovmskb where there is one, else two 64-bit halves). */
static inline int special16(const unsigned char *q) {
    v16 v;
    memcpy(&v, q, 16);
    v16 m = (v16)(v == '"') | (v16)(v == '\\') | (v16)(v < 0x20);
#ifdef __SSE2__
    unsigned bits = (unsigned)_mm_movemask_epi8((__m128i)m);
    return bits ? __builtin_ctz(bits) : 16;
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t lanes[2];
    memcpy(lanes, &m, 16);
    if (lanes[0]) return __builtin_ctzll(lanes[0]) / 8;
    if (lanes[1]) return 8 + __builtin_ctzll(lanes[1]) / 8;
    return 16;
#else
    uint64_t lanes[2]; /* big-endian: no place, the byte loop finds it (at most 16 bytes on) */
    memcpy(lanes, &m, 16);
    return (lanes[0] | lanes[1]) ? 0 : 16;
#endif
}

/* A string at s->p (which is at the opening quote). On success *out is its value: the bytes in
 * the input when it has no escapes, else its unescaped text in the scratch buffer (when
 * `want` is 0 the escapes are checked and the value left empty). *escaped tells which. */
static int string(Scan *s, Str *out, int want, int *escaped) {
    const unsigned char *q = s->p + 1, *end = s->end;
    const unsigned char *start = q;
    /* Sixteen bytes at a time to the first special byte; the last 8 to 15 of the input eight
     * at a time (no load ever passes the end), then byte by byte. */
    for (;;) {
        if (end - q >= 16) {
            int k = special16(q);
            q += k;
            if (k == 16) continue;
        } else if (end - q >= 8) {
            uint64_t x;
            memcpy(&x, q, 8);
            if (!special8(x)) {
                q += 8;
                continue;
            }
        }
        break;
    }
    while (q < end && *q != '"' && *q != '\\') {
        if (*q < 0x20) return bail(s);
        q++;
    }
    if (q >= end) return bail(s);
    if (*q == '"') {
        out->p = (const char *)start;
        out->n = q - start;
        if (escaped) *escaped = 0;
        if (q - start == 40) s->base64 += secrets_base64_body(start, 40);
        s->p = q + 1;
        return 0;
    }
    /* Escapes: unescape into scratch (capacity was reserved for the whole input). */
    Buf *sc = s->scratch;
    Py_ssize_t first = sc->len;
    if (want) {
        memcpy(sc->p + sc->len, start, (size_t)(q - start));
        sc->len += q - start;
    }
    while (q < end && *q != '"') {
        unsigned char c = *q;
        if (c < 0x20) return bail(s);
        if (c != '\\') {
            if (want) sc->p[sc->len++] = (char)c;
            q++;
            continue;
        }
        if (q + 1 >= end) return bail(s);
        unsigned char e = q[1];
        char lit = 0;
        switch (e) {
        case '"': lit = '"'; break;
        case '\\': lit = '\\'; break;
        case '/': lit = '/'; break;
        case 'b': lit = '\b'; break;
        case 'f': lit = '\f'; break;
        case 'n': lit = '\n'; break;
        case 'r': lit = '\r'; break;
        case 't': lit = '\t'; break;
        case 'u': break;
        default: return bail(s);
        }
        if (e != 'u') {
            if (want) sc->p[sc->len++] = lit;
            q += 2;
            continue;
        }
        if (q + 6 > end) return bail(s);
        int cp = hex4(q + 2);
        if (cp < 0) return bail(s);
        q += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (q + 6 > end || q[0] != '\\' || q[1] != 'u') return bail(s);
            int lo = hex4(q + 2);
            if (lo < 0xDC00 || lo > 0xDFFF) return bail(s);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            q += 6;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return bail(s); /* a lone low surrogate */
        }
        if (!want) continue;
        /* UTF-8 is never longer than the escape it replaces (6 or 12 bytes). */
        char *w = sc->p + sc->len;
        if (cp < 0x80) {
            w[0] = (char)cp;
            sc->len += 1;
        } else if (cp < 0x800) {
            w[0] = (char)(0xC0 | (cp >> 6));
            w[1] = (char)(0x80 | (cp & 0x3F));
            sc->len += 2;
        } else if (cp < 0x10000) {
            w[0] = (char)(0xE0 | (cp >> 12));
            w[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
            w[2] = (char)(0x80 | (cp & 0x3F));
            sc->len += 3;
        } else {
            w[0] = (char)(0xF0 | (cp >> 18));
            w[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
            w[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
            w[3] = (char)(0x80 | (cp & 0x3F));
            sc->len += 4;
        }
    }
    if (q >= end) return bail(s);
    out->p = want ? sc->p + first : "";
    out->n = want ? sc->len - first : 0;
    if (escaped) *escaped = 1;
    s->base64 += secrets_base64_body(start, q - start);
    s->p = q + 1;
    return 0;
}

static int number(Scan *s) {
    const unsigned char *q = s->p, *end = s->end;
    if (q < end && *q == '-') q++;
    if (q >= end) return bail(s);
    if (*q == '0') {
        q++;
    } else if (*q >= '1' && *q <= '9') {
        while (q < end && *q >= '0' && *q <= '9') q++;
    } else {
        return bail(s);
    }
    if (q < end && *q == '.') {
        q++;
        if (q >= end || *q < '0' || *q > '9') return bail(s);
        while (q < end && *q >= '0' && *q <= '9') q++;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < end && (*q == '+' || *q == '-')) q++;
        if (q >= end || *q < '0' || *q > '9') return bail(s);
        while (q < end && *q >= '0' && *q <= '9') q++;
    }
    s->p = q;
    return 0;
}

static int literal(Scan *s, const char *word, Py_ssize_t n) {
    if (s->end - s->p < n || memcmp(s->p, word, (size_t)n) != 0) return bail(s);
    s->p += n;
    return 0;
}

static int skip_value(Scan *s, int depth);

/* Value kinds, as the caller needs to tell them apart. */
enum { K_NULL, K_STRING, K_OBJECT, K_ARRAY, K_OTHER };

static inline int peek_kind(Scan *s) {
    if (s->p >= s->end) return K_OTHER;
    switch (*s->p) {
    case 'n': return K_NULL;
    case '"': return K_STRING;
    case '{': return K_OBJECT;
    case '[': return K_ARRAY;
    default: return K_OTHER;
    }
}

/* Iterating the members of an object: at '{' call obj_open, then obj_next until it gives 0.
 * Keys come back raw (their bytes in the input); a key with an escape bails, since msgspec
 * would compare its unescaped text. */
static int obj_open(Scan *s, int depth) {
    if (depth > MAX_DEPTH) return bail(s);
    s->p++; /* '{' */
    ws(s);
    return 0;
}

/* 1: a member, its key in *key and s->p at its value; 0: the object ended; -1: bail/error. */
static int obj_next(Scan *s, int *first, Str *key) {
    if (s->p >= s->end) return bail(s);
    if (*first) {
        *first = 0;
        if (*s->p == '}') {
            s->p++;
            return 0;
        }
    } else {
        if (*s->p == '}') {
            s->p++;
            return 0;
        }
        if (*s->p != ',') return bail(s);
        s->p++;
        ws(s);
    }
    if (s->p >= s->end || *s->p != '"') return bail(s);
    int escaped = 0;
    if (string(s, key, 0, &escaped) < 0) return -1;
    if (escaped) return bail(s);
    ws(s);
    if (s->p >= s->end || *s->p != ':') return bail(s);
    s->p++;
    ws(s);
    return 1;
}

/* After a member's value: whitespace before ',' or '}'. */
static inline void after_value(Scan *s) { ws(s); }

static int skip_value(Scan *s, int depth) {
    if (s->p >= s->end) return bail(s);
    switch (*s->p) {
    case '"': {
        Str v;
        return string(s, &v, 0, NULL);
    }
    case '{': {
        if (obj_open(s, depth + 1) < 0) return -1;
        int first = 1, r;
        Str key;
        while ((r = obj_next(s, &first, &key)) == 1) {
            if (skip_value(s, depth + 1) < 0) return -1;
            after_value(s);
        }
        return r;
    }
    case '[': {
        if (depth + 1 > MAX_DEPTH) return bail(s);
        s->p++;
        ws(s);
        if (s->p < s->end && *s->p == ']') {
            s->p++;
            return 0;
        }
        for (;;) {
            if (skip_value(s, depth + 1) < 0) return -1;
            ws(s);
            if (s->p >= s->end) return bail(s);
            if (*s->p == ']') {
                s->p++;
                return 0;
            }
            if (*s->p != ',') return bail(s);
            s->p++;
            ws(s);
        }
    }
    case 't': return literal(s, "true", 4);
    case 'f': return literal(s, "false", 5);
    case 'n': return literal(s, "null", 4);
    default: return number(s);
    }
}

/* A field typed `str | None`: a string (its value) or null (absent); anything else bails. */
static int opt_string(Scan *s, Str *out) {
    int k = peek_kind(s);
    if (k == K_NULL) {
        *out = NONE;
        return literal(s, "null", 4);
    }
    if (k != K_STRING) return bail(s);
    return string(s, out, 1, NULL);
}

static inline int key_is(Str key, const char *name, Py_ssize_t n) {
    return key.n == n && memcmp(key.p, name, (size_t)n) == 0;
}
#define KEY(k, lit) key_is(k, lit, (Py_ssize_t)(sizeof(lit) - 1))

/* as_text's blank rule for strings: "" and "-" are no value. */
static inline int blank(Str v) { return !v.p || v.n == 0 || (v.n == 1 && v.p[0] == '-'); }
static inline int truthy(Str v) { return v.p && v.n > 0; }

/* first_string_value over the object at s->p (any other value: skipped, no value). Members are
 * a handful (DynamoDB attribute maps); a duplicate key bails (a dict keeps the first position
 * with the last value). */
static int first_string_value(Scan *s, int depth, Str *out) {
    *out = NONE;
    if (peek_kind(s) != K_OBJECT) return skip_value(s, depth);
    if (obj_open(s, depth + 1) < 0) return -1;
    Str seen[MAX_MAP_MEMBERS];
    int nseen = 0, first = 1, r, found = 0;
    Str key;
    while ((r = obj_next(s, &first, &key)) == 1) {
        for (int i = 0; i < nseen; i++)
            if (seen[i].n == key.n && memcmp(seen[i].p, key.p, (size_t)key.n) == 0) return bail(s);
        if (nseen == MAX_MAP_MEMBERS) return bail(s);
        seen[nseen++] = key;
        int k = peek_kind(s);
        if (found) {
            if (skip_value(s, depth + 1) < 0) return -1;
        } else if (k == K_STRING) {
            if (string(s, out, 1, NULL) < 0) return -1;
            found = 1;
        } else if (k == K_OBJECT) {
            /* v.get("S"): the last "S" member wins; a string there is the answer. */
            if (obj_open(s, depth + 2) < 0) return -1;
            int f2 = 1, r2, has_s = 0;
            Str k2, sval = NONE;
            while ((r2 = obj_next(s, &f2, &k2)) == 1) {
                if (KEY(k2, "S")) {
                    if (has_s) return bail(s);
                    has_s = 1;
                    if (peek_kind(s) == K_STRING) {
                        if (string(s, &sval, 1, NULL) < 0) return -1;
                    } else if (skip_value(s, depth + 2) < 0) {
                        return -1;
                    }
                } else if (skip_value(s, depth + 2) < 0) {
                    return -1;
                }
                after_value(s);
            }
            if (r2 < 0) return -1;
            if (sval.p) {
                *out = sval;
                found = 1;
            }
        } else if (skip_value(s, depth + 1) < 0) {
            return -1;
        }
        after_value(s);
    }
    return r;
}

/* cloudtrail._ASSUMED, as RE2 reads it: ^arn:[\w-]+:sts::[^:]*:assumed-role/([^/]+)/(.+)$ where
 * \w is ASCII and '.' is any character but a line feed. */
static int assumed_role(Str arn, Str *role, Str *session) {
    *role = *session = NONE;
    const char *p = arn.p, *end = arn.p + arn.n;
    if (!p || arn.n < 4 || memcmp(p, "arn:", 4) != 0) return 0;
    const char *q = p + 4;
    while (q < end && ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
                       (*q >= '0' && *q <= '9') || *q == '_' || *q == '-'))
        q++;
    if (q == p + 4 || end - q < 6 || memcmp(q, ":sts::", 6) != 0) return 0;
    q += 6;
    while (q < end && *q != ':') q++;
    if (end - q < 14 || memcmp(q, ":assumed-role/", 14) != 0) return 0;
    q += 14;
    const char *r0 = q;
    while (q < end && *q != '/') q++;
    if (q == r0 || q >= end) return 0;
    const char *s0 = q + 1;
    if (s0 >= end || memchr(s0, '\n', (size_t)(end - s0))) return 0;
    role->p = r0;
    role->n = q - r0;
    session->p = s0;
    session->n = end - s0;
    return 1;
}

/* One record's values. */
typedef struct {
    Str v[H_ROLE_ARN + 1];
    Str bucket, prefix, table, key_str, key_fsv, eav_fsv;
    int has_params, key_is_string, login_failed;
} Rec;

/* Bits for duplicate detection, per object. */
#define SEEN(mask, bit) \
    do {                              \
        if ((mask) & ((uint64_t)1 << (bit))) \
            return bail(s);                  \
        (mask) |= (uint64_t)1 << (bit);      \
    } while (0)

static int user_identity(Scan *s, Rec *r, int depth) {
    if (peek_kind(s) != K_OBJECT) return bail(s); /* null or other: not an Identity */
    if (obj_open(s, depth + 1) < 0) return -1;
    unsigned seen = 0;
    int first = 1, rc;
    Str key;
    while ((rc = obj_next(s, &first, &key)) == 1) {
        int col = -1;
        if (KEY(key, "type")) col = ACTOR_TYPE;
        else if (KEY(key, "arn")) col = ARN;
        else if (KEY(key, "invokedBy")) col = INVOKED_BY;
        else if (KEY(key, "principalId")) col = PRINCIPAL_ID;
        else if (KEY(key, "accountId")) col = IDENT_ACCOUNT;
        else if (KEY(key, "accessKeyId")) col = ACTOR_SESSION;
        if (col >= 0) {
            SEEN(seen, col - ACTOR_TYPE);
            if (opt_string(s, &r->v[col]) < 0) return -1;
        } else if (KEY(key, "sessionContext")) {
            SEEN(seen, 10);
            if (peek_kind(s) != K_OBJECT) return bail(s);
            if (obj_open(s, depth + 2) < 0) return -1;
            unsigned seen2 = 0;
            int f2 = 1, r2;
            Str k2;
            while ((r2 = obj_next(s, &f2, &k2)) == 1) {
                if (KEY(k2, "sourceIdentity")) {
                    SEEN(seen2, 0);
                    if (opt_string(s, &r->v[SESSION_SOURCE_IDENTITY]) < 0) return -1;
                } else if (KEY(k2, "sessionIssuer")) {
                    SEEN(seen2, 1);
                    if (peek_kind(s) != K_OBJECT) return bail(s);
                    if (obj_open(s, depth + 3) < 0) return -1;
                    unsigned seen3 = 0;
                    int f3 = 1, r3;
                    Str k3;
                    while ((r3 = obj_next(s, &f3, &k3)) == 1) {
                        if (KEY(k3, "arn")) {
                            SEEN(seen3, 0);
                            if (opt_string(s, &r->v[H_ROLE_ARN]) < 0) return -1;
                        } else if (skip_value(s, depth + 3) < 0) {
                            return -1;
                        }
                        after_value(s);
                    }
                    if (r3 < 0) return -1;
                } else if (skip_value(s, depth + 2) < 0) {
                    return -1;
                }
                after_value(s);
            }
            if (r2 < 0) return -1;
        } else if (skip_value(s, depth + 1) < 0) {
            return -1;
        }
        after_value(s);
    }
    return rc;
}

static int request_parameters(Scan *s, Rec *r, int depth) {
    int k = peek_kind(s);
    if (k == K_NULL) return literal(s, "null", 4);
    if (k != K_OBJECT) return bail(s);
    r->has_params = 1;
    if (obj_open(s, depth + 1) < 0) return -1;
    unsigned seen = 0;
    int first = 1, rc;
    Str key;
    while ((rc = obj_next(s, &first, &key)) == 1) {
        if (KEY(key, "bucketName")) {
            SEEN(seen, 0);
            if (opt_string(s, &r->bucket) < 0) return -1;
        } else if (KEY(key, "prefix")) {
            SEEN(seen, 1);
            if (opt_string(s, &r->prefix) < 0) return -1;
        } else if (KEY(key, "tableName")) {
            SEEN(seen, 2);
            if (opt_string(s, &r->table) < 0) return -1;
        } else if (KEY(key, "key")) {
            SEEN(seen, 3);
            int kk = peek_kind(s);
            if (kk == K_STRING) {
                r->key_is_string = 1;
                if (string(s, &r->key_str, 1, NULL) < 0) return -1;
            } else if (first_string_value(s, depth + 1, &r->key_fsv) < 0) {
                return -1;
            }
        } else if (KEY(key, "expressionAttributeValues")) {
            SEEN(seen, 4);
            if (first_string_value(s, depth + 1, &r->eav_fsv) < 0) return -1;
        } else if (KEY(key, "tags") || KEY(key, "principalTags")) {
            /* Read by Python for AssumeRole records only; a duplicate would change that. */
            SEEN(seen, KEY(key, "tags") ? 5 : 6);
            if (skip_value(s, depth + 1) < 0) return -1;
        } else if (skip_value(s, depth + 1) < 0) {
            return -1;
        }
        after_value(s);
    }
    return rc;
}

static int response_elements(Scan *s, Rec *r, int depth) {
    int k = peek_kind(s);
    if (k == K_NULL) return literal(s, "null", 4);
    if (k != K_OBJECT) return bail(s);
    if (obj_open(s, depth + 1) < 0) return -1;
    unsigned seen = 0;
    int first = 1, rc;
    Str key;
    while ((rc = obj_next(s, &first, &key)) == 1) {
        if (KEY(key, "ConsoleLogin")) {
            SEEN(seen, 0);
            if (peek_kind(s) == K_STRING) {
                Str v;
                if (string(s, &v, 1, NULL) < 0) return -1;
                r->login_failed = v.n == 7 && memcmp(v.p, "Failure", 7) == 0;
            } else {
                r->login_failed = 0;
                if (skip_value(s, depth + 1) < 0) return -1;
            }
        } else if (KEY(key, "credentials")) {
            SEEN(seen, 1);
            if (skip_value(s, depth + 1) < 0) return -1;
        } else if (skip_value(s, depth + 1) < 0) {
            return -1;
        }
        after_value(s);
    }
    return rc;
}

/* The S3 ARN rule of cloudtrail._targets: ^arn:[\w-]+:s3:::([^/]+)(?:/(.*))?$ on an ASCII ARN
 * without line breaks (others bail: Python's \w, '.' and '$' differ there). */
static int s3_arn(Scan *s, Str a, Str *bucket, Str *key, int *matched) {
    *matched = 0;
    for (Py_ssize_t i = 0; i < a.n; i++) {
        unsigned char c = (unsigned char)a.p[i];
        if (c >= 0x80 || c == '\n' || c == '\r') return bail(s);
    }
    if (a.n < 4 || memcmp(a.p, "arn:", 4) != 0) return 0;
    Py_ssize_t i = 4;
    while (i < a.n) {
        unsigned char c = (unsigned char)a.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            break;
        i++;
    }
    if (i == 4 || a.n - i < 6 || memcmp(a.p + i, ":s3:::", 6) != 0) return 0;
    i += 6;
    Py_ssize_t b0 = i;
    while (i < a.n && a.p[i] != '/') i++;
    if (i == b0) return 0;
    *matched = 1;
    bucket->p = a.p + b0;
    bucket->n = i - b0;
    if (i < a.n) {
        key->p = a.p + i + 1;
        key->n = a.n - i - 1;
    } else {
        *key = NONE;
    }
    return 0;
}

typedef struct {
    PyObject_HEAD
    Col cols[NCOLS];
    Buf flags; /* per row: 1 a console login failed, 2 the record might hold a secret */
    Buf scratch;
    Buf arns;         /* the ARNs of the current record, space-joined */
    Buf resource;     /* the current record's composed resource */
    Py_ssize_t rows;
} Builder;

/* resources: an array of objects (or null); each element's ARN (else arn) as text. */
static int resources(Scan *s, Builder *b, int depth, Str *bucket, Str *s3key,
                     Py_ssize_t *first_arn, Py_ssize_t *first_arn_len) {
    int k = peek_kind(s);
    if (k == K_NULL) return literal(s, "null", 4);
    if (k != K_ARRAY) return bail(s);
    if (depth + 1 > MAX_DEPTH) return bail(s);
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 0;
    }
    for (;;) {
        if (peek_kind(s) != K_OBJECT) return bail(s);
        if (obj_open(s, depth + 2) < 0) return -1;
        unsigned seen = 0;
        int first = 1, rc;
        Str key, upper = NONE, lower = NONE;
        while ((rc = obj_next(s, &first, &key)) == 1) {
            int which = KEY(key, "ARN") ? 1 : KEY(key, "arn") ? 2 : 0;
            if (which) {
                SEEN(seen, which);
                /* Any JSON value is allowed there; only strings and null keep the file here. */
                if (opt_string(s, which == 1 ? &upper : &lower) < 0) return -1;
            } else if (skip_value(s, depth + 2) < 0) {
                return -1;
            }
            after_value(s);
        }
        if (rc < 0) return -1;
        Str a = truthy(upper) ? upper : lower; /* r.ARN or r.arn */
        if (!blank(a)) {
            if (b->arns.len && buf_put(&b->arns, " ", 1) < 0) return -1;
            Py_ssize_t at = b->arns.len;
            if (buf_put(&b->arns, a.p, a.n) < 0) return -1;
            if (*first_arn < 0) { /* arns may still move: an offset */
                *first_arn = at;
                *first_arn_len = a.n;
            }
            if (!bucket->p && memmem(a.p, (size_t)a.n, ":s3:::", 6)) {
                Str bk, ky;
                int m;
                if (s3_arn(s, a, &bk, &ky, &m) < 0) return -1;
                if (m) {
                    *bucket = bk;
                    if (!s3key->p) *s3key = ky;
                }
            }
        }
        ws(s);
        if (s->p >= s->end) return bail(s);
        if (*s->p == ']') {
            s->p++;
            return 0;
        }
        if (*s->p != ',') return bail(s);
        s->p++;
        ws(s);
    }
}

/* One record (s->p at its '{'): its values appended as row b->rows. */
static int record(Scan *s, Builder *b) {
    const unsigned char *start = s->p;
    Py_ssize_t base64 = s->base64;
    Rec r;
    memset(&r, 0, sizeof r);
    s->scratch->len = 0;
    b->arns.len = 0;
    Str bucket = NONE, s3key = NONE;
    Py_ssize_t first_arn = -1, first_arn_len = 0;
    if (obj_open(s, 2) < 0) return -1;
    uint64_t seen = 0;
    int first = 1, rc;
    Str key;
    while ((rc = obj_next(s, &first, &key)) == 1) {
        int col = -1, bit = -1;
        switch (key.n) {
        case 7:
            if (KEY(key, "eventID")) col = EVENT_ID;
            break;
        case 9:
            if (KEY(key, "eventTime")) col = EVENT_TIME;
            else if (KEY(key, "eventName")) col = ACTION;
            else if (KEY(key, "eventType")) col = EVENT_TYPE;
            else if (KEY(key, "errorCode")) col = ERROR_CODE;
            else if (KEY(key, "awsRegion")) col = REGION;
            else if (KEY(key, "requestID")) col = REQUEST_ID;
            else if (KEY(key, "resources")) bit = 40;
            break;
        case 10:
            if (KEY(key, "@timestamp")) col = TIMESTAMP;
            break;
        case 11:
            if (KEY(key, "eventSource")) col = SERVICE;
            break;
        case 12:
            if (KEY(key, "userIdentity")) bit = 41;
            break;
        case 14:
            if (KEY(key, "sourceIdentity")) col = SOURCE_IDENTITY;
            break;
        case 15:
            if (KEY(key, "sourceIPAddress")) col = SOURCE_IP;
            break;
        case 16:
            if (KEY(key, "responseElements")) bit = 42;
            break;
        case 17:
            if (KEY(key, "requestParameters")) bit = 43;
            break;
        case 18:
            if (KEY(key, "recipientAccountId")) col = RECIPIENT;
            break;
        }
        if (col < 0 && bit < 0 && KEY(key, "userAgent")) col = USER_AGENT;
        /* Vendor shapes and envelopes: Python knows them. */
        if (col < 0 && bit < 0 &&
            (KEY(key, "network") || KEY(key, "http") || KEY(key, "insightDetails") ||
             KEY(key, "awslogs") || KEY(key, "logEvents") || KEY(key, "Events") ||
             KEY(key, "CloudTrailEvent") || KEY(key, "jsonPayload") || KEY(key, "detail") ||
             KEY(key, "detail-type")))
            return bail(s);
        if (col >= 0) {
            SEEN(seen, col);
            if (opt_string(s, &r.v[col]) < 0) return -1;
        } else if (bit == 41) {
            SEEN(seen, bit);
            if (user_identity(s, &r, 2) < 0) return -1;
        } else if (bit == 43) {
            SEEN(seen, bit);
            if (request_parameters(s, &r, 2) < 0) return -1;
        } else if (bit == 42) {
            SEEN(seen, bit);
            if (response_elements(s, &r, 2) < 0) return -1;
        } else if (bit == 40) {
            SEEN(seen, bit);
            if (resources(s, b, 2, &bucket, &s3key, &first_arn, &first_arn_len) < 0) return -1;
        } else if (skip_value(s, 2) < 0) {
            return -1;
        }
        after_value(s);
    }
    if (rc < 0) return -1;
    if (!r.v[ACTION].p && !r.v[SERVICE].p) return bail(s); /* typed_cloudtrail's rule */

    /* cloudtrail._targets: params first, then the ARNs (which were read in document order, so a
     * bucket from an ARN must yield to bucketName whichever came first). */
    Str p_bucket = NONE, p_key = NONE, table = NONE, ddb = NONE;
    if (r.has_params) {
        p_bucket = blank(r.bucket) ? NONE : r.bucket;
        table = blank(r.table) ? NONE : r.table;
        if (r.key_is_string) p_key = blank(r.key_str) ? NONE : r.key_str;
        else p_key = blank(r.prefix) ? NONE : r.prefix;
        if (table.p) ddb = truthy(r.key_fsv) ? r.key_fsv : r.eav_fsv;
    }
    Str out_bucket = p_bucket, out_key = p_key;
    if (!p_bucket.p && bucket.p) {
        out_bucket = bucket;
        if (!p_key.p) out_key = s3key;
    }
    Str arns = NONE, arn0 = NONE;
    if (b->arns.len) {
        arns.p = b->arns.p;
        arns.n = b->arns.len;
        arn0.p = b->arns.p + first_arn;
        arn0.n = first_arn_len;
    }
    b->resource.len = 0;
    Str resource = NONE;
    if (out_bucket.p) {
        if (buf_put(&b->resource, "s3://", 5) < 0 ||
            buf_put(&b->resource, out_bucket.p, out_bucket.n) < 0)
            return -1;
        if (truthy(out_key) &&
            (buf_put(&b->resource, "/", 1) < 0 || buf_put(&b->resource, out_key.p, out_key.n) < 0))
            return -1;
        resource.p = b->resource.p;
        resource.n = b->resource.len;
    } else if (table.p) {
        if (buf_put(&b->resource, "dynamodb:", 9) < 0 ||
            buf_put(&b->resource, table.p, table.n) < 0)
            return -1;
        if (truthy(ddb) &&
            (buf_put(&b->resource, "/", 1) < 0 || buf_put(&b->resource, ddb.p, ddb.n) < 0))
            return -1;
        resource.p = b->resource.p;
        resource.n = b->resource.len;
    } else {
        resource = arn0;
    }

    Py_ssize_t row = b->rows;
    for (int c = 0; c <= H_ROLE_ARN; c++) /* as_text's blank rule: "" and "-" are no value */
        if (col_append(&b->cols[c], row, blank(r.v[c]) ? NONE : r.v[c]) < 0) return -1;
    Str raw = {(const char *)start, s->p - start};
    if (col_append(&b->cols[RESOURCE], row, resource) < 0 ||
        col_append(&b->cols[H_S3_BUCKET], row, out_bucket) < 0 ||
        col_append(&b->cols[H_S3_KEY], row, out_key) < 0 ||
        col_append(&b->cols[H_DDB_TABLE], row, table) < 0 ||
        col_append(&b->cols[H_DDB_KEY], row, table.p ? ddb : NONE) < 0 ||
        col_append(&b->cols[H_ARNS], row, arns) < 0)
        return -1;
    Str role, session;
    assumed_role(r.v[ARN], &role, &session);
    if (col_append(&b->cols[H_ROLE_NAME], row, role) < 0 ||
        col_append(&b->cols[H_SESSION_NAME], row, session) < 0 ||
        col_append(&b->cols[RAW], row, raw) < 0)
        return -1;
    int secret = s->base64 != base64 || secrets_needles(start, raw.n);
    char flags = (char)(r.login_failed | secret << 1);
    if (buf_put(&b->flags, &flags, 1) < 0) return -1;
    b->rows++;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Builder                                                                                   */

static void cols_reset(Builder *b) {
    for (int c = 0; c < NCOLS; c++) {
        b->cols[c].data.len = 0;
        b->cols[c].valid.len = 0;
        b->cols[c].offsets.len = 0;
        b->cols[c].nulls = 0;
        int32_t zero = 0;
        buf_put(&b->cols[c].offsets, &zero, sizeof zero); /* 4 bytes into >= 4096: cannot fail */
    }
    b->flags.len = 0;
    b->rows = 0;
}

static int Builder_init(Builder *b, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "", kwlist)) return -1;
    for (int c = 0; c < NCOLS; c++)
        if (buf_reserve(&b->cols[c].offsets, 4096) < 0) return -1;
    cols_reset(b);
    return 0;
}

static void Builder_dealloc(Builder *b) {
    for (int c = 0; c < NCOLS; c++) {
        buf_free(&b->cols[c].data);
        buf_free(&b->cols[c].offsets);
        buf_free(&b->cols[c].valid);
    }
    buf_free(&b->flags);
    buf_free(&b->scratch);
    buf_free(&b->arns);
    buf_free(&b->resource);
    Py_TYPE(b)->tp_free((PyObject *)b);
}

/* Roll the columns back to `rows` rows (a file that bailed half way adds nothing). */
static void truncate_to(Builder *b, Py_ssize_t rows, Py_ssize_t *data_len, Py_ssize_t *nulls) {
    for (int c = 0; c < NCOLS; c++) {
        Col *col = &b->cols[c];
        col->data.len = data_len[c];
        col->offsets.len = (rows + 1) * (Py_ssize_t)sizeof(int32_t);
        col->valid.len = (rows + 7) / 8;
        if (rows % 8) col->valid.p[rows / 8] &= (char)((1 << (rows % 8)) - 1);
        col->nulls = nulls[c];
    }
    b->flags.len = rows;
    b->rows = rows;
}

static PyObject *Builder_add(Builder *b, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t rows0 = b->rows, data_len[NCOLS], nulls[NCOLS];
    for (int c = 0; c < NCOLS; c++) {
        data_len[c] = b->cols[c].data.len;
        nulls[c] = b->cols[c].nulls;
    }
    b->scratch.len = 0;
    Scan s = {(const unsigned char *)view.buf, (const unsigned char *)view.buf + view.len,
              &b->scratch, 0, 0};
    PyObject *result = NULL;
    if (buf_reserve(&b->scratch, view.len + 16) < 0) goto done;
    ws(&s);
    if (s.p >= s.end || *s.p != '{') {
        s.bail = 1;
        goto out;
    }
    obj_open(&s, 0);
    int first = 1, rc, found = 0;
    Str key;
    while ((rc = obj_next(&s, &first, &key)) == 1) {
        if (KEY(key, "Records")) {
            if (found || peek_kind(&s) != K_ARRAY) {
                s.bail = 1;
                goto out;
            }
            found = 1;
            s.p++;
            ws(&s);
            if (s.p < s.end && *s.p == ']') {
                s.p++;
            } else {
                for (;;) {
                    if (peek_kind(&s) != K_OBJECT) {
                        s.bail = 1;
                        goto out;
                    }
                    if (record(&s, b) < 0) goto out;
                    ws(&s);
                    if (s.p >= s.end) {
                        s.bail = 1;
                        goto out;
                    }
                    if (*s.p == ']') {
                        s.p++;
                        break;
                    }
                    if (*s.p != ',') {
                        s.bail = 1;
                        goto out;
                    }
                    s.p++;
                    ws(&s);
                }
            }
        } else if (skip_value(&s, 1) < 0) {
            goto out;
        }
        after_value(&s);
    }
    if (rc < 0) goto out;
    ws(&s);
    if (!found || s.p != s.end) s.bail = 1;
out:
    if (s.bail > 0 || PyErr_Occurred()) {
        truncate_to(b, rows0, data_len, nulls);
        if (!PyErr_Occurred()) {
            Py_INCREF(Py_None);
            result = Py_None;
        }
    } else {
        result = PyLong_FromSsize_t(b->rows - rows0);
    }
done:
    PyBuffer_Release(&view);
    return result;
}

/* The raw column's buffers with some rows' text replaced: (offsets, data) as bytes, written
 * once (the replaced rows are few; the rest is copied in runs). `rows` ascending, unique. */
static PyObject *raw_replaced(Builder *b, PyObject *rows, PyObject *texts) {
    Col *col = &b->cols[RAW];
    const int32_t *off = (const int32_t *)col->offsets.p;
    Py_ssize_t k = PyList_GET_SIZE(rows), size = col->data.len;
    for (Py_ssize_t j = 0; j < k; j++) {
        Py_ssize_t row = PyLong_AsSsize_t(PyList_GET_ITEM(rows, j));
        PyObject *text = PyList_GET_ITEM(texts, j);
        if (row == -1 && PyErr_Occurred()) return NULL;
        if (row < 0 || row >= b->rows || (j && row <= PyLong_AsSsize_t(PyList_GET_ITEM(rows, j - 1))) ||
            !PyBytes_Check(text)) {
            PyErr_SetString(PyExc_ValueError, "replacements: ascending rows, bytes");
            return NULL;
        }
        size += PyBytes_GET_SIZE(text) - (off[row + 1] - off[row]);
    }
    if (size > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "raw column chunk past 2 GiB");
        return NULL;
    }
    PyObject *offsets = PyBytes_FromStringAndSize(NULL, (b->rows + 1) * (Py_ssize_t)sizeof(int32_t));
    PyObject *data = PyBytes_FromStringAndSize(NULL, size);
    if (!offsets || !data) {
        Py_XDECREF(offsets);
        Py_XDECREF(data);
        return NULL;
    }
    int32_t *o = (int32_t *)PyBytes_AS_STRING(offsets);
    char *w = PyBytes_AS_STRING(data);
    Py_ssize_t row = 0, at = 0;
    o[0] = 0;
    for (Py_ssize_t j = 0; j <= k; j++) {
        Py_ssize_t next = j < k ? PyLong_AsSsize_t(PyList_GET_ITEM(rows, j)) : b->rows;
        /* rows [row, next) unchanged: one copy, offsets shifted */
        memcpy(w + at, col->data.p + off[row], (size_t)(off[next] - off[row]));
        for (Py_ssize_t r = row; r < next; r++) o[r + 1] = (int32_t)(at + off[r + 1] - off[row]);
        at += off[next] - off[row];
        if (j == k) break;
        PyObject *text = PyList_GET_ITEM(texts, j);
        memcpy(w + at, PyBytes_AS_STRING(text), (size_t)PyBytes_GET_SIZE(text));
        at += PyBytes_GET_SIZE(text);
        o[next + 1] = (int32_t)at;
        row = next + 1;
    }
    return Py_BuildValue("(NN)", offsets, data);
}

/* take(rows=None, texts=None) -> (rows, {name: (validity, offsets, data, null_count)}, flags):
 * the buffers as bytes, the raw text of `rows` (ascending) replaced by `texts`; the builder
 * starts over. */
static PyObject *Builder_take(Builder *b, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"rows", "texts", NULL};
    PyObject *rows = Py_None, *texts = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO", kwlist, &rows, &texts)) return NULL;
    if ((rows == Py_None) != (texts == Py_None) ||
        (rows != Py_None && (!PyList_Check(rows) || !PyList_Check(texts) ||
                             PyList_GET_SIZE(rows) != PyList_GET_SIZE(texts)))) {
        PyErr_SetString(PyExc_TypeError, "take: rows and texts, lists of the same length");
        return NULL;
    }
    PyObject *cols = PyDict_New();
    if (!cols) return NULL;
    for (int c = 0; c < NCOLS; c++) {
        Col *col = &b->cols[c];
        PyObject *t;
        if (c == RAW && rows != Py_None) {
            PyObject *raw = raw_replaced(b, rows, texts);
            if (!raw) {
                Py_DECREF(cols);
                return NULL;
            }
            t = Py_BuildValue("(y#OOn)", col->valid.p ? col->valid.p : "", col->valid.len,
                              PyTuple_GET_ITEM(raw, 0), PyTuple_GET_ITEM(raw, 1), col->nulls);
            Py_DECREF(raw);
        } else if (c == RAW) {
            PyObject *data = hand_over(&col->data); /* most of the bytes: not copied */
            if (!data) {
                Py_DECREF(cols);
                return NULL;
            }
            t = Py_BuildValue("(y#y#Nn)", col->valid.p ? col->valid.p : "", col->valid.len,
                              col->offsets.p, (b->rows + 1) * (Py_ssize_t)sizeof(int32_t), data,
                              col->nulls);
        } else {
            t = Py_BuildValue("(y#y#y#n)", col->valid.p ? col->valid.p : "", col->valid.len,
                              col->offsets.p, (b->rows + 1) * (Py_ssize_t)sizeof(int32_t),
                              col->data.p ? col->data.p : "", col->data.len, col->nulls);
        }
        if (!t || PyDict_SetItemString(cols, COL_NAMES[c], t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(cols);
            return NULL;
        }
        Py_DECREF(t);
    }
    PyObject *out = Py_BuildValue("(nNy#)", b->rows, cols,
                                  b->flags.p ? b->flags.p : "", b->flags.len);
    if (out) cols_reset(b);
    return out;
}

/* secrets() -> (rows, texts): the rows that might hold a secret, ascending, and their raw
 * text, for redaction before take(). */
static PyObject *Builder_secrets(Builder *b, PyObject *Py_UNUSED(ignored)) {
    PyObject *rows = PyList_New(0), *texts = PyList_New(0);
    if (!rows || !texts) goto fail;
    const int32_t *off = (const int32_t *)b->cols[RAW].offsets.p;
    for (Py_ssize_t r = 0; r < b->rows; r++) {
        if (!(b->flags.p[r] & 2)) continue;
        PyObject *i = PyLong_FromSsize_t(r);
        PyObject *t = PyBytes_FromStringAndSize(b->cols[RAW].data.p + off[r], off[r + 1] - off[r]);
        int bad = !i || !t || PyList_Append(rows, i) < 0 || PyList_Append(texts, t) < 0;
        Py_XDECREF(i);
        Py_XDECREF(t);
        if (bad) goto fail;
    }
    return Py_BuildValue("(NN)", rows, texts);
fail:
    Py_XDECREF(rows);
    Py_XDECREF(texts);
    return NULL;
}

static PyObject *Builder_rows(Builder *b, void *Py_UNUSED(closure)) {
    return PyLong_FromSsize_t(b->rows);
}

static PyObject *Builder_nbytes(Builder *b, void *Py_UNUSED(closure)) {
    return PyLong_FromSsize_t(b->cols[RAW].data.len);
}

static PyMethodDef Builder_methods[] = {
    {"add", (PyCFunction)Builder_add, METH_O,
     "add(data) -> int | None: append the records of a decompressed delivery file; None (and "
     "nothing appended) when the file is not for this decoder."},
    {"take", (PyCFunction)(void (*)(void))Builder_take, METH_VARARGS | METH_KEYWORDS,
     "take(rows=None, texts=None) -> (rows, {column: (validity, offsets, data, nulls)}, flags): "
     "the raw text of `rows` (ascending) replaced by `texts`; flags has a byte a row, 1 = a "
     "console login failed, 2 = the record might hold a secret."},
    {"secrets", (PyCFunction)Builder_secrets, METH_NOARGS,
     "secrets() -> (rows, texts): the rows that might hold a secret and their raw text."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Builder_getset[] = {
    {"rows", (getter)Builder_rows, NULL, "rows held", NULL},
    {"nbytes", (getter)Builder_nbytes, NULL, "raw bytes held", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject BuilderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "pipeline.ingest._ctscan.Builder",
    .tp_basicsize = sizeof(Builder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "CloudTrail delivery files -> Arrow string column buffers.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Builder_init,
    .tp_dealloc = (destructor)Builder_dealloc,
    .tp_methods = Builder_methods,
    .tp_getset = Builder_getset,
};

/* ---------------------------------------------------------------------------------------- */
/* Helpers for the record hash and the raw column                                            */

static inline uint64_t load64(const unsigned char *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
#else
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
#endif
}

/* gather(chunks, chunk_of, index) -> (offsets, data): the strings chunks[chunk_of[i]][index[i]]
 * for each i, as one Arrow string array's buffers (int32 offsets). A chunk is (offsets buffer,
 * data buffer, array offset, length) of an Arrow string array; chunk_of is int32, index int64.
 * For the raw text, which Arrow's take would first join across chunks, then copy again. */
static PyObject *gather(PyObject *Py_UNUSED(mod), PyObject *args) {
    PyObject *chunks;
    Py_buffer which, index;
    if (!PyArg_ParseTuple(args, "O!y*y*", &PyList_Type, &chunks, &which, &index)) return NULL;
    PyObject *result = NULL, *offsets = NULL, *data = NULL;
    Py_ssize_t nchunks = PyList_GET_SIZE(chunks), n = index.len / (Py_ssize_t)sizeof(int64_t);
    Py_buffer *bufs = PyMem_Calloc((size_t)(2 * nchunks + 1), sizeof(Py_buffer));
    Py_ssize_t *first = PyMem_Calloc((size_t)nchunks + 1, sizeof(Py_ssize_t));
    Py_ssize_t *length = PyMem_Calloc((size_t)nchunks + 1, sizeof(Py_ssize_t));
    Py_ssize_t got = 0;
    if (!bufs || !first || !length) {
        PyErr_NoMemory();
        goto done;
    }
    if (which.len != n * (Py_ssize_t)sizeof(int32_t)) {
        PyErr_SetString(PyExc_ValueError, "gather: chunk_of and index differ in length");
        goto done;
    }
    for (Py_ssize_t c = 0; c < nchunks; c++) {
        PyObject *t = PyList_GET_ITEM(chunks, c);
        PyObject *o, *d;
        if (!PyArg_ParseTuple(t, "OOnn", &o, &d, &first[c], &length[c])) goto done;
        if (PyObject_GetBuffer(o, &bufs[2 * c], PyBUF_SIMPLE) < 0) goto done;
        got++;
        if (PyObject_GetBuffer(d, &bufs[2 * c + 1], PyBUF_SIMPLE) < 0) goto done;
        got++;
        if (first[c] < 0 || length[c] < 0 ||
            (first[c] + length[c] + 1) * (Py_ssize_t)sizeof(int32_t) > bufs[2 * c].len) {
            PyErr_SetString(PyExc_ValueError, "gather: a chunk's offsets are too short");
            goto done;
        }
    }
    const int32_t *ch = (const int32_t *)which.buf;
    const int64_t *ix = (const int64_t *)index.buf;
    Py_ssize_t size = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (ch[i] < 0 || ch[i] >= nchunks || ix[i] < 0 || ix[i] >= length[ch[i]]) {
            PyErr_SetString(PyExc_IndexError, "gather: row out of range");
            goto done;
        }
        const int32_t *o = (const int32_t *)bufs[2 * ch[i]].buf + first[ch[i]];
        if (o[ix[i]] < 0 || o[ix[i] + 1] < o[ix[i]] || o[ix[i] + 1] > bufs[2 * ch[i] + 1].len) {
            PyErr_SetString(PyExc_ValueError, "gather: offsets out of range");
            goto done;
        }
        size += o[ix[i] + 1] - o[ix[i]];
    }
    if (size > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "gather: past 2 GiB");
        goto done;
    }
    offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * (Py_ssize_t)sizeof(int32_t));
    data = PyBytes_FromStringAndSize(NULL, size);
    if (!offsets || !data) goto done;
    int32_t *out = (int32_t *)PyBytes_AS_STRING(offsets);
    char *w = PyBytes_AS_STRING(data);
    int32_t at = 0;
    out[0] = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const int32_t *o = (const int32_t *)bufs[2 * ch[i]].buf + first[ch[i]];
        int32_t len = o[ix[i] + 1] - o[ix[i]];
        memcpy(w + at, (const char *)bufs[2 * ch[i] + 1].buf + o[ix[i]], (size_t)len);
        at += len;
        out[i + 1] = at;
    }
    result = Py_BuildValue("(OO)", offsets, data);
done:
    Py_XDECREF(offsets);
    Py_XDECREF(data);
    if (bufs)
        for (Py_ssize_t k = 0; k < got; k++) PyBuffer_Release(&bufs[k]);
    PyMem_Free(bufs);
    PyMem_Free(first);
    PyMem_Free(length);
    PyBuffer_Release(&which);
    PyBuffer_Release(&index);
    return result;
}

/* XXH64 (seed 0), as the xxhash package's xxh64 computes it: the record hash. */
#define XP1 0x9E3779B185EBCA87ULL
#define XP2 0xC2B2AE3D27D4EB4FULL
#define XP3 0x165667B19E3779F9ULL
#define XP4 0x85EBCA77C2B2AE63ULL
#define XP5 0x27D4EB2F165667C5ULL

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint32_t load32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t xxh_round(uint64_t acc, uint64_t input) {
    acc += input * XP2;
    acc = rotl64(acc, 31);
    return acc * XP1;
}

static inline uint64_t xxh_merge(uint64_t acc, uint64_t val) {
    acc ^= xxh_round(0, val);
    return acc * XP1 + XP4;
}

static uint64_t xxh64(const unsigned char *p, Py_ssize_t len) {
    const unsigned char *end = p + len;
    uint64_t h;
    if (len >= 32) {
        uint64_t v1 = XP1 + XP2, v2 = XP2, v3 = 0, v4 = (uint64_t)0 - XP1;
        do {
            v1 = xxh_round(v1, load64(p));
            v2 = xxh_round(v2, load64(p + 8));
            v3 = xxh_round(v3, load64(p + 16));
            v4 = xxh_round(v4, load64(p + 24));
            p += 32;
        } while (end - p >= 32);
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = xxh_merge(h, v1);
        h = xxh_merge(h, v2);
        h = xxh_merge(h, v3);
        h = xxh_merge(h, v4);
    } else {
        h = XP5;
    }
    h += (uint64_t)len;
    while (end - p >= 8) {
        h ^= xxh_round(0, load64(p));
        h = rotl64(h, 27) * XP1 + XP4;
        p += 8;
    }
    if (end - p >= 4) {
        h ^= (uint64_t)load32(p) * XP1;
        h = rotl64(h, 23) * XP2 + XP3;
        p += 4;
    }
    while (p < end) {
        h ^= (uint64_t)(*p) * XP5;
        h = rotl64(h, 11) * XP1;
        p++;
    }
    h ^= h >> 33;
    h *= XP2;
    h ^= h >> 29;
    h *= XP3;
    h ^= h >> 32;
    return h;
}

/* join_hash(columns, n) -> bytes: per row, XXH64 (16 hex digits, most significant first, as
 * xxhash's hexdigest) of the row's values joined by 0x1F, a null written as 0x00, as
 * pc.binary_join_element_wise(..., "\x1f", null_replacement="\x00") would join them, without
 * building the joined column. A column is (validity or None,
 * offsets, data, array offset) of an Arrow string array of n rows. */
static PyObject *join_hash(PyObject *Py_UNUSED(mod), PyObject *args) {
    PyObject *columns;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &columns, &n)) return NULL;
    Py_ssize_t k = PyList_GET_SIZE(columns), got = 0;
    PyObject *out = NULL;
    Buf row = {NULL, 0, 0};
    Py_buffer *bufs = PyMem_Calloc((size_t)(3 * k + 1), sizeof(Py_buffer));
    int *has_validity = PyMem_Calloc((size_t)k + 1, sizeof(int));
    Py_ssize_t *first = PyMem_Calloc((size_t)k + 1, sizeof(Py_ssize_t));
    if (!bufs || !has_validity || !first) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t c = 0; c < k; c++) {
        PyObject *v, *o, *d;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(columns, c), "OOOn", &v, &o, &d, &first[c]))
            goto done;
        has_validity[c] = v != Py_None;
        if (PyObject_GetBuffer(has_validity[c] ? v : o, &bufs[3 * c], PyBUF_SIMPLE) < 0) goto done;
        got++;
        if (PyObject_GetBuffer(o, &bufs[3 * c + 1], PyBUF_SIMPLE) < 0) goto done;
        got++;
        if (PyObject_GetBuffer(d, &bufs[3 * c + 2], PyBUF_SIMPLE) < 0) goto done;
        got++;
        if (first[c] < 0 || n < 0 ||
            (first[c] + n + 1) * (Py_ssize_t)sizeof(int32_t) > bufs[3 * c + 1].len ||
            (has_validity[c] && (first[c] + n + 7) / 8 > bufs[3 * c].len)) {
            PyErr_SetString(PyExc_ValueError, "join_hash: a column is shorter than n rows");
            goto done;
        }
    }
    out = PyBytes_FromStringAndSize(NULL, n * 16);
    if (!out) goto done;
    char *w = PyBytes_AS_STRING(out);
    static const char HEX[] = "0123456789abcdef";
    for (Py_ssize_t i = 0; i < n; i++) {
        row.len = 0;
        for (Py_ssize_t c = 0; c < k; c++) {
            Py_ssize_t at = first[c] + i;
            if (c && buf_put(&row, "\x1f", 1) < 0) goto fail;
            const unsigned char *valid = bufs[3 * c].buf;
            if (has_validity[c] && !(valid[at / 8] & (1 << (at % 8)))) {
                if (buf_put(&row, "\0", 1) < 0) goto fail;
                continue;
            }
            const int32_t *o = (const int32_t *)bufs[3 * c + 1].buf;
            if (o[at] < 0 || o[at + 1] < o[at] || o[at + 1] > bufs[3 * c + 2].len) {
                PyErr_SetString(PyExc_ValueError, "join_hash: offsets out of range");
                goto fail;
            }
            if (buf_put(&row, (const char *)bufs[3 * c + 2].buf + o[at], o[at + 1] - o[at]) < 0)
                goto fail;
        }
        uint64_t hv = xxh64((const unsigned char *)(row.p ? row.p : ""), row.len);
        for (int b = 7; b >= 0; b--) {
            unsigned char byte = (unsigned char)(hv >> (8 * b));
            *w++ = HEX[byte >> 4];
            *w++ = HEX[byte & 15];
        }
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    buf_free(&row);
    if (bufs)
        for (Py_ssize_t j = 0; j < got; j++) PyBuffer_Release(&bufs[j]);
    PyMem_Free(bufs);
    PyMem_Free(has_validity);
    PyMem_Free(first);
    return out;
}

/* In _credentials.c: AssumeRole credentials in a record's own bytes (redact.redact_many), and
 * the pre-filter over any bytes. */
PyObject *credential_spans(PyObject *self, PyObject *args);
PyObject *might_hold_secret(PyObject *self, PyObject *arg);

static PyMethodDef module_methods[] = {
    {"credential_spans", credential_spans, METH_VARARGS,
     "credential_spans(raws, credential_keys) -> [spans | None]: redact.credential_spans."},
    {"might_hold_secret", might_hold_secret, METH_O,
     "might_hold_secret(raw) -> bool: prefilter.might_hold_secret."},
    {"join_hash", join_hash, METH_VARARGS,
     "join_hash(columns, n) -> bytes: XXH64 hex of each row's values joined (0x1F, null 0x00)."},
    {"gather", gather, METH_VARARGS,
     "gather(chunks, chunk_of, index) -> (offsets, data): strings picked from string arrays."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ctscan",
    "CloudTrail delivery files into Arrow column buffers (ingestion's C decoder).", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__ctscan(void) {
    secrets_init();
    if (PyType_Ready(&BuilderType) < 0 || PyType_Ready(&OwnedType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&BuilderType);
    if (PyModule_AddObject(m, "Builder", (PyObject *)&BuilderType) < 0) {
        Py_DECREF(&BuilderType);
        Py_DECREF(m);
        return NULL;
    }
    PyObject *names = PyTuple_New(NCOLS);
    if (!names) return NULL;
    for (int c = 0; c < NCOLS; c++) PyTuple_SET_ITEM(names, c, PyUnicode_FromString(COL_NAMES[c]));
    PyModule_AddObject(m, "COLUMNS", names);
    return m;
}
