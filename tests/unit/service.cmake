# Service and backend unit tests: the Put protocol, the Put and Get messages
# kept in gRPC's buffers (put_chunk, get_chunk), request validation,
# status mapping, the data path over a real pool + CPU backend, and the
# service's small helpers (env flags, JSON logs, chunk sizes, error figure).
# The end-to-end tests over a real kvq-server live in tests/integration.
kvq_add_test(put_assembler_test
  SOURCES put_assembler_test.cc
  LIBS kvq_service GTest::gmock)
kvq_add_test(header_validation_test
  SOURCES header_validation_test.cc
  LIBS kvq_service GTest::gmock)
kvq_add_test(status_mapping_test
  SOURCES status_mapping_test.cc
  LIBS kvq_service GTest::gmock)
kvq_add_test(block_store_test
  SOURCES block_store_test.cc
  LIBS kvq_service GTest::gmock)
kvq_add_test(service_support_test
  SOURCES service_support_test.cc
  LIBS kvq_service GTest::gmock absl::flags)
kvq_add_test(cpu_backend_test
  SOURCES cpu_backend_test.cc
  LIBS kvq_backend kvq_kernels kvq_proto GTest::gmock)
target_compile_definitions(cpu_backend_test PRIVATE
  $<$<BOOL:${KVQ_WITH_CUDA}>:KVQ_WITH_CUDA=1>)
kvq_add_test(cuda_host_region_test
  SOURCES cuda_host_region_test.cc
  LIBS kvq_backend kvq_proto GTest::gmock)
kvq_add_test(cuda_page_tables_test
  SOURCES cuda_page_tables_test.cc
  LIBS kvq_backend kvq_proto GTest::gmock)
kvq_add_test(staging_pool_test
  SOURCES staging_pool_test.cc
  LIBS kvq_service GTest::gmock)
kvq_add_test(put_chunk_test
  SOURCES put_chunk_test.cc
  LIBS kvq_service GTest::gmock)
kvq_add_test(get_chunk_test
  SOURCES get_chunk_test.cc
  LIBS kvq_service GTest::gmock)
kvq_add_test(serial_executor_test
  SOURCES serial_executor_test.cc
  LIBS kvq_serial_executor GTest::gmock)
# The process heap in one region: its own binary, since linking kvq_heap
# makes jemalloc the program's malloc and the install is once per process.
kvq_add_test(region_heap_test
  SOURCES region_heap_test.cc
  LIBS kvq_heap GTest::gmock)
kvq_add_test(region_size_test
  SOURCES region_size_test.cc
  LIBS kvq_region_size)
