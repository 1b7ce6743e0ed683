#include "server/service/status_mapping.h"
#include "server/service/string_views.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvq {
namespace {

// The mapping below is a cast; these make sure it stays one.
#define KVQ_SAME_CODE(absl_code, grpc_code)                  \
  static_assert(static_cast<int>(absl::StatusCode::absl_code) == \
                static_cast<int>(grpc::StatusCode::grpc_code))
KVQ_SAME_CODE(kOk, OK);
KVQ_SAME_CODE(kCancelled, CANCELLED);
KVQ_SAME_CODE(kUnknown, UNKNOWN);
KVQ_SAME_CODE(kInvalidArgument, INVALID_ARGUMENT);
KVQ_SAME_CODE(kDeadlineExceeded, DEADLINE_EXCEEDED);
KVQ_SAME_CODE(kNotFound, NOT_FOUND);
KVQ_SAME_CODE(kAlreadyExists, ALREADY_EXISTS);
KVQ_SAME_CODE(kPermissionDenied, PERMISSION_DENIED);
KVQ_SAME_CODE(kResourceExhausted, RESOURCE_EXHAUSTED);
KVQ_SAME_CODE(kFailedPrecondition, FAILED_PRECONDITION);
KVQ_SAME_CODE(kAborted, ABORTED);
KVQ_SAME_CODE(kOutOfRange, OUT_OF_RANGE);
KVQ_SAME_CODE(kUnimplemented, UNIMPLEMENTED);
KVQ_SAME_CODE(kInternal, INTERNAL);
KVQ_SAME_CODE(kUnavailable, UNAVAILABLE);
KVQ_SAME_CODE(kDataLoss, DATA_LOSS);
KVQ_SAME_CODE(kUnauthenticated, UNAUTHENTICATED);
#undef KVQ_SAME_CODE

constexpr int32_t kLastCode = static_cast<int32_t>(grpc::UNAUTHENTICATED);

}  // namespace

int32_t WireCode(const absl::Status& status) {
  const auto code = static_cast<int32_t>(status.code());
  return code >= 0 && code <= kLastCode ? code
                                        : static_cast<int32_t>(grpc::UNKNOWN);
}

std::string ErrorMessage(const absl::Status& status,
                         std::string_view request_id) {
  if (status.ok()) return "";
  return absl::StrCat(status.message(), " [request ", ToAbsl(request_id), "]");
}

grpc::Status ToGrpcStatus(const absl::Status& status,
                          std::string_view request_id) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(WireCode(status)),
                      ErrorMessage(status, request_id));
}

std::string WireCodeName(int32_t code) {
  // gRPC's codes are Abseil's canonical ones, by the same numbers.
  if (code < 0 || code > kLastCode) return "UNKNOWN";
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

}  // namespace kvq
