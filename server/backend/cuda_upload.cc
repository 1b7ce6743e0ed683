#include "server/backend/cuda_upload.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/host_gather.h"
#include "server/backend/cuda_memory.h"

namespace kvq {

CudaUpload::CudaUpload(int gpu, const HostRegion* region,
                       StreamContexts* contexts,
                       std::unique_ptr<StreamContext> ctx,
                       const BlockLayout& layout, DType dtype)
    : gpu_(gpu),
      region_(region),
      contexts_(contexts),
      ctx_(std::move(ctx)),
      layout_(layout),
      dtype_(dtype) {}

CudaUpload::~CudaUpload() { Release(); }

absl::Status CudaUpload::Append(std::span<const ConstBytes> pieces) {
  KVQ_RETURN_IF_ERROR(status_);
  status_ = Enqueue(pieces);
  return status_;
}

uint64_t CudaUpload::appends_read() {
  while (status_.ok() && read_ < appends_) {
    const cudaError_t done = cudaEventQuery(ctx_->appends[2 * read_ + 1]);
    if (done == cudaErrorNotReady) break;
    if (done != cudaSuccess) {
      cudaGetLastError();
      status_ = CudaStatus(done, "cudaEventQuery (upload)");
      break;
    }
    ++read_;
  }
  return read_;
}

absl::StatusOr<std::unique_ptr<StreamContext>> CudaUpload::TakeContext() {
  KVQ_RETURN_IF_ERROR(status_);
  if (ctx_ == nullptr) {
    return absl::FailedPreconditionError("this upload is already stored");
  }
  const uint64_t expected = layout_.logical_bytes(dtype_);
  if (bytes_appended_ != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("block data is ", bytes_appended_, " bytes, expected ",
                     expected));
  }
  return std::move(ctx_);
}

double CudaUpload::AppendSeconds(const StreamContext& ctx) const {
  double seconds = 0;
  for (uint64_t k = 0; k < appends_; ++k) {
    seconds += ElapsedSeconds(ctx.appends[2 * k], ctx.appends[2 * k + 1]);
  }
  return seconds;
}

absl::Status CudaUpload::Enqueue(std::span<const ConstBytes> pieces) {
  if (ctx_ == nullptr) {
    return absl::FailedPreconditionError("this upload is already stored");
  }
  uint64_t bytes = 0;
  for (ConstBytes piece : pieces) bytes += piece.size();
  const uint64_t expected = layout_.logical_bytes(dtype_);
  if (bytes > expected - bytes_appended_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block data goes past its ", expected, " bytes: ",
        bytes_appended_ + bytes, " appended"));
  }
  // Appends come from the stream's reader, a gRPC thread that never chose
  // a device.
  KVQ_RETURN_IF_CUDA_ERROR(cudaSetDevice(gpu_));
  StreamContext& ctx = *ctx_;
  while (ctx.appends.size() < 2 * (appends_ + 1)) {
    cudaEvent_t e = nullptr;
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventCreate(&e));
    ctx.appends.push_back(e);
  }
  cudaStream_t s = ctx.stream;
  auto* block = static_cast<std::byte*>(ctx.block.data());
  KVQ_RETURN_IF_CUDA_ERROR(cudaEventRecord(ctx.appends[2 * appends_], s));
  cuda::GatherPieceList list;
  uint64_t longest = 0;
  auto flush = [&]() -> absl::Status {
    KVQ_RETURN_IF_ERROR(cuda::GatherListedPieces(list, longest, block, s));
    list.count = 0;
    longest = 0;
    return absl::OkStatus();
  };
  uint64_t at = bytes_appended_;
  for (ConstBytes piece : pieces) {
    if (piece.empty()) continue;
    if (region_->Contains(piece)) {
      list.pieces[list.count++] =
          cuda::GatherPiece{region_->DeviceAddressOf(piece), at, piece.size()};
      longest = std::max<uint64_t>(longest, piece.size());
      if (list.count == cuda::kMaxListedPieces) KVQ_RETURN_IF_ERROR(flush());
    } else {
      KVQ_RETURN_IF_CUDA_ERROR(cudaMemcpyAsync(block + at, piece.data(),
                                               piece.size(),
                                               cudaMemcpyHostToDevice, s));
    }
    at += piece.size();
  }
  KVQ_RETURN_IF_ERROR(flush());
  KVQ_RETURN_IF_CUDA_ERROR(
      cudaEventRecord(ctx.appends[2 * appends_ + 1], s));
  ++appends_;
  bytes_appended_ = at;
  return absl::OkStatus();
}

void CudaUpload::Release() {
  if (ctx_ == nullptr) return;
  // Nothing may read the caller's memory once the upload is gone.
  const bool healthy =
      status_.ok() && cudaStreamSynchronize(ctx_->stream) == cudaSuccess;
  contexts_->ReturnFromUpload(std::move(ctx_), healthy);
}

}  // namespace kvq
