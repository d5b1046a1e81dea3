/* A C transport provider for the C ABI test: MAPI's buffer functions
 * wrapped (here a counting stand-in for them), an object found by IID, a
 * double free. Usage: transport REPORT_DIR. Prints one line; exit 0. */
#include <stdio.h>
#include <stdlib.h>

#include "mapileak.h"

static int real_allocs;
static int real_frees;

static int32_t MAPILEAK_STDCALL stand_in_allocate(uint32_t cb, void **buffer) {
    real_allocs++;
    *buffer = malloc(cb ? cb : 1);
    return 0;
}

static int32_t MAPILEAK_STDCALL stand_in_more(uint32_t cb, void *object, void **buffer) {
    (void)object;
    real_allocs++;
    *buffer = malloc(cb ? cb : 1);
    return 0;
}

static uint32_t MAPILEAK_STDCALL stand_in_free(void *buffer) {
    real_frees++;
    free(buffer);
    return 0;
}

static const mapileak_guid IID_IXPLogon = {
    0x00020315, 0x0000, 0x0000, {0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x46}};

int main(int argc, char **argv) {
    mapileak_summary summary = {0, 0, 0, 0, 0, 0, 0};
    mapileak_summary shutdown = {0, 0, 0, 0, 0, 0, 0};
    uint64_t provider;
    uint64_t session;
    mapileak_object *logon;
    mapileak_object *status;
    void *message = NULL;
    void *theirs = NULL;
    void *more_of_theirs = NULL;
    if (argc < 2) return 2;
    mapileak_set_output_dir(argv[1]);
    if (mapileak_buffers_wrap(stand_in_allocate, stand_in_more, stand_in_free) != 0) return 3;
    if (mapileak_buffers_wrap(stand_in_allocate, stand_in_more, stand_in_free) != -1) return 3;

    /* Another provider type is refused, as every bad argument is. */
    if (mapileak_logon(99, "no such type") != 0 || mapileak_provider_init(0, "none", 0) != 0)
        return 3;
    session = mapileak_logon(MAPILEAK_TRANSPORT, "C transport");
    if (mapileak_enter(session) != 0) return 3;
    /* The logon object: MAPI releases it after TransportLogoff, so alive
     * there is expected, not a leak. */
    logon = mapileak_object_new_iid(0, &IID_IXPLogon, "SMTP logon");
    if (logon == NULL || mapileak_current() != session) return 4;
    mapileak_allocate_buffer(100, &message);
    mapileak_free_buffer(message);
    mapileak_free_buffer(message); /* buffer-double-free, not passed on */
    /* A status object handed out without an AddRef: the client's Release
     * takes it to 0, the logon's own Release finds 0 (over-release). */
    status = mapileak_object_new(0, "IMAPIStatus", "transport status");
    if (status == NULL) return 4;
    mapileak_object_release(status); /* the client's: destroys it */
    mapileak_object_release(status); /* the logon's: an over-release */
    mapileak_object_free(status);
    /* A buffer MAPI allocated itself (a profile section's property array),
     * freed with the wrapped lpFreeBuffer: it reaches MAPI's function, no
     * finding; AllocateMore takes it as a parent (MAPI's call too). */
    stand_in_allocate(16, &theirs);
    if (mapileak_allocate_more(8, theirs, &more_of_theirs) != 0) return 4;
    if (mapileak_free_buffer(theirs) != 0) return 4;
    free(more_of_theirs); /* (the stand-in's chain is not one) */
    mapileak_leave();
    if (mapileak_current() != 0) return 4;
    /* A buffer bound to the session without its scope: leaked at Logoff. */
    if (mapileak_allocate_buffer_in(session, 24, &message) != 0) return 5;
    if (mapileak_allocate_buffer_in(999999, 24, &message) == 0) return 5;
    /* The provider's lpMalloc: kept at init, released twice (over-release). */
    provider = mapileak_provider_init(MAPILEAK_TRANSPORT, "C transport provider", 1);
    if (provider == 0 || mapileak_provider_malloc_add_ref(provider) != 0) return 5;
    mapileak_provider_malloc_release(provider);
    mapileak_provider_malloc_release(provider);
    mapileak_provider_malloc_release(provider);
    if (mapileak_provider_shutdown(provider, &shutdown) != 0) return 5;
    /* The SMTP connection: one closed, one left open (server-connection-open). */
    if (mapileak_server_connected(session, 25) != 0) return 5;
    if (mapileak_server_connected(session, 587) != 0) return 5;
    if (mapileak_server_disconnected(session, 25) != 0) return 5;

    if (mapileak_transport_logoff(session, &summary) != 0) return 3;
    mapileak_object_release(logon);
    mapileak_object_free(logon);
    if (summary.heap_untracked != 0) return 6;
    printf("mapileak-c real_allocs=%d real_frees=%d leaked_objects=%llu findings=%llu "
           "mapi_buffers=%llu shutdown_findings=%llu\n",
           real_allocs, real_frees, (unsigned long long)summary.leaked_objects,
           (unsigned long long)summary.findings, (unsigned long long)summary.mapi_buffers,
           (unsigned long long)shutdown.findings);
    return 0;
}
