# Prometheus integration tests: a real Prometheus server (Debian package
# `prometheus`, which also brings promtool; scripts/setup installs it) scrapes
# a real kvq-server on loopback. Without the binaries the tests fail and say
# to run scripts/setup: they are never skipped silently.
#
# Registered like the server suite (server.cmake): against the CPU backend,
# and as "cuda.*" with KVQ_TEST_DEVICE=cuda (label gpu).

if(NOT TARGET kvq_integration_testing OR NOT COMMAND kvq_add_server_test)
  message(STATUS "kvq: Prometheus integration tests need the server "
                 "integration suite (tests/integration/server.cmake); not "
                 "configured")
  return()
endif()

find_program(KVQ_PROMETHEUS prometheus)
find_program(KVQ_PROMTOOL promtool)
if(NOT KVQ_PROMETHEUS OR NOT KVQ_PROMTOOL)
  message(WARNING "prometheus/promtool not found: the Prometheus integration "
                  "tests will fail until scripts/setup installs them")
endif()

# PrometheusProcess (a real Prometheus on a free port) and promtool.
add_library(kvq_test_prometheus STATIC prometheus_testing.cc)
target_include_directories(kvq_test_prometheus PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(kvq_test_prometheus
  PUBLIC absl::status absl::statusor absl::time
  PRIVATE kvq_test_server_process absl::strings protobuf::libprotobuf
          PkgConfig::HTTPLIB kvq_warnings)
target_compile_definitions(kvq_test_prometheus PRIVATE
  KVQ_PROMETHEUS_PATH="$<$<BOOL:${KVQ_PROMETHEUS}>:${KVQ_PROMETHEUS}>"
  KVQ_PROMTOOL_PATH="$<$<BOOL:${KVQ_PROMTOOL}>:${KVQ_PROMTOOL}>")

kvq_add_server_test(prometheus_scrape_test
  SOURCES prometheus_scrape_test.cc
  LIBS kvq_test_prometheus kvq_test_exposition_parser)
kvq_add_server_test(prometheus_concurrency_test
  SOURCES prometheus_concurrency_test.cc
  LIBS kvq_test_prometheus kvq_test_exposition_parser)
