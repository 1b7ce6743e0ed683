// RAII owners of CUDA memory for the CUDA backend, and the macro that turns a
// CUDA runtime error into an absl::Status at the call site.
//
// Buffers grow on Reserve() and never shrink: a backend context keeps the
// capacity of the largest block it has moved, so steady traffic allocates
// nothing. Contents are not preserved across a growing Reserve().

#ifndef KVQ_SERVER_BACKEND_CUDA_MEMORY_H_
#define KVQ_SERVER_BACKEND_CUDA_MEMORY_H_

#include <cuda_runtime.h>

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace kvq {

inline absl::Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("CUDA error in ", what, ": ", cudaGetErrorString(err)));
}

#define KVQ_RETURN_IF_CUDA_ERROR(expr) \
  KVQ_RETURN_IF_ERROR(::kvq::CudaStatus((expr), #expr))

// Page-locked host memory (cudaMallocHost), so copies run at full PCIe speed
// and asynchronously.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer() { cudaFreeHost(data_); }

  absl::Status Reserve(size_t bytes) {
    if (bytes <= capacity_) return absl::OkStatus();
    cudaFreeHost(data_);
    data_ = nullptr;
    capacity_ = 0;
    KVQ_RETURN_IF_CUDA_ERROR(cudaMallocHost(&data_, bytes));
    capacity_ = bytes;
    return absl::OkStatus();
  }
  std::byte* data() const { return static_cast<std::byte*>(data_); }

 private:
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

// Device memory (cudaMalloc; never managed memory).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { cudaFree(data_); }

  absl::Status Reserve(size_t bytes) {
    if (bytes <= capacity_) return absl::OkStatus();
    cudaFree(data_);
    data_ = nullptr;
    capacity_ = 0;
    KVQ_RETURN_IF_CUDA_ERROR(cudaMalloc(&data_, bytes));
    capacity_ = bytes;
    return absl::OkStatus();
  }
  void* data() const { return data_; }

 private:
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace kvq

#endif  // KVQ_SERVER_BACKEND_CUDA_MEMORY_H_
