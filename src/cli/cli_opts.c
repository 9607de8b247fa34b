#include "cli/cli_opts.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/gq_assets.h"
#include "core/gq_fileio.h"
#include "qmodel/gq_qmodel.h"

/* ---- values ---------------------------------------------------------------------------- */

/* "a|b|c" contains `v` as a whole word. */
static bool choice_ok(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return true;
        p += len + (bar != NULL);
    }
    return false;
}

/* "a|b|c" -> "a, b or c" */
static void choices_text(const char *choices, char *out, size_t n)
{
    out[0] = '\0';
    size_t used = 0;
    for (const char *p = choices; *p && used < n;) {
        const char *bar = strchr(p, '|');
        int len = bar ? (int)(bar - p) : (int)strlen(p);
        const char *sep = p == choices ? "" : strchr(p, '|') ? ", " : " or ";
        used += (size_t)snprintf(out + used, n - used, "%s%.*s", sep, len, p);
        p += len + (bar != NULL);
    }
}

/* An input file must exist and be a regular file: checked here so that a wrong path fails
 * before any work, naming the option. */
static int check_in(const cli_opt *o, const char *arg, char *path, gq_error *err)
{
    if (o->kind == CLI_ASSET || o->kind == CLI_MODEL) {
        if (gq_asset_resolve(arg, path, CLI_PATH_MAX, err) != 0)
            return gq_fail_prefix(err, "--%s", o->name);
    } else if (snprintf(path, CLI_PATH_MAX, "%s", arg) >= CLI_PATH_MAX) {
        return gq_fail(err, "--%s: path longer than %d bytes", o->name, CLI_PATH_MAX - 1);
    }
    struct stat st;
    if (stat(path, &st) != 0)
        return gq_fail(err, "--%s %s: cannot open: %s", o->name, path, strerror(errno));
    if (o->kind == CLI_MODEL && S_ISDIR(st.st_mode)) {
        char dir[CLI_PATH_MAX]; /* a directory of a native file stands for the file */
        snprintf(dir, sizeof dir, "%s", path);
        return gq_model_path_resolve(dir, path, CLI_PATH_MAX, err) ? gq_fail_prefix(err, "--%s",
                                                                                   o->name)
                                                                   : 0;
    }
    if (!S_ISREG(st.st_mode))
        return gq_fail(err, "--%s %s: not a regular file%s", o->name, path,
                       S_ISDIR(st.st_mode) ? " (it is a directory)" : "");
    return 0;
}

/* Stores `v` into o->field; on error prints one usage line and returns GQ_EXIT_USAGE. */
static int set_value(const cli_spec *s, const cli_opt *o, const char *v)
{
    gq_error err = {{0}};
    char opt[96];
    snprintf(opt, sizeof opt, "--%s", o->name);
    switch (o->kind) {
    case CLI_FLAG:
        *(bool *)o->field = true;
        return 0;
    case CLI_INT:
        return cli_int(s->cmd, opt, v, (long)o->min, (long)o->max, (long *)o->field) ? GQ_EXIT_USAGE
                                                                                    : 0;
    case CLI_NUM:
        return cli_double(s->cmd, opt, v, o->min, o->max, (double *)o->field) ? GQ_EXIT_USAGE : 0;
    case CLI_CHOICE:
        if (!choice_ok(o->choices, v)) {
            char c[256];
            choices_text(o->choices, c, sizeof c);
            return cli_usage_error(s->cmd, "%s: expected %s, got '%s'", opt, c, v);
        }
        /* fall through */
    case CLI_STR:
        *(const char **)o->field = v;
        return 0;
    case CLI_IN:
    case CLI_ASSET:
    case CLI_MODEL:
        if (check_in(o, v, (char *)o->field, &err))
            return cli_usage_error(s->cmd, "%s", err.msg);
        return 0;
    case CLI_OUT:
        if (gq_check_writable(opt, v, &err))
            return cli_usage_error(s->cmd, "%s", err.msg);
        *(const char **)o->field = v;
        return 0;
    case CLI_LIST: {
        cli_list *l = o->field;
        int max = o->max > 0 && o->max < CLI_LIST_MAX ? (int)o->max : CLI_LIST_MAX;
        if (l->n == max)
            return cli_usage_error(s->cmd, "%s: at most %d values", opt, max);
        l->v[l->n++] = v;
        return 0;
    }
    case CLI_CALL:
        if (o->parse(o->field, v, &err))
            return cli_usage_error(s->cmd, "%s: %s", opt, err.msg);
        return 0;
    case CLI_SEED: {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (!isdigit((unsigned char)v[0]) || *end || errno)
            return cli_usage_error(s->cmd, "%s: '%s' is not an integer in 0..%llu", opt, v,
                                   (unsigned long long)UINT64_MAX);
        *(uint64_t *)o->field = (uint64_t)x;
        return 0;
    }
    }
    return cli_usage_error(s->cmd, "%s: unsupported option kind", opt);
}

/* A field is "given" when it differs from its zero state (required options have no
 * default). */
static bool is_given(const cli_opt *o)
{
    switch (o->kind) {
    case CLI_FLAG: return *(bool *)o->field;
    case CLI_INT: return *(long *)o->field != 0;
    case CLI_NUM: return *(double *)o->field != 0;
    case CLI_IN:
    case CLI_ASSET:
    case CLI_MODEL: return ((char *)o->field)[0] != '\0';
    case CLI_LIST: return ((cli_list *)o->field)->n > 0;
    case CLI_STR:
    case CLI_CHOICE:
    case CLI_OUT: return *(const char **)o->field != NULL;
    case CLI_CALL: return true; /* a callback option cannot be required */
    case CLI_SEED: return *(uint64_t *)o->field != 0;
    }
    return false;
}

static bool is_file(const cli_opt *o)
{
    return o->kind == CLI_IN || o->kind == CLI_ASSET || o->kind == CLI_MODEL ||
           o->kind == CLI_OUT;
}

/* ---- parsing --------------------------------------------------------------------------- */

static const cli_opt *find(const cli_spec *s, const char *name, size_t len)
{
    for (int i = 0; i < s->n_opts; i++)
        if (strlen(s->opts[i].name) == len && strncmp(s->opts[i].name, name, len) == 0)
            return &s->opts[i];
    return NULL;
}

/* "--a, --b and --c are required" (or "--a is required") for the missing required options. */
static int report_missing(const cli_spec *s)
{
    const cli_opt *miss[32];
    int n = 0;
    for (int i = 0; i < s->n_opts && n < 32; i++)
        if (s->opts[i].required && !is_given(&s->opts[i]))
            miss[n++] = &s->opts[i];
    if (n == 0)
        return 0;
    char msg[1024];
    size_t used = 0;
    for (int i = 0; i < n && used < sizeof msg; i++)
        used += (size_t)snprintf(msg + used, sizeof msg - used, "%s--%s",
                                 i == 0 ? "" : i == n - 1 ? " and " : ", ", miss[i]->name);
    return cli_usage_error(s->cmd, "%s %s required", msg, n == 1 ? "is" : "are");
}

int cli_parse(const cli_spec *s, int argc, char **argv)
{
    /* Defaults first, except files: a default file is checked only when it is used (after
     * the arguments), so that --help or another choice never depends on it. */
    for (int i = 0; i < s->n_opts; i++) {
        const cli_opt *o = &s->opts[i];
        if (o->def && !is_file(o)) {
            int rc = set_value(s, o, o->def);
            if (rc)
                return rc; /* a bad table: the message names the option */
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cli_help(s);
            return 1;
        }
        if (a[0] != '-' || a[1] == '\0') {
            if (!s->pos)
                return cli_usage_error(s->cmd, "unexpected argument '%s'", a);
            if (*s->pos)
                return cli_usage_error(s->cmd, "more than one %s ('%s', '%s')", s->pos_what,
                                       *s->pos, a);
            *s->pos = a;
            continue;
        }
        const char *name = a[1] == '-' ? a + 2 : a + 1, *eq = strchr(name, '=');
        const cli_opt *o = a[1] == '-' ? find(s, name, eq ? (size_t)(eq - name) : strlen(name))
                                       : NULL;
        if (!o)
            return cli_usage_error(s->cmd, "unknown option '%s'", a);
        const char *v = NULL;
        if (o->kind == CLI_FLAG) {
            if (eq)
                return cli_usage_error(s->cmd, "--%s takes no value", o->name);
        } else if (eq) {
            v = eq + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            return cli_usage_error(s->cmd, "%s needs a value", a);
        }
        int rc = set_value(s, o, v);
        if (rc)
            return rc;
    }
    for (int i = 0; i < s->n_opts; i++) {
        const cli_opt *o = &s->opts[i];
        if (o->def && is_file(o) && !is_given(o)) {
            int rc = set_value(s, o, o->def);
            if (rc)
                return rc;
        }
    }
    if (s->pos && s->pos_required && !*s->pos)
        return cli_usage_error(s->cmd, "missing the %s", s->pos_what);
    return report_missing(s);
}

/* ---- help ------------------------------------------------------------------------------ */

/* "--name META" as shown in the usage and option lists. */
static void opt_label(const cli_opt *o, char *out, size_t n)
{
    if (o->kind == CLI_FLAG)
        snprintf(out, n, "--%s", o->name);
    else
        snprintf(out, n, "--%s %s", o->name, o->meta ? o->meta : "VALUE");
}

/* usage: gq-bench CMD [POS] --req X [--opt Y] [--list Z ...], wrapped at 92 columns. */
static void print_usage(const cli_spec *s)
{
    char head[128];
    int indent = snprintf(head, sizeof head, "usage: gq-bench %s", s->cmd), col = indent;
    fputs(head, stdout);
    for (int i = -1; i < s->n_opts; i++) {
        char label[160], word[200];
        if (i < 0) {
            if (!s->pos)
                continue;
            snprintf(word, sizeof word, s->pos_required ? "%s" : "[%s]", s->pos_meta);
        } else {
            const cli_opt *o = &s->opts[i];
            opt_label(o, label, sizeof label);
            snprintf(word, sizeof word, o->required ? "%s%s" : "[%s%s]", label,
                     o->kind == CLI_LIST || o->repeat ? " ..." : "");
        }
        int len = (int)strlen(word);
        if (col + 1 + len > 92) {
            printf("\n%*s", indent, "");
            col = indent;
        }
        printf(" %s", word);
        col += 1 + len;
    }
    printf("\n");
}

void cli_help(const cli_spec *s)
{
    print_usage(s);
    if (s->about)
        printf("\n%s", s->about);
    int width = 0;
    for (int i = 0; i < s->n_opts; i++) {
        char label[160];
        opt_label(&s->opts[i], label, sizeof label);
        int len = (int)strlen(label);
        width = len > width ? len : width;
    }
    if (s->n_opts > 0)
        printf("\n");
    for (int i = 0; i < s->n_opts; i++) {
        const cli_opt *o = &s->opts[i];
        char label[160];
        opt_label(o, label, sizeof label);
        printf("  %-*s  ", width, label);
        for (const char *p = o->help; *p; p++) {
            putchar(*p);
            if (*p == '\n')
                printf("  %-*s  ", width, "");
        }
        if (o->def)
            printf(" (default %s)", o->def);
        if (o->kind == CLI_LIST || o->repeat)
            printf(" (repeatable)");
        printf("\n");
    }
    if (s->epilog)
        printf("\n%s", s->epilog);
}
