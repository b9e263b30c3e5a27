#ifndef CHIREDIS_SHIM_H
#define CHIREDIS_SHIM_H

#include <errno.h>
#include <string.h>
#include <sys/time.h>
#include <hiredis/hiredis.h>

/* Helpers for Swift: everything variadic or macro-shaped in hiredis gets a plain function here.
   Every helper is prefixed chiredis_. */

/** A timeval from milliseconds (hiredis takes struct timeval by value). */
static inline struct timeval chiredis_timeval_ms(long long milliseconds) {
    struct timeval tv;
    tv.tv_sec = (time_t)(milliseconds / 1000);
    tv.tv_usec = (suseconds_t)((milliseconds % 1000) * 1000);
    return tv;
}

/** The context's error code (0 when healthy), read together with errno by the caller in one synchronous call. */
static inline int chiredis_context_error(const redisContext *context) {
    return context == NULL ? -1 : context->err;
}

/** The context's error string; valid until the context is freed. */
static inline const char *chiredis_context_error_string(const redisContext *context) {
    return context == NULL ? "out of memory allocating the hiredis context" : context->errstr;
}

/** The current errno (a macro, so Swift cannot read it portably). */
static inline int chiredis_errno(void) {
    return errno;
}

/** Element i of an array reply. */
static inline redisReply *chiredis_reply_element(const redisReply *reply, size_t index) {
    return reply->element[index];
}

/** Reads the next reply; the out-parameter is typed so Swift needs no void** juggling. */
static inline int chiredis_get_reply(redisContext *context, redisReply **reply) {
    void *raw = NULL;
    int status = redisGetReply(context, &raw);
    *reply = (redisReply *)raw;
    return status;
}

#endif
