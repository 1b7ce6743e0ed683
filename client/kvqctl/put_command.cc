// kvqctl put: stores one block, read from a file or drawn at random.

#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/element_codec.h"
#include "client/kvqctl/commands.h"
#include "client/kvqctl/flags.h"
#include "client/kvqctl/format.h"
#include "client/kvqctl/keys.h"

namespace kvq::kvqctl {
namespace {

// A random block is built in memory; past this it is a typo, not a test.
constexpr uint64_t kMaxRandomBytes = uint64_t{1} << 30;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open --file ", path));
  }
  std::string data((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("cannot read --file ", path));
  }
  return data;
}

// Normal(0, 1) values of `shape` in `dtype`, from `seed`.
absl::StatusOr<std::string> RandomBlock(const v1::BlockShape& shape,
                                        v1::DType dtype, uint64_t seed) {
  const uint64_t elements = uint64_t{shape.planes()} * shape.tokens() *
                            shape.heads() * shape.head_dim();
  if (elements * wire::ElementBytes(dtype) > kMaxRandomBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--random blocks are limited to ", kMaxRandomBytes, " bytes"));
  }
  std::mt19937_64 engine(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(elements);
  for (float& v : values) v = normal(engine);
  return wire::EncodeFloats(dtype, values);
}

}  // namespace

int RunPut(Client& client, std::span<const std::string> args) {
  auto usage = [](std::string message) {
    return Fail("put", absl::InvalidArgumentError(message), true);
  };
  if (!args.empty()) return usage("takes no arguments (use --key / --key_hex)");
  absl::StatusOr<std::string> key = SingleKeyFromFlags();
  if (!key.ok()) return usage(std::string(key.status().message()));
  if (absl::GetFlag(FLAGS_shape).empty()) return usage("--shape is required");
  absl::StatusOr<v1::BlockShape> shape = ParseShape(absl::GetFlag(FLAGS_shape));
  if (!shape.ok()) return usage(std::string(shape.status().message()));
  absl::StatusOr<v1::Granularity> granularity =
      ParseGranularity(absl::GetFlag(FLAGS_granularity));
  if (!granularity.ok()) {
    return usage(std::string(granularity.status().message()));
  }

  const bool random = absl::GetFlag(FLAGS_random);
  const std::string file = absl::GetFlag(FLAGS_file);
  if (random == !file.empty())
    return usage("give exactly one of --file, --random");
  std::string dtype_name = absl::GetFlag(FLAGS_dtype);
  if (dtype_name.empty()) {
    if (!random) return usage("--dtype is required with --file");
    dtype_name = "fp16";
  }
  absl::StatusOr<v1::DType> dtype = wire::ParseDType(dtype_name);
  if (!dtype.ok()) return usage(std::string(dtype.status().message()));

  uint64_t seed = absl::GetFlag(FLAGS_seed);
  absl::StatusOr<std::string> data;
  if (random) {
    if (seed == 0)
      seed = (uint64_t{std::random_device{}()} << 32) | std::random_device{}();
    data = RandomBlock(*shape, *dtype, seed);
    if (!data.ok()) return usage(std::string(data.status().message()));
  } else {
    data = ReadFile(file);
    if (!data.ok()) return Fail("put", data.status());
  }

  const std::string ns = absl::GetFlag(FLAGS_ns);
  BlockToPut block;
  block.ns = ns;
  block.key = *key;
  block.dtype = *dtype;
  block.shape = *shape;
  block.quantization.set_granularity(*granularity);
  block.quantization.set_group_size(absl::GetFlag(FLAGS_group_size));
  block.data = *data;
  absl::StatusOr<PutResult> result = client.Put(block);
  if (!result.ok()) return Fail("put", result.status());

  const double ratio =
      result->stored_bytes == 0
          ? 0.0
          : static_cast<double>(result->logical_bytes) / result->stored_bytes;
  std::printf("stored %s/%s: %s %s %s, %s sent, %s stored (%.2fx)\n",
              ns.c_str(), PrintableKey(*key).c_str(),
              ShapeString(*shape).c_str(),
              std::string(wire::DTypeName(*dtype)).c_str(),
              std::string(GranularityName(*granularity)).c_str(),
              HumanBytes(result->logical_bytes).c_str(),
              HumanBytes(result->stored_bytes).c_str(), ratio);
  if (random) std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  return kExitOk;
}

}  // namespace kvq::kvqctl
