# Secure-aggregation benchmark (bench/secagg.c): in-process SecAgg+ rounds that print per-worker
# and coordinator costs as multiples of one keystream expansion. A program, not a test: not
# registered with ctest. Include from bench/CMakeLists.txt with include(secagg.cmake).
# bench/secagg_round.sh (the multi-process round) needs only tally, tally-coordinator, tally-worker.
add_executable(secagg-bench ${CMAKE_CURRENT_LIST_DIR}/secagg.c)
set_target_properties(secagg-bench PROPERTIES OUTPUT_NAME secagg)
target_link_libraries(secagg-bench PRIVATE tally)
