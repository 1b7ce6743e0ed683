// The bare transport service of kvq-bench-service (transport.proto): receives
// and sends blocks exactly as kvq-server does (kvq's messages, read and
// written by kvq-server's own PutChunk and GetChunk), minus the work. It runs in its
// own process (kvq-bench-service --serve_transport) so that, like kvq-server,
// it does not share the client's threads.

#ifndef KVQ_BENCH_SERVICE_TRANSPORT_SERVICE_H_
#define KVQ_BENCH_SERVICE_TRANSPORT_SERVICE_H_

#include <optional>
#include <string>
#include <string_view>

namespace kvq::bench {

// Which gRPC server API the handlers use: kvq-server's (sync: a thread per
// stream, blocking reads and writes), or the callback API (reactors run on
// gRPC's own threads), which gRPC's performance guide recommends for servers;
// or kvq-server's with its one copy of a put's data (kSyncCopy): the chunks
// copied out of gRPC's buffers into a block-sized buffer by PutChunk's own
// CopyDataTo, as kvq-server assembles a block before its GPU reads it; or
// kvq-server's holding gRPC's buffers (kSyncHold): each chunk's slices kept
// until its block's last chunk is in, as kvq-server keeps a put it reads in
// place until the block is stored, so that gRPC reads the next chunks into
// fresh buffers; or kvq-server's writing each answer from a thread of the
// stream's own while the handler's thread reads on (kSyncAnswerThread), as
// kvq-server answers from its storing thread; or kvq-server's sending
// memory the CPU's caches do not hold (kSyncFresh: each block of a
// Download from the next stretch of a 512 MiB buffer), as kvq-server sends
// blocks its GPU has just written, where kSync sends one block-sized
// buffer again and again.
enum class ServerApi {
  kSync,
  kCallback,
  kSyncCopy,
  kSyncHold,
  kSyncAnswerThread,
  kSyncFresh
};

// The API named "sync", "callback", "sync-copy", "sync-hold",
// "sync-answer-thread" or "sync-fresh"; nullopt for any other name.
std::optional<ServerApi> ServerApiNamed(std::string_view name);

// How the bare service of `api` works, for the report's header.
std::string BareDescription(ServerApi api);

// Serves Transport on `listen` (port 0 = any) until SIGTERM/SIGINT; writes
// "grpc_port=N" to `ready_file` once serving. Returns the process exit code.
int ServeTransport(const std::string& listen, const std::string& ready_file,
                   int max_message_bytes, ServerApi api);

}  // namespace kvq::bench

#endif  // KVQ_BENCH_SERVICE_TRANSPORT_SERVICE_H_
