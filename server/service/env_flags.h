// Environment overrides for Abseil flags: every flag named here may also be
// set by the environment variable KVQ_<FLAG_UPPER> (e.g. --pool_bytes by
// KVQ_POOL_BYTES). Applied before the command line is parsed, so an explicit
// flag still wins over the environment, which wins over the default.
// Containers and Kubernetes manifests configure kvq-server this way.

#ifndef KVQ_SERVER_SERVICE_ENV_FLAGS_H_
#define KVQ_SERVER_SERVICE_ENV_FLAGS_H_

#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace kvq {

// "pool_bytes" -> "KVQ_POOL_BYTES".
std::string EnvVarForFlag(std::string_view flag_name);

// Sets each named flag whose environment variable is set. INVALID_ARGUMENT
// naming the variable if a value does not parse; INTERNAL if a name is not a
// registered flag (a bug in the caller's list).
absl::Status ApplyEnvOverrides(std::span<const std::string_view> flag_names);

}  // namespace kvq

#endif  // KVQ_SERVER_SERVICE_ENV_FLAGS_H_
