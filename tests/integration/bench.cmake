# The service benchmark, smoke-tested: one small cell per direction against
# the CPU backend, so that the program behind bench/results/service-*.md
# keeps starting its servers, measuring both sides and writing its table.
if(NOT TARGET kvq-bench-service OR NOT TARGET kvq-server)
  return()
endif()

add_test(NAME bench_service_smoke
  COMMAND kvq-bench-service --device=cpu --dtypes=fp16 --block_sizes=65536
          --streams=1 --put_windows=1,4,all --repeats=2 --bytes_per_cell=262144
          --min_blocks=4 --max_blocks=4 --pool_bytes=67108864)
# Every row kvq and bare, with a median ratio and its range; the unbounded
# window (kvq::Client::PutMany's) has its own row; the stage table has each
# row's receive, assemble, queue and store, ms per block.
set_tests_properties(bench_service_smoke PROPERTIES
  LABELS integration
  TIMEOUT 120
  PASS_REGULAR_EXPRESSION
    "\\| put \\| fp16 \\| 64 KiB \\| 1 \\| 4 \\| 4 \\| [0-9.]+ \\| [0-9.]+ \\| [0-9.]+ \\| [0-9.]+-[0-9.]+ \\|.*\\| put \\| fp16 \\| 64 KiB \\| 1 \\| all \\| 4 \\| [0-9.]+ \\| [0-9.]+ \\|.*\\| get \\| fp16 \\| 64 KiB \\| 1 \\| 1 \\| 4 \\|.*## Server stages, ms per block.*\\| put \\| fp16 \\| 64 KiB \\| 1 \\| 4 \\| [0-9.]+ \\| [0-9.]+ \\| [0-9.]+ \\| [0-9.]+ \\|")

# The same against a bare service on gRPC's callback API (--bare_api).
add_test(NAME bench_service_smoke_callback_ceiling
  COMMAND kvq-bench-service --device=cpu --dtypes=fp16 --block_sizes=65536
          --streams=1,2 --put_windows=4 --get_keys=4 --repeats=2
          --bytes_per_cell=262144 --min_blocks=4 --max_blocks=4
          --pool_bytes=67108864 --bare_api=callback)
set_tests_properties(bench_service_smoke_callback_ceiling PROPERTIES
  LABELS integration
  TIMEOUT 120
  PASS_REGULAR_EXPRESSION
    "- bare: gRPC callback API.*\\| put \\| fp16 \\| 64 KiB \\| 2 \\| 4 \\| 8 \\| [0-9.]+ \\| [0-9.]+ \\|.*\\| get \\| fp16 \\| 64 KiB \\| 2 \\| 4 \\| 8 \\| [0-9.]+ \\| [0-9.]+ \\|")

# The same against a bare service that copies each put's data once, as
# kvq-server does (--bare_api=sync-copy): blocks of several chunks, so that
# each chunk lands at its offset.
add_test(NAME bench_service_smoke_copying_ceiling
  COMMAND kvq-bench-service --device=cpu --dtypes=fp32 --block_sizes=262144
          --streams=1 --put_windows=4 --get_keys=1 --repeats=1
          --chunk_bytes=65536 --bytes_per_cell=1048576 --min_blocks=4
          --max_blocks=4 --pool_bytes=67108864 --bare_api=sync-copy)
set_tests_properties(bench_service_smoke_copying_ceiling PROPERTIES
  LABELS integration
  TIMEOUT 120
  PASS_REGULAR_EXPRESSION
    "- bare: gRPC sync API, each put's data copied once.*\\| put \\| fp32 \\| 256 KiB \\| 1 \\| 4 \\| 4 \\| [0-9.]+ \\| [0-9.]+ \\|")
