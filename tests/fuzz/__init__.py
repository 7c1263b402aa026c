"""Differential fuzzing of ingestion's two CloudTrail decoders (``make fuzz``; a short pass runs in
``make test``: tests/test_native_fuzz.py).

``mutate`` makes delivery files out of real records, ``differential`` decodes each by both
decoders and compares what they give, and ``python -m tests.fuzz`` runs it for a time, against
the extension as installed or a sanitized build of it (``--extension``). Which decoder owns which
rule, and what this guards, is written in docs/DECODERS.md.

A seeded, structure-aware mutator of our own, with gcc's trace-pc edges for guidance, rather
than atheris: atheris installs here, but the libFuzzer it bundles takes its coverage of C code
from clang's inline 8-bit counters (``-fsanitize=fuzzer-no-link``) and only stubs the trace-pc
hook that gcc emits, so with gcc it would be blind to the decoder it is meant to explore; and
its byte-level mutations rarely keep a record valid enough for the compiled decoder to take,
where the disagreements live. CI reaches only package registries, and gcc is what the machine
has.
"""
