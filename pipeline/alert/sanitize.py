"""Values from logs are data: make them safe to show in a terminal, an email or a chat message.

A user agent, an ARN's session name or a tenant id is attacker-controlled text. Printed raw it
could recolour or clear an on-call engineer's terminal (ANSI escapes), forge a line of the
message (``"\\r\\nSeverity: low"``), reverse the text around it (bidi overrides) or simply be
300 KB long. ``clean`` makes every such character visible instead of active, so the reader sees
that something odd was there, and caps the length.
"""

from __future__ import annotations

import re

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST) and any other two-character ESC sequence.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
# C0 controls, DEL, C1 controls; Unicode line/paragraph separators; bidi embeddings/overrides
# and isolates ("Trojan Source"); zero-width characters that hide text.
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200b-\u200f\ufeff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# The same characters, less the C0 controls that every JSON encoder escapes already: valid in a
# JSON string as they are, so they reach a terminal through ``--json`` unless written as \uXXXX.
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200b-\u200f\ufeff]")

DEFAULT_MAX = 300


def _visible(m: re.Match[str]) -> str:
    ch = m.group(0)
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(value: object, max_len: int = DEFAULT_MAX) -> str:
    """One line of safe, visible text: escapes shown as ``<ESC[31m>``, controls as ``\\x07``,
    newlines as ``\\n``; at most ``max_len`` characters plus a note of what was cut."""
    if value is None:
        return "-"
    text = str(value)
    text = _ANSI.sub(lambda m: "<ESC" + _UNSAFE.sub("", m.group(0)[1:]) + ">", text)
    text = _UNSAFE.sub(_visible, text)
    if len(text) > max_len:
        cut = len(text) - max_len
        text = f"{text[:max_len]}…[+{cut} chars]"
    return text


def json_text(text: str) -> str:
    """JSON text with DEL, C1 controls, bidi and zero-width characters written as ``\\uXXXX``
    escapes: the same JSON values, nothing a terminal would obey. (Outside its strings JSON
    text is ASCII, so every such character is inside a string, where the escape is valid.)"""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def ascii_line(value: object, max_len: int) -> str:
    """Printable ASCII only (SNS subjects), at most ``max_len`` characters."""
    text = clean(value, 10 * max_len).encode("ascii", "replace").decode("ascii")
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= max_len else text[: max_len - 3].rstrip() + "..."


def deep_clean(obj: object, max_len: int = DEFAULT_MAX, max_items: int | None = None) -> object:
    """``clean`` every string (keys too) of a decoded JSON value; cut lists to ``max_items``."""
    if isinstance(obj, str):
        return clean(obj, max_len)
    if isinstance(obj, dict):
        items = list(obj.items())
        return {clean(k, 80): deep_clean(v, max_len, max_items) for k, v in items}
    if isinstance(obj, list | tuple):
        seq = list(obj)
        kept = seq if max_items is None else seq[:max_items]
        out = [deep_clean(v, max_len, max_items) for v in kept]
        if len(kept) < len(seq):
            out.append(f"…[+{len(seq) - len(kept)} more]")
        return out
    if isinstance(obj, bool | int | float) or obj is None:
        return obj
    return clean(obj, max_len)
