/* The secret pre-filter and the doubt words, shared by _ctscan.c and _credentials.c (both
 * compiled into pipeline.ingest._ctscan; _secrets.c holds them). */
#ifndef TENANTWATCH_SECRETS_H
#define TENANTWATCH_SECRETS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Once, at module init: the tables for this machine's version (AVX2 or not). */
void secrets_init(void);

/* prefilter.might_hold_secret without its last rule (a JSON string of 40 base64 characters):
 * a needle, a \u escape, a URL parameter or a password in a URL. */
int secrets_needles(const unsigned char *p, Py_ssize_t n);

/* prefilter.might_hold_secret's last rule over any bytes: a quote no backslash escapes, 40
 * base64 characters (a slash maybe escaped), a quote. */
int secrets_base64_string(const unsigned char *p, Py_ssize_t n);

/* Is the body of a JSON string (the n bytes between its quotes) 40 base64 characters, a slash
 * maybe escaped? (The scanner asks it of every string it reads.) */
static inline int secrets_base64_body(const unsigned char *s, Py_ssize_t n) {
    static const unsigned char B64[256] = {
        ['+'] = 1, ['/'] = 1, ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
    };
    if (n < 40 || n > 80) return 0;
    Py_ssize_t units = 0, i = 0;
    while (i < n) {
        if (B64[s[i]]) {
            i++;
        } else if (s[i] == '\\' && i + 1 < n && s[i + 1] == '/') {
            i += 2;
        } else {
            return 0;
        }
        units++;
    }
    return units == 40;
}

/* The doubt words of a key (the text between its quotes, s[0 .. n)): 2 when it holds a word of
 * a key whose value the full redaction rewrites whatever it is, 1 when only "credential" or
 * "access" then "key" not followed by "id" (words whose object value the full redaction only
 * looks into), else 0. */
int secrets_key_words(const unsigned char *s, Py_ssize_t n);

/* The doubt words of a header line's name: the run of letters, digits, "_" and "-" that ends
 * at s[n - 1] holds a secret key's word ("api" or "access" then "key" with "-" or "_"). */
int secrets_header_words(const unsigned char *s, Py_ssize_t n);

/* The doubt words of a setting's name (shapes.SETTING_WORD): the run of letters, digits, "_",
 * "." and "-" that ends at s[n - 1], blanks after it aside, holds a strong secret key's word
 * ("api" then "key" with "-", "_" or "."). s[n] is the setting's "=". */
int secrets_setting_words(const unsigned char *s, Py_ssize_t n);

/* A password in a URL (urlparams.USERINFO_HINT). */
int secrets_userinfo(const unsigned char *p, Py_ssize_t n);

/* A URL parameter (urlparams.HINT). */
int secrets_url_param(const unsigned char *p, Py_ssize_t n);

#endif
