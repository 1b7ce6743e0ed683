// RpcCall: what every kvq RPC does around its own work.
//
// It names the call with a fresh request id (sent to the client as initial
// metadata "kvq-request-id" and appended to every error message), counts it
// in flight in ServerMetrics for as long as it lives, times it,
// and when the call ends records its latency and code in ServerMetrics and
// writes its log line: at debug for a call that went well, at warn for an
// error the client caused and at error for one the server caused (both
// shown at the default level), with the request id, peer and a summary.

#ifndef KVQ_SERVER_SERVICE_RPC_CALL_H_
#define KVQ_SERVER_SERVICE_RPC_CALL_H_

#include <chrono>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"
#include "server/metrics/server_metrics.h"

namespace kvq {

class RpcCall {
 public:
  RpcCall(ServerMetrics& metrics, Rpc rpc, grpc::ServerContext* context);

  ~RpcCall();
  RpcCall(const RpcCall&) = delete;
  RpcCall& operator=(const RpcCall&) = delete;

  const std::string& request_id() const { return request_id_; }

  // An error of one block or key (`item` names it for the log): logs it and
  // returns the message for the response, with the request id. A miss
  // (NOT_FOUND) is logged at debug only: it is what caches do.
  std::string ItemError(const absl::Status& status, std::string_view item);

  // Ends the call: records metrics, logs, returns the status for gRPC.
  // `summary` is the call's own figures for the log ("blocks=3 bytes=...").
  grpc::Status Finish(const absl::Status& status, std::string_view summary);

 private:
  ServerMetrics& metrics_;
  const Rpc rpc_;
  grpc::ServerContext* const context_;
  const std::string request_id_;
  const std::chrono::steady_clock::time_point start_;
};

}  // namespace kvq

#endif  // KVQ_SERVER_SERVICE_RPC_CALL_H_
