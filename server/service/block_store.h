// BlockStore: the data path between the service and the pool + backend.
//
// Store: pool.Reserve -> backend.QuantizeInto (or QuantizeUploaded) ->
// pool.Commit. The block is
// visible only after Commit; on any failure the reservation is dropped, so
// no page is leaked and nothing is published (a failed overwrite leaves the
// old block in place). Every `quality_sample_every`-th stored block is also
// decoded again by the backend (on the GPU for CUDA) and its relative L2
// error against the input is recorded.
//
// Fetch: pool.Pin -> range check -> backend.DequantizeFrom into a buffer of
// the StagingPool; the pin is released before Fetch returns, or as soon as
// the backend reports the front of the block final (FetchProgress), so a
// slow reader never holds pool pages while its answer is being sent (only
// the buffer).
//
// Records in `metrics`, when it is not null, once per Store / Fetch
// whatever its outcome: the whole call (store, fetch stages; fetch less the
// time spent in FetchProgress::ready, which is the caller's) and its pool
// calls (index); and the backend's copies and kernel, and the sampled
// quality. Thread-safe.

#ifndef KVQ_SERVER_SERVICE_BLOCK_STORE_H_
#define KVQ_SERVER_SERVICE_BLOCK_STORE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "kernels/format.h"
#include "server/backend/backend.h"
#include "server/metrics/server_metrics.h"
#include "server/pool/block_pool.h"
#include "server/service/header_validation.h"
#include "server/service/staging_pool.h"

namespace kvq {

// A block read back. Dropping it gives its buffer back to the StagingPool.
struct FetchedBlock {
  DType dtype = DType::kFp32;  // the dtype of `data`
  BlockLayout layout;
  StagingBuffer data;  // layout.logical_bytes(dtype) bytes
};

// Lets a Fetch caller send a block while it is still being read back: ready
// gets the block (dtype, layout and buffer final) each time a longer prefix
// of its data is final, in steps of about piece_bytes(data.size()) (asked
// once the block is found; 0 counts as 1) where the backend copies in
// pieces (ReadyPrefixes), and data.size() last when Fetch succeeds. Both
// are called on the thread that called Fetch, before it returns.
struct FetchProgress {
  absl::FunctionRef<uint64_t(uint64_t block_bytes)> piece_bytes;
  absl::FunctionRef<void(const std::shared_ptr<const FetchedBlock>& block,
                         uint64_t ready_bytes)>
      ready;
};

class BlockStore {
 public:
  // `pool`, `backend`, `staging` and `metrics` (may be null) must outlive
  // the store. quality_sample_every = 0 disables quality sampling.
  BlockStore(BlockPool* pool, Backend* backend, StagingPool* staging,
             ServerMetrics* metrics, uint32_t quality_sample_every);

  // Stores `data` (header.logical_bytes() bytes, whole or in pieces) under
  // (header.ns, header.key); returns the stored (quantized payload) bytes.
  // INVALID_ARGUMENT for non-finite data, RESOURCE_EXHAUSTED when the pool
  // cannot make room.
  absl::StatusOr<uint64_t> Store(const PutHeader& header,
                                 const BlockBytes& data);
  // Store for a block the backend took while it arrived (StartUpload), all
  // its bytes appended. The caller drops `upload` afterwards, whatever the
  // outcome (spent, or abandoned when the pool had no room).
  absl::StatusOr<uint64_t> Store(const PutHeader& header,
                                 BlockUpload& upload);

  // Reads (ns, key) dequantized to `dtype` (nullopt: as put), telling
  // `progress` (may be null) as it goes. NOT_FOUND on a miss; OUT_OF_RANGE
  // when the block holds values `dtype` cannot represent.
  absl::StatusOr<std::shared_ptr<const FetchedBlock>> Fetch(
      std::string_view ns, std::string_view key, std::optional<DType> dtype,
      const FetchProgress* progress = nullptr);

 private:
  // quantize(pages, timings, error): the backend call that fills the
  // reserved pages.
  using QuantizeCall = absl::FunctionRef<absl::StatusOr<float>(
      std::span<const uint32_t>, DataPathTimings*, ErrorSums*)>;
  absl::StatusOr<uint64_t> StoreWith(const PutHeader& header,
                                     QuantizeCall quantize);
  bool ShouldSampleQuality();
  void ObserveTimings(const DataPathTimings& timings, bool put);

  BlockPool* const pool_;
  Backend* const backend_;
  StagingPool* const staging_;
  ServerMetrics* const metrics_;
  const uint32_t quality_sample_every_;
  std::atomic<uint64_t> stores_{0};
};

}  // namespace kvq

#endif  // KVQ_SERVER_SERVICE_BLOCK_STORE_H_
