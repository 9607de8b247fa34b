/* HF directories with packed block linears (gq_hf_packed.h). */
#include "model/gq_hf_packed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gq_fileio.h"
#include "model/hf_internal.h"

int gq_hf_model_row(int r, int head_size)
{
    return head_size ? r - r % head_size + hf_rope_row(r % head_size, head_size) : r;
}

bool hf_linear_of(const gq_model *m, const hf_tensor_ref *r, int *layer, int *kind)
{
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < GQ_N_LINEAR; k++)
            if (r->ndim == 2 && m->layers[l].w[k] == r->data) {
                *layer = l;
                *kind = k;
                return true;
            }
    return false;
}

/* A float tensor as a blob of dtype. */
static int float_blob(const hf_tensor_ref *r, gq_st_dtype dtype, gq_st_blob *b)
{
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s", r->name);
    b->dtype = dtype;
    b->ndim = r->ndim;
    b->shape[0] = r->rows;
    b->shape[1] = r->cols;
    size_t row_bytes = (size_t)r->cols * gq_st_dtype_size(dtype);
    unsigned char *d = malloc((size_t)r->rows * row_bytes);
    if (!(b->data = d))
        return -1;
    for (int row = 0; row < r->rows; row++)
        hf_tensor_row(r, row, dtype, d + (size_t)row * row_bytes);
    return 0;
}

/* The blobs of ref r: the packer's for a block linear, else the float tensor. */
static int ref_blobs(const gq_model *m, const hf_tensor_ref *r, gq_st_dtype dtype,
                     gq_hf_pack_fn pack, void *ctx, gq_st_blob *out, int *n, gq_error *err)
{
    int layer, kind;
    if (!hf_linear_of(m, r, &layer, &kind)) {
        *n = 1;
        return float_blob(r, dtype, out) ? gq_fail(err, "%s: out of memory", r->name) : 0;
    }
    char prefix[96];
    snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(r->name) - strlen(".weight")), r->name);
    gq_hf_linear_site s = {layer, (gq_linear_kind)kind, prefix, r->rows, r->cols, r->head_size};
    *n = 0;
    return pack(ctx, &s, out, n, err);
}

static void free_blobs(gq_st_blob *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(b[i].data);
    free(b);
}

int gq_model_save_hf_packed(const gq_model *m, const char *dir, gq_st_dtype dtype,
                            const char *quant_config, gq_hf_pack_fn pack, void *ctx,
                            gq_error *err)
{
    if (gq_model_has_transforms(m))
        return gq_fail(err, "%s: the model has %s, which a packed checkpoint cannot hold", dir,
                       gq_model_transforms_what(m));
    hf_tensor_ref *refs;
    int nr = hf_tensor_refs(m, &refs), nb = 0;
    size_t cap = nr < 0 ? 0 : (size_t)nr * GQ_HF_PACK_MAX;
    gq_st_blob *blobs = nr < 0 ? NULL : calloc(cap, sizeof *blobs);
    if (!blobs) {
        free(refs);
        return gq_fail(err, "%s: out of memory", dir);
    }
    int rc = 0;
    for (int i = 0; i < nr && !rc; i++) {
        int n = 0;
        rc = ref_blobs(m, &refs[i], dtype, pack, ctx, blobs + nb, &n, err);
        nb += n;
    }
    free(refs);
    char path[4200], *text = rc ? NULL : hf_config_json(&m->cfg, dtype, quant_config, err);
    if (!rc && (!text || gq_check_real_dir(dir, err) || gq_mkdir_p(dir, err)))
        rc = -1;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!rc)
        rc = gq_st_write(path, blobs, nb, err);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!rc)
        rc = gq_write_file_atomic(path, text, strlen(text), err);
    free(text);
    free_blobs(blobs, cap); /* a failed packer may leave data beyond nb */
    return rc;
}
