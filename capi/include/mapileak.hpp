// mapileak.hpp: RAII classes over mapileak.h for C++ providers.
//
//   class ContentsTable : public IMAPITable {
//       mapileak::RefCount count_{"IMAPITable", "contents of Inbox"};
//   public:
//       ULONG STDMETHODCALLTYPE AddRef() override { return count_.AddRef(); }
//       ULONG STDMETHODCALLTYPE Release() override {
//           ULONG n = count_.Release();
//           if (n == 0) delete this;
//           return n;
//       }
//   };
//
//   mapileak::Scope scope(session);  // objects made meanwhile belong to it
#ifndef MAPILEAK_HPP
#define MAPILEAK_HPP

#include <atomic>

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
class RefCount {
public:
    RefCount(const char *kind, const char *label, uint64_t owner = 0)
        : handle_(mapileak_object_new(owner, kind, label)) {}
    ~RefCount() { mapileak_object_free(handle_); }
    RefCount(const RefCount &) = delete;
    RefCount &operator=(const RefCount &) = delete;

    uint32_t AddRef() {
        return handle_ ? mapileak_object_addref(handle_) : ++untracked_;
    }
    uint32_t Release() {
        if (handle_) return mapileak_object_release(handle_);
        uint32_t n = untracked_.load();
        while (n != 0 && !untracked_.compare_exchange_weak(n, n - 1)) {
        }
        return n == 0 ? 0 : n - 1;
    }
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
    mapileak_object *handle_;
    std::atomic<uint32_t> untracked_{1};
};

}  // namespace mapileak

#endif  // MAPILEAK_HPP
