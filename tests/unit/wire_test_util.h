// Helpers for tests of messages as gRPC receives them (the server's and
// the client's alike).

#ifndef KVQ_TESTS_UNIT_WIRE_TEST_UTIL_H_
#define KVQ_TESTS_UNIT_WIRE_TEST_UTIL_H_

#include <grpcpp/support/slice.h>

#include <algorithm>
#include <cstddef>
#include <random>
#include <string>
#include <vector>

namespace kvq::wire_testing {

// Serialized bytes cut into gRPC slices at up to `max_cuts` random places
// (as a message arrives: in pieces of whatever size the transport read).
inline std::vector<grpc::Slice> RandomSlices(const std::string& bytes,
                                             std::mt19937_64& rng,
                                             int max_cuts = 6) {
  std::vector<size_t> cuts;
  for (int i = 0; i < max_cuts && !bytes.empty(); ++i) {
    cuts.push_back(rng() % bytes.size());
  }
  cuts.push_back(0);
  cuts.push_back(bytes.size());
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  std::vector<grpc::Slice> slices;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    slices.emplace_back(bytes.data() + cuts[i], cuts[i + 1] - cuts[i]);
  }
  return slices;
}

// `n` random bytes (every value), as message data and keys.
inline std::string RandomBytes(size_t n, std::mt19937_64& rng) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

}  // namespace kvq::wire_testing

#endif  // KVQ_TESTS_UNIT_WIRE_TEST_UTIL_H_
