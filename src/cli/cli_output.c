#include "cli/cli_output.h"

#include "core/gq_log.h"

bool cli_output_apply(const cli_output *o)
{
    if (o->quiet)
        gq_log_set_level(GQ_LOG_WARN);
    return !o->no_plots;
}
