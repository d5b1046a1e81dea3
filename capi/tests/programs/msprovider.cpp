// A C++ message-store provider DLL written against the MAPI SDK headers, as
// Outlook's providers are, with the habits of real third-party providers:
// every class counts its own references and deletes itself at 0; the
// logon frees its state in its destructor, which runs at MAPI's Release of
// the logon after Logoff; buffers MAPI allocated itself (a profile
// section's properties) are freed with the lpFreeBuffer the provider got;
// a table keeps its properties in a MAPI utility object (CreateIProp's
// IPropData) built on the provider's allocators; QueryRows hands out a row
// set with a property array per row; no entry point enters a scope. It
// exports MSProviderInit with MAPI's signature and implements IMSProvider,
// IMSLogon, IMsgStore, IMAPIFolder and IMAPITable (what the host calls;
// the rest returns MAPI_E_NO_SUPPORT). Built as msprovider.dll by
// scripts/test-windows.sh; loaded and driven by mapihost.cpp.
//
// Its debug instrumentation is the lines marked `// mapileak` (a test
// counts them), beyond the include and DllMain's mapileak_process_exit.
//
// Five bugs are planted, unless the profile is named "clean":
//  1. Folder::GetContentsTable caches the table with an AddRef nothing
//     releases: the table leaks, its IPropData's buffers with it;
//  2. MsgStore::GetProps allocates a scratch MAPI buffer it never frees;
//  3. MsgStore::OpenEntry keeps the folder it returns without an AddRef,
//     and StoreLogoff releases it after the client's Release deleted it:
//     an over-release through a stale pointer (a crash without mapileak);
//  4. MSProvider::Logon copies the profile name with new[] and nothing
//     deletes it: a C++ heap leak;
//  5. the logon's destructor frees its new[] copy of the profile name with
//     free(): an alloc-dealloc-mismatch.
#define INITGUID
#define USES_IID_IMAPITable
#define USES_IID_IMAPIProp
#define USES_IID_IMAPIPropData
#define USES_IID_IMAPIContainer
#define USES_IID_IMAPIFolder
#define USES_IID_IMsgStore
#define USES_IID_IMSLogon
#define USES_IID_IMSProvider
#include <windows.h>

#include <mapispi.h>
#include <mapiutil.h>
#include <mapix.h>

#include <cstdlib>
#include <cstring>

#define MAPILEAK_REPLACE_MALLOC  // mapileak
#include "mapileak.hpp"

MAPILEAK_REPLACE_OPERATOR_NEW  // mapileak

namespace {

// The buffer functions the provider uses: MAPI's, through mapileak.
LPALLOCATEBUFFER g_allocate = nullptr;
LPALLOCATEMORE g_more = nullptr;
LPFREEBUFFER g_free = nullptr;
// The planted bugs, off for the profile "clean".
bool g_bugs = true;

// MAPI's CreateIProp (mapiutil.h), found in mapi32.dll by its plain or its
// stdcall name.
using CreateIPropFn = SCODE(STDMETHODCALLTYPE *)(LPCIID, LPALLOCATEBUFFER, LPALLOCATEMORE,
                                                  LPFREEBUFFER, LPVOID, LPPROPDATA *);
CreateIPropFn CreateIPropFunction() {
    HMODULE mapi = GetModuleHandleA("mapi32.dll");
    if (mapi == nullptr) return nullptr;
    FARPROC f = GetProcAddress(mapi, "CreateIProp");
    if (f == nullptr) f = GetProcAddress(mapi, "CreateIProp@24");
    return reinterpret_cast<CreateIPropFn>(reinterpret_cast<void (*)()>(f));
}

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

// IUnknown as the provider's classes share it: destroyed at its last
// Release unless something else owns its memory.
template <class Interface>
class Unknown : public Interface {
public:
    Unknown(const char *kind, const char *label, REFIID iid, uint64_t owner = 0) : iid_(iid) {
        count_.Init(kind, label, owner);  // mapileak
    }
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
    STDMETHODIMP_(ULONG) AddRef() override { return count_.AddRef(); }  // mapileak
    STDMETHODIMP_(ULONG) Release() override {
        bool last = false;
        ULONG n = count_.Release(last);  // mapileak
        if (last && OnFinalRelease()) delete this;
        return n;
    }

protected:
    // Runs at the count's 0; true when the object frees itself.
    virtual bool OnFinalRelease() { return true; }

    mapileak::RefCount count_;  // mapileak

private:
    IID iid_;
};

class Table : public Unknown<TableMethods> {
public:
    explicit Table(const char *label) : Unknown("IMAPITable", label, IID_IMAPITable) {
        // The table's properties, in a utility object on the provider's
        // allocators: its buffers are the table's.
        mapileak::BufferOwner owner(count_);  // mapileak
        CreateIPropFn create = CreateIPropFunction();
        if (create != nullptr &&
            SUCCEEDED(create(&IID_IMAPIPropData, g_allocate, g_more, g_free, nullptr, &props_))) {
            SPropValue name;
            name.ulPropTag = PR_DISPLAY_NAME_A;
            name.Value.lpszA = const_cast<LPSTR>(label);
            props_->SetProps(1, &name, nullptr);
        }
    }
    ~Table() override {
        if (props_ != nullptr) props_->Release();
    }
    bool HasProps() const { return props_ != nullptr; }

    STDMETHODIMP GetRowCount(ULONG, ULONG *count) override {
        *count = 2;
        return S_OK;
    }
    // Two rows, each with its own property array, as FreeProws expects.
    __attribute__((noinline)) STDMETHODIMP QueryRows(LONG, ULONG, LPSRowSet *rows) override {
        LPSRowSet set = nullptr;
        if (FAILED(g_allocate(CbNewSRowSet(2), reinterpret_cast<void **>(&set))))
            return MAPI_E_NOT_ENOUGH_MEMORY;
        set->cRows = 2;
        for (ULONG i = 0; i < 2; ++i) {
            set->aRow[i].ulAdrEntryPad = 0;
            set->aRow[i].cValues = 1;
            g_allocate(sizeof(SPropValue), reinterpret_cast<void **>(&set->aRow[i].lpProps));
            set->aRow[i].lpProps->ulPropTag = PR_ROWID;
            set->aRow[i].lpProps->Value.l = static_cast<LONG>(i);
        }
        mapileak_rows_to_caller(set);  // mapileak
        *rows = set;
        return S_OK;
    }

private:
    LPPROPDATA props_ = nullptr;
};

class Folder : public Unknown<FolderMethods> {
public:
    explicit Folder(const char *label) : Unknown("IMAPIFolder", label, IID_IMAPIFolder) {}

    __attribute__((noinline)) STDMETHODIMP GetContentsTable(ULONG, LPMAPITABLE *table) override {
        Table *contents = new Table("contents of Inbox");
        if (g_bugs) {
            // Bug 1: a cache "for the next call" that nothing empties.
            contents->AddRef();
            cached_ = contents;
        }
        *table = contents;
        return S_OK;
    }

private:
    Table *cached_ = nullptr;
};

class MsgStore : public Unknown<StoreMethods> {
public:
    explicit MsgStore(LPMAPISUP support)
        : Unknown("IMsgStore", "Sample Store", IID_IMsgStore), support_(support) {}

    __attribute__((noinline)) STDMETHODIMP OpenEntry(ULONG cb, LPENTRYID, LPCIID, ULONG,
                                                     ULONG *type, LPUNKNOWN *object) override {
        if (cb != 0) return MAPI_E_NOT_FOUND;  // only the root folder
        Folder *inbox = new Folder("Inbox");
        // Bug 3: kept for StoreLogoff, without a reference of its own.
        if (g_bugs) inbox_ = inbox;
        *type = MAPI_FOLDER;
        *object = static_cast<IMAPIFolder *>(inbox);
        return S_OK;
    }

    __attribute__((noinline)) STDMETHODIMP GetProps(LPSPropTagArray, ULONG, ULONG *count,
                                                    LPSPropValue *props) override {
        static const char kName[] = "Sample Store";
        LPSPropValue value = nullptr;
        if (FAILED(g_allocate(sizeof(SPropValue), reinterpret_cast<void **>(&value))))
            return MAPI_E_NOT_ENOUGH_MEMORY;
        char *name = nullptr;
        if (FAILED(g_more(sizeof kName, value, reinterpret_cast<void **>(&name)))) {
            g_free(value);
            return MAPI_E_NOT_ENOUGH_MEMORY;
        }
        std::memcpy(name, kName, sizeof kName);
        value->ulPropTag = PR_DISPLAY_NAME_A;
        value->Value.lpszA = name;
        if (g_bugs) {
            // Bug 2: a scratch buffer for a conversion never done.
            void *scratch = nullptr;
            g_allocate(128, &scratch);
        }
        *count = 1;
        *props = value;
        mapileak_buffer_to_caller(value);  // mapileak
        return S_OK;
    }

    __attribute__((noinline)) STDMETHODIMP StoreLogoff(ULONG *flags) override {
        mapileak_store_logoff(0, *flags);  // mapileak
        if (inbox_ != nullptr) {
            inbox_->Release();  // bug 3: the client's Release deleted it
            inbox_ = nullptr;
        }
        TransportsOff(flags);
        return S_OK;
    }

protected:
    // The store's final Release: StoreLogoffTransports(LOGOFF_ABORT) if the
    // client never called StoreLogoff, then the support object goes (MAPI
    // then calls IMSLogon::Logoff). The store is part of the logon's memory.
    bool OnFinalRelease() override {
        if (!transports_off_) {
            ULONG flags = LOGOFF_ABORT;
            TransportsOff(&flags);
        }
        LPMAPISUP support = support_;
        support_ = nullptr;
        if (support != nullptr) support->Release();
        return false;
    }

private:
    void TransportsOff(ULONG *flags) {
        if (transports_off_) return;
        transports_off_ = true;
        support_->StoreLogoffTransports(flags);
    }

    LPMAPISUP support_;
    Folder *inbox_ = nullptr;
    bool transports_off_ = false;
};

class MSLogon : public Unknown<LogonMethods> {
public:
    MSLogon(uint64_t session, LPMAPISUP support, const char *profile)
        : Unknown("IMSLogon", "Sample Store logon", IID_IMSLogon),
          session_(session),
          store_(support) {
        // State the logon keeps until MAPI releases it.
        status_ = new Table("status table");
        profile_ = new char[std::strlen(profile) + 1];
        std::strcpy(profile_, profile);
        // The profile section's properties: MAPI's buffer, freed with the
        // provider's lpFreeBuffer.
        LPPROFSECT section = nullptr;
        if (SUCCEEDED(support->OpenProfileSection(nullptr, 0, &section))) {
            ULONG count = 0;
            LPSPropValue props = nullptr;
            if (SUCCEEDED(section->GetProps(nullptr, 0, &count, &props))) g_free(props);
            section->Release();
        }
    }
    // MAPI's Release of the logon, after Logoff: the logon's state goes.
    ~MSLogon() override {
        status_->Release();
        if (g_bugs)
            free(profile_);  // bug 5: a new[] block freed with free()
        else
            delete[] profile_;
    }

    MsgStore *store() { return &store_; }
    bool Usable() const { return status_->HasProps(); }

    __attribute__((noinline)) STDMETHODIMP Logoff(ULONG *) override {
        mapileak_ms_logoff(session_, nullptr);  // mapileak
        return S_OK;
    }

private:
    uint64_t session_;
    // Part of the logon, as in many providers: one block, freed with it.
    MsgStore store_;
    Table *status_;
    char *profile_;
};

class MSProvider : public Unknown<ProviderMethods> {
public:
    MSProvider(uint64_t id, LPMALLOC malloc)
        : Unknown("IMSProvider", "Sample Store", IID_IMSProvider, id), id_(id), malloc_(malloc) {}

    __attribute__((noinline)) STDMETHODIMP Logon(LPMAPISUP support, ULONG, LPTSTR profile, ULONG,
                                                 LPENTRYID, ULONG, LPCIID, ULONG *spool_cb,
                                                 LPBYTE *spool, LPMAPIERROR *error,
                                                 LPMSLOGON *logon, LPMDB *store) override {
        const char *name = reinterpret_cast<const char *>(profile);
        g_bugs = std::strcmp(name, "clean") != 0;
        uint64_t session = mapileak_provider_logon(id_, name);  // mapileak
        support = mapileak::WrapSupport(support, session);       // mapileak
        support->AddRef();
        MSLogon *made = new MSLogon(session, support, name);
        if (!made->Usable()) return MAPI_E_CALL_FAILED;  // (CreateIProp missing)
        if (g_bugs) {
            // Bug 4: a copy "for the status row", never deleted.
            char *copy = new char[std::strlen(name) + 1];
            std::memcpy(copy, name, std::strlen(name) + 1);
        }
        if (spool_cb != nullptr) *spool_cb = 0;
        if (spool != nullptr) *spool = nullptr;
        if (error != nullptr) *error = nullptr;
        *logon = made;
        *store = made->store();
        return S_OK;
    }

    STDMETHODIMP Shutdown(ULONG *) override {
        malloc_->Release();
        mapileak_provider_shutdown(id_, nullptr);  // mapileak
        return S_OK;
    }

private:
    uint64_t id_;
    LPMALLOC malloc_;
};

}  // namespace

extern "C" __declspec(dllexport) HRESULT __cdecl MSProviderInit(
    HINSTANCE, LPMALLOC malloc, LPALLOCATEBUFFER allocate_buffer, LPALLOCATEMORE allocate_more,
    LPFREEBUFFER free_buffer, ULONG, ULONG, ULONG *provider_version, LPMSPROVIDER *provider) {
    mapileak_buffers_wrap(allocate_buffer, allocate_more, free_buffer);  // mapileak
    g_allocate = mapileak_allocate_buffer;                               // mapileak
    g_more = mapileak_allocate_more;                                     // mapileak
    g_free = mapileak_free_buffer;                                       // mapileak
    uint64_t id = mapileak_provider_init(MAPILEAK_MESSAGE_STORE, "Sample Store", 0);  // mapileak
    malloc = mapileak::WrapMalloc(malloc, id);                                        // mapileak
    malloc->AddRef();
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
