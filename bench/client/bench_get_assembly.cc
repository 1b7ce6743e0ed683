// kvq-bench-get-assembly: what the client library spends putting a Get's
// block together from the chunks gRPC hands it, per way of reading them.
//
//   generated  each chunk parsed as a kvq.v1.GetResponse (its data copied
//              into a string), then appended to the block: two copies, as
//              kvq::Client read answers before client/get_answer.h.
//   GetAnswer  each chunk read as a kvq::GetAnswer (its data left in gRPC's
//              slices), appended to the block from there: one copy (Get).
//   GetInto    the same, copied into a buffer the caller keeps from block
//              to block (GetInto): no allocation, no page faults.
//
// The chunks are serialized GetResponses in 64 KiB slices, as gRPC's
// transport reads them off a socket; the network is left out, so the
// figures are the client's own CPU time per block. Median of --repeats. The
// process's malloc is set up as kvq-bench-service's clients are
// (proto/message_memory.h).
//
//   kvq-bench-get-assembly [--block_sizes=1048576,...] [--chunk_bytes=N]
//       [--repeats=N] [--markdown=F] [--csv=F]

#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "bench/common/report.h"
#include "client/get_answer.h"
#include "kvq/v1/kvcache.pb.h"
#include "proto/message_memory.h"

ABSL_FLAG(std::vector<std::string>, block_sizes,
          std::vector<std::string>({"1048576", "4194304", "16777216",
                                    "67108864"}),
          "block bytes");
ABSL_FLAG(uint32_t, chunk_bytes, 1 << 20, "data bytes per chunk");
ABSL_FLAG(int, repeats, 31, "timed assemblies per block size and way");
ABSL_FLAG(std::string, markdown, "", "write the report (markdown) here too");
ABSL_FLAG(std::string, csv, "", "write the table as CSV here");

namespace kvq::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kSliceBytes = 64 << 10;

// A block's answer as gRPC would hand it over: one slice list per chunk.
std::vector<std::vector<grpc::Slice>> AnswerSlices(uint64_t block_bytes,
                                                   uint64_t chunk_bytes) {
  std::string data(block_bytes, '\0');
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<char>(i * 2654435761u >> 13);
  }
  std::vector<std::vector<grpc::Slice>> chunks;
  for (uint64_t offset = 0; offset < block_bytes; offset += chunk_bytes) {
    v1::GetResponse response;
    response.set_offset(offset);
    const uint64_t n = std::min(chunk_bytes, block_bytes - offset);
    response.set_data(data.substr(offset, n));
    response.set_last(offset + n == block_bytes);
    const std::string wire = response.SerializeAsString();
    std::vector<grpc::Slice> slices;
    for (size_t at = 0; at < wire.size(); at += kSliceBytes) {
      slices.emplace_back(wire.data() + at,
                          std::min(kSliceBytes, wire.size() - at));
    }
    chunks.push_back(std::move(slices));
  }
  return chunks;
}

// Seconds to read every chunk once with `read` (false: it did not parse).
template <class Read>
double ReadSeconds(const std::vector<std::vector<grpc::Slice>>& chunks,
                   Read read) {
  const Clock::time_point start = Clock::now();
  for (const std::vector<grpc::Slice>& slices : chunks) {
    // What gRPC gives a reader: a buffer referencing the received slices.
    grpc::ByteBuffer buffer(slices.data(), slices.size());
    if (!read(buffer)) {
      std::cerr << "kvq-bench-get-assembly: a chunk did not parse or fit\n";
      std::exit(1);
    }
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void CheckAssembled(uint64_t got, uint64_t block_bytes) {
  if (got != block_bytes) {
    std::cerr << "kvq-bench-get-assembly: assembled " << got << " bytes of "
              << block_bytes << "\n";
    std::exit(1);
  }
}

// Seconds to assemble the block once into a string of its own (allocated
// while timed, as Get's result is), each chunk read by
// read(buffer, block_bytes, block).
template <class Read>
double AssembleSeconds(const std::vector<std::vector<grpc::Slice>>& chunks,
                       uint64_t block_bytes, Read read) {
  std::string block;
  const double seconds = ReadSeconds(chunks, [&](grpc::ByteBuffer& buffer) {
    return read(buffer, block_bytes, block);
  });
  CheckAssembled(block.size(), block_bytes);
  return seconds;
}

// As kvq::Client did: a block of one chunk takes the parsed string itself,
// a longer one is reserved and appended to.
bool ReadGenerated(grpc::ByteBuffer& buffer, uint64_t block_bytes,
                   std::string& block) {
  v1::GetResponse response;
  if (!grpc::SerializationTraits<v1::GetResponse>::Deserialize(&buffer,
                                                                &response)
           .ok()) {
    return false;
  }
  if (response.offset() == 0 && response.last()) {
    block = std::move(*response.mutable_data());
    return true;
  }
  if (response.offset() == 0) block.reserve(block_bytes);
  block.append(response.data());
  return true;
}

// As kvq::Client does now: reserved, and appended to from gRPC's slices.
bool ReadGetAnswer(grpc::ByteBuffer& buffer, uint64_t block_bytes,
                   std::string& block) {
  GetAnswer answer;
  if (!grpc::SerializationTraits<GetAnswer>::Deserialize(&buffer, &answer)
           .ok()) {
    return false;
  }
  if (answer.fields().offset() == 0) {
    block.reserve(answer.fields().last() ? answer.data_size() : block_bytes);
  }
  answer.AppendDataTo(&block);
  return true;
}

// Seconds to copy the block's chunks into `dst` (the caller's buffer, of
// the block's size), as GetInto does.
double IntoSeconds(const std::vector<std::vector<grpc::Slice>>& chunks,
                   std::vector<std::byte>& dst) {
  uint64_t at = 0;
  const double seconds = ReadSeconds(chunks, [&](grpc::ByteBuffer& buffer) {
    GetAnswer answer;
    if (!grpc::SerializationTraits<GetAnswer>::Deserialize(&buffer, &answer)
             .ok() ||
        answer.data_size() > dst.size() - at) {
      return false;
    }
    answer.CopyDataTo(dst.data() + at);
    at += answer.data_size();
    return true;
  });
  CheckAssembled(at, dst.size());
  return seconds;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Run(int argc, char** argv) {
  const uint64_t chunk_bytes = absl::GetFlag(FLAGS_chunk_bytes);
  const int repeats = std::max(1, absl::GetFlag(FLAGS_repeats));
  Table table({"block", "chunks", "way", "median ms", "GB/s", "vs generated"});
  for (const std::string& size_text : absl::GetFlag(FLAGS_block_sizes)) {
    uint64_t block_bytes = 0;
    if (!absl::SimpleAtoi(size_text, &block_bytes) || block_bytes == 0 ||
        chunk_bytes == 0) {
      std::cerr << "kvq-bench-get-assembly: bad --block_sizes or "
                   "--chunk_bytes\n";
      return 2;
    }
    const auto chunks = AnswerSlices(block_bytes, chunk_bytes);
    // Alternating, so that the machine's drift falls on both alike.
    std::vector<double> generated, referenced, into;
    std::vector<std::byte> buffer(block_bytes);  // the caller's, kept
    for (int r = 0; r < repeats + 1; ++r) {
      const double g = AssembleSeconds(chunks, block_bytes, ReadGenerated);
      const double a = AssembleSeconds(chunks, block_bytes, ReadGetAnswer);
      const double i = IntoSeconds(chunks, buffer);
      if (r == 0) continue;  // warm-up
      generated.push_back(g);
      referenced.push_back(a);
      into.push_back(i);
    }
    const double g = Median(generated), a = Median(referenced),
                 i = Median(into);
    const std::string block = Int(block_bytes >> 10) + " KiB";
    const std::string count = Int(chunks.size());
    table.AddRow({block, count, "generated", Fixed(g * 1e3, 3),
                  Fixed(block_bytes / g / 1e9, 2), "1.00"});
    table.AddRow({block, count, "GetAnswer", Fixed(a * 1e3, 3),
                  Fixed(block_bytes / a / 1e9, 2), Fixed(g / a, 2)});
    table.AddRow({block, count, "GetInto", Fixed(i * 1e3, 3),
                  Fixed(block_bytes / i / 1e9, 2), Fixed(g / i, 2)});
  }
  std::ostringstream report;
  report << "# kvq-bench-get-assembly\n\n"
         << "- command: `" << CommandLine(argc, argv) << "`\n"
         << "- machine: " << CpuDescription() << "\n"
         << "- date: " << UtcNow() << "; git revision " << GitRevision()
         << "\n"
         << "- what: the client's CPU time to assemble one Get block from "
            "its chunks (serialized GetResponses in 64 KiB slices, as gRPC "
            "hands them over; no network), median of "
         << repeats
         << " alternating runs; `vs generated`: how many times faster than "
            "parsing generated GetResponses and appending their data "
            "(GetInto: into a buffer kept from run to run)\n\n";
  table.WriteMarkdown(report);
  std::cout << report.str();
  if (!WriteFile(absl::GetFlag(FLAGS_markdown), report.str())) return 1;
  std::ostringstream csv;
  table.WriteCsv(csv);
  if (!WriteFile(absl::GetFlag(FLAGS_csv), csv.str())) return 1;
  return 0;
}

}  // namespace
}  // namespace kvq::bench

int main(int argc, char** argv) {
  kvq::wire::KeepMessageBuffersInHeap();
  absl::ParseCommandLine(argc, argv);
  return kvq::bench::Run(argc, argv);
}
