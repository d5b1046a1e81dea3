// A host that does with a message-store provider DLL what MAPI does:
// LoadLibrary, MSProviderInit with mapi32.dll's own MAPIAllocateBuffer,
// MAPIAllocateMore, MAPIFreeBuffer and IMalloc, a support object of its
// own, Logon, a few client calls, StoreLogoff, the store's Release (whose
// release of the support object makes the host call IMSLogon::Logoff and
// release the logon), Shutdown, the provider's Release, FreeLibrary.
//
// Usage: mapihost PROVIDER.DLL [PROFILE [LOCK]]. Prints "mapihost ok ..."
// and exits 0, or names the step that failed and exits 1. The provider's
// reports go to MAPILEAK_DIR. PROFILE is the profile name Logon gets
// ("Test profile" by default). With LOCK, a thread holds that lock of
// mapileak's (the DLL's HoldMapileakLock) when the DLL is unloaded, and to
// the end: the process-end report at DLL_PROCESS_DETACH must not hang on
// it.
#define INITGUID
#define USES_IID_IMAPIFolder
#include <windows.h>

#include <mapispi.h>
#include <mapiutil.h>
#include <mapix.h>

#include <cstdio>

namespace {

// A function GetProcAddress found, as its type (through void (*)(), the
// generic function pointer).
template <class F>
F Proc(HMODULE module, const char *name) {
    return reinterpret_cast<F>(reinterpret_cast<void (*)()>(GetProcAddress(module, name)));
}

int Fail(const char *step, HRESULT hr = 0) {
    std::printf("mapihost failed: %s (0x%08lx)\n", step, static_cast<unsigned long>(hr));
    return 1;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#define NOT_SUPPORTED \
    { return MAPI_E_NO_SUPPORT; }
struct SupportMethods : public IMAPISupport {
    MAPI_IMAPISUPPORT_METHODS1(NOT_SUPPORTED)
    MAPI_IMAPISUPPORT_METHODS2(NOT_SUPPORTED)
    MAPI_IMAPISUPPORT_METHODS3(NOT_SUPPORTED)
};
struct ProfSectMethods : public IProfSect {
    MAPI_IMAPIPROP_METHODS(NOT_SUPPORTED)
};
#pragma GCC diagnostic pop

// mapi32.dll's own buffer functions.
LPALLOCATEBUFFER g_allocate_buffer = nullptr;
LPFREEBUFFER g_free_buffer = nullptr;

// A profile section: GetProps returns a property array MAPI allocated
// itself (the provider frees it with the lpFreeBuffer it got at init).
class ProfSect final : public ProfSectMethods {
public:
    STDMETHODIMP QueryInterface(REFIID, LPVOID *ppv) override {
        *ppv = nullptr;
        return MAPI_E_INTERFACE_NOT_SUPPORTED;
    }
    STDMETHODIMP_(ULONG) AddRef() override { return ++count_; }
    STDMETHODIMP_(ULONG) Release() override {
        ULONG n = --count_;
        if (n == 0) delete this;
        return n;
    }
    STDMETHODIMP GetProps(LPSPropTagArray, ULONG, ULONG *count, LPSPropValue *props) override {
        LPSPropValue value = nullptr;
        if (FAILED(g_allocate_buffer(sizeof(SPropValue), reinterpret_cast<LPVOID *>(&value))))
            return MAPI_E_NOT_ENOUGH_MEMORY;
        value->ulPropTag = PR_PROFILE_NAME_A;
        value->Value.lpszA = const_cast<LPSTR>("Test profile");
        ++props_handed;
        *count = 1;
        *props = value;
        return S_OK;
    }
    static int props_handed;

private:
    ULONG count_ = 1;
};
int ProfSect::props_handed = 0;

// The support object MAPI gives a logon: counted; at its final Release MAPI
// removes the logon's MAPIUIDs and status row, then calls IMSLogon::Logoff
// and releases the logon.
class Support : public SupportMethods {
public:
    LPMSLOGON logon = nullptr;
    int transports_off = 0;
    int logoffs = 0;

    STDMETHODIMP QueryInterface(REFIID, LPVOID *ppv) override {
        *ppv = nullptr;
        return MAPI_E_INTERFACE_NOT_SUPPORTED;
    }
    STDMETHODIMP_(ULONG) AddRef() override { return ++count_; }
    STDMETHODIMP_(ULONG) Release() override {
        ULONG n = --count_;
        if (n == 0 && logon != nullptr) {
            LPMSLOGON l = logon;
            logon = nullptr;
            ULONG flags = 0;
            l->Logoff(&flags);
            ++logoffs;
            l->Release();
        }
        return n;
    }
    STDMETHODIMP StoreLogoffTransports(ULONG *) override {
        ++transports_off;
        return S_OK;
    }
    STDMETHODIMP OpenProfileSection(LPMAPIUID, ULONG, LPPROFSECT *section) override {
        *section = new ProfSect();
        return S_OK;
    }

private:
    ULONG count_ = 1;  // MAPI's own
};

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) return Fail("usage: mapihost PROVIDER.DLL");

    HMODULE mapi = LoadLibraryA("mapi32.dll");
    if (mapi == nullptr) return Fail("LoadLibrary(mapi32.dll)");
    auto allocate_buffer = Proc<LPALLOCATEBUFFER>(mapi, "MAPIAllocateBuffer");
    auto allocate_more = Proc<LPALLOCATEMORE>(mapi, "MAPIAllocateMore");
    auto free_buffer = Proc<LPFREEBUFFER>(mapi, "MAPIFreeBuffer");
    // (Exported under its 32-bit stdcall name only, by Windows and Wine alike.)
    auto get_malloc = Proc<LPMALLOC(WINAPI *)()>(mapi, "MAPIGetDefaultMalloc@0");
    if (!allocate_buffer || !allocate_more || !free_buffer || !get_malloc)
        return Fail("mapi32.dll's buffer functions");
    g_allocate_buffer = allocate_buffer;
    g_free_buffer = free_buffer;
    LPMALLOC malloc = get_malloc();
    if (malloc == nullptr) return Fail("MAPIGetDefaultMalloc");

    HMODULE dll = LoadLibraryA(argv[1]);
    if (dll == nullptr) return Fail("LoadLibrary(provider)", GetLastError());
    auto init = Proc<MSPROVIDERINIT *>(dll, "MSProviderInit");
    if (init == nullptr) return Fail("GetProcAddress(MSProviderInit)");

    ULONG version = 0;
    LPMSPROVIDER provider = nullptr;
    HRESULT hr = init(dll, malloc, allocate_buffer, allocate_more, free_buffer, 0,
                      CURRENT_SPI_VERSION, &version, &provider);
    if (FAILED(hr) || provider == nullptr) return Fail("MSProviderInit", hr);

    Support support;
    ULONG spool_cb = 0;
    LPBYTE spool = nullptr;
    LPMAPIERROR error = nullptr;
    LPMSLOGON logon = nullptr;
    LPMDB store = nullptr;
    const char *profile = argc > 2 ? argv[2] : "Test profile";
    hr = provider->Logon(&support, 0, reinterpret_cast<LPTSTR>(const_cast<char *>(profile)), 0,
                         nullptr, 0, nullptr,
                         &spool_cb, &spool, &error, &logon, &store);
    if (FAILED(hr) || logon == nullptr || store == nullptr) return Fail("IMSProvider::Logon", hr);
    support.logon = logon;
    support.Release();  // MAPI's own reference: the logon holds the support object now

    // A client's calls: the root folder, its contents table, the store's props.
    ULONG type = 0;
    LPUNKNOWN unknown = nullptr;
    hr = store->OpenEntry(0, nullptr, nullptr, 0, &type, &unknown);
    if (FAILED(hr) || type != MAPI_FOLDER) return Fail("IMsgStore::OpenEntry", hr);
    LPMAPIFOLDER folder = nullptr;
    hr = unknown->QueryInterface(IID_IMAPIFolder, reinterpret_cast<LPVOID *>(&folder));
    unknown->Release();
    if (FAILED(hr)) return Fail("QueryInterface(IID_IMAPIFolder)", hr);
    LPMAPITABLE table = nullptr;
    hr = folder->GetContentsTable(0, &table);
    if (FAILED(hr)) return Fail("IMAPIFolder::GetContentsTable", hr);
    ULONG rows = 0;
    hr = table->GetRowCount(0, &rows);
    if (FAILED(hr) || rows != 2) return Fail("IMAPITable::GetRowCount", hr);
    LPSRowSet set = nullptr;
    hr = table->QueryRows(2, 0, &set);
    if (FAILED(hr) || set == nullptr || set->cRows != 2) return Fail("IMAPITable::QueryRows", hr);
    // FreeProws: each row's property array, then the set.
    for (ULONG i = 0; i < set->cRows; ++i) free_buffer(set->aRow[i].lpProps);
    free_buffer(set);
    table->Release();
    folder->Release();
    ULONG count = 0;
    LPSPropValue props = nullptr;
    hr = store->GetProps(nullptr, 0, &count, &props);
    if (FAILED(hr) || count != 1 || props->ulPropTag != PR_DISPLAY_NAME_A)
        return Fail("IMsgStore::GetProps", hr);
    free_buffer(props);  // the whole chain, the name included

    // Shutting down, in MAPI's order.
    ULONG flags = LOGOFF_ORDERLY;
    hr = store->StoreLogoff(&flags);
    if (FAILED(hr)) return Fail("IMsgStore::StoreLogoff", hr);
    store->Release();  // releases the support object: Logoff, Release(logon)
    if (support.logoffs != 1 || support.transports_off != 1)
        return Fail("the store's Release: StoreLogoffTransports once, then Logoff");
    ULONG shutdown_flags = 0;
    hr = provider->Shutdown(&shutdown_flags);
    if (FAILED(hr)) return Fail("IMSProvider::Shutdown", hr);
    provider->Release();
    if (ProfSect::props_handed != 1) return Fail("the profile section's GetProps");
    if (argc > 3) {
        auto hold = Proc<int(__cdecl *)(const char *)>(dll, "HoldMapileakLock");
        if (hold == nullptr || hold(argv[3]) != 0) return Fail("HoldMapileakLock");
    }
    if (!FreeLibrary(dll)) return Fail("FreeLibrary(provider)", GetLastError());
    malloc->Release();

    std::printf("mapihost ok version=%lx\n", static_cast<unsigned long>(version));
    return 0;
}
