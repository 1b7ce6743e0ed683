// The one place where absl::Status becomes a gRPC status.
//
// Inside kvq every error is an absl::Status; at the service edge it becomes
// either the status of the whole RPC (ToGrpcStatus) or the code and message
// of one block or key in a response (WireCode, ErrorMessage). Both carry the
// RPC's request id in the message, "... [request 9f2c4e1a0b3d5c7e]", so an
// operator can find the server's log lines for an error a client reports.
//
// absl::StatusCode, grpc::StatusCode and google.rpc.Code share their numeric
// values (checked at compile time in the .cc); codes outside 0..16 become
// UNKNOWN.

#ifndef KVQ_SERVER_SERVICE_STATUS_MAPPING_H_
#define KVQ_SERVER_SERVICE_STATUS_MAPPING_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace kvq {

// The google.rpc.Code value (== grpc::StatusCode) of `status`.
int32_t WireCode(const absl::Status& status);

// `status`'s message followed by " [request <id>]"; empty for OK.
std::string ErrorMessage(const absl::Status& status,
                         std::string_view request_id);

// The status an RPC ends with: same code, ErrorMessage() as message.
grpc::Status ToGrpcStatus(const absl::Status& status,
                          std::string_view request_id);

// "OK", "INVALID_ARGUMENT", ... for a wire code (logs).
std::string WireCodeName(int32_t code);

}  // namespace kvq

#endif  // KVQ_SERVER_SERVICE_STATUS_MAPPING_H_
