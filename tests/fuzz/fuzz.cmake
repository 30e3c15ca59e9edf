# Fuzz targets: tests/fuzz/fuzz_NAME.c defines LLVMFuzzerTestOneInput, and
# tests/fuzz/corpus/NAME/ holds its seed corpus. Each target is always built
# with a small replay driver (replay.c) and its corpus is replayed by ctest,
# so the normal test run (and the ASan run) covers every seed. With
# -DSB_FUZZ=ON and clang, a real libFuzzer binary fuzz-NAME is built too:
#   build-fuzz/bin/fuzz-ipc tests/fuzz/corpus/ipc -max_total_time=60
function(sb_fuzz_target name)
  add_executable(replay-${name} ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_${name}.c
                 ${CMAKE_SOURCE_DIR}/tests/fuzz/replay.c ${ARGN})
  target_link_libraries(replay-${name} PRIVATE sb_shared)
  add_test(NAME fuzz.${name}.corpus
           COMMAND replay-${name} ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${name})
  if(SB_FUZZ)
    add_executable(fuzz-${name} ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_${name}.c ${ARGN})
    target_compile_options(fuzz-${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(fuzz-${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(fuzz-${name} PRIVATE sb_shared)
  endif()
endfunction()

sb_fuzz_target(ipc)
