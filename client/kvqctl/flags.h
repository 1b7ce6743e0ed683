// kvqctl's command-line flags, shared by the commands that read them.
// Defined in flags.cc; every flag is documented there.

#ifndef KVQ_CLIENT_KVQCTL_FLAGS_H_
#define KVQ_CLIENT_KVQCTL_FLAGS_H_

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"

// Connection.
ABSL_DECLARE_FLAG(std::string, server);
ABSL_DECLARE_FLAG(int64_t, deadline_ms);
ABSL_DECLARE_FLAG(uint32_t, chunk_bytes);
// Addressing.
ABSL_DECLARE_FLAG(std::string, ns);
ABSL_DECLARE_FLAG(std::string, key);
ABSL_DECLARE_FLAG(std::string, key_hex);
ABSL_DECLARE_FLAG(bool, hex);
// Block description and data.
ABSL_DECLARE_FLAG(std::string, dtype);
ABSL_DECLARE_FLAG(std::string, shape);
ABSL_DECLARE_FLAG(std::string, granularity);
ABSL_DECLARE_FLAG(uint32_t, group_size);
ABSL_DECLARE_FLAG(std::string, file);
ABSL_DECLARE_FLAG(bool, random);
ABSL_DECLARE_FLAG(uint64_t, seed);
ABSL_DECLARE_FLAG(std::string, out);
// Health.
ABSL_DECLARE_FLAG(std::string, service);

#endif  // KVQ_CLIENT_KVQCTL_FLAGS_H_
