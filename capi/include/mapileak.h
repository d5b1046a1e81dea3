/*
 * mapileak.h: leak detection for MAPI service providers written in C or C++.
 *
 * Link the provider's debug build with the static library of the
 * mapileak-capi crate, built optimized (`cargo build -p mapileak-capi
 * --release` gives target/release/libmapileak_c.a, mapileak_c.lib with
 * MSVC; on Linux also link -lgcc_s -lpthread -ldl -lm; on Windows ws2_32,
 * userenv, ntdll, bcrypt, advapi32; see docs/windows.md). On
 * Linux build the provider with frame pointers (-fno-omit-frame-pointer):
 * stacks are captured by walking them; x64 Windows stacks come from the
 * unwind tables every compiler writes.
 *
 * The calls mirror the Rust API (see docs/c-cpp-providers.md):
 *  - a session per logon: mapileak_logon ... mapileak_ms_logoff (or the
 *    provider's life: mapileak_provider_init, _logon, _shutdown);
 *  - a counted object per COM object: AddRef and Release forward to
 *    mapileak_object_add_ref/_release, the destructor to mapileak_object_free;
 *  - MAPI buffers through mapileak_allocate_buffer/_more, mapileak_free_buffer
 *    (wrapping the functions MAPI passed at init, or in-process).
 * At Logoff mapileak writes a JSON report (and an HTML page when asked) to
 * MAPILEAK_DIR and prints a summary where MAPI's own traces go.
 *
 * Conventions:
 *  - Nothing unwinds or aborts into the caller: a failure returns 0, NULL,
 *    -1 or MAPI_E_NOT_ENOUGH_MEMORY.
 *  - Strings may be NULL (read as "") and need not be UTF-8.
 *  - Sessions and providers are uint64_t ids, as reports show them; 0 is
 *    none. Status results: 0 done, -1 a bad argument (an unknown id, NULL).
 *  - The library is always live: link it into the debug configuration
 *    only (a release build of the provider leaves it out).
 */
#ifndef MAPILEAK_H
#define MAPILEAK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The calling convention of MAPI's buffer functions. */
#if defined(_WIN32) && !defined(_WIN64)
#define MAPILEAK_STDCALL __stdcall
#else
#define MAPILEAK_STDCALL
#endif

/* Provider types, for mapileak_logon and mapileak_provider_init. */
enum {
    MAPILEAK_ADDRESS_BOOK = 1,
    MAPILEAK_MESSAGE_STORE = 2,
    MAPILEAK_TRANSPORT = 3
};

/* The counts of a report. */
typedef struct mapileak_summary {
    uint64_t leaked_objects; /* objects alive that should not be */
    uint64_t leak_roots;     /* of those, the ones no other leaked object holds */
    uint64_t heap_blocks;    /* heap blocks attributed to the session, alive */
    uint64_t heap_bytes;     /* their bytes */
    uint64_t mapi_buffers;   /* unfreed MAPI buffers (a chain counts once) */
    uint64_t findings;       /* shutdown-protocol and buffer findings */
    uint64_t heap_untracked; /* attributed heap blocks the live table could not
                                hold, process-wide so far (MAPILEAK_LIVE_BLOCKS) */
} mapileak_summary;

/* MAPI's own types, when its headers come first (mapidefs.h, through
 * mapix.h or mapispi.h), or with MAPILEAK_MAPI_TYPES defined: the buffer
 * functions are LPALLOCATEBUFFER, LPALLOCATEMORE and LPFREEBUFFER (SCODE
 * and ULONG), and a GUID is an IID, so a provider passes what MAPI gave it
 * at init, and &IID_IMAPITable, without casts. The layouts are the same
 * either way (on Windows SCODE and ULONG are 32 bits). */
#if defined(MAPIDEFS_H) || defined(MAPILEAK_MAPI_TYPES)
#define MAPILEAK_WITH_MAPI_TYPES 1
typedef SCODE mapileak_scode;
typedef ULONG mapileak_ulong;
typedef IID mapileak_guid;
#else
typedef int32_t mapileak_scode;
typedef uint32_t mapileak_ulong;
/* A GUID laid out as <guiddef.h> does. */
typedef struct mapileak_guid {
    uint32_t data1;
    uint16_t data2;
    uint16_t data3;
    uint8_t data4[8];
} mapileak_guid;
#endif

/* One tracked object's reference count (opaque). */
typedef struct mapileak_object mapileak_object;

/* ---- settings ---------------------------------------------------------- */

/* 1 when the instrumentation is compiled in (a debug build of the library). */
int mapileak_live(void);
/* "off", "summary" or "full", as the MAPILEAK variable; -1 for others. */
int mapileak_set_mode(const char *mode);
/* Where reports go, as MAPILEAK_DIR. */
void mapileak_set_output_dir(const char *dir);
/* Also write an HTML page beside each JSON report (as MAPILEAK_HTML=1). */
void mapileak_set_html(int on);
/* Write reports with raw addresses and each module's identity, for
 * `mapileak symbolize` to name later (as MAPILEAK_SYMBOLS=offline): the
 * Logoff reads no debug info. For memory-starved hosts (32-bit Outlook). */
void mapileak_set_offline_symbols(int on);
/* Objects of these kinds made from now on record a stack per AddRef and
 * Release (the report pairs them up): interface names, comma-separated,
 * declared or the provider's own ("IMAPITable,IMyCache"), or "all"; "none"
 * turns it off. As MAPILEAK_HISTORY, and over it. -1 for NULL. */
int mapileak_set_history(const char *kinds);

/* ---- sessions ----------------------------------------------------------- */

/* A logon of a provider of type `provider` (MAPILEAK_ADDRESS_BOOK ...)
 * starts; returns its session, or 0 for another type. */
uint64_t mapileak_logon(int provider, const char *label);
/* IABLogon::Logoff, IMSLogon::Logoff, IXPLogon::TransportLogoff: checks the
 * session, writes its report, and fills `out` (may be NULL) with its counts. */
int mapileak_ab_logoff(uint64_t session, mapileak_summary *out);
int mapileak_ms_logoff(uint64_t session, mapileak_summary *out);
int mapileak_transport_logoff(uint64_t session, mapileak_summary *out);

/* The session (or provider) becomes this thread's current one: objects,
 * heap blocks and buffers created without an owner belong to it, until the
 * matching mapileak_leave. Scopes nest. */
int mapileak_enter(uint64_t id);
void mapileak_leave(void);
/* This thread's current session, or 0. */
uint64_t mapileak_current(void);

/* Reports everything still alive as leaked at process end (event "exit"):
 * one report per provider with its logons, per logon without a provider,
 * and one for objects outside any. Returns the number of reports; runs once
 * (later calls return 0). An atexit hook calls it when the process exits
 * normally; a provider DLL calls it from DLL_PROCESS_DETACH. */
int mapileak_process_exit(void);

/* Writes a snapshot of what is alive now (event "snapshot"): one report per
 * provider with its logons, per logon without a provider, and one for what
 * is outside any logon, each to files of its own. Nothing in it is a leak
 * yet: `mapileak growth` compares a series of them. Changes no state; any
 * thread may call it at any time. Returns the number of reports. Another
 * process asks for one with `mapileak snapshot PID`. */
int mapileak_snapshot(const char *label);

/* ---- the provider's life (optional; enables the Shutdown checks) -------- */

/* *ProviderInit returned a provider object; malloc_addrefd: it kept lpMalloc.
 * 0 for a provider type other than MAPILEAK_ADDRESS_BOOK ... TRANSPORT. */
uint64_t mapileak_provider_init(int provider, const char *label, int malloc_addrefd);
/* The provider's Logon created a logon: returns its session. */
uint64_t mapileak_provider_logon(uint64_t provider, const char *label);
/* The provider released the lpMalloc it kept. */
int mapileak_provider_malloc_release(uint64_t provider);
/* lpMalloc->AddRef() after init: one more Release owed. */
int mapileak_provider_malloc_add_ref(uint64_t provider);
/* IXXProvider::Shutdown: checks the provider and its logons, reports. */
int mapileak_provider_shutdown(uint64_t provider, mapileak_summary *out);
/* MAPI's final Release of the provider object (a provider object counted
 * with a mapileak_object of a provider kind, owned by `provider`, records
 * it itself when destroyed after Shutdown). */
int mapileak_provider_released(uint64_t provider);

/* What a logon does with MAPI's support object and lists. A session of 0
 * is the thread's current one (mapileak_enter), or outside any scope the
 * one logon that has not logged off. */
int mapileak_support_add_ref(uint64_t session);
int mapileak_support_release(uint64_t session);
int mapileak_set_provider_uid(uint64_t session);
int mapileak_modify_status_row(uint64_t session);
int mapileak_subscribe(uint64_t session, uint32_t connection);
int mapileak_unsubscribe(uint64_t session, uint32_t connection);
/* The logon opened (closed) connection `id` to a remote server; Logoff must close each. */
int mapileak_server_connected(uint64_t session, uint32_t id);
int mapileak_server_disconnected(uint64_t session, uint32_t id);
int mapileak_make_invalid(uint64_t session);
int mapileak_listed(uint64_t session);
int mapileak_unlisted(uint64_t session);
int mapileak_store_logoff(uint64_t session, uint32_t flags);
int mapileak_store_logoff_transports(uint64_t session, uint32_t flags);
int mapileak_store_released(uint64_t session);
/* MAPI's Release of the logon object. A logon counted with a
 * mapileak_object of a logon kind (IMSLogon, IABLogon, IXPLogon, IMsgStore)
 * records it itself when the last of them is destroyed after Logoff; call
 * it to have a Release before Logoff reported too (out-of-order). */
int mapileak_logon_released(uint64_t session);

/* ---- objects ------------------------------------------------------------ */

/* A new object with a count of 1, implementing interface `kind` (such as
 * "IMAPITable"; the MAPI interfaces get their role, other names are ordinary
 * objects), owned by `owner` (a session, a provider, or 0 for this thread's
 * current session). NULL for an unknown owner. */
mapileak_object *mapileak_object_new(uint64_t owner, const char *kind, const char *label);
/* The same, the kind found by IID among the declared ones (NULL if none). */
mapileak_object *mapileak_object_new_iid(uint64_t owner, const mapileak_guid *iid,
                                         const char *label);
/* IUnknown::AddRef and Release: the new count. At 0 the provider destroys
 * its object; a Release at 0 stays 0 and is an over-release finding. */
uint32_t mapileak_object_add_ref(const mapileak_object *object);
uint32_t mapileak_object_release(const mapileak_object *object);
/* Release, and *last (may be NULL) is 1 exactly when this Release took the
 * count from 1 to 0: destroy the object then, and only then. A Release of
 * a destroyed object (one Release too many, through a stale pointer)
 * returns 0 with *last 0 and is an over-release finding. */
uint32_t mapileak_object_release_final(const mapileak_object *object, int *last);
uint32_t mapileak_object_count(const mapileak_object *object);
/* Its id in reports. */
uint64_t mapileak_object_id(const mapileak_object *object);
/* A word for the object to keep in its own memory (a field): the heap block
 * holding it is then reported as the object's, not as a separate heap leak
 * (mapileak.hpp's RefCount keeps it). 0 for NULL. */
uint64_t mapileak_object_memory_tag(const mapileak_object *object);
/* It was opened from `parent` (a message from its folder). */
int mapileak_object_set_opened_from(const mapileak_object *object, const mapileak_object *parent);
/* It now keeps a reference on `other` / let go of one. A leaked holder makes
 * what it holds an indirect leak. */
int mapileak_object_hold(const mapileak_object *object, const mapileak_object *other);
int mapileak_object_release_hold(const mapileak_object *object, const mapileak_object *other);
/* The object is destroyed: frees the handle. NULL is ignored. */
void mapileak_object_free(mapileak_object *object);
/* The object is destroyed (its destructor runs), and its count lives at
 * `memory`, inside the object: instead of freeing the handle, mapileak
 * keeps it with the object's heap block when that block comes from
 * mapileak_malloc (MAPILEAK_REPLACE_OPERATOR_NEW) and is freed next on
 * this thread. The block then stays in a quarantine (the last 4096 such
 * blocks, 16 MiB at most), its bytes intact: a Release through a stale
 * pointer reaches the dead count, returns 0 and is an over-release
 * finding, not a crash. mapileak.hpp's RefCount calls it. */
void mapileak_object_destroy(mapileak_object *object, const void *memory);

/* ---- MAPI buffers --------------------------------------------------------- */

#ifdef MAPILEAK_WITH_MAPI_TYPES
typedef LPALLOCATEBUFFER mapileak_allocate_buffer_fn;
typedef LPALLOCATEMORE mapileak_allocate_more_fn;
typedef LPFREEBUFFER mapileak_free_buffer_fn;
#else
typedef mapileak_scode(MAPILEAK_STDCALL *mapileak_allocate_buffer_fn)(mapileak_ulong cb,
                                                                       void **buffer);
typedef mapileak_scode(MAPILEAK_STDCALL *mapileak_allocate_more_fn)(mapileak_ulong cb,
                                                                     void *object, void **buffer);
typedef mapileak_ulong(MAPILEAK_STDCALL *mapileak_free_buffer_fn)(void *buffer);
#endif

/* The functions below pass each call on to these (the ones MAPI gave the
 * provider at init). Call once, before the first buffer; without it they
 * use an in-process implementation. -1 for NULL or when too late. */
int mapileak_buffers_wrap(mapileak_allocate_buffer_fn allocate, mapileak_allocate_more_fn more,
                          mapileak_free_buffer_fn free_buffer);
/* MAPIAllocateBuffer, MAPIAllocateMore, MAPIFreeBuffer, checked: a buffer
 * left at Logoff is buffer-leaked; freeing a chained child and freeing
 * twice are findings and are not passed on. Wrapping MAPI's functions,
 * memory these did not allocate is MAPI's (a profile section's GetProps
 * result): it goes to MAPI's function unchanged, no finding; in-process,
 * freeing it is a finding. */
mapileak_scode MAPILEAK_STDCALL mapileak_allocate_buffer(mapileak_ulong cb, void **buffer);
/* MAPIAllocateBuffer for `session` without entering its scope (code that
 * passes sessions around); outside any scope, mapileak_allocate_buffer's
 * buffers belong to no logon and are reported only at process end. */
mapileak_scode MAPILEAK_STDCALL mapileak_allocate_buffer_in(uint64_t session, mapileak_ulong cb,
                                                            void **buffer);
mapileak_scode MAPILEAK_STDCALL mapileak_allocate_more(mapileak_ulong cb, void *object,
                                                       void **buffer);
mapileak_ulong MAPILEAK_STDCALL mapileak_free_buffer(void *buffer);

/* The provider returns `buffer` (a root, with its chain) to its caller --
 * GetProps' property array, QueryRows' row set -- who frees it with MAPI's
 * own MAPIFreeBuffer, a call mapileak does not see: it is no longer the
 * logon's to free and no report lists it. -1 for NULL or what is not a live
 * root buffer of these functions. */
int mapileak_buffer_to_caller(void *buffer);
/* The same for a row set the provider returns (QueryRows' SRowSet, or an
 * ADRLIST): the set and every row's property array, which the caller frees
 * with FreeProws. -1 for NULL or when the set is not a live root buffer
 * (its rows are handed over all the same). */
int mapileak_rows_to_caller(void *rows);

/* Buffers with an owner: a MAPI utility object (CreateIProp's IPropData,
 * CreateTable's ITableData) built on the provider's allocators keeps its
 * own buffers. Tracked as an object (a mapileak_object for the object that
 * made it, say), its buffers are listed under it when both leak, not as
 * roots of their own. Between enter and leave, what this thread allocates
 * belongs to `owner` (wrap the call that makes the utility object and the
 * calls into it); set_owner names one buffer's owner. 0, or -1 for NULL
 * (and for what is not a live root buffer). */
int mapileak_buffer_owner_enter(const mapileak_object *owner);
void mapileak_buffer_owner_leave(void);
int mapileak_buffer_set_owner(void *buffer, const mapileak_object *owner);

/* ---- the C and C++ heap ----------------------------------------------------- */

/* malloc, calloc, realloc and free, tracked: a block allocated in a
 * session's scope (mapileak_enter; outside any, the one open logon's) and
 * still alive at its Logoff is reported with the stack that allocated it,
 * as a Rust provider's heap blocks are. Each block is a block of the C
 * runtime's own malloc: a plain free() frees it correctly (unseen, so it
 * would be reported as leaked: see MAPILEAK_REPLACE_MALLOC). mapileak_free
 * and mapileak_realloc take blocks of the C runtime that mapileak did not
 * make (strdup's) and pass them to its free and realloc. mapileak_realloc
 * to 0 bytes frees the block and returns NULL, as glibc and Windows do.
 * mapileak_aligned_malloc takes a power-of-two alignment (NULL for
 * others). C++: MAPILEAK_REPLACE_OPERATOR_NEW in mapileak.hpp routes every
 * operator new and delete to mapileak_new and mapileak_delete (array: 1 for
 * new[] and delete[]); a block freed by a function that does not pair with
 * its maker (new[] with free, malloc with delete) is an
 * alloc-dealloc-mismatch finding, and is freed correctly all the same. */
void *mapileak_malloc(size_t size);
void *mapileak_calloc(size_t count, size_t size);
void *mapileak_aligned_malloc(size_t size, size_t align);
void *mapileak_realloc(void *block, size_t size);
void mapileak_free(void *block);
void *mapileak_new(size_t size, size_t align, int array);
void mapileak_delete(void *block, int array);

#ifdef __cplusplus
}
#endif

/* MAPILEAK_REPLACE_MALLOC, defined before this header is included (after
 * the system's headers, in each source file of the provider's debug
 * build that should be tracked): malloc, calloc, realloc and free there
 * become mapileak's. A block they make is tracked, and legacy code that
 * frees a new[] block with free() (or deletes a malloc block) shows as an
 * alloc-dealloc-mismatch finding at that call, instead of going unseen. */
#if defined(MAPILEAK_REPLACE_MALLOC) && !defined(MAPILEAK_MALLOC_REPLACED)
#define MAPILEAK_MALLOC_REPLACED 1
#include <stdlib.h>
#define malloc(size) mapileak_malloc(size)
#define calloc(count, size) mapileak_calloc(count, size)
#define realloc(block, size) mapileak_realloc(block, size)
#define free(block) mapileak_free(block)
#endif

#endif /* MAPILEAK_H */
