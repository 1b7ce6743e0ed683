// The CPU backend: the page arena is one aligned host allocation, and blocks
// go through kernels/quantize.h's fast path.
//
// A block's pages are usually one contiguous run (a fresh or lightly used
// pool hands out consecutive ids); then the kernels read and write the arena
// in place. Otherwise the payload goes through a scratch buffer that is
// scattered to (or gathered from) the pages.

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kernels/quantize.h"
#include "server/backend/backend.h"

namespace kvq {
namespace {

// Arena alignment: a whole page of the MMU, which also suits every vector width.
constexpr size_t kArenaAlignment = 4096;

// Scratch buffers up to this size stay with their thread for the next call;
// bigger ones are allocated per call so that one huge block does not pin its
// scratch on every handler thread for the life of the server.
constexpr size_t kKeptScratchBytes = size_t{4} << 20;

// Debian's Abseil has its own string_view, which StrCat takes and
// std::string_view does not convert to.
absl::string_view Sv(std::string_view s) { return {s.data(), s.size()}; }

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

std::string CpuModelName() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  std::string model = "unknown CPU";
  while (std::getline(cpuinfo, line)) {
    if (absl::StartsWith(line, "model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        model = std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
      break;
    }
  }
  return absl::StrCat(model, " (", std::thread::hardware_concurrency(),
                      " threads)");
}

// A buffer of at least `bytes` for one call: the thread's kept buffer when
// small enough, else `owned`. nullptr when memory is exhausted.
uint8_t* Scratch(size_t bytes, std::unique_ptr<uint8_t[]>& owned) {
  thread_local std::unique_ptr<uint8_t[]> kept;
  thread_local size_t kept_bytes = 0;
  if (bytes <= kKeptScratchBytes) {
    if (kept_bytes < bytes) {
      kept.reset(new (std::nothrow) uint8_t[kKeptScratchBytes]);
      kept_bytes = kept ? kKeptScratchBytes : 0;
    }
    if (kept) return kept.get();
  }
  owned.reset(new (std::nothrow) uint8_t[bytes]);
  return owned.get();
}

// Charges the time of a scope to timings->kernel_seconds: on the CPU the
// whole call (quantize or dequantize, plus any scatter or gather) is the
// kernel; there are no copies between memories.
class KernelTimer {
 public:
  explicit KernelTimer(DataPathTimings* timings)
      : timings_(timings), start_(std::chrono::steady_clock::now()) {}
  ~KernelTimer() {
    if (timings_ != nullptr) {
      timings_->kernel_seconds = std::chrono::duration<double>(
                                     std::chrono::steady_clock::now() - start_)
                                     .count();
    }
  }
  KernelTimer(const KernelTimer&) = delete;
  KernelTimer& operator=(const KernelTimer&) = delete;

 private:
  DataPathTimings* const timings_;
  const std::chrono::steady_clock::time_point start_;
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(std::unique_ptr<uint8_t, FreeDeleter> arena, uint64_t page_bytes,
             uint64_t pages_total)
      : arena_(std::move(arena)),
        page_bytes_(page_bytes),
        pages_total_(pages_total),
        device_name_(CpuModelName()) {}

  std::string_view name() const override { return "cpu"; }
  std::string device_name() const override { return device_name_; }

  absl::StatusOr<float> QuantizeInto(const BlockLayout& layout, DType dtype,
                                     const BlockBytes& bytes,
                                     std::span<const uint32_t> pages,
                                     DataPathTimings* timings,
                                     ErrorSums* error) override {
    // The kernels read one span: pieces are copied together first.
    std::vector<std::byte> gathered;
    if (!bytes.contiguous()) {
      gathered.resize(bytes.size());
      bytes.CopyTo(gathered.data());
    }
    const std::span<const std::byte> src =
        bytes.contiguous() ? bytes.whole()
                           : std::span<const std::byte>(gathered);
    absl::StatusOr<float> absmax =
        QuantizeToPages(layout, dtype, src, pages, timings);
    if (!absmax.ok() || error == nullptr) return absmax;
    // The quality sample: decoded as a get would be, then compared.
    std::vector<std::byte> decoded(src.size());
    DataPathTimings ignored;
    if (absl::Status s = DequantizeFrom(layout, pages, dtype, decoded,
                                        &ignored, nullptr);
        !s.ok()) {
      return s;
    }
    *error = SumSquaredError(dtype, src.data(), decoded.data(),
                             layout.elements);
    return absmax;
  }

  // Dequantizes the whole block at once: nothing to report before it
  // returns (ReadyPrefixes).
  absl::Status DequantizeFrom(const BlockLayout& layout,
                              std::span<const uint32_t> pages, DType dtype,
                              std::span<std::byte> dst,
                              DataPathTimings* timings,
                              const ReadyPrefixes* /*ready*/) override {
    if (dst.size() != layout.logical_bytes(dtype)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "output buffer is ", dst.size(), " bytes, but dtype ",
          Sv(DTypeName(dtype)), " x shape needs ", layout.logical_bytes(dtype)));
    }
    if (absl::Status s = CheckPages(layout.payload_bytes, pages); !s.ok()) {
      return s;
    }
    const KernelTimer timer(timings);
    if (const uint8_t* run = ContiguousRun(pages, layout.payload_bytes)) {
      Dequantize(layout, run, dtype, dst.data());
      return absl::OkStatus();
    }
    std::unique_ptr<uint8_t[]> owned;
    uint8_t* payload = Scratch(layout.payload_bytes, owned);
    if (payload == nullptr) return ScratchExhausted(layout.payload_bytes);
    for (uint64_t done = 0, i = 0; done < layout.payload_bytes; ++i) {
      const uint64_t n = std::min(page_bytes_, layout.payload_bytes - done);
      std::memcpy(payload + done, PageAddress(pages[i]), n);
      done += n;
    }
    Dequantize(layout, payload, dtype, dst.data());
    return absl::OkStatus();
  }

  absl::StatusOr<HostBuffer> AllocateHostBuffer(uint64_t bytes) override {
    return AllocatePlainHostBuffer(bytes);
  }

 private:
  absl::StatusOr<float> QuantizeToPages(const BlockLayout& layout, DType dtype,
                                        std::span<const std::byte> src,
                                        std::span<const uint32_t> pages,
                                        DataPathTimings* timings) {
    if (src.size() != layout.logical_bytes(dtype)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "block data is ", src.size(), " bytes, but dtype ",
          Sv(DTypeName(dtype)), " x shape needs ", layout.logical_bytes(dtype)));
    }
    if (absl::Status s = CheckPages(layout.payload_bytes, pages); !s.ok()) {
      return s;
    }
    const KernelTimer timer(timings);
    if (uint8_t* run = ContiguousRun(pages, layout.payload_bytes)) {
      if (absl::Status s = Quantize(layout, dtype, src.data(), run); !s.ok()) {
        return s;
      }
      return BlockAbsmax(layout, run);
    }
    std::unique_ptr<uint8_t[]> owned;
    uint8_t* payload = Scratch(layout.payload_bytes, owned);
    if (payload == nullptr) return ScratchExhausted(layout.payload_bytes);
    if (absl::Status s = Quantize(layout, dtype, src.data(), payload);
        !s.ok()) {
      return s;
    }
    const float absmax = BlockAbsmax(layout, payload);
    for (uint64_t done = 0, i = 0; done < layout.payload_bytes; ++i) {
      const uint64_t n = std::min(page_bytes_, layout.payload_bytes - done);
      std::memcpy(PageAddress(pages[i]), payload + done, n);
      done += n;
    }
    return absmax;
  }

  uint8_t* PageAddress(uint32_t page) const {
    return arena_.get() + uint64_t{page} * page_bytes_;
  }

  // The pool hands out the pages; a list that cannot hold the payload or
  // names a page outside the arena is a bug in the caller.
  absl::Status CheckPages(uint64_t payload_bytes,
                          std::span<const uint32_t> pages) const {
    const uint64_t needed = (payload_bytes + page_bytes_ - 1) / page_bytes_;
    if (pages.size() < needed) {
      return absl::InternalError(absl::StrCat(
          "payload of ", payload_bytes, " bytes needs ", needed,
          " pages of ", page_bytes_, " bytes, got ", pages.size()));
    }
    for (size_t i = 0; i < needed; ++i) {
      if (pages[i] >= pages_total_) {
        return absl::InternalError(absl::StrCat(
            "page id ", pages[i], " is outside the arena of ", pages_total_,
            " pages"));
      }
    }
    return absl::OkStatus();
  }

  // The arena address of the payload when its pages are consecutive, else
  // nullptr.
  uint8_t* ContiguousRun(std::span<const uint32_t> pages,
                         uint64_t payload_bytes) const {
    const uint64_t needed = (payload_bytes + page_bytes_ - 1) / page_bytes_;
    for (uint64_t i = 1; i < needed; ++i) {
      if (pages[i] != pages[0] + i) return nullptr;
    }
    return PageAddress(pages[0]);
  }

  static absl::Status ScratchExhausted(uint64_t bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate ", bytes, " bytes of host scratch for the payload"));
  }

  std::unique_ptr<uint8_t, FreeDeleter> arena_;
  const uint64_t page_bytes_;
  const uint64_t pages_total_;
  const std::string device_name_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> MakeCpuBackend(
    const ArenaOptions& options) {
  if (options.page_bytes == 0) {
    return absl::InvalidArgumentError("page_bytes must be >= 1, got 0");
  }
  const uint64_t pages_total = options.capacity_bytes / options.page_bytes;
  if (pages_total == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pool capacity (", options.capacity_bytes,
        " bytes) must hold at least one page of ", options.page_bytes,
        " bytes"));
  }
  if (pages_total > (uint64_t{1} << 32)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pool of ", pages_total, " pages exceeds 2^32 page ids; raise ",
        "page_bytes"));
  }
  const uint64_t bytes = pages_total * options.page_bytes;
  const uint64_t aligned =
      (bytes + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
  std::unique_ptr<uint8_t, FreeDeleter> arena(
      static_cast<uint8_t*>(std::aligned_alloc(kArenaAlignment, aligned)));
  if (arena == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate a host arena of ", bytes, " bytes; lower pool_bytes"));
  }
  return std::make_unique<CpuBackend>(std::move(arena), options.page_bytes,
                                      pages_total);
}

}  // namespace kvq
