/* The ggml tensor types gq-bench implements, with their block geometry (ggml's block structs:
 * formats/ggml_common.h) and the gq-bench format holding exactly those blocks. */
#include "gguf/gq_gguf.h"

#include <string.h>

#include "formats/ggml_common.h"

static const gq_gguf_dtype types[] = {
    {GQ_GGML_F32, "f32", 1, 4, NULL},
    {GQ_GGML_F16, "f16", 1, 2, NULL},
    {GQ_GGML_BF16, "bf16", 1, 2, NULL},
    {GQ_GGML_Q4_0, "q4_0", GQ_QK, sizeof(gq_block_q4_0), "q4_0"},
    {GQ_GGML_Q4_1, "q4_1", GQ_QK, sizeof(gq_block_q4_1), "q4_1"},
    {GQ_GGML_Q5_0, "q5_0", GQ_QK, sizeof(gq_block_q5_0), "q5_0"},
    {GQ_GGML_Q5_1, "q5_1", GQ_QK, sizeof(gq_block_q5_1), "q5_1"},
    {GQ_GGML_Q8_0, "q8_0", GQ_QK, sizeof(gq_block_q8_0), "q8_0"},
    {GQ_GGML_Q2_K, "q2_K", GQ_QK_K, sizeof(gq_block_q2_K), "q2_K"},
    {GQ_GGML_Q3_K, "q3_K", GQ_QK_K, sizeof(gq_block_q3_K), "q3_K"},
    {GQ_GGML_Q4_K, "q4_K", GQ_QK_K, sizeof(gq_block_q4_K), "q4_K"},
    {GQ_GGML_Q5_K, "q5_K", GQ_QK_K, sizeof(gq_block_q5_K), "q5_K"},
    {GQ_GGML_Q6_K, "q6_K", GQ_QK_K, sizeof(gq_block_q6_K), "q6_K"},
    {GQ_GGML_MXFP4, "mxfp4", GQ_QK, sizeof(gq_block_mxfp4), "mxfp4_ggml"},
};

/* ggml's names of every type id up to MXFP4 (ggml.h), for messages about unsupported ones. */
static const char *const all_names[] = {
    "f32", "f16", "q4_0", "q4_1", "q4_2 (removed)", "q4_3 (removed)", "q5_0", "q5_1", "q8_0",
    "q8_1", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_K", "iq2_xxs", "iq2_xs", "iq3_xxs",
    "iq1_s", "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "i8", "i16", "i32", "i64", "f64", "iq1_m",
    "bf16", "q4_0_4_4 (removed)", "q4_0_4_8 (removed)", "q4_0_8_8 (removed)", "tq1_0", "tq2_0",
    "iq4_nl_4_4 (removed)", "iq4_nl_4_8 (removed)", "iq4_nl_8_8 (removed)", "mxfp4",
};

const gq_gguf_dtype *gq_gguf_dtype_by_id(uint32_t id)
{
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if ((uint32_t)types[i].id == id)
            return &types[i];
    return NULL;
}

const gq_gguf_dtype *gq_gguf_dtype_by_format(const char *format)
{
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].format && strcmp(types[i].format, format) == 0)
            return &types[i];
    return NULL;
}

const char *gq_gguf_dtype_name(uint32_t id)
{
    return id < sizeof all_names / sizeof all_names[0] ? all_names[id] : "unknown";
}
