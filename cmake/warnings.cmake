# One place for warning flags: every dbsp target links dbsp_warnings.
add_library(dbsp_warnings INTERFACE)
target_compile_options(dbsp_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wno-unknown-pragmas>
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${DBSP_WERROR}>>:-Werror>
  $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo -Xptxas=--warn-on-spills --expt-relaxed-constexpr>
  $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${DBSP_WERROR}>>:-Werror=all-warnings>)
