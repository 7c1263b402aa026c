/* The secret pre-filter over a record's bytes: pipeline/ingest/prefilter.py compiled.
 *
 * prefilter.might_hold_secret is the reference and owns the needles; this copies them and must
 * flag exactly its records (tests/test_native.py compares the two on generated text, the
 * builder's flags on records, and the differential fuzzer on mutated ones). Which decoder owns
 * which rule: docs/DECODERS.md.
 *
 * A needle is a word (ASCII letters, either case) and a rule for what must follow it: nothing
 * ("token"), a separator run and "key" ("api" key), the same not followed by "id" ("access"
 * key), the rest of a key up to its colon ("pwd"), or a separator run, "string" or "param" and
 * the rest of a key ("query"). Each needle has an anchor, a pair of its letters that is rare in
 * CloudTrail records (measured on simulator records: ~11 anchors a KB in all, most of them the
 * "pa" of requestParameters and the "cc" of accessKeyId and accountId, each ruled out after a
 * few bytes), and only around an anchor is a needle compared whole. Sixteen places at a time
 * are tested for an anchor (GCC/Clang vector extensions: SSE2 on x86-64, NEON on arm64), or 32
 * on x86-64 with AVX2, chosen at run time (the wheel must run on any x86-64). OR-ing 0x20 folds
 * exactly the ASCII letters onto lower case and makes a letter of nothing else. */
#define _GNU_SOURCE
#include "_secrets.h"

#include <stdint.h>
#include <string.h>

enum { WORD, API_KEY, ACCESS_KEY, KEY_OR_SETTING_END, QUERY_KEY };

static const struct {
    const char *word;
    int at;   /* where its anchor pair starts */
    int rule; /* what must follow the word */
} NEEDLES[] = {
    {"token", 1, WORD},        {"secret", 2, WORD},   {"pass", 0, WORD},
    {"authorization", 7, WORD}, {"bearer", 0, WORD},   {"basic", 0, WORD},
    {"private", 2, WORD},      {"cookie", 3, WORD},   {"credential", 0, WORD},
    {"eyj", 1, WORD},          {"api", 0, API_KEY},   {"access", 1, ACCESS_KEY},
    {"pwd", 0, KEY_OR_SETTING_END},       {"query", 3, QUERY_KEY},
};
#define NNEEDLES ((int)(sizeof NEEDLES / sizeof NEEDLES[0]))
static Py_ssize_t NEEDLE_LEN[NNEEDLES];

static inline int is_sep(unsigned char c) { return c == '-' || c == '_' || c == '.' || c == ' '; }

/* Are the len bytes at p[at] (all within n) the lower-case letters w, in either case? */
static inline int word_at(const unsigned char *p, Py_ssize_t n, Py_ssize_t at, const char *w,
                          Py_ssize_t len) {
    if (at < 0 || at + len > n) return 0;
    for (Py_ssize_t j = 0; j < len; j++)
        if ((p[at + j] | 0x20) != (unsigned char)w[j]) return 0;
    return 1;
}

static inline Py_ssize_t skip_seps(const unsigned char *p, Py_ssize_t n, Py_ssize_t i) {
    while (i < n && is_sep(p[i])) i++;
    return i;
}

/* prefilter._KEY_END at p[i]: to the next quote, white space, a colon. */
static int key_end(const unsigned char *p, Py_ssize_t n, Py_ssize_t i) {
    const unsigned char *q = i < n ? memchr(p + i, '"', (size_t)(n - i)) : NULL;
    if (!q) return 0;
    for (i = q - p + 1; i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r');)
        i++;
    return i < n && p[i] == ':';
}

/* prefilter._SETTING_END at p[i]: the rest of a name (letters, digits, "_", ".", "-"), blanks,
 * "=". */
static int setting_end(const unsigned char *p, Py_ssize_t n, Py_ssize_t i) {
    while (i < n && (Py_ISALNUM(p[i]) || p[i] == '_' || p[i] == '.' || p[i] == '-')) i++;
    while (i < n && (p[i] == ' ' || p[i] == '\t')) i++;
    return i < n && p[i] == '=';
}

/* "access" then "key" at i (after the word): the separators, "key", and no separators then
 * "id" after it. */
static inline int key_not_id(const unsigned char *p, Py_ssize_t n, Py_ssize_t i) {
    i = skip_seps(p, n, i);
    if (!word_at(p, n, i, "key", 3)) return 0;
    i = skip_seps(p, n, i + 3);
    return !word_at(p, n, i, "id", 2);
}

/* Needle k whole, its word starting at p[start], within the n bytes (the rule's part that
 * reaches past the word stays within them too). */
static int needle_at(const unsigned char *p, Py_ssize_t n, Py_ssize_t start, int k) {
    Py_ssize_t len = NEEDLE_LEN[k], i = start + len;
    if (!word_at(p, n, start, NEEDLES[k].word, len)) return 0;
    switch (NEEDLES[k].rule) {
    case API_KEY:
        return word_at(p, n, skip_seps(p, n, i), "key", 3);
    case ACCESS_KEY:
        return key_not_id(p, n, i);
    case KEY_OR_SETTING_END:
        return key_end(p, n, i) || setting_end(p, n, i);
    case QUERY_KEY:
        i = skip_seps(p, n, i);
        if (word_at(p, n, i, "string", 6)) return key_end(p, n, i + 6);
        return word_at(p, n, i, "param", 5) && key_end(p, n, i + 5);
    default:
        return 1;
    }
}

/* Is a needle anchored at p[pos], p[pos + 1]? */
static int needle_around(const unsigned char *p, Py_ssize_t n, Py_ssize_t pos) {
    unsigned char a = p[pos] | 0x20, b = p[pos + 1] | 0x20;
    for (int k = 0; k < NNEEDLES; k++) {
        const char *w = NEEDLES[k].word;
        if (a == (unsigned char)w[NEEDLES[k].at] && b == (unsigned char)w[NEEDLES[k].at + 1] &&
            needle_at(p, n, pos - NEEDLES[k].at, k))
            return 1;
    }
    return 0;
}

typedef unsigned char v16 __attribute__((vector_size(16)));
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static inline v16 folded16(const unsigned char *p) {
    v16 v;
    memcpy(&v, p, 16);
    return v | 0x20;
}

/* The portable version: every machine, and x86-64 without AVX2. */
static int needles_16(const unsigned char *p, Py_ssize_t n) {
    Py_ssize_t i = 0;
    for (; i + 17 <= n; i += 16) {
        v16 a = folded16(p + i), b = folded16(p + i + 1);
        v16 m = (v16)((a == 'o') & (b == 'k')) | (v16)((a == 'c') & (b == 'r')) |
                (v16)((a == 'p') & ((b == 'a') | (b == 'w'))) | (v16)((a == 'z') & (b == 'a')) |
                (v16)((a == 'b') & ((b == 'e') | (b == 'a'))) | (v16)((a == 'i') & (b == 'v')) |
                (v16)((a == 'k') & (b == 'i')) | (v16)((a == 'y') & (b == 'j')) |
                (v16)((a == 'a') & (b == 'p')) | (v16)((a == 'c') & (b == 'c')) |
                (v16)((a == 'r') & (b == 'y'));
        uint64_t lanes[2];
        memcpy(lanes, &m, 16);
        if (!(lanes[0] | lanes[1])) continue;
        for (int j = 0; j < 16; j++)
            if (m[j] && needle_around(p, n, i + j)) return 1;
    }
    for (; i + 1 < n; i++)
        if (needle_around(p, n, i)) return 1;
    return 0;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SECRETS_AVX2 1

/* The AVX2 version ("Teddy", as in Hyperscan and Rust's aho-corasick, about 4x faster here): each
 * needle owns a bit of one of two bytes (needle k: bit k % 8 of group k / 8), and per group four
 * 16-entry tables, looked up by the low and the high half of a byte (pshufb), give the needles
 * whose first anchor letter (lo1, hi1) or second (lo2, hi2) that half allows. A byte's two
 * lookups ANDed are exactly the needles whose letter it is folded: a bit stands for one letter,
 * the high-half tables take 4 and 5 as well as 6 and 7 (an upper-case letter is 0x20 less; an
 * anchor letter's 0x20-less twin is always that letter), and a byte of 0x80 or more looks up
 * nothing (pshufb gives 0 for it; the high half 8-f has no entry). ANDing that for 32 places
 * with the same for the 32 places one further on leaves bit k where needle k's anchor starts:
 * some 20 instructions for 32 places, where the 16-place test above takes some 40 for 16. Built
 * once from NEEDLES by secrets_init; at most 16 needles, lower-case letters for anchors. */
_Static_assert(NNEEDLES <= 16, "a needle is a bit of one of two bytes");
static unsigned char TEDDY[2][4][16] __attribute__((aligned(16)));

static void secrets_init_avx2(void) {
    for (int k = 0; k < NNEEDLES; k++)
        for (int half = 0; half < 2; half++) {
            unsigned char c = (unsigned char)NEEDLES[k].word[NEEDLES[k].at + half];
            unsigned char bit = (unsigned char)(1 << (k % 8));
            unsigned char(*t)[16] = TEDDY[k / 8];
            t[2 * half][c & 15] |= bit;
            t[2 * half + 1][c >> 4] |= bit;
            t[2 * half + 1][(c >> 4) - 2] |= bit; /* upper case */
        }
}

__attribute__((target("avx2"))) static inline __m256i lookup(const unsigned char (*t)[16],
                                                             __m256i alo, __m256i ahi,
                                                             __m256i blo, __m256i bhi) {
    const __m256i lo1 = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)t[0]));
    const __m256i hi1 = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)t[1]));
    const __m256i lo2 = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)t[2]));
    const __m256i hi2 = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)t[3]));
    __m256i ma = _mm256_and_si256(_mm256_shuffle_epi8(lo1, alo), _mm256_shuffle_epi8(hi1, ahi));
    __m256i mb = _mm256_and_si256(_mm256_shuffle_epi8(lo2, blo), _mm256_shuffle_epi8(hi2, bhi));
    return _mm256_and_si256(ma, mb);
}

__attribute__((target("avx2"))) static int needles_32(const unsigned char *p, Py_ssize_t n) {
    /* Under 33 bytes there is no whole step (its second load reads p[i + 1 .. i + 32]). */
    if (n < 33) return needles_16(p, n);
    const __m256i nibble = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    Py_ssize_t i = 0;
    for (;;) {
        /* The last step is the last 33 bytes, overlapping the one before (a place tested twice
         * gives the same answer), so no load ever passes p[n - 1]. */
        if (i + 33 > n) {
            if (i + 1 >= n) return 0;
            i = n - 33;
        }
        __m256i a = _mm256_loadu_si256((const __m256i *)(p + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(p + i + 1));
        __m256i ahi = _mm256_and_si256(_mm256_srli_epi16(a, 4), nibble);
        __m256i bhi = _mm256_and_si256(_mm256_srli_epi16(b, 4), nibble);
        __m256i m0 = lookup(TEDDY[0], a, ahi, b, bhi), m1 = lookup(TEDDY[1], a, ahi, b, bhi);
        __m256i any = _mm256_or_si256(m0, m1);
        if (!_mm256_testz_si256(any, any)) {
            unsigned char bits[2][32];
            _mm256_storeu_si256((__m256i *)bits[0], m0);
            _mm256_storeu_si256((__m256i *)bits[1], m1);
            uint32_t at = ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(any, zero));
            for (; at; at &= at - 1) {
                int j = __builtin_ctz(at);
                /* A bit a needle ("cr" anchors two: secret and credential). */
                for (int g = 0; g < 2; g++)
                    for (unsigned k = bits[g][j]; k; k &= k - 1) {
                        int needle = 8 * g + __builtin_ctz(k);
                        if (needle_at(p, n, i + j - NEEDLES[needle].at, needle)) return 1;
                    }
            }
        }
        i += 32;
    }
}

static int use_avx2; /* chosen once, by secrets_init */
#endif

void secrets_init(void) {
    for (int k = 0; k < NNEEDLES; k++) NEEDLE_LEN[k] = (Py_ssize_t)strlen(NEEDLES[k].word);
#ifdef SECRETS_AVX2
    __builtin_cpu_init();
    use_avx2 = __builtin_cpu_supports("avx2") != 0;
    if (use_avx2) secrets_init_avx2();
#endif
}

/* A \u escape, which can spell a key's letters its bytes do not show (memchr: libc's SIMD). */
static int has_u_escape(const unsigned char *p, Py_ssize_t n) {
    for (const unsigned char *q = p, *end = p + n; (q = memchr(q, '\\', (size_t)(end - q)));) {
        if (++q < end && *q == 'u') return 1;
    }
    return 0;
}

/* A URL parameter, as urlparams.HINT: "?", "#", "&" or ";", then a name (no quote, white space,
 * separator or "="), then "=". Each scan from a separator stops at the next one at the latest, so
 * every byte is read once per separator (memchr: libc's SIMD; most records have none of them but
 * a "#" or two in a user agent). */
static inline int ends_url_name(unsigned char c) {
    switch (c) {
    case '"': case '\t': case '\n': case '\v': case '\f': case '\r': case ' ':
    case '?': case '#': case '&': case ';': case '=':
        return 1;
    default:
        return 0;
    }
}

int secrets_url_param(const unsigned char *p, Py_ssize_t n) {
    static const char separators[] = "?#&;";
    const unsigned char *end = p + n;
    for (const char *sep = separators; *sep; sep++)
        for (const unsigned char *q = p; (q = memchr(q, *sep, (size_t)(end - q)));) {
            while (++q < end && !ends_url_name(*q)) {
            }
            if (q < end && *q == '=') return 1;
        }
    return 0;
}

/* What ends a URL's user information (urlparams._USERINFO_CHAR's complement). */
static inline int ends_userinfo(unsigned char c) {
    switch (c) {
    case '/': case '?': case '#': case '@': case '"': case '\\':
    case '\t': case '\n': case '\v': case '\f': case '\r': case ' ':
        return 1;
    default:
        return 0;
    }
}

/* urlparams.USERINFO_HINT, from each "@" back: the run of user-information bytes before it must
 * hold a ":" and follow ":" and two slashes, each maybe escaped by one backslash. */
int secrets_userinfo(const unsigned char *p, Py_ssize_t n) {
    for (const unsigned char *q = p, *end = p + n; (q = memchr(q, '@', (size_t)(end - q))); q++) {
        Py_ssize_t at = q - p, r = at;
        int colon = 0;
        while (r > 0 && !ends_userinfo(p[r - 1])) colon |= p[--r] == ':';
        if (!colon) continue;
        Py_ssize_t j = r;
        int slashes = 0;
        for (; slashes < 2 && j > 0 && p[j - 1] == '/'; slashes++) {
            j--;
            if (j > 0 && p[j - 1] == '\\') j--;
        }
        if (slashes == 2 && j > 0 && p[j - 1] == ':') return 1;
    }
    return 0;
}

int secrets_needles(const unsigned char *p, Py_ssize_t n) {
#ifdef SECRETS_AVX2
    if (use_avx2 ? needles_32(p, n) : needles_16(p, n)) return 1;
#else
    if (needles_16(p, n)) return 1;
#endif
    return has_u_escape(p, n) || secrets_url_param(p, n) || secrets_userinfo(p, n);
}

int secrets_base64_string(const unsigned char *p, Py_ssize_t n) {
    for (const unsigned char *q = p, *end = p + n; (q = memchr(q, '"', (size_t)(end - q))); q++) {
        Py_ssize_t at = q - p, back = at;
        while (back > 0 && p[back - 1] == '\\') back--;
        if ((at - back) % 2) continue; /* an escaped quote */
        const unsigned char *close = memchr(q + 1, '"', (size_t)(end - q - 1));
        if (!close) return 0;
        if (secrets_base64_body(q + 1, close - q - 1)) return 1;
    }
    return 0;
}

/* Does the word w (maybe "api" or "access" then "key", with separators of seps) occur in
 * s[0 .. n)? */
static int holds_word(const unsigned char *s, Py_ssize_t n, const char *w, int then_key,
                      const char *seps) {
    Py_ssize_t len = (Py_ssize_t)strlen(w);
    for (Py_ssize_t i = 0; i + len <= n; i++) {
        if (!word_at(s, n, i, w, len)) continue;
        if (!then_key) return 1;
        Py_ssize_t j = i + len;
        while (j < n && s[j] && strchr(seps, s[j])) j++;
        if (word_at(s, n, j, "key", 3)) return 1;
    }
    return 0;
}

/* One pass over a key's letters, each compared only with the words it can start (a key is
 * short, and an AssumeRole record has a hundred of them). */
int secrets_key_words(const unsigned char *s, Py_ssize_t n) {
    int weak = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        switch (s[i] | 0x20) {
        case 't':
            if (word_at(s, n, i, "token", 5)) return 2;
            break;
        case 's':
            if (word_at(s, n, i, "secret", 6)) return 2;
            break;
        case 'p':
            if (word_at(s, n, i, "pass", 4) || word_at(s, n, i, "pwd", 3) ||
                word_at(s, n, i, "private", 7))
                return 2;
            break;
        case 'a':
            if (word_at(s, n, i, "authorization", 13)) return 2;
            if (word_at(s, n, i, "api", 3) && word_at(s, n, skip_seps(s, n, i + 3), "key", 3))
                return 2;
            if (word_at(s, n, i, "access", 6) && key_not_id(s, n, i + 6)) weak = 1;
            break;
        case 'c':
            if (word_at(s, n, i, "cookie", 6)) return 2;
            if (word_at(s, n, i, "credential", 10)) weak = 1;
            break;
        case 'q':
            if (word_at(s, n, i, "query", 5)) {
                Py_ssize_t j = skip_seps(s, n, i + 5);
                if (word_at(s, n, j, "string", 6) || word_at(s, n, j, "param", 5)) return 2;
            }
            break;
        }
    }
    return weak;
}

static const char *const HEADER_WORDS[] = {"token",  "secret",  "pass",      "pwd", "authorization",
                                           "cookie", "private", "credential"};

int secrets_header_words(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t start = n;
    while (start > 0 && (Py_ISALNUM(s[start - 1]) || s[start - 1] == '_' || s[start - 1] == '-'))
        start--;
    s += start;
    n -= start;
    for (size_t k = 0; k < sizeof HEADER_WORDS / sizeof HEADER_WORDS[0]; k++)
        if (holds_word(s, n, HEADER_WORDS[k], 0, NULL)) return 1;
    return holds_word(s, n, "api", 1, "-_") || holds_word(s, n, "access", 1, "-_");
}

static const char *const SETTING_WORDS[] = {"token",  "secret",        "pass",   "pwd",
                                            "authorization", "cookie", "private"};

int secrets_setting_words(const unsigned char *s, Py_ssize_t n) {
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    Py_ssize_t start = n;
    while (start > 0 && (Py_ISALNUM(s[start - 1]) || s[start - 1] == '_' || s[start - 1] == '.' ||
                         s[start - 1] == '-'))
        start--;
    s += start;
    n -= start;
    for (size_t k = 0; k < sizeof SETTING_WORDS / sizeof SETTING_WORDS[0]; k++)
        if (holds_word(s, n, SETTING_WORDS[k], 0, NULL)) return 1;
    return holds_word(s, n, "api", 1, "-_.");
}
