#ifndef GQ_FUZZ_UTIL_H
#define GQ_FUZZ_UTIL_H
/* Shared by the libFuzzer targets: the readers under test take paths, so each input is written
 * to a file in a directory private to the process (created on first use, removed at exit). */
#include <stddef.h>
#include <stdint.h>

/* libFuzzer's entry points, defined by each target (Initialize only where needed). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Writes size bytes to <private dir>/<name> and returns its path (static, valid until the next
 * call). Aborts when the file cannot be written: that is the harness
 * failing, not the code under test. */
const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size);

#endif
