/* The header with MAPI's own types (mingw-w64's MAPI SDK headers first):
 * what MAPI hands a provider at init, and its IIDs, go to mapileak without
 * a cast. Compiled as C and as C++ with -Wall -Wextra -Werror by
 * scripts/test-windows.sh; run, it wraps Wine's own mapi32.dll functions. */
#define INITGUID
#define USES_IID_IMAPITable
#include <windows.h>
#include <mapix.h>
#include <mapiguid.h>
#include <stdio.h>

#include "mapileak.h"

int main(void) {
    HMODULE mapi = LoadLibraryA("mapi32.dll");
    LPALLOCATEBUFFER allocate;
    LPALLOCATEMORE more;
    LPFREEBUFFER free_buffer;
    LPALLOCATEBUFFER ours = mapileak_allocate_buffer; /* ours, as MAPI's type */
    LPFREEBUFFER ours_free = mapileak_free_buffer;
    mapileak_object *table;
    void *rows = NULL;
    void *name = NULL;
    void *theirs = NULL;
    void *more_of_theirs = NULL;
    mapileak_summary summary;
    uint64_t session;
    int i;
    if (mapi == NULL) return 2;
    allocate = (LPALLOCATEBUFFER)(void (*)(void))GetProcAddress(mapi, "MAPIAllocateBuffer");
    more = (LPALLOCATEMORE)(void (*)(void))GetProcAddress(mapi, "MAPIAllocateMore");
    free_buffer = (LPFREEBUFFER)(void (*)(void))GetProcAddress(mapi, "MAPIFreeBuffer");
    if (allocate == NULL || more == NULL || free_buffer == NULL) return 2;
    if (mapileak_buffers_wrap(allocate, more, free_buffer) != 0) return 3;
    session = mapileak_logon(MAPILEAK_ADDRESS_BOOK, "typed");
    if (mapileak_enter(session) != 0) return 3;
    table = mapileak_object_new_iid(0, &IID_IMAPITable, "contents");
    if (table == NULL) return 4;
    if (ours(64, &rows) != S_OK || mapileak_allocate_more(16, rows, &name) != S_OK) return 5;
    if (ours_free(rows) != S_OK) return 5;
    mapileak_object_release(table);
    mapileak_object_free(table);
    /* MAPI's own buffers (a profile section's GetProps returns one, say),
     * freed by the provider with the lpFreeBuffer it got, that is through
     * the wrapper: they go to MAPI's MAPIFreeBuffer, with no finding, and
     * MAPIAllocateMore takes them as parents. */
    for (i = 0; i < 1000; i++) {
        if (allocate(32, &theirs) != S_OK) return 6;
        if (i == 0 && mapileak_allocate_more(8, theirs, &more_of_theirs) != S_OK) return 6;
        if (ours_free(theirs) != S_OK) return 6;
    }
    mapileak_leave();
    if (mapileak_ab_logoff(session, &summary) != 0) return 7;
    if (summary.findings != 0 || summary.mapi_buffers != 0) {
        printf("mapileak-mapi-types findings=%llu mapi_buffers=%llu\n",
               (unsigned long long)summary.findings, (unsigned long long)summary.mapi_buffers);
        return 8;
    }
    printf("mapileak-mapi-types ok\n");
    return 0;
}
