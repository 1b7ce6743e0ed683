// kvqctl driven as a subprocess against a real server: every command, the
// output people read, and exit codes scripts rely on.

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/element_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/integration_testing.h"

namespace kvq::testing {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;

class KvqctlTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    char dir[] = "/tmp/kvqctl-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
  }

  void TearDown() override {
    for (const std::string& file : files_) std::remove(file.c_str());
    if (!dir_.empty()) rmdir(dir_.c_str());
    ServerTest::TearDown();
  }

  // Runs kvqctl against this test's server.
  ProcessOutput Kvqctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {
        KvqctlPath(), absl::StrCat("--server=", server_->grpc_address())};
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<ProcessOutput> output = RunProcess(argv);
    EXPECT_TRUE(output.ok()) << output.status();
    if (!output.ok()) return ProcessOutput{};
    return *output;
  }

  std::string File(const std::string& name) {
    files_.push_back(absl::StrCat(dir_, "/", name));
    return files_.back();
  }

  static std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)),
                       std::istreambuf_iterator<char>());
  }

  std::string dir_;
  std::vector<std::string> files_;
};

// Exit status and output, for assertion messages.
std::string Describe(const ProcessOutput& output) {
  return absl::StrCat(output.status.ToString(), "\nstdout:\n", output.out,
                      "\nstderr:\n", output.err);
}

bool ExitedWith(const ProcessOutput& output, int code) {
  return output.status.exited && output.status.code == code;
}

TEST_F(KvqctlTest, HealthExitsZeroOnlyWhenTheServerIsServing) {
  ProcessOutput health = Kvqctl({"health"});
  EXPECT_TRUE(ExitedWith(health, 0)) << Describe(health);
  EXPECT_THAT(health.out, HasSubstr("SERVING"));

  // Nothing listens on port 1: unreachable is a failure, said clearly.
  absl::StatusOr<ProcessOutput> unreachable = RunProcess(
      {KvqctlPath(), "--server=127.0.0.1:1", "--deadline_ms=5000", "health"});
  ASSERT_TRUE(unreachable.ok()) << unreachable.status();
  EXPECT_TRUE(ExitedWith(*unreachable, 1)) << Describe(*unreachable);
  EXPECT_THAT(unreachable->err, HasSubstr("UNAVAILABLE"));
}

TEST_F(KvqctlTest, PutRandomGetLookupDeleteAndStatsWorkEndToEnd) {
  ProcessOutput put =
      Kvqctl({"put", "--ns=cli", "--key=k1", "--random", "--shape=2,16,4,64",
              "--dtype=bf16", "--seed=42"});
  ASSERT_TRUE(ExitedWith(put, 0)) << Describe(put);
  EXPECT_THAT(put.out, HasSubstr("stored cli/k1"));
  EXPECT_THAT(put.out, HasSubstr("seed 42"));

  // The same seed draws the same block.
  put = Kvqctl({"put", "--ns=cli", "--key=k2", "--random", "--shape=2,16,4,64",
                "--dtype=bf16", "--seed=42"});
  ASSERT_TRUE(ExitedWith(put, 0)) << Describe(put);

  const std::string out = File("k1.bin");
  ProcessOutput get = Kvqctl({"get", "--ns=cli", "--key=k1", "--out=" + out});
  ASSERT_TRUE(ExitedWith(get, 0)) << Describe(get);
  EXPECT_THAT(get.out, HasSubstr("2x16x4x64 bf16"));
  const std::string k1 = Read(out);
  EXPECT_EQ(k1.size(), 2u * 16 * 4 * 64 * 2);
  absl::StatusOr<GetResult> direct = client_->GetOne("cli", "k1");
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(k1, direct->data);
  absl::StatusOr<GetResult> twin = client_->GetOne("cli", "k2");
  ASSERT_TRUE(twin.ok()) << twin.status();
  EXPECT_EQ(twin->data, direct->data);
  absl::StatusOr<std::vector<float>> values =
      wire::DecodeFloats(v1::DTYPE_BF16, k1);
  ASSERT_TRUE(values.ok());
  EXPECT_NE((*values)[0], 0.0f);

  // Another dtype on the way out.
  const std::string out32 = File("k1-fp32.bin");
  get =
      Kvqctl({"get", "--ns=cli", "--key=k1", "--dtype=fp32", "--out=" + out32});
  ASSERT_TRUE(ExitedWith(get, 0)) << Describe(get);
  EXPECT_EQ(Read(out32).size(), 2u * 16 * 4 * 64 * 4);

  ProcessOutput lookup = Kvqctl({"lookup", "--ns=cli", "k1", "missing", "k2"});
  ASSERT_TRUE(ExitedWith(lookup, 0)) << Describe(lookup);
  EXPECT_THAT(lookup.out, ContainsRegex("k1 +yes"));
  EXPECT_THAT(lookup.out, ContainsRegex("missing +no"));
  EXPECT_THAT(lookup.out, ContainsRegex("k2 +yes"));
  EXPECT_THAT(lookup.out, HasSubstr("prefix_length 1 of 3"));

  ProcessOutput stats = Kvqctl({"stats"});
  ASSERT_TRUE(ExitedWith(stats, 0)) << Describe(stats);
  EXPECT_THAT(stats.out, ContainsRegex("backend +" + TestDevice()));
  EXPECT_THAT(stats.out, ContainsRegex("blocks +2"));
  EXPECT_THAT(stats.out, ContainsRegex("compression ratio +[0-9.]+x"));
  EXPECT_THAT(stats.out, ContainsRegex("hit rate +[0-9.]+%"));
  EXPECT_THAT(stats.out, ContainsRegex("cli +2 "));  // the namespace table

  ProcessOutput deleted = Kvqctl({"delete", "--ns=cli", "k1", "never"});
  ASSERT_TRUE(ExitedWith(deleted, 0)) << Describe(deleted);
  EXPECT_THAT(deleted.out, HasSubstr("deleted 1 of 2"));
  lookup = Kvqctl({"lookup", "--ns=cli", "k1"});
  ASSERT_TRUE(ExitedWith(lookup, 0)) << Describe(lookup);
  EXPECT_THAT(lookup.out, ContainsRegex("k1 +no"));
  EXPECT_EQ(Stats().blocks(), 1u);
}

TEST_F(KvqctlTest, PutFileStoresTheFilesBytesWithTheGivenQuantization) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937_64 rng(seed);
  const TestBlock block =
      RandomBlock(rng, "cli", "from-file", v1::DTYPE_FP16, Shape(2, 8, 2, 96),
                  Quant(v1::GRANULARITY_GROUP, 32), Values::kOutlierChannels);
  const std::string in = File("block.bin");
  {
    std::ofstream file(in, std::ios::binary);
    file.write(block.data.data(), block.data.size());
  }
  ProcessOutput put = Kvqctl(
      {"put", "--ns=cli", "--key=from-file", "--file=" + in, "--dtype=fp16",
       "--shape=2,8,2,96", "--granularity=group", "--group_size=32"});
  ASSERT_TRUE(ExitedWith(put, 0)) << Describe(put);
  EXPECT_THAT(put.out, HasSubstr("group"));

  const std::string out = File("back.bin");
  ProcessOutput get =
      Kvqctl({"get", "--ns=cli", "--key=from-file", "--out=" + out});
  ASSERT_TRUE(ExitedWith(get, 0)) << Describe(get);
  EXPECT_TRUE(MatchesReference(block, v1::DTYPE_FP16, Read(out)));
}

TEST_F(KvqctlTest, HexKeysNameBinaryKeys) {
  ProcessOutput put = Kvqctl(
      {"put", "--ns=cli", "--key_hex=00ff10", "--random", "--shape=2,4,2,32"});
  ASSERT_TRUE(ExitedWith(put, 0)) << Describe(put);
  EXPECT_THAT(put.out, HasSubstr("0x00ff10"));
  EXPECT_TRUE(Present("cli", std::string("\x00\xff\x10", 3)));
  ProcessOutput lookup =
      Kvqctl({"lookup", "--ns=cli", "--hex", "00ff10", "00"});
  ASSERT_TRUE(ExitedWith(lookup, 0)) << Describe(lookup);
  EXPECT_THAT(lookup.out, ContainsRegex("0x00ff10 +yes"));
  EXPECT_THAT(lookup.out, HasSubstr("prefix_length 1 of 2"));
  ProcessOutput bad = Kvqctl({"lookup", "--ns=cli", "--hex", "0g"});
  EXPECT_TRUE(ExitedWith(bad, 2)) << Describe(bad);
}

TEST_F(KvqctlTest, ErrorsExitNonZeroWithTheServersMessage) {
  // A miss.
  ProcessOutput get = Kvqctl(
      {"get", "--ns=cli", "--key=absent", "--out=" + File("absent.bin")});
  EXPECT_TRUE(ExitedWith(get, 1)) << Describe(get);
  EXPECT_THAT(get.err, HasSubstr("NOT_FOUND"));

  // Refused by the server: its message reaches the user unchanged.
  ProcessOutput put =
      Kvqctl({"put", "--ns=cli", "--key=k", "--random", "--shape=2,16,0,64"});
  EXPECT_TRUE(ExitedWith(put, 1)) << Describe(put);
  EXPECT_THAT(put.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(put.err, HasSubstr("header.shape.heads"));

  // A file that does not match dtype x shape.
  const std::string in = File("odd.bin");
  {
    std::ofstream file(in, std::ios::binary);
    file << "seven b";
  }
  put = Kvqctl({"put", "--ns=cli", "--key=k", "--file=" + in, "--dtype=fp16",
                "--shape=1,1,1,4"});
  EXPECT_TRUE(ExitedWith(put, 1)) << Describe(put);
  EXPECT_THAT(put.err, HasSubstr("data"));

  // Bad command lines are usage errors (2), caught before any RPC.
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"put", "--ns=cli", "--key=k", "--random", "--shape=2,16"},
           {"put", "--ns=cli", "--key=k", "--random", "--shape=2,16,4,64",
            "--dtype=fp8"},
           {"put", "--ns=cli", "--random", "--shape=2,16,4,64"},
           {"get", "--ns=cli", "--key=k"},
           {"frobnicate"},
       }) {
    ProcessOutput usage = Kvqctl(args);
    EXPECT_TRUE(ExitedWith(usage, 2)) << Describe(usage);
    EXPECT_FALSE(usage.err.empty());
  }
  EXPECT_EQ(Stats().blocks(), 0u);
}

}  // namespace
}  // namespace kvq::testing
