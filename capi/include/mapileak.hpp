// mapileak.hpp: RAII classes over mapileak.h for C++ providers.
//
//   class ContentsTable : public IMAPITable {
//       mapileak::RefCount count_{"IMAPITable", "contents of Inbox"};
//   public:
//       ULONG STDMETHODCALLTYPE AddRef() override { return count_.AddRef(); }
//       // delete this at the count's 0, and only then: one Release too
//       // many is an over-release finding, never a second delete.
//       ULONG STDMETHODCALLTYPE Release() override { return count_.Release(this); }
//   };
//
//   // Only with several logons alive at once: outside any scope, what is
//   // made belongs to the one logon that has not logged off.
//   mapileak::Scope scope(session);
//
//   MAPILEAK_REPLACE_OPERATOR_NEW  // once, in one .cpp file: new/delete tracked
//
// With MAPI's headers included first: mapileak::WrapSupport and
// mapileak::WrapMalloc record what a provider does with the support object
// and lpMalloc (see below).
#ifndef MAPILEAK_HPP
#define MAPILEAK_HPP

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

#include "mapileak.h"

namespace mapileak {

// Makes a session (or provider) this thread's current one while it lives.
class Scope {
public:
    explicit Scope(uint64_t id) : entered_(mapileak_enter(id) == 0) {}
    ~Scope() {
        if (entered_) mapileak_leave();
    }
    Scope(const Scope &) = delete;
    Scope &operator=(const Scope &) = delete;

private:
    bool entered_;
};

// A COM reference count that mapileak tracks; starts at 1. If mapileak
// cannot track it (an unknown owner), it still counts, untracked.
//
// Kind and label are given at construction, or later with Init (a member
// default-constructed, described in the class's constructor). `owner` is a
// session or provider id; 0 is the thread's scope, or outside any scope
// the process's one open logon.
//
// When the object is deleted, its memory (from MAPILEAK_REPLACE_OPERATOR_NEW)
// is kept a while, intact: a Release through a stale pointer then reaches
// this dead count, returns 0 and is an over-release finding.
class RefCount {
public:
    RefCount() = default;
    RefCount(const char *kind, const char *label, uint64_t owner = 0) { Init(kind, label, owner); }
    ~RefCount() { mapileak_object_destroy(handle_, this); }
    RefCount(const RefCount &) = delete;
    RefCount &operator=(const RefCount &) = delete;

    // Tracks the count as an object of interface `kind`, named `label`
    // (once; later calls are ignored). AddRefs taken before are kept.
    void Init(const char *kind, const char *label, uint64_t owner = 0) {
        if (handle_ != nullptr) return;
        handle_ = mapileak_object_new(owner, kind, label);
        tag_ = mapileak_object_memory_tag(handle_);
        if (handle_ == nullptr) return;
        for (uint32_t n = untracked_.load(); n > 1; --n) mapileak_object_add_ref(handle_);
    }

    uint32_t AddRef() {
        return handle_ ? mapileak_object_add_ref(handle_) : ++untracked_;
    }
    // The new count. Prefer Release(this), which also deletes.
    uint32_t Release() {
        int last = 0;
        return ReleaseRaw(&last);
    }
    // The new count, and `last`: whether this Release took the count from
    // 1 to 0 (the object is destroyed then, and only then; one Release too
    // many gives false). For a Release that does more than delete.
    uint32_t Release(bool &last) {
        int raw = 0;
        uint32_t n = ReleaseRaw(&raw);
        last = raw != 0;
        return n;
    }
    // IUnknown::Release for a class that deletes itself at 0: deletes
    // `self` exactly when this Release took the count from 1 to 0. One
    // Release too many (a stale pointer) deletes nothing.
    // (`self` is the class whose Release this is, as `delete this` in it
    // would be: MAPI's interfaces have no virtual destructor.)
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdelete-non-virtual-dtor"
#endif
    template <class T>
    uint32_t Release(T *self) {
        int last = 0;
        uint32_t n = ReleaseRaw(&last);
        if (last) delete self;
        return n;
    }
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
    uint32_t Count() const { return handle_ ? mapileak_object_count(handle_) : untracked_.load(); }
    // Its id in reports (0 when untracked).
    uint64_t Id() const { return mapileak_object_id(handle_); }
    // It was opened from `parent` (a message from its folder).
    void OpenedFrom(const RefCount &parent) const {
        mapileak_object_set_opened_from(handle_, parent.handle_);
    }
    // It keeps a reference on `other` / let go of one.
    void Hold(const RefCount &other) const { mapileak_object_hold(handle_, other.handle_); }
    void ReleaseHold(const RefCount &other) const {
        mapileak_object_release_hold(handle_, other.handle_);
    }
    const mapileak_object *handle() const { return handle_; }

private:
    uint32_t ReleaseRaw(int *last) {
        if (handle_) return mapileak_object_release_final(handle_, last);
        uint32_t n = untracked_.load();
        while (n != 0 && !untracked_.compare_exchange_weak(n, n - 1)) {
        }
        *last = n == 1;
        return n == 0 ? 0 : n - 1;
    }

    mapileak_object *handle_ = nullptr;
    // In the object's own memory: its heap block is the object's.
    volatile uint64_t tag_ = 0;
    std::atomic<uint32_t> untracked_{1};
};

#if defined(MAPISPI_H)
// ---- MAPI's objects, wrapped once (MAPI's headers come first) -------------

namespace detail {
// Whether `iid` is the OLE GUID {data1-0000-0000-C000-000000000046}
// (IUnknown: 0, IMalloc: 2, IMAPISupport: 0x0002030F), without linking
// the IID definitions.
inline bool IsOleGuid(REFIID iid, unsigned long data1) {
    static const unsigned char tail[8] = {0xC0, 0, 0, 0, 0, 0, 0, 0x46};
    return iid.Data1 == data1 && iid.Data2 == 0 && iid.Data3 == 0 &&
           std::memcmp(iid.Data4, tail, sizeof tail) == 0;
}
}  // namespace detail
//
// Who owns which reference (MAPI's rules): the support object a Logon
// receives is MAPI's; a logon that keeps it AddRefs it and owes one
// Release, by its Logoff (a message store: at the store's final Release,
// which makes MAPI call Logoff). The lpMalloc *ProviderInit receives is
// MAPI's too; a provider that keeps it AddRefs it and owes one Release, by
// its Shutdown. Each wrapper forwards every call to the object it wraps
// and records these references and calls, so no call site needs one.

// IMAPISupport as the provider keeps it: in Logon,
//     support_ = mapileak::WrapSupport(lpMAPISup, session);
//     support_->AddRef();
// and use support_ where the raw pointer was. Records AddRef and Release,
// Subscribe and Unsubscribe, SetProviderUID, ModifyStatusRow, MakeInvalid
// and StoreLogoffTransports against `session`. The wrapper holds no
// reference of its own; its few bytes (not the provider's heap) stay for
// the process's life, so a call through a kept pointer is never a crash.
class SupportWrapper final : public IMAPISupport {
public:
    SupportWrapper(LPMAPISUP real, uint64_t session) : real_(real), session_(session) {}

    STDMETHODIMP QueryInterface(REFIID riid, LPVOID *ppv) override {
        // IUnknown and IMAPISupport (IID_IMAPISup): this wrapper.
        if (ppv != nullptr && (detail::IsOleGuid(riid, 0) || detail::IsOleGuid(riid, 0x0002030F))) {
            *ppv = static_cast<IMAPISupport *>(this);
            AddRef();
            return S_OK;
        }
        return real_->QueryInterface(riid, ppv);
    }
    STDMETHODIMP_(ULONG) AddRef() override {
        ULONG n = real_->AddRef();
        mapileak_support_add_ref(session_);
        return n;
    }
    STDMETHODIMP_(ULONG) Release() override {
        // Recorded first: MAPI's handling of the final Release may call the
        // logon's Logoff.
        mapileak_support_release(session_);
        return real_->Release();
    }
    STDMETHODIMP GetLastError(HRESULT hResult, ULONG ulFlags, LPMAPIERROR *lppMAPIError) override {
        return real_->GetLastError(hResult, ulFlags, lppMAPIError);
    }
    STDMETHODIMP GetMemAllocRoutines(LPALLOCATEBUFFER *lpAllocateBuffer,
                                     LPALLOCATEMORE *lpAllocateMore,
                                     LPFREEBUFFER *lpFreeBuffer) override {
        return real_->GetMemAllocRoutines(lpAllocateBuffer, lpAllocateMore, lpFreeBuffer);
    }
    STDMETHODIMP Subscribe(LPNOTIFKEY lpKey, ULONG ulEventMask, ULONG ulFlags,
                           LPMAPIADVISESINK lpAdviseSink, ULONG *lpulConnection) override {
        HRESULT hr = real_->Subscribe(lpKey, ulEventMask, ulFlags, lpAdviseSink, lpulConnection);
        if (SUCCEEDED(hr) && lpulConnection != nullptr)
            mapileak_subscribe(session_, static_cast<uint32_t>(*lpulConnection));
        return hr;
    }
    STDMETHODIMP Unsubscribe(ULONG ulConnection) override {
        HRESULT hr = real_->Unsubscribe(ulConnection);
        if (SUCCEEDED(hr)) mapileak_unsubscribe(session_, static_cast<uint32_t>(ulConnection));
        return hr;
    }
    STDMETHODIMP Notify(LPNOTIFKEY lpKey, ULONG cNotification, LPNOTIFICATION lpNotifications,
                        ULONG *lpulFlags) override {
        return real_->Notify(lpKey, cNotification, lpNotifications, lpulFlags);
    }
    STDMETHODIMP ModifyStatusRow(ULONG cValues, LPSPropValue lpColumnVals, ULONG ulFlags) override {
        HRESULT hr = real_->ModifyStatusRow(cValues, lpColumnVals, ulFlags);
        if (SUCCEEDED(hr)) mapileak_modify_status_row(session_);
        return hr;
    }
    STDMETHODIMP OpenProfileSection(LPMAPIUID lpUid, ULONG ulFlags,
                                    LPPROFSECT *lppProfileObj) override {
        return real_->OpenProfileSection(lpUid, ulFlags, lppProfileObj);
    }
    STDMETHODIMP RegisterPreprocessor(LPMAPIUID lpMuid, LPTSTR lpszAdrType, LPTSTR lpszDLLName,
                                      LPSTR lpszPreprocess, LPSTR lpszRemovePreprocessInfo,
                                      ULONG ulFlags) override {
        return real_->RegisterPreprocessor(lpMuid, lpszAdrType, lpszDLLName, lpszPreprocess,
                                           lpszRemovePreprocessInfo, ulFlags);
    }
    STDMETHODIMP NewUID(LPMAPIUID lpMuid) override { return real_->NewUID(lpMuid); }
    STDMETHODIMP MakeInvalid(ULONG ulFlags, LPVOID lpObject, ULONG ulRefCount,
                             ULONG cMethods) override {
        mapileak_make_invalid(session_);
        return real_->MakeInvalid(ulFlags, lpObject, ulRefCount, cMethods);
    }
    STDMETHODIMP SpoolerYield(ULONG ulFlags) override { return real_->SpoolerYield(ulFlags); }
    STDMETHODIMP SpoolerNotify(ULONG ulFlags, LPVOID lpvData) override {
        return real_->SpoolerNotify(ulFlags, lpvData);
    }
    STDMETHODIMP CreateOneOff(LPTSTR lpszName, LPTSTR lpszAdrType, LPTSTR lpszAddress,
                              ULONG ulFlags, ULONG *lpcbEntryID,
                              LPENTRYID *lppEntryID) override {
        return real_->CreateOneOff(lpszName, lpszAdrType, lpszAddress, ulFlags, lpcbEntryID,
                                   lppEntryID);
    }
    STDMETHODIMP SetProviderUID(LPMAPIUID lpProviderID, ULONG ulFlags) override {
        HRESULT hr = real_->SetProviderUID(lpProviderID, ulFlags);
        if (SUCCEEDED(hr)) mapileak_set_provider_uid(session_);
        return hr;
    }
    STDMETHODIMP CompareEntryIDs(ULONG cbEntry1, LPENTRYID lpEntry1, ULONG cbEntry2,
                                 LPENTRYID lpEntry2, ULONG ulCompareFlags,
                                 ULONG *lpulResult) override {
        return real_->CompareEntryIDs(cbEntry1, lpEntry1, cbEntry2, lpEntry2, ulCompareFlags,
                                      lpulResult);
    }
    STDMETHODIMP OpenTemplateID(ULONG cbTemplateID, LPENTRYID lpTemplateID,
                                ULONG ulTemplateFlags, LPMAPIPROP lpMAPIPropData,
                                LPCIID lpInterface, LPMAPIPROP *lppMAPIPropNew,
                                LPMAPIPROP lpMAPIPropSibling) override {
        return real_->OpenTemplateID(cbTemplateID, lpTemplateID, ulTemplateFlags, lpMAPIPropData,
                                     lpInterface, lppMAPIPropNew, lpMAPIPropSibling);
    }
    STDMETHODIMP OpenEntry(ULONG cbEntryID, LPENTRYID lpEntryID, LPCIID lpInterface,
                           ULONG ulOpenFlags, ULONG *lpulObjType, LPUNKNOWN *lppUnk) override {
        return real_->OpenEntry(cbEntryID, lpEntryID, lpInterface, ulOpenFlags, lpulObjType,
                                lppUnk);
    }
    STDMETHODIMP GetOneOffTable(ULONG ulFlags, LPMAPITABLE *lppTable) override {
        return real_->GetOneOffTable(ulFlags, lppTable);
    }
    STDMETHODIMP Address(ULONG *lpulUIParam, LPADRPARM lpAdrParms,
                         LPADRLIST *lppAdrList) override {
        return real_->Address(lpulUIParam, lpAdrParms, lppAdrList);
    }
    STDMETHODIMP Details(ULONG *lpulUIParam, LPFNDISMISS lpfnDismiss, LPVOID lpvDismissContext,
                         ULONG cbEntryID, LPENTRYID lpEntryID, LPFNBUTTON lpfButtonCallback,
                         LPVOID lpvButtonContext, LPTSTR lpszButtonText, ULONG ulFlags) override {
        return real_->Details(lpulUIParam, lpfnDismiss, lpvDismissContext, cbEntryID, lpEntryID,
                              lpfButtonCallback, lpvButtonContext, lpszButtonText, ulFlags);
    }
    STDMETHODIMP NewEntry(ULONG ulUIParam, ULONG ulFlags, ULONG cbEIDContainer,
                          LPENTRYID lpEIDContainer, ULONG cbEIDNewEntryTpl,
                          LPENTRYID lpEIDNewEntryTpl, ULONG *lpcbEIDNewEntry,
                          LPENTRYID *lppEIDNewEntry) override {
        return real_->NewEntry(ulUIParam, ulFlags, cbEIDContainer, lpEIDContainer,
                               cbEIDNewEntryTpl, lpEIDNewEntryTpl, lpcbEIDNewEntry,
                               lppEIDNewEntry);
    }
    STDMETHODIMP DoConfigPropsheet(ULONG ulUIParam, ULONG ulFlags, LPTSTR lpszTitle,
                                   LPMAPITABLE lpDisplayTable, LPMAPIPROP lpCOnfigData,
                                   ULONG ulTopPage) override {
        return real_->DoConfigPropsheet(ulUIParam, ulFlags, lpszTitle, lpDisplayTable,
                                        lpCOnfigData, ulTopPage);
    }
    STDMETHODIMP CopyMessages(LPCIID lpSrcInterface, LPVOID lpSrcFolder, LPENTRYLIST lpMsgList,
                              LPCIID lpDestInterface, LPVOID lpDestFolder, ULONG ulUIParam,
                              LPMAPIPROGRESS lpProgress, ULONG ulFlags) override {
        return real_->CopyMessages(lpSrcInterface, lpSrcFolder, lpMsgList, lpDestInterface,
                                   lpDestFolder, ulUIParam, lpProgress, ulFlags);
    }
    STDMETHODIMP CopyFolder(LPCIID lpSrcInterface, LPVOID lpSrcFolder, ULONG cbEntryID,
                            LPENTRYID lpEntryID, LPCIID lpDestInterface, LPVOID lpDestFolder,
                            LPTSTR lszNewFolderName, ULONG ulUIParam, LPMAPIPROGRESS lpProgress,
                            ULONG ulFlags) override {
        return real_->CopyFolder(lpSrcInterface, lpSrcFolder, cbEntryID, lpEntryID,
                                 lpDestInterface, lpDestFolder, lszNewFolderName, ulUIParam,
                                 lpProgress, ulFlags);
    }
    STDMETHODIMP DoCopyTo(LPCIID lpSrcInterface, LPVOID lpSrcObj, ULONG ciidExclude,
                          LPCIID rgiidExclude, LPSPropTagArray lpExcludeProps, ULONG ulUIParam,
                          LPMAPIPROGRESS lpProgress, LPCIID lpDestInterface, LPVOID lpDestObj,
                          ULONG ulFlags, LPSPropProblemArray *lppProblems) override {
        return real_->DoCopyTo(lpSrcInterface, lpSrcObj, ciidExclude, rgiidExclude,
                               lpExcludeProps, ulUIParam, lpProgress, lpDestInterface, lpDestObj,
                               ulFlags, lppProblems);
    }
    STDMETHODIMP DoCopyProps(LPCIID lpSrcInterface, LPVOID lpSrcObj,
                             LPSPropTagArray lpIncludeProps, ULONG ulUIParam,
                             LPMAPIPROGRESS lpProgress, LPCIID lpDestInterface, LPVOID lpDestObj,
                             ULONG ulFlags, LPSPropProblemArray *lppProblems) override {
        return real_->DoCopyProps(lpSrcInterface, lpSrcObj, lpIncludeProps, ulUIParam,
                                  lpProgress, lpDestInterface, lpDestObj, ulFlags, lppProblems);
    }
    STDMETHODIMP DoProgressDialog(ULONG ulUIParam, ULONG ulFlags,
                                  LPMAPIPROGRESS *lppProgress) override {
        return real_->DoProgressDialog(ulUIParam, ulFlags, lppProgress);
    }
    STDMETHODIMP ReadReceipt(ULONG ulFlags, LPMESSAGE lpReadMessage,
                             LPMESSAGE *lppEmptyMessage) override {
        return real_->ReadReceipt(ulFlags, lpReadMessage, lppEmptyMessage);
    }
    STDMETHODIMP PrepareSubmit(LPMESSAGE lpMessage, ULONG *lpulFlags) override {
        return real_->PrepareSubmit(lpMessage, lpulFlags);
    }
    STDMETHODIMP ExpandRecips(LPMESSAGE lpMessage, ULONG *lpulFlags) override {
        return real_->ExpandRecips(lpMessage, lpulFlags);
    }
    STDMETHODIMP UpdatePAB(ULONG ulFlags, LPMESSAGE lpMessage) override {
        return real_->UpdatePAB(ulFlags, lpMessage);
    }
    STDMETHODIMP DoSentMail(ULONG ulFlags, LPMESSAGE lpMessage) override {
        return real_->DoSentMail(ulFlags, lpMessage);
    }
    STDMETHODIMP OpenAddressBook(LPCIID lpInterface, ULONG ulFlags,
                                 LPADRBOOK *lppAdrBook) override {
        return real_->OpenAddressBook(lpInterface, ulFlags, lppAdrBook);
    }
    STDMETHODIMP Preprocess(ULONG ulFlags, ULONG cbEntryID, LPENTRYID lpEntryID) override {
        return real_->Preprocess(ulFlags, cbEntryID, lpEntryID);
    }
    STDMETHODIMP CompleteMsg(ULONG ulFlags, ULONG cbEntryID, LPENTRYID lpEntryID) override {
        return real_->CompleteMsg(ulFlags, cbEntryID, lpEntryID);
    }
    STDMETHODIMP StoreLogoffTransports(ULONG *lpulFlags) override {
        mapileak_store_logoff_transports(session_, lpulFlags != nullptr ? *lpulFlags : 0);
        return real_->StoreLogoffTransports(lpulFlags);
    }
    STDMETHODIMP StatusRecips(LPMESSAGE lpMessage, LPADRLIST lpRecipList) override {
        return real_->StatusRecips(lpMessage, lpRecipList);
    }
    STDMETHODIMP WrapStoreEntryID(ULONG cbOrigEntry, LPENTRYID lpOrigEntry,
                                  ULONG *lpcbWrappedEntry, LPENTRYID *lppWrappedEntry) override {
        return real_->WrapStoreEntryID(cbOrigEntry, lpOrigEntry, lpcbWrappedEntry,
                                       lppWrappedEntry);
    }
    STDMETHODIMP ModifyProfile(ULONG ulFlags) override { return real_->ModifyProfile(ulFlags); }
    STDMETHODIMP IStorageFromStream(LPUNKNOWN lpUnkIn, LPCIID lpInterface, ULONG ulFlags,
                                    LPSTORAGE *lppStorageOut) override {
        return real_->IStorageFromStream(lpUnkIn, lpInterface, ulFlags, lppStorageOut);
    }
    STDMETHODIMP GetSvcConfigSupportObj(ULONG ulFlags, LPMAPISUP *lppSvcSupport) override {
        return real_->GetSvcConfigSupportObj(ulFlags, lppSvcSupport);
    }

private:
    LPMAPISUP real_;
    uint64_t session_;
};

// lpMalloc as the provider keeps it: in *ProviderInit,
//     malloc_ = mapileak::WrapMalloc(lpMalloc, provider);
//     malloc_->AddRef();
// (with mapileak_provider_init(..., 0): the wrapper records the AddRef).
// Records AddRef and Release against `provider`; the rest is forwarded.
class MallocWrapper final : public IMalloc {
public:
    MallocWrapper(LPMALLOC real, uint64_t provider) : real_(real), provider_(provider) {}

    STDMETHODIMP QueryInterface(REFIID riid, void **ppv) override {
        // IUnknown and IMalloc: this wrapper.
        if (ppv != nullptr && (detail::IsOleGuid(riid, 0) || detail::IsOleGuid(riid, 2))) {
            *ppv = static_cast<IMalloc *>(this);
            AddRef();
            return S_OK;
        }
        return real_->QueryInterface(riid, ppv);
    }
    STDMETHODIMP_(ULONG) AddRef() override {
        ULONG n = real_->AddRef();
        mapileak_provider_malloc_add_ref(provider_);
        return n;
    }
    STDMETHODIMP_(ULONG) Release() override {
        mapileak_provider_malloc_release(provider_);
        return real_->Release();
    }
    STDMETHODIMP_(void *) Alloc(SIZE_T cb) override { return real_->Alloc(cb); }
    STDMETHODIMP_(void *) Realloc(void *pv, SIZE_T cb) override { return real_->Realloc(pv, cb); }
    STDMETHODIMP_(void) Free(void *pv) override { real_->Free(pv); }
    STDMETHODIMP_(SIZE_T) GetSize(void *pv) override { return real_->GetSize(pv); }
    STDMETHODIMP_(int) DidAlloc(void *pv) override { return real_->DidAlloc(pv); }
    STDMETHODIMP_(void) HeapMinimize() override { real_->HeapMinimize(); }

private:
    LPMALLOC real_;
    uint64_t provider_;
};

namespace detail {
// A wrapper's memory: the C runtime's, never the provider's tracked heap,
// and kept for the process's life.
template <class W, class R>
W *Wrap(R real, uint64_t id) {
    if (real == nullptr) return nullptr;
    // (Parenthesized: MAPILEAK_REPLACE_MALLOC's macro does not apply.)
    void *memory = (std::malloc)(sizeof(W));
    return memory != nullptr ? new (memory) W(real, id) : nullptr;
}
}  // namespace detail

// The support object Logon received, for `session` (see SupportWrapper).
// NULL only for NULL or when out of memory: keep `real` then.
inline LPMAPISUP WrapSupport(LPMAPISUP real, uint64_t session) {
    SupportWrapper *w = detail::Wrap<SupportWrapper>(real, session);
    return w != nullptr ? static_cast<LPMAPISUP>(w) : real;
}

// The lpMalloc *ProviderInit received, for `provider` (see MallocWrapper).
inline LPMALLOC WrapMalloc(LPMALLOC real, uint64_t provider) {
    MallocWrapper *w = detail::Wrap<MallocWrapper>(real, provider);
    return w != nullptr ? static_cast<LPMALLOC>(w) : real;
}
#endif  // MAPISPI_H

// While it lives, the MAPI buffers this thread allocates belong to the
// object `owner` counts (a MAPI utility object's buffers, built on the
// provider's allocators): listed under it when both leak.
class BufferOwner {
public:
    explicit BufferOwner(const RefCount &owner)
        : entered_(mapileak_buffer_owner_enter(owner.handle()) == 0) {}
    ~BufferOwner() {
        if (entered_) mapileak_buffer_owner_leave();
    }
    BufferOwner(const BufferOwner &) = delete;
    BufferOwner &operator=(const BufferOwner &) = delete;

private:
    bool entered_;
};

namespace detail {

// operator new's contract over mapileak_new: never NULL; the new-handler
// is called until it frees memory or gives up.
inline void *NewBlock(std::size_t size, std::size_t align, int array) {
    if (size == 0) size = 1;
    for (;;) {
        void *p = mapileak_new(size, align, array);
        if (p != nullptr) return p;
        std::new_handler handler = std::get_new_handler();
        if (handler == nullptr) {
#if defined(__cpp_exceptions) || defined(_CPPUNWIND)
            throw std::bad_alloc();
#else
            std::abort();
#endif
        }
        handler();
    }
}

inline void *NewBlockOrNull(std::size_t size, std::size_t align, int array) noexcept {
#if defined(__cpp_exceptions) || defined(_CPPUNWIND)
    try {
        return NewBlock(size, align, array);
    } catch (...) {
        return nullptr;
    }
#else
    if (size == 0) size = 1;
    return mapileak_new(size, align, array);
#endif
}

}  // namespace detail

}  // namespace mapileak

// MAPILEAK_REPLACE_OPERATOR_NEW: written once, at namespace scope, in one
// source file of the provider's debug build, it replaces the global
// operator new and delete (every form: plain, array, nothrow, sized,
// aligned) with mapileak_new and mapileak_delete: the C++ heap blocks a
// logon leaves alive are reported at its Logoff under their allocation
// sites, a block deleted by the form that does not pair with its new (or
// a malloc block deleted) is an alloc-dealloc-mismatch finding, and the
// memory of a deleted object holding a RefCount is kept a while (an
// over-release is then a finding, not a crash). Every new and delete of the
// module goes through these once linked: the replacement is module-wide.
#if defined(__cpp_aligned_new)
#define MAPILEAK_DETAIL_ALIGNED_NEW                                                           \
    void *operator new(std::size_t n, std::align_val_t a) {                                   \
        return ::mapileak::detail::NewBlock(n, static_cast<std::size_t>(a), 0);               \
    }                                                                                         \
    void *operator new[](std::size_t n, std::align_val_t a) {                                 \
        return ::mapileak::detail::NewBlock(n, static_cast<std::size_t>(a), 1);               \
    }                                                                                         \
    void *operator new(std::size_t n, std::align_val_t a, const std::nothrow_t &) noexcept {  \
        return ::mapileak::detail::NewBlockOrNull(n, static_cast<std::size_t>(a), 0);         \
    }                                                                                         \
    void *operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t &) noexcept { \
        return ::mapileak::detail::NewBlockOrNull(n, static_cast<std::size_t>(a), 1);         \
    }                                                                                         \
    void operator delete(void *p, std::align_val_t) noexcept { mapileak_delete(p, 0); }       \
    void operator delete[](void *p, std::align_val_t) noexcept { mapileak_delete(p, 1); }     \
    void operator delete(void *p, std::size_t, std::align_val_t) noexcept {                   \
        mapileak_delete(p, 0);                                                                \
    }                                                                                         \
    void operator delete[](void *p, std::size_t, std::align_val_t) noexcept {                 \
        mapileak_delete(p, 1);                                                                \
    }                                                                                         \
    void operator delete(void *p, std::align_val_t, const std::nothrow_t &) noexcept {        \
        mapileak_delete(p, 0);                                                                \
    }                                                                                         \
    void operator delete[](void *p, std::align_val_t, const std::nothrow_t &) noexcept {      \
        mapileak_delete(p, 1);                                                                \
    }
#else
#define MAPILEAK_DETAIL_ALIGNED_NEW
#endif

#define MAPILEAK_REPLACE_OPERATOR_NEW                                                          \
    void *operator new(std::size_t n) { return ::mapileak::detail::NewBlock(n, 0, 0); }       \
    void *operator new[](std::size_t n) { return ::mapileak::detail::NewBlock(n, 0, 1); }     \
    void *operator new(std::size_t n, const std::nothrow_t &) noexcept {                      \
        return ::mapileak::detail::NewBlockOrNull(n, 0, 0);                                   \
    }                                                                                         \
    void *operator new[](std::size_t n, const std::nothrow_t &) noexcept {                    \
        return ::mapileak::detail::NewBlockOrNull(n, 0, 1);                                   \
    }                                                                                         \
    void operator delete(void *p) noexcept { mapileak_delete(p, 0); }                         \
    void operator delete[](void *p) noexcept { mapileak_delete(p, 1); }                       \
    void operator delete(void *p, std::size_t) noexcept { mapileak_delete(p, 0); }           \
    void operator delete[](void *p, std::size_t) noexcept { mapileak_delete(p, 1); }          \
    void operator delete(void *p, const std::nothrow_t &) noexcept { mapileak_delete(p, 0); } \
    void operator delete[](void *p, const std::nothrow_t &) noexcept { mapileak_delete(p, 1); } \
    MAPILEAK_DETAIL_ALIGNED_NEW

// MAPILEAK_REPLACE_MALLOC (see mapileak.h) in C++: std::malloc and
// friends name mapileak's too.
#if defined(MAPILEAK_MALLOC_REPLACED)
namespace std {
using ::mapileak_calloc;
using ::mapileak_free;
using ::mapileak_malloc;
using ::mapileak_realloc;
}  // namespace std
#endif

#endif  // MAPILEAK_HPP
