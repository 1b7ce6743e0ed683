// The bare transport service of kvq-bench-service (transport.proto): receives
// and sends blocks exactly as kvq-server does (kvq's messages, read and
// written by kvq-server's own PutChunk and GetChunk), minus the work. It runs in its
// own process (kvq-bench-service --serve_transport) so that, like kvq-server,
// it does not share the client's threads.

#ifndef KVQ_BENCH_SERVICE_TRANSPORT_SERVICE_H_
#define KVQ_BENCH_SERVICE_TRANSPORT_SERVICE_H_

#include <string>

namespace kvq::bench {

// Serves Transport on `listen` (port 0 = any) until SIGTERM/SIGINT; writes
// "grpc_port=N" to `ready_file` once serving. Returns the process exit code.
int ServeTransport(const std::string& listen, const std::string& ready_file,
                   int max_message_bytes);

}  // namespace kvq::bench

#endif  // KVQ_BENCH_SERVICE_TRANSPORT_SERVICE_H_
