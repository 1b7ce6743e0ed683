// MakeCudaBackend for builds that have no CUDA backend: every request for one
// fails with FAILED_PRECONDITION, so --device=cuda stops the server at start
// with a message that says what to do.

#include "absl/status/status.h"
#include "server/backend/backend.h"

namespace kvq {

absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(
    const ArenaOptions& options, int gpu) {
#if defined(KVQ_WITH_CUDA)
  return absl::FailedPreconditionError(
      "kvq was built without the CUDA backend (server/backend/cuda_backend.cc "
      "is not part of this build); use --device=cpu");
#else
  return absl::FailedPreconditionError(
      "kvq was built without CUDA; rebuild with -DKVQ_CUDA=ON on a machine "
      "with nvcc, or use --device=cpu");
#endif
}

}  // namespace kvq
