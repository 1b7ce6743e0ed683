// What operators and orchestrators rely on, through a real server: health
// checks, the /metrics endpoint, server reflection, start-up errors, and a
// clean exit on SIGTERM / SIGINT.

#include <signal.h>
#include <unistd.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "reflection_v1alpha.grpc.pb.h"
#include "tests/integration/integration_testing.h"

namespace kvq::testing {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
namespace reflection = ::grpc::reflection::v1alpha;

// The value of the unlabelled sample `name` in Prometheus text, if any.
std::optional<double> SampleValue(const std::string& text,
                                  const std::string& name) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, name + " ")) continue;
    double value = 0;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (fields.size() >= 2 && absl::SimpleAtod(fields[1], &value)) return value;
  }
  return std::nullopt;
}

TEST_F(ServerTest, HealthIsServingForTheServerAndTheKVCacheService) {
  absl::StatusOr<ServingStatus> health = client_->Health();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, ServingStatus::kServing);
  health = client_->Health("kvq.v1.KVCache");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, ServingStatus::kServing);
  // grpc.health.v1: a service the server does not know is NOT_FOUND.
  EXPECT_EQ(client_->Health("no.such.Service").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ServerTest, MetricsEndpointServesPoolFiguresInPrometheusText) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const TestBlock block =
      RandomBlock(rng, "metrics", "k", v1::DTYPE_FP16, Shape(2, 64, 8, 128));
  ASSERT_TRUE(client_->Put(block.ToPut()).ok());
  const v1::StatsResponse stats = Stats();

  absl::StatusOr<std::string> body =
      HttpGet("127.0.0.1", server_->metrics_port(), "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body, HasSubstr("# TYPE kvq_"));
  int kvq_samples = 0;
  for (absl::string_view line : absl::StrSplit(*body, '\n')) {
    if (absl::StartsWith(line, "kvq_")) ++kvq_samples;
  }
  EXPECT_GT(kvq_samples, 10) << *body;
  // The pool's figures agree with Stats.
  EXPECT_EQ(SampleValue(*body, "kvq_blocks"), 1.0) << *body;
  EXPECT_EQ(SampleValue(*body, "kvq_logical_bytes"),
            static_cast<double>(block.data.size()))
      << *body;
  EXPECT_EQ(SampleValue(*body, "kvq_pool_used_bytes"),
            static_cast<double>(stats.pool_used_bytes()))
      << *body;
}

TEST_F(ServerTest, ReflectionListsTheServicesAndDescribesTheWireApi) {
  auto stub = reflection::ServerReflection::NewStub(client_->channel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  auto stream = stub->ServerReflectionInfo(&context);

  reflection::ServerReflectionRequest list;
  list.set_list_services("");
  ASSERT_TRUE(stream->Write(list));
  reflection::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_TRUE(response.has_list_services_response())
      << response.error_response().error_message();
  std::vector<std::string> services;
  for (const auto& service : response.list_services_response().service()) {
    services.push_back(service.name());
  }
  EXPECT_THAT(services, Contains("kvq.v1.KVCache"));
  EXPECT_THAT(services, Contains("grpc.health.v1.Health"));

  reflection::ServerReflectionRequest describe;
  describe.set_file_containing_symbol("kvq.v1.KVCache");
  ASSERT_TRUE(stream->Write(describe));
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_TRUE(response.has_file_descriptor_response())
      << response.error_response().error_message();
  bool found = false;
  for (const std::string& bytes :
       response.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(bytes));
    if (file.package() != "kvq.v1") continue;
    for (const auto& service : file.service()) {
      if (service.name() != "KVCache") continue;
      found = true;
      std::vector<std::string> methods;
      for (const auto& method : service.method())
        methods.push_back(method.name());
      EXPECT_THAT(methods, ::testing::UnorderedElementsAre(
                               "Put", "Get", "Lookup", "Delete", "Stats"));
    }
  }
  EXPECT_TRUE(found) << "no kvq.v1 file describing KVCache";
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

class ShutdownTest : public ServerTest,
                     public ::testing::WithParamInterface<int> {
 protected:
  static constexpr int kGraceSeconds = 2;
  // The most a server takes past its grace (README, --shutdown_grace_seconds).
  static constexpr absl::Duration kExitSlack = absl::Seconds(1);

  std::vector<std::string> ServerFlags() const override {
    return {absl::StrCat("--shutdown_grace_seconds=", kGraceSeconds)};
  }
};

TEST_P(ShutdownTest, SignalEndsTheServerWithExitCodeZeroWithinTheGrace) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const TestBlock block =
      RandomBlock(rng, "shutdown", "k", v1::DTYPE_FP16, Shape(2, 64, 8, 128));
  ASSERT_TRUE(client_->Put(block.ToPut()).ok());

  // A Put stream left open in the middle of a block: in flight at the signal,
  // it holds the drain until the grace runs out and is then cancelled.
  auto stub = v1::KVCache::NewStub(client_->channel());
  grpc::ClientContext context;
  auto stream = stub->Put(&context);
  const v1::BlockHeader header = HeaderOf(block);
  ASSERT_TRUE(stream->Write(
      Chunk(&header, 0, block.data.substr(0, block.data.size() / 2), false)));

  // The slack covers a slow machine, and is no timing claim.
  absl::StatusOr<ExitStatus> exit = server_->Stop(
      GetParam(), absl::Seconds(kGraceSeconds) + absl::Seconds(30));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->exited) << exit->ToString();
  EXPECT_EQ(exit->code, 0) << exit->ToString();
  v1::PutResponse response;
  EXPECT_FALSE(stream->Read(&response));
  EXPECT_FALSE(stream->Finish().ok());
  EXPECT_THAT(server_->log_tail(), HasSubstr("NOT_SERVING"));
}

// A client that stops reading a large Get leaves the server's handler in a
// write and its socket full. The handler noticed the cancel at the grace's
// end only when the client's gRPC next polled (5 s later here), and gRPC's
// library shutdown then waited out its own 10 s poll of that socket: the
// process lingered up to 10 s past the grace. It now exits at most a second
// after it, whatever the client does.
TEST_P(ShutdownTest, AClientThatStoppedReadingDoesNotHoldTheExitPastTheGrace) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const TestBlock block =
      RandomBlock(rng, "shutdown", "big", v1::DTYPE_FP16, Shape(2, 256, 8, 128));
  ASSERT_TRUE(client_->Put(block.ToPut()).ok());  // 1 MiB
  const StalledGet stalled(server_->grpc_address(), "shutdown", block.key, 64);
  ASSERT_TRUE(stalled.started());

  const absl::Time signalled = absl::Now();
  absl::StatusOr<ExitStatus> exit = server_->Stop(
      GetParam(), absl::Seconds(kGraceSeconds) + absl::Seconds(30));
  const absl::Duration took = absl::Now() - signalled;
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->exited) << exit->ToString();
  EXPECT_EQ(exit->code, 0) << exit->ToString();
  // The grace (the stalled call holds the drain to its end), the server's
  // slack past it, and 1.5 s for a slow machine.
  EXPECT_LT(took, absl::Seconds(kGraceSeconds) + kExitSlack +
                      absl::Milliseconds(1500))
      << took;
  // Whether the stalled handler returns within the grace's second is up to
  // the client's gRPC: the server either stopped in order or says what it
  // left behind.
  const std::string log = server_->log_tail();
  EXPECT_TRUE(absl::StrContains(log, "kvq-server stopped") ||
              absl::StrContains(
                  log, "0 put and 1 get calls still running 1 s after"))
      << log;
}

INSTANTIATE_TEST_SUITE_P(SigtermAndSigint, ShutdownTest,
                         ::testing::Values(SIGTERM, SIGINT),
                         [](const auto& info) {
                           return info.param == SIGTERM ? "SIGTERM" : "SIGINT";
                         });

class JsonDebugLogTest : public ServerTest {
 protected:
  std::vector<std::string> ServerFlags() const override {
    return {"--log_level=debug", "--log_format=json"};
  }

  // The server's log once `done` holds for it (a call's log line is
  // written as the server finishes it, which may be just after the client
  // has its answer), or after a few seconds whatever it is.
  std::string LogWhen(const std::function<bool(const std::string&)>& done) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    std::string log = server_->log_tail(1 << 20);
    while (!done(log) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
      log = server_->log_tail(1 << 20);
    }
    return log;
  }
};

// Every line is one JSON object; each RPC gets a debug line; a refused block
// is logged with the request id its client sees at the end of the message.
TEST_F(JsonDebugLogTest, LinesAreJsonAndErrorsCarryTheClientsRequestId) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const TestBlock block =
      RandomBlock(rng, "logs", "short", v1::DTYPE_FP16, Shape(1, 4, 2, 64));
  BlockToPut put = block.ToPut();
  put.data.remove_suffix(2);  // one element short
  const absl::Status refused = client_->Put(put).status();
  ASSERT_EQ(refused.code(), absl::StatusCode::kInvalidArgument) << refused;
  const std::string message(refused.message());
  const size_t at = message.rfind("[request ");
  ASSERT_NE(at, std::string::npos) << message;
  ASSERT_TRUE(absl::EndsWith(message, "]")) << message;
  const std::string id = message.substr(at + 9, message.size() - at - 10);
  ASSERT_FALSE(id.empty()) << message;

  EXPECT_EQ(client_->GetOne("logs", "absent").status().code(),
            absl::StatusCode::kNotFound);

  const std::string request = absl::StrCat("request=", id);
  const std::string log = LogWhen([&](const std::string& text) {
    return absl::StrContains(text, request) &&
           absl::StrContains(text, "rpc=get");
  });
  bool error_line = false, get_line = false;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    EXPECT_TRUE(absl::StartsWith(line, "{\"time\":\"") &&
                absl::EndsWith(line, "\"}"))
        << "not a JSON log line: " << line;
    if (absl::StrContains(line, request) &&
        absl::StrContains(line, "\"level\":\"warning\"") &&
        absl::StrContains(line, "INVALID_ARGUMENT")) {
      error_line = true;
    }
    if (absl::StrContains(line, "\"level\":\"debug\"") &&
        absl::StrContains(line, "rpc=get") &&
        absl::StrContains(line, "code=OK")) {
      get_line = true;
    }
  }
  EXPECT_TRUE(error_line) << "no warning naming " << request << " in:\n" << log;
  EXPECT_TRUE(get_line) << "no debug line for the Get in:\n" << log;
}

TEST(ServerStartTest, InvalidFlagFailsAtStartNamingTheFlag) {
  ServerOptions options;
  options.flags = {"--eviction=sometimes"};
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable)
      << server.status();  // it exited before it was ready
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("eviction"));
  EXPECT_THAT(std::string(server.status().message()),
              HasSubstr("exited with code 1"));
}

TEST(ServerStartTest, UnknownPutBuffersFailsAtStartNamingTheChoices) {
  ServerOptions options;
  options.flags = {"--put_buffers=pinned"};
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()),
              HasSubstr("--put_buffers must be page_locked, plain or received"));
}

// Every way a put reaches the backend round-trips the same, blocks of many
// chunks and many of gRPC's buffers included: read where gRPC received them
// (the default; with CUDA, from the page-locked process heap), copied into
// page-locked staging, or into plain memory.
class PutBuffersTest : public ServerTest,
                       public ::testing::WithParamInterface<const char*> {
 protected:
  std::vector<std::string> ServerFlags() const override {
    return {absl::StrCat("--put_buffers=", GetParam()),
            "--pinned_heap_bytes=268435456"};
  }
};

TEST_P(PutBuffersTest, BlocksRoundTripWithinTheBound) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  std::vector<TestBlock> blocks;
  for (v1::DType dtype : {v1::DTYPE_FP16, v1::DTYPE_BF16, v1::DTYPE_FP32}) {
    blocks.push_back(RandomBlock(rng, GetParam(), absl::StrCat("k", dtype),
                                 dtype, Shape(2, 40, 4, 128)));
    blocks.push_back(RandomBlock(rng, GetParam(), absl::StrCat("big", dtype),
                                 dtype, Shape(2, 700, 8, 128)));
  }
  std::vector<BlockToPut> puts;
  for (const TestBlock& b : blocks) puts.push_back(b.ToPut());
  absl::StatusOr<std::vector<PutResult>> stored = client_->PutMany(puts);
  ASSERT_TRUE(stored.ok()) << stored.status();
  for (size_t i = 0; i < blocks.size(); ++i) {
    ASSERT_TRUE((*stored)[i].status.ok()) << (*stored)[i].status;
    absl::StatusOr<GetResult> got = client_->GetOne(GetParam(), blocks[i].key);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(MatchesReference(blocks[i], blocks[i].dtype, got->data))
        << blocks[i].key;
  }
}

INSTANTIATE_TEST_SUITE_P(Alternatives, PutBuffersTest,
                         ::testing::Values("received", "page_locked", "plain"));

TEST(ServerStartTest, CudaDeviceWithoutAGpuFailsAtStartWithAClearMessage) {
  if (access("/dev/nvidiactl", F_OK) == 0) {
    GTEST_SKIP() << "this machine has an NVIDIA GPU";
  }
  ServerOptions options;
  options.flags = {"--device=cuda"};
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(options);
  ASSERT_FALSE(server.ok()) << "kvq-server started on CUDA without a GPU";
  EXPECT_THAT(std::string(server.status().message()),
              HasSubstr("exited with code 1"));
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("cuda"));
}

}  // namespace
}  // namespace kvq::testing
