// kvq-bench-kernels: the seed paper's four CUDA kernel variants and kvq's
// production kernels, timed against a same-run device copy and two CPU
// baselines, with every GPU result checked byte for byte against the CPU.
//
//   kvq-bench-kernels --shapes=all --markdown=kernels-h200.md
//                     --csv=kernels-h200.csv
//
// --shapes=paper runs section 1 (the paper's ten shapes) only; --shapes=all
// adds section 2 (production kernels: 1 Mi..1 Gi elements x dtype x
// granularity, head_dim 64..8192) and section 3 (batches of small blocks into
// a paged pool). --max_elements caps every case; the serial CPU loop runs
// only up to 131072 x 1024 elements unless --full. See bench/results/README.md
// for how the tables are measured and read.
//
// --case=DTYPE:GRANULARITY:PxTxHxD runs one case of section 2 alone (and no
// other section), named as its tables name it, e.g. to profile one kernel:
//
//   ncu --kernel-name regex:QuantizeGroups --launch-count 1
//       kvq-bench-kernels --case=fp16:per_token_head:1x131072x8x128
//       --repeats=1
//
// A --case that does not parse exits with 2; GPU bytes that differ from the
// CPU's with 1.

#include <cuda_runtime_api.h>

#include <chrono>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "bench/common/report.h"
#include "bench/kernels/bench_context.h"
#include "kernels/parallel.h"

ABSL_FLAG(std::string, shapes, "paper",
          "paper: the paper's ten shapes; all: also the production sweep and "
          "the small-block batches");
ABSL_FLAG(std::string, markdown, "", "write the markdown report here");
ABSL_FLAG(std::string, csv, "", "write every measurement as CSV here");
ABSL_FLAG(int, repeats, 30, "timed repetitions per GPU measurement");
ABSL_FLAG(uint64_t, max_elements, uint64_t{1} << 30,
          "skip cases with more elements than this");
ABSL_FLAG(bool, full, false,
          "run the serial CPU loop on every paper shape (slow: minutes)");
ABSL_FLAG(uint64_t, seed, 20261125, "seed of the random inputs");
ABSL_FLAG(std::string, case, "",
          "run only this production case (section 2), e.g. "
          "fp16:per_token_head:1x131072x8x128 or bf16:group32:1x4096x8x128: "
          "DTYPE:GRANULARITY:PxTxHxD (planes x tokens x heads x head_dim); "
          "--shapes and --max_elements do not apply");

namespace kvq::bench {
namespace {

int Main(int argc, char** argv) {
  const std::string command = CommandLine(argc, argv);
  absl::SetProgramUsageMessage(
      "kvq-bench-kernels [--shapes=paper|all | --case=DTYPE:GRANULARITY:"
      "PxTxHxD] [--markdown=PATH] [--csv=PATH] [--repeats=N] "
      "[--max_elements=N] [--full]");
  absl::ParseCommandLine(argc, argv);
  const std::string shapes = absl::GetFlag(FLAGS_shapes);
  if (shapes != "paper" && shapes != "all") {
    std::cerr << "--shapes must be paper or all, got \"" << shapes << "\"\n";
    return 2;
  }
  std::optional<ProductionCase> one_case;
  if (const std::string text = absl::GetFlag(FLAGS_case); !text.empty()) {
    absl::StatusOr<ProductionCase> parsed = ParseProductionCase(text);
    if (!parsed.ok()) {
      std::cerr << "--case: " << parsed.status().message() << "\n";
      return 2;
    }
    one_case = *parsed;
  }
  Options opt;
  opt.all_shapes = shapes == "all";
  opt.repeats = std::max(1, absl::GetFlag(FLAGS_repeats));
  opt.max_elements = absl::GetFlag(FLAGS_max_elements);
  if (absl::GetFlag(FLAGS_full)) opt.serial_max_elements = ~uint64_t{0};
  opt.seed = absl::GetFlag(FLAGS_seed);

  int devices = 0;
  if (const cudaError_t err = cudaGetDeviceCount(&devices);
      err != cudaSuccess || devices == 0) {
    std::cerr << "kvq-bench-kernels: no usable CUDA device ("
              << (err != cudaSuccess ? cudaGetErrorName(err) : "none") << ")\n";
    return 1;
  }
  const GpuInfo gpu = QueryGpu();
  cudaStream_t stream;
  CheckCuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
            "cudaStreamCreate");
  BenchContext ctx(opt, gpu, stream);
  const auto start = std::chrono::steady_clock::now();

  // The ceiling every table compares with: a big device-to-device copy (not
  // for a single case, whose row has its own copy).
  const uint64_t big_copy = uint64_t{2} << 30;  // 1 GiB copied = 2 GiB moved
  const double big_copy_ms = one_case ? -1 : ctx.CopyMs(big_copy);

  // The report so far, rewritten after every section: a run cut short (the
  // GPU machine's command limit) still leaves the sections it finished.
  auto report = [&](bool finished) {
    const double seconds = std::chrono::duration<double>(
                               std::chrono::steady_clock::now() - start)
                               .count();
    std::ostringstream md;
    md << "# kvq kernel benchmark\n\n"
       << "- command: `" << command << "`\n"
       << "- GPU: " << gpu.name << ", " << gpu.sms << " SMs, "
       << gpu.l2_bytes / (1 << 20) << " MiB L2, "
       << gpu.memory_bytes / (uint64_t{1} << 30) << " GiB; driver "
       << gpu.driver << "; CUDA runtime " << gpu.runtime << "\n"
       << "- CPU: " << CpuDescription() << "; kvq CPU fast path uses "
       << WorkerPool::Default().concurrency() << " threads\n"
       << "- date: " << UtcNow() << "; git revision " << GitRevision()
       << "; run time " << Fixed(seconds, 0) << " s"
       << (finished ? "" : " (unfinished: later sections missing)") << "\n"
       << "- timing: median of " << opt.repeats
       << " CUDA-event-timed repetitions after 3 warm-ups, queued behind a "
          "spin kernel (no host launch gaps), inputs rotated through buffer "
          "sets spanning 4x L2 when a set is smaller than 2x L2; GB/s = bytes "
          "read + written / time (10^9 B/s)\n";
    if (big_copy_ms >= 0) {
      md << "- device-to-device copy, 1 GiB: " << Ms(big_copy_ms)
         << " ms = " << Sig(GBps(big_copy, big_copy_ms), 4)
         << " GB/s read + write (the ceiling; each row compares with a copy "
            "of its own bytes)\n";
    }
    md << "\n";
    if (!ctx.targets().empty()) {
      md << "## Issue 3's targets, this run\n\n";
      Table t({"target", "measured", "met"});
      for (const TargetCheck& c : ctx.targets()) {
        t.AddRow({c.target, c.measured, c.met ? "yes" : "**no**"});
      }
      t.WriteMarkdown(md);
      md << "\n";
    }
    md << ctx.markdown();
    bool ok = WriteFile(absl::GetFlag(FLAGS_markdown), md.str());
    ok = WriteFile(absl::GetFlag(FLAGS_csv), ctx.Csv()) && ok;
    if (finished) std::cout << md.str();
    return ok;
  };

  if (one_case) {
    const bool equal = RunProductionCase(ctx, *one_case);
    const bool ok = report(true);
    cudaStreamDestroy(stream);
    if (!equal) {
      std::cerr << "kvq-bench-kernels: the GPU's bytes differ from the CPU's\n";
      return 1;
    }
    return ok ? 0 : 1;
  }

  RunPaperSection(ctx);
  report(false);
  if (opt.all_shapes) {
    RunProductionSection(ctx);
    report(false);
    RunBatchSection(ctx);
  }
  const bool ok = report(true);
  cudaStreamDestroy(stream);
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace kvq::bench

int main(int argc, char** argv) { return kvq::bench::Main(argc, argv); }
