// kvq-bench-accuracy: how much INT8 quantization changes what attention
// computes, on the seed paper's shapes and metrics and beyond them.
//
//   kvq-bench-accuracy --markdown=bench/results/accuracy.md
//                      --csv=bench/results/accuracy.csv
//
// Part 1 (paper): FP32 T x D matrices, uniform [-1, 1], one random query per
// run (--paper_queries of them), every granularity, beside the paper's
// claims (max abs error < 0.004; mean |Q.K - Q.K'| < 0.1 at D = 8192).
// Shapes above --paper_max_elements run with fewer tokens (said in the
// table): per-channel statistics barely depend on T once T is in the
// thousands, and the full shapes need 4-9 GB of RAM and minutes per shape.
// Part 2 (beyond): blocks of 2 planes (K, V) x --tokens x --heads x head_dim
// for every head_dim in --head_dims, dtype, granularity and distribution, with
// relative L2, scaled scores and the error of softmax(QK^T/sqrt(d))V.
//
// CPU only: the CUDA kernels produce the same bytes as the CPU path (tested
// in tests/gpu), so their accuracy is this accuracy.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/accuracy/accuracy_metrics.h"
#include "bench/common/paper_shapes.h"
#include "bench/common/report.h"
#include "kernels/format.h"
#include "kernels/parallel.h"

ABSL_FLAG(std::string, markdown, "", "write the markdown report here");
ABSL_FLAG(std::string, csv, "", "write every measurement as CSV here");
ABSL_FLAG(uint64_t, seed, 20261125, "base seed (results are reproducible)");
ABSL_FLAG(uint64_t, paper_max_elements, uint64_t{1} << 27,
          "paper shapes above this many elements run with fewer tokens");
ABSL_FLAG(uint32_t, paper_queries, 4, "random queries per paper shape");
ABSL_FLAG(uint32_t, tokens, 256, "tokens per block in part 2");
ABSL_FLAG(uint32_t, heads, 8, "heads per block in part 2");
ABSL_FLAG(uint32_t, queries, 8, "random queries per head in part 2");
ABSL_FLAG(std::string, head_dims, "64,128,256,512,1024,2048,4096,8192",
          "head_dim values of part 2");
ABSL_FLAG(uint32_t, group_size, 32, "group size of the group-wise rows");
ABSL_FLAG(std::string, parts, "paper,beyond", "which parts to run");

namespace kvq::bench {
namespace {

struct GranularityChoice {
  QuantSpec spec;
  std::string name;
};

std::vector<GranularityChoice> Granularities(uint32_t group_size) {
  return {
      {{Granularity::kPerChannel, 0}, "per_channel"},
      {{Granularity::kPerTokenHead, 0}, "per_token_head"},
      {{Granularity::kGroup, group_size}, "group" + std::to_string(group_size)},
      {{Granularity::kPerTensor, 0}, "per_tensor"},
  };
}

constexpr DType kDTypes[] = {DType::kFp16, DType::kBf16, DType::kFp32};
constexpr Distribution kDistributions[] = {Distribution::kUniform,
                                           Distribution::kGaussian,
                                           Distribution::kOutlierChannels};

std::string Shape(uint32_t t, uint32_t d) {
  return std::to_string(t) + "x" + std::to_string(d);
}

// One row of the CSV: every measurement, both parts.
Table CsvTable() {
  return Table({"part", "requested_shape", "planes", "tokens", "heads",
                "head_dim", "dtype", "granularity", "group_size",
                "distribution", "queries", "elements", "max_abs_err",
                "rel_l2", "qk_mean_abs_err", "qk_max_abs_err",
                "score_mean_abs_err_scaled", "attn_out_rel_l2",
                "attn_out_max_abs_err", "seconds"});
}

void AddCsvRow(Table& csv, const std::string& part, const std::string& req,
               const AccuracyCase& c, const std::string& gran,
               const AccuracyResult& r) {
  csv.AddRow({part, req, Int(c.shape.planes), Int(c.shape.tokens),
              Int(c.shape.heads), Int(c.shape.head_dim),
              std::string(DTypeName(c.dtype)), gran, Int(c.spec.group_size),
              std::string(DistributionName(c.distribution)), Int(c.queries),
              Int(c.shape.elements()), Sig(r.max_abs_err, 6),
              Sig(r.rel_l2, 6), Sig(r.qk_mean_abs_err, 6),
              Sig(r.qk_max_abs_err, 6), Sig(r.score_mean_abs_err, 6),
              Sig(r.attn_out_rel_l2, 6), Sig(r.attn_out_max_abs_err, 6),
              Fixed(r.seconds, 2)});
}

AccuracyResult RunOrDie(const AccuracyCase& c) {
  auto r = MeasureAccuracy(c);
  if (!r.ok()) {
    std::cerr << "kvq-bench-accuracy: " << r.status() << "\n";
    std::exit(1);
  }
  return *r;
}

// Part 1: the paper's shapes. Returns the markdown section.
std::string RunPaper(Table& csv, uint64_t seed, uint64_t max_elements,
                     uint32_t queries, uint32_t group_size) {
  const auto grans = Granularities(group_size);
  std::vector<std::string> cols = {"T x D (paper)", "run as"};
  for (const auto& g : grans) {
    cols.push_back(g.name + " max abs");
    cols.push_back(g.name + " mean abs(Q.K-Q.K')");
  }
  cols.push_back("paper (per-channel)");
  Table md(cols);
  bool max_abs_ok = true, qk_ok = true;
  std::string qk_at_8192;
  for (const PaperShape& p : kPaperShapes) {
    uint32_t tokens = p.tokens;
    while (uint64_t{tokens} * p.dims > max_elements && tokens > 1) tokens /= 2;
    std::vector<std::string> row = {
        Shape(p.tokens, p.dims) + (p.from_paper_list ? "" : " (ours)"),
        tokens == p.tokens ? "same" : Shape(tokens, p.dims)};
    for (const auto& g : grans) {
      AccuracyCase c;
      c.shape = BlockShape{1, tokens, 1, p.dims};
      c.dtype = DType::kFp32;
      c.spec = g.spec;
      c.distribution = Distribution::kUniform;
      c.queries = queries;
      c.seed = seed ^ (uint64_t{p.tokens} << 20) ^ p.dims;
      const AccuracyResult r = RunOrDie(c);
      AddCsvRow(csv, "paper", Shape(p.tokens, p.dims), c, g.name, r);
      row.push_back(Sig(r.max_abs_err, 3));
      row.push_back(Sig(r.qk_mean_abs_err, 3));
      if (g.spec.granularity == Granularity::kPerChannel) {
        max_abs_ok = max_abs_ok && r.max_abs_err < kPaperMaxAbsErr;
        if (p.dims == kPaperQkDims) {
          qk_ok = qk_ok && r.qk_mean_abs_err < kPaperQkMeanAbsErr;
          qk_at_8192 += (qk_at_8192.empty() ? "" : ", ") +
                        Sig(r.qk_mean_abs_err, 3);
        }
      }
      std::cerr << "paper " << Shape(tokens, p.dims) << " " << g.name << ": "
                << Fixed(r.seconds, 2) << " s\n";
    }
    row.push_back(std::string("max abs < 0.004") +
                  (p.dims == kPaperQkDims ? "; Q.K < 0.1" : ""));
    md.AddRow(row);
  }
  std::ostringstream out;
  out << "## Part 1: the paper's shapes and metrics\n\n"
      << "FP32 input, uniform in [-1, 1], planes = heads = 1 (a T x D "
         "matrix); `mean abs(Q.K-Q.K')` is the paper's attention surrogate, "
         "averaged over T tokens and "
      << queries
      << " random queries uniform in [-1, 1] (unscaled dot products). "
         "Group-wise uses groups of "
      << group_size
      << " channels. Shapes over "
      << max_elements
      << " elements run with T halved until they fit (column `run as`), to "
         "stay within this box's memory and time.\n\n";
  md.WriteMarkdown(out);
  out << "\nPer-channel against the paper's claims: max abs error < 0.004 on "
         "every shape: "
      << (max_abs_ok ? "**met**" : "**not met**")
      << "; mean |Q.K - Q.K'| < 0.1 at D = 8192: "
      << (qk_ok ? "**met**" : "**not met**") << " (" << qk_at_8192 << ").\n\n";
  return out.str();
}

struct BeyondKey {
  DType dtype;
  std::string gran;
  uint32_t head_dim;
  Distribution dist;
  bool operator<(const BeyondKey& o) const {
    return std::tie(dtype, gran, head_dim, dist) <
           std::tie(o.dtype, o.gran, o.head_dim, o.dist);
  }
};

// Heads of a part-2 block: --heads, fewer for wide heads so that a plane
// holds at most tokens x 64Ki values (keeps head_dim 8192 affordable here).
uint32_t HeadsFor(uint32_t heads, uint32_t head_dim) {
  return std::max(1u, std::min(heads, 65536u / head_dim));
}

// Part 2: beyond the paper. Returns the markdown section.
std::string RunBeyond(Table& csv, uint64_t seed, uint32_t tokens,
                      uint32_t heads, uint32_t queries,
                      const std::vector<uint32_t>& head_dims,
                      uint32_t group_size) {
  const auto grans = Granularities(group_size);
  std::map<BeyondKey, AccuracyResult> results;
  for (uint32_t d : head_dims) {
    for (DType dtype : kDTypes) {
      for (const auto& g : grans) {
        for (Distribution dist : kDistributions) {
          AccuracyCase c;
          c.shape = BlockShape{2, tokens, HeadsFor(heads, d), d};
          c.dtype = dtype;
          c.spec = g.spec;
          c.distribution = dist;
          c.queries = queries;
          c.seed = seed ^ (uint64_t{d} << 8) ^ static_cast<uint64_t>(dist);
          const AccuracyResult r = RunOrDie(c);
          AddCsvRow(csv, "beyond", "-", c, g.name, r);
          results[{dtype, g.name, d, dist}] = r;
        }
      }
    }
    std::cerr << "beyond head_dim " << d << " done\n";
  }
  auto get = [&](DType t, const std::string& g, uint32_t d, Distribution x) {
    return results.at({t, g, d, x});
  };

  std::ostringstream out;
  out << "## Part 2: beyond the paper\n\n"
      << "Blocks of 2 planes (K, V) x " << tokens << " tokens x H heads x "
         "head_dim, the shape of an LMCache-style chunk, with H = min("
      << heads
      << ", 65536 / head_dim) (so head_dim 8192 has one head). For each "
         "head, "
      << queries
      << " random queries (uniform for uniform data, normal otherwise). "
         "`score err` is mean |q.k - q.k'| / sqrt(head_dim), the error of "
         "the logits attention uses; `attn rel err` is ||o - o'|| / ||o|| "
         "for o = softmax(q K^T / sqrt(d)) V, averaged over queries and "
         "heads, with K and V both quantized. `outlier_channels`: normal "
         "data where about 1 channel in 32 of each head of K is 20x larger "
         "(V stays normal).\n\n";

  // (a) head_dim 128, FP16: granularity x distribution.
  const uint32_t d_ref =
      std::find(head_dims.begin(), head_dims.end(), 128u) != head_dims.end()
          ? 128u
          : head_dims.front();
  out << "### Granularity x distribution (FP16, head_dim " << d_ref << ")\n\n";
  Table a({"distribution", "granularity", "max abs err", "rel L2",
           "score err", "attn rel err", "attn max abs err"});
  for (Distribution dist : kDistributions) {
    for (const auto& g : grans) {
      const auto r = get(DType::kFp16, g.name, d_ref, dist);
      a.AddRow({std::string(DistributionName(dist)), g.name,
                Sig(r.max_abs_err), Sig(r.rel_l2), Sig(r.score_mean_abs_err),
                Sig(r.attn_out_rel_l2), Sig(r.attn_out_max_abs_err)});
    }
  }
  a.WriteMarkdown(out);

  // (b) attention error vs head_dim, FP16, one table per distribution.
  for (Distribution dist : kDistributions) {
    out << "\n### Attention output relative error vs head_dim (FP16, "
        << DistributionName(dist) << ")\n\n";
    std::vector<std::string> cols = {"head_dim"};
    for (const auto& g : grans) cols.push_back(g.name);
    Table b(cols);
    for (uint32_t d : head_dims) {
      std::vector<std::string> row = {Int(d)};
      for (const auto& g : grans) {
        row.push_back(Sig(get(DType::kFp16, g.name, d, dist).attn_out_rel_l2));
      }
      b.AddRow(row);
    }
    b.WriteMarkdown(out);
  }

  // (c) dtype: relative L2 per dtype (gaussian, head_dim d_ref).
  out << "\n### Input dtype (gaussian, head_dim " << d_ref
      << "): relative L2 / attention relative error\n\n";
  Table cdt({"granularity", "fp16 rel L2", "bf16 rel L2", "fp32 rel L2",
             "fp16 attn", "bf16 attn", "fp32 attn"});
  for (const auto& g : grans) {
    std::vector<std::string> row = {g.name};
    for (DType t : kDTypes) {
      row.push_back(Sig(get(t, g.name, d_ref, Distribution::kGaussian).rel_l2));
    }
    for (DType t : kDTypes) {
      row.push_back(Sig(
          get(t, g.name, d_ref, Distribution::kGaussian).attn_out_rel_l2));
    }
    cdt.AddRow(row);
  }
  cdt.WriteMarkdown(out);

  // Findings: rank granularities by attention error, FP16, over head_dims.
  out << "\n### Which granularity wins (FP16, geometric mean over head_dims "
         "of the attention relative error)\n\n";
  Table f({"distribution", "best", "then", "then", "worst"});
  for (Distribution dist : kDistributions) {
    std::vector<std::pair<double, std::string>> ranked;
    for (const auto& g : grans) {
      double log_sum = 0;
      for (uint32_t d : head_dims) {
        log_sum += std::log(get(DType::kFp16, g.name, d, dist).attn_out_rel_l2);
      }
      ranked.push_back({std::exp(log_sum / head_dims.size()), g.name});
    }
    std::sort(ranked.begin(), ranked.end());
    std::vector<std::string> row = {std::string(DistributionName(dist))};
    for (const auto& [v, name] : ranked) row.push_back(name + " " + Sig(v));
    f.AddRow(row);
  }
  f.WriteMarkdown(out);

  // Everything, for reference.
  out << "\n<details><summary>All " << results.size()
      << " part-2 measurements</summary>\n\n";
  Table all({"head_dim", "dtype", "granularity", "distribution", "max abs err",
             "rel L2", "mean abs(Q.K-Q.K')", "score err", "attn rel err",
             "attn max abs err"});
  for (uint32_t d : head_dims) {
    for (DType t : kDTypes) {
      for (const auto& g : grans) {
        for (Distribution dist : kDistributions) {
          const auto r = get(t, g.name, d, dist);
          all.AddRow({Int(d), std::string(DTypeName(t)), g.name,
                      std::string(DistributionName(dist)), Sig(r.max_abs_err),
                      Sig(r.rel_l2), Sig(r.qk_mean_abs_err),
                      Sig(r.score_mean_abs_err), Sig(r.attn_out_rel_l2),
                      Sig(r.attn_out_max_abs_err)});
        }
      }
    }
  }
  all.WriteMarkdown(out);
  out << "\n</details>\n";
  return out.str();
}

int Main(int argc, char** argv) {
  const std::string command = CommandLine(argc, argv);
  absl::ParseCommandLine(argc, argv);
  const auto start = std::chrono::steady_clock::now();
  std::vector<uint32_t> head_dims;
  for (absl::string_view part :
       absl::StrSplit(absl::GetFlag(FLAGS_head_dims), ',')) {
    uint32_t d = 0;
    if (!absl::SimpleAtoi(part, &d) || d == 0) {
      std::cerr << "--head_dims: not a positive integer: " << part << "\n";
      return 2;
    }
    head_dims.push_back(d);
  }
  const std::string parts = absl::GetFlag(FLAGS_parts);
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const uint32_t group_size = absl::GetFlag(FLAGS_group_size);

  Table csv = CsvTable();
  std::string body;
  if (parts.find("paper") != std::string::npos) {
    body += RunPaper(csv, seed, absl::GetFlag(FLAGS_paper_max_elements),
                     absl::GetFlag(FLAGS_paper_queries), group_size);
  }
  if (parts.find("beyond") != std::string::npos) {
    body += RunBeyond(csv, seed, absl::GetFlag(FLAGS_tokens),
                      absl::GetFlag(FLAGS_heads), absl::GetFlag(FLAGS_queries),
                      head_dims, group_size);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();

  std::ostringstream md;
  md << "# kvq quantization accuracy\n\n"
     << "- command: `" << command << "`\n"
     << "- machine: " << CpuDescription() << " (CPU only; kvq's fast path "
        "with " << WorkerPool::Default().concurrency() << " threads)\n"
     << "- date: " << UtcNow() << "; git revision " << GitRevision()
     << "; seed " << seed << "; run time " << Fixed(seconds, 0) << " s\n\n"
     << "INT8 symmetric, scale = absmax / 127, round half to even "
        "(kernels/quant_math.h). The CUDA kernels write the same bytes as "
        "this CPU path (tests/gpu), so these errors hold for the GPU too.\n\n"
     << body;
  std::cout << md.str();
  bool ok = WriteFile(absl::GetFlag(FLAGS_markdown), md.str());
  std::ostringstream csv_text;
  csv.WriteCsv(csv_text);
  ok = WriteFile(absl::GetFlag(FLAGS_csv), csv_text.str()) && ok;
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace kvq::bench

int main(int argc, char** argv) { return kvq::bench::Main(argc, argv); }
