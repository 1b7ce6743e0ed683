// RegionHeap: every later malloc of this process carved out of one region of
// address space, so that the region can be page-locked for the GPU once and
// gRPC's receive buffers, which come from malloc, are memory the GPU reads
// where they lie.
//
// Why: a put's bytes arrive in buffers gRPC allocates itself (64 KiB read
// slices, from malloc), and gRPC offers no allocator hook. Copying them into
// page-locked staging cost ~0.1 ms per MiB on the put path, and registering
// each message's buffers with CUDA costs more than the copy (93 + 54 us per
// MiB, bench/results/README.md). So the heap comes from one region instead,
// and that region is registered once (Backend::RegisterHostRegion).
//
// How: the process's malloc is jemalloc (kvq-server links it), and
// InstallRegionHeap gives every arena extent hooks that hand out the region
// with a bump pointer. Memory never goes back: jemalloc keeps freed extents
// for reuse (the dalloc hook declines), and never purges them, since an
// madvise(MADV_DONTNEED) on pinned pages would silently detach them from
// what the GPU reads (the purge and decommit hooks are absent). When the
// region is used up, extents come from plain mmap outside it: the process
// goes on, and bytes there are simply not readable in place. Memory
// allocated before the install lies outside the region too, and so may
// small objects (under 16 KiB) from slabs begun before it; larger ones,
// gRPC's 64 KiB read buffers among them, come from the region.
//
// Contract:
//   - InstallRegionHeap at most once per process, early (before the threads
//     whose allocations should land in the region start allocating much);
//     FAILED_PRECONDITION when malloc is not jemalloc or on a second call,
//     RESOURCE_EXHAUSTED when the address space cannot be reserved.
//   - The region stays for the life of the process.
//   - Thread-safe.

#ifndef KVQ_SERVER_HEAP_REGION_HEAP_H_
#define KVQ_SERVER_HEAP_REGION_HEAP_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/statusor.h"

namespace kvq {

// Reserves `bytes` (rounded up to 2 MiB) of address space and makes it the
// source of every jemalloc arena's memory from now on. Returns the region.
absl::StatusOr<std::span<std::byte>> InstallRegionHeap(uint64_t bytes);

struct RegionHeapUsage {
  uint64_t region_bytes = 0;   // the region's size; 0 before the install
  uint64_t handed_out = 0;     // of it, given to jemalloc so far
  uint64_t outside_bytes = 0;  // given to jemalloc from mmap, past the region
};
RegionHeapUsage CurrentRegionHeapUsage();

}  // namespace kvq

#endif  // KVQ_SERVER_HEAP_REGION_HEAP_H_
