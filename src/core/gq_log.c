#include "core/gq_log.h"
#include "core/gq_time.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static gq_log_level g_level = GQ_LOG_INFO;
static bool g_progress_on_line; /* a "\r" progress line is on screen and must be cleared */

void gq_log_set_level(gq_log_level level) { g_level = level; }
gq_log_level gq_log_get_level(void) { return g_level; }

static void vlog(const char *tag, const char *fmt, va_list ap)
{
    #pragma omp critical(gq_log)
    {
        if (g_progress_on_line) {
            fputs("\r\033[K", stderr);
            g_progress_on_line = false;
        }
        fprintf(stderr, "[%8.2fs] %s", gq_elapsed(), tag);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        fflush(stderr);
    }
}

void gq_log_info(const char *fmt, ...)
{
    if (g_level < GQ_LOG_INFO)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog("", fmt, ap);
    va_end(ap);
}

void gq_log_warn(const char *fmt, ...)
{
    if (g_level < GQ_LOG_WARN)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog("warning: ", fmt, ap);
    va_end(ap);
}

void gq_log_debug(const char *fmt, ...)
{
    if (g_level < GQ_LOG_DEBUG)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog("debug: ", fmt, ap);
    va_end(ap);
}

static void format_duration(double s, char *buf, size_t n)
{
    if (s < 0 || s > 1e7)
        snprintf(buf, n, "?");
    else if (s < 60)
        snprintf(buf, n, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, n, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

static void draw(gq_progress *p, bool final)
{
    double now = gq_now();
    double el = now - p->t_start;
    char eta[32], elapsed[32];
    format_duration(el, elapsed, sizeof elapsed);
    if (p->done > 0 && p->done < p->total)
        format_duration(el / (double)p->done * (double)(p->total - p->done), eta, sizeof eta);
    else
        snprintf(eta, sizeof eta, "-");
    double pct = p->total > 0 ? 100.0 * (double)p->done / (double)p->total : 100.0;
    if (p->tty) {
        fprintf(stderr, "\r\033[K%s  %ld/%ld (%5.1f%%)  elapsed %s  ETA %s", p->label, p->done,
                p->total, pct, elapsed, final ? "done" : eta);
        g_progress_on_line = !final;
        if (final)
            fputc('\n', stderr);
    } else {
        fprintf(stderr, "[%8.2fs] %s  %ld/%ld (%.1f%%)  elapsed %s  ETA %s\n", gq_elapsed(),
                p->label, p->done, p->total, pct, elapsed, final ? "done" : eta);
    }
    fflush(stderr);
    p->t_last_print = now;
}

void gq_progress_start(gq_progress *p, const char *label, long total)
{
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total;
    p->t_start = gq_now();
    p->t_last_print = p->t_start;
    p->tty = isatty(STDERR_FILENO);
    p->active = g_level >= GQ_LOG_INFO;
    if (p->active && p->tty)
        draw(p, false);
}

void gq_progress_add(gq_progress *p, long n)
{
    #pragma omp critical(gq_log)
    {
        p->done += n;
        if (p->active) {
            double since = gq_now() - p->t_last_print;
            if ((p->tty && since > 0.2) || (!p->tty && since > 10.0))
                draw(p, false);
        }
    }
}

void gq_progress_stage(gq_progress *p, const char *label)
{
    #pragma omp critical(gq_log)
    {
        snprintf(p->label, sizeof p->label, "%s", label);
        if (p->active && p->tty)
            draw(p, false);
    }
}

void gq_progress_finish(gq_progress *p)
{
    if (p->active)
        draw(p, true);
    p->active = false;
}
