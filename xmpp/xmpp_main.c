/*
 * switchboard-xmpp: the XMPP client-to-server worker (RFC 6120, RFC 6121).
 * Everything protocol-specific is in the callback table (xmpp_proto.c);
 * the skeleton (workers/worker.h) does the rest.
 */
#include "xmpp/xmpp_session.h"

int main(int argc, char **argv)
{
    return worker_main(argc, argv, &xmpp_proto);
}
