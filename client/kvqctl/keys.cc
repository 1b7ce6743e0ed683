#include "client/kvqctl/keys.h"

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "client/kvqctl/flags.h"

namespace kvq::kvqctl {

absl::StatusOr<std::string> DecodeHexKey(std::string_view hex_key) {
  const absl::string_view hex(hex_key.data(), hex_key.size());
  if (hex.size() % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "hex key \"", hex, "\" must have an even number of digits"));
  }
  for (char c : hex) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(
          absl::StrCat("hex key \"", hex, "\" holds a non-hex character"));
    }
  }
  return absl::HexStringToBytes(hex);
}

absl::StatusOr<std::string> SingleKeyFromFlags() {
  const std::string text = absl::GetFlag(FLAGS_key);
  const std::string hex = absl::GetFlag(FLAGS_key_hex);
  if (!text.empty() && !hex.empty()) {
    return absl::InvalidArgumentError("give --key or --key_hex, not both");
  }
  if (!hex.empty()) return DecodeHexKey(hex);
  if (text.empty()) {
    return absl::InvalidArgumentError("a key is required: --key or --key_hex");
  }
  return text;
}

absl::StatusOr<std::vector<std::string>> KeysFromArgs(
    std::span<const std::string> args) {
  if (args.empty()) {
    absl::StatusOr<std::string> key = SingleKeyFromFlags();
    if (!key.ok()) {
      return absl::InvalidArgumentError(
          "at least one key is required: KEY arguments, --key or --key_hex");
    }
    return std::vector<std::string>{*std::move(key)};
  }
  std::vector<std::string> keys;
  keys.reserve(args.size());
  for (const std::string& arg : args) {
    if (absl::GetFlag(FLAGS_hex)) {
      absl::StatusOr<std::string> key = DecodeHexKey(arg);
      if (!key.ok()) return key.status();
      keys.push_back(*std::move(key));
    } else {
      keys.push_back(arg);
    }
  }
  return keys;
}

std::string PrintableKey(std::string_view key) {
  bool printable = !key.empty();
  for (char c : key) {
    if (!absl::ascii_isprint(static_cast<unsigned char>(c))) printable = false;
  }
  if (printable) return std::string(key);
  return absl::StrCat(
      "0x", absl::BytesToHexString(absl::string_view(key.data(), key.size())));
}

}  // namespace kvq::kvqctl
