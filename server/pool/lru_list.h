// LruList: an intrusive doubly-linked recency list with O(1) operations.
//
// Elements embed an LruHook<T> and are linked through it, so touching or
// evicting never allocates. Front = most recently used, back = least. The
// list does not own its elements; the caller keeps each linked element alive
// and unlinks it before destroying it. Not thread-safe: the owner's lock
// guards it.

#ifndef KVQ_SERVER_POOL_LRU_LIST_H_
#define KVQ_SERVER_POOL_LRU_LIST_H_

#include <cstddef>

namespace kvq {

template <typename T>
struct LruHook {
  T* prev = nullptr;  // towards the front (more recent)
  T* next = nullptr;  // towards the back (less recent)
  bool linked = false;
};

template <typename T, LruHook<T> T::*kHook>
class LruList {
 public:
  LruList() = default;
  LruList(const LruList&) = delete;
  LruList& operator=(const LruList&) = delete;

  bool empty() const { return front_ == nullptr; }
  size_t size() const { return size_; }
  T* front() const { return front_; }
  T* back() const { return back_; }
  static bool Linked(const T* item) { return (item->*kHook).linked; }

  // Links an unlinked item as the most recently used.
  void PushFront(T* item) {
    LruHook<T>& hook = item->*kHook;
    hook.prev = nullptr;
    hook.next = front_;
    hook.linked = true;
    if (front_ != nullptr) (front_->*kHook).prev = item;
    front_ = item;
    if (back_ == nullptr) back_ = item;
    ++size_;
  }

  // Unlinks a linked item.
  void Remove(T* item) {
    LruHook<T>& hook = item->*kHook;
    if (hook.prev != nullptr) {
      (hook.prev->*kHook).next = hook.next;
    } else {
      front_ = hook.next;
    }
    if (hook.next != nullptr) {
      (hook.next->*kHook).prev = hook.prev;
    } else {
      back_ = hook.prev;
    }
    hook = LruHook<T>{};
    --size_;
  }

  // Makes a linked item the most recently used.
  void Touch(T* item) {
    Remove(item);
    PushFront(item);
  }

 private:
  T* front_ = nullptr;
  T* back_ = nullptr;
  size_t size_ = 0;
};

}  // namespace kvq

#endif  // KVQ_SERVER_POOL_LRU_LIST_H_
