// The CUDA backend: the page arena is one cudaMalloc; puts are copied to the
// GPU and quantized straight into pool pages by the fused paged kernels; gets
// are gathered and dequantized on the GPU and copied back.
//
// Each call borrows a StreamContext (a CUDA stream plus its pinned staging
// buffer, device input buffer and page table) from a free list, so calls on
// different gRPC threads overlap their copies and kernels, and buffers are
// reused instead of allocated per request. A context's buffers only grow, up
// to the largest block it has carried.

#include <cuda_runtime.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/paged_kernels.h"
#include "kernels/quantize.h"
#include "server/backend/backend.h"
#include "server/backend/cuda_memory.h"

namespace kvq {
namespace {

// One worker's stream and buffers.
struct StreamContext {
  cudaStream_t stream = nullptr;
  cudaEvent_t marks[4] = {};  // start, after H2D, after kernel, after D2H
  PinnedBuffer staging;       // host side of every copy
  DeviceBuffer block;         // the block in its client dtype, on the device
  DeviceBuffer page_table;    // uint32 page ids
  DeviceBuffer flags;         // float absmax + uint32 nonfinite

  ~StreamContext() {
    for (cudaEvent_t e : marks) {
      if (e != nullptr) cudaEventDestroy(e);
    }
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

struct DeviceFlags {
  float absmax;
  uint32_t nonfinite;
};

double ElapsedSeconds(cudaEvent_t from, cudaEvent_t to) {
  float ms = 0;
  return cudaEventElapsedTime(&ms, from, to) == cudaSuccess ? ms / 1e3 : 0.0;
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(int gpu, std::string device_name, uint8_t* arena,
              ArenaOptions options)
      : gpu_(gpu),
        device_name_(std::move(device_name)),
        arena_(arena),
        options_(options) {}

  ~CudaBackend() override {
    cudaSetDevice(gpu_);
    idle_.clear();
    cudaFree(arena_);
  }

  std::string_view name() const override { return "cuda"; }
  std::string device_name() const override { return device_name_; }

  absl::StatusOr<float> QuantizeInto(const BlockLayout& layout, DType dtype,
                                     std::span<const std::byte> src,
                                     std::span<const uint32_t> pages,
                                     DataPathTimings* timings) override {
    if (src.size() != layout.logical_bytes(dtype)) {
      return absl::InvalidArgumentError(
          absl::StrCat("block data is ", src.size(), " bytes, expected ",
                       layout.logical_bytes(dtype)));
    }
    absl::StatusOr<std::unique_ptr<StreamContext>> borrowed = Borrow();
    if (!borrowed.ok()) return borrowed.status();
    std::unique_ptr<StreamContext> ctx = *std::move(borrowed);

    absl::StatusOr<DeviceFlags> flags =
        RunQuantize(*ctx, layout, dtype, src, pages, timings);
    Return(std::move(ctx));
    if (!flags.ok()) return flags.status();
    if (flags->nonfinite != 0) {
      // The kernel only says "somewhere"; the CPU path finds the element, so
      // the message matches the CPU backend's. Rare: the block is refused.
      std::vector<uint8_t> scratch(layout.payload_bytes);
      absl::Status located = Quantize(layout, dtype, src.data(), scratch.data());
      return located.ok() ? absl::InvalidArgumentError(
                                "data holds a NaN or Inf value")
                          : located;
    }
    return flags->absmax;
  }

  absl::Status DequantizeFrom(const BlockLayout& layout,
                              std::span<const uint32_t> pages, DType dtype,
                              std::span<std::byte> dst,
                              DataPathTimings* timings) override {
    if (dst.size() != layout.logical_bytes(dtype)) {
      return absl::InternalError(
          absl::StrCat("output buffer is ", dst.size(), " bytes, expected ",
                       layout.logical_bytes(dtype)));
    }
    absl::StatusOr<std::unique_ptr<StreamContext>> borrowed = Borrow();
    if (!borrowed.ok()) return borrowed.status();
    std::unique_ptr<StreamContext> ctx = *std::move(borrowed);
    absl::Status status = RunDequantize(*ctx, layout, dtype, pages, dst,
                                        timings);
    Return(std::move(ctx));
    return status;
  }

 private:
  absl::StatusOr<DeviceFlags> RunQuantize(StreamContext& ctx,
                                          const BlockLayout& layout,
                                          DType dtype,
                                          std::span<const std::byte> src,
                                          std::span<const uint32_t> pages,
                                          DataPathTimings* timings) {
    const size_t table_bytes = pages.size_bytes();
    KVQ_RETURN_IF_ERROR(ctx.staging.Reserve(src.size() + table_bytes +
                                            sizeof(DeviceFlags)));
    KVQ_RETURN_IF_ERROR(ctx.block.Reserve(src.size()));
    KVQ_RETURN_IF_ERROR(ctx.page_table.Reserve(table_bytes));
    KVQ_RETURN_IF_ERROR(ctx.flags.Reserve(sizeof(DeviceFlags)));

    // Staging layout: [block bytes][page ids][flags read back].
    std::byte* host = ctx.staging.data();
    std::memcpy(host, src.data(), src.size());
    std::memcpy(host + src.size(), pages.data(), table_bytes);
    auto* host_flags =
        reinterpret_cast<DeviceFlags*>(host + src.size() + table_bytes);
    auto* device_flags = reinterpret_cast<DeviceFlags*>(ctx.flags.data());

    cudaStream_t s = ctx.stream;
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.marks[0], s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(ctx.block.data(), host,
                                             src.size(),
                                             cudaMemcpyHostToDevice, s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(ctx.page_table.data(),
                                             host + src.size(), table_bytes,
                                             cudaMemcpyHostToDevice, s));
    KVQ_RETURN_IF_CUDA_ERROR(
        cudaMemsetAsync(device_flags, 0, sizeof(DeviceFlags), s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.marks[1], s));
    cuda::DevicePages dst{arena_,
                          reinterpret_cast<const uint32_t*>(
                              ctx.page_table.data()),
                          options_.page_bytes};
    KVQ_RETURN_IF_ERROR(cuda::QuantizeToPages(
        layout, dtype, ctx.block.data(), dst, &device_flags->absmax,
        &device_flags->nonfinite, s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.marks[2], s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(host_flags, device_flags,
                                             sizeof(DeviceFlags),
                                             cudaMemcpyDeviceToHost, s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.marks[3], s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(s));
    if (timings != nullptr) {
      timings->host_to_device_seconds =
          ElapsedSeconds(ctx.marks[0], ctx.marks[1]);
      timings->kernel_seconds = ElapsedSeconds(ctx.marks[1], ctx.marks[2]);
      timings->device_to_host_seconds =
          ElapsedSeconds(ctx.marks[2], ctx.marks[3]);
    }
    return *host_flags;
  }

  absl::Status RunDequantize(StreamContext& ctx, const BlockLayout& layout,
                             DType dtype, std::span<const uint32_t> pages,
                             std::span<std::byte> dst,
                             DataPathTimings* timings) {
    const size_t table_bytes = pages.size_bytes();
    KVQ_RETURN_IF_ERROR(ctx.staging.Reserve(dst.size() + table_bytes));
    KVQ_RETURN_IF_ERROR(ctx.block.Reserve(dst.size()));
    KVQ_RETURN_IF_ERROR(ctx.page_table.Reserve(table_bytes));

    // Staging layout: [page ids][block bytes read back].
    std::byte* host = ctx.staging.data();
    std::memcpy(host, pages.data(), table_bytes);
    std::byte* host_block = host + table_bytes;

    cudaStream_t s = ctx.stream;
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.marks[0], s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(ctx.page_table.data(), host,
                                             table_bytes,
                                             cudaMemcpyHostToDevice, s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.marks[1], s));
    cuda::DevicePages src{arena_,
                          reinterpret_cast<const uint32_t*>(
                              ctx.page_table.data()),
                          options_.page_bytes};
    KVQ_RETURN_IF_ERROR(cuda::DequantizeFromPages(layout, src, dtype,
                                                  ctx.block.data(), s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.marks[2], s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(host_block, ctx.block.data(),
                                             dst.size(),
                                             cudaMemcpyDeviceToHost, s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.marks[3], s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(s));
    std::memcpy(dst.data(), host_block, dst.size());
    if (timings != nullptr) {
      timings->host_to_device_seconds =
          ElapsedSeconds(ctx.marks[0], ctx.marks[1]);
      timings->kernel_seconds = ElapsedSeconds(ctx.marks[1], ctx.marks[2]);
      timings->device_to_host_seconds =
          ElapsedSeconds(ctx.marks[2], ctx.marks[3]);
    }
    return absl::OkStatus();
  }

  // A context from the free list, or a new one. Contexts are never shared
  // between two calls at once.
  absl::StatusOr<std::unique_ptr<StreamContext>> Borrow() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        std::unique_ptr<StreamContext> ctx = std::move(idle_.back());
        idle_.pop_back();
        return ctx;
      }
    }
    KVQ_RETURN_IF_CUDA_ERROR(cudaSetDevice(gpu_));
    auto ctx = std::make_unique<StreamContext>();
    KVQ_RETURN_IF_CUDA_ERROR(
        cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    for (cudaEvent_t& e : ctx->marks) {
      KVQ_RETURN_IF_CUDA_ERROR(cudaEventCreate(&e));
    }
    return ctx;
  }

  void Return(std::unique_ptr<StreamContext> ctx) {
    std::lock_guard<std::mutex> lock(mu_);
    idle_.push_back(std::move(ctx));
  }

  const int gpu_;
  const std::string device_name_;
  uint8_t* const arena_;
  const ArenaOptions options_;
  std::mutex mu_;
  std::vector<std::unique_ptr<StreamContext>> idle_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(
    const ArenaOptions& options, int gpu) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no CUDA GPU is usable (",
        err != cudaSuccess ? cudaGetErrorString(err) : "0 devices",
        "); run with --device=cpu or on a machine with a GPU"));
  }
  if (gpu < 0 || gpu >= count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--gpu=", gpu, " but this machine has ", count, " GPU(s)"));
  }
  KVQ_RETURN_IF_CUDA_ERROR(cudaSetDevice(gpu));
  cudaDeviceProp prop{};
  KVQ_RETURN_IF_CUDA_ERROR(cudaGetDeviceProperties(&prop, gpu));
  // Never managed memory: one plain device allocation is the whole pool.
  void* arena = nullptr;
  err = cudaMalloc(&arena, options.capacity_bytes);
  if (err != cudaSuccess) {
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate a ", options.capacity_bytes, "-byte pool on GPU ",
        gpu, " (", prop.name, ", ", free_bytes, " bytes free): ",
        cudaGetErrorString(err), "; lower --pool_bytes"));
  }
  return std::make_unique<CudaBackend>(gpu, prop.name,
                                       static_cast<uint8_t*>(arena), options);
}

}  // namespace kvq
