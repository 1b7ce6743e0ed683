// The size of the page-locked heap region (region_heap.h) when the operator
// gives none (--pinned_heap_bytes=0).
//
// Why it matters: every put in flight lives in the region while the GPU
// reads it (streams x pipelined puts x block size, plus gRPC's own
// buffers); past it, puts are copied first. 16 client streams of pipelined
// 16 MiB puts outgrow 1 GiB: measured on the H200 machine
// (bench/results/README.md, twelfth session, 3 rounds), FP16 puts there ran
// 6.0-11.4 GB/s with a 1 GiB region and 10.6-14.9 GB/s with 4 GiB.
// Why not more: the region is locked at start-up (4 GiB: 1.5 s there) and
// stays resident, so it is a share of the memory the process may use.
//
// Contract: AutoRegionBytes is a pure function; UsableMemoryBytes reads the
// system (physical memory, and the cgroup's memory limit where there is
// one) and is thread-safe.

#ifndef KVQ_SERVER_HEAP_REGION_SIZE_H_
#define KVQ_SERVER_HEAP_REGION_SIZE_H_

#include <cstdint>
#include <optional>
#include <string_view>

namespace kvq {

inline constexpr uint64_t kMaxAutoRegionBytes = uint64_t{4} << 30;
inline constexpr uint64_t kMinAutoRegionBytes = uint64_t{64} << 20;

// A quarter of `usable_memory_bytes`, in whole 2 MiB, within
// [kMinAutoRegionBytes, kMaxAutoRegionBytes].
uint64_t AutoRegionBytes(uint64_t usable_memory_bytes);

// The memory this process may use: physical memory, or the memory limit of
// its cgroup where that is lower (cgroup v2 memory.max, else v1
// memory.limit_in_bytes).
uint64_t UsableMemoryBytes();

// A cgroup memory limit file's contents as bytes: nullopt for "max" (v2's
// no limit) or anything that is not a number.
std::optional<uint64_t> ParseCgroupMemoryLimit(std::string_view contents);

}  // namespace kvq

#endif  // KVQ_SERVER_HEAP_REGION_SIZE_H_
