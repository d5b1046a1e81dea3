// A C++ message-store provider DLL written against the MAPI SDK headers, as
// Outlook's providers are: it exports MSProviderInit with MAPI's signature
// and implements IMSProvider, IMSLogon, IMsgStore, IMAPIFolder and
// IMAPITable (what the host calls; the rest returns MAPI_E_NO_SUPPORT), in
// its debug configuration with mapileak.hpp. Built as msprovider.dll by
// scripts/test-windows.sh; loaded and driven by mapihost.cpp.
//
// Three bugs are planted, for the test to find:
//  - Folder::GetContentsTable caches the table with an AddRef that nothing
//    releases: the table leaks (and its heap block, through the replaced
//    operator new);
//  - MsgStore::GetProps allocates a scratch MAPI buffer it never frees;
//  - MSLogon::Logoff releases the store, a reference the logon never took:
//    an over-release;
//  - MSProvider::Logon copies the profile name with new[] and nothing
//    deletes it: a C++ heap leak.
#define INITGUID
#define USES_IID_IMAPITable
#define USES_IID_IMAPIProp
#define USES_IID_IMAPIContainer
#define USES_IID_IMAPIFolder
#define USES_IID_IMsgStore
#define USES_IID_IMSLogon
#define USES_IID_IMSProvider
#include <windows.h>

#include <mapispi.h>
#include <mapix.h>

#include <cstring>

#include "mapileak.hpp"

// The module's C++ heap goes through mapileak (every new and delete).
MAPILEAK_REPLACE_OPERATOR_NEW

namespace {

// MAPI_E_NO_SUPPORT for every method of an interface the host does not
// call. (The parameters are named in MAPI's method macros.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#define NOT_SUPPORTED \
    { return MAPI_E_NO_SUPPORT; }

struct TableMethods : public IMAPITable {
    MAPI_IMAPITABLE_METHODS(NOT_SUPPORTED)
};
struct FolderMethods : public IMAPIFolder {
    MAPI_IMAPIPROP_METHODS(NOT_SUPPORTED)
    MAPI_IMAPICONTAINER_METHODS(NOT_SUPPORTED)
    MAPI_IMAPIFOLDER_METHODS(NOT_SUPPORTED)
};
struct StoreMethods : public IMsgStore {
    MAPI_IMAPIPROP_METHODS(NOT_SUPPORTED)
    MAPI_IMSGSTORE_METHODS(NOT_SUPPORTED)
};
struct LogonMethods : public IMSLogon {
    MAPI_IMSLOGON_METHODS(NOT_SUPPORTED)
};
struct ProviderMethods : public IMSProvider {
    MAPI_IMSPROVIDER_METHODS(NOT_SUPPORTED)
};
#pragma GCC diagnostic pop

// IUnknown over a mapileak count: the usual provider object, destroyed at
// its last Release unless something else owns its memory.
template <class Interface>
class Unknown : public Interface {
public:
    Unknown(const char *kind, const char *label, REFIID iid, uint64_t owner = 0)
        : count_(kind, label, owner), iid_(iid) {}
    virtual ~Unknown() = default;

    STDMETHODIMP QueryInterface(REFIID riid, LPVOID *ppv) override {
        if (ppv == nullptr) return MAPI_E_INVALID_PARAMETER;
        if (IsEqualIID(riid, IID_IUnknown) || IsEqualIID(riid, iid_)) {
            *ppv = this;
            AddRef();
            return S_OK;
        }
        *ppv = nullptr;
        return MAPI_E_INTERFACE_NOT_SUPPORTED;
    }
    STDMETHODIMP_(ULONG) AddRef() override { return count_.AddRef(); }
    STDMETHODIMP_(ULONG) Release() override {
        ULONG n = count_.Release();
        if (n == 0 && OnFinalRelease()) delete this;
        return n;
    }
    const mapileak::RefCount &count() const { return count_; }

protected:
    // Runs at the count's 0; true when the object frees itself.
    virtual bool OnFinalRelease() { return true; }

    mapileak::RefCount count_;

private:
    IID iid_;
};

class Table : public Unknown<TableMethods> {
public:
    Table(const char *label) : Unknown("IMAPITable", label, IID_IMAPITable) {}
    STDMETHODIMP GetRowCount(ULONG, ULONG *count) override {
        *count = 0;
        return S_OK;
    }
};

class Folder : public Unknown<FolderMethods> {
public:
    Folder(const char *label, uint64_t session)
        : Unknown("IMAPIFolder", label, IID_IMAPIFolder), session_(session) {}

    __attribute__((noinline)) STDMETHODIMP GetContentsTable(ULONG, LPMAPITABLE *table) override {
        mapileak::Scope scope(session_);
        Table *contents = new Table("contents of Inbox");
        contents->count().OpenedFrom(count_);
        // The planted leak: a cache "for the next call" that nothing empties.
        contents->AddRef();
        cached_ = contents;
        *table = contents;
        return S_OK;
    }

private:
    uint64_t session_;
    Table *cached_ = nullptr;
};

class MsgStore : public Unknown<StoreMethods> {
public:
    MsgStore(uint64_t session, LPMAPISUP support)
        : Unknown("IMsgStore", "Sample Store", IID_IMsgStore), session_(session),
          support_(support) {}

    __attribute__((noinline)) STDMETHODIMP OpenEntry(ULONG cb, LPENTRYID, LPCIID, ULONG,
                                                     ULONG *type, LPUNKNOWN *object) override {
        if (cb != 0) return MAPI_E_NOT_FOUND;  // only the root folder
        mapileak::Scope scope(session_);
        Folder *inbox = new Folder("Inbox", session_);
        inbox->count().OpenedFrom(count_);
        *type = MAPI_FOLDER;
        *object = static_cast<IMAPIFolder *>(inbox);
        return S_OK;
    }

    __attribute__((noinline)) STDMETHODIMP GetProps(LPSPropTagArray, ULONG, ULONG *count,
                                                    LPSPropValue *props) override {
        mapileak::Scope scope(session_);
        static const char kName[] = "Sample Store";
        LPSPropValue value = nullptr;
        if (FAILED(mapileak_allocate_buffer(sizeof(SPropValue), reinterpret_cast<void **>(&value))))
            return MAPI_E_NOT_ENOUGH_MEMORY;
        char *name = nullptr;
        if (FAILED(mapileak_allocate_more(sizeof kName, value, reinterpret_cast<void **>(&name)))) {
            mapileak_free_buffer(value);
            return MAPI_E_NOT_ENOUGH_MEMORY;
        }
        std::memcpy(name, kName, sizeof kName);
        value->ulPropTag = PR_DISPLAY_NAME_A;
        value->Value.lpszA = name;
        // The planted leak: a scratch buffer for a conversion never done.
        void *scratch = nullptr;
        mapileak_allocate_buffer(128, &scratch);
        *count = 1;
        *props = value;
        mapileak_buffer_to_caller(value);  // the caller frees it with MAPIFreeBuffer
        return S_OK;
    }

    STDMETHODIMP StoreLogoff(ULONG *flags) override {
        mapileak_store_logoff(session_, *flags);
        TransportsOff(flags);
        return S_OK;
    }

protected:
    // The store's final Release: StoreLogoffTransports(LOGOFF_ABORT) if the
    // client never called StoreLogoff, then the support object goes (MAPI
    // then calls IMSLogon::Logoff). The store is part of the logon's memory.
    bool OnFinalRelease() override {
        if (released_) return false;
        released_ = true;
        if (!transports_off_) {
            ULONG flags = LOGOFF_ABORT;
            TransportsOff(&flags);
        }
        mapileak_store_released(session_);
        LPMAPISUP support = support_;
        support_ = nullptr;
        mapileak_support_release(session_);
        support->Release();
        return false;
    }

private:
    void TransportsOff(ULONG *flags) {
        if (transports_off_) return;
        transports_off_ = true;
        mapileak_store_logoff_transports(session_, *flags);
        support_->StoreLogoffTransports(flags);
    }

    uint64_t session_;
    LPMAPISUP support_;
    bool transports_off_ = false;
    bool released_ = false;
};

class MSLogon : public Unknown<LogonMethods> {
public:
    MSLogon(uint64_t session, LPMAPISUP support)
        : Unknown("IMSLogon", "Sample Store logon", IID_IMSLogon),
          session_(session),
          store_(session, support) {}

    MsgStore *store() { return &store_; }

    __attribute__((noinline)) STDMETHODIMP Logoff(ULONG *) override {
        mapileak::Scope scope(session_);
        // The planted over-release: a reference the logon never took.
        store_.Release();
        mapileak_summary summary = {};
        mapileak_ms_logoff(session_, &summary);
        return S_OK;
    }

protected:
    bool OnFinalRelease() override {
        mapileak_logon_released(session_);
        return true;
    }

private:
    uint64_t session_;
    // Part of the logon, as in many providers: one block, freed with it.
    MsgStore store_;
};

class MSProvider : public Unknown<ProviderMethods> {
public:
    MSProvider(uint64_t id, LPMALLOC malloc)
        : Unknown("IMSProvider", "Sample Store", IID_IMSProvider, id), id_(id), malloc_(malloc) {}

    __attribute__((noinline)) STDMETHODIMP Logon(LPMAPISUP support, ULONG, LPTSTR profile, ULONG,
                                                 LPENTRYID, ULONG, LPCIID, ULONG *spool_cb,
                                                 LPBYTE *spool, LPMAPIERROR *error,
                                                 LPMSLOGON *logon, LPMDB *store) override {
        uint64_t session = mapileak_provider_logon(id_, reinterpret_cast<const char *>(profile));
        mapileak::Scope scope(session);
        support->AddRef();
        mapileak_support_addref(session);
        MSLogon *made = new MSLogon(session, support);
        // The planted heap leak: a copy "for the status row", never deleted.
        const char *name = reinterpret_cast<const char *>(profile);
        char *copy = new char[std::strlen(name) + 1];
        std::memcpy(copy, name, std::strlen(name) + 1);
        if (spool_cb != nullptr) *spool_cb = 0;
        if (spool != nullptr) *spool = nullptr;
        if (error != nullptr) *error = nullptr;
        *logon = made;
        *store = made->store();
        return S_OK;
    }

    STDMETHODIMP Shutdown(ULONG *) override {
        malloc_->Release();
        mapileak_provider_malloc_release(id_);
        mapileak_summary summary = {};
        mapileak_provider_shutdown(id_, &summary);
        return S_OK;
    }

protected:
    bool OnFinalRelease() override {
        mapileak_provider_released(id_);
        return true;
    }

private:
    uint64_t id_;
    LPMALLOC malloc_;
};

}  // namespace

extern "C" __declspec(dllexport) HRESULT __cdecl MSProviderInit(
    HINSTANCE, LPMALLOC malloc, LPALLOCATEBUFFER allocate_buffer, LPALLOCATEMORE allocate_more,
    LPFREEBUFFER free_buffer, ULONG, ULONG, ULONG *provider_version, LPMSPROVIDER *provider) {
    // MAPI's own buffer functions, wrapped: no cast between what MAPI
    // hands the provider and mapileak.
    mapileak_buffers_wrap(allocate_buffer, allocate_more, free_buffer);
    malloc->AddRef();
    uint64_t id = mapileak_provider_init(MAPILEAK_MESSAGE_STORE, "Sample Store", 1);
    *provider_version = CURRENT_SPI_VERSION;
    *provider = new MSProvider(id, malloc);
    return S_OK;
}

// For the host's unload test: a thread of the process holds one of
// mapileak's locks for good when the DLL is unloaded.
extern "C" int mapileak__test_hold_lock(const char *which);

extern "C" __declspec(dllexport) int __cdecl HoldMapileakLock(const char *which) {
    return mapileak__test_hold_lock(which);
}

BOOL WINAPI DllMain(HINSTANCE, DWORD reason, LPVOID) {
    // The last chance to report what is still alive: the DLL is unloading.
    if (reason == DLL_PROCESS_DETACH) mapileak_process_exit();
    return TRUE;
}
