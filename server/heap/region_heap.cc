#include "server/heap/region_heap.h"

#include <jemalloc/jemalloc.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"

// Read by jemalloc when it starts, in every program that links this file.
//   oversize_threshold:0  allocations of 8 MiB and more would otherwise go
//                         to a "huge" arena that jemalloc creates on first
//                         use, with default hooks, out of the region's
//                         reach; 0 turns that arena off.
//   retain:false          what the arenas hold before the install goes back
//                         to the system when purged (InstallRegionHeap
//                         does), instead of being kept and handed out
//                         again ahead of the region.
extern "C" {
// NOLINTNEXTLINE(readability-identifier-naming): jemalloc's name for it.
const char* malloc_conf = "oversize_threshold:0,retain:false";
}

namespace kvq {
namespace {

constexpr uint64_t kRegionAlignment = uint64_t{2} << 20;  // a huge page

uint64_t AlignUp(uint64_t n, uint64_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

// The one region. Written once by InstallRegionHeap before any hook can run.
struct Region {
  std::byte* base = nullptr;
  uint64_t size = 0;
  std::atomic<uint64_t> next{0};      // bump offset: [0, next) handed out
  std::atomic<uint64_t> outside{0};   // bytes mapped past the region
  std::atomic<bool> installed{false};
};
Region g_region;

bool InRegion(const void* p) {
  const auto* b = static_cast<const std::byte*>(p);
  return b >= g_region.base && b < g_region.base + g_region.size;
}

// `size` bytes of fresh anonymous memory aligned to `alignment` (null on
// failure): a padded mapping, its ends given back.
void* MapAligned(size_t size, size_t alignment) {
  const size_t padded = size + alignment;
  void* raw = mmap(nullptr, padded, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const auto start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = AlignUp(start, alignment);
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t end = aligned + size;
  if (start + padded > end)
    munmap(reinterpret_cast<void*>(end), start + padded - end);
  return reinterpret_cast<void*>(aligned);
}

// Memory past the region, counted.
void* MapOutside(size_t size, size_t alignment) {
  void* p = MapAligned(size, alignment);
  if (p != nullptr) g_region.outside.fetch_add(size, std::memory_order_relaxed);
  return p;
}

void* Alloc(extent_hooks_t*, void* new_addr, size_t size, size_t alignment,
            bool* zero, bool* commit, unsigned /*arena*/) {
  alignment = std::max<size_t>(alignment, 4096);
  uint64_t offset = g_region.next.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t start = AlignUp(offset, alignment);
    if (new_addr != nullptr && g_region.base + start != new_addr) {
      return nullptr;  // jemalloc asks to grow in place: only at the bump
    }
    if (start + size > g_region.size) break;
    if (g_region.next.compare_exchange_weak(offset, start + size,
                                            std::memory_order_relaxed)) {
      // Never handed out before (nothing comes back), so still the zeroes
      // of a fresh anonymous mapping.
      *zero = true;
      *commit = true;
      return g_region.base + start;
    }
  }
  if (new_addr != nullptr) return nullptr;
  void* p = MapOutside(size, alignment);
  if (p != nullptr) {
    *zero = true;
    *commit = true;
  }
  return p;
}

// Declines (true): jemalloc keeps the extent for reuse instead.
bool Dalloc(extent_hooks_t*, void*, size_t, bool, unsigned) { return true; }

void Destroy(extent_hooks_t*, void* addr, size_t size, bool, unsigned) {
  if (!InRegion(addr)) munmap(addr, size);
}

// All memory is committed from the start (false: success).
bool Commit(extent_hooks_t*, void*, size_t, size_t, size_t, unsigned) {
  return false;
}

bool Split(extent_hooks_t*, void*, size_t, size_t, size_t, bool, unsigned) {
  return false;
}

// Refuses (true) to join memory of the region with memory outside it.
bool Merge(extent_hooks_t*, void* a, size_t, void* b, size_t, bool, unsigned) {
  return InRegion(a) != InRegion(b);
}

extent_hooks_t g_hooks = {
    Alloc,   Dalloc,
    Destroy, Commit,
    nullptr,  // decommit: never (the memory stays what the GPU maps)
    nullptr,  // purge_lazy: never madvise pinned pages
    nullptr,  // purge_forced: likewise
    Split,   Merge,
};

// Whether `p`, just malloc'd, is jemalloc's: the library may be linked while
// another malloc serves the process (e.g. under a sanitizer).
bool MallocIsJemalloc() {
  void* probe = std::malloc(64);
  if (probe == nullptr) return false;
  unsigned arena = 0;
  size_t arena_size = sizeof(arena);
  const bool ours =
      mallctl("arenas.lookup", &arena, &arena_size, &probe, sizeof(probe)) == 0;
  std::free(probe);
  return ours;
}

}  // namespace

absl::StatusOr<std::span<std::byte>> InstallRegionHeap(uint64_t bytes) {
  if (g_region.installed.exchange(true)) {
    return absl::FailedPreconditionError(
        "the region heap is already installed (once per process)");
  }
  if (!MallocIsJemalloc()) {
    g_region.installed.store(false);
    return absl::FailedPreconditionError(
        "this process's malloc is not jemalloc, so its heap cannot be "
        "carved from one region");
  }
  const uint64_t size = AlignUp(std::max<uint64_t>(bytes, 1), kRegionAlignment);
  void* base = MapAligned(size, kRegionAlignment);
  if (base == nullptr) {
    g_region.installed.store(false);
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot reserve ", size, " bytes of address space for "
                     "the region heap: ", std::strerror(errno)));
  }
  g_region.base = static_cast<std::byte*>(base);
  g_region.size = size;

  unsigned arenas = 0;
  size_t arenas_size = sizeof(arenas);
  if (mallctl("arenas.narenas", &arenas, &arenas_size, nullptr, 0) != 0) {
    return absl::InternalError("jemalloc does not report arenas.narenas");
  }
  // Memory the arenas already hold would be handed out before the region:
  // this thread's cached objects go back to their arenas, and the arenas'
  // free memory to the system. What is in use stays where it is.
  mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
  const std::string purge_all =
      absl::StrCat("arena.", MALLCTL_ARENAS_ALL, ".purge");
  mallctl(purge_all.c_str(), nullptr, nullptr, nullptr, 0);
  extent_hooks_t* hooks = &g_hooks;
  for (unsigned i = 0; i < arenas; ++i) {
    const std::string name = absl::StrCat("arena.", i, ".extent_hooks");
    // Sets the hooks of arena i, creating it if no thread has used it yet.
    if (const int err = mallctl(name.c_str(), nullptr, nullptr, &hooks,
                                sizeof(hooks));
        err != 0) {
      return absl::InternalError(absl::StrCat(
          "jemalloc refused extent hooks for arena ", i, ": ",
          std::strerror(err), " (some allocations will not land in the "
          "region)"));
    }
  }
  return std::span<std::byte>(g_region.base, g_region.size);
}

RegionHeapUsage CurrentRegionHeapUsage() {
  RegionHeapUsage usage;
  if (!g_region.installed.load() || g_region.base == nullptr) return usage;
  usage.region_bytes = g_region.size;
  usage.handed_out = std::min(g_region.next.load(std::memory_order_relaxed),
                              g_region.size);
  usage.outside_bytes = g_region.outside.load(std::memory_order_relaxed);
  return usage;
}

}  // namespace kvq
