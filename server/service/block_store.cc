#include "server/service/block_store.h"

#include <algorithm>
#include <chrono>
#include <new>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/quantize.h"
#include "server/service/seconds_since.h"
#include "server/service/string_views.h"

namespace kvq {
namespace {

constexpr DType kAllDTypes[] = {DType::kFp16, DType::kBf16, DType::kFp32};

absl::string_view WireDTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFp16:
      return "DTYPE_FP16";
    case DType::kBf16:
      return "DTYPE_BF16";
    case DType::kFp32:
      return "DTYPE_FP32";
  }
  return "DTYPE_UNSPECIFIED";
}

// OUT_OF_RANGE when a block put as `stored` holds values beyond what
// `wanted` can represent: converting would turn them into infinities.
absl::Status CheckRange(const BlockMeta& meta, DType wanted) {
  if (wanted == meta.dtype || meta.absmax <= DTypeMaxFinite(wanted)) {
    return absl::OkStatus();
  }
  std::vector<absl::string_view> fitting;
  for (DType d : kAllDTypes) {
    if (meta.absmax <= DTypeMaxFinite(d)) fitting.push_back(WireDTypeName(d));
  }
  return absl::OutOfRangeError(absl::StrCat(
      "dtype ", WireDTypeName(wanted), " cannot hold this block: it was put as ",
      ToAbsl(DTypeName(meta.dtype)), " with values up to |", meta.absmax,
      "|, above the largest finite ", ToAbsl(DTypeName(wanted)), " (",
      DTypeMaxFinite(wanted), "); ask for ", absl::StrJoin(fitting, " or "),
      ", or leave dtype unspecified"));
}

// One observation of `stage` per call, recorded when the call returns,
// whichever way it returns: the time between each Start() and Stop() (the
// first Start() at construction when `running`).
class StageTimer {
 public:
  StageTimer(ServerMetrics* metrics, Stage stage, bool running)
      : metrics_(metrics), stage_(stage) {
    if (running) Start();
  }
  ~StageTimer() {
    if (running_) Stop();
    if (metrics_ != nullptr) metrics_->ObserveStage(stage_, seconds_);
  }
  StageTimer(const StageTimer&) = delete;
  StageTimer& operator=(const StageTimer&) = delete;

  void Start() {
    start_ = std::chrono::steady_clock::now();
    running_ = true;
  }
  void Stop() {
    seconds_ += SecondsSince(start_);
    running_ = false;
  }

 private:
  ServerMetrics* const metrics_;
  const Stage stage_;
  std::chrono::steady_clock::time_point start_;
  bool running_ = false;
  double seconds_ = 0;
};

}  // namespace

BlockStore::BlockStore(BlockPool* pool, Backend* backend,
                       StagingPool* staging, ServerMetrics* metrics,
                       uint32_t quality_sample_every)
    : pool_(pool),
      backend_(backend),
      staging_(staging),
      metrics_(metrics),
      quality_sample_every_(quality_sample_every) {}

absl::StatusOr<uint64_t> BlockStore::Store(const PutHeader& header,
                                           const BlockBytes& data) {
  return StoreWith(header, [&](std::span<const uint32_t> pages,
                               DataPathTimings* timings, ErrorSums* error) {
    return backend_->QuantizeInto(header.layout, header.dtype, data, pages,
                                  timings, error);
  });
}

absl::StatusOr<uint64_t> BlockStore::Store(const PutHeader& header,
                                           BlockUpload& upload) {
  return StoreWith(header, [&](std::span<const uint32_t> pages,
                               DataPathTimings* timings, ErrorSums* error) {
    return backend_->QuantizeUploaded(upload, pages, timings, error);
  });
}

absl::StatusOr<uint64_t> BlockStore::StoreWith(const PutHeader& header,
                                               QuantizeCall quantize) {
  const BlockLayout& layout = header.layout;
  StageTimer store(metrics_, Stage::kStore, /*running=*/true);
  StageTimer index(metrics_, Stage::kIndex, /*running=*/true);
  absl::StatusOr<Reservation> reservation = pool_->Reserve(layout.payload_bytes);
  index.Stop();
  if (!reservation.ok()) return reservation.status();

  // A sampled block is decoded from its reserved pages, before anyone else
  // can see (or replace) it, into the dtype it was put with: the error a
  // reader asking for that dtype gets. The backend measures it where the
  // block is; a block that cannot be decoded is not stored.
  const bool sample = ShouldSampleQuality();
  ErrorSums error;
  DataPathTimings timings;
  absl::StatusOr<float> absmax =
      quantize(reservation->pages(), &timings, sample ? &error : nullptr);
  ObserveTimings(timings, /*put=*/true);
  if (!absmax.ok()) return absmax.status();  // drops the reservation
  if (sample && metrics_ != nullptr) {
    metrics_->ObserveQuantError(error.RelativeL2());
  }

  BlockMeta meta;
  meta.dtype = header.dtype;
  meta.layout = layout;
  meta.logical_bytes = header.logical_bytes();
  meta.absmax = *absmax;
  index.Start();
  pool_->Commit(*std::move(reservation), header.ns, header.key, meta);
  index.Stop();
  return layout.payload_bytes;
}

absl::StatusOr<std::shared_ptr<const FetchedBlock>> BlockStore::Fetch(
    std::string_view ns, std::string_view key, std::optional<DType> dtype,
    const FetchProgress* progress) {
  StageTimer fetch(metrics_, Stage::kFetch, /*running=*/true);
  std::optional<PinnedBlock> pinned;
  {
    StageTimer index(metrics_, Stage::kIndex, /*running=*/true);
    pinned = pool_->Pin(ns, key);
  }
  if (!pinned.has_value()) {
    return absl::NotFoundError(absl::StrCat("key ", DescribeKey(key),
                                            " is not held in namespace \"", ToAbsl(ns),
                                            "\""));
  }
  const BlockMeta& meta = pinned->meta();
  auto fetched = std::make_shared<FetchedBlock>();
  fetched->dtype = dtype.value_or(meta.dtype);
  fetched->layout = meta.layout;
  if (absl::Status s = CheckRange(meta, fetched->dtype); !s.ok()) return s;

  absl::StatusOr<StagingBuffer> out =
      staging_->Acquire(meta.layout.logical_bytes(fetched->dtype));
  if (!out.ok()) return out.status();
  fetched->data = *std::move(out);
  const std::shared_ptr<const FetchedBlock> shared = fetched;
  // The backend is done with the pages once it reports a prefix: the pin
  // goes then, so that a slow reader of the rest holds no pool pages.
  // The caller's time in `ready` (sending) is not the fetch's: the fetch
  // stage stops meanwhile, so that it and the send stage do not overlap.
  auto report = [&](uint64_t ready_bytes) {
    pinned.reset();
    fetch.Stop();
    progress->ready(shared, ready_bytes);
    fetch.Start();
  };
  const ReadyPrefixes prefixes{
      progress != nullptr
          ? std::max<uint64_t>(progress->piece_bytes(fetched->data.size()), 1)
          : 1,
      report};
  DataPathTimings timings;
  absl::Status s = backend_->DequantizeFrom(
      fetched->layout, pinned->pages(), fetched->dtype, fetched->data.bytes(),
      &timings, progress != nullptr ? &prefixes : nullptr);
  ObserveTimings(timings, /*put=*/false);
  pinned.reset();
  if (!s.ok()) return s;
  if (progress != nullptr) report(fetched->data.size());
  return shared;
}

bool BlockStore::ShouldSampleQuality() {
  if (quality_sample_every_ == 0) return false;
  const uint64_t n = stores_.fetch_add(1, std::memory_order_relaxed) + 1;
  return n % quality_sample_every_ == 0;
}

void BlockStore::ObserveTimings(const DataPathTimings& timings, bool put) {
  if (metrics_ == nullptr) return;
  // A stage a backend does not have (the CPU has no copies) reports 0 and
  // is not observed, so its histogram is not flooded with zeros.
  if (timings.host_to_device_seconds > 0) {
    metrics_->ObserveStage(Stage::kHostToDevice,
                           timings.host_to_device_seconds);
  }
  if (timings.kernel_seconds > 0) {
    metrics_->ObserveStage(put ? Stage::kQuantize : Stage::kDequantize,
                           timings.kernel_seconds);
  }
  if (timings.device_to_host_seconds > 0) {
    metrics_->ObserveStage(Stage::kDeviceToHost,
                           timings.device_to_host_seconds);
  }
}

}  // namespace kvq
