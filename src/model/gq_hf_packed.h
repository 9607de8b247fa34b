#ifndef GQ_HF_PACKED_H
#define GQ_HF_PACKED_H
/* Hugging Face directories whose block linears are stored packed (GPTQ, AWQ checkpoints):
 * every other tensor is written as gq_model_save_hf writes it (transformers' names, RoPE row
 * order, the chosen float dtype), and each block linear's "<prefix>.weight" is replaced by
 * the tensors a packer makes from it. */
#include "core/gq_error.h"
#include "model/gq_model.h"
#include "model/gq_st_write.h"

/* At most this many tensors replace one linear. */
#define GQ_HF_PACK_MAX 6

/* One block linear as the packer sees it. */
typedef struct gq_hf_linear_site {
    int layer;
    gq_linear_kind kind;
    const char *prefix;  /* "model.layers.3.self_attn.q_proj" */
    int rows, cols;      /* (out, in) */
    int head_size;       /* > 0: transformers row r is model row gq_hf_model_row(r, head_size) */
} gq_hf_linear_site;

/* Makes the tensors of one linear into out[0 .. *n) (names, shapes, malloc'd data). */
typedef int (*gq_hf_pack_fn)(void *ctx, const gq_hf_linear_site *s, gq_st_blob *out, int *n,
                             gq_error *err);

/* The model row that holds transformers row r of a linear whose rows are heads of head_size
 * rows in RoPE order (head_size 0: r itself). */
int gq_hf_model_row(int r, int head_size);

/* Writes m to the directory `dir` (created if absent): model.safetensors with the float
 * tensors in dtype and every block linear packed by `pack`, then config.json with
 * "quantization_config" = quant_config (JSON object text). Refuses explicit transforms. */
int gq_model_save_hf_packed(const gq_model *m, const char *dir, gq_st_dtype dtype,
                            const char *quant_config, gq_hf_pack_fn pack, void *ctx,
                            gq_error *err);

/* ---- loading (GPTQ / AWQ checkpoints) ----
 * The weight files of a model directory, as an unpacker reads them. */
typedef struct gq_hf_files gq_hf_files;
/* The tensor `name` of the weight files, marked used; *file is the path of the file holding
 * it. NULL when absent, *file then names the index (sharded) or the one weight file. */
const gq_st_tensor *gq_hf_files_get(const gq_hf_files *f, const char *name, const char **file);
/* Fills w (rows, cols), in the model's row order (q and k rows in llama2.c's RoPE layout:
 * model row gq_hf_model_row(c, head_size) holds transformers row c), with the weights of one
 * block linear from its packed tensors "<prefix>.qweight", ... */
typedef int (*gq_hf_unpack_fn)(void *ctx, const gq_hf_files *f, const gq_hf_linear_site *s,
                               float *w, gq_error *err);
/* gq_model_load_hf with every block linear made by unpack instead of read from
 * "<prefix>.weight"; a tensor of the files that neither the loader nor unpack used is an
 * error naming it. */
int gq_model_load_hf_packed(const char *dir, gq_model *m, gq_hf_unpack_fn unpack, void *ctx,
                            gq_error *err);

#endif
