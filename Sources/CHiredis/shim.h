#ifndef CHIREDIS_SHIM_H
#define CHIREDIS_SHIM_H

#include <hiredis/hiredis.h>

/* Helpers for Swift over hiredis, used as the RESP codec only (redisFormatCommandArgv, redisReader);
   the layer owns its sockets. Every helper is prefixed chiredis_. */

/** Element i of an array reply. */
static inline redisReply *chiredis_reply_element(const redisReply *reply, size_t index) {
    return reply->element[index];
}

#endif
