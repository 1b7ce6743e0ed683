// kvqctl get: fetches one block and writes its raw elements to a file.

#include <cstdio>
#include <fstream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "client/element_codec.h"
#include "client/kvqctl/commands.h"
#include "client/kvqctl/flags.h"
#include "client/kvqctl/format.h"
#include "client/kvqctl/keys.h"

namespace kvq::kvqctl {
namespace {

absl::Status WriteOut(const std::string& path, const std::string& data) {
  if (path == "-") {
    if (std::fwrite(data.data(), 1, data.size(), stdout) != data.size() ||
        std::fflush(stdout) != 0) {
      return absl::DataLossError("cannot write the block to stdout");
    }
    return absl::OkStatus();
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  if (!out) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot write --out ", path));
  }
  return absl::OkStatus();
}

}  // namespace

int RunGet(Client& client, std::span<const std::string> args) {
  auto usage = [](std::string message) {
    return Fail("get", absl::InvalidArgumentError(message), true);
  };
  if (!args.empty()) return usage("takes no arguments (use --key / --key_hex)");
  absl::StatusOr<std::string> key = SingleKeyFromFlags();
  if (!key.ok()) return usage(std::string(key.status().message()));
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return usage("--out is required ('-' for stdout)");
  v1::DType dtype = v1::DTYPE_UNSPECIFIED;
  if (!absl::GetFlag(FLAGS_dtype).empty()) {
    absl::StatusOr<v1::DType> parsed =
        wire::ParseDType(absl::GetFlag(FLAGS_dtype));
    if (!parsed.ok()) return usage(std::string(parsed.status().message()));
    dtype = *parsed;
  }

  const std::string ns = absl::GetFlag(FLAGS_ns);
  absl::StatusOr<GetResult> result = client.GetOne(ns, *key, dtype);
  if (!result.ok()) return Fail("get", result.status());
  if (absl::Status written = WriteOut(out, result->data); !written.ok()) {
    return Fail("get", written);
  }
  // With the block on stdout, the summary goes to stderr.
  std::FILE* summary = out == "-" ? stderr : stdout;
  std::fprintf(summary, "got %s/%s: %s %s, %s -> %s\n", ns.c_str(),
               PrintableKey(*key).c_str(),
               ShapeString(result->header.shape()).c_str(),
               std::string(wire::DTypeName(result->header.dtype())).c_str(),
               HumanBytes(result->data.size()).c_str(), out.c_str());
  return kExitOk;
}

}  // namespace kvq::kvqctl
