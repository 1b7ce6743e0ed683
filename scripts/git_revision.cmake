# Writes OUTPUT, a header defining KVQ_GIT_REVISION: the short commit of
# SOURCE_DIR, "+changes" when tracked files differ from it, "unknown"
# outside a git checkout (e.g. the Docker build, which leaves .git out).
# Run as a script (cmake -P) on every build; the file is rewritten only
# when its text changes, so an unchanged revision recompiles nothing.
cmake_minimum_required(VERSION 3.25)  # policies for script mode
execute_process(COMMAND git rev-parse --short=12 HEAD
  WORKING_DIRECTORY ${SOURCE_DIR} OUTPUT_VARIABLE revision
  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT revision)
  set(revision unknown)
else()
  execute_process(COMMAND git status --porcelain --untracked-files=no
    WORKING_DIRECTORY ${SOURCE_DIR} OUTPUT_VARIABLE changes ERROR_QUIET)
  if(changes)
    string(APPEND revision "+changes")
  endif()
endif()
file(CONFIGURE OUTPUT ${OUTPUT}
  CONTENT "#define KVQ_GIT_REVISION \"@revision@\"\n" @ONLY)
