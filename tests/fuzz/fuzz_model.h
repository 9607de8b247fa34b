#ifndef GQ_FUZZ_MODEL_H
#define GQ_FUZZ_MODEL_H
/* Shared by the libFuzzer targets whose reader builds a gq_model (llama2.c checkpoint, native
 * quantized model, GGUF). */
#include "model/gq_model.h"

/* Reads a loaded model end to end: every row start of the embedding and classifier, the final
 * norm, each layer's norms and the first and last element of each linear weight. A tensor
 * mapped or sized past its storage is then caught by the sanitizers. */
void fuzz_read_model(const gq_model *m);

#endif
