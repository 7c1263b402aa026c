/* Edge coverage of the compiled decoder, for the differential fuzzer's sanitized build (make fuzz).
 *
 * gcc's -fsanitize-coverage=trace-pc calls __sanitizer_cov_trace_pc at the start of every basic
 * block of the code it compiles (_ctscan.c, _credentials.c; not this file). Each call counts the
 * edge from the block before, AFL's way: a block is a hash of its address, an edge the XOR of the
 * two blocks' hashes (the earlier one shifted, so that A->B and B->A differ), counted up to 255 in
 * a 64 Ki-entry map. The fuzzer reads and clears the map through ctypes (tests/fuzz/__main__.py)
 * and keeps the cases that reach a new edge or a new count bucket. libFuzzer, which atheris
 * bundles, reads clang's inline 8-bit counters and ignores trace-pc, which is all gcc emits. */

#include <stdint.h>

#define EDGES (1 << 16)

unsigned char tenantwatch_fuzz_edges[EDGES];
static uintptr_t previous;

/* Hidden: the calls from the extension's own objects bind here when the shared object is linked,
 * whatever else the process has loaded first (the sanitizer runtimes define other hooks). */
__attribute__((visibility("hidden"))) void __sanitizer_cov_trace_pc(void) {
    uintptr_t here = (uintptr_t)__builtin_return_address(0);
    uintptr_t block = (uintptr_t)(((uint64_t)here * 0x9E3779B97F4A7C15ULL) >> 48);
    unsigned char *count = &tenantwatch_fuzz_edges[(block ^ previous) & (EDGES - 1)];
    if (*count < 255) (*count)++;
    previous = block >> 1;
}
