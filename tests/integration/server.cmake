# Integration suite of the server: a real kvq-server process on an ephemeral
# loopback port, driven by the C++ client (kvq_client) and by kvqctl.
#
# Every test binary's tests are registered twice: as themselves against the
# CPU backend (label "integration"; CI runs these), and as "cuda.*" with
# KVQ_TEST_DEVICE=cuda (label "gpu": the GPU machine runs `ctest -L gpu`, CI
# excludes them with `-LE gpu`; without a GPU they skip). One label each:
# gtest_discover_tests' PROPERTIES cannot carry a list value.

# The client's element codec against the kernels' conversions (no server).
if(TARGET kvq_kernels)
  kvq_add_test(client_element_codec_test SOURCES element_codec_test.cc
    LIBS kvq_client kvq_kernels LABELS client)
endif()

if(NOT TARGET kvq-server OR NOT TARGET kvqctl OR NOT TARGET kvq_kernels)
  message(STATUS "kvq: server integration tests need kvq-server, kvqctl and "
                 "kvq_kernels; not configured")
  return()
endif()

# The fixture: starts / stops kvq-server processes (and runs kvqctl).
add_library(kvq_test_server_process STATIC server_process.cc)
target_include_directories(kvq_test_server_process PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(kvq_test_server_process
  PUBLIC absl::status absl::statusor absl::time
  PRIVATE absl::strings absl::cleanup kvq_warnings)
target_compile_definitions(kvq_test_server_process
  PRIVATE KVQ_SERVER_PATH="$<TARGET_FILE:kvq-server>")
add_dependencies(kvq_test_server_process kvq-server)

# The part of grpc.reflection.v1alpha the suite uses (no generated code for
# it is packaged).
add_library(kvq_test_reflection_proto STATIC reflection_v1alpha.proto)
target_link_libraries(kvq_test_reflection_proto
  PUBLIC protobuf::libprotobuf gRPC::grpc++)
target_include_directories(kvq_test_reflection_proto
  PUBLIC ${CMAKE_CURRENT_BINARY_DIR})
protobuf_generate(TARGET kvq_test_reflection_proto LANGUAGE cpp
  IMPORT_DIRS ${CMAKE_CURRENT_SOURCE_DIR}
  PROTOC_OUT_DIR ${CMAKE_CURRENT_BINARY_DIR})
protobuf_generate(TARGET kvq_test_reflection_proto LANGUAGE grpc
  GENERATE_EXTENSIONS .grpc.pb.h .grpc.pb.cc
  PLUGIN "protoc-gen-grpc=${KVQ_GRPC_CPP_PLUGIN}"
  IMPORT_DIRS ${CMAKE_CURRENT_SOURCE_DIR}
  PROTOC_OUT_DIR ${CMAKE_CURRENT_BINARY_DIR})

# Shared test code: the ServerTest base, random blocks, the reference check.
# kvq_kernels is linked here, in the tests only, for the reference and the
# error bound; the client itself never sees it.
add_library(kvq_integration_testing STATIC integration_testing.cc)
target_link_libraries(kvq_integration_testing
  PUBLIC kvq_test_server_process kvq_client kvq_kernels GTest::gtest
         GTest::gmock
  PRIVATE PkgConfig::HTTPLIB kvq_test_exposition_parser kvq_warnings)
target_compile_definitions(kvq_integration_testing
  PRIVATE KVQCTL_PATH="$<TARGET_FILE:kvqctl>")
add_dependencies(kvq_integration_testing kvqctl)

# kvq_add_server_test(NAME SOURCES... [LIBS...])
function(kvq_add_server_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS" ${ARGN})
  kvq_add_test(${name} SOURCES ${ARG_SOURCES}
    LIBS kvq_integration_testing ${ARG_LIBS} LABELS integration)
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST TEST_PREFIX "cuda."
    PROPERTIES LABELS gpu ENVIRONMENT "KVQ_TEST_DEVICE=cuda" TIMEOUT 600)
endfunction()

kvq_add_server_test(server_roundtrip_test SOURCES roundtrip_test.cc)
kvq_add_server_test(server_cache_ops_test SOURCES cache_ops_test.cc)
kvq_add_server_test(server_eviction_test SOURCES eviction_test.cc)
kvq_add_server_test(server_bad_input_test SOURCES bad_input_test.cc)
kvq_add_server_test(server_concurrency_test SOURCES concurrency_test.cc)
kvq_add_server_test(server_operations_test SOURCES operations_test.cc
  LIBS kvq_test_reflection_proto)
kvq_add_server_test(kvqctl_test SOURCES kvqctl_test.cc)
