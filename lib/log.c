/* log.c: leveled logging with timestamps, to stderr or a file; safe from any thread. */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *log_ident = "sandmount";
static enum log_level log_level = LOG_INFO;
static FILE *log_file; /* NULL = stderr */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_init(const char *ident, enum log_level level)
{
	log_ident = ident;
	log_level = level;
}

int log_to_file(const char *path)
{
	FILE *f = NULL;
	if (path) {
		f = fopen(path, "ae");
		if (!f)
			return -errno;
		setvbuf(f, NULL, _IOLBF, 0);
	}
	pthread_mutex_lock(&log_lock);
	if (log_file)
		fclose(log_file);
	log_file = f;
	pthread_mutex_unlock(&log_lock);
	return 0;
}

void log_set_level(enum log_level level)
{
	log_level = level;
}

enum log_level log_get_level(void)
{
	return log_level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *names[] = {"error", "warning", "info", "debug"};
	if (level > log_level)
		return;
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);

	pthread_mutex_lock(&log_lock);
	FILE *out = log_file ? log_file : stderr;
	if (log_file) {
		struct timespec ts;
		struct tm tm;
		char when[32];
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(out, "%s.%03ldZ %s[%s]: %s\n", when, ts.tv_nsec / 1000000, log_ident,
			names[level], text);
	} else {
		fprintf(out, "%s: %s%s%s\n", log_ident, level == LOG_INFO ? "" : names[level],
			level == LOG_INFO ? "" : ": ", text);
	}
	fflush(out);
	pthread_mutex_unlock(&log_lock);
}
