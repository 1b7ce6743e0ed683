// Shared pieces of the integration suite: a test base that runs a real
// kvq-server, random blocks, the reference a server's answers are checked
// against, a raw Put stream for malformed input, a Get left unread, and plain
// HTTP for /metrics.
//
// Every test gets its own server (ServerTest::SetUp), started with
// ServerFlags() on top of the fixture's defaults, against the backend named
// by env KVQ_TEST_DEVICE (cpu|cuda, default cpu). With KVQ_TEST_DEVICE=cuda
// on a machine without an NVIDIA device the tests skip.
//
// What "correct" means here (kernels/format.h): for a CPU server, the bytes a
// Get returns equal QuantizeReference + DequantizeReference of what was put,
// byte for byte; on every backend, each element is within DequantErrorBound
// of the value that was put.

#ifndef KVQ_TESTS_INTEGRATION_INTEGRATION_TESTING_H_
#define KVQ_TESTS_INTEGRATION_INTEGRATION_TESTING_H_

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/kvq_client.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "kernels/format.h"
#include "kvq/v1/kvcache.grpc.pb.h"
#include "tests/integration/server_process.h"

namespace kvq::testing {

// A fresh seed from std::random_device. Tests print it with SCOPED_TRACE.
uint64_t FreshSeed();

// How the values of a random block are drawn.
enum class Values {
  kNormal,           // about N(0, 1) (Irwin-Hall: a sum of four uniforms)
  kOutlierChannels,  // kNormal with a few channels 40x larger
  kWideRange,        // magnitudes spread over 10^-3 .. 10^3, random signs
  kLarge,            // kNormal * 1e5: beyond FP16's range (use FP32)
};

v1::BlockShape Shape(uint32_t planes, uint32_t tokens, uint32_t heads,
                     uint32_t head_dim);
v1::Quantization Quant(v1::Granularity granularity, uint32_t group_size = 0);

// A block as a test puts it, and the values it holds.
struct TestBlock {
  std::string ns;
  std::string key;
  v1::DType dtype = v1::DTYPE_FP16;
  v1::BlockShape shape;
  v1::Quantization quantization;
  std::string data;  // the elements in `dtype`, as sent

  BlockToPut ToPut() const;
  uint64_t elements() const;
};

TestBlock RandomBlock(std::mt19937_64& rng, std::string ns, std::string key,
                      v1::DType dtype, const v1::BlockShape& shape,
                      const v1::Quantization& quantization = {},
                      Values values = Values::kNormal);

// The kernels' view of a wire block.
DType KernelDType(v1::DType dtype);
absl::StatusOr<BlockLayout> KernelLayout(const TestBlock& block);

// What a server must return for `block` read back as `out_dtype`: the
// reference quantization and dequantization of its data.
std::string ReferenceReadBack(const TestBlock& block, v1::DType out_dtype);

// Checks the answer to a Get of `block` as `out_dtype`: every element is
// within DequantErrorBound of the value put, and on a CPU server the bytes
// equal ReferenceReadBack. Reports the first elements that are not.
::testing::AssertionResult MatchesReference(const TestBlock& block,
                                            v1::DType out_dtype,
                                            std::string_view got);

// The pool state tests compare before and after a refused request.
struct PoolState {
  uint64_t blocks = 0;
  uint64_t pages_used = 0;
  uint64_t logical_bytes = 0;
  friend bool operator==(const PoolState&, const PoolState&) = default;
};
std::ostream& operator<<(std::ostream& os, const PoolState& state);

// A Put stream driven message by message, for input the client never sends.
struct RawPutOutcome {
  grpc::Status status;                     // how the RPC ended
  std::vector<v1::PutResponse> responses;  // every result, in order
};
RawPutOutcome RawPut(const std::shared_ptr<grpc::Channel>& channel,
                     const std::vector<v1::PutRequest>& messages,
                     absl::Duration deadline = absl::Seconds(30));

// One PutRequest; `header` may be null (a continuation chunk).
v1::PutRequest Chunk(const v1::BlockHeader* header, uint64_t offset,
                     std::string data, bool last, uint64_t sequence = 0);
v1::BlockHeader HeaderOf(const TestBlock& block);

// GET http://host:port/path; the body, or the error. Fails on non-200.
absl::StatusOr<std::string> HttpGet(const std::string& host, int port,
                                    const std::string& path);

// The gauge `name` with `labels` (a label name, its value; empty: none) on
// `server`'s /metrics once it is 0 or `limit` has passed, whichever comes
// first; -1 if it cannot be read. A server learns of a client gone on its
// own schedule, so a test waits (bounded) before it checks. E.g.
// kvq_staging_bytes{state="lent"}: the staging its calls still hold;
// kvq_rpcs_in_flight{rpc="get"}: the Get handlers still running.
double GaugeOnceZero(const ServerProcess& server, const std::string& name,
                     const std::string& label = "",
                     const std::string& value = "",
                     absl::Duration limit = absl::Seconds(20));

// A Get that the server is still answering: it asks for `key` `copies`
// times and reads only the first chunk, so that flow control holds the
// server's handler in its writes (and the server's socket full) until the
// Get is cancelled, on destruction. On a connection of its own, so that
// its stalled stream does not hold up other channels' windows.
class StalledGet {
 public:
  StalledGet(const std::string& address, const std::string& ns,
             const std::string& key, int copies);
  ~StalledGet();
  StalledGet(const StalledGet&) = delete;
  StalledGet& operator=(const StalledGet&) = delete;

  // Whether the first chunk came back (the call is under way).
  bool started() const { return started_; }

 private:
  std::unique_ptr<v1::KVCache::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::GetResponse>> reader_;
  bool started_ = false;
};

// A test with its own kvq-server and a client connected to it.
class ServerTest : public ::testing::Test {
 protected:
  // Flags for this test's server, after the fixture's defaults
  // (--pool_bytes=64 MiB, --page_bytes=64 KiB, --log_level=info).
  virtual std::vector<std::string> ServerFlags() const { return {}; }

  void SetUp() override;
  void TearDown() override;

  // Another client of the same server.
  std::unique_ptr<Client> NewClient(const ClientOptions& options = {}) const;
  PoolState Pool() const;  // from Stats
  v1::StatsResponse Stats() const;
  // Whether `key` in `ns` is held now (Lookup).
  bool Present(const std::string& ns, const std::string& key) const;

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Client> client_;
};

// Path of the kvqctl binary: env KVQ_TEST_KVQCTL_BIN, else the one built.
std::string KvqctlPath();

// Parameters of a suite run for every wire dtype x granularity
// (KVQ_INSTANTIATE_FOR_EVERY_WIRE_DTYPE_AND_GRANULARITY), and their test
// names, like "fp16_PER_TOKEN_HEAD".
using WireDTypeAndGranularity = std::tuple<v1::DType, v1::Granularity>;
std::string WireDTypeAndGranularityName(
    const ::testing::TestParamInfo<WireDTypeAndGranularity>& info);

#define KVQ_INSTANTIATE_FOR_EVERY_WIRE_DTYPE_AND_GRANULARITY(suite)         \
  INSTANTIATE_TEST_SUITE_P(                                                \
      DTypesAndGranularities, suite,                                       \
      ::testing::Combine(                                                  \
          ::testing::Values(::kvq::v1::DTYPE_FP16, ::kvq::v1::DTYPE_BF16, \
                            ::kvq::v1::DTYPE_FP32),                       \
          ::testing::Values(::kvq::v1::GRANULARITY_PER_TOKEN_HEAD,         \
                            ::kvq::v1::GRANULARITY_PER_CHANNEL,            \
                            ::kvq::v1::GRANULARITY_PER_TENSOR,             \
                            ::kvq::v1::GRANULARITY_GROUP)),                \
      ::kvq::testing::WireDTypeAndGranularityName)

}  // namespace kvq::testing

#endif  // KVQ_TESTS_INTEGRATION_INTEGRATION_TESTING_H_
