// CudaBackend's host side of the data path: a block moves the same whether
// the caller's memory is page-locked (AllocateHostBuffer's, which the server
// receives puts into and answers gets from: DMA straight from and to it, or
// for a get that goes back whole, the kernel's own writes over PCIe), plain
// (copied through the backend's own staging) or registered
// (cudaHostRegister), or in pieces inside a region the backend registered
// (read in place by a gather kernel), and either way equals the CPU backend
// byte for byte.

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/backend/backend.h"
#include "tests/gpu/gpu_test_util.h"

namespace kvq {
namespace {

using ::kvq::gpu_testing::RandomBlock;

constexpr uint64_t kPageBytes = 4096;
constexpr uint64_t kPages = 1024;

// Host memory that outlives the backends that register it.
struct Region {
  static constexpr size_t kBytes = size_t{32} << 20;
  std::unique_ptr<std::byte, decltype(&std::free)> memory{
      static_cast<std::byte*>(std::aligned_alloc(4096, kBytes)), &std::free};
  std::span<std::byte> bytes() { return {memory.get(), kBytes}; }
};

class CudaBackendHostMemoryTest : public gpu_testing::DtypeGranularityTest {
 protected:
  void SetUp() override {
    DtypeGranularityTest::SetUp();
    if (IsSkipped()) return;
    const ArenaOptions arena{kPages * kPageBytes, kPageBytes};
    absl::StatusOr<std::unique_ptr<Backend>> cuda = MakeCudaBackend(arena, 0);
    ASSERT_TRUE(cuda.ok()) << cuda.status();
    cuda_ = *std::move(cuda);
    cpu_ = *MakeCpuBackend(arena);
  }

  // `count` distinct page ids in random order, so that no block's pages are
  // consecutive by luck.
  std::vector<uint32_t> ScatteredPages(uint64_t count) {
    std::vector<uint32_t> all(kPages);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng_);
    all.resize(count);
    return all;
  }

  // A random block of at least `min_tokens` tokens on scattered pages, and
  // what the CPU backend reads back of it (the reference).
  struct Case {
    BlockLayout layout;
    std::string name;
    std::vector<uint8_t> block;  // the client's bytes, in dtype()
    uint64_t bytes = 0;
    std::vector<uint32_t> page_ids;
    std::vector<std::byte> expected;
    std::span<const std::byte> src() const {
      return {reinterpret_cast<const std::byte*>(block.data()), bytes};
    }
  };
  Case RandomCase(uint32_t min_tokens) {
    return CaseOf(BlockShape{2, static_cast<uint32_t>(min_tokens + rng_() % 64),
                             static_cast<uint32_t>(1 + rng_() % 8),
                             static_cast<uint32_t>(8 * (1 + rng_() % 32))});
  }
  Case CaseOf(const BlockShape& shape) {
    Case c;
    c.layout = Layout(shape);
    c.name = gpu_testing::CaseName(c.layout, dtype());
    const auto block = RandomBlock(shape, dtype(), rng_);
    c.bytes = c.layout.logical_bytes(dtype());
    const auto* first = reinterpret_cast<const uint8_t*>(block.data());
    c.block.assign(first, first + c.bytes);
    c.page_ids = ScatteredPages((c.layout.payload_bytes + kPageBytes - 1) /
                                kPageBytes);
    EXPECT_TRUE(
        cpu_->QuantizeInto(c.layout, dtype(), c.src(), c.page_ids).ok());
    c.expected.resize(c.bytes);
    EXPECT_TRUE(
        cpu_->DequantizeFrom(c.layout, c.page_ids, dtype(), c.expected).ok());
    return c;
  }

  // c's bytes copied into `region` in pieces of lengths around the gather
  // kernel's 16-byte words and 16 KiB segments, their sources misaligned by
  // 0..15 bytes in turn.
  std::vector<ConstBytes> PiecesInRegion(const Case& c,
                                         std::span<std::byte> region) {
    constexpr size_t kLengths[] = {1,     7,  16,    33,    100, 4095,
                                   16393, 17, 65536, 40000, 3,   16384};
    std::vector<ConstBytes> pieces;
    size_t cursor = rng_() % 64;
    for (size_t at = 0, k = 0; at < c.bytes; ++k) {
      const size_t n = std::min(c.bytes - at, kLengths[k % 12]);
      cursor = (cursor + 15) / 16 * 16 + k % 16;
      EXPECT_LE(cursor + n, region.size());
      std::memcpy(region.data() + cursor, c.block.data() + at, n);
      pieces.push_back(region.subspan(cursor, n));
      cursor += n;
      at += n;
    }
    return pieces;
  }

  // Expects the block at c.page_ids of `backend` to read back as the CPU
  // backend's.
  void ExpectStored(Backend& backend, const Case& c, const std::string& how) {
    std::vector<std::byte> back(c.bytes, std::byte{0x7f});
    ASSERT_TRUE(
        backend.DequantizeFrom(c.layout, c.page_ids, dtype(), back).ok());
    EXPECT_TRUE(std::memcmp(back.data(), c.expected.data(), c.bytes) == 0)
        << c.name << ", " << how;
  }

  // A CUDA backend of its own, with `region` registered unless told not
  // to (destroyed before the region, it unregisters it first).
  std::unique_ptr<Backend> BackendOver(Region& region,
                                       bool registered = true) {
    EXPECT_NE(region.memory, nullptr);
    absl::StatusOr<std::unique_ptr<Backend>> made =
        MakeCudaBackend(ArenaOptions{kPages * kPageBytes, kPageBytes}, 0);
    EXPECT_TRUE(made.ok()) << made.status();
    if (!made.ok()) return nullptr;
    if (registered) {
      const absl::Status s = (*made)->RegisterHostRegion(region.bytes());
      EXPECT_TRUE(s.ok()) << s;
    }
    return *std::move(made);
  }

  std::unique_ptr<Backend> cuda_;
  std::unique_ptr<Backend> cpu_;
};


TEST_P(CudaBackendHostMemoryTest, HostBuffersArePageLocked) {
  absl::StatusOr<HostBuffer> buffer = cuda_->AllocateHostBuffer(3 << 20);
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  EXPECT_EQ(buffer->size(), uint64_t{3} << 20);
  cudaPointerAttributes attributes{};
  ASSERT_CUDA_OK(cudaPointerGetAttributes(&attributes, buffer->data()));
  EXPECT_EQ(attributes.type, cudaMemoryTypeHost);
}

TEST_P(CudaBackendHostMemoryTest,
       PageLockedAndPlainMemoryMoveTheSameBytesAsTheCpuBackend) {
  for (int trial = 0; trial < 4; ++trial) {
    const Case c = RandomCase(/*min_tokens=*/1);
    const BlockLayout& layout = c.layout;
    const std::string& name = c.name;
    const uint64_t bytes = c.bytes;
    const std::vector<uint32_t>& page_ids = c.page_ids;
    const std::span<const std::byte> plain_src = c.src();
    const std::vector<std::byte>& expected = c.expected;

    absl::StatusOr<HostBuffer> locked = cuda_->AllocateHostBuffer(bytes);
    ASSERT_TRUE(locked.ok()) << locked.status();
    std::memcpy(locked->data(), c.block.data(), bytes);
    for (const bool locked_src : {false, true}) {
      const std::span<const std::byte> src =
          locked_src ? std::span<const std::byte>(locked->data(), bytes)
                     : plain_src;
      absl::StatusOr<float> absmax =
          cuda_->QuantizeInto(layout, dtype(), src, page_ids);
      ASSERT_TRUE(absmax.ok()) << absmax.status() << " " << name;

      std::vector<std::byte> plain_dst(bytes, std::byte{0x7f});
      ASSERT_TRUE(
          cuda_->DequantizeFrom(layout, page_ids, dtype(), plain_dst).ok());
      absl::StatusOr<HostBuffer> locked_dst = cuda_->AllocateHostBuffer(bytes);
      ASSERT_TRUE(locked_dst.ok()) << locked_dst.status();
      std::memset(locked_dst->data(), 0x7f, bytes);
      ASSERT_TRUE(
          cuda_->DequantizeFrom(layout, page_ids, dtype(), locked_dst->bytes())
              .ok());

      EXPECT_TRUE(std::memcmp(plain_dst.data(), expected.data(), bytes) == 0)
          << name << (locked_src ? ", page-locked" : ", plain")
          << " source, plain destination";
      EXPECT_TRUE(std::memcmp(locked_dst->data(), expected.data(), bytes) == 0)
          << name << (locked_src ? ", page-locked" : ", plain")
          << " source, page-locked destination";
    }
  }
}

TEST_P(CudaBackendHostMemoryTest,
       EveryBlockReadsBackThroughItsOwnPagesWhoeverHeldThemBefore) {
  // A get finds a block's page ids where its put left them, in the slot of
  // the block's first page when they fit one (4 ids at 4 KiB pages), or
  // uploads them. Each round stores new blocks on a fresh shuffle of the
  // same pages, so that a page that started one block starts another, or
  // sits inside one, or in a longer table, and reads them all back.
  std::vector<uint32_t> all(kPages);
  std::iota(all.begin(), all.end(), 0);
  for (int round = 0; round < 6; ++round) {
    std::shuffle(all.begin(), all.end(), rng_);
    std::vector<Case> cases;
    for (size_t at = 0, k = 0; k < 8; ++k) {
      // Tables of 1..4 pages (a slot's) and of more.
      Case c = k % 2 == 0
                   ? CaseOf(BlockShape{2, static_cast<uint32_t>(1 + rng_() % 48),
                                       2, 64})
                   : RandomCase(/*min_tokens=*/32);
      c.page_ids.assign(all.begin() + at,
                        all.begin() + at + c.page_ids.size());
      at += c.page_ids.size();
      ASSERT_LE(at, all.size());
      ASSERT_TRUE(cuda_->QuantizeInto(c.layout, dtype(), c.src(), c.page_ids)
                      .ok())
          << c.name;
      cases.push_back(std::move(c));
    }
    for (const Case& c : cases) {
      const std::string how = absl::StrCat(
          "round ", round, ", ", c.page_ids.size(), " pages from ",
          c.page_ids.front());
      ExpectStored(*cuda_, c, how + ", plain destination");
      absl::StatusOr<HostBuffer> locked = cuda_->AllocateHostBuffer(c.bytes);
      ASSERT_TRUE(locked.ok()) << locked.status();
      std::memset(locked->data(), 0x7f, c.bytes);
      ASSERT_TRUE(cuda_->DequantizeFrom(c.layout, c.page_ids, dtype(),
                                        locked->bytes())
                      .ok());
      EXPECT_TRUE(std::memcmp(locked->data(), c.expected.data(), c.bytes) == 0)
          << c.name << ", " << how << ", page-locked destination";
    }
  }
}

TEST_P(CudaBackendHostMemoryTest,
       ReadyPrefixesComeInPiecesInOrderEachFinalWhenReported) {
  for (int trial = 0; trial < 4; ++trial) {
    const Case c = RandomCase(/*min_tokens=*/8);
    const BlockLayout& layout = c.layout;
    const std::string& name = c.name;
    const uint64_t bytes = c.bytes;
    const std::vector<uint32_t>& page_ids = c.page_ids;
    const std::vector<std::byte>& expected = c.expected;
    ASSERT_TRUE(cuda_->QuantizeInto(layout, dtype(), c.src(), page_ids).ok());

    // Pieces that do not divide the block, into page-locked memory (the
    // server's case): every piece but the last is reported, in order, each
    // holding its final bytes when it is.
    const uint64_t piece = 1 + rng_() % (bytes / 3 + 1);
    absl::StatusOr<HostBuffer> dst = cuda_->AllocateHostBuffer(bytes);
    ASSERT_TRUE(dst.ok()) << dst.status();
    std::memset(dst->data(), 0x7f, bytes);
    std::vector<uint64_t> reported;
    auto ready = [&](uint64_t ready_bytes) {
      EXPECT_TRUE(std::memcmp(dst->data(), expected.data(), ready_bytes) == 0)
          << name << ": prefix of " << ready_bytes << " bytes";
      reported.push_back(ready_bytes);
    };
    const ReadyPrefixes prefixes{piece, ready};
    ASSERT_TRUE(cuda_->DequantizeFrom(layout, page_ids, dtype(), dst->bytes(),
                                      nullptr, &prefixes)
                    .ok());
    const uint64_t pieces = (bytes + piece - 1) / piece;
    ASSERT_EQ(reported.size(), pieces - 1) << name << ", pieces of " << piece;
    for (size_t k = 0; k < reported.size(); ++k) {
      EXPECT_EQ(reported[k], (k + 1) * piece) << name;
    }
    EXPECT_TRUE(std::memcmp(dst->data(), expected.data(), bytes) == 0) << name;

    // Plain memory goes through staging: nothing is final before the end.
    std::vector<std::byte> plain(bytes, std::byte{0x7f});
    reported.clear();
    ASSERT_TRUE(cuda_->DequantizeFrom(layout, page_ids, dtype(), plain,
                                      nullptr, &prefixes)
                    .ok());
    EXPECT_TRUE(reported.empty()) << name;
    EXPECT_TRUE(std::memcmp(plain.data(), expected.data(), bytes) == 0) << name;
  }
}

TEST_P(CudaBackendHostMemoryTest,
       WholeGetsIntoRegisteredOrAllocatedPageLockedMemoryEqualTheCpuBackend) {
  // Gets that go back in one piece (no ReadyPrefixes, or pieces as large as
  // the block) are written by the kernel itself, at the address CUDA maps
  // the caller's memory to: memory the caller registered as well as
  // AllocateHostBuffer's.
  for (int trial = 0; trial < 4; ++trial) {
    const Case c = RandomCase(/*min_tokens=*/1 + rng_() % 100);
    ASSERT_TRUE(
        cuda_->QuantizeInto(c.layout, dtype(), c.src(), c.page_ids).ok());
    // 4 bytes past a 16-byte boundary: aligned for every dtype but not for
    // the kernel's 16-byte stores, which then store narrower.
    constexpr size_t kAt = 20;
    std::vector<std::byte> registered(c.bytes + 2 * kAt, std::byte{0x7f});
    std::span<std::byte> dst(registered.data() + kAt, c.bytes);
    ASSERT_CUDA_OK(cudaHostRegister(dst.data(), dst.size(),
                                    cudaHostRegisterDefault));
    std::vector<uint64_t> reported;
    auto ready = [&](uint64_t n) { reported.push_back(n); };
    const ReadyPrefixes whole{c.bytes, ready};
    const absl::Status got = cuda_->DequantizeFrom(c.layout, c.page_ids,
                                                   dtype(), dst, nullptr,
                                                   &whole);
    ASSERT_CUDA_OK(cudaHostUnregister(dst.data()));
    ASSERT_TRUE(got.ok()) << got << " " << c.name;
    EXPECT_TRUE(reported.empty()) << c.name;
    EXPECT_TRUE(std::memcmp(dst.data(), c.expected.data(), c.bytes) == 0)
        << c.name << ", registered destination";
    for (size_t i = 0; i < kAt; ++i) {
      ASSERT_EQ(registered[i], std::byte{0x7f}) << c.name << ": byte " << i;
      ASSERT_EQ(registered[kAt + c.bytes + i], std::byte{0x7f})
          << c.name << ": byte " << i << " past the block";
    }
  }
}

TEST_P(CudaBackendHostMemoryTest,
       QualitySampleSumsTheErrorOnTheGpuAsTheCpuBackendDoes) {
  for (int trial = 0; trial < 4; ++trial) {
    const Case c = RandomCase(/*min_tokens=*/1 + rng_() % 300);
    ErrorSums cpu_error, cuda_error;
    ASSERT_TRUE(cpu_->QuantizeInto(c.layout, dtype(), c.src(), c.page_ids,
                                   nullptr, &cpu_error)
                    .ok());
    // The decoded bytes are equal (the test above), so only the order of
    // the additions differs.
    DataPathTimings timings;
    ASSERT_TRUE(cuda_->QuantizeInto(c.layout, dtype(), c.src(), c.page_ids,
                                    &timings, &cuda_error)
                    .ok());
    EXPECT_GT(cpu_error.norm, 0) << c.name;
    EXPECT_NEAR(cuda_error.diff, cpu_error.diff, 1e-9 * cpu_error.diff)
        << c.name;
    EXPECT_NEAR(cuda_error.norm, cpu_error.norm, 1e-9 * cpu_error.norm)
        << c.name;
    // A sampled put stores the same payload as any other.
    std::vector<std::byte> back(c.bytes, std::byte{0x7f});
    ASSERT_TRUE(
        cuda_->DequantizeFrom(c.layout, c.page_ids, dtype(), back).ok());
    EXPECT_TRUE(std::memcmp(back.data(), c.expected.data(), c.bytes) == 0)
        << c.name;
  }
}

TEST_P(CudaBackendHostMemoryTest,
       PutsInPiecesOfARegisteredRegionStoreWhatTheCpuBackendStores) {
  // The server's --put_buffers=received: the process heap is one region the
  // backend registered, and a put arrives in pieces of gRPC's buffers there,
  // at any alignment. The gather kernel reads them in place; a put with a
  // piece outside the region is copied into staging instead. Both store
  // what the CPU backend stores.
  Region memory;
  const std::span<std::byte> region = memory.bytes();
  const size_t kRegionBytes = region.size();
  {
    const std::unique_ptr<Backend> backend = BackendOver(memory);
    ASSERT_NE(backend, nullptr);
    Backend& cuda = *backend;
    EXPECT_EQ(cuda.RegisterHostRegion(region).code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_TRUE(cuda.ReadsInPlace(region.subspan(100, 1000)));
    // Bytes that run past the region's end are not all in it.
    EXPECT_FALSE(
        cuda.ReadsInPlace(ConstBytes(region.data() + kRegionBytes - 5, 10)));
    EXPECT_FALSE(cuda_->ReadsInPlace(region.subspan(100, 1000)));

    for (int trial = 0; trial < 4; ++trial) {
      const Case c = RandomCase(/*min_tokens=*/1 + rng_() % 200);
      std::vector<ConstBytes> pieces = PiecesInRegion(c, region);
      ASSERT_TRUE(cuda.QuantizeInto(c.layout, dtype(), BlockBytes(pieces),
                                    c.page_ids)
                      .ok())
          << c.name;
      ExpectStored(cuda, c,
                   absl::StrCat(pieces.size(), " pieces read in place"));

      // One piece in plain memory: the whole block goes through staging.
      const size_t outside = pieces.size() / 2;
      std::vector<std::byte> plain(pieces[outside].begin(),
                                   pieces[outside].end());
      pieces[outside] = plain;
      ASSERT_TRUE(cuda.QuantizeInto(c.layout, dtype(), BlockBytes(pieces),
                                    c.page_ids)
                      .ok());
      ExpectStored(cuda, c, "a piece outside the region");
    }
  }
}

TEST_P(CudaBackendHostMemoryTest,
       UploadsWhileTheBlockArrivesStoreWhatTheCpuBackendStores) {
  // A put taken chunk by chunk (StartUpload): each append is read while the
  // next are on their way, appends_read() counts them as the GPU finishes,
  // and pieces outside the region may be reused as soon as Append returns.
  Region memory;
  const std::unique_ptr<Backend> backend =
      BackendOver(memory, /*registered=*/false);
  ASSERT_NE(backend, nullptr);
  Backend& cuda = *backend;
  // Without a region there is nothing to read in place.
  EXPECT_EQ(cuda.StartUpload(Layout(BlockShape{1, 1, 1, 8}), dtype())
                .status()
                .code(),
            absl::StatusCode::kUnavailable);
  ASSERT_TRUE(cuda.RegisterHostRegion(memory.bytes()).ok());
  for (int trial = 0; trial < 4; ++trial) {
    const Case c = RandomCase(/*min_tokens=*/1 + rng_() % 200);
    const std::vector<ConstBytes> pieces = PiecesInRegion(c, memory.bytes());
    absl::StatusOr<std::unique_ptr<BlockUpload>> upload =
        cuda.StartUpload(c.layout, dtype());
    ASSERT_TRUE(upload.ok()) << upload.status();
    uint64_t appends = 0;
    std::vector<std::byte> plain;
    for (size_t at = 0; at < pieces.size();) {
      // 1 to 70 pieces an append: past the 64 one launch lists.
      const size_t n = std::min<size_t>(pieces.size() - at, 1 + rng_() % 70);
      std::vector<ConstBytes> chunk(pieces.begin() + at,
                                    pieces.begin() + at + n);
      const bool one_outside = appends % 3 == 1;
      if (one_outside) {
        plain.assign(chunk.back().begin(), chunk.back().end());
        chunk.back() = plain;
      }
      ASSERT_TRUE((*upload)->Append(chunk).ok()) << c.name;
      if (one_outside) std::fill(plain.begin(), plain.end(), std::byte{0x55});
      ++appends;
      at += n;
      EXPECT_LE((*upload)->appends_read(), appends);
    }
    EXPECT_EQ((*upload)->bytes_appended(), c.bytes);
    // Everything appended is read, sooner or later, without a store.
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while ((*upload)->appends_read() < appends &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    EXPECT_EQ((*upload)->appends_read(), appends) << c.name;
    DataPathTimings timings;
    ASSERT_TRUE(cuda.QuantizeUploaded(**upload, c.page_ids, &timings).ok())
        << c.name;
    EXPECT_GT(timings.host_to_device_seconds, 0);
    ExpectStored(cuda, c, absl::StrCat(appends, " appends"));
    // Spent: a second store is refused.
    EXPECT_EQ(cuda.QuantizeUploaded(**upload, c.page_ids).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
}

TEST_P(CudaBackendHostMemoryTest, UploadsRefuseTheWrongNumberOfBytes) {
  Region memory;
  const std::unique_ptr<Backend> backend = BackendOver(memory);
  ASSERT_NE(backend, nullptr);
  Backend& cuda = *backend;
  const Case c = RandomCase(/*min_tokens=*/8);
  const std::vector<ConstBytes> pieces = PiecesInRegion(c, memory.bytes());
  {
    // Too few: refused at the store, and the pages are left alone.
    absl::StatusOr<std::unique_ptr<BlockUpload>> upload =
        cuda.StartUpload(c.layout, dtype());
    ASSERT_TRUE(upload.ok()) << upload.status();
    ASSERT_TRUE((*upload)->Append(std::span(pieces).first(1)).ok());
    const absl::Status stored =
        cuda.QuantizeUploaded(**upload, c.page_ids).status();
    EXPECT_EQ(stored.code(), absl::StatusCode::kInvalidArgument) << stored;
    EXPECT_NE(stored.message().find("expected"), std::string::npos);
  }
  {
    // Too many: the append that goes past the block is refused.
    absl::StatusOr<std::unique_ptr<BlockUpload>> upload =
        cuda.StartUpload(c.layout, dtype());
    ASSERT_TRUE(upload.ok()) << upload.status();
    ASSERT_TRUE((*upload)->Append(pieces).ok());
    EXPECT_EQ((*upload)->Append(std::span(pieces).first(1)).code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST_P(CudaBackendHostMemoryTest,
       UploadsHoldAtMostHalfTheContextsAndGiveThemBackWhenAbandoned) {
  Region memory;
  const std::unique_ptr<Backend> backend = BackendOver(memory);
  ASSERT_NE(backend, nullptr);
  Backend& cuda = *backend;
  const Case c = RandomCase(/*min_tokens=*/8);
  const std::vector<ConstBytes> pieces = PiecesInRegion(c, memory.bytes());
  for (int round = 0; round < 2; ++round) {
    std::vector<std::unique_ptr<BlockUpload>> held;
    for (;;) {
      absl::StatusOr<std::unique_ptr<BlockUpload>> upload =
          cuda.StartUpload(c.layout, dtype());
      if (!upload.ok()) {
        EXPECT_EQ(upload.status().code(), absl::StatusCode::kUnavailable);
        break;
      }
      ASSERT_TRUE((*upload)->Append(pieces).ok());
      held.push_back(*std::move(upload));
      ASSERT_LT(held.size(), 4096u) << "uploads are never refused";
    }
    EXPECT_GE(held.size(), 4u);
    // Whole puts (and gets) still find a context meanwhile.
    ASSERT_TRUE(cuda.QuantizeInto(c.layout, dtype(), BlockBytes(pieces),
                                  c.page_ids)
                    .ok());
    ExpectStored(cuda, c, "a whole put while uploads hold contexts");
    held.clear();  // abandoned: each gives its context back
  }
}

TEST_P(CudaBackendHostMemoryTest,
       UploadedBlockWithANonFiniteValueIsRefusedAsTheCpuBackendRefusesIt) {
  Region memory;
  const std::unique_ptr<Backend> backend = BackendOver(memory);
  ASSERT_NE(backend, nullptr);
  Backend& cuda = *backend;
  Case c = RandomCase(/*min_tokens=*/8);
  // A NaN at a random element, in the block's dtype.
  const uint64_t at = rng_() % c.layout.elements;
  if (dtype() == DType::kFp32) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(c.block.data() + 4 * at, &nan, 4);
  } else {
    const uint16_t nan = dtype() == DType::kFp16 ? 0x7e00 : 0x7fc0;
    std::memcpy(c.block.data() + 2 * at, &nan, 2);
  }
  const absl::Status cpu =
      cpu_->QuantizeInto(c.layout, dtype(), c.src(), c.page_ids).status();
  ASSERT_EQ(cpu.code(), absl::StatusCode::kInvalidArgument);
  const std::vector<ConstBytes> pieces = PiecesInRegion(c, memory.bytes());
  absl::StatusOr<std::unique_ptr<BlockUpload>> upload =
      cuda.StartUpload(c.layout, dtype());
  ASSERT_TRUE(upload.ok()) << upload.status();
  ASSERT_TRUE((*upload)->Append(pieces).ok());
  const absl::Status stored =
      cuda.QuantizeUploaded(**upload, c.page_ids).status();
  EXPECT_EQ(stored, cpu);
}

KVQ_INSTANTIATE_FOR_EVERY_DTYPE_AND_GRANULARITY(CudaBackendHostMemoryTest);

}  // namespace
}  // namespace kvq
