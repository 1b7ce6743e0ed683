#include "server/service/rpc_call.h"
#include "server/service/seconds_since.h"

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "server/service/request_id.h"
#include "server/service/status_mapping.h"
#include "server/service/string_views.h"

namespace kvq {
namespace {

// Errors the server is responsible for; everything else was caused by the
// request or the client (or is the client going away).
bool IsServerFault(absl::StatusCode code) {
  return code == absl::StatusCode::kInternal ||
         code == absl::StatusCode::kUnknown ||
         code == absl::StatusCode::kDataLoss;
}

spdlog::level::level_enum ErrorLevel(absl::StatusCode code) {
  if (IsServerFault(code)) return spdlog::level::err;
  if (code == absl::StatusCode::kCancelled ||
      code == absl::StatusCode::kDeadlineExceeded) {
    return spdlog::level::info;  // the client gave up: not kvq's error
  }
  return spdlog::level::warn;
}

}  // namespace

RpcCall::RpcCall(ServerMetrics& metrics, Rpc rpc, grpc::ServerContext* context)
    : metrics_(metrics),
      rpc_(rpc),
      context_(context),
      request_id_(NewRequestId()),
      start_(std::chrono::steady_clock::now()) {
  context_->AddInitialMetadata("kvq-request-id", request_id_);
  metrics_.RpcStarted(rpc_);
}

RpcCall::~RpcCall() { metrics_.RpcEnded(rpc_); }

std::string RpcCall::ItemError(const absl::Status& status,
                               std::string_view item) {
  const spdlog::level::level_enum level =
      status.code() == absl::StatusCode::kNotFound ? spdlog::level::debug
                                                   : ErrorLevel(status.code());
  spdlog::log(level, "rpc={} request={} {} code={} error: {}",
              RpcName(rpc_), request_id_, item,
              WireCodeName(WireCode(status)), ToStd(status.message()));
  return ErrorMessage(status, request_id_);
}

grpc::Status RpcCall::Finish(const absl::Status& status,
                             std::string_view summary) {
  const double seconds = SecondsSince(start_);
  const int32_t code = WireCode(status);
  metrics_.ObserveRpc(rpc_, code, seconds);
  if (status.ok()) {
    spdlog::debug("rpc={} request={} peer={} code=OK seconds={:.6f} {}",
                  RpcName(rpc_), request_id_, context_->peer(), seconds,
                  summary);
  } else {
    spdlog::log(ErrorLevel(status.code()),
                "rpc={} request={} peer={} code={} seconds={:.6f} {} "
                "error: {}",
                RpcName(rpc_), request_id_, context_->peer(),
                WireCodeName(code), seconds, summary, ToStd(status.message()));
  }
  return ToGrpcStatus(status, request_id_);
}

}  // namespace kvq
