#include "tests/integration/integration_testing.h"

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "client/element_codec.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "httplib.h"
#include "kernels/quantize.h"
#include "tests/unit/metrics_exposition_parser.h"

#ifndef KVQCTL_PATH
#error "KVQCTL_PATH must be defined (tests/integration/server.cmake)"
#endif

namespace kvq::testing {
namespace {

// Pool and page sizes of a default test server: room for every block the
// suite puts (the 64 MiB FP16 block takes 33 MiB), small enough for CI.
constexpr char kDefaultPoolBytes[] = "--pool_bytes=67108864";
constexpr char kDefaultPageBytes[] = "--page_bytes=65536";

// Mean 0, variance 1, from one 64-bit draw: the sum of four 16-bit uniforms
// (Irwin-Hall), close to a normal and fast enough for 64 MiB blocks.
float Normalish(uint64_t bits) {
  float sum = 0;
  for (int i = 0; i < 4; ++i, bits >>= 16)
    sum += static_cast<float>(bits & 0xffff);
  // Each uniform has variance 65536^2 / 12; four of them 65536^2 / 3.
  return (sum - 2 * 65535.0f) * (1.7320508f / 65536.0f);
}

bool NvidiaDevicePresent() { return access("/dev/nvidiactl", F_OK) == 0; }

float ScaleAt(const BlockLayout& layout, const std::string& payload,
              uint64_t group) {
  float scale;
  std::memcpy(&scale, payload.data() + layout.scales_offset + 4 * group, 4);
  return scale;
}

}  // namespace

uint64_t FreshSeed() {
  std::random_device device;
  return (uint64_t{device()} << 32) | device();
}

v1::BlockShape Shape(uint32_t planes, uint32_t tokens, uint32_t heads,
                     uint32_t head_dim) {
  v1::BlockShape shape;
  shape.set_planes(planes);
  shape.set_tokens(tokens);
  shape.set_heads(heads);
  shape.set_head_dim(head_dim);
  return shape;
}

v1::Quantization Quant(v1::Granularity granularity, uint32_t group_size) {
  v1::Quantization quantization;
  quantization.set_granularity(granularity);
  quantization.set_group_size(group_size);
  return quantization;
}

BlockToPut TestBlock::ToPut() const {
  BlockToPut block;
  block.ns = ns;
  block.key = key;
  block.dtype = dtype;
  block.shape = shape;
  block.quantization = quantization;
  block.data = data;
  return block;
}

uint64_t TestBlock::elements() const {
  return uint64_t{shape.planes()} * shape.tokens() * shape.heads() *
         shape.head_dim();
}

TestBlock RandomBlock(std::mt19937_64& rng, std::string ns, std::string key,
                      v1::DType dtype, const v1::BlockShape& shape,
                      const v1::Quantization& quantization, Values values) {
  TestBlock block;
  block.ns = std::move(ns);
  block.key = std::move(key);
  block.dtype = dtype;
  block.shape = shape;
  block.quantization = quantization;

  std::vector<float> x(block.elements());
  const uint32_t head_dim = shape.head_dim();
  // Outlier channels: a fixed few per block, as in real K caches.
  std::vector<bool> outlier(head_dim, false);
  for (uint32_t c = 0; c < head_dim; c += 1 + rng() % 17) outlier[c] = true;
  std::uniform_real_distribution<float> exponent(-3.0f, 3.0f);
  for (uint64_t i = 0; i < x.size(); ++i) {
    switch (values) {
      case Values::kNormal:
        x[i] = Normalish(rng());
        break;
      case Values::kOutlierChannels:
        x[i] = Normalish(rng()) * (outlier[i % head_dim] ? 40.0f : 1.0f);
        break;
      case Values::kWideRange:
        x[i] = std::pow(10.0f, exponent(rng)) * (rng() % 2 ? 1.0f : -1.0f);
        break;
      case Values::kLarge:
        x[i] = Normalish(rng()) * 1e5f;
        break;
    }
  }
  block.data = wire::EncodeFloats(dtype, x);
  return block;
}

DType KernelDType(v1::DType dtype) { return static_cast<DType>(dtype); }

absl::StatusOr<BlockLayout> KernelLayout(const TestBlock& block) {
  BlockShape shape;
  shape.planes = block.shape.planes();
  shape.tokens = block.shape.tokens();
  shape.heads = block.shape.heads();
  shape.head_dim = block.shape.head_dim();
  QuantSpec spec;
  if (block.quantization.granularity() != v1::GRANULARITY_UNSPECIFIED) {
    spec.granularity =
        static_cast<Granularity>(block.quantization.granularity());
  }
  spec.group_size = block.quantization.group_size();
  return MakeLayout(shape, spec);
}

namespace {

// The reference payload of `block` (int8 values + scales).
std::string ReferencePayload(const TestBlock& block,
                             const BlockLayout& layout) {
  std::string payload(layout.payload_bytes, '\0');
  const absl::Status status =
      QuantizeReference(layout, KernelDType(block.dtype), block.data.data(),
                        reinterpret_cast<uint8_t*>(payload.data()));
  EXPECT_TRUE(status.ok()) << status;
  return payload;
}

}  // namespace

std::string ReferenceReadBack(const TestBlock& block, v1::DType out_dtype) {
  absl::StatusOr<BlockLayout> layout = KernelLayout(block);
  EXPECT_TRUE(layout.ok()) << layout.status();
  if (!layout.ok()) return "";
  const std::string payload = ReferencePayload(block, *layout);
  std::string out(layout->logical_bytes(KernelDType(out_dtype)), '\0');
  DequantizeReference(*layout, reinterpret_cast<const uint8_t*>(payload.data()),
                      KernelDType(out_dtype), out.data());
  return out;
}

::testing::AssertionResult MatchesReference(const TestBlock& block,
                                            v1::DType out_dtype,
                                            std::string_view got) {
  absl::StatusOr<BlockLayout> layout = KernelLayout(block);
  if (!layout.ok()) {
    return ::testing::AssertionFailure()
           << "bad test block: " << layout.status();
  }
  const uint64_t expected_bytes = layout->logical_bytes(KernelDType(out_dtype));
  if (got.size() != expected_bytes) {
    return ::testing::AssertionFailure()
           << "got " << got.size() << " bytes, expected " << expected_bytes;
  }
  const std::string payload = ReferencePayload(block, *layout);
  const std::string_view put(block.data);
  auto element = [](v1::DType dtype, std::string_view bytes, uint64_t i) {
    if (dtype == v1::DTYPE_FP32) {
      float f;
      std::memcpy(&f, bytes.data() + 4 * i, 4);
      return f;
    }
    uint16_t h;
    std::memcpy(&h, bytes.data() + 2 * i, 2);
    return dtype == v1::DTYPE_FP16 ? wire::Fp16BitsToFloat(h)
                                   : wire::Bf16BitsToFloat(h);
  };
  int reported = 0;
  uint64_t outside = 0;
  ::testing::AssertionResult failure = ::testing::AssertionFailure();
  for (uint64_t i = 0; i < layout->elements; ++i) {
    const float x = element(block.dtype, put, i);
    const float y = element(out_dtype, got, i);
    const float scale = ScaleAt(*layout, payload, layout->GroupOf(i));
    const float error = std::fabs(x - y);
    // scale / 2 is below every form of the bound: only larger errors need
    // the exact (slower) bound.
    if (error <= std::fabs(scale) / 2) continue;
    const float bound = DequantErrorBound(x, scale, KernelDType(out_dtype));
    if (!(error <= bound)) {
      ++outside;
      if (reported++ < 5) {
        failure << "element " << i << ": put " << x << ", got " << y
                << ", |error| " << error << " > bound " << bound << " (scale "
                << scale << ")\n";
      }
    }
  }
  if (outside > 0) {
    return failure << outside << " of " << layout->elements
                   << " elements outside the bound";
  }
  if (TestDevice() == "cpu") {
    std::string expected(expected_bytes, '\0');
    DequantizeReference(*layout,
                        reinterpret_cast<const uint8_t*>(payload.data()),
                        KernelDType(out_dtype), expected.data());
    if (got != expected) {
      uint64_t first = 0;
      while (first < got.size() && got[first] == expected[first]) ++first;
      return ::testing::AssertionFailure()
             << "CPU server bytes differ from the reference, first at byte "
             << first << " of " << got.size();
    }
  }
  return ::testing::AssertionSuccess();
}

std::ostream& operator<<(std::ostream& os, const PoolState& state) {
  return os << "{blocks " << state.blocks << ", pages_used " << state.pages_used
            << ", logical_bytes " << state.logical_bytes << "}";
}

RawPutOutcome RawPut(const std::shared_ptr<grpc::Channel>& channel,
                     const std::vector<v1::PutRequest>& messages,
                     absl::Duration deadline) {
  auto stub = v1::KVCache::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(deadline));
  auto stream = stub->Put(&context);
  bool ok = true;
  for (const v1::PutRequest& message : messages) {
    if (!(ok = stream->Write(message))) break;
  }
  if (ok) stream->WritesDone();
  RawPutOutcome outcome;
  v1::PutResponse response;
  while (stream->Read(&response)) outcome.responses.push_back(response);
  outcome.status = stream->Finish();
  return outcome;
}

v1::PutRequest Chunk(const v1::BlockHeader* header, uint64_t offset,
                     std::string data, bool last, uint64_t sequence) {
  v1::PutRequest request;
  if (header != nullptr) *request.mutable_header() = *header;
  request.set_offset(offset);
  request.set_data(std::move(data));
  request.set_last(last);
  request.set_sequence(sequence);
  return request;
}

v1::BlockHeader HeaderOf(const TestBlock& block) {
  v1::BlockHeader header;
  header.set_namespace_(block.ns);
  header.set_key(block.key);
  header.set_dtype(block.dtype);
  *header.mutable_shape() = block.shape;
  *header.mutable_quantization() = block.quantization;
  return header;
}

absl::StatusOr<std::string> HttpGet(const std::string& host, int port,
                                    const std::string& path) {
  httplib::Client http(host, port);
  http.set_connection_timeout(10);
  http.set_read_timeout(30);
  httplib::Result result = http.Get(path.c_str());
  if (!result) {
    return absl::UnavailableError(
        absl::StrCat("GET ", path, ": ", httplib::to_string(result.error())));
  }
  if (result->status != 200) {
    return absl::InternalError(
        absl::StrCat("GET ", path, ": HTTP ", result->status));
  }
  return result->body;
}

namespace {

double GaugeNow(const ServerProcess& server, const std::string& name,
                const std::string& label, const std::string& value) {
  absl::StatusOr<std::string> text =
      HttpGet("127.0.0.1", server.metrics_port(), "/metrics");
  if (!text.ok()) return -1;
  absl::StatusOr<Exposition> exposition = Exposition::Parse(*text);
  if (!exposition.ok()) return -1;
  LabelSet labels;
  if (!label.empty()) labels = {{label, value}};
  return exposition->Value(name, labels).value_or(-1);
}

}  // namespace

double GaugeOnceZero(const ServerProcess& server, const std::string& name,
                     const std::string& label, const std::string& value,
                     absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  double now = GaugeNow(server, name, label, value);
  while (now != 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    now = GaugeNow(server, name, label, value);
  }
  return now;
}

StalledGet::StalledGet(const std::string& address, const std::string& ns,
                       const std::string& key, int copies) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  stub_ = v1::KVCache::NewStub(grpc::CreateCustomChannel(
      address, grpc::InsecureChannelCredentials(), args));
  v1::GetRequest request;
  request.set_namespace_(ns);
  for (int i = 0; i < copies; ++i) request.add_keys(key);
  reader_ = stub_->Get(&context_, request);
  v1::GetResponse first;
  started_ = reader_->Read(&first) && first.code() == 0;
}

StalledGet::~StalledGet() {
  context_.TryCancel();
  v1::GetResponse rest;
  while (reader_->Read(&rest)) {
  }
  reader_->Finish();
}

void ServerTest::SetUp() {
  if (TestDevice() == "cuda" && !NvidiaDevicePresent()) {
    GTEST_SKIP() << "KVQ_TEST_DEVICE=cuda but this machine has no NVIDIA GPU";
  }
  ServerOptions options;
  options.flags = {kDefaultPoolBytes, kDefaultPageBytes, "--log_level=info"};
  for (std::string& flag : ServerFlags()) options.flags.push_back(flag);
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = *std::move(server);
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::Connect(server_->grpc_address());
  ASSERT_TRUE(client.ok()) << client.status();
  client_ = *std::move(client);
}

void ServerTest::TearDown() {
  if (server_ != nullptr && HasFailure()) {
    std::cerr << "---- kvq-server log (tail) ----\n"
              << server_->log_tail(8192) << "\n---- end of log ----\n";
  }
  client_.reset();
  server_.reset();
}

std::unique_ptr<Client> ServerTest::NewClient(
    const ClientOptions& options) const {
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::Connect(server_->grpc_address(), options);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

v1::StatsResponse ServerTest::Stats() const {
  absl::StatusOr<v1::StatsResponse> stats = client_->Stats();
  EXPECT_TRUE(stats.ok()) << stats.status();
  return stats.ok() ? *stats : v1::StatsResponse();
}

PoolState ServerTest::Pool() const {
  const v1::StatsResponse stats = Stats();
  return PoolState{stats.blocks(), stats.pages_used(), stats.logical_bytes()};
}

bool ServerTest::Present(const std::string& ns, const std::string& key) const {
  const std::string keys[] = {key};
  absl::StatusOr<LookupResult> lookup = client_->Lookup(ns, keys);
  EXPECT_TRUE(lookup.ok()) << lookup.status();
  return lookup.ok() && lookup->present[0];
}

std::string WireDTypeAndGranularityName(
    const ::testing::TestParamInfo<WireDTypeAndGranularity>& info) {
  // "GRANULARITY_PER_TOKEN_HEAD" -> "PER_TOKEN_HEAD".
  return absl::StrCat(std::string(wire::DTypeName(std::get<0>(info.param))),
                      "_",
                      v1::Granularity_Name(std::get<1>(info.param)).substr(12));
}

std::string KvqctlPath() {
  return BinaryPath("KVQ_TEST_KVQCTL_BIN", KVQCTL_PATH);
}

}  // namespace kvq::testing
