// BlockStore over a real pool and the CPU backend: puts are atomic (a refused
// block leaves nothing behind and leaks no page), gets are exact, and reads
// that a dtype cannot represent are refused with an actionable message.

#include "server/service/block_store.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/quantize.h"
#include "server/metrics/server_metrics.h"
#include "tests/unit/service_test_util.h"

namespace kvq {
namespace {

using ::kvq::service_testing::kAllDTypes;
using ::kvq::service_testing::kAllGranularities;
using ::kvq::service_testing::RandomBlockBytes;
using ::kvq::service_testing::SeededTest;
using ::kvq::service_testing::SetElement;
using ::testing::HasSubstr;

constexpr uint64_t kPageBytes = 256;
constexpr uint64_t kStagingBytes = uint64_t{16} << 20;

std::span<const std::byte> AsBytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

std::string AsString(std::span<const std::byte> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// An upload that collects the block's bytes as they are appended.
class CollectedUpload final : public BlockUpload {
 public:
  CollectedUpload(const BlockLayout& layout, DType dtype)
      : layout(layout), dtype(dtype) {}
  absl::Status Append(std::span<const ConstBytes> pieces) override {
    for (ConstBytes piece : pieces) {
      bytes.append(reinterpret_cast<const char*>(piece.data()), piece.size());
    }
    bytes_appended_ = bytes.size();
    ++appends_;
    return absl::OkStatus();
  }
  uint64_t appends_read() override { return appends_; }

  const BlockLayout layout;
  const DType dtype;
  std::string bytes;

 private:
  uint64_t appends_ = 0;
};

// The CPU backend taking puts while they arrive, as the CUDA backend does;
// QuantizeUploaded fails as a device fault would when `fail` says so.
class UploadingCpuBackend final : public Backend {
 public:
  explicit UploadingCpuBackend(std::unique_ptr<Backend> cpu)
      : cpu_(std::move(cpu)) {}

  std::string_view name() const override { return cpu_->name(); }
  std::string device_name() const override { return cpu_->device_name(); }
  absl::StatusOr<float> QuantizeInto(const BlockLayout& layout, DType dtype,
                                     const BlockBytes& src,
                                     std::span<const uint32_t> pages,
                                     DataPathTimings* timings,
                                     ErrorSums* error) override {
    return cpu_->QuantizeInto(layout, dtype, src, pages, timings, error);
  }
  absl::Status DequantizeFrom(const BlockLayout& layout,
                              std::span<const uint32_t> pages, DType dtype,
                              std::span<std::byte> dst,
                              DataPathTimings* timings,
                              const ReadyPrefixes* ready) override {
    return cpu_->DequantizeFrom(layout, pages, dtype, dst, timings, ready);
  }
  absl::StatusOr<HostBuffer> AllocateHostBuffer(uint64_t bytes) override {
    return cpu_->AllocateHostBuffer(bytes);
  }
  absl::StatusOr<std::unique_ptr<BlockUpload>> StartUpload(
      const BlockLayout& layout, DType dtype) override {
    return std::make_unique<CollectedUpload>(layout, dtype);
  }
  absl::StatusOr<float> QuantizeUploaded(BlockUpload& upload,
                                         std::span<const uint32_t> pages,
                                         DataPathTimings* timings,
                                         ErrorSums* error) override {
    ++uploads_quantized;
    if (fail) return absl::InternalError("device fault (injected)");
    auto& collected = static_cast<CollectedUpload&>(upload);
    return cpu_->QuantizeInto(
        collected.layout, collected.dtype,
        ConstBytes(reinterpret_cast<const std::byte*>(collected.bytes.data()),
                   collected.bytes.size()),
        pages, timings, error);
  }

  bool fail = false;
  int uploads_quantized = 0;

 private:
  std::unique_ptr<Backend> cpu_;
};

class BlockStoreTest : public SeededTest {
 protected:
  void MakeStore(uint64_t pages, EvictionPolicy eviction = EvictionPolicy::kLru,
                 uint32_t quality_sample_every = 0) {
    pool_ = *BlockPool::Create(
        PoolOptions{pages * kPageBytes, kPageBytes, eviction});
    backend_ = *MakeCpuBackend(ArenaOptions{pages * kPageBytes, kPageBytes});
    if (uploading_) {
      auto uploading =
          std::make_unique<UploadingCpuBackend>(std::move(backend_));
      uploading_backend_ = uploading.get();
      backend_ = std::move(uploading);
    }
    BlockPool* pool = pool_.get();
    metrics_ = std::make_unique<ServerMetrics>(
        BuildInfo{"test", "test", "cpu", "test"},
        [pool] { return pool->Stats(); });
    staging_ = std::make_unique<StagingPool>(backend_.get(), kStagingBytes);
    store_ = std::make_unique<BlockStore>(pool_.get(), backend_.get(),
                                          staging_.get(), metrics_.get(),
                                          quality_sample_every);
  }

  PutHeader Header(const std::string& key, DType dtype, BlockShape shape,
                   QuantSpec spec = {}) {
    PutHeader header;
    header.ns = "ns";
    header.key = key;
    header.dtype = dtype;
    header.layout = *MakeLayout(shape, spec);
    return header;
  }

  // A block of a random shape in `dtype` at `granularity` (groups of 8).
  PutHeader RandomHeader(const std::string& key, DType dtype,
                         Granularity granularity) {
    const BlockShape shape{2, static_cast<uint32_t>(Uniform(1, 40)),
                           static_cast<uint32_t>(Uniform(1, 4)), 32};
    return Header(key, dtype, shape,
                  {granularity, granularity == Granularity::kGroup ? 8u : 0u});
  }

  // Fills the pool with one-page blocks and deletes every other one, so that
  // the only free pages, where later blocks land, are scattered.
  void Fragment() {
    const PutHeader small = Header("", DType::kFp32, {1, 1, 1, 60});
    const uint64_t pages = pool_->pages_total();
    for (uint64_t i = 0; i < pages; ++i) {
      PutHeader h = small;
      h.key = "filler" + std::to_string(i);
      ASSERT_TRUE(store_->Store(h, AsBytes(RandomBlockBytes(
                                      DType::kFp32, 60, rng_))).ok());
    }
    ASSERT_EQ(pool_->Stats().pages_used, pages);
    for (uint64_t i = 0; i < pages; i += 2) {
      ASSERT_TRUE(pool_->Erase("ns", "filler" + std::to_string(i)));
    }
  }

  static std::string Reference(const PutHeader& header, const std::string& data,
                               DType out_dtype) {
    std::vector<uint8_t> payload(header.layout.payload_bytes);
    EXPECT_TRUE(QuantizeReference(header.layout, header.dtype, data.data(),
                                  payload.data())
                    .ok());
    std::string out(header.layout.logical_bytes(out_dtype), '\0');
    DequantizeReference(header.layout, payload.data(), out_dtype, out.data());
    return out;
  }

  // For every dtype x granularity, a random block stored as "k" by `store`
  // reads back as put, and in every dtype as the reference computes it.
  using StoreCall = absl::FunctionRef<absl::StatusOr<uint64_t>(
      const PutHeader&, const std::string&)>;
  void ExpectEveryBlockReadsBackAsTheReference(StoreCall store) {
    for (DType dtype : kAllDTypes) {
      for (Granularity granularity : kAllGranularities) {
        const PutHeader header = RandomHeader("k", dtype, granularity);
        const BlockShape& shape = header.layout.shape;
        const std::string data =
            RandomBlockBytes(dtype, shape.elements(), rng_);
        absl::StatusOr<uint64_t> stored = store(header, data);
        ASSERT_TRUE(stored.ok()) << stored.status();
        EXPECT_EQ(*stored, header.layout.payload_bytes);

        absl::StatusOr<std::shared_ptr<const FetchedBlock>> as_put =
            store_->Fetch("ns", "k", std::nullopt);
        ASSERT_TRUE(as_put.ok()) << as_put.status();
        EXPECT_EQ((*as_put)->dtype, dtype);
        EXPECT_EQ((*as_put)->layout.shape, shape);
        EXPECT_TRUE(AsString((*as_put)->data.bytes()) ==
                    Reference(header, data, dtype));
        for (DType out : kAllDTypes) {
          absl::StatusOr<std::shared_ptr<const FetchedBlock>> fetched =
              store_->Fetch("ns", "k", out);
          ASSERT_TRUE(fetched.ok()) << fetched.status();
          EXPECT_EQ((*fetched)->dtype, out);
          EXPECT_TRUE(AsString((*fetched)->data.bytes()) ==
                      Reference(header, data, out))
              << DTypeName(dtype) << " -> " << DTypeName(out);
        }
      }
    }
  }

  // `data` as an upload of `header`'s block, appended in random cuts.
  std::unique_ptr<BlockUpload> Uploaded(const PutHeader& header,
                                        const std::string& data) {
    std::unique_ptr<BlockUpload> upload =
        *backend_->StartUpload(header.layout, header.dtype);
    for (size_t at = 0; at < data.size();) {
      const size_t n = std::min<size_t>(data.size() - at, Uniform(1, 300));
      const ConstBytes piece(
          reinterpret_cast<const std::byte*>(data.data()) + at, n);
      EXPECT_TRUE(upload->Append({&piece, 1}).ok());
      at += n;
    }
    return upload;
  }

  bool uploading_ = false;  // MakeStore's backend: UploadingCpuBackend
  UploadingCpuBackend* uploading_backend_ = nullptr;
  std::unique_ptr<BlockPool> pool_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<StagingPool> staging_;
  std::unique_ptr<BlockStore> store_;
};

TEST_F(BlockStoreTest, StoredBlocksReadBackAsTheReferenceInEveryDtype) {
  MakeStore(1024);
  Fragment();
  ExpectEveryBlockReadsBackAsTheReference(
      [&](const PutHeader& header, const std::string& data) {
        return store_->Store(header, AsBytes(data));
      });
}

TEST_F(BlockStoreTest, NonFiniteBlockIsRefusedAndLeavesNothingBehind) {
  MakeStore(256);
  for (DType dtype : kAllDTypes) {
    const PutHeader header = Header("bad", dtype, {2, 8, 2, 32});
    std::string data = RandomBlockBytes(dtype, header.layout.elements, rng_);
    SetElement(data, dtype, Uniform(0, header.layout.elements - 1),
               Uniform(0, 1) ? std::numeric_limits<float>::quiet_NaN()
                             : std::numeric_limits<float>::infinity());
    const PoolStats before = pool_->Stats();

    absl::StatusOr<uint64_t> stored = store_->Store(header, AsBytes(data));

    EXPECT_EQ(stored.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_FALSE(pool_->Contains("ns", "bad"));
    EXPECT_EQ(pool_->Stats().pages_used, before.pages_used);
    EXPECT_EQ(pool_->Stats().blocks, before.blocks);
  }
}

TEST_F(BlockStoreTest, RefusedOverwriteKeepsTheOldBlock) {
  MakeStore(256);
  const PutHeader header = Header("k", DType::kFp16, {2, 8, 2, 32});
  const std::string good =
      RandomBlockBytes(DType::kFp16, header.layout.elements, rng_);
  ASSERT_TRUE(store_->Store(header, AsBytes(good)).ok());
  const uint64_t pages_used = pool_->Stats().pages_used;
  std::string bad = good;
  SetElement(bad, DType::kFp16, Uniform(0, header.layout.elements - 1),
             std::numeric_limits<float>::quiet_NaN());

  EXPECT_FALSE(store_->Store(header, AsBytes(bad)).ok());

  absl::StatusOr<std::shared_ptr<const FetchedBlock>> fetched =
      store_->Fetch("ns", "k", std::nullopt);
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_TRUE(AsString((*fetched)->data.bytes()) ==
              Reference(header, good, DType::kFp16));
  EXPECT_EQ(pool_->Stats().pages_used, pages_used);
}

TEST_F(BlockStoreTest, MissIsNotFoundNamingKeyAndNamespace) {
  MakeStore(16);
  absl::StatusOr<std::shared_ptr<const FetchedBlock>> miss =
      store_->Fetch("ns", "absent-key", std::nullopt);
  EXPECT_EQ(miss.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(miss.status().message(), HasSubstr("\"absent-key\""));
  EXPECT_THAT(miss.status().message(), HasSubstr("\"ns\""));
}

TEST_F(BlockStoreTest, ReadingAsADtypeTooNarrowForTheValuesIsOutOfRange) {
  MakeStore(64);
  const PutHeader header = Header("wide", DType::kFp32, {1, 4, 2, 16});
  std::string data = RandomBlockBytes(DType::kFp32, header.layout.elements, rng_);
  const float big = 65504.0f * (2.0f + static_cast<float>(Uniform(0, 1000)));
  SetElement(data, DType::kFp32, Uniform(0, header.layout.elements - 1),
             Uniform(0, 1) ? big : -big);
  ASSERT_TRUE(store_->Store(header, AsBytes(data)).ok());

  absl::StatusOr<std::shared_ptr<const FetchedBlock>> as_fp16 =
      store_->Fetch("ns", "wide", DType::kFp16);

  EXPECT_EQ(as_fp16.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(as_fp16.status().message(), HasSubstr("65504"));
  EXPECT_THAT(as_fp16.status().message(),
              HasSubstr("ask for DTYPE_BF16 or DTYPE_FP32"));
  EXPECT_TRUE(store_->Fetch("ns", "wide", DType::kBf16).ok());
  EXPECT_TRUE(store_->Fetch("ns", "wide", DType::kFp32).ok());
  EXPECT_TRUE(store_->Fetch("ns", "wide", std::nullopt).ok());
}

TEST_F(BlockStoreTest, FullPoolWithRejectPolicyIsResourceExhaustedNoLeak) {
  MakeStore(8, EvictionPolicy::kReject);
  // Each block: 4 x 128 values + 4 scales = 528 bytes = 3 pages.
  const BlockShape shape{1, 4, 1, 128};
  ASSERT_TRUE(store_->Store(Header("a", DType::kFp16, shape),
                            AsBytes(RandomBlockBytes(DType::kFp16, 512, rng_)))
                  .ok());
  ASSERT_TRUE(store_->Store(Header("b", DType::kFp16, shape),
                            AsBytes(RandomBlockBytes(DType::kFp16, 512, rng_)))
                  .ok());
  const uint64_t pages_used = pool_->Stats().pages_used;

  absl::StatusOr<uint64_t> third =
      store_->Store(Header("c", DType::kFp16, shape),
                    AsBytes(RandomBlockBytes(DType::kFp16, 512, rng_)));

  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(pool_->Contains("ns", "c"));
  EXPECT_EQ(pool_->Stats().pages_used, pages_used);
}

TEST_F(BlockStoreTest, StageTimesAreRecordedOncePerCallWhateverItsOutcome) {
  MakeStore(8, EvictionPolicy::kReject);
  // Each block: 4 x 128 values + 4 scales = 528 bytes = 3 pages; 8 pages
  // hold two.
  const BlockShape shape{1, 4, 1, 128};
  auto data = [&] { return RandomBlockBytes(DType::kFp16, 512, rng_); };
  std::string bad = data();
  SetElement(bad, DType::kFp16, Uniform(0, 511),
             std::numeric_limits<float>::quiet_NaN());
  const int stored = static_cast<int>(Uniform(1, 2));
  for (int i = 0; i < stored; ++i) {
    ASSERT_TRUE(store_->Store(Header(absl::StrCat("k", i), DType::kFp16, shape),
                              AsBytes(data()))
                    .ok());
  }
  EXPECT_FALSE(store_->Store(Header("nan", DType::kFp16, shape), AsBytes(bad))
                   .ok());  // reserved, then refused by the kernel
  const int hits = static_cast<int>(Uniform(1, 5));
  for (int i = 0; i < hits; ++i) {
    EXPECT_TRUE(store_->Fetch("ns", absl::StrCat("k", i % stored),
                              std::nullopt)
                    .ok());
  }
  EXPECT_FALSE(store_->Fetch("ns", "absent", std::nullopt).ok());  // a miss
  int stores = stored + 1;
  if (stored == 2) {  // the pool is full: refused by the reservation
    EXPECT_FALSE(store_->Store(Header("k2", DType::kFp16, shape),
                               AsBytes(data()))
                     .ok());
    ++stores;
  }
  const int fetches = hits + 1;

  const std::string exposition = metrics_->Render();
  auto count_of = [](const char* stage, int n) {
    return absl::StrCat("\nkvq_stage_duration_seconds_count{stage=\"", stage,
                        "\"} ", n, "\n");
  };
  EXPECT_THAT(exposition, HasSubstr(count_of("store", stores)));
  EXPECT_THAT(exposition, HasSubstr(count_of("fetch", fetches)));
  EXPECT_THAT(exposition, HasSubstr(count_of("index", stores + fetches)));
}

TEST_F(BlockStoreTest, FetchProgressSeesTheFinalBlockAndNoPinIsHeldByThen) {
  MakeStore(256);
  const PutHeader header = Header("k", DType::kBf16, {2, 8, 2, 32});
  const std::string data =
      RandomBlockBytes(DType::kBf16, header.layout.elements, rng_);
  ASSERT_TRUE(store_->Store(header, AsBytes(data)).ok());
  const std::string want = Reference(header, data, DType::kFp32);

  std::vector<uint64_t> reported;
  auto ready = [&](const std::shared_ptr<const FetchedBlock>& block,
                   uint64_t ready_bytes) {
    EXPECT_EQ(block->dtype, DType::kFp32);
    EXPECT_EQ(block->layout.shape, header.layout.shape);
    // What is reported is final, and the pool no longer lends its pages.
    EXPECT_TRUE(AsString(block->data.bytes().first(ready_bytes)) ==
                want.substr(0, ready_bytes));
    EXPECT_EQ(pool_->Stats().pages_pinned, 0u);
    reported.push_back(ready_bytes);
  };
  // The piece length is asked for with the block's size, in the dtype
  // asked for, once it is found.
  const uint64_t piece = Uniform(1, 4096);
  std::vector<uint64_t> asked;
  auto piece_bytes = [&](uint64_t block_bytes) {
    asked.push_back(block_bytes);
    return piece;
  };
  const FetchProgress progress{piece_bytes, ready};
  absl::StatusOr<std::shared_ptr<const FetchedBlock>> fetched =
      store_->Fetch("ns", "k", DType::kFp32, &progress);

  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ(asked, std::vector<uint64_t>{want.size()});
  ASSERT_FALSE(reported.empty());
  EXPECT_TRUE(std::is_sorted(reported.begin(), reported.end()));
  EXPECT_EQ(reported.back(), want.size());
  EXPECT_TRUE(AsString((*fetched)->data.bytes()) == want);

  // A miss asks and reports nothing.
  reported.clear();
  asked.clear();
  EXPECT_EQ(store_->Fetch("ns", "absent", std::nullopt, &progress)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(reported.empty());
  EXPECT_TRUE(asked.empty());
}

TEST_F(BlockStoreTest, FetchStageLeavesOutTheCallersTimeInProgress) {
  MakeStore(256);
  const PutHeader header = Header("k", DType::kFp16, {1, 16, 2, 64});
  ASSERT_TRUE(store_->Store(header, AsBytes(RandomBlockBytes(
                                        DType::kFp16, header.layout.elements,
                                        rng_)))
                  .ok());
  // The caller sends what is reported; that is the send stage's time.
  constexpr auto kSending = std::chrono::milliseconds(300);
  auto ready = [&](const std::shared_ptr<const FetchedBlock>&, uint64_t) {
    std::this_thread::sleep_for(kSending);
  };
  const uint64_t piece = Uniform(1, 4096);
  auto piece_bytes = [piece](uint64_t) { return piece; };
  const FetchProgress progress{piece_bytes, ready};
  ASSERT_TRUE(store_->Fetch("ns", "k", std::nullopt, &progress).ok());

  const std::string exposition = metrics_->Render();
  const std::string sum_line = "\nkvq_stage_duration_seconds_sum{stage=\"fetch\"} ";
  const size_t at = exposition.find(sum_line);
  ASSERT_NE(at, std::string::npos) << exposition;
  const double fetch_seconds =
      std::stod(exposition.substr(at + sum_line.size()));
  // A 4 KiB block on the CPU backend takes microseconds; the sleep, 0.3 s.
  EXPECT_LT(fetch_seconds, 0.1);
  EXPECT_GE(fetch_seconds, 0.0);
}

TEST_F(BlockStoreTest, QualityIsSampledOnceEveryNStores) {
  MakeStore(256, EvictionPolicy::kLru, /*quality_sample_every=*/2);
  for (int i = 0; i < 5; ++i) {
    const PutHeader header =
        Header(absl::StrCat("k", i), DType::kBf16, {2, 4, 2, 32});
    ASSERT_TRUE(store_->Store(header, AsBytes(RandomBlockBytes(
                                          DType::kBf16, header.layout.elements,
                                          rng_)))
                    .ok());
  }
  EXPECT_THAT(metrics_->Render(),
              HasSubstr("\nkvq_quantization_relative_l2_error_count 2\n"));
}

// A block the backend took while it arrived stores as one put whole does,
// and fails as atomically.
TEST_F(BlockStoreTest, UploadedBlocksReadBackAsTheReference) {
  uploading_ = true;
  MakeStore(1024);
  Fragment();
  ExpectEveryBlockReadsBackAsTheReference(
      [&](const PutHeader& header, const std::string& data) {
        std::unique_ptr<BlockUpload> upload = Uploaded(header, data);
        return store_->Store(header, *upload);
      });
}

TEST_F(BlockStoreTest, FailedUploadedStoreKeepsTheOldBlockAndLeaksNoPage) {
  uploading_ = true;
  MakeStore(256);
  const PutHeader header = Header("k", DType::kBf16, {2, 8, 2, 32});
  const std::string good =
      RandomBlockBytes(DType::kBf16, header.layout.elements, rng_);
  ASSERT_TRUE(store_->Store(header, AsBytes(good)).ok());
  const PoolStats before = pool_->Stats();
  uploading_backend_->fail = true;

  std::unique_ptr<BlockUpload> upload = Uploaded(
      header, RandomBlockBytes(DType::kBf16, header.layout.elements, rng_));
  const absl::Status stored = store_->Store(header, *upload).status();

  EXPECT_EQ(stored.code(), absl::StatusCode::kInternal) << stored;
  EXPECT_EQ(pool_->Stats().pages_used, before.pages_used);
  EXPECT_EQ(pool_->Stats().blocks, before.blocks);
  absl::StatusOr<std::shared_ptr<const FetchedBlock>> fetched =
      store_->Fetch("ns", "k", std::nullopt);
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_TRUE(AsString((*fetched)->data.bytes()) ==
              Reference(header, good, DType::kBf16));
}

TEST_F(BlockStoreTest, UploadIntoAFullPoolIsRefusedBeforeTheBackendStoresIt) {
  uploading_ = true;
  MakeStore(8, EvictionPolicy::kReject);
  const BlockShape shape{1, 4, 1, 128};  // 3 pages a block
  for (const char* key : {"a", "b"}) {
    const std::string data = RandomBlockBytes(DType::kFp16, 512, rng_);
    ASSERT_TRUE(
        store_->Store(Header(key, DType::kFp16, shape), AsBytes(data)).ok());
  }
  const uint64_t pages_used = pool_->Stats().pages_used;
  const PutHeader header = Header("c", DType::kFp16, shape);
  std::unique_ptr<BlockUpload> upload =
      Uploaded(header, RandomBlockBytes(DType::kFp16, 512, rng_));

  EXPECT_EQ(store_->Store(header, *upload).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(uploading_backend_->uploads_quantized, 0);
  EXPECT_FALSE(pool_->Contains("ns", "c"));
  EXPECT_EQ(pool_->Stats().pages_used, pages_used);
}

}  // namespace
}  // namespace kvq
