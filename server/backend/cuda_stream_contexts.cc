#include "server/backend/cuda_stream_contexts.h"

#include <algorithm>
#include <thread>
#include <utility>

namespace kvq {
namespace {

absl::StatusOr<std::unique_ptr<StreamContext>> NewContext() {
  auto ctx = std::make_unique<StreamContext>();
  KVQ_RETURN_IF_CUDA_ERROR(
      cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
  for (cudaEvent_t& e : ctx->marks) {
    KVQ_RETURN_IF_CUDA_ERROR(cudaEventCreate(&e));
  }
  return ctx;
}

}  // namespace

StreamContext::~StreamContext() {
  for (cudaEvent_t e : marks) {
    if (e != nullptr) cudaEventDestroy(e);
  }
  for (cudaEvent_t e : pieces) cudaEventDestroy(e);
  for (cudaEvent_t e : appends) cudaEventDestroy(e);
  if (stream != nullptr) cudaStreamDestroy(stream);
}

double ElapsedSeconds(cudaEvent_t from, cudaEvent_t to) {
  float ms = 0;
  return cudaEventElapsedTime(&ms, from, to) == cudaSuccess ? ms / 1e3 : 0.0;
}

size_t DefaultMaxStreamContexts() {
  return std::max<size_t>(8, 2 * std::thread::hardware_concurrency());
}

StreamContexts::StreamContexts(int gpu, size_t max_contexts)
    : gpu_(gpu), max_contexts_(max_contexts) {}

absl::StatusOr<std::unique_ptr<StreamContext>> StreamContexts::Borrow() {
  KVQ_RETURN_IF_CUDA_ERROR(cudaSetDevice(gpu_));
  {
    std::unique_lock<std::mutex> lock(mu_);
    returned_.wait(lock,
                   [&] { return !idle_.empty() || live_ < max_contexts_; });
    if (!idle_.empty()) {
      std::unique_ptr<StreamContext> ctx = std::move(idle_.back());
      idle_.pop_back();
      return ctx;
    }
    ++live_;
  }
  absl::StatusOr<std::unique_ptr<StreamContext>> ctx = NewContext();
  if (!ctx.ok()) Return(nullptr, false);
  return ctx;
}

absl::StatusOr<std::unique_ptr<StreamContext>>
StreamContexts::BorrowForUpload() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (2 * (uploads_ + 1) > max_contexts_ ||
        (idle_.empty() && live_ >= max_contexts_)) {
      return absl::UnavailableError("every upload context is taken");
    }
    ++uploads_;
  }
  absl::StatusOr<std::unique_ptr<StreamContext>> ctx = Borrow();
  if (!ctx.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    --uploads_;
  }
  return ctx;
}

void StreamContexts::Return(std::unique_ptr<StreamContext> ctx, bool healthy) {
  if (ctx != nullptr && !healthy) {
    cudaStreamSynchronize(ctx->stream);
    cudaGetLastError();  // clear a non-sticky error for the next call
    ctx.reset();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ctx != nullptr) {
      idle_.push_back(std::move(ctx));
    } else {
      --live_;
    }
  }
  returned_.notify_one();
}

void StreamContexts::ReturnFromUpload(std::unique_ptr<StreamContext> ctx,
                                      bool healthy) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    --uploads_;
  }
  Return(std::move(ctx), healthy);
}

void StreamContexts::DestroyIdle() {
  std::vector<std::unique_ptr<StreamContext>> idle;
  {
    std::lock_guard<std::mutex> lock(mu_);
    idle.swap(idle_);
    live_ -= idle.size();
  }
}

}  // namespace kvq
