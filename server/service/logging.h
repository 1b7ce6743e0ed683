// Logging set-up for kvq-server: spdlog's default logger writes to stderr,
// one line per event, as text or as JSON (one object per line, for log
// shippers).
//
//   text: 2026-11-25T06:02:41.123456Z info [1234] message
//   json: {"time":"2026-11-25T06:02:41.123456Z","level":"info",
//          "thread":1234,"msg":"message"}
//
// Times are UTC. JSON strings are escaped (quotes, backslashes, control
// characters), so any message gives a valid JSON line.

#ifndef KVQ_SERVER_SERVICE_LOGGING_H_
#define KVQ_SERVER_SERVICE_LOGGING_H_

#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "spdlog/formatter.h"

namespace kvq {

// level: trace|debug|info|warn|error; format: text|json. INVALID_ARGUMENT
// naming --log_level / --log_format otherwise.
absl::Status ConfigureLogging(std::string_view level, std::string_view format);

// The JSON lines formatter (exposed for tests).
std::unique_ptr<spdlog::formatter> MakeJsonLogFormatter();

}  // namespace kvq

#endif  // KVQ_SERVER_SERVICE_LOGGING_H_
