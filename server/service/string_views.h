// Conversions between std::string_view and absl::string_view.
//
// Debian's Abseil 20220623 is built with its own absl::string_view, not an
// alias of std::string_view: StrCat, StrFormat and friends take the former,
// which std::string_view does not convert to, and fmt (spdlog) formats only
// the latter. kvq's own interfaces use std::string_view; these two functions
// bridge at the call sites.

#ifndef KVQ_SERVER_SERVICE_STRING_VIEWS_H_
#define KVQ_SERVER_SERVICE_STRING_VIEWS_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace kvq {

inline absl::string_view ToAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

inline std::string_view ToStd(absl::string_view s) {
  return std::string_view(s.data(), s.size());
}

}  // namespace kvq

#endif  // KVQ_SERVER_SERVICE_STRING_VIEWS_H_
