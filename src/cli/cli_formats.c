/* Formats named on the command line (see cli_formats.h). */
#include <jansson.h>

#include "cli/cli_formats.h"

const char *const cli_packed_specs[] = {
    "{\"name\": \"int\", \"bits\": 4, \"group_size\": 128, \"zero\": \"asym\"}",
    "{\"name\": \"int\", \"bits\": 4, \"group_size\": 128, \"zero\": \"sym\"}",
    "{\"name\": \"int\", \"bits\": 8, \"granularity\": \"channel\", \"zero\": \"sym\"}",
    "q4_0", "q4_1", "q8_0", "mxfp4_ggml", "q4_K", "q6_K",
};
const int cli_n_packed_specs = (int)(sizeof cli_packed_specs / sizeof cli_packed_specs[0]);

int cli_quantizer_from_spec(const char *spec, const char *opt, gq_quantizer *q, gq_error *err)
{
    if (spec[0] != '{')
        return gq_quantizer_init(q, spec, NULL, opt, err);
    json_error_t je;
    json_t *j = json_loads(spec, 0, &je);
    if (!j)
        return gq_fail(err, "%s: invalid JSON: %s", opt, je.text);
    int rc = gq_quantizer_from_json(j, opt, q, err);
    json_decref(j);
    return rc;
}
