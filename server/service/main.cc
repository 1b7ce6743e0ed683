// kvq-server: the KV-cache offload server.
//
// Start-up: flags (each may also come from the environment, KVQ_<FLAG>),
// logging, backend (cuda when --device=auto finds a usable GPU), pool,
// metrics endpoint, gRPC server with health checking and reflection; then
// --ready_file is written. Any start-up failure exits 1 with a message.
//
// Shutdown: SIGINT or SIGTERM sets health to NOT_SERVING, lets in-flight
// RPCs finish for up to --shutdown_grace_seconds (then cancels them),
// destroys the service, pool and backend, and exits 0 without gRPC's
// library shutdown (see main).

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpc/grpc.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "kernels/status_macros.h"
#include "server/backend/backend.h"
#include "server/heap/region_heap.h"
#include "server/heap/region_size.h"
#include "server/metrics/server_metrics.h"
#include "server/pool/block_pool.h"
#include "server/service/block_store.h"
#include "server/service/env_flags.h"
#include "server/service/kvcache_service.h"
#include "server/service/logging.h"
#include "server/service/string_views.h"
#include "spdlog/spdlog.h"

#include "kvq_git_revision.h"  // generated: KVQ_GIT_REVISION

#ifndef KVQ_VERSION
#error "KVQ_VERSION must be defined by the build (PROJECT_VERSION)"
#endif

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "gRPC listen address host:port (port 0 picks a free port)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9400",
          "Prometheus /metrics listen address host:port (port 0 picks a free "
          "port)");
ABSL_FLAG(std::string, device, "auto",
          "Backend: auto (cuda when a GPU is usable, else cpu), cpu or cuda");
ABSL_FLAG(int32_t, gpu, 0, "GPU index for the cuda backend");
ABSL_FLAG(uint64_t, pool_bytes, uint64_t{1} << 30,
          "Bytes of the page arena (rounded down to whole pages)");
ABSL_FLAG(uint64_t, page_bytes, uint64_t{64} << 10,
          "Bytes per pool page (a multiple of 256)");
ABSL_FLAG(std::string, eviction, "lru",
          "When the pool is full: lru (evict least recently used unpinned "
          "blocks) or reject (RESOURCE_EXHAUSTED)");
ABSL_FLAG(uint64_t, max_message_bytes, uint64_t{8} << 20,
          "Largest gRPC message the server accepts; Get answers are chunked "
          "below it");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn or error");
ABSL_FLAG(std::string, log_format, "text", "text or json (one object a line)");
ABSL_FLAG(std::string, ready_file, "",
          "Once serving, write \"grpc_port=N\\nmetrics_port=M\\n\" here "
          "(atomically: PATH.tmp, then rename)");
ABSL_FLAG(double, shutdown_grace_seconds, 10,
          "On SIGINT/SIGTERM, how long in-flight RPCs may take to finish");
ABSL_FLAG(uint64_t, staging_bytes, uint64_t{1} << 30,
          "Host buffers kept for blocks in transit, half for puts (of "
          "--put_buffers memory), half for gets (page-locked with cuda: DMA "
          "straight from the GPU); traffic beyond it uses fresh plain memory, "
          "slower");
ABSL_FLAG(std::string, put_buffers, "received",
          "Host memory puts are read from: received (with cuda, no copy: the "
          "GPU reads each put where gRPC received it, in a process heap "
          "page-locked once, --pinned_heap_bytes; page_locked with cpu), "
          "page_locked (each put is copied into page-locked staging, then "
          "DMA; plain memory with cpu) or plain (copied into plain memory, "
          "then the cuda backend copies it again into page-locked staging)");
ABSL_FLAG(uint64_t, pinned_heap_bytes, 0,
          "With --put_buffers=received and cuda: the process heap's "
          "page-locked region, allocated and locked at start-up and "
          "resident; the heap grows past it unlocked (puts there are "
          "copied). 0: a quarter of the memory the process may use "
          "(physical, or its cgroup's limit), at most 4 GiB");
ABSL_FLAG(uint32_t, quality_sample_every, 64,
          "Measure the quantization error of 1 in N stored blocks (0: never)");
ABSL_FLAG(int32_t, max_threads, 256,
          "Most threads serving RPCs (one per active call); calls beyond it "
          "get RESOURCE_EXHAUSTED");

namespace kvq {
namespace {

constexpr std::string_view kEnvFlags[] = {
    "listen",         "metrics_listen",     "device",
    "gpu",            "pool_bytes",         "page_bytes",
    "eviction",       "max_message_bytes",  "log_level",
    "log_format",     "ready_file",         "shutdown_grace_seconds",
    "staging_bytes",  "quality_sample_every", "max_threads",
    "put_buffers",    "pinned_heap_bytes",
};

#if defined(KVQ_WITH_CUDA)
constexpr bool kBuiltWithCuda = true;
#else
constexpr bool kBuiltWithCuda = false;
#endif

// "host:port" -> "host" (IPv6 brackets kept).
std::string HostOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(
    const std::string& device, const ArenaOptions& arena, int gpu) {
  if (device == "cpu") return MakeCpuBackend(arena);
  if (device == "cuda") {
    if (!kBuiltWithCuda) {
      return absl::FailedPreconditionError(
          "--device=cuda, but this kvq-server was built without CUDA "
          "(-DKVQ_CUDA=OFF or no nvcc); use --device=cpu or auto");
    }
    if (!CudaAvailable()) {
      return absl::FailedPreconditionError(
          "--device=cuda, but no CUDA GPU is usable here (no device, or no "
          "driver); use --device=cpu or auto");
    }
    return MakeCudaBackend(arena, gpu);
  }
  if (device == "auto") {
    if (kBuiltWithCuda && CudaAvailable()) {
      absl::StatusOr<std::unique_ptr<Backend>> cuda =
          MakeCudaBackend(arena, gpu);
      if (cuda.ok() || !absl::IsFailedPrecondition(cuda.status())) return cuda;
      spdlog::warn("--device=auto: a GPU is present but the cuda backend is "
                   "not usable ({}); falling back to cpu",
                   ToStd(cuda.status().message()));
    }
    return MakeCpuBackend(arena);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--device must be auto, cpu or cuda, got \"", device, "\""));
}

absl::Status WriteReadyFile(const std::string& path, int grpc_port,
                            int metrics_port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "grpc_port=" << grpc_port << "\nmetrics_port=" << metrics_port
        << "\n";
    out.close();
    if (!out) {
      return absl::UnavailableError(
          absl::StrCat("cannot write --ready_file ", tmp, ": ",
                       std::strerror(errno)));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot rename ", tmp, " to --ready_file ", path, ": ",
        std::strerror(errno)));
  }
  return absl::OkStatus();
}

// --put_buffers=received: from here on the process heap, where gRPC will
// receive every put, is one region that the backend page-locks and reads in
// place (server/heap/region_heap.h). Before the gRPC server starts, so that
// its buffers come from the region.
// Returns whether puts are read in place.
absl::StatusOr<bool> ReadPutsWhereReceived(Backend& backend) {
  if (backend.name() != "cuda") {
    spdlog::info("--put_buffers=received: the {} backend reads no host "
                 "memory in place; puts are copied (as page_locked)",
                 backend.name());
    return false;
  }
  const uint64_t asked = absl::GetFlag(FLAGS_pinned_heap_bytes);
  const uint64_t bytes =
      asked != 0 ? asked : AutoRegionBytes(UsableMemoryBytes());
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::span<std::byte>> region = InstallRegionHeap(bytes);
  if (!region.ok()) return region.status();
  KVQ_RETURN_IF_ERROR(backend.RegisterHostRegion(*region));
  spdlog::info("--put_buffers=received: process heap of {} bytes{} "
               "page-locked for the GPU in {:.3f} s",
               region->size(),
               asked != 0 ? "" : " (--pinned_heap_bytes=0: sized to memory)",
               std::chrono::duration<double>(
                   std::chrono::steady_clock::now() - start)
                   .count());
  return true;
}

// How long past --shutdown_grace_seconds the process waits for its calls to
// end before it exits without them.
constexpr absl::Duration kExitSlack = absl::Seconds(1);

// Ends the process at once: logs flushed, --ready_file removed, no
// destructors and no gRPC library shutdown (see main for why).
[[noreturn]] void ExitNow(const std::string& ready_file, int exit_code) {
  if (!ready_file.empty()) std::remove(ready_file.c_str());
  spdlog::default_logger()->flush();
  std::fflush(nullptr);
  std::_Exit(exit_code);
}

int Fail(const absl::Status& status) {
  spdlog::error("kvq-server cannot start: {}", ToStd(status.message()));
  return 1;
}

int Run(const sigset_t& stop_signals) {
  const std::string device = absl::GetFlag(FLAGS_device);
  const uint64_t max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  if (max_message_bytes < 4096 || max_message_bytes > (uint64_t{1} << 31) - 1) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--max_message_bytes must be in [4096, 2^31), got ",
        max_message_bytes)));
  }
  const int32_t max_threads = absl::GetFlag(FLAGS_max_threads);
  if (max_threads < 2) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--max_threads must be >= 2, got ", max_threads)));
  }
  const double grace = absl::GetFlag(FLAGS_shutdown_grace_seconds);
  if (!(grace >= 0)) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--shutdown_grace_seconds must be >= 0, got ", grace)));
  }
  absl::StatusOr<EvictionPolicy> eviction =
      ParseEvictionPolicy(absl::GetFlag(FLAGS_eviction));
  if (!eviction.ok()) return Fail(eviction.status());
  const std::string put_buffers = absl::GetFlag(FLAGS_put_buffers);
  if (put_buffers != "plain" && put_buffers != "page_locked" &&
      put_buffers != "received") {
    return Fail(absl::InvalidArgumentError(
        "--put_buffers must be page_locked, plain or received, got \"" +
        put_buffers + "\""));
  }

  // The pool first: it checks the sizes before any memory is allocated.
  PoolOptions pool_options;
  pool_options.capacity_bytes = absl::GetFlag(FLAGS_pool_bytes);
  pool_options.page_bytes = absl::GetFlag(FLAGS_page_bytes);
  pool_options.eviction = *eviction;
  absl::StatusOr<std::unique_ptr<BlockPool>> pool =
      BlockPool::Create(pool_options);
  if (!pool.ok()) return Fail(pool.status());

  ArenaOptions arena;
  arena.page_bytes = (*pool)->page_bytes();
  arena.capacity_bytes = (*pool)->pages_total() * arena.page_bytes;
  absl::StatusOr<std::unique_ptr<Backend>> backend =
      MakeBackend(device, arena, absl::GetFlag(FLAGS_gpu));
  if (!backend.ok()) return Fail(backend.status());
  bool heap_pinned = false;
  if (put_buffers == "received") {
    // Not a reason to refuse to start: puts are then copied, as with
    // page_locked.
    absl::StatusOr<bool> in_place = ReadPutsWhereReceived(**backend);
    if (in_place.ok()) {
      heap_pinned = *in_place;
    } else {
      spdlog::warn("--put_buffers=received: {}; puts are copied into "
                   "page-locked staging instead (as page_locked)",
                   ToStd(in_place.status().message()));
    }
  }

  BlockPool* const pool_ptr = pool->get();
  const uint64_t staging_bytes = absl::GetFlag(FLAGS_staging_bytes);
  // Puts are assembled in --put_buffers memory, gets answered from the
  // backend's (page-locked on CUDA), half the budget each. Page-locked put
  // buffers save the CUDA backend a copy of every block into its own staging
  // before the DMA; measured on the H200 machine (bench/results/README.md,
  // both in one run, puts pipelined): the data path of a 32 MiB put 1.8 ms
  // -> 0.7 ms, one stream's puts 0.65-0.84 -> 0.76-1.01 of a bare gRPC
  // stream, 16 streams of 16 MiB puts 0.61 -> 0.82. (Before puts were
  // pipelined, the receive itself had measured slower into page-locked
  // memory, which is why plain memory is still on offer.)
  StagingPool receive_staging =
      put_buffers == "plain"
          ? StagingPool(&AllocatePlainHostBuffer, staging_bytes / 2)
          : StagingPool(backend->get(), staging_bytes / 2);
  StagingPool send_staging(backend->get(), staging_bytes / 2);
  ServerMetrics metrics(
      BuildInfo{KVQ_VERSION, KVQ_GIT_REVISION, std::string((*backend)->name()),
                (*backend)->device_name()},
      [pool_ptr] { return pool_ptr->Stats(); },
      [&receive_staging, &send_staging, heap_pinned] {
        const StagingPool::Usage in = receive_staging.usage();
        const StagingPool::Usage out = send_staging.usage();
        StagingStats stats{in.lent_bytes + out.lent_bytes,
                           in.kept_bytes + out.kept_bytes,
                           in.heap_buffers + out.heap_buffers};
        if (heap_pinned) {
          const RegionHeapUsage heap = CurrentRegionHeapUsage();
          stats.pinned_heap_bytes = heap.region_bytes;
          stats.pinned_heap_used_bytes = heap.handed_out;
          stats.heap_outside_pinned_bytes = heap.outside_bytes;
        }
        return stats;
      });
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> http =
      MetricsHttpServer::Start(absl::GetFlag(FLAGS_metrics_listen), &metrics);
  if (!http.ok()) return Fail(http.status());

  BlockStore store(pool_ptr, backend->get(), &send_staging, &metrics,
                   absl::GetFlag(FLAGS_quality_sample_every));
  KVCacheService service(pool_ptr, backend->get(), &store, &receive_staging,
                         &metrics,
                         ServiceOptions{max_message_bytes, KVQ_VERSION});

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string listen = absl::GetFlag(FLAGS_listen);
  int grpc_port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(),
                           &grpc_port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_message_bytes));
  grpc::ResourceQuota quota("kvq-server");
  quota.SetMaxThreads(max_threads);
  builder.SetResourceQuota(quota);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || grpc_port == 0) {
    return Fail(absl::UnavailableError(absl::StrCat(
        "cannot listen on --listen=", listen,
        " (address in use, or not a host:port this machine has)")));
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(true);
  health->SetServingStatus(v1::KVCache::service_full_name(), true);

  const std::string ready_file = absl::GetFlag(FLAGS_ready_file);
  if (!ready_file.empty()) {
    if (absl::Status s = WriteReadyFile(ready_file, grpc_port, (*http)->port());
        !s.ok()) {
      server->Shutdown();
      return Fail(s);
    }
  }
  spdlog::info(
      "kvq-server {} (git {}) serving kvq.v1.KVCache on {}:{}, metrics on "
      "http://{}:{}/metrics; backend={} device=\"{}\" pool={} bytes ({} pages "
      "of {}) eviction={} max_message_bytes={} max_threads={} "
      "staging_bytes={} put_buffers={}",
      KVQ_VERSION, KVQ_GIT_REVISION, HostOf(listen), grpc_port,
      HostOf(absl::GetFlag(FLAGS_metrics_listen)), (*http)->port(),
      (*backend)->name(), (*backend)->device_name(), arena.capacity_bytes,
      pool_ptr->pages_total(), arena.page_bytes,
      EvictionPolicyName(*eviction), max_message_bytes, max_threads,
      staging_bytes, put_buffers);

  // Set once the server has stopped serving, every call ended.
  absl::Notification stopped;
  std::thread stopper([&] {
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    spdlog::info("received {}: health NOT_SERVING, draining in-flight RPCs "
                 "for up to {} s",
                 sigabbrev_np(signal_number) != nullptr
                     ? absl::StrCat("SIG", sigabbrev_np(signal_number))
                     : absl::StrCat("signal ", signal_number),
                 grace);
    health->SetServingStatus(false);
    std::thread shutdown([&] {
      server->Shutdown(std::chrono::system_clock::now() +
                       std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::duration<double>(grace)));
    });
    // gRPC cancels the calls still running at the grace's end, but a
    // handler in a write stays there until the client's socket takes the
    // bytes or the connection closes: a client that stopped reading would
    // hold the exit for as long as it likes. A cache has nothing to save,
    // so past the grace and kExitSlack the process ends without them.
    if (!stopped.WaitForNotificationWithTimeout(absl::Seconds(grace) +
                                                kExitSlack)) {
      spdlog::warn("{} put and {} get calls still running {} s after the "
                   "grace (clients that stopped reading?): exiting without "
                   "them",
                   metrics.RpcsInFlight(Rpc::kPut),
                   metrics.RpcsInFlight(Rpc::kGet),
                   absl::ToDoubleSeconds(kExitSlack));
      ExitNow(ready_file, 0);
    }
    shutdown.join();
  });
  server->Wait();
  stopped.Notify();
  stopper.join();
  if (!ready_file.empty()) std::remove(ready_file.c_str());
  spdlog::info("kvq-server stopped");
  return 0;
}

}  // namespace
}  // namespace kvq

int main(int argc, char** argv) {
  // No glibc malloc settings (proto/message_memory.h) here: kvq-server's
  // malloc is jemalloc (server/heap), which keeps freed message buffers for
  // reuse by itself.
  // Block the stop signals before any thread starts, so that every thread
  // inherits the mask and only the stopper thread (sigwait) receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  absl::SetProgramUsageMessage(
      "kvq-server: KV-cache offload server (INT8 paged pool over gRPC).\n"
      "Every flag may also be set by the environment variable KVQ_<FLAG>, "
      "e.g. KVQ_POOL_BYTES; the command line wins.");
  absl::FlagsUsageConfig usage;
  usage.version_string = [] {
    return std::string("kvq-server " KVQ_VERSION " (git " KVQ_GIT_REVISION
                       ")\n");
  };
  absl::SetFlagsUsageConfig(usage);
  if (absl::Status s = kvq::ApplyEnvOverrides(kvq::kEnvFlags); !s.ok()) {
    std::fprintf(stderr, "kvq-server: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  absl::ParseCommandLine(argc, argv);
  if (absl::Status s = kvq::ConfigureLogging(absl::GetFlag(FLAGS_log_level),
                                             absl::GetFlag(FLAGS_log_format));
      !s.ok()) {
    std::fprintf(stderr, "kvq-server: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  // gRPC's library shutdown, which the last of Run's gRPC objects would
  // start on its way out, joins gRPC's executor threads, and one of them may
  // be in a 10 s poll: the TCP backup poller, which covers a write that a
  // client no longer reading has left blocked. The process lingered up to
  // 10 s after it had stopped serving (and past a container's stop
  // timeout). So this reference keeps the library up, and the process
  // ends below, once Run has destroyed everything of kvq's and its last
  // line is logged, without that teardown.
  grpc_init();
  kvq::ExitNow(/*ready_file=*/"", kvq::Run(stop_signals));
}
