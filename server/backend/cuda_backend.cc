// The CUDA backend: the page arena is one cudaMalloc; puts are copied to the
// GPU and quantized straight into pool pages by the fused paged kernels; gets
// are gathered and dequantized on the GPU and copied back.
//
// Each call borrows a StreamContext (a CUDA stream plus its pinned staging
// buffer, device block buffer, page table and flags) from StreamContexts
// (cuda_stream_contexts.h), so calls on different gRPC threads overlap their
// copies and kernels, and reuse buffers instead of allocating them per
// request.
//
// A block in page-locked memory (AllocateHostBuffer's, which the service
// dequantizes gets into) moves by DMA straight from or to the caller's
// memory. A put in pieces inside the registered host region
// (RegisterHostRegion: the process heap, where gRPC received it) is read
// where it lies by one gather kernel over PCIe into the device block buffer.
// Any other memory goes through the context's pinned staging buffer: one
// more copy, spread over the CPU worker pool.
//
// A put may also be uploaded while it arrives (StartUpload: a CudaUpload,
// cuda_upload.h): the upload holds a context from the block's first chunk to
// its store, and gathers each appended chunk into the device block buffer at
// once, so that the caller can give gRPC's buffers back chunk by chunk
// instead of holding the whole block; QuantizeUploaded stores it from there.
//
// A put also leaves its block's page table on the device, in the slot of its
// first page (PageTableSlots, cuda_page_tables.h): the block's gets launch
// their kernel on it with nothing to upload first.
//
// A get with ReadyPrefixes into page-locked memory is copied back in pieces,
// an event after each: the caller is told each piece has landed while the
// next ones are still on their way, and can send it meanwhile. A get into
// page-locked memory in one piece skips the device buffer: the kernel writes
// the caller's memory itself, over PCIe.
//
// A put's quality sample (QuantizeInto's `error`) decodes the pages into a
// second device buffer and sums the error there, while the block is still on
// the GPU: two more kernels and 16 more bytes back, nothing else.
//
// Timings: host_to_device covers the copy of the block into pinned staging
// (when there is one) plus the DMA (or the gather) to the device, for an
// upload its appends' GPU time (while the block arrived) plus the page ids'
// DMA, device_to_host the DMA back plus the copy out of staging; kernel is the
// fused kernel alone (CUDA events), without a quality sample's kernels, and
// with its writes over PCIe for a get the kernel writes back itself.
//
// Failure: a CUDA error becomes INTERNAL naming the call. The context is then
// synchronized and thrown away (never reused with work possibly in flight),
// and the caller drops the block's reservation, so the pool stays consistent.

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/host_gather.h"
#include "kernels/cuda/paged_kernels.h"
#include "kernels/cuda/quant_error_cuda.h"
#include "kernels/parallel.h"
#include "kernels/quant_math.h"
#include "kernels/quantize.h"
#include "server/backend/backend.h"
#include "server/backend/cuda_host_region.h"
#include "server/backend/cuda_memory.h"
#include "server/backend/cuda_page_tables.h"
#include "server/backend/cuda_stream_contexts.h"
#include "server/backend/cuda_upload.h"

namespace kvq {
namespace {

using Clock = std::chrono::steady_clock;

// The paged kernels need pages that no 16-byte access straddles.
constexpr uint64_t kPageAlignment = 256;
// Offsets inside a staging buffer, so that every region starts aligned for
// any type and for the fastest DMA.
constexpr size_t kStagingAlignment = 256;

size_t AlignUp(size_t n, size_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// What the quantize kernel (and a quality sample) reports besides the
// payload.
struct DeviceFlags {
  float absmax;        // max |x| of the block
  uint32_t nonfinite;  // non-zero if any value was NaN or Inf
  double error[2];     // quality sample: sum (x - y)^2, sum x^2
};

// What CUDA knows of host memory at p.
struct HostMemory {
  // cudaHostAlloc / cudaMallocHost / cudaHostRegister memory, which the copy
  // engines read and write directly.
  bool page_locked = false;
  // Where kernels reach it (null: not mapped for the device).
  void* device_address = nullptr;
};

HostMemory HostMemoryAt(const void* p) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, p) != cudaSuccess) {
    cudaGetLastError();  // not an error of the next call
    return {};
  }
  if (attributes.type != cudaMemoryTypeHost) return {};
  return {true, attributes.devicePointer};
}

class CudaBackend final : public Backend {
 public:
  // `arena`: the pages (options.capacity_bytes), then `table_slots`'s
  // bytes, placed.
  CudaBackend(int gpu, std::string device_name, uint8_t* arena,
              ArenaOptions options, PageTableSlots table_slots)
      : gpu_(gpu),
        device_name_(std::move(device_name)),
        arena_(arena),
        options_(options),
        table_slots_(table_slots),
        contexts_(gpu, DefaultMaxStreamContexts()) {}

  ~CudaBackend() override {
    cudaSetDevice(gpu_);
    contexts_.DestroyIdle();
    if (!region_.empty()) cudaHostUnregister(region_.host.data());
    cudaFree(arena_);
  }

  std::string_view name() const override { return "cuda"; }
  std::string device_name() const override { return device_name_; }

  absl::StatusOr<float> QuantizeInto(const BlockLayout& layout, DType dtype,
                                     const BlockBytes& src,
                                     std::span<const uint32_t> pages,
                                     DataPathTimings* timings,
                                     ErrorSums* error) override {
    if (src.size() != layout.logical_bytes(dtype)) {
      return absl::InvalidArgumentError(
          absl::StrCat("block data is ", src.size(), " bytes, expected ",
                       layout.logical_bytes(dtype)));
    }
    KVQ_RETURN_IF_ERROR(CheckPages(layout, pages));
    absl::StatusOr<std::unique_ptr<StreamContext>> ctx = contexts_.Borrow();
    if (!ctx.ok()) return ctx.status();
    absl::StatusOr<DeviceFlags> flags =
        RunQuantize(**ctx, layout, dtype, &src, pages, timings,
                    /*sample=*/error != nullptr);
    contexts_.Return(*std::move(ctx), flags.ok());
    if (!flags.ok()) return flags.status();
    return Outcome(layout, dtype, *flags, error, [&](std::byte* whole) {
      src.CopyTo(whole);
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::unique_ptr<BlockUpload>> StartUpload(
      const BlockLayout& layout, DType dtype) override;

  absl::StatusOr<float> QuantizeUploaded(BlockUpload& upload,
                                         std::span<const uint32_t> pages,
                                         DataPathTimings* timings,
                                         ErrorSums* error) override;

  absl::Status DequantizeFrom(const BlockLayout& layout,
                              std::span<const uint32_t> pages, DType dtype,
                              std::span<std::byte> dst,
                              DataPathTimings* timings,
                              const ReadyPrefixes* ready) override {
    if (dst.size() != layout.logical_bytes(dtype)) {
      return absl::InternalError(
          absl::StrCat("output buffer is ", dst.size(), " bytes, expected ",
                       layout.logical_bytes(dtype)));
    }
    KVQ_RETURN_IF_ERROR(CheckPages(layout, pages));
    absl::StatusOr<std::unique_ptr<StreamContext>> ctx = contexts_.Borrow();
    if (!ctx.ok()) return ctx.status();
    absl::Status status =
        RunDequantize(**ctx, layout, dtype, pages, dst, timings, ready);
    contexts_.Return(*std::move(ctx), status.ok());
    return status;
  }

  // The GPU's DMA reads a put's block straight from page-locked memory, and
  // faster when no CPU cache holds its lines dirty: measured on the H200
  // machine (bench/results/README.md), streaming the copy out of gRPC's
  // buffers took the DMA of a 1 MiB put from 0.07-0.10 to 0.034 ms (the
  // copy itself unchanged), the server's data path from 0.21-0.24 to
  // 0.16-0.17 ms.
  CopyWrites host_buffer_writes() const override {
    return CopyWrites::kStreaming;
  }

  absl::Status RegisterHostRegion(std::span<std::byte> region) override {
    if (!region_.empty()) {
      return absl::FailedPreconditionError(
          "a host region is already registered with this backend");
    }
    KVQ_RETURN_IF_CUDA_ERROR(cudaSetDevice(gpu_));
    // Portable: page-locked for every GPU; mapped: kernels read it (the
    // gather of a put in pieces).
    const cudaError_t err = cudaHostRegister(
        region.data(), region.size(),
        cudaHostRegisterPortable | cudaHostRegisterMapped);
    if (err != cudaSuccess) {
      cudaGetLastError();
      return absl::ResourceExhaustedError(absl::StrCat(
          "cannot page-lock the ", region.size(), "-byte host region: ",
          cudaGetErrorString(err), " (lower --pinned_heap_bytes, or raise the "
          "locked-memory limit, ulimit -l)"));
    }
    void* device = nullptr;
    if (const cudaError_t mapped =
            cudaHostGetDevicePointer(&device, region.data(), 0);
        mapped != cudaSuccess) {
      cudaGetLastError();
      cudaHostUnregister(region.data());
      return CudaStatus(mapped, "cudaHostGetDevicePointer");
    }
    region_ = HostRegion{region, static_cast<std::byte*>(device)};
    return absl::OkStatus();
  }

  bool ReadsInPlace(ConstBytes bytes) const override {
    return region_.Contains(bytes);
  }

  absl::StatusOr<HostBuffer> AllocateHostBuffer(uint64_t bytes) override {
    KVQ_RETURN_IF_CUDA_ERROR(cudaSetDevice(gpu_));
    void* data = nullptr;
    // Portable: the memory counts as page-locked for every GPU, whichever
    // device the freeing thread has current.
    const cudaError_t err = cudaHostAlloc(&data, std::max<uint64_t>(bytes, 1),
                                          cudaHostAllocPortable);
    if (err != cudaSuccess) {
      cudaGetLastError();
      return absl::ResourceExhaustedError(absl::StrCat(
          "cannot allocate ", bytes, " bytes of page-locked host memory: ",
          cudaGetErrorString(err), "; lower --staging_bytes"));
    }
    return HostBuffer(data, bytes, [](void* p) { cudaFreeHost(p); });
  }

 private:
  // What a quantize that ran returns: the block's absmax as the CPU backend
  // computes it, or, if the kernel saw a NaN or Inf, the CPU path's error
  // naming the element (`copy_block` writes the block's bytes to host
  // memory for it: rare, the block is refused).
  static absl::StatusOr<float> Outcome(
      const BlockLayout& layout, DType dtype, const DeviceFlags& flags,
      ErrorSums* error,
      absl::FunctionRef<absl::Status(std::byte*)> copy_block) {
    if (flags.nonfinite != 0) {
      std::vector<std::byte> whole(layout.logical_bytes(dtype));
      KVQ_RETURN_IF_ERROR(copy_block(whole.data()));
      std::vector<uint8_t> scratch(layout.payload_bytes);
      absl::Status located =
          Quantize(layout, dtype, whole.data(), scratch.data());
      return located.ok() ? absl::InvalidArgumentError(
                                "data holds a NaN or Inf value")
                          : located;
    }
    // BlockAbsmax's arithmetic: 127 x the largest scale, the largest
    // magnitude the payload decodes to; the largest scale is the scale of
    // the largest |x|.
    if (error != nullptr) *error = {flags.error[0], flags.error[1]};
    return DequantizeValue(static_cast<int8_t>(kQMax),
                           ScaleFromAbsmax(flags.absmax));
  }

  absl::Status CheckPages(const BlockLayout& layout,
                          std::span<const uint32_t> pages) const {
    const uint64_t needed =
        (layout.payload_bytes + options_.page_bytes - 1) / options_.page_bytes;
    if (pages.size() != needed) {
      return absl::InternalError(absl::StrCat(
          "block of ", layout.payload_bytes, " payload bytes got ",
          pages.size(), " pages of ", options_.page_bytes, ", needs ", needed));
    }
    const uint64_t pages_total = options_.capacity_bytes / options_.page_bytes;
    for (uint32_t page : pages) {
      if (page >= pages_total) {
        return absl::InternalError(absl::StrCat(
            "page id ", page, " is outside the arena of ", pages_total,
            " pages"));
      }
    }
    return absl::OkStatus();
  }

  // How a put's block reaches the device.
  enum class Upload {
    kDirect,   // one piece in page-locked memory: DMA from it
    kGather,   // pieces in the registered region: the gather kernel
    kStaged,   // anything else: copied into staging, then DMA
    kUploaded,  // already in the device block buffer (a CudaUpload)
  };

  Upload UploadOf(const BlockBytes* src) const {
    if (src == nullptr) return Upload::kUploaded;
    if (src->contiguous() && HostMemoryAt(src->whole().data()).page_locked) {
      return Upload::kDirect;
    }
    for (ConstBytes piece : src->pieces()) {
      if (!ReadsInPlace(piece)) return Upload::kStaged;
    }
    return Upload::kGather;
  }

  // Moves `src` (null: the block is in ctx.block already, or on its way
  // there on ctx.stream) to the device and quantizes it into `pages`.
  absl::StatusOr<DeviceFlags> RunQuantize(StreamContext& ctx,
                                          const BlockLayout& layout,
                                          DType dtype, const BlockBytes* src,
                                          std::span<const uint32_t> pages,
                                          DataPathTimings* timings,
                                          bool sample) {
    const Upload upload = UploadOf(src);
    const uint64_t size = layout.logical_bytes(dtype);
    const std::span<const ConstBytes> pieces =
        src != nullptr ? src->pieces() : std::span<const ConstBytes>();
    const size_t gather_bytes =
        upload == Upload::kGather ? pieces.size() * sizeof(cuda::GatherPiece)
                                  : 0;
    // Staging layout: [block bytes, when staged][page ids][gather table]
    // [flags read back]; page ids and gather table go up in one DMA.
    const size_t table_at =
        upload == Upload::kStaged ? AlignUp(size, kStagingAlignment) : 0;
    const size_t gather_at = AlignUp(pages.size_bytes(), kStagingAlignment);
    const size_t upload_bytes = gather_at + gather_bytes;
    const size_t flags_at =
        AlignUp(table_at + upload_bytes, kStagingAlignment);
    KVQ_RETURN_IF_ERROR(ctx.staging.Reserve(flags_at + sizeof(DeviceFlags)));
    // An uploaded block's buffer was reserved by StartUpload: reserving
    // here again never reallocates it.
    KVQ_RETURN_IF_ERROR(ctx.block.Reserve(size));
    KVQ_RETURN_IF_ERROR(ctx.page_table.Reserve(upload_bytes));
    KVQ_RETURN_IF_ERROR(ctx.flags.Reserve(sizeof(DeviceFlags)));
    if (sample) KVQ_RETURN_IF_ERROR(ctx.decoded.Reserve(size));

    std::byte* host = ctx.staging.data();
    const Clock::time_point staged_from = Clock::now();
    if (upload == Upload::kStaged) src->CopyTo(host);
    std::memcpy(host + table_at, pages.data(), pages.size_bytes());
    uint64_t longest_piece = 0;
    if (upload == Upload::kGather) {
      auto* table =
          reinterpret_cast<cuda::GatherPiece*>(host + table_at + gather_at);
      uint64_t at = 0;
      for (size_t i = 0; i < pieces.size(); ++i) {
        table[i] = cuda::GatherPiece{region_.DeviceAddressOf(pieces[i]), at,
                                     pieces[i].size()};
        at += pieces[i].size();
        longest_piece = std::max<uint64_t>(longest_piece, pieces[i].size());
      }
    }
    const double staging_seconds = SecondsSince(staged_from);
    auto* host_flags = reinterpret_cast<DeviceFlags*>(host + flags_at);
    auto* device_flags = static_cast<DeviceFlags*>(ctx.flags.data());
    auto* device_tables = static_cast<std::byte*>(ctx.page_table.data());

    cudaStream_t s = ctx.stream;
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.marks[0], s));
    if (upload == Upload::kDirect || upload == Upload::kStaged) {
      KVQ_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(
          ctx.block.data(),
          upload == Upload::kDirect ? src->whole().data() : host, size,
          cudaMemcpyHostToDevice, s));
    }
    KVQ_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(device_tables, host + table_at,
                                             upload_bytes,
                                             cudaMemcpyHostToDevice, s));
    // The block's gets read its page ids from its slot.
    if (uint32_t* slot = table_slots_.SlotOf(pages); slot != nullptr) {
      KVQ_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(slot, device_tables,
                                               pages.size_bytes(),
                                               cudaMemcpyDeviceToDevice, s));
    }
    if (upload == Upload::kGather) {
      KVQ_RETURN_IF_ERROR(cuda::GatherPieces(
          reinterpret_cast<const cuda::GatherPiece*>(device_tables +
                                                     gather_at),
          static_cast<uint32_t>(pieces.size()), longest_piece,
          ctx.block.data(), s));
    }
    KVQ_RETURN_IF_CUDA_ERROR(
        cudaMemsetAsync(device_flags, 0, sizeof(DeviceFlags), s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.marks[1], s));
    const cuda::DevicePages dst{
        arena_, static_cast<const uint32_t*>(ctx.page_table.data()),
        options_.page_bytes};
    KVQ_RETURN_IF_ERROR(cuda::QuantizeToPages(
        layout, dtype, ctx.block.data(), dst, &device_flags->absmax,
        &device_flags->nonfinite, s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.marks[2], s));
    if (sample) {
      KVQ_RETURN_IF_ERROR(cuda::DequantizeFromPages(layout, dst, dtype,
                                                    ctx.decoded.data(), s));
      KVQ_RETURN_IF_ERROR(cuda::SumSquaredErrorOnDevice(
          dtype, ctx.block.data(), ctx.decoded.data(), layout.elements,
          device_flags->error, s));
    }
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.marks[4], s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(host_flags, device_flags,
                                             sizeof(DeviceFlags),
                                             cudaMemcpyDeviceToHost, s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.marks[3], s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(s));
    if (timings != nullptr) {
      timings->host_to_device_seconds =
          staging_seconds + ElapsedSeconds(ctx.marks[0], ctx.marks[1]);
      timings->kernel_seconds = ElapsedSeconds(ctx.marks[1], ctx.marks[2]);
      timings->device_to_host_seconds =
          ElapsedSeconds(ctx.marks[4], ctx.marks[3]);
    }
    return *host_flags;
  }

  absl::Status RunDequantize(StreamContext& ctx, const BlockLayout& layout,
                             DType dtype, std::span<const uint32_t> pages,
                             std::span<std::byte> dst,
                             DataPathTimings* timings,
                             const ReadyPrefixes* ready) {
    const HostMemory dst_memory = HostMemoryAt(dst.data());
    const bool direct = dst_memory.page_locked;
    // In pieces only where DMA lands in `dst` itself: through staging, the
    // block is final only after the copy out of it.
    const uint64_t piece =
        direct && ready != nullptr ? std::max<uint64_t>(ready->piece_bytes, 1)
                                   : dst.size();
    const size_t piece_count =
        dst.empty() ? 0 : static_cast<size_t>((dst.size() + piece - 1) / piece);
    const bool in_pieces = piece_count > 1;
    // A block that goes back whole into page-locked memory is written there
    // by the kernel itself, over PCIe: no DMA after it. Measured on the H200
    // machine (bench/results/README.md), a 1 MiB get's fetch 0.082 -> 0.070
    // ms. In pieces, the DMA stays, so that the caller sends the front while
    // the rest is on its way.
    const bool kernel_writes_host =
        direct && !in_pieces && dst_memory.device_address != nullptr;
    // The page ids: the block's slot, which its put wrote, else uploaded.
    const uint32_t* slot = table_slots_.SlotOf(pages);
    const size_t ids_bytes = slot == nullptr ? pages.size_bytes() : 0;
    // Staging layout: [page ids, when uploaded][block bytes read back,
    // unless DMA writes them to `dst`].
    const size_t block_at = AlignUp(ids_bytes, kStagingAlignment);
    KVQ_RETURN_IF_ERROR(
        ctx.staging.Reserve(block_at + (direct ? 0 : dst.size())));
    if (!kernel_writes_host) KVQ_RETURN_IF_ERROR(ctx.block.Reserve(dst.size()));
    if (slot == nullptr) KVQ_RETURN_IF_ERROR(ctx.page_table.Reserve(ids_bytes));

    std::byte* host = ctx.staging.data();
    std::memcpy(host, pages.data(), ids_bytes);
    std::byte* host_block = direct ? dst.data() : host + block_at;

    cudaStream_t s = ctx.stream;
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.marks[0], s));
    if (slot == nullptr) {
      KVQ_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(ctx.page_table.data(), host,
                                               ids_bytes,
                                               cudaMemcpyHostToDevice, s));
    }
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.marks[1], s));
    const cuda::DevicePages src{
        arena_,
        slot != nullptr ? slot
                        : static_cast<const uint32_t*>(ctx.page_table.data()),
        options_.page_bytes};
    void* kernel_dst =
        kernel_writes_host ? dst_memory.device_address : ctx.block.data();
    KVQ_RETURN_IF_ERROR(
        cuda::DequantizeFromPages(layout, src, dtype, kernel_dst, s));
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.marks[2], s));
    if (in_pieces) {
      while (ctx.pieces.size() < piece_count) {
        cudaEvent_t e = nullptr;
        KVQ_RETURN_IF_CUDA_ERROR(
            cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
        ctx.pieces.push_back(e);
      }
    }
    const auto* device_block = static_cast<const std::byte*>(ctx.block.data());
    for (size_t k = 0; !kernel_writes_host && k < piece_count; ++k) {
      const uint64_t from = k * piece;
      const uint64_t n = std::min(piece, dst.size() - from);
      KVQ_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(host_block + from,
                                               device_block + from, n,
                                               cudaMemcpyDeviceToHost, s));
      if (in_pieces) {
        KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.pieces[k], s));
      }
    }
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.marks[3], s));
    if (in_pieces) {
      for (size_t k = 0; k + 1 < piece_count; ++k) {
        KVQ_RETURN_IF_CUDA_ERROR(cudaEventSynchronize(ctx.pieces[k]));
        ready->ready((k + 1) * piece);
      }
    }
    KVQ_RETURN_IF_CUDA_ERROR(cudaStreamSynchronize(s));
    const Clock::time_point unstaged_from = Clock::now();
    if (!direct) ParallelCopy(dst.data(), host_block, dst.size());
    const double unstaging_seconds = SecondsSince(unstaged_from);
    if (timings != nullptr) {
      timings->host_to_device_seconds =
          ElapsedSeconds(ctx.marks[0], ctx.marks[1]);
      timings->kernel_seconds = ElapsedSeconds(ctx.marks[1], ctx.marks[2]);
      timings->device_to_host_seconds =
          ElapsedSeconds(ctx.marks[2], ctx.marks[3]) + unstaging_seconds;
    }
    return absl::OkStatus();
  }

  const int gpu_;
  const std::string device_name_;
  uint8_t* const arena_;
  const ArenaOptions options_;
  const PageTableSlots table_slots_;
  StreamContexts contexts_;
  // RegisterHostRegion's region; set once, before any call that reads it.
  HostRegion region_;
};

absl::StatusOr<std::unique_ptr<BlockUpload>> CudaBackend::StartUpload(
    const BlockLayout& layout, DType dtype) {
  if (region_.empty()) {
    return absl::UnavailableError("no host region is registered");
  }
  absl::StatusOr<std::unique_ptr<StreamContext>> ctx =
      contexts_.BorrowForUpload();
  if (!ctx.ok()) return ctx.status();
  // Reserved now, so that no append's bytes land in a buffer that a later
  // Reserve would replace.
  if (absl::Status s = (*ctx)->block.Reserve(layout.logical_bytes(dtype));
      !s.ok()) {
    contexts_.ReturnFromUpload(*std::move(ctx), /*healthy=*/true);
    return s;
  }
  return std::make_unique<CudaUpload>(gpu_, &region_, &contexts_,
                                      *std::move(ctx), layout, dtype);
}

absl::StatusOr<float> CudaBackend::QuantizeUploaded(
    BlockUpload& upload, std::span<const uint32_t> pages,
    DataPathTimings* timings, ErrorSums* error) {
  auto* cuda_upload = dynamic_cast<CudaUpload*>(&upload);
  if (cuda_upload == nullptr) {
    return absl::InternalError("the upload was not started by this backend");
  }
  const BlockLayout& layout = cuda_upload->layout();
  const DType dtype = cuda_upload->dtype();
  absl::Status checked = CheckPages(layout, pages);
  if (checked.ok()) checked = CudaStatus(cudaSetDevice(gpu_), "cudaSetDevice");
  absl::StatusOr<std::unique_ptr<StreamContext>> ctx =
      checked.ok() ? cuda_upload->TakeContext()
                   : absl::StatusOr<std::unique_ptr<StreamContext>>(checked);
  if (!ctx.ok()) {
    cuda_upload->Release();  // spent: its context goes back
    return ctx.status();
  }
  absl::StatusOr<DeviceFlags> flags =
      RunQuantize(**ctx, layout, dtype, /*src=*/nullptr, pages, timings,
                  /*sample=*/error != nullptr);
  if (flags.ok() && timings != nullptr) {
    timings->host_to_device_seconds += cuda_upload->AppendSeconds(**ctx);
  }
  absl::StatusOr<float> outcome =
      flags.ok() ? Outcome(layout, dtype, *flags, error,
                           [&](std::byte* whole) {
                             return CudaStatus(
                                 cudaMemcpy(whole, (*ctx)->block.data(),
                                            layout.logical_bytes(dtype),
                                            cudaMemcpyDeviceToHost),
                                 "cudaMemcpy (locating a NaN or Inf)");
                           })
                 : absl::StatusOr<float>(flags.status());
  contexts_.ReturnFromUpload(*std::move(ctx), flags.ok());
  return outcome;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(
    const ArenaOptions& options, int gpu) {
  if (options.page_bytes == 0 || options.page_bytes % kPageAlignment != 0 ||
      options.page_bytes >= (uint64_t{1} << 31)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--page_bytes must be a multiple of ", kPageAlignment,
        " below 2^31 for the cuda backend, got ", options.page_bytes));
  }
  if (options.capacity_bytes < options.page_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--pool_bytes must hold at least one page of ", options.page_bytes,
        " bytes, got ", options.capacity_bytes));
  }
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat(
        "no CUDA GPU is usable (",
        err != cudaSuccess ? cudaGetErrorString(err) : "0 devices",
        "); run with --device=cpu or on a machine with a GPU"));
  }
  if (gpu < 0 || gpu >= count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--gpu=", gpu, " but this machine has ", count, " GPU(s) (0..",
        count - 1, ")"));
  }
  KVQ_RETURN_IF_CUDA_ERROR(cudaSetDevice(gpu));
  cudaDeviceProp prop{};
  KVQ_RETURN_IF_CUDA_ERROR(cudaGetDeviceProperties(&prop, gpu));
  // Never managed memory: one plain device allocation is the whole pool,
  // the pages and then their table slots.
  PageTableSlots table_slots(options.capacity_bytes / options.page_bytes,
                             options.page_bytes);
  const uint64_t device_bytes = options.capacity_bytes + table_slots.bytes();
  void* arena = nullptr;
  err = cudaMalloc(&arena, device_bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate a ", options.capacity_bytes, "-byte pool (",
        device_bytes, " bytes with its page tables) on GPU ", gpu, " (",
        prop.name, ", ", free_bytes, " bytes free): ",
        cudaGetErrorString(err), "; lower --pool_bytes"));
  }
  auto* pages = static_cast<uint8_t*>(arena);
  // Zeroed: a slot no put has written yet names page 0, inside the arena.
  err = cudaMemset(pages + options.capacity_bytes, 0, table_slots.bytes());
  if (err != cudaSuccess) {
    cudaGetLastError();
    cudaFree(arena);
    return CudaStatus(err, "cudaMemset (page table slots)");
  }
  table_slots.Place(
      reinterpret_cast<uint32_t*>(pages + options.capacity_bytes));
  return std::make_unique<CudaBackend>(
      gpu, absl::StrCat(prop.name, " (GPU ", gpu, ")"), pages, options,
      table_slots);
}

}  // namespace kvq
