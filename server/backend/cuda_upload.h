// CudaUpload: the CUDA backend's BlockUpload, a put on its way to the GPU
// while it arrives (Backend::StartUpload).
//
// It holds a stream context (StreamContexts::BorrowForUpload) from the
// block's first chunk to its store. Each append gathers its pieces into the
// context's device block buffer at once: the pieces in the registered host
// region by one launch of the gather kernel, its piece list a kernel
// parameter (cuda::GatherListedPieces, up to 64 pieces a launch), any other
// piece by a DMA of its own (from pageable memory, CUDA copies it before
// cudaMemcpyAsync returns). A pair of events surrounds each append, so that
// its end can be polled (appends_read) and its GPU time is known.
//
// The backend stores the block with the context it takes back
// (TakeContext). An upload destroyed before that, or whose context was never
// taken, synchronizes its stream (nothing reads the caller's memory after
// it) and gives the context back.
//
// One thread at a time (BlockUpload's contract).

#ifndef KVQ_SERVER_BACKEND_CUDA_UPLOAD_H_
#define KVQ_SERVER_BACKEND_CUDA_UPLOAD_H_

#include <cstdint>
#include <memory>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/format.h"
#include "server/backend/backend.h"
#include "server/backend/cuda_host_region.h"
#include "server/backend/cuda_stream_contexts.h"

namespace kvq {

class CudaUpload final : public BlockUpload {
 public:
  // `ctx` comes from contexts->BorrowForUpload(), its block buffer reserved
  // for the whole block; `region` and `contexts` outlive the upload.
  CudaUpload(int gpu, const HostRegion* region, StreamContexts* contexts,
             std::unique_ptr<StreamContext> ctx, const BlockLayout& layout,
             DType dtype);
  ~CudaUpload() override;

  absl::Status Append(std::span<const ConstBytes> pieces) override;
  uint64_t appends_read() override;

  // The context, for the quantize, once every byte is appended; the upload
  // is spent afterwards, and the caller gives the context back
  // (StreamContexts::ReturnFromUpload).
  absl::StatusOr<std::unique_ptr<StreamContext>> TakeContext();

  // GPU time of the appends; once ctx's stream has run past them.
  double AppendSeconds(const StreamContext& ctx) const;

  const BlockLayout& layout() const { return layout_; }
  DType dtype() const { return dtype_; }

  // Gives the context back (a spent upload's, or on destruction).
  void Release();

 private:
  absl::Status Enqueue(std::span<const ConstBytes> pieces);

  const int gpu_;
  const HostRegion* const region_;
  StreamContexts* const contexts_;
  std::unique_ptr<StreamContext> ctx_;  // null once taken or released
  const BlockLayout layout_;
  const DType dtype_;
  uint64_t appends_ = 0;
  uint64_t read_ = 0;    // appends known to be read
  absl::Status status_;  // the first failure; the upload is dead then
};

}  // namespace kvq

#endif  // KVQ_SERVER_BACKEND_CUDA_UPLOAD_H_
