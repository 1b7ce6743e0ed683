// Keys as typed on kvqctl's command line and as printed back.
//
// Keys are opaque bytes. On the command line they are text, or hex with
// --key_hex / --hex for binary keys; when printed, a key that is printable
// ASCII is shown as text and any other key as "0x" + hex.

#ifndef KVQ_CLIENT_KVQCTL_KEYS_H_
#define KVQ_CLIENT_KVQCTL_KEYS_H_

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvq::kvqctl {

// INVALID_ARGUMENT unless `hex` is an even number of hex digits.
absl::StatusOr<std::string> DecodeHexKey(std::string_view hex);

// The one key named by --key or --key_hex (exactly one of them).
absl::StatusOr<std::string> SingleKeyFromFlags();

// The keys of lookup / delete: the positional arguments (hex with --hex), or
// else the single --key / --key_hex.
absl::StatusOr<std::vector<std::string>> KeysFromArgs(
    std::span<const std::string> args);

// A key for people to read.
std::string PrintableKey(std::string_view key);

}  // namespace kvq::kvqctl

#endif  // KVQ_CLIENT_KVQCTL_KEYS_H_
