// The CUDA backend against the CPU backend, through two real servers: the
// same blocks, put to a CPU kvq-server and to a CUDA kvq-server, come back
// byte-identical from both (every dtype x granularity, fresh random data, in
// every dtype a reader may ask for), and a put the GPU refuses part-way (a
// NaN or Inf found by the quantize kernel) leaves no page held.
//
// Both servers use small pages (4 KiB) in a pool fragmented on purpose, so
// that blocks span many pages that are not contiguous and the fused
// scatter/gather kernels are exercised on real page tables. They refuse
// rather than evict (--eviction=reject), so no block of a comparison can
// silently disappear, and measure the quantization error of every block
// (--quality_sample_every=1), so each put also decodes from the pages it
// reserved.
//
// Needs an NVIDIA GPU and a kvq-server built with CUDA; without a GPU every
// test skips with one line. Label "gpu": CI excludes it (ctest -LE gpu).

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "client/element_codec.h"
#include "client/kvq_client.h"
#include "gtest/gtest.h"
#include "kernels/format.h"
#include "tests/integration/integration_testing.h"
#include "tests/integration/server_process.h"

namespace kvq::testing {
namespace {

constexpr char kNs[] = "crosscheck";
constexpr uint64_t kPageBytes = 4096;
constexpr char kNoGpu[] =
    "no NVIDIA GPU on this machine (/dev/nvidiactl absent): the CPU vs CUDA "
    "cross-check runs on the GPU machine";

bool NvidiaDevicePresent() { return access("/dev/nvidiactl", F_OK) == 0; }

// One server of the pair and a client of it.
struct TestServer {
  std::string device;
  std::unique_ptr<ServerProcess> server;
  std::unique_ptr<Client> client;
};

absl::StatusOr<TestServer> StartTestServer(const std::string& device) {
  ServerOptions options;
  options.flags = {absl::StrCat("--device=", device),
                   "--pool_bytes=134217728",
                   absl::StrCat("--page_bytes=", kPageBytes),
                   "--eviction=reject",
                   "--quality_sample_every=1",
                   "--log_level=info"};
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(options);
  if (!server.ok()) return server.status();
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::Connect((*server)->grpc_address());
  if (!client.ok()) return client.status();
  return TestServer{device, *std::move(server), *std::move(client)};
}

PoolState PoolOf(Client& client) {
  absl::StatusOr<v1::StatsResponse> stats = client.Stats();
  EXPECT_TRUE(stats.ok()) << stats.status();
  if (!stats.ok()) return {};
  return PoolState{stats->blocks(), stats->pages_used(),
                   stats->logical_bytes()};
}

// Where two answers first differ, as an element index of `dtype`.
std::string FirstDifference(std::string_view a, std::string_view b,
                            v1::DType dtype) {
  if (a.size() != b.size()) {
    return absl::StrCat("sizes differ: ", a.size(), " vs ", b.size(), " bytes");
  }
  size_t i = 0;
  while (i < a.size() && a[i] == b[i]) ++i;
  if (i == a.size()) return "identical";
  return absl::StrCat("first difference at byte ", i, " (element ",
                      i / wire::ElementBytes(dtype), ") of ", a.size());
}

// A refusal's message without the " [request ID]" every server appends.
std::string WithoutRequestId(absl::string_view message) {
  const size_t at = message.rfind(" [request ");
  return std::string(message.substr(0, at));
}

// Fills pages with blocks of 1..3 pages, then deletes every other one, so
// that later blocks get page lists with holes. Both servers get the same.
void FragmentPool(Client& client, std::mt19937_64& rng) {
  std::vector<TestBlock> fillers;
  std::vector<std::string> every_other;
  for (int i = 0; i < 48; ++i) {
    // FP16 2 x t x 4 x 64: 512 t values, payload ~ 520 t bytes.
    const uint32_t tokens = 8 * (1 + i % 3);
    fillers.push_back(RandomBlock(rng, kNs, absl::StrCat("filler-", i),
                                  v1::DTYPE_FP16, Shape(2, tokens, 4, 64)));
    if (i % 2 == 0) every_other.push_back(fillers.back().key);
  }
  std::vector<BlockToPut> puts;
  for (const TestBlock& block : fillers) puts.push_back(block.ToPut());
  absl::StatusOr<std::vector<PutResult>> stored = client.PutMany(puts);
  ASSERT_TRUE(stored.ok()) << stored.status();
  for (const PutResult& result : *stored) {
    ASSERT_TRUE(result.status.ok()) << result.status;
  }
  absl::StatusOr<DeleteResult> deleted = client.Delete(kNs, every_other);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  ASSERT_EQ(deleted->deleted, every_other.size());
}

// Starts the CPU and the CUDA server once for the whole binary.
class BackendCrossCheck : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!NvidiaDevicePresent()) return;
    for (const char* device : {"cpu", "cuda"}) {
      absl::StatusOr<TestServer> backend = StartTestServer(device);
      if (!backend.ok()) {
        start_error_ = new std::string(
            absl::StrCat("cannot start the ", device,
                         " server: ", backend.status().ToString()));
        return;
      }
      (device == std::string("cpu") ? cpu_ : cuda_) =
          new TestServer(*std::move(backend));
    }
  }

  static void TearDownTestSuite() {
    delete cpu_;
    delete cuda_;
    delete start_error_;
    cpu_ = cuda_ = nullptr;
    start_error_ = nullptr;
  }

  void SetUp() override {
    if (!NvidiaDevicePresent()) GTEST_SKIP() << kNoGpu;
    ASSERT_EQ(start_error_, nullptr) << *start_error_;
    seed_ = FreshSeed();
    rng_.seed(seed_);
    if (!fragmented_) {
      fragmented_ = true;
      for (TestServer* backend : {cpu_, cuda_}) {
        std::mt19937_64 same(seed_);  // the same fillers on both
        ASSERT_NO_FATAL_FAILURE(FragmentPool(*backend->client, same));
      }
    }
  }

  void TearDown() override {
    if (!HasFailure() || cpu_ == nullptr || cuda_ == nullptr) return;
    for (TestServer* backend : {cpu_, cuda_}) {
      std::cerr << "---- " << backend->device << " kvq-server log (tail) ----\n"
                << backend->server->log_tail(4096) << "\n";
    }
  }

  static TestServer* cpu_;
  static TestServer* cuda_;
  static std::string* start_error_;
  static bool fragmented_;
  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
};

TestServer* BackendCrossCheck::cpu_ = nullptr;
TestServer* BackendCrossCheck::cuda_ = nullptr;
std::string* BackendCrossCheck::start_error_ = nullptr;
bool BackendCrossCheck::fragmented_ = false;

// ---------------------------------------------------------------------------

class SameBlocks
    : public BackendCrossCheck,
      public ::testing::WithParamInterface<WireDTypeAndGranularity> {};

TEST_P(SameBlocks, ComeBackByteIdenticalFromCpuAndCudaInEveryDType) {
  const auto [dtype, granularity] = GetParam();
  SCOPED_TRACE(absl::StrCat("seed ", seed_));
  // head_dim 72 and 96 are not multiples of 64: vector paths meet tails.
  // Groups of 24 divide both. The 4 x 33 x 8 x 96 block spans 25+ pages.
  const v1::Quantization quant =
      Quant(granularity, granularity == v1::GRANULARITY_GROUP ? 24 : 0);
  const std::string prefix =
      absl::StrCat(std::string(wire::DTypeName(dtype)), "-",
                   v1::Granularity_Name(granularity), "-");
  std::vector<Values> kinds = {Values::kNormal, Values::kOutlierChannels,
                               Values::kWideRange};
  if (dtype == v1::DTYPE_FP32) kinds.push_back(Values::kLarge);
  std::vector<TestBlock> blocks;
  for (Values values : kinds) {
    for (const v1::BlockShape& shape :
         {Shape(2, 24, 4, 72), Shape(4, 33, 8, 96), Shape(1, 1, 1, 72)}) {
      blocks.push_back(RandomBlock(rng_, kNs,
                                   absl::StrCat(prefix, blocks.size()), dtype,
                                   shape, quant, values));
    }
  }
  std::vector<BlockToPut> puts;
  for (const TestBlock& block : blocks) puts.push_back(block.ToPut());

  absl::StatusOr<std::vector<PutResult>> on_cpu = cpu_->client->PutMany(puts);
  absl::StatusOr<std::vector<PutResult>> on_cuda = cuda_->client->PutMany(puts);
  ASSERT_TRUE(on_cpu.ok()) << on_cpu.status();
  ASSERT_TRUE(on_cuda.ok()) << on_cuda.status();
  for (size_t i = 0; i < blocks.size(); ++i) {
    ASSERT_TRUE((*on_cpu)[i].status.ok()) << (*on_cpu)[i].status;
    ASSERT_TRUE((*on_cuda)[i].status.ok()) << (*on_cuda)[i].status;
    EXPECT_EQ((*on_cuda)[i].stored_bytes, (*on_cpu)[i].stored_bytes);
  }

  std::vector<std::string> keys;
  for (const TestBlock& block : blocks) keys.push_back(block.key);
  for (v1::DType asked : {v1::DTYPE_UNSPECIFIED, v1::DTYPE_FP16, v1::DTYPE_BF16,
                          v1::DTYPE_FP32}) {
    SCOPED_TRACE(
        absl::StrCat("read back as ", std::string(wire::DTypeName(asked))));
    absl::StatusOr<std::vector<GetResult>> from_cpu =
        cpu_->client->Get(kNs, keys, asked);
    absl::StatusOr<std::vector<GetResult>> from_cuda =
        cuda_->client->Get(kNs, keys, asked);
    ASSERT_TRUE(from_cpu.ok()) << from_cpu.status();
    ASSERT_TRUE(from_cuda.ok()) << from_cuda.status();
    const v1::DType out = asked == v1::DTYPE_UNSPECIFIED ? dtype : asked;
    for (size_t i = 0; i < blocks.size(); ++i) {
      SCOPED_TRACE(absl::StrCat("block ", blocks[i].key));
      const GetResult& cpu = (*from_cpu)[i];
      const GetResult& cuda = (*from_cuda)[i];
      // A block too large for the dtype asked (kLarge as FP16) is refused
      // by both, which needs both to have recorded the same absmax.
      ASSERT_EQ(cuda.status.code(), cpu.status.code())
          << "cpu: " << cpu.status << "; cuda: " << cuda.status;
      if (!cpu.status.ok()) continue;
      EXPECT_EQ(cuda.header.dtype(), cpu.header.dtype());
      EXPECT_TRUE(cuda.data == cpu.data)
          << FirstDifference(cuda.data, cpu.data, out);
      EXPECT_TRUE(cuda.data == ReferenceReadBack(blocks[i], out))
          << "cuda vs reference: "
          << FirstDifference(cuda.data, ReferenceReadBack(blocks[i], out), out);
    }
  }
  for (TestServer* backend : {cpu_, cuda_}) {
    absl::StatusOr<DeleteResult> deleted = backend->client->Delete(kNs, keys);
    ASSERT_TRUE(deleted.ok()) << deleted.status();
    EXPECT_EQ(deleted->deleted, keys.size()) << backend->device;
  }
}

KVQ_INSTANTIATE_FOR_EVERY_WIRE_DTYPE_AND_GRANULARITY(SameBlocks);

// ---------------------------------------------------------------------------

class NonFinitePut
    : public BackendCrossCheck,
      public ::testing::WithParamInterface<WireDTypeAndGranularity> {};

// The block sits between two valid ones on one stream; its bad value is in
// its last page, so the kernel has scattered earlier pages before the block
// is refused.
TEST_P(NonFinitePut, IsRefusedLikeOnCpuAndLeavesNoPageHeldOnCuda) {
  const auto [dtype, granularity] = GetParam();
  SCOPED_TRACE(absl::StrCat("seed ", seed_));
  const v1::Quantization quant =
      Quant(granularity, granularity == v1::GRANULARITY_GROUP ? 32 : 0);
  const std::string prefix =
      absl::StrCat("nonfinite-", std::string(wire::DTypeName(dtype)), "-",
                   v1::Granularity_Name(granularity), "-");
  TestBlock before = RandomBlock(rng_, kNs, prefix + "before", dtype,
                                 Shape(2, 32, 8, 64), quant);
  TestBlock bad =
      RandomBlock(rng_, kNs, prefix + "bad", dtype, Shape(2, 32, 8, 64), quant);
  TestBlock after = RandomBlock(rng_, kNs, prefix + "after", dtype,
                                Shape(2, 32, 8, 64), quant);
  const uint64_t elements = bad.elements();
  const uint64_t at =
      elements - 1 - std::uniform_int_distribution<uint64_t>(0, 255)(rng_);
  const float poison = std::uniform_int_distribution<int>(0, 1)(rng_) == 0
                           ? std::numeric_limits<float>::quiet_NaN()
                           : -std::numeric_limits<float>::infinity();
  SCOPED_TRACE(absl::StrCat("element ", at, " = ", poison));
  const std::string encoded = wire::EncodeFloats(dtype, {&poison, 1});
  std::memcpy(bad.data.data() + at * encoded.size(), encoded.data(),
              encoded.size());

  const PoolState cuda_start = PoolOf(*cuda_->client);
  const PoolState cpu_start = PoolOf(*cpu_->client);
  const std::vector<BlockToPut> puts = {before.ToPut(), bad.ToPut(),
                                        after.ToPut()};
  absl::StatusOr<std::vector<PutResult>> on_cpu = cpu_->client->PutMany(puts);
  absl::StatusOr<std::vector<PutResult>> on_cuda = cuda_->client->PutMany(puts);
  ASSERT_TRUE(on_cpu.ok()) << on_cpu.status();
  ASSERT_TRUE(on_cuda.ok()) << on_cuda.status();
  ASSERT_EQ(on_cuda->size(), 3u);
  EXPECT_TRUE((*on_cuda)[0].status.ok()) << (*on_cuda)[0].status;
  EXPECT_TRUE((*on_cuda)[2].status.ok()) << (*on_cuda)[2].status;
  EXPECT_EQ((*on_cuda)[1].status.code(), absl::StatusCode::kInvalidArgument)
      << (*on_cuda)[1].status;
  EXPECT_EQ(WithoutRequestId((*on_cuda)[1].status.message()),
            WithoutRequestId((*on_cpu)[1].status.message()))
      << "the CUDA server's refusal should read like the CPU server's";

  // Pages held grew by the two valid blocks only, exactly as on the CPU
  // server (same page size, same blocks).
  const PoolState cuda_end = PoolOf(*cuda_->client);
  const PoolState cpu_end = PoolOf(*cpu_->client);
  EXPECT_EQ(cuda_end.blocks, cuda_start.blocks + 2);
  EXPECT_EQ(cuda_end.logical_bytes,
            cuda_start.logical_bytes + before.data.size() + after.data.size());
  EXPECT_EQ(cuda_end.pages_used - cuda_start.pages_used,
            cpu_end.pages_used - cpu_start.pages_used);

  const std::vector<std::string> asked = {before.key, bad.key, after.key};
  absl::StatusOr<LookupResult> present = cuda_->client->Lookup(kNs, asked);
  ASSERT_TRUE(present.ok()) << present.status();
  EXPECT_EQ(present->present, (std::vector<bool>{true, false, true}));

  // The refusal left the GPU path healthy: the neighbours read back right.
  for (const TestBlock* block : {&before, &after}) {
    absl::StatusOr<GetResult> got = cuda_->client->GetOne(kNs, block->key);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(got->data == ReferenceReadBack(*block, dtype))
        << FirstDifference(got->data, ReferenceReadBack(*block, dtype), dtype);
  }

  const std::vector<std::string> keys = {before.key, after.key};
  for (TestServer* backend : {cpu_, cuda_}) {
    absl::StatusOr<DeleteResult> deleted = backend->client->Delete(kNs, keys);
    ASSERT_TRUE(deleted.ok()) << deleted.status();
  }
  EXPECT_EQ(PoolOf(*cuda_->client), cuda_start);
}

KVQ_INSTANTIATE_FOR_EVERY_WIRE_DTYPE_AND_GRANULARITY(NonFinitePut);

// ---------------------------------------------------------------------------

// Many clients at once: each call borrows its own CUDA stream context, and
// buffers grow while others are in use; every answer must still be exact.
TEST_F(BackendCrossCheck, ConcurrentClientsGetExactBlocksFromCuda) {
  SCOPED_TRACE(absl::StrCat("seed ", seed_));
  constexpr int kClients = 8;
  constexpr int kBlocksEach = 6;
  std::vector<std::vector<TestBlock>> blocks(kClients);
  for (int c = 0; c < kClients; ++c) {
    for (int b = 0; b < kBlocksEach; ++b) {
      const v1::DType dtype = std::vector<v1::DType>{
          v1::DTYPE_FP16, v1::DTYPE_BF16, v1::DTYPE_FP32}[(c + b) % 3];
      // Sizes grow within each client: staging buffers grow mid-run.
      blocks[c].push_back(RandomBlock(rng_, kNs,
                                      absl::StrCat("concurrent-", c, "-", b),
                                      dtype, Shape(2, 8 * (b + 1), 8, 128)));
    }
  }
  std::vector<std::string> errors(kClients);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      absl::StatusOr<std::unique_ptr<Client>> client =
          Client::Connect(cuda_->server->grpc_address());
      if (!client.ok()) {
        errors[c] = client.status().ToString();
        return;
      }
      for (const TestBlock& block : blocks[c]) {
        absl::StatusOr<PutResult> put = (*client)->Put(block.ToPut());
        if (!put.ok()) {
          errors[c] =
              absl::StrCat(block.key, ": put: ", put.status().ToString());
          return;
        }
      }
      for (const TestBlock& block : blocks[c]) {
        absl::StatusOr<GetResult> got = (*client)->GetOne(kNs, block.key);
        if (!got.ok()) {
          errors[c] =
              absl::StrCat(block.key, ": get: ", got.status().ToString());
          return;
        }
        const std::string expected = ReferenceReadBack(block, block.dtype);
        if (got->data != expected) {
          errors[c] =
              absl::StrCat(block.key, ": ",
                           FirstDifference(got->data, expected, block.dtype));
          return;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int c = 0; c < kClients; ++c) {
    EXPECT_EQ(errors[c], "") << "client " << c;
  }
  std::vector<std::string> keys;
  for (const auto& mine : blocks) {
    for (const TestBlock& block : mine) keys.push_back(block.key);
  }
  absl::StatusOr<DeleteResult> deleted = cuda_->client->Delete(kNs, keys);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->deleted, keys.size());
}

}  // namespace
}  // namespace kvq::testing
