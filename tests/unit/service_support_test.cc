// The service's small pure parts: environment overrides of flags, JSON log
// lines, Get chunk sizes.

#include <cstdlib>
#include <string>

#include "absl/flags/flag.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/env_flags.h"
#include "server/service/kvcache_service.h"
#include "server/service/logging.h"
#include "spdlog/details/log_msg.h"
#include "tests/unit/service_test_util.h"

ABSL_FLAG(int32_t, env_test_threads, 7, "a flag for the env override test");
ABSL_FLAG(std::string, env_test_name, "default", "another one");

namespace kvq {
namespace {

using ::kvq::service_testing::SeededTest;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

constexpr std::string_view kTestFlags[] = {"env_test_threads", "env_test_name"};

TEST(EnvFlagsTest, VariableNameIsKvqPrefixPlusUpperCaseFlag) {
  EXPECT_EQ(EnvVarForFlag("pool_bytes"), "KVQ_POOL_BYTES");
  EXPECT_EQ(EnvVarForFlag("listen"), "KVQ_LISTEN");
}

TEST(EnvFlagsTest, SetVariablesOverrideDefaultsAndUnsetOnesDoNot) {
  absl::SetFlag(&FLAGS_env_test_threads, 7);
  absl::SetFlag(&FLAGS_env_test_name, "default");
  setenv("KVQ_ENV_TEST_THREADS", "42", 1);
  unsetenv("KVQ_ENV_TEST_NAME");

  ASSERT_TRUE(ApplyEnvOverrides(kTestFlags).ok());

  EXPECT_EQ(absl::GetFlag(FLAGS_env_test_threads), 42);
  EXPECT_EQ(absl::GetFlag(FLAGS_env_test_name), "default");
  unsetenv("KVQ_ENV_TEST_THREADS");
}

TEST(EnvFlagsTest, UnparsableValueIsInvalidArgumentNamingTheVariable) {
  setenv("KVQ_ENV_TEST_THREADS", "many", 1);
  absl::Status status = ApplyEnvOverrides(kTestFlags);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("KVQ_ENV_TEST_THREADS"));
  EXPECT_THAT(status.message(), HasSubstr("--env_test_threads"));
  unsetenv("KVQ_ENV_TEST_THREADS");
}

TEST(EnvFlagsTest, UnknownFlagNameIsInternal) {
  constexpr std::string_view kUnknown[] = {"no_such_flag_anywhere"};
  EXPECT_EQ(ApplyEnvOverrides(kUnknown).code(), absl::StatusCode::kInternal);
}

TEST(LoggingTest, JsonLinesEscapeQuotesBackslashesAndControlCharacters) {
  auto formatter = MakeJsonLogFormatter();
  const std::string text = "key \"a\\b\"\n\tend\x01";
  spdlog::details::log_msg msg("kvq", spdlog::level::warn,
                               spdlog::string_view_t(text.data(), text.size()));
  spdlog::memory_buf_t out;
  formatter->format(msg, out);
  const std::string line(out.data(), out.size());
  EXPECT_THAT(line, MatchesRegex(
                        "\\{\"time\":\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}"
                        ":[0-9]{2}\\.[0-9]{6}Z\",\"level\":\"warning\","
                        "\"thread\":[0-9]+,\"msg\":\".*\"\\}\n"));
  EXPECT_THAT(line,
              HasSubstr("\"msg\":\"key \\\"a\\\\b\\\"\\n\\tend\\u0001\"}"));
}

TEST(LoggingTest, UnknownLevelOrFormatIsRefusedNamingTheFlag) {
  EXPECT_THAT(ConfigureLogging("loud", "text").message(),
              HasSubstr("--log_level"));
  EXPECT_THAT(ConfigureLogging("info", "xml").message(),
              HasSubstr("--log_format"));
  EXPECT_TRUE(ConfigureLogging("info", "json").ok());
  EXPECT_TRUE(ConfigureLogging("debug", "text").ok());
}

TEST(GetChunkBytesTest, DefaultIsOneMebibyteAndRequestsAreCappedBelowTheLimit) {
  constexpr uint64_t kLimit = 8 << 20;
  EXPECT_EQ(GetChunkBytes(0, kLimit), uint64_t{1} << 20);
  EXPECT_EQ(GetChunkBytes(4096, kLimit), 4096u);
  EXPECT_EQ(GetChunkBytes(1, kLimit), 1u);
  EXPECT_LT(GetChunkBytes(64 << 20, kLimit), kLimit);
  EXPECT_GT(GetChunkBytes(64 << 20, kLimit), kLimit - (64 << 10));
  // A limit below the default chunk caps the default too.
  EXPECT_LT(GetChunkBytes(0, 512 << 10), uint64_t{512} << 10);
  EXPECT_GE(GetChunkBytes(0, 4096), 1u);
  EXPECT_LT(GetChunkBytes(0, 4096), 4096u);
}

}  // namespace
}  // namespace kvq
