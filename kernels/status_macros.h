// Early-return helpers for absl::Status, shared by every layer (kernels is the
// bottom of the dependency graph, so everything above can include this).
// Abseil 20220623 exports no such macros.

#ifndef KVQ_KERNELS_STATUS_MACROS_H_
#define KVQ_KERNELS_STATUS_MACROS_H_

#include "absl/status/status.h"

// Returns `expr`'s status from the current function if it is not OK.
#define KVQ_RETURN_IF_ERROR(expr)                   \
  do {                                              \
    if (absl::Status kvq_status_ = (expr);          \
        !kvq_status_.ok()) {                        \
      return kvq_status_;                           \
    }                                               \
  } while (false)

#endif  // KVQ_KERNELS_STATUS_MACROS_H_
