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
//   mapileak::Scope scope(session);  // objects made meanwhile belong to it
//
//   MAPILEAK_REPLACE_OPERATOR_NEW  // once, in one .cpp file: new/delete tracked
#ifndef MAPILEAK_HPP
#define MAPILEAK_HPP

#include <atomic>
#include <cstddef>
#include <cstdlib>
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
        for (uint32_t n = untracked_.load(); n > 1; --n) mapileak_object_addref(handle_);
    }

    uint32_t AddRef() {
        return handle_ ? mapileak_object_addref(handle_) : ++untracked_;
    }
    // The new count. Prefer Release(this), which also deletes.
    uint32_t Release() {
        int last = 0;
        return ReleaseLast(&last);
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
        uint32_t n = ReleaseLast(&last);
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
        mapileak_object_opened_from(handle_, parent.handle_);
    }
    // It keeps a reference on `other` / let go of one.
    void Hold(const RefCount &other) const { mapileak_object_hold(handle_, other.handle_); }
    void ReleaseHold(const RefCount &other) const {
        mapileak_object_release_hold(handle_, other.handle_);
    }
    const mapileak_object *handle() const { return handle_; }

private:
    uint32_t ReleaseLast(int *last) {
        if (handle_) return mapileak_object_release_ex(handle_, last);
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

namespace detail {

// operator new's contract over mapileak_malloc: never NULL; the new-handler
// is called until it frees memory or gives up.
inline void *NewBlock(std::size_t size, std::size_t align) {
    if (size == 0) size = 1;
    for (;;) {
        void *p = align != 0 ? mapileak_aligned_malloc(size, align) : mapileak_malloc(size);
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

inline void *NewBlockOrNull(std::size_t size, std::size_t align) noexcept {
#if defined(__cpp_exceptions) || defined(_CPPUNWIND)
    try {
        return NewBlock(size, align);
    } catch (...) {
        return nullptr;
    }
#else
    if (size == 0) size = 1;
    return align != 0 ? mapileak_aligned_malloc(size, align) : mapileak_malloc(size);
#endif
}

}  // namespace detail

}  // namespace mapileak

// MAPILEAK_REPLACE_OPERATOR_NEW: written once, at namespace scope, in one
// source file of the provider's debug build, it replaces the global
// operator new and delete (every form: plain, array, nothrow, sized,
// aligned) with mapileak_malloc and mapileak_free: the C++ heap blocks a
// logon leaves alive are reported at its Logoff under their allocation
// sites. Every new and delete of the module must then go through these
// (they do, once linked: the replacement is module-wide).
#if defined(__cpp_aligned_new)
#define MAPILEAK_DETAIL_ALIGNED_NEW                                                           \
    void *operator new(std::size_t n, std::align_val_t a) {                                   \
        return ::mapileak::detail::NewBlock(n, static_cast<std::size_t>(a));                  \
    }                                                                                         \
    void *operator new[](std::size_t n, std::align_val_t a) {                                 \
        return ::mapileak::detail::NewBlock(n, static_cast<std::size_t>(a));                  \
    }                                                                                         \
    void *operator new(std::size_t n, std::align_val_t a, const std::nothrow_t &) noexcept {  \
        return ::mapileak::detail::NewBlockOrNull(n, static_cast<std::size_t>(a));            \
    }                                                                                         \
    void *operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t &) noexcept { \
        return ::mapileak::detail::NewBlockOrNull(n, static_cast<std::size_t>(a));            \
    }                                                                                         \
    void operator delete(void *p, std::align_val_t) noexcept { mapileak_free(p); }            \
    void operator delete[](void *p, std::align_val_t) noexcept { mapileak_free(p); }          \
    void operator delete(void *p, std::size_t, std::align_val_t) noexcept { mapileak_free(p); } \
    void operator delete[](void *p, std::size_t, std::align_val_t) noexcept {                 \
        mapileak_free(p);                                                                     \
    }                                                                                         \
    void operator delete(void *p, std::align_val_t, const std::nothrow_t &) noexcept {        \
        mapileak_free(p);                                                                     \
    }                                                                                         \
    void operator delete[](void *p, std::align_val_t, const std::nothrow_t &) noexcept {      \
        mapileak_free(p);                                                                     \
    }
#else
#define MAPILEAK_DETAIL_ALIGNED_NEW
#endif

#define MAPILEAK_REPLACE_OPERATOR_NEW                                                          \
    void *operator new(std::size_t n) { return ::mapileak::detail::NewBlock(n, 0); }          \
    void *operator new[](std::size_t n) { return ::mapileak::detail::NewBlock(n, 0); }        \
    void *operator new(std::size_t n, const std::nothrow_t &) noexcept {                      \
        return ::mapileak::detail::NewBlockOrNull(n, 0);                                      \
    }                                                                                         \
    void *operator new[](std::size_t n, const std::nothrow_t &) noexcept {                    \
        return ::mapileak::detail::NewBlockOrNull(n, 0);                                      \
    }                                                                                         \
    void operator delete(void *p) noexcept { mapileak_free(p); }                              \
    void operator delete[](void *p) noexcept { mapileak_free(p); }                            \
    void operator delete(void *p, std::size_t) noexcept { mapileak_free(p); }                 \
    void operator delete[](void *p, std::size_t) noexcept { mapileak_free(p); }               \
    void operator delete(void *p, const std::nothrow_t &) noexcept { mapileak_free(p); }      \
    void operator delete[](void *p, const std::nothrow_t &) noexcept { mapileak_free(p); }    \
    MAPILEAK_DETAIL_ALIGNED_NEW

#endif  // MAPILEAK_HPP
