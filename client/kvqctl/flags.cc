#include "client/kvqctl/flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051",
          "kvq-server gRPC address, host:port");
ABSL_FLAG(int64_t, deadline_ms, 30000, "deadline of each RPC in milliseconds");
ABSL_FLAG(uint32_t, chunk_bytes, 1 << 20,
          "data bytes per message when sending or receiving a block; keep "
          "below the server's --max_message_bytes");

ABSL_FLAG(std::string, ns, "", "namespace (model or tenant) of the keys");
ABSL_FLAG(std::string, key, "",
          "key as text (put, get; lookup and delete "
          "when no KEY arguments are given)");
ABSL_FLAG(std::string, key_hex, "",
          "key as hex-encoded bytes, for binary keys (instead of --key)");
ABSL_FLAG(bool, hex, false,
          "lookup / delete: the KEY arguments are hex-encoded bytes");

ABSL_FLAG(std::string, dtype, "",
          "element type: fp16, bf16 or fp32 (put: of the data, required with "
          "--file, default fp16 with --random; get: to return, default the "
          "dtype the block was put with)");
ABSL_FLAG(std::string, shape, "",
          "block shape PLANES,TOKENS,HEADS,HEAD_DIM, e.g. 2,16,8,128 (put)");
ABSL_FLAG(std::string, granularity, "per_token_head",
          "put: which values share a scale: per_token_head, per_channel, "
          "per_tensor or group");
ABSL_FLAG(uint32_t, group_size, 0,
          "put with --granularity=group: values per scale; must divide "
          "head_dim");
ABSL_FLAG(std::string, file, "",
          "put: file holding the block's raw little-endian elements");
ABSL_FLAG(bool, random, false,
          "put: send a random normal block of --shape and --dtype instead of "
          "a file");
ABSL_FLAG(uint64_t, seed, 0,
          "put --random: generator seed (0: a fresh seed, printed)");
ABSL_FLAG(std::string, out, "",
          "get: file to write the block's raw elements to ('-' = stdout)");

ABSL_FLAG(std::string, service, "",
          "health: service to ask about ('' = the whole server)");
