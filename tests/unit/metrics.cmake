# Metrics unit tests: instruments, text format, the kvq families, the HTTP
# endpoint, and `promtool check metrics` on a rendered exposition.

# A strict exposition parser shared with the Prometheus integration tests.
add_library(kvq_test_exposition_parser STATIC metrics_exposition_parser.cc)
target_include_directories(kvq_test_exposition_parser
  PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(kvq_test_exposition_parser
  PUBLIC absl::status absl::statusor
  PRIVATE absl::strings kvq_warnings)

kvq_add_test(metrics_instruments_test
  SOURCES metrics_instruments_test.cc
  LIBS kvq_metrics)
kvq_add_test(metrics_text_format_test
  SOURCES metrics_text_format_test.cc
  LIBS kvq_metrics kvq_test_exposition_parser)
kvq_add_test(metrics_server_metrics_test
  SOURCES metrics_server_metrics_test.cc
  LIBS kvq_metrics kvq_test_exposition_parser)
kvq_add_test(metrics_concurrency_test
  SOURCES metrics_concurrency_test.cc
  LIBS kvq_metrics kvq_test_exposition_parser)
kvq_add_test(metrics_http_server_test
  SOURCES metrics_http_server_test.cc
  LIBS kvq_metrics kvq_test_exposition_parser PkgConfig::HTTPLIB)

# promtool comes from the Debian package `prometheus` (scripts/setup installs
# it). Without it the test fails and says so: it is never skipped silently.
find_program(KVQ_PROMTOOL promtool)
kvq_add_test(metrics_promtool_test
  SOURCES metrics_promtool_test.cc
  LIBS kvq_metrics)
target_compile_definitions(metrics_promtool_test PRIVATE
  KVQ_PROMTOOL_PATH="$<$<BOOL:${KVQ_PROMTOOL}>:${KVQ_PROMTOOL}>")
