# Client SDK and wire unit tests (the messages the client writes in gRPC's
# buffers; kvq_wire).
kvq_add_test(put_message_test
  SOURCES put_message_test.cc
  LIBS kvq_client)
kvq_add_test(message_memory_test
  SOURCES message_memory_test.cc
  LIBS kvq_wire)
kvq_add_test(get_answer_test
  SOURCES get_answer_test.cc
  LIBS kvq_client GTest::gmock)
