#include "report/gq_plot.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/gq_fileio.h"

const char *gq_gnuplot_path(void)
{
    static char found[4096];
    const char *env = getenv("GQ_GNUPLOT");
    if (env && env[0])
        return access(env, X_OK) == 0 ? env : NULL;
    const char *path = getenv("PATH");
    if (!path)
        return NULL;
    char *dirs = strdup(path), *save = NULL;
    if (!dirs)
        return NULL; /* out of memory: reported as not found, the charts are skipped */
    const char *res = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d && !res; d = strtok_r(NULL, ":", &save)) {
        snprintf(found, sizeof found, "%s/gnuplot", d);
        if (access(found, X_OK) == 0)
            res = found;
    }
    free(dirs);
    return res;
}

/* ---- chart data: points (x, y, dy) grouped into named series ---- */
typedef struct {
    char name[160];
    double *x, *y, *dy;
    int n;
} series;

typedef struct {
    series *s;
    int n;
    double ymin, ymax;
} chart;

/* The series called name, appended when new; NULL when out of memory. */
static series *chart_series(chart *c, const char *name)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->s[i].name, name) == 0)
            return &c->s[i];
    series *grown = realloc(c->s, (size_t)(c->n + 1) * sizeof *c->s);
    if (!grown)
        return NULL;
    c->s = grown;
    series *s = &c->s[c->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    return s;
}

/* Grows *v (n doubles) by one; -1 when out of memory (*v kept). */
static int grow(double **v, int n)
{
    double *g = realloc(*v, (size_t)(n + 1) * sizeof *g);
    if (!g)
        return -1;
    *v = g;
    return 0;
}

/* Adds point (x, y, dy) to series name (non-finite x or y: no point); -1 when out of memory. */
static int chart_add(chart *c, const char *name, double x, double y, double dy)
{
    if (!isfinite(x) || !isfinite(y))
        return 0;
    series *s = chart_series(c, name);
    if (!s || grow(&s->x, s->n) || grow(&s->y, s->n) || grow(&s->dy, s->n))
        return -1;
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->dy[s->n] = isfinite(dy) ? dy : 0;
    s->n++;
    if (c->n == 1 && s->n == 1)
        c->ymin = c->ymax = y;
    c->ymin = fmin(c->ymin, y);
    c->ymax = fmax(c->ymax, y);
    return 0;
}

static void chart_free(chart *c)
{
    for (int i = 0; i < c->n; i++) {
        free(c->s[i].x);
        free(c->s[i].y);
        free(c->s[i].dy);
    }
    free(c->s);
    memset(c, 0, sizeof *c);
}

/* Sorts each series by x (insertion sort: a handful of points). */
static void chart_sort(chart *c)
{
    for (int k = 0; k < c->n; k++) {
        series *s = &c->s[k];
        for (int i = 1; i < s->n; i++)
            for (int j = i; j > 0 && s->x[j - 1] > s->x[j]; j--) {
                double t;
                t = s->x[j], s->x[j] = s->x[j - 1], s->x[j - 1] = t;
                t = s->y[j], s->y[j] = s->y[j - 1], s->y[j - 1] = t;
                t = s->dy[j], s->dy[j] = s->dy[j - 1], s->dy[j - 1] = t;
            }
    }
}

/* ---- table helpers ---- */
static bool is_baseline(const gq_table *t, size_t r)
{
    const char *m = gq_table_str(t, r, "method");
    return m && strcmp(m, "none") == 0;
}

static int n_distinct(const gq_table *t, const char *col)
{
    json_t *d = gq_table_distinct(t, col);
    int n = (int)json_array_size(d);
    json_decref(d);
    return n;
}

/* Whether the sweep column ("k=v k=v") of some quantized rows gives `axis` two different
 * values: charts are drawn only over axes that vary. */
static bool axis_varies(const gq_table *t, const char *axis)
{
    size_t len = strlen(axis);
    const char *first = NULL;
    size_t first_len = 0;
    for (size_t r = 0; r < gq_table_n_rows(t); r++) {
        const char *sw = gq_table_str(t, r, "sweep");
        for (const char *p = sw; p && *p; p += strcspn(p, " "), p += *p == ' ') {
            if (strncmp(p, axis, len) != 0 || p[len] != '=')
                continue;
            const char *v = p + len + 1;
            size_t vlen = strcspn(v, " ");
            if (!first) {
                first = v;
                first_len = vlen;
            } else if (vlen != first_len || strncmp(v, first, vlen) != 0)
                return true;
        }
    }
    return false;
}

/* Series name of row r in a chart over axis `x`: the method label plus every other swept axis
 * of the row (from the "sweep" column "k=v k=v"), except those listed in `skip`. */
static void series_name(const gq_table *t, size_t r, const char *x, const char *skip,
                        char *buf, size_t n)
{
    const char *label = gq_table_str(t, r, "series");
    snprintf(buf, n, "%s", label ? label : "?");
    const char *sw = gq_table_str(t, r, "sweep");
    if (!sw || strcmp(x, "bpw") == 0) /* on the size axis every setting is a point of the series */
        return;
    for (const char *kv = sw; *kv; kv += strspn(kv, " ")) { /* "k=v" words */
        size_t wlen = strcspn(kv, " "), klen = strcspn(kv, "= ");
        const char *word = kv;
        kv += wlen;
        if (!wlen || (strlen(x) == klen && strncmp(word, x, klen) == 0) ||
            (skip && strlen(skip) == klen && strncmp(word, skip, klen) == 0))
            continue;
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, " %.*s", (int)wlen, word);
    }
}

static void protocol_title(const gq_table *t, char *buf, size_t n)
{
    size_t r = 0;
    const char *proto = gq_table_str(t, r, "protocol");
    const char *text = gq_table_str(t, r, "eval_text");
    const char *sha = gq_table_str(t, r, "eval_sha256");
    const char *tok = gq_table_str(t, r, "tokenizer");
    const char *model = gq_table_str(t, r, "model");
    char calib[256] = "no calibration";
    for (size_t k = 0; k < gq_table_n_rows(t); k++) {
        const char *c = gq_table_str(t, k, "calib_text");
        if (c) {
            char nc[32] = "n_calib swept", cc[32] = "calib_ctx swept";
            if (n_distinct(t, "n_calib") == 1)
                snprintf(nc, sizeof nc, "%.0f windows", gq_table_num(t, k, "n_calib"));
            if (n_distinct(t, "calib_ctx") == 1)
                snprintf(cc, sizeof cc, "%.0f tokens", gq_table_num(t, k, "calib_ctx"));
            snprintf(calib, sizeof calib, "calibration %s, %s x %s", c, nc, cc);
            break;
        }
    }
    snprintf(buf, n,
             "%s | perplexity protocol %s, ctx %.0f, %.0f windows of %s (sha256 %.8s)\n"
             "tokenizer %s | %s | seed %.0f | %.0f threads per cell",
             model ? model : "?", proto ? proto : "?", gq_table_num(t, r, "ctx"),
             gq_table_num(t, r, "eval_windows"), text ? text : "?", sha ? sha : "?",
             tok ? tok : "?", calib, gq_table_num(t, r, "seed"),
             gq_table_num(t, gq_table_n_rows(t) > 1 ? 1 : 0, "threads"));
}

/* gnuplot string literal of any text, such that no byte of it can act as gnuplot input: a
 * single-quoted string (gnuplot expands neither backslashes nor `backquotes` in those), ' doubled,
 * a newline as a separate "\n" joined with the . operator (a raw newline would end the command),
 * other control characters as spaces. */
static void gp_quote(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\n')
            fputs("'.\"\\n\".'", f);
        else if (ch < 0x20 || ch == 0x7f)
            fputc(' ', f);
        else {
            if (ch == '\'')
                fputc('\'', f);
            fputc(ch, f);
        }
    }
    fputc('\'', f);
}

/* A text field of an inline data block: one line (control characters as spaces), inside
 * double quotes (a " inside becomes '), so it can neither end the block nor split a column. */
static void gp_data_text(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        fputc(ch < 0x20 || ch == 0x7f ? ' ' : ch == '"' ? '\'' : ch, f);
    }
    fputc('"', f);
}

/* Runs gnuplot (no shell) with the script on its standard input (an in-memory file) and its
 * standard output discarded; its warnings go to stderr. Returns the exit status or -1. */
static int gnuplot_exec(const char *gnuplot, const char *script, size_t len)
{
    int in = memfd_create("gq-gnuplot-script", MFD_CLOEXEC);
    if (in < 0)
        return -1;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(in, script + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            close(in);
            return -1;
        }
        done += (size_t)w;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    char *argv[] = {(char *)"gnuplot", NULL};
    extern char **environ;
    pid_t pid;
    int st = -1;
    if (lseek(in, 0, SEEK_SET) == 0 &&
        posix_spawn(&pid, gnuplot, &fa, NULL, argv, environ) == 0)
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
    posix_spawn_file_actions_destroy(&fa);
    close(in);
    return st;
}

/* True when path holds a whole PNG: the signature first and the IEND chunk last (gnuplot does
 * not report a failed write, so a full disk leaves an empty or truncated file behind). */
static bool png_complete(const char *path)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const unsigned char iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
    unsigned char head[8], tail[12];
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 20 &&
              pread(fd, head, 8, 0) == 8 && pread(fd, tail, 12, st.st_size - 12) == 12 &&
              memcmp(head, sig, 8) == 0 && memcmp(tail, iend, 12) == 0 && fsync(fd) == 0;
    close(fd);
    return ok;
}

/* Runs one gnuplot script writing `png` atomically. The script body is produced by `body`. */
typedef void (*script_fn)(FILE *f, const void *ctx);

static int run_gnuplot(const char *gnuplot, const char *png, const char *title, script_fn body,
                       const void *ctx, gq_error *err)
{
    char tmp[4200];
    if (gq_check_output(png, err))
        return -1;
    int fd = gq_tmp_create(png, tmp, sizeof tmp, err);
    if (fd < 0)
        return -1;
    close(fd); /* gnuplot opens it again by name */
    char *script = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&script, &len);
    fprintf(f, "set terminal pngcairo size 1100,680 font ',10' noenhanced\nset output ");
    gp_quote(f, tmp);
    fprintf(f, "\nset title ");
    gp_quote(f, title);
    fprintf(f, "\nset grid\nset key outside right top\nset offsets graph 0.04, graph 0.04, "
               "graph 0.04, graph 0.04\n");
    body(f, ctx);
    fprintf(f, "set output\n");
    fclose(f);
    int st = gnuplot_exec(gnuplot, script, len);
    free(script);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        unlink(tmp);
        return gq_fail(err, "%s: gnuplot (%s) failed (%s %d)", png, gnuplot,
                       st != -1 && WIFSIGNALED(st) ? "signal" : "exit status",
                       st == -1 ? -1 : WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    }
    if (!png_complete(tmp)) {
        unlink(tmp);
        return gq_fail(err, "%s: gnuplot wrote no complete PNG (disk full?)", png);
    }
    return gq_tmp_commit(tmp, png, err);
}

/* ---- perplexity line charts ---- */
/* A horizontal dashed line at y drawn in the colour (line type) of series `lt` - 1. */
typedef struct {
    char name[160];
    double y;
    int lt;
} ref_line;

typedef struct {
    const chart *c;
    const char *xlabel;
    const char *ylabel;
    bool logx2;
    bool frontier;   /* points only, joined along each series' Pareto frontier */
    double baseline; /* NaN when absent */
    const char *baseline_title;
    const ref_line *refs; /* per-channel values beside a group-size chart (n_refs of them) */
    int n_refs;
} line_ctx;

static void line_body(FILE *f, const void *vctx)
{
    const line_ctx *L = vctx;
    fprintf(f, "set xlabel ");
    gp_quote(f, L->xlabel);
    fprintf(f, "\nset ylabel ");
    gp_quote(f, L->ylabel);
    fprintf(f, "\n");
    if (L->logx2)
        fprintf(f, "set logscale x 2\n");
    double lo = L->c->ymin, hi = L->c->ymax;
    if (isfinite(L->baseline)) {
        lo = fmin(lo, L->baseline);
        hi = fmax(hi, L->baseline);
    }
    for (int i = 0; i < L->n_refs; i++) {
        lo = fmin(lo, L->refs[i].y);
        hi = fmax(hi, L->refs[i].y);
    }
    if (lo > 0 && hi / lo > 10) /* perplexity explodes: log scale, range fitted to the data */
        fprintf(f, "set logscale y\nset offsets graph 0.04, graph 0.04, 0, 0\nset yrange [%g:%g]\n",
                lo / 1.25, hi * 1.25);
    for (int i = 0; i < L->c->n; i++) {
        const series *s = &L->c->s[i];
        fprintf(f, "$d%d << EOD\n", i);
        for (int k = 0; k < s->n; k++)
            fprintf(f, "%.17g %.17g %.17g\n", s->x[k], s->y[k], s->dy[k]);
        fprintf(f, "EOD\n");
    }
    if (L->frontier) {
        /* The Pareto frontier of a series: walking up in size (x sorted), the points that beat
         * every smaller configuration. Lines through all points would zig-zag between
         * settings that are not comparable (3-bit g8 is larger than 4-bit g64). */
        for (int i = 0; i < L->c->n; i++) {
            const series *s = &L->c->s[i];
            fprintf(f, "$f%d << EOD\n", i);
            double best = INFINITY;
            for (int k = 0; k < s->n; k++)
                if (s->y[k] < best) {
                    best = s->y[k];
                    fprintf(f, "%.17g %.17g\n", s->x[k], s->y[k]);
                }
            fprintf(f, "EOD\n");
        }
    }
    fprintf(f, "plot ");
    for (int i = 0; i < L->c->n; i++) {
        if (L->frontier) {
            fprintf(f, "%s$d%d using 1:2:3 with yerrorbars lt %d title ", i ? ", " : "", i, i + 1);
            gp_quote(f, L->c->s[i].name);
            fprintf(f, ", $f%d using 1:2 with lines lt %d notitle", i, i + 1);
            continue;
        }
        fprintf(f, "%s$d%d using 1:2:3 with yerrorlines lt %d title ", i ? ", " : "", i, i + 1);
        gp_quote(f, L->c->s[i].name);
    }
    for (int i = 0; i < L->n_refs; i++) {
        fprintf(f, ", %.17g with lines lt %d dashtype 2 title ", L->refs[i].y, L->refs[i].lt);
        gp_quote(f, L->refs[i].name);
    }
    if (isfinite(L->baseline)) {
        fprintf(f, "%s%.17g with lines dashtype 2 lc rgb 'black' title ", L->c->n ? ", " : "",
                L->baseline);
        gp_quote(f, L->baseline_title);
    }
    fprintf(f, "\n");
}

static double baseline_ppl(const gq_table *t)
{
    for (size_t r = 0; r < gq_table_n_rows(t); r++)
        if (is_baseline(t, r))
            return gq_table_num(t, r, "ppl");
    return NAN;
}

/* The baseline row's series: "fp32 baseline", or a quantized checkpoint's ("gptq checkpoint
 * baseline", runner/gq_experiment.h); "baseline" when the row has none. */
static const char *baseline_series(const gq_table *t)
{
    for (size_t r = 0; r < gq_table_n_rows(t); r++) {
        const char *s = is_baseline(t, r) ? gq_table_str(t, r, "series") : NULL;
        if (s)
            return s;
    }
    return "baseline";
}

/* The line charts' title of the baseline: "unquantized baseline" for fp32 weights, else the
 * checkpoint's series. */
static const char *baseline_line_title(const gq_table *t)
{
    for (size_t r = 0; r < gq_table_n_rows(t); r++)
        if (is_baseline(t, r) && gq_table_num(t, r, "bpw") < 32.0)
            return baseline_series(t);
    return "unquantized baseline";
}

/* ---- group-wise against per-channel ---- */
static json_t *json_column(const gq_table *t, size_t r, const char *col)
{
    const char *s = gq_table_str(t, r, col);
    return s ? json_loads(s, 0, NULL) : NULL;
}

/* A quantized row with one scale per output channel (format granularity "channel"). */
static bool is_per_channel(const gq_table *t, size_t r)
{
    json_t *fmt = json_column(t, r, "format_params");
    const char *g = json_string_value(json_object_get(fmt, "granularity"));
    bool pc = !is_baseline(t, r) && g && strcmp(g, "channel") == 0;
    json_decref(fmt);
    return pc;
}

/* A quantized row whose format has groups narrower than a row (a group_size value). */
static bool is_group_wise(const gq_table *t, size_t r)
{
    return !is_baseline(t, r) && isfinite(gq_table_num(t, r, "group_size"));
}

/* What a group-wise row and its per-channel counterpart share: the method and its parameters,
 * the propagation, the format without granularity and group size, and the swept axes other
 * than group_size. NULL when the row has no format parameters. */
static json_t *pairing_key(const gq_table *t, size_t r)
{
    json_t *fmt = json_column(t, r, "format_params");
    if (!json_is_object(fmt)) {
        json_decref(fmt);
        return NULL;
    }
    json_object_del(fmt, "granularity");
    json_object_del(fmt, "group_size");
    json_t *axes = json_array();
    const char *sw = gq_table_str(t, r, "sweep");
    bool bad = !axes;
    for (const char *kv = sw ? sw : ""; *kv && !bad; kv += strspn(kv, " ")) { /* "k=v" words */
        size_t wlen = strcspn(kv, " ");
        if (wlen && !(wlen >= 11 && strncmp(kv, "group_size=", 11) == 0))
            bad = json_array_append_new(axes, json_stringn(kv, wlen)) != 0;
        kv += wlen;
    }
    if (bad) { /* out of memory: no key, the row pairs with none */
        json_decref(fmt);
        json_decref(axes);
        return NULL;
    }
    json_t *method = json_column(t, r, "method_params");
    const char *prop = gq_table_str(t, r, "propagate");
    return json_pack("{s:o, s:o, s:o*, s:s}", "format", fmt, "axes", axes, "method", method,
                     "propagate", prop ? prop : "");
}

static bool rows_pair(const gq_table *t, size_t a, size_t b)
{
    json_t *ka = pairing_key(t, a), *kb = pairing_key(t, b);
    bool same = ka && kb && json_equal(ka, kb);
    json_decref(ka);
    json_decref(kb);
    return same;
}

/* The first row of the other kind (per-channel for a group-wise row and the reverse) that row r
 * pairs with, or -1. */
static long paired_row(const gq_table *t, size_t r)
{
    bool want_channel = is_group_wise(t, r);
    for (size_t k = 0; k < gq_table_n_rows(t); k++)
        if ((want_channel ? is_per_channel(t, k) : is_group_wise(t, k)) && rows_pair(t, r, k))
            return (long)k;
    return -1;
}

static int chart_find(const chart *c, const char *name)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->s[i].name, name) == 0)
            return i;
    return -1;
}

/* The index in c of the series of the group-wise row that per-channel row pc pairs with (names
 * as series_name gives them for axis x without `skip`), or -1. */
static int paired_series(const gq_table *t, size_t pc, const chart *c, const char *x,
                         const char *skip)
{
    long g = paired_row(t, pc);
    if (g < 0)
        return -1;
    char name[256];
    series_name(t, (size_t)g, x, skip, name, sizeof name);
    return chart_find(c, name);
}

/* The per-channel rows whose `filter_col` equals `filter_val`, as dashed lines in the colour of
 * the group-wise series of c they pair with (a colour of their own when none). Returns how many
 * (*out: malloc'd), or -1 when out of memory. */
static int channel_refs(const gq_table *t, const chart *c, const char *filter_col,
                        double filter_val, ref_line **out)
{
    int n = 0;
    ref_line *refs = NULL;
    for (size_t r = 0; r < gq_table_n_rows(t); r++) {
        double ppl = gq_table_num(t, r, "ppl");
        if (!is_per_channel(t, r) || !isfinite(ppl) ||
            (filter_col && gq_table_num(t, r, filter_col) != filter_val))
            continue;
        ref_line *grown = realloc(refs, (size_t)(n + 1) * sizeof *refs);
        if (!grown) {
            free(refs);
            *out = NULL;
            return -1;
        }
        refs = grown;
        ref_line *L = &refs[n++];
        series_name(t, r, "group_size", filter_col, L->name, sizeof L->name);
        L->y = ppl;
        int s = paired_series(t, r, c, "group_size", filter_col);
        L->lt = s >= 0 ? s + 1 : c->n + n;
    }
    *out = refs;
    return n;
}

/* One chart of ppl against column `x` over the quantized rows whose `filter_col` equals
 * `filter_val` (no filter when filter_col is NULL). */
static int ppl_chart(const gq_table *t, const char *gnuplot, const char *dir, const char *file,
                     const char *x, const char *xlabel, bool logx2, const char *filter_col,
                     double filter_val, const char *extra_title, int *n_charts, gq_error *err)
{
    chart c = {0};
    char name[256];
    double x0 = NAN;
    bool varies = false; /* one x value is no line: no chart */
    for (size_t r = 0; r < gq_table_n_rows(t); r++) {
        if (is_baseline(t, r))
            continue;
        if (filter_col && gq_table_num(t, r, filter_col) != filter_val)
            continue;
        series_name(t, r, x, filter_col, name, sizeof name);
        double xv = gq_table_num(t, r, x);
        varies |= isfinite(x0) && isfinite(xv) && xv != x0;
        x0 = isfinite(xv) ? xv : x0;
        if (chart_add(&c, name, xv, gq_table_num(t, r, "ppl"),
                      gq_table_num(t, r, "ppl_stderr"))) {
            chart_free(&c);
            return gq_fail(err, "%s: out of memory for the chart data", file);
        }
    }
    int rc = 0;
    if (c.n > 0 && varies) {
        chart_sort(&c);
        char title[2048], proto[1600], png[4096], ylabel[256];
        protocol_title(t, proto, sizeof proto);
        snprintf(title, sizeof title, "Perplexity vs %s%s\n%s", xlabel, extra_title, proto);
        const char *pr = gq_table_str(t, 0, "protocol");
        snprintf(ylabel, sizeof ylabel, "perplexity (%s protocol, ctx %.0f; error bars: 1 s.e.)",
                 pr ? pr : "?", gq_table_num(t, 0, "ctx"));
        snprintf(png, sizeof png, "%s/%s", dir, file);
        line_ctx L = {&c, xlabel, ylabel, logx2, strcmp(x, "bpw") == 0, baseline_ppl(t),
                      baseline_line_title(t), NULL, 0};
        ref_line *refs = NULL;
        if (strcmp(x, "group_size") == 0) /* per-channel values: dashed, in their method's colour */
            L.n_refs = channel_refs(t, &c, filter_col, filter_val, &refs);
        L.refs = refs;
        rc = L.n_refs < 0 ? gq_fail(err, "%s: out of memory for the chart data", file)
                          : run_gnuplot(gnuplot, png, title, line_body, &L, err);
        free(refs);
        if (rc == 0)
            (*n_charts)++;
    }
    chart_free(&c);
    return rc;
}

/* Data blocks $<prefix>0.. of every series of c: x y dy per line. */
static void series_blocks(FILE *f, const chart *c, const char *prefix)
{
    for (int i = 0; i < c->n; i++) {
        fprintf(f, "$%s%d << EOD\n", prefix, i);
        for (int k = 0; k < c->s[i].n; k++)
            fprintf(f, "%.17g %.17g %.17g\n", c->s[i].x[k], c->s[i].y[k], c->s[i].dy[k]);
        fprintf(f, "EOD\n");
    }
}

/* ---- group-wise PPL relative to the same method per channel ---- */
static void ratio_body(FILE *f, const void *vctx)
{
    const chart *c = vctx;
    fprintf(f, "set xlabel 'group size (weights per scale)'\nset logscale x 2\nset ylabel ");
    gp_quote(f, "perplexity vs the same method per channel: 100 (PPL_group / PPL_channel - 1), %");
    fprintf(f, "\n");
    series_blocks(f, c, "r");
    fprintf(f, "plot ");
    for (int i = 0; i < c->n; i++) {
        fprintf(f, "%s$r%d using 1:2 with linespoints lt %d pt 7 title ", i ? ", " : "", i, i + 1);
        gp_quote(f, c->s[i].name);
    }
    fprintf(f, ", 0 with lines lc rgb 'black' dashtype 2 title 'per channel (0%%)'\n");
}

/* groupwise_vs_perchannel[_<b>bit].png: for every group-wise row with a per-channel
 * counterpart, the relative perplexity difference (percent) against group size. */
static int ratio_chart(const gq_table *t, const char *gnuplot, const char *dir, const char *file,
                       const char *filter_col, double filter_val, const char *extra_title,
                       int *n_charts, gq_error *err)
{
    chart c = {0};
    char name[256];
    for (size_t r = 0; r < gq_table_n_rows(t); r++) {
        if (!is_group_wise(t, r) || (filter_col && gq_table_num(t, r, filter_col) != filter_val))
            continue;
        long pc = paired_row(t, r);
        if (pc < 0)
            continue;
        series_name(t, r, "group_size", filter_col, name, sizeof name);
        double ratio = gq_table_num(t, r, "ppl") / gq_table_num(t, (size_t)pc, "ppl");
        if (chart_add(&c, name, gq_table_num(t, r, "group_size"), 100.0 * (ratio - 1.0), NAN)) {
            chart_free(&c);
            return gq_fail(err, "%s: out of memory for the chart data", file);
        }
    }
    int rc = 0;
    if (c.n > 0) {
        chart_sort(&c);
        char title[2048], proto[1600], png[4096];
        protocol_title(t, proto, sizeof proto);
        snprintf(title, sizeof title,
                 "Group-wise vs per-channel perplexity%s (same method, bits and calibration; "
                 "below 0: groups are better)\n%s",
                 extra_title, proto);
        snprintf(png, sizeof png, "%s/%s", dir, file);
        rc = run_gnuplot(gnuplot, png, title, ratio_body, &c, err);
        if (rc == 0)
            (*n_charts)++;
    }
    chart_free(&c);
    return rc;
}

/* ---- quality vs size and vs decode speed, side by side ---- */
typedef struct {
    chart size, speed;        /* ppl against bpw and against decode_tok_s, the same series */
    int *lt, *pt;             /* per series: colour (a per-channel series takes its method's) */
    double base_ppl, base_tok_s;
    const char *base_name; /* the baseline row's series */
    bool base_fp32;        /* its decode rate is BLAS's on fp32 weights, else packed kernels' */
    const char *title;
} tradeoff_ctx;

static void tradeoff_panel(FILE *f, const tradeoff_ctx *T, const chart *c, const char *prefix,
                           const char *xlabel, bool key)
{
    fprintf(f, "set xlabel ");
    gp_quote(f, xlabel);
    fprintf(f, "\n%s\n", key ? "set key inside top right box opaque" : "unset key");
    series_blocks(f, c, prefix);
    fprintf(f, "plot ");
    const char *sep = "";
    for (int i = 0; i < c->n; i++) {
        if (c->s[i].n == 0) /* no point in this panel (e.g. no decode rate): still keyed left */
            continue;
        fprintf(f, "%s$%s%d using 1:2:3 with yerrorbars lt %d pt %d ps 1.3 title ", sep, prefix,
                i, T->lt[i], T->pt[i]);
        gp_quote(f, c->s[i].name);
        sep = ", ";
    }
    if (isfinite(T->base_ppl)) {
        fprintf(f, "%s%.17g with lines dashtype 2 lc rgb 'black' title ", sep, T->base_ppl);
        gp_quote(f, T->base_name);
    }
    if (c == &T->speed && isfinite(T->base_ppl) && isfinite(T->base_tok_s)) {
        char name[160];
        snprintf(name, sizeof name, "%s (%s)", T->base_name,
                 T->base_fp32 ? "BLAS" : "packed kernels");
        fprintf(f, ", $base using 1:2 with points pt 5 ps 1.5 lc rgb 'black' title ");
        gp_quote(f, name);
    }
    fprintf(f, "\n");
}

static void tradeoff_body(FILE *f, const void *vctx)
{
    const tradeoff_ctx *T = vctx;
    fprintf(f, "set multiplot layout 1,2 title ");
    gp_quote(f, T->title);
    fprintf(f, "\nunset title\nset ylabel 'perplexity (error bars: 1 s.e.)'\n"
               "$base << EOD\n%.17g %.17g\nEOD\n", T->base_tok_s, T->base_ppl);
    tradeoff_panel(f, T, &T->size, "s", "bits per weight of the quantized linears", true);
    tradeoff_panel(f, T, &T->speed, "v",
                   "decode tokens/s on the packed kernels (higher is faster)", false);
    fprintf(f, "unset multiplot\n");
}

/* Colours and point types: per-channel series open circles in the colour of the group-wise
 * series they pair with, the others filled circles in colours of their own. */
static int tradeoff_styles(const gq_table *t, tradeoff_ctx *T)
{
    int n = T->size.n;
    T->lt = calloc((size_t)n + 1, sizeof *T->lt);
    T->pt = calloc((size_t)n + 1, sizeof *T->pt);
    if (!T->lt || !T->pt)
        return -1;
    for (int i = 0; i < n; i++)
        T->lt[i] = i + 1, T->pt[i] = 7;
    char name[256];
    for (size_t r = 0; r < gq_table_n_rows(t); r++) {
        if (!is_per_channel(t, r))
            continue;
        series_name(t, r, "bpw", NULL, name, sizeof name);
        int self = chart_find(&T->size, name), g = paired_series(t, r, &T->size, "bpw", NULL);
        if (self >= 0 && g >= 0)
            T->lt[self] = g + 1, T->pt[self] = 6;
    }
    return 0;
}

/* ppl_vs_bpw_and_decode.png: perplexity against size (left) and decode throughput (right);
 * drawn when some quantized cell has a measured decode rate. */
static int tradeoff_chart(const gq_table *t, const char *gnuplot, const char *dir, int *n_charts,
                          gq_error *err)
{
    tradeoff_ctx T = {.base_ppl = NAN, .base_tok_s = NAN, .base_name = baseline_series(t)};
    char name[sizeof T.size.s->name];
    int measured = 0;
    for (size_t r = 0; r < gq_table_n_rows(t); r++) {
        double ppl = gq_table_num(t, r, "ppl"), se = gq_table_num(t, r, "ppl_stderr");
        double tok_s = gq_table_num(t, r, "decode_tok_s");
        if (is_baseline(t, r)) {
            T.base_ppl = ppl;
            T.base_tok_s = tok_s;
            T.base_fp32 = !(gq_table_num(t, r, "bpw") < 32.0);
            continue;
        }
        series_name(t, r, "bpw", NULL, name, sizeof name);
        /* chart_series: the same series order in both panels */
        if (chart_add(&T.size, name, gq_table_num(t, r, "bpw"), ppl, se) ||
            !chart_series(&T.speed, name) || chart_add(&T.speed, name, tok_s, ppl, se)) {
            measured = -1;
            break;
        }
        measured += isfinite(tok_s) && isfinite(ppl);
    }
    int rc = 0;
    if (measured > 0) {
        chart_sort(&T.size);
        chart_sort(&T.speed);
    }
    if (measured < 0 || (measured > 0 && tradeoff_styles(t, &T)))
        rc = gq_fail(err, "ppl_vs_bpw_and_decode.png: out of memory for the chart data");
    else if (measured > 0) {
        char title[2048], proto[1600], png[4096];
        protocol_title(t, proto, sizeof proto);
        snprintf(title, sizeof title,
                 "Quality vs size (left) and vs decode speed (right; cells without a packed "
                 "kernel, such as int3 or groups of 16, have no decode rate: see throughput_note)"
                 "\n%s",
                 proto);
        T.title = title;
        snprintf(png, sizeof png, "%s/ppl_vs_bpw_and_decode.png", dir);
        rc = run_gnuplot(gnuplot, png, "", tradeoff_body, &T, err);
        if (rc == 0)
            (*n_charts)++;
    }
    free(T.lt);
    free(T.pt);
    chart_free(&T.size);
    chart_free(&T.speed);
    return rc;
}

/* groupwise_vs_perchannel[_<b>bit].png, one file per bit width as the group-size charts. */
static int groupwise_charts(const gq_table *t, const char *gnuplot, const char *dir,
                            int *n_charts, gq_error *err)
{
    json_t *bits = gq_table_distinct(t, "bits");
    size_t nb = json_array_size(bits);
    int rc = 0;
    for (size_t i = 0; rc == 0 && (i < nb || (nb == 0 && i == 0)); i++) {
        char file[128] = "groupwise_vs_perchannel.png", extra[64] = "";
        double b = nb ? json_number_value(json_array_get(bits, i)) : NAN;
        if (nb) {
            snprintf(file, sizeof file, "groupwise_vs_perchannel_%.0fbit.png", b);
            snprintf(extra, sizeof extra, " (%.0f-bit)", b);
        }
        rc = ratio_chart(t, gnuplot, dir, file, nb ? "bits" : NULL, b, extra, n_charts, err);
    }
    json_decref(bits);
    return rc;
}

/* ---- stage times ---- */
static void times_body(FILE *f, const void *vctx)
{
    const gq_table *t = vctx;
    static const char *const cols[] = {"t_stats", "t_search", "t_quant", "t_eval"};
    static const char *const names[] = {"calibration statistics", "search", "quantization",
                                        "evaluation"};
    fprintf(f, "set ylabel 'wall-clock seconds'\nset xlabel 'cell'\n"
               "set style data histograms\nset style histogram rowstacked\n"
               "set style fill solid 0.8 border -1\nset boxwidth 0.75\nset yrange [0:*]\n"
               "set xtics rotate by -45\n$t << EOD\n");
    for (size_t r = 0; r < gq_table_n_rows(t); r++) {
        const char *cell = gq_table_str(t, r, "cell");
        gp_data_text(f, cell ? cell : "?");
        for (int k = 0; k < 4; k++) {
            double v = gq_table_num(t, r, cols[k]);
            fprintf(f, " %.9g", isfinite(v) ? v : 0.0);
        }
        fprintf(f, "\n");
    }
    fprintf(f, "EOD\nplot ");
    for (int k = 0; k < 4; k++)
        fprintf(f, "%s$t using %d%s title '%s'", k ? ", " : "", k + 2, k ? "" : ":xtic(1)",
                names[k]);
    fprintf(f, "\n");
}

int gq_plot_results(const gq_table *t, const char *dir, int *n_charts, gq_error *err)
{
    *n_charts = 0;
    const char *gnuplot = gq_gnuplot_path();
    if (!gnuplot)
        return gq_fail(err, "gnuplot not found in PATH (install gnuplot to draw charts)");
    if (gq_mkdir_p(dir, err))
        return -1;
    if (gq_table_n_rows(t) == 0)
        return gq_fail(err, "no results to plot");

    if (axis_varies(t, "group_size")) {
        json_t *bits = gq_table_distinct(t, "bits");
        size_t nb = json_array_size(bits);
        for (size_t i = 0; i < nb || (nb == 0 && i == 0); i++) {
            char file[128], extra[64] = "";
            double b = nb ? json_number_value(json_array_get(bits, i)) : NAN;
            if (nb) {
                snprintf(file, sizeof file, "ppl_vs_group_size_%.0fbit.png", b);
                snprintf(extra, sizeof extra, " (%.0f-bit)", b);
            } else
                snprintf(file, sizeof file, "ppl_vs_group_size.png");
            if (ppl_chart(t, gnuplot, dir, file, "group_size", "group size (weights per scale)",
                          true, nb ? "bits" : NULL, b, extra, n_charts, err)) {
                json_decref(bits);
                return -1;
            }
        }
        json_decref(bits);
    }
    if (groupwise_charts(t, gnuplot, dir, n_charts, err))
        return -1;
    if (axis_varies(t, "bits") &&
        ppl_chart(t, gnuplot, dir, "ppl_vs_bits.png", "bits", "weight bits (code width)", false,
                  NULL, 0, "", n_charts, err))
        return -1;
    /* swept activation / KV-cache widths (cells without those quantizers have no x: no point) */
    static const struct { const char *axis, *file, *label; } act_axes[] = {
        {"activations.bits", "ppl_vs_a_bits.png", "activation bits (code width)"},
        {"kv_cache.bits", "ppl_vs_kv_bits.png", "KV-cache bits (code width)"}};
    for (size_t i = 0; i < sizeof act_axes / sizeof act_axes[0]; i++)
        if (axis_varies(t, act_axes[i].axis) &&
            ppl_chart(t, gnuplot, dir, act_axes[i].file, act_axes[i].axis, act_axes[i].label,
                      false, NULL, 0, "", n_charts, err))
            return -1;
    /* the frontier needs quantized cells of at least two sizes */
    double bpw0 = NAN;
    bool sizes = false;
    for (size_t r = 0; r < gq_table_n_rows(t); r++) {
        double b = gq_table_num(t, r, "bpw");
        if (is_baseline(t, r) || !isfinite(b))
            continue;
        sizes |= isfinite(bpw0) && b != bpw0;
        bpw0 = b;
    }
    if (sizes &&
        ppl_chart(t, gnuplot, dir, "ppl_vs_bpw.png", "bpw",
                  "bits per weight of the quantized linears (scales and zeros included)", false,
                  NULL, 0, " (frontier; lines: Pareto-optimal cells)",
                  n_charts, err))
        return -1;
    if (sizes && tradeoff_chart(t, gnuplot, dir, n_charts, err))
        return -1;
    if (axis_varies(t, "n_calib") &&
        ppl_chart(t, gnuplot, dir, "ppl_vs_n_calib.png", "n_calib",
                  "calibration windows (count)", true, NULL, 0, "", n_charts, err))
        return -1;

    char title[2048], proto[1600], png[4096];
    protocol_title(t, proto, sizeof proto);
    snprintf(title, sizeof title, "Time per stage and cell\n%s", proto);
    snprintf(png, sizeof png, "%s/stage_times.png", dir);
    if (run_gnuplot(gnuplot, png, title, times_body, t, err))
        return -1;
    (*n_charts)++;
    return 0;
}
