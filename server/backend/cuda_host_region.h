// HostRegion: a span of host memory registered with CUDA (the CUDA backend's
// RegisterHostRegion: the process heap, where gRPC receives puts) and where
// kernels see it. Kernels read a put's pieces there in place, over PCIe.
//
// A plain value, empty until registered; set once, before anything reads it.

#ifndef KVQ_SERVER_BACKEND_CUDA_HOST_REGION_H_
#define KVQ_SERVER_BACKEND_CUDA_HOST_REGION_H_

#include <cstddef>
#include <span>

#include "server/backend/block_bytes.h"

namespace kvq {

struct HostRegion {
  std::span<std::byte> host;
  std::byte* device = nullptr;  // host.data() as kernels address it

  bool empty() const { return host.empty(); }

  // Whether all of `bytes` lies in the region.
  bool Contains(ConstBytes bytes) const {
    return !host.empty() && bytes.data() >= host.data() &&
           bytes.data() + bytes.size() <= host.data() + host.size();
  }

  // Where kernels see `bytes`, which Contains says are in the region.
  const std::byte* DeviceAddressOf(ConstBytes bytes) const {
    return device + (bytes.data() - host.data());
  }
};

}  // namespace kvq

#endif  // KVQ_SERVER_BACKEND_CUDA_HOST_REGION_H_
