/*
 * libFuzzer target for the inter-process frame decoder (shared/ipc.c), the
 * code the broker runs on every byte a worker sends. Every decoded message is
 * re-encoded by forwarding (as the broker does) and decoded again, which must
 * succeed and give the same type.
 */
#include "shared/ipc.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ipc_writer w;
    struct ipc_cursor cur, cur2;
    struct ipc_msg m, again;
    const char *error;

    if (ipc_frame_open(&cur, data, size, &error) < 0)
        return 0;
    while (ipc_frame_next(&cur, &m, &error) == 1) {
        struct ipc_slice v;
        uint32_t off = 0;
        size_t len;
        const uint8_t *frame;

        while (ipc_msg_each(&m, IPC_F_ARG, &off, &v) == 1)
            ;
        ipc_writer_reset(&w);
        ipc_msg_begin(&w, (enum ipc_type)m.type);
        ipc_put_raw(&w, m.body, m.body_len);
        if (!ipc_msg_end(&w))
            continue;
        frame = ipc_writer_frame(&w, &len);
        if (ipc_frame_open(&cur2, frame, len, &error) < 0 ||
            ipc_frame_next(&cur2, &again, &error) != 1 || again.type != m.type)
            abort();
    }
    return 0;
}
