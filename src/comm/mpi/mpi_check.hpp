// One checking macro for MPI calls: a failed call throws dbsp::Error naming the call, the MPI error
// text and the source line (communicators use MPI_ERRORS_RETURN, so errors come back as codes).
#pragma once

#include <mpi.h>

#include <string>

#include "dbsp/error.hpp"

namespace dbsp::comm {

inline std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS)
    return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<size_t>(length));
}

}  // namespace dbsp::comm

#define DBSP_MPI_CHECK(call)                                                                  \
  do {                                                                                        \
    const int dbsp_mpi_code_ = (call);                                                        \
    if (dbsp_mpi_code_ != MPI_SUCCESS) {                                                      \
      ::dbsp::fail("mpi: ", #call, " failed: ", ::dbsp::comm::mpi_error_text(dbsp_mpi_code_), \
                   " (", __FILE__, ":", __LINE__, ")");                                       \
    }                                                                                         \
  } while (0)
