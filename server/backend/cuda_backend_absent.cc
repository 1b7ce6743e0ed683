// MakeCudaBackend for builds without CUDA (cuda_backend.cc replaces this file
// when KVQ_WITH_CUDA is on): every request for a CUDA backend fails with
// FAILED_PRECONDITION, so --device=cuda stops the server at start with a
// message that says what to do.

#include "absl/status/status.h"
#include "server/backend/backend.h"

namespace kvq {

absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(
    const ArenaOptions& options, int gpu) {
  return absl::FailedPreconditionError(
      "kvq was built without CUDA; rebuild with -DKVQ_CUDA=ON on a machine "
      "with nvcc, or use --device=cpu");
}

}  // namespace kvq
